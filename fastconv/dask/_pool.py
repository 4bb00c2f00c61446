"""Max and average pooling, forward and backward, on dask arrays: one in-memory call per output block, batch and
channel chunks one-to-one."""

from __future__ import annotations

import functools
import operator

import dask.array as da
import numpy as np
from dask.base import tokenize

import fastconv as fc
from fastconv._geometry import PoolGeometry, pool_geometry
from fastconv.dask import _tasks
from fastconv.dask._graph import Windows, lazy_array
from fastconv.dask._inputs import backend_name, dask_array, stand_in
from fastconv.dask._tiling import AxisTiling


def _setup(op: str, x, kernel_size, stride, padding, ceil_mode, count_include_pad=True, dy=None):
    """Checked (x, dy, geometry, windows); dy (None stays None) is not rechunked yet."""
    x = dask_array(op, "x", x)
    dy = None if dy is None else dask_array(op, "dy", dy)
    g = pool_geometry(stand_in(x), kernel_size, stride=stride, padding=padding, ceil_mode=ceil_mode,
                      count_include_pad=count_include_pad, op=op, dy=None if dy is None else stand_in(dy))
    windows = Windows(x.chunks, AxisTiling(x.chunks[2], g.out_h, g.stride_h, g.kh, g.pad_top, g.pad_bottom),
                      AxisTiling(x.chunks[3], g.out_w, g.stride_w, g.kw, g.pad_left, g.pad_right))
    return x, dy, g, windows


def _options(op: str, g: PoolGeometry, backend: str | None, **more) -> dict:
    """The in-memory call's keyword arguments shared by every block (each adds its own padding)."""
    return dict(kernel_size=(g.kh, g.kw), stride=(g.stride_h, g.stride_w), ceil_mode=g.ceil_mode,
                backend=backend_name(op, backend), **more)


def _forward(function, name: str, x: da.Array, g: PoolGeometry, windows: Windows, options: dict) -> da.Array:
    dsk: dict = {}
    for nb, cb, i, j in windows.blocks():
        task = functools.partial(_tasks.forward, function, padding=windows.padding(i, j), **options)
        dsk[(name, nb, cb, i, j)] = (task, windows.region(dsk, name + "-piece", x, nb, cb, i, j))
    return lazy_array(name, dsk, windows.out_chunks(), g.dtype, [x])


def _dx(name: str, dsk: dict, x: da.Array, g: PoolGeometry, windows: Windows, inputs: list[da.Array]) -> da.Array:
    """dx in x's chunks from the region gradients (name + "-region", nb, cb, i, j) that dsk holds."""
    windows.overlap_add(dsk, name, name + "-region", g.dtype)
    return lazy_array(name, dsk, x.chunks, g.dtype, inputs)


def max_pool2d(x, kernel_size, *, stride=None, padding=0, ceil_mode=False, return_indices=False, backend=None):
    """fastconv.max_pool2d on a dask array (N, C, H, W), lazily; arguments as the in-memory function.

    Returns y (N, C, Ho, Wo), chunked as x along N and C and along H and W in one chunk per input chunk, and
    with return_indices the int64 indices (same chunks): flat indices h * W + w into the whole input's plane.
    """
    op = "fastconv.dask.max_pool2d"
    x, _, g, windows = _setup(op, x, kernel_size, stride, padding, ceil_mode)
    options = _options(op, g, backend)
    name = f"fastconv-max-pool2d-{tokenize(x.name, g, options, return_indices)}"
    if not return_indices:
        return _forward(fc.max_pool2d, name, x, g, windows, options)
    dsk: dict = {}
    for nb, cb, i, j in windows.blocks():
        task = functools.partial(_tasks.max_pool2d_with_indices, origin=windows.origin(i, j), width=g.w,
                                 padding=windows.padding(i, j), **options)
        dsk[(name + "-both", nb, cb, i, j)] = (task, windows.region(dsk, name + "-piece", x, nb, cb, i, j))
        dsk[(name, nb, cb, i, j)] = (operator.getitem, (name + "-both", nb, cb, i, j), 0)
        dsk[(name + "-indices", nb, cb, i, j)] = (operator.getitem, (name + "-both", nb, cb, i, j), 1)
    return (lazy_array(name, dsk, windows.out_chunks(), g.dtype, [x]),
            lazy_array(name + "-indices", dsk, windows.out_chunks(), np.dtype(np.int64), [x]))


