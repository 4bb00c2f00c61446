"""The reference backend: loops that read like the maths. Slow on purpose; every other backend is tested against it.

Convolution (cross-correlation), with xp the zero-padded input and group(k) the input channels of k's group:

    y[n, k, oh, ow] = b[k] + sum_{c in group(k), r, s} xp[n, c, oh*sh + r*dh, ow*sw + s*dw] * w[k, c', r, s]

The padded copy xp is this backend's documented exception to "padding is never materialized".
"""

from __future__ import annotations

import numpy as np

from fastconv._geometry import ConvGeometry, PoolGeometry
from fastconv.backends._channels_last import adapted
from fastconv.backends._protocol import Method, Methods, default_kernels


def _padded(x: np.ndarray, g: ConvGeometry) -> np.ndarray:
    """x (N, C, H, W) -> zero-padded copy (N, C, H + top + bottom, W + left + right)."""
    return np.pad(x, ((0, 0), (0, 0), (g.pad_top, g.pad_bottom), (g.pad_left, g.pad_right)))


def _conv_outputs(g: ConvGeometry):
    """Every output position (n, k, oh, ow) with the part of xp it reads: (n, input channels, rows, cols)."""
    for n, k, oh, ow in np.ndindex(*g.y_shape):
        group = k // g.k_per_group
        channels = slice(group * g.c_per_group, (group + 1) * g.c_per_group)
        rows = slice(oh * g.stride_h, oh * g.stride_h + (g.r - 1) * g.dilation_h + 1, g.dilation_h)
        cols = slice(ow * g.stride_w, ow * g.stride_w + (g.s - 1) * g.dilation_w + 1, g.dilation_w)
        yield (n, k, oh, ow), (n, channels, rows, cols)


def _conv2d_forward(x, w, b, g: ConvGeometry):
    """x (N, C, H, W), w (K, C/groups, R, S), b (K,) or None -> y (N, K, Ho, Wo)."""
    xp = _padded(x, g)
    y = np.zeros(g.y_shape, g.dtype)
    for out, window in _conv_outputs(g):
        y[out] = np.sum(xp[window] * w[out[1]])
    if b is not None:
        y += b[:, None, None]
    return y


def _conv2d_backward(dy, x, w, g: ConvGeometry, need_dx, need_dw, need_db):
    """dy (N, K, Ho, Wo) -> dx (N, C, H, W), dw (K, C/groups, R, S), db (K,): each y[n, k, oh, ow] term
    sends dy * w[k] to its input window and dy * window to w[k]."""
    xp = _padded(x, g)
    dxp = np.zeros_like(xp)
    dw = np.zeros(g.w_shape, g.dtype)
    for out, window in _conv_outputs(g):
        k = out[1]
        dxp[window] += dy[out] * w[k]
        dw[k] += dy[out] * xp[window]
    dx = dxp[:, :, g.pad_top:g.pad_top + g.h, g.pad_left:g.pad_left + g.w].copy()
    db = dy.sum(axis=(0, 2, 3), dtype=g.dtype)
    return dx if need_dx else None, dw if need_dw else None, db if need_db else None


def _pool_window(g: PoolGeometry, oh: int, ow: int) -> tuple[int, int, int, int, int]:
    """(h0, h1, w0, w1, divisor) of output (oh, ow): the input cells rows h0:h1, cols w0:w1, and the number
    avg pooling divides by (PyTorch's rule: the window clipped to the padded input, or to the input when
    count_include_pad is False)."""
    h0 = oh * g.stride_h - g.pad_top
    w0 = ow * g.stride_w - g.pad_left
    h1 = min(h0 + g.kh, g.h + g.pad_bottom)
    w1 = min(w0 + g.kw, g.w + g.pad_right)
    padded_count = (h1 - h0) * (w1 - w0)
    h0, w0, h1, w1 = max(h0, 0), max(w0, 0), min(h1, g.h), min(w1, g.w)
    divisor = padded_count if g.count_include_pad else (h1 - h0) * (w1 - w0)
    return h0, h1, w0, w1, divisor


def _pool_outputs(g: PoolGeometry):
    """Every output position (n, c, oh, ow) with its window (h0, h1, w0, w1, divisor)."""
    for n, c, oh, ow in np.ndindex(*g.y_shape):
        yield (n, c, oh, ow), _pool_window(g, oh, ow)


def _max_pool2d_forward(x, g: PoolGeometry):
    """x (N, C, H, W) -> y, indices (N, C, Ho, Wo). np.argmax returns the first maximum, and the first NaN."""
    y = np.empty(g.y_shape, g.dtype)
    indices = np.empty(g.y_shape, np.int64)
    for (n, c, oh, ow), (h0, h1, w0, w1, _) in _pool_outputs(g):
        window = x[n, c, h0:h1, w0:w1]
        i, j = np.unravel_index(np.argmax(window), window.shape)
        y[n, c, oh, ow] = window[i, j]
        indices[n, c, oh, ow] = (h0 + i) * g.w + (w0 + j)
    return y, indices


def _max_pool2d_backward(dy, indices, g: PoolGeometry):
    """dy, indices (N, C, Ho, Wo) -> dx (N, C, H, W): each dy goes to the element its index names."""
    dx = np.zeros((g.n, g.c, g.h * g.w), g.dtype)
    for n, c, oh, ow in np.ndindex(*g.y_shape):
        dx[n, c, indices[n, c, oh, ow]] += dy[n, c, oh, ow]
    return dx.reshape(g.x_shape)


def _avg_pool2d_forward(x, g: PoolGeometry):
    """x (N, C, H, W) -> y (N, C, Ho, Wo): each window's sum over its input cells / its divisor."""
    y = np.empty(g.y_shape, g.dtype)
    for (n, c, oh, ow), (h0, h1, w0, w1, divisor) in _pool_outputs(g):
        y[n, c, oh, ow] = x[n, c, h0:h1, w0:w1].sum() / divisor
    return y


def _avg_pool2d_backward(dy, g: PoolGeometry):
    """dy (N, C, Ho, Wo) -> dx (N, C, H, W): each dy / divisor goes to every input cell of its window."""
    dx = np.zeros(g.x_shape, g.dtype)
    for (n, c, oh, ow), (h0, h1, w0, w1, divisor) in _pool_outputs(g):
        dx[n, c, h0:h1, w0:w1] += dy[n, c, oh, ow] / divisor
    return dx


def _nchw_methods(op: str, g) -> Methods:
    """One method per op: the loops above (their only scratch is the padded copy)."""
    return Methods.of(Method("loops", globals()[f"_{op}"]))


methods = adapted(_nchw_methods)  # channels-last geometries: the loops between transposes
globals().update(default_kernels(methods))  # conv2d_forward, ...: each runs its op's default method
