"""Convolution as im2col + GEMM, one tile of output rows at a time (never the whole batch).

The batch is split into ``chunks`` contiguous ranges of images run in parallel (prange), each with its own
column buffer, so BLAS inside runs single-threaded (see _parallel). Per tile and group:

    forward:  out (Kg, cols) = W_g (Kg, Cg*R*S) @ col (Cg*R*S, cols), copied into y with the bias
    dW:       dW_g += dY_tile (Kg, cols) @ col.T, into the chunk's own accumulator (summed afterwards)
    dX:       dcol = W_g.T @ dY_tile, scattered back into dx (col2im; a chunk owns its images' dx)
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, uint64

from fastconv._geometry import ConvGeometry
from fastconv._threads import blas_for
from fastconv.backends.numba._columns import add_columns, fill_columns, next_row
from fastconv.backends.numba._parallel import chunk_bounds, num_chunks

#: bytes of one tile's column matrix (measured: 0.5-2 MB all run within a few % on resnet, vgg, alexnet)
TILE_BYTES = 1024 * 1024


def tile_rows(g: ConvGeometry) -> int:
    """Output rows per tile: as many as fit TILE_BYTES of columns, at least one, at most the batch's."""
    column_bytes = g.c_per_group * g.r * g.s * g.dtype.itemsize * g.out_w
    return max(1, min(TILE_BYTES // column_bytes, g.n * g.out_h))


def params(g: ConvGeometry) -> tuple[int, ...]:
    """The (sh, sw, dh, dw, top, left) tuple the column helpers take."""
    return g.stride_h, g.stride_w, g.dilation_h, g.dilation_w, g.pad_top, g.pad_left


def workspace_bytes(g: ConvGeometry, chunks: int) -> int:
    """Column and GEMM-output buffers of every chunk, plus the per-chunk dW accumulators."""
    cols = tile_rows(g) * g.out_w
    per_chunk = (g.c_per_group * g.r * g.s + g.k_per_group) * cols + 2 * g.k * g.c_per_group * g.r * g.s
    return chunks * per_chunk * g.dtype.itemsize


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


@njit(cache=True, parallel=True)
def _forward(x, w, bias, y, params, rows_per_tile, chunks):
    """x (N, C, H, W), w (K, Cg, R, S), bias (K,) -> y (N, K, Ho, Wo)."""
    groups, kg, crs, wmat = _weight_groups(x, w)
    r_size, s_size, out_h, out_w = w.shape[2], w.shape[3], y.shape[2], y.shape[3]
    for t in prange(chunks):
        col_buf = np.empty(crs * rows_per_tile * out_w, x.dtype)
        out_buf = np.empty(kg * rows_per_tile * out_w, x.dtype)
        n0, n1 = chunk_bounds(x.shape[0], chunks, t)
        for row0 in range(n0 * out_h, n1 * out_h, rows_per_tile):
            rows = min(rows_per_tile, n1 * out_h - row0)
            col = col_buf[:crs * rows * out_w].reshape(crs, rows * out_w)
            out = out_buf[:kg * rows * out_w].reshape(kg, rows * out_w)
            for group in range(groups):
                fill_columns(x, group, row0, rows, r_size, s_size, params, out_h, out_w, col)
                np.dot(wmat[group * kg:(group + 1) * kg], col, out)
                _copy_rows(out, y, group * kg, row0, rows, bias)


@njit(cache=True, parallel=True)
def _backward(dy, x, w, dx, dw_parts, params, rows_per_tile, chunks, need_dx, need_dw):
    """dy (N, K, Ho, Wo) -> dx (N, C, H, W) += col2im (dx zeroed by the caller) and
    dw_parts (chunks, K, Cg*R*S) = each chunk's share of dW."""
    groups, kg, crs, wmat = _weight_groups(x, w)
    r_size, s_size, out_h, out_w = w.shape[2], w.shape[3], dy.shape[2], dy.shape[3]
    for t in prange(chunks):
        col_buf = np.empty(crs * rows_per_tile * out_w, x.dtype)
        dy_buf = np.empty(kg * rows_per_tile * out_w, x.dtype)
        dw_tile = np.empty((kg, crs), x.dtype)
        dw_parts[t] = 0
        n0, n1 = chunk_bounds(x.shape[0], chunks, t)
        for row0 in range(n0 * out_h, n1 * out_h, rows_per_tile):
            rows = min(rows_per_tile, n1 * out_h - row0)
            col = col_buf[:crs * rows * out_w].reshape(crs, rows * out_w)
            dy_tile = dy_buf[:kg * rows * out_w].reshape(kg, rows * out_w)
            for group in range(groups):
                _gather_rows(dy, group * kg, row0, rows, dy_tile)
                if need_dw:
                    fill_columns(x, group, row0, rows, r_size, s_size, params, out_h, out_w, col)
                    np.dot(dy_tile, col.T, dw_tile)
                    dw_parts[t, group * kg:(group + 1) * kg] += dw_tile
                if need_dx:
                    np.dot(wmat[group * kg:(group + 1) * kg].T, dy_tile, col)
                    add_columns(col, group, row0, rows, r_size, s_size, params, out_h, out_w, dx)


def conv2d_forward(x, w, b, g: ConvGeometry):
    """x (N, C, H, W), w (K, C/groups, R, S), b (K,) or None -> y (N, K, Ho, Wo)."""
    chunks = num_chunks(g.n, g)
    y = np.empty(g.y_shape, g.dtype)
    bias = np.zeros(g.k, g.dtype) if b is None else b
    with blas_for(chunks):
        _forward(x, w, bias, y, params(g), tile_rows(g), chunks)
    return y


def conv2d_backward_dx_dw(dy, x, w, g: ConvGeometry, need_dx: bool, need_dw: bool):
    """dy (N, K, Ho, Wo) -> dx (N, C, H, W) by col2im and/or dw (K, C/groups, R, S); None where not needed."""
    chunks = num_chunks(g.n, g)
    dx = np.zeros(g.x_shape, g.dtype) if need_dx else np.zeros((1, 1, 1, 1), g.dtype)
    dw_parts = np.empty((chunks, g.k, g.c_per_group * g.r * g.s), g.dtype)
    with blas_for(chunks):
        _backward(dy, x, w, dx, dw_parts, params(g), tile_rows(g), chunks, need_dx, need_dw)
    dw = dw_parts.sum(axis=0).reshape(g.w_shape) if need_dw else None
    return (dx if need_dx else None), dw
