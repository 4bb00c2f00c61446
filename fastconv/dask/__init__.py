"""fastconv's convolution and pooling on dask arrays, lazily, for any chunking (``pip install "fastconv[dask]"``).

The six functions take the in-memory functions' arguments, with x and dy as ``dask.array.Array`` (N, C, H, W)
and the weights and bias as small numpy arrays, and return lazy dask arrays. Each output block is one call of
the in-memory function on the input rows and columns its windows read (its chunk plus a halo from the next
ones), padded only at the array's true borders; results equal the whole-array call. See docs/dask.md.
"""

try:
    import dask.array  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a subprocess without dask
    raise ImportError(f'fastconv.dask needs dask ({exc}); install it with: pip install "fastconv[dask]"') from exc

from fastconv.dask._conv import conv2d, conv2d_backward
from fastconv.dask._pool import avg_pool2d, avg_pool2d_backward, max_pool2d, max_pool2d_backward

__all__ = ["conv2d", "conv2d_backward", "max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward"]
