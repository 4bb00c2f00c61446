"""Channels-last geometries: every method a compiled backend lists for them (its native "nhwc", "nhwc_scatter",
"nhwc_direct", "nhwc_gemm" and "nhwc_direct_blocked" kernels and its NCHW methods between transposes,
"nchw:<method>") agrees with naive in NCHW, on random geometries, ties and NaN included; the methods never write
their inputs; auto keeps NHWC decisions apart from NCHW ones."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import fastconv as fc
from fastconv import _backend, _transpose
from fastconv._geometry import conv_geometry, pool_geometry
from fastconv.backends._gemm_nhwc import preferred
from fastconv.backends._nhwc import pointwise_applies, pool_plan, scatter_first
from fastconv.backends._pool_tables import WINDOW_TABLES, pool_scratch
from fastconv.autotune import cache

from _helpers import assert_close, random_array, require_backend
from test_protocol import assert_plan_is_traced

COMPILED = ["numba", "cython"]
POOL_OPS = ("max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward", "avg_pool2d_backward")
RANDOM = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def nhwc(a: np.ndarray) -> np.ndarray:
    """(N, C, H, W) -> a read-only C-contiguous (N, H, W, C) copy (the methods must not write it)."""
    copy = np.ascontiguousarray(a.transpose(0, 2, 3, 1))
    copy.flags.writeable = False
    return copy


def _pool_data(data, rng) -> tuple[np.ndarray, object, dict]:
    """x (N, C, H, W) float64 with ties (few distinct values) and sometimes NaN, and pooling arguments that
    cover strides, asymmetric ("same") padding, ceil_mode and both divisor rules."""
    draw = lambda low, high: data.draw(st.integers(low, high))  # noqa: E731
    kh, kw = draw(1, 4), draw(1, 4)
    padding = data.draw(st.sampled_from(["same", "valid", (draw(0, kh // 2), draw(0, kw // 2))]))
    kwargs = dict(stride=(draw(1, 3), draw(1, 3)), padding=padding, ceil_mode=data.draw(st.booleans()))
    shape = (draw(1, 3), draw(1, 9), draw(kh, kh + 9), draw(kw, kw + 9))
    x = rng.integers(-3, 3, shape).astype(np.float64)
    try:
        pool_geometry(x, (kh, kw), **kwargs)
    except ValueError:  # "same" padding over half the window, or no output
        assume(False)
    if data.draw(st.booleans()):
        x[tuple(rng.integers(0, d) for d in shape)] = np.nan
    return x, (kh, kw), kwargs


@RANDOM
@given(data=st.data())
@pytest.mark.parametrize("name", COMPILED)
def test_every_channels_last_pool_method_matches_naive(name, data):
    module = _backend.load(require_backend(name))
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 16)))
    x, kernel, kwargs = _pool_data(data, rng)
    include_pad = data.draw(st.booleans())
    y_ref, i_ref = fc.max_pool2d(x, kernel, return_indices=True, backend="naive", **kwargs)
    dy = rng.standard_normal(y_ref.shape)
    expected = {
        "max_pool2d_forward": (y_ref, i_ref),
        "max_pool2d_backward": fc.max_pool2d_backward(dy, x, kernel, indices=i_ref, backend="naive", **kwargs),
        "avg_pool2d_forward": fc.avg_pool2d(x, kernel, count_include_pad=include_pad, backend="naive", **kwargs),
        "avg_pool2d_backward": fc.avg_pool2d_backward(dy, x, kernel, count_include_pad=include_pad,
                                                      backend="naive", **kwargs)}
    for op in POOL_OPS:
        g = pool_geometry(x, kernel, count_include_pad=include_pad, channels_last=True, **kwargs)
        args = {"max_pool2d_forward": (nhwc(x), g), "max_pool2d_backward": (nhwc(dy), nhwc(i_ref), g),
                "avg_pool2d_forward": (nhwc(x), g), "avg_pool2d_backward": (nhwc(dy), g)}[op]
        methods = module.methods(op, g)
        native = "nhwc_scatter" if op.endswith("backward") and scatter_first(op, g) else "nhwc"
        if name == "cython" and op.endswith("forward"):
            from fastconv.backends.cython_backend.pool_nhwc import planes_apply

            native = "nhwc_planes" if planes_apply(g) else native
        assert methods.default == native and any(n.startswith("nchw:") for n in methods.options), methods.options
        for method in methods.options.values():
            actual = method.run(*args)
            for a, e in zip(*(r if isinstance(r, tuple) else (r,) for r in (actual, expected[op]))):
                assert a.flags.c_contiguous and a.shape == nhwc(e).shape, (op, method.name, a.shape)
                np.testing.assert_allclose(a, nhwc(e), rtol=1e-12, atol=1e-12,
                                           err_msg=f"{op} {method.name} {x.shape} {kernel} {kwargs}")


@pytest.mark.parametrize("name", COMPILED)
def test_channels_last_max_pool_backward_takes_indices_outside_their_windows(name, rng):
    """User-given indices may name any cell of the plane: such an image is scattered, the others gathered."""
    module = _backend.load(require_backend(name))
    x = random_array(rng, (3, 5, 8, 6), np.float64)
    g = pool_geometry(x, 2, stride=2, channels_last=True)
    indices = fc.max_pool2d(x, 2, return_indices=True, backend="naive")[1]
    indices[1, 2, 0, 0] = 47  # image 1 only
    dy = random_array(rng, g.y_shape, np.float64)
    expected = fc.max_pool2d_backward(dy, x, 2, indices=indices, backend="naive")
    for method in module.methods("max_pool2d_backward", g).options.values():
        assert_close(method.run(nhwc(dy), nhwc(indices), g), nhwc(expected), np.float64, method.name)


@RANDOM
@given(data=st.data())
@pytest.mark.parametrize("name", COMPILED)
def test_every_channels_last_pointwise_method_matches_naive(name, data):
    module = _backend.load(require_backend(name))
    draw = lambda low, high: data.draw(st.integers(low, high))  # noqa: E731
    rng = np.random.default_rng(draw(0, 2 ** 16))
    x = random_array(rng, (draw(1, 3), draw(1, 20), draw(1, 7), draw(1, 7)), np.float64)
    w = random_array(rng, (draw(1, 20), x.shape[1], 1, 1), np.float64)
    b = random_array(rng, w.shape[0], np.float64) if data.draw(st.booleans()) else None
    need_dx, need_dw, need_db = (data.draw(st.booleans()) for _ in range(3))
    g = conv_geometry(x, w, b, channels_last=True)
    dy = random_array(rng, g.y_shape, np.float64)
    y_ref = fc.conv2d(x, w, b, backend="naive")
    grads_ref = fc.conv2d_backward(dy, x, w, backend="naive")
    forward, backward = module.methods("conv2d_forward", g), module.methods("conv2d_backward", g)
    assert forward.default == backward.default == "nhwc"
    for method in forward.options.values():
        assert_close(method.run(nhwc(x), w, b, g), nhwc(y_ref), np.float64, f"forward {method.name}")
    for method in backward.options.values():
        dx, dw, db = method.run(nhwc(dy), nhwc(x), w, g, need_dx, need_dw, need_db)
        for what, need, actual, expected in (("dx", need_dx, dx, nhwc(grads_ref[0])),
                                             ("dw", need_dw, dw, grads_ref[1]), ("db", need_db, db, grads_ref[2])):
            assert (actual is None) != need, (method.name, what)
            if need:
                assert_close(actual, expected, np.float64, f"backward {method.name} {what}")


@pytest.mark.parametrize("name", ["naive", "im2col", *COMPILED, "auto"])
def test_grouped_or_strided_1x1_is_not_pointwise(name, rng):
    """Only ungrouped unit-stride unpadded 1x1 layers have the pointwise "nhwc" method; other 1x1 layers run
    nhwc_gemm on the compiled backends (and auto), and an NCHW method between transposes on the others."""
    module = _backend.load(require_backend(name))
    x, w = random_array(rng, (2, 4, 5, 5), np.float32), random_array(rng, (6, 2, 1, 1), np.float32)
    g = conv_geometry(x, w, groups=2, channels_last=True)
    methods = module.methods("conv2d_forward", g)
    assert all(n.split(":")[-1] != "nhwc" for n in methods.options), name
    assert (methods.default.split(":")[-1] == "nhwc_gemm") == (name != "naive" and name != "im2col"), name
    assert_close(fc.conv2d(nhwc(x), w, groups=2, data_format="NHWC", backend=name),
                 nhwc(fc.conv2d(x, w, groups=2, backend="naive")), np.float32, name)


@pytest.mark.parametrize("name", COMPILED)
def test_non_contiguous_nhwc_inputs_and_float32(name, rng):
    """NHWC views of NCHW memory, read-only, in float32: the same results as the NCHW call, inputs untouched."""
    base = random_array(rng, (2, 16, 9, 8), np.float32)
    x = base.transpose(0, 2, 3, 1)  # an NHWC view, not contiguous
    x.flags.writeable = False
    w = random_array(rng, (8, 16, 1, 1), np.float32)
    before = base.copy()
    assert_close(fc.conv2d(x, w, data_format="NHWC", backend=name), nhwc(fc.conv2d(base, w, backend=name)),
                 np.float32, "pointwise")
    y, indices = fc.max_pool2d(x, 3, stride=2, padding=1, return_indices=True, data_format="NHWC", backend=name)
    y_ref, i_ref = fc.max_pool2d(base, 3, stride=2, padding=1, return_indices=True, backend=name)
    assert_close(y, nhwc(y_ref), np.float32, "max y")
    np.testing.assert_array_equal(indices, nhwc(i_ref))
    dx = fc.avg_pool2d_backward(np.ones_like(y), x, 3, stride=2, padding=1, data_format="NHWC", backend=name)
    assert_close(dx, nhwc(fc.avg_pool2d_backward(np.ones_like(y_ref), base, 3, stride=2, padding=1, backend=name)),
                 np.float32, "avg dx")
    np.testing.assert_array_equal(base, before)


@pytest.mark.parametrize("name", COMPILED)
def test_channels_last_plans_are_what_the_methods_allocate(name, rng, monkeypatch):
    """Native methods allocate their tables and partials; "nchw:" methods also the NCHW copies."""
    module = _backend.load(require_backend(name))
    monkeypatch.setattr(fc._threads, "MIN_WORK_PER_THREAD", 1)  # several threads even on these small layers
    x = random_array(rng, (2, 32, 24, 20), np.float32)
    for kernel, kwargs in ((2, {}), (3, dict(stride=2, padding=1))):
        g = pool_geometry(x, kernel, channels_last=True, **kwargs)
        y, indices = fc.max_pool2d(nhwc(x), kernel, return_indices=True, data_format="NHWC", backend=name, **kwargs)
        for op, args in (("max_pool2d_forward", (nhwc(x), g)), ("max_pool2d_backward", (y, indices, g)),
                         ("avg_pool2d_forward", (nhwc(x), g)), ("avg_pool2d_backward", (y, g))):
            for method in module.methods(op, g).options.values():
                assert_plan_is_traced(method, method.plan(g), args, f"{op} {kernel}")
    single_channel = random_array(rng, (1, 1, 30, 28), np.float32)  # nhwc_gemm: columns tap by tap, copies of dx
    for image, w, groups in ((x, random_array(rng, (48, 32, 1, 1), np.float32), 1),
                             (x, random_array(rng, (16, 32, 3, 3), np.float32), 1),
                             (x, random_array(rng, (64, 1, 3, 3), np.float32), 32),
                             (x, random_array(rng, (16, 8, 3, 3), np.float32), 4),
                             (single_channel, random_array(rng, (8, 1, 5, 5), np.float32), 1)):
        g = conv_geometry(image, w, groups=groups, channels_last=True)
        dy = nhwc(random_array(rng, g.y_shape, np.float32))
        for method in module.methods("conv2d_forward", g).options.values():
            assert_plan_is_traced(method, method.plan(g), (nhwc(image), w, None, g), f"forward {w.shape}")
        for need_dx, need_dw in ((True, True), (True, False), (False, True)):
            for method in module.methods("conv2d_backward", g).options.values():
                assert_plan_is_traced(method, method.plan(g, need_dx, need_dw),
                                      (dy, nhwc(image), w, g, need_dx, need_dw, True), f"backward {w.shape}")


@pytest.mark.parametrize("op", POOL_OPS)
def test_small_pool_tables_are_kept_and_large_ones_filled_per_call_all_read_only(op):
    small = pool_geometry(np.zeros((1, 6, 28, 28), np.float32), 2, channels_last=True)
    large = pool_geometry(np.zeros((1, 1, 3000, 3000), np.float32), 3, stride=1, channels_last=True)
    first, again = (pool_scratch(pool_plan(op, small), small) for _ in range(2))
    kept = WINDOW_TABLES & set(first)
    assert kept and all(first[name] is again[name] and not first[name].flags.writeable for name in kept)
    assert all(first[name] is not again[name] for name in set(first) - kept)  # the kernels' own scratch
    fresh = [pool_scratch(pool_plan(op, large), large) for _ in range(2)]
    assert all(fresh[0][name] is not fresh[1][name] for name in fresh[0])
    assert all(fresh[0][name].flags.writeable == (name not in WINDOW_TABLES) for name in fresh[0])
    reference = small.fill_tables({name: np.empty_like(first[name]) for name in kept})
    for name in kept:
        np.testing.assert_array_equal(first[name], reference[name])


@pytest.mark.parametrize("op", ["max_pool2d_backward", "avg_pool2d_backward"])
@pytest.mark.parametrize("name", COMPILED)
def test_pool_backward_scatters_few_channels_and_gathers_many(name, op):
    module = _backend.load(require_backend(name))
    lenet = pool_geometry(np.zeros((1, 6, 28, 28), np.float32), 2, channels_last=True)
    wide = pool_geometry(np.zeros((1, 64, 28, 28), np.float32), 2, channels_last=True)
    assert module.methods(op, lenet).default == "nhwc_scatter"
    assert module.methods(op, wide).default == "nhwc"
    assert "nhwc_scatter" in module.methods(op, wide).options  # auto measures it


def test_auto_decides_channels_last_apart():
    x, w = np.zeros((2, 8, 6, 6)), np.zeros((4, 8, 1, 1))
    nchw, nhwc_g = conv_geometry(x, w), conv_geometry(x, w, channels_last=True)
    assert cache.decision_key("conv2d_forward", nchw, 2) != cache.decision_key("conv2d_forward", nhwc_g, 2)
    assert "NHWC" not in cache.decision_key("conv2d_forward", nchw, 2)
    assert nhwc_g.nchw == nchw and nhwc_g.x_array_shape == (2, 6, 6, 8)


def check_depthwise(name, data, x, w, **kwargs):
    """nhwc_direct's forward and backward (random needs, with or without bias) on one depthwise layer (x NCHW)
    against naive; the default is the native method on cython only."""
    module = _backend.load(require_backend(name))
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 16)))
    b = random_array(rng, w.shape[0], x.dtype) if data.draw(st.booleans()) else None
    try:
        g = conv_geometry(x, w, b, channels_last=True, **kwargs)
    except ValueError:  # no output, or "same" with a stride
        assume(False)
    need_dx, need_dw, need_db = (data.draw(st.booleans()) for _ in range(3))
    dy = random_array(rng, g.y_shape, x.dtype)
    expected = fc.conv2d_backward(dy, x, w, backend="naive", **kwargs)
    forward, backward = module.methods("conv2d_forward", g), module.methods("conv2d_backward", g)
    assert (forward.default == backward.default == "nhwc_direct") == (name == "cython" and not pointwise_applies(g))
    y = forward.options["nhwc_direct"].run(nhwc(x), w, b, g)
    tolerance = dict(rtol=1e-12, atol=1e-12) if x.dtype == np.float64 else dict(rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(y, nhwc(fc.conv2d(x, w, b, backend="naive", **kwargs)), **tolerance)
    grads = backward.options["nhwc_direct"].run(nhwc(dy), nhwc(x), w, g, need_dx, need_dw, need_db)
    for what, need, actual, wanted in zip("dx dw db".split(), (need_dx, need_dw, need_db), grads,
                                          (nhwc(expected[0]), *expected[1:])):
        assert (actual is None) != need, what
        if need:
            assert actual.flags.c_contiguous and actual.shape == wanted.shape, what
            np.testing.assert_allclose(actual, wanted, **tolerance, err_msg=f"{what} {g}")


@RANDOM
@given(data=st.data())
@pytest.mark.parametrize("name", COMPILED)
def test_channels_last_depthwise_matches_naive(name, data):
    """nhwc_direct on random depthwise layers (one input channel per group, groups > 1): strides, dilations,
    asymmetric and "same" padding, channel multipliers, kernels as large as the input, channel counts below, at and
    past a whole register block."""
    draw = lambda low, high: data.draw(st.integers(low, high))  # noqa: E731
    rng = np.random.default_rng(draw(0, 2 ** 16))
    c, r, s = data.draw(st.one_of(st.integers(2, 9), st.sampled_from([16, 32, 48, 70]))), draw(1, 4), draw(1, 4)
    x = random_array(rng, (draw(1, 3), c, draw(r, r + 8), draw(s, s + 8)), np.float64)
    w = random_array(rng, (c * draw(1, 3), 1, r, s), np.float64)
    padding = data.draw(st.sampled_from(["same", "valid", ((draw(0, r), draw(0, r)), (draw(0, s), draw(0, s)))]))
    check_depthwise(name, data, x, w, stride=(draw(1, 3), draw(1, 3)), dilation=(draw(1, 2), draw(1, 2)),
                    padding=padding, groups=c)


@RANDOM
@given(data=st.data())
@pytest.mark.parametrize("name", COMPILED)
def test_channels_last_depthwise_pixel_runs_match_naive(name, data):
    """One channel per group on rows wide enough for runs of eight pixels in registers, tails of four, two and one
    and padded edges: whole registers of channels with and without leftover channels, strides and dilations 1-2 (a
    strided grad of x has no regular runs), float32 and float64."""
    draw = lambda low, high: data.draw(st.integers(low, high))  # noqa: E731
    rng = np.random.default_rng(draw(0, 2 ** 16))
    c, r, s = data.draw(st.sampled_from([16, 17, 35, 48])), draw(1, 5), draw(1, 5)
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    x = random_array(rng, (draw(1, 2), c, draw(r, r + 4), draw(s + 8, s + 24)), dtype)
    w = random_array(rng, (c, 1, r, s), dtype)
    padding = data.draw(st.sampled_from(["same", "valid", ((draw(0, r), draw(0, r)), (draw(0, s), draw(0, s)))]))
    check_depthwise(name, data, x, w, stride=(draw(1, 2), draw(1, 2)), dilation=(draw(1, 2), draw(1, 2)),
                    padding=padding, groups=c)


@RANDOM
@given(data=st.data())
@pytest.mark.parametrize("name", COMPILED)
def test_channels_last_depthwise_3x3_matches_naive(name, data):
    """3x3 depthwise layers, whose grad of w has its own kernel in cython (the nine taps' sums over a whole row in
    registers, for rows whose three taps are all in the image): rows of 1 to 40 pixels, leftover channels past the
    last register, padding that leaves the first and last rows with taps outside, strides and dilations 1-2."""
    draw = lambda low, high: data.draw(st.integers(low, high))  # noqa: E731
    rng = np.random.default_rng(draw(0, 2 ** 16))
    c = data.draw(st.sampled_from([8, 16, 17, 35, 48]))
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    x = random_array(rng, (draw(1, 2), c, draw(3, 9), draw(3, 42)), dtype)
    w = random_array(rng, (c, 1, 3, 3), dtype)
    padding = data.draw(st.sampled_from(["same", "valid", ((draw(0, 2), draw(0, 2)), (draw(0, 2), draw(0, 2)))]))
    check_depthwise(name, data, x, w, stride=(draw(1, 2), draw(1, 2)), dilation=(draw(1, 2), draw(1, 2)),
                    padding=padding, groups=c)


@pytest.mark.parametrize("pixels, channels", [(1, 1), (3, 16), (4, 17), (7, 30), (129, 16), (1001, 33), (50, 64)])
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", COMPILED)
def test_channels_last_bias_grad_sums_rows_in_four_chains(name, dtype, rng, pixels, channels, threads):
    """db of channels-last dy (pixels, k), the native methods' shared sum: chunks of rows per thread (some empty),
    tiles of 64 rows, blocks of 16 channels and a narrower last one (cython), four partial sums per channel and a
    tail of 0-3 rows; against numpy's float64 sum."""
    import importlib

    from fastconv._threads import parallel_region

    reduce = importlib.import_module(f"fastconv.backends.{require_backend(name)}_backend._reduce")
    dy = random_array(rng, (pixels, channels), dtype)
    db = np.empty(channels, dtype)
    with parallel_region(threads, numba=name == "numba") as region:
        reduce.channels_last_bias_grad(dy, db, region)
    assert_close(db, dy.astype(np.float64).sum(axis=0).astype(dtype), dtype, f"{pixels} rows of {channels}")


