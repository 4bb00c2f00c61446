"""Depthwise (one input channel per group) convolution over channel blocks (fastconv.backends._blocked): LANES
channels interleaved in a zero-padded buffer; any kernel size, stride, dilation and padding. Work items (image,
block, tile of output rows) are split into one contiguous chunk per thread, each with its scratch row.

LLVM vectorizes long loops (with a run-time check that the arrays do not overlap), not the 16-lane loops of the
cython kernels, so the buffer's columns are split by phase as in fastconv.backends._polyphase: padded column b
sits at (b mod sw, b // sw), so that every tap reads a contiguous run of an output row's Wo*LANES values; the
filters are repeated along the row (``taps_row`` (R*S + 1, Wo*LANES), the bias last), and every tap is one loop
of Wo*LANES multiply-adds:

    row[ow*LANES + j] += taps_row[r*S + s, ow*LANES + j] * buf[first(r, s)*LANES + ow*LANES + j]

The grad of w sums the products dy_row * buf per tap along the row in ``taps_row`` and adds them up per lane at the
end of each item; the grad of x adds taps_row * dy_row into the buffer of the whole padded plane. Flat arrays and
unsigned offsets as in _columns.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, uint64

from fastconv._geometry import ConvGeometry
from fastconv._threads import parallel_region, threads_for
from fastconv.backends._blocked import (LANES, applies, bias_buffer, blocks, filters_buffer, padded_rows,
                                        padded_width, params, relay_bias, relay_filters, tile_rows,
                                        unrelay_filters)
from fastconv.backends._protocol import Plan
from fastconv.backends.numba_backend._chunks import chunk_bounds
from fastconv.backends.numba_backend._columns import FMA_AND_REORDER
from fastconv.backends.numba_backend._parallel import parallel_kernel

__all__ = ["applies", "forward", "forward_plan", "backward", "backward_plan"]


def _items(g: ConvGeometry) -> int:
    return g.n * blocks(g) * -(-g.out_h // tile_rows(g))


def _scratch(g: ConvGeometry, threads: int, out_rows: int) -> dict:
    """Each chunk's row of scratch, in cells of LANES: its buffer (padded rows of sw phases of wq cells), an output
    (or dy) row of Wo cells, and taps_row (R*S + 1 rows of Wo cells)."""
    wq = -(-padded_width(g) // g.stride_w)
    cells = padded_rows(g, out_rows) * g.stride_w * wq + (g.r * g.s + 2) * g.out_w
    return {"scratch": ((threads, cells * LANES), g.dtype)}


def forward_plan(g: ConvGeometry) -> Plan:
    """The re-laid filters and bias, and each chunk's scratch."""
    threads = threads_for(g.flops, _items(g))
    return Plan(threads, {**filters_buffer(g), **bias_buffer(g), **_scratch(g, threads, tile_rows(g))})


def backward_plan(g: ConvGeometry, need_dx: bool = True, need_dw: bool = True) -> Plan:
    """The grad of w's scratch and dW partial sums, then the grad of x's re-laid filters and scratch."""
    phases = []
    if need_dw:
        threads = threads_for(g.flops, _items(g))
        parts = {"dw_parts": ((threads, *filters_buffer(g)["filters"][0]), g.dtype)}
        phases.append(Plan(threads, {**_scratch(g, threads, tile_rows(g)), **parts}))
    if need_dx:
        threads = threads_for(g.flops, g.n * blocks(g))
        phases.append(Plan(threads, {**filters_buffer(g), **_scratch(g, threads, g.out_h)}))
    return Plan.peak(*phases) if phases else Plan(1)


