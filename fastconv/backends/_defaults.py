"""Which conv method a compiled backend prefers when nothing has been measured: facts both backends share.

auto times every method that applies; these rules pick each backend's default (what ``backend="numba"`` or
``"cython"`` runs) and mean the same thing in both.
"""

from __future__ import annotations

from fastconv._geometry import ConvGeometry

#: fewest channels per group (input and output) at which Winograd's GEMMs outweigh its transforms
WINOGRAD_MIN_CHANNELS = 16


def winograd_pays(g: ConvGeometry) -> bool:
    """3x3 stride 1 with at least WINOGRAD_MIN_CHANNELS input and output channels per group."""
    return g.is_3x3_unit_stride and g.min_group_channels >= WINOGRAD_MIN_CHANNELS
