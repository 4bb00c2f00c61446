"""The frame of a grad-of-w pass that sums per-thread partials: its scratch, its parallel region, and db."""

from __future__ import annotations

import contextlib

from fastconv._geometry import ConvGeometry
from fastconv._threads import parallel_region
from fastconv.backends._protocol import Plan
from fastconv.backends.cython_backend import _common


@contextlib.contextmanager
def grad_w_region(plan: Plan, dy, db, g: ConvGeometry):
    """Yields (scratch, threads): plan's buffers, "partial" zeroed if any (the kernels accumulate into it), inside the
    pass's parallel region, where db (K,) is summed from dy (N, K, Ho, Wo) first unless it is None."""
    scratch = plan.allocate()
    if "partial" in scratch:
        scratch["partial"][...] = 0
    with parallel_region(plan.threads, blas_work=g.flops) as threads:
        if db is not None:
            _common.bias_grad(dy, db, threads)
        yield scratch, threads
