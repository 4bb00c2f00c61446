"""Task graphs of a sliding-window op over a (N, C, H, W) dask array: block regions cut from neighbouring chunks,
gradients of overlapping regions added back onto chunks, and partial sums reduced in a tree."""

from __future__ import annotations

import itertools
import operator

import dask.array as da
import numpy as np
from dask.highlevelgraph import HighLevelGraph

from fastconv.dask import _tasks
from fastconv.dask._tiling import AxisTiling

#: partial sums (channel chunks of a convolution, the per-block dw) are added this many at a time, in a tree
TREE_FANIN = 8

ALL = slice(None)


class Windows:
    """The output blocks of one sliding-window op: batch and channel chunks of x one-to-one, rows and cols as the
    AxisTilings say. A block is indexed (nb, cb, i, j): batch chunk, channel chunk, row block, column block."""

    def __init__(self, x_chunks: tuple[tuple[int, ...], ...], rows: AxisTiling, cols: AxisTiling):
        self.batch_chunks, self.channel_chunks = x_chunks[0], x_chunks[1]
        self.rows, self.cols = rows, cols

    def blocks(self):
        return itertools.product(range(len(self.batch_chunks)), range(len(self.channel_chunks)),
                                 range(len(self.rows.blocks)), range(len(self.cols.blocks)))

    def out_chunks(self, channels: tuple[int, ...] | None = None) -> tuple[tuple[int, ...], ...]:
        """Chunks of the output (N, channels, Ho, Wo); channels default to x's channel chunks."""
        return (self.batch_chunks, self.channel_chunks if channels is None else channels, self.rows.out_chunks,
                self.cols.out_chunks)

    def padding(self, i: int, j: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """Block (i, j)'s explicit ((top, bottom), (left, right)) padding."""
        row, col = self.rows.blocks[i], self.cols.blocks[j]
        return (row.pad_before, row.pad_after), (col.pad_before, col.pad_after)

    def origin(self, i: int, j: int) -> tuple[int, int]:
        """The input row and column where block (i, j)'s region starts."""
        return self.rows.blocks[i].in_start, self.cols.blocks[j].in_start

    def region_shape(self, nb: int, cb: int, i: int, j: int) -> tuple[int, int, int, int]:
        row, col = self.rows.blocks[i], self.cols.blocks[j]
        return (self.batch_chunks[nb], self.channel_chunks[cb], row.in_stop - row.in_start,
                col.in_stop - col.in_start)

    def region(self, dsk: dict, name: str, x: da.Array, nb: int, cb: int, i: int, j: int) -> list[list]:
        """Keys [row][col] of the pieces of x (chunked as the windows) that block (nb, cb, i, j)'s region is
        made of; pieces that are not whole chunks are cut by tasks (name, nb, cb, i, j, ih, iw) added to dsk,
        which run where the chunk is, so that only the halo travels."""
        nested = []
        for ih, row in self.rows.pieces(i):
            keys = []
            for iw, col in self.cols.pieces(j):
                key = (x.name, nb, cb, ih, iw)
                if (row.stop - row.start, col.stop - col.start) != (self.rows.chunks[ih], self.cols.chunks[iw]):
                    dsk[(name, nb, cb, i, j, ih, iw)] = (operator.getitem, key, (ALL, ALL, row.source, col.source))
                    key = (name, nb, cb, i, j, ih, iw)
                keys.append(key)
            nested.append(keys)
        return nested

    def blank(self, dtype: np.dtype, nb: int, cb: int, i: int, j: int) -> _tasks.Blank:
        """Stands for block (nb, cb, i, j)'s region where its values are not read (x is then never loaded)."""
        return _tasks.Blank(self.region_shape(nb, cb, i, j), np.dtype(dtype))

    def overlap_add(self, dsk: dict, name: str, regions: str, dtype: np.dtype) -> None:
        """Adds to dsk the input-shaped chunks (name, nb, cb, ih, iw): the sum of the parts of the region
        gradients (regions, nb, cb, i, j) that overlap each chunk (neighbouring regions share their halo)."""
        for nb, cb, ih, iw in itertools.product(range(len(self.batch_chunks)), range(len(self.channel_chunks)),
                                                range(len(self.rows.chunks)), range(len(self.cols.chunks))):
            shape = (self.batch_chunks[nb], self.channel_chunks[cb], self.rows.chunks[ih], self.cols.chunks[iw])
            keys, destinations = [], []
            for (i, row), (j, col) in itertools.product(self.rows.contributions(ih), self.cols.contributions(iw)):
                key = (regions, nb, cb, i, j)
                if self.region_shape(nb, cb, i, j)[2:] != (row.stop - row.start, col.stop - col.start):
                    dsk[(name + "-part", nb, cb, ih, iw, i, j)] = (operator.getitem, key,
                                                                   (ALL, ALL, row.source, col.source))
                    key = (name + "-part", nb, cb, ih, iw, i, j)
                keys.append(key)
                destinations.append((ALL, ALL, row.destination, col.destination))
            whole = (ALL, ALL, slice(0, shape[2]), slice(0, shape[3]))
            if len(keys) == 1 and destinations[0] == whole:
                dsk[(name, nb, cb, ih, iw)] = keys[0]  # the chunk is one whole region: no copy
            else:
                dsk[(name, nb, cb, ih, iw)] = (_tasks.add_pieces, shape, dtype, keys, destinations)


def lazy_array(name: str, dsk: dict, chunks: tuple[tuple[int, ...], ...], dtype: np.dtype,
               inputs: list[da.Array]) -> da.Array:
    """The dask array whose blocks are dsk's keys (name, ...); dsk may hold intermediate keys as well (a copy is
    taken: the caller may go on adding keys for another array)."""
    graph = HighLevelGraph.from_collections(name, dict(dsk), dependencies=inputs)
    return da.Array(graph, name, chunks, meta=np.empty((0,) * len(chunks), dtype))


def tree_sum(name: str, dsk: dict, partials: dict[tuple[int, ...], list], chunks: tuple[tuple[int, ...], ...],
             dtype: np.dtype, inputs: list[da.Array]) -> da.Array:
    """The sum of partial arrays, added TREE_FANIN at a time. partials maps each block index of the result
    (chunks) to the keys (or tasks) of its addends, the same number for every block."""
    count = len(next(iter(partials.values())))
    for index, addends in partials.items():
        for p, addend in enumerate(addends):
            dsk[(name, p, *index)] = (operator.getitem, addend, (None, Ellipsis))  # stacked along a new axis 0
    stacked = lazy_array(name, dsk, ((1,) * count, *chunks), dtype, inputs)
    return stacked.sum(axis=0, dtype=dtype, split_every=TREE_FANIN)
