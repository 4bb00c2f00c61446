"""The polyphase depthwise method (fastconv.backends._polyphase) of both compiled backends on its shifted planes
(stride 1, output as wide as the input): forward and backward against naive on random geometries (kernel sizes,
dilations, "same" and asymmetric padding, shifts past the plane's width, channel multipliers), read-only inputs,
the kernel's bounds, and which layers take the shifted planes by default."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastconv as fc
from fastconv import _backend
from fastconv._geometry import conv_geometry
from fastconv.backends import _blocked, _polyphase

from _helpers import assert_close, random_array, require_backend

COMPILED = ["cython", "numba"]
RANDOM = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _read_only(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def _check_polyphase(name, x, w, b, dy, kwargs, dtype) -> None:
    """The polyphase forward, and its backward with db, against naive; inputs left unchanged."""
    module = _backend.load(require_backend(name))
    g = conv_geometry(x, w, b, **kwargs)
    assert _polyphase.shifted(g), g
    what = f"{name} {x.shape} {w.shape} {kwargs} {dtype}"
    before = [a.copy() for a in (x, w, b, dy)]
    forward = module.methods("conv2d_forward", g).options["polyphase"]
    assert_close(forward.run(x, w, b, g), fc.conv2d(x, w, b, backend="naive", **kwargs), dtype, f"{what} forward")
    expected = fc.conv2d_backward(dy, x, w, backend="naive", **kwargs)
    backward = module.methods("conv2d_backward", g).options["polyphase"]
    for grad, actual, want in zip(("dx", "dw", "db"), backward.run(dy, x, w, g, True, True, True), expected):
        assert_close(actual, want, dtype, f"{what} {grad}")
    for a, kept in zip((x, w, b, dy), before):
        np.testing.assert_array_equal(a, kept)


@RANDOM
@given(data=st.data())
@pytest.mark.parametrize("name", COMPILED)
def test_shifted_planes_match_naive_on_random_geometries(name, data):
    draw = lambda low, high: data.draw(st.integers(low, high))  # noqa: E731
    c, multiplier, r, s = draw(1, 5), draw(1, 2), draw(1, 5), draw(1, 5)
    dilation = (draw(1, 3), draw(1, 3))
    extent_w = (s - 1) * dilation[1]
    left = draw(0, extent_w)  # any split of the columns' padding keeps the output as wide as the input
    top, bottom = draw(0, r), draw(0, r)
    width = draw(1, 10)
    height = max(1, (r - 1) * dilation[0] + 1 - top - bottom) + draw(0, 6)
    kwargs = dict(groups=c, dilation=dilation, padding=((top, bottom), (left, extent_w - left)))
    dtype = np.dtype(data.draw(st.sampled_from([np.float64, np.float32])))
    rng = np.random.default_rng(draw(0, 2 ** 16))
    x, w, b = (_read_only(random_array(rng, a, dtype))
               for a in ((draw(1, 3), c, height, width), (c * multiplier, 1, r, s), (c * multiplier,)))
    dy = _read_only(random_array(rng, conv_geometry(x, w, **kwargs).y_shape, dtype))
    _check_polyphase(name, x, w, b, dy, kwargs, dtype)


@pytest.mark.parametrize("name", COMPILED)
@pytest.mark.parametrize("shape, w_shape, kwargs", [
    ((2, 3, 14, 14), (3, 1, 3, 3), dict(padding=1)),  # the common 3x3, nine taps in one pass
    ((1, 2, 4, 3), (2, 1, 5, 5), dict(padding=4, dilation=2)),  # shifts of 4 columns on a 3-wide plane
    ((1, 2, 7, 7), (4, 1, 3, 3), dict(padding=((1, 1), (0, 2)))),  # every column shift one way
    ((1, 1, 5, 33), (1, 1, 1, 7), dict(padding=(0, 3))),  # one kernel row, rows past 16 lanes
    ((1, 3, 6, 6), (3, 1, 2, 2), dict(padding="same")),  # an even kernel: more padding on one side
])
def test_shifted_planes_on_edge_geometries(name, dtype, rng, shape, w_shape, kwargs):
    x, w, b = (_read_only(random_array(rng, a, dtype)) for a in (shape, w_shape, w_shape[:1]))
    kwargs = dict(groups=shape[1], **kwargs)
    dy = _read_only(random_array(rng, conv_geometry(x, w, **kwargs).y_shape, dtype))
    _check_polyphase(name, x, w, b, dy, kwargs, dtype)


def test_numba_shifted_kernels_stay_in_bounds(rng):
    """numba's shifted-plane kernels, compiled with bounds checks, on shifts past the plane's width."""
    require_backend("numba")
    import numba

    from fastconv.backends.numba_backend import polyphase

    x, w = random_array(rng, (2, 2, 4, 3), np.float64), random_array(rng, (2, 1, 5, 5), np.float64)
    kwargs = dict(padding=4, dilation=2, groups=2)
    g = conv_geometry(x, w, **kwargs)
    dy = random_array(rng, g.y_shape, np.float64)
    params, offsets = _polyphase.params(g), _polyphase.tap_offsets(g)
    scratch = np.empty(_polyphase.scratch_buffer(g, 2)["scratch"][0])
    checked = {name: numba.njit(parallel=True, boundscheck=True)(getattr(polyphase, name)._func)
               for name in ("_forward", "_backward_dw", "_backward_dx")}
    y, dx, parts = np.empty(g.y_shape), np.empty(g.x_shape), np.empty((2, *g.w_shape[:1], g.r, g.s))
    checked["_forward"](x, w, np.zeros(g.k), y, params, polyphase._forward_offsets(g), scratch)
    checked["_backward_dw"](dy, x, parts, params, offsets, scratch)
    checked["_backward_dx"](dy, w, dx, params, offsets, scratch)
    dx_want, dw_want, _ = fc.conv2d_backward(dy, x, w, backend="naive", **kwargs)
    assert_close(y, fc.conv2d(x, w, backend="naive", **kwargs), np.float64, "forward")
    assert_close(parts.sum(axis=0).reshape(g.w_shape), dw_want, np.float64, "dw")
    assert_close(dx, dx_want, np.float64, "dx")


@pytest.mark.parametrize("shape, w_shape, stride, expected", [
    ((8, 576, 14, 14), (576, 1, 3, 3), 1, "polyphase"),  # shifted planes on a 14x14 map
    ((1, 144, 56, 56), (144, 1, 3, 3), 1, "polyphase"),
    ((8, 960, 7, 7), (960, 1, 3, 3), 1, "blocked"),  # too few cells per plane
    ((8, 240, 14, 14), (240, 1, 5, 5), 1, "blocked"),  # more than nine taps
    ((8, 576, 14, 14), (576, 1, 3, 3), 2, "blocked"),  # strided: phases, not shifts
])
def test_cython_depthwise_defaults(shape, w_shape, stride, expected):
    """Which depthwise layers take polyphase's shifted planes by default, forward and (dx by rotation, at any
    batch) backward."""
    module = _backend.load(require_backend("cython"))
    x, w = np.empty(shape, np.float32), np.empty(w_shape, np.float32)
    g = conv_geometry(x, w, padding=1, stride=stride, groups=shape[1])
    assert module.methods("conv2d_forward", g).default == expected
    assert _polyphase.shifted_pays(g) == (expected == "polyphase")
    assert _blocked.preferred(g) == (expected == "blocked")
    if expected == "polyphase":
        assert module.methods("conv2d_backward", g).default == "rotated"
