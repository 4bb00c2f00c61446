"""Arguments of the dask functions, checked on the caller's side before any graph is built."""

from __future__ import annotations

import math

import dask.array as da
import numpy as np

from fastconv import _backend
from fastconv._geometry import as_array


def dask_array(op: str, name: str, value) -> da.Array:
    """value itself when it is a dask array with known chunk sizes, else a TypeError (ValueError) naming it."""
    if not isinstance(value, da.Array):
        raise TypeError(f"{op}: {name} must be a dask.array.Array, got {type(value).__name__}; wrap a numpy array "
                        f"with dask.array.from_array({name}, chunks=...) or call fastconv.{op.rsplit('.', 1)[-1]}")
    if any(math.isnan(size) for sizes in value.chunks for size in sizes):
        raise ValueError(f"{op}: {name} has unknown chunk sizes (shape {value.shape}); call "
                         f"{name}.compute_chunk_sizes() first")
    return value


def small_array(op: str, name: str, value) -> np.ndarray | None:
    """A weight or bias as a numpy array (a dask array is computed: weights are small), None stays None."""
    if value is None:
        return None
    if isinstance(value, da.Array):
        value = value.compute()
    return as_array(op, name, value)


def stand_in(a: da.Array) -> np.ndarray:
    """A zero-stride numpy stand-in with a's shape and dtype, for the in-memory shape checks (no memory)."""
    return np.broadcast_to(np.zeros((), a.dtype), a.shape)


def backend_name(op: str, backend: str | None) -> str:
    """The backend's name; None is the caller's default now (the workers run that one, not their own default).
    Whether it can run is found out where it runs."""
    return _backend.get_backend() if backend is None else _backend.check_name(backend, op)
