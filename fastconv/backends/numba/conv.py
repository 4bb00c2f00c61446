"""Convolution: picks a method per geometry and composes the backward pass.

Methods (each a module with conv2d_forward and conv2d_backward_dx_dw):
    pointwise  1x1, stride 1, no padding: one GEMM per image
    direct     one input channel per group (depthwise, C == 1): loops along rows
    gemm       everything: im2col + GEMM per tile of output rows
At stride 1 the input gradient is a forward convolution of dy with the kernel rotated by 180 degrees and
C and K swapped ("rotated"), which reuses the fastest forward method; elsewhere gemm scatters it back (col2im).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, uint64

from fastconv._geometry import ConvGeometry
from fastconv._threads import threads_for
from fastconv.backends.numba import conv_direct, conv_gemm, conv_pointwise
from fastconv.backends.numba._columns import FMA_AND_REORDER
from fastconv.backends.numba._parallel import num_chunks

#: fewest input and output channels for which Winograd is the preferred forward method
WINOGRAD_MIN_CHANNELS = 16

#: fewest input channels per group for which dx at stride 1 is preferably the rotated forward convolution
ROTATED_MIN_CHANNELS = 16

try:  # written separately (autotuning); the backend works without it
    from fastconv.backends.numba import winograd
except ImportError:
    winograd = None


def _methods(g: ConvGeometry) -> list[tuple[str, object]]:
    """(name, module) of every method that applies to g, the preferred one first."""
    methods = [("pointwise", conv_pointwise)] if conv_pointwise.applies(g) else []
    if conv_direct.preferred(g):
        methods.append(("direct", conv_direct))
    methods.append(("gemm", conv_gemm))
    if conv_direct.applies(g) and not conv_direct.preferred(g):
        methods.append(("direct", conv_direct))
    return methods


def forward_methods(g: ConvGeometry) -> dict:
    """name -> conv2d_forward for every method that applies to g, the preferred one first. Winograd (forward
    only) is preferred where channels are many enough for its GEMMs to outweigh its transforms."""
    methods = {name: module.conv2d_forward for name, module in _methods(g)}
    if winograd is None or not winograd.applicable(g):
        return methods
    if min(g.c, g.k) >= WINOGRAD_MIN_CHANNELS:
        return {"winograd": winograd.conv2d_forward_winograd, **methods}
    return {**methods, "winograd": winograd.conv2d_forward_winograd}


def conv2d_forward(x, w, b, g: ConvGeometry):
    """x (N, C, H, W), w (K, C/groups, R, S), b (K,) or None -> y (N, K, Ho, Wo), by the preferred method."""
    return next(iter(forward_methods(g).values()))(x, w, b, g)


# ---------------------------------------------------------------------------------------------------------------
# backward


def rotated_geometry(g: ConvGeometry) -> ConvGeometry | None:
    """Geometry of dx = conv(dy, rotated w) at stride 1: dy (N, K, Ho, Wo) -> (N, C, H, W), padded by
    dilation*(kernel-1) - pad on each side; None when stride > 1 or a side's padding would be negative."""
    extent_h, extent_w = g.dilation_h * (g.r - 1), g.dilation_w * (g.s - 1)
    pads = (extent_h - g.pad_top, extent_h - g.pad_bottom, extent_w - g.pad_left, extent_w - g.pad_right)
    if g.stride_h != 1 or g.stride_w != 1 or min(pads) < 0:
        return None
    return ConvGeometry(g.n, g.k, g.out_h, g.out_w, g.c, g.r, g.s, 1, 1, g.dilation_h, g.dilation_w, *pads,
                        g.groups, g.h, g.w, g.dtype)


def rotated_weights(w: np.ndarray, g: ConvGeometry) -> np.ndarray:
    """w (K, Cg, R, S) -> (C, Kg, R, S) with [group*Cg + c, kk, r, s] = w[group*Kg + kk, c, R-1-r, S-1-s]."""
    per_group = w.reshape(g.groups, g.k_per_group, g.c_per_group, g.r, g.s)[:, :, :, ::-1, ::-1]
    return np.ascontiguousarray(per_group.transpose(0, 2, 1, 3, 4)).reshape(g.c, g.k_per_group, g.r, g.s)


@njit(cache=True, parallel=True, fastmath=FMA_AND_REORDER)
def _bias_grad(dy):
    """dy (N, K, P) -> db (K,): sums over images and pixels, channels in parallel (flat unsigned offsets,
    as in _columns, so that the sums vectorize)."""
    n_images, k, pixels = dy.shape
    flat, count = dy.ravel(), uint64(pixels)
    db = np.empty(k, dy.dtype)
    for kk in prange(k):
        total = dy.dtype.type(0)
        for n in range(n_images):
            first = uint64((n * k + kk) * pixels)
            for p in range(count):
                total += flat[first + p]
        db[kk] = total
    return db


def _backward_with(dx_dw_module, rotated: bool):
    """A conv2d_backward that takes dw (and dx unless rotated) from dx_dw_module, dx from the rotated forward
    convolution when rotated."""

    def backward(dy, x, w, g: ConvGeometry, need_dx, need_dw, need_db):
        dx, dw = dx_dw_module.conv2d_backward_dx_dw(dy, x, w, g, need_dx and not rotated, need_dw)
        if need_dx and rotated:
            dx = conv2d_forward(dy, rotated_weights(w, g), None, rotated_geometry(g))
        db = None
        if need_db:
            num_chunks(g.k, g)
            db = _bias_grad(dy.reshape(g.n, g.k, -1))
        return dx, dw, db

    return backward


def backward_methods(g: ConvGeometry) -> dict:
    """name -> conv2d_backward for every applicable way of computing dx, dw, db, the preferred one first.
    "rotated" takes dx from the rotated forward convolution and dw from the best method."""
    methods = {name: _backward_with(module, rotated=False) for name, module in _methods(g)}
    if rotated_geometry(g) is None:
        return methods
    rotated = _backward_with(_methods(g)[0][1], rotated=True)
    # the rotated convolution is fast when its GEMMs have enough rows (Cg) or when it is depthwise itself
    if g.c_per_group >= ROTATED_MIN_CHANNELS or g.c_per_group == g.k_per_group == 1:
        return {"rotated": rotated, **methods}
    return {**methods, "rotated": rotated}


def conv2d_backward(dy, x, w, g: ConvGeometry, need_dx, need_dw, need_db):
    """dy (N, K, Ho, Wo) -> (dx (N, C, H, W), dw (K, C/groups, R, S), db (K,)), None where not needed."""
    return next(iter(backward_methods(g).values()))(dy, x, w, g, need_dx, need_dw, need_db)


def workspace_bytes(op: str, g: ConvGeometry) -> int:
    """Scratch bytes, bounded by the largest method's: gemm's tile buffers (also for the rotated dx) and the
    direct method's per-image dW sums."""
    chunks = min(g.n, threads_for(g.work))
    total = conv_gemm.workspace_bytes(g, chunks) + conv_direct.workspace_bytes(g)
    rotated = rotated_geometry(g)
    if op == "conv2d_backward" and rotated is not None:
        total += conv_gemm.workspace_bytes(rotated, chunks) + rotated_weights_bytes(g)
    return total


def rotated_weights_bytes(g: ConvGeometry) -> int:
    return g.k * g.c_per_group * g.r * g.s * g.dtype.itemsize
