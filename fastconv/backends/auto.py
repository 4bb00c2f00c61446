"""The "auto" backend: for each (op, geometry, dtype, threads[, need flags]) the fastest compiled kernel.

Candidates are the methods (``methods(op, g)``, see fastconv.backends._protocol) of the available backends
among CANDIDATE_BACKENDS (never naive), named "backend:method". Decisions are per bucket of nearby geometries
(cache.decision_key: batch and spatial sizes bucketed) and cost at most a few calls' worth: a call expected to
be tiny runs the heuristic's choice and is never timed; a bucket's first calls run the heuristic's choice too,
and on its MEASURE_ON_VISIT-th call the candidates run on the real inputs within a budget proportional to the
call (fastconv.autotune.timing). The fastest is kept and cached in memory and on disk
(fastconv.autotune.cache); a cached decision is reused while the candidates are the same. A measurement that
switches away from the heuristic's choice is put on trial where the workload runs it: its next TRIAL_CALLS calls
are timed, and if none was as fast as the heuristic's choice was on the same geometry in the same workload (timed
while the bucket was pending), the heuristic's choice is kept after all.
With autotuning off (fastconv.set_autotune(False) or FASTCONV_AUTOTUNE=0) the first available backend in
CANDIDATE_BACKENDS' order runs, with its own default method. A candidate whose scratch does not fit in memory
raises MemoryError from its plan and is skipped.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import threading
import time
from typing import Callable

from fastconv import _backend
from fastconv._threads import get_num_threads
from fastconv.autotune import autotune_enabled, cache, timing
from fastconv.backends._protocol import Method, Methods

#: backends auto chooses from, in the order of the heuristic's preference: the compiled ones, as the public
#: contract says; im2col never won a benchmark row against them, and as a candidate it only gave noisy
#: measurements a way to go wrong
CANDIDATE_BACKENDS = ("cython", "numba")

#: (op, g, flags, threads, autotuning) -> (candidate name, kernel): the per-call fast path, forgotten whole
#: when it reaches MEMO_SIZE entries (a workload of ever-new shapes must not grow it without bound)
_resolved: dict[tuple, tuple[str, Callable]] = {}
MEMO_SIZE = 4096
#: decision key (a bucket) -> calls seen while undecided, bounded like _resolved
_visits: dict[str, int] = {}
#: the per-call path of an undecided bucket: fast key -> (decision key, the heuristic's kernel), bounded likewise
_pending: dict[tuple, tuple[str, Callable]] = {}

#: a bucket is measured on its MEASURE_ON_VISIT-th call (before, the heuristic's choice runs): shapes that come
#: a few times never pay for measuring, and a measurement (at most timing.BUDGET_RUNS calls' worth) costs at most a
#: third of the bucket's calls so far (measured on the workloads: 8 made a short training epoch 1.2x the fixed
#: backend in a fresh cache, 16 about 1.03x)
MEASURE_ON_VISIT = 16
#: calls expected (expected_seconds) to take less than this are never measured: the heuristic's choice runs
TINY_S = 0.5e-3
#: the cost model's rates: lower than any kernel reaches on a large layer, so that it errs towards measuring
FLOPS_PER_SECOND = 20e9
READS_PER_SECOND = 2e9
#: calls of a measured winner (when it is not the heuristic's choice) timed where the workload runs it, before the
#: switch is kept: candidates timed back to back on one geometry flatter some methods (measured: ResNet-18 at
#: batch 1 ran 4% slower with auto than with cython's defaults, switched to numba's gemm on layers where it took
#: 1.1-1.6x cython's time between the network's other layers)
TRIAL_CALLS = 4
#: fast key -> the times of the heuristic's choice's last TRIAL_CALLS calls on it while its bucket was pending
#: (seconds): the trial compares the best of as many calls on each side (against the best of all its pending
#: calls, up to 15, AlexNet's 256->256 3x3 at batch 8 kept cython's gemm, 13.6 ms when measured, over a 10.6 ms
#: Winograd)
_in_context: dict[tuple, collections.deque] = {}
#: decision keys whose cached decision was taken among this process's candidates
_checked: dict[str, bool] = {}
#: fast key -> its winner's trial
_trials: dict[tuple, _Trial] = {}
_tuning = threading.RLock()  # re-entrant: a kernel may itself call fastconv with the default backend
#: (candidate, dtype) pairs that have run in this process: a measurement needs no warm-up run for them ...
_warmed: set[tuple[str, str]] = set()
#: ... unless the call's scratch takes at least this many bytes: a first call on a geometry touches new pages
#: (numba's Winograd on VGG-16's 512-channel 28x28 layer at batch 8, 38 MB of transformed weights, took 225-337 ms
#: on its first call there and 89 ms after, on a 2-core VM: timed cold, it lost to a method 1.5x slower)
FIRST_TOUCH_BYTES = 1 << 20


def _available() -> list[str]:
    return [name for name in CANDIDATE_BACKENDS if _backend.unavailable_reason(name) is None]


def methods(op: str, g) -> Methods:
    """Every candidate for op on geometry g, named "backend:method", in the order they are measured: each
    backend's default first (the heuristic's choice leading), then their other methods, so that a budget that
    runs out has compared the likeliest winners. The default is the heuristic's choice."""
    tables = {name: _backend.load(name).methods(op, g) for name in _available()}
    if not tables:
        raise _no_candidate()
    ordered = [(name, table.chosen) for name, table in tables.items()]
    ordered += [(name, method) for name, table in tables.items() for method in table.options.values()
                if method.name != table.default]
    found = [Method(f"{name}:{method.name}", method.run, method.plan) for name, method in ordered]
    return Methods(found[0].name, {method.name: method for method in found})


