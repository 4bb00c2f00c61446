"""1x1 convolution with stride 1, no padding and one group on channels-last arrays: one GEMM over all pixels.

With x as (P, C) and y as (P, K), P = N*H*W, and w as (K, C):
    y = x @ w.T + b,   dx = dy @ w,   dw = dy.T @ x   (one partial per chunk of rows, summed afterwards),
    db = dy summed over its rows.
Chunks of rows run in parallel, each GEMM on one BLAS thread (or one chunk, with BLAS's threads).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from fastconv._geometry import ConvGeometry
from fastconv._threads import parallel_region
from fastconv.backends._nhwc import pointwise_backward_plan, pointwise_forward_plan, pointwise_methods
from fastconv.backends.numba_backend._chunks import chunk_bounds
from fastconv.backends.numba_backend._parallel import parallel_kernel


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
def _backward(dy, x, w, dx, dw_parts, need_dx, need_dw):
    """dy (P, K) -> dx (P, C), dw_parts (chunks, K, C)."""
    chunks = dw_parts.shape[0]
    for t in prange(chunks):
        p0, p1 = chunk_bounds(x.shape[0], chunks, t)
        if need_dx:
            np.dot(dy[p0:p1], w, dx[p0:p1])
        if need_dw:
            np.dot(dy[p0:p1].T, x[p0:p1], dw_parts[t])


def forward(x, w, b, g: ConvGeometry):
    """x (N, H, W, C), w (K, C, 1, 1), b (K,) or None -> y (N, H, W, K)."""
    y = np.empty(g.y_array_shape, g.dtype)
    bias = np.zeros(g.k, g.dtype) if b is None else b
    with parallel_region(pointwise_forward_plan(g).threads, blas_work=g.flops, numba=True) as threads:
        _forward(x.reshape(-1, g.c), w.reshape(g.k, g.c), bias, y.reshape(-1, g.k), threads)
    return y


def backward(dy, x, w, g: ConvGeometry, need_dx, need_dw, need_db):
    """dy (N, H, W, K) -> dx (N, H, W, C), dw (K, C, 1, 1), db (K,); None where not needed."""
    plan = pointwise_backward_plan(g, need_dx, need_dw)
    scratch = plan.allocate()
    dx = np.empty(g.x_array_shape if need_dx else (1, 1, 1, 1), g.dtype)
    dw_parts = scratch["dw_parts"] if need_dw else np.empty((plan.threads, 1, 1), g.dtype)
    rows = dy.reshape(-1, g.k)
    with parallel_region(plan.threads, blas_work=g.flops, numba=True):
        _backward(rows, x.reshape(-1, g.c), w.reshape(g.k, g.c), dx.reshape(-1, g.c) if need_dx else dx.reshape(1, 1),
                  dw_parts, need_dx, need_dw)
    return (dx if need_dx else None, dw_parts.sum(axis=0).reshape(g.w_shape) if need_dw else None,
            rows.sum(axis=0) if need_db else None)


channels_last_methods = pointwise_methods(forward, backward)
