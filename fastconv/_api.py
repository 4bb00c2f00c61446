"""Public conv2d and pooling functions: validate once, pick the backend, call its kernel."""

from __future__ import annotations

import functools

import numpy as np

from fastconv import _backend
from fastconv._geometry import (ConvGeometry, PoolGeometry, as_array, check_indices, conv_geometry, nbytes,
                                pool_geometry)
from fastconv._layout import Layout, contiguous
from fastconv._memory import ensure_fits


def _operand(a: np.ndarray | None, dtype: np.dtype) -> np.ndarray | None:
    """C-contiguous array of the computation dtype; no copy when it already is one (read-only stays read-only)."""
    return None if a is None else contiguous(a, dtype)


@functools.lru_cache(maxsize=256)
def _check_fits(op: str, g, outputs: tuple[tuple, ...]) -> None:
    """MemoryError before allocating outputs that exceed physical memory (each method's plan checks its own
    scratch before allocating it); once per geometry, as what fits does not change."""
    ensure_fits(sum(nbytes(shape, g.dtype) for shape in outputs), op)


def conv2d(x, w, b=None, *, stride=1, padding=0, dilation=1, groups=1, data_format="NCHW",
           backend=None) -> np.ndarray:
    """2-D cross-correlation of x with the filters w, plus the bias b, as in every deep-learning library.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
        The input, float32 or float64, in any memory layout (it is never modified).
    w : ndarray, shape (K, C // groups, R, S)
        The filters, float32 or float64.
    b : ndarray, shape (K,), optional
        Added to each output channel; None adds nothing.
    stride : int or (int, int)
        Step between output pixels, as (height, width); each >= 1.
    padding : int, (int, int), ((int, int), (int, int)), "valid" or "same"
        Zeros around x: on every side, per (height, width), or ((top, bottom), (left, right)); "valid" is none;
        "same" follows TensorFlow: Ho = ceil(H / stride_h), the odd padding pixel at the bottom (right).
    dilation : int or (int, int)
        Step between kernel taps, as (height, width); each >= 1.
    groups : int
        Divides C and K: filter k sees only the channels of its group. groups == C is depthwise.
    data_format : {"NCHW", "NHWC"}
        Layout of x and y: "NHWC" takes and returns (N, H, W, C) arrays;
        w keeps its (K, C // groups, R, S) layout.
    backend : str, optional
        "naive", "im2col", "numba", "cython" or "auto"; None is the current default (`get_backend`).

    Returns
    -------
    y : ndarray, shape (N, K, Ho, Wo)
        Of dtype ``np.result_type(x, w, b)`` (b left out when None), with
        Ho = (H + top + bottom - dilation_h * (R - 1) - 1) // stride_h + 1, and Wo likewise.

    Raises
    ------
    ValueError
        Before any work, naming the argument and the shapes: x or w not 4-D, C != w.shape[1] * groups, groups
        not dividing C or K, a non-positive stride, dilation or kernel size, negative padding, an unknown padding
        string, b not of shape (K,), Ho or Wo < 1; or an unknown backend name.
    TypeError
        x, w or b not float32 or float64 (integer, bool, complex and float16 are refused), or not an array;
        stride, dilation or padding not ints.
    MemoryError
        y or the backend's workspace would not fit in memory (checked before allocating).
    BackendUnavailableError
        The backend cannot run here (for example the Cython extension was not built).

    Examples
    --------
    >>> import numpy as np
    >>> import fastconv as fc
    >>> x = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> w = np.ones((1, 1, 2, 2))
    >>> fc.conv2d(x, w, backend="naive")
    array([[[[10., 14., 18.],
             [26., 30., 34.],
             [42., 46., 50.]]]])
    >>> fc.conv2d(np.ones((2, 3, 9, 9)), np.ones((4, 3, 3, 3)), stride=2, padding="same", backend="im2col").shape
    (2, 4, 5, 5)
    """
    layout = Layout("conv2d", data_format)
    x, w = layout.to_nchw("x", x), as_array("conv2d", "w", w)
    b = None if b is None else as_array("conv2d", "b", b)
    with layout.shapes_explained():
        g = conv_geometry(x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups,
                          channels_last=layout.channels_last)
    impl = _backend.resolve(backend)
    _check_fits("conv2d", g, (g.y_shape,))
    if g.is_empty:  # every tap reads a zero (or there are none): the bias alone
        bias = np.zeros(1, g.dtype) if b is None else b.astype(g.dtype)
        return np.broadcast_to(bias if g.channels_last else bias[:, None, None], g.y_array_shape).copy()
    return impl.conv2d_forward(layout.operand(x, g.dtype), _operand(w, g.dtype), _operand(b, g.dtype), g)


