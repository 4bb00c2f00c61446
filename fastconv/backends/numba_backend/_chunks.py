"""How a kernel's prange splits its work (``chunks`` contiguous pieces, one per thread of its parallel region),
and how a chunk adds its share into its own accumulator."""

from __future__ import annotations

from numba import njit


@njit(cache=True)
def chunk_bounds(items: int, chunks: int, t: int) -> tuple[int, int]:
    """[start, stop) of chunk t when ``items`` are split into ``chunks`` contiguous, near-equal pieces."""
    return items * t // chunks, items * (t + 1) // chunks


@njit(cache=True, inline="always")
def add_into(total, part):
    """total += part for 2-D arrays of one shape, in place (numba's ``+=`` on a slice makes a temporary)."""
    for i in range(total.shape[0]):
        for j in range(total.shape[1]):
            total[i, j] += part[i, j]
