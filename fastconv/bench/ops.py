"""What one timed call does for each benchmarked op, and the work it is credited with.

    conv_fwd         y = conv2d(x, w, b)
    conv_fwd_bwd     y = conv2d(x, w, b); dx, dw, db = conv2d_backward(dy, x, w)
    maxpool_fwd_bwd  y, indices = max_pool2d(x, return_indices=True); dx = max_pool2d_backward(dy, x, indices=...)
    avgpool_fwd_bwd  y = avg_pool2d(x); dx = avg_pool2d_backward(dy, x)

Work: a conv forward is 2*N*K*Ho*Wo*(C/groups)*R*S flops and its backward counts twice that (fwd+bwd = 3x).
Pooling is memory-bound and is credited with the bytes it must move at least: x, y, dy, dx (and the int64
indices, written once and read once) each once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

import fastconv as fc
from fastconv._geometry import nbytes
from fastconv.bench.shapes import ConvShape, PoolShape


@dataclass(frozen=True)
class Op:
    name: str
    family: str  # "conv" or "pool": the shape table it runs on
    kernels: tuple[str, ...]  # the backend functions one call runs
    forward_passes: int = 1  # conv work in units of one forward

    @property
    def pass_name(self) -> str:
        """The pass a network summary counts it in: "fwd" or "fwd+bwd"."""
        return "fwd+bwd" if any(kernel.endswith("_backward") for kernel in self.kernels) else "fwd"


OPS = {op.name: op for op in (
    Op("conv_fwd", "conv", ("conv2d_forward",)),
    Op("conv_fwd_bwd", "conv", ("conv2d_forward", "conv2d_backward"), forward_passes=3),
    Op("maxpool_fwd_bwd", "pool", ("max_pool2d_forward", "max_pool2d_backward")),
    Op("avgpool_fwd_bwd", "pool", ("avg_pool2d_forward", "avg_pool2d_backward")),
)}


def work(op: Op, shape: ConvShape | PoolShape, dtype) -> dict[str, int]:
    """{"flops": n} for conv ops, {"bytes": n} for pooling ops."""
    g = shape.geometry(dtype)
    if op.family == "conv":
        return {"flops": op.forward_passes * g.flops}
    indices = 2 * nbytes(g.y_shape, np.int64) if op.name == "maxpool_fwd_bwd" else 0
    return {"bytes": 2 * nbytes(g.x_shape, dtype) + 2 * nbytes(g.y_shape, dtype) + indices}


def inputs(op: Op, shape: ConvShape | PoolShape, dtype, seed: int = 0, layout: str = "NCHW") -> dict[str, np.ndarray]:
    """Random operands: x, w, b, dy for conv; x, dy for pooling (dy has the output's shape); x and dy
    C-contiguous in the layout ("NCHW" or "NHWC"), the same values either way."""
    rng = np.random.default_rng(seed)
    g = shape.geometry(dtype)
    arrays = {"x": rng.standard_normal(g.x_shape, dtype=dtype)}
    if op.family == "conv":
        arrays["w"] = rng.standard_normal(g.w_shape, dtype=dtype)
        arrays["b"] = rng.standard_normal(g.k, dtype=dtype)
    arrays["dy"] = rng.standard_normal(g.y_shape, dtype=dtype)
    if layout == "NHWC":
        for name in ("x", "dy"):
            arrays[name] = np.ascontiguousarray(arrays[name].transpose(0, 2, 3, 1))
    return arrays


def fastconv_call(op: Op, shape: ConvShape | PoolShape, arrays: dict, backend: str,
                  layout: str = "NCHW") -> Callable[[], object]:
    """A no-argument function doing one op on prepared arrays (in layout) with fastconv's given backend."""
    return _CALLS[op.name](shape, arrays, dict(backend=backend, data_format=layout, **shape.kwargs))


def _conv_fwd(shape: ConvShape, a: dict, options: dict):
    return lambda: fc.conv2d(a["x"], a["w"], a["b"], **options)


def _conv_fwd_bwd(shape: ConvShape, a: dict, options: dict):
    def call():
        y = fc.conv2d(a["x"], a["w"], a["b"], **options)
        return y, fc.conv2d_backward(a["dy"], a["x"], a["w"], **options)
    return call


def _maxpool_fwd_bwd(shape: PoolShape, a: dict, options: dict):
    def call():
        y, indices = fc.max_pool2d(a["x"], shape.kernel_size, return_indices=True, **options)
        return y, fc.max_pool2d_backward(a["dy"], a["x"], shape.kernel_size, indices=indices, **options)
    return call


def _avgpool_fwd_bwd(shape: PoolShape, a: dict, options: dict):
    def call():
        y = fc.avg_pool2d(a["x"], shape.kernel_size, **options)
        return y, fc.avg_pool2d_backward(a["dy"], a["x"], shape.kernel_size, **options)
    return call


_CALLS = {"conv_fwd": _conv_fwd, "conv_fwd_bwd": _conv_fwd_bwd, "maxpool_fwd_bwd": _maxpool_fwd_bwd,
          "avgpool_fwd_bwd": _avgpool_fwd_bwd}
