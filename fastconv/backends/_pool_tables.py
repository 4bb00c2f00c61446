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


#: (id(plan), g) -> (plan, its kept tables or None, the plan of the rest): what pool_scratch works out once per
#: plan and geometry (a few microseconds, a tenth of a batch-1 LeNet pooling call); the plan is held, so that its
#: id is not reused while the entry lives
_splits: dict = {}
#: entries at most; past it the dict starts afresh
MAX_SPLITS = 512


def pool_scratch(plan: Plan, g: PoolGeometry) -> dict[str, np.ndarray]:
    """plan's buffers (a new dict): its window tables filled and read-only (kept from an earlier call when small),
    the kernel's own scratch uninitialized. The tables come first, so that the temporaries of filling them are
    gone before the outputs are allocated."""
    key = (id(plan), g)
    split = _splits.get(key)
    if split is None or split[0] is not plan:
        if len(_splits) >= MAX_SPLITS:
            _splits.clear()
        split = _splits[key] = (plan, *_split(plan, g))
    _, kept, rest = split
    if kept is None:
        buffers = g.fill_tables(plan.allocate())
        freeze(buffers[name] for name in buffers if name in WINDOW_TABLES)
        return buffers
    return {**kept, **rest.allocate()} if rest.buffers else dict(kept)


def _split(plan: Plan, g: PoolGeometry) -> tuple[dict[str, np.ndarray] | None, Plan]:
    """(g's window tables that plan names, filled and kept, or None when too large to keep; the plan of the
    other buffers)."""
    tables = tuple((name, spec) for name, spec in plan.buffers.items() if name in WINDOW_TABLES)
    rest = Plan(plan.threads, {name: spec for name, spec in plan.buffers.items() if name not in WINDOW_TABLES})
    return _kept_tables(g, tables), rest


@functools.lru_cache(maxsize=256)
def _kept_tables(g: PoolGeometry, tables: tuple) -> dict[str, np.ndarray] | None:
    """The tables ((name, (shape, dtype)), ...) of g filled and read-only; None when they are too large to keep."""
    plan = Plan(1, dict(tables))
    if plan.nbytes > KEPT_TABLE_BYTES:
        return None
    filled = g.fill_tables(plan.allocate())
    freeze(filled.values())
    return filled


def freeze(tables) -> None:
    """Make each array read-only: kept tables are shared by every later call on their geometry."""
    for table in tables:
        table.flags.writeable = False
