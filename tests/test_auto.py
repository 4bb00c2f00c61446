"""The auto backend: its choice is a candidate, decisions round-trip through the cache file, a corrupt file is
ignored with a warning, and with autotuning off it takes the heuristic without timing anything."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import fastconv as fc
from fastconv._geometry import conv_geometry
from fastconv.autotune import cache, timing
from fastconv.backends import auto
from fastconv.backends._protocol import Method

from _helpers import CONV_CASES, POOL_CASES, assert_close, check_conv, check_pools, random_array, use_stable_candidates

X_SHAPE, W_SHAPE = (2, 3, 10, 9), (4, 3, 3, 3)


@pytest.fixture(autouse=True)
def fresh_cache(tmp_path, monkeypatch):
    """Each test measures, into its own empty cache dir, with no decisions in memory."""
    monkeypatch.setenv("FASTCONV_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("FASTCONV_AUTOTUNE", "1")
    monkeypatch.setattr(auto, "TINY_S", 0.0)  # these small calls are measured, on their first visit
    monkeypatch.setattr(auto, "MEASURE_ON_VISIT", 1)
    fc.set_autotune(None)
    auto.clear_memory()
    yield tmp_path
    fc.set_autotune(None)
    auto.clear_memory()


@pytest.fixture
def operands(rng):
    return random_array(rng, X_SHAPE, np.float64), random_array(rng, W_SHAPE, np.float64)


def geometry(x, w):
    return conv_geometry(x, w, padding=1)


#: the start of a subprocess script: use_stable_candidates from this folder's _helpers, every call measured
STABLE_SCRIPT = (f"import sys\nsys.path.insert(0, {str(Path(__file__).parent)!r})\n"
                 "from _helpers import use_stable_candidates\nuse_stable_candidates()\n"
                 "from fastconv.backends import auto\nauto.TINY_S, auto.MEASURE_ON_VISIT = 0.0, 1\n")


@pytest.fixture
def stable_candidates(monkeypatch):
    """use_stable_candidates in this process too, undone after the test."""
    use_stable_candidates(monkeypatch.setattr)


def forbid_timing(monkeypatch):
    def fail(calls):
        raise AssertionError(f"auto measured {list(calls)} although it should not have")
    monkeypatch.setattr(timing, "fastest", fail)


def test_choice_is_one_of_the_candidates_and_never_naive(operands):
    x, w = operands
    y = fc.conv2d(x, w, padding=1, backend="auto")
    assert_close(y, fc.conv2d(x, w, padding=1, backend="naive"), np.dtype(np.float64), "auto y")
    choice = auto.chosen("conv2d_forward", geometry(x, w))
    assert choice in auto.candidates("conv2d_forward", geometry(x, w))
    assert not choice.startswith("naive")


def test_picks_the_fastest_candidate(operands, monkeypatch):
    im2col = fc._backend.load("im2col").conv2d_forward

    def slow(*args):
        time.sleep(0.01)
        return im2col(*args)

    monkeypatch.setattr(auto, "candidates", lambda op, g: {"slow": slow, "fast": im2col})
    x, w = operands
    fc.conv2d(x, w, padding=1, backend="auto")
    assert auto.chosen("conv2d_forward", geometry(x, w)) == "fast"
    entry = cache.lookup(cache.decision_key("conv2d_forward", geometry(x, w), fc.get_num_threads()))
    assert entry.candidates == ("slow", "fast") and dict(entry.times_ms)["slow"] >= 10


def test_backward_keyed_by_need_flags(operands):
    x, w = operands
    dy = np.ones((2, 4, 10, 9))
    dx, dw, db = fc.conv2d_backward(dy, x, w, padding=1, need_dx=False, backend="auto")
    assert dx is None and dw.shape == W_SHAPE and db.shape == (4,)
    g = conv_geometry(x, w, padding=1, dy=dy)
    assert auto.chosen("conv2d_backward", g, need_dx=False) is not None
    assert auto.chosen("conv2d_backward", g) is None  # all three flags: another key, not measured yet


def test_decision_round_trips_through_the_file(operands, monkeypatch, fresh_cache, stable_candidates):
    x, w = operands
    fc.conv2d(x, w, padding=1, backend="auto")
    choice = auto.chosen("conv2d_forward", geometry(x, w))
    saved = json.loads((fresh_cache / cache.FILE_NAME).read_text())
    assert [e["choice"] for e in saved["entries"].values()] == [choice]
    auto.clear_memory()
    forbid_timing(monkeypatch)
    assert auto.chosen("conv2d_forward", geometry(x, w)) == choice
    fc.conv2d(x, w, padding=1, backend="auto")


def test_another_process_reuses_and_extends_the_file(operands, monkeypatch, fresh_cache, stable_candidates):
    x, w = operands
    fc.conv2d(x, w, padding=1, backend="auto")
    script = (STABLE_SCRIPT + "import numpy as np, fastconv as fc\n"
              "from fastconv.autotune import timing\n"
              "def fail(calls, **options): raise AssertionError('measured a cached key')\n"
              "timing.fastest, measure = fail, timing.fastest\n"
              f"fc.conv2d(np.ones({X_SHAPE}), np.ones({W_SHAPE}), padding=1)\n"
              "timing.fastest = measure\n"
              f"fc.conv2d(np.ones({X_SHAPE}, np.float32), np.ones({W_SHAPE}, np.float32), padding=1)\n")
    subprocess.run([sys.executable, "-c", script], check=True)
    keys = json.loads((fresh_cache / cache.FILE_NAME).read_text())["entries"]
    assert sorted(key.split("dtype=")[1].split()[0] for key in keys) == ["float32", "float64"]


def test_corrupt_cache_file_is_ignored_with_a_warning(operands, fresh_cache):
    (fresh_cache / cache.FILE_NAME).write_text("{not json")
    x, w = operands
    with pytest.warns(RuntimeWarning, match="corrupt autotune cache"):
        y = fc.conv2d(x, w, padding=1, backend="auto")
    assert_close(y, fc.conv2d(x, w, padding=1, backend="naive"), np.dtype(np.float64), "auto y")
    assert len(json.loads((fresh_cache / cache.FILE_NAME).read_text())["entries"]) == 1


def test_stale_decision_is_measured_again(operands, monkeypatch):
    """A cached choice made among other candidates (say before the Cython extension was built) is redone."""
    x, w = operands
    g = geometry(x, w)
    key = cache.decision_key("conv2d_forward", g, fc.get_num_threads())
    cache.store(key, cache.Entry("vanished", ("vanished",)))
    auto.clear_memory()
    assert auto.chosen("conv2d_forward", g) is None  # not what auto would run
    fc.conv2d(x, w, padding=1, backend="auto")
    assert auto.chosen("conv2d_forward", g) in auto.candidates("conv2d_forward", g)


@pytest.mark.parametrize("switch_off", ["env", "api"])
def test_autotune_off_takes_the_heuristic_without_timing(operands, monkeypatch, fresh_cache, switch_off):
    if switch_off == "env":
        monkeypatch.setenv("FASTCONV_AUTOTUNE", "0")
    else:
        fc.set_autotune(False)
    forbid_timing(monkeypatch)
    x, w = operands
    y = fc.conv2d(x, w, padding=1, backend="auto")
    assert_close(y, fc.conv2d(x, w, padding=1, backend="naive"), np.dtype(np.float64), "auto y")
    assert auto.chosen("conv2d_forward", geometry(x, w)) == auto.heuristic("conv2d_forward", geometry(x, w))
    assert not (fresh_cache / cache.FILE_NAME).exists()


def test_failing_candidate_is_skipped_with_a_warning(operands, monkeypatch):
    def broken(*args):
        raise RuntimeError("boom")

    monkeypatch.setattr(auto, "candidates",
                        lambda op, g: {"broken": broken, "im2col": fc._backend.load("im2col").conv2d_forward})
    x, w = operands
    with pytest.warns(RuntimeWarning, match="'broken' failed"):
        fc.conv2d(x, w, padding=1, backend="auto")
    assert auto.chosen("conv2d_forward", geometry(x, w)) == "im2col"
    auto.clear_memory()  # a later process measures again, in case the failure was transient
    with pytest.warns(RuntimeWarning, match="'broken' failed"):
        fc.conv2d(x, w, padding=1, backend="auto")


def test_concurrent_writers_keep_every_entry(fresh_cache, tmp_path_factory):
    """Three processes, started together once imported, each store 10 decisions into the one file."""
    ready = tmp_path_factory.mktemp("ready")
    script = (STABLE_SCRIPT + "import pathlib, sys, time, numpy as np, fastconv as fc\n"
              "ready, width = pathlib.Path(sys.argv[1]), int(sys.argv[2])\n"
              "(ready / str(width)).touch()\n"
              "deadline = time.monotonic() + 60\n"
              "while len(list(ready.iterdir())) < 3 and time.monotonic() < deadline:\n"
              "    time.sleep(0.001)\n"
              "for n in (2 ** i for i in range(10)):  # ten buckets of the batch size\n"
              "    fc.conv2d(np.ones((n, 2, 5, width)), np.ones((3, 2, 3, 3)), backend='auto')\n")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(ready), str(width)]) for width in (5, 9, 17)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    assert len(json.loads((fresh_cache / cache.FILE_NAME).read_text())["entries"]) == 30


def test_decision_memo_stays_bounded_on_ever_new_shapes(monkeypatch):
    monkeypatch.setattr(auto, "MEMO_SIZE", 8)
    fc.set_autotune(False)
    for width in range(3, 23):
        fc.conv2d(np.ones((1, 1, 5, width)), np.ones((1, 1, 3, 3)), backend="auto")
        assert len(auto._resolved) <= 8
    assert auto.chosen("conv2d_forward", conv_geometry(np.ones((1, 1, 5, 22)), np.ones((1, 1, 3, 3)))) is not None


@pytest.mark.parametrize("case", CONV_CASES[::3], ids=str)
def test_measured_choices_agree_with_naive(case, dtype, rng):
    """With measuring on, whatever auto picks (any backend's method) agrees with naive."""
    check_conv(case, "auto", dtype, rng)


@pytest.mark.parametrize("case", POOL_CASES[::4], ids=str)
def test_measured_pool_choices_agree_with_naive(case, dtype, rng):
    check_pools(random_array(rng, case.x, dtype), case.kernel_size, case.kwargs, "auto", dtype, rng, str(case))


def count_measurements(monkeypatch) -> list:
    """The candidate sets auto measures from now on (timing.fastest still runs)."""
    measured = []

    def counting(calls, **options):
        measured.append(list(calls))
        return fastest(calls, **options)

    fastest = timing.fastest
    monkeypatch.setattr(timing, "fastest", counting)
    return measured


def test_nearby_geometries_share_one_measured_decision(monkeypatch, rng):
    measured = count_measurements(monkeypatch)
    w = random_array(rng, (4, 3, 3, 3), np.float64)
    for n, h, width in ((3, 9, 10), (4, 12, 16), (3, 15, 11)):  # one bucket: n <= 4, 8 < h, w <= 16
        x = random_array(rng, (n, 3, h, width), np.float64)
        assert_close(fc.conv2d(x, w, padding=1, backend="auto"), fc.conv2d(x, w, padding=1, backend="naive"),
                     np.dtype(np.float64))
    assert len(measured) == 1
    fc.conv2d(random_array(rng, (5, 3, 9, 10), np.float64), w, padding=1, backend="auto")  # n = 5: a new bucket
    assert len(measured) == 2


def test_a_bucket_is_measured_only_when_it_comes_back(monkeypatch, rng):
    monkeypatch.setattr(auto, "MEASURE_ON_VISIT", 3)
    measured = count_measurements(monkeypatch)
    w = random_array(rng, (4, 3, 3, 3), np.float64)
    for visit, width in enumerate((9, 10, 11, 12), start=1):
        fc.conv2d(random_array(rng, (2, 3, 10, width), np.float64), w, padding=1, backend="auto")
        assert len(measured) == (visit >= 3)


def test_tiny_calls_are_never_measured(monkeypatch, operands):
    monkeypatch.setattr(auto, "TINY_S", 1.0)
    forbid_timing(monkeypatch)
    x, w = operands
    for _ in range(3):
        y = fc.conv2d(x, w, padding=1, backend="auto")
    assert_close(y, fc.conv2d(x, w, padding=1, backend="naive"), np.dtype(np.float64))
    assert auto.chosen("conv2d_forward", geometry(x, w)) == next(iter(auto.candidates("conv2d_forward",
                                                                                       geometry(x, w))))


@pytest.fixture
def clock(monkeypatch):
    """timing's clock, advanced only by the candidates (by what they say they cost): the budget tests do not
    depend on how busy the machine is."""
    now = [0.0]
    monkeypatch.setattr(timing, "time", SimpleNamespace(perf_counter=lambda: now[0]))

    def advance(seconds):
        now[0] += seconds
    return advance


def test_measuring_stays_within_ten_runs_of_the_first_candidate(monkeypatch, operands, clock):
    monkeypatch.setattr(timing, "BUDGET_RUNS", 10)
    im2col = fc._backend.load("im2col").conv2d_forward
    ran = []

    def candidate(name, seconds):
        def run(*args):
            ran.append(name)
            clock(seconds)
            return im2col(*args)
        return run

    monkeypatch.setattr(auto, "candidates", lambda op, g: {
        "first": candidate("first", 0.002), **{f"slow{i}": candidate(f"slow{i}", 0.012) for i in range(5)}})
    x, w = operands
    fc.conv2d(x, w, padding=1, backend="auto")
    # each runs twice, a warm-up counted as at most 2 ms: 2 + 2, then 2 + 12 (16 ms), then 2 + 12 (30 ms) passes
    # the 10 x 2 ms budget: the rest is never run, nor timed again
    assert ran == ["first", "first", "slow0", "slow0", "slow1", "slow1"]
    assert auto.chosen("conv2d_forward", geometry(x, w)) == "first"


def test_a_second_candidate_is_timed_however_long_the_first_call(clock):
    """On a heavy layer one call of the first candidate spends the whole budget: the other backend's default,
    second, is still timed (and wins here); the rest are not."""
    ran = []

    def candidate(name, seconds):
        return lambda: ran.append(name) or clock(seconds) or name

    assert timing.BUDGET_S < 2 * 0.3  # the first call's warm-up and timed run alone exceed it
    chosen, seconds, result = timing.fastest({"first": candidate("first", 0.3), "second": candidate("second", 0.1),
                                              "third": candidate("third", 0.01)})
    assert ran == ["first", "first", "second", "second"] and result == "first"
    assert chosen == "second" and set(seconds) == {"first", "second"}


def test_a_candidate_that_already_ran_is_timed_without_a_warm_up():
    ran = []

    def candidate(name):
        return lambda: ran.append(name) or name

    chosen, seconds, result = timing.fastest({"first": candidate("first"), "second": candidate("second")},
                                             warmed=frozenset({"second"}))
    assert ran[:3] == ["first", "first", "second"] and result == "first" and set(seconds) == {"first", "second"}


def test_measuring_skips_the_warm_up_of_methods_this_process_ran(monkeypatch, rng):
    """The heuristic's method ran on the bucket's first visits: the measurement times it without a warm-up."""
    monkeypatch.setattr(auto, "MEASURE_ON_VISIT", 2)
    passed = []
    fastest = timing.fastest

    def recording(calls, warmed=frozenset()):
        passed.append(warmed)
        return fastest(calls, warmed=warmed)

    monkeypatch.setattr(timing, "fastest", recording)

    w = random_array(rng, (4, 3, 3, 3), np.float64)
    for width in (9, 10):
        fc.conv2d(random_array(rng, (2, 3, 10, width), np.float64), w, padding=1, backend="auto")
    g = geometry(random_array(rng, (2, 3, 10, 10), np.float64), w)
    assert len(passed) == 1 and auto.heuristic_method("conv2d_forward", g)[0] in passed[0]


@pytest.mark.parametrize("widths, skips_the_heuristics_warm_up", [((10, 10), True), ((9, 10), False)])
def test_methods_with_large_scratch_are_warmed_up_on_a_new_geometry(monkeypatch, rng, widths,
                                                                    skips_the_heuristics_warm_up):
    """With every scratch counted as large (its first call touches new pages), only the heuristic's method, when it
    ran on the measured geometry itself, is timed without a warm-up."""
    monkeypatch.setattr(auto, "MEASURE_ON_VISIT", 2)
    monkeypatch.setattr(auto, "FIRST_TOUCH_BYTES", 0)
    passed = []
    fastest = timing.fastest
    monkeypatch.setattr(timing, "fastest", lambda calls, warmed: passed.append(warmed) or fastest(calls, warmed))

    w = random_array(rng, (4, 3, 3, 3), np.float64)
    for width in widths:
        fc.conv2d(random_array(rng, (2, 3, 10, width), np.float64), w, padding=1, backend="auto")
    g = geometry(random_array(rng, (2, 3, 10, 10), np.float64), w)
    heuristic = auto.heuristic_method("conv2d_forward", g)[0]
    assert passed == [frozenset({heuristic} if skips_the_heuristics_warm_up else ())]


def test_a_trial_compares_the_best_of_as_many_calls_on_each_side(monkeypatch, operands):
    """The heuristic's choice's reference is its best of its last TRIAL_CALLS pending calls, not of all of them: one
    early lucky call (1 time unit, then 5 each) does not sink a winner that takes 3 in each of its trial calls."""
    now = [0.0]
    monkeypatch.setattr(auto, "time", SimpleNamespace(perf_counter=lambda: now[0]))
    im2col = fc._backend.load("im2col").conv2d_forward
    steady_times = iter([1.0] + [5.0] * 20)

    def kernel(cost):
        def run(*args):
            now[0] += cost()
            return im2col(*args)
        return run

    steady, winner = kernel(lambda: next(steady_times)), kernel(lambda: 3.0)
    monkeypatch.setattr(auto, "MEASURE_ON_VISIT", auto.TRIAL_CALLS + 3)
    monkeypatch.setattr(auto, "candidates", lambda op, g: {"steady": steady, "winner": winner})
    monkeypatch.setattr(auto, "heuristic_method", lambda op, g: ("steady", Method("steady", steady)))
    monkeypatch.setattr(timing, "fastest", lambda calls, warmed: ("winner", {"steady": 5.0, "winner": 3.0},
                                                                   calls["steady"]()))
    x, w = operands
    for _ in range(auto.MEASURE_ON_VISIT + auto.TRIAL_CALLS):  # pending calls, the measurement, the trial
        fc.conv2d(x, w, padding=1, backend="auto")
    assert auto.chosen("conv2d_forward", geometry(x, w)) == "winner"


@pytest.mark.parametrize("winner_is_faster_in_context", [False, True])
def test_a_switch_is_kept_only_if_as_fast_where_the_workload_runs_it(monkeypatch, operands,
                                                                      winner_is_faster_in_context):
    """A measured winner other than the heuristic's choice runs its next TRIAL_CALLS calls on trial, timed: slower
    than the heuristic's choice was on the same geometry while pending, the heuristic's choice is kept (and
    cached) after all; as fast, the winner stays."""
    im2col = fc._backend.load("im2col").conv2d_forward

    def slow(*args):
        time.sleep(0.005)
        return im2col(*args)

    steady, flattered = (slow, im2col) if winner_is_faster_in_context else (im2col, slow)
    monkeypatch.setattr(auto, "MEASURE_ON_VISIT", 3)
    monkeypatch.setattr(auto, "candidates", lambda op, g: {"steady": steady, "flattered": flattered})
    monkeypatch.setattr(auto, "heuristic_method", lambda op, g: ("steady", Method("steady", steady)))
    monkeypatch.setattr(timing, "fastest", lambda calls, warmed: ("flattered", {"steady": 1.0, "flattered": 0.5},
                                                                   calls["steady"]()))
    x, w = operands
    for _ in range(3):  # two visits while pending (the heuristic's choice, timed), then the measurement
        fc.conv2d(x, w, padding=1, backend="auto")
    assert auto.chosen("conv2d_forward", geometry(x, w)) is None  # on trial
    for _ in range(auto.TRIAL_CALLS):
        y = fc.conv2d(x, w, padding=1, backend="auto")
    assert_close(y, fc.conv2d(x, w, padding=1, backend="naive"), np.dtype(np.float64))
    kept = "flattered" if winner_is_faster_in_context else "steady"
    assert auto.chosen("conv2d_forward", geometry(x, w)) == kept
    assert cache.lookup(cache.decision_key("conv2d_forward", geometry(x, w), fc.get_num_threads())).choice == kept
