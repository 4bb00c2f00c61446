"""Winograd F(4x4, 3x3) on channels-last arrays ("nhwc_winograd"): 3x3, stride 1, dilation 1, groups 1.

The maths of the NCHW module (fastconv.backends.numba_backend.winograd, whose weight transform this one runs),
with the channels as the vector dimension. Tile q = (n, ti, tj) reads the 6 x 6 input patch d[a, b, :] =
x[n, 4ti + a - pad_top, 4tj + b - pad_left, :] (zero outside x, never materialized) and writes the 4 x 4 output
pixels y[n, 4ti + i, 4tj + j, :] (clipped to y). With p = (a, b) in 6 x 6:

    V[p, k, c] = (G w[k, c] G^T)[p]                          once per call
    U[p, q, :] = (BT d BT^T)[p]                               per tile, C channels at once
    M[p, q, :] = U[p, q, :] @ V[p]^T                          36 GEMMs (tiles x C) @ (C x K) per block
    y tile     = AT M[:, q, :] AT^T + b                       per tile, K channels at once

so every transform step adds whole rows of C (or K) contiguous channels, and the GEMMs read U and write M as
row-major (tiles x C) and (tiles x K) matrices. Blocks of consecutive tiles (any images, any tile rows) are
transformed, multiplied and transformed back while they are in cache; blocks run in parallel (prange) with
single-threaded BLAS inside. Tiles whose patch lies inside x read it in place, and tiles whose output lies
inside y write it in place; border tiles go through a zero-padded patch or an output tile buffer.

The grad of x at stride 1 is this forward convolution on the rotated geometry; the grad of w is the NCHW
default's, on transposed copies of x and dy (_grad_w).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from fastconv._geometry import ConvGeometry
from fastconv._threads import parallel_region, threads_for
from fastconv._transpose import to_channels_first
from fastconv.backends._defaults import winograd_pays
from fastconv.backends._protocol import Method, Plan
from fastconv.backends.numba_backend import conv
from fastconv.backends.numba_backend._parallel import parallel_kernel
from fastconv.backends.numba_backend.winograd import SKEW, _rows, weight_transform

NAME = "nhwc_winograd"
#: m of F(m x m, 3x3): 4, as in the NCHW module (its float32 error is within the tolerance); alpha = m + 2
M, ALPHA = 4, 6
#: bytes of one block's U and M together (36 (C + K) values per tile), and its tiles at least and at most: the
#: GEMMs' rows matter more than L2 (measured, 1 thread, float32: 256 tiles a block took 0.76-0.92x the time of 64
#: on resnet_3x3, vgg_3x3 and 256 channels at 14x14, the blocks then 4.7-19 MB), within the last-level cache
BLOCK_BYTES = 8 << 20
MIN_BLOCK_TILES, MAX_BLOCK_TILES = 32, 256


def applies(g: ConvGeometry) -> bool:
    """Channels-last 3x3, stride-1, dilation-1, ungrouped layers."""
    return g.channels_last and g.is_3x3_unit_stride and g.groups == 1


def _tiles(g: ConvGeometry) -> int:
    return g.n * -(-g.out_h // M) * -(-g.out_w // M)


def _blocking(g: ConvGeometry, threads: int) -> tuple[int, int]:
    """(tiles per block, parallel chunks): blocks of about BLOCK_BYTES, as equal as possible, their count a
    multiple of the chunks so that every thread gets the same work."""
    per_tile = ALPHA * ALPHA * (g.c + g.k) * g.dtype.itemsize
    most = min(max(BLOCK_BYTES // max(per_tile, 1), MIN_BLOCK_TILES), MAX_BLOCK_TILES)
    tiles = _tiles(g)
    blocks = -(-tiles // most)
    chunks = max(1, min(threads, blocks))
    blocks = -(-blocks // chunks) * chunks
    return -(-tiles // blocks), chunks


def forward_plan(g: ConvGeometry) -> Plan:
    """V (36, K, C), and per chunk a block's U and M planes (36 of block_tiles x C or K, SKEW apart), a
    zero-padded patch (36 x C), the transforms' half-way rows (36 x max(C, K)) and an output tile (16 x K)."""
    block_tiles, chunks = _blocking(g, threads_for(g.flops, _tiles(g)))
    alpha2 = ALPHA * ALPHA
    per_chunk = {"u": alpha2 * (block_tiles * g.c + SKEW), "mm": alpha2 * (block_tiles * g.k + SKEW),
                 "patch": alpha2 * g.c, "half": alpha2 * max(g.c, g.k), "tile_out": M * M * g.k}
    buffers = {name: ((chunks, size), g.dtype) for name, size in per_chunk.items()}
    return Plan(chunks, {"v": ((alpha2, g.k, g.c), g.dtype), **buffers})


