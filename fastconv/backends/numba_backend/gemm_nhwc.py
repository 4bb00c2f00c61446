"""Im2col + GEMM on channels-last arrays: the kernels behind fastconv.backends._gemm_nhwc (see there for the
method, its tiles and chunks). np.dot writes whole contiguous arrays only: with several groups a tile's GEMM
result, or its block of dy, goes through the thread's ``products`` (tile, Kg), and every dw product through its
``dw_tile`` before it is added into its partial dw. The columns are filled (and added back) on flat arrays with
unsigned offsets, as in _columns. Empty views stand in for the buffers a plan leaves out (the kernels then never
read them).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, uint64

from fastconv._geometry import ConvGeometry
from fastconv.backends._gemm_nhwc import by_tap, gemm_methods, preferred
from fastconv.backends.numba_backend._chunks import add_into, chunk_bounds
from fastconv.backends.numba_backend._columns import ceil_div, next_row, params
from fastconv.backends.numba_backend._parallel import parallel_kernel
from fastconv.backends.numba_backend._reduce import channels_last_bias_grad

@njit(cache=True)
def _tile_taps(dst, src, to_x, shape, params, group, p0, pixels):
    """Between x (N, H, W, C) and a tile's columns (pixels, R*S*Cg) of output pixels p0.., one group, both flat:
    with to_x, dst is x and src the columns, added at the cells they read (the adjoint); else dst = the columns,
    copied from src = x, zeros in the padding. shape = (H, W, C, Ho, Wo, R, S, Cg)."""
    height, width, c, out_h, out_w, r_size, s_size, cg = shape
    sh, sw, dh, dw, top, left = params
    row, zero = r_size * s_size * cg, dst.dtype.type(0)
    adjacent = dw * c == cg  # the slices of one input row's taps follow each other in x: one run per row
    n, pixel = divmod(p0, out_h * out_w)
    oh, ow = divmod(pixel, out_w)
    for i in range(pixels):
        iw0 = ow * sw - left
        lo, hi = 0, s_size
        if iw0 < 0 or iw0 + (s_size - 1) * dw >= width:  # some taps in the padding
            lo = min(max(0, ceil_div(-iw0, dw)), s_size)
            hi = max(min(s_size, ceil_div(width - iw0, dw)), lo)
        steps, span = (1, uint64((hi - lo) * cg)) if adjacent else (hi - lo, uint64(cg))
        for r in range(r_size):
            at_row = i * row + r * s_size * cg
            ih = oh * sh + r * dh - top
            if not 0 <= ih < height:
                if not to_x:
                    for j in range(uint64(at_row), uint64(at_row + s_size * cg)):
                        dst[j] = zero
                continue
            if not to_x:
                for j in range(uint64(at_row), uint64(at_row + lo * cg)):
                    dst[j] = zero
                for j in range(uint64(at_row + hi * cg), uint64(at_row + s_size * cg)):
                    dst[j] = zero
            for s in range(lo, lo + steps):
                at_x = uint64(((n * height + ih) * width + iw0 + s * dw) * c + group * cg)
                at_col = uint64(at_row + s * cg)
                if to_x:
                    for j in range(span):
                        dst[at_x + j] += src[at_col + j]
                else:
                    for j in range(span):
                        dst[at_col + j] = src[at_x + j]
        ow += 1
        if ow == out_w:
            n, oh = next_row(n, oh, out_h)
            ow = 0


@njit(cache=True)
def _tile_taps_by_tap(dst, src, to_x, shape, params, group, p0, pixels):
    """As _tile_taps, with the columns laid tap by tap, (R*S*Cg, pixels): each tap's row holds the runs of output
    row segments of the tile, read from x at a step of sw*C."""
    height, width, c, out_h, out_w, r_size, s_size, cg = shape
    sh, sw, dh, dw, top, left = params
    step, zero = uint64(sw * c), dst.dtype.type(0)
    for r in range(r_size):
        for s in range(s_size):
            offset = s * dw - left
            lo = min(max(0, ceil_div(-offset, sw)), out_w)
            hi = max(min(out_w, ceil_div(width - offset, sw)), lo)
            for channel in range(cg):
                at_col = ((r * s_size + s) * cg + channel) * pixels
                n, pixel = divmod(p0, out_h * out_w)
                oh, ow = divmod(pixel, out_w)
                i = 0
                while i < pixels:  # one output row's segment at a time: [ow, ow + count) of row oh, image n
                    count = min(out_w - ow, pixels - i)
                    ih = oh * sh + r * dh - top
                    a = min(max(lo, ow), ow + count)
                    b = max(min(hi, ow + count), a)
                    if not 0 <= ih < height:
                        a = b = ow
                    first = at_col + i - ow
                    at_x = uint64(((n * height + ih) * width + offset) * c + group * cg + channel)
                    if to_x and step == 1:  # unit steps apart: loops LLVM vectorizes
                        for o in range(uint64(a), uint64(b)):
                            dst[at_x + o] += src[uint64(first) + o]
                    elif to_x:
                        for o in range(uint64(a), uint64(b)):
                            dst[at_x + o * step] += src[uint64(first) + o]
                    else:
                        for o in range(uint64(first + ow), uint64(first + a)):
                            dst[o] = zero
                        for o in range(uint64(first + b), uint64(first + ow + count)):
                            dst[o] = zero
                        if step == 1:
                            for o in range(uint64(a), uint64(b)):
                                dst[uint64(first) + o] = src[at_x + o]
                        else:
                            for o in range(uint64(a), uint64(b)):
                                dst[uint64(first) + o] = src[at_x + o * step]
                    i += count
                    n, oh = next_row(n, oh, out_h)
                    ow = 0


@njit(cache=True, inline="always")
def _view(buffers, t, rows, cols):
    """The (rows, cols) matrix at the front of row t of a thread's flat buffers."""
    return buffers[t, :rows * cols].reshape(rows, cols)


