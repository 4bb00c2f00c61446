"""fastconv: 2-D convolution and pooling, forward and backward, on numpy arrays, with interchangeable backends."""

from fastconv._api import (avg_pool2d, avg_pool2d_backward, conv2d, conv2d_backward, max_pool2d,
                           max_pool2d_backward)
from fastconv._backend import (BackendUnavailableError, available_backends, get_backend, set_backend,
                               use_backend)
from fastconv._geometry import ConvGeometry, PoolGeometry
from fastconv._threads import get_num_threads, set_num_threads
from fastconv._version import __version__
from fastconv.autotune import set_autotune

__all__ = [
    "conv2d", "conv2d_backward", "max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward",
    "available_backends", "get_backend", "set_backend", "use_backend", "BackendUnavailableError",
    "get_num_threads", "set_num_threads", "set_autotune", "ConvGeometry", "PoolGeometry", "__version__",
]
