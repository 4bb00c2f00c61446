"""The backend protocol (fastconv.backends._protocol): every backend module provides the six kernels and
methods(op, g); every method of the compiled backends, not only the default, agrees with naive; and each
method's plan is what the method allocates."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastconv as fc
from fastconv import _backend, _scratch
from fastconv._geometry import conv_geometry, pool_geometry
from fastconv.backends._protocol import Backend, Methods

from _helpers import CONV_CASES, POOL_CASES, ConvCase, PoolCase, assert_close, random_array, require_backend

COMPILED = ["numba", "cython"]
POOL_OPS = ("max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward", "avg_pool2d_backward")

#: shapes that reach the compiled backends' special paths (fused 3x3 depthwise rows and their borders,
#: Winograd and pointwise GEMMs, the rotated grad of x) in ways the shared table does not
#: (the front end answers zero-size calls itself: kernels never see them)
METHOD_CASES = [case for case in CONV_CASES if 0 not in case.x + case.w] + [
    ConvCase("depthwise_dilated", (2, 3, 9, 10), (3, 1, 3, 3), dict(groups=3, dilation=2, padding=2)),
    ConvCase("depthwise_asym_pad", (2, 3, 7, 8), (3, 1, 3, 3), dict(groups=3, padding=((0, 2), (2, 0)))),
    ConvCase("depthwise_narrow", (2, 2, 5, 2), (4, 1, 3, 3), dict(groups=2, padding=1)),
    ConvCase("depthwise_no_pad", (1, 4, 6, 6), (4, 1, 3, 3), dict(groups=4)),
    ConvCase("winograd_16", (2, 16, 9, 10), (16, 16, 3, 3), dict(padding=1)),
    ConvCase("winograd_grouped", (1, 32, 6, 7), (32, 16, 3, 3), dict(padding=1, groups=2)),
    ConvCase("pointwise_wide", (3, 24, 5, 4), (20, 24, 1, 1)),
    ConvCase("depthwise_5x5_stride2", (2, 3, 11, 9), (3, 1, 5, 5), dict(groups=3, stride=2, padding=2)),
    ConvCase("depthwise_1x7_mixed", (1, 2, 8, 13), (4, 1, 1, 7),
             dict(groups=2, stride=(2, 3), dilation=(1, 2), padding=((1, 0), (3, 2)))),
]

#: pooling inputs, and global windows (one per plane, padded or not) that take the "global" method
METHOD_POOL_CASES = [case for case in POOL_CASES if 0 not in case.x] + [
    PoolCase("global_7x7", (2, 5, 7, 7), 7),
    PoolCase("global_padded", (1, 3, 5, 6), (6, 7), dict(padding=(1, 1))),
    PoolCase("global_rectangle", (3, 2, 4, 9), (4, 9)),
]

#: layers large enough for several threads and tiles, where a plan that forgot a buffer shows
PLAN_CASES = [
    ConvCase("resnet_like", (2, 32, 20, 20), (32, 32, 3, 3), dict(padding=1)),
    ConvCase("strided", (2, 16, 21, 21), (24, 16, 3, 3), dict(stride=2, padding=1)),
    ConvCase("pointwise", (2, 32, 16, 16), (48, 32, 1, 1)),
    ConvCase("depthwise", (2, 32, 18, 18), (32, 1, 3, 3), dict(groups=32, padding=1)),
    ConvCase("stem_7x7", (2, 3, 40, 40), (16, 3, 7, 7), dict(stride=2, padding=3)),
    ConvCase("grouped", (2, 32, 12, 12), (32, 8, 3, 3), dict(groups=4, padding=1)),
]

#: what a plan may leave out: small Python objects and numpy temporaries (a zero bias, tap offsets, tables of a few
#: rows, the dispatch's objects), two pages: a method in two phases (rotated: dw, then dx by a forward method, or a
#: channels-last method between transposes) measured up to 4.4 KB over its plan on the small cases below
UNPLANNED = 2 * 4096


@pytest.mark.parametrize("name", list(_backend.BACKENDS))
def test_every_backend_module_follows_the_protocol(name):
    module = _backend.load(require_backend(name))
    assert isinstance(module, Backend)
    x, w = np.ones((1, 2, 5, 5)), np.ones((3, 2, 3, 3))
    conv, pool = conv_geometry(x, w), pool_geometry(x, 2)
    for op in _backend.KERNELS:
        methods = module.methods(op, conv if op.startswith("conv") else pool)
        assert isinstance(methods, Methods) and methods.default in methods.options, (name, op)
        assert all(key == method.name for key, method in methods.options.items())


def _conv_operands(case: ConvCase, dtype, rng):
    x, w, b = (random_array(rng, shape, dtype) for shape in (case.x, case.w, case.w[0]))
    g = conv_geometry(x, w, b, **case.kwargs)
    return x, w, b, random_array(rng, g.y_shape, dtype), g


@pytest.mark.parametrize("name", COMPILED)
@pytest.mark.parametrize("case", METHOD_CASES, ids=str)
def test_every_conv_method_matches_naive(case, name, dtype, rng):
    _check_every_conv_method(_backend.load(require_backend(name)), case, dtype, rng)


def _check_every_conv_method(module, case: ConvCase, dtype, rng) -> None:
    """Each forward and backward method of the module against naive on the case's random operands."""
    x, w, b, dy, g = _conv_operands(case, dtype, rng)
    y_ref = fc.conv2d(x, w, b, backend="naive", **case.kwargs)
    grads_ref = fc.conv2d_backward(dy, x, w, backend="naive", **case.kwargs)
    for method in module.methods("conv2d_forward", g).options.values():
        assert_close(method.run(x, w, b, g), y_ref, dtype, f"{case} {case.kwargs} forward {method.name}")
    for method in module.methods("conv2d_backward", g).options.values():
        for grad, actual, expected in zip(("dx", "dw", "db"), method.run(dy, x, w, g, True, True, True), grads_ref):
            assert_close(actual, expected, dtype, f"{case} {case.kwargs} backward {method.name} {grad}")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
