"""Soak: many mixed calls in one process must not grow its memory, file descriptors, threads or auto's memo.

    python benchmarks/soak.py [--calls 20000] [--seed 0]

Runs every op on random small shapes (strides, paddings, dilations, groups), both dtypes, every backend but
naive, with auto measuring into a throwaway cache. After a warm-up (a tenth of the calls: compilation, caches,
the thread pools) it samples resident memory; it fails (exit 1) when memory grows by more than 5%, when file
descriptors or threads are left behind, or when auto's decision memo passes its bound. Linux only (/proc).
About a minute on two cores.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading

import numpy as np


def resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def one_call(fc, rng: np.random.Generator, backend: str) -> None:
    """A random op on a random small geometry."""
    dtype = (np.float32, np.float64)[rng.integers(2)]
    n, groups = int(rng.integers(1, 4)), int(rng.choice([1, 2]))
    c, k = groups * int(rng.integers(1, 5)), groups * int(rng.integers(1, 5))
    h, w = (int(v) for v in rng.integers(6, 20, 2))
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    op = rng.integers(3)
    if op == 0:
        weights = rng.standard_normal((k, c // groups, *(int(v) for v in rng.integers(1, 4, 2)))).astype(dtype)
        options = dict(stride=int(rng.integers(1, 3)), padding=int(rng.integers(0, 2)), groups=groups,
                       dilation=int(rng.integers(1, 3)))
        y = fc.conv2d(x, weights, backend=backend, **options)
        fc.conv2d_backward(np.ones_like(y), x, weights, backend=backend, **options)
    elif op == 1:
        y, indices = fc.max_pool2d(x, 2, return_indices=True, backend=backend)
        fc.max_pool2d_backward(np.ones_like(y), x, 2, indices=indices, backend=backend)
    else:
        y = fc.avg_pool2d(x, 3, stride=2, padding=1, backend=backend)
        fc.avg_pool2d_backward(np.ones_like(y), x, 3, stride=2, padding=1, backend=backend)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    os.environ["FASTCONV_CACHE_DIR"] = tempfile.mkdtemp(prefix="fastconv-soak-")
    import fastconv as fc
    from fastconv.backends import auto

    backends = [name for name in fc.available_backends() if name != "naive"]
    rng = np.random.default_rng(args.seed)
    warm_up = args.calls // 10
    samples, baseline = [], None
    for i in range(args.calls):
        one_call(fc, rng, backends[i % len(backends)])
        if i + 1 == warm_up:
            baseline = (resident_bytes(), open_descriptors(), threading.active_count())
        if i + 1 > warm_up and (i + 1) % 1000 == 0:
            samples.append(resident_bytes())
            print(f"{i + 1:>6} calls: resident {samples[-1] / 2**20:.1f} MiB, memo {len(auto._resolved)}", flush=True)
    growth = max(samples) / baseline[0] - 1
    leaks = {"descriptors": open_descriptors() - baseline[1], "threads": threading.active_count() - baseline[2]}
    print(f"resident after warm-up {baseline[0] / 2**20:.1f} MiB, at most {max(samples) / 2**20:.1f} MiB "
          f"({growth:+.1%}); descriptors {leaks['descriptors']:+d}, threads {leaks['threads']:+d}; "
          f"auto memo {len(auto._resolved)} (bound {auto.MEMO_SIZE})")
    failed = growth > 0.05 or any(leaks.values()) or len(auto._resolved) > auto.MEMO_SIZE
    print("FAILED" if failed else "ok")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
