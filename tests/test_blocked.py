"""The cython backend's "blocked" depthwise method (fastconv.backends._blocked): forward and backward with
every need flag against naive on random depthwise geometries (channel multipliers, channel counts on and off the
block size, tiles of rows, asymmetric and "same" padding), read-only inputs left unchanged, one or two threads,
and plans that are what the method allocates."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastconv as fc
from fastconv import _backend
from fastconv._geometry import conv_geometry
from fastconv.backends import _blocked

from _helpers import assert_close, random_array, require_backend
from test_protocol import assert_plan_is_traced

COMPILED = ["cython"]  # numba's version, measured 1.2-5x slower than its polyphase, is not built
RANDOM = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _read_only(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def _run_against_naive(module, x, w, b, dy, kwargs, dtype) -> None:
    """Forward, and backward with every (need_dx, need_dw), by the module's blocked method against naive."""
    g = conv_geometry(x, w, b, **kwargs)
    forward = module.methods("conv2d_forward", g).options["blocked"]
    backward = module.methods("conv2d_backward", g).options["blocked"]
    what = f"{x.shape} {w.shape} {kwargs} {dtype}"
    assert_close(forward.run(x, w, b, g), fc.conv2d(x, w, b, backend="naive", **kwargs), dtype, f"{what} forward")
    expected = fc.conv2d_backward(dy, x, w, backend="naive", **kwargs)
    for need_dx, need_dw in ((True, True), (True, False), (False, True)):
        got = backward.run(dy, x, w, g, need_dx, need_dw, True)
        for name, actual, want, needed in zip(("dx", "dw", "db"), got, expected, (need_dx, need_dw, True)):
            if needed:
                assert_close(actual, want, dtype, f"{what} {name} (need_dx={need_dx}, need_dw={need_dw})")
            else:
                assert actual is None, f"{what} {name} computed though not needed"


@RANDOM
@given(data=st.data())
@pytest.mark.parametrize("name", COMPILED)
def test_blocked_matches_naive_on_random_depthwise_geometries(name, data, tiling):
    module = _backend.load(require_backend(name))
    draw = lambda low, high: data.draw(st.integers(low, high))  # noqa: E731
    c = data.draw(st.sampled_from([1, 3, _blocked.LANES, _blocked.LANES + 5, 2 * _blocked.LANES]))
    multiplier, r, s = draw(1, 2), draw(1, 5), draw(1, 5)
    dilation, stride = (draw(1, 2), draw(1, 2)), (draw(1, 3), draw(1, 3))
    padding = data.draw(st.sampled_from(["same", "valid", "pairs"]))
    if padding == "pairs":
        padding = ((draw(0, r), draw(0, r)), (draw(0, s), draw(0, s)))
    extent = ((r - 1) * dilation[0] + 1, (s - 1) * dilation[1] + 1)
    shape = (draw(1, 2), c, extent[0] + draw(0, 9), extent[1] + draw(0, 9))
    if data.draw(st.booleans()):  # tiles of a few rows, as on large maps
        tiling(_blocked, TILE_BYTES=draw(1, 4) * shape[3] * _blocked.LANES * 8)
    dtype = np.dtype(data.draw(st.sampled_from([np.float64, np.float32])))
    rng = np.random.default_rng(draw(0, 2 ** 16))
    x, w, b = (_read_only(random_array(rng, a, dtype)) for a in (shape, (c * multiplier, 1, r, s), (c * multiplier,)))
    kwargs = dict(groups=c, stride=stride, dilation=dilation, padding=padding)
    dy = _read_only(random_array(rng, conv_geometry(x, w, **kwargs).y_shape, dtype))
    _run_against_naive(module, x, w, b, dy, kwargs, dtype)


