"""Who owns the cores during one kernel call: numba's prange or BLAS, never both.

A kernel splits its work into ``chunks`` independent pieces run by ``prange``. With more than one chunk the
BLAS calls inside must be single-threaded; with one chunk the loop is serial and BLAS gets the whole budget
(fastconv._threads.blas_for chooses which).
"""

from __future__ import annotations

import numba

from fastconv._geometry import ConvGeometry, PoolGeometry
from fastconv._threads import threads_for


def num_chunks(items: int, g: ConvGeometry | PoolGeometry) -> int:
    """How many parallel chunks to split ``items`` independent pieces of a call on g into, and numba's thread
    count to match (numba's setting is per calling thread, so it is set on every call). With one chunk numba runs
    on the calling thread alone: idle numba workers would otherwise compete with BLAS's threads (measured 5x
    slower)."""
    chunks = max(1, min(threads_for(g.work), numba.config.NUMBA_NUM_THREADS, items))
    numba.set_num_threads(chunks)
    return chunks


@numba.njit(cache=True)
def chunk_bounds(items: int, chunks: int, t: int) -> tuple[int, int]:
    """[start, stop) of chunk t when ``items`` are split into ``chunks`` contiguous, near-equal pieces."""
    return items * t // chunks, items * (t + 1) // chunks