@pytest.mark.parametrize("name", COMPILED)
def test_channels_last_depthwise_public_calls(name, rng):
    """Through the public functions in float32, read-only NHWC views: the NCHW results, inputs untouched."""
    base = random_array(rng, (2, 12, 9, 8), np.float32)
    x = base.transpose(0, 2, 3, 1)
    x.flags.writeable = False
    w = random_array(rng, (24, 1, 3, 3), np.float32)
    before = base.copy()
    kwargs = dict(stride=2, padding=1, groups=12)
    y = fc.conv2d(x, w, data_format="NHWC", backend=name, **kwargs)
    assert_close(y, nhwc(fc.conv2d(base, w, backend=name, **kwargs)), np.float32, "y")
    grads = fc.conv2d_backward(np.ones_like(y), x, w, data_format="NHWC", backend=name, **kwargs)
    expected = fc.conv2d_backward(np.ones(fc.conv2d(base, w, **kwargs).shape, np.float32), base, w, backend=name,
                                  **kwargs)
    for what, actual, wanted in zip("dx dw db".split(), grads, (nhwc(expected[0]), *expected[1:])):
        assert_close(actual, wanted, np.float32, what)
    np.testing.assert_array_equal(base, before)


@pytest.mark.parametrize("name", COMPILED)
def test_a_single_channel_image_is_not_depthwise_in_channels_last(name):
    """C == 1 with one group is channelwise but not depthwise: nhwc_gemm runs it, or nhwc_direct_blocked in cython
    (nhwc_direct's channel loops over one input channel were slower there). The output rows are wider than the
    blocked micro-kernel's pixel run on any instruction set (12 pixels with AVX-512), and the 8 float64 filters
    fill at least half of its output-channel block (16 float64 lanes with AVX-512, where blocked_direct_pays
    would turn to gemm below half)."""
    g = conv_geometry(np.ones((1, 1, 28, 28)), np.ones((8, 1, 5, 5)), channels_last=True)
    methods = _backend.load(require_backend(name)).methods("conv2d_forward", g)
    assert "nhwc_direct" not in methods.options
    assert methods.default == ("nhwc_direct_blocked" if name == "cython" else "nhwc_gemm")


