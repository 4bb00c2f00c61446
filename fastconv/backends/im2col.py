"""The book's method in vectorized numpy: im2col lowers every receptive field to a column, one GEMM does the rest.

    col[n, grp, (c, r, s), (oh, ow)] = xp[n, grp*Cg + c, oh*sh + r*dh, ow*sw + s*dw]
    y[n, grp*Kg + k, :]              = w[grp*Kg + k, (c, r, s)] @ col[n, grp]

col holds the whole batch (C*R*S x N*Ho*Wo values): simple and BLAS-fast, but memory-hungry for large layers.
The padded copy xp of the input is documented here as this backend's one materialized padding.
Loops run only over the R*S kernel taps (or the kh*kw pooling taps), never over output pixels.
"""

from __future__ import annotations

import functools
from typing import Callable

import numpy as np

from fastconv._geometry import ConvGeometry, PoolGeometry
from fastconv.backends._channels_last import adapted
from fastconv.backends._protocol import GEOMETRY_ARG, KERNELS, Method, Methods, Plan, default_kernels


def _tap_slices(g, r: int, s: int, dh: int, dw: int) -> tuple[slice, slice]:
    """Rows and columns of the padded input that kernel tap (r, s) reads for all output pixels."""
    rows = slice(r * dh, r * dh + (g.out_h - 1) * g.stride_h + 1, g.stride_h)
    cols = slice(s * dw, s * dw + (g.out_w - 1) * g.stride_w + 1, g.stride_w)
    return rows, cols


def _im2col(xp: np.ndarray, g, taps_h: int, taps_w: int, dh: int = 1, dw: int = 1) -> np.ndarray:
    """xp (N, C, Hp, Wp) -> col (N, C, taps_h, taps_w, Ho, Wo), one strided slice copy per tap."""
    col = np.empty(xp.shape[:2] + (taps_h, taps_w, g.out_h, g.out_w), xp.dtype)
    for r in range(taps_h):
        for s in range(taps_w):
            rows, cols = _tap_slices(g, r, s, dh, dw)
            col[:, :, r, s] = xp[:, :, rows, cols]
    return col


def _col2im(col: np.ndarray, g, padded_hw: tuple[int, int], dh: int = 1, dw: int = 1) -> np.ndarray:
    """Adjoint of _im2col: col (N, C, taps_h, taps_w, Ho, Wo) -> dxp (N, C, Hp, Wp), slice-adds per tap."""
    n, c, taps_h, taps_w = col.shape[:4]
    dxp = np.zeros((n, c) + padded_hw, col.dtype)
    for r in range(taps_h):
        for s in range(taps_w):
            rows, cols = _tap_slices(g, r, s, dh, dw)
            dxp[:, :, rows, cols] += col[:, :, r, s]
    return dxp


def _pad(x: np.ndarray, pads: tuple[int, int, int, int], value: float = 0.0) -> np.ndarray:
    top, bottom, left, right = pads
    if not any(pads):
        return x
    return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=value)


def _crop(xp: np.ndarray, g) -> np.ndarray:
    """Padded (N, C, Hp, Wp) -> the input's (N, C, H, W) region."""
    return xp[:, :, g.pad_top:g.pad_top + g.h, g.pad_left:g.pad_left + g.w]


# ---------------------------------------------------------------------------------------------------------------
# convolution


def plan(op: str, g, *flags) -> Plan:
    """The scratch numpy allocates as the kernels run: the column matrix (and its gradient in backward) and two
    copies of the input's size (the padded input, and its gradient or a transposed result), whatever the
    backward's flags (need_dx, need_dw)."""
    if isinstance(g, ConvGeometry):
        columns = (g.n, g.c, g.r, g.s, g.out_h, g.out_w)
        padded = (g.n, g.c, g.h + g.pad_top + g.pad_bottom, g.w + g.pad_left + g.pad_right)
        buffers = {"columns": (columns, g.dtype), "padded": ((2, *padded), g.dtype)}
        if op == "conv2d_backward":
            buffers["columns_grad"] = (columns, g.dtype)
        return Plan(1, buffers)
    return Plan(1, {"columns": ((g.n, g.c, g.kh, g.kw, g.out_h, g.out_w), g.dtype),
                    "padded": ((2, *g.x_shape), g.dtype)})


