"""Max and average pooling: one pass over the N*C planes in parallel (prange), no fastmath (NaN must win).

Planes are x (P, H, W) with P = N*C. Window (oh, ow) starts at (oh*sh - top, ow*sw - left), spans kh x kw,
and only its cells inside the input are read.
Backward for non-overlapping windows writes every dx cell exactly once; overlapping windows zero the plane and
scatter serially within it.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from fastconv._geometry import PoolGeometry
from fastconv.backends.numba._parallel import num_chunks


@njit(cache=True, parallel=True)
def _max_forward(x, y, indices, sh, sw, kh, kw, top, left):
    """x (P, H, W) -> y, indices (P, Ho, Wo): first maximum in row-major order, first NaN wins."""
    planes, h, w = x.shape
    out_h, out_w = y.shape[1], y.shape[2]
    for p in prange(planes):
        for oh in range(out_h):
            h0 = oh * sh - top
            h1 = min(h0 + kh, h)
            h0 = max(h0, 0)
            for ow in range(out_w):
                w0 = ow * sw - left
                w1 = min(w0 + kw, w)
                w0 = max(w0, 0)
                best = x[p, h0, w0]
                at = h0 * w + w0
                for i in range(h0, h1):
                    for j in range(w0, w1):
                        v = x[p, i, j]
                        if v > best or (v != v and best == best):
                            best = v
                            at = i * w + j
                y[p, oh, ow] = best
                indices[p, oh, ow] = at


@njit(cache=True)
def _scatter_max_plane(dy, indices, dx):
    """dy, indices (Ho, Wo); dx (H*W,) zeroed here, then each dy added at its index."""
    dx[:] = 0
    for oh in range(dy.shape[0]):
        for ow in range(dy.shape[1]):
            dx[indices[oh, ow]] += dy[oh, ow]


@njit(cache=True, parallel=True)
def _max_backward_disjoint(dy, indices, dx, row_window, col_window):
    """dy, indices (P, Ho, Wo) -> dx (P, H, W) when windows do not overlap: row_window[ih] (col_window[iw])
    is the window row (column) holding input row ih (column iw), or -1. Each dx cell is written once.

    An index outside its own window (possible only for user-given indices) sends the plane to the scatter."""
    planes, h, w = dx.shape
    out_h, out_w = dy.shape[1], dy.shape[2]
    for p in prange(planes):
        matched = 0
        for ih in range(h):
            oh = row_window[ih]
            for iw in range(w):
                ow = col_window[iw]
                if oh >= 0 and ow >= 0 and indices[p, oh, ow] == ih * w + iw:
                    dx[p, ih, iw] = dy[p, oh, ow]
                    matched += 1
                else:
                    dx[p, ih, iw] = 0
        if matched != out_h * out_w:
            _scatter_max_plane(dy[p], indices[p], dx[p].reshape(h * w))


@njit(cache=True, parallel=True)
def _max_backward_scatter(dy, indices, dx):
    """dy, indices (P, Ho, Wo) -> dx (P, H*W): serial scatter within each plane, planes in parallel."""
    for p in prange(dx.shape[0]):
        _scatter_max_plane(dy[p], indices[p], dx[p])


@njit(cache=True, parallel=True)
def _avg_forward(x, y, divisor, sh, sw, kh, kw, top, left):
    """x (P, H, W) -> y (P, Ho, Wo): window sum over input cells / divisor (Ho, Wo)."""
    planes, h, w = x.shape
    out_h, out_w = y.shape[1], y.shape[2]
    for p in prange(planes):
        for oh in range(out_h):
            h0 = oh * sh - top
            h1 = min(h0 + kh, h)
            h0 = max(h0, 0)
            for ow in range(out_w):
                w0 = ow * sw - left
                w1 = min(w0 + kw, w)
                w0 = max(w0, 0)
                total = x.dtype.type(0)
                for i in range(h0, h1):
                    for j in range(w0, w1):
                        total += x[p, i, j]
                y[p, oh, ow] = total / divisor[oh, ow]


@njit(cache=True, parallel=True)
def _avg_backward_disjoint(dy, divisor, dx, row_window, col_window):
    """dy (P, Ho, Wo) -> dx (P, H, W) for non-overlapping windows, each cell written once (see
    _max_backward_disjoint for row_window / col_window)."""
    planes, h, w = dx.shape
    for p in prange(planes):
        for ih in range(h):
            oh = row_window[ih]
            for iw in range(w):
                ow = col_window[iw]
                if oh >= 0 and ow >= 0:
                    dx[p, ih, iw] = dy[p, oh, ow] / divisor[oh, ow]
                else:
                    dx[p, ih, iw] = 0


@njit(cache=True, parallel=True)
def _avg_backward_scatter(dy, divisor, dx, sh, sw, kh, kw, top, left):
    """dy (P, Ho, Wo) -> dx (P, H, W) for overlapping windows: zero, then add dy / divisor over each window."""
    planes, h, w = dx.shape
    out_h, out_w = dy.shape[1], dy.shape[2]
    for p in prange(planes):
        dx[p] = 0
        for oh in range(out_h):
            h0 = oh * sh - top
            h1 = min(h0 + kh, h)
            h0 = max(h0, 0)
            for ow in range(out_w):
                w0 = ow * sw - left
                w1 = min(w0 + kw, w)
                w0 = max(w0, 0)
                share = dy[p, oh, ow] / divisor[oh, ow]
                for i in range(h0, h1):
                    for j in range(w0, w1):
                        dx[p, i, j] += share


def _window_of(size: int, out: int, stride: int, kernel: int, pad_before: int) -> np.ndarray:
    """(size,) int64: the window index holding each input cell along one axis, -1 for cells in no window
    (valid when windows do not overlap)."""
    shifted = np.arange(size) + pad_before
    window = shifted // stride
    return np.where((shifted % stride < kernel) & (window < out), window, -1).astype(np.int64)


def _window_maps(g: PoolGeometry) -> tuple[np.ndarray, np.ndarray]:
    return (_window_of(g.h, g.out_h, g.stride_h, g.kh, g.pad_top),
            _window_of(g.w, g.out_w, g.stride_w, g.kw, g.pad_left))


def _planes(a: np.ndarray) -> np.ndarray:
    """(N, C, H, W) -> (N*C, H, W) view."""
    return a.reshape(-1, a.shape[2], a.shape[3])


def _window_args(g: PoolGeometry) -> tuple[int, ...]:
    return g.stride_h, g.stride_w, g.kh, g.kw, g.pad_top, g.pad_left


def max_pool2d_forward(x, g: PoolGeometry):
    """x (N, C, H, W) -> y (N, C, Ho, Wo), indices (N, C, Ho, Wo) int64 (flat h*W + w)."""
    num_chunks(g.n * g.c)
    y = np.empty(g.y_shape, g.dtype)
    indices = np.empty(g.y_shape, np.int64)
    _max_forward(_planes(x), _planes(y), _planes(indices), *_window_args(g))
    return y, indices


def max_pool2d_backward(dy, indices, g: PoolGeometry):
    """dy, indices (N, C, Ho, Wo) -> dx (N, C, H, W)."""
    num_chunks(g.n * g.c)
    dx = np.empty(g.x_shape, g.dtype)
    if g.overlapping:
        _max_backward_scatter(_planes(dy), _planes(indices), dx.reshape(g.n * g.c, g.h * g.w))
    else:
        _max_backward_disjoint(_planes(dy), _planes(indices), _planes(dx), *_window_maps(g))
    return dx


def avg_pool2d_forward(x, g: PoolGeometry):
    """x (N, C, H, W) -> y (N, C, Ho, Wo)."""
    num_chunks(g.n * g.c)
    y = np.empty(g.y_shape, g.dtype)
    _avg_forward(_planes(x), _planes(y), g.avg_divisor().astype(g.dtype), *_window_args(g))
    return y


def avg_pool2d_backward(dy, g: PoolGeometry):
    """dy (N, C, Ho, Wo) -> dx (N, C, H, W)."""
    num_chunks(g.n * g.c)
    dx = np.empty(g.x_shape, g.dtype)
    divisor = g.avg_divisor().astype(g.dtype)
    if g.overlapping:
        _avg_backward_scatter(_planes(dy), divisor, _planes(dx), *_window_args(g))
    else:
        _avg_backward_disjoint(_planes(dy), divisor, _planes(dx), *_window_maps(g))
    return dx


def workspace_bytes(op: str, g: PoolGeometry) -> int:
    """The divisor table and the window maps; the indices recomputed for a backward without them."""
    return g.out_h * g.out_w * 8 + (g.h + g.w) * 8
