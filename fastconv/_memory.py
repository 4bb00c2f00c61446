"""The one memory check: a MemoryError naming the bytes, before anything that large is allocated."""

from __future__ import annotations

import functools
import os


@functools.cache
def physical_memory() -> int | None:
    """Bytes of RAM on this machine, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def ensure_fits(needed: int, what: str) -> None:
    """MemoryError when ``needed`` bytes (Python integers: no overflow) exceed physical memory; ``what`` says
    who needs them, e.g. "conv2d" (its outputs) or "a kernel's scratch"."""
    limit = physical_memory()
    if limit is not None and needed > limit:
        raise MemoryError(f"{what}: needs {needed:,} bytes but the machine has {limit:,}; "
                          f"use a smaller batch or a backend with a smaller workspace")
