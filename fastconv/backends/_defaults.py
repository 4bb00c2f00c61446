"""Which conv method a compiled backend prefers when nothing has been measured: facts both backends share.

auto times every method that applies; these rules pick each backend's default (what ``backend="numba"`` or
``"cython"`` runs) and mean the same thing in both.
"""

from __future__ import annotations

from fastconv._geometry import ConvGeometry

#: fewest channels per group (input and output) at which Winograd's GEMMs outweigh its transforms
WINOGRAD_MIN_CHANNELS = 16
#: fewest output pixels per image at which Winograd pays: below 16 x 16 the tiles' padding (a 7 x 7 map is
#: computed as 8 x 8, 30% wasted) and the per-tile transforms cost more than the saved multiplies (measured: at
#: 7x7 and 14x14 the GEMM method was faster at batch 1 and 8; at 28x28 Winograd was)
WINOGRAD_MIN_PIXELS = 16 * 16


def winograd_channels_pay(g: ConvGeometry) -> bool:
    """3x3 stride 1 with at least WINOGRAD_MIN_CHANNELS input and output channels per group."""
    return g.is_3x3_unit_stride and g.min_group_channels >= WINOGRAD_MIN_CHANNELS


def winograd_pays(g: ConvGeometry) -> bool:
    """winograd_channels_pay(g), on an output map of at least WINOGRAD_MIN_PIXELS pixels."""
    return winograd_channels_pay(g) and g.out_h * g.out_w >= WINOGRAD_MIN_PIXELS

#: most input channels per group at which the register-blocked direct convolution is the default on any map of at
#: least one run of pixels: measured against im2col + GEMM (float32, one thread, batch 1 and 8) it took 0.5-0.9x the
#: time from 1 to 64 channels per group (stems, LeNet, AlexNet's 5x5, strided and grouped 3x3, 5x5 at 32)
BLOCKED_DIRECT_MAX_CHANNELS = 64
#: fewest output pixels over the batch at which it is the default with more input channels per group: every call
#: re-lays all the weights, and each is then used once per output pixel. On the networks' 3x3 layers of 128-512
#: channels (two threads) it took 0.6-0.95x gemm's time from 169 pixels (13x13 at batch 1) on, and 1.1-1.6x on
#: 49 (7x7 at batch 1), where the GEMM's long inner dimension runs at its best
BLOCKED_DIRECT_MIN_PIXELS = 128


def blocked_direct_pays(g: ConvGeometry, pixel_run: int, channel_block: int) -> bool:
    """Output maps of at least one run of pixel_run pixels (runs go on across rows; on fewer pixels a run computes
    mostly padding, and re-laying the weights costs as much as the convolution: LeNet's 16 -> 120 5x5 on a 5x5 map,
    one output pixel, took 1.1-2.6x gemm's time), and at least BLOCKED_DIRECT_MIN_PIXELS over the batch with more
    than BLOCKED_DIRECT_MAX_CHANNELS input channels per group; groups of more than one input channel (or one group);
    blocks of channel_block output channels at least half filled (the micro-kernel computes every lane of a block:
    with AVX-512's 32-channel blocks, LeNet's 1 -> 6 5x5 at batch 8 took 2.2-2.8x gemm's time); not for 1x1
    kernels, whose im2col is at most a strided copy of x (ResNet-18's 64 -> 128 1x1 stride-2 downsampling took
    1.25-1.6x gemm's time at batch 1 and 8)."""
    blocks = -(-g.k_per_group // channel_block)
    pixels = g.out_h * g.out_w
    enough_pixels = g.c_per_group <= BLOCKED_DIRECT_MAX_CHANNELS or g.n * pixels >= BLOCKED_DIRECT_MIN_PIXELS
    return ((g.groups == 1 or g.c_per_group > 1) and g.r * g.s > 1 and pixels >= pixel_run and enough_pixels
            and 2 * g.k_per_group >= blocks * channel_block)
