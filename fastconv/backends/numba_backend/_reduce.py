"""db of channels-last dy for the numba methods that take it apart (as cython_backend._reduce)."""

from __future__ import annotations

import numpy as np
from numba import float64, prange

from fastconv.backends.numba_backend._chunks import chunk_bounds
from fastconv.backends.numba_backend._parallel import parallel_kernel

#: rows per tile of _channel_sums: summed in the array's dtype (four partial sums per channel, sixteen rows to a
#: chain), added in double per tile
SUM_ROWS = 64


@parallel_kernel()
def _channel_sums(rows, parts):
    """parts[t] (K,) = the column sums of chunk t of rows (P, K), one chunk per thread, SUM_ROWS rows at a time;
    four partial sums per channel (rows p % 4) are independent chains of adds, where one chain waits on every add."""
    pixels, k = rows.shape
    chunks = parts.shape[0]
    for t in prange(chunks):
        first, stop = chunk_bounds(pixels, chunks, t)
        acc = np.zeros((4, k), rows.dtype)
        parts[t, :] = 0
        for tile in range(first, stop, SUM_ROWS):
            end = min(tile + SUM_ROWS, stop)
            acc[:, :] = 0
            p = tile
            while p + 4 <= end:
                for j in range(k):
                    acc[0, j] += rows[p, j]
                    acc[1, j] += rows[p + 1, j]
                    acc[2, j] += rows[p + 2, j]
                    acc[3, j] += rows[p + 3, j]
                p += 4
            for q in range(p, end):
                for j in range(k):
                    acc[0, j] += rows[q, j]
            for j in range(k):
                parts[t, j] += (float64(acc[0, j]) + float64(acc[1, j])) + (float64(acc[2, j]) + float64(acc[3, j]))


def channels_last_bias_grad(dy: np.ndarray, db: np.ndarray, threads: int) -> None:
    """db (K,) = dy (N, Ho, Wo, K) summed over its pixels: one chunk of pixel rows per thread, in double."""
    parts = np.empty((threads, db.shape[0]))
    _channel_sums(dy.reshape(-1, db.shape[0]), parts)
    db[...] = parts.sum(axis=0)
