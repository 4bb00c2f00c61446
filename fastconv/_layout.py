"""data_format: the public functions take activations as NCHW or NHWC; every backend computes in NCHW.

An NHWC array is validated as its NCHW transposed view, then copied once into C-contiguous NCHW by a tiled parallel
transpose (`contiguous`), and results go back to the caller as C-contiguous NHWC arrays the same way. Filters keep
their (K, C // groups, R, S) layout in both formats.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from fastconv._geometry import as_array

DATA_FORMATS = ("NCHW", "NHWC")


class Layout:
    """The data_format of one public call: converts its activations in and its results out."""

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

    def from_nchw(self, a: np.ndarray | None) -> np.ndarray | None:
        """A result of the backends, (N, C, H, W), in the caller's format: NHWC results are C-contiguous."""
        if a is None or not self.channels_last:
            return a
        n, c, h, w = a.shape
        return _swapped(np.ascontiguousarray(a).reshape(n, c, h * w)).reshape(n, h, w, c)

    @contextmanager
    def shapes_explained(self):
        """Validation errors of an NHWC call say that the shapes they quote are in NCHW order."""
        try:
            yield
        except ValueError as exc:
            if not self.channels_last:
                raise
            raise ValueError(f"{exc} [data_format='NHWC': shapes are quoted in (N, C, H, W) order]") from None


def contiguous(a: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """a as a C-contiguous array of dtype, without a copy when it already is one (read-only stays read-only).

    An (N, C, H, W) view of channels-last memory (what an NHWC argument becomes) is copied by the tiled transpose,
    not by numpy's strided copy.
    """
    if a.ndim == 4 and a.size and not a.flags.c_contiguous and a.transpose(0, 2, 3, 1).flags.c_contiguous:
        n, c, h, w = a.shape
        return _swapped(a.transpose(0, 2, 3, 1).reshape(n, h * w, c)).reshape(n, c, h, w).astype(dtype, copy=False)
    return np.ascontiguousarray(a, dtype=dtype)


def _swapped(a: np.ndarray) -> np.ndarray:
    """(N, P, Q) C-contiguous -> (N, Q, P) C-contiguous."""
    from fastconv._transpose import swap_last_axes  # numba is imported on the first channels-last call only

    return swap_last_axes(a)