def _nchw_methods(op: str, g) -> Methods:
    """One method per op; its plan is checked against the machine's memory before numpy allocates."""
    return Methods.of(Method("im2col", _CHECKED[op], functools.partial(plan, op)))


def _conv_pads(g: ConvGeometry) -> tuple[int, int, int, int]:
    return g.pad_top, g.pad_bottom, g.pad_left, g.pad_right


def _grouped_col(x: np.ndarray, g: ConvGeometry) -> np.ndarray:
    """x (N, C, H, W) -> col (N, groups, Cg*R*S, Ho*Wo)."""
    col = _im2col(_pad(x, _conv_pads(g)), g, g.r, g.s, g.dilation_h, g.dilation_w)
    return col.reshape(g.n, g.groups, g.c_per_group * g.r * g.s, g.out_h * g.out_w)


def _conv2d_forward(x, w, b, g: ConvGeometry):
    """x (N, C, H, W), w (K, C/groups, R, S), b (K,) or None -> y (N, K, Ho, Wo): one batched GEMM per group."""
    col = _grouped_col(x, g)
    w_mat = w.reshape(g.groups, g.k_per_group, -1)
    y = np.matmul(w_mat, col)  # (N, groups, Kg, Ho*Wo)
    y = y.reshape(g.y_shape)
    if b is not None:
        y += b[:, None, None]
    return y


def _conv2d_backward(dy, x, w, g: ConvGeometry, need_dx, need_dw, need_db):
    """dy (N, K, Ho, Wo) -> dx (N, C, H, W), dw (K, C/groups, R, S), db (K,).

    dw[grp] = sum_n dy[n, grp] @ col[n, grp]^T;  dcol = w[grp]^T @ dy[n, grp], folded back by col2im.
    """
    dy_mat = dy.reshape(g.n, g.groups, g.k_per_group, g.out_h * g.out_w)
    w_mat = w.reshape(g.groups, g.k_per_group, -1)
    dx = dw = db = None
    if need_dw:
        col = _grouped_col(x, g)
        dw = np.matmul(dy_mat, col.transpose(0, 1, 3, 2)).sum(axis=0).reshape(g.w_shape)
    if need_dx:
        dcol = np.matmul(w_mat.transpose(0, 2, 1), dy_mat)  # (N, groups, Cg*R*S, Ho*Wo)
        dcol = dcol.reshape(g.n, g.c, g.r, g.s, g.out_h, g.out_w)
        padded_hw = (g.h + g.pad_top + g.pad_bottom, g.w + g.pad_left + g.pad_right)
        dx = np.ascontiguousarray(_crop(_col2im(dcol, g, padded_hw, g.dilation_h, g.dilation_w), g))
    if need_db:
        db = dy.sum(axis=(0, 2, 3), dtype=g.dtype)
    return dx, dw, db


# ---------------------------------------------------------------------------------------------------------------
# pooling


def _pool_pads(g: PoolGeometry) -> tuple[int, int, int, int]:
    """Padding on each side, extended at the bottom/right so that ceil_mode's last windows fit."""
    bottom = max(g.pad_bottom, (g.out_h - 1) * g.stride_h + g.kh - g.h - g.pad_top)
    right = max(g.pad_right, (g.out_w - 1) * g.stride_w + g.kw - g.w - g.pad_left)
    return g.pad_top, bottom, g.pad_left, right


def _pool_col(x: np.ndarray, g: PoolGeometry, fill: float) -> np.ndarray:
    """x (N, C, H, W) -> windows (N, C, kh*kw, Ho, Wo), padding filled with `fill`."""
    col = _im2col(_pad(x, _pool_pads(g), fill), g, g.kh, g.kw)
    return col.reshape(g.n, g.c, g.kh * g.kw, g.out_h, g.out_w)


def _window_origin(g: PoolGeometry) -> tuple[np.ndarray, np.ndarray]:
    """Input row (Ho, 1) and column (1, Wo) of each window's top-left cell (negative inside the padding)."""
    rows = np.arange(g.out_h)[:, None] * g.stride_h - g.pad_top
    cols = np.arange(g.out_w)[None, :] * g.stride_w - g.pad_left
    return rows, cols


