"""The convolution methods of the cython backend, which one runs by default, and the backward pass composed of them.

Forward: gemm (every layer), pointwise (1x1 stride 1 unpadded), direct, polyphase and blocked (one input channel
per group), winograd (3x3 stride 1), blocked_direct (groups of several input channels, or one group; forward only).
Backward methods are named after the method that computes dw and db, with dx by that method's own adjoint
(direct loops for direct, col2im after a GEMM for the others), plus "rotated": at stride 1 dx is the forward
convolution of dy with the rotated kernel (by the rotated geometry's default forward method), and dw is by the
default method (gemm where that is blocked_direct). Each pass allocates its scratch from its plan; a backward
method's plan is the peak of its passes, which run one after the other.
"""

from __future__ import annotations

import functools

import numpy as np

from fastconv._geometry import ConvGeometry
from fastconv._threads import parallel_region, per_budget, threads_for
from fastconv.backends import _polyphase
from fastconv.backends._defaults import blocked_direct_pays
from fastconv.backends._protocol import Method, Methods, Plan
from fastconv.backends.cython_backend import (_common, blocked, blocked_direct, direct, gemm, pointwise, polyphase,
                                              winograd)

#: name -> module with applies(g), forward / forward_plan and grad_w / grad_w_plan
MODULES = {"gemm": gemm, "pointwise": pointwise, "direct": direct, "polyphase": polyphase, "blocked": blocked,
           "winograd": winograd, "blocked_direct": blocked_direct}


def default_method(g: ConvGeometry) -> str:
    """The forward method: for depthwise layers blocked where preferred, else polyphase on small maps and direct
    otherwise; Winograd where its forward pays, pointwise for 1x1 stride-1 unpadded layers, blocked_direct where it pays
    (few channels per group, or enough output pixels to re-lay the weights for), gemm otherwise."""
    if g.is_depthwise:
        if blocked.preferred(g):
            return "blocked"
        return "polyphase" if polyphase.preferred(g) else "direct"
    if winograd.forward_preferred(g):
        return "winograd"
    if g.is_pointwise:
        return "pointwise"
    pays = blocked_direct_pays(g, blocked_direct.pixel_run(), blocked_direct.channel_block(g.dtype))
    return "blocked_direct" if pays else "gemm"


#: fewest images at which the grad of x by rotation is the default: at batch 1 the gemm backward (col2im) took
#: 0.55-0.95x the rotated one's time on 3x3 layers from 64 channels at 56x56 to 512 at 7x7 (rotating the kernel
#: copies every weight, and the rotated forward's channel blocks each redo its im2col); from batch 4 on, 0.7-0.95x
#: the other way
ROTATION_MIN_BATCH = 2


def _rotation_pays(g: ConvGeometry) -> bool:
    """At stride 1 the grad of x is a forward convolution; its im2col has k/groups*r*s rows (col2im's has
    c/groups*r*s), so it is the default when groups have no more outputs than inputs, from ROTATION_MIN_BATCH
    images on; and at any batch on polyphase's shifted planes, whose forward (one pass per plane writing dx)
    took 0.5x the time of their adjoint (a read-modify-write of the planes per tap)."""
    if g.stride_h != 1 or g.stride_w != 1 or g.k_per_group > g.c_per_group:
        return False
    return g.n >= ROTATION_MIN_BATCH or default_method(g) == "polyphase" and _polyphase.shifted(g)


# ---------------------------------------------------------------------------------------------------------------
# forward


def _forward(name: str) -> Method:
    module = MODULES[name]

    def run(x, w, b, g: ConvGeometry) -> np.ndarray:
        y = np.empty(g.y_shape, g.dtype)
        module.forward(x, w, b, y, g)
        return y

    run.__doc__ = f"x (N, C, H, W), w (K, C/groups, R, S), b (K,) or None -> y (N, K, Ho, Wo), by {name}."
    return Method(name, run, module.forward_plan)


FORWARD = {name: _forward(name) for name in MODULES}


@functools.lru_cache(maxsize=256)
def forward_methods(g: ConvGeometry) -> Methods:
    """The conv2d_forward methods that apply to g."""
    return Methods(default_method(g), {name: FORWARD[name] for name, module in MODULES.items() if module.applies(g)})


# ---------------------------------------------------------------------------------------------------------------
# grad of x by rotation


def _rotated_forward(g: ConvGeometry):
    """The rotated geometry, and the module of its default forward method."""
    rotated = g.rotated()
    return rotated, MODULES[default_method(rotated)]


