"""1x1 convolution with stride 1, no padding and one group on channels-last arrays: one GEMM over all pixels.

With x as (P, C) and y as (P, K), P = N*H*W, and w as (K, C):
    y = x @ w.T + b,   dx = dy @ w,   dw = dy.T @ x   (one partial per chunk of rows, summed afterwards),
    db = dy summed over its rows.
Chunks of rows run in parallel, each GEMM on one BLAS thread (or one chunk, with BLAS's threads).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from fastconv.backends._nhwc import pointwise_methods
from fastconv.backends.numba_backend._chunks import chunk_bounds
from fastconv.backends.numba_backend._parallel import parallel_kernel
from fastconv.backends.numba_backend._reduce import channels_last_bias_grad


@parallel_kernel()
def _forward(x, w, bias, y, chunks):
    """x (P, C), w (K, C), bias (K,) -> y (P, K)."""
    for t in prange(chunks):
        p0, p1 = chunk_bounds(x.shape[0], chunks, t)
        np.dot(x[p0:p1], w.T, y[p0:p1])
        for p in range(p0, p1):
            for k in range(w.shape[0]):
                y[p, k] += bias[k]


@parallel_kernel()
def _backward(dy, x, w, dx, dw_parts, need_dx, need_dw, chunks):
    """dy (P, K) -> dx (P, C), dw_parts (chunks, K, C)."""
    for t in prange(chunks):
        p0, p1 = chunk_bounds(x.shape[0], chunks, t)
        if need_dx:
            np.dot(dy[p0:p1], w, dx[p0:p1])
        if need_dw:
            np.dot(dy[p0:p1].T, x[p0:p1], dw_parts[t])


channels_last_methods = pointwise_methods(_forward, _backward, channels_last_bias_grad, numba=True)
