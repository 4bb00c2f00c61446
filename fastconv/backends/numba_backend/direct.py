"""Direct loops for convolutions whose groups have one input channel each (Cg == 1): depthwise
(groups == C == K, or with a channel multiplier) and single-channel inputs such as MNIST's first layer.

Output channel k reads input channel k // Kg only:

    y[n, k, oh, ow] = b[k] + sum_{r, s} x[n, k // Kg, oh*sh + r*dh - top, ow*sw + s*dw - left] * w[k, 0, r, s]

Every loop runs along a row (ow innermost) over the columns whose tap falls inside the input, so padding is
never read or materialized. The row loops are _columns.axpy / dot (vectorized, with fused multiply-adds).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, uint64

from fastconv._geometry import ConvGeometry
from fastconv._threads import parallel_region, per_budget, threads_for
from fastconv.backends._protocol import Plan
from fastconv.backends.numba_backend._columns import FMA_AND_REORDER, axpy, column_ranges, dot, params
from fastconv.backends.numba_backend._parallel import parallel_kernel


def applies(g: ConvGeometry) -> bool:
    return g.is_channelwise


def preferred(g: ConvGeometry) -> bool:
    """Depthwise-like layers; a single-channel input with many filters (MNIST) is faster as a GEMM."""
    return applies(g) and g.groups > 1


@per_budget
def forward_plan(g: ConvGeometry) -> Plan:
    """Planes (n, k) in parallel; no scratch."""
    return Plan(threads_for(g.flops, g.n * g.k))


@per_budget
def backward_plan(g: ConvGeometry, need_dx: bool = True, need_dw: bool = True) -> Plan:
    """The per-image dW partial sums."""
    threads = threads_for(g.flops, g.n * g.k)
    return Plan(threads, {"dw_parts": ((g.n, g.k, g.r, g.s), g.dtype)} if need_dw else {})


@njit(cache=True)  # not inlined: parfor array analysis fails on its tuple of arrays and ints
def _interior_3x3(ranges, r_size, s_size, sw, out_w):
    """(fused, lo, hi, border, columns): whether rows can be fused (3x3, stride 1); the output columns
    [lo, hi) whose taps all lie inside the input; the other columns (border); and the offsets of the three
    taps' input columns for output column lo (non-negative), as _row_3x3 takes them."""
    lo = ranges[:, 0].max()
    hi = max(ranges[:, 1].min(), lo)
    border = np.concatenate((np.arange(lo), np.arange(hi, out_w)))
    last = s_size - 1  # the offsets are used only when fused (s_size == 3)
    columns = (uint64(lo + ranges[0, 2]), uint64(lo + ranges[min(1, last), 2]), uint64(lo + ranges[min(2, last), 2]))
    return r_size == 3 and s_size == 3 and sw == 1, lo, hi, border, columns


@njit(cache=True, inline="always")
def _row_dot_3x3(grads, first_out, src, rows_in, columns, count):
    """The nine sums over i < count of grads[first_out + i] * src[rows_in[r] + columns[s] + i] (r, s < 3):
    dW's share of one fused row, in one vectorized pass (see _row_3x3)."""
    r0, r1, r2 = rows_in
    c0, c1, c2 = columns
    zero = grads.dtype.type(0)
    s00 = s01 = s02 = s10 = s11 = s12 = s20 = s21 = s22 = zero
    for i in range(count):
        g = grads[first_out + i]
        s00 += g * src[r0 + c0 + i]
        s01 += g * src[r0 + c1 + i]
        s02 += g * src[r0 + c2 + i]
        s10 += g * src[r1 + c0 + i]
        s11 += g * src[r1 + c1 + i]
        s12 += g * src[r1 + c2 + i]
        s20 += g * src[r2 + c0 + i]
        s21 += g * src[r2 + c1 + i]
        s22 += g * src[r2 + c2 + i]
    return s00, s01, s02, s10, s11, s12, s20, s21, s22


