"""data_format: the public functions take activations as NCHW or NHWC, and hand them to the backends as they are.

An NHWC argument is validated as its (N, C, H, W) transposed view (a view, no copy), so that shapes and error
messages are the same in both formats; the geometry then says ``channels_last`` and the backend receives the
argument as a C-contiguous (N, H, W, C) array (copied only when it is not one) and returns its results in that
layout. Backends run native channels-last kernels where they have them and transpose around their NCHW kernels
elsewhere (fastconv.backends._channels_last). Filters keep their (K, C // groups, R, S) layout in both formats.
"""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np

from fastconv._geometry import as_array

DATA_FORMATS = ("NCHW", "NHWC")


class Layout:
    """The data_format of one public call: views its activations in NCHW order for validation, and makes the
    backend's operands in the caller's layout."""

    def __init__(self, op: str, data_format):
        if not isinstance(data_format, str) or data_format not in DATA_FORMATS:
            raise ValueError(f"{op}: data_format must be one of {DATA_FORMATS}, got {data_format!r}")
        self.op = op
        self.channels_last = data_format == "NHWC"

    def to_nchw(self, name: str, a) -> np.ndarray | None:
        """The argument as an array in NCHW order: (N, H, W, C) -> (N, C, H, W), a view (no copy).

        Arrays that are not 4-D pass unchanged, for the geometry check to name them.
        """
        if a is None:
            return None
        a = as_array(self.op, name, a)
        return a.transpose(0, 3, 1, 2) if self.channels_last and a.ndim == 4 else a

    def operand(self, a: np.ndarray | None, dtype) -> np.ndarray | None:
        """An activation viewed by to_nchw as the backend takes it: C-contiguous of dtype, (N, H, W, C) when
        channels_last; no copy when it already is one (read-only stays read-only)."""
        if a is None:
            return None
        return contiguous(a.transpose(0, 2, 3, 1) if self.channels_last else a, dtype)

    def shapes_explained(self):
        """Context: validation errors of an NHWC call say that the shapes they quote are in NCHW order."""
        return _NCHW_SHAPES_EXPLAINED if self.channels_last else _NOTHING_EXPLAINED


class _ShapesExplained:
    """Context that re-raises a ValueError with a note that its shapes are in NCHW order (a class: it is entered
    on every NHWC call, where a generator context costs a few microseconds)."""

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, traceback) -> bool:
        if kind is not None and issubclass(kind, ValueError):
            raise ValueError(f"{exc} [data_format='NHWC': shapes are quoted in (N, C, H, W) order]") from None
        return False


_NCHW_SHAPES_EXPLAINED, _NOTHING_EXPLAINED = _ShapesExplained(), nullcontext()


def moves(shape: tuple[int, ...]) -> bool:
    """Whether an (N, C, H, W) array (or its channels-last twin) moves in memory between the layouts: not with
    one channel or one pixel, where both layouts are the same memory."""
    n, c, h, w = shape
    return c > 1 and h * w > 1


def contiguous(a: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """a as a C-contiguous array of dtype, without a copy when it already is one (read-only stays read-only).

    A 4-D view of memory in the other layout (an NCHW view of an NHWC array, or the reverse) is copied by the
    tiled transpose, not by numpy's strided copy.
    """
    if a.ndim == 4 and a.size and not a.flags.c_contiguous:
        for to_memory, name in (((0, 2, 3, 1), "to_channels_first"), ((0, 3, 1, 2), "to_channels_last")):
            if a.transpose(to_memory).flags.c_contiguous:
                from fastconv import _transpose  # numba is imported on the first such call only

                return getattr(_transpose, name)(a.transpose(to_memory)).astype(dtype, copy=False)
    return np.ascontiguousarray(a, dtype=dtype)
