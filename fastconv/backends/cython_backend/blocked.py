"""Depthwise (one input channel per group) convolution over channel blocks (_blocked.pyx; the layout is
fastconv.backends._blocked): LANES channels interleaved in a zero-padded buffer, the lane loops innermost; any
kernel size, stride, dilation and padding. Work items are split into one contiguous chunk per thread, each with
its scratch row."""

from __future__ import annotations

import numpy as np

from fastconv._geometry import ConvGeometry
from fastconv._threads import parallel_region, per_budget, threads_for
from fastconv.backends._blocked import (applies, bias_buffer, blocks, filters_buffer, forward_scratch, grad_x_scratch,
                                        params, preferred, relay_bias, relay_filters, tile_rows, unrelay_filters)
from fastconv.backends._protocol import Plan
from fastconv.backends.cython_backend import _common
from fastconv.backends.cython_backend._levels import load

_blocked = load("_blocked")  # the kernels built for this CPU's instruction set

__all__ = ["applies", "preferred", "forward", "forward_plan", "grad_w", "grad_w_plan", "grad_x", "grad_x_plan"]


def _threads(g: ConvGeometry) -> int:
    """Threads for the forward and grad of w, whose items are (image, block, tile)."""
    return threads_for(g.flops, g.n * blocks(g) * -(-g.out_h // tile_rows(g)))


def _params(g: ConvGeometry, rows: int) -> np.ndarray:
    return np.array(params(g, rows), np.int64)


@per_budget
def forward_plan(g: ConvGeometry) -> Plan:
    """The re-laid filters and bias, and each thread's scratch row."""
    threads = _threads(g)
    return Plan(threads, {**filters_buffer(g), **bias_buffer(g), **forward_scratch(g, threads, tile_rows(g))})


def forward(x, w, b, y, g: ConvGeometry) -> None:
    """y (N, K, Ho, Wo) = conv(x (N, C, H, W), w (K, 1, R, S)) + b ((K,) or None)."""
    plan = forward_plan(g)
    scratch = plan.allocate()
    with parallel_region(plan.threads) as threads:
        _blocked.forward(x, relay_filters(w, g, scratch["filters"]), relay_bias(b, g, scratch["bias"]), y,
                         scratch["scratch"], _params(g, tile_rows(g)), threads)


@per_budget
def grad_w_plan(g: ConvGeometry) -> Plan:
    """Each thread's scratch row and dW partial sums (blocks, m, R*S, LANES)."""
    threads = _threads(g)
    parts = {"dw_parts": ((threads, *filters_buffer(g)["filters"][0]), g.dtype)}
    return Plan(threads, {**forward_scratch(g, threads, tile_rows(g)), **parts})


def grad_w(dy, x, dw, db, g: ConvGeometry) -> None:
    """dw (K, 1, R, S) from dy (N, K, Ho, Wo) and x (N, C, H, W); db (K,) too unless None."""
    plan = grad_w_plan(g)
    scratch = plan.allocate()
    parts = scratch["dw_parts"]
    with parallel_region(plan.threads) as threads:
        _blocked.grad_w(dy, x, parts, scratch["scratch"], _params(g, tile_rows(g)), threads)
        if db is not None:
            _common.bias_grad(dy, db, threads)
    for part in parts[1:]:
        parts[0] += part
    unrelay_filters(parts[0], g, dw)


@per_budget
def grad_x_plan(g: ConvGeometry) -> Plan:
    """The re-laid filters, and each thread's scratch row (a whole padded plane); items (image, block)."""
    threads = threads_for(g.flops, g.n * blocks(g))
    return Plan(threads, {**filters_buffer(g), **grad_x_scratch(g, threads)})


def grad_x(dy, w, dx, g: ConvGeometry) -> None:
    """dx (N, C, H, W) from dy (N, K, Ho, Wo) and w (K, 1, R, S)."""
    plan = grad_x_plan(g)
    scratch = plan.allocate()
    with parallel_region(plan.threads) as threads:
        _blocked.grad_x(dy, relay_filters(w, g, scratch["filters"]), dx, scratch["scratch"], _params(g, g.out_h),
                        threads)
