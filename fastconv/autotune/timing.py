"""Timing of candidate kernels on the real inputs, within a bounded budget."""

from __future__ import annotations

import math
import time
import warnings
from typing import Callable

#: seconds of timed calls for one key, all candidates together (the warm-up calls come on top)
BUDGET_S = 0.4
#: timed rounds at most; the minimum per candidate is kept
MAX_REPEATS = 5
#: a candidate this much slower than the best after a round is not timed further
GIVE_UP_RATIO = 1.5


def fastest(calls: dict[str, Callable[[], object]]) -> tuple[str, dict[str, float], object]:
    """Time each zero-argument call and return (name of the fastest, best seconds per name, its result).

    A single call just runs once. Otherwise each call runs once untimed first (so numba compilation and
    first-touch allocations are excluded), then the calls are timed in rounds, one call each per round (so that
    a burst of load from other processes hits them alike), for up to MAX_REPEATS rounds within BUDGET_S;
    after a round, a call slower than GIVE_UP_RATIO times the best is not timed again. The minimum counts.
    A call that raises is skipped with a warning; if every call raises, the first error propagates.
    """
    if len(calls) == 1:  # nothing to compare: run it once
        (name, call), = calls.items()
        start = time.perf_counter()
        result = call()
        return name, {name: time.perf_counter() - start}, result
    errors: list[Exception] = []
    running = {name: call for name, call in calls.items() if _runs(name, call, errors)}
    if not running:
        raise errors[0]
    best = dict.fromkeys(running, math.inf)
    winner, result = next(iter(running)), None  # only the fastest call's result is kept, the others' freed at once
    spent = 0.0
    for _ in range(MAX_REPEATS):
        for name, call in running.items():
            start = time.perf_counter()
            output = call()
            elapsed = time.perf_counter() - start
            if elapsed < best[winner]:
                winner, result = name, output
            best[name], spent = min(best[name], elapsed), spent + elapsed
            del output
        running = {name: call for name, call in running.items() if best[name] <= GIVE_UP_RATIO * best[winner]}
        if spent + sum(best[name] for name in running) > BUDGET_S:
            break
    return winner, best, result


def _runs(name: str, call: Callable[[], object], errors: list[Exception]) -> bool:
    """Run call once untimed; False (with a warning, the error kept) when it raises."""
    try:
        call()
        return True
    except Exception as exc:  # one failing candidate must not break auto; the others still run
        errors.append(exc)
        warnings.warn(f"fastconv auto: candidate {name!r} failed ({type(exc).__name__}: {exc}); skipped",
                      RuntimeWarning, stacklevel=4)
        return False
