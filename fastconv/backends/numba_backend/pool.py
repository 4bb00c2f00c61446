"""Max and average pooling: one pass over the N*C planes in parallel (prange), no fastmath (NaN must win).

Planes are flattened: x (P, H*W), y and indices (P, Ho*Wo), P = N*C. Window (oh, ow) covers the input rows
rows[oh, 0]:rows[oh, 1] and columns cols[ow, 0]:cols[ow, 1] (the window clipped to the input), precomputed once
per call. Index arithmetic is unsigned: numba then skips its negative-index wraparound, a fifth of the time.
Max pooling's backward zeroes each plane and scatters dy to its indices (measured 5-38x faster than writing each
cell once from the covering window, on VGG's and ResNet's shapes). Average pooling's backward for non-overlapping
windows writes every dx cell exactly once; for overlapping windows it zeroes the plane and adds each window's share.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import int64, njit, prange, uint64

from fastconv._geometry import PoolGeometry
from fastconv._threads import parallel_region, per_budget, threads_for
from fastconv.backends._pool_tables import pool_scratch
from fastconv.backends._protocol import Method, Methods, Plan
from fastconv.backends.numba_backend._parallel import parallel_kernel


@njit(cache=True, inline="always")
def _takes(v, best):
    """Whether v replaces best: larger, or the first NaN. Bitwise, not short-circuit, so that the compiler
    makes selects (random data would mispredict a branch half the time) and can vectorize."""
    return (v > best) | ((v != v) & (best == best))


@njit(cache=True, inline="always")
def _max_window(plane, r0, r1, c0, c1, width):
    """(max, flat index) of plane[r0:r1, c0:c1], scanned in row-major order."""
    at = r0 * width + c0
    best = plane[at]
    for i in range(r0, r1):
        for q in range(i * width + c0, i * width + c1):
            take = _takes(plane[q], best)
            best = plane[q] if take else best
            at = q if take else at
    return best, at


@parallel_kernel()
def _max_forward(x, y, indices, rows, cols, width, inner, first_col, sw, kw):
    """x (P, H*W) -> y, indices (P, Ho*Wo): first maximum in row-major window order, first NaN wins.

    Output columns inner[0]:inner[1] have windows inside the input horizontally (the first one starting at
    input column first_col): they are done a whole output row at a time, one window cell after the other in
    row-major order, a loop over ow that vectorizes; the border columns go window by window."""
    out_h, out_w = uint64(rows.shape[0]), uint64(cols.shape[0])
    lo, hi = inner[0], inner[1]
    for p in prange(x.shape[0]):
        plane, best_of, index_of = x[p], y[p], indices[p]
        for oh in range(out_h):
            row = oh * out_w
            for ow in range(out_w):
                if ow < lo or ow >= hi:
                    best, at = _max_window(plane, rows[oh, 0], rows[oh, 1], cols[ow, 0], cols[ow, 1], width)
                    best_of[row + ow] = best
                    index_of[row + ow] = int64(at)
            for i in range(rows[oh, 0], rows[oh, 1]):
                for j in range(kw):
                    start = i * width + first_col + j
                    first_cell = i == rows[oh, 0] and j == 0
                    if sw == 2:  # the usual 2x2 / 3x3 stride-2 pools: a constant stride vectorizes
                        _max_row(plane, best_of, index_of, start, uint64(2), row + lo, hi - lo, first_cell)
                    else:
                        _max_row(plane, best_of, index_of, start, sw, row + lo, hi - lo, first_cell)


@njit(cache=True, inline="always")
def _max_row(plane, best_of, index_of, start, step, first_out, count, first_cell):
    """One window cell for count consecutive windows: cell start + o*step of window first_out + o either
    starts the window (first_cell) or replaces its maximum when it _takes it."""
    if first_cell:
        for o in range(count):
            best_of[first_out + o] = plane[start + o * step]
            index_of[first_out + o] = int64(start + o * step)
        return
    for o in range(count):
        v = plane[start + o * step]
        take = _takes(v, best_of[first_out + o])
        best_of[first_out + o] = v if take else best_of[first_out + o]
        index_of[first_out + o] = int64(start + o * step) if take else index_of[first_out + o]


@njit(cache=True)
def _scatter_max_plane(dy, indices, dx):
    """dy, indices (Ho*Wo,); dx (H*W,) zeroed here, then each dy added at its index."""
    dx[:] = 0
    for o in range(dy.shape[0]):
        dx[indices[o]] += dy[o]


@njit(cache=True, inline="always")
def _route_row(grad, inverse, out, start, step, first_out, count):
    """One window cell for count consecutive windows: out[start + o*step] = the share of window first_out + o."""
    for o in range(count):
        out[start + o * step] = grad[first_out + o] * inverse[first_out + o]


@parallel_kernel()
def _avg_backward_disjoint(dy, inverse, dx, rows, cols, width, inner, first_col, sw, kw, row_window, col_window):
    """dy (P, Ho*Wo) -> dx (P, H*W) when windows do not overlap; inverse (Ho*Wo,) = 1 / divisor (a
    multiplication, as a division per cell would bound the whole pass); arguments as _max_forward's, plus
    row_window[ih] (col_window[iw]): the window row (column) holding input row ih (column iw), or -1. Each dx cell
    is written once: cells in no window get 0, the others their window's dy * inverse, interior windows a whole
    output row at a time as in the forward pass."""
    out_h, out_w = uint64(rows.shape[0]), uint64(cols.shape[0])
    lo, hi = inner[0], inner[1]
    for p in prange(dx.shape[0]):
        grad, out = dy[p], dx[p]
        for ih in range(uint64(row_window.shape[0])):
            for iw in range(width):  # first touch in memory order (measured faster than zeroing gaps only)
                if row_window[ih] < 0 or col_window[iw] < 0:
                    out[ih * width + iw] = 0
        for oh in range(out_h):
            row = oh * out_w
            for ow in range(out_w):
                if ow < lo or ow >= hi:
                    for i in range(rows[oh, 0], rows[oh, 1]):
                        for q in range(i * width + cols[ow, 0], i * width + cols[ow, 1]):
                            out[q] = grad[row + ow] * inverse[row + ow]
            for i in range(rows[oh, 0], rows[oh, 1]):
                for j in range(kw):
                    start = i * width + first_col + j
                    if sw == 2:  # constant stride: vectorizes, as in _max_forward
                        _route_row(grad, inverse, out, start, uint64(2), row + lo, hi - lo)
                    else:
                        _route_row(grad, inverse, out, start, sw, row + lo, hi - lo)


@parallel_kernel()
def _max_backward_scatter(dy, indices, dx):
    """dy, indices (P, Ho*Wo) -> dx (P, H*W): serial scatter within each plane, planes in parallel."""
    for p in prange(dx.shape[0]):
        _scatter_max_plane(dy[p], indices[p], dx[p])


@njit(cache=True, inline="always")
def _sum_row(plane, total_of, start, step, first_out, count, first_cell):
    """One window cell for count consecutive windows: starts (first_cell) or adds to each window's sum."""
    if first_cell:
        for o in range(count):
            total_of[first_out + o] = plane[start + o * step]
        return
    for o in range(count):
        total_of[first_out + o] += plane[start + o * step]


