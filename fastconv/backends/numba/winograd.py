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
    chunks = num_chunks(-(-tile_rows // rows_per_block))
    bias = np.zeros(g.k, g.dtype) if b is None else b
    y = np.empty(g.y_shape, g.dtype)
    with blas_for(chunks):
        _winograd(x, v, bias, _BT[m].astype(g.dtype), _AT[m].astype(g.dtype), y, g.pad_top, g.pad_left,
                  rows_per_block, chunks)
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
def _winograd(x, v, bias, bt, at, y, pad_top, pad_left, rows_per_block, chunks):
    """y (N, K, Ho, Wo) from x (N, C, H, W) and V (alpha^2, K, C), block by block of rows_per_block tile rows;
    bt (alpha, alpha) and at (m, alpha) are BT and AT in x's dtype."""
    n_images, c_in = x.shape[0], x.shape[1]
    k_out, out_h, out_w = y.shape[1], y.shape[2], y.shape[3]
    m, alpha = at.shape
    tiles_h, tiles_w = (out_h + m - 1) // m, (out_w + m - 1) // m
    tile_rows = n_images * tiles_h
    blocks = (tile_rows + rows_per_block - 1) // rows_per_block
    block_tiles = rows_per_block * tiles_w
    for t in prange(chunks):
        u = np.zeros((alpha * alpha, c_in, block_tiles), x.dtype)
        mm = np.empty((alpha * alpha, k_out, block_tiles), x.dtype)
        flat = np.zeros(block_tiles * m, x.dtype)
        extra = np.zeros((rows_per_block, 2), x.dtype)
        patch = np.zeros((alpha * alpha, 1, block_tiles), x.dtype)
        half = np.zeros((alpha * alpha, 1, block_tiles), x.dtype)
        tile_out = np.zeros((m * m, 1, block_tiles), x.dtype)
        for block in range(t, blocks, chunks):
            first = block * rows_per_block
            last = min(first + rows_per_block, tile_rows)
            tiles = (last - first) * tiles_w
            for c in range(c_in):
                _gather_patches(x, c, first, last, tiles_h, tiles_w, pad_top, pad_left, flat, extra, patch)
                _two_sided(patch, 0, bt, half, u, c, tiles)
            for p in range(alpha * alpha):
                np.dot(v[p], u[p], mm[p])
            for k in range(k_out):
                _two_sided(mm, k, at, half, tile_out, 0, tiles)
                _scatter_tiles(tile_out, bias[k], y, k, first, last, tiles_h, flat)


@njit(cache=True)
def _gather_patches(x, c, first, last, tiles_h, tiles_w, pad_top, pad_left, flat, extra, patch):
    """patch[a*alpha + b, 0, t] = x[n, c, ti*m + a - pad_top, j*m + b - pad_left] (zero outside x) for the
    tiles t = (row - first)*tiles_w + j of tile rows first .. last-1 (row = n*tiles_h + ti).

    Every loop runs over the whole block: for each a, flat holds the block's padded input rows end to end
    (tiles_w*m columns each, their padding cells stay zero) and extra[rr] the two columns past each row's end;
    patch row (a, b < m) is flat at stride m, and row (a, m + e) is row (a, e) shifted by one tile."""
    height, width = x.shape[2], x.shape[3]
    m = flat.shape[0] // extra.shape[0] // tiles_w
    alpha, span = m + 2, tiles_w * m
    col0, col1 = max(pad_left, 0), min(pad_left + width, span)  # flat columns holding x's columns
    tiles = (last - first) * tiles_w
    for a in range(alpha):
        for row in range(first, last):
            rr, n, ti = row - first, row // tiles_h, row % tiles_h
            h = ti * m + a - pad_top
            seg = flat[rr * span:(rr + 1) * span]
            if 0 <= h < height:
                src = x[n, c, h]
                for col in range(col0, col1):
                    seg[col] = src[col - pad_left]
                for e in range(2):
                    col = span + e - pad_left
                    extra[rr, e] = src[col] if 0 <= col < width else 0
            else:
                seg[col0:col1] = 0
                extra[rr, :] = 0
        _split_phases(flat, patch, a * alpha, tiles, m)
        for e in range(2):
            dst, src = patch[a * alpha + m + e, 0], patch[a * alpha + e, 0]
            for t in range(tiles - 1):
                dst[t] = src[t + 1]
            for rr in range(last - first):
                dst[(rr + 1) * tiles_w - 1] = extra[rr, e]


@njit(cache=True)
def _split_phases(flat, patch, base, tiles, m):
    """patch[base + r, 0, t] = flat[t*m + r] for r < m, with the stride a literal so that the loads vectorize."""
    p0, p1 = patch[base, 0], patch[base + 1, 0]
    if m == 2:
        for t in range(tiles):
            p0[t], p1[t] = flat[2 * t], flat[2 * t + 1]
    else:
        p2, p3 = patch[base + 2, 0], patch[base + 3, 0]
        for t in range(tiles):
            p0[t], p1[t], p2[t], p3[t] = flat[4 * t], flat[4 * t + 1], flat[4 * t + 2], flat[4 * t + 3]


@njit(cache=True)
def _two_sided(src, k, mat, half, out, kk, tiles):
    """out[i*q + e, kk, t] = (mat S_t mat^T)[i, e] for t < tiles, with S_t[a, b] = src[a*alpha + b, k, t] and
    mat (q, alpha): BT (q = alpha) for the input transform, AT (q = m) for the output transform.
    half (alpha*q, 1, tiles) holds S_t mat^T."""
    q, alpha = mat.shape
    for a in range(alpha):
        for e in range(q):
            _combine(half[a * q + e, 0], src, a * alpha, 1, k, mat[e], tiles)
    for i in range(q):
        for e in range(q):
            _combine(out[i * q + e, kk], half, e, q, 0, mat[i], tiles)


@njit(cache=True)
def _combine(out, src, first, step, k, coefs, tiles):
    """out[t] = sum_e coefs[e] * src[first + e*step, k, t] for t < tiles, skipping zero coefficients: each pass
    reads one contiguous row and updates one, which the compiler vectorizes."""
    started = False
    for e in range(coefs.shape[0]):
        ce = coefs[e]
        if ce == 0:
            continue
        row = src[first + e * step, k]
        if started:
            for t in range(tiles):
                out[t] += ce * row[t]
        else:
            for t in range(tiles):
                out[t] = ce * row[t]
            started = True


@njit(cache=True)
def _scatter_tiles(o, bias, y, k, first, last, tiles_h, flat):
    """y[n, k, ti*m + i, j*m + e] = o[i*m + e, 0, t] + bias for the tiles t = (row - first)*tiles_w + j of tile
    rows first .. last-1, clipped to y; flat interleaves one output row of every tile row of the block."""
    out_h, out_w = y.shape[2], y.shape[3]
    m = int(np.sqrt(o.shape[0]) + 0.5)
    tiles = flat.shape[0] // m
    span = (out_w + m - 1) // m * m
    for i in range(m):
        _merge_phases(o, i * m, bias, flat, tiles, m)
        for row in range(first, last):
            n, ti = row // tiles_h, row % tiles_h
            if ti * m + i < out_h:
                dst, seg = y[n, k, ti * m + i], flat[(row - first) * span:]
                for col in range(out_w):
                    dst[col] = seg[col]


@njit(cache=True)
def _merge_phases(o, base, bias, flat, tiles, m):
    """flat[t*m + e] = o[base + e, 0, t] + bias, the inverse of _split_phases."""
    p0, p1 = o[base, 0], o[base + 1, 0]
    if m == 2:
        for t in range(tiles):
            flat[2 * t], flat[2 * t + 1] = p0[t] + bias, p1[t] + bias
    else:
        p2, p3 = o[base + 2, 0], o[base + 3, 0]
        for t in range(tiles):
            flat[4 * t], flat[4 * t + 1] = p0[t] + bias, p1[t] + bias
            flat[4 * t + 2], flat[4 * t + 3] = p2[t] + bias, p3[t] + bias