def conv2d_backward(dy, x, w, *, stride=1, padding=0, dilation=1, groups=1, need_dx=True, need_dw=True,
                    need_db=True, data_format="NCHW", backend=None):
    """Compute the gradients of conv2d with respect to x, w and b from dy (y is not needed).

    Parameters
    ----------
    dy : ndarray, shape (N, K, Ho, Wo)
        Gradient of the loss with respect to conv2d's output, float32 or float64.
    x : ndarray, shape (N, C, H, W)
        The input of the forward call.
    w : ndarray, shape (K, C // groups, R, S)
        The filters of the forward call.
    stride : int or (int, int)
        As for `conv2d`.
    padding : int, (int, int), ((int, int), (int, int)), "valid" or "same"
        As for `conv2d`.
    dilation : int or (int, int)
        As for `conv2d`.
    groups : int
        As for `conv2d`.
    need_dx, need_dw, need_db : bool
        Which gradients to compute; a gradient not needed is returned as None and costs nothing.
    data_format : {"NCHW", "NHWC"}
        Layout of dy, x and dx: "NHWC" takes and returns (N, H, W, C) arrays;
        w and dw keep their (K, C // groups, R, S) layout.
    backend : str, optional
        "naive", "im2col", "numba", "cython" or "auto"; None is the current default (`get_backend`).

    Returns
    -------
    dx : ndarray, shape (N, C, H, W), or None
        Gradient with respect to x; None unless need_dx. All three are of dtype ``np.result_type(dy, x, w)``.
    dw : ndarray, shape (K, C // groups, R, S), or None
        Gradient with respect to w; None unless need_dw.
    db : ndarray, shape (K,), or None
        Gradient with respect to b (the sum of dy over N, Ho and Wo); None unless need_db.

    Raises
    ------
    ValueError
        As for `conv2d`, and dy not of the output's shape (N, K, Ho, Wo).
    TypeError
        dy, x or w not float32 or float64, or not an array; stride, dilation or padding not ints.
    MemoryError
        The gradients asked for or the backend's workspace would not fit in memory (checked before allocating).
    BackendUnavailableError
        The backend cannot run here (for example the Cython extension was not built).

    Examples
    --------
    >>> import numpy as np
    >>> import fastconv as fc
    >>> x = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> w = np.ones((1, 1, 2, 2))
    >>> dx, dw, db = fc.conv2d_backward(np.ones((1, 1, 3, 3)), x, w, backend="naive")
    >>> dx[0, 0]
    array([[1., 2., 2., 1.],
           [2., 4., 4., 2.],
           [2., 4., 4., 2.],
           [1., 2., 2., 1.]])
    >>> dw[0, 0]
    array([[45., 54.],
           [81., 90.]])
    >>> db
    array([9.])
    >>> fc.conv2d_backward(np.ones((1, 1, 3, 3)), x, w, need_dx=False, need_db=False, backend="naive")[::2]
    (None, None)
    """
    layout = Layout("conv2d_backward", data_format)
    dy, x = layout.to_nchw("dy", dy), layout.to_nchw("x", x)
    w = as_array("conv2d_backward", "w", w)
    with layout.shapes_explained():
        g = conv_geometry(x, w, stride=stride, padding=padding, dilation=dilation, groups=groups,
                          op="conv2d_backward", dy=dy, channels_last=layout.channels_last)
    impl = _backend.resolve(backend)
    wanted = tuple(shape for need, shape in ((need_dx, g.x_shape), (need_dw, g.w_shape), (need_db, (g.k,))) if need)
    _check_fits("conv2d_backward", g, wanted)
    if g.is_empty:  # x or w has no elements: no product has a nonzero gradient; db sums dy all the same
        return (np.zeros(g.x_array_shape, g.dtype) if need_dx else None,
                np.zeros(g.w_shape, g.dtype) if need_dw else None,
                dy.sum(axis=(0, 2, 3), dtype=g.dtype) if need_db else None)
    return impl.conv2d_backward(layout.operand(dy, g.dtype), layout.operand(x, g.dtype), _operand(w, g.dtype), g,
                                bool(need_dx), bool(need_dw), bool(need_db))


