"""im2col and its adjoint for one tile of output rows of one group, with implicit zero padding.

A tile is ``rows`` consecutive global output rows starting at ``row0``; global row q is image q // Ho,
output row q % Ho, so a tile may span images. Its column matrix col (Cg*R*S, rows*Wo) holds

    col[(c*R + r)*S + s, j*Wo + ow] = x[n, group*Cg + c, oh*sh + r*dh - top, ow*sw + s*dw - left]

(zero where that cell is padding), with (n, oh) the global row row0 + j. ``params`` is
(sh, sw, dh, dw, top, left).
"""

from __future__ import annotations

import numpy as np
from numba import njit, uint64


@njit(cache=True, inline="always")
def ceil_div(a, b):
    return -((-a) // b)


@njit(cache=True, inline="always")
def valid_columns(s, params, width, out_w):
    """[lo, hi): the output columns ow whose tap s reads inside the input (0 <= ow*sw + s*dw - left < width)."""
    sh, sw, dh, dw, top, left = params
    offset = s * dw - left
    lo = min(max(0, ceil_div(-offset, sw)), out_w)
    hi = max(min(out_w, ceil_div(width - offset, sw)), lo)
    return lo, hi, offset


#: fused multiply-adds and reordered sums only; NaN and inf keep their IEEE meaning
FMA_AND_REORDER = {"contract", "reassoc"}


@njit(cache=True, fastmath=FMA_AND_REORDER, inline="always")
def axpy(dst, src, a):
    """dst += a * src, for 1-D views of one length. Indexing from 0 lets LLVM drop numba's negative-index
    wraparound and vectorize the loop."""
    for i in range(dst.shape[0]):
        dst[i] += a * src[i]


@njit(cache=True, fastmath=FMA_AND_REORDER, inline="always")
def dot(a, b):
    """sum(a * b) for 1-D views of one length, accumulated in their dtype."""
    total = a.dtype.type(0)
    for i in range(a.shape[0]):
        total += a[i] * b[i]
    return total


@njit(cache=True, inline="always")
def add_tap(out_row, in_row, lo, hi, offset, stride, a):
    """out_row[lo:hi] += a * in_row[ow*stride + offset for ow in lo..hi-1] (one tap along a row)."""
    if hi <= lo:
        return
    start = lo * stride + offset
    if stride == 1:  # a contiguous slice keeps the loop vectorized
        axpy(out_row[lo:hi], in_row[start:start + hi - lo], a)
    else:
        axpy(out_row[lo:hi], in_row[start:(hi - 1) * stride + offset + 1:stride], a)


@njit(cache=True, inline="always")
def scatter_tap(in_row, out_row, lo, hi, offset, stride, a):
    """The adjoint of add_tap: in_row[ow*stride + offset for ow in lo..hi-1] += a * out_row[lo:hi]."""
    if hi <= lo:
        return
    start = lo * stride + offset
    if stride == 1:
        axpy(in_row[start:start + hi - lo], out_row[lo:hi], a)
    else:
        axpy(in_row[start:(hi - 1) * stride + offset + 1:stride], out_row[lo:hi], a)


@njit(cache=True, inline="always")
def dot_tap(out_row, in_row, lo, hi, offset, stride):
    """sum over ow in lo..hi-1 of out_row[ow] * in_row[ow*stride + offset]."""
    if hi <= lo:
        return out_row.dtype.type(0)
    start = lo * stride + offset
    if stride == 1:
        return dot(out_row[lo:hi], in_row[start:start + hi - lo])
    return dot(out_row[lo:hi], in_row[start:(hi - 1) * stride + offset + 1:stride])


@njit(cache=True, inline="always")
def column_ranges(s_size, params, width, out_w):
    """(S, 3) int64: valid_columns (lo, hi, offset) of every tap s, computed once per call because the
    divisions cost more than a short row of multiply-adds."""
    ranges = np.empty((s_size, 3), np.int64)
    for s in range(s_size):
        ranges[s, 0], ranges[s, 1], ranges[s, 2] = valid_columns(s, params, width, out_w)
    return ranges


@njit(cache=True, inline="always")
def next_row(n, oh, out_h):
    """The global output row after (image n, row oh), without a division."""
    return (n, oh + 1) if oh + 1 < out_h else (n + 1, 0)


@njit(cache=True, inline="always")
def _plane_row(n, channel, ih, channels, height, width):
    """Flat offset of x[n, channel, ih, 0] in an (N, C, H, W) array."""
    return uint64(((n * channels + channel) * height + ih) * width)


@njit(cache=True)
def fill_columns(x, group, row0, rows, r_size, s_size, params, out_h, out_w, col):
    """x (N, C, H, W) -> col (Cg*R*S, rows*Wo), as in the module docstring.

    Flat unsigned offsets instead of 4-D indexing or row views: numba then neither checks for negative
    indices nor counts references, which makes this 2.5x faster."""
    sh, sw, dh, dw, top, left = params
    channels, height, width = x.shape[1], x.shape[2], x.shape[3]
    src, dst = x.ravel(), col.ravel()
    row_length, step = uint64(col.shape[1]), uint64(sw)
    cg = col.shape[0] // (r_size * s_size)
    for c in range(cg):
        for r in range(r_size):
            for s in range(s_size):
                q = (c * r_size + r) * s_size + s
                lo, hi, offset = valid_columns(s, params, width, out_w)
                n, oh = divmod(row0, out_h)
                for j in range(rows):
                    ih = oh * sh + r * dh - top
                    out = uint64(q) * row_length + uint64(j * out_w)
                    if 0 <= ih < height:
                        start = _plane_row(n, group * cg + c, ih, channels, height, width) + uint64(lo * sw + offset)
                        for ow in range(uint64(lo)):
                            dst[out + ow] = 0
                        for i in range(uint64(hi - lo)):
                            dst[out + uint64(lo) + i] = src[start + i * step]
                        for ow in range(uint64(hi), uint64(out_w)):
                            dst[out + ow] = 0
                    else:
                        for ow in range(uint64(out_w)):
                            dst[out + ow] = 0
                    n, oh = next_row(n, oh, out_h)


@njit(cache=True)
def add_columns(col, group, row0, rows, r_size, s_size, params, out_h, out_w, dx):
    """The adjoint of fill_columns: dx (N, C, H, W) += col (Cg*R*S, rows*Wo) scattered to its cells."""
    sh, sw, dh, dw, top, left = params
    channels, height, width = dx.shape[1], dx.shape[2], dx.shape[3]
    src, dst = col.ravel(), dx.ravel()
    row_length, step = uint64(col.shape[1]), uint64(sw)
    cg = col.shape[0] // (r_size * s_size)
    for c in range(cg):
        for r in range(r_size):
            for s in range(s_size):
                q = (c * r_size + r) * s_size + s
                lo, hi, offset = valid_columns(s, params, width, out_w)
                n, oh = divmod(row0, out_h)
                for j in range(rows):
                    ih = oh * sh + r * dh - top
                    if 0 <= ih < height:
                        start = _plane_row(n, group * cg + c, ih, channels, height, width) + uint64(lo * sw + offset)
                        first = uint64(q) * row_length + uint64(j * out_w + lo)
                        for i in range(uint64(hi - lo)):
                            dst[start + i * step] += src[first + i]
                    n, oh = next_row(n, oh, out_h)
