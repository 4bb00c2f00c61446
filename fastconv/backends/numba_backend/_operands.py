"""Read-only operands reach the kernels as writeable aliases of the same memory.

numba compiles a kernel once per argument types, and a read-only array is another type than a writeable one: a
user's read-only arrays (memory maps, broadcasts, dask chunks) would compile every kernel a second time, about
half of a cold test run's compilation. The kernels never write their inputs (the tests check it), so each method
hands them read-only operands as writeable aliases, without a copy, and each kernel compiles once per dtype.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import numpy as np

from fastconv.backends._protocol import Methods


class _Writeable:
    """An array interface that declares a read-only array's memory writeable, and keeps the array alive."""

    __slots__ = ("__array_interface__", "base")

    def __init__(self, a: np.ndarray):
        interface = dict(a.__array_interface__)
        interface["data"] = (interface["data"][0], False)
        self.__array_interface__, self.base = interface, a


def as_kernel_operand(arg):
    """arg, or a writeable alias (no copy) of a read-only array."""
    if type(arg) is np.ndarray and not arg.flags.writeable:
        return np.asarray(_Writeable(arg))
    return arg


def _aliasing(run: Callable) -> Callable:
    @functools.wraps(run)
    def run_on_writeable(*args):
        return run(*map(as_kernel_operand, args))

    return run_on_writeable


def writeable_operands(methods: Callable[[str, object], Methods]) -> Callable[[str, object], Methods]:
    """A backend's ``methods(op, g)`` whose methods run on writeable aliases of read-only operands."""

    @functools.lru_cache(maxsize=256)
    def aliasing_methods(op: str, g) -> Methods:
        table = methods(op, g)
        return Methods(table.default, {name: dataclasses.replace(method, run=_aliasing(method.run))
                                       for name, method in table.options.items()})

    aliasing_methods.__doc__ = methods.__doc__
    return aliasing_methods
