"""pytest plugin for the benchmark suite: selection options, parametrization, progress lines, extra JSON.

Loaded by `fastconv bench` (``-p fastconv.bench.plugin``) and by benchmarks/conftest.py. Options:

    --fc-ops conv,pool|OP,...   --fc-shapes NAME,...   --fc-quick (the quick shape subset)
    --fc-nets all|NAME,...      --fc-batch 1,8 (every layer of these networks at these batch sizes)
    --fc-backends NAME,...      --fc-dtypes float32,float64   --fc-layouts NCHW,NHWC
    --fc-threads N   --fc-progress
    --fc-sgemm-size N (the matrix product timed for the sgemm peak)

The JSON written by ``--benchmark-json`` gains a "fastconv" section: sgemm GFLOP/s, threads, CPU, versions,
and every skipped benchmark with its reason.
"""

from __future__ import annotations

import platform

import numpy as np
import pytest

import fastconv
from fastconv.bench.cases import (NETWORK_CHOICES, labelled, select_backends, select_cases, select_dtypes,
                                  select_layouts)
from fastconv.bench.peak import sgemm_gflops as measure_sgemm_gflops

_SGEMM = pytest.StashKey[float]()


def pytest_addoption(parser):
    group = parser.getgroup("fastconv", "fastconv benchmark selection (fastconv.bench)")
    group.addoption("--fc-ops", metavar="LIST", help="ops or families: conv, pool, conv_fwd, conv_fwd_bwd, "
                    "maxpool_fwd_bwd, avgpool_fwd_bwd (default: all)")
    group.addoption("--fc-shapes", metavar="LIST", help="shape names from fastconv.bench.shapes (default: all)")
    group.addoption("--fc-quick", action="store_true", help="only the quick subset of shapes")
    group.addoption("--fc-nets", metavar="LIST", help=f"every layer of these networks, among "
                    f"{', '.join(NETWORK_CHOICES)} (then the named shapes run only when --fc-shapes or --fc-quick "
                    "asks for them)")
    group.addoption("--fc-batch", metavar="LIST", help="batch sizes of the network layers (default: 1,8)")
    group.addoption("--fc-backends", metavar="LIST", help="fastconv backends and/or torch (default: all)")
    group.addoption("--fc-dtypes", metavar="LIST", help="float32 and/or float64 (default: float32)")
    group.addoption("--fc-layouts", metavar="LIST", help="data_format NCHW and/or NHWC (default: NCHW); an NHWC "
                    "row is labelled '<backend> NHWC'")
    group.addoption("--fc-threads", type=int, metavar="N", help="fastconv.set_num_threads(N) (torch follows)")
    group.addoption("--fc-sgemm-size", type=int, default=2048, metavar="N",
                    help="size of the float32 matrix product timed for the sgemm peak (default 2048)")
    group.addoption("--fc-progress", action="store_true", help="one '[i/n] op shape dtype backend' line per "
                    "benchmark instead of pytest's dots")


def pytest_configure(config):
    config.addinivalue_line("markers", "fastconv_family(name): benchmark parametrized over the ops and shapes "
                            "of family 'conv' or 'pool' (fastconv.bench.plugin)")
    try:
        _selection(config)
    except ValueError as exc:
        raise pytest.UsageError(f"fastconv benchmarks: {exc}") from None
    if config.getoption("fc_threads"):
        fastconv.set_num_threads(config.getoption("fc_threads"))
    config.pluginmanager.register(_Recorder(config), "fastconv-bench-recorder")


def _selection(config):
    option = config.getoption
    cases = select_cases(option("fc_ops"), option("fc_shapes"), option("fc_quick"), option("fc_nets"),
                         option("fc_batch"))
    return (cases, select_dtypes(option("fc_dtypes")), select_backends(option("fc_backends")),
            select_layouts(option("fc_layouts")))


