"""Convolution with one input channel per group (depthwise, channel multiplier m = K/C) on channels-last arrays:
what both compiled backends share, their kernels aside.

Output channel k reads input channel k // m, so one output pixel is K independent sums that run along the
channels (they vectorize) over its taps:

    y[n, oh, ow, k] = b[k] + sum_{r, s} filters[r, s, k] * x[n, oh*sh + r*dh - top, ow*sw + s*dw - left, k // m]

with the filters re-laid once per call as (R, S, K). Tables say which input row/column each output row/column's
taps read (``rows`` (out_h, R), ``cols`` (out_w, S), -1 in the padding, so padding taps are skipped whole, never
per channel) and, for the grad of x, which output row/column reads each input row/column by each tap
(``row_sources`` (H, R), ``col_sources`` (W, S), -1 where none). The kernels share one signature per pass:

    forward(x, filters, bias, y, rows, cols, images, height, width, channels, threads)
        (image, output row) pairs split into ``threads`` chunks;
    grad_x(dy, filters, dx, row_sources, col_sources, images, out_h, out_w, channels, threads)
        a gather: (image, input row) pairs in chunks, each dx cell written once; called with m > 1 only, since
        with one output channel per input channel the gather is the forward kernel on dy with the sources'
        tables in place of the taps' (and a zero bias);
    grad_w(dy, x, dw_parts, rows, cols, images, height, width, channels)
        one chunk of (image, output row) pairs per dw_parts[t] ((R*S + 1)*K,), summed afterwards: dw's taps,
        then db (dy's sum, taken while the pass reads dy);

on flat arrays: x (N*H*W*C,), y and dy (N*Ho*Wo*K,), filters (R*S*K,).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from fastconv._geometry import ConvGeometry
from fastconv._threads import parallel_region, per_budget, threads_for
from fastconv.backends._protocol import Method, Plan

NAME = "nhwc_direct"


def applies(g: ConvGeometry) -> bool:
    """Depthwise channels-last layers (groups > 1). A single-channel image (C == 1, one group) is left to the
    transposed methods: its NHWC input is its NCHW input, and this kernel's K-long channel loops over one input
    channel were 2.5x slower than the NCHW GEMM on mnist_5x5_b1."""
    return g.channels_last and g.is_channelwise and g.groups > 1


@per_budget
def forward_plan(g: ConvGeometry) -> Plan:
    """The re-laid filters and the taps' tables."""
    return Plan(threads_for(g.flops, g.n * g.out_h), {
        "filters": ((g.r * g.s * g.k,), g.dtype), "rows": ((g.out_h, g.r), np.int64),
        "cols": ((g.out_w, g.s), np.int64)})


@per_budget
def backward_plan(g: ConvGeometry, need_dx: bool = True, need_dw: bool = True) -> Plan:
    """The grad of x's filters and source tables; the grad of w's tables and one partial dw and db per thread."""
    threads = threads_for(g.flops, g.n * g.out_h)
    buffers = {}
    if need_dx:
        buffers.update(filters=((g.r * g.s * g.k,), g.dtype), row_sources=((g.h, g.r), np.int64),
                       col_sources=((g.w, g.s), np.int64))
    if need_dw:
        buffers.update(rows=((g.out_h, g.r), np.int64), cols=((g.out_w, g.s), np.int64),
                       dw_parts=((threads, (g.r * g.s + 1) * g.k), g.dtype))
    return Plan(threads, buffers)


def _taps(out_size: int, stride: int, dilation: int, pad_before: int, size: int, out: np.ndarray) -> None:
    """out (out_size, kernel): the input index each output index's tap reads, -1 in the padding."""
    index = np.arange(out_size)[:, None] * stride + np.arange(out.shape[1]) * dilation - pad_before
    out[...] = np.where((index >= 0) & (index < size), index, -1)