def candidates(op: str, g) -> dict[str, Callable]:
    """name -> kernel of every candidate for op on geometry g ("backend:method"), the heuristic's choice first."""
    return {name: method.run for name, method in methods(op, g).options.items()}


def heuristic(op: str, g) -> str:
    """The choice without measuring: the first available backend in CANDIDATE_BACKENDS (its default method)."""
    available = _available()
    if not available:
        raise _no_candidate()
    return available[0]


def heuristic_method(op: str, g) -> tuple[str, Method]:
    """("backend:method", method) that runs while nothing has been measured: the heuristic backend's default."""
    name = heuristic(op, g)
    default = _backend.load(name).methods(op, g).chosen
    return f"{name}:{default.name}", default


def _no_candidate() -> _backend.BackendUnavailableError:
    return _backend.BackendUnavailableError(f"auto: none of {', '.join(CANDIDATE_BACKENDS)} can run here")


def chosen(op: str, g, *, need_dx: bool = True, need_dw: bool = True, need_db: bool = True) -> str | None:
    """The candidate auto runs for op on geometry g ("numba:winograd", "cython", ...), or None when autotuning
    is on and this key has not been measured yet among the current candidates (in this process or a cached one)."""
    flags = _flags(op, need_dx, need_dw, need_db)
    fast_key = _fast_key(op, g, flags)
    hit = _resolved.get(fast_key)
    if hit is not None:
        return hit[0]
    if fast_key in _trials:
        return None
    if not autotune_enabled():
        return heuristic(op, g)
    return _cached_choice(cache.decision_key(op, g, get_num_threads(), flags), candidates(op, g))


def clear_memory() -> None:
    """Forget this process's decisions and visit counts; the next call per key consults the cache file again."""
    _resolved.clear()
    _visits.clear()
    _pending.clear()
    _in_context.clear()
    _trials.clear()
    _checked.clear()
    cache.clear_memory()


def _flags(op: str, need_dx: bool, need_dw: bool, need_db: bool) -> tuple:
    return (need_dx, need_dw, need_db) if op == "conv2d_backward" else ()


def _fast_key(op: str, g, flags: tuple) -> tuple:
    return op, g, flags, get_num_threads(), autotune_enabled()


def _cached_choice(key: str, options: dict[str, Callable]) -> str | None:
    """The cached decision for key when it was taken among exactly these candidates (a decision taken among
    others, say before the Cython extension was built, is stale), else None."""
    entry = cache.lookup(key)
    if entry is not None and entry.choice in options and set(entry.candidates) == set(options):
        return entry.choice
    return None