def pytest_generate_tests(metafunc):
    """(op, shape) pairs of the test's family x dtype x backend, as plain strings (clean ids, JSON and group-by).
    Pairs, not every op on every shape: a network's pool layer runs its own mode only."""
    family = metafunc.definition.get_closest_marker("fastconv_family")
    if family is None:
        return
    cases, dtypes, backends, layouts = _selection(metafunc.config)
    metafunc.parametrize(("op", "shape"), [(case.op.name, case.shape.name) for case in cases
                                           if case.op.family == family.args[0]])
    metafunc.parametrize("dtype", dtypes)
    metafunc.parametrize("layout", layouts)
    metafunc.parametrize("backend", backends)


@pytest.fixture(scope="session")
def sgemm_gflops(pytestconfig) -> float:
    """The machine's float32 GEMM rate, measured once per run."""
    pytestconfig.stash[_SGEMM] = measure_sgemm_gflops(pytestconfig.getoption("fc_sgemm_size"))
    return pytestconfig.stash[_SGEMM]


class _Recorder:
    """Labels each benchmark, prints the progress lines, keeps the skips, and writes the JSON section."""

    def __init__(self, config):
        self.config = config
        self.progress = config.getoption("fc_progress")
        self.labels: dict[str, dict] = {}
        self.skipped: list[dict] = []
        self.done = 0

    def pytest_collection_modifyitems(self, items):
        """Label the benchmarks; drop the placeholder pytest makes for a family with nothing selected."""
        empty = []
        for item in items:
            params = item.callspec.params if hasattr(item, "callspec") else {}
            if item.get_closest_marker("fastconv_family") is not None and not isinstance(params.get("op"), str):
                empty.append(item)
            elif "op" in params:
                self.labels[item.nodeid] = {"op": params["op"], "shape": params["shape"], "dtype": params["dtype"],
                                            "backend": labelled(params["backend"], params["layout"])}
        if empty:
            self.config.hook.pytest_deselected(items=empty)
            items[:] = [item for item in items if item not in empty]
        self.total = len(items)

    def pytest_report_teststatus(self, report):
        """With --fc-progress, our lines replace pytest's dots for passed and skipped benchmarks."""
        if self.progress and (report.skipped or (report.passed and report.when == "call")):
            return report.outcome, "", ""
        return None

    def pytest_runtest_logstart(self, nodeid):
        self.done += 1
        if self.progress:
            label = self.labels.get(nodeid)
            text = " ".join(label.values()) if label else nodeid
            self._terminal().write(f"[{self.done:>{len(str(self.total))}}/{self.total}] {text} ... ", flush=True)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item, call):
        report = yield
        benchmark = item.funcargs.get("benchmark") if hasattr(item, "funcargs") else None
        if call.when == "call" and benchmark is not None and benchmark.stats is not None:
            report.user_properties.append(("min_seconds", benchmark.stats.stats.min))
        return report

    def pytest_runtest_logreport(self, report):
        if report.skipped:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            reason = reason.removeprefix("Skipped: ")
            self.skipped.append({**self.labels.get(report.nodeid, {}), "reason": reason})
            self._finish_line(f"skipped: {reason}")
        elif report.failed:
            self._finish_line(f"FAILED ({report.when})")
        elif report.when == "call":
            seconds = dict(report.user_properties).get("min_seconds")
            self._finish_line(f"{1e3 * seconds:.3f} ms" if seconds is not None else "done")

    def _finish_line(self, text: str) -> None:
        if self.progress:
            self._terminal().write_line(text)

    def _terminal(self):
        return self.config.pluginmanager.get_plugin("terminalreporter")

    def pytest_benchmark_update_json(self, output_json):
        """The "fastconv" section of the JSON: what the tables need beyond pytest-benchmark's own fields."""
        output_json["fastconv"] = {
            "version": fastconv.__version__,
            "numpy": np.__version__,
            "torch": _torch_version(),
            "threads": fastconv.get_num_threads(),
            "available_backends": fastconv.available_backends(),
            "cpu": _cpu_model(),
            "sgemm_gflops": self.config.stash.get(_SGEMM, None),
            "skipped": self.skipped,
        }


def _torch_version() -> str | None:
    try:
        from fastconv.bench.torch_ref import VERSION
    except ImportError:
        return None
    return VERSION


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
