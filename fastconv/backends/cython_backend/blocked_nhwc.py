"""Depthwise convolution over channel blocks on channels-last arrays ("nhwc_blocked"), forward only: blocked's
kernel (_blocked.pyx) and plan, its tiles filled by copying each pixel's run of contiguous channels (no
transposes) and y written channels innermost. The backward pass stays nhwc_direct's."""

from __future__ import annotations

import numpy as np

from fastconv._geometry import ConvGeometry
from fastconv.backends._protocol import Method
from fastconv.backends.cython_backend import blocked

NAME = "nhwc_blocked"


def channels_last_default(g: ConvGeometry) -> bool:
    """Listed first (the default) where blocked is the NCHW method's preference, last elsewhere."""
    return blocked.preferred(g)


def _forward(x, w, b, g: ConvGeometry) -> np.ndarray:
    """x (N, H, W, C), w (K, 1, R, S), b (K,) or None -> y (N, Ho, Wo, K)."""
    y = np.empty(g.y_array_shape, g.dtype)
    blocked.forward(x, w, b, y, g)
    return y


_METHOD = Method(NAME, _forward, blocked.forward_plan)


def channels_last_methods(op: str, g: ConvGeometry) -> list[Method]:
    """The forward method of depthwise layers (groups > 1, as nhwc_direct)."""
    return [_METHOD] if op == "conv2d_forward" and blocked.applies(g) and g.groups > 1 else []
