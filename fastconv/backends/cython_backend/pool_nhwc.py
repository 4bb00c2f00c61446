"""Max and average pooling on channels-last arrays (_nhwc.pyx): channels innermost, (image, row) pairs in
parallel; the backward passes gather, writing each dx cell once (see _nhwc.pyx). Pooling of fewer channels than
a vector holds, on small maps, runs first "nhwc_planes" forward: each channel of each image as a plane of cells C
apart, by the NCHW kernels' all-windows-at-once loops (_pool.pyx)."""

from __future__ import annotations

import functools

import numpy as np

from fastconv._geometry import PoolGeometry
from fastconv._threads import parallel_region, per_budget, threads_for
from fastconv.backends._nhwc import SHORTEST_VECTOR_BYTES, pool_methods, pool_tables, scatter_plan
from fastconv.backends._pool_tables import pool_scratch
from fastconv.backends._protocol import Method, Plan
from fastconv.backends.cython_backend._levels import load

_nhwc = load("_nhwc")  # the kernels built for this CPU's instruction set
_pool = load("_pool")


def max_pool2d_forward(x, g: PoolGeometry):
    """x (N, H, W, C) -> y (N, Ho, Wo, C), indices (N, Ho, Wo, C) int64 (flat h*W + w)."""
    plan, tables = pool_tables("max_pool2d_forward", g)
    y = np.empty(g.y_array_shape, g.dtype)
    indices = np.empty(g.y_array_shape, np.int64)
    with parallel_region(plan.threads) as threads:
        _nhwc.max_forward(x, y, indices, tables["window_rows"], tables["window_cols"], threads)
    return y, indices


def avg_pool2d_forward(x, g: PoolGeometry):
    """x (N, H, W, C) -> y (N, Ho, Wo, C)."""
    plan, tables = pool_tables("avg_pool2d_forward", g)
    y = np.empty(g.y_array_shape, g.dtype)
    with parallel_region(plan.threads) as threads:
        _nhwc.avg_forward(x, tables["divisor"], y, tables["window_rows"], tables["window_cols"], threads)
    return y


def _backward(op: str, dy, indices, g: PoolGeometry):
    """dx (N, H, W, C) by the gather kernel: max pooling with indices, avg pooling without."""
    plan, tables = pool_tables(op, g)
    dx = np.empty(g.x_array_shape, g.dtype)
    is_max = indices is not None
    with parallel_region(plan.threads) as threads:
        _nhwc.backward_gather(dy, indices if is_max else np.zeros((1, 1, 1, 1), np.int64),
                              np.ones((1, 1), g.dtype) if is_max else tables["divisor"], dx, tables["row_cover"],
                              tables["col_cover"], tables["hits"], is_max, threads)
    return dx


def _scatter(op: str, dy, indices, g: PoolGeometry):
    """dx (N, H, W, C) by the scatter kernels: each dy at the cell its index names (max pooling, with indices), or
    over its divisor at every cell of its window (average pooling, indices None)."""
    plan = scatter_plan(op, g)
    tables = pool_scratch(plan, g)
    dx = np.empty(g.x_array_shape, g.dtype)
    with parallel_region(plan.threads) as threads:
        if indices is not None:
            _nhwc.max_backward_scatter(dy, indices, dx, threads)
        else:
            _nhwc.avg_backward_scatter(dy, tables["divisor"], dx, tables["window_rows"], tables["window_cols"],
                                       threads)
    return dx


def planes_apply(g: PoolGeometry) -> bool:
    """Fewer channels than the shortest vector holds (the channel loops would run scalar), and planes that the
    all-windows-at-once loops take (at most 256 outputs, every window inside the input)."""
    return g.c * g.dtype.itemsize < SHORTEST_VECTOR_BYTES and _pool.planes_apply(vars(g))


@per_budget
def planes_plan(op: str, g: PoolGeometry) -> Plan:
    """(image, channel) planes in parallel; average pooling's divisors."""
    divisor = {"divisor": ((g.out_h, g.out_w), g.dtype)} if op.startswith("avg") else {}
    return Plan(threads_for(g.reads, g.n * g.c), divisor)


def max_pool2d_forward_planes(x, g: PoolGeometry):
    """x (N, H, W, C) -> y (N, Ho, Wo, C), indices (N, Ho, Wo, C) int64, plane by plane (planes_apply(g))."""
    plan = planes_plan("max_pool2d_forward", g)
    y = np.empty(g.y_array_shape, g.dtype)
    indices = np.empty(g.y_array_shape, np.int64)
    with parallel_region(plan.threads) as threads:
        _pool.max_forward_planes(x, y, indices, vars(g), threads)
    return y, indices


def avg_pool2d_forward_planes(x, g: PoolGeometry):
    """x (N, H, W, C) -> y (N, Ho, Wo, C), plane by plane (planes_apply(g))."""
    plan = planes_plan("avg_pool2d_forward", g)
    divisor = pool_scratch(plan, g)["divisor"]
    y = np.empty(g.y_array_shape, g.dtype)
    with parallel_region(plan.threads) as threads:
        _pool.avg_forward_planes(x, divisor, y, vars(g), threads)
    return y


_PLANES = {op: Method("nhwc_planes", kernel, functools.partial(planes_plan, op)) for op, kernel in
           (("max_pool2d_forward", max_pool2d_forward_planes), ("avg_pool2d_forward", avg_pool2d_forward_planes))}
_native_methods = pool_methods(max_pool2d_forward, avg_pool2d_forward, _backward, _scatter)


def channels_last_methods(op: str, g: PoolGeometry) -> list[Method]:
    """The shared native methods (fastconv.backends._nhwc.pool_methods), "nhwc_planes" first where it applies."""
    methods = _native_methods(op, g)
    return [_PLANES[op], *methods] if op in _PLANES and planes_apply(g) else methods
