"""Winograd convolution F(m x m, 3 x 3) for 3x3 kernels at stride 1, dilation 1, groups 1 (Lavin & Gray 2016).

The output is cut into m x m tiles; tile (ti, tj) of image n reads the alpha x alpha input patch d
(alpha = m + 2) starting at row ti*m - pad_top, column tj*m - pad_left (cells outside x read as zero: the
padding is never materialized). With the transforms BT (alpha x alpha), G (alpha x 3), AT (m x alpha):

    V[p, k, c] = (G w[k, c] G^T)[p]                     p = (a, b) in alpha x alpha, once per call
    U[p, c, t] = (BT d[c, t] BT^T)[p]                   per tile t
    M[p, k, t] = sum_c V[p, k, c] U[p, c, t]             alpha^2 GEMMs (K x C) . (C x tiles)
    y tile     = AT M[:, k, t] AT^T + b[k]

F(2x2, 3x3) does 2.25x and F(4x4, 3x3) 4x fewer multiplications than direct convolution. Tiles are processed
in blocks of whole tile rows so that one block's U and M stay in cache; blocks run in parallel (prange) with
single-threaded BLAS inside.

Accuracy (max |error| / max |y| against float64 naive, see tests/test_winograd.py): F(2x2) is as accurate as
direct convolution; F(4x4) loses a few bits, so float32 uses it only where it meets the 1e-4 agreement tolerance.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from fastconv.backends.numba._parallel import blas_for, num_chunks

#: the 1-D transforms (rows of BT, G, AT) for each output tile size m, in float64
_BT = {
    2: np.array([[1, 0, -1, 0],
                 [0, 1, 1, 0],
                 [0, -1, 1, 0],
                 [0, 1, 0, -1]], np.float64),
    4: np.array([[4, 0, -5, 0, 1, 0],
                 [0, -4, -4, 1, 1, 0],
                 [0, 4, -4, -1, 1, 0],
                 [0, -2, -1, 2, 1, 0],
                 [0, 2, -1, -2, 1, 0],
                 [0, 4, 0, -5, 0, 1]], np.float64),
}
_G = {
    2: np.array([[1, 0, 0],
                 [1 / 2, 1 / 2, 1 / 2],
                 [1 / 2, -1 / 2, 1 / 2],
                 [0, 0, 1]], np.float64),
    4: np.array([[1 / 4, 0, 0],
                 [-1 / 6, -1 / 6, -1 / 6],
                 [-1 / 6, 1 / 6, -1 / 6],
                 [1 / 24, 1 / 12, 1 / 6],
                 [1 / 24, -1 / 12, 1 / 6],
                 [0, 0, 1]], np.float64),
}
_AT = {
    2: np.array([[1, 1, 1, 0],
                 [0, 1, -1, -1]], np.float64),
    4: np.array([[1, 1, 1, 1, 1, 0],
                 [0, 1, -1, 2, -2, 0],
                 [0, 1, 1, 4, 4, 0],
                 [0, 1, -1, 8, -8, 1]], np.float64),
}

#: target tiles per block: enough columns for an efficient GEMM, few enough for U and M to stay in cache
TILES_PER_BLOCK = 128


def applicable(g) -> bool:
    """True when g is a 3x3, stride-1, dilation-1, ungrouped convolution."""
    return (g.r == 3 and g.s == 3 and g.stride_h == 1 and g.stride_w == 1 and g.dilation_h == 1
            and g.dilation_w == 1 and g.groups == 1)


def tile_size(g) -> int:
    """m of F(m x m, 3x3): 4 in float64 (error ~1e-15), and in float32 too (see the module docstring)."""
    return 4


def conv2d_forward_winograd(x, w, b, g, m: int | None = None):
    """x (N, C, H, W), w (K, C, 3, 3), b (K,) or None -> y (N, K, Ho, Wo) by Winograd F(m x m, 3x3)."""
    m = tile_size(g) if m is None else m
    v = weight_transform(w, m)
    tiles_w = -(-g.out_w // m)
    rows_per_block = max(1, TILES_PER_BLOCK // tiles_w)
    tile_rows = g.n * -(-g.out_h // m)
    blocks = -(-tile_rows // rows_per_block)
    chunks = num_chunks(blocks)
    bias = np.zeros(g.k, g.dtype) if b is None else b
    y = np.empty(g.y_shape, g.dtype)
    with blas_for(chunks):
        _winograd(x, v, bias, y, m, g.pad_top, g.pad_left, rows_per_block, chunks)
    return y


def weight_transform(w: np.ndarray, m: int) -> np.ndarray:
    """w (K, C, 3, 3) -> V (alpha^2, K, C) = G w[k, c] G^T per (k, c), computed in float64 as one GEMM."""
    k, c = w.shape[:2]
    g = _G[m]
    alpha = g.shape[0]
    gg = np.einsum("ar,bs->abrs", g, g).reshape(alpha * alpha, 9)
    v = gg @ w.reshape(k * c, 9).T.astype(np.float64)
    return v.astype(w.dtype).reshape(alpha * alpha, k, c)


@njit(parallel=True, cache=True)
def _winograd(x, v, bias, y, m, pad_top, pad_left, rows_per_block, chunks):
    """y (N, K, Ho, Wo) from x (N, C, H, W) and V (alpha^2, K, C), block by block of rows_per_block tile rows."""
    n_images, c_in, height, width = x.shape
    k_out, out_h, out_w = y.shape[1], y.shape[2], y.shape[3]
    alpha = m + 2
    tiles_h, tiles_w = (out_h + m - 1) // m, (out_w + m - 1) // m
    tile_rows = n_images * tiles_h
    blocks = (tile_rows + rows_per_block - 1) // rows_per_block
    block_tiles = rows_per_block * tiles_w
    line = tiles_w * m + 2  # padded input columns the tiles read
    for t in prange(chunks):
        u = np.zeros((alpha * alpha, c_in, block_tiles), x.dtype)
        mm = np.empty((alpha * alpha, k_out, block_tiles), x.dtype)
        patch = np.zeros((alpha, line), x.dtype)
        rows = np.empty((alpha, line), x.dtype)
        cols = np.empty((alpha, tiles_w), x.dtype)
        sums = np.empty((m, alpha * tiles_w), x.dtype)
        out = np.empty((m, tiles_w * m), x.dtype)
        for block in range(t, blocks, chunks):
            first = block * rows_per_block
            last = min(first + rows_per_block, tile_rows)
            for row in range(first, last):
                n, ti = row // tiles_h, row % tiles_h
                t0 = (row - first) * tiles_w
                for c in range(c_in):
                    _stage_patch(x, n, c, ti * m - pad_top, pad_left, patch)
                    _input_transform(patch, rows, cols, u, c, t0, m)
            for p in range(alpha * alpha):
                np.dot(v[p], u[p], mm[p])
            for row in range(first, last):
                n, ti = row // tiles_h, row % tiles_h
                t0 = (row - first) * tiles_w
                for k in range(k_out):
                    _output_transform(mm, k, t0, bias[k], sums, out, m)
                    for i in range(min(m, out_h - ti * m)):
                        y[n, k, ti * m + i, :] = out[i, :out_w]


@njit(cache=True)
def _stage_patch(x, n, c, top, pad_left, patch):
    """patch (alpha, line) = input rows top .. top+alpha-1 of x[n, c], shifted right by pad_left, zero outside."""
    height, width = x.shape[2], x.shape[3]
    for a in range(patch.shape[0]):
        h = top + a
        if 0 <= h < height:
            patch[a, pad_left:pad_left + width] = x[n, c, h, :]
        else:
            patch[a, pad_left:pad_left + width] = 0


@njit(cache=True)
def _input_transform(patch, rows, cols, u, c, t0, m):
    """u[a*alpha + b, c, t0 + j] = (BT d_j BT^T)[a, b] for the tiles j of one tile row; d_j = patch[:, j*m:]."""
    alpha = m + 2
    tiles = cols.shape[1]
    _bt_lines(patch, rows, m)  # rows = BT . patch (along the rows)
    for a in range(alpha):
        for b in range(alpha):  # gather the alpha columns each tile reads
            for j in range(tiles):
                cols[b, j] = rows[a, j * m + b]
        _bt_lines(cols, u[a * alpha:(a + 1) * alpha, c, t0:t0 + tiles], m)


@njit(cache=True)
def _output_transform(mm, k, t0, bias, sums, out, m):
    """out (m, tiles*m) = AT M_j AT^T + bias for the tiles j of one tile row of output channel k;
    sums (m, alpha*tiles) holds AT M_j, column b of tile j at b*tiles + j."""
    alpha = m + 2
    tiles = out.shape[1] // m
    for b in range(alpha):
        _at_lines(mm[b::alpha, k, t0:t0 + tiles], sums[:, b * tiles:(b + 1) * tiles], m)
    for i in range(m):
        for j in range(tiles):
            _at_tile_row(sums, i, j, tiles, bias, out, m)


@njit(cache=True)
def _at_tile_row(rows, i, j, tiles, bias, out, m):
    """out[i, j*m:(j+1)*m] = AT . (rows[i, b*tiles + j] over b) + bias."""
    if m == 2:
        s0, s1, s2, s3 = rows[i, j], rows[i, tiles + j], rows[i, 2 * tiles + j], rows[i, 3 * tiles + j]
        out[i, 2 * j] = s0 + s1 + s2 + bias
        out[i, 2 * j + 1] = s1 - s2 - s3 + bias
    else:
        two, four, eight = _constants(rows)[:3]
        s0, s1, s2 = rows[i, j], rows[i, tiles + j], rows[i, 2 * tiles + j]
        s3, s4, s5 = rows[i, 3 * tiles + j], rows[i, 4 * tiles + j], rows[i, 5 * tiles + j]
        out[i, 4 * j] = s0 + s1 + s2 + s3 + s4 + bias
        out[i, 4 * j + 1] = (s1 - s2) + two * (s3 - s4) + bias
        out[i, 4 * j + 2] = (s1 + s2) + four * (s3 + s4) + bias
        out[i, 4 * j + 3] = (s1 - s2) + eight * (s3 - s4) + s5 + bias


@njit(cache=True)
def _constants(a):
    """2, 4, 8, 5 in a's dtype (a bare integer literal would promote float32 arithmetic to float64)."""
    t = a.dtype.type
    return t(2), t(4), t(8), t(5)