@per_budget
def rotated_grad_x_plan(g: ConvGeometry) -> Plan:
    """The rotated kernel (from g.rotate_kernel) and, while it lives, the rotated forward convolution's plan."""
    rotated, module = _rotated_forward(g)
    forward = module.forward_plan(rotated)
    return Plan(forward.threads, {"rotated_w": (rotated.w_shape, g.dtype), **forward.buffers})


def rotated_grad_x(dy, w, dx, g: ConvGeometry) -> None:
    """dx (N, C, H, W) = conv(dy (N, K, Ho, Wo), w rotated by 180 degrees, channels swapped per group)."""
    rotated, module = _rotated_forward(g)
    module.forward(dy, g.rotate_kernel(w), None, dx, rotated)


#: how dx is computed, by name: (grad_x(dy, w, dx, g), grad_x_plan(g))
GRAD_X = {"gemm": (gemm.grad_x, gemm.grad_x_plan), "direct": (direct.grad_x, direct.grad_x_plan),
          "polyphase": (polyphase.grad_x, polyphase.grad_x_plan), "blocked": (blocked.grad_x, blocked.grad_x_plan),
          "rotated": (rotated_grad_x, rotated_grad_x_plan)}


# ---------------------------------------------------------------------------------------------------------------
# backward


#: backward method -> (the method computing dw and db, None for the default one; how dx is computed)
BACKWARD_PASSES = {"gemm": ("gemm", "gemm"), "pointwise": ("pointwise", "gemm"), "direct": ("direct", "direct"),
                   "polyphase": ("polyphase", "polyphase"), "blocked": ("blocked", "blocked"),
                   "winograd": ("winograd", "gemm"),
                   "rotated": (None, "rotated")}


def _backward_default(g: ConvGeometry) -> str:
    """The default forward method where it has a backward (dw, and dx by its adjoint), gemm where it is forward
    only (blocked_direct) or where Winograd pays forward only (small maps at a small batch)."""
    name = default_method(g)
    if name == "winograd" and not winograd.preferred(g):
        return "gemm"
    return name if name in BACKWARD_PASSES else "gemm"


@per_budget
def _bias_plan(g: ConvGeometry) -> Plan:
    """db without dw: no scratch."""
    return Plan(threads_for(g.flops))


def _backward(name: str) -> Method:
    dw_by, dx_by = BACKWARD_PASSES[name]
    grad_x, grad_x_plan = GRAD_X[dx_by]

    def dw_method(g: ConvGeometry):
        return MODULES[dw_by or _backward_default(g)]

    def plan(g: ConvGeometry, need_dx: bool = True, need_dw: bool = True) -> Plan:
        first = dw_method(g).grad_w_plan(g) if need_dw else _bias_plan(g)
        return Plan.peak(first, grad_x_plan(g)) if need_dx else first

    def run(dy, x, w, g: ConvGeometry, need_dx, need_dw, need_db):
        dx = np.empty(g.x_shape, g.dtype) if need_dx else None
        dw = np.empty(g.w_shape, g.dtype) if need_dw else None
        db = np.empty(g.k, g.dtype) if need_db else None
        if need_dw:
            dw_method(g).grad_w(dy, x, dw, db, g)
        elif need_db:
            with parallel_region(_bias_plan(g).threads) as threads:
                _common.bias_grad(dy, db, threads)
        if need_dx:
            grad_x(dy, w, dx, g)
        return dx, dw, db

    run.__doc__ = (f"dy (N, K, Ho, Wo), x, w -> (dx (N, C, H, W), dw (K, C/groups, R, S), db (K,)), None where "
                   f"not needed; dw and db by {dw_by or 'the default method'}, dx by {dx_by}.")
    return Method(name, run, plan)


BACKWARD = {name: _backward(name) for name in BACKWARD_PASSES}


@functools.lru_cache(maxsize=256)
def backward_methods(g: ConvGeometry) -> Methods:
    """The conv2d_backward methods that apply to g: those of the forward methods that do, and "rotated" at
    stride 1."""
    applicable = [name for name, module in MODULES.items() if name in BACKWARD_PASSES and module.applies(g)]
    if g.stride_h == g.stride_w == 1:
        applicable.append("rotated")
    default = "rotated" if _rotation_pays(g) else _backward_default(g)
    return Methods(default, {name: BACKWARD[name] for name in applicable})
