"""conv2d and conv2d_backward on dask arrays: one in-memory call per output block (per channel chunk)."""

from __future__ import annotations

import functools
import itertools
import operator

import dask.array as da
from dask.base import tokenize

import fastconv as fc
from fastconv._geometry import ConvGeometry, conv_geometry
from fastconv.dask import _tasks
from fastconv.dask._graph import Windows, lazy_array, tree_sum
from fastconv.dask._inputs import backend_name, dask_array, stand_in, small_array
from fastconv.dask._tiling import AxisTiling


def _windows(x: da.Array, g: ConvGeometry) -> Windows:
    return Windows(x.chunks,
                   AxisTiling(x.chunks[2], g.out_h, g.stride_h, g.dilation_h * (g.r - 1) + 1, g.pad_top,
                              g.pad_bottom),
                   AxisTiling(x.chunks[3], g.out_w, g.stride_w, g.dilation_w * (g.s - 1) + 1, g.pad_left,
                              g.pad_right))


def _channels_together(x: da.Array, g: ConvGeometry) -> da.Array:
    """x with its channels in one chunk when groups > 1 (a group's channels must meet); with groups == 1 channel
    chunks stay apart and their contributions are summed."""
    return x.rechunk({1: -1}) if g.groups > 1 else x


def _channel_weights(dsk: dict, name: str, w, x: da.Array, g: ConvGeometry) -> list[tuple]:
    """Keys of the filters each channel chunk of x is multiplied by: w[:, c0:c1] (groups == 1), or all of w."""
    if g.groups > 1:
        slices = [w]
    else:
        edges = [0, *itertools.accumulate(x.chunks[1])]
        slices = [w[:, lo:hi] for lo, hi in zip(edges, edges[1:])]
    for cb, weights in enumerate(slices):
        dsk[(name + "-w", cb)] = weights
    return [(name + "-w", cb) for cb in range(len(slices))]


def _options(g: ConvGeometry, backend: str) -> dict:
    return dict(stride=(g.stride_h, g.stride_w), dilation=(g.dilation_h, g.dilation_w), groups=g.groups,
                backend=backend)


def conv2d(x, w, b=None, *, stride=1, padding=0, dilation=1, groups=1, backend=None) -> da.Array:
    """fastconv.conv2d on a dask array, lazily.

    x : dask array (N, C, H, W), any chunks; w (K, C // groups, R, S) and b (K,) or None: numpy arrays (dask
    arrays are computed). Other arguments as fastconv.conv2d; backend None is the caller's default at this call.
    Returns y, a dask array (N, K, Ho, Wo) chunked as x along N, in one chunk along K, and along H and W in one
    chunk per input chunk (the outputs whose windows start in it). Channel chunks of x are summed in a tree
    (groups == 1) or merged into one chunk (groups > 1).
    """
    op = "fastconv.dask.conv2d"
    x = dask_array(op, "x", x)
    w, b = small_array(op, "w", w), small_array(op, "b", b)
    g = conv_geometry(stand_in(x), w, b, stride=stride, padding=padding, dilation=dilation, groups=groups, op=op)
    options = _options(g, backend_name(op, backend))
    # copies (the graph must not change if the caller's arrays do) in the computation dtype, as the in-memory call
    # converts them: each channel chunk's partial is then in it
    w = w.astype(g.dtype)
    b = None if b is None else b.astype(g.dtype)
    x = _channels_together(x, g)
    windows = _windows(x, g)
    name = f"fastconv-conv2d-{tokenize(x.name, w, b, g, options)}"
    dsk: dict = {}
    weights = _channel_weights(dsk, name, w, x, g)
    if b is not None:
        dsk[(name + "-b", 0)] = b
    partials = {}
    for nb, cb, i, j in windows.blocks():
        task = functools.partial(_tasks.forward, fc.conv2d, padding=windows.padding(i, j), **options)
        bias = (name + "-b", 0) if b is not None and cb == 0 else None
        partials.setdefault((nb, 0, i, j), []).append(
            (task, windows.region(dsk, name + "-piece", x, nb, cb, i, j), weights[cb], bias))
    chunks = windows.out_chunks((g.k,))
    if len(weights) == 1:
        dsk.update({(name, *index): addends[0] for index, addends in partials.items()})
        return lazy_array(name, dsk, chunks, g.dtype, [x])
    return tree_sum(name, dsk, partials, chunks, g.dtype, [x])


def conv2d_backward(dy, x, w, *, stride=1, padding=0, dilation=1, groups=1, need_dx=True, need_dw=True,
                    need_db=True, backend=None):
    """fastconv.conv2d_backward on dask arrays, lazily.

    dy : dask array (N, K, Ho, Wo), rechunked to conv2d's output chunks for x if it is not in them; x : dask
    array (N, C, H, W); w : numpy (K, C // groups, R, S). Returns (dx, dw, db) as dask arrays, each None when
    not needed: dx (N, C, H, W) in x's chunks, the sum of the gradients of the overlapping block regions; dw
    (K, C // groups, R, S) and db (K,) reduced in a tree over the batch and spatial blocks. x is read only for
    dw. Compute them together (dask.compute(dx, dw, db)) to run each block once.
    """
    op = "fastconv.dask.conv2d_backward"
    dy, x = dask_array(op, "dy", dy), dask_array(op, "x", x)
    w = small_array(op, "w", w)
    g = conv_geometry(stand_in(x), w, stride=stride, padding=padding, dilation=dilation, groups=groups, op=op,
                      dy=stand_in(dy))
    options = _options(g, backend_name(op, backend))
    w = w.astype(g.dtype)
    x_chunks = x.chunks
    x = _channels_together(x, g)
    windows = _windows(x, g)
    dy = dy.rechunk(windows.out_chunks((g.k,)))
    db = dy.sum(axis=(0, 2, 3), dtype=g.dtype) if need_db else None
    if not (need_dx or need_dw):
        return None, None, db
    name = f"fastconv-conv2d-backward-{tokenize(dy.name, x.name, w, g, options, need_dx, need_dw)}"
    dsk: dict = {}
    weights = _channel_weights(dsk, name, w, x, g)
    partial_dw = {}
    for nb, cb, i, j in windows.blocks():
        task = functools.partial(_tasks.backward, fc.conv2d_backward, padding=windows.padding(i, j),
                                 need_dx=bool(need_dx), need_dw=bool(need_dw), need_db=False, **options)
        # dx needs only x's shape: x is read (and loaded) only for dw
        region = (windows.region(dsk, name + "-piece", x, nb, cb, i, j) if need_dw
                  else windows.blank(x.dtype, nb, cb, i, j))
        dsk[(name, nb, cb, i, j)] = (task, (dy.name, nb, 0, i, j), region, weights[cb])  # (dx, dw, None)
        dsk[(name + "-region-dx", nb, cb, i, j)] = (operator.getitem, (name, nb, cb, i, j), 0)
        partial_dw.setdefault((0, cb, 0, 0), []).append((operator.getitem, (name, nb, cb, i, j), 1))
    dx = dw = None
    if need_dx:
        windows.overlap_add(dsk, name + "-dx", name + "-region-dx", g.dtype)
        dx = lazy_array(name + "-dx", dsk, x.chunks, g.dtype, [dy, x]).rechunk(x_chunks)
    if need_dw:
        dw_chunks = ((g.k,), x.chunks[1] if g.groups == 1 else (g.c_per_group,), (g.r,), (g.s,))
        dw = tree_sum(name + "-dw", dsk, partial_dw, dw_chunks, g.dtype, [dy, x])
    return dx, dw, db
