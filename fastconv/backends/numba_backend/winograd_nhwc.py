"""Winograd F(4x4, 3x3) on channels-last arrays: the kernel behind fastconv.backends._winograd_nhwc (see there for
the maths, the arrays and the blocking). The transforms run along the channels, on flat arrays with unsigned
offsets (as in winograd and pool_nhwc) so that they vectorize; the GEMMs are np.dot on views of the planes."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from fastconv.backends._defaults import winograd_pays
from fastconv.backends._winograd_nhwc import ALPHA, M, serves_channels_first, winograd_methods
from fastconv.backends.numba_backend import conv
from fastconv.backends.numba_backend._parallel import parallel_kernel
from fastconv.backends.numba_backend._reduce import channels_last_bias_grad
from fastconv.backends.numba_backend.winograd import _rows


@parallel_kernel()
def _winograd(x, v, bias, y, n_images, height, width, out_h, out_w, pad_top, pad_left, block_tiles, us, mms,
              patches, halves, tile_outs):
    """y (N*Ho*Wo*K,) from x (N*H*W*C,) and V (36, K, C), block by block of block_tiles tiles; the other
    arguments are per-chunk buffers (_winograd_nhwc.forward_plan), one chunk per thread."""
    k_out, c_in = v.shape[1], v.shape[2]
    tiles_h, tiles_w = (out_h + M - 1) // M, (out_w + M - 1) // M
    tiles = n_images * tiles_h * tiles_w
    blocks = (tiles + block_tiles - 1) // block_tiles
    u_plane, m_plane = us.shape[1] // (ALPHA * ALPHA), mms.shape[1] // (ALPHA * ALPHA)  # the planes' strides
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


channels_last_methods = winograd_methods(_winograd, conv, channels_last_bias_grad, numba=True)
#: listed before the transposed NCHW methods (the default) where Winograd pays, after them elsewhere
channels_last_default = winograd_pays
#: also offered to NCHW arrays ("nhwc:nhwc_winograd", between transposes) where it may pay for them
serves_channels_first = serves_channels_first
