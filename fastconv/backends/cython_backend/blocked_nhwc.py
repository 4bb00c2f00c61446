"""Depthwise convolution over channel blocks on channels-last arrays ("nhwc_blocked"), forward only: blocked's
kernel (_blocked.pyx) and plan, its tiles filled by copying each pixel's run of contiguous channels (no
transposes) and y written channels innermost. The backward pass stays nhwc_direct's."""

from __future__ import annotations

from fastconv._geometry import ConvGeometry
from fastconv.backends._channels_last import forward_writing_into
from fastconv.backends.cython_backend import blocked


def channels_last_default(g: ConvGeometry) -> bool:
    """Listed first (the default) where blocked is the NCHW method's preference, last elsewhere."""
    return blocked.preferred(g)


#: depthwise layers only (groups > 1), as nhwc_direct
channels_last_methods = forward_writing_into("nhwc_blocked", blocked.forward, blocked.forward_plan,
                                             lambda g: blocked.applies(g) and g.groups > 1)
