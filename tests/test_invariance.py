"""Same answer whatever the memory layout, the thread count or the batch size; inputs never modified."""

from __future__ import annotations

import numpy as np
import pytest

import fastconv as fc
from fastconv import _threads
from fastconv._geometry import pool_geometry
from fastconv.backends._nhwc import pool_plan

from _helpers import assert_close, random_array

CONV_KW = dict(stride=2, padding=((1, 0), (2, 1)), dilation=(1, 2), groups=2)
POOL_KW = dict(stride=2, padding=1, ceil_mode=True)


def run_all_ops(x, w, dy_conv, dy_pool, backend):
    """Every public op on the same inputs: a flat list of results."""
    y = fc.conv2d(x, w, w[:, 0, 0, 0], backend=backend, **CONV_KW)
    grads = fc.conv2d_backward(dy_conv, x, w, backend=backend, **CONV_KW)
    ym, idx = fc.max_pool2d(x, 3, return_indices=True, backend=backend, **POOL_KW)
    dxm = fc.max_pool2d_backward(dy_pool, x, 3, backend=backend, **POOL_KW)
    ya = fc.avg_pool2d(x, 3, backend=backend, **POOL_KW)
    dxa = fc.avg_pool2d_backward(dy_pool, x, 3, backend=backend, **POOL_KW)
    return [y, *grads, ym, idx, dxm, ya, dxa]


@pytest.fixture
def inputs(rng):
    x = random_array(rng, (3, 4, 11, 10), np.float64)
    w = random_array(rng, (6, 2, 3, 3), np.float64)
    dy_conv = random_array(rng, fc.conv2d(x, w, backend="naive", **CONV_KW).shape, np.float64)
    dy_pool = random_array(rng, fc.max_pool2d(x, 3, backend="naive", **POOL_KW).shape, np.float64)
    return x, w, dy_conv, dy_pool


def assert_same(results, expected):
    for a, e in zip(results, expected):
        assert_close(a, e, e.dtype if e.dtype.kind == "f" else np.float64)


def test_inputs_are_never_modified(inputs, backend):
    copies = [a.copy() for a in inputs]
    run_all_ops(*inputs, backend)
    for a, before in zip(inputs, copies):
        np.testing.assert_array_equal(a, before)


def test_read_only_inputs_work(inputs, backend):
    expected = run_all_ops(*inputs, backend)
    for a in inputs:
        a.flags.writeable = False
    assert_same(run_all_ops(*inputs, backend), expected)


@pytest.mark.parametrize("layout", ["fortran", "strided", "transposed_view"])
def test_non_contiguous_inputs_work(inputs, backend, layout):
    expected = run_all_ops(*inputs, backend)
    if layout == "fortran":
        relaid = [np.asfortranarray(a) for a in inputs]
    elif layout == "strided":
        relaid = [np.repeat(a, 2, axis=-1)[..., ::2] for a in inputs]
    else:
        relaid = [np.ascontiguousarray(a.swapaxes(0, 1)).swapaxes(0, 1) for a in inputs]
    assert not relaid[0].flags.c_contiguous
    assert_same(run_all_ops(*relaid, backend), expected)


def test_broadcast_inputs_work(backend):
    x = np.broadcast_to(np.arange(8.0).reshape(1, 1, 1, 8), (2, 3, 6, 8))
    w = np.broadcast_to(np.float64(0.5), (4, 3, 3, 3))
    assert_close(fc.conv2d(x, w, backend=backend), fc.conv2d(x, w, backend="naive"), np.float64)


def test_thread_count_does_not_change_results(inputs, backend, monkeypatch):
    monkeypatch.setattr(_threads, "MIN_WORK_PER_THREAD", 1)  # these small calls would otherwise run one thread
    fc.set_num_threads(1)
    single = run_all_ops(*inputs, backend)
    fc.set_num_threads(2)
    assert_same(run_all_ops(*inputs, backend), single)


def test_mixed_dtypes_follow_numpy_result_type(backend, rng):
    x = random_array(rng, (2, 3, 6, 6), np.float32)
    w = random_array(rng, (4, 3, 3, 3), np.float64)
    y = fc.conv2d(x, w, backend=backend)
    assert y.dtype == np.float64
    assert_close(y, fc.conv2d(x.astype(np.float64), w, backend="naive"), np.float64)
    assert fc.max_pool2d(x, 2, backend=backend).dtype == np.float32


def test_empty_batch_gives_empty_results(backend):
    x = np.zeros((0, 4, 8, 8), np.float32)
    w = np.zeros((6, 2, 3, 3), np.float32)
    assert fc.conv2d(x, w, groups=2, backend=backend).shape == (0, 6, 6, 6)
    dx, dw, db = fc.conv2d_backward(np.zeros((0, 6, 6, 6), np.float32), x, w, groups=2, backend=backend)
    assert dx.shape == x.shape and dw.shape == w.shape and db.shape == (6,)
    assert not dw.any() and not db.any()
    y, idx = fc.max_pool2d(x, 2, return_indices=True, backend=backend)
    assert y.shape == idx.shape == (0, 4, 4, 4) and idx.dtype == np.int64
    assert fc.avg_pool2d_backward(np.zeros((0, 4, 4, 4), np.float32), x, 2, backend=backend).shape == x.shape


def test_need_flags_skip_gradients(inputs, backend):
    x, w, dy, _ = inputs
    dx, dw, db = fc.conv2d_backward(dy, x, w, need_dx=False, need_db=False, backend=backend, **CONV_KW)
    assert dx is None and db is None
    assert_close(dw, fc.conv2d_backward(dy, x, w, backend="naive", **CONV_KW)[1], np.float64)


def test_small_calls_run_on_fewer_threads(monkeypatch):
    fc.set_num_threads(2)
    monkeypatch.setattr(_threads, "MIN_WORK_PER_THREAD", 1000)
    assert [_threads.threads_for(work) for work in (0, 999, 1999, 2000, 10**9)] == [1, 1, 1, 2, 2]


def test_plans_made_once_follow_the_thread_budget(monkeypatch):
    g = pool_geometry(np.zeros((8, 64, 64, 64), np.float32), 2, channels_last=True)
    fc.set_num_threads(2)  # the autouse fixture restores the budget
    assert pool_plan("max_pool2d_forward", g).threads == 2
    assert pool_plan("max_pool2d_forward", g) is pool_plan("max_pool2d_forward", g)
    fc.set_num_threads(1)
    assert pool_plan("max_pool2d_forward", g).threads == 1
    fc.set_num_threads(2)
    monkeypatch.setattr(_threads, "MIN_WORK_PER_THREAD", 10**12)
    assert pool_plan("max_pool2d_forward", g).threads == 1
