"""Winograd F(4x4, 3x3) on channels-last arrays ("nhwc_winograd", numba and cython): agreement with naive on random
3x3 stride-1 geometries in both dtypes, both passes with every need flag, blocks that span images, where it is
listed and its default, threads, read-only inputs and plans."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import fastconv as fc
from fastconv import _backend
from fastconv._geometry import conv_geometry
from fastconv.backends import _winograd_nhwc as winograd_nhwc

from _helpers import assert_close, random_array, require_backend
from test_channels_last import nhwc
from test_protocol import assert_plan_is_traced
from test_winograd import NOT_WINOGRAD

COMPILED = ["numba", "cython"]
RANDOM = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])



def method(name: str, op: str, g):
    """The backend's nhwc_winograd method of op for g."""
    return _backend.load(require_backend(name)).methods(op, g).options["nhwc_winograd"]


def _layer(data, dtype):
    """x, w, b and conv2d's keyword arguments of a random 3x3 stride-1 layer: sizes from 1 pixel (smaller than a
    tile) to several tiles, odd and even, batch 1 to 3, padding 0, 1, 2, asymmetric or "same"."""
    draw = lambda low, high: data.draw(st.integers(low, high))  # noqa: E731
    rng = np.random.default_rng(draw(0, 2 ** 16))
    x = random_array(rng, (draw(1, 3), draw(1, 20), draw(1, 14), draw(1, 14)), dtype)
    w = random_array(rng, (draw(1, 20), x.shape[1], 3, 3), dtype)
    b = random_array(rng, w.shape[0], dtype) if data.draw(st.booleans()) else None
    padding = data.draw(st.sampled_from([0, 1, 2, "same", ((draw(0, 2), draw(0, 2)), (draw(0, 2), draw(0, 2)))]))
    kwargs = dict(padding=padding)
    try:
        conv_geometry(x, w, b, **kwargs)
    except ValueError:  # no output
        assume(False)
    return rng, x, w, b, kwargs


@RANDOM
@given(data=st.data())
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("name", COMPILED)
def test_forward_and_backward_match_naive(name, dtype, data):
    rng, x, w, b, kwargs = _layer(data, dtype)
    g = conv_geometry(x, w, b, channels_last=True, **kwargs)
    need_dx, need_dw, need_db = (data.draw(st.booleans()) for _ in range(3))
    dy = random_array(rng, g.y_shape, dtype)
    wide = [a.astype(np.float64) for a in (x, w)]
    y_ref = fc.conv2d(*wide, None if b is None else b.astype(np.float64), backend="naive", **kwargs)
    grads_ref = fc.conv2d_backward(dy.astype(np.float64), *wide, backend="naive", **kwargs)
    y = method(name, "conv2d_forward", g).run(nhwc(x), w, b, g)
    assert y.flags.c_contiguous and y.dtype == dtype
    assert_close(y, nhwc(y_ref).astype(dtype), dtype, f"y {g}")
    grads = method(name, "conv2d_backward", g).run(nhwc(dy), nhwc(x), w, g, need_dx, need_dw, need_db)
    for what, need, actual, expected in zip(("dx", "dw", "db"), (need_dx, need_dw, need_db), grads,
                                            (nhwc(grads_ref[0]), *grads_ref[1:])):
        assert (actual is None) != need, what
        if need:
            assert_close(actual, expected.astype(dtype), dtype, f"{what} {g}")


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("name", COMPILED)
def test_small_blocks_span_images_and_end_partial(name, threads, rng, monkeypatch, tiling):
    """Blocks of 3 tiles (the last one partial) over 2 threads: the same result as one block per call."""
    tiling(winograd_nhwc, MIN_BLOCK_TILES=3, MAX_BLOCK_TILES=3)
    monkeypatch.setattr(fc._threads, "MIN_WORK_PER_THREAD", 1)
    fc.set_num_threads(threads)
    x, w, b = (random_array(rng, shape, np.float64) for shape in ((3, 5, 9, 10), (4, 5, 3, 3), (4,)))
    g = conv_geometry(x, w, b, padding=1, channels_last=True)
    assert winograd_nhwc.blocking(g, threads)[0] == 3
    expected = nhwc(fc.conv2d(x, w, b, padding=1, backend="naive"))
    assert_close(method(name, "conv2d_forward", g).run(nhwc(x), w, b, g), expected, np.float64, "y")


@pytest.mark.parametrize("name", COMPILED)
def test_float32_accuracy_on_a_benchmark_like_layer(name, rng):
    """resnet_3x3 reduced (64 channels, 18 x 18): within the 1e-4 agreement tolerance of float64."""
    x = rng.standard_normal((1, 64, 18, 18))
    w = rng.standard_normal((64, 64, 3, 3)) / np.sqrt(64 * 9)
    g = conv_geometry(x.astype(np.float32), w.astype(np.float32), padding=1, channels_last=True)
    y = method(name, "conv2d_forward", g).run(nhwc(x.astype(np.float32)), w.astype(np.float32), None, g)
    expected = nhwc(fc.conv2d(x, w, padding=1, backend="naive"))
    assert np.abs(y - expected).max() / np.abs(expected).max() < 1e-4


