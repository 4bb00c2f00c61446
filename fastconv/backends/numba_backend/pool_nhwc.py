"""Max and average pooling on channels-last arrays: every window's cells are runs of C contiguous channels, so the
innermost loop runs over channels (it vectorizes) and the work splits over (image, output row) in parallel.

Arrays are flat: x (N*H*W*C,), y and indices (N*Ho*Wo*C,), cell q = h*W + w of image n at (n*H*W + q)*C.
Window (oh, ow) covers input rows rows[oh, 0]:rows[oh, 1] and columns cols[ow, 0]:cols[ow, 1], read in row-major
order (ties go to the first maximum; the first NaN wins, as in pool.py). The backward passes gather: input row
ih of image n (in parallel) sums what the windows row_cover[ih] x col_cover[iw] send each cell, so every dx cell
is written once, overlapping windows or not. Index arithmetic is unsigned, as in pool.py.
"""

from __future__ import annotations

import numpy as np
from numba import int64, njit, prange, uint64

from fastconv._geometry import PoolGeometry
from fastconv._threads import parallel_region
from fastconv.backends._nhwc import pool_methods, pool_tables, scatter_plan
from fastconv.backends._pool_tables import freeze, pool_scratch
from fastconv.backends._protocol import Plan
from fastconv.backends.numba_backend._parallel import parallel_kernel
from fastconv.backends.numba_backend.pool import _takes


#: the divisors max pooling's gather is given, read-only as the window tables are, so that numba compiles the
#: gather once per dtype, not once more for a writable divisor
_UNIT_DIVISORS = {np.dtype(dtype): np.ones(1, dtype) for dtype in (np.float32, np.float64)}
freeze(_UNIT_DIVISORS.values())


@parallel_kernel()
def _max_forward(x, y, indices, rows, cols, jobs, height, width, channels):
    """x -> y, indices: the first maximum of each window and channel, its cell's flat index h*W + w; jobs = N*Ho."""
    out_h, out_w = uint64(rows.shape[0]), uint64(cols.shape[0])
    for job in prange(jobs):
        n, oh = uint64(job) // out_h, uint64(job) % out_h
        for ow in range(out_w):
            o = ((n * out_h + oh) * out_w + ow) * channels
            first = rows[oh, 0] * width + cols[ow, 0]
            src = (n * height * width + first) * channels
            for c in range(channels):
                y[o + c] = x[src + c]
                indices[o + c] = int64(first)
            for i in range(rows[oh, 0], rows[oh, 1]):
                for q in range(i * width + cols[ow, 0], i * width + cols[ow, 1]):
                    src = (n * height * width + q) * channels
                    if q != first:
                        for c in range(channels):
                            v = x[src + c]
                            take = _takes(v, y[o + c])
                            y[o + c] = v if take else y[o + c]
                            indices[o + c] = int64(q) if take else indices[o + c]


@parallel_kernel()
def _avg_forward(x, y, divisor, rows, cols, jobs, height, width, channels):
    """x -> y: each window's sum over its input cells / divisor (Ho*Wo,); jobs = N*Ho."""
    out_h, out_w = uint64(rows.shape[0]), uint64(cols.shape[0])
    for job in prange(jobs):
        n, oh = uint64(job) // out_h, uint64(job) % out_h
        for ow in range(out_w):
            o = ((n * out_h + oh) * out_w + ow) * channels
            for c in range(channels):
                y[o + c] = 0
            for i in range(rows[oh, 0], rows[oh, 1]):
                for q in range(i * width + cols[ow, 0], i * width + cols[ow, 1]):
                    src = (n * height * width + q) * channels
                    for c in range(channels):
                        y[o + c] += x[src + c]
            for c in range(channels):
                y[o + c] /= divisor[oh * out_w + ow]


