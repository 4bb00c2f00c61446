"""`fastconv info`: version, backends and why any is unavailable, the cython kernels' instruction set, threads,
numba's threading layer and how safe it is, BLAS libraries in use, auto's cache."""

from __future__ import annotations

import argparse

import numpy as np

import fastconv
from fastconv import _backend, _threads
from fastconv.autotune import autotune_enabled, cache


def register(subparsers) -> argparse.ArgumentParser:
    return subparsers.add_parser("info", help="show version, backends, threads and BLAS",
                                 description=__doc__)


def run(args: argparse.Namespace) -> int:
    print(f"fastconv {fastconv.__version__}")
    print(f"default backend: {fastconv.get_backend()}")
    print("backends:")
    for name in _backend.BACKENDS:
        reason = _backend.unavailable_reason(name)
        print(f"  {name:<8} {'available' if reason is None else 'unavailable: ' + reason}")
    print(f"cython kernels compiled for: {_cython_level()}")
    print(f"threads: {_threads.get_num_threads()} (fastconv.set_num_threads)")
    print(f"numba threading layer: {_numba_layer()}")
    print("thread pools (threadpoolctl):")
    for pool in _threads.blas_info():
        print(f"  {pool.get('internal_api')} {pool.get('version')} threads={pool.get('num_threads')} "
              f"{pool.get('filepath')}")
    decisions = cache.entries()
    print(f"auto: measuring {'on' if autotune_enabled() else 'off'} (FASTCONV_AUTOTUNE, fastconv.set_autotune); "
          f"cache {cache.cache_path()} ({len(decisions)} entries)")
    for key, entry in decisions.items():
        print(f"  {entry.choice:<20} {key}")
    return 0


def _cython_level() -> str:
    """The instruction-set level of the cython kernels that run here."""
    if _backend.unavailable_reason("cython") is not None:
        return "none (the cython backend is unavailable)"
    from fastconv.backends.cython_backend import _levels

    return _levels.describe()


#: what each numba threading layer is safe for, and what fastconv does about the rest
LAYER_SAFETY = {
    "omp": "thread-safe; not fork-safe with GNU OpenMP, so a child forked after kernels ran uses serial kernels",
    "tbb": "thread-safe and fork-safe",
    "workqueue": "fork-safe; not thread-safe, so fastconv runs one numba parallel kernel at a time",
}


def _numba_layer() -> str:
    """The layer numba runs parallel kernels on (started by one tiny numba convolution) and its safety."""
    if _backend.unavailable_reason("numba") is not None:
        return "none (the numba backend is unavailable)"
    from fastconv.backends.numba_backend._parallel import threading_layer

    fastconv.conv2d(np.ones((1, 1, 3, 3)), np.ones((1, 1, 1, 1)), backend="numba")
    layer = threading_layer()
    return f"{layer} ({LAYER_SAFETY.get(layer, 'unknown safety')}; NUMBA_THREADING_LAYER chooses)"
