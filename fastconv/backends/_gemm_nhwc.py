"""Im2col + GEMM on channels-last arrays ("nhwc_gemm"), for every convolution: what both compiled backends share,
their kernels aside.

The output pixels are the rows p = (n*Ho + oh)*Wo + ow of y (P, K), P = N*Ho*Wo, and the filters are re-laid
once per call as (K, R, S, Cg). A tile of output pixels p0 <= p < p1 (across rows and images) and a group make

    columns (p1 - p0, R*S*Cg), row p: its R*S taps' slices x[n, oh*sh + r*dh - top, ow*sw + s*dw - left, group]
        of Cg contiguous channels, in (r, s) order, zeros in the padding
    forward:    y[p0:p1, group] = columns @ filters[group]^T + b[group]
    grad of w:  dw[group]^T (R*S*Cg, Kg) += columns^T @ dy[p0:p1, group]
    grad of x:  dcolumns = dy[p0:p1, group] @ filters[group], added into dx at the cells the columns read
    db = dy summed over its rows

where [group] picks the group's Kg output channels (of y, dy, filters) and Cg input channels (of x). A
single-channel image's columns are laid tap by tap instead (by_tap), as their transpose (R*S*Cg, p1 - p0), and
the grad of x then takes the filters as (R, S, Cg, K). A tile's columns take about TILE_BYTES. Each thread of the
parallel loop takes one chunk of the pixels and runs its tiles with single-threaded BLAS; the grad of w sums one
partial dw^T per thread. In the grad of x a chunk is whole images, so that no two threads add into one cell,
unless the batch has fewer images than threads: then the chunks split the pixels and each but the first adds
into its own zeroed copy of dx ("dx_parts"), summed afterwards.

A backend gives one kernel per pass, each taking the plan's buffers as ``scratch``:

    forward(x, filters, b, y, scratch, g, threads)   x (N, H, W, C), b (K,) or None -> y (N, Ho, Wo, K)
    grad_w(dy, x, scratch, g, threads)               dy (N, Ho, Wo, K) -> scratch["partial"] (threads, R*S*Cg, K)
    grad_x(dy, filters, dx, scratch, g, threads)     -> dx (N, H, W, C), and scratch["dx_parts"] if planned
    bias(dy, db, threads)                            -> db (K,), in double accumulators

numba's np.dot writes whole contiguous arrays only (cython's BLAS calls write blocks in place and accumulate):
with ``numba`` the plans add each thread's ``products`` tile (tile, Kg), through which go the GEMM results and dy
blocks of a layer with several groups, and its ``dw_tile`` (R*S*Cg, Kg), added into its partial dw^T.
"""

from __future__ import annotations

import functools
from typing import Callable

import numpy as np

from fastconv._geometry import ConvGeometry
from fastconv._threads import parallel_region, per_budget, threads_for
from fastconv.backends._defaults import winograd_pays
from fastconv.backends._nhwc import BLAS_INT_MAX
from fastconv.backends._protocol import Method, Plan

NAME = "nhwc_gemm"
#: bytes of one tile's columns (as the NCHW gemm methods' tiles: large enough for an efficient GEMM, small enough
#: to stay in L2/L3 between the fill and the GEMM)
TILE_BYTES = 1 << 20


def applies(g: ConvGeometry) -> bool:
    """Channels-last layers whose columns' rows and y's rows fit BLAS's 32-bit sizes."""
    return g.channels_last and max(g.r * g.s * g.c_per_group, g.k) <= BLAS_INT_MAX


def preferred(g: ConvGeometry) -> bool:
    """Whether it goes before the NCHW methods between transposes: everywhere but where nhwc_direct serves
    (depthwise) and where the NCHW default is Winograd."""
    return not (g.is_channelwise and g.groups > 1) and not winograd_pays(g)


def by_tap(g: ConvGeometry) -> bool:
    """Whether the columns are laid tap by tap, (R*S*Cg, pixels), each tap's row holding runs along output rows
    (read from x at a step of sw*C): for a single-channel image, whose pixel rows are R runs of only S values
    (MNIST's 5x5 layer ran its forward pass 1.5x slower on pixel rows)."""
    return g.c == 1


def _threads(g: ConvGeometry) -> int:
    """Threads of every pass: each takes a chunk of the output pixels."""
    return threads_for(g.flops, g.n * g.out_h * g.out_w)


