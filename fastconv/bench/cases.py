"""Which benchmarks a run covers: comma-separated selections of ops, shapes, networks, batch sizes, backends and
dtypes.

Shared by `fastconv bench` (which checks the names before starting pytest) and the pytest plugin. An unknown
name is a ValueError listing the valid ones.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastconv._backend import BACKENDS
from fastconv.bench import networks
from fastconv.bench.networks import NETWORKS, Layer
from fastconv.bench.ops import OPS, Op
from fastconv.bench.shapes import QUICK_SHAPES, SHAPES, ConvShape, PoolShape

#: fastconv's backends, then the optional PyTorch reference row
BACKEND_CHOICES = (*BACKENDS, "torch")
DTYPE_CHOICES = ("float32", "float64")
LAYOUT_CHOICES = ("NCHW", "NHWC")
FAMILIES = ("conv", "pool")
NETWORK_CHOICES = ("all", *NETWORKS)
DEFAULT_BATCHES = (1, 8)
#: what a network run compares, whatever else it times
NETWORK_BACKENDS = ("auto", "torch")


@dataclass(frozen=True)
class Case:
    """One op on one shape (a named shape, or a network's layer at a batch size); every backend and dtype of a
    run is benchmarked on it."""

    op: Op
    shape: ConvShape | PoolShape
    layer: Layer | None = None

    @property
    def id(self) -> str:
        return f"{self.op.name}-{self.shape.name}"

    def group(self, dtype: str) -> str:
        """pytest-benchmark group: the backends of one op, shape and dtype are compared side by side."""
        return f"{self.op.name} {self.shape.name} {dtype}"

    def describe(self) -> str:
        return self.layer.describe() if self.layer else self.shape.describe()

    def network_info(self) -> dict:
        """network, layer, count and batch of a network layer's case (empty for a named shape)."""
        if self.layer is None:
            return {}
        return {"network": self.layer.network, "layer": self.layer.name, "count": self.layer.count,
                "batch": self.shape.x[0]}


def case_named(op: str, shape: str) -> Case:
    """The case of an op name and a shape name (a named shape, or a network layer's 'name@bN')."""
    if shape in SHAPES:
        return Case(OPS[op], SHAPES[shape])
    layer, batch = networks.find(shape)
    return Case(OPS[op], layer.shape(batch), layer)


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


def select_cases(ops: str | None, shapes: str | None, quick: bool = False, nets: str | None = None,
                 batches: str | None = None) -> list[Case]:
    """Every selected op on every selected shape of its family (default shapes: all, or the quick subset; none
    when only networks are selected), then the network layers' cases."""
    named = _shape_cases(ops, shapes, quick) if shapes or quick or not nets else []
    return named + _network_cases(ops, nets, batches)


def _shape_cases(ops: str | None, shapes: str | None, quick: bool) -> list[Case]:
    names = parse_names(shapes, tuple(SHAPES), "shape") or (QUICK_SHAPES if quick else tuple(SHAPES))
    families = {ConvShape: "conv", PoolShape: "pool"}
    return [Case(op, SHAPES[name]) for op in select_ops(ops) for name in names
            if families[type(SHAPES[name])] == op.family]


def _network_cases(ops: str | None, nets: str | None, batches: str | None) -> list[Case]:
    """Per network and batch size, each layer with the selected ops it runs (conv: fwd and fwd+bwd; a pool
    layer: its own mode's pooling)."""
    selected = select_ops(ops)
    return [Case(op, layer.shape(batch), layer) for net in select_networks(nets) for batch in select_batches(batches)
            for layer in NETWORKS[net] for op in selected if op.name in layer.ops]


def select_networks(text: str | None) -> list[str]:
    """Network names, 'all' for every one; none by default."""
    names = parse_names(text, NETWORK_CHOICES, "network") or []
    return list(NETWORKS) if "all" in names else names


def select_batches(text: str | None) -> list[int]:
    """Batch sizes for the network layers, e.g. '1,8' (the default); ValueError unless positive integers."""
    if not text:
        return list(DEFAULT_BATCHES)
    items = [item.strip() for item in text.split(",") if item.strip()]
    bad = [item for item in items if not item.isdigit() or int(item) < 1]
    if bad or not items:
        raise ValueError(f"batch sizes are positive integers such as 1,8; got {', '.join(map(repr, bad or [text]))}")
    return list(dict.fromkeys(map(int, items)))


def network_backends(text: str | None) -> list[str]:
    """A network run's backends: auto and torch, plus the ones listed, in the registry's order."""
    names = set(NETWORK_BACKENDS) | set(parse_names(text, BACKEND_CHOICES, "backend") or ())
    return [name for name in BACKEND_CHOICES if name in names]


def select_backends(text: str | None) -> list[str]:
    """Backend names, 'torch' included; default all of them (those that cannot run here are skipped)."""
    return parse_names(text, BACKEND_CHOICES, "backend") or list(BACKEND_CHOICES)


def select_dtypes(text: str | None) -> list[str]:
    return parse_names(text, DTYPE_CHOICES, "dtype") or ["float32"]


def select_layouts(text: str | None) -> list[str]:
    """data_format values to time each case in: NCHW (the default) and/or NHWC."""
    return parse_names(text, LAYOUT_CHOICES, "layout") or ["NCHW"]


def labelled(backend: str, layout: str) -> str:
    """The backend's column in the tables: its name, followed by the layout when that is not NCHW."""
    return backend if layout == "NCHW" else f"{backend} {layout}"
