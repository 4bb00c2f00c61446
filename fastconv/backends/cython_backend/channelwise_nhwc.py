"""Convolution with one input channel per group (depthwise) on channels-last arrays: the kernels of _nhwc.pyx
behind fastconv.backends._channelwise_nhwc (see there for the arrays and tables)."""

from __future__ import annotations

from fastconv.backends._channelwise_nhwc import channelwise_methods
from fastconv.backends.cython_backend._levels import load
from fastconv.backends.cython_backend._reduce import channels_last_bias_grad

_nhwc = load("_nhwc")  # the kernels built for this CPU's instruction set

channels_last_methods = channelwise_methods(_nhwc.channelwise_forward, _nhwc.channelwise_grad_x,
                                            _nhwc.channelwise_grad_w, channels_last_bias_grad, numba=False)