@njit(cache=True, inline="always")
def _layout(params, out_rows, out_w):
    """(wq, buffer cells, row cells): columns per phase, and the sizes of the buffer for out_rows output rows and of
    one output row, in values."""
    sh, sw, dh, dw, top, left, r_size, s_size, tile, wp = params
    wq = -(-wp // sw)
    return wq, ((out_rows - 1) * sh + (r_size - 1) * dh + 1) * sw * wq * LANES, out_w * LANES


@njit(cache=True, inline="always")
def _cell(a, b, sw, wq):
    """The buffer cell of padded row a, padded column b."""
    return uint64((a * sw + b % sw) * wq + b // sw) * uint64(LANES)


@njit(cache=True, inline="always")
def _phase_columns(phase, sw, left, width, wp):
    """[first, last): the columns col of a phase whose padded column b = col*sw + phase lies in the input
    (left <= b < width + left) and in the buffer (b < wp)."""
    return max(0, -(-(left - phase) // sw)), min(-(-(wp - phase) // sw), -(-(width + left - phase) // sw))


@njit(cache=True, inline="always")
def _pack(src, plane, valid, height, width, buf, first_row, rows, params):
    """buf = the lanes' padded input rows from first_row on: cell (a, b) lane j = x plane j (H, W) at
    (first_row + a - top, b - left), from src[plane + j*H*W]; zero outside it and in lanes j >= valid. Phase by
    phase, so that no column costs a division."""
    sh, sw, dh, dw, top, left, r_size, s_size, tile, wp = params
    wq, plane_size, lanes = -(-wp // sw), uint64(height * width), uint64(LANES)
    for i in range(uint64(rows * sw * wq * LANES)):
        buf[i] = 0
    for a in range(rows):
        ih = first_row + a - top
        if 0 <= ih < height:
            for phase in range(sw):
                first_col, last_col = _phase_columns(phase, sw, left, width, wp)
                cell = _cell(a, phase, sw, wq)
                for col in range(first_col, last_col):
                    first = plane + uint64(ih * width + col * sw + phase - left)
                    target = cell + uint64(col) * lanes
                    for j in range(uint64(valid)):
                        buf[target + j] = src[first + j * plane_size]


@njit(cache=True, inline="always")
def _pack_item(src, c, height, width, buf, item, params):
    """buf = the padded input rows that item (n, c0, valid, oh0, oh1)'s output rows read, of its block's channels
    (see _pack)."""
    sh, sw, dh, dw, top, left, r_size, s_size, tile, wp = params
    n, c0, valid, oh0, oh1 = item
    _pack(src, uint64((n * c + c0) * height * width), valid, height, width, buf, oh0 * sh,
          (oh1 - oh0 - 1) * sh + (r_size - 1) * dh + 1, params)


@njit(cache=True, inline="always")
def _repeat_taps(taps_row, taps, bias, first, taps_count, out_w):
    """taps_row (taps_count + 1, Wo*LANES): the taps[first + t*LANES:][:LANES] repeated along the row, then the bias
    (LANES,) (None for the grad of x, which needs none)."""
    lanes, width = uint64(LANES), uint64(out_w * LANES)
    for t in range(uint64(taps_count)):
        for ow in range(uint64(out_w)):
            for j in range(lanes):
                taps_row[t * width + ow * lanes + j] = taps[first + t * lanes + j]
    if bias is not None:
        for ow in range(uint64(out_w)):
            for j in range(lanes):
                taps_row[uint64(taps_count) * width + ow * lanes + j] = bias[first // uint64(taps_count) + j]


@njit(cache=True, inline="always")
def _row_taps(row, taps_row, buf, first_row, params, out_w, into):
    """Every tap (r, s) of one output row whose windows start at buffer row first_row, each one loop along the
    row of Wo*LANES values: row += taps_row[t] * run (INTO_ROW), taps_row[t] += row * run (INTO_TAPS), or
    run += taps_row[t] * row (INTO_BUFFER), where run is the tap's contiguous run of the buffer."""
    sh, sw, dh, dw, top, left, r_size, s_size, tile, wp = params
    wq, width = -(-wp // sw), uint64(out_w * LANES)
    for r in range(r_size):
        for s in range(s_size):
            t = uint64(r * s_size + s) * width
            run = _cell(first_row + r * dh, s * dw, sw, wq)
            for e in range(width):
                if into == INTO_ROW:
                    row[e] += taps_row[t + e] * buf[run + e]
                elif into == INTO_TAPS:
                    taps_row[t + e] += row[e] * buf[run + e]
                else:
                    buf[run + e] += taps_row[t + e] * row[e]


#: what _row_taps adds up: into the output row (forward), into the taps (grad of w), or into the buffer (grad of x)
INTO_ROW, INTO_TAPS, INTO_BUFFER = 0, 1, 2


@njit(cache=True, inline="always")
def _item(item, n_blocks, tiles, tile, out_h, c):
    """(n, c0, valid lanes, oh0, oh1) of work item (n, block, tile): its image, block and output rows."""
    n, block, oh0 = item // (n_blocks * tiles), item // tiles % n_blocks, item % tiles * tile
    c0 = block * LANES
    return n, c0, min(LANES, c - c0), oh0, min(oh0 + tile, out_h)


@njit(cache=True, inline="always")
def _lanes_to_planes(dst, first, plane_step, row, valid, out_w):
    """dst[first + j*plane_step + ow] = row[ow*LANES + j] for j < valid."""
    for j in range(uint64(valid)):
        for ow in range(uint64(out_w)):
            dst[first + j * plane_step + ow] = row[ow * uint64(LANES) + j]


@njit(cache=True, inline="always")
def _planes_to_lanes(row, src, first, plane_step, valid, out_w):
    """row[ow*LANES + j] = src[first + j*plane_step + ow] for j < valid, zero in the other lanes."""
    lanes = uint64(LANES)
    for i in range(uint64(out_w) * lanes):
        row[i] = 0
    for j in range(uint64(valid)):
        for ow in range(uint64(out_w)):
            row[ow * lanes + j] = src[first + j * plane_step + ow]


@parallel_kernel(fastmath=FMA_AND_REORDER)
def _forward(x, filters, bias, y, scratch, params):
    """x (N, C, H, W), filters (blocks, m, R*S, LANES), bias (blocks, m, 1, LANES) -> y (N, K, Ho, Wo)."""
    sh, sw, dh, dw, top, left, r_size, s_size, tile, wp = params
    n_images, c, height, width = x.shape
    n_blocks, m, taps_count = filters.shape[0], filters.shape[1], filters.shape[2]
    k, out_h, out_w = y.shape[1], y.shape[2], y.shape[3]
    tiles, chunks = -(-out_h // tile), scratch.shape[0]
    wq, cells, row_size = _layout(params, tile, out_w)
    src, dst, taps, biases = x.ravel(), y.ravel(), filters.ravel(), bias.ravel()
    for t in prange(chunks):
        buf, row, taps_row = scratch[t, :cells], scratch[t, cells:cells + row_size], scratch[t, cells + row_size:]
        first, last = chunk_bounds(n_images * n_blocks * tiles, chunks, t)
        for item in range(first, last):
            n, c0, valid, oh0, oh1 = _item(item, n_blocks, tiles, tile, out_h, c)
            _pack_item(src, c, height, width, buf, (n, c0, valid, oh0, oh1), params)
            for q in range(m):
                block_taps = uint64(c0 // LANES * m + q)
                _repeat_taps(taps_row, taps, biases, block_taps * uint64(taps_count * LANES), taps_count, out_w)
                bias_row = uint64(taps_count * row_size)
                for oh in range(oh0, oh1):
                    for e in range(uint64(row_size)):
                        row[e] = taps_row[bias_row + e]
                    _row_taps(row, taps_row, buf, (oh - oh0) * sh, params, out_w, INTO_ROW)
                    _lanes_to_planes(dst, uint64(((n * k + c0 * m + q) * out_h + oh) * out_w),
                                     uint64(m * out_h * out_w), row, valid, out_w)


@parallel_kernel(fastmath=FMA_AND_REORDER)
def _grad_w(dy, x, dw_parts, scratch, params):
    """dy (N, K, Ho, Wo), x (N, C, H, W) -> dw_parts (chunks, blocks, m, R*S, LANES): each chunk's share of
    dW; items (n, block, tile) as in _forward."""
    sh, sw, dh, dw, top, left, r_size, s_size, tile, wp = params
    n_images, c, height, width = x.shape
    chunks, n_blocks, m, taps_count = dw_parts.shape[0], dw_parts.shape[1], dw_parts.shape[2], dw_parts.shape[3]
    k, out_h, out_w = dy.shape[1], dy.shape[2], dy.shape[3]
    tiles = -(-out_h // tile)
    wq, cells, row_size = _layout(params, tile, out_w)
    grads, inputs, lanes = dy.ravel(), x.ravel(), uint64(LANES)
    for t in prange(chunks):
        buf, row, sums = scratch[t, :cells], scratch[t, cells:cells + row_size], scratch[t, cells + row_size:]
        part = dw_parts[t].ravel()
        part[:] = 0
        first, last = chunk_bounds(n_images * n_blocks * tiles, chunks, t)
        for item in range(first, last):
            n, c0, valid, oh0, oh1 = _item(item, n_blocks, tiles, tile, out_h, c)
            _pack_item(inputs, c, height, width, buf, (n, c0, valid, oh0, oh1), params)
            for q in range(m):
                sums[:] = 0
                for oh in range(oh0, oh1):
                    _planes_to_lanes(row, grads, uint64(((n * k + c0 * m + q) * out_h + oh) * out_w),
                                     uint64(m * out_h * out_w), valid, out_w)
                    _row_taps(row, sums, buf, (oh - oh0) * sh, params, out_w, INTO_TAPS)
                first_tap = uint64((c0 // LANES * m + q) * taps_count) * lanes
                for tap in range(uint64(taps_count)):
                    for ow in range(uint64(out_w)):
                        for j in range(lanes):
                            part[first_tap + tap * lanes + j] += sums[(tap * uint64(out_w) + ow) * lanes + j]


@parallel_kernel(fastmath=FMA_AND_REORDER)
def _grad_x(dy, filters, dx, scratch, params):
    """dy (N, K, Ho, Wo), filters (blocks, m, R*S, LANES) -> dx (N, C, H, W); items (n, block), each adding its
    m output channels into a zeroed buffer of the whole padded plane, then cropping it into dx."""
    sh, sw, dh, dw, top, left, r_size, s_size, tile, wp = params
    n_images, c, height, width = dx.shape
    n_blocks, m, taps_count = filters.shape[0], filters.shape[1], filters.shape[2]
    k, out_h, out_w = dy.shape[1], dy.shape[2], dy.shape[3]
    chunks, rows = scratch.shape[0], (out_h - 1) * sh + (r_size - 1) * dh + 1
    wq, cells, row_size = _layout(params, out_h, out_w)
    grads, dst, taps = dy.ravel(), dx.ravel(), filters.ravel()
    for t in prange(chunks):
        buf, row, taps_row = scratch[t, :cells], scratch[t, cells:cells + row_size], scratch[t, cells + row_size:]
        first, last = chunk_bounds(n_images * n_blocks, chunks, t)
        for item in range(first, last):
            n, c0, valid, _, _ = _item(item, n_blocks, 1, 0, 0, c)
            buf[:] = 0
            for q in range(m):
                _repeat_taps(taps_row, taps, None, uint64((c0 // LANES * m + q) * taps_count * LANES), taps_count,
                             out_w)
                for oh in range(out_h):
                    _planes_to_lanes(row, grads, uint64(((n * k + c0 * m + q) * out_h + oh) * out_w),
                                     uint64(m * out_h * out_w), valid, out_w)
                    _row_taps(row, taps_row, buf, oh * sh, params, out_w, INTO_BUFFER)
            for j in range(valid):
                for ih in range(height):
                    out = uint64(((n * c + c0 + j) * height + ih) * width)
                    for iw in range(uint64(width)):
                        dst[out + iw] = 0
                    a = ih + top
                    if 0 <= a < rows:
                        for phase in range(sw):
                            first_col, last_col = _phase_columns(phase, sw, left, width, wp)
                            cell = _cell(a, phase, sw, wq) + uint64(j)
                            for col in range(first_col, last_col):
                                dst[out + uint64(col * sw + phase - left)] = buf[cell + uint64(col * LANES)]


def forward(x, w, b, g: ConvGeometry):
    """x (N, C, H, W), w (K, 1, R, S), b (K,) or None -> y (N, K, Ho, Wo)."""
    plan = forward_plan(g)
    scratch = plan.allocate()
    y = np.empty(g.y_shape, g.dtype)
    with parallel_region(plan.threads, numba=True):
        _forward(x, relay_filters(w, g, scratch["filters"]), relay_bias(b, g, scratch["bias"]), y,
                 scratch["scratch"], params(g, tile_rows(g)))
    return y


def backward(dy, x, w, g: ConvGeometry, need_dx: bool, need_dw: bool):
    """dy (N, K, Ho, Wo) -> dx (N, C, H, W), dw (K, 1, R, S); None where not needed."""
    dx = dw = None
    phases = iter(backward_plan(g, need_dx, need_dw).phases)
    if need_dw:
        plan = next(phases)
        scratch = plan.allocate()
        parts = scratch["dw_parts"]
        with parallel_region(plan.threads, numba=True):
            _grad_w(dy, x, parts, scratch["scratch"], params(g, tile_rows(g)))
        for part in parts[1:]:
            parts[0] += part
        dw = unrelay_filters(parts[0], g, np.empty(g.w_shape, g.dtype))
    if need_dx:
        plan = next(phases)
        scratch = plan.allocate()
        dx = np.empty(g.x_shape, g.dtype)
        with parallel_region(plan.threads, numba=True):
            _grad_x(dy, relay_filters(w, g, scratch["filters"]), dx, scratch["scratch"], params(g, g.out_h))
    return dx, dw