@njit(cache=True, inline="always")
def _row_3x3(dst, first_out, src, rows_in, columns, count, wk, b):
    """dst[first_out + i] = b + sum_{r, s < 3} wk[r, s] * src[rows_in[r] + columns[s] + i] for i < count,
    where every tap is inside the input: one pass over the row that vectorizes, instead of nine axpys.
    (All offsets non-negative: a wrapping unsigned offset would stop the vectorizer.)"""
    r0, r1, r2 = rows_in
    c0, c1, c2 = columns
    w00, w01, w02, w10, w11, w12, w20, w21, w22 = (wk[0, 0], wk[0, 1], wk[0, 2], wk[1, 0], wk[1, 1], wk[1, 2],
                                                   wk[2, 0], wk[2, 1], wk[2, 2])
    for i in range(count):
        dst[first_out + i] = (b + w00 * src[r0 + c0 + i] + w01 * src[r0 + c1 + i] + w02 * src[r0 + c2 + i]
                              + w10 * src[r1 + c0 + i] + w11 * src[r1 + c1 + i] + w12 * src[r1 + c2 + i]
                              + w20 * src[r2 + c0 + i] + w21 * src[r2 + c1 + i] + w22 * src[r2 + c2 + i])


@njit(cache=True, inline="always")
def _row_by_taps(dst, row_out, src, plane_in, oh, kk, w, b, ranges, params, height, width, out_w):
    """dst[row_out:row_out + Wo] = one output row, tap by tap (any kernel, stride, dilation or padding)."""
    sh, sw, dh, dw, top, left = params
    r_size, s_size = w.shape[2], w.shape[3]
    for ow in range(uint64(out_w)):
        dst[row_out + ow] = b
    for r in range(r_size):
        ih = oh * sh + r * dh - top
        if 0 <= ih < height:
            for s in range(s_size):
                lo, hi, offset = ranges[s, 0], ranges[s, 1], ranges[s, 2]
                if hi > lo:
                    axpy(dst, row_out + uint64(lo), uint64(1), src, plane_in + uint64(ih * width + lo * sw + offset),
                         uint64(sw), uint64(hi - lo), w[kk, 0, r, s])