def forward(x, w, b, g: ConvGeometry):
    """x (N, H, W, C), w (K, C, 3, 3), b (K,) or None -> y (N, Ho, Wo, K)."""
    plan = forward_plan(g)
    scratch = plan.allocate()
    block_tiles = _blocking(g, plan.threads)[0]
    bias = np.zeros(g.k, g.dtype) if b is None else b
    y = np.empty(g.y_array_shape, g.dtype)
    with parallel_region(plan.threads, blas_work=g.flops, numba=True):
        v = weight_transform(w, M, scratch["v"])
        _winograd(x.reshape(-1), v, bias, y.reshape(-1), g.n, g.h, g.w, g.out_h, g.out_w, g.pad_top, g.pad_left,
                  block_tiles, scratch["u"], scratch["mm"], scratch["patch"], scratch["half"], scratch["tile_out"])
    return y


def _grad_w_plan(g: ConvGeometry) -> Plan:
    """The NCHW copies of dy and x, alive while the NCHW default's grad of w runs."""
    inner = conv.backward_methods(g.nchw).chosen.plan(g.nchw, False, True)
    return inner.holding({"nchw_dy": (g.y_shape, g.dtype), "nchw_x": (g.x_shape, g.dtype)})


def _grad_w(dy, x, w, g: ConvGeometry) -> np.ndarray:
    """dy (N, Ho, Wo, K), x (N, H, W, C) -> dw (K, C, 3, 3) by the NCHW default's grad of w on transposed copies
    (until a native channels-last grad of w)."""
    method = conv.backward_methods(g.nchw).chosen
    return method.run(to_channels_first(dy), to_channels_first(x), w, g.nchw, False, True, False)[1]


def backward_plan(g: ConvGeometry, need_dx: bool = True, need_dw: bool = True) -> Plan:
    """The grad of w's phase, then the grad of x's: the rotated kernel and the rotated forward's scratch."""
    phases = [_grad_w_plan(g)] if need_dw else []
    if need_dx:
        forward_scratch = forward_plan(g.rotated())
        kernel = ((g.c, g.k, g.r, g.s), g.dtype)
        phases.append(Plan(forward_scratch.threads, {"rotated_kernel": kernel, **forward_scratch.buffers}))
    return Plan.peak(*phases) if phases else Plan(1)


def backward(dy, x, w, g: ConvGeometry, need_dx, need_dw, need_db):
    """dy (N, Ho, Wo, K) -> dx (N, H, W, C), dw (K, C, 3, 3), db (K,); None where not needed."""
    dw = _grad_w(dy, x, w, g) if need_dw else None
    dx = forward(dy, g.rotate_kernel(w), None, g.rotated()) if need_dx else None
    return dx, dw, dy.reshape(-1, g.k).sum(axis=0) if need_db else None


