"""Winograd convolution for 3x3, stride-1, undilated layers (_winograd.pyx; Lavin & Gray 2016).

Forward F(2x2, 3x3): the weights are transformed once per call (u = G w G^T, ``weights``); each work item, a
block of tile rows over the batch (several images of a small map) and of the group's output channels, transforms
its input patches (B^T d B, ``inputs``), multiplies them by u in 16 GEMMs (``products``) and transforms the
products back into y. Grad of w F(3x3, 2x2): per block the 16 GEMMs of A dy A^T (``grads``) by B^T x B, summed in
the thread's ``partial`` M; dw = G^T M G of their sum.
"""

from __future__ import annotations

from fastconv._geometry import ConvGeometry
from fastconv._threads import parallel_region, per_budget, threads_for
from fastconv.backends._defaults import winograd_channels_pay, winograd_pays
from fastconv.backends._protocol import Plan
from fastconv.backends.cython_backend._levels import load
from fastconv.backends.cython_backend._reduce import grad_w_region
from fastconv.backends.cython_backend.gemm import channel_blocks

_winograd = load("_winograd")  # the kernels built for this CPU's instruction set

#: bytes of one thread's transformed input plus GEMM output in a block ...
WINOGRAD_BLOCK_BYTES = 1 << 20
#: ... unless that leaves fewer tiles than this (the image's, if it has fewer): a block's 16 GEMMs are this wide
#: and read all the weights, so narrower blocks run BLAS at a fraction of its rate (one tile row of VGG-16's
#: 512-channel 28x28 layer, 14 tiles, took 1.8x the time of blocks of 98)
WINOGRAD_MIN_TILES = 96
#: fewest output pixels over the batch at which this Winograd pays, forward and backward, on maps smaller than
#: winograd_pays' (13x13, 14x14 at batch 8: 0.5-0.8x the GEMM method's time on the AlexNet, ResNet-18 and VGG-16
#: layers; at batch 1 its backward took 1.2-1.7x gemm's)
BATCH_PIXELS = 1024
#: fewest output pixels per image at which its forward pays at any batch: since its blocks span images and split
#: channels, 13x13 and 14x14 maps at batch 1 took 0.65-0.95x the GEMM method's time (64 to 512 channels); 7x7
#: maps 1.1-1.9x up to batch 4 and about 1.0x at batch 8 (each 7x7 image is computed as 8x8)
FORWARD_MIN_PIXELS = 12 * 12


def applies(g: ConvGeometry) -> bool:
    return g.is_3x3_unit_stride


def preferred(g: ConvGeometry) -> bool:
    """Where Winograd pays forward and backward (_defaults.winograd_pays), or on smaller maps with enough channels
    and at least BATCH_PIXELS output pixels over the batch."""
    return winograd_pays(g) or (winograd_channels_pay(g) and g.n * g.out_h * g.out_w >= BATCH_PIXELS)


def forward_preferred(g: ConvGeometry) -> bool:
    """Where Winograd's forward pays: where preferred, or with enough channels on maps of at least
    FORWARD_MIN_PIXELS output pixels at any batch."""
    return preferred(g) or (winograd_channels_pay(g) and g.out_h * g.out_w >= FORWARD_MIN_PIXELS)


@per_budget
def _tiling(g: ConvGeometry) -> tuple[int, int, int]:
    """(tw, block_rows, channel_blocks): 2x2 tiles per row; tile rows per block, counted over the batch (a block
    spans images of a small map), its inputs and products about WINOGRAD_BLOCK_BYTES, or at least
    WINOGRAD_MIN_TILES tiles, the blocks as even as they can be; and blocks of each group's output channels, so
    that every thread has work when row blocks are few (gemm's channel_blocks)."""
    tw, rows = (g.out_w + 1) // 2, g.n * ((g.out_h + 1) // 2)
    row_bytes = 16 * (g.c_per_group + g.k_per_group) * tw * g.dtype.itemsize
    block_rows = min(rows, max(1, WINOGRAD_BLOCK_BYTES // row_bytes, -(-WINOGRAD_MIN_TILES // tw)))
    blocks = -(-rows // block_rows)
    return tw, -(-rows // blocks), channel_blocks(g, g.k_per_group, g.groups * blocks)


def _block_buffers(g: ConvGeometry, threads: int, forward: bool) -> dict:
    """Each thread's block: "inputs" B^T d B (16, C/groups, tiles), "products" U V (forward) or "grads" A dy A^T
    (16, block of K/groups, tiles), and "rows", the buffer the transforms work through row by row."""
    tw, block_rows, k_blocks = _tiling(g)
    tiles, channels = block_rows * tw, -(-g.k_per_group // k_blocks)
    input_rows = 4 * (2 * tw + 2)  # winograd_input_rows: four zero-padded input rows
    if forward:  # winograd_output_rows: A^T m as 8 rows of tw, then the 2 output rows of 2*tw
        second, rows = "products", max(input_rows, 8 * tw + 2 * 2 * tw)
    else:  # winograd_grad_rows: 4 rows of 2*tw
        second, rows = "grads", max(input_rows, 4 * 2 * tw)
    return {"inputs": ((threads, 16 * g.c_per_group * tiles), g.dtype),
            second: ((threads, 16 * channels * tiles), g.dtype),
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
        _winograd.transform_weights(w, u, threads)
        _winograd.forward(x, u, b, y, scratch["inputs"], scratch["products"], scratch["rows"], vars(g),
                          *_tiling(g)[1:], threads)


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
                         *_tiling(g)[1:], threads)
        _winograd.adjoint_weights(partial, dw, threads)