def _decided_kernel(op: str, g, key: str) -> tuple[str, Callable] | None:
    """(name, kernel) of the cached decision of g's bucket, None when there is none among the current candidates.
    The candidates are compared with the decision's once per bucket in this process; another shape of a bucket
    checked before looks up the chosen backend's method alone (building every backend's methods cost about 30 us
    on each new shape)."""
    entry = cache.lookup(key)
    if entry is None:
        return None
    if key in _checked:
        backend, _, method = entry.choice.partition(":")
        found = _backend.load(backend).methods(op, g).options.get(method)
        if found is not None:
            return entry.choice, found.run
    options = candidates(op, g)
    choice = _cached_choice(key, options)
    if choice is None:
        return None
    _bounded_put(_checked, key, True)
    return choice, options[choice]


def _bounded_put(memo: dict, key, value) -> None:
    """memo[key] = value, forgetting the whole memo first when it holds MEMO_SIZE entries."""
    if len(memo) >= MEMO_SIZE:
        memo.clear()
    memo[key] = value


def _remember(fast_key: tuple, name: str, kernel: Callable) -> None:
    _bounded_put(_resolved, fast_key, (name, kernel))


def expected_seconds(op: str, g) -> float:
    """A cost model of one call, from the geometry alone: its flops (conv; backward counts twice) or window reads
    (pooling) at a modest rate, so that it errs towards measuring."""
    if op.startswith("conv2d"):
        return g.flops * (2 if op == "conv2d_backward" else 1) / FLOPS_PER_SECOND
    return g.reads / READS_PER_SECOND


def _run(op: str, g, flags: tuple, *args):
    """Run op with the decided kernel; on a new geometry, decide (from the bucket's cached decision, by
    measuring when the bucket has come back often enough and its calls are not tiny, or the heuristic)."""
    fast_key = _fast_key(op, g, flags)
    hit = _resolved.get(fast_key)
    if hit is not None:
        return hit[1](*args)
    trial = _trials.get(fast_key)
    if trial is not None:
        return trial.run(fast_key, args)
    if not autotune_enabled():
        name = heuristic(op, g)
        kernel = getattr(_backend.load(name), op)
        _remember(fast_key, name, kernel)
        return kernel(*args)
    pending = _pending.get(fast_key)
    if pending is not None and cache.lookup(pending[0]) is None:  # an undecided bucket's next visit
        visits = _visits.get(pending[0], 0) + 1
        if visits < MEASURE_ON_VISIT:
            _bounded_put(_visits, pending[0], visits)
            return _timed_in_context(fast_key, pending[1], args)
    with _tuning:  # one measurement at a time, so that concurrent threads do not disturb each other's timings
        key = cache.decision_key(op, g, fast_key[3], flags)
        decided = _decided_kernel(op, g, key)
        if decided is not None:
            _remember(fast_key, *decided)
            return decided[1](*args)
        name, default = heuristic_method(op, g)
        _warmed.add((name, g.dtype.name))
        if expected_seconds(op, g) < TINY_S:
            _remember(fast_key, name, default.run)
            return default.run(*args)
        visits = _visits.get(key, 0) + 1
        if visits < MEASURE_ON_VISIT:
            _bounded_put(_visits, key, visits)
            _bounded_put(_pending, fast_key, (key, default.run))
            return _timed_in_context(fast_key, default.run, args)
        _visits.pop(key, None)
        options = candidates(op, g)
        failed: set[str] = set()
        winner, seconds, result = timing.fastest(
            {name: functools.partial(_noting_failure, failed, name, kernel, args) for name, kernel in options.items()},
            warmed=_warm(options, op, g, flags, name if fast_key in _in_context else None))
        _warmed.update((name, g.dtype.name) for name in seconds)
        # a candidate that failed does not count (the next process measures again); one the budget left untimed
        # does: otherwise every shape of a bucket whose fastest first candidate shortened the budget measured again
        entry = cache.Entry(winner, tuple(name for name in options if name not in failed),
                            tuple((name, round(s * 1e3, 4)) for name, s in seconds.items()))
        cache.store(key, entry)
        reference = _in_context.pop(fast_key, None)
        if winner != name and name in options and reference:
            _bounded_put(_trials, fast_key, _Trial(key, entry, options[winner], name, options[name], min(reference)))
        else:
            _remember(fast_key, winner, options[winner])
        return result


