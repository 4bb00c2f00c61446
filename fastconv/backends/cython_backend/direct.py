"""Direct convolution for one input channel per group (_direct.pyx): depthwise layers, and single-channel images.

Loops over (image, channel) planes whose inner loop runs along an output row. Forward and grad of w first copy
each plane of x they read into the thread's zero-padded plane (``planes``), so that every tap covers whole rows;
the grad of w sums each tap along rows in the thread's ``sums``, and db with it.
"""

from __future__ import annotations

from fastconv._geometry import ConvGeometry
from fastconv._threads import parallel_region, per_budget, threads_for
from fastconv.backends._protocol import Plan
from fastconv.backends.cython_backend._levels import load

_direct = load("_direct")  # the kernels built for this CPU's instruction set


def applies(g: ConvGeometry) -> bool:
    return g.is_channelwise


def _planes(g: ConvGeometry, threads: int) -> dict:
    """Each thread's zero-padded plane: the rows and columns of x (padding included) the windows read."""
    rows = (g.out_h - 1) * g.stride_h + (g.r - 1) * g.dilation_h + 1
    cols = (g.out_w - 1) * g.stride_w + (g.s - 1) * g.dilation_w + 1
    return {"planes": ((threads, rows * cols), g.dtype)}


@per_budget
def forward_plan(g: ConvGeometry) -> Plan:
    """Each thread's padded plane."""
    threads = threads_for(g.flops)
    return Plan(threads, _planes(g, threads))


def forward(x, w, b, y, g: ConvGeometry) -> None:
    """y (N, K, Ho, Wo) = conv(x (N, C, H, W), w (K, 1, R, S)) + b ((K,) or None)."""
    plan = forward_plan(g)
    scratch = plan.allocate()
    with parallel_region(plan.threads) as threads:
        _direct.forward(x, w, b, y, scratch["planes"], vars(g), threads)


@per_budget
def grad_w_plan(g: ConvGeometry) -> Plan:
    """Each thread's padded plane, and its row sums: one row of Wo per tap and one for db."""
    threads = threads_for(g.flops)
    return Plan(threads, {"sums": ((threads, (g.r * g.s + 1) * g.out_w), g.dtype), **_planes(g, threads)})


def grad_w(dy, x, dw, db, g: ConvGeometry) -> None:
    """dw (K, 1, R, S) from dy (N, K, Ho, Wo) and x (N, C, H, W); db (K,) too unless None."""
    plan = grad_w_plan(g)
    scratch = plan.allocate()
    with parallel_region(plan.threads) as threads:
        _direct.grad_w(dy, x, dw, db, scratch["sums"], scratch["planes"], vars(g), threads)


@per_budget
def grad_x_plan(g: ConvGeometry) -> Plan:
    """No scratch."""
    return Plan(threads_for(g.flops))


def grad_x(dy, w, dx, g: ConvGeometry) -> None:
    """dx (N, C, H, W) from dy (N, K, Ho, Wo) and w (K, 1, R, S)."""
    with parallel_region(grad_x_plan(g).threads) as threads:
        _direct.grad_x(dy, w, dx, vars(g), threads)
