"""The register-blocked direct convolution on channels-last arrays ("nhwc_direct_blocked"), forward only:
blocked_direct's kernel (_blocked_direct.pyx) and plan, its bands packed from x's rows of contiguous channels and
y written with the output channels innermost. The backward pass stays nhwc_gemm's."""

from __future__ import annotations

from fastconv._geometry import ConvGeometry
from fastconv.backends._channels_last import forward_writing_into
from fastconv.backends.cython_backend import blocked_direct, conv

NAME = "nhwc_direct_blocked"


def channels_last_default(g: ConvGeometry) -> bool:
    """Listed first (the default) where blocked_direct is the NCHW twin's default, last elsewhere."""
    return conv.default_method(g.nchw) == "blocked_direct"


channels_last_methods = forward_writing_into(NAME, blocked_direct.forward, blocked_direct.forward_plan,
                                             blocked_direct.applies)
