"""Which benchmarks a run covers: comma-separated selections of ops, shapes, backends and dtypes.

Shared by `fastconv bench` (which checks the names before starting pytest) and the pytest plugin. An unknown
name is a ValueError listing the valid ones.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastconv._backend import BACKENDS
from fastconv.bench.ops import OPS, Op
from fastconv.bench.shapes import QUICK_SHAPES, SHAPES, ConvShape, PoolShape

#: fastconv's backends, then the optional PyTorch reference row
BACKEND_CHOICES = (*BACKENDS, "torch")
DTYPE_CHOICES = ("float32", "float64")
FAMILIES = ("conv", "pool")


@dataclass(frozen=True)
class Case:
    """One op on one shape; every backend and dtype of a run is benchmarked on it."""

    op: Op
    shape: ConvShape | PoolShape

    @property
    def id(self) -> str:
        return f"{self.op.name}-{self.shape.name}"

    def group(self, dtype: str) -> str:
        """pytest-benchmark group: the backends of one op, shape and dtype are compared side by side."""
        return f"{self.op.name} {self.shape.name} {dtype}"


def parse_names(text: str | None, valid, what: str) -> list[str] | None:
    """'a,b' -> ['a', 'b'] (None when text is None or empty); ValueError on a name not in valid."""
    if not text:
        return None
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in valid]
    if unknown:
        raise ValueError(f"unknown {what} {', '.join(map(repr, unknown))}; valid: {', '.join(valid)}")
    return names


def select_ops(text: str | None) -> list[Op]:
    """Op names or families ('conv', 'pool'); default all."""
    names = parse_names(text, (*FAMILIES, *OPS), "op") or list(OPS)
    return [op for op in OPS.values() if op.name in names or op.family in names]


def select_cases(ops: str | None, shapes: str | None, quick: bool = False) -> list[Case]:
    """Every selected op on every selected shape of its family (default shapes: all, or the quick subset)."""
    names = parse_names(shapes, tuple(SHAPES), "shape") or (QUICK_SHAPES if quick else tuple(SHAPES))
    families = {ConvShape: "conv", PoolShape: "pool"}
    return [Case(op, SHAPES[name]) for op in select_ops(ops) for name in names
            if families[type(SHAPES[name])] == op.family]


def select_backends(text: str | None) -> list[str]:
    """Backend names, 'torch' included; default all of them (those that cannot run here are skipped)."""
    return parse_names(text, BACKEND_CHOICES, "backend") or list(BACKEND_CHOICES)


def select_dtypes(text: str | None) -> list[str]:
    return parse_names(text, DTYPE_CHOICES, "dtype") or ["float32"]
