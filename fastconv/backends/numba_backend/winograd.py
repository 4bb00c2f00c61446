"""Winograd convolution F(m x m, 3 x 3) for 3x3 kernels at stride 1, dilation 1, groups 1 (Lavin & Gray 2016).

The output is cut into m x m tiles; tile (ti, tj) of image n reads the alpha x alpha input patch d
(alpha = m + 2) starting at row ti*m - pad_top, column tj*m - pad_left (cells outside x read as zero: the
padding is never materialized). With the transforms BT (alpha x alpha), G (alpha x 3), AT (m x alpha):

    V[p, k, c] = (G w[k, c] G^T)[p]                     p = (a, b) in alpha x alpha, once per call
    U[p, c, t] = (BT d[c, t] BT^T)[p]                   per tile t
    M[p, k, t] = sum_c V[p, k, c] U[p, c, t]             alpha^2 GEMMs (K x C) . (C x tiles)
    y tile     = AT M[:, k, t] AT^T + b[k]

F(2x2, 3x3) does 2.25x and F(4x4, 3x3) 4x fewer multiplications than direct convolution. Tiles are processed
in blocks of whole tile rows (at most COLS tiles), transformed, multiplied and transformed back while the
block is in cache; blocks run in parallel (prange) with single-threaded BLAS inside. The transforms work on
rows of COLS tiles at once, so that they vectorize.

Accuracy in float32, as max |error| / max |y| against float64 (tests/test_winograd.py): F(2x2) ~3e-7, as
accurate as im2col (~4e-7); F(4x4) ~4e-6 to 1e-5 on the ResNet and VGG 3x3 layers (up to 128 channels), well
inside the 1e-4 agreement tolerance, so F(4x4) is used for both dtypes (float64: ~1e-14). Infinities can
become NaN (the transforms subtract them), unlike direct convolution.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from fastconv._threads import parallel_region, per_budget, threads_for
from fastconv.backends._protocol import Plan
from fastconv.backends._winograd import SKEW, weight_transform
from fastconv.backends.numba_backend._parallel import parallel_kernel

#: tiles per block (a compile-time constant, so that the transform loops have a fixed trip count): enough
#: columns for efficient GEMMs, while a block's U and M (alpha^2 (C + K) COLS values, 2.4 MB at C = K = 64)
#: stay in the last-level cache and the rows one transform reads (COLS values each) in L1
COLS = 128
#: unsigned index constants: numba wraps negative signed indices, a check that blocks vectorization
UCOLS, ONE, TWO, THREE, FOUR = np.uint64(COLS), np.uint64(1), np.uint64(2), np.uint64(3), np.uint64(4)


#: m of F(m x m, 3x3) by default: 4, whose float32 error stays within the tolerance (see the module docstring)
TILE = 4


def applies(g) -> bool:
    """True when g is a 3x3, stride-1, dilation-1, ungrouped convolution whose tile row fits in a block."""
    return g.is_3x3_unit_stride and g.groups == 1 and -(-g.out_w // TILE) <= COLS


@per_budget
def plan(g, m: int = TILE) -> Plan:
    """V (alpha^2, K, C), and per chunk a block's U and M planes (alpha^2 rows of C or K times the block's tiles,
    plus COLS + SKEW slack), the input rows of a tile row and the two columns past their ends, and the
    transforms' row buffers."""
    alpha2 = (m + 2) ** 2
    rows_per_block, chunks = _blocking(g, m, threads_for(g.flops))
    block_tiles = rows_per_block * -(-g.out_w // m)
    per_chunk = {"u": (alpha2, g.c * block_tiles + COLS + SKEW), "mm": (alpha2, g.k * block_tiles + COLS + SKEW),
                 "rows": (m + 2, COLS * m), "row_ends": (m + 2, rows_per_block, 2), "patch": (alpha2, COLS),
                 "half": (alpha2, COLS), "tile_out": (m * m, COLS), "out_row": (COLS * m,)}
    buffers = {name: ((chunks, *shape), g.dtype) for name, shape in per_chunk.items()}
    return Plan(chunks, {"v": ((alpha2, g.k, g.c), g.dtype), **buffers})


def forward(x, w, b, g, m: int = TILE):
    """x (N, C, H, W), w (K, C, 3, 3), b (K,) or None -> y (N, K, Ho, Wo) by Winograd F(m x m, 3x3)."""
    if -(-g.out_w // m) > COLS:
        raise ValueError(f"winograd F({m}x{m}, 3x3): an output row of {g.out_w} pixels is more than the "
                         f"{COLS} tiles of a block; check applies(g) first")
    winograd_plan = plan(g, m)
    scratch = winograd_plan.allocate()
    rows_per_block = _blocking(g, m, winograd_plan.threads)[0]
    bias = np.zeros(g.k, g.dtype) if b is None else b
    y = np.empty(g.y_shape, g.dtype)
    # the weight transform's thin GEMM inside the region too: on a threaded BLAS it took 10 ms
    with parallel_region(winograd_plan.threads, blas_work=g.flops, numba=True):
        v = weight_transform(w, m, scratch["v"])
        _winograd(x, v, bias, y, m, g.pad_top, g.pad_left, rows_per_block, scratch["u"], scratch["mm"],
                  scratch["rows"], scratch["row_ends"], scratch["patch"], scratch["half"], scratch["tile_out"],
                  scratch["out_row"])
    return y


def _blocking(g, m: int, threads: int) -> tuple[int, int]:
    """(tile rows per block, parallel chunks): blocks of at most COLS tiles, as equal as possible, their count
    a multiple of the chunks so that every thread gets the same work."""
    tiles_w = -(-g.out_w // m)
    tile_rows = g.n * -(-g.out_h // m)
    blocks = -(-tile_rows // (COLS // tiles_w))
    chunks = max(1, min(threads, blocks))
    blocks = -(-blocks // chunks) * chunks
    return -(-tile_rows // blocks), chunks


@parallel_kernel()
def _winograd(x, v, bias, y, m, pad_top, pad_left, rows_per_block, us, mms, flats, extras, patches, halves,
              tile_outs, out_flats):
    """y (N, K, Ho, Wo) from x (N, C, H, W) and V (alpha^2, K, C), block by block of rows_per_block tile rows
    (block_tiles <= COLS tiles); the other arguments are per-chunk buffers (see plan), one chunk per thread.

    Plane p of U holds U[p, c, :] at u[p, c*block_tiles:], so that the GEMM reads a contiguous (C x tiles)
    matrix. The transforms always run over COLS tiles (a constant trip count vectorizes best): channel c's
    write spills COLS - block_tiles junk values into channel c+1's row, which channel c+1 then overwrites (the
    channels are written in order; the last one spills into the COLS slack). Junk columns of M are read but
    never scattered."""
    n_images, c_in = x.shape[0], x.shape[1]
    k_out, out_h, out_w = y.shape[1], y.shape[2], y.shape[3]
    alpha = m + 2
    tiles_h, tiles_w = (out_h + m - 1) // m, (out_w + m - 1) // m
    tile_rows = n_images * tiles_h
    blocks = (tile_rows + rows_per_block - 1) // rows_per_block
    block_tiles = rows_per_block * tiles_w
    chunks = us.shape[0]
    for t in prange(chunks):
        u, mm, flat, out_flat = us[t], mms[t], flats[t], out_flats[t]  # u is written before it is read
        extra, patch, half, tile_out = extras[t], patches[t], halves[t], tile_outs[t]
        mm[:, k_out * block_tiles:] = 0  # junk columns the last channel's transform reads past the GEMM's
        flat[:] = 0  # input rows; their padding cells must stay zero
        extra[:] = 0
        patch[:] = 0
        half[:] = 0
        tile_out[:] = 0
        for block in range(t, blocks, chunks):
            first = block * rows_per_block
            last = min(first + rows_per_block, tile_rows)
            for c in range(c_in):
                _gather_patches(x, c, first, last, tiles_h, tiles_w, pad_top, pad_left, flat, extra, patch, m)
                for a in range(alpha):  # along the rows of each patch, then across them
                    _bt(patch, a * alpha, 1, 0, half, a * alpha, 1, 0, m)
                for e in range(alpha):
                    _bt(half, e, alpha, 0, u, e, alpha, c * block_tiles, m)
            for p in range(alpha * alpha):
                np.dot(v[p], u[p, :c_in * block_tiles].reshape(c_in, block_tiles),
                       mm[p, :k_out * block_tiles].reshape(k_out, block_tiles))
            for k in range(k_out):
                for b in range(alpha):  # across the rows of each M tile, then along them
                    _at(mm, b, alpha, k * block_tiles, half, b, alpha, 0, m)
                for i in range(m):
                    _at(half, i * alpha, 1, 0, tile_out, i * m, 1, 0, m)
                _scatter_tiles(tile_out, bias[k], y, k, first, last, tiles_h, out_flat, m)


@njit(cache=True)
def _gather_patches(x, c, first, last, tiles_h, tiles_w, pad_top, pad_left, flat, extra, patch, m):
    """patch[a*alpha + b, t] = x[n, c, ti*m + a - pad_top, j*m + b - pad_left] (zero outside x) for the tiles
    t = (row - first)*tiles_w + j of tile rows first .. last-1 (row = n*tiles_h + ti).

    Every loop runs over the whole block: flat[a] holds the block's padded input rows a (of each tile row) end
    to end (tiles_w*m columns each, their padding cells stay zero) and extra[a, rr] the two columns past each
    row's end; patch row (a, b < m) is flat[a] at stride m, and row (a, m + e) is row (a, e) shifted by one
    tile. The input rows are read in memory order, and hot loops index with unsigned integers and make no
    views (see _bt)."""
    height, width = x.shape[2], x.shape[3]
    alpha, span = m + 2, tiles_w * m
    col0, col1 = max(pad_left, 0), min(pad_left + width, span)  # flat columns holding x's columns
    count, x_col0, uc = np.uint64(max(col1 - col0, 0)), np.uint64(col0 - pad_left), np.uint64(c)
    tiles = (last - first) * tiles_w
    for row in range(first, last):
        rr, n, ti = row - first, row // tiles_h, row % tiles_h
        seg = np.uint64(rr * span + col0)
        for a in range(alpha):
            h = ti * m + a - pad_top
            inside = 0 <= h < height
            ua, un, uh = np.uint64(a), np.uint64(n), np.uint64(h if inside else 0)
            for i in range(count):
                flat[ua, seg + i] = x[un, uc, uh, x_col0 + i] if inside else 0
            for e in range(2):
                col = span + e - pad_left
                extra[a, rr, e] = x[n, c, h, col] if inside and 0 <= col < width else 0
    for a in range(alpha):
        _split_phases(flat, a, patch, a * alpha, tiles, m)
        for e in range(2):
            shifted, row_e = np.uint64(a * alpha + m + e), np.uint64(a * alpha + e)
            for t in range(np.uint64(tiles - 1)):
                patch[shifted, t] = patch[row_e, t + ONE]
            for rr in range(last - first):
                patch[shifted, (rr + 1) * tiles_w - 1] = extra[a, rr, e]


@njit(cache=True)
def _split_phases(flat, a, patch, base, tiles, m):
    """patch[base + r, t] = flat[a, t*m + r] for r < m, with the stride a literal so that the loads vectorize."""
    ua, b0, n = np.uint64(a), np.uint64(base), np.uint64(tiles)
    b1, b2, b3 = b0 + ONE, b0 + TWO, b0 + THREE
    if m == 2:
        for t in range(n):
            patch[b0, t], patch[b1, t] = flat[ua, TWO * t], flat[ua, TWO * t + ONE]
    else:
        for t in range(n):
            patch[b0, t], patch[b1, t] = flat[ua, FOUR * t], flat[ua, FOUR * t + ONE]
            patch[b2, t], patch[b3, t] = flat[ua, FOUR * t + TWO], flat[ua, FOUR * t + THREE]


@njit(cache=True)
def _bt(src, first, step, k, dst, d_first, d_step, kk, m):
    """dst[d_first + i*d_step, kk:kk+COLS] = sum_e BT[i, e] src[first + e*step, k:k+COLS] (alpha -> alpha rows).

    One loop per output row over COLS contiguous columns, with only the non-zero terms, so that the compiler
    vectorizes it. Indices are unsigned (no negative-index wraparound) and no views are made (each view costs
    two atomic reference-count updates)."""
    r0, r1, r2, r3, r4, r5 = _rows(first, step)
    o0, o1, o2, o3, o4, o5 = _rows(d_first, d_step)
    k, kk = np.uint64(k), np.uint64(kk)
    if m == 2:
        for t in range(UCOLS):
            dst[o0, kk + t] = src[r0, k + t] - src[r2, k + t]
        for t in range(UCOLS):
            dst[o1, kk + t] = src[r1, k + t] + src[r2, k + t]
        for t in range(UCOLS):
            dst[o2, kk + t] = src[r2, k + t] - src[r1, k + t]
        for t in range(UCOLS):
            dst[o3, kk + t] = src[r1, k + t] - src[r3, k + t]
        return
    two, four, five = src.dtype.type(2), src.dtype.type(4), src.dtype.type(5)
    for t in range(UCOLS):
        dst[o0, kk + t] = four * src[r0, k + t] - five * src[r2, k + t] + src[r4, k + t]
    for t in range(UCOLS):
        dst[o1, kk + t] = (src[r3, k + t] + src[r4, k + t]) - four * (src[r1, k + t] + src[r2, k + t])
    for t in range(UCOLS):
        dst[o2, kk + t] = (src[r4, k + t] - src[r3, k + t]) + four * (src[r1, k + t] - src[r2, k + t])
    for t in range(UCOLS):
        dst[o3, kk + t] = (src[r4, k + t] - src[r2, k + t]) + two * (src[r3, k + t] - src[r1, k + t])
    for t in range(UCOLS):
        dst[o4, kk + t] = (src[r4, k + t] - src[r2, k + t]) - two * (src[r3, k + t] - src[r1, k + t])
    for t in range(UCOLS):
        dst[o5, kk + t] = four * src[r1, k + t] - five * src[r3, k + t] + src[r5, k + t]


@njit(cache=True)
def _at(src, first, step, k, dst, d_first, d_step, kk, m):
    """dst[d_first + i*d_step, kk:kk+COLS] = sum_e AT[i, e] src[first + e*step, k:k+COLS] (alpha -> m rows),
    written like _bt."""
    s0, s1, s2, s3, s4, s5 = _rows(first, step)
    o0, o1, o2, o3 = _rows(d_first, d_step)[:4]
    k, kk = np.uint64(k), np.uint64(kk)
    if m == 2:
        for t in range(UCOLS):
            dst[o0, kk + t] = src[s0, k + t] + src[s1, k + t] + src[s2, k + t]
        for t in range(UCOLS):
            dst[o1, kk + t] = src[s1, k + t] - src[s2, k + t] - src[s3, k + t]
        return
    two, four, eight = src.dtype.type(2), src.dtype.type(4), src.dtype.type(8)
    for t in range(UCOLS):
        dst[o0, kk + t] = src[s0, k + t] + src[s1, k + t] + src[s2, k + t] + src[s3, k + t] + src[s4, k + t]
    for t in range(UCOLS):
        dst[o1, kk + t] = (src[s1, k + t] - src[s2, k + t]) + two * (src[s3, k + t] - src[s4, k + t])
    for t in range(UCOLS):
        dst[o2, kk + t] = (src[s1, k + t] + src[s2, k + t]) + four * (src[s3, k + t] + src[s4, k + t])
    for t in range(UCOLS):
        dst[o3, kk + t] = ((src[s1, k + t] - src[s2, k + t]) + eight * (src[s3, k + t] - src[s4, k + t])
                           + src[s5, k + t])


@njit(cache=True)
def _rows(first, step):
    """The six row indices first + e*step, unsigned (rows past alpha are never touched)."""
    r0, d = np.uint64(first), np.uint64(step)
    r1 = r0 + d
    r2 = r1 + d
    r3 = r2 + d
    r4 = r3 + d
    return r0, r1, r2, r3, r4, r4 + d


@njit(cache=True)
def _scatter_tiles(o, bias, y, k, first, last, tiles_h, flat, m):
    """y[n, k, ti*m + i, j*m + e] = o[i*m + e, t] + bias for the tiles t = (row - first)*tiles_w + j of tile
    rows first .. last-1, clipped to y; flat interleaves one output row of every tile row of the block."""
    out_h, out_w = y.shape[2], y.shape[3]
    tiles = flat.shape[0] // m
    span = (out_w + m - 1) // m * m
    uk = np.uint64(k)
    for i in range(m):
        _merge_phases(o, i * m, bias, flat, tiles, m)
        for row in range(first, last):
            n, ti = row // tiles_h, row % tiles_h
            if ti * m + i < out_h:
                un, uh, seg = np.uint64(n), np.uint64(ti * m + i), np.uint64((row - first) * span)
                for col in range(np.uint64(out_w)):
                    y[un, uk, uh, col] = flat[seg + col]


@njit(cache=True)
def _merge_phases(o, base, bias, flat, tiles, m):
    """flat[t*m + e] = o[base + e, t] + bias, the inverse of _split_phases."""
    b0, n = np.uint64(base), np.uint64(tiles)
    b1, b2, b3 = b0 + ONE, b0 + TWO, b0 + THREE
    if m == 2:
        for t in range(n):
            flat[TWO * t], flat[TWO * t + ONE] = o[b0, t] + bias, o[b1, t] + bias
    else:
        for t in range(n):
            flat[FOUR * t], flat[FOUR * t + ONE] = o[b0, t] + bias, o[b1, t] + bias
            flat[FOUR * t + TWO], flat[FOUR * t + THREE] = o[b2, t] + bias, o[b3, t] + bias
