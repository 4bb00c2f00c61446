"""The cython backend: compiled kernels (fastconv/_ext) with OpenMP loops and scipy's BLAS.

Methods, by shape family (see fastconv/_ext/_conv.pyx):
- depthwise (one input and one output channel per group): direct loops over (image, channel) planes on a
  zero-padded copy of the plane; the grad of w also sums db.
- 3x3, stride 1, undilated, >= 16 channels per group: Winograd F(2x2, 3x3) forward and F(3x3, 2x2) grad of w,
  16 GEMMs per block of tiles.
- otherwise forward and grad of w: im2col of a tile of output rows into a per-thread workspace and one GEMM per
  (image, group, tile) writing y (or a per-thread dw) in place; 1x1 stride-1 unpadded layers skip im2col.
- grad of x: at stride 1 (when groups have no more outputs than inputs) a forward convolution of dy with the
  kernel rotated by 180 degrees, so through the methods above; otherwise GEMM then col2im per (image, group),
  or direct loops for depthwise.
- pooling: one pass per (image, channel) plane writing y and the argmax together; for non-overlapping windows
  the backward writes each dx element once.

This module allocates every output and workspace with numpy (so tracemalloc sees them) and passes the thread
count to the kernels; while a kernel's own loop runs on several threads, BLAS is limited to one thread.
"""

from __future__ import annotations

import numpy as np

from fastconv._geometry import ConvGeometry, PoolGeometry, nbytes
from fastconv._threads import blas_for, threads_for

try:
    from fastconv._ext import _conv, _pool
except ImportError as exc:  # the registry reports this as BackendUnavailableError
    raise ImportError(f"the compiled extension fastconv._ext is missing ({exc}); build it with `pip install .` "
                      f"(needs a C compiler) or `python setup.py build_ext --inplace` in a source checkout") from exc

#: bytes of one thread's im2col tile (a tuning knob: large enough for an efficient GEMM, small enough for L2/L3)
COL_TILE_BYTES = 1 << 20
#: BLAS takes 32-bit ints for sizes and strides
BLAS_INT_MAX = 2**31 - 1


# ---------------------------------------------------------------------------------------------------------------
# convolution plans


def _shape(g: ConvGeometry) -> dict:
    """The kernels' ConvShape of g, as a dict (Cython converts it to the struct)."""
    return {name: getattr(g, name) for name in (
        "n", "c", "h", "w", "k", "r", "s", "stride_h", "stride_w", "dilation_h", "dilation_w", "pad_top",
        "pad_left", "groups", "out_h", "out_w")}


def _is_channelwise(g: ConvGeometry) -> bool:
    """One input channel per group: the direct kernels apply."""
    return g.c_per_group == 1


def _is_depthwise(g: ConvGeometry) -> bool:
    """One input and one output channel per group: direct loops beat a GEMM with a single row."""
    return g.c_per_group == g.k_per_group == 1


def _grad_x_by_rotation(g: ConvGeometry) -> bool:
    """At stride 1 the grad of x is a forward convolution; its im2col has k/groups*r*s rows (col2im's has
    c/groups*r*s), so rotation pays when groups have no more outputs than inputs."""
    return g.stride_h == g.stride_w == 1 and g.k_per_group <= g.c_per_group


def _is_pointwise(g: ConvGeometry) -> bool:
    return (g.r == g.s == g.stride_h == g.stride_w == 1 and not g.has_padding)