@njit(cache=True, inline="always")
def _dy_block(dy, p0, size, k0, kg, products, t):
    """dy rows p0:p0 + size, columns k0:k0 + kg, contiguous: in place for one group, else copied into products."""
    if kg == dy.shape[1]:
        return dy[p0:p0 + size]
    block = _view(products, t, size, kg)
    for i in range(size):
        for j in range(kg):
            block[i, j] = dy[p0 + i, k0 + j]
    return block


@parallel_kernel()
def _forward(x, filters, bias, y, columns, products, shape, params, by_tap):
    """x (N, H, W, C), filters (K, R, S, Cg), bias (K,) -> y (N, Ho, Wo, K); one chunk of pixels per thread;
    columns laid tap by tap when by_tap."""
    k, row = filters.shape[0], filters.size // filters.shape[0]
    groups, rows, weights = x.shape[3] // filters.shape[3], y.reshape(-1, k), filters.reshape(k, row)
    kg, chunks, tile = k // groups, columns.shape[0], columns.shape[1] // row
    for t in prange(chunks):
        c0, c1 = chunk_bounds(rows.shape[0], chunks, t)
        for p0 in range(c0, c1, tile):
            size = min(tile, c1 - p0)
            for group in range(groups):
                k0 = group * kg
                out = rows[p0:p0 + size] if groups == 1 else _view(products, t, size, kg)
                if by_tap:
                    _tile_taps_by_tap(columns[t], x.ravel(), False, shape, params, group, p0, size)
                    np.dot(_view(columns, t, row, size).T, weights[k0:k0 + kg].T, out)
                else:
                    _tile_taps(columns[t], x.ravel(), False, shape, params, group, p0, size)
                    np.dot(_view(columns, t, size, row), weights[k0:k0 + kg].T, out)
                for i in range(size):
                    for j in range(kg):
                        rows[p0 + i, k0 + j] = out[i, j] + bias[k0 + j]


