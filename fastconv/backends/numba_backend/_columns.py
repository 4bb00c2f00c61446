"""Row-level pieces shared by the convolution kernels: which output columns a kernel tap reads inside the
input, vectorizable axpy / dot on flat arrays, and im2col and its adjoint (col2im) for one tile of output rows
of one group, with implicit zero padding.

A tile is ``rows`` consecutive global output rows starting at ``row0``; global row q is image q // Ho,
output row q % Ho, so a tile may span images. Its column matrix col (Cg*R*S, rows*Wo) holds

    col[(c*R + r)*S + s, j*Wo + ow] = x[n, group*Cg + c, oh*sh + r*dh - top, ow*sw + s*dw - left]

(zero where that cell is padding), with (n, oh) the global row row0 + j. ``params`` is
(sh, sw, dh, dw, top, left).
"""

from __future__ import annotations

import numpy as np
from numba import njit, uint64

from fastconv._geometry import ConvGeometry


def params(g: ConvGeometry) -> tuple[int, ...]:
    """The (sh, sw, dh, dw, top, left) tuple the row helpers take."""
    return g.stride_h, g.stride_w, g.dilation_h, g.dilation_w, g.pad_top, g.pad_left


@njit(cache=True, inline="always")
def ceil_div(a, b):
    return -((-a) // b)


#: fused multiply-adds and reordered sums only; NaN and inf keep their IEEE meaning
FMA_AND_REORDER = {"contract", "reassoc"}


@njit(cache=True, inline="always")
def valid_columns(s, params, width, out_w):
    """[lo, hi): the output columns ow whose tap s reads inside the input (0 <= ow*sw + s*dw - left < width)."""
    sh, sw, dh, dw, top, left = params
    offset = s * dw - left
    lo = min(max(0, ceil_div(-offset, sw)), out_w)
    hi = max(min(out_w, ceil_div(width - offset, sw)), lo)
    return lo, hi, offset


@njit(cache=True, inline="always")
def axpy(dst, d0, d_step, src, s0, s_step, count, a):
    """dst[d0 + i*d_step] += a * src[s0 + i*s_step] for i < count, on flat arrays with uint64 offsets.

    Unsigned offsets spare numba's negative-index checks and views' reference counting; LLVM vectorizes
    the loop for unit steps. Inlined, so the caller's fastmath flags apply."""
    for i in range(count):
        dst[d0 + i * d_step] += a * src[s0 + i * s_step]


@njit(cache=True, inline="always")
def dot(a, a0, b, b0, b_step, count):
    """sum of a[a0 + i] * b[b0 + i*b_step] for i < count, flat arrays with uint64 offsets, in their dtype."""
    total = a.dtype.type(0)
    for i in range(count):
        total += a[a0 + i] * b[b0 + i * b_step]
    return total


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
def _tap(x_shape, group, c, r, s, r_size, s_size, cg, params, out_w):
    """Where tap (c, r, s) reads x: (q, lo, hi, channel_offset, column_offset) with q the row of
    the column matrix, [lo, hi) the output columns whose cell lies inside x, and x's flat offset of the cell
    read by output (n, oh, lo) being channel_offset + n*C*H*W + (oh*sh + r*dh - top)*W + column_offset."""
    sh, sw, dh, dw, top, left = params
    height, width = x_shape[2], x_shape[3]
    lo, hi, offset = valid_columns(s, params, width, out_w)
    channel_offset = (group * cg + c) * height * width
    return (c * r_size + r) * s_size + s, uint64(lo), uint64(hi), channel_offset, lo * sw + offset


@njit(cache=True)
def fill_columns(x, group, row0, rows, r_size, s_size, params, out_h, out_w, col):
    """x (N, C, H, W) -> col (Cg*R*S, rows*Wo), as in the module docstring.

    Flat unsigned offsets instead of 4-D indexing or row views: numba then neither checks for negative
    indices nor counts references, which makes this 2.5x faster."""
    sh, sw, dh, dw, top, left = params
    image, columns, step = x.ravel(), col.ravel(), uint64(sw)
    plane, height, width = x.shape[1] * x.shape[2] * x.shape[3], x.shape[2], x.shape[3]
    cg = col.shape[0] // (r_size * s_size)
    for c in range(cg):
        for r in range(r_size):
            for s in range(s_size):
                q, lo, hi, channel_offset, column_offset = _tap(x.shape, group, c, r, s, r_size, s_size, cg,
                                                                params, out_w)
                n, oh = divmod(row0, out_h)
                for j in range(rows):
                    ih = oh * sh + r * dh - top
                    first = uint64(q * col.shape[1] + j * out_w)
                    if 0 <= ih < height:
                        start = uint64(n * plane + channel_offset + ih * width + column_offset)
                        for ow in range(lo):
                            columns[first + ow] = 0
                        for i in range(hi - lo):
                            columns[first + lo + i] = image[start + i * step]
                        for ow in range(hi, uint64(out_w)):
                            columns[first + ow] = 0
                    else:
                        for ow in range(uint64(out_w)):
                            columns[first + ow] = 0
                    n, oh = next_row(n, oh, out_h)


@njit(cache=True)
def add_columns(col, group, row0, rows, r_size, s_size, params, out_h, out_w, dx):
    """The adjoint of fill_columns: dx (N, C, H, W) += col (Cg*R*S, rows*Wo) scattered to its cells."""
    sh, sw, dh, dw, top, left = params
    image, columns, step = dx.ravel(), col.ravel(), uint64(sw)
    plane, height, width = dx.shape[1] * dx.shape[2] * dx.shape[3], dx.shape[2], dx.shape[3]
    cg = col.shape[0] // (r_size * s_size)
    for c in range(cg):
        for r in range(r_size):
            for s in range(s_size):
                q, lo, hi, channel_offset, column_offset = _tap(dx.shape, group, c, r, s, r_size, s_size, cg,
                                                                params, out_w)
                n, oh = divmod(row0, out_h)
                for j in range(rows):
                    ih = oh * sh + r * dh - top
                    if 0 <= ih < height:
                        first = uint64(q * col.shape[1] + j * out_w)
                        start = uint64(n * plane + channel_offset + ih * width + column_offset)
                        for i in range(hi - lo):
                            image[start + i * step] += columns[first + lo + i]
                    n, oh = next_row(n, oh, out_h)
