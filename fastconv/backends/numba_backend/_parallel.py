"""Parallel kernels that work in every process model: ``@parallel_kernel`` instead of ``@njit(parallel=True)``.

numba's GNU OpenMP threading layer aborts a process forked from one that already ran a parallel kernel
("fork() called from a process already using GNU OpenMP"), and its workqueue layer aborts when two Python
threads run parallel kernels at once. So each kernel is compiled twice, on first use of each: the parallel
version, and a serial twin (prange runs as range) that runs instead in such a forked child (which fastconv's
thread budget keeps at one thread anyway). Under the workqueue layer, or before numba has chosen its layer,
calls of the parallel version take one lock.
"""

from __future__ import annotations

import threading
import types

import numba

from fastconv import _threads

#: serializes parallel kernels while numba's threading layer is (or may be) workqueue, which is not threadsafe
_workqueue_lock = threading.Lock()
_layer: str | None = None  # numba's threading layer, once it has started one


def threading_layer() -> str | None:
    """The threading layer numba runs parallel kernels on ("omp", "tbb", "workqueue"), None before the first."""
    global _layer
    if _layer is None:
        try:
            _layer = numba.threading_layer()
        except ValueError:  # no parallel kernel has run yet
            return None
    return _layer


def _renamed(func: types.FunctionType, suffix: str) -> types.FunctionType:
    """func under another name: numba's on-disk cache is per function name, so a twin compiled with other options
    must not share func's entries."""
    twin = types.FunctionType(func.__code__, func.__globals__, func.__name__ + suffix, func.__defaults__,
                              func.__closure__)
    twin.__qualname__ = func.__qualname__ + suffix
    return twin


class ParallelKernel:
    """A parallel numba kernel with its serial twin; calling it runs the one this process can run."""

    def __init__(self, func: types.FunctionType, options: dict):
        self.parallel = numba.njit(cache=True, parallel=True, **options)(func)
        self._func, self._options, self._serial = func, options, None
        self.__doc__, self.__name__ = func.__doc__, func.__name__

    @property
    def serial(self):
        """The serial twin, compiled (or loaded from the cache) on first use."""
        if self._serial is None:
            self._serial = numba.njit(cache=True, **self._options)(_renamed(self._func, "_serial"))
        return self._serial

    def __call__(self, *args):
        if _threads.forked_from_a_running_process():
            return self.serial(*args)
        if threading_layer() in (None, "workqueue"):
            with _workqueue_lock:
                return self.parallel(*args)
        return self.parallel(*args)


def parallel_kernel(**options):
    """Decorator: a ParallelKernel compiled with numba.njit(cache=True, parallel=True, **options)."""
    return lambda func: ParallelKernel(func, options)
