"""data_format="NHWC" gives, on every backend and every case of the agreement table, the NCHW path's results in
channels-last order: outputs, gradients and max-pool indices."""

from __future__ import annotations

import numpy as np
import pytest

import fastconv as fc
from fastconv import nn

from _helpers import CONV_CASES, POOL_CASES, assert_close, random_array, require_backend


def nhwc(a: np.ndarray) -> np.ndarray:
    """(N, C, H, W) -> a C-contiguous (N, H, W, C) copy."""
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1))


@pytest.fixture(params=["naive", "im2col", "numba", "cython", "auto"])
def any_backend(request) -> str:
    return require_backend(request.param)


def assert_channels_last(actual: np.ndarray, nchw_result: np.ndarray, dtype, what: str) -> None:
    assert actual.flags.c_contiguous, f"{what}: an NHWC result must be C-contiguous"
    assert_close(actual, nhwc(nchw_result), dtype, what)


@pytest.mark.parametrize("case", CONV_CASES, ids=str)
def test_conv_nhwc_matches_nchw(case, any_backend, dtype, rng):
    x, w = random_array(rng, case.x, dtype), random_array(rng, case.w, dtype)
    b = random_array(rng, case.w[0], dtype)
    y = fc.conv2d(x, w, b, backend=any_backend, **case.kwargs)
    assert_channels_last(fc.conv2d(nhwc(x), w, b, data_format="NHWC", backend=any_backend, **case.kwargs), y,
                         dtype, f"{case} y")
    dy = random_array(rng, y.shape, dtype)
    dx, dw, db = fc.conv2d_backward(dy, x, w, backend=any_backend, **case.kwargs)
    dx_l, dw_l, db_l = fc.conv2d_backward(nhwc(dy), nhwc(x), w, data_format="NHWC", backend=any_backend,
                                          **case.kwargs)
    assert_channels_last(dx_l, dx, dtype, f"{case} dx")
    assert_close(dw_l, dw, dtype, f"{case} dw")
    assert_close(db_l, db, dtype, f"{case} db")


@pytest.mark.parametrize("case", POOL_CASES, ids=str)
def test_pools_nhwc_match_nchw(case, any_backend, dtype, rng):
    x = random_array(rng, case.x, dtype)
    args = dict(kernel_size=case.kernel_size, backend=any_backend, **case.kwargs)
    y, idx = fc.max_pool2d(x, return_indices=True, **args)
    y_l, idx_l = fc.max_pool2d(nhwc(x), return_indices=True, data_format="NHWC", **args)
    assert_channels_last(y_l, y, dtype, f"{case} max y")
    np.testing.assert_array_equal(idx_l, nhwc(idx), err_msg=f"{case} max indices")
    dy = random_array(rng, y.shape, dtype)
    dx = fc.max_pool2d_backward(dy, x, **args)
    assert_channels_last(fc.max_pool2d_backward(nhwc(dy), nhwc(x), data_format="NHWC", **args), dx, dtype,
                         f"{case} max dx (indices recomputed)")
    assert_channels_last(fc.max_pool2d_backward(nhwc(dy), nhwc(x), indices=idx_l, data_format="NHWC", **args),
                         dx, dtype, f"{case} max dx (indices given)")
    assert_channels_last(fc.avg_pool2d(nhwc(x), data_format="NHWC", **args), fc.avg_pool2d(x, **args), dtype,
                         f"{case} avg y")
    assert_channels_last(fc.avg_pool2d_backward(nhwc(dy), nhwc(x), data_format="NHWC", **args),
                         fc.avg_pool2d_backward(dy, x, **args), dtype, f"{case} avg dx")


def test_nhwc_views_and_read_only_inputs_are_untouched(rng):
    """A transposed (non-contiguous) or read-only NHWC input works and is never written."""
    base = random_array(rng, (2, 3, 9, 8), np.float32)
    x = base.transpose(0, 2, 3, 1)  # an NHWC view of NCHW memory
    x.flags.writeable = False
    w = random_array(rng, (4, 3, 3, 3), np.float32)
    before = base.copy()
    y = fc.conv2d(x, w, padding="same", data_format="NHWC")
    assert y.shape == (2, 9, 8, 4)
    assert_close(y, nhwc(fc.conv2d(base, w, padding="same")), np.float32, "conv of a view")
    assert fc.max_pool2d(x, 2, data_format="NHWC").shape == (2, 4, 4, 3)
    np.testing.assert_array_equal(base, before)


@pytest.mark.parametrize("bad", ["nhwc", "NCWH", None, 0])
def test_unknown_data_format_is_a_value_error(bad):
    x = np.zeros((1, 4, 4, 1))
    with pytest.raises(ValueError, match="data_format must be one of"):
        fc.conv2d(x, np.zeros((1, 1, 3, 3)), data_format=bad)
    with pytest.raises(ValueError, match="data_format must be one of"):
        fc.avg_pool2d(x, 2, data_format=bad)


def test_nhwc_shape_errors_say_their_order():
    """x (1, 5, 5, 2) is 2 channels in NHWC: 3-channel filters are refused, the message saying how shapes read."""
    with pytest.raises(ValueError, match=r"data_format='NHWC': shapes are quoted in \(N, C, H, W\) order"):
        fc.conv2d(np.zeros((1, 5, 5, 2)), np.zeros((4, 3, 3, 3)), data_format="NHWC")
    with pytest.raises(ValueError, match="indices must have the output's shape"):
        fc.max_pool2d_backward(np.zeros((1, 2, 2, 2)), np.zeros((1, 5, 5, 2)), 2, data_format="NHWC",
                               indices=np.zeros((1, 2, 2, 3), np.int64))


def test_nn_layers_take_nhwc(rng):
    """Convolution and Pooling with data_format="NHWC" compute what their NCHW twins compute."""
    x = random_array(rng, (2, 3, 8, 8), np.float64)
    w, b = random_array(rng, (5, 3, 3, 3), np.float64), random_array(rng, 5, np.float64)
    for mode in ("max", "avg"):
        chain_nchw = [nn.Convolution(w, b, 1, 1), nn.Pooling(2, 2, stride=2, mode=mode)]
        chain_nhwc = [nn.Convolution(w, b, 1, 1, data_format="NHWC"),
                      nn.Pooling(2, 2, stride=2, mode=mode, data_format="NHWC")]
        out, out_l = x, nhwc(x)
        for layer, layer_l in zip(chain_nchw, chain_nhwc):
            out, out_l = layer.forward(out), layer_l.forward(out_l)
        assert_close(out_l, nhwc(out), np.float64, f"{mode} forward")
        grad, grad_l = np.ones_like(out), np.ones_like(out_l)
        for layer, layer_l in zip(reversed(chain_nchw), reversed(chain_nhwc)):
            grad, grad_l = layer.backward(grad), layer_l.backward(grad_l)
        assert_close(grad_l, nhwc(grad), np.float64, f"{mode} dx")
        assert_close(chain_nhwc[0].dW, chain_nchw[0].dW, np.float64, f"{mode} dW")