def _random_layer(data, rng, x, w, groups: int, max_stride: int) -> tuple:
    """A random bias (or None), conv2d arguments (strides up to max_stride, dilations up to 2, asymmetric, "same"
    or no padding) and their channels-last geometry for x (N, C, H, W) and w."""
    draw = lambda low, high: data.draw(st.integers(low, high))  # noqa: E731
    r, s = w.shape[2:]
    padding = data.draw(st.sampled_from(["same", "valid", ((draw(0, r), draw(0, r)), (draw(0, s), draw(0, s)))]))
    kwargs = dict(stride=(draw(1, max_stride), draw(1, max_stride)), dilation=(draw(1, 2), draw(1, 2)),
                  padding=padding, groups=groups)
    b = random_array(rng, w.shape[0], x.dtype) if data.draw(st.booleans()) else None
    try:
        return b, kwargs, conv_geometry(x, w, b, channels_last=True, **kwargs)
    except ValueError:  # no output, or "same" with a stride
        assume(False)


def _assert_channels_last_grads(grads, expected, needs, dtype, g) -> None:
    """A native method's (dx (N, H, W, C), dw, db) against naive's NCHW ones: None exactly where not needed, else
    C-contiguous, of the expected shape and dtype, and close."""
    for what, need, actual, wanted in zip("dx dw db".split(), needs, grads, (nhwc(expected[0]), *expected[1:])):
        assert (actual is None) != need, what
        if need:
            assert actual.flags.c_contiguous and actual.shape == wanted.shape and actual.dtype == dtype, what
            assert_close(actual, wanted, dtype, f"{what} {g}")


