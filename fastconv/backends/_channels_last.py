"""Channels-last geometries for every backend: its native channels-last methods, and each of its NCHW methods
run between transposes.

For a geometry with ``channels_last`` the activations (x, y, their gradients, max pooling's indices) are
C-contiguous (N, H, W, C) arrays. A backend's methods for it are the native ones its modules list
(``channels_last_methods(op, g)``), then every NCHW method as "nchw:<method>": the activations transposed into
NCHW (fastconv._transpose), the method run on ``g.nchw``, its activation results transposed back. Its plan holds
the NCHW copies besides the method's own scratch. The default is the first native method, else the NCHW default's
twin; a module with ``channels_last_default = False`` (or a predicate of the geometry that is False on it) lists
its methods last (measured slower than the transposes; auto may still pick them); auto measures them all against
each other.

The other way round, a module whose ``serves_channels_first(op, g)`` is true on an NCHW geometry lends its native
methods to NCHW arrays as "nhwc:<method>", between the inverse transposes, listed after the NCHW methods: a
channels-last kernel can be fast enough to pay for them (Winograd along the channels), and auto measures it.
"""

from __future__ import annotations

import functools
from typing import Callable

import numpy as np

from fastconv._threads import per_budget
from fastconv._layout import moves
from fastconv.backends._protocol import GEOMETRY_ARG, Method, Methods, Plan

#: op -> (positions of its activation arguments, positions of its activation results; None: the result is one)
ACTIVATIONS = {
    "conv2d_forward": ((0,), None),
    "conv2d_backward": ((0, 1), (0,)),
    "max_pool2d_forward": ((0,), (0, 1)),
    "max_pool2d_backward": ((0, 1), None),
    "avg_pool2d_forward": ((0,), None),
    "avg_pool2d_backward": ((0,), None),
}


def adapted(nchw_methods: Callable[[str, object], Methods], *native_sources) -> Callable[[str, object], Methods]:
    """A backend's ``methods(op, g)`` for both layouts, from its NCHW ``methods`` and the modules that list its
    native channels-last methods (each with ``channels_last_methods(op, g) -> list[Method]``)."""

    @functools.lru_cache(maxsize=256)
    def channels_last(op: str, g) -> Methods:
        native = [(_leads(source, g), method) for source in native_sources
                  for method in source.channels_last_methods(op, g)]
        table = nchw_methods(op, g.nchw)
        nchw = [_transposed(op, method) for method in
                (table.chosen, *(m for m in table.options.values() if m.name != table.default))]
        return Methods.of(*(m for first, m in native if first), *nchw, *(m for first, m in native if not first))

    @functools.lru_cache(maxsize=256)
    def channels_first(op: str, g) -> Methods:
        table = nchw_methods(op, g)
        lent = [_transposed(op, method, into_channels_last=True) for source in native_sources
                if getattr(source, "serves_channels_first", _never)(op, g)
                for method in source.channels_last_methods(op, g.nhwc)]
        return Methods(table.default, {**table.options, **{m.name: m for m in lent}}) if lent else table

    def methods(op: str, g) -> Methods:
        """The methods of op that apply to geometry g, and the default among them."""
        return channels_last(op, g) if g.channels_last else channels_first(op, g)

    return methods


def _never(op: str, g) -> bool:
    return False


def _leads(source, g) -> bool:
    """Whether source's native methods come before the transposed ones on g: its ``channels_last_default``, a
    bool or a predicate of the geometry (True when it has none)."""
    leads = getattr(source, "channels_last_default", True)
    return leads(g) if callable(leads) else leads


def _transposed(op: str, method: Method, into_channels_last: bool = False) -> Method:
    """method (NCHW) as a channels-last method "nchw:<name>"; with into_channels_last, method (channels-last) as
    an NCHW method "nhwc:<name>"."""
    inputs, outputs = ACTIVATIONS[op]
    at = GEOMETRY_ARG[op]
    inner_layout = "nhwc" if into_channels_last else "nchw"

    @per_budget
    def plan(g, *flags) -> Plan:
        """The inner method's plan with the argument copies alive, then the copies of its results as they are
        transposed back (made once per geometry: a tenth of a small call's time otherwise)."""
        arguments, results = _copies(op, g, inner_layout, *flags)
        inner = method.plan(getattr(g, inner_layout), *flags)
        return Plan.peak(inner.holding(arguments), Plan(inner.threads, {**arguments, **results}))

    def run(*args):
        from fastconv._transpose import to_channels_first, to_channels_last

        inward, outward = (to_channels_last, to_channels_first) if into_channels_last else \
            (to_channels_first, to_channels_last)
        g = args[at]
        plan(g, *(args[at + 1:at + 3] if op == "conv2d_backward" else ())).check()
        args = [inward(a) if i in inputs else a for i, a in enumerate(args)]
        args[at] = getattr(g, inner_layout)
        result = method.run(*args)
        if outputs is None:
            return outward(result)
        return tuple(outward(r) if i in outputs and r is not None else r for i, r in enumerate(result))

    run.__doc__ = (f"{op} on {'NCHW' if into_channels_last else 'channels-last'} arrays by the "
                   f"{'channels-last' if into_channels_last else 'NCHW'} method {method.name!r}, between transposes.")
    return Method(f"{inner_layout}:{method.name}", run, plan)


def _copies(op: str, g, inner_layout: str, need_dx: bool = True, need_dw: bool = True) -> tuple[dict, dict]:
    """The copies ("nchw" or "nhwc") of op's activation arguments (alive while the inner method runs) and of its
    results (alive while they are transposed back), as plan buffers: those that move between the layouts."""
    x, y, indices = (g.x_shape, g.dtype), (g.y_shape, g.dtype), (g.y_shape, np.dtype(np.int64))
    arguments, results = {
        "conv2d_forward": ({"x": x}, {"y": y}),
        "conv2d_backward": ({"dy": y, "x": x}, {"dx": x} if need_dx else {}),
        "max_pool2d_forward": ({"x": x}, {"y": y, "indices": indices}),
        "max_pool2d_backward": ({"dy": y, "indices": indices}, {"dx": x}),
        "avg_pool2d_forward": ({"x": x}, {"y": y}),
        "avg_pool2d_backward": ({"dy": y}, {"dx": x}),
    }[op]
    return ({f"{inner_layout}_{name}": buffer for name, buffer in arguments.items() if moves(buffer[0])},
            {f"{inner_layout}_{name}": buffer for name, buffer in results.items() if moves(buffer[0])})