def _pool(layout: Layout, x, kernel_size, stride, padding, ceil_mode, count_include_pad=True, dy=None
          ) -> tuple[np.ndarray, np.ndarray | None, PoolGeometry]:
    """Validated (x, dy, geometry): x viewed in NCHW order (some callers need only its shape; make it an operand
    with layout.operand), dy as the kernel's operand."""
    x, dy = layout.to_nchw("x", x), layout.to_nchw("dy", dy)
    with layout.shapes_explained():
        g = pool_geometry(x, kernel_size, stride=stride, padding=padding, ceil_mode=ceil_mode,
                          count_include_pad=count_include_pad, op=layout.op, dy=dy,
                          channels_last=layout.channels_last)
    return x, layout.operand(dy, g.dtype), g


def max_pool2d(x, kernel_size, *, stride=None, padding=0, ceil_mode=False, return_indices=False, data_format="NCHW",
               backend=None):
    """Max pooling: the maximum of each window, padding never chosen.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
        The input, float32 or float64, in any memory layout (it is never modified).
    kernel_size : int or (int, int)
        Window height and width, each >= 1.
    stride : int or (int, int), optional
        Step between windows, each >= 1; None is kernel_size.
    padding : int, (int, int), "valid" or "same"
        On every side or per (height, width), at most kernel_size // 2; "same" as for `conv2d`.
    ceil_mode : bool
        Round the output size up instead of down; each window still starts inside the input or its left/top
        padding.
    return_indices : bool
        Also return where each maximum is.
    data_format : {"NCHW", "NHWC"}
        Layout of x, y and indices: "NHWC" takes and returns (N, H, W, C) arrays; an index is h * W + w
        in either layout.
    backend : str, optional
        "naive", "im2col", "numba", "cython" or "auto"; None is the current default (`get_backend`).

    Returns
    -------
    y : ndarray, shape (N, C, Ho, Wo)
        Of x's dtype. Ties go to the first maximum in row-major window order; a NaN in a window wins.
    indices : ndarray of int64, shape (N, C, Ho, Wo)
        Only with return_indices: the flat index h * W + w in x[n, c] of each chosen element, as in PyTorch.

    Raises
    ------
    ValueError
        Before any work, naming the argument and the shapes: x not 4-D, a non-positive kernel_size or stride,
        padding negative or over kernel_size // 2, an unknown padding string, Ho or Wo < 1; or an unknown
        backend name.
    TypeError
        x not float32 or float64, or not an array; kernel_size, stride or padding not ints.
    MemoryError
        y and the indices, or the backend's workspace, would not fit in memory (checked before allocating).
    BackendUnavailableError
        The backend cannot run here (for example the Cython extension was not built).

    Examples
    --------
    >>> import numpy as np
    >>> import fastconv as fc
    >>> x = np.arange(16.0)[::-1].reshape(1, 1, 4, 4)
    >>> y, indices = fc.max_pool2d(x, 2, return_indices=True, backend="naive")
    >>> y
    array([[[[15., 13.],
             [ 7.,  5.]]]])
    >>> indices
    array([[[[ 0,  2],
             [ 8, 10]]]])
    """
    layout = Layout("max_pool2d", data_format)
    x, _, g = _pool(layout, x, kernel_size, stride, padding, ceil_mode)
    impl = _backend.resolve(backend)
    _check_fits("max_pool2d", g, (g.y_shape, g.y_shape))
    if g.is_empty:
        y, indices = np.zeros(g.y_array_shape, g.dtype), np.zeros(g.y_array_shape, np.int64)
    else:
        y, indices = impl.max_pool2d_forward(layout.operand(x, g.dtype), g)
    return (y, indices) if return_indices else y


