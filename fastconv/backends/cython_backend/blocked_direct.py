"""Register-blocked direct convolution (_blocked_direct.pyx), forward only: any kernel size, stride, dilation and
padding, groups of more than one input channel (or one group).

The weights are re-laid once per call into blocks of KB output channels (``weights``, the order the micro-kernel
reads them; where each block serves one work item, by that item, a chunk at a time); each work item, a block of
output rows of one image and one group and a chunk of its blocks of KB output channels, copies the rows of x its
windows read, one chunk of input channels at a time, into its thread's zero-padded ``bands`` row, and computes the
PB x KB outputs of each run of pixels in registers, the runs going on across the block's rows. No im2col matrix: it
wins where the GEMM's inner dimension C/groups*R*S is short, or its column matrix is many times the input (few input
channels, large or strided kernels). The same forward serves channels-last arrays (blocked_direct_nhwc).
"""

from __future__ import annotations

from fastconv._geometry import ConvGeometry
from fastconv._threads import get_num_threads, parallel_region, per_budget, threads_for
from fastconv.backends._protocol import Plan
from fastconv.backends.cython_backend._levels import load

_blocked_direct = load("_blocked_direct")  # the kernels built for this CPU's instruction set

#: bytes of one thread's band (a chunk of its group's input channels x the rows one block of output rows reads):
#: with a block's weights of that chunk it stays in the per-core L2 cache (512 KiB to 2 MiB on current x86-64 cores)
BAND_BYTES = 128 << 10
#: (input channel, kernel row, kernel column) taps of one chunk of input channels: a block's weights of one chunk
#: (CHUNK_TAPS x KB) are read by every run of a work item, 128 KiB for float32 with AVX-512 (64 KiB with AVX2), so
#: that they stay in L2 (measured on Zen 4 from 128 to 4096 taps: 128 took 1.1-1.2x the time of 512, 1024 0.95-0.98x,
#: 2048 and 4096 about the same as 1024; without chunks a 512-channel 3x3 at 14x14 took 1.6x)
CHUNK_TAPS = 1024
#: work items per thread, where the rows and channel blocks allow: a static schedule then balances to within a few
#: percent
ITEMS_PER_THREAD = 8
#: fewest runs of PB pixels in a block of rows, where the image has them: each block ends in runs of fewer pixels,
#: which waste up to a few of them; a small image's items are then chunks of its output channels
MIN_RUNS_PER_BLOCK = 4


def pixel_run() -> int:
    """PB, the output pixels the micro-kernel computes at once (for this instruction set)."""
    return _blocked_direct.pixel_run()


def channel_block(dtype) -> int:
    """KB, the output channels of one micro-kernel block for dtype (a numpy dtype; for this instruction set)."""
    return _blocked_direct.k_block(dtype.itemsize)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def applies(g: ConvGeometry) -> bool:
    """One group, or groups of several input channels (one-channel groups have direct and polyphase)."""
    return g.groups == 1 or g.c_per_group > 1


def _band_shape(g: ConvGeometry, block_rows: int) -> tuple[int, int]:
    """(rows, cols) of the band of x that block_rows output rows read."""
    rows = (block_rows - 1) * g.stride_h + (g.r - 1) * g.dilation_h + 1
    cols = (g.out_w - 1) * g.stride_w + (g.s - 1) * g.dilation_w + 1
    return rows, cols


@per_budget
def channel_chunk(g: ConvGeometry) -> int:
    """CC, the input channels of one chunk: CHUNK_TAPS taps, at least one channel, at most the group's."""
    return max(1, min(g.c_per_group, CHUNK_TAPS // (g.r * g.s)))


@per_budget
def work_items(g: ConvGeometry) -> tuple[int, int]:
    """(block_rows, channel_chunks): output rows and chunks of each group's blocks of KB output channels per work
    item. A band of one chunk of input channels within BAND_BYTES, blocks of at least MIN_RUNS_PER_BLOCK runs, and
    ITEMS_PER_THREAD items per thread where the rows and then the channel blocks allow."""
    first_rows, cols = _band_shape(g, 1)  # each further output row reads stride_h more
    band_rows = BAND_BYTES // (channel_chunk(g) * cols * g.dtype.itemsize)
    fitting = 1 + max(0, band_rows - first_rows) // g.stride_h
    wanted = ITEMS_PER_THREAD * get_num_threads()
    rows = max(_ceil_div(g.out_h, _ceil_div(wanted, g.n * g.groups)),
               _ceil_div(MIN_RUNS_PER_BLOCK * pixel_run(), g.out_w))
    rows = max(1, min(fitting, rows, g.out_h))
    rows = _ceil_div(g.out_h, _ceil_div(g.out_h, rows))  # the same blocks with their rows evened out
    blocks = g.n * g.groups * _ceil_div(g.out_h, rows)
    return rows, min(_ceil_div(wanted, blocks), _ceil_div(g.k_per_group, channel_block(g.dtype)))


@per_budget
def relays_per_item(g: ConvGeometry) -> bool:
    """Whether each work item re-lays the weights it reads, one block and one chunk of channels at a time, into its
    thread's buffer: where every block of weights is read by one item (one image, one block of rows), so that they
    are read from L2 just after they are re-laid instead of from memory after a pass over all of them (at batch 1
    on 7x7 maps: 0.87x the time with 512 -> 512 channels, 9.4 MB of weights; 0.96-1.03x from 64 -> 128 to
    256 -> 256)."""
    return g.n * _ceil_div(g.out_h, work_items(g)[0]) == 1


@per_budget
def forward_plan(g: ConvGeometry) -> Plan:
    """The re-laid weights: all of them (groups, K blocks, C/groups*R*S*KB), or where relays_per_item each thread's
    of one block and one chunk (threads, 1, CC*R*S*KB); and each thread's band of a chunk of channels."""
    rows, chunks = work_items(g)
    threads = threads_for(g.flops, g.n * g.groups * _ceil_div(g.out_h, rows) * chunks)
    kb = channel_block(g.dtype)
    band_rows, cols = _band_shape(g, rows)
    if relays_per_item(g):
        weights = (threads, 1, channel_chunk(g) * g.r * g.s * kb)
    else:
        weights = (g.groups, _ceil_div(g.k_per_group, kb), g.c_per_group * g.r * g.s * kb)
    return Plan(threads, {"weights": (weights, g.dtype),
                          "bands": ((threads, channel_chunk(g) * band_rows * cols), g.dtype)})


def forward(x, w, b, y, g: ConvGeometry) -> None:
    """y (N, K, Ho, Wo) = conv(x (N, C, H, W), w (K, C/groups, R, S)) + b ((K,) or None); with g.channels_last
    x (N, H, W, C) and y (N, Ho, Wo, K)."""
    plan = forward_plan(g)
    scratch = plan.allocate()
    with parallel_region(plan.threads) as threads:
        _blocked_direct.forward(x, w, b, y, scratch["weights"], scratch["bands"], *work_items(g), channel_chunk(g),
                                relays_per_item(g), vars(g), g.channels_last, threads)
