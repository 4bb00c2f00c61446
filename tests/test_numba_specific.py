"""numba-only behaviour: 1 and 2 threads give the same result, user indices outside their window still scatter,
pooling rows agree with naive, and nothing compiles at import (every method against naive: test_protocol.py)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import fastconv as fc
from fastconv._geometry import pool_geometry

from _helpers import assert_close, random_array, require_backend


@pytest.fixture(scope="module")
def numba_backend():
    require_backend("numba")
    from fastconv import _backend

    return _backend.load("numba")


def test_one_and_two_threads_agree(numba_backend, rng):
    x = random_array(rng, (5, 6, 13, 12), np.float64)
    w = random_array(rng, (8, 3, 3, 3), np.float64)
    dy = random_array(rng, fc.conv2d(x, w, groups=2, padding=1, backend="naive").shape, np.float64)

    def run():
        y = fc.conv2d(x, w, groups=2, padding=1, backend="numba")
        grads = fc.conv2d_backward(dy, x, w, groups=2, padding=1, backend="numba")
        return [y, *grads, fc.max_pool2d(x, 2, backend="numba"), fc.avg_pool2d(x, 3, stride=1, backend="numba")]

    fc.set_num_threads(1)
    single = run()
    fc.set_num_threads(2)
    for a, e in zip(run(), single):
        assert_close(a, e, np.float64)


def _compiled_kernels() -> int:
    """How many machine-code versions numba holds of the backend's parallel kernels."""
    from fastconv.backends.numba_backend import _parallel

    modules = [m for name, m in sys.modules.items() if name.startswith("fastconv.backends.numba_backend.")]
    return sum(len(k.parallel.signatures) for m in modules for k in vars(m).values()
               if isinstance(k, _parallel.ParallelKernel))


def test_read_only_operands_run_the_kernels_compiled_for_writeable_ones(numba_backend, rng):
    """numba types read-only arrays apart: the methods hand them over as writeable aliases, so that read-only
    operands compile nothing new, give the same results and stay untouched."""
    x = random_array(rng, (2, 4, 9, 8), np.float32)
    w = random_array(rng, (6, 2, 3, 3), np.float32)
    dy = random_array(rng, (2, 6, 9, 8), np.float32)

    def run(x, w, dy):
        y = fc.conv2d(x, w, groups=2, padding=1, backend="numba")
        grads = fc.conv2d_backward(dy, x, w, groups=2, padding=1, backend="numba")
        return [y, *grads, fc.max_pool2d(x, 2, backend="numba"), fc.avg_pool2d(x, 3, stride=1, backend="numba")]

    expected = run(x, w, dy)
    compiled = _compiled_kernels()
    frozen = [a.copy() for a in (x, w, dy)]
    for a in frozen:
        a.flags.writeable = False
    for actual, e in zip(run(*frozen), expected):
        np.testing.assert_array_equal(actual, e)
    assert _compiled_kernels() == compiled
    for a, original in zip(frozen, (x, w, dy)):
        np.testing.assert_array_equal(a, original)


def test_max_pool_backward_scatters_indices_outside_their_window(numba_backend):
    x = np.zeros((1, 1, 4, 4))
    indices = np.full((1, 1, 2, 2), 15, dtype=np.int64)  # all four windows point at the last cell
    dy = np.ones((1, 1, 2, 2))
    dx = numba_backend.max_pool2d_backward(dy, indices, pool_geometry(x, 2))
    expected = np.zeros(16)
    expected[15] = 4
    np.testing.assert_array_equal(dx.ravel(), expected)


@pytest.mark.parametrize("shape, kwargs", [((2, 3, 9, 11), dict(stride=2, padding=1, ceil_mode=True)),
                                           ((1, 2, 8, 7), dict(stride=2)), ((2, 2, 10, 9), dict(stride=(2, 3)))])
def test_pool_rows_match_naive(shape, kwargs, numba_backend, rng):
    x = random_array(rng, shape, np.float64)
    x[0, 0, :4, :4] = 1.0  # ties
    y_ref, idx_ref = fc.max_pool2d(x, 2, return_indices=True, backend="naive", **kwargs)
    y, idx = fc.max_pool2d(x, 2, return_indices=True, backend="numba", **kwargs)
    np.testing.assert_array_equal(idx, idx_ref)
    assert_close(y, y_ref, np.float64)
    dy = random_array(rng, y.shape, np.float64)
    assert_close(fc.max_pool2d_backward(dy, x, 2, indices=idx, backend="numba", **kwargs),
                 fc.max_pool2d_backward(dy, x, 2, backend="naive", **kwargs), np.float64)
    assert_close(fc.avg_pool2d(x, 2, backend="numba", **kwargs), fc.avg_pool2d(x, 2, backend="naive", **kwargs),
                 np.float64)
    assert_close(fc.avg_pool2d_backward(dy, x, 2, backend="numba", **kwargs),
                 fc.avg_pool2d_backward(dy, x, 2, backend="naive", **kwargs), np.float64)


def test_import_fastconv_neither_imports_numba_backend_nor_compiles():
    code = ("import sys, fastconv; "
            "print('fastconv.backends.numba_backend' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_polyphase_forward_reads_no_offsets_past_their_end(numba_backend, rng):
    """numba's parallel pass hoists the nine-tap path's reads of offsets[0..8] ahead of its branch: a 1x3
    depthwise kernel (three taps) read six offsets past the end, unless the offsets are padded to nine. The
    forward kernel compiled with bounds checks raises IndexError on such a read."""
    import numba

    from fastconv._geometry import conv_geometry
    from fastconv.backends import _polyphase
    from fastconv.backends.numba_backend import polyphase

    x = random_array(rng, (2, 3, 7, 3), np.float64)
    w = random_array(rng, (3, 1, 1, 3), np.float64)
    g = conv_geometry(x, w, padding=1, groups=3)
    checked = numba.njit(parallel=True, boundscheck=True)(polyphase._forward._func)
    y = np.empty(g.y_shape)
    scratch = np.empty(_polyphase.scratch_buffer(g, 2)["scratch"][0])
    checked(x, w, np.zeros(g.k), y, _polyphase.params(g), polyphase._forward_offsets(g), scratch)
    assert_close(y, fc.conv2d(x, w, padding=1, groups=3, backend="naive"), np.float64)