def max_pool2d_backward(dy, x, kernel_size, *, stride=None, padding=0, ceil_mode=False, indices=None,
                        data_format="NCHW", backend=None) -> np.ndarray:
    """Gradient of max_pool2d with respect to x: each dy goes to the element its index names.

    Parameters
    ----------
    dy : ndarray, shape (N, C, Ho, Wo)
        Gradient of the loss with respect to max_pool2d's output, float32 or float64.
    x : ndarray, shape (N, C, H, W)
        The input of the forward call.
    kernel_size : int or (int, int)
        Window height and width, each >= 1.
    stride : int or (int, int), optional
        Step between windows, each >= 1; None is kernel_size.
    padding : int, (int, int), "valid" or "same"
        On every side or per (height, width), at most kernel_size // 2; "same" as for `conv2d`.
    ceil_mode : bool
        Round the output size up instead of down; each window still starts inside the input or its left/top
        padding.
    indices : ndarray of int64, shape (N, C, Ho, Wo), optional
        Flat indices h * W + w into each plane x[n, c], as max_pool2d(return_indices=True) returns them; None
        recomputes them from x. Any index in [0, H * W) is accepted, inside its own window or not: dy[n, c, oh, ow]
        is added to dx[n, c] at that flat index, and indices named more than once receive the sum.
    data_format : {"NCHW", "NHWC"}
        Layout of dy, x, indices and dx: "NHWC" takes and returns (N, H, W, C) arrays.
    backend : str, optional
        "naive", "im2col", "numba", "cython" or "auto"; None is the current default (`get_backend`).

    Returns
    -------
    dx : ndarray, shape (N, C, H, W)
        Of dtype ``np.result_type(x, dy)``; zero wherever no index points.

    Raises
    ------
    ValueError
        As for `max_pool2d`; dy not of the output's shape; indices not of the output's shape, or outside
        [0, H * W).
    TypeError
        dy or x not float32 or float64, or not an array; indices not int64; kernel_size, stride or padding not
        ints.
    MemoryError
        dx or the backend's workspace would not fit in memory (checked before allocating).
    BackendUnavailableError
        The backend cannot run here (for example the Cython extension was not built).

    Examples
    --------
    >>> import numpy as np
    >>> import fastconv as fc
    >>> x = np.arange(16.0)[::-1].reshape(1, 1, 4, 4)
    >>> dy = np.ones((1, 1, 2, 2))
    >>> fc.max_pool2d_backward(dy, x, 2, backend="naive")[0, 0]
    array([[1., 0., 1., 0.],
           [0., 0., 0., 0.],
           [1., 0., 1., 0.],
           [0., 0., 0., 0.]])

    Indices of your own, here three outputs sending their gradient to element 5:

    >>> indices = np.array([[[[5, 5], [5, 15]]]], dtype=np.int64)
    >>> fc.max_pool2d_backward(dy, x, 2, indices=indices, backend="im2col")[0, 0]
    array([[0., 0., 0., 0.],
           [0., 3., 0., 0.],
           [0., 0., 0., 0.],
           [0., 0., 0., 1.]])
    """
    layout = Layout("max_pool2d_backward", data_format)
    x, dy, g = _pool(layout, x, kernel_size, stride, padding, ceil_mode, dy=dy)
    if indices is not None:
        indices = layout.to_nchw("indices", indices)
        with layout.shapes_explained():
            check_indices("max_pool2d_backward", indices, g)
    impl = _backend.resolve(backend)
    _check_fits("max_pool2d_backward", g, (g.x_shape, g.y_shape))
    if g.is_empty:
        return np.zeros(g.x_array_shape, g.dtype)
    indices = impl.max_pool2d_forward(layout.operand(x, g.dtype), g)[1] if indices is None else \
        layout.operand(indices, np.int64)
    return impl.max_pool2d_backward(dy, indices, g)