@parallel_kernel()
def _grad_w(dy, x, partial, dw_tile, columns, products, shape, params, by_tap):
    """dy (N, Ho, Wo, K), x (N, H, W, C) -> partial[t] (R*S*Cg, K): chunk t of the pixels' share of dw^T."""
    row, k = partial.shape[1], partial.shape[2]
    groups, rows = k // dw_tile.shape[2], dy.reshape(-1, k)
    kg, chunks, tile = k // groups, columns.shape[0], columns.shape[1] // row
    for t in prange(chunks):
        partial[t] = 0
        c0, c1 = chunk_bounds(rows.shape[0], chunks, t)
        for p0 in range(c0, c1, tile):
            size = min(tile, c1 - p0)
            for group in range(groups):
                block = _dy_block(rows, p0, size, group * kg, kg, products, t)
                if by_tap:
                    _tile_taps_by_tap(columns[t], x.ravel(), False, shape, params, group, p0, size)
                    np.dot(_view(columns, t, row, size), block, dw_tile[t])
                else:
                    _tile_taps(columns[t], x.ravel(), False, shape, params, group, p0, size)
                    np.dot(_view(columns, t, size, row).T, block, dw_tile[t])
                add_into(partial[t, :, group * kg:(group + 1) * kg], dw_tile[t])


@parallel_kernel()
def _grad_x(dy, filters, dx, dx_parts, columns, products, shape, params, by_tap):
    """dy (N, Ho, Wo, K), filters (K, R, S, Cg), or (R, S, Cg, K) by_tap (one group) -> dx (N, H, W, C): chunk t
    adds into dx (whole images) or, with fewer images than chunks, chunk t > 0 into its dx_parts[t - 1] (each
    zeroed first)."""
    k, row = dy.shape[3], filters.size // dy.shape[3]
    groups, rows = shape[2] // shape[7], dy.reshape(-1, k)
    weights = filters.reshape(row, k) if by_tap else filters.reshape(k, row)
    kg, chunks, tile, images = k // groups, columns.shape[0], columns.shape[1] // row, dx.shape[0]
    per_image = rows.shape[0] // images
    for t in prange(chunks):
        if images < chunks:
            target = dx if t == 0 else dx_parts[t - 1]
            target[:] = 0
            c0, c1 = chunk_bounds(rows.shape[0], chunks, t)
        else:
            target = dx
            n0, n1 = chunk_bounds(images, chunks, t)
            dx[n0:n1] = 0
            c0, c1 = n0 * per_image, n1 * per_image
        for p0 in range(c0, c1, tile):
            size = min(tile, c1 - p0)
            for group in range(groups):
                k0 = group * kg
                block = _dy_block(rows, p0, size, k0, kg, products, t)
                if by_tap:  # dcolumns^T = filters^T @ dy^T
                    np.dot(weights, block.T, _view(columns, t, row, size))
                    _tile_taps_by_tap(target.ravel(), columns[t], True, shape, params, group, p0, size)
                else:
                    np.dot(block, weights[k0:k0 + kg], _view(columns, t, size, row))
                    _tile_taps(target.ravel(), columns[t], True, shape, params, group, p0, size)


def _shape(g: ConvGeometry) -> tuple[int, ...]:
    """The shape tuple of _tile_taps."""
    return g.h, g.w, g.c, g.out_h, g.out_w, g.r, g.s, g.c_per_group


def _run_forward(x, filters, bias, y, scratch, g: ConvGeometry, threads: int) -> None:
    columns = scratch["columns"]
    bias = np.zeros(g.k, g.dtype) if bias is None else bias  # one compiled kernel per dtype, not one more for None
    _forward(x, filters, bias, y, columns, scratch.get("products", columns[:0]), _shape(g), params(g), by_tap(g))


def _run_grad_w(dy, x, scratch, g: ConvGeometry, threads: int) -> None:
    columns = scratch["columns"]
    _grad_w(dy, x, scratch["partial"], scratch["dw_tile"], columns, scratch.get("products", columns[:0]), _shape(g),
            params(g), by_tap(g))


def _run_grad_x(dy, filters, dx, scratch, g: ConvGeometry, threads: int) -> None:
    columns = scratch["columns"]
    _grad_x(dy, filters, dx, scratch.get("dx_parts", dx[np.newaxis, :0]), columns, scratch.get("products", columns[:0]),
            _shape(g), params(g), by_tap(g))


channels_last_default = preferred
channels_last_methods = gemm_methods(_run_forward, _run_grad_w, _run_grad_x, channels_last_bias_grad, numba=True)