@parallel_kernel()
def _backward_gather(dy, indices, divisor, dx, row_cover, col_cover, out_h, out_w, channels, hits, is_max):
    """dy (N*Ho*Wo*C,) -> dx (N*H*W*C,): each cell the sum of what its covering windows send, in row-major window
    order: dy where the window's index names the cell (max), dy / divisor (Ho*Wo,) (avg).

    hits (N*H,): argmax hits per input row. An image whose hits fall short of its outputs has an index outside
    its own window (user-given indices only): it is redone by a scatter of every dy at its index."""
    height, width = uint64(row_cover.shape[0]), uint64(col_cover.shape[0])
    zero = dx.dtype.type(0)
    for job in prange(hits.shape[0]):
        n, ih = uint64(job) // height, uint64(job) % height
        matched = 0
        for iw in range(width):
            q = ih * width + iw
            dst = (n * height * width + q) * channels
            for c in range(channels):
                dx[dst + c] = zero
            for oh in range(row_cover[ih, 0], row_cover[ih, 1]):
                for ow in range(col_cover[iw, 0], col_cover[iw, 1]):
                    o = ((n * out_h + oh) * out_w + ow) * channels
                    if is_max:
                        for c in range(channels):
                            hit = indices[o + c] == int64(q)
                            dx[dst + c] += dy[o + c] if hit else zero
                            matched += int64(hit)
                    else:
                        for c in range(channels):
                            dx[dst + c] += dy[o + c] / divisor[oh * out_w + ow]
        hits[job] = matched
    outputs, cells = out_h * out_w * channels, height * width * channels
    for image in prange(hits.shape[0] // row_cover.shape[0]):
        n = uint64(image)
        if is_max and uint64(hits[n * height:(n + 1) * height].sum()) != outputs:
            _scatter_image(dy[n * outputs:(n + 1) * outputs], indices[n * outputs:(n + 1) * outputs],
                           dx[n * cells:(n + 1) * cells], channels)


@parallel_kernel()
def _max_backward_scatter(dy, indices, dx, images, channels):
    """dy, indices (N*Ho*Wo*C,) -> dx (N*H*W*C,): zeros plus each dy at the cell its index names, images in
    parallel (windows in order, so overlapping windows add up as the gather adds them)."""
    outputs, cells = dy.shape[0] // images, dx.shape[0] // images
    for n in prange(images):
        _scatter_image(dy[n * outputs:(n + 1) * outputs], indices[n * outputs:(n + 1) * outputs],
                       dx[n * cells:(n + 1) * cells], channels)


@parallel_kernel()
def _avg_backward_scatter(dy, divisor, dx, rows, cols, images, height, width, channels):
    """dy (N*Ho*Wo*C,) -> dx (N*H*W*C,): zeros plus each dy over its divisor (Ho*Wo,) at every cell of its window
    (the forward's bounds), windows in order (so overlapping windows add up as the gather adds them), images in
    parallel."""
    out_h, out_w = uint64(rows.shape[0]), uint64(cols.shape[0])
    outputs, cells = uint64(dy.shape[0] // images), uint64(dx.shape[0] // images)
    for image in prange(images):
        n = uint64(image)
        dx[n * cells:(n + 1) * cells] = 0
        for oh in range(out_h):
            for ow in range(out_w):
                o = n * outputs + (oh * out_w + ow) * channels
                share = divisor[oh * out_w + ow]
                for i in range(rows[oh, 0], rows[oh, 1]):
                    for q in range(i * width + cols[ow, 0], i * width + cols[ow, 1]):
                        dst = (n * height * width + q) * channels
                        for c in range(channels):
                            dx[dst + c] += dy[o + c] / share


@njit(cache=True)
def _scatter_image(dy, indices, dx, channels):
    """dy, indices (Ho*Wo*C,) of one image -> dx (H*W*C,) zeroed, then each dy added at its cell's channel."""
    dx[:] = 0
    for o in range(uint64(dy.shape[0])):
        dx[uint64(indices[o]) * channels + o % channels] += dy[o]


def _tables(op: str, g: PoolGeometry) -> tuple[Plan, dict]:
    """The op's plan and its tables, filled; the window tables unsigned, as the kernels index with them."""
    op_plan, tables = pool_tables(op, g)
    windows = ("window_rows", "window_cols", "row_cover", "col_cover")
    return op_plan, {name: table.view(np.uint64) if name in windows else table for name, table in tables.items()}


def _sizes(g: PoolGeometry) -> tuple:
    """The forward kernels' jobs (N*Ho), height, width and channels."""
    return g.n * g.out_h, np.uint64(g.h), np.uint64(g.w), np.uint64(g.c)


def max_pool2d_forward(x, g: PoolGeometry):
    """x (N, H, W, C) -> y (N, Ho, Wo, C), indices (N, Ho, Wo, C) int64 (flat h*W + w)."""
    op_plan, tables = _tables("max_pool2d_forward", g)
    y = np.empty(g.y_array_shape, g.dtype)
    indices = np.empty(g.y_array_shape, np.int64)
    with parallel_region(op_plan.threads, numba=True):
        _max_forward(x.ravel(), y.ravel(), indices.ravel(), tables["window_rows"], tables["window_cols"],
                     *_sizes(g))
    return y, indices


def avg_pool2d_forward(x, g: PoolGeometry):
    """x (N, H, W, C) -> y (N, Ho, Wo, C)."""
    op_plan, tables = _tables("avg_pool2d_forward", g)
    y = np.empty(g.y_array_shape, g.dtype)
    with parallel_region(op_plan.threads, numba=True):
        _avg_forward(x.ravel(), y.ravel(), tables["divisor"].ravel(), tables["window_rows"], tables["window_cols"],
                     *_sizes(g))
    return y


def _backward(op: str, dy, indices, g: PoolGeometry):
    """dx (N, H, W, C) by _backward_gather: max pooling with indices, avg pooling without."""
    op_plan, tables = _tables(op, g)
    dx = np.empty(g.x_array_shape, g.dtype)
    is_max = indices is not None
    divisor = tables["divisor"].ravel() if not is_max else _UNIT_DIVISORS[g.dtype]  # read-only as the tables
    with parallel_region(op_plan.threads, numba=True):
        _backward_gather(dy.ravel(), indices.ravel() if is_max else np.zeros(1, np.int64), divisor, dx.ravel(),
                         tables["row_cover"], tables["col_cover"], np.uint64(g.out_h), np.uint64(g.out_w),
                         np.uint64(g.c), tables["hits"], is_max)
    return dx


def _scatter(op: str, dy, indices, g: PoolGeometry):
    """dx (N, H, W, C) by the scatter kernels: each dy at the cell its index names (max pooling, with indices), or
    over its divisor at every cell of its window (average pooling, indices None)."""
    plan = scatter_plan(op, g)
    tables = pool_scratch(plan, g)
    dx = np.empty(g.x_array_shape, g.dtype)
    with parallel_region(plan.threads, numba=True):
        if indices is not None:
            _max_backward_scatter(dy.ravel(), indices.ravel(), dx.ravel(), g.n, np.uint64(g.c))
        else:
            _avg_backward_scatter(dy.ravel(), tables["divisor"].ravel(), dx.ravel(),
                                  tables["window_rows"].view(np.uint64), tables["window_cols"].view(np.uint64), g.n,
                                  np.uint64(g.h), np.uint64(g.w), np.uint64(g.c))
    return dx


channels_last_methods = pool_methods(max_pool2d_forward, avg_pool2d_forward, _backward, _scatter)
