"""Out of core: a single-channel float32 image in a zarr array on disk, filtered by a bank of 5x5 filters
(fastconv.dask.conv2d, padding "same") into a zarr array on disk, by a LocalCluster of worker processes with a
memory limit each.

    python benchmarks/dask_out_of_core.py [--size 16000] [--filters 16] [--chunk 1000] [--workers 2]
        [--memory-limit 2GB] [--out DIR] [--keep]

At the defaults the output is 16 x 16,000 x 16,000 float32, 16.4 GB on disk (the input 1 GB), far more than the
two workers' 2 GB each: it must stream. The script writes a random input, filters it, then spot-checks crops of
the output (the corners, where the padding is, and crops across chunk corners) against fastconv.conv2d on the
same crop of the input padded by hand, and reports the time, the peak memory of each worker and whether any
worker was killed or restarted. Exit status 1 if a crop disagrees or a worker was restarted. The data goes to a
new directory under the system's temp dir unless --out says where, and is deleted afterwards unless --keep.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile

import numpy as np

from _dask_cluster import local_cluster, peak_worker_memory, restarted_workers, timed, worker_pids

KERNEL = 5
CROP = 200


def crops(size: int, chunk: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """Top-left corners of CROP x CROP crops: the four corners of the image, and two crops straddling a chunk
    corner inside it (when the image has one)."""
    far = max(size - CROP, 0)
    corners = [(0, 0), (0, far), (far, 0), (far, far)]
    inner = [c for c in range(chunk, size, chunk) if CROP // 2 <= c <= size - CROP // 2]
    for _ in range(min(2, len(inner))):
        r, c = rng.choice(inner), rng.choice(inner)
        corners.append((int(r) - CROP // 2, int(c) - CROP // 2))
    return corners


def spot_check(x_path: str, y_path: str, w: np.ndarray, size: int, chunk: int) -> float:
    """The largest relative difference between the stored output and fastconv.conv2d on crops of the input
    (zero-padded by hand where a crop's halo leaves the image)."""
    import dask.array as da

    import fastconv as fc

    x, y = da.from_zarr(x_path), da.from_zarr(y_path)
    half = KERNEL // 2
    worst = 0.0
    for r0, c0 in crops(size, chunk, np.random.default_rng(0)):
        r1, c1 = min(r0 + CROP, size), min(c0 + CROP, size)
        lo_r, lo_c = max(r0 - half, 0), max(c0 - half, 0)
        hi_r, hi_c = min(r1 + half, size), min(c1 + half, size)
        region = x[:, :, lo_r:hi_r, lo_c:hi_c].compute()
        region = np.pad(region, ((0, 0), (0, 0), (lo_r - (r0 - half), (r1 + half) - hi_r),
                                 (lo_c - (c0 - half), (c1 + half) - hi_c)))
        expected = fc.conv2d(region, w)
        actual = y[:, :, r0:r1, c0:c1].compute()
        worst = max(worst, float(np.abs(actual - expected).max() / max(np.abs(expected).max(), 1e-30)))
    return worst


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=16_000, help="image height and width (default 16000)")
    parser.add_argument("--filters", type=int, default=16, help="filters in the bank (default 16)")
    parser.add_argument("--chunk", type=int, default=1000, help="chunk height and width (default 1000)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--threads-per-worker", type=int, default=1)
    parser.add_argument("--memory-limit", default="2GB", help="per worker (default 2GB)")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--out", help="directory for the zarr arrays (default: a new one under the temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the zarr arrays")
    args = parser.parse_args(argv)

    import dask.array as da

    import fastconv.dask as fcd

    out_dir = args.out or tempfile.mkdtemp(prefix="fastconv-dask-out-of-core-")
    os.makedirs(out_dir, exist_ok=True)
    x_bytes, y_bytes = args.size ** 2 * 4, args.filters * args.size ** 2 * 4
    free = shutil.disk_usage(out_dir).free
    print(f"writing {(x_bytes + y_bytes) / 1e9:.1f} GB (input {x_bytes / 1e9:.2f} GB, output {y_bytes / 1e9:.2f} GB) "
          f"under {out_dir}; {free / 1e9:.1f} GB free there", flush=True)
    if x_bytes + y_bytes > free:
        print("not enough free disk space: pass --out DIR on a larger disk, or a smaller --size", file=sys.stderr)
        return 1
    x_path, y_path = os.path.join(out_dir, "image.zarr"), os.path.join(out_dir, "filtered.zarr")
    w = np.random.default_rng(1).standard_normal((args.filters, 1, KERNEL, KERNEL)).astype(np.float32)
    try:
        with local_cluster(args.workers, args.threads_per_worker, args.memory_limit) as client:
            pids = worker_pids(client)
            chunks = (1, 1, args.chunk, args.chunk)
            image = da.random.default_rng(0).random((1, 1, args.size, args.size), dtype=np.float32, chunks=chunks)
            write_s = timed(lambda: da.to_zarr(image, x_path, overwrite=True))
            y = fcd.conv2d(da.from_zarr(x_path), w, padding="same", backend=args.backend)
            filter_s = timed(lambda: da.to_zarr(y, y_path, overwrite=True))
            restarted = restarted_workers(pids, worker_pids(client))
            peaks = peak_worker_memory(client)
        worst = spot_check(x_path, y_path, w, args.size, args.chunk)
    finally:
        if not args.keep:
            shutil.rmtree(out_dir, ignore_errors=True)
    ok = worst <= 1e-4 and restarted == 0
    print(f"\nimage {args.size:,} x {args.size:,} float32 in chunks of {args.chunk}, {args.filters} filters "
          f"{KERNEL}x{KERNEL}, {args.workers} workers x {args.threads_per_worker} thread(s), "
          f"memory limit {args.memory_limit} each, backend {args.backend}")
    print("| step | value |\n|---|---:|")
    print(f"| write input (s) | {write_s:.1f} |")
    print(f"| filter into zarr (s) | {filter_s:.1f} |")
    print(f"| output written (GB/s) | {y_bytes / 1e9 / filter_s:.3f} |")
    print(f"| peak worker memory (GB) | {', '.join(f'{p / 1e9:.2f}' for p in peaks.values())} |")
    print(f"| workers killed or restarted | {restarted} |")
    print(f"| spot check, max relative difference ({CROP}x{CROP} crops) | {worst:.1e} |")
    print(f"{'OK' if ok else 'FAILED'}" + ("" if args.keep else f" (deleted {out_dir})"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
