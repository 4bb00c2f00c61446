"""What the compiled backends' native channels-last methods share: where they apply, their plans and tables.

Pooling (pool_nhwc in each backend) splits (image, output row) pairs forward and (image, input row) pairs
backward, or images for the backward scatters; the 1x1 convolution (pointwise_nhwc) splits the N*H*W pixel rows of
its GEMMs into one chunk per thread.
"""

from __future__ import annotations

import functools
from typing import Callable

import numpy as np

from fastconv._geometry import ConvGeometry, PoolGeometry
from fastconv._threads import parallel_region, per_budget, threads_for
from fastconv.backends._pool_tables import pool_scratch
from fastconv.backends._protocol import Method, Plan

#: BLAS takes 32-bit ints for sizes and strides
BLAS_INT_MAX = 2**31 - 1
#: bytes of the narrowest SIMD vector the compiled kernels target (AVX2)
SHORTEST_VECTOR_BYTES = 32


@per_budget
def pool_plan(op: str, g: PoolGeometry) -> Plan:
    """The tables the pooling kernels read: window bounds forward; backward the windows holding each input row
    and column, and each input row's argmax hits; the divisors (avg). Made once per geometry."""
    if op.endswith("forward"):
        jobs = g.n * g.out_h
        tables = {"window_rows": ((g.out_h, 2), np.int64), "window_cols": ((g.out_w, 2), np.int64)}
    else:
        jobs = g.n * g.h
        tables = {"row_cover": ((g.h, 2), np.int64), "col_cover": ((g.w, 2), np.int64),
                  "hits": ((g.n * g.h,), np.int64)}
    if op.startswith("avg"):
        tables["divisor"] = ((g.out_h, g.out_w), g.dtype)
    return Plan(threads_for(g.reads, jobs), tables)


def pool_tables(op: str, g: PoolGeometry) -> tuple[Plan, dict[str, np.ndarray]]:
    """The op's plan, and its scratch with the window tables filled."""
    plan = pool_plan(op, g)
    return plan, pool_scratch(plan, g)


def pointwise_applies(g: ConvGeometry) -> bool:
    """1x1, stride 1, unpadded, one group, channels-last, and the pixel rows within BLAS's 32-bit sizes."""
    return g.channels_last and g.is_pointwise and g.groups == 1 and g.n * g.h * g.w <= BLAS_INT_MAX


@per_budget
def pointwise_forward_plan(g: ConvGeometry) -> Plan:
    """No scratch."""
    return Plan(threads_for(g.flops, g.n * g.h * g.w))


@per_budget
def pointwise_backward_plan(g: ConvGeometry, need_dx: bool = True, need_dw: bool = True) -> Plan:
    """Each chunk's partial dw (K, C)."""
    threads = threads_for(g.flops, g.n * g.h * g.w)
    return Plan(threads, {"dw_parts": ((threads, g.k, g.c), g.dtype)} if need_dw else {})


@per_budget
def scatter_plan(op: str, g: PoolGeometry) -> Plan:
    """A backward scatter's: images in parallel; for average pooling the forward's window bounds and divisors."""
    tables = {} if op.startswith("max") else pool_plan("avg_pool2d_forward", g).buffers
    return Plan(threads_for(g.reads, g.n), dict(tables))


def scatter_first(op: str, g: PoolGeometry) -> bool:
    """The scatter adds each dy once per cell of its window where the gather visits every input cell's windows,
    but its adds are scalar and it splits only images: it is the default where the gather's channel loop is
    shorter than a vector (measured on LeNet's 6-channel pool at batch 1: max 8 us against 25) and would run on no
    more threads (at 64 channels the gather was twice as fast on one thread)."""
    return (g.c * g.dtype.itemsize < SHORTEST_VECTOR_BYTES
            and scatter_plan(op, g).threads >= pool_plan(op, g).threads)