@RANDOM
@given(data=st.data())
@pytest.mark.parametrize("name", COMPILED)
def test_channels_last_gemm_matches_naive(name, data, monkeypatch):
    """nhwc_gemm on random layers: groups, single-channel images, strides, dilations, asymmetric and "same"
    padding, kernels as large as the input, batch 1, both dtypes, read-only inputs; on several threads, so that
    batch 1 takes the private copies of dx. It is the default except on depthwise layers and where the NCHW default
    is Winograd (and the pointwise method's layers)."""
    module = _backend.load(require_backend(name))
    monkeypatch.setattr(fc._threads, "MIN_WORK_PER_THREAD", 1)
    draw = lambda low, high: data.draw(st.integers(low, high))  # noqa: E731
    rng = np.random.default_rng(draw(0, 2 ** 16))
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    groups, r, s = draw(1, 3), draw(1, 5), draw(1, 5)
    c = groups * data.draw(st.sampled_from([1, 1, 2, 3, 5]))
    x = random_array(rng, (draw(1, 3), c, draw(r, r + 9), draw(s, s + 9)), dtype)
    w = random_array(rng, (groups * draw(1, 4), c // groups, r, s), dtype)
    b, kwargs, g = _random_layer(data, rng, x, w, groups, max_stride=3)
    need_dx, need_dw, need_db = (data.draw(st.booleans()) for _ in range(3))
    dy = random_array(rng, g.y_shape, dtype)
    expected = fc.conv2d_backward(dy, x, w, backend="naive", **kwargs)
    forward, backward = module.methods("conv2d_forward", g), module.methods("conv2d_backward", g)
    native = preferred(g) and not pointwise_applies(g)  # the forward default may be nhwc_direct_blocked (cython)
    single_plane = name == "cython" and c == 1  # nhwc_plane_gemm's layers
    assert (backward.default == ("nhwc_plane_gemm" if single_plane else "nhwc_gemm")) == native
    assert (forward.default in ("nhwc_gemm", "nhwc_direct_blocked")) == native
    assert_close(forward.options["nhwc_gemm"].run(nhwc(x), w, b, g),
                 nhwc(fc.conv2d(x, w, b, backend="naive", **kwargs)), dtype, f"y {g}")
    grads = backward.options["nhwc_gemm"].run(nhwc(dy), nhwc(x), w, g, need_dx, need_dw, need_db)
    _assert_channels_last_grads(grads, expected, (need_dx, need_dw, need_db), dtype, g)


@RANDOM
@given(data=st.data())
def test_channels_last_plane_gemm_matches_naive(data, monkeypatch):
    """cython's nhwc_plane_gemm, the gemm backward reading channels-last dy in place, on random single-channel
    layers: strides, dilations, asymmetric and "same" padding, kernels as large as the input, batch 1, both dtypes,
    any gradients asked for, several threads; the default backward there (but for 1x1 layers, pointwise's)."""
    module = _backend.load(require_backend("cython"))
    monkeypatch.setattr(fc._threads, "MIN_WORK_PER_THREAD", 1)
    draw = lambda low, high: data.draw(st.integers(low, high))  # noqa: E731
    rng = np.random.default_rng(draw(0, 2 ** 16))
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    r, s = draw(1, 5), draw(1, 5)
    x = random_array(rng, (draw(1, 3), 1, draw(r, r + 12), draw(s, s + 12)), dtype)
    w = random_array(rng, (draw(1, 9), 1, r, s), dtype)
    b, kwargs, g = _random_layer(data, rng, x, w, 1, max_stride=3)
    need_dx, need_dw, need_db = (data.draw(st.booleans()) for _ in range(3))
    dy = random_array(rng, g.y_shape, dtype)
    expected = fc.conv2d_backward(dy, x, w, backend="naive", **kwargs)
    backward = module.methods("conv2d_backward", g)
    assert backward.default == ("nhwc" if pointwise_applies(g) else "nhwc_plane_gemm")
    grads = backward.options["nhwc_plane_gemm"].run(nhwc(dy), nhwc(x), w, g, need_dx, need_dw, need_db)
    _assert_channels_last_grads(grads, expected, (need_dx, need_dw, need_db), dtype, g)


@RANDOM
@given(data=st.data())
def test_channels_last_blocked_direct_matches_naive(data, monkeypatch):
    """nhwc_direct_blocked (cython) on random layers where it applies: one group or several input channels per
    group, output channels past a block of KB, kernels up to 11 and as large as the input, strides, dilations,
    asymmetric and "same" padding, batch 1, both dtypes, read-only inputs, several threads. It is the forward
    default where blocked_direct is the NCHW default; the backward default stays nhwc_gemm's."""
    module = _backend.load(require_backend("cython"))
    monkeypatch.setattr(fc._threads, "MIN_WORK_PER_THREAD", 1)
    draw = lambda low, high: data.draw(st.integers(low, high))  # noqa: E731
    rng = np.random.default_rng(draw(0, 2 ** 16))
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    groups, r, s = draw(1, 3), draw(1, 11), draw(1, 11)
    cg = data.draw(st.sampled_from([1, 2, 3, 4, 5, 17])) if groups == 1 else data.draw(st.sampled_from([2, 3, 17]))
    x = random_array(rng, (draw(1, 3), groups * cg, draw(r, r + 12), draw(s, s + 12)), dtype)
    w = random_array(rng, (groups * draw(1, 37), cg, r, s), dtype)
    b, kwargs, g = _random_layer(data, rng, x, w, groups, max_stride=4)
    forward = module.methods("conv2d_forward", g)
    method = forward.options["nhwc_direct_blocked"]
    expected_default = module.conv.default_method(g.nchw) == "blocked_direct"
    assert (forward.default == "nhwc_direct_blocked") == expected_default
    assert module.methods("conv2d_backward", g).default != "nhwc_direct_blocked"
    y = method.run(nhwc(x), w, b, g)
    assert y.flags.c_contiguous and y.dtype == dtype
    assert_close(y, nhwc(fc.conv2d(x, w, b, backend="naive", **kwargs)), dtype, f"y {g}")
    assert_plan_is_traced(method, method.plan(g), (nhwc(x), w, b, g), f"forward {g}")


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape", [(1, 1, 1), (2, 65, 3), (3, 64, 130), (1, 200, 64)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_tiled_transpose_swaps_the_last_axes(shape, dtype, threads, monkeypatch):
    """swap_last_axes on partial tiles at both edges, one tile and many, as numpy's transpose: by the tiled
    kernel on two threads (for any work), by numpy's copy on one."""
    src = random_array(np.random.default_rng(0), shape, dtype)
    monkeypatch.setattr(fc._threads, "MIN_WORK_PER_THREAD", 1)
    before = fc.get_num_threads()
    fc.set_num_threads(threads)
    try:
        swapped = _transpose.swap_last_axes(src)
    finally:
        fc.set_num_threads(before)
    assert swapped.flags.c_contiguous and swapped.dtype == dtype
    np.testing.assert_array_equal(swapped, src.transpose(0, 2, 1))


@pytest.mark.parametrize("shape, moves", [((2, 1, 5, 7), False), ((3, 4, 1, 1), False), ((2, 3, 5, 7), True),
                                          ((1, 2, 1, 3), True)])
def test_layout_transposes_are_views_where_the_layouts_share_memory(shape, moves):
    """One channel or one pixel: NCHW and NHWC are the same memory, and both transposes return views; otherwise
    new arrays. The "nchw:" methods' plans hold copies of the moving arrays only."""
    from fastconv._layout import moves as layouts_differ
    from fastconv.backends._channels_last import _copies

    nchw = random_array(np.random.default_rng(1), shape, np.float32)
    channels_last = _transpose.to_channels_last(nchw)
    back = _transpose.to_channels_first(channels_last)
    assert layouts_differ(shape) == moves
    for made, source in ((channels_last, nchw), (back, channels_last)):
        assert made.flags.c_contiguous and np.shares_memory(made, source) != moves
    np.testing.assert_array_equal(channels_last, nchw.transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(back, nchw)
    g = pool_geometry(nchw, 1, channels_last=True)
    arguments, results = _copies("avg_pool2d_forward", g, "nchw")
    assert (set(arguments), set(results)) == (({"nchw_x"}, {"nchw_y"}) if moves else (set(), set()))


@pytest.mark.parametrize("shape, dtype, kernel, kwargs, planes", [
    ((1, 6, 28, 28), np.float32, 2, {}, True),  # LeNet's pool at batch 1: 196 outputs, 6 channels
    ((2, 3, 13, 13), np.float64, 3, dict(stride=2), True),  # overlapping windows, 3 float64 channels
    ((2, 7, 16, 16), np.float32, 1, {}, True),  # 256 outputs, the most a plane-at-once loop takes
    ((2, 6, 9, 9), np.float32, 3, dict(stride=2, padding=1), False),  # windows reaching into the padding
    ((1, 8, 28, 28), np.float32, 2, {}, False),  # 8 float32 channels fill a vector
    ((1, 4, 40, 40), np.float32, 2, {}, False),  # 400 outputs
])
def test_cython_pools_of_few_channels_run_planes(rng, shape, dtype, kernel, kwargs, planes):
    """Channels-last pooling of fewer channels than a vector holds, on small maps with every window inside, runs
    "nhwc_planes" forward by default (each channel a plane of cells C apart); ties, -inf and NaN as naive."""
    module = _backend.load(require_backend("cython"))
    x = rng.integers(0, 3, size=shape).astype(dtype)
    x[:, :, ::4, :] = -np.inf
    x[0, 1, 5, 3] = x[-1, -1, 6, 6] = x[-1, -1, 6, 7] = np.nan
    for op in ("max_pool2d_forward", "avg_pool2d_forward"):
        g = pool_geometry(x, kernel, channels_last=True, **kwargs)
        methods = module.methods(op, g)
        assert (methods.default == "nhwc_planes") == planes, op
        if planes:
            assert_plan_is_traced(methods.chosen, methods.chosen.plan(g), (nhwc(x), g), f"{op} {shape}")
    y_ref, idx_ref = fc.max_pool2d(x, kernel, return_indices=True, backend="naive", **kwargs)
    y, idx = fc.max_pool2d(nhwc(x), kernel, return_indices=True, data_format="NHWC", backend="cython", **kwargs)
    np.testing.assert_array_equal(y, nhwc(y_ref))
    np.testing.assert_array_equal(idx, nhwc(idx_ref))
    finite = np.nan_to_num(x, nan=1.5, neginf=-2.0)
    assert_close(fc.avg_pool2d(nhwc(finite), kernel, data_format="NHWC", backend="cython", **kwargs),
                 nhwc(fc.avg_pool2d(finite, kernel, backend="naive", **kwargs)), dtype)
