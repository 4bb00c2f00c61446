"""One thread budget for numba, OpenMP (the Cython extension) and BLAS.

Kernels ask ``get_num_threads()`` how wide to run their parallel loops. A kernel that parallelizes its own
loops calls BLAS single-threaded inside them (``blas_single_threaded``); a kernel that runs serially lets
BLAS use the whole budget.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys

from threadpoolctl import ThreadpoolController


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


_num_threads = _cores()


@functools.cache
def _controller() -> ThreadpoolController:
    """One scan of the loaded BLAS/OpenMP libraries (a scan costs ~1 ms; limiting through it ~20 us).

    scipy.linalg is imported first so that its OpenBLAS, which numba's np.dot and cython_blas call, is seen.
    """
    import scipy.linalg  # noqa: F401

    return ThreadpoolController()


#: work (flops, or window reads for pooling) below which waking one more thread does not pay: a parallel region
#: costs microseconds on an idle machine, and milliseconds while another pool's threads (numpy's OpenBLAS spins
#: for a while after every threaded matmul) still hold the other core
MIN_WORK_PER_THREAD = 1_000_000


def get_num_threads() -> int:
    """Threads fastconv's kernels may use (default: the cores this process may run on)."""
    return _num_threads


def threads_for(work: int) -> int:
    """Threads a kernel call with this much work should run: the budget, or fewer for small calls."""
    return max(1, min(_num_threads, work // MIN_WORK_PER_THREAD))


def set_num_threads(n: int) -> None:
    """Use n threads for numba's prange, the Cython extension's OpenMP loops and BLAS."""
    global _num_threads
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"set_num_threads: n must be a positive int, got {n!r}")
    _num_threads = n
    _controller().limit(limits=n, user_api="blas")
    if "numba" in sys.modules:
        sys.modules["numba"].set_num_threads(min(n, sys.modules["numba"].config.NUMBA_NUM_THREADS))


def blas_for(threads: int):
    """Context for a kernel whose own loop runs on `threads` threads and calls BLAS inside: BLAS single-threaded
    when the loop is parallel (no nested parallelism), untouched (the whole budget) when it is serial."""
    return blas_single_threaded() if threads > 1 else contextlib.nullcontext()


@contextlib.contextmanager
def blas_single_threaded():
    """BLAS limited to one thread for the duration, so that a kernel's own parallel loop owns the cores."""
    with _controller().limit(limits=1, user_api="blas"):
        yield


def blas_info() -> list[dict]:
    """What threadpoolctl sees: one entry per BLAS/OpenMP library loaded in this process."""
    return _controller().info()
