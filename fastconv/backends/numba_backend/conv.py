"""Convolution: the methods that apply to a geometry, the default among them, and the backward composition.

Methods (each a module with applies, forward / forward_plan and backward / backward_plan):
    pointwise  1x1, stride 1, no padding: one GEMM per image
    polyphase  one input channel per group: whole-plane loops over phase planes (small depthwise maps)
    direct     one input channel per group (depthwise, C == 1): loops along rows
    gemm       everything: im2col + GEMM per tile of output rows
    winograd   3x3, stride 1, ungrouped: F(4x4, 3x3) (forward only)
At stride 1 the input gradient is a forward convolution of dy with the kernel rotated by 180 degrees and
C and K swapped ("rotated"), which reuses the default forward method; elsewhere gemm scatters it back (col2im).
"""

from __future__ import annotations

import functools

import numpy as np
from numba import prange, uint64

from fastconv._geometry import ConvGeometry
from fastconv._threads import parallel_region, threads_for
from fastconv.backends._defaults import winograd_pays
from fastconv.backends._protocol import Method, Methods, Plan
from fastconv.backends.numba_backend import direct, gemm, pointwise, polyphase, winograd
from fastconv.backends.numba_backend._columns import FMA_AND_REORDER
from fastconv.backends.numba_backend._parallel import parallel_kernel

#: fewest input channels per group for which dx at stride 1 is preferably the rotated forward convolution
ROTATED_MIN_CHANNELS = 16


def _modules(g: ConvGeometry) -> list[tuple[str, object]]:
    """(name, module) of every method with a forward and backward that applies to g, the preferred one first."""
    found = [("pointwise", pointwise)] if pointwise.applies(g) else []
    channelwise = [("polyphase", polyphase), ("direct", direct)] if polyphase.preferred(g) else \
        [("direct", direct), ("polyphase", polyphase)]
    if direct.preferred(g):
        found += channelwise
    found.append(("gemm", gemm))
    if direct.applies(g) and not direct.preferred(g):
        found += channelwise
    return found


@functools.lru_cache(maxsize=256)
def forward_methods(g: ConvGeometry) -> Methods:
    """Every forward method that applies to g; Winograd is the default where winograd_pays(g)."""
    found = [Method(name, module.forward, module.forward_plan) for name, module in _modules(g)]
    if winograd.applies(g):
        method = Method("winograd", winograd.forward, winograd.plan)
        found = [method, *found] if winograd_pays(g) else [*found, method]
    return Methods.of(*found)


@parallel_kernel(fastmath=FMA_AND_REORDER)
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


def _bias(dy, g: ConvGeometry) -> np.ndarray:
    """db (K,) = dy (N, K, Ho, Wo) summed over images and pixels."""
    with parallel_region(threads_for(g.flops, g.k), numba=True):
        return _bias_grad(dy.reshape(g.n, g.k, -1))


def rotation_applies(g: ConvGeometry) -> bool:
    """Stride 1, and no side padded by more than the kernel's extent (the kernels take no negative padding)."""
    if g.stride_h != 1 or g.stride_w != 1:
        return False
    r = g.rotated()
    return min(r.pad_top, r.pad_bottom, r.pad_left, r.pad_right) >= 0


def _with(module):
    """A conv2d_backward taking dx and dw from one module's backward pass (and its plan)."""

    def backward(dy, x, w, g: ConvGeometry, need_dx, need_dw, need_db):
        dx, dw = module.backward(dy, x, w, g, need_dx, need_dw)
        return dx, dw, _bias(dy, g) if need_db else None

    return backward


def _rotated(dw_module):
    """A conv2d_backward taking dw from dw_module and dx from the rotated forward convolution."""

    def backward(dy, x, w, g: ConvGeometry, need_dx, need_dw, need_db):
        dw = dw_module.backward(dy, x, w, g, False, need_dw)[1] if need_dw else None
        dx = None
        if need_dx:
            rotated = g.rotated()
            dx = forward_methods(rotated).chosen.run(dy, g.rotate_kernel(w), None, rotated)
        return dx, dw, _bias(dy, g) if need_db else None

    def plan(g: ConvGeometry, need_dx: bool = True, need_dw: bool = True) -> Plan:
        """dw's phase, then dx's: the rotated kernel and the rotated forward's scratch."""
        phases = [dw_module.backward_plan(g, False, True)] if need_dw else []
        if need_dx:
            forward = forward_methods(g.rotated()).chosen.plan(g.rotated())
            kernel = ((g.c, g.k_per_group, g.r, g.s), g.dtype)
            phases.append(Plan(forward.threads, {"rotated_kernel": kernel, **forward.buffers}))
        return Plan.peak(*phases) if phases else Plan(1)

    return backward, plan


@functools.lru_cache(maxsize=256)
def backward_methods(g: ConvGeometry) -> Methods:
    """Every applicable way of computing dx, dw and db, the preferred first. "rotated" takes dx from the rotated
    forward convolution and dw from the preferred method; it is preferred when its GEMMs have enough rows (Cg)
    or when it is depthwise itself."""
    modules = _modules(g)
    found = [Method(name, _with(module), module.backward_plan) for name, module in modules]
    if not rotation_applies(g):
        return Methods.of(*found)
    rotated = Method("rotated", *_rotated(modules[0][1]))
    if g.c_per_group >= ROTATED_MIN_CHANNELS or g.is_depthwise:
        return Methods.of(rotated, *found)
    return Methods.of(*found, rotated)
