"""What every backend module provides, written once: six kernels, and the methods behind them with their plans.

A backend is a module (or package) with these functions, each taking validated C-contiguous arrays of dtype
``g.dtype`` (possibly read-only; never written) and a geometry from ``fastconv._geometry``; activations (x, y,
their gradients, max pooling's indices) are (N, H, W, C) arrays, in and out, when ``g.channels_last``::

    conv2d_forward(x, w, b, g) -> y
    conv2d_backward(dy, x, w, g, need_dx, need_dw, need_db) -> (dx, dw, db)
    max_pool2d_forward(x, g) -> (y, indices)
    max_pool2d_backward(dy, indices, g) -> dx
    avg_pool2d_forward(x, g) -> y
    avg_pool2d_backward(dy, g) -> dx
    methods(op, g) -> Methods

``methods(op, g)`` lists the ways the backend can run ``op`` on ``g`` (only those that apply) and names its
default, the one the kernel of the same name runs; auto times them all. Each :class:`Method` has a ``plan``:
the scratch arrays and threads of one call, from which the method allocates, after checking that they fit in
memory (the front end checks the outputs), so that the check and the allocation cannot disagree.
For channels-last geometries fastconv.backends._channels_last adds every NCHW method run between transposes.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Callable, Protocol, runtime_checkable

import numpy as np

from fastconv import _scratch
from fastconv._memory import ensure_fits

KERNELS = ("conv2d_forward", "conv2d_backward", "max_pool2d_forward", "max_pool2d_backward",
           "avg_pool2d_forward", "avg_pool2d_backward")


@dataclass(frozen=True)
class Plan:
    """One call's scratch: named arrays (shape, dtype) allocated together, and its parallel loop's threads.

    A method that runs in phases (say grad of w, then grad of x) has the plan of its largest phase: its
    ``nbytes`` is the peak of the phases, and each phase allocates from its own plan.
    """

    threads: int
    buffers: dict[str, tuple[tuple[int, ...], np.dtype]] = field(default_factory=dict)
    phases: tuple[Plan, ...] = ()

    @functools.cached_property
    def nbytes(self) -> int:
        """Scratch bytes at the call's peak, in Python integers (no overflow); computed once per plan."""
        own = sum(math.prod(shape) * np.dtype(dtype).itemsize for shape, dtype in self.buffers.values())
        return max([own, *(phase.nbytes for phase in self.phases)])

    def check(self) -> None:
        """MemoryError when the scratch would not fit in this machine's memory (before allocating any)."""
        ensure_fits(self.nbytes, "the kernel's scratch")

    def allocate(self) -> dict[str, np.ndarray]:
        """The buffers, after check(), uninitialized (each method writes before it reads, or zeroes what it
        accumulates), carved from this thread's scratch arena where it can (fastconv._scratch)."""
        self.check()
        return _scratch.allocate(self._layout)

    @functools.cached_property
    def _layout(self) -> _scratch.Layout:
        return _scratch.layout(self.buffers)

    def holding(self, buffers: dict[str, tuple[tuple[int, ...], np.dtype]]) -> Plan:
        """This plan with more buffers alive throughout (in each of its phases)."""
        return Plan(self.threads, {**buffers, **self.buffers}, tuple(phase.holding(buffers) for phase in self.phases))

    @staticmethod
    def peak(*phases: Plan) -> Plan:
        """The plan of phases run one after the other: the most threads of any, the largest scratch."""
        return Plan(max(phase.threads for phase in phases), phases=phases)


#: the plan of a method that needs no scratch and runs serially
NO_PLAN = Plan(1)


@dataclass(frozen=True)
class Method:
    """One way to run an op: ``run`` has the op's kernel signature; ``plan(g)`` is what one call allocates."""

    name: str
    run: Callable
    plan: Callable[..., Plan] = lambda g, *flags: NO_PLAN


@dataclass(frozen=True)
class Methods:
    """The methods of one op that apply to one geometry, by name, and the backend's default among them."""

    default: str
    options: dict[str, Method]

    def __post_init__(self):
        if self.default not in self.options:
            raise ValueError(f"default method {self.default!r} is not among {list(self.options)}")

    @classmethod
    def of(cls, default: Method, *others: Method) -> Methods:
        """The default first, then the other applicable methods."""
        return cls(default.name, {m.name: m for m in (default, *others)})

    @property
    def chosen(self) -> Method:
        return self.options[self.default]


@runtime_checkable
class Backend(Protocol):
    """The functions a backend module provides (see the module docstring)."""

    def conv2d_forward(self, x, w, b, g): ...
    def conv2d_backward(self, dy, x, w, g, need_dx, need_dw, need_db): ...
    def max_pool2d_forward(self, x, g): ...
    def max_pool2d_backward(self, dy, indices, g): ...
    def avg_pool2d_forward(self, x, g): ...
    def avg_pool2d_backward(self, dy, g): ...
    def methods(self, op: str, g) -> Methods: ...


def methods_of(conv, pool) -> Callable[[str, object], Methods]:
    """A backend's ``methods(op, g)`` from its conv module (``forward_methods(g)``, ``backward_methods(g)``) and
    its pool module (``methods(op, g)``)."""

    def methods(op: str, g) -> Methods:
        """The methods of op that apply to geometry g, and the default among them."""
        if op == "conv2d_forward":
            return conv.forward_methods(g)
        if op == "conv2d_backward":
            return conv.backward_methods(g)
        return pool.methods(op, g)

    return methods


#: where each kernel's geometry argument sits (conv2d_backward's is followed by the need flags)
GEOMETRY_ARG = {op: (3 if op == "conv2d_backward" else -1) for op in KERNELS}


def default_kernels(methods: Callable[[str, object], Methods]) -> dict[str, Callable]:
    """The six kernels of a backend described by its ``methods``: each runs its op's default method."""

    def kernel(op: str) -> Callable:
        def run(*args):
            return methods(op, args[GEOMETRY_ARG[op]]).chosen.run(*args)

        run.__name__ = run.__qualname__ = op
        run.__doc__ = f"{op}, by the default method of methods({op!r}, g)."
        return run

    return {op: kernel(op) for op in KERNELS}