@parallel_kernel()
def _avg_forward(x, y, divisor, rows, cols, width, inner, first_col, sw, kw):
    """x (P, H*W) -> y (P, Ho*Wo): window sum over input cells / divisor (Ho*Wo,); arguments as
    _max_forward's, with the interior windows summed a whole output row at a time."""
    out_h, out_w = uint64(rows.shape[0]), uint64(cols.shape[0])
    lo, hi = inner[0], inner[1]
    for p in prange(x.shape[0]):
        plane, mean_of = x[p], y[p]
        for oh in range(out_h):
            row = oh * out_w
            for ow in range(out_w):
                if ow < lo or ow >= hi:
                    total = x.dtype.type(0)
                    for i in range(rows[oh, 0], rows[oh, 1]):
                        for q in range(i * width + cols[ow, 0], i * width + cols[ow, 1]):
                            total += plane[q]
                    mean_of[row + ow] = total
            for i in range(rows[oh, 0], rows[oh, 1]):
                for j in range(kw):
                    start = i * width + first_col + j
                    first_cell = i == rows[oh, 0] and j == 0
                    if sw == 2:  # constant stride: vectorizes, as in _max_forward
                        _sum_row(plane, mean_of, start, uint64(2), row + lo, hi - lo, first_cell)
                    else:
                        _sum_row(plane, mean_of, start, sw, row + lo, hi - lo, first_cell)
            for ow in range(out_w):
                mean_of[row + ow] /= divisor[row + ow]


