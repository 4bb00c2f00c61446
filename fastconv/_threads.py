"""One thread budget for numba, OpenMP (the Cython extension) and BLAS, and the one place that applies it.

Every kernel call runs inside ``parallel_region(threads, ...)``: its own parallel loop runs on ``threads``
threads (numba's count is set to match; Cython loops are given the number) and, while that loop is parallel,
BLAS calls inside it are single-threaded, so that the two never oversubscribe the cores. A serial loop
(``threads == 1``) gives BLAS the budget only for large GEMMs. ``serial_region()`` keeps everything, BLAS
included, on the calling thread (for small GEMMs outside the kernels).

A process forked from one that had already run a kernel inherits OpenMP's and numba's thread pools in a state
they cannot continue from (GNU OpenMP's pool hangs, numba's OpenMP layer aborts): there, every kernel runs on
one thread (and numba's kernels in their serial versions). Spawned and forkserver children start fresh.
"""

from __future__ import annotations

import functools
import os
import sys

from threadpoolctl import ThreadpoolController


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


_num_threads = _cores()
_kernels_ran = False  # set by the first parallel_region: from then on a fork leaves thread pools behind
_forked_after_kernels = False


def _after_fork_in_child() -> None:
    global _forked_after_kernels
    _forked_after_kernels = _forked_after_kernels or _kernels_ran


os.register_at_fork(after_in_child=_after_fork_in_child)


def forked_from_a_running_process() -> bool:
    """Whether this process was forked from one that had run fastconv kernels (then its kernels run serially)."""
    return _forked_after_kernels


@functools.cache
def _controller() -> ThreadpoolController:
    """One scan of the loaded BLAS/OpenMP libraries (a scan costs ~1 ms).

    scipy.linalg is imported first so that its OpenBLAS, which numba's np.dot and cython_blas call, is seen.
    """
    import scipy.linalg  # noqa: F401

    return ThreadpoolController()


@functools.cache
def _blas_setters() -> list:
    """One thread-count setter per BLAS library: OpenBLAS's own C function where threadpoolctl exposes it (~0.3 us
    a call; threadpoolctl's set_num_threads ~5 us, a limit context ~30 us), else threadpoolctl's setter."""
    setters = []
    for library in _controller().select(user_api="blas").lib_controllers:
        symbol = getattr(library, "_get_symbol", lambda name: None)("openblas_set_num_threads")
        setters.append(symbol if symbol is not None else library.set_num_threads)
    return setters


_blas_limit: int | None = None  # what fastconv last set the BLAS libraries to (None: never)


def _set_blas_threads(n: int) -> None:
    global _blas_limit
    if n != _blas_limit:
        for set_threads in _blas_setters():
            set_threads(n)
        _blas_limit = n


#: work (flops, or window reads for pooling) below which waking one more thread does not pay: a parallel region
#: costs microseconds on an idle machine, and milliseconds while another pool's threads (numpy's OpenBLAS spins
#: for a while after every threaded matmul) still hold the other core
MIN_WORK_PER_THREAD = 1_000_000
#: flops below which a GEMM called from a serial loop runs on one BLAS thread: a second thread gains little on
#: it, and a woken OpenBLAS thread then spins on the other core while the next kernel's parallel loop waits for
#: it (measured: the varied-shape workload at batch 1 on numba, 1.1 s with BLAS at 2 threads, 0.33 s at 1)
MIN_WORK_PER_BLAS_THREAD = 50_000_000


def get_num_threads() -> int:
    """Threads fastconv's kernels may use (default: the cores this process may run on).

    Examples
    --------
    >>> import fastconv as fc
    >>> fc.get_num_threads() >= 1
    True
    """
    return _num_threads


