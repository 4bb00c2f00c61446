"""max_pool2d_backward with indices of the caller's choosing: every backend scatters each dy to the element its
index names, in its own window or not, and duplicates add up."""

from __future__ import annotations

import numpy as np
import pytest

import fastconv as fc

from _helpers import assert_close, random_array


def scatter_by_hand(dy: np.ndarray, indices: np.ndarray, x_shape) -> np.ndarray:
    """dx[n, c].flat[indices[n, c, oh, ow]] += dy[n, c, oh, ow], with np.add.at."""
    n, c, h, w = x_shape
    dx = np.zeros((n * c, h * w), dy.dtype)
    planes = np.arange(n * c)[:, None]
    np.add.at(dx, (planes, indices.reshape(n * c, -1)), dy.reshape(n * c, -1))
    return dx.reshape(x_shape)


@pytest.mark.parametrize("kernel_size, kwargs", [(2, {}), (3, dict(stride=2, padding=1))],
                         ids=["disjoint", "overlapping"])
def test_max_pool_backward_scatters_any_indices(kernel_size, kwargs, backend, dtype, rng):
    x = random_array(rng, (2, 3, 8, 7), dtype)
    dy = random_array(rng, fc.max_pool2d(x, kernel_size, backend="naive", **kwargs).shape, dtype)
    indices = rng.integers(0, 8 * 7, size=dy.shape)  # most lie outside their own window
    indices[0, 0] = 5  # every gradient of one plane goes to one element
    indices[1, 2, 0, 0] = indices[1, 2, -1, -1]  # the first window's index in the last window
    expected = scatter_by_hand(dy, indices, x.shape)
    dx_naive = fc.max_pool2d_backward(dy, x, kernel_size, indices=indices, backend="naive", **kwargs)
    assert_close(dx_naive, expected, dtype, "naive dx")
    assert_close(fc.max_pool2d_backward(dy, x, kernel_size, indices=indices, backend=backend, **kwargs), dx_naive,
                 dtype, f"{backend} dx")
