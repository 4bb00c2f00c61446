"""The pytest-benchmark tests: every selected op x shape x dtype x backend, parametrized by fastconv.bench.plugin.

Each test builds its data, makes untimed warm-up calls (numba compiles; auto is called until it has decided: it
measures a bucket on its MEASURE_ON_VISIT-th call, and the timed rounds must run its choice, not the heuristic's),
measures the memory one call allocates (tracemalloc), then times the call with pytest-benchmark. extra_info holds
what the report needs: op, shape, backend, dtype, flops or bytes, GFLOP/s or GB/s, % of sgemm, peak bytes, for
auto the kernels it chose, and for a network's layer its network, name, count and batch size.
"""

from __future__ import annotations

import tracemalloc

import pytest

from fastconv import _backend, _scratch
from fastconv.bench.cases import Case, case_named, labelled
from fastconv.bench.ops import fastconv_call, inputs, work
from fastconv.bench.shapes import SMALL_SHAPES


@pytest.mark.fastconv_family("conv")
def test_conv(benchmark, op: str, shape: str, dtype: str, layout: str, backend: str, sgemm_gflops: float):
    _benchmark_case(benchmark, case_named(op, shape), dtype, layout, backend, sgemm_gflops)


@pytest.mark.fastconv_family("pool")
def test_pool(benchmark, op: str, shape: str, dtype: str, layout: str, backend: str):
    _benchmark_case(benchmark, case_named(op, shape), dtype, layout, backend, sgemm_gflops=None)


def _benchmark_case(benchmark, case: Case, dtype: str, layout: str, backend: str,
                    sgemm_gflops: float | None) -> None:
    call = _prepared_call(case, dtype, layout, backend)
    _warm_up(call, case, dtype, layout, backend)
    amount = work(case.op, case.shape, dtype)
    benchmark.group = case.group(dtype)
    benchmark.extra_info.update(op=case.op.name, shape=case.shape.name, describe=case.describe(),
                                backend=labelled(backend, layout), layout=layout, dtype=dtype,
                                peak_bytes=_peak_bytes(call, backend),
                                kernel=_auto_kernels(case, dtype, layout) if backend == "auto" else None,
                                **case.network_info(), **amount)
    benchmark(call)
    if benchmark.stats is None:  # --benchmark-disable: ran once, nothing timed
        return
    best = benchmark.stats.stats.min
    if "flops" in amount:
        gflops = amount["flops"] / best / 1e9
        benchmark.extra_info.update(gflops=gflops, sgemm_gflops=sgemm_gflops,
                                    pct_sgemm=100 * gflops / sgemm_gflops if dtype == "float32" else None)
    else:
        benchmark.extra_info.update(gbytes_per_s=amount["bytes"] / best / 1e9)


def _warm_up(call, case: Case, dtype: str, layout: str, backend: str) -> None:
    """One untimed call; for auto, calls until every kernel of the case is decided (measured, and a switch tried:
    at most MEASURE_ON_VISIT + TRIAL_CALLS calls)."""
    call()
    if backend == "auto":
        auto = _backend.load("auto")
        for _ in range(auto.MEASURE_ON_VISIT + auto.TRIAL_CALLS):
            if "?" not in _auto_kernels(case, dtype, layout):
                return
            call()


def _prepared_call(case: Case, dtype: str, layout: str, backend: str):
    """The call to time, on freshly built inputs; pytest.skip (with the reason) when the backend cannot run."""
    if backend == "torch":
        if layout != "NCHW":
            pytest.skip("the torch reference row runs NCHW only")
        try:
            from fastconv.bench import torch_ref
        except ImportError as exc:
            pytest.skip(f"torch reference row: torch is not importable ({exc})")
        return torch_ref.torch_call(case.op, case.shape, inputs(case.op, case.shape, dtype))
    if backend == "naive" and not case.shape.small:
        pytest.skip(f"naive (Python loops) runs only on the small shapes {', '.join(SMALL_SHAPES)}")
    reason = _backend.unavailable_reason(backend)
    if reason is not None:
        pytest.skip(reason)
    return fastconv_call(case.op, case.shape, inputs(case.op, case.shape, dtype, layout=layout), backend, layout)


def _peak_bytes(call, backend: str) -> int | None:
    """Bytes allocated at the peak of one call, above what was allocated before it (None for torch, whose
    allocator tracemalloc cannot see), its scratch included: the scratch kept from earlier calls is released
    first. Memory from C malloc (OpenMP buffers, BLAS) is not counted either."""
    if backend == "torch":
        return None
    _scratch.release()
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        call()
        return tracemalloc.get_traced_memory()[1] - before
    finally:
        if started:
            tracemalloc.stop()


def _auto_kernels(case: Case, dtype: str, layout: str) -> str:
    """The candidates auto runs for this case's kernels in this layout, e.g. "fwd=cython:winograd
    bwd=numba:rotated"; an unmeasured choice (the heuristic's) ends in "?"."""
    auto = _backend.load("auto")
    g = case.shape.geometry(dtype, channels_last=layout == "NHWC")

    def label(kernel: str) -> str:
        return auto.chosen(kernel, g) or auto.heuristic_method(kernel, g)[0] + "?"

    return " ".join(f"{_KERNEL_LABELS[kernel.rsplit('_', 1)[1]]}={label(kernel)}" for kernel in case.op.kernels)


_KERNEL_LABELS = {"forward": "fwd", "backward": "bwd"}
