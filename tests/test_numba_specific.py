"""numba-only behaviour: every method the backend offers (not only its default) agrees with naive, 1 and 2
threads give the same result, user indices outside their window still scatter, and nothing compiles at import."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import fastconv as fc
from fastconv._geometry import conv_geometry, pool_geometry

from _helpers import CONV_CASES, ConvCase, assert_close, random_array, require_backend


@pytest.fixture(scope="module")
def numba_backend():
    require_backend("numba")
    from fastconv import _backend

    return _backend.load("numba")


#: shapes that reach the numba backend's special paths (fused 3x3 depthwise rows, their borders, 2x2 stride-2
#: pooling rows) in ways the shared table does not
NUMBA_CASES = [
    ConvCase("depthwise_dilated", (2, 3, 9, 10), (3, 1, 3, 3), dict(groups=3, dilation=2, padding=2)),
    ConvCase("depthwise_asym_pad", (2, 3, 7, 8), (3, 1, 3, 3), dict(groups=3, padding=((0, 2), (2, 0)))),
    ConvCase("depthwise_narrow", (2, 2, 5, 2), (4, 1, 3, 3), dict(groups=2, padding=1)),
    ConvCase("depthwise_no_pad", (1, 4, 6, 6), (4, 1, 3, 3), dict(groups=4)),
]


@pytest.mark.parametrize("case", CONV_CASES + NUMBA_CASES, ids=str)
def test_every_conv_method_matches_naive(case, numba_backend, dtype, rng):
    x, w, b = (random_array(rng, shape, dtype) for shape in (case.x, case.w, case.w[0]))
    g = conv_geometry(x, w, b, **case.kwargs)
    dy = random_array(rng, g.y_shape, dtype)
    y_ref = fc.conv2d(x, w, b, backend="naive", **case.kwargs)
    grads_ref = fc.conv2d_backward(dy, x, w, backend="naive", **case.kwargs)
    for name, forward in numba_backend.methods("conv2d_forward", g).items():
        assert_close(forward(x, w, b, g), y_ref, dtype, f"{case} forward {name}")
    for name, backward in numba_backend.methods("conv2d_backward", g).items():
        for grad, actual, expected in zip(("dx", "dw", "db"), backward(dy, x, w, g, True, True, True), grads_ref):
            assert_close(actual, expected, dtype, f"{case} backward {name} {grad}")


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
            "print('fastconv.backends.numba' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
