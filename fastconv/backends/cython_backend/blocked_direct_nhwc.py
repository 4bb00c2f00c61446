"""The register-blocked direct convolution on channels-last arrays ("nhwc_direct_blocked"), forward only:
blocked_direct's kernel (_blocked_direct.pyx) and plan, its bands packed from x's rows of contiguous channels and
y written with the output channels innermost. The backward pass stays nhwc_gemm's."""

from __future__ import annotations

import numpy as np

from fastconv._geometry import ConvGeometry
from fastconv.backends._protocol import Method
from fastconv.backends.cython_backend import blocked_direct, conv

NAME = "nhwc_direct_blocked"


def channels_last_default(g: ConvGeometry) -> bool:
    """Listed first (the default) where blocked_direct is the NCHW twin's default, last elsewhere."""
    return conv.default_method(g.nchw) == "blocked_direct"


def _forward(x, w, b, g: ConvGeometry) -> np.ndarray:
    """x (N, H, W, C), w (K, C/groups, R, S), b (K,) or None -> y (N, Ho, Wo, K)."""
    y = np.empty(g.y_array_shape, g.dtype)
    blocked_direct.forward(x, w, b, y, g)
    return y


_METHOD = Method(NAME, _forward, blocked_direct.forward_plan)


def channels_last_methods(op: str, g: ConvGeometry) -> list[Method]:
    """The forward method where blocked_direct applies."""
    return [_METHOD] if op == "conv2d_forward" and blocked_direct.applies(g) else []