@parallel_kernel()
def _avg_backward_scatter(dy, divisor, dx, rows, cols, width):
    """dy (P, Ho*Wo) -> dx (P, H*W) for overlapping windows: zero, then add dy / divisor over each window."""
    out_h, out_w = uint64(rows.shape[0]), uint64(cols.shape[0])
    for p in prange(dx.shape[0]):
        grad, out = dy[p], dx[p]
        out[:] = 0
        for oh in range(out_h):
            for ow in range(out_w):
                share = grad[oh * out_w + ow] / divisor[oh * out_w + ow]
                for i in range(rows[oh, 0], rows[oh, 1]):
                    for q in range(i * width + cols[ow, 0], i * width + cols[ow, 1]):
                        out[q] += share


@parallel_kernel(fastmath={"reassoc"})
def _plane_means(x, y, divisor):
    """y (P,) = the sum of each plane x (P, H*W) / divisor: global average pooling, one contiguous (vectorized)
    sum per plane instead of a window loop."""
    for p in prange(x.shape[0]):
        plane = x[p]
        total = x.dtype.type(0)
        for i in range(uint64(plane.shape[0])):
            total += plane[i]
        y[p] = total / divisor


@parallel_kernel()
def _plane_shares(dy, dx, scale):
    """dx (P, H*W): every cell of plane p dy[p] * scale (global average pooling's gradient)."""
    for p in prange(dx.shape[0]):
        out, share = dx[p], dy[p] * scale
        for i in range(uint64(out.shape[0])):
            out[i] = share


def _inner_columns(g: PoolGeometry) -> tuple:
    """(inner, first_col, sw, kw): the output columns [inner[0], inner[1]) whose windows lie inside the input
    horizontally, the input column the first of them starts at, stride and width, as the kernels take them."""
    starts = np.arange(g.out_w) * g.stride_w - g.pad_left
    inside = np.flatnonzero((starts >= 0) & (starts + g.kw <= g.w))
    lo, hi = (int(inside[0]), int(inside[-1]) + 1) if inside.size else (0, 0)
    return (np.array([lo, hi], np.uint64), np.uint64(max(lo * g.stride_w - g.pad_left, 0)), np.uint64(g.stride_w),
            np.uint64(g.kw))


def _planes(a: np.ndarray) -> np.ndarray:
    """(N, C, H, W) -> (N*C, H*W) view."""
    return a.reshape(a.shape[0] * a.shape[1], -1)


@per_budget
def plan(op: str, g: PoolGeometry) -> Plan:
    """Planes in parallel; the tables the kernels read: window bounds (rows and columns), the average's divisors
    (their reciprocals for the backward of non-overlapping windows), and for that backward the window covering each
    input row and column; none for max pooling's backward, a plain scatter of each plane's indices. Made once per
    geometry."""
    threads = threads_for(g.reads, g.n * g.c)
    if op == "max_pool2d_backward":
        return Plan(threads)
    tables = {"window_rows": ((g.out_h, 2), np.int64), "window_cols": ((g.out_w, 2), np.int64)}
    if op.startswith("avg"):
        name = "inverse_divisor" if op.endswith("backward") and not g.overlapping else "divisor"
        tables[name] = ((g.out_h, g.out_w), g.dtype)
    if op == "avg_pool2d_backward" and not g.overlapping:
        tables |= {"row_window": ((g.h,), np.int64), "col_window": ((g.w,), np.int64)}
    return Plan(threads, tables)


def _tables(op: str, g: PoolGeometry) -> tuple[Plan, dict]:
    """The op's plan and its tables, filled; window bounds unsigned, as the kernels index with them."""
    op_plan = plan(op, g)
    tables = pool_scratch(op_plan, g)
    if "window_rows" in tables:
        tables["window_rows"] = tables["window_rows"].view(np.uint64)
        tables["window_cols"] = tables["window_cols"].view(np.uint64)
    return op_plan, tables