def _pool_col2im(dcol: np.ndarray, g: PoolGeometry) -> np.ndarray:
    """dcol (N, C, kh*kw, Ho, Wo) -> dx (N, C, H, W)."""
    top, bottom, left, right = _pool_pads(g)
    dcol = dcol.reshape(g.n, g.c, g.kh, g.kw, g.out_h, g.out_w)
    dxp = _col2im(dcol, g, (g.h + top + bottom, g.w + left + right))
    return np.ascontiguousarray(_crop(dxp, g))


def _max_pool2d_forward(x, g: PoolGeometry):
    """x (N, C, H, W) -> y, indices (N, C, Ho, Wo).

    Padding holds -inf, so argmax (first maximum, first NaN) picks a padded cell only when the whole window is
    -inf; then the window's first input cell is named instead, as naive does.
    """
    col = _pool_col(x, g, -np.inf)
    tap = np.argmax(col, axis=2)[:, :, None]
    y = np.take_along_axis(col, tap, axis=2)[:, :, 0]
    tap = tap[:, :, 0]
    rows, cols = _window_origin(g)
    indices = (rows + tap // g.kw) * g.w + (cols + tap % g.kw)
    all_minus_inf = y == -np.inf
    if all_minus_inf.any():
        first_cell = np.maximum(rows, 0) * g.w + np.maximum(cols, 0)
        indices = np.where(all_minus_inf, first_cell, indices)
    return y, indices.astype(np.int64, copy=False)


def _scatter(dy, indices, g: PoolGeometry):
    """dx[n, c].flat[indices[n, c, oh, ow]] += dy[n, c, oh, ow] for any indices in [0, H*W), duplicates adding up."""
    planes, plane_size = g.n * g.c, g.h * g.w
    flat = indices.reshape(planes, -1) + np.arange(planes)[:, None] * plane_size
    dx = np.bincount(flat.ravel(), weights=dy.ravel(), minlength=planes * plane_size)
    return dx.astype(g.dtype, copy=False).reshape(g.x_shape)


def _max_pool2d_backward(dy, indices, g: PoolGeometry):
    """dy, indices (N, C, Ho, Wo) -> dx (N, C, H, W): dy placed at the window tap each index names, then col2im.

    Indices outside their own window (given by the caller) have no tap: then every dy is scattered directly.
    """
    rows, cols = _window_origin(g)
    tap_row, tap_col = indices // g.w - rows, indices % g.w - cols
    if (tap_row < 0).any() or (tap_row >= g.kh).any() or (tap_col < 0).any() or (tap_col >= g.kw).any():
        return _scatter(dy, indices, g)
    tap = tap_row * g.kw + tap_col
    dcol = np.zeros((g.n, g.c, g.kh * g.kw, g.out_h, g.out_w), g.dtype)
    np.put_along_axis(dcol, tap[:, :, None], dy[:, :, None], axis=2)
    return _pool_col2im(dcol, g)


def _avg_pool2d_forward(x, g: PoolGeometry):
    """x (N, C, H, W) -> y (N, C, Ho, Wo): window sums over zero padding / PyTorch's divisor."""
    col = _pool_col(x, g, 0.0)
    return (col.sum(axis=2) / g.avg_divisor()).astype(g.dtype, copy=False)


def _avg_pool2d_backward(dy, g: PoolGeometry):
    """dy (N, C, Ho, Wo) -> dx (N, C, H, W): dy / divisor spread over every tap of its window."""
    share = (dy / g.avg_divisor()).astype(g.dtype, copy=False)
    dcol = np.broadcast_to(share[:, :, None], (g.n, g.c, g.kh * g.kw, g.out_h, g.out_w))
    return _pool_col2im(dcol, g)


def _checked(op: str) -> Callable:
    """op's kernel, after checking that its plan fits in memory."""
    kernel = globals()[f"_{op}"]

    def run(*args):
        plan(op, args[GEOMETRY_ARG[op]]).check()
        return kernel(*args)

    return functools.wraps(kernel)(run)


_CHECKED = {op: _checked(op) for op in KERNELS}
methods = adapted(_nchw_methods)  # channels-last geometries: the same between transposes
globals().update(default_kernels(methods))  # conv2d_forward, ...: each checks its plan, then runs
