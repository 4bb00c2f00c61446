"""The numba backend: @njit(cache=True) kernels, compiled on first use (not at import) and cached on disk.

Importing this package fails with ImportError when numba is missing, which marks the backend unavailable.
Modules: conv (method choice and backward composition), conv_pointwise / conv_direct / conv_gemm (the
convolution methods), _columns (implicit-padding im2col tiles), pool (pooling), _parallel (thread ownership).
"""

from __future__ import annotations

import numba  # noqa: F401  (an ImportError here marks the backend unavailable)

from fastconv.backends.numba import conv, pool
from fastconv.backends.numba.conv import conv2d_backward, conv2d_forward
from fastconv.backends.numba.pool import (avg_pool2d_backward, avg_pool2d_forward, max_pool2d_backward,
                                          max_pool2d_forward)

_POOL_KERNELS = {
    "max_pool2d_forward": max_pool2d_forward,
    "max_pool2d_backward": max_pool2d_backward,
    "avg_pool2d_forward": avg_pool2d_forward,
    "avg_pool2d_backward": avg_pool2d_backward,
}


def methods(op: str, g) -> dict:
    """name -> kernel function for every method of this backend that applies to op and geometry g."""
    if op == "conv2d_forward":
        return conv.forward_methods(g)
    if op == "conv2d_backward":
        return conv.backward_methods(g)
    return {"direct": _POOL_KERNELS[op]}


def workspace_bytes(op: str, g) -> int:
    """Bytes of scratch the kernels allocate besides their outputs."""
    if op.startswith("conv2d"):
        return conv.workspace_bytes(op, g)
    return pool.workspace_bytes(op, g)


__all__ = ["conv2d_forward", "conv2d_backward", "max_pool2d_forward", "max_pool2d_backward",
           "avg_pool2d_forward", "avg_pool2d_backward", "methods", "workspace_bytes"]