def _tile_rows(g: ConvGeometry) -> int:
    """Output rows per GEMM tile: the im2col block is about COL_TILE_BYTES."""
    column_bytes = g.c_per_group * g.r * g.s * g.dtype.itemsize
    return max(1, min(g.out_h, COL_TILE_BYTES // (column_bytes * g.out_w)))


def _tile_elements(g: ConvGeometry) -> int:
    """Elements of one im2col (or col2im) tile: c/groups*r*s rows of _tile_rows(g)*out_w columns."""
    return g.c_per_group * g.r * g.s * _tile_rows(g) * g.out_w


def _col_elements(g: ConvGeometry) -> int:
    """Elements of one thread's im2col workspace for forward / grad of w (1 when the layer needs no im2col)."""
    return 1 if _is_pointwise(g) else _tile_elements(g)


def _check_blas_sizes(g: ConvGeometry) -> None:
    largest = max(g.h * g.w, g.out_h * g.out_w, _tile_elements(g))
    if largest > BLAS_INT_MAX:
        raise ValueError(f"cython backend: an image plane or tile of {largest:,} elements exceeds BLAS's 32-bit "
                         f"sizes; use backend='numba' or split the image")


def _rotated_geometry(g: ConvGeometry) -> ConvGeometry:
    """The stride-1 grad of x as a forward convolution: input dy (n, k, out_h, out_w), output (n, c, h, w)."""
    pad_h, pad_w = g.dilation_h * (g.r - 1), g.dilation_w * (g.s - 1)
    return ConvGeometry(g.n, g.k, g.out_h, g.out_w, g.c, g.r, g.s, 1, 1, g.dilation_h, g.dilation_w,
                        pad_h - g.pad_top, pad_h - g.pad_bottom, pad_w - g.pad_left, pad_w - g.pad_right,
                        g.groups, g.h, g.w, g.dtype)


def _rotated_kernel(w: np.ndarray, g: ConvGeometry) -> np.ndarray:
    """w (k, c/groups, r, s) -> (c, k/groups, r, s): flipped in r and s, channels swapped within each group."""
    grouped = w.reshape(g.groups, g.k_per_group, g.c_per_group, g.r, g.s)[:, :, :, ::-1, ::-1]
    return np.ascontiguousarray(grouped.transpose(0, 2, 1, 3, 4)).reshape(g.c, g.k_per_group, g.r, g.s)


def _workspace(threads: int, elements: int, dtype) -> np.ndarray:
    return np.empty((threads, max(elements, 1)), dtype)


# ---------------------------------------------------------------------------------------------------------------
# convolution methods


def _forward_gemm(x, w, b, g: ConvGeometry) -> np.ndarray:
    _check_blas_sizes(g)
    threads = threads_for(g.work)
    y = np.empty(g.y_shape, g.dtype)
    workspace = _workspace(threads, _col_elements(g), g.dtype)
    with blas_for(threads):
        _conv.forward_gemm(x, w, b, y, workspace, _shape(g), _tile_rows(g), threads)
    return y


def _padded_plane_elements(g: ConvGeometry) -> int:
    """Elements of the direct kernels' zero-padded copy of one plane of x (the part the windows read)."""
    return ((g.out_h - 1) * g.stride_h + (g.r - 1) * g.dilation_h + 1) * (
        (g.out_w - 1) * g.stride_w + (g.s - 1) * g.dilation_w + 1)


def _forward_direct(x, w, b, g: ConvGeometry) -> np.ndarray:
    threads = threads_for(g.work)
    y = np.empty(g.y_shape, g.dtype)
    _conv.forward_direct(x, w, b, y, _workspace(threads, _padded_plane_elements(g), g.dtype), _shape(g), threads)
    return y


#: Winograd F(2x2, 3x3): x patch -> B^T d B, kernel -> G g G^T (Lavin & Gray 2016)
WINOGRAD_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
#: below this many channels per group the Winograd transforms cost more than its GEMMs save
WINOGRAD_MIN_CHANNELS = 16
#: bytes of one thread's transformed input plus GEMM output in the Winograd kernel
WINOGRAD_BLOCK_BYTES = 1 << 20


def _is_winograd(g: ConvGeometry) -> bool:
    """3x3, stride 1, undilated: Winograd F(2x2, 3x3) applies."""
    return g.r == g.s == 3 and g.stride_h == g.stride_w == g.dilation_h == g.dilation_w == 1


def _winograd_plan(g: ConvGeometry) -> tuple[int, int]:
    """(tile rows per work item, workspace elements per thread)."""
    tiles_w = (g.out_w + 1) // 2
    row_elements = 16 * (g.c_per_group + g.k_per_group) * tiles_w
    block_rows = max(1, min((g.out_h + 1) // 2, WINOGRAD_BLOCK_BYTES // (row_elements * g.dtype.itemsize)))
    return block_rows, block_rows * row_elements + 12 * tiles_w + 8


def _winograd_kernel(w: np.ndarray, g: ConvGeometry) -> np.ndarray:
    """w (k, c/groups, 3, 3) -> u (groups, 16, k/groups, c/groups): G w G^T, as two plain GEMMs (not 3x3 loops)."""
    right = (w.reshape(-1, 3) @ WINOGRAD_G.T).reshape(g.k, g.c_per_group, 3, 4)  # [k, c, i, b]
    both = WINOGRAD_G @ right.transpose(2, 0, 1, 3).reshape(3, -1)  # [a, (k, c, b)]
    grouped = both.reshape(4, g.groups, g.k_per_group, g.c_per_group, 4).transpose(1, 0, 4, 2, 3)
    return grouped.reshape(g.groups, 16, g.k_per_group, g.c_per_group)


def _winograd_grad_w(dy, x, g: ConvGeometry, threads: int) -> np.ndarray:
    """dw (k, c/groups, 3, 3) = G^T M G, M summed over tiles of (A dy A^T) * (B^T x B) by 16 GEMMs."""
    block_rows, elements = _winograd_plan(g)
    partial = np.zeros((threads, g.groups, 16, g.k_per_group, g.c_per_group), g.dtype)
    # numpy's small GEMMs below stay single-threaded too: woken OpenBLAS threads spin and steal the cores
    with blas_for(threads):
        _conv.backward_weight_winograd(dy, x, partial, _workspace(threads, elements, g.dtype), _shape(g),
                                       block_rows, threads)
        m = partial[0] if threads == 1 else partial.sum(axis=0)
        left = np.tensordot(WINOGRAD_G, m.reshape(g.groups, 4, 4, g.k_per_group, g.c_per_group), axes=([0], [1]))
        both = np.tensordot(left, WINOGRAD_G, axes=([2], [0]))  # [i, group, k, c, j]
    return np.ascontiguousarray(both.transpose(1, 2, 3, 0, 4)).reshape(g.w_shape).astype(g.dtype, copy=False)


def _forward_winograd(x, w, b, g: ConvGeometry) -> np.ndarray:
    threads = threads_for(g.work)
    block_rows, elements = _winograd_plan(g)
    y = np.empty(g.y_shape, g.dtype)
    # the kernel transform's numpy GEMMs stay single-threaded too: woken OpenBLAS threads spin and steal the cores
    with blas_for(threads):
        u = np.ascontiguousarray(_winograd_kernel(w, g).astype(g.dtype, copy=False))
        _conv.forward_winograd(x, u, b, y, _workspace(threads, elements, g.dtype), _shape(g), block_rows, threads)
    return y


def _forward_method(g: ConvGeometry) -> str:
    """The default forward method: direct for depthwise, Winograd for 3x3 stride 1 with enough channels for
    its GEMMs, im2col + GEMM otherwise."""
    if _is_depthwise(g):
        return "direct"
    if _is_winograd(g) and min(g.c_per_group, g.k_per_group) >= WINOGRAD_MIN_CHANNELS:
        return "winograd"
    return "gemm"


def conv2d_forward(x, w, b, g: ConvGeometry):
    """x (N, C, H, W), w (K, C/groups, R, S), b (K,) or None -> y (N, K, Ho, Wo)."""
    return FORWARD_METHODS[_forward_method(g)](x, w, b, g)


FORWARD_METHODS = {"gemm": _forward_gemm, "direct": _forward_direct, "winograd": _forward_winograd}


def _grad_x(dy, w, g: ConvGeometry) -> np.ndarray:
    """dy (N, K, Ho, Wo) -> dx (N, C, H, W)."""
    threads = threads_for(g.work)
    if _grad_x_by_rotation(g):
        return conv2d_forward(dy, _rotated_kernel(w, g), None, _rotated_geometry(g))
    if _is_depthwise(g):
        dx = np.empty(g.x_shape, g.dtype)
        _conv.backward_data_direct(dy, w, dx, _shape(g), threads)
        return dx
    _check_blas_sizes(g)
    dx = np.empty(g.x_shape, g.dtype)
    workspace = _workspace(threads, _tile_elements(g), g.dtype)
    with blas_for(threads):
        _conv.backward_data_gemm(dy, w, dx, workspace, _shape(g), _tile_rows(g), threads)
    return dx


def _depthwise_workspace_elements(g: ConvGeometry) -> int:
    """Per thread: (r*s + 1) row accumulators and a padded plane (see _conv.backward_weight_direct)."""
    return (g.r * g.s + 1) * g.out_w + _padded_plane_elements(g)


def _grad_w(dy, x, g: ConvGeometry, db: np.ndarray | None) -> np.ndarray:
    """dy (N, K, Ho, Wo), x (N, C, H, W) -> dw (K, C/groups, R, S); fills db (K,) too unless it is None."""
    threads = threads_for(g.work)
    if _is_depthwise(g):
        dw = np.empty(g.w_shape, g.dtype)
        workspace = _workspace(threads, _depthwise_workspace_elements(g), g.dtype)
        _conv.backward_weight_direct(dy, x, dw, db, workspace, _shape(g), threads)
        return dw
    if db is not None:
        _conv.bias_grad(dy.reshape(g.n, g.k, -1), db, threads)
    if _forward_method(g) == "winograd":
        return _winograd_grad_w(dy, x, g, threads)
    _check_blas_sizes(g)
    partial = np.zeros((threads, g.k, g.c_per_group * g.r * g.s), g.dtype)
    workspace = _workspace(threads, _col_elements(g), g.dtype)
    with blas_for(threads):
        _conv.backward_weight_gemm(dy, x, partial, workspace, _shape(g), _tile_rows(g), threads)
    dw = partial[0] if threads == 1 else partial.sum(axis=0)
    return dw.reshape(g.w_shape)


def conv2d_backward(dy, x, w, g: ConvGeometry, need_dx, need_dw, need_db):
    """dy (N, K, Ho, Wo) -> dx (N, C, H, W), dw (K, C/groups, R, S), db (K,); None where not needed."""
    db = np.empty(g.k, g.dtype) if need_db else None
    dw = _grad_w(dy, x, g, db) if need_dw else None
    if need_db and not need_dw:
        _conv.bias_grad(dy.reshape(g.n, g.k, -1), db, threads_for(g.work))
    return (_grad_x(dy, w, g) if need_dx else None, dw, db)


def workspace_bytes(op: str, g) -> int:
    """Bytes of scratch this backend allocates beyond the outputs, for the front end's MemoryError check."""
    if op not in ("conv2d_forward", "conv2d_backward"):
        return 0  # pooling allocates only its outputs
    threads = threads_for(g.work)
    if op == "conv2d_forward":
        method = _forward_method(g)
        if method == "direct":
            return nbytes((threads, _padded_plane_elements(g)), g.dtype)
        if method == "winograd":
            return nbytes((threads, _winograd_plan(g)[1]), g.dtype) + nbytes((16, g.k, g.c_per_group), g.dtype)
        return nbytes((threads, _col_elements(g)), g.dtype)
    if _is_depthwise(g):
        return nbytes((threads, _depthwise_workspace_elements(g)), g.dtype)
    if _grad_x_by_rotation(g):
        grad_x = workspace_bytes("conv2d_forward", _rotated_geometry(g)) + nbytes(g.w_shape, g.dtype)
    else:
        grad_x = nbytes((threads, _tile_elements(g)), g.dtype)
    if _forward_method(g) == "winograd":
        grad_w = nbytes((threads, _winograd_plan(g)[1]), g.dtype) + nbytes((threads, 16, g.k, g.c_per_group),
                                                                           g.dtype)
    else:
        grad_w = nbytes((threads, _col_elements(g)), g.dtype) + nbytes(
            (threads, g.k, g.c_per_group * g.r * g.s), g.dtype)
    return max(grad_x, grad_w)


def methods(op: str, g) -> dict:
    """The conv2d_forward methods applicable to g (for the auto backend's timing); other ops have one method."""
    if op != "conv2d_forward":
        return {"default": globals()[op]}
    applicable = {"gemm": True, "direct": _is_channelwise(g), "winograd": _is_winograd(g)}
    return {name: FORWARD_METHODS[name] for name, ok in applicable.items() if ok}


# ---------------------------------------------------------------------------------------------------------------
# pooling


def _pool_shape(g: PoolGeometry) -> dict:
    return {name: getattr(g, name) for name in (
        "n", "c", "h", "w", "kh", "kw", "stride_h", "stride_w", "pad_top", "pad_bottom", "pad_left", "pad_right",
        "out_h", "out_w")}


def max_pool2d_forward(x, g: PoolGeometry):
    """x (N, C, H, W) -> y (N, C, Ho, Wo), indices (N, C, Ho, Wo) int64 (flat h*W + w in x[n, c])."""
    y = np.empty(g.y_shape, g.dtype)
    indices = np.empty(g.y_shape, np.int64)
    _pool.max_forward(x, y, indices, _pool_shape(g), threads_for(g.work))
    return y, indices


def max_pool2d_backward(dy, indices, g: PoolGeometry):
    """dy, indices (N, C, Ho, Wo) -> dx (N, C, H, W): each dy added at the element its index names."""
    threads = threads_for(g.work)
    dx = np.empty(g.x_shape, g.dtype)
    indices = np.ascontiguousarray(indices)
    if g.overlapping:
        planes = (g.n, g.c, -1)
        _pool.max_backward(dy.reshape(planes), indices.reshape(planes), dx.reshape(planes), threads)
    else:
        _pool.max_backward_disjoint(dy, indices, *_covering_windows(g), dx, threads)
    return dx


def avg_pool2d_forward(x, g: PoolGeometry):
    """x (N, C, H, W) -> y (N, C, Ho, Wo)."""
    y = np.empty(g.y_shape, g.dtype)
    _pool.avg_forward(x, g.avg_divisor().astype(g.dtype), y, _pool_shape(g), threads_for(g.work))
    return y


def _covering_window(out: int, stride: int, kernel: int, pad_before: int, size: int, none: int) -> np.ndarray:
    """(size,) int32: for disjoint windows along one axis, the window covering each input cell, or `none`."""
    owner = np.full(size, none, np.int32)
    for o in range(out):
        start = o * stride - pad_before
        owner[max(start, 0):max(min(start + kernel, size), 0)] = o
    return owner


def _covering_windows(g: PoolGeometry) -> tuple[np.ndarray, np.ndarray]:
    """For disjoint windows: the window row covering each input row (or -1), the window column covering each
    input column (or out_w)."""
    return (_covering_window(g.out_h, g.stride_h, g.kh, g.pad_top, g.h, -1),
            _covering_window(g.out_w, g.stride_w, g.kw, g.pad_left, g.w, g.out_w))


def avg_pool2d_backward(dy, g: PoolGeometry):
    """dy (N, C, Ho, Wo) -> dx (N, C, H, W)."""
    threads = threads_for(g.work)
    dx = np.empty(g.x_shape, g.dtype)
    divisor = g.avg_divisor().astype(g.dtype)
    if g.overlapping:
        _pool.avg_backward(dy, divisor, dx, _pool_shape(g), threads)
        return dx
    workspace = np.empty((threads, g.out_w + 1 + g.w), g.dtype)
    _pool.avg_backward_disjoint(dy, divisor, *_covering_windows(g), dx, workspace, threads)
    return dx
