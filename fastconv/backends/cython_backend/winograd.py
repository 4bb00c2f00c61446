"""Winograd convolution for 3x3, stride-1, undilated layers (_winograd.pyx; Lavin & Gray 2016).

Forward F(2x2, 3x3): the weights are transformed once per call (u = G w G^T, ``weights``); each work item, a
block of tile rows of one image and one group, transforms its input patches (B^T d B, ``inputs``), multiplies
them by u in 16 GEMMs (``products``) and transforms the products back into y. Grad of w F(3x3, 2x2): per block
the 16 GEMMs of A dy A^T (``grads``) by B^T x B, summed in the thread's ``partial`` M; dw = G^T M G.
"""

from __future__ import annotations

import numpy as np

from fastconv._geometry import ConvGeometry
from fastconv._threads import parallel_region, per_budget, threads_for
from fastconv.backends._defaults import winograd_channels_pay, winograd_pays
from fastconv.backends._protocol import Plan
from fastconv.backends.cython_backend._levels import load
from fastconv.backends.cython_backend._reduce import grad_w_region

_winograd = load("_winograd")  # the kernels built for this CPU's instruction set

#: F(2x2, 3x3)'s weight transform G (4 x 3)
WINOGRAD_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
#: kron(G, G) (16 x 9) per dtype, [4a + b, 3i + j] = G[a, i] G[b, j]: G w G^T of every 3x3 kernel at once is
#: one matmul, and so is its adjoint G^T M G (exact in float32: the entries are 0, +-1/4, +-1/2, 1)
WINOGRAD_GG = {np.dtype(t): np.kron(WINOGRAD_G, WINOGRAD_G).astype(t) for t in (np.float32, np.float64)}
#: bytes of one thread's transformed input plus GEMM output in a block ...
WINOGRAD_BLOCK_BYTES = 1 << 20
#: ... unless that leaves fewer tiles than this (the image's, if it has fewer): a block's 16 GEMMs are this wide
#: and read all the weights, so narrower blocks run BLAS at a fraction of its rate (one tile row of VGG-16's
#: 512-channel 28x28 layer, 14 tiles, took 1.8x the time of blocks of 98)
WINOGRAD_MIN_TILES = 96
#: fewest output pixels over the batch at which this Winograd pays on maps smaller than winograd_pays' (13x13,
#: 14x14 at batch 8: 0.5-0.8x the GEMM method's time on the AlexNet, ResNet-18 and VGG-16 layers; 7x7 at batch 8
#: and 13x13, 14x14 at batch 1: 1.3-1.9x)
BATCH_PIXELS = 1024


def applies(g: ConvGeometry) -> bool:
    return g.is_3x3_unit_stride


def preferred(g: ConvGeometry) -> bool:
    """Where Winograd pays (_defaults.winograd_pays), or on smaller maps with enough channels and at least
    BATCH_PIXELS output pixels over the batch."""
    return winograd_pays(g) or (winograd_channels_pay(g) and g.n * g.out_h * g.out_w >= BATCH_PIXELS)


def _tiling(g: ConvGeometry) -> tuple[int, int]:
    """(tw, block_rows): 2x2 tiles per row, and tile rows per block: its inputs and products about
    WINOGRAD_BLOCK_BYTES, or at least WINOGRAD_MIN_TILES tiles, but blocks enough for every thread when the
    image has the tile rows (batch 1); the blocks of an image as even as they can be."""
    tw, th = (g.out_w + 1) // 2, (g.out_h + 1) // 2
    row_bytes = 16 * (g.c_per_group + g.k_per_group) * tw * g.dtype.itemsize
    rows = max(1, WINOGRAD_BLOCK_BYTES // row_bytes, -(-WINOGRAD_MIN_TILES // tw))
    blocks_per_image = -(-threads_for(g.flops) // (g.n * g.groups))
    rows = min(rows, -(-th // blocks_per_image))
    return tw, -(-th // -(-th // rows))


def _block_buffers(g: ConvGeometry, threads: int, forward: bool) -> dict:
    """Each thread's block: "inputs" B^T d B (16, C/groups, tiles), "products" U V (forward) or "grads" A dy A^T
    (16, K/groups, tiles), and "rows", the buffer the transforms work through row by row."""
    tw, block_rows = _tiling(g)
    tiles = block_rows * tw
    input_rows = 4 * (2 * tw + 2)  # winograd_input_rows: four zero-padded input rows
    if forward:  # winograd_output_rows: A^T m as 8 rows of tw, then the 2 output rows of 2*tw
        second, rows = "products", max(input_rows, 8 * tw + 2 * 2 * tw)
    else:  # winograd_grad_rows: 4 rows of 2*tw
        second, rows = "grads", max(input_rows, 4 * 2 * tw)
    return {"inputs": ((threads, 16 * g.c_per_group * tiles), g.dtype),
            second: ((threads, 16 * g.k_per_group * tiles), g.dtype),
            "rows": ((threads, rows), g.dtype)}


@per_budget
def forward_plan(g: ConvGeometry) -> Plan:
    """u (groups, 16, K/groups, C/groups), and each thread's block."""
    threads = threads_for(g.flops)
    return Plan(threads, {"weights": ((g.groups, 16, g.k_per_group, g.c_per_group), g.dtype),
                          **_block_buffers(g, threads, forward=True)})


def forward(x, w, b, y, g: ConvGeometry) -> None:
    """y (N, K, Ho, Wo) = conv(x (N, C, H, W), w (K, C/groups, 3, 3)) + b ((K,) or None)."""
    plan = forward_plan(g)
    scratch = plan.allocate()
    u = scratch["weights"]
    with parallel_region(plan.threads, blas_work=g.flops) as threads:
        np.matmul(WINOGRAD_GG[g.dtype], w.reshape(g.groups, -1, 9).transpose(0, 2, 1),
                  out=u.reshape(g.groups, 16, -1))
        _winograd.forward(x, u, b, y, scratch["inputs"], scratch["products"], scratch["rows"], vars(g),
                          _tiling(g)[1], threads)


@per_budget
def grad_w_plan(g: ConvGeometry) -> Plan:
    """Each thread's M (groups, 16, K/groups, C/groups) and block."""
    threads = threads_for(g.flops)
    return Plan(threads, {"partial": ((threads, g.groups, 16, g.k_per_group, g.c_per_group), g.dtype),
                          **_block_buffers(g, threads, forward=False)})


def grad_w(dy, x, dw, db, g: ConvGeometry) -> None:
    """dw (K, C/groups, 3, 3) from dy (N, K, Ho, Wo) and x (N, C, H, W); db (K,) too unless None."""
    with grad_w_region(grad_w_plan(g), dy, db, g) as (scratch, threads):
        partial = scratch["partial"]
        _winograd.grad_w(dy, x, partial, scratch["inputs"], scratch["grads"], scratch["rows"], vars(g),
                         _tiling(g)[1], threads)
        m = partial[0]
        for other in partial[1:]:
            m += other
        np.matmul(m.reshape(g.groups, 16, -1).transpose(0, 2, 1), WINOGRAD_GG[g.dtype],
                  out=dw.reshape(g.groups, -1, 9))