@parallel_kernel(fastmath=FMA_AND_REORDER)
def _forward(x, w, bias, y, params):
    """x (N, C, H, W), w (K, 1, R, S), bias (K,) -> y (N, K, Ho, Wo); planes (n, k) in parallel.
    Flat arrays and unsigned offsets as in _columns. 3x3 stride-1 rows whose three input rows lie inside the
    input are fused (_row_3x3) except at their border columns."""
    sh, sw, dh, dw, top, left = params
    n_images, c, height, width = x.shape
    k, _, r_size, s_size = w.shape
    kg = k // c
    out_h, out_w = y.shape[2], y.shape[3]
    ranges = column_ranges(s_size, params, width, out_w)
    fused, lo, hi, border, columns = _interior_3x3(ranges, r_size, s_size, sw, out_w)
    src, dst = x.ravel(), y.ravel()
    for plane in prange(n_images * k):
        n, kk = divmod(np.int64(plane), k)
        plane_in = (n * c + kk // kg) * height * width
        for oh in range(out_h):
            row_out = uint64((plane * out_h + oh) * out_w)
            ih = oh * sh - top
            if not (fused and ih >= 0 and ih + 2 * dh < height):
                _row_by_taps(dst, row_out, src, uint64(plane_in), oh, kk, w, bias[kk], ranges, params, height,
                             width, out_w)
                continue
            _row_3x3(dst, row_out + uint64(lo), src, (uint64(plane_in + ih * width), uint64(plane_in + (ih + dh) * width),
                     uint64(plane_in + (ih + 2 * dh) * width)), columns, uint64(hi - lo), w[kk, 0], bias[kk])
            for ow in border:
                total = bias[kk]
                for r in range(3):
                    for s in range(3):
                        if ranges[s, 0] <= ow < ranges[s, 1]:
                            total += w[kk, 0, r, s] * src[plane_in + (ih + r * dh) * width + ow + ranges[s, 2]]
                dst[row_out + uint64(ow)] = total


@parallel_kernel(fastmath=FMA_AND_REORDER)
def _backward_dx(dy, w, dx, params):
    """dy (N, K, Ho, Wo), w (K, 1, R, S) -> dx (N, C, H, W): each input plane gathers the scatter of its
    Kg output channels; planes (n, c) in parallel, so every plane has one writer."""
    sh, sw, dh, dw, top, left = params
    n_images, c, height, width = dx.shape
    k, _, r_size, s_size = w.shape
    kg = k // c
    out_h, out_w = dy.shape[2], dy.shape[3]
    ranges = column_ranges(s_size, params, width, out_w)
    src, dst, one, step = dy.ravel(), dx.ravel(), uint64(1), uint64(sw)
    for plane in prange(n_images * c):
        n, channel = divmod(np.int64(plane), c)
        plane_in = uint64(plane * height * width)
        for i in range(uint64(height * width)):
            dst[plane_in + i] = 0
        for kk in range(channel * kg, (channel + 1) * kg):
            for oh in range(out_h):
                row_out = uint64(((n * k + kk) * out_h + oh) * out_w)
                for r in range(r_size):
                    ih = oh * sh + r * dh - top
                    if 0 <= ih < height:
                        for s in range(s_size):
                            lo, hi, offset = ranges[s, 0], ranges[s, 1], ranges[s, 2]
                            if hi > lo:
                                axpy(dst, plane_in + uint64(ih * width + lo * sw + offset), step,
                                     src, row_out + uint64(lo), one, uint64(hi - lo), w[kk, 0, r, s])


@parallel_kernel(fastmath=FMA_AND_REORDER)
def _backward_dw(dy, x, dw_parts, params):
    """dy (N, K, Ho, Wo), x (N, C, H, W) -> dw_parts (N, K, R, S): each image's share of dW. Rows that
    _forward fuses are fused here too (_row_dot_3x3); the rest goes tap by tap."""
    sh, sw, dh, dw, top, left = params
    n_images, c, height, width = x.shape
    k, r_size, s_size = dw_parts.shape[1], dw_parts.shape[2], dw_parts.shape[3]
    kg = k // c
    out_h, out_w = dy.shape[2], dy.shape[3]
    ranges = column_ranges(s_size, params, width, out_w)
    fused, lo, hi, border, columns = _interior_3x3(ranges, r_size, s_size, sw, out_w)
    grads, inputs, step = dy.ravel(), x.ravel(), uint64(sw)
    for plane in prange(n_images * k):
        n, kk = divmod(np.int64(plane), k)
        plane_in = (n * c + kk // kg) * height * width
        totals = dw_parts[n, kk]
        totals[:] = 0
        for oh in range(out_h):
            row_out = (plane * out_h + oh) * out_w
            ih = oh * sh - top
            if fused and ih >= 0 and ih + 2 * dh < height:
                sums = _row_dot_3x3(grads, uint64(row_out + lo), inputs,
                                    (uint64(plane_in + ih * width), uint64(plane_in + (ih + dh) * width),
                                     uint64(plane_in + (ih + 2 * dh) * width)), columns, uint64(hi - lo))
                for t in range(9):
                    totals[t // 3, t % 3] += sums[t]
                for ow in border:
                    for r in range(3):
                        for s in range(3):
                            if ranges[s, 0] <= ow < ranges[s, 1]:
                                totals[r, s] += grads[row_out + ow] * inputs[plane_in + (ih + r * dh) * width + ow
                                                                             + ranges[s, 2]]
                continue
            for r in range(r_size):
                for s in range(s_size):
                    lo_s, hi_s, offset = ranges[s, 0], ranges[s, 1], ranges[s, 2]
                    if 0 <= ih + r * dh < height and hi_s > lo_s:
                        totals[r, s] += dot(grads, uint64(row_out + lo_s), inputs,
                                            uint64(plane_in + (ih + r * dh) * width + lo_s * sw + offset), step,
                                            uint64(hi_s - lo_s))


def forward(x, w, b, g: ConvGeometry):
    """x (N, C, H, W), w (K, 1, R, S), b (K,) or None -> y (N, K, Ho, Wo)."""
    y = np.empty(g.y_shape, g.dtype)
    with parallel_region(forward_plan(g).threads, numba=True):
        _forward(x, w, np.zeros(g.k, g.dtype) if b is None else b, y, params(g))
    return y


def backward(dy, x, w, g: ConvGeometry, need_dx: bool, need_dw: bool):
    """dy (N, K, Ho, Wo) -> dx (N, C, H, W), dw (K, 1, R, S); None where not needed."""
    plan = backward_plan(g, need_dx, need_dw)
    scratch = plan.allocate()
    dx = dw = None
    with parallel_region(plan.threads, numba=True):
        if need_dx:
            dx = np.empty(g.x_shape, g.dtype)
            _backward_dx(dy, w, dx, params(g))
        if need_dw:
            _backward_dw(dy, x, scratch["dw_parts"], params(g))
            dw = scratch["dw_parts"].sum(axis=0).reshape(g.w_shape)
    return dx, dw