def _warm(options: dict[str, Callable], op: str, g, flags: tuple, ran_on_g: str | None) -> frozenset[str]:
    """The candidates whose first call on g needs no warm-up: ran_on_g (the heuristic's choice, when it ran on g
    while the bucket was pending), and those that ran in this process on g's dtype with less than
    FIRST_TOUCH_BYTES of scratch (by their method's plan; a candidate with none has no scratch)."""
    plans = {name: method.plan for name, method in methods(op, g).options.items()}

    def small(name: str) -> bool:
        return name not in plans or plans[name](g, *flags[:2]).nbytes < FIRST_TOUCH_BYTES

    return frozenset(name for name in options
                     if name == ran_on_g or ((name, g.dtype.name) in _warmed and small(name)))


def _noting_failure(failed: set[str], name: str, kernel: Callable, args: tuple):
    """kernel(*args), adding name to failed when it raises."""
    try:
        return kernel(*args)
    except Exception:
        failed.add(name)
        raise


def _timed_in_context(fast_key: tuple, kernel: Callable, args: tuple):
    """kernel(*args), its time kept among fast_key's last TRIAL_CALLS in _in_context."""
    start = time.perf_counter()
    result = kernel(*args)
    elapsed = time.perf_counter() - start
    times = _in_context.get(fast_key)
    if times is None:
        times = collections.deque(maxlen=TRIAL_CALLS)
        _bounded_put(_in_context, fast_key, times)
    times.append(elapsed)
    return result


@dataclasses.dataclass
class _Trial:
    """A measured winner on trial on one fast key, against the heuristic's choice's time in the same workload."""

    key: str
    entry: cache.Entry
    kernel: Callable
    heuristic_name: str
    heuristic_kernel: Callable
    heuristic_seconds: float
    calls: int = 0
    best: float = float("inf")

    def run(self, fast_key: tuple, args: tuple):
        """The winner's call, timed; the TRIAL_CALLS-th decides: the winner stays if one of its calls was at least
        as fast as the heuristic's choice was, else the heuristic's choice is remembered and cached."""
        start = time.perf_counter()
        result = self.kernel(*args)
        self.best = min(self.best, time.perf_counter() - start)
        self.calls += 1
        if self.calls >= TRIAL_CALLS and _trials.pop(fast_key, None) is not None:
            if self.best <= self.heuristic_seconds:
                _remember(fast_key, self.entry.choice, self.kernel)
            else:
                with _tuning:
                    cache.store(self.key, dataclasses.replace(self.entry, choice=self.heuristic_name))
                _remember(fast_key, self.heuristic_name, self.heuristic_kernel)
        return result


def conv2d_forward(x, w, b, g):
    """x (N, C, H, W), w (K, C/groups, R, S), b (K,) or None -> y (N, K, Ho, Wo)."""
    return _run("conv2d_forward", g, (), x, w, b, g)


def conv2d_backward(dy, x, w, g, need_dx, need_dw, need_db):
    """dy (N, K, Ho, Wo) -> (dx, dw, db), None where not needed; keyed by the need flags too."""
    return _run("conv2d_backward", g, _flags("conv2d_backward", need_dx, need_dw, need_db),
                dy, x, w, g, need_dx, need_dw, need_db)


def max_pool2d_forward(x, g):
    """x (N, C, H, W) -> y, indices (N, C, Ho, Wo)."""
    return _run("max_pool2d_forward", g, (), x, g)


def max_pool2d_backward(dy, indices, g):
    """dy, indices (N, C, Ho, Wo) -> dx (N, C, H, W)."""
    return _run("max_pool2d_backward", g, (), dy, indices, g)


def avg_pool2d_forward(x, g):
    """x (N, C, H, W) -> y (N, C, Ho, Wo)."""
    return _run("avg_pool2d_forward", g, (), x, g)


def avg_pool2d_backward(dy, g):
    """dy (N, C, Ho, Wo) -> dx (N, C, H, W)."""
    return _run("avg_pool2d_backward", g, (), dy, g)