def tile_pixels(g: ConvGeometry, threads: int) -> int:
    """Output pixels per tile: columns of about TILE_BYTES, at least one pixel, at most a thread's share."""
    row_bytes = g.r * g.s * g.c_per_group * g.dtype.itemsize
    return max(1, min(TILE_BYTES // row_bytes, -(-g.n * g.out_h * g.out_w // threads)))


def _tiles(g: ConvGeometry, threads: int, numba: bool) -> dict:
    """Each thread's columns, flat, and numba's products tile when there are several groups."""
    tile = tile_pixels(g, threads)
    buffers = {"columns": ((threads, tile * g.r * g.s * g.c_per_group), g.dtype)}
    if numba and g.groups > 1:
        buffers["products"] = ((threads, tile * g.k_per_group), g.dtype)
    return buffers


def _filters_shape(g: ConvGeometry, grad_x: bool = False) -> tuple[int, int, int, int]:
    """The re-laid filters: (K, R, S, Cg), or (R, S, Cg, K) for the grad of x by tap."""
    return (g.r, g.s, g.c_per_group, g.k) if grad_x and by_tap(g) else (g.k, g.r, g.s, g.c_per_group)


@per_budget
def forward_plan(g: ConvGeometry, *, numba: bool) -> Plan:
    """The re-laid filters and each thread's tiles."""
    threads = _threads(g)
    return Plan(threads, {"filters": (_filters_shape(g), g.dtype), **_tiles(g, threads, numba)})


@per_budget
def backward_plan(g: ConvGeometry, need_dx: bool = True, need_dw: bool = True, *, numba: bool) -> Plan:
    """Each thread's tiles; for dw its partial (and numba's dw tile); for dx the re-laid filters, and the copies
    of dx of all threads but the first when the batch has fewer images than threads."""
    threads = _threads(g)
    buffers = _tiles(g, threads, numba) if need_dx or need_dw else {}
    rsc = g.r * g.s * g.c_per_group
    if need_dw:
        buffers["partial"] = ((threads, rsc, g.k), g.dtype)
        if numba:
            buffers["dw_tile"] = ((threads, rsc, g.k_per_group), g.dtype)
    if need_dx:
        buffers["filters"] = (_filters_shape(g, grad_x=True), g.dtype)
        if g.n < threads:
            buffers["dx_parts"] = ((threads - 1, *g.x_array_shape), g.dtype)
    return Plan(threads, buffers)


def gemm_methods(forward_kernel: Callable, grad_w_kernel: Callable, grad_x_kernel: Callable, bias_kernel: Callable,
                 *, numba: bool) -> Callable[[str, object], list[Method]]:
    """A backend's channels_last_methods(op, g) from its kernels: "nhwc_gemm" where applies(g)."""

    def forward(x, w, b, g: ConvGeometry):
        """x (N, H, W, C), w (K, C/groups, R, S), b (K,) or None -> y (N, Ho, Wo, K)."""
        plan = forward_plan(g, numba=numba)
        scratch = plan.allocate()
        scratch["filters"][...] = w.transpose(0, 2, 3, 1)
        y = np.empty(g.y_array_shape, g.dtype)
        with parallel_region(plan.threads, blas_work=g.flops, numba=numba) as threads:
            forward_kernel(x, scratch["filters"], b, y, scratch, g, threads)
        return y

    def backward(dy, x, w, g: ConvGeometry, need_dx, need_dw, need_db):
        """dy (N, Ho, Wo, K) -> dx (N, H, W, C), dw (K, C/groups, R, S), db (K,); None where not needed."""
        plan = backward_plan(g, need_dx, need_dw, numba=numba)
        scratch = plan.allocate()
        dx = dw = db = None
        with parallel_region(plan.threads, blas_work=g.flops, numba=numba) as threads:
            if need_dw:
                grad_w_kernel(dy, x, scratch, g, threads)
                parts = scratch["partial"]
                for part in parts[1:]:
                    parts[0] += part
                dw = np.ascontiguousarray(parts[0].reshape(g.r, g.s, -1, g.k).transpose(3, 2, 0, 1))
            if need_dx:
                scratch["filters"][...] = w.transpose(2, 3, 1, 0) if by_tap(g) else w.transpose(0, 2, 3, 1)
                dx = np.empty(g.x_array_shape, g.dtype)
                grad_x_kernel(dy, scratch["filters"], dx, scratch, g, threads)
                for part in scratch.get("dx_parts", ()):
                    dx += part
            if need_db:
                db = np.empty(g.k, g.dtype)
                bias_kernel(dy, db, threads)
        return dx, dw, db

    table = {"conv2d_forward": Method(NAME, forward, functools.partial(forward_plan, numba=numba)),
             "conv2d_backward": Method(NAME, backward, functools.partial(backward_plan, numba=numba))}
    return lambda op, g: [table[op]] if op in table and applies(g) else []
