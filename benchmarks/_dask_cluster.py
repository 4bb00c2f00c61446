"""What the dask benchmark scripts share: a LocalCluster of worker processes whose fastconv kernels use only the
threads each worker was given, and what the workers report about themselves (pid, peak memory)."""

from __future__ import annotations

import contextlib
import os
import resource
import time

import fastconv as fc


@contextlib.contextmanager
def local_cluster(workers: int, threads_per_worker: int = 1, memory_limit: str | None = None):
    """A distributed Client on a new LocalCluster of worker processes; each worker's fastconv (numba, OpenMP and
    BLAS together) runs on threads_per_worker threads, so that the workers do not oversubscribe the cores.
    memory_limit: per worker, e.g. "2GB" (None: distributed's default share of the machine)."""
    from distributed import Client, LocalCluster

    options = {} if memory_limit is None else {"memory_limit": memory_limit}
    with LocalCluster(n_workers=workers, threads_per_worker=threads_per_worker, processes=True,
                      dashboard_address=None, worker_dashboard_address=None, **options) as cluster, \
            Client(cluster) as client:
        client.run(fc.set_num_threads, threads_per_worker)
        yield client


def worker_pids(client) -> dict[str, int]:
    """Worker address -> process id: a worker killed (and restarted by its nanny) comes back with a new one."""
    return client.run(os.getpid)


def restarted_workers(before: dict[str, int], after: dict[str, int]) -> int:
    """How many of the workers seen at the start are gone or running in another process now."""
    return sum(after.get(address) != pid for address, pid in before.items())


def peak_worker_memory(client) -> dict[str, int]:
    """Worker address -> its process's peak resident memory in bytes (Linux reports KiB)."""
    usage = client.run(resource.getrusage, resource.RUSAGE_SELF)
    return {address: u.ru_maxrss * 1024 for address, u in usage.items()}


def timed(compute) -> float:
    """Seconds that compute() takes."""
    start = time.perf_counter()
    compute()
    return time.perf_counter() - start