def _sources(out_size: int, stride: int, dilation: int, pad_before: int, size: int, out: np.ndarray) -> None:
    """out (size, kernel): the output index whose tap reads each input index, -1 where none does."""
    offset = np.arange(size)[:, None] + pad_before - np.arange(out.shape[1]) * dilation
    index = offset // stride
    out[...] = np.where((offset % stride == 0) & (index >= 0) & (index < out_size), index, -1)


def _filled(plan: Plan, g: ConvGeometry, w: np.ndarray) -> dict[str, np.ndarray]:
    """The plan's buffers, the filters (K, 1, R, S) re-laid as (R, S, K) and the tables it holds filled."""
    scratch = plan.allocate()
    if "filters" in scratch:
        scratch["filters"].reshape(g.r * g.s, g.k)[...] = w.reshape(g.k, g.r * g.s).T
    if "rows" in scratch:
        _taps(g.out_h, g.stride_h, g.dilation_h, g.pad_top, g.h, scratch["rows"])
        _taps(g.out_w, g.stride_w, g.dilation_w, g.pad_left, g.w, scratch["cols"])
    if "row_sources" in scratch:
        _sources(g.out_h, g.stride_h, g.dilation_h, g.pad_top, g.h, scratch["row_sources"])
        _sources(g.out_w, g.stride_w, g.dilation_w, g.pad_left, g.w, scratch["col_sources"])
    return scratch


def channelwise_methods(forward_kernel: Callable, grad_x_kernel: Callable, grad_w_kernel: Callable,
                        bias_kernel: Callable, *, numba: bool) -> Callable[[str, object], list[Method]]:
    """A backend's channels_last_methods(op, g) from its three kernels and its db of channels-last dy
    (bias_kernel(dy, db, threads)): "nhwc_direct" where applies(g)."""

    def forward(x, w, b, g: ConvGeometry):
        """x (N, H, W, C), w (K, 1, R, S), b (K,) or None -> y (N, Ho, Wo, K)."""
        plan = forward_plan(g)
        scratch = _filled(plan, g, w)
        y = np.empty(g.y_array_shape, g.dtype)
        bias = np.zeros(g.k, g.dtype) if b is None else b
        with parallel_region(plan.threads, numba=numba) as threads:
            forward_kernel(x.reshape(-1), scratch["filters"], bias, y.reshape(-1), scratch["rows"], scratch["cols"],
                           g.n, g.h, g.w, g.c, threads)
        return y

    def backward(dy, x, w, g: ConvGeometry, need_dx, need_dw, need_db):
        """dy (N, Ho, Wo, K) -> dx (N, H, W, C), dw (K, 1, R, S), db (K,); None where not needed."""
        plan = backward_plan(g, need_dx, need_dw)
        scratch = _filled(plan, g, w)
        dx = dw = db = None
        with parallel_region(plan.threads, numba=numba) as threads:
            if need_dx:
                dx = np.empty(g.x_array_shape, g.dtype)
                sources = (scratch["row_sources"], scratch["col_sources"], g.n, g.out_h, g.out_w, g.c, threads)
                if g.k == g.c:
                    forward_kernel(dy.reshape(-1), scratch["filters"], np.zeros(g.c, g.dtype), dx.reshape(-1),
                                   *sources)
                else:
                    grad_x_kernel(dy.reshape(-1), scratch["filters"], dx.reshape(-1), *sources)
            if need_dw:
                parts = scratch["dw_parts"]
                grad_w_kernel(dy.reshape(-1), x.reshape(-1), parts, scratch["rows"], scratch["cols"], g.n, g.h, g.w,
                              g.c)
                for part in parts[1:]:
                    parts[0] += part
                taps = parts[0].reshape(g.r * g.s + 1, g.k)
                dw = np.ascontiguousarray(taps[:-1].T).reshape(g.w_shape)
                db = taps[-1].copy() if need_db else None
            elif need_db:
                db = np.empty(g.k, g.dtype)
                bias_kernel(dy, db, threads)
        return dx, dw, db

    table = {"conv2d_forward": Method(NAME, forward, forward_plan),
             "conv2d_backward": Method(NAME, backward, backward_plan)}
    return lambda op, g: [table[op]] if op in table and applies(g) else []
