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


def allocate(buffers: dict[str, tuple[tuple[int, ...], np.dtype]]) -> dict[str, np.ndarray]:
    """Uninitialized arrays of the given shapes and dtypes, by name, as np.empty would make them: carved from this
    thread's arena when it is unused (grown if it is too small) and they take MIN_KEPT_BYTES to KEEP_BYTES."""
    sizes = {name: math.prod(shape) * np.dtype(dtype).itemsize for name, (shape, dtype) in buffers.items()}
    total = sum(-(-size // ALIGN) * ALIGN for size in sizes.values())
    in_use = _arena.buffer is not None and sys.getrefcount(_arena.buffer) != _UNUSED
    if in_use or not MIN_KEPT_BYTES <= total <= KEEP_BYTES:
        return {name: np.empty(shape, dtype) for name, (shape, dtype) in buffers.items()}
    if _arena.buffer is None or _arena.buffer.nbytes < total:
        _arena.buffer = None  # freed before its successor is allocated
        _arena.buffer = np.empty(total + ALIGN, np.uint8)
    start = -_arena.buffer.__array_interface__["data"][0] % ALIGN
    arrays = {}
    for name, (shape, dtype) in buffers.items():
        arrays[name] = _arena.buffer[start:start + sizes[name]].view(dtype).reshape(shape)
        start += -(-sizes[name] // ALIGN) * ALIGN
    return arrays


def release() -> None:
    """Give this thread's arena back unless an array views it (the next call allocates its scratch afresh)."""
    if _arena.buffer is not None and sys.getrefcount(_arena.buffer) == _UNUSED:
        _arena.buffer = None


def kept_bytes() -> int:
    """Bytes of this thread's arena, in use or not."""
    return 0 if _arena.buffer is None else _arena.buffer.nbytes
