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


def winograd_pays(g: ConvGeometry) -> bool:
    """3x3 stride 1 with at least WINOGRAD_MIN_CHANNELS input and output channels per group, on an output map of
    at least WINOGRAD_MIN_PIXELS pixels."""
    return (g.is_3x3_unit_stride and g.min_group_channels >= WINOGRAD_MIN_CHANNELS
            and g.out_h * g.out_w >= WINOGRAD_MIN_PIXELS)
