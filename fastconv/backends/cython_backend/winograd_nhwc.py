"""Winograd F(4x4, 3x3) on channels-last arrays: the kernel of _nhwc.pyx behind fastconv.backends._winograd_nhwc
(see there for the maths, the arrays and the blocking)."""

from __future__ import annotations

from fastconv.backends._defaults import winograd_pays
from fastconv.backends._winograd_nhwc import serves_channels_first, winograd_methods
from fastconv.backends.cython_backend import conv
from fastconv.backends.cython_backend._levels import load
from fastconv.backends.cython_backend._reduce import channels_last_bias_grad

_nhwc = load("_nhwc")  # the kernels built for this CPU's instruction set

channels_last_methods = winograd_methods(_nhwc.winograd_forward, conv, channels_last_bias_grad, numba=False)
#: listed before the transposed NCHW methods (the default) where Winograd pays, after them elsewhere
channels_last_default = winograd_pays
#: also offered to NCHW arrays ("nhwc:nhwc_winograd", between transposes) where it may pay for them
serves_channels_first = serves_channels_first
