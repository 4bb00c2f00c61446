"""Winograd F(4x4, 3x3) on channels-last arrays ("nhwc_winograd", 3x3, stride 1, dilation 1, groups 1): what both
compiled backends share, their kernels aside.

The maths of fastconv.backends._winograd, with the channels as the vector dimension. Tile q = (n, ti, tj) reads
the 6 x 6 input patch d[a, b, :] = x[n, 4ti + a - pad_top, 4tj + b - pad_left, :] (zero outside x, never
materialized) and writes the 4 x 4 output pixels y[n, 4ti + i, 4tj + j, :] (clipped to y). With p = (a, b):

    V[p, k, c] = (G w[k, c] G^T)[p]                          once per call (weight_transform)
    U[p, q, :] = (BT d BT^T)[p]                               per tile, C channels at once
    M[p, q, :] = U[p, q, :] @ V[p]^T                          36 GEMMs (tiles x C) @ (C x K) per block
    y tile     = AT M[:, q, :] AT^T + b                       per tile, K channels at once

so every transform step adds whole runs of C (or K) contiguous channels, and the GEMMs read U and write M as
row-major (tiles x C) and (tiles x K) matrices. Blocks of consecutive tiles (across tile rows and images) are
transformed, multiplied and transformed back while they are in cache; blocks run in parallel with
single-threaded BLAS inside. Tiles whose patch lies inside x read it in place and tiles whose output lies inside
y write it in place; border tiles go through a zero-padded patch or an output tile buffer. The kernels share one
signature:

    kernel(x (N*H*W*C,), v (36, K, C), bias (K,), y (N*Ho*Wo*K,), n, h, w, out_h, out_w, pad_top, pad_left,
           block_tiles, u, mm, patch, half, tile_out)

with the per-chunk buffers of forward_plan, one chunk per thread. Plane p of U holds U[p, q, :] at
u[p*(block_tiles*C + SKEW) + q*C] (M likewise with K).

The grad of x at stride 1 is this forward convolution on the rotated geometry; the grad of w is the backend's
NCHW default's, on transposed copies of x and dy (one function, grad_w, until a native channels-last one).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from fastconv._geometry import ConvGeometry
from fastconv._layout import moves
from fastconv._threads import parallel_region, per_budget, threads_for
from fastconv.backends._protocol import Method, Plan
from fastconv.backends._winograd import SKEW, weight_transform

NAME = "nhwc_winograd"
#: m of F(m x m, 3x3): 4, as for NCHW (its float32 error is within the tolerance); alpha = m + 2
M, ALPHA = 4, 6
#: bytes of one block's U and M together (36 (C + K) values per tile), and its tiles at least and at most: the
#: GEMMs' rows matter more than L2 (measured, 1 thread, float32: 256 tiles a block took 0.76-0.92x the time of 64
#: on resnet_3x3, vgg_3x3 and 256 channels at 14x14, the blocks then 4.7-19 MB), within the last-level cache
BLOCK_BYTES = 8 << 20
MIN_BLOCK_TILES, MAX_BLOCK_TILES = 32, 256
#: fewest tiles for which NCHW arrays are offered the method (measured at batch 8, 2 threads: 128 tiles of 13x13
#: and 14x14 maps with 256-512 channels ran in 0.4-0.8x the GEMM method's time with the transposes; 32 tiles of
#: 7x7 maps took 3x)
MIN_LENT_TILES = 64
#: the per-chunk buffers, in the kernels' argument order
CHUNK_BUFFERS = ("u", "mm", "patch", "half", "tile_out")


def applies(g: ConvGeometry) -> bool:
    """Channels-last 3x3, stride-1, dilation-1, ungrouped layers."""
    return g.channels_last and g.is_3x3_unit_stride and g.groups == 1


def backward_applies(g: ConvGeometry) -> bool:
    """Where applies, with no side padded by more than 2 (the rotated geometry's padding, 2 - pad, is not negative)."""
    return applies(g) and max(g.pad_top, g.pad_bottom, g.pad_left, g.pad_right) <= 2


def serves_channels_first(op: str, g: ConvGeometry) -> bool:
    """Whether the forward method is worth offering to NCHW arrays, between transposes: where it applies to g's
    channels-last twin with at least MIN_LENT_TILES tiles, so that its GEMMs have rows enough to outweigh reading
    the transformed filters (36 K C values). auto measures it against the NCHW methods."""
    return op == "conv2d_forward" and not g.channels_last and applies(g.nhwc) and _tiles(g) >= MIN_LENT_TILES


def _tiles(g: ConvGeometry) -> int:
    return g.n * -(-g.out_h // M) * -(-g.out_w // M)


def blocking(g: ConvGeometry, threads: int) -> tuple[int, int]:
    """(tiles per block, parallel chunks): blocks of about BLOCK_BYTES, as equal as possible, their count a
    multiple of the chunks so that every thread gets the same work."""
    per_tile = ALPHA * ALPHA * (g.c + g.k) * g.dtype.itemsize
    most = min(max(BLOCK_BYTES // max(per_tile, 1), MIN_BLOCK_TILES), MAX_BLOCK_TILES)
    tiles = _tiles(g)
    blocks = -(-tiles // most)
    chunks = max(1, min(threads, blocks))
    blocks = -(-blocks // chunks) * chunks
    return -(-tiles // blocks), chunks


@per_budget
def forward_plan(g: ConvGeometry) -> Plan:
    """V (36, K, C), and per chunk a block's U and M planes (36 of block_tiles x C or K, SKEW apart), a
    zero-padded patch (36 x C), the transforms' half-way rows (36 x max(C, K)) and an output tile (16 x K)."""
    block_tiles, chunks = blocking(g, threads_for(g.flops, _tiles(g)))
    alpha2 = ALPHA * ALPHA
    per_chunk = {"u": alpha2 * (block_tiles * g.c + SKEW), "mm": alpha2 * (block_tiles * g.k + SKEW),
                 "patch": alpha2 * g.c, "half": alpha2 * max(g.c, g.k), "tile_out": M * M * g.k}
    buffers = {name: ((chunks, per_chunk[name]), g.dtype) for name in CHUNK_BUFFERS}
    return Plan(chunks, {"v": ((alpha2, g.k, g.c), g.dtype), **buffers})


def winograd_methods(kernel: Callable, conv, bias_kernel: Callable, *, numba: bool
                     ) -> Callable[[str, object], list[Method]]:
    """A backend's channels_last_methods(op, g): "nhwc_winograd" forward where applies(g) and backward where
    backward_applies(g), from its kernel (see the module docstring), its conv module (whose NCHW default
    backward method gives dw) and its db of channels-last dy (bias_kernel(dy, db, threads))."""

    def forward(x, w, b, g: ConvGeometry):
        """x (N, H, W, C), w (K, C, 3, 3), b (K,) or None -> y (N, Ho, Wo, K)."""
        plan = forward_plan(g)
        scratch = plan.allocate()
        block_tiles = blocking(g, plan.threads)[0]
        bias = np.zeros(g.k, g.dtype) if b is None else b
        y = np.empty(g.y_array_shape, g.dtype)
        # the weight transform's thin GEMM inside the region too, on single-threaded BLAS (as for NCHW)
        with parallel_region(plan.threads, blas_work=g.flops, numba=numba):
            v = weight_transform(w, M, scratch["v"])
            kernel(x.reshape(-1), v, bias, y.reshape(-1), g.n, g.h, g.w, g.out_h, g.out_w, g.pad_top, g.pad_left,
                   block_tiles, *(scratch[name] for name in CHUNK_BUFFERS))
        return y

    def grad_w_plan(g: ConvGeometry) -> Plan:
        """The NCHW copies of dy and x, alive while the NCHW default's grad of w runs."""
        inner = conv.backward_methods(g.nchw).chosen.plan(g.nchw, False, True)
        copies = {"nchw_dy": (g.y_shape, g.dtype), "nchw_x": (g.x_shape, g.dtype)}
        return inner.holding({name: buffer for name, buffer in copies.items() if moves(buffer[0])})

    def grad_w(dy, x, w, g: ConvGeometry) -> np.ndarray:
        """dy (N, Ho, Wo, K), x (N, H, W, C) -> dw (K, C, 3, 3) by the NCHW default's grad of w on transposed
        copies."""
        from fastconv._transpose import to_channels_first  # numba's kernel, as in _channels_last

        method = conv.backward_methods(g.nchw).chosen
        return method.run(to_channels_first(dy), to_channels_first(x), w, g.nchw, False, True, False)[1]

    def backward_plan(g: ConvGeometry, need_dx: bool = True, need_dw: bool = True) -> Plan:
        """The grad of w's phase, then the grad of x's: the rotated kernel and the rotated forward's scratch."""
        phases = [grad_w_plan(g)] if need_dw else []
        if need_dx:
            forward_scratch = forward_plan(g.rotated())
            kernel_buffer = ((g.c, g.k, g.r, g.s), g.dtype)
            phases.append(Plan(forward_scratch.threads, {"rotated_kernel": kernel_buffer, **forward_scratch.buffers}))
        return Plan.peak(*phases) if phases else Plan(1)

    def backward(dy, x, w, g: ConvGeometry, need_dx, need_dw, need_db):
        """dy (N, Ho, Wo, K) -> dx (N, H, W, C), dw (K, C, 3, 3), db (K,); None where not needed."""
        dw = grad_w(dy, x, w, g) if need_dw else None
        dx = forward(dy, g.rotate_kernel(w), None, g.rotated()) if need_dx else None
        db = None
        if need_db:
            db = np.empty(g.k, g.dtype)
            with parallel_region(threads_for(dy.size, g.n * g.out_h), numba=numba) as threads:
                bias_kernel(dy, db, threads)
        return dx, dw, db

    forward_method, backward_method = Method(NAME, forward, forward_plan), Method(NAME, backward, backward_plan)

    def channels_last_methods(op: str, g: ConvGeometry) -> list[Method]:
        if op == "conv2d_forward" and applies(g):
            return [forward_method]
        if op == "conv2d_backward" and backward_applies(g):
            return [backward_method]
        return []

    return channels_last_methods
