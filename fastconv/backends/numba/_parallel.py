"""Who owns the cores during one kernel call: numba's prange or BLAS, never both.

A kernel splits its work into ``chunks`` independent pieces run by ``prange``. With more than one chunk the
BLAS calls inside must be single-threaded; with one chunk the loop is serial and BLAS gets the whole budget.
"""

from __future__ import annotations

import contextlib
import functools

import numba

from fastconv._threads import get_num_threads


@functools.cache
def _blas_controller():
    """threadpoolctl's view of the loaded BLAS libraries, built once (building it costs ~1 ms).

    numba's np.dot calls scipy's OpenBLAS, so scipy's BLAS is imported before looking."""
    import scipy.linalg.cython_blas  # noqa: F401  (loads the library numba calls)
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def num_chunks(items: int) -> int:
    """How many parallel chunks to split ``items`` independent pieces into, and numba's thread count to match
    (numba's setting is per calling thread, so it is set on every call). With one chunk numba runs on the
    calling thread alone: idle numba workers would otherwise compete with BLAS's threads (measured 5x slower)."""
    chunks = max(1, min(get_num_threads(), numba.config.NUMBA_NUM_THREADS, items))
    numba.set_num_threads(chunks)
    return chunks


def blas_for(chunks: int):
    """Context for a kernel running ``chunks`` parallel chunks that call BLAS: single-threaded BLAS when the
    chunks run in parallel, the whole budget when there is one."""
    if chunks == 1:
        return contextlib.nullcontext()
    return _blas_controller().limit(limits=1, user_api="blas")


@numba.njit(cache=True)
def chunk_bounds(items: int, chunks: int, t: int) -> tuple[int, int]:
    """[start, stop) of chunk t when ``items`` are split into ``chunks`` contiguous, near-equal pieces."""
    return items * t // chunks, items * (t + 1) // chunks
