"""Convolution with one input channel per group (depthwise) on channels-last arrays: the kernels behind
fastconv.backends._channelwise_nhwc (see there for the arrays and tables). The innermost loops run along the
channels; index arithmetic is unsigned, as in pool_nhwc, so that they vectorize."""

from __future__ import annotations

from numba import njit, prange, uint64

from fastconv.backends._channelwise_nhwc import channelwise_methods
from fastconv.backends.numba_backend._chunks import chunk_bounds
from fastconv.backends.numba_backend._parallel import parallel_kernel
from fastconv.backends.numba_backend._reduce import channels_last_bias_grad


@njit(cache=True, inline="always")
def _add_products(out, o, a, ao, x, xo, channels, m):
    """out[o + k] += a[ao + k] * x[xo + k // m] for k < channels * m."""
    if m == 1:
        for k in range(channels):
            out[o + k] += a[ao + k] * x[xo + k]
    else:
        for c in range(channels):
            v = x[xo + c]
            for j in range(c * m, (c + 1) * m):
                out[o + j] += a[ao + j] * v


@njit(cache=True, inline="always")
def _row(pixels, taps, x, rows, cols, job, height, width, channels, m, into_taps):
    """Output row oh of image n (job = n*Ho + oh): every valid tap of every pixel, adding taps * x into the
    pixels (forward, pixels = y) or pixels * x into the taps (grad of w, pixels = dy, taps = a partial dw)."""
    out_h, out_w = uint64(rows.shape[0]), uint64(cols.shape[0])
    r_size, s_size = uint64(rows.shape[1]), uint64(cols.shape[1])
    n, oh = job // out_h, job % out_h
    for ow in range(out_w):
        pixel = (job * out_w + ow) * channels * m
        for r in range(r_size):
            ih = rows[oh, r]
            if ih >= 0:
                for s in range(s_size):
                    iw = cols[ow, s]
                    if iw >= 0:
                        src = ((n * height + uint64(ih)) * width + uint64(iw)) * channels
                        tap = (r * s_size + s) * channels * m
                        if into_taps:
                            _add_products(taps, tap, pixels, pixel, x, src, channels, m)
                        else:
                            _add_products(pixels, pixel, taps, tap, x, src, channels, m)


@parallel_kernel()
def _forward(x, filters, bias, y, rows, cols, images, height, width, channels, threads):
    height, width, channels = uint64(height), uint64(width), uint64(channels)
    jobs, k_size = uint64(images) * uint64(rows.shape[0]), uint64(bias.shape[0])
    out_w = uint64(cols.shape[0])
    for t in prange(threads):
        j0, j1 = chunk_bounds(jobs, uint64(threads), uint64(t))
        for job in range(j0, j1):
            for i in range(job * out_w, (job + 1) * out_w):
                for k in range(k_size):
                    y[i * k_size + k] = bias[k]
            _row(y, filters, x, rows, cols, job, height, width, channels, k_size // channels, False)


@parallel_kernel()
def _grad_w(dy, x, dw_parts, rows, cols, images, height, width, channels):
    """dw_parts[t] (R*S + 1, K): thread t's chunk of (image, output row) jobs' share of dy * x, and of dy (the
    last row, db's)."""
    height, width, channels = uint64(height), uint64(width), uint64(channels)
    jobs, chunks = uint64(images) * uint64(rows.shape[0]), uint64(dw_parts.shape[0])
    taps, out_w = uint64(rows.shape[1]) * uint64(cols.shape[1]), uint64(cols.shape[0])
    k_size = uint64(dw_parts.shape[1]) // (taps + uint64(1))
    for t in prange(dw_parts.shape[0]):
        part = dw_parts[t]
        part[:] = 0
        j0, j1 = chunk_bounds(jobs, chunks, uint64(t))
        for job in range(j0, j1):
            _row(dy, part, x, rows, cols, job, height, width, channels, k_size // channels, True)
            for i in range(job * out_w * k_size, (job + 1) * out_w * k_size, k_size):
                for k in range(k_size):
                    part[taps * k_size + k] += dy[i + k]


@parallel_kernel()
def _grad_x(dy, filters, dx, row_sources, col_sources, images, out_h, out_w, channels, threads):
    """Input row ih of image n per job (n*H + ih): each cell the sum over the taps that read it of
    filters * dy, over the m > 1 output channels of each input channel."""
    out_h, out_w, channels = uint64(out_h), uint64(out_w), uint64(channels)
    height, width = uint64(row_sources.shape[0]), uint64(col_sources.shape[0])
    r_size, s_size = uint64(row_sources.shape[1]), uint64(col_sources.shape[1])
    m = uint64(dy.size) // (uint64(images) * out_h * out_w * channels)
    zero = dx.dtype.type(0)
    for t in prange(threads):
        j0, j1 = chunk_bounds(uint64(images) * height, uint64(threads), uint64(t))
        for job in range(j0, j1):
            n, ih = job // height, job % height
            for iw in range(width):
                cell = (job * width + iw) * channels
                for c in range(channels):
                    dx[cell + c] = zero
                for r in range(r_size):
                    oh = row_sources[ih, r]
                    if oh >= 0:
                        for s in range(s_size):
                            ow = col_sources[iw, s]
                            if ow >= 0:
                                o = ((n * out_h + uint64(oh)) * out_w + uint64(ow)) * channels * m
                                tap = (r * s_size + s) * channels * m
                                for c in range(channels):
                                    acc = zero
                                    for j in range(c * m, (c + 1) * m):
                                        acc += filters[tap + j] * dy[o + j]
                                    dx[cell + c] += acc


#: not the default: single-threaded, 10-40% slower than nchw:polyphase on (8, 960, 7, 7) and (8, 144, 56, 56) 3x3
#: layers, both passes (its channel loops do not vectorize yet; the cython kernel's do, 4-5x faster than the transposes)
channels_last_default = False
channels_last_methods = channelwise_methods(_forward, _grad_x, _grad_w, channels_last_bias_grad, numba=True)