@parallel_kernel()
def _winograd(x, v, bias, y, n_images, height, width, out_h, out_w, pad_top, pad_left, block_tiles, us, mms,
              patches, halves, tile_outs):
    """y (N*Ho*Wo*K,) from x (N*H*W*C,) and V (36, K, C), block by block of block_tiles tiles; the other
    arguments are per-chunk buffers (see forward_plan), one chunk per thread. Plane p of U holds U[p, q, :]
    at u[p*u_plane + q*C], so that the GEMM reads a row-major (tiles x C) matrix (M likewise)."""
    k_out, c_in = v.shape[1], v.shape[2]
    tiles_h, tiles_w = (out_h + M - 1) // M, (out_w + M - 1) // M
    tiles = n_images * tiles_h * tiles_w
    blocks = (tiles + block_tiles - 1) // block_tiles
    u_plane, m_plane = block_tiles * c_in + SKEW, block_tiles * k_out + SKEW
    chunks = us.shape[0]
    for t in prange(chunks):
        u, mm, patch, half, tile_out = us[t], mms[t], patches[t], halves[t], tile_outs[t]
        for block in range(t, blocks, chunks):
            first = block * block_tiles
            count = min(block_tiles, tiles - first)
            for q in range(count):
                _input_tile(x, first + q, tiles_h, tiles_w, height, width, c_in, pad_top, pad_left, u, q * c_in,
                            u_plane, patch, half)
            for p in range(ALPHA * ALPHA):
                np.dot(u[p * u_plane:p * u_plane + count * c_in].reshape(count, c_in), v[p].T,
                       mm[p * m_plane:p * m_plane + count * k_out].reshape(count, k_out))
            for q in range(count):
                _output_tile(mm, q * k_out, m_plane, bias, y, first + q, tiles_h, tiles_w, out_h, out_w, half,
                             tile_out)


@njit(cache=True)
def _input_tile(x, tile, tiles_h, tiles_w, height, width, channels, pad_top, pad_left, u, at, plane, patch, half):
    """u[at + p*plane : ... + channels] = U[p] of the tile, p < 36: BT along the patch's columns into half, then
    along its rows."""
    n, ti, tj = tile // (tiles_h * tiles_w), tile // tiles_w % tiles_h, tile % tiles_w
    h0, w0 = ti * M - pad_top, tj * M - pad_left
    c, row = np.uint64(channels), np.uint64(ALPHA * channels)
    if 0 <= h0 and h0 + ALPHA <= height and 0 <= w0 and w0 + ALPHA <= width:
        corner = np.uint64(((n * height + h0) * width + w0) * channels)
        for b in range(ALPHA):
            _bt(x, corner + b * c, np.uint64(width) * c, half, b * c, row, c)
    else:
        _gather_patch(x, n, h0, w0, height, width, channels, patch)
        for b in range(ALPHA):
            _bt(patch, b * c, row, half, b * c, row, c)
    for a in range(ALPHA):
        _bt(half, a * row, c, u, np.uint64(at) + np.uint64(a * ALPHA * plane), np.uint64(plane), c)


@njit(cache=True)
def _gather_patch(x, n, h0, w0, height, width, channels, patch):
    """patch[(a*6 + b)*C + c] = x[n, h0 + a, w0 + b, c], zero outside x."""
    c = np.uint64(channels)
    for a in range(ALPHA):
        for b in range(ALPHA):
            cell = np.uint64(a * ALPHA + b) * c
            h, w = h0 + a, w0 + b
            if 0 <= h < height and 0 <= w < width:
                pixel = np.uint64((n * height + h) * width + w) * c
                for i in range(c):
                    patch[cell + i] = x[pixel + i]
            else:
                for i in range(c):
                    patch[cell + i] = 0


@njit(cache=True)
def _output_tile(mm, at, plane, bias, y, tile, tiles_h, tiles_w, out_h, out_w, half, tile_out):
    """y's pixels of the tile = AT M AT^T + bias: AT across the rows of M's 6 x 6 into half, then along them;
    a tile that lies inside y is written in place, a border tile through tile_out (16 x K)."""
    k = np.uint64(bias.shape[0])
    row = np.uint64(ALPHA) * k
    for b in range(ALPHA):
        _at(mm, np.uint64(at) + np.uint64(b * plane), np.uint64(ALPHA * plane), half, b * k, row, k, None)
    n, ti, tj = tile // (tiles_h * tiles_w), tile // tiles_w % tiles_h, tile % tiles_w
    oh0, ow0 = ti * M, tj * M
    if oh0 + M <= out_h and ow0 + M <= out_w:
        corner = np.uint64(((n * out_h + oh0) * out_w + ow0)) * k
        for i in range(M):
            _at(half, i * row, k, y, corner + np.uint64(i * out_w) * k, k, k, bias)
        return
    for i in range(M):
        _at(half, i * row, k, tile_out, np.uint64(i * M) * k, k, k, bias)
    for i in range(min(M, out_h - oh0)):
        for j in range(min(M, out_w - ow0)):
            cell, pixel = np.uint64(i * M + j) * k, np.uint64((n * out_h + oh0 + i) * out_w + ow0 + j) * k
            for kk in range(k):
                y[pixel + kk] = tile_out[cell + kk]


