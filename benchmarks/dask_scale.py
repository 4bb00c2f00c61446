"""Scale: fastconv.dask on a LocalCluster of 1 and of 2 single-threaded worker processes, and against
dask-image's convolve.

    python benchmarks/dask_scale.py [--images 4000] [--chunk 250] [--bank-size 4000] [--bank-chunk 1000]
        [--filters 16] [--backend auto] [--warmups 2] [--repeats 1]

1. A stack of --images x 3 x 128 x 128 float32 images (chunks of --chunk images) through a 3->32 3x3 conv
   (padding 1, with bias) and a 2x2 max pool, reduced to one number per image so that nothing large travels to
   the client; on 1 worker, then on 2. Target: 2 workers take at most 0.6x the time of 1.
2. A --bank-size x --bank-size single-channel float32 image (chunks of --bank-chunk) filtered by a bank of
   --filters 5x5 filters: fastconv.dask.conv2d with the whole bank at once, against
   dask_image.ndfilters.convolve applied once per filter (zero padding, filters flipped: the same numbers, which
   the script checks on a crop); on the 2-worker cluster. The ratio is dask-image's time over fastconv's.

Every worker runs fastconv (numba, OpenMP and BLAS) on one thread, so that 2 workers use the 2 cores and no
more. Each time is the best of --repeats runs after --warmups untimed runs: numba's kernels load on the first
call, and auto times the candidates for a shape on its 16th call in each worker process (with 16 chunks on 2
workers, the two default warm-ups give each worker 16).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from _dask_cluster import local_cluster, timed

SIZE = 128


def best_time(compute, args) -> float:
    for _ in range(args.warmups):
        compute()
    return min(timed(compute) for _ in range(args.repeats))


def stack_seconds(workers: int, args) -> float:
    """Best time of the conv + pool pipeline over the whole stack on `workers` single-threaded workers."""
    import dask.array as da

    import fastconv.dask as fcd

    rng = np.random.default_rng(0)
    w = (rng.standard_normal((32, 3, 3, 3)) * 0.1).astype(np.float32)
    b = np.zeros(32, np.float32)
    with local_cluster(workers, 1) as client:
        x = da.random.default_rng(0).standard_normal((args.images, 3, SIZE, SIZE), dtype=np.float32,
                                                     chunks=(args.chunk, 3, SIZE, SIZE))
        x = client.persist(x)  # the input is made on the workers and is not part of the time
        pooled = fcd.max_pool2d(fcd.conv2d(x, w, b, padding=1, backend=args.backend), 2, backend=args.backend)
        per_image = pooled.sum(axis=(1, 2, 3))
        return best_time(lambda: per_image.compute(), args)


def bank_seconds(args) -> tuple[float, float, float]:
    """(fastconv's time, dask-image's time, the largest relative difference on a crop) on 2 workers."""
    import dask.array as da
    from dask_image import ndfilters

    import fastconv.dask as fcd

    w = np.random.default_rng(1).standard_normal((args.filters, 1, 5, 5)).astype(np.float32)
    with local_cluster(2, 1) as client:
        image = client.persist(da.random.default_rng(0).random((args.bank_size, args.bank_size), dtype=np.float32,
                                                               chunks=args.bank_chunk))
        ours = fcd.conv2d(image[None, None], w, padding="same", backend=args.backend)[0]
        # scipy's convolve flips the filter: flipping it back gives fastconv's cross-correlation
        theirs = da.stack([ndfilters.convolve(image, w[k, 0, ::-1, ::-1].copy(), mode="constant", cval=0.0)
                           for k in range(args.filters)])
        crop = (slice(None), slice(0, min(300, args.bank_size)), slice(0, min(300, args.bank_size)))
        a, e = (array[crop].compute() for array in (ours, theirs))
        difference = float(np.abs(a - e).max() / np.abs(e).max())
        fastconv_s = best_time(lambda: ours.sum(axis=(1, 2)).compute(), args)
        dask_image_s = best_time(lambda: theirs.sum(axis=(1, 2)).compute(), args)
    return fastconv_s, dask_image_s, difference


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=4000)
    parser.add_argument("--chunk", type=int, default=250, help="images per chunk (default 250)")
    parser.add_argument("--bank-size", type=int, default=4000, help="bank image height and width (default 4000)")
    parser.add_argument("--bank-chunk", type=int, default=1000)
    parser.add_argument("--filters", type=int, default=16)
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--warmups", type=int, default=2, help="untimed runs first (default 2)")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs after the warm-ups; the best counts")
    args = parser.parse_args(argv)

    one, two = stack_seconds(1, args), stack_seconds(2, args)
    fastconv_s, dask_image_s, difference = bank_seconds(args)
    print(f"\nstack {args.images:,} x 3 x {SIZE} x {SIZE} float32, chunks of {args.chunk}: 3->32 3x3 conv + 2x2 max "
          f"pool; bank: {args.bank_size:,} x {args.bank_size:,} float32, chunks of {args.bank_chunk}, "
          f"{args.filters} 5x5 filters; backend {args.backend}; workers single-threaded; best of {args.repeats} "
          f"after {args.warmups} warm-up(s)")
    print("| measurement | value |\n|---|---:|")
    print(f"| stack, 1 worker (s) | {one:.2f} |")
    print(f"| stack, 2 workers (s) | {two:.2f} |")
    print(f"| stack, 2 workers / 1 worker (target <= 0.6) | {two / one:.2f} |")
    print(f"| bank, fastconv.dask.conv2d (s) | {fastconv_s:.2f} |")
    print(f"| bank, dask_image.ndfilters.convolve x {args.filters} (s) | {dask_image_s:.2f} |")
    print(f"| bank, dask-image / fastconv (fastconv faster when > 1) | {dask_image_s / fastconv_s:.2f} |")
    print(f"| bank, max relative difference on a crop | {difference:.1e} |")
    return 0 if difference <= 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
