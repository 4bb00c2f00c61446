"""The PyTorch reference row: the same ops as fastconv.bench.ops, through torch.nn.functional and autograd.

Importing this module raises ImportError when torch is not installed (torch is never a dependency).
Torch uses as many threads as fastconv (fastconv.get_num_threads()).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

import fastconv as fc
from fastconv.bench.ops import Op
from fastconv.bench.shapes import ConvShape, PoolShape

VERSION = torch.__version__


def torch_call(op: Op, shape: ConvShape | PoolShape, arrays: dict) -> Callable[[], object]:
    """A no-argument function doing one op in torch on tensors sharing memory with the prepared arrays."""
    torch.set_num_threads(fc.get_num_threads())
    tensors = {name: torch.from_numpy(a) for name, a in arrays.items()}
    return _CALLS[op.name](shape, tensors)


def _leaves(tensors: dict, names: tuple[str, ...]) -> list[torch.Tensor]:
    """Fresh leaf tensors (same memory) that record gradients."""
    return [tensors[name].detach().requires_grad_() for name in names]


def _conv_fwd(shape: ConvShape, t: dict):
    def call():
        with torch.no_grad():
            return F.conv2d(t["x"], t["w"], t["b"], **shape.kwargs)
    return call


def _conv_fwd_bwd(shape: ConvShape, t: dict):
    x, w, b = _leaves(t, ("x", "w", "b"))

    def call():
        x.grad = w.grad = b.grad = None
        F.conv2d(x, w, b, **shape.kwargs).backward(t["dy"])
        return x.grad, w.grad, b.grad
    return call


def _pool_fwd_bwd(pool: Callable, shape: PoolShape, t: dict):
    (x,) = _leaves(t, ("x",))

    def call():
        x.grad = None
        pool(x, shape.kernel_size, **shape.kwargs).backward(t["dy"])
        return x.grad
    return call


_CALLS = {"conv_fwd": _conv_fwd, "conv_fwd_bwd": _conv_fwd_bwd,
          "maxpool_fwd_bwd": lambda shape, t: _pool_fwd_bwd(F.max_pool2d, shape, t),
          "avgpool_fwd_bwd": lambda shape, t: _pool_fwd_bwd(F.avg_pool2d, shape, t)}