def _window_args(tables: dict, g: PoolGeometry) -> tuple:
    """rows (Ho, 2), cols (Wo, 2) window bounds and the row length, as the kernels take them."""
    return tables["window_rows"], tables["window_cols"], np.uint64(g.w)


def max_pool2d_forward(x, g: PoolGeometry):
    """x (N, C, H, W) -> y (N, C, Ho, Wo), indices (N, C, Ho, Wo) int64 (flat h*W + w)."""
    op_plan, tables = _tables("max_pool2d_forward", g)
    y = np.empty(g.y_shape, g.dtype)
    indices = np.empty(g.y_shape, np.int64)
    with parallel_region(op_plan.threads, numba=True):
        _max_forward(_planes(x), _planes(y), _planes(indices), *_window_args(tables, g), *_inner_columns(g))
    return y, indices


def max_pool2d_backward(dy, indices, g: PoolGeometry):
    """dy, indices (N, C, Ho, Wo) -> dx (N, C, H, W)."""
    dx = np.empty(g.x_shape, g.dtype)
    with parallel_region(plan("max_pool2d_backward", g).threads, numba=True):
        _max_backward_scatter(_planes(dy), _planes(indices), _planes(dx))
    return dx


def avg_pool2d_forward(x, g: PoolGeometry):
    """x (N, C, H, W) -> y (N, C, Ho, Wo)."""
    op_plan, tables = _tables("avg_pool2d_forward", g)
    y = np.empty(g.y_shape, g.dtype)
    with parallel_region(op_plan.threads, numba=True):
        _avg_forward(_planes(x), _planes(y), tables["divisor"].ravel(), *_window_args(tables, g),
                     *_inner_columns(g))
    return y


def avg_pool2d_backward(dy, g: PoolGeometry):
    """dy (N, C, Ho, Wo) -> dx (N, C, H, W)."""
    op_plan, tables = _tables("avg_pool2d_backward", g)
    dx = np.empty(g.x_shape, g.dtype)
    with parallel_region(op_plan.threads, numba=True):
        if g.overlapping:
            _avg_backward_scatter(_planes(dy), tables["divisor"].ravel(), _planes(dx), *_window_args(tables, g))
        else:
            _avg_backward_disjoint(_planes(dy), tables["inverse_divisor"].ravel(), _planes(dx),
                                   *_window_args(tables, g), *_inner_columns(g), tables["row_window"],
                                   tables["col_window"])
    return dx


def global_plan(g: PoolGeometry) -> Plan:
    """Planes in parallel; no tables."""
    return Plan(threads_for(g.reads, g.n * g.c))


def global_avg_forward(x, g: PoolGeometry):
    """x (N, C, H, W) -> y (N, C, 1, 1) when one window covers each plane: plane sums / the divisor."""
    y = np.empty(g.y_shape, g.dtype)
    with parallel_region(global_plan(g).threads, numba=True):
        _plane_means(_planes(x), y.reshape(-1), g.dtype.type(g.global_divisor))
    return y


def global_avg_backward(dy, g: PoolGeometry):
    """dy (N, C, 1, 1) -> dx (N, C, H, W) when one window covers each plane: dy / the divisor everywhere."""
    dx = np.empty(g.x_shape, g.dtype)
    with parallel_region(global_plan(g).threads, numba=True):
        _plane_shares(dy.reshape(-1), _planes(dx), np.reciprocal(g.dtype.type(g.global_divisor)))
    return dx


def methods(op: str, g: PoolGeometry) -> Methods:
    """A pooling op's methods: "pool", one pass over the planes; for global average pooling "global" first."""
    return _WITH_GLOBAL[op] if g.is_global and op in _WITH_GLOBAL else _METHODS[op]


_METHODS = {op: Methods.of(Method("pool", kernel, functools.partial(plan, op))) for op, kernel in (
    ("max_pool2d_forward", max_pool2d_forward), ("max_pool2d_backward", max_pool2d_backward),
    ("avg_pool2d_forward", avg_pool2d_forward), ("avg_pool2d_backward", avg_pool2d_backward))}

#: for global average pooling, "global" first
_WITH_GLOBAL = {op: Methods.of(Method("global", run, global_plan), _METHODS[op].chosen) for op, run in (
    ("avg_pool2d_forward", global_avg_forward), ("avg_pool2d_backward", global_avg_backward))}
