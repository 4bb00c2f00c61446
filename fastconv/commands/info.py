"""`fastconv info`: version, backends and why any is unavailable, threads, BLAS libraries in use."""

from __future__ import annotations

import argparse

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
    print(f"threads: {_threads.get_num_threads()} (fastconv.set_num_threads)")
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
