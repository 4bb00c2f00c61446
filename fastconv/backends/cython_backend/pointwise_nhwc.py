"""1x1 convolution (stride 1, unpadded, one group) on channels-last arrays (_nhwc.pyx): with x as (P, C) and y as
(P, K), P = N*H*W, y = x @ w.T + b, dx = dy @ w, dw = dy.T @ x, db = dy summed over rows; one GEMM per thread's
chunk of rows, reading the arrays in place (each thread's partial dw summed afterwards)."""

from __future__ import annotations

import numpy as np

from fastconv._geometry import ConvGeometry
from fastconv._threads import parallel_region
from fastconv.backends._nhwc import pointwise_backward_plan, pointwise_forward_plan, pointwise_methods
from fastconv.backends.cython_backend._levels import load

_nhwc = load("_nhwc")  # the kernels built for this CPU's instruction set


def forward(x, w, b, g: ConvGeometry):
    """x (N, H, W, C), w (K, C, 1, 1), b (K,) or None -> y (N, H, W, K)."""
    y = np.empty(g.y_array_shape, g.dtype)
    bias = np.zeros(g.k, g.dtype) if b is None else b
    with parallel_region(pointwise_forward_plan(g).threads, blas_work=g.flops) as threads:
        _nhwc.pointwise_forward(x.reshape(-1, g.c), w.reshape(g.k, g.c), bias, y.reshape(-1, g.k), threads)
    return y


def backward(dy, x, w, g: ConvGeometry, need_dx, need_dw, need_db):
    """dy (N, H, W, K) -> dx (N, H, W, C), dw (K, C, 1, 1), db (K,); None where not needed."""
    plan = pointwise_backward_plan(g, need_dx, need_dw)
    scratch = plan.allocate()
    dx = np.empty(g.x_array_shape if need_dx else (1, 1, 1, 1), g.dtype)
    dw_parts = scratch["dw_parts"] if need_dw else np.empty((plan.threads, 1, 1), g.dtype)
    rows = dy.reshape(-1, g.k)
    with parallel_region(plan.threads, blas_work=g.flops) as threads:
        _nhwc.pointwise_backward(rows, x.reshape(-1, g.c), w.reshape(g.k, g.c), dx.reshape(-1, dx.shape[-1]),
                                 dw_parts, need_dx, need_dw, threads)
    return (dx if need_dx else None, dw_parts.sum(axis=0).reshape(g.w_shape) if need_dw else None,
            rows.sum(axis=0) if need_db else None)


channels_last_methods = pointwise_methods(forward, backward)
