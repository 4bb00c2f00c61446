"""Public conv2d and pooling functions: validate once, pick the backend, call its kernel."""

from __future__ import annotations

import os

import numpy as np

from fastconv import _backend
from fastconv._geometry import (ConvGeometry, PoolGeometry, as_array, check_indices, conv_geometry, nbytes,
                                pool_geometry)


def _operand(a: np.ndarray | None, dtype: np.dtype) -> np.ndarray | None:
    """C-contiguous array of the computation dtype; no copy when it already is one (read-only stays read-only)."""
    return None if a is None else np.ascontiguousarray(a, dtype=dtype)


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def _check_fits(op: str, backend, g, outputs: list[tuple]) -> None:
    """MemoryError before allocating when outputs plus the backend's workspace exceed physical memory."""
    needed = sum(nbytes(shape, g.dtype) for shape in outputs)
    workspace = getattr(backend, "workspace_bytes", None)
    if workspace is not None:
        needed += workspace(op, g)
    limit = _physical_memory()
    if limit is not None and needed > limit:
        raise MemoryError(f"{op}: needs {needed:,} bytes but the machine has {limit:,}; "
                          f"use a smaller batch or a backend with a smaller workspace")


def conv2d(x, w, b=None, *, stride=1, padding=0, dilation=1, groups=1, backend=None) -> np.ndarray:
    """2-D cross-correlation, as in every deep-learning library.

    x (N, C, H, W), w (K, C // groups, R, S), b (K,) or None -> y (N, K, Ho, Wo).
    padding: int, (ph, pw), ((top, bottom), (left, right)), "valid" or "same" (TensorFlow's rule).
    """
    x, w = as_array("conv2d", "x", x), as_array("conv2d", "w", w)
    b = None if b is None else as_array("conv2d", "b", b)
    g = conv_geometry(x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups)
    impl = _backend.resolve(backend)
    _check_fits("conv2d", impl, g, [g.y_shape])
    if g.n == 0:
        return np.zeros(g.y_shape, g.dtype)
    return impl.conv2d_forward(_operand(x, g.dtype), _operand(w, g.dtype), _operand(b, g.dtype), g)


def conv2d_backward(dy, x, w, *, stride=1, padding=0, dilation=1, groups=1, need_dx=True, need_dw=True,
                    need_db=True, backend=None):
    """Gradients of conv2d: dy (N, K, Ho, Wo) -> (dx (N, C, H, W), dw (K, C // groups, R, S), db (K,)).

    An entry is None when its need_* flag is False. y is not needed.
    """
    dy, x, w = (as_array("conv2d_backward", name, a) for name, a in (("dy", dy), ("x", x), ("w", w)))
    g = conv_geometry(x, w, stride=stride, padding=padding, dilation=dilation, groups=groups,
                      op="conv2d_backward", dy=dy)
    impl = _backend.resolve(backend)
    wanted = [shape for need, shape in ((need_dx, g.x_shape), (need_dw, g.w_shape), (need_db, (g.k,))) if need]
    _check_fits("conv2d_backward", impl, g, wanted)
    if g.n == 0:
        return (np.zeros(g.x_shape, g.dtype) if need_dx else None,
                np.zeros(g.w_shape, g.dtype) if need_dw else None,
                np.zeros(g.k, g.dtype) if need_db else None)
    return impl.conv2d_backward(_operand(dy, g.dtype), _operand(x, g.dtype), _operand(w, g.dtype), g,
                                bool(need_dx), bool(need_dw), bool(need_db))


def _pool(op: str, x, kernel_size, stride, padding, ceil_mode, count_include_pad=True, dy=None
          ) -> tuple[np.ndarray, np.ndarray | None, PoolGeometry]:
    """Validated (x, dy, geometry); dy is converted to a kernel operand, x is left as given (some callers need
    only its shape)."""
    x = as_array(op, "x", x)
    dy = None if dy is None else as_array(op, "dy", dy)
    g = pool_geometry(x, kernel_size, stride=stride, padding=padding, ceil_mode=ceil_mode,
                      count_include_pad=count_include_pad, op=op, dy=dy)
    return x, _operand(dy, g.dtype), g


def max_pool2d(x, kernel_size, *, stride=None, padding=0, ceil_mode=False, return_indices=False, backend=None):
    """Max pooling: x (N, C, H, W) -> y (N, C, Ho, Wo), and with return_indices also indices (N, C, Ho, Wo)
    int64 holding the flat index h * W + w of each chosen element. Ties go to the first maximum in row-major
    window order; NaN wins."""
    x, _, g = _pool("max_pool2d", x, kernel_size, stride, padding, ceil_mode)
    impl = _backend.resolve(backend)
    _check_fits("max_pool2d", impl, g, [g.y_shape, g.y_shape])
    if g.n == 0:
        y, indices = np.zeros(g.y_shape, g.dtype), np.zeros(g.y_shape, np.int64)
    else:
        y, indices = impl.max_pool2d_forward(_operand(x, g.dtype), g)
    return (y, indices) if return_indices else y


def max_pool2d_backward(dy, x, kernel_size, *, stride=None, padding=0, ceil_mode=False, indices=None,
                        backend=None) -> np.ndarray:
    """Gradient of max_pool2d: dy (N, C, Ho, Wo) -> dx (N, C, H, W). Uses indices when given, else recomputes
    them from x."""
    x, dy, g = _pool("max_pool2d_backward", x, kernel_size, stride, padding, ceil_mode, dy=dy)
    if indices is not None:
        indices = as_array("max_pool2d_backward", "indices", indices)
        check_indices("max_pool2d_backward", indices, g)
    impl = _backend.resolve(backend)
    _check_fits("max_pool2d_backward", impl, g, [g.x_shape, g.y_shape])
    if g.n == 0:
        return np.zeros(g.x_shape, g.dtype)
    if indices is None:
        _, indices = impl.max_pool2d_forward(_operand(x, g.dtype), g)
    return impl.max_pool2d_backward(dy, np.ascontiguousarray(indices), g)


def avg_pool2d(x, kernel_size, *, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               backend=None) -> np.ndarray:
    """Average pooling: x (N, C, H, W) -> y (N, C, Ho, Wo). count_include_pad: padded zeros count in the divisor."""
    x, _, g = _pool("avg_pool2d", x, kernel_size, stride, padding, ceil_mode, count_include_pad)
    impl = _backend.resolve(backend)
    _check_fits("avg_pool2d", impl, g, [g.y_shape])
    if g.n == 0:
        return np.zeros(g.y_shape, g.dtype)
    return impl.avg_pool2d_forward(_operand(x, g.dtype), g)


def avg_pool2d_backward(dy, x, kernel_size, *, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                        backend=None) -> np.ndarray:
    """Gradient of avg_pool2d: dy (N, C, Ho, Wo) -> dx (N, C, H, W). x gives the shapes only."""
    x, dy, g = _pool("avg_pool2d_backward", x, kernel_size, stride, padding, ceil_mode, count_include_pad, dy=dy)
    impl = _backend.resolve(backend)
    _check_fits("avg_pool2d_backward", impl, g, [g.x_shape])
    if g.n == 0:
        return np.zeros(g.x_shape, g.dtype)
    return impl.avg_pool2d_backward(dy, g)


__all__ = ["conv2d", "conv2d_backward", "max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward",
           "ConvGeometry", "PoolGeometry"]
