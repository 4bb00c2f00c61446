"""naive, the oracle, against float64 central finite differences and the adjoint identity."""

from __future__ import annotations

import numpy as np
import pytest

import fastconv as fc

from _helpers import CONV_CASES, POOL_CASES

EPS = 1e-6


def numerical_gradient(f, a: np.ndarray) -> np.ndarray:
    """Central differences of the scalar f() w.r.t. every element of a (modified in place, then restored)."""
    grad = np.empty_like(a)
    for i in np.ndindex(a.shape):
        saved = a[i]
        a[i] = saved + EPS
        plus = f()
        a[i] = saved - EPS
        minus = f()
        a[i] = saved
        grad[i] = (plus - minus) / (2 * EPS)
    return grad


SMALL_CONV_CASES = [c for c in CONV_CASES if np.prod(c.x) <= 400]


@pytest.mark.parametrize("case", SMALL_CONV_CASES, ids=str)
def test_naive_conv_gradients_match_finite_differences(case, rng):
    x, w, b = rng.standard_normal(case.x), rng.standard_normal(case.w), rng.standard_normal(case.w[0])
    dy = rng.standard_normal(fc.conv2d(x, w, b, backend="naive", **case.kwargs).shape)

    def loss():
        return float(np.sum(fc.conv2d(x, w, b, backend="naive", **case.kwargs) * dy))

    dx, dw, db = fc.conv2d_backward(dy, x, w, backend="naive", **case.kwargs)
    np.testing.assert_allclose(dx, numerical_gradient(loss, x), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(dw, numerical_gradient(loss, w), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(db, numerical_gradient(loss, b), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("case", POOL_CASES, ids=str)
@pytest.mark.parametrize("mode", ["max", "avg"])
def test_naive_pool_gradients_match_finite_differences(case, mode, rng):
    # a permutation spaced far apart: no ties, and no max changes under a step of EPS
    x = rng.permutation(np.prod(case.x)).reshape(case.x).astype(np.float64) * 0.01
    forward = fc.max_pool2d if mode == "max" else fc.avg_pool2d
    backward = fc.max_pool2d_backward if mode == "max" else fc.avg_pool2d_backward
    dy = rng.standard_normal(forward(x, case.kernel_size, backend="naive", **case.kwargs).shape)

    def loss():
        return float(np.sum(forward(x, case.kernel_size, backend="naive", **case.kwargs) * dy))

    dx = backward(dy, x, case.kernel_size, backend="naive", **case.kwargs)
    np.testing.assert_allclose(dx, numerical_gradient(loss, x), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("case", CONV_CASES, ids=str)
def test_naive_conv_adjoint_identity(case, rng):
    """<conv(x), y> == <x, conv_transpose(y)>, where conv_transpose is the dx of conv2d_backward."""
    x, w = rng.standard_normal(case.x), rng.standard_normal(case.w)
    y = rng.standard_normal(fc.conv2d(x, w, backend="naive", **case.kwargs).shape)
    dx, _, _ = fc.conv2d_backward(y, x, w, need_dw=False, need_db=False, backend="naive", **case.kwargs)
    lhs = np.vdot(fc.conv2d(x, w, backend="naive", **case.kwargs), y)
    assert lhs == pytest.approx(np.vdot(x, dx), rel=1e-12)


def test_max_pool_tie_gradient_goes_to_first_maximum_only(backend):
    x = np.array([[[[1.0, 3.0, 3.0, 0.0],
                    [3.0, 2.0, 0.0, 0.0],
                    [5.0, 5.0, 7.0, 7.0],
                    [5.0, 5.0, 7.0, 7.0]]]])
    dy = np.array([[[[10.0, 20.0], [30.0, 40.0]]]])
    expected = np.array([[[[0.0, 10.0, 20.0, 0.0],
                           [0.0, 0.0, 0.0, 0.0],
                           [30.0, 0.0, 40.0, 0.0],
                           [0.0, 0.0, 0.0, 0.0]]]])
    for name in ("naive", backend):
        np.testing.assert_array_equal(fc.max_pool2d_backward(dy, x, 2, backend=name), expected, err_msg=name)
