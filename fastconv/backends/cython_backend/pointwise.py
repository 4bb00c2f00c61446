"""1x1, stride-1, unpadded convolution: gemm.py's kernels reading x in place as the column matrix (x of one
image and group, C/groups x H*W, is such a layer's im2col matrix), so that its plans hold no im2col tiles.

Its backward method takes dx from gemm (col2im of w^T dy, a copy for a 1x1 kernel).
"""

from __future__ import annotations

from fastconv._geometry import ConvGeometry
from fastconv._threads import per_budget, threads_for
from fastconv.backends._protocol import Plan
from fastconv.backends.cython_backend import gemm


def applies(g: ConvGeometry) -> bool:
    return g.is_pointwise


@per_budget
def forward_plan(g: ConvGeometry) -> Plan:
    """No scratch."""
    return Plan(threads_for(g.flops))


def forward(x, w, b, y, g: ConvGeometry) -> None:
    """y (N, K, H, W) = conv(x (N, C, H, W), w (K, C/groups, 1, 1)) + b ((K,) or None)."""
    gemm.forward_with(forward_plan(g), x, w, b, y, g)


@per_budget
def grad_w_plan(g: ConvGeometry) -> Plan:
    """Each thread's partial dw."""
    threads = threads_for(g.flops)
    return Plan(threads, gemm.partial_dw(g, threads))


def grad_w(dy, x, dw, db, g: ConvGeometry) -> None:
    """dw (K, C/groups, 1, 1) from dy (N, K, H, W) and x (N, C, H, W); db (K,) too unless None."""
    gemm.grad_w_with(grad_w_plan(g), dy, x, dw, db, g)
