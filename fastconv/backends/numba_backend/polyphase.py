"""Depthwise (one input channel per group) convolution over polyphase planes (fastconv.backends._polyphase):
whole-plane vector loops for small maps, any kernel size, stride, dilation and padding."""

from __future__ import annotations

import numpy as np
from numba import int64, njit, prange, uint64

from fastconv._geometry import ConvGeometry
from fastconv._threads import parallel_region, per_budget, threads_for
from fastconv.backends._polyphase import applies, params, preferred, scratch_buffer, tap_offsets
from fastconv.backends._protocol import Plan
from fastconv.backends.numba_backend._chunks import chunk_bounds
from fastconv.backends.numba_backend._columns import FMA_AND_REORDER
from fastconv.backends.numba_backend._parallel import parallel_kernel

__all__ = ["applies", "preferred", "forward", "forward_plan", "backward", "backward_plan"]


@per_budget
def forward_plan(g: ConvGeometry) -> Plan:
    """Each chunk's scratch."""
    threads = threads_for(g.flops, g.n * g.k)
    return Plan(threads, scratch_buffer(g, threads))


@per_budget
def backward_plan(g: ConvGeometry, need_dx: bool = True, need_dw: bool = True) -> Plan:
    """The chunks' scratch, and their dW partial sums."""
    threads = threads_for(g.flops, g.n * g.k)
    parts = {"dw_parts": ((threads, g.k, g.r, g.s), g.dtype)} if need_dw else {}
    return Plan(threads, {**scratch_buffer(g, threads), **parts})


@njit(cache=True, inline="always")
def _copy_shifted(src, first, height, width, planes, params, into_planes):
    """Input plane src[first:first + height*width] <-> the shifted planes (padding rows untouched): plane j is one
    flat copy of the input plane shifted by d = j*dw - left columns, its cells read from the side padding zero.
    Into the planes when into_planes; else the sum of the planes' cells inside the input is written to it (the
    adjoint: their padding cells are zeroed first)."""
    top, left, hq, shifts, dw = params[2], params[3], params[4], params[6], params[7]
    size, first = height * width, int64(first)  # signed offsets: uint64 with int64 would make float64
    if not into_planes:
        src[first:first + size] = 0
    for j in range(shifts):
        d = j * dw - left
        if d >= width or -d >= width:
            continue  # every cell of this plane is padding
        cells = (j * hq + top) * width
        lo, hi, skip = max(-d, 0), min(width - d, width), max(d, 0)  # the plane's columns inside the input
        if into_planes:
            planes[cells + lo:cells + size - skip] = src[first + skip:first + size - lo]
        for m in range(width):
            if m < lo or m >= hi:
                for i in range(height):
                    planes[cells + i * width + m] = 0
        if not into_planes:
            for i in range(size - lo - skip):
                src[first + skip + i] += planes[cells + lo + i]


