"""Depthwise (one input channel per group) convolution over polyphase planes (_direct.pyx's polyphase_* kernels;
the layout is fastconv.backends._polyphase): whole-plane vector loops for small maps, any kernel size, stride,
dilation and padding. Work is split into one contiguous chunk of planes per thread, each with its scratch row."""

from __future__ import annotations

import numpy as np

from fastconv._geometry import ConvGeometry
from fastconv._threads import parallel_region, per_budget, threads_for
from fastconv.backends._polyphase import applies, params, preferred, scratch_buffer, tap_offsets
from fastconv.backends._protocol import Plan
from fastconv.backends.cython_backend._levels import load

_direct = load("_direct")  # the kernels built for this CPU's instruction set

__all__ = ["applies", "preferred", "forward", "forward_plan", "grad_w", "grad_w_plan", "grad_x", "grad_x_plan"]


@per_budget
def forward_plan(g: ConvGeometry) -> Plan:
    """Planes (image, k) over the threads, each thread with its scratch row."""
    threads = threads_for(g.flops, g.n * g.k)
    return Plan(threads, scratch_buffer(g, threads))


def forward(x, w, b, y, g: ConvGeometry) -> None:
    """y (N, K, Ho, Wo) = conv(x (N, C, H, W), w (K, 1, R, S)) + b ((K,) or None)."""
    plan = forward_plan(g)
    scratch = plan.allocate()
    with parallel_region(plan.threads) as threads:
        _direct.polyphase_forward(x, w, np.zeros(g.k, g.dtype) if b is None else b, y, params(g), tap_offsets(g),
                                  scratch["scratch"], threads)


@per_budget
def grad_w_plan(g: ConvGeometry) -> Plan:
    """As the forward's, and each thread's partial sums of dW and db (K, R*S + 1)."""
    plan = forward_plan(g)
    return Plan(plan.threads, {**plan.buffers, "dw_parts": ((plan.threads, g.k, g.r * g.s + 1), g.dtype)})


def grad_w(dy, x, dw, db, g: ConvGeometry) -> None:
    """dw (K, 1, R, S) from dy (N, K, Ho, Wo) and x (N, C, H, W); db (K,) too unless None (summed with dW's
    dot products, which read dy anyway)."""
    plan = grad_w_plan(g)
    scratch = plan.allocate()
    parts = scratch["dw_parts"]
    with parallel_region(plan.threads) as threads:
        _direct.polyphase_grad_w(dy, x, parts, params(g), tap_offsets(g), scratch["scratch"], threads)
    taps = g.r * g.s
    parts[:, :, :taps].sum(axis=0, out=dw.reshape(g.k, taps))
    if db is not None:
        parts[:, :, taps].sum(axis=0, out=db)


@per_budget
def grad_x_plan(g: ConvGeometry) -> Plan:
    """Input planes (image, c) over the threads, each thread with its scratch row."""
    threads = threads_for(g.flops, g.n * g.c)
    return Plan(threads, scratch_buffer(g, threads))


def grad_x(dy, w, dx, g: ConvGeometry) -> None:
    """dx (N, C, H, W) from dy (N, K, Ho, Wo) and w (K, 1, R, S)."""
    plan = grad_x_plan(g)
    scratch = plan.allocate()
    with parallel_region(plan.threads) as threads:
        _direct.polyphase_grad_x(dy, w, dx, params(g), tap_offsets(g), scratch["scratch"], threads)
