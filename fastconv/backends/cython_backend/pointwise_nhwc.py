"""1x1 convolution (stride 1, unpadded, one group) on channels-last arrays (_nhwc.pyx): with x as (P, C) and y as
(P, K), P = N*H*W, y = x @ w.T + b, dx = dy @ w, dw = dy.T @ x, db = dy summed over rows; one GEMM per thread's
chunk of rows, reading the arrays in place (each thread's partial dw summed afterwards)."""

from __future__ import annotations

from fastconv.backends._nhwc import pointwise_methods
from fastconv.backends.cython_backend._levels import load
from fastconv.backends.cython_backend._reduce import channels_last_bias_grad

_nhwc = load("_nhwc")  # the kernels built for this CPU's instruction set


channels_last_methods = pointwise_methods(_nhwc.pointwise_forward, _nhwc.pointwise_backward, channels_last_bias_grad,
                                          numba=False)
