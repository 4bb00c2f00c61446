"""Timing of candidate kernels on the real inputs, within a bounded budget."""

from __future__ import annotations

import math
import time
import warnings
from typing import Callable

#: seconds of timed repetitions shared by all candidates of one key (warm-up calls come on top)
BUDGET_S = 0.4
#: timed repetitions per candidate at most; the minimum is kept
MAX_REPEATS = 5
#: a candidate whose first timed call is this much slower than the best so far is not timed further
GIVE_UP_RATIO = 1.5


def fastest(calls: dict[str, Callable[[], object]]) -> tuple[str, dict[str, float], object]:
    """Time each zero-argument call and return (name of the fastest, best seconds per name, its result).

    A single call just runs once. Otherwise each call runs once untimed first (so numba compilation and
    first-touch allocations are excluded), then up to MAX_REPEATS timed times within its share of BUDGET_S.
    A call that raises is skipped with a warning; if every call raises, the first error propagates.
    """
    if len(calls) == 1:  # nothing to compare: run it once
        (name, call), = calls.items()
        start = time.perf_counter()
        result = call()
        return name, {name: time.perf_counter() - start}, result
    share = BUDGET_S / len(calls)
    best: dict[str, float] = {}
    results: dict[str, object] = {}
    first_error: Exception | None = None
    for name, call in calls.items():
        try:
            call()
            best[name], results[name] = _min_time(call, share, min(best.values(), default=math.inf))
        except Exception as exc:  # one failing candidate must not break auto; the others still run
            first_error = first_error or exc
            warnings.warn(f"fastconv auto: candidate {name!r} failed ({type(exc).__name__}: {exc}); skipped",
                          RuntimeWarning, stacklevel=3)
    if not best:
        raise first_error
    winner = min(best, key=best.get)
    return winner, best, results[winner]


def _min_time(call: Callable[[], object], share: float, best_so_far: float) -> tuple[float, object]:
    """Minimum seconds over timed calls: at least one, more while within share and competitive."""
    fastest_s, spent = math.inf, 0.0
    for _ in range(MAX_REPEATS):
        start = time.perf_counter()
        result = call()
        elapsed = time.perf_counter() - start
        fastest_s, spent = min(fastest_s, elapsed), spent + elapsed
        if spent + fastest_s > share or fastest_s > GIVE_UP_RATIO * best_so_far:
            break
    return fastest_s, result