@njit(cache=True, inline="always")
def _copy_plane(src, first, height, width, phases, params, into_phases):
    """Input plane src[first:first + height*width] <-> its cells of the phase planes (padding cells untouched):
    into the phases when into_phases, else back out of them. Phase by phase: phase (a, b) holds input rows i0,
    i0 + sh, ... and columns j0, j0 + sw, ... (i0 = (a - top) mod sh), one phase row per input row taken, so that
    no row costs a division. Shifted planes by _copy_shifted."""
    if params[6]:
        _copy_shifted(src, first, height, width, phases, params, into_phases)
        return
    sh, sw, top, left, hq, wq = params[:6]
    for a in range(sh):
        i0 = (a - top) % sh
        rows = max(0, -(-(height - i0) // sh))
        for b in range(sw):
            j0 = (b - left) % sw
            count = uint64(max(0, -(-(width - j0) // sw)))
            cells = uint64((a * sw + b) * hq * wq + (i0 + top) // sh * wq + (j0 + left) // sw)
            inputs = first + uint64(i0 * width + j0)
            for _ in range(rows):
                if into_phases:
                    for m in range(count):
                        phases[cells + m] = src[inputs + m * uint64(sw)]
                else:
                    for m in range(count):
                        src[inputs + m * uint64(sw)] = phases[cells + m]
                cells += uint64(wq)
                inputs += uint64(sh * width)


@njit(cache=True, inline="always")
def _rows_on_pitch(rows, src, first, out_h, out_w, wq):
    """rows[oh*wq + ow] = src[first + oh*out_w + ow]: a dy plane on the phases' row pitch (columns past out_w
    keep their zeros)."""
    for oh in range(out_h):
        for ow in range(out_w):
            rows[uint64(oh * wq + ow)] = src[first + uint64(oh * out_w + ow)]


@njit(cache=True, inline="always")
def _nine_taps(acc, phases, offsets, taps, first_tap, bias, cells):
    """acc[i] = bias + the nine taps taps[first_tap:first_tap + 9] (a 3x3 kernel, the common case) in one
    vectorized pass: no read-modify-write of acc per tap."""
    o0, o1, o2, o3, o4, o5, o6, o7, o8 = (offsets[0], offsets[1], offsets[2], offsets[3], offsets[4], offsets[5],
                                          offsets[6], offsets[7], offsets[8])
    w0, w1, w2, w3, w4, w5, w6, w7, w8 = (taps[first_tap], taps[first_tap + 1], taps[first_tap + 2],
                                          taps[first_tap + 3], taps[first_tap + 4], taps[first_tap + 5],
                                          taps[first_tap + 6], taps[first_tap + 7], taps[first_tap + 8])
    for i in range(cells):
        acc[i] = (bias + w0 * phases[o0 + i] + w1 * phases[o1 + i] + w2 * phases[o2 + i] + w3 * phases[o3 + i]
                  + w4 * phases[o4 + i] + w5 * phases[o5 + i] + w6 * phases[o6 + i] + w7 * phases[o7 + i]
                  + w8 * phases[o8 + i])


@njit(cache=True, inline="always")
def _sizes(planes, outputs, params, scratch):
    """(C, H, W, Ho, Wo, cells, size, rows): of the input planes (N, C, H, W), the output planes (N, K, Ho, Wo), the
    output's cells on the phases' pitch, a chunk's scratch (phase planes, then those cells) and the cells of it
    that hold output (or dy) rows: none for shifted planes, whose pitch is the output's (read and written in
    place)."""
    out_h, out_w = outputs.shape[2], outputs.shape[3]
    cells = uint64(out_h * params[5])
    return (planes.shape[1], planes.shape[2], planes.shape[3], out_h, out_w, cells, scratch.shape[1],
            uint64(0) if params[6] else cells)


@parallel_kernel(fastmath=FMA_AND_REORDER)
def _forward(x, w, bias, y, params, offsets, scratch):
    """x (N, C, H, W), w (K, 1, R, S), bias (K,) -> y (N, K, Ho, Wo); planes (n, k) split into chunks. offsets:
    the R*S tap offsets, then zeros up to nine entries at least (_forward_offsets)."""
    c, height, width, out_h, out_w, cells, size, rows = _sizes(x, y, params, scratch)
    n_images, chunks, wq = x.shape[0], scratch.shape[0], params[5]
    k, _, r_size, s_size = w.shape
    kg = k // c
    src, dst, taps = x.ravel(), y.ravel(), w.ravel()
    for t in prange(chunks):
        phases, acc = scratch[t, :size - rows], scratch[t, size - rows:]
        phases[:] = 0
        first_plane, last_plane = chunk_bounds(n_images * k, chunks, t)
        for plane in range(first_plane, last_plane):
            n, kk = plane // k, plane % k
            out = uint64(plane * out_h * out_w)
            if not rows:
                acc = dst[out:out + cells]
            _copy_plane(src, uint64((n * c + kk // kg) * height * width), height, width, phases, params, True)
            if r_size * s_size == 9:
                _nine_taps(acc, phases, offsets, taps, uint64(kk * 9), bias[kk], cells)
            else:
                for i in range(cells):
                    acc[i] = bias[kk]
                for j in range(r_size * s_size):
                    offset, tap = offsets[j], taps[kk * r_size * s_size + j]
                    for i in range(cells):
                        acc[i] += tap * phases[offset + i]
            if rows:
                for oh in range(out_h):
                    for ow in range(out_w):
                        dst[out + uint64(oh * out_w + ow)] = acc[uint64(oh * wq + ow)]


@njit(cache=True, inline="always", fastmath=FMA_AND_REORDER)
def _tap_dots(sums, rows, first, phases, offsets, cells):
    """sums[j] += the dot product of rows[first:first + cells] and tap j's cells of the phase planes."""
    for j in range(sums.size):
        offset, total = offsets[j], sums.dtype.type(0)
        for i in range(cells):
            total += rows[first + i] * phases[offset + i]
        sums[j] += total


@njit(cache=True, inline="always", fastmath=FMA_AND_REORDER)
def _tap_axpys(phases, offsets, taps, kernel, rows, first, cells):
    """Tap j's cells of the phase planes += taps[kernel + j] * rows[first:first + cells], for every tap."""
    for j in range(offsets.size):
        offset, tap = offsets[j], taps[kernel + uint64(j)]
        for i in range(cells):
            phases[offset + i] += tap * rows[first + i]


@parallel_kernel(fastmath=FMA_AND_REORDER)
def _backward_dw(dy, x, dw_parts, params, offsets, scratch):
    """dy (N, K, Ho, Wo), x (N, C, H, W) -> dw_parts (chunks, K, R, S): each chunk's share of dW."""
    c, height, width, out_h, out_w, cells, size, on_pitch = _sizes(x, dy, params, scratch)
    n_images, wq = x.shape[0], params[5]
    chunks, k, r_size, s_size = dw_parts.shape
    kg = k // c
    grads, inputs = dy.ravel(), x.ravel()
    for t in prange(chunks):
        phases, rows = scratch[t, :size - on_pitch], scratch[t, size - on_pitch:]
        phases[:] = 0
        rows[:] = 0
        dw_parts[t] = 0
        first_plane, last_plane = chunk_bounds(n_images * k, chunks, t)
        for plane in range(first_plane, last_plane):
            n, kk = plane // k, plane % k
            _copy_plane(inputs, uint64((n * c + kk // kg) * height * width), height, width, phases, params, True)
            first = uint64(plane * out_h * out_w)
            if on_pitch:
                _rows_on_pitch(rows, grads, first, out_h, out_w, wq)
                _tap_dots(dw_parts[t, kk].ravel(), rows, uint64(0), phases, offsets, cells)
            else:
                _tap_dots(dw_parts[t, kk].ravel(), grads, first, phases, offsets, cells)


@parallel_kernel(fastmath=FMA_AND_REORDER)
def _backward_dx(dy, w, dx, params, offsets, scratch):
    """dy (N, K, Ho, Wo), w (K, 1, R, S) -> dx (N, C, H, W): input planes (n, c) split into chunks, each plane
    gathering its Kg output channels in its phase planes."""
    c, height, width, out_h, out_w, cells, size, on_pitch = _sizes(dx, dy, params, scratch)
    n_images, chunks, wq = dx.shape[0], scratch.shape[0], params[5]
    k, _, r_size, s_size = w.shape
    kg = k // c
    grads, dst, taps = dy.ravel(), dx.ravel(), w.ravel()
    for t in prange(chunks):
        phases, rows = scratch[t, :size - on_pitch], scratch[t, size - on_pitch:]
        rows[:] = 0
        first_plane, last_plane = chunk_bounds(n_images * c, chunks, t)
        for plane in range(first_plane, last_plane):
            n, channel = plane // c, plane % c
            phases[:] = 0
            for kk in range(channel * kg, (channel + 1) * kg):
                first, kernel = uint64((n * k + kk) * out_h * out_w), uint64(kk * r_size * s_size)
                if on_pitch:
                    _rows_on_pitch(rows, grads, first, out_h, out_w, wq)
                    _tap_axpys(phases, offsets, taps, kernel, rows, uint64(0), cells)
                else:
                    _tap_axpys(phases, offsets, taps, kernel, grads, first, cells)
            _copy_plane(dst, uint64(plane * height * width), height, width, phases, params, False)


def _forward_offsets(g: ConvGeometry) -> np.ndarray:
    """The tap offsets, zero-padded to at least nine entries: numba's parallel pass hoists _nine_taps' reads of
    offsets[0] .. offsets[8] out of the prange, ahead of the branch that takes them only for nine taps, so that
    a kernel of fewer taps would read past the end of its offsets (padding entries are never used as taps)."""
    offsets = tap_offsets(g)
    if offsets.size >= 9:
        return offsets
    padded = np.zeros(9, offsets.dtype)
    padded[:offsets.size] = offsets
    return padded


def forward(x, w, b, g: ConvGeometry):
    """x (N, C, H, W), w (K, 1, R, S), b (K,) or None -> y (N, K, Ho, Wo)."""
    plan = forward_plan(g)
    scratch = plan.allocate()
    y = np.empty(g.y_shape, g.dtype)
    with parallel_region(plan.threads, numba=True):
        _forward(x, w, np.zeros(g.k, g.dtype) if b is None else b, y, params(g), _forward_offsets(g),
                 scratch["scratch"])
    return y


def backward(dy, x, w, g: ConvGeometry, need_dx: bool, need_dw: bool):
    """dy (N, K, Ho, Wo) -> dx (N, C, H, W), dw (K, 1, R, S); None where not needed."""
    plan = backward_plan(g, need_dx, need_dw)
    scratch = plan.allocate()
    dx = dw = None
    with parallel_region(plan.threads, numba=True):
        if need_dw:
            _backward_dw(dy, x, scratch["dw_parts"], params(g), tap_offsets(g), scratch["scratch"])
            dw = scratch["dw_parts"].sum(axis=0).reshape(g.w_shape)
        if need_dx:
            dx = np.empty(g.x_shape, g.dtype)
            _backward_dx(dy, w, dx, params(g), tap_offsets(g), scratch["scratch"])
    return dx, dw