def pool_methods(max_forward: Callable, avg_forward: Callable, backward: Callable, scatter: Callable
                 ) -> Callable[[str, object], list[Method]]:
    """A pool module's channels_last_methods(op, g): "nhwc" for the four pooling ops, from its forward kernels
    (max_forward(x, g) -> (y, indices), avg_forward(x, g) -> y) and its backward gather backward(op, dy, indices,
    g) -> dx, where indices is None for average pooling; and "nhwc_scatter" for the backward ops from its scatter
    scatter(op, dy, indices, g) -> dx (the same arguments), first where scatter_first(op, g)."""

    def backward_by(kernel: Callable, op: str) -> Callable:
        if op.startswith("max"):
            def max_backward(dy, indices, g):
                """dy, indices (N, Ho, Wo, C) -> dx (N, H, W, C): each dy added at the cell its index names."""
                return kernel(op, dy, indices, g)

            return max_backward

        def avg_backward(dy, g):
            """dy (N, Ho, Wo, C) -> dx (N, H, W, C): each dy over its divisor added to every cell of its window."""
            return kernel(op, dy, None, g)

        return avg_backward

    table = {"max_pool2d_forward": Method("nhwc", max_forward, functools.partial(pool_plan, "max_pool2d_forward")),
             "avg_pool2d_forward": Method("nhwc", avg_forward, functools.partial(pool_plan, "avg_pool2d_forward"))}
    scatters = {}
    for op in ("max_pool2d_backward", "avg_pool2d_backward"):
        table[op] = Method("nhwc", backward_by(backward, op), functools.partial(pool_plan, op))
        scatters[op] = Method("nhwc_scatter", backward_by(scatter, op), functools.partial(scatter_plan, op))

    def channels_last_methods(op: str, g) -> list[Method]:
        if op not in scatters:
            return [table[op]] if op in table else []
        return [scatters[op], table[op]] if scatter_first(op, g) else [table[op], scatters[op]]

    return channels_last_methods


def pointwise_methods(forward_kernel: Callable, backward_kernel: Callable, bias_kernel: Callable, *, numba: bool
                      ) -> Callable[[str, object], list[Method]]:
    """A pointwise module's channels_last_methods(op, g): "nhwc" for the conv2d ops where pointwise_applies, from
    its GEMM kernels on the arrays as rows of pixels, each running ``chunks`` chunks of rows in parallel:

        forward_kernel(x (P, C), w (K, C), bias (K,), y (P, K), chunks)
        backward_kernel(dy (P, K), x (P, C), w (K, C), dx (P, C), dw_parts (chunks, K, C), need_dx, need_dw, chunks)
        bias_kernel(dy (N, H, W, K), db (K,), chunks)
    """

    def forward(x, w, b, g: ConvGeometry):
        """x (N, H, W, C), w (K, C, 1, 1), b (K,) or None -> y (N, H, W, K)."""
        y = np.empty(g.y_array_shape, g.dtype)
        bias = np.zeros(g.k, g.dtype) if b is None else b
        with parallel_region(pointwise_forward_plan(g).threads, blas_work=g.flops, numba=numba) as threads:
            forward_kernel(x.reshape(-1, g.c), w.reshape(g.k, g.c), bias, y.reshape(-1, g.k), threads)
        return y

    def backward(dy, x, w, g: ConvGeometry, need_dx, need_dw, need_db):
        """dy (N, H, W, K) -> dx (N, H, W, C), dw (K, C, 1, 1), db (K,); None where not needed."""
        plan = pointwise_backward_plan(g, need_dx, need_dw)
        scratch = plan.allocate()
        dx = np.empty(g.x_array_shape if need_dx else (1, 1, 1, 1), g.dtype)
        dw_parts = scratch["dw_parts"] if need_dw else np.empty((plan.threads, 1, 1), g.dtype)
        db = np.empty(g.k, g.dtype) if need_db else None
        with parallel_region(plan.threads, blas_work=g.flops, numba=numba) as threads:
            backward_kernel(dy.reshape(-1, g.k), x.reshape(-1, g.c), w.reshape(g.k, g.c), dx.reshape(-1, dx.shape[-1]),
                            dw_parts, need_dx, need_dw, threads)
            if need_db:
                bias_kernel(dy, db, threads)
        return dx if need_dx else None, dw_parts.sum(axis=0).reshape(g.w_shape) if need_dw else None, db

    table = {"conv2d_forward": Method("nhwc", forward, pointwise_forward_plan),
             "conv2d_backward": Method("nhwc", backward, pointwise_backward_plan)}
    return lambda op, g: [table[op]] if op in table and pointwise_applies(g) else []
