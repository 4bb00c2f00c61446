"""Argument normalization and shape checks: the only place that parses strides, paddings and sizes.

Every public function builds a :class:`ConvGeometry` or :class:`PoolGeometry` here before any work starts.
Kernels receive the geometry and never re-derive output sizes or re-check arguments.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

import numpy as np

SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class _Layout:
    """What both geometries say about memory order: shapes are logical (N, C, H, W); with channels_last the
    activations x, y (and their gradients, and max pooling's indices) are C-contiguous (N, H, W, C) arrays."""

    channels_last: bool

    def in_memory(self, shape: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        """A logical (N, C, H, W) activation shape as its array's shape: (N, H, W, C) when channels_last."""
        n, c, h, w = shape
        return (n, h, w, c) if self.channels_last else shape

    @property
    def x_array_shape(self) -> tuple[int, int, int, int]:
        return self.in_memory(self.x_shape)

    @property
    def y_array_shape(self) -> tuple[int, int, int, int]:
        return self.in_memory(self.y_shape)

    @property
    def nchw(self):
        """This geometry with NCHW operands (itself when it has them)."""
        return self._twin() if self.channels_last else self

    @property
    def nhwc(self):
        """This geometry with channels-last operands (itself when it has them)."""
        return self if self.channels_last else self._twin()

    def _twin(self):
        """This geometry in the other layout, made once (so that caches keyed on it find the same object)."""
        twin = self.__dict__.get("_twin_geometry")
        if twin is None:
            twin = self.__dict__["_twin_geometry"] = dataclasses.replace(self, channels_last=not self.channels_last)
            twin.__dict__["_twin_geometry"] = self
        return twin

    def _hash_once(self) -> int:
        """The hash of the fields, computed once per geometry: geometries key the plan and method caches that
        every call consults."""
        found = self.__dict__.get("_hash")
        if found is None:
            found = self.__dict__["_hash"] = hash(tuple(getattr(self, f.name) for f in dataclasses.fields(self)))
        return found

    def __getstate__(self) -> dict:
        """The fields only: a hash is valid in one process (a dtype's hashes its characters), a twin is remade."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclass(frozen=True)
class ConvGeometry(_Layout):
    """Normalized numbers of one conv2d call: x (n, c, h, w), w (k, c // groups, r, s), y (n, k, out_h, out_w);
    x and y are (n, h, w, c) and (n, out_h, out_w, k) arrays when channels_last."""

    n: int
    c: int
    h: int
    w: int
    k: int
    r: int
    s: int
    stride_h: int
    stride_w: int
    dilation_h: int
    dilation_w: int
    pad_top: int
    pad_bottom: int
    pad_left: int
    pad_right: int
    groups: int
    out_h: int
    out_w: int
    dtype: np.dtype
    channels_last: bool = False

    __hash__ = _Layout._hash_once

    @property
    def c_per_group(self) -> int:
        return self.c // self.groups

    @property
    def k_per_group(self) -> int:
        return self.k // self.groups

    @property
    def x_shape(self) -> tuple[int, int, int, int]:
        return (self.n, self.c, self.h, self.w)

    @property
    def w_shape(self) -> tuple[int, int, int, int]:
        return (self.k, self.c_per_group, self.r, self.s)

    @property
    def y_shape(self) -> tuple[int, int, int, int]:
        return (self.n, self.k, self.out_h, self.out_w)

    @property
    def flops(self) -> int:
        """Multiply-adds counted as 2 flops, for one forward pass."""
        return 2 * self.n * self.k * self.out_h * self.out_w * self.c_per_group * self.r * self.s

    @property
    def has_padding(self) -> bool:
        return any((self.pad_top, self.pad_bottom, self.pad_left, self.pad_right))

    @property
    def is_empty(self) -> bool:
        """x or w has no elements (N, C, H, W or K is 0): every output is the bias, every gradient but db zero."""
        return self.n * self.c * self.h * self.w * self.k == 0

    @property
    def is_pointwise(self) -> bool:
        """1x1, stride 1, no padding: each image's x (C, H*W) is its own column matrix, y_n = W @ x_n."""
        return self.r == self.s == self.stride_h == self.stride_w == 1 and not self.has_padding

    @property
    def is_channelwise(self) -> bool:
        """One input channel per group (depthwise, or a single-channel image): direct loops apply."""
        return self.c_per_group == 1

    @property
    def is_depthwise(self) -> bool:
        """One input and one output channel per group."""
        return self.c_per_group == self.k_per_group == 1

    @property
    def is_3x3_unit_stride(self) -> bool:
        """3x3, stride 1, undilated: the shape Winograd F(m x m, 3x3) computes."""
        return self.r == self.s == 3 and self.stride_h == self.stride_w == self.dilation_h == self.dilation_w == 1

    @property
    def min_group_channels(self) -> int:
        """The smaller of the input and output channels per group: the inner dimension of the thinner GEMM."""
        return min(self.c_per_group, self.k_per_group)

    def rotated(self) -> ConvGeometry:
        """The grad of x at stride 1 as a forward convolution: dy (n, k, out_h, out_w) -> dx (n, c, h, w) with the
        kernel rotated by 180 degrees (rotate_kernel), padded by dilation*(kernel - 1) - pad on each side (a side
        may be negative: that many border rows of dy are never read). Made once per geometry (every backward call
        by rotation asks)."""
        return _rotated(self)

    def rotate_kernel(self, w: np.ndarray) -> np.ndarray:
        """w (k, c/groups, r, s) -> (c, k/groups, r, s), the weights of rotated():
        [group*Cg + c, kk, r, s] = w[group*Kg + kk, c, R-1-r, S-1-s]."""
        per_group = w.reshape(self.groups, self.k_per_group, self.c_per_group, self.r, self.s)[:, :, :, ::-1, ::-1]
        return np.ascontiguousarray(per_group.transpose(0, 2, 1, 3, 4)).reshape(self.c, self.k_per_group, self.r,
                                                                                 self.s)


@functools.lru_cache(maxsize=256)
def _rotated(g: ConvGeometry) -> ConvGeometry:
    if g.stride_h != 1 or g.stride_w != 1:
        raise ValueError(f"rotated: the grad of x is a forward convolution only at stride 1, not "
                         f"({g.stride_h}, {g.stride_w})")
    extent_h, extent_w = g.dilation_h * (g.r - 1), g.dilation_w * (g.s - 1)
    return ConvGeometry(g.n, g.k, g.out_h, g.out_w, g.c, g.r, g.s, 1, 1, g.dilation_h, g.dilation_w,
                        extent_h - g.pad_top, extent_h - g.pad_bottom, extent_w - g.pad_left, extent_w - g.pad_right,
                        g.groups, g.h, g.w, g.dtype, g.channels_last)


@dataclass(frozen=True)
class PoolGeometry(_Layout):
    """Normalized numbers of one pooling call: x (n, c, h, w), y (n, c, out_h, out_w), window kh x kw; x and y
    are (n, h, w, c) and (n, out_h, out_w, c) arrays when channels_last.

    A window starts at (oh * stride_h - pad_top, ow * stride_w - pad_left). It is clipped to the padded input
    (rows -pad_top .. h + pad_bottom), which matters only with ceil_mode, and only its cells inside the input
    are read.
    """

    n: int
    c: int
    h: int
    w: int
    kh: int
    kw: int
    stride_h: int
    stride_w: int
    pad_top: int
    pad_bottom: int
    pad_left: int
    pad_right: int
    out_h: int
    out_w: int
    ceil_mode: bool
    count_include_pad: bool
    dtype: np.dtype
    channels_last: bool = False

    __hash__ = _Layout._hash_once

    @property
    def x_shape(self) -> tuple[int, int, int, int]:
        return (self.n, self.c, self.h, self.w)

    @property
    def y_shape(self) -> tuple[int, int, int, int]:
        return (self.n, self.c, self.out_h, self.out_w)

    @property
    def is_empty(self) -> bool:
        """No planes (N or C is 0): every result is empty."""
        return self.n * self.c == 0

    @property
    def reads(self) -> int:
        """Input cells its windows read (with repeats): the size of one call, for sharing it among threads."""
        return self.n * self.c * self.out_h * self.out_w * self.kh * self.kw

    @property
    def overlapping(self) -> bool:
        """True when neighbouring windows share input cells (stride smaller than the window)."""
        return self.stride_h < self.kh or self.stride_w < self.kw

    @property
    def is_global(self) -> bool:
        """One window per plane, covering all of it (global pooling): y (N, C, 1, 1)."""
        return (self.out_h == self.out_w == 1 and self.kh - self.pad_top >= self.h
                and self.kw - self.pad_left >= self.w)

    @functools.cached_property
    def global_divisor(self) -> float:
        """avg pooling's divisor of the one window of global pooling (computed once per geometry)."""
        return float(self.avg_divisor()[0, 0])

    def avg_divisor(self, out: np.ndarray | None = None) -> np.ndarray:
        """(out_h, out_w): the number each window's sum is divided by in avg pooling (PyTorch's rule), float64
        or written into out (any float dtype)."""
        out = np.empty((self.out_h, self.out_w)) if out is None else out
        rows = _window_counts(self.out_h, self.stride_h, self.kh, self.pad_top, self.h, self.pad_bottom,
                              self.count_include_pad)
        cols = _window_counts(self.out_w, self.stride_w, self.kw, self.pad_left, self.w, self.pad_right,
                              self.count_include_pad)
        # counts in out's dtype first: an outer product that casts as it writes would buffer the whole table
        return np.multiply.outer(rows.astype(out.dtype), cols.astype(out.dtype), out=out)

    def window_bounds(self, out: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """rows (out_h, 2), cols (out_w, 2) int64 (or written into out): [start, stop) of each window along
        each axis, clipped to the input."""
        rows, cols = out or (np.empty((self.out_h, 2), np.int64), np.empty((self.out_w, 2), np.int64))
        _window_bounds(self.stride_h, self.kh, self.pad_top, self.h, rows)
        _window_bounds(self.stride_w, self.kw, self.pad_left, self.w, cols)
        return rows, cols

    def covering_windows(self, out: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """For non-overlapping windows: row_window (h,), col_window (w,) int64 (or written into out), the
        window row (column) that holds each input row (column), or -1 for cells in no window."""
        row_window, col_window = out or (np.empty(self.h, np.int64), np.empty(self.w, np.int64))
        _covering_window(self.out_h, self.stride_h, self.kh, self.pad_top, row_window)
        _covering_window(self.out_w, self.stride_w, self.kw, self.pad_left, col_window)
        return row_window, col_window

    def covering_ranges(self, out: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """For any windows: row_cover (h, 2), col_cover (w, 2) int64 (or written into out), the [first, stop)
        window rows (columns) whose windows hold each input row (column); empty for cells in no window."""
        row_cover, col_cover = out or (np.empty((self.h, 2), np.int64), np.empty((self.w, 2), np.int64))
        _covering_range(self.out_h, self.stride_h, self.kh, self.pad_top, row_cover)
        _covering_range(self.out_w, self.stride_w, self.kw, self.pad_left, col_cover)
        return row_cover, col_cover

    def fill_tables(self, tables: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Fills those of the kernels' window tables that ``tables`` holds (a method's scratch): "window_rows"
        and "window_cols" (window_bounds), "divisor" (avg_divisor) or "inverse_divisor" (its reciprocal),
        "row_window" and "col_window" (covering_windows), "row_cover" and "col_cover" (covering_ranges)."""
        if "window_rows" in tables:
            self.window_bounds(out=(tables["window_rows"], tables["window_cols"]))
        if "divisor" in tables:
            self.avg_divisor(out=tables["divisor"])
        if "inverse_divisor" in tables:
            np.reciprocal(self.avg_divisor(out=tables["inverse_divisor"]), out=tables["inverse_divisor"])
        if "row_window" in tables:
            self.covering_windows(out=(tables["row_window"], tables["col_window"]))
        if "row_cover" in tables:
            self.covering_ranges(out=(tables["row_cover"], tables["col_cover"]))
        return tables


def _window_bounds(stride: int, kernel: int, pad_before: int, size: int, out: np.ndarray) -> None:
    start = np.arange(out.shape[0]) * stride - pad_before
    np.maximum(start, 0, out=out[:, 0])
    np.minimum(start + kernel, size, out=out[:, 1])


def _covering_window(out_size: int, stride: int, kernel: int, pad_before: int, out: np.ndarray) -> None:
    shifted = np.arange(out.shape[0]) + pad_before
    window = shifted // stride
    np.copyto(out, np.where((shifted % stride < kernel) & (window < out_size), window, -1))


def _covering_range(out_size: int, stride: int, kernel: int, pad_before: int, out: np.ndarray) -> None:
    """Window o holds cell i when o*stride <= i + pad_before < o*stride + kernel."""
    shifted = np.arange(out.shape[0]) + pad_before
    np.maximum(-((kernel - 1 - shifted) // stride), 0, out=out[:, 0])
    np.maximum(np.minimum(shifted // stride + 1, out_size), out[:, 0], out=out[:, 1])


def _window_counts(out: int, stride: int, kernel: int, pad_before: int, size: int, pad_after: int,
                   include_pad: bool) -> np.ndarray:
    start = np.arange(out) * stride - pad_before
    end = np.minimum(start + kernel, size + pad_after)
    if not include_pad:
        start, end = np.maximum(start, 0), np.minimum(end, size)
    return end - start


# ---------------------------------------------------------------------------------------------------------------
# small parsers


def _pair(op: str, name: str, value, *, minimum: int) -> tuple[int, int]:
    """An int or an (h, w) pair of ints, each >= minimum."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        pair = (int(value), int(value))
    elif (isinstance(value, (tuple, list)) and len(value) == 2
          and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value)):
        pair = (int(value[0]), int(value[1]))
    else:
        raise TypeError(f"{op}: {name} must be an int or a pair of ints (h, w), got {value!r}")
    if min(pair) < minimum:
        what = "positive" if minimum == 1 else f">= {minimum}"
        raise ValueError(f"{op}: {name} must be {what}, got {value!r}")
    return pair


def _explicit_padding(op: str, padding) -> tuple[int, int, int, int]:
    """int, (ph, pw) or ((top, bottom), (left, right)) -> (top, bottom, left, right), all >= 0."""
    if (isinstance(padding, (tuple, list)) and len(padding) == 2
            and all(isinstance(p, (tuple, list)) for p in padding)):
        (top, bottom), (left, right) = (_pair(op, "padding", tuple(p), minimum=0) for p in padding)
        return top, bottom, left, right
    try:
        ph, pw = _pair(op, "padding", padding, minimum=0)
    except TypeError:
        raise TypeError(f"{op}: padding must be an int, (ph, pw), ((top, bottom), (left, right)), "
                        f"'valid' or 'same', got {padding!r}") from None
    return ph, ph, pw, pw


def _same_padding(size: int, stride: int, extent: int) -> tuple[int, int]:
    """TensorFlow's 'same': out = ceil(size / stride), the odd pixel of padding goes after (bottom/right)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + extent - size, 0)
    return total // 2, total - total // 2


def _padding(op: str, padding, size_hw, stride_hw, extent_hw) -> tuple[int, int, int, int]:
    if isinstance(padding, str):
        if padding == "valid":
            return 0, 0, 0, 0
        if padding == "same":
            top, bottom = _same_padding(size_hw[0], stride_hw[0], extent_hw[0])
            left, right = _same_padding(size_hw[1], stride_hw[1], extent_hw[1])
            return top, bottom, left, right
        raise ValueError(f"{op}: unknown padding string {padding!r}; use 'valid', 'same', an int or pairs")
    return _explicit_padding(op, padding)


def as_array(op: str, name: str, value) -> np.ndarray:
    """The argument as an ndarray (no copy), or a TypeError naming it."""
    if isinstance(value, np.ndarray):
        return value
    try:
        return np.asarray(value)
    except Exception as exc:  # numpy raises many types for unconvertible objects
        raise TypeError(f"{op}: {name} must be a numpy array, got {type(value).__name__}") from exc


def compute_dtype(op: str, **arrays: np.ndarray | None) -> np.dtype:
    """np.result_type of the given arrays; each must be float32 or float64."""
    present = {name: a for name, a in arrays.items() if a is not None}
    for name, a in present.items():
        if a.dtype not in SUPPORTED_DTYPES:
            raise TypeError(f"{op}: {name} has dtype {a.dtype}; fastconv works on float32 and float64 arrays "
                            f"(convert with {name}.astype(np.float32))")
    return np.result_type(*present.values())


def _check_ndim(op: str, name: str, a: np.ndarray, ndim: int, layout: str) -> None:
    if a.ndim != ndim:
        raise ValueError(f"{op}: {name} must be {ndim}-D {layout}, got shape {a.shape}")


def _out_size(size: int, pad: int, extent: int, stride: int, ceil_mode: bool = False,
              pad_before: int = 0) -> int:
    span = size + pad - extent
    if span < 0:
        return 0
    if not ceil_mode:
        return span // stride + 1
    out = -(-span // stride) + 1
    if (out - 1) * stride >= size + pad_before:  # the last window must start inside the input or left padding
        out -= 1
    return out


# ---------------------------------------------------------------------------------------------------------------
# geometry builders


#: geometries remembered per call signature at most (then forgotten whole, as auto's memos)
GEOMETRY_MEMO_SIZE = 1024


def _signature(value) -> object:
    """An argument's part of a call signature: an array's shape and dtype, a plain int itself, anything else its
    repr (so that 1, True and np.int64(1) stay apart, as validation treats them)."""
    if type(value) is int:
        return value
    return (value.shape, value.dtype) if isinstance(value, np.ndarray) else repr(value)


def _memoized(validate):
    """validate(*arrays_and_options) -> geometry, remembered per call signature: a call repeating a valid one
    skips its validation (what fails validation is never remembered, so it fails every time)."""
    memo: dict[tuple, object] = {}

    @functools.wraps(validate)
    def geometry(*args, **kwargs):
        key = (tuple(map(_signature, args)), tuple((name, _signature(v)) for name, v in kwargs.items()))
        found = memo.get(key)
        if found is None:
            found = validate(*args, **kwargs)
            if len(memo) >= GEOMETRY_MEMO_SIZE:
                memo.clear()
            memo[key] = found
        return found

    return geometry


@_memoized
def conv_geometry(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None, *, stride=1, padding=0,
                  dilation=1, groups=1, op: str = "conv2d", dy: np.ndarray | None = None,
                  channels_last: bool = False) -> ConvGeometry:
    """Validate one conv2d (or conv2d_backward, when dy is given) call and return its geometry; x and dy are
    in (N, C, H, W) order (an NHWC argument as its transposed view, with channels_last)."""
    _check_ndim(op, "x", x, 4, "(N, C, H, W)")
    _check_ndim(op, "w", w, 4, "(K, C // groups, R, S)")
    dtype = compute_dtype(op, x=x, w=w, b=b, dy=dy)
    n, c, h, width = x.shape
    k, c_per_group, r, s = w.shape
    if not isinstance(groups, (int, np.integer)) or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"{op}: groups must be a positive int, got {groups!r}")
    groups = int(groups)
    if r < 1 or s < 1:
        raise ValueError(f"{op}: kernel size must be positive, got w.shape={w.shape}")
    if c % groups:
        raise ValueError(f"{op}: groups={groups} does not divide the {c} input channels (x.shape={x.shape})")
    if k % groups:
        raise ValueError(f"{op}: groups={groups} does not divide the {k} output channels (w.shape={w.shape})")
    if c != c_per_group * groups:
        raise ValueError(f"{op}: x has {c} channels but w expects {c_per_group * groups} "
                         f"(w.shape[1]={c_per_group}, groups={groups}); x.shape={x.shape}, w.shape={w.shape}")
    if b is not None and b.shape != (k,):
        raise ValueError(f"{op}: b must have shape ({k},) to match w.shape={w.shape}, got {b.shape}")
    sh, sw = _pair(op, "stride", stride, minimum=1)
    dh, dw = _pair(op, "dilation", dilation, minimum=1)
    extent_h, extent_w = (r - 1) * dh + 1, (s - 1) * dw + 1
    top, bottom, left, right = _padding(op, padding, (h, width), (sh, sw), (extent_h, extent_w))
    out_h = _out_size(h, top + bottom, extent_h, sh)
    out_w = _out_size(width, left + right, extent_w, sw)
    if out_h < 1 or out_w < 1:
        raise ValueError(f"{op}: output size would be {out_h}x{out_w} (< 1) for x.shape={x.shape}, "
                         f"w.shape={w.shape}, stride=({sh}, {sw}), dilation=({dh}, {dw}), "
                         f"padding=(({top}, {bottom}), ({left}, {right})); pad the input or use a smaller kernel")
    g = ConvGeometry(n, c, h, width, k, r, s, sh, sw, dh, dw, top, bottom, left, right, groups, out_h, out_w,
                     np.dtype(dtype), channels_last)
    if dy is not None:
        _check_dy(op, dy, g.y_shape)
    return g


@_memoized
def pool_geometry(x: np.ndarray, kernel_size, *, stride=None, padding=0, ceil_mode=False,
                  count_include_pad=True, op: str = "pool2d", dy: np.ndarray | None = None,
                  channels_last: bool = False) -> PoolGeometry:
    """Validate one pooling call (backward when dy is given) and return its geometry; x and dy in (N, C, H, W)
    order, as for conv_geometry."""
    _check_ndim(op, "x", x, 4, "(N, C, H, W)")
    dtype = compute_dtype(op, x=x, dy=dy)
    n, c, h, width = x.shape
    kh, kw = _pair(op, "kernel_size", kernel_size, minimum=1)
    sh, sw = _pair(op, "stride", kernel_size if stride is None else stride, minimum=1)
    if h == 0 or width == 0:
        raise ValueError(f"{op}: x has no {'rows' if h == 0 else 'columns'} (x.shape={x.shape}), so every pooling "
                         f"window would be empty")
    top, bottom, left, right = _padding(op, padding, (h, width), (sh, sw), (kh, kw))
    if max(top, bottom) > kh // 2 or max(left, right) > kw // 2:
        raise ValueError(f"{op}: padding (({top}, {bottom}), ({left}, {right})) must be at most half the "
                         f"kernel_size ({kh}, {kw}) on each side")
    out_h = _out_size(h, top + bottom, kh, sh, bool(ceil_mode), top)
    out_w = _out_size(width, left + right, kw, sw, bool(ceil_mode), left)
    if out_h < 1 or out_w < 1:
        raise ValueError(f"{op}: output size would be {out_h}x{out_w} (< 1) for x.shape={x.shape}, "
                         f"kernel_size=({kh}, {kw}), stride=({sh}, {sw}), "
                         f"padding=(({top}, {bottom}), ({left}, {right}))")
    g = PoolGeometry(n, c, h, width, kh, kw, sh, sw, top, bottom, left, right, out_h, out_w, bool(ceil_mode),
                     bool(count_include_pad), np.dtype(dtype), channels_last)
    if dy is not None:
        _check_dy(op, dy, g.y_shape)
    return g


def _check_dy(op: str, dy: np.ndarray, expected: tuple[int, ...]) -> None:
    if dy.shape != expected:
        raise ValueError(f"{op}: dy must have the output's shape {expected}, got {dy.shape}")


def check_indices(op: str, indices: np.ndarray, g: PoolGeometry) -> None:
    """indices from max_pool2d(return_indices=True): int64, shape (n, c, out_h, out_w), each in [0, h*w)."""
    if indices.shape != g.y_shape:
        raise ValueError(f"{op}: indices must have the output's shape {g.y_shape}, got {indices.shape}")
    if indices.dtype != np.int64:
        raise TypeError(f"{op}: indices must be int64 (as returned by max_pool2d), got {indices.dtype}")
    flat = indices.ravel(order="K")  # no copy for an array contiguous in any axis order (an NHWC one's view)
    # one reduction for both bounds: as unsigned, a negative index is larger than any plane
    if flat.size and flat.view(np.uint64).max() >= g.h * g.w:
        raise ValueError(f"{op}: indices must lie in [0, {g.h * g.w}) for x of shape {g.x_shape}")


def nbytes(shape, dtype) -> int:
    """Bytes of an array of this shape, in Python integers (no overflow)."""
    return math.prod(int(d) for d in shape) * np.dtype(dtype).itemsize
