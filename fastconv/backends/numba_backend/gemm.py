"""Convolution as im2col + GEMM, one tile of output rows at a time (never the whole batch).

The batch is split into ``chunks`` contiguous ranges of images run in parallel (prange), each with its own
rows of the plan's buffers, so BLAS inside runs single-threaded (parallel_region). Per tile and group:

    forward:  out (Kg, cols) = W_g (Kg, Cg*R*S) @ col (Cg*R*S, cols), copied into y with the bias
    dW:       dW_g += dY_tile (Kg, cols) @ col.T, into the chunk's own accumulator (summed afterwards)
    dX:       dcol = W_g.T @ dY_tile, scattered back into dx (col2im; a chunk owns its images' dx)
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, uint64

from fastconv._geometry import ConvGeometry
from fastconv._threads import parallel_region, per_budget, threads_for
from fastconv.backends._protocol import Plan
from fastconv.backends.numba_backend._chunks import add_into, chunk_bounds
from fastconv.backends.numba_backend._columns import add_columns, fill_columns, next_row, params
from fastconv.backends.numba_backend._parallel import parallel_kernel

#: bytes of one tile's column matrix (measured: 0.5-2 MB all run within a few % on resnet, vgg, alexnet)
TILE_BYTES = 1024 * 1024


def applies(g: ConvGeometry) -> bool:
    """Any geometry."""
    return True


def tile_rows(g: ConvGeometry) -> int:
    """Output rows per tile: as many as fit TILE_BYTES of columns, at least one, at most the batch's."""
    column_bytes = g.c_per_group * g.r * g.s * g.dtype.itemsize * g.out_w
    return max(1, min(TILE_BYTES // column_bytes, g.n * g.out_h))


def _tile_buffers(g: ConvGeometry, threads: int) -> dict:
    """Each chunk's column matrix (Cg*R*S, tile) and GEMM tile (Kg, tile), flat."""
    cols = tile_rows(g) * g.out_w
    return {"columns": ((threads, g.c_per_group * g.r * g.s * cols), g.dtype),
            "tile": ((threads, g.k_per_group * cols), g.dtype)}


@per_budget
def forward_plan(g: ConvGeometry) -> Plan:
    threads = threads_for(g.flops, g.n)
    return Plan(threads, _tile_buffers(g, threads))


@per_budget
def backward_plan(g: ConvGeometry, need_dx: bool = True, need_dw: bool = True) -> Plan:
    """The tile buffers, and for dW each chunk's GEMM result and accumulator."""
    threads = threads_for(g.flops, g.n)
    buffers = _tile_buffers(g, threads)
    if need_dw:
        crs = g.c_per_group * g.r * g.s
        buffers |= {"dw_tile": ((threads, g.k_per_group, crs), g.dtype), "dw_parts": ((threads, g.k, crs), g.dtype)}
    return Plan(threads, buffers)


@njit(cache=True)
def _copy_rows(out, y, k0, row0, rows, bias):
    """y[n, k0 + kk, oh, :] = out[kk, j*Wo:(j+1)*Wo] + bias[k0 + kk] for the tile's global rows
    (flat unsigned offsets, as in _columns)."""
    k, out_h, out_w = y.shape[1], y.shape[2], uint64(y.shape[3])
    tile, image = out.ravel(), y.ravel()
    for kk in range(out.shape[0]):
        n, oh = divmod(row0, out_h)
        for j in range(rows):
            first_in = uint64(kk * out.shape[1] + j * out_w)
            first_out = uint64(((n * k + k0 + kk) * out_h + oh) * out_w)
            for ow in range(out_w):
                image[first_out + ow] = tile[first_in + ow] + bias[k0 + kk]
            n, oh = next_row(n, oh, out_h)


@njit(cache=True)
def _gather_rows(dy, k0, row0, rows, out):
    """out[kk, j*Wo + ow] = dy[n, k0 + kk, oh, ow]: the tile's rows of dy for one group."""
    k, out_h, out_w = dy.shape[1], dy.shape[2], uint64(dy.shape[3])
    image, tile = dy.ravel(), out.ravel()
    for kk in range(out.shape[0]):
        n, oh = divmod(row0, out_h)
        for j in range(rows):
            first_in = uint64(((n * k + k0 + kk) * out_h + oh) * out_w)
            first_out = uint64(kk * out.shape[1] + j * out_w)
            for ow in range(out_w):
                tile[first_out + ow] = image[first_in + ow]
            n, oh = next_row(n, oh, out_h)


@njit(cache=True, inline="always")
def _weight_groups(x, w):
    """(groups, Kg, Cg*R*S, w as a (K, Cg*R*S) matrix) of x (N, C, H, W) and w (K, Cg, R, S)."""
    k, cg, r_size, s_size = w.shape
    groups = x.shape[1] // cg
    return groups, k // groups, cg * r_size * s_size, w.reshape(k, cg * r_size * s_size)


@njit(cache=True, inline="always")
def _tile_views(col_buf, tile_buf, crs, kg, cols):
    """The column matrix (crs, cols) and GEMM tile (kg, cols) of one tile, at the front of a chunk's buffers."""
    return col_buf[:crs * cols].reshape(crs, cols), tile_buf[:kg * cols].reshape(kg, cols)


@parallel_kernel()
def _forward(x, w, bias, y, params, rows_per_tile, columns, tiles):
    """x (N, C, H, W), w (K, Cg, R, S), bias (K,) -> y (N, K, Ho, Wo); columns, tiles: one row per chunk."""
    groups, kg, crs, wmat = _weight_groups(x, w)
    r_size, s_size, out_h, out_w = w.shape[2], w.shape[3], y.shape[2], y.shape[3]
    chunks = columns.shape[0]
    for t in prange(chunks):
        n0, n1 = chunk_bounds(x.shape[0], chunks, t)
        for row0 in range(n0 * out_h, n1 * out_h, rows_per_tile):
            rows = min(rows_per_tile, n1 * out_h - row0)
            col, out = _tile_views(columns[t], tiles[t], crs, kg, rows * out_w)
            for group in range(groups):
                fill_columns(x, group, row0, rows, r_size, s_size, params, out_h, out_w, col)
                np.dot(wmat[group * kg:(group + 1) * kg], col, out)
                _copy_rows(out, y, group * kg, row0, rows, bias)


@parallel_kernel()
def _backward(dy, x, w, dx, dw_parts, dw_tiles, params, rows_per_tile, columns, tiles, need_dx, need_dw):
    """dy (N, K, Ho, Wo) -> dx (N, C, H, W) += col2im (dx zeroed by the caller) and
    dw_parts (chunks, K, Cg*R*S) = each chunk's share of dW (dw_tiles: each chunk's GEMM result)."""
    groups, kg, crs, wmat = _weight_groups(x, w)
    r_size, s_size, out_h, out_w = w.shape[2], w.shape[3], dy.shape[2], dy.shape[3]
    chunks = columns.shape[0]
    for t in prange(chunks):
        if need_dw:
            dw_parts[t] = 0
        n0, n1 = chunk_bounds(x.shape[0], chunks, t)
        for row0 in range(n0 * out_h, n1 * out_h, rows_per_tile):
            rows = min(rows_per_tile, n1 * out_h - row0)
            col, dy_tile = _tile_views(columns[t], tiles[t], crs, kg, rows * out_w)
            for group in range(groups):
                _gather_rows(dy, group * kg, row0, rows, dy_tile)
                if need_dw:
                    fill_columns(x, group, row0, rows, r_size, s_size, params, out_h, out_w, col)
                    np.dot(dy_tile, col.T, dw_tiles[t])
                    add_into(dw_parts[t, group * kg:(group + 1) * kg], dw_tiles[t])
                if need_dx:
                    np.dot(wmat[group * kg:(group + 1) * kg].T, dy_tile, col)
                    add_columns(col, group, row0, rows, r_size, s_size, params, out_h, out_w, dx)


def forward(x, w, b, g: ConvGeometry):
    """x (N, C, H, W), w (K, C/groups, R, S), b (K,) or None -> y (N, K, Ho, Wo)."""
    plan = forward_plan(g)
    scratch = plan.allocate()
    y = np.empty(g.y_shape, g.dtype)
    bias = np.zeros(g.k, g.dtype) if b is None else b
    with parallel_region(plan.threads, blas_work=g.flops, numba=True):
        _forward(x, w, bias, y, params(g), tile_rows(g), scratch["columns"], scratch["tile"])
    return y


def backward(dy, x, w, g: ConvGeometry, need_dx: bool, need_dw: bool):
    """dy (N, K, Ho, Wo) -> dx (N, C, H, W) by col2im and/or dw (K, C/groups, R, S); None where not needed."""
    plan = backward_plan(g, need_dx, need_dw)
    scratch = plan.allocate()
    dx = np.zeros(g.x_shape if need_dx else (1, 1, 1, 1), g.dtype)
    unused = np.empty((1, 1, 1), g.dtype)
    dw_parts, dw_tiles = (scratch["dw_parts"], scratch["dw_tile"]) if need_dw else (unused, unused)
    with parallel_region(plan.threads, blas_work=g.flops, numba=True):
        _backward(dy, x, w, dx, dw_parts, dw_tiles, params(g), tile_rows(g), scratch["columns"], scratch["tile"],
                  need_dx, need_dw)
    return (dx if need_dx else None), (dw_parts.sum(axis=0).reshape(g.w_shape) if need_dw else None)