def threads_for(work: int, items: int | None = None) -> int:
    """Threads for a kernel call with this much work split into ``items`` independent pieces: the budget, or
    fewer for small calls (at least MIN_WORK_PER_THREAD each) and never more than the pieces; one in a process
    forked after kernels ran."""
    if _forked_after_kernels:
        return 1
    threads = max(1, min(_num_threads, work // MIN_WORK_PER_THREAD))
    return threads if items is None else max(1, min(threads, items))


#: the caches of every per_budget function, for clear_plans
_plan_caches: list = []


def per_budget(plan):
    """plan(...) (a method's Plan or a tile size, from hashable arguments such as a geometry) made once per
    arguments and thread budget (what threads_for reads: set_num_threads, a fork after kernels ran,
    MIN_WORK_PER_THREAD). Making a plan costs a few microseconds, a share of a batch-1 call.

    A plan also reads its module's tiling constants (TILE_BYTES and the like), which its kernel's tiling reads
    again on every call: whoever changes one at run time must call clear_plans(), or a kernel would tile for
    the new value in scratch sized for the old one."""

    @functools.lru_cache(maxsize=512)
    def made(budget, args, kwargs):
        return plan(*args, **dict(kwargs))

    _plan_caches.append(made)

    @functools.wraps(plan)
    def cached(*args, **kwargs):
        return made((_num_threads, _forked_after_kernels, MIN_WORK_PER_THREAD), args, tuple(kwargs.items()))

    return cached


def clear_plans() -> None:
    """Forget every plan and tile size made so far (after a tiling constant changed; see per_budget)."""
    for made in _plan_caches:
        made.cache_clear()


def set_num_threads(n: int) -> None:
    """Use n threads for numba's parallel loops, the Cython extension's OpenMP loops and BLAS together.

    Parameters
    ----------
    n : int
        Threads, at least 1. The default is the number of cores this process may run on.

    Raises
    ------
    ValueError
        If n is not a positive int.

    Examples
    --------
    >>> import fastconv as fc
    >>> before = fc.get_num_threads()
    >>> fc.set_num_threads(1)
    >>> fc.get_num_threads()
    1
    >>> fc.set_num_threads(before)
    """
    global _num_threads
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"set_num_threads: n must be a positive int, got {n!r}")
    _num_threads = n
    _set_blas_threads(n)


class _limits:
    """For the duration: BLAS limited to blas_threads (None: left alone), and with numba=True numba's thread
    count (per calling thread, as numba keeps it) = loop_threads; both restored on exit; ``as`` gives
    loop_threads. In a process forked after kernels ran numba's pool is left alone: its kernels run their serial
    versions there. A class, not a generator context: it is entered around every kernel call."""

    __slots__ = ("loop_threads", "blas_threads", "numba", "numba_before", "blas_before")

    def __init__(self, loop_threads: int, blas_threads: int | None, numba: bool):
        self.loop_threads, self.blas_threads, self.numba = loop_threads, blas_threads, numba

    def __enter__(self) -> int:
        global _kernels_ran
        _kernels_ran = True
        # numba's module only when something imported it: fastconv never imports it just to set threads
        numba_module = sys.modules.get("numba") if self.numba and not _forked_after_kernels else None
        self.numba_before = None
        if numba_module is not None:
            wanted = max(1, min(self.loop_threads, numba_module.config.NUMBA_NUM_THREADS))
            before = numba_module.get_num_threads()
            if wanted != before:
                numba_module.set_num_threads(wanted)
                self.numba_before = before
        self.blas_before = _blas_limit if _blas_limit is not None else _num_threads
        if self.blas_threads is not None:
            _set_blas_threads(self.blas_threads)
        return self.loop_threads

    def __exit__(self, *exc_info) -> None:
        if self.blas_threads is not None:
            _set_blas_threads(self.blas_before)
        if self.numba_before is not None:
            sys.modules["numba"].set_num_threads(self.numba_before)


def parallel_region(threads: int, *, blas_work: int | None = None, numba: bool = False):
    """Context for one kernel call whose own loop runs on ``threads`` threads (yielded).

    blas_work: the call's flops when its loop calls BLAS (None: it calls none, and BLAS is left alone). While
    the loop is parallel BLAS runs single-threaded inside it; a serial loop gives BLAS the budget when the GEMMs
    are large (MIN_WORK_PER_BLAS_THREAD flops per thread), one thread otherwise. numba=True (numba's kernels)
    sets numba's thread count to match, one thread included: idle numba workers would compete with BLAS's
    (measured 5x slower)."""
    blas_threads = None
    if blas_work is not None:
        blas_threads = 1 if threads > 1 else max(1, min(_num_threads, blas_work // MIN_WORK_PER_BLAS_THREAD))
    return _limits(threads, blas_threads, numba)


def serial_region():
    """Context that keeps BLAS (and numba) on the calling thread: for small GEMMs between kernels, where a woken
    OpenBLAS thread keeps spinning on the other core and stalls the next kernel's parallel loop."""
    return _limits(1, 1, True)


def blas_info() -> list[dict]:
    """What threadpoolctl sees: one entry per BLAS/OpenMP library loaded in this process."""
    return _controller().info()

