"""The pooling kernels' window tables, filled from the geometry: kept per geometry when small, since filling them
(a few numpy calls) took about half of a batch-1 LeNet pooling call, and filled per call when large, where it is a
negligible share of the call and keeping them would hold memory. Either way the kernels get them read-only (numba
would compile its pooling kernels once per table type otherwise)."""

from __future__ import annotations

import functools

import numpy as np

from fastconv._geometry import PoolGeometry
from fastconv.backends._protocol import Plan

#: the plan buffers PoolGeometry.fill_tables fills
WINDOW_TABLES = frozenset({"window_rows", "window_cols", "divisor", "inverse_divisor", "row_window", "col_window",
                           "row_cover", "col_cover"})
#: window tables of at most this many bytes (together) are filled once per geometry and kept, read-only
KEPT_TABLE_BYTES = 64 * 1024


def pool_scratch(plan: Plan, g: PoolGeometry) -> dict[str, np.ndarray]:
    """plan's buffers (a new dict): its window tables filled and read-only (kept from an earlier call when small),
    the kernel's own scratch uninitialized. The tables come first, so that the temporaries of filling them are
    gone before the outputs are allocated."""
    tables = tuple((name, spec) for name, spec in plan.buffers.items() if name in WINDOW_TABLES)
    kept = _kept_tables(g, tables)
    if kept is None:
        buffers = g.fill_tables(plan.allocate())
        _freeze(buffers[name] for name, _ in tables)
        return buffers
    rest = Plan(plan.threads, {name: spec for name, spec in plan.buffers.items() if name not in kept})
    return {**kept, **rest.allocate()}


@functools.lru_cache(maxsize=256)
def _kept_tables(g: PoolGeometry, tables: tuple) -> dict[str, np.ndarray] | None:
    """The tables ((name, (shape, dtype)), ...) of g filled and read-only; None when they are too large to keep."""
    plan = Plan(1, dict(tables))
    if plan.nbytes > KEPT_TABLE_BYTES:
        return None
    filled = g.fill_tables(plan.allocate())
    _freeze(filled.values())
    return filled


def _freeze(tables) -> None:
    for table in tables:
        table.flags.writeable = False
