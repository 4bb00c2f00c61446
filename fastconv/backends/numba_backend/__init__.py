"""The numba backend: @njit(cache=True) kernels, compiled on first use (not at import) and cached on disk.

Importing this package fails with ImportError when numba is missing, which marks the backend unavailable.
Modules, one per method: gemm (im2col + GEMM per tile), pointwise (1x1), direct (one input channel per group),
polyphase (the same on small maps, over phase planes), winograd (F(4x4, 3x3)), pool (one pass over the planes),
pointwise_nhwc (1x1 on channels-last arrays: one GEMM over all pixels), channelwise_nhwc (depthwise on
channels-last arrays, channels innermost), winograd_nhwc (F(4x4, 3x3) on channels-last arrays, the channels as
the transforms' vectors), gemm_nhwc (every convolution on channels-last arrays: im2col of contiguous channel
slices + GEMM per tile of output pixels), pool_nhwc (pooling on channels-last arrays, channels innermost); conv
chooses among the convolution methods and composes the backward pass; _columns and _chunks hold the row helpers
and the work split they share.
"""

from __future__ import annotations

import numba  # noqa: F401  (an ImportError here marks the backend unavailable)

from fastconv.backends._channels_last import adapted
from fastconv.backends._protocol import KERNELS, default_kernels, methods_of
from fastconv.backends.numba_backend import (channelwise_nhwc, conv, gemm_nhwc, pointwise_nhwc, pool, pool_nhwc,
                                            winograd_nhwc)
from fastconv.backends.numba_backend._operands import writeable_operands

#: conv2d ops from conv's tables, pooling from pool's; channels-last geometries also from the native modules
#: read-only operands as writeable aliases (_operands.py), so that each kernel compiles once per dtype
methods = writeable_operands(adapted(methods_of(conv, pool), pointwise_nhwc, channelwise_nhwc, winograd_nhwc,
                                     gemm_nhwc, pool_nhwc))
globals().update(default_kernels(methods))  # conv2d_forward, ...: each runs its op's default method

__all__ = [*KERNELS, "methods"]