def avg_pool2d(x, kernel_size, *, stride=None, padding=0, ceil_mode=False, count_include_pad=True, backend=None):
    """fastconv.avg_pool2d on a dask array (N, C, H, W), lazily; arguments as the in-memory function.

    Returns y (N, C, Ho, Wo), chunked as x along N and C and along H and W in one chunk per input chunk. Each
    block pads only at the array's true border, so count_include_pad's divisor is the whole array's.
    """
    op = "fastconv.dask.avg_pool2d"
    x, _, g, windows = _setup(op, x, kernel_size, stride, padding, ceil_mode, count_include_pad)
    options = _options(op, g, backend, count_include_pad=g.count_include_pad)
    name = f"fastconv-avg-pool2d-{tokenize(x.name, g, options)}"
    return _forward(fc.avg_pool2d, name, x, g, windows, options)


def max_pool2d_backward(dy, x, kernel_size, *, stride=None, padding=0, ceil_mode=False, indices=None,
                        backend=None) -> da.Array:
    """fastconv.max_pool2d_backward on dask arrays, lazily: dx (N, C, H, W) in x's chunks.

    dy (and indices, a dask array of int64, if given) are rechunked to max_pool2d's output chunks for x. Unlike
    the in-memory function, each index must point into its own pooling window (as max_pool2d returns them): an
    index elsewhere is a ValueError when the block holding it runs. With indices, x's values are not read.
    """
    op = "fastconv.dask.max_pool2d_backward"
    x, dy, g, windows = _setup(op, x, kernel_size, stride, padding, ceil_mode, dy=dy)
    options = _options(op, g, backend)
    if indices is not None:
        indices = dask_array(op, "indices", indices)
        if indices.shape != g.y_shape:
            raise ValueError(f"{op}: indices must have the output's shape {g.y_shape}, got {indices.shape}")
        if indices.dtype != np.int64:
            raise TypeError(f"{op}: indices must be int64 (as returned by max_pool2d), got {indices.dtype}")
        indices = indices.rechunk(windows.out_chunks())
    dy = dy.rechunk(windows.out_chunks())
    sources = (dy.name, x.name, None if indices is None else indices.name)
    name = f"fastconv-max-pool2d-backward-{tokenize(*sources, g, options)}"
    dsk: dict = {}
    for nb, cb, i, j in windows.blocks():
        padding = windows.padding(i, j)
        if indices is None:
            task = (functools.partial(_tasks.backward, fc.max_pool2d_backward, padding=padding, **options),
                    (dy.name, nb, cb, i, j), windows.region(dsk, name + "-piece", x, nb, cb, i, j))
        else:
            task = (functools.partial(_tasks.max_pool2d_backward_from_indices, origin=windows.origin(i, j),
                                      width=g.w, padding=padding, **options),
                    (dy.name, nb, cb, i, j), (indices.name, nb, cb, i, j),
                    windows.blank(x.dtype, nb, cb, i, j))
        dsk[(name + "-region", nb, cb, i, j)] = task
    return _dx(name, dsk, x, g, windows, [dy, x] if indices is None else [dy, indices])


def avg_pool2d_backward(dy, x, kernel_size, *, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                        backend=None) -> da.Array:
    """fastconv.avg_pool2d_backward on dask arrays, lazily: dx (N, C, H, W) in x's chunks; dy is rechunked to
    avg_pool2d's output chunks for x. Only x's shape, chunks and dtype are used."""
    op = "fastconv.dask.avg_pool2d_backward"
    x, dy, g, windows = _setup(op, x, kernel_size, stride, padding, ceil_mode, count_include_pad, dy=dy)
    options = _options(op, g, backend, count_include_pad=g.count_include_pad)
    dy = dy.rechunk(windows.out_chunks())
    name = f"fastconv-avg-pool2d-backward-{tokenize(dy.name, x.name, g, options)}"
    dsk: dict = {}
    for nb, cb, i, j in windows.blocks():
        task = functools.partial(_tasks.backward, fc.avg_pool2d_backward, padding=windows.padding(i, j), **options)
        dsk[(name + "-region", nb, cb, i, j)] = (task, (dy.name, nb, cb, i, j), windows.blank(x.dtype, nb, cb, i, j))
    return _dx(name, dsk, x, g, windows, [dy])
