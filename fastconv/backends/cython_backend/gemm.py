"""im2col + GEMM convolution (_gemm.pyx), for every layer.

A work item is a tile of output rows of one image and one group, sized so that its im2col columns take about
COL_TILE_BYTES (at least MIN_TILE_COLUMNS; in the forward pass on small maps, whole images side by side), and a
block of the group's channels: when tiles are fewer than threads (batch 1, small maps) the channels are split into
blocks so that every thread has work. Forward: a thread copies the tile's taps into its row of ``columns`` and
multiplies the block's weights by them in one BLAS call, written in place into y (for a tile of several images,
into its row of ``products``, then copied into y); where channel blocks share fewer tiles than threads (batch 1,
one tile), the threads copy the tiles together and each tile's blocks share its columns. Grad of w: the same
columns times dy, summed in the thread's own ``partial`` dw, or, where that costs more than repeating the im2col
per block, each thread owning blocks of dw's rows over every image and tile. Grad of x: w^T times dy into
``columns``, scattered back into dx (col2im), per image, group and block of input channels.

The ``*_with`` functions run on a given plan: pointwise.py passes plans without ``columns``, and the kernels
then read x in place as the column matrix.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from fastconv._geometry import ConvGeometry
from fastconv._threads import parallel_region, per_budget, threads_for
from fastconv.backends._protocol import Plan
from fastconv.backends.cython_backend._levels import load
from fastconv.backends.cython_backend._reduce import grad_w_region

_gemm = load("_gemm")  # the kernels built for this CPU's instruction set

#: bytes of one thread's im2col tile (a tuning knob: large enough for an efficient GEMM, small enough for L2/L3) ...
COL_TILE_BYTES = 1 << 20
#: ... unless that leaves fewer columns than this (the image's, if it has fewer): every tile's GEMM packs all of
#: its weights again, so narrow tiles of a layer with many weights spend their time packing (VGG-16's 512-channel
#: 3x3 on a 14x14 map at batch 1: tiles of 56 columns took 1.2-1.35x the time of one 196-column tile per image)
MIN_TILE_COLUMNS = 192
#: work items per thread from which an uneven share (one item more for some threads) costs too little to split
#: the items' channels for
FEW_ITEMS = 4
#: BLAS takes 32-bit ints for sizes and strides
BLAS_INT_MAX = 2**31 - 1


def applies(g: ConvGeometry) -> bool:
    return True


@per_budget
def tile_rows(g: ConvGeometry) -> int:
    """Output rows per tile: its im2col columns take at most about COL_TILE_BYTES, or at least MIN_TILE_COLUMNS
    columns, the tiles of an image as even as they can be."""
    column_bytes = g.c_per_group * g.r * g.s * g.dtype.itemsize
    rows = max(1, COL_TILE_BYTES // (column_bytes * g.out_w), -(-MIN_TILE_COLUMNS // g.out_w))
    rows = min(g.out_h, rows)
    return -(-g.out_h // -(-g.out_h // rows))


@per_budget
def images_per_tile(g: ConvGeometry) -> int:
    """Whole images per forward tile: 1, or on maps of fewer than MIN_TILE_COLUMNS output pixels as many as give
    that many columns (the batch at most), the tiles as even as they can be. One GEMM per image would pack all
    the weights again for a few columns: ResNet-18's 512-channel 3x3 on a 7x7 map at batch 8 took 1.4x the time
    of tiles of four images."""
    pixels = g.out_h * g.out_w
    if pixels >= MIN_TILE_COLUMNS:
        return 1
    images = min(g.n, -(-MIN_TILE_COLUMNS // pixels))
    return -(-g.n // -(-g.n // images))


def _tiles(g: ConvGeometry, images: int = 1) -> int:
    """Tiles of tile_rows(g) output rows of `images` images over the batch and groups."""
    return -(-g.n // images) * g.groups * -(-g.out_h // tile_rows(g))


def channel_blocks(g: ConvGeometry, channels: int, items: int) -> int:
    """Blocks that each of the pass's work items (of images, groups and tiles) splits its `channels` (per group)
    into when the items are few, so that the threads get equal shares: items x blocks a multiple of the threads
    (3 tiles on 2 threads would leave one idle for a third of the call)."""
    threads = threads_for(g.flops)
    if items >= FEW_ITEMS * threads:
        return 1
    return max(1, min(channels, threads // math.gcd(items, threads)))


@per_budget
def owns_dw(g: ConvGeometry) -> bool:
    """Whether the grad of w gives each thread whole rows of dw (blocks of a group's output channels, over every
    image and tile, repeating their im2col per block) rather than per-thread partial dw summed at the end: when
    the partials (threads x dw) outweigh the repeated columns, as on small maps and at batch 1."""
    threads = threads_for(g.flops)
    repeats = channel_blocks(g, g.k_per_group, g.groups) - 1
    return threads == 1 or repeats == 0 or threads * g.k * g.c_per_group > repeats * g.n * g.c * g.out_h * g.out_w


def _columns(g: ConvGeometry, tiles: int, images: int = 1) -> dict:
    """`tiles` im2col (or col2im) tiles, one per thread or per shared tile: c/groups*r*s rows of
    images*tile_rows(g)*out_w columns each."""
    elements = g.c_per_group * g.r * g.s * images * tile_rows(g) * g.out_w
    return {"columns": ((tiles, elements), g.dtype)}


def _forward_channel_blocks(g: ConvGeometry, images: int) -> int:
    return channel_blocks(g, g.k_per_group, _tiles(g, images))


def partial_dw(g: ConvGeometry, threads: int) -> dict:
    """Each thread's sum of its tiles' dw (K, C/groups*R*S), added up into dw at the end; none when the threads
    own rows of dw."""
    if owns_dw(g):
        return {}
    return {"partial": ((threads, g.k, g.c_per_group * g.r * g.s), g.dtype)}


@functools.lru_cache(maxsize=256)
def _check_blas_sizes(g: ConvGeometry) -> None:
    largest = max(g.h * g.w, g.out_h * g.out_w, _columns(g, 1)["columns"][0][1])
    if largest > BLAS_INT_MAX:
        raise ValueError(f"cython backend: an image plane or tile of {largest:,} elements exceeds BLAS's 32-bit "
                         f"sizes; use backend='numba' or split the image")


@per_budget
def forward_plan(g: ConvGeometry) -> Plan:
    """An im2col tile per thread (per tile where channel blocks share fewer tiles than threads), and each
    thread's GEMM output for tiles of several images."""
    threads, images = threads_for(g.flops), images_per_tile(g)
    blocks, tiles = _forward_channel_blocks(g, images), _tiles(g, images)
    columns = _columns(g, tiles if blocks > 1 and tiles < threads else threads, images)
    if images == 1:
        return Plan(threads, columns)
    channels = -(-g.k_per_group // blocks)
    return Plan(threads, {**columns, "products": ((threads, channels * images * g.out_h * g.out_w), g.dtype)})


def forward(x, w, b, y, g: ConvGeometry) -> None:
    """y (N, K, Ho, Wo) = conv(x (N, C, H, W), w (K, C/groups, R, S)) + b ((K,) or None)."""
    forward_with(forward_plan(g), x, w, b, y, g, images_per_tile(g))


def forward_with(plan: Plan, x, w, b, y, g: ConvGeometry, images: int = 1) -> None:
    """forward on plan's scratch, by tiles of `images` images: im2col into its "columns", or x itself as the
    columns when it has none (images 1); tiles of several images write its "products"."""
    _check_blas_sizes(g)
    scratch = plan.allocate()
    with parallel_region(plan.threads, blas_work=g.flops) as threads:
        _gemm.forward(x, w, b, y, scratch.get("columns"), scratch.get("products"), vars(g), tile_rows(g), images,
                      _forward_channel_blocks(g, images), threads)


@per_budget
def grad_w_plan(g: ConvGeometry) -> Plan:
    """Each thread's im2col tile and partial dw (none where the threads own rows of dw)."""
    threads = threads_for(g.flops)
    return Plan(threads, {**_columns(g, threads), **partial_dw(g, threads)})


def grad_w(dy, x, dw, db, g: ConvGeometry) -> None:
    """dw (K, C/groups, R, S) from dy (N, K, Ho, Wo) and x (N, C, H, W); db (K,) too unless None. With
    g.channels_last, dy is (N, Ho, Wo, K), read in place (x's single-channel planes are NCHW either way)."""
    grad_w_with(grad_w_plan(g), dy, x, dw, db, g)


def grad_w_with(plan: Plan, dy, x, dw, db, g: ConvGeometry) -> None:
    """grad_w on plan's scratch ("partial" unless the threads own rows of dw, and "columns" unless x is its own
    column matrix)."""
    _check_blas_sizes(g)
    owned = owns_dw(g)
    items = g.groups if owned else _tiles(g)
    with grad_w_region(plan, dy, db, g) as (scratch, threads):
        partial = dw.reshape(1, g.k, -1) if owned else scratch["partial"]
        _gemm.grad_w(dy, x, partial, scratch.get("columns"), vars(g), tile_rows(g),
                     channel_blocks(g, g.k_per_group, items), owned, g.channels_last, threads)
    if not owned:
        np.sum(partial, axis=0, out=dw.reshape(partial.shape[1:]))


@per_budget
def grad_x_plan(g: ConvGeometry) -> Plan:
    """Each thread's GEMM output tile, which col2im scatters into dx."""
    threads = threads_for(g.flops)
    return Plan(threads, _columns(g, threads))


def grad_x(dy, w, dx, g: ConvGeometry) -> None:
    """dx (N, C, H, W) from dy (N, K, Ho, Wo) and w (K, C/groups, R, S); dy as in grad_w."""
    _check_blas_sizes(g)
    plan = grad_x_plan(g)
    scratch = plan.allocate()
    with parallel_region(plan.threads, blas_work=g.flops) as threads:
        _gemm.grad_x(dy, w, dx, scratch["columns"], vars(g), tile_rows(g),
                     channel_blocks(g, g.c_per_group, g.n * g.groups), g.channels_last, threads)