@pytest.mark.parametrize("name", COMPILED)
@pytest.mark.parametrize("shape, w_shape, kwargs", [
    ((1, 20, 5, 4), (40, 1, 5, 4), {}),  # the kernel equal to the input: one pixel
    ((2, 17, 9, 9), (17, 1, 1, 1), dict(stride=2)),  # 1x1, strided
    ((1, 18, 7, 3), (18, 1, 1, 3), dict(padding=1)),  # padding beyond the kernel's rows (negative when rotated)
    ((2, 33, 12, 11), (33, 1, 3, 3), dict(padding="same", stride=2, dilation=2)),
])
def test_blocked_on_edge_geometries(name, dtype, rng, shape, w_shape, kwargs):
    module = _backend.load(require_backend(name))
    x, w, b = (_read_only(random_array(rng, a, dtype)) for a in (shape, w_shape, w_shape[:1]))
    kwargs = dict(groups=shape[1], **kwargs)
    dy = _read_only(random_array(rng, conv_geometry(x, w, **kwargs).y_shape, dtype))
    _run_against_naive(module, x, w, b, dy, kwargs, dtype)


@pytest.mark.parametrize("name", COMPILED)
def test_blocked_leaves_its_inputs_unchanged_and_agrees_across_threads(name, rng, monkeypatch, tiling):
    module = _backend.load(require_backend(name))
    monkeypatch.setattr(fc._threads, "MIN_WORK_PER_THREAD", 1)
    tiling(_blocked, TILE_BYTES=4096)  # several tiles per image
    x, w, b = (random_array(rng, a, np.float32) for a in ((2, 40, 19, 17), (80, 1, 3, 3), (80,)))
    kwargs = dict(groups=40, padding=1)
    g = conv_geometry(x, w, b, **kwargs)
    dy = random_array(rng, g.y_shape, np.float32)
    copies = [a.copy() for a in (x, w, b, dy)]
    results = []
    for threads in (1, 2):
        fc.set_num_threads(threads)
        results.append((module.methods("conv2d_forward", g).options["blocked"].run(x, w, b, g),
                        *module.methods("conv2d_backward", g).options["blocked"].run(dy, x, w, g, True, True, True)))
    for one, two in zip(*results):
        assert_close(two, one, np.float32)
    for before, after in zip(copies, (x, w, b, dy)):
        np.testing.assert_array_equal(after, before)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("name", COMPILED)
def test_blocked_plans_are_what_it_allocates_with_tiles_and_a_channel_tail(name, threads, rng, monkeypatch):
    module = _backend.load(require_backend(name))
    monkeypatch.setattr(fc._threads, "MIN_WORK_PER_THREAD", 1)
    fc.set_num_threads(threads)
    x, w = random_array(rng, (2, 20, 70, 70), np.float32), random_array(rng, (40, 1, 3, 3), np.float32)
    g = conv_geometry(x, w, groups=20, padding=1, stride=2)
    assert _blocked.tile_rows(g) < g.out_h
    dy = random_array(rng, g.y_shape, np.float32)
    forward = module.methods("conv2d_forward", g).options["blocked"]
    backward = module.methods("conv2d_backward", g).options["blocked"]
    assert_plan_is_traced(forward, forward.plan(g), (x, w, None, g), "forward")
    for flags in ((True, True), (True, False), (False, True)):
        assert_plan_is_traced(backward, backward.plan(g, *flags), (dy, x, w, g, *flags, True), f"backward {flags}")


@pytest.mark.parametrize("name", COMPILED)
def test_a_changed_tile_size_is_planned_anew(name, rng, tiling):
    """A geometry planned under one TILE_BYTES runs under another in scratch sized for the new tiles (its cached
    plan, sized for one row per tile, would be overrun by 20 rows)."""
    module = _backend.load(require_backend(name))
    x, w = random_array(rng, (2, 16, 40, 40), np.float64), random_array(rng, (16, 1, 3, 3), np.float64)
    g = conv_geometry(x, w, groups=16, padding=1)
    forward = module.methods("conv2d_forward", g).options["blocked"]
    expected = fc.conv2d(x, w, groups=16, padding=1, backend="naive")
    default = _blocked.TILE_BYTES
    for tile_bytes, rows in ((g.w * _blocked.LANES * 8, 1), (default, 20)):
        tiling(_blocked, TILE_BYTES=tile_bytes)
        assert _blocked.tile_rows(g) == rows
        assert_close(forward.run(x, w, None, g), expected, np.dtype(np.float64), f"TILE_BYTES={tile_bytes}")