def avg_pool2d(x, kernel_size, *, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               data_format="NCHW", backend=None) -> np.ndarray:
    """Average pooling: the mean of each window, padding counted as zeros.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
        The input, float32 or float64, in any memory layout (it is never modified).
    kernel_size : int or (int, int)
        Window height and width, each >= 1.
    stride : int or (int, int), optional
        Step between windows, each >= 1; None is kernel_size.
    padding : int, (int, int), "valid" or "same"
        On every side or per (height, width), at most kernel_size // 2; "same" as for `conv2d`.
    ceil_mode : bool
        Round the output size up instead of down; each window still starts inside the input or its left/top
        padding.
    count_include_pad : bool
        Whether the padded zeros count in the divisor (True, PyTorch's default) or only the input cells do.
    data_format : {"NCHW", "NHWC"}
        Layout of x and y: "NHWC" takes and returns (N, H, W, C) arrays.
    backend : str, optional
        "naive", "im2col", "numba", "cython" or "auto"; None is the current default (`get_backend`).

    Returns
    -------
    y : ndarray, shape (N, C, Ho, Wo)
        Of x's dtype.

    Raises
    ------
    ValueError
        Before any work, naming the argument and the shapes: x not 4-D, a non-positive kernel_size or stride,
        padding negative or over kernel_size // 2, an unknown padding string, Ho or Wo < 1; or an unknown
        backend name.
    TypeError
        x not float32 or float64, or not an array; kernel_size, stride or padding not ints.
    MemoryError
        y or the backend's workspace would not fit in memory (checked before allocating).
    BackendUnavailableError
        The backend cannot run here (for example the Cython extension was not built).

    Examples
    --------
    >>> import numpy as np
    >>> import fastconv as fc
    >>> x = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> fc.avg_pool2d(x, 2, backend="naive")
    array([[[[ 2.5,  4.5],
             [10.5, 12.5]]]])
    >>> fc.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False, backend="naive")
    array([[[[ 2.5,  4. ],
             [ 8.5, 10. ]]]])
    """
    layout = Layout("avg_pool2d", data_format)
    x, _, g = _pool(layout, x, kernel_size, stride, padding, ceil_mode, count_include_pad)
    impl = _backend.resolve(backend)
    _check_fits("avg_pool2d", g, (g.y_shape,))
    if g.is_empty:
        return np.zeros(g.y_array_shape, g.dtype)
    return impl.avg_pool2d_forward(layout.operand(x, g.dtype), g)


def avg_pool2d_backward(dy, x, kernel_size, *, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                        data_format="NCHW", backend=None) -> np.ndarray:
    """Gradient of avg_pool2d with respect to x: each dy, over its window's divisor, goes to every cell of the window.

    Parameters
    ----------
    dy : ndarray, shape (N, C, Ho, Wo)
        Gradient of the loss with respect to avg_pool2d's output, float32 or float64.
    x : ndarray, shape (N, C, H, W)
        The input of the forward call; only its shape and dtype are used.
    kernel_size : int or (int, int)
        Window height and width, each >= 1.
    stride : int or (int, int), optional
        Step between windows, each >= 1; None is kernel_size.
    padding : int, (int, int), "valid" or "same"
        On every side or per (height, width), at most kernel_size // 2; "same" as for `conv2d`.
    ceil_mode : bool
        Round the output size up instead of down; each window still starts inside the input or its left/top
        padding.
    count_include_pad : bool
        As for `avg_pool2d`.
    data_format : {"NCHW", "NHWC"}
        Layout of dy, x and dx: "NHWC" takes and returns (N, H, W, C) arrays.
    backend : str, optional
        "naive", "im2col", "numba", "cython" or "auto"; None is the current default (`get_backend`).

    Returns
    -------
    dx : ndarray, shape (N, C, H, W)
        Of dtype ``np.result_type(x, dy)``.

    Raises
    ------
    ValueError
        As for `avg_pool2d`, and dy not of the output's shape.
    TypeError
        dy or x not float32 or float64, or not an array; kernel_size, stride or padding not ints.
    MemoryError
        dx or the backend's workspace would not fit in memory (checked before allocating).
    BackendUnavailableError
        The backend cannot run here (for example the Cython extension was not built).

    Examples
    --------
    >>> import numpy as np
    >>> import fastconv as fc
    >>> x = np.zeros((1, 1, 3, 3))
    >>> fc.avg_pool2d_backward(np.ones((1, 1, 2, 2)), x, 2, stride=1, backend="naive")
    array([[[[0.25, 0.5 , 0.25],
             [0.5 , 1.  , 0.5 ],
             [0.25, 0.5 , 0.25]]]])
    """
    layout = Layout("avg_pool2d_backward", data_format)
    x, dy, g = _pool(layout, x, kernel_size, stride, padding, ceil_mode, count_include_pad, dy=dy)
    impl = _backend.resolve(backend)
    _check_fits("avg_pool2d_backward", g, (g.x_shape,))
    if g.is_empty:
        return np.zeros(g.x_array_shape, g.dtype)
    return impl.avg_pool2d_backward(dy, g)


__all__ = ["conv2d", "conv2d_backward", "max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward",
           "ConvGeometry", "PoolGeometry"]
