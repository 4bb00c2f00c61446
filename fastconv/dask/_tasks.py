"""What runs on the workers: assemble a block's input region from its pieces, call the in-memory function on it,
and add region gradients back onto input chunks. Module-level functions only, so that every scheduler (threads,
processes, distributed) can pickle them by reference."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import fastconv as fc


@dataclass(frozen=True)
class Blank:
    """An input region whose values are never read (avg pooling's backward, conv's dx without dw, max pooling's
    backward from indices): a zero-stride view of its shape and dtype, so that x need not be loaded."""

    shape: tuple[int, int, int, int]
    dtype: np.dtype

    def view(self) -> np.ndarray:
        return np.broadcast_to(np.zeros((), self.dtype), self.shape)


def region(pieces) -> np.ndarray:
    """A block's input region (n, c, rows, cols) from pieces[row][col] of its input chunks (each (n, c, ., .)), or
    the view of a Blank."""
    if isinstance(pieces, Blank):
        return pieces.view()
    if len(pieces) == 1 and len(pieces[0]) == 1:
        return pieces[0][0]
    return np.block(pieces)


def forward(function, pieces, *args, **kwargs):
    """function(region, *args, **kwargs), e.g. fc.conv2d on one block with its own padding."""
    return function(region(pieces), *args, **kwargs)


def backward(function, dy: np.ndarray, pieces, *args, **kwargs):
    """function(dy, region, *args, **kwargs), e.g. fc.conv2d_backward: the gradients of one block's region."""
    return function(dy, region(pieces), *args, **kwargs)


def max_pool2d_with_indices(pieces, origin: tuple[int, int], width: int, kernel_size, **kwargs):
    """(y, indices) of one block, the indices made flat indices h * width + w into the whole input's plane
    (the region starts at row, column ``origin`` of an input ``width`` columns wide)."""
    x = region(pieces)
    y, local = fc.max_pool2d(x, kernel_size, return_indices=True, **kwargs)
    rows, cols = np.divmod(local, x.shape[3])
    return y, (rows + origin[0]) * width + (cols + origin[1])


def max_pool2d_backward_from_indices(dy: np.ndarray, indices: np.ndarray, pieces, origin: tuple[int, int],
                                     width: int, kernel_size, **kwargs) -> np.ndarray:
    """dx of one block's region from indices into the whole input's plane (width columns), each of which must
    point inside the block's region (the region starts at row, column ``origin``)."""
    x = region(pieces)
    rows, cols = np.divmod(indices, width)
    rows -= origin[0]
    cols -= origin[1]
    height, region_width = x.shape[2:]
    outside = (rows < 0) | (rows >= height) | (cols < 0) | (cols >= region_width)
    if outside.any():
        bad = indices[outside].flat[0]
        raise ValueError(f"fastconv.dask.max_pool2d_backward: index {bad} lies outside the input rows "
                         f"[{origin[0]}, {origin[0] + height}) and columns [{origin[1]}, {origin[1] + region_width}) "
                         f"that its output block's windows read; on dask arrays each index must point into its own "
                         f"pooling window, as max_pool2d(return_indices=True) returns them")
    return fc.max_pool2d_backward(dy, x, kernel_size, indices=rows * region_width + cols, **kwargs)


def add_pieces(shape: tuple[int, ...], dtype: np.dtype, pieces: list[np.ndarray], destinations: list[tuple]
               ) -> np.ndarray:
    """Zeros of shape, with each piece added at its destination (a tuple of slices)."""
    out = np.zeros(shape, dtype)
    for piece, destination in zip(pieces, destinations):
        out[destination] += piece
    return out
