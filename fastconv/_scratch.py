"""Scratch memory kept between kernel calls: one arena per thread.

A kernel's scratch (im2col tiles, Winograd's transformed weights and blocks, partial sums) is allocated at every
call. Freed large blocks go back to the system (glibc trims its heap above a threshold and maps large blocks
afresh), so the next call faults the same memory in again, page by page: about 2 us per 4 KiB page where measured,
2.3 ms for two 4 MiB buffers, as long as a batch-1 convolution of 0.5 GFLOP on 2 cores takes.

Each thread keeps one arena, as large as the largest scratch it has needed (up to KEEP_BYTES), and carves every
call's buffers from it while no array of an earlier call views it (its reference count says so: every view of it
refers to it). The phases of a call, and the layers of a network, take turns in it, so a thread holds the scratch
of its largest call between calls, never more. Scratch allocated while the arena is in use (a call inside a
call) comes from np.empty, as before.
"""

from __future__ import annotations

import math
import sys
import threading
from dataclasses import dataclass

import numpy as np

#: most bytes of scratch a thread keeps between calls: a call that needs more allocates afresh
KEEP_BYTES = 64 << 20
#: least scratch worth an arena: malloc reuses smaller blocks from its free lists without faulting pages in
MIN_KEPT_BYTES = 64 << 10
#: alignment of each buffer in the arena (a cache line)
ALIGN = 64


class _Arena(threading.local):
    """This thread's arena (a 1-D uint8 array), or None."""

    buffer: np.ndarray | None = None


_arena = _Arena()


def _references_when_unused() -> int:
    """sys.getrefcount of an arena that nothing views, read as allocate() reads it."""
    probe = _Arena()
    probe.buffer = np.empty(1, np.uint8)
    return sys.getrefcount(probe.buffer)


_UNUSED = _references_when_unused()


@dataclass(frozen=True)
class Layout:
    """Where each buffer of a call's scratch lies in an arena: name -> (offset, shape, dtype), and the bytes."""

    places: dict[str, tuple[int, tuple[int, ...], np.dtype]]
    nbytes: int


def layout(buffers: dict[str, tuple[tuple[int, ...], np.dtype]]) -> Layout:
    """The buffers (name -> (shape, dtype)) one after the other, each at an offset that is a multiple of ALIGN."""
    places, offset = {}, 0
    for name, (shape, dtype) in buffers.items():
        places[name] = (offset, shape, np.dtype(dtype))
        offset += -(-math.prod(shape) * np.dtype(dtype).itemsize // ALIGN) * ALIGN
    return Layout(places, offset)


def allocate(scratch: Layout) -> dict[str, np.ndarray]:
    """Uninitialized arrays of the layout's shapes and dtypes, by name, as np.empty would make them: carved from
    this thread's arena when it is unused (grown if it is too small) and they take MIN_KEPT_BYTES to KEEP_BYTES."""
    in_use = _arena.buffer is not None and sys.getrefcount(_arena.buffer) != _UNUSED
    if in_use or not MIN_KEPT_BYTES <= scratch.nbytes <= KEEP_BYTES:
        return {name: np.empty(shape, dtype) for name, (_, shape, dtype) in scratch.places.items()}
    if _arena.buffer is None or _arena.buffer.nbytes < scratch.nbytes + ALIGN:
        _arena.buffer = None  # freed before its successor is allocated
        _arena.buffer = np.empty(scratch.nbytes + ALIGN, np.uint8)
    arena = _arena.buffer
    start = -arena.__array_interface__["data"][0] % ALIGN
    return {name: np.ndarray(shape, dtype, arena, start + offset)
            for name, (offset, shape, dtype) in scratch.places.items()}


def release() -> None:
    """Give this thread's arena back unless an array views it (the next call allocates its scratch afresh)."""
    if _arena.buffer is not None and sys.getrefcount(_arena.buffer) == _UNUSED:
        _arena.buffer = None


def kept_bytes() -> int:
    """Bytes of this thread's arena, in use or not."""
    return 0 if _arena.buffer is None else _arena.buffer.nbytes
