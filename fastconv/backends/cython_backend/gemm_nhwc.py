"""Im2col + GEMM on channels-last arrays (_gemm_nhwc.pyx): the kernels behind fastconv.backends._gemm_nhwc (see
there for the method). BLAS writes each group's block of y in place and adds into the partial dw, so the columns
are the only tiles."""

from __future__ import annotations

from fastconv._geometry import ConvGeometry
from fastconv.backends._gemm_nhwc import by_tap, gemm_methods, preferred
from fastconv.backends.cython_backend._levels import load
from fastconv.backends.cython_backend._reduce import channels_last_bias_grad

_gemm_nhwc = load("_gemm_nhwc")  # the kernels built for this CPU's instruction set


def _forward(x, filters, bias, y, scratch, g: ConvGeometry, threads: int) -> None:
    _gemm_nhwc.forward(x, filters, bias, y.reshape(-1, g.k), scratch["columns"], vars(g), by_tap(g), threads)


def _grad_w(dy, x, scratch, g: ConvGeometry, threads: int) -> None:
    _gemm_nhwc.grad_w(dy.reshape(-1, g.k), x, scratch["partial"], scratch["columns"], vars(g), by_tap(g), threads)


def _grad_x(dy, filters, dx, scratch, g: ConvGeometry, threads: int) -> None:
    _gemm_nhwc.grad_x(dy.reshape(-1, g.k), filters, dx, scratch.get("dx_parts"), scratch["columns"], vars(g),
                      by_tap(g), threads)


channels_last_default = preferred
channels_last_methods = gemm_methods(_forward, _grad_w, _grad_x, channels_last_bias_grad, numba=False)
