"""im2col and its adjoint for one tile of output rows of one group, with implicit zero padding.

A tile is ``rows`` consecutive global output rows starting at ``row0``; global row q is image q // Ho,
output row q % Ho, so a tile may span images. Its column matrix col (Cg*R*S, rows*Wo) holds

    col[(c*R + r)*S + s, j*Wo + ow] = x[n, group*Cg + c, oh*sh + r*dh - top, ow*sw + s*dw - left]

(zero where that cell is padding), with (n, oh) the global row row0 + j. ``params`` is
(sh, sw, dh, dw, top, left).
"""

from __future__ import annotations

from numba import njit


@njit(cache=True)
def ceil_div(a, b):
    return -((-a) // b)


@njit(cache=True)
def valid_columns(s, params, width, out_w):
    """[lo, hi): the output columns ow whose tap s reads inside the input (0 <= ow*sw + s*dw - left < width)."""
    sh, sw, dh, dw, top, left = params
    offset = s * dw - left
    lo = min(max(0, ceil_div(-offset, sw)), out_w)
    hi = max(min(out_w, ceil_div(width - offset, sw)), lo)
    return lo, hi, offset


@njit(cache=True)
def fill_columns(x, group, row0, rows, r_size, s_size, params, out_h, out_w, col):
    """x (N, C, H, W) -> col (Cg*R*S, rows*Wo), as in the module docstring."""
    sh, sw, dh, dw, top, left = params
    height, width = x.shape[2], x.shape[3]
    cg = col.shape[0] // (r_size * s_size)
    for c in range(cg):
        channel = group * cg + c
        for r in range(r_size):
            for s in range(s_size):
                q = (c * r_size + r) * s_size + s
                lo, hi, offset = valid_columns(s, params, width, out_w)
                for j in range(rows):
                    n, oh = divmod(row0 + j, out_h)
                    ih = oh * sh + r * dh - top
                    base = j * out_w
                    if ih < 0 or ih >= height:
                        col[q, base:base + out_w] = 0
                        continue
                    col[q, base:base + lo] = 0
                    for ow in range(lo, hi):
                        col[q, base + ow] = x[n, channel, ih, ow * sw + offset]
                    col[q, base + hi:base + out_w] = 0


@njit(cache=True)
def add_columns(col, group, row0, rows, r_size, s_size, params, out_h, out_w, dx):
    """The adjoint of fill_columns: dx (N, C, H, W) += col (Cg*R*S, rows*Wo) scattered to its cells."""
    sh, sw, dh, dw, top, left = params
    height, width = dx.shape[2], dx.shape[3]
    cg = col.shape[0] // (r_size * s_size)
    for c in range(cg):
        channel = group * cg + c
        for r in range(r_size):
            for s in range(s_size):
                q = (c * r_size + r) * s_size + s
                lo, hi, offset = valid_columns(s, params, width, out_w)
                for j in range(rows):
                    n, oh = divmod(row0 + j, out_h)
                    ih = oh * sh + r * dh - top
                    if 0 <= ih < height:
                        base = j * out_w
                        for ow in range(lo, hi):
                            dx[n, channel, ih, ow * sw + offset] += col[q, base + ow]
