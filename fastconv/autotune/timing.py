"""Timing of candidate kernels on the real inputs, within a budget proportional to the call's own cost."""

from __future__ import annotations

import math
import time
import warnings
from typing import Callable

#: a measurement costs at most this many runs of the first candidate's call (warm-ups beyond a run aside) ...
BUDGET_RUNS = 5
#: ... and at most this many seconds
BUDGET_S = 0.25
#: candidates timed however long the calls (the budget counts from then on): the first two are the compiled
#: backends' own defaults, and on a heavy layer (a 0.3 s VGG-16 3x3 at batch 8) the second was 2.8x faster
MIN_TIMED = 2
#: timed rounds at most; the minimum per candidate is kept
MAX_REPEATS = 5
#: a candidate this much slower than the best after a round is not timed further
GIVE_UP_RATIO = 1.5
#: another candidate replaces the first (preferred) one only when at least this much faster: timing calls in
#: isolation flatters a method that will run between other kernels, and noise alone should not switch
SWITCH_RATIO = 0.9


def fastest(calls: dict[str, Callable[[], object]], warmed: frozenset[str] = frozenset()
            ) -> tuple[str, dict[str, float], object]:
    """Time the zero-argument calls, the preferred first, and return (name of the chosen, best seconds per name
    that was timed, the first result).

    In order, while the time spent stays within the budget (BUDGET_RUNS times the first call's time, at most
    BUDGET_S) or fewer than MIN_TIMED calls were timed, each call runs twice: a warm-up, counted in the budget at
    most as one run of the first call (a longer warm-up is compilation or first touches, which a process pays
    once), then a timed run; a call named in ``warmed`` (its method already ran in this process) runs once,
    timed. Then rounds of
    the calls still within GIVE_UP_RATIO of the best, one call each per round (so that a burst of load from
    other processes hits them alike), up to MAX_REPEATS timed runs while the budget lasts. The minimum counts,
    and the first call (the preferred) stays unless another is faster by SWITCH_RATIO. A call that raises is
    skipped with a warning; if every call raises, the first error propagates.
    """
    errors: list[Exception] = []
    best: dict[str, float] = {}
    result, first, budget, spent = None, math.inf, math.inf, 0.0
    for name, call in calls.items():
        if spent >= budget and len(best) >= MIN_TIMED:
            break
        try:
            warm_up = 0.0 if name in warmed else _timed(call)[0]
            elapsed, output = _timed(call)
        except Exception as exc:  # one failing candidate must not break auto; the others still run
            errors.append(exc)
            warnings.warn(f"fastconv auto: candidate {name!r} failed ({type(exc).__name__}: {exc}); skipped",
                          RuntimeWarning, stacklevel=3)
            continue
        if result is None:
            result, first = output, elapsed
            budget = min(BUDGET_S, BUDGET_RUNS * first)
        best[name], spent = elapsed, spent + min(warm_up, first) + elapsed
        del output
    if not best:
        raise errors[0]
    for _ in range(MAX_REPEATS - 1):
        winner = min(best, key=best.get)
        contenders = [name for name in best if best[name] <= GIVE_UP_RATIO * best[winner]]
        if len(contenders) < 2 or spent + sum(best[name] for name in contenders) > budget:
            break
        for name in contenders:
            elapsed = _timed(calls[name])[0]
            best[name], spent = min(best[name], elapsed), spent + elapsed
    preferred, fastest_name = next(iter(best)), min(best, key=best.get)
    return (fastest_name if best[fastest_name] < SWITCH_RATIO * best[preferred] else preferred), best, result


def _timed(call: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    output = call()
    return time.perf_counter() - start, output
