"""The machine's float32 GEMM rate, measured in the same run as the benchmarks ("% of sgemm peak")."""

from __future__ import annotations

import time

import numpy as np


def sgemm_gflops(size: int = 2048, repeats: int = 5) -> float:
    """Best GFLOP/s of a (size x size) float32 matrix product through numpy's BLAS, after one warm-up."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((size, size), dtype=np.float32) for _ in range(2))
    out = np.empty((size, size), np.float32)
    np.dot(a, b, out=out)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        np.dot(a, b, out=out)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9