@pytest.mark.parametrize("name", COMPILED)
def test_every_channelwise_method_matches_naive_on_random_geometries(name, data):
    """Depthwise layers (with channel multipliers) of random kernel, stride, dilation and padding, float64."""
    module = _backend.load(require_backend(name))
    draw = lambda low, high: data.draw(st.integers(low, high))  # noqa: E731
    c, multiplier, r, s = draw(1, 3), draw(1, 2), draw(1, 5), draw(1, 5)
    kwargs = dict(groups=c, stride=(draw(1, 3), draw(1, 3)), dilation=(draw(1, 2), draw(1, 2)),
                  padding=((draw(0, r - 1), draw(0, r - 1)), (draw(0, s - 1), draw(0, s - 1))))
    case = ConvCase("random_channelwise", (draw(1, 2), c, draw(1, 12) + 2 * r, draw(1, 12) + 2 * s),
                    (c * multiplier, 1, r, s), kwargs)
    _check_every_conv_method(module, case, np.float64, np.random.default_rng(draw(0, 2 ** 16)))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
@pytest.mark.parametrize("name", COMPILED)
def test_every_forward_method_matches_naive_on_random_geometries(name, data):
    """Random layers of few input channels (and some more), channel counts off the register blocks, kernels
    1..11 of either shape, stride 1..4, dilation 1..2, asymmetric or "same" padding, read-only operands, float32
    and float64: what blocked_direct covers, for every forward method that applies."""
    module = _backend.load(require_backend(name))
    draw = lambda low, high: data.draw(st.integers(low, high))  # noqa: E731
    groups = data.draw(st.sampled_from([1, 1, 1, 2, 3]))
    c, k = groups * data.draw(st.sampled_from([1, 2, 3, 4, 5, 17])), groups * draw(1, 40)
    r, s, dh, dw = draw(1, 11), draw(1, 11), draw(1, 2), draw(1, 2)
    padding = data.draw(st.sampled_from(["same", None]))
    padding = padding or ((draw(0, r - 1), draw(0, r - 1)), (draw(0, s - 1), draw(0, s - 1)))
    h, w = draw((r - 1) * dh + 1, (r - 1) * dh + 16), draw((s - 1) * dw + 1, (s - 1) * dw + 16)
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(0, 2 ** 16))
    x, wt, b = (random_array(rng, shape, dtype) for shape in ((draw(1, 2), c, h, w), (k, c // groups, r, s), (k,)))
    for array in (x, wt, b):
        array.flags.writeable = False
    kwargs = dict(stride=(draw(1, 4), draw(1, 4)), dilation=(dh, dw), padding=padding, groups=groups)
    g = conv_geometry(x, wt, b, **kwargs)
    expected = fc.conv2d(x, wt, b, backend="naive", **kwargs)
    for method in module.methods("conv2d_forward", g).options.values():
        assert_close(method.run(x, wt, b, g), expected, dtype, f"{g} forward {method.name}")


def _pool_runs(x, case, dtype, rng):
    """(op, geometry, args) of every pooling op on case's input."""
    max_g = pool_geometry(x, case.kernel_size, **case.kwargs)
    avg_g = pool_geometry(x, case.kernel_size, count_include_pad=False, **case.kwargs)
    indices = fc.max_pool2d(x, case.kernel_size, return_indices=True, backend="naive", **case.kwargs)[1]
    dy = random_array(rng, max_g.y_shape, dtype)
    return [("max_pool2d_forward", max_g, (x, max_g)), ("max_pool2d_backward", max_g, (dy, indices, max_g)),
            ("avg_pool2d_forward", avg_g, (x, avg_g)), ("avg_pool2d_backward", avg_g, (dy, avg_g))]


@pytest.mark.parametrize("name", COMPILED)
@pytest.mark.parametrize("case", METHOD_POOL_CASES, ids=str)
def test_every_pool_method_matches_naive(case, name, rng):
    module, naive = _backend.load(require_backend(name)), _backend.load("naive")
    x = random_array(rng, case.x, np.float64)
    for op, g, args in _pool_runs(x, case, np.float64, rng):
        expected = getattr(naive, op)(*args)
        for method in module.methods(op, g).options.values():
            actual = method.run(*args)
            for a, e in zip(*(r if isinstance(r, tuple) else (r,) for r in (actual, expected))):
                assert_close(a, e, np.float64, f"{case} {op} {method.name}")


def assert_plan_is_traced(method, plan, args, what: str) -> None:
    """The peak bytes traced while method runs lie between its plan's scratch and that plus its outputs (all
    outputs exist at the peak when a method allocates them first; a method in phases may allocate some later).
    The scratch kept from earlier calls is released first, so that the call allocates all of it. A method in
    phases keeps its scratch arena through its later phases (fastconv._scratch), which the bound allows for."""
    run = method.run
    run(*args)  # compiles, and fills what is cached
    _scratch.release()
    tracemalloc.start()
    try:
        outputs = run(*args)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    output_bytes = sum(a.nbytes for a in outputs if a is not None)
    kept = _scratch.kept_bytes() if plan.phases else 0
    assert plan.nbytes - UNPLANNED <= peak <= plan.nbytes + output_bytes + kept + UNPLANNED, (
        f"{what} {method.name}: planned {plan.nbytes:,} bytes of scratch, traced a peak of {peak:,} "
        f"with {output_bytes:,} of outputs and an arena of {kept:,} kept")


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("name", COMPILED)
@pytest.mark.parametrize("case", PLAN_CASES, ids=str)
def test_conv_plans_are_what_the_methods_allocate(case, name, threads, rng, monkeypatch):
    module = _backend.load(require_backend(name))
    monkeypatch.setattr(fc._threads, "MIN_WORK_PER_THREAD", 1)  # several threads even on these small layers
    fc.set_num_threads(threads)
    x, w, b, dy, g = _conv_operands(case, np.float32, rng)
    runs = [("conv2d_forward", (x, w, b, g), ()),
            *(("conv2d_backward", (dy, x, w, g, need_dx, need_dw, True), (need_dx, need_dw))
              for need_dx, need_dw in ((True, True), (True, False), (False, True)))]
    for op, args, flags in runs:
        for method in module.methods(op, g).options.values():
            assert_plan_is_traced(method, method.plan(g, *flags), args, f"{case} {op}{flags}")


@pytest.mark.parametrize("name", COMPILED)
@pytest.mark.parametrize("case", METHOD_POOL_CASES, ids=str)
def test_pool_plans_are_what_the_methods_allocate(case, name, rng):
    module = _backend.load(require_backend(name))
    x = random_array(rng, tuple(4 * d if i > 1 else d for i, d in enumerate(case.x)), np.float32)
    for op, g, args in _pool_runs(x, case, np.float32, rng):
        for method in module.methods(op, g).options.values():
            assert_plan_is_traced(method, method.plan(g), args, f"{case} {op}")


def test_a_plan_larger_than_memory_is_a_memory_error_before_allocating(monkeypatch):
    module = _backend.load(require_backend("numba"))
    monkeypatch.setattr(fc._memory, "physical_memory", lambda: 1000)
    x, w = np.ones((2, 3, 9, 9), np.float32), np.ones((4, 3, 3, 3), np.float32)
    g = conv_geometry(x, w)
    method = module.methods("conv2d_forward", g).options["gemm"]
    with pytest.raises(MemoryError, match=r"the kernel's scratch: needs [\d,]+ bytes .*smaller batch"):
        method.run(x, w, None, g)