@njit(cache=True)
def _bt_lines(src, dst, m):
    """dst[a, :] = sum_b BT[a, b] src[b, :] for the alpha lines of src (alpha, L)."""
    if m == 2:
        for x in range(src.shape[1]):
            d0, d1, d2, d3 = src[0, x], src[1, x], src[2, x], src[3, x]
            dst[0, x] = d0 - d2
            dst[1, x] = d1 + d2
            dst[2, x] = d2 - d1
            dst[3, x] = d1 - d3
        return
    two, four, _, five = _constants(src)
    for x in range(src.shape[1]):
        d0, d1, d2, d3, d4, d5 = src[0, x], src[1, x], src[2, x], src[3, x], src[4, x], src[5, x]
        dst[0, x] = four * d0 - five * d2 + d4
        dst[1, x] = (d3 + d4) - four * (d1 + d2)
        dst[2, x] = (d4 - d3) + four * (d1 - d2)
        dst[3, x] = (d4 - d2) + two * (d3 - d1)
        dst[4, x] = (d4 - d2) - two * (d3 - d1)
        dst[5, x] = four * d1 - five * d3 + d5


@njit(cache=True)
def _at_lines(src, dst, m):
    """dst[i, :] = sum_a AT[i, a] src[a, :] for src (alpha, L) -> dst (m, L)."""
    if m == 2:
        for x in range(src.shape[1]):
            s0, s1, s2, s3 = src[0, x], src[1, x], src[2, x], src[3, x]
            dst[0, x] = s0 + s1 + s2
            dst[1, x] = s1 - s2 - s3
        return
    two, four, eight, _ = _constants(src)
    for x in range(src.shape[1]):
        s0, s1, s2, s3, s4, s5 = src[0, x], src[1, x], src[2, x], src[3, x], src[4, x], src[5, x]
        dst[0, x] = s0 + s1 + s2 + s3 + s4
        dst[1, x] = (s1 - s2) + two * (s3 - s4)
        dst[2, x] = (s1 + s2) + four * (s3 + s4)
        dst[3, x] = (s1 - s2) + eight * (s3 - s4) + s5
