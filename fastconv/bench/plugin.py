"""pytest plugin for the benchmark suite: selection options, parametrization, progress lines, extra JSON.

Loaded by `fastconv bench` (``-p fastconv.bench.plugin``) and by benchmarks/conftest.py. Options:

    --fc-ops conv,pool|OP,...   --fc-shapes NAME,...   --fc-quick (the quick shape subset)
    --fc-backends NAME,...      --fc-dtypes float32,float64   --fc-threads N   --fc-progress
    --fc-sgemm-size N (the matrix product timed for the sgemm peak)

The JSON written by ``--benchmark-json`` gains a "fastconv" section: sgemm GFLOP/s, threads, CPU, versions,
and every skipped benchmark with its reason.
"""

from __future__ import annotations

import platform

import numpy as np
import pytest

import fastconv
from fastconv.bench.cases import select_backends, select_cases, select_dtypes
from fastconv.bench.peak import sgemm_gflops as measure_sgemm_gflops

_SGEMM = pytest.StashKey[float]()


def pytest_addoption(parser):
    group = parser.getgroup("fastconv", "fastconv benchmark selection (fastconv.bench)")
    group.addoption("--fc-ops", metavar="LIST", help="ops or families: conv, pool, conv_fwd, conv_fwd_bwd, "
                    "maxpool_fwd_bwd, avgpool_fwd_bwd (default: all)")
    group.addoption("--fc-shapes", metavar="LIST", help="shape names from fastconv.bench.shapes (default: all)")
    group.addoption("--fc-quick", action="store_true", help="only the quick subset of shapes")
    group.addoption("--fc-backends", metavar="LIST", help="fastconv backends and/or torch (default: all)")
    group.addoption("--fc-dtypes", metavar="LIST", help="float32 and/or float64 (default: float32)")
    group.addoption("--fc-threads", type=int, metavar="N", help="fastconv.set_num_threads(N) (torch follows)")
    group.addoption("--fc-sgemm-size", type=int, default=2048, metavar="N",
                    help="size of the float32 matrix product timed for the sgemm peak (default 2048)")
    group.addoption("--fc-progress", action="store_true", help="one '[i/n] op shape dtype backend' line per "
                    "benchmark instead of pytest's dots")


def pytest_configure(config):
    try:
        _selection(config)
    except ValueError as exc:
        raise pytest.UsageError(f"fastconv benchmarks: {exc}") from None
    if config.getoption("fc_threads"):
        fastconv.set_num_threads(config.getoption("fc_threads"))
    config.pluginmanager.register(_Recorder(config), "fastconv-bench-recorder")


def _selection(config):
    option = config.getoption
    return (select_cases(option("fc_ops"), option("fc_shapes"), option("fc_quick")),
            select_dtypes(option("fc_dtypes")), select_backends(option("fc_backends")))


def pytest_generate_tests(metafunc):
    cases, dtypes, backends = _selection(metafunc.config)
    for fixture, family in (("conv_case", "conv"), ("pool_case", "pool")):
        if fixture in metafunc.fixturenames:
            chosen = [case for case in cases if case.op.family == family]
            metafunc.parametrize(fixture, chosen, ids=[case.id for case in chosen])
    if "dtype" in metafunc.fixturenames:
        metafunc.parametrize("dtype", dtypes)
    if "backend" in metafunc.fixturenames:
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
        for item in items:
            params = item.callspec.params if hasattr(item, "callspec") else {}
            case = params.get("conv_case") or params.get("pool_case")
            if case is not None:
                self.labels[item.nodeid] = {"op": case.op.name, "shape": case.shape.name,
                                            "dtype": params.get("dtype"), "backend": params.get("backend")}
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
