"""1x1 convolution with stride 1 and no padding: a plain GEMM per image and group, no columns at all.

With x_n = x[n] as (C, H*W) and y_n = y[n] as (K, H*W):
    y_n[group] = W_g (Kg, Cg) @ x_n[group] + b,   dx_n[group] = W_g.T @ dy_n[group],
    dW_g = sum_n dy_n[group] @ x_n[group].T       (one accumulator per chunk of images, summed afterwards)
"""

from __future__ import annotations

import numpy as np
from numba import prange

from fastconv._geometry import ConvGeometry
from fastconv._threads import parallel_region, per_budget, threads_for
from fastconv.backends._protocol import Plan
from fastconv.backends.numba_backend._chunks import add_into, chunk_bounds
from fastconv.backends.numba_backend._parallel import parallel_kernel


def applies(g: ConvGeometry) -> bool:
    return g.is_pointwise


@per_budget
def forward_plan(g: ConvGeometry) -> Plan:
    return Plan(threads_for(g.flops, g.n))


@per_budget
def backward_plan(g: ConvGeometry, need_dx: bool = True, need_dw: bool = True) -> Plan:
    """Each chunk's dW GEMM result and accumulator."""
    threads = threads_for(g.flops, g.n)
    buffers = {"dw_tile": ((threads, g.k_per_group, g.c_per_group), g.dtype),
               "dw_parts": ((threads, g.k, g.c_per_group), g.dtype)}
    return Plan(threads, buffers if need_dw else {})


@parallel_kernel()
def _forward(x, w, bias, y, chunks):
    """x (N, C, P), w (K, Cg), bias (K,) -> y (N, K, P)."""
    n_images, c = x.shape[0], x.shape[1]
    k, cg = w.shape
    kg = k // (c // cg)
    for t in prange(chunks):
        n0, n1 = chunk_bounds(n_images, chunks, t)
        for n in range(n0, n1):
            for group in range(c // cg):
                np.dot(w[group * kg:(group + 1) * kg], x[n, group * cg:(group + 1) * cg],
                       y[n, group * kg:(group + 1) * kg])
            for kk in range(k):
                y[n, kk] += bias[kk]


@parallel_kernel()
def _backward(dy, x, w, dx, dw_parts, dw_tiles, need_dx, need_dw):
    """dy (N, K, P) -> dx (N, C, P), dw_parts (chunks, K, Cg) (dw_tiles: each chunk's GEMM results)."""
    n_images, c = x.shape[0], x.shape[1]
    k, cg = w.shape
    kg = k // (c // cg)
    chunks = dw_parts.shape[0]
    for t in prange(chunks):
        if need_dw:
            dw_parts[t] = 0
        n0, n1 = chunk_bounds(n_images, chunks, t)
        for n in range(n0, n1):
            for group in range(c // cg):
                dy_g = dy[n, group * kg:(group + 1) * kg]
                w_g = w[group * kg:(group + 1) * kg]
                if need_dx:
                    np.dot(w_g.T, dy_g, dx[n, group * cg:(group + 1) * cg])
                if need_dw:
                    np.dot(dy_g, x[n, group * cg:(group + 1) * cg].T, dw_tiles[t])
                    add_into(dw_parts[t, group * kg:(group + 1) * kg], dw_tiles[t])


def _flat(a: np.ndarray) -> np.ndarray:
    """(N, C, H, W) -> (N, C, H*W) view."""
    return a.reshape(a.shape[0], a.shape[1], -1)


def forward(x, w, b, g: ConvGeometry):
    """x (N, C, H, W), w (K, C/groups, 1, 1), b (K,) or None -> y (N, K, H, W)."""
    plan = forward_plan(g)
    y = np.empty(g.y_shape, g.dtype)
    bias = np.zeros(g.k, g.dtype) if b is None else b
    with parallel_region(plan.threads, blas_work=g.flops, numba=True) as threads:
        _forward(_flat(x), w.reshape(g.k, g.c_per_group), bias, _flat(y), threads)
    return y


def backward(dy, x, w, g: ConvGeometry, need_dx: bool, need_dw: bool):
    """dy (N, K, H, W) -> dx (N, C, H, W), dw (K, C/groups, 1, 1); None where not needed."""
    plan = backward_plan(g, need_dx, need_dw)
    scratch = plan.allocate()
    dx = np.empty(g.x_shape if need_dx else (1, 1, 1, 1), g.dtype)
    unused = np.empty((plan.threads, 1, 1), g.dtype)
    dw_parts, dw_tiles = (scratch["dw_parts"], scratch["dw_tile"]) if need_dw else (unused, unused)
    with parallel_region(plan.threads, blas_work=g.flops, numba=True):
        _backward(_flat(dy), _flat(x), w.reshape(g.k, g.c_per_group), _flat(dx), dw_parts, dw_tiles, need_dx,
                  need_dw)
    return (dx if need_dx else None), (dw_parts.sum(axis=0).reshape(g.w_shape) if need_dw else None)