@njit(cache=True)
def _bt(src, first, step, dst, d_first, d_step, count):
    """dst[d_first + i*d_step + c] = sum_e BT[i, e] src[first + e*step + c] for c < count (6 -> 6 rows of
    count contiguous values; BT of F(4x4, 3x3) written out, its non-zero terms only, so that the loops
    vectorize)."""
    r0, r1, r2, r3, r4, r5 = _rows(first, step)
    o0, o1, o2, o3, o4, o5 = _rows(d_first, d_step)
    two, four, five = src.dtype.type(2), src.dtype.type(4), src.dtype.type(5)
    for t in range(count):
        dst[o0 + t] = four * src[r0 + t] - five * src[r2 + t] + src[r4 + t]
    for t in range(count):
        dst[o1 + t] = (src[r3 + t] + src[r4 + t]) - four * (src[r1 + t] + src[r2 + t])
    for t in range(count):
        dst[o2 + t] = (src[r4 + t] - src[r3 + t]) + four * (src[r1 + t] - src[r2 + t])
    for t in range(count):
        dst[o3 + t] = (src[r4 + t] - src[r2 + t]) + two * (src[r3 + t] - src[r1 + t])
    for t in range(count):
        dst[o4 + t] = (src[r4 + t] - src[r2 + t]) - two * (src[r3 + t] - src[r1 + t])
    for t in range(count):
        dst[o5 + t] = four * src[r1 + t] - five * src[r3 + t] + src[r5 + t]


@njit(cache=True)
def _at(src, first, step, dst, d_first, d_step, count, bias):
    """dst[d_first + i*d_step + c] = sum_e AT[i, e] src[first + e*step + c] (+ bias[c] unless bias is None) for
    c < count (6 -> 4 rows), written like _bt."""
    s0, s1, s2, s3, s4, s5 = _rows(first, step)
    o0, o1, o2, o3 = _rows(d_first, d_step)[:4]
    two, four, eight = src.dtype.type(2), src.dtype.type(4), src.dtype.type(8)
    for t in range(count):
        dst[o0 + t] = src[s0 + t] + src[s1 + t] + src[s2 + t] + src[s3 + t] + src[s4 + t]
    for t in range(count):
        dst[o1 + t] = (src[s1 + t] - src[s2 + t]) + two * (src[s3 + t] - src[s4 + t])
    for t in range(count):
        dst[o2 + t] = (src[s1 + t] + src[s2 + t]) + four * (src[s3 + t] + src[s4 + t])
    for t in range(count):
        dst[o3 + t] = (src[s1 + t] - src[s2 + t]) + eight * (src[s3 + t] - src[s4 + t]) + src[s5 + t]
    if bias is not None:
        for i in range(4):
            o = d_first + np.uint64(i) * d_step
            for t in range(count):
                dst[o + t] += bias[t]


def channels_last_methods(op: str, g: ConvGeometry) -> list[Method]:
    """"nhwc_winograd" forward where applies(g); backward also where dx is the rotated forward convolution."""
    if op == "conv2d_forward" and applies(g):
        return [Method(NAME, forward, forward_plan)]
    if op == "conv2d_backward" and applies(g) and conv.rotation_applies(g):
        return [Method(NAME, backward, backward_plan)]
    return []


#: listed before the transposed NCHW methods (the default) where Winograd pays, after them elsewhere
channels_last_default = winograd_pays