@pytest.mark.parametrize("name", COMPILED)
def test_listed_first_where_winograd_pays_and_last_elsewhere(name):
    module = _backend.load(require_backend(name))
    pays = conv_geometry(np.empty((1, 16, 16, 16)), np.empty((16, 16, 3, 3)), padding=1, channels_last=True)
    small = conv_geometry(np.empty((1, 8, 16, 16)), np.empty((8, 8, 3, 3)), padding=1, channels_last=True)
    for op in ("conv2d_forward", "conv2d_backward"):
        assert module.methods(op, pays).default == "nhwc_winograd"
        assert list(module.methods(op, small).options)[-1] == "nhwc_winograd"


@pytest.mark.parametrize("name", COMPILED)
def test_lent_to_nchw_arrays_where_tiles_are_many(name, rng):
    """On NCHW arrays the forward is offered last, between transposes, from MIN_LENT_TILES tiles on (an NCHW
    method list is otherwise unchanged); it agrees with naive, inputs untouched."""
    module = _backend.load(require_backend(name))
    x, w, b = random_array(rng, (2, 8, 31, 30), np.float64), random_array(rng, (5, 8, 3, 3), np.float64), None
    many = conv_geometry(x, w, padding=1)
    few = conv_geometry(x[:1, :, :12, :12], w, padding=1)
    assert winograd_nhwc._tiles(many) >= winograd_nhwc.MIN_LENT_TILES > winograd_nhwc._tiles(few)
    methods = module.methods("conv2d_forward", many)
    assert list(methods.options)[-1] == "nhwc:nhwc_winograd" and methods.default != "nhwc:nhwc_winograd"
    assert not any(":" in name for name in module.methods("conv2d_forward", few).options)
    assert not any(":" in name for name in module.methods("conv2d_backward", many).options)
    x.flags.writeable = w.flags.writeable = False
    y = methods.options["nhwc:nhwc_winograd"].run(x, w, b, many)
    assert_close(y, fc.conv2d(x, w, padding=1, backend="naive"), np.float64, "nhwc:nhwc_winograd")
    assert_plan_is_traced(methods.options["nhwc:nhwc_winograd"], methods.options["nhwc:nhwc_winograd"].plan(many),
                          (x, w, b, many), "lent")


@pytest.mark.parametrize("kwargs, w_shape", NOT_WINOGRAD)
@pytest.mark.parametrize("name", COMPILED)
def test_not_listed_outside_ungrouped_3x3_stride_1(name, kwargs, w_shape):
    g = conv_geometry(np.empty((1, 3, 12, 12)), np.empty(w_shape), channels_last=True, **kwargs)
    assert "nhwc_winograd" not in _backend.load(require_backend(name)).methods("conv2d_forward", g).options
    assert not winograd_nhwc.applies(g.nchw)


@pytest.mark.parametrize("name", COMPILED)
def test_backward_needs_the_rotated_forward(name):
    """Padding wider than the kernel's extent: forward only (the rotated geometry would pad negatively)."""
    module = _backend.load(require_backend(name))
    g = conv_geometry(np.empty((1, 3, 6, 6)), np.empty((4, 3, 3, 3)), padding=3, channels_last=True)
    assert "nhwc_winograd" in module.methods("conv2d_forward", g).options
    assert "nhwc_winograd" not in module.methods("conv2d_backward", g).options


@pytest.mark.parametrize("name", COMPILED)
def test_inputs_untouched_and_threads_agree(name, rng):
    base = random_array(rng, (2, 6, 11, 9), np.float32)
    x = base.transpose(0, 2, 3, 1)  # an NHWC view, read-only through the public call
    x.flags.writeable = False
    w = random_array(rng, (5, 6, 3, 3), np.float32)
    w.flags.writeable = False
    before = base.copy()
    results = []
    for threads in (1, 2):
        fc.set_num_threads(threads)
        with fc.use_backend(require_backend(name)):
            y = fc.conv2d(x, w, padding="same", data_format="NHWC")
            results.append((y, *fc.conv2d_backward(y, x, w, padding="same", data_format="NHWC")))
    for first, second in zip(*results):
        assert_close(first, second, np.float32)
    np.testing.assert_array_equal(base, before)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("name", COMPILED)
def test_plans_are_what_the_method_allocates(name, threads, rng, monkeypatch):
    """Several blocks, border tiles, asymmetric padding: forward and each backward phase."""
    monkeypatch.setattr(fc._threads, "MIN_WORK_PER_THREAD", 1)
    fc.set_num_threads(threads)
    x, w = random_array(rng, (3, 24, 21, 18), np.float32), random_array(rng, (40, 24, 3, 3), np.float32)
    g = conv_geometry(x, w, padding=((2, 0), (1, 2)), channels_last=True)
    dy = nhwc(random_array(rng, g.y_shape, np.float32))
    forward = method(name, "conv2d_forward", g)
    assert_plan_is_traced(forward, forward.plan(g), (nhwc(x), w, None, g), "forward")
    backward = method(name, "conv2d_backward", g)
    for need_dx, need_dw in ((True, True), (True, False), (False, True)):
        assert_plan_is_traced(backward, backward.plan(g, need_dx, need_dw), (dy, nhwc(x), w, g, need_dx, need_dw,
                                                                             True), f"backward {need_dx, need_dw}")
