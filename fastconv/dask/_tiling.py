"""Where each output block of a sliding-window op reads its input, along one axis (pure arithmetic, no dask).

An output o reads the padded input positions [o * stride - pad_before, o * stride - pad_before + extent), with
extent = dilation * (kernel - 1) + 1. The output is cut where the input is cut: output block b holds the outputs
o whose o * stride (where the window would start without padding) lies in input chunk b. So output chunks follow
input chunks, aligned to the stride (with stride 1 and "same" padding they are the input's chunks), and a block
reads its own chunk plus a halo of pad_before positions before it and extent - 1 - pad_before after it.

Each block then calls the in-memory function on its input region with explicit padding, which is nonzero only
where the region meets the array's true border. The last block keeps the whole array's bottom/right padding and
reads up to the end of the input, so that the in-memory output-size rule (ceil_mode included) gives it exactly
its outputs and pooling's divisor and clipping agree with the whole-array call. Blocks at the ends that could not
hold their windows (padding wider than the kernel, ceil_mode's last window) join their neighbour.
"""

from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass


@dataclass(frozen=True)
class AxisBlock:
    """Outputs [out_start, out_stop) read the input positions [in_start, in_stop) with pad_before and pad_after
    padded positions on either side (nonzero only at the input's true borders)."""

    out_start: int
    out_stop: int
    in_start: int
    in_stop: int
    pad_before: int
    pad_after: int


@dataclass(frozen=True)
class Overlap:
    """Positions [start, stop) of a source (an input chunk, or a block's region) that land at
    [at, at + stop - start) of a destination (a block's region, or an input chunk)."""

    start: int
    stop: int
    at: int

    @property
    def source(self) -> slice:
        return slice(self.start, self.stop)

    @property
    def destination(self) -> slice:
        return slice(self.at, self.at + self.stop - self.start)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


class AxisTiling:
    """The output blocks of one axis (H or W) for input chunks ``chunks``, and how blocks and chunks overlap.

    chunks: sizes of the input chunks along the axis; out_size: the whole array's output size along it (as the
    in-memory geometry computed it); extent: dilation * (kernel - 1) + 1.
    """

    def __init__(self, chunks: tuple[int, ...], out_size: int, stride: int, extent: int, pad_before: int,
                 pad_after: int):
        self.chunks = tuple(chunks)
        self.bounds = tuple(itertools.accumulate(self.chunks, initial=0))
        size = self.bounds[-1]
        cuts = {min(_ceil_div(bound, stride), out_size) for bound in self.bounds[1:-1]}
        edges = sorted(cuts | {0, out_size})
        # The last block must start inside [0, size] (with padding wider than the kernel its windows could all
        # start past the end) and span at least one window with the padding (ceil_mode's last window may hang
        # past it), or the in-memory size rule would not give it its outputs: else it joins the block before.
        while len(edges) > 2 and not 0 <= size - (edges[-2] * stride - pad_before) >= extent - pad_after:
            del edges[-2]
        # Likewise the first block must reach the input: with padding wider than the kernel, its windows could
        # all end before row 0.
        while len(edges) > 2 and (edges[1] - 1) * stride - pad_before + extent < 0:
            del edges[1]
        blocks = []
        for out_start, out_stop in zip(edges, edges[1:]):
            start = out_start * stride - pad_before
            last = out_stop == out_size
            stop = size if last else (out_stop - 1) * stride - pad_before + extent
            in_start, in_stop = max(start, 0), min(stop, size)
            blocks.append(AxisBlock(out_start, out_stop, in_start, in_stop, in_start - start,
                                    pad_after if last else stop - in_stop))
        self.blocks = tuple(blocks)

    @property
    def out_chunks(self) -> tuple[int, ...]:
        """Sizes of the output blocks."""
        return tuple(block.out_stop - block.out_start for block in self.blocks)

    def pieces(self, block: int) -> list[tuple[int, Overlap]]:
        """(chunk, overlap) for the input chunks that block ``block``'s region is cut from, in order; one empty
        piece when the region is empty (a block reading only padding), so that it still has a shape."""
        b = self.blocks[block]
        if b.in_start == b.in_stop:
            chunk = min(bisect.bisect_right(self.bounds, b.in_start) - 1, len(self.chunks) - 1)
            local = b.in_start - self.bounds[chunk]
            return [(chunk, Overlap(local, local, 0))]
        return [(chunk, Overlap(max(b.in_start, lo) - lo, min(b.in_stop, hi) - lo, max(b.in_start, lo) - b.in_start))
                for chunk, (lo, hi) in enumerate(zip(self.bounds, self.bounds[1:]))
                if lo < b.in_stop and hi > b.in_start]

    def contributions(self, chunk: int) -> list[tuple[int, Overlap]]:
        """(block, overlap) for the blocks whose regions overlap input chunk ``chunk``, the overlap running from
        the block's region into the chunk."""
        lo, hi = self.bounds[chunk], self.bounds[chunk + 1]
        return [(block, Overlap(max(b.in_start, lo) - b.in_start, min(b.in_stop, hi) - b.in_start,
                                max(b.in_start, lo) - lo))
                for block, b in enumerate(self.blocks) if b.in_start < hi and b.in_stop > lo]
