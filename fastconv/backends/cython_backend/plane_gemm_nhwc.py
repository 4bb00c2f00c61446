"""The gemm backward on channels-last arrays of single-channel images ("nhwc_plane_gemm"): x (N, H, W, 1) and dx
are the same memory as their NCHW arrays, so only dy differs, and the GEMMs of gemm.py read it as it is, (N, Ho,
Wo, K), transposed inside the BLAS call, where the transposed method ("nchw:gemm") copies it into NCHW first (MNIST's
100 x 30 x 24 x 24 dy: 1.5 ms for the copy, as long as the gemm backward itself)."""

from __future__ import annotations

import numpy as np

from fastconv._geometry import ConvGeometry
from fastconv._threads import parallel_region, per_budget, threads_for
from fastconv.backends._protocol import Method, Plan
from fastconv.backends.cython_backend import gemm
from fastconv.backends.cython_backend._reduce import channels_last_bias_grad

NAME = "nhwc_plane_gemm"


def applies(g: ConvGeometry) -> bool:
    """Channels-last layers of single-channel images."""
    return g.channels_last and g.c == 1


@per_budget
def backward_plan(g: ConvGeometry, need_dx: bool = True, need_dw: bool = True) -> Plan:
    """gemm's grad of w (or db alone) and grad of x, one after the other."""
    first = gemm.grad_w_plan(g) if need_dw else Plan(threads_for(g.flops))
    return Plan.peak(first, gemm.grad_x_plan(g)) if need_dx else first


def backward(dy, x, w, g: ConvGeometry, need_dx, need_dw, need_db):
    """dy (N, Ho, Wo, K), x (N, H, W, 1), w (K, 1, R, S) -> dx (N, H, W, 1), dw (K, 1, R, S), db (K,); None where
    not needed."""
    dx = np.empty(g.x_array_shape, g.dtype) if need_dx else None
    dw = np.empty(g.w_shape, g.dtype) if need_dw else None
    db = np.empty(g.k, g.dtype) if need_db else None
    if need_dw:
        gemm.grad_w(dy, x.reshape(g.x_shape), dw, db, g)
    elif need_db:
        with parallel_region(backward_plan(g, need_dx, need_dw).threads) as threads:
            channels_last_bias_grad(dy, db, threads)
    if need_dx:
        gemm.grad_x(dy, w, dx.reshape(g.x_shape), g)
    return dx, dw, db


def channels_last_methods(op: str, g: ConvGeometry) -> list[Method]:
    """[nhwc_plane_gemm] for conv2d_backward where applies(g)."""
    return [Method(NAME, backward, backward_plan)] if op == "conv2d_backward" and applies(g) else []
