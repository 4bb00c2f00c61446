"""Bad input: a clear ValueError/TypeError naming the argument and the shapes, raised before any work starts."""

from __future__ import annotations

import numpy as np
import pytest

import fastconv as fc

X = np.zeros((2, 4, 8, 8), np.float32)
W = np.zeros((6, 4, 3, 3), np.float32)
DY = np.zeros((2, 6, 6, 6), np.float32)


@pytest.mark.parametrize("call, error, match", [
    (lambda: fc.conv2d(X[0], W), ValueError, r"x must be 4-D .*shape \(4, 8, 8\)"),
    (lambda: fc.conv2d(X, W[0]), ValueError, r"w must be 4-D"),
    (lambda: fc.conv2d(X, np.zeros((6, 3, 3, 3))), ValueError,
     r"x has 4 channels but w expects 3 \(w.shape\[1\]=3, groups=1\)"),
    (lambda: fc.conv2d(X, np.zeros((6, 2, 3, 3)), groups=3), ValueError, r"groups=3 does not divide the 4 input"),
    (lambda: fc.conv2d(X, np.zeros((5, 2, 3, 3)), groups=2), ValueError, r"groups=2 does not divide the 5 output"),
    (lambda: fc.conv2d(X, W, groups=0), ValueError, r"groups must be a positive int"),
    (lambda: fc.conv2d(X, W, stride=0), ValueError, r"stride must be positive, got 0"),
    (lambda: fc.conv2d(X, W, stride=(1, -2)), ValueError, r"stride must be positive"),
    (lambda: fc.conv2d(X, W, dilation=0), ValueError, r"dilation must be positive"),
    (lambda: fc.conv2d(X, np.zeros((6, 4, 0, 3))), ValueError, r"kernel size must be positive"),
    (lambda: fc.conv2d(X, W, padding=-1), ValueError, r"padding must be >= 0"),
    (lambda: fc.conv2d(X, W, padding=((0, -1), (0, 0))), ValueError, r"padding must be >= 0"),
    (lambda: fc.conv2d(X, W, padding="full"), ValueError, r"unknown padding string 'full'"),
    (lambda: fc.conv2d(X, W, padding=1.5), TypeError, r"padding must be an int"),
    (lambda: fc.conv2d(X, np.zeros((6, 4, 9, 3))), ValueError, r"output size would be 0x6 .*x.shape=\(2, 4, 8, 8\)"),
    (lambda: fc.conv2d(X, W, dilation=4), ValueError, r"output size would be 0x0"),
    (lambda: fc.conv2d(X.astype(np.int64), W), TypeError, r"x has dtype int64; fastconv works on float32 and float64"),
    (lambda: fc.conv2d(X, W.astype(np.float16)), TypeError, r"w has dtype float16"),
    (lambda: fc.conv2d(X, W.astype(np.complex64)), TypeError, r"w has dtype complex64"),
    (lambda: fc.conv2d(X.astype(bool), W), TypeError, r"x has dtype bool"),
    (lambda: fc.conv2d(X, W, np.zeros(5, np.float32)), ValueError, r"b must have shape \(6,\) .*got \(5,\)"),
    (lambda: fc.conv2d(X, W, np.zeros(6, np.int32)), TypeError, r"b has dtype int32"),
    (lambda: fc.conv2d_backward(DY[:, :5], X, W), ValueError,
     r"conv2d_backward: dy must have the output's shape \(2, 6, 6, 6\), got \(2, 5, 6, 6\)"),
    (lambda: fc.conv2d_backward(DY.astype(np.int8), X, W), TypeError, r"dy has dtype int8"),
    (lambda: fc.max_pool2d(X[0], 2), ValueError, r"max_pool2d: x must be 4-D"),
    (lambda: fc.max_pool2d(X, 0), ValueError, r"kernel_size must be positive"),
    (lambda: fc.max_pool2d(X, 2, stride=0), ValueError, r"stride must be positive"),
    (lambda: fc.max_pool2d(X, 2, padding=-1), ValueError, r"padding must be >= 0"),
    (lambda: fc.max_pool2d(X, 2, padding=2), ValueError, r"must be at most half the kernel_size"),
    (lambda: fc.avg_pool2d(X, 9), ValueError, r"avg_pool2d: output size would be 0x0"),
    (lambda: fc.avg_pool2d(X, 2, padding="wide"), ValueError, r"unknown padding string 'wide'"),
    (lambda: fc.avg_pool2d(X.astype(np.int32), 2), TypeError, r"x has dtype int32"),
    (lambda: fc.max_pool2d_backward(np.zeros((2, 4, 3, 4)), X, 2), ValueError,
     r"dy must have the output's shape \(2, 4, 4, 4\), got \(2, 4, 3, 4\)"),
    (lambda: fc.avg_pool2d_backward(np.zeros((2, 4, 4)), X, 2), ValueError, r"dy must have the output's shape"),
    (lambda: fc.max_pool2d_backward(np.zeros((2, 4, 4, 4)), X, 2, indices=np.zeros((2, 4, 4, 3), np.int64)),
     ValueError, r"indices must have the output's shape \(2, 4, 4, 4\), got \(2, 4, 4, 3\)"),
    (lambda: fc.max_pool2d_backward(np.zeros((2, 4, 4, 4)), X, 2, indices=np.zeros((2, 4, 4, 4), np.int32)),
     TypeError, r"indices must be int64"),
    (lambda: fc.max_pool2d_backward(np.zeros((2, 4, 4, 4)), X, 2, indices=np.full((2, 4, 4, 4), 64)),
     ValueError, r"indices must lie in \[0, 64\)"),
    (lambda: fc.max_pool2d_backward(np.zeros((2, 4, 4, 4)), X, 2, indices=np.full((2, 4, 4, 4), -1)),
     ValueError, r"indices must lie in \[0, 64\)"),
    (lambda: fc.conv2d(X, W, backend="cudnn"), ValueError, r"unknown backend 'cudnn'; valid names are naive, im2col"),
])
def test_bad_input_raises_naming_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_unknown_backend_names_fail_everywhere():
    with pytest.raises(ValueError, match="set_backend: unknown backend 'fast'"):
        fc.set_backend("fast")
    with pytest.raises(ValueError, match="use_backend: unknown backend"):
        with fc.use_backend("fast"):
            pass


