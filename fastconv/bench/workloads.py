"""Workloads for auto: whole jobs whose shapes vary, timed with auto (tuning included) against each fixed backend.

    python -m fastconv.bench.workloads [--workloads varied_inference,train_epoch,resnet18_b1,resnet18_b8]
                                       [--repeats 3] [--json FILE]

- varied_inference: batch 1, a new H x W from 20 to 80 pixels every call (photos of different sizes); per call a
  3x3 conv forward and backward, a 2x2 max pool forward and backward and a 5x5 "same" conv; 60 calls.
- train_epoch: one epoch of SimpleConvNet on scikit-learn's digits (8x8 images upscaled to 28x28), batches of
  100, whose last batch is partial.
- resnet18_b1, resnet18_b8: a forward pass of ResNet-18's convolution and pooling layers at 224x224
  (fastconv.bench.networks; each distinct layer as often as it occurs), batch 1 and 8, on inputs and filters
  drawn once, before timing.

Every workload first runs once with each fixed backend (compilation, first touches: untimed). Then, per repeat,
each fixed backend runs it, auto runs it in a fresh cache (a new cache directory, nothing in memory: every
decision and every measurement is paid in the timed run), and auto runs it again in a warm cache (after
auto.MEASURE_ON_VISIT + auto.TRIAL_CALLS untimed runs, so that every bucket worth measuring has been measured and
every switch tried where the workload runs it). The minimum over
repeats counts. The table gives seconds and auto / (best fixed backend) for the fresh and the warm cache.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import tempfile
import time
from typing import Callable

import numpy as np

import fastconv as fc
from fastconv.backends import auto
from fastconv.bench.networks import NETWORKS, ConvLayer

FIXED_BACKENDS = ("cython", "numba")


def varied_inference(backend: str, calls: int = 60, channels: int = 16, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    w3 = rng.standard_normal((channels, channels, 3, 3)).astype(np.float32)
    w5 = rng.standard_normal((channels, channels, 5, 5)).astype(np.float32)
    for _ in range(calls):
        h, w = (int(v) for v in rng.integers(20, 81, 2))
        x = rng.standard_normal((1, channels, h, w)).astype(np.float32)
        y = fc.conv2d(x, w3, padding=1, backend=backend)
        fc.conv2d_backward(y, x, w3, padding=1, backend=backend)
        pooled, indices = fc.max_pool2d(y, 2, return_indices=True, backend=backend)
        fc.max_pool2d_backward(pooled, y, 2, indices=indices, backend=backend)
        fc.conv2d(x, w5, padding="same", backend=backend)


def train_epoch(backend: str) -> None:
    from fastconv.nn import SimpleConvNet, Trainer, load_digits

    (x_train, t_train), (x_test, t_test) = load_digits()
    x_train, x_test = (np.kron(x, np.ones((1, 1, 4, 4), x.dtype))[:, :, 2:30, 2:30] for x in (x_train, x_test))
    network = SimpleConvNet(input_dim=(1, 28, 28), backend=backend)
    Trainer(network, x_train, t_train, x_test, t_test, epochs=1, mini_batch_size=100, optimizer="Adam",
            optimizer_param={"lr": 0.001}, evaluate_sample_num_per_epoch=100, verbose=False).train()


def network_forward(backend: str, network: str, batch: int) -> None:
    for layer, x, w in _network_operands(network, batch):
        shape = layer.shape(batch)
        for _ in range(layer.count):
            if isinstance(layer, ConvLayer):
                fc.conv2d(x, w, backend=backend, **shape.kwargs)
            elif layer.mode == "max":
                fc.max_pool2d(x, shape.kernel_size, backend=backend, **shape.kwargs)
            else:
                fc.avg_pool2d(x, shape.kernel_size, backend=backend, **shape.kwargs)


@functools.lru_cache(maxsize=2)
def _network_operands(network: str, batch: int, seed: int = 0) -> list[tuple]:
    """(layer, x, w or None) of every distinct layer, drawn once: the timed runs pay for the layers, not for
    drawing random numbers (a large share of each timed run when they were drawn in it)."""
    rng = np.random.default_rng(seed)
    operands = []
    for layer in NETWORKS[network]:
        shape = layer.shape(batch)
        w = rng.standard_normal(shape.w).astype(np.float32) if isinstance(layer, ConvLayer) else None
        operands.append((layer, rng.standard_normal(shape.x).astype(np.float32), w))
    return operands


WORKLOADS: dict[str, Callable[[str], None]] = {
    "varied_inference": varied_inference,
    "train_epoch": train_epoch,
    "resnet18_b1": lambda backend: network_forward(backend, "resnet18", 1),
    "resnet18_b8": lambda backend: network_forward(backend, "resnet18", 8),
}


def _seconds(run: Callable[[str], None], backend: str) -> float:
    start = time.perf_counter()
    run(backend)
    return time.perf_counter() - start


def _fresh_cache() -> None:
    """auto starts over: an empty cache directory, nothing in memory."""
    os.environ["FASTCONV_CACHE_DIR"] = tempfile.mkdtemp(prefix="fastconv-workload-")
    auto.clear_memory()


def measure(name: str, repeats: int) -> dict[str, float]:
    """Best seconds of each fixed backend, of auto in a fresh cache and of auto in a warm cache."""
    run = WORKLOADS[name]
    for backend in FIXED_BACKENDS:
        run(backend)
    best: dict[str, float] = {}
    for _ in range(repeats):
        times = {backend: _seconds(run, backend) for backend in FIXED_BACKENDS}
        _fresh_cache()
        times["auto fresh"] = _seconds(run, "auto")
        for _ in range(auto.MEASURE_ON_VISIT + auto.TRIAL_CALLS):
            run("auto")
        times["auto warm"] = _seconds(run, "auto")
        best = {key: min(seconds, best.get(key, seconds)) for key, seconds in times.items()}
    return best


def table(results: dict[str, dict[str, float]]) -> str:
    lines = ["| workload | cython s | numba s | auto fresh s | auto warm s | fresh / best fixed | warm / best fixed |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, times in results.items():
        fixed = min(times[backend] for backend in FIXED_BACKENDS)
        lines.append(f"| {name} | {times['cython']:.3f} | {times['numba']:.3f} | {times['auto fresh']:.3f} | "
                     f"{times['auto warm']:.3f} | {times['auto fresh'] / fixed:.2f} | "
                     f"{times['auto warm'] / fixed:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fastconv.bench.workloads", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated names (default: all)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats; the minimum counts (default 3)")
    parser.add_argument("--json", metavar="FILE", help="save the times here")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.workloads.split(",") if name.strip()]
    unknown = [name for name in names if name not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workload(s) {', '.join(unknown)}; valid: {', '.join(WORKLOADS)}")
    missing = [backend for backend in FIXED_BACKENDS if backend not in fc.available_backends()]
    if missing:
        parser.error(f"the workloads compare auto with {', '.join(FIXED_BACKENDS)}; unavailable: {missing}")
    results = {}
    for name in names:
        results[name] = measure(name, args.repeats)
        print(f"{name}: " + ", ".join(f"{key} {seconds:.3f} s" for key, seconds in results[name].items()),
              flush=True)
    print(table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": fc.get_num_threads(), "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
