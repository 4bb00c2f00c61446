"""Reductions the cython methods share: the frame of a grad-of-w pass that sums per-thread partials (its scratch,
its parallel region, and db), and db of channels-last dy."""

from __future__ import annotations

import contextlib

import numpy as np

from fastconv._geometry import ConvGeometry
from fastconv._threads import parallel_region
from fastconv.backends._protocol import Plan
from fastconv.backends.cython_backend import _common
from fastconv.backends.cython_backend._levels import load

_nhwc = load("_nhwc")  # the kernels built for this CPU's instruction set


@contextlib.contextmanager
def grad_w_region(plan: Plan, dy, db, g: ConvGeometry):
    """Yields (scratch, threads): plan's buffers, "partial" zeroed if any (the kernels accumulate into it), inside the
    pass's parallel region, where db (K,) is summed from dy (N, K, Ho, Wo), or (N, Ho, Wo, K) with
    g.channels_last, first unless it is None."""
    scratch = plan.allocate()
    if "partial" in scratch:
        scratch["partial"][...] = 0
    with parallel_region(plan.threads, blas_work=g.flops) as threads:
        if db is not None:
            if g.channels_last:
                channels_last_bias_grad(dy, db, threads)
            else:
                _common.bias_grad(dy, db, threads)
        yield scratch, threads


def channels_last_bias_grad(dy: np.ndarray, db: np.ndarray, threads: int) -> None:
    """db (K,) = dy (N, Ho, Wo, K) summed over its pixels: one chunk of pixel rows per thread, in double."""
    _nhwc.channel_sums(dy.reshape(-1, db.shape[0]), np.empty((threads, db.shape[0])), db, threads)