def test_bad_environment_backend(monkeypatch):
    monkeypatch.setenv("FASTCONV_BACKEND", "gpu")
    with pytest.raises(ValueError, match="FASTCONV_BACKEND: unknown backend 'gpu'"):
        fc.conv2d(X, W)


def test_output_too_large_is_a_memory_error_before_allocating():
    huge = np.broadcast_to(np.float32(0), (100_000, 64, 1024, 1024))  # no memory behind it
    with pytest.raises(MemoryError, match=r"conv2d: needs [\d,]+ bytes .*smaller batch"):
        fc.conv2d(huge, np.zeros((64, 64, 1, 1), np.float32), backend="naive")


def test_set_num_threads_rejects_nonsense():
    with pytest.raises(ValueError, match="n must be a positive int"):
        fc.set_num_threads(0)


@pytest.mark.parametrize("bad", [True, 1.0, "1", (1, True)])
def test_a_remembered_valid_call_does_not_let_a_similar_invalid_one_through(bad):
    x, w = np.zeros((1, 1, 5, 5), np.float32), np.zeros((1, 1, 3, 3), np.float32)
    fc.conv2d(x, w, stride=1, padding=(1, 1), backend="naive")  # remembered
    with pytest.raises(TypeError, match="stride"):
        fc.conv2d(x, w, stride=bad, padding=(1, 1), backend="naive")
    with pytest.raises((TypeError, ValueError), match="padding"):  # a tuple's repr as a string, or a bool in it
        fc.conv2d(x, w, stride=1, padding=(1, True) if bad != "1" else "(1, 1)", backend="naive")
