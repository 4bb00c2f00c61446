"""What the tests share: which backends are tested, which shapes, the tolerances per dtype, and the helpers that
compare a backend with naive or write test files.

A new backend joins every agreement, gradient and invariance test through fastconv._backend.BACKENDS;
a new case joins every test by adding one line here.
"""

from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass, field

import numpy as np
import pytest

import fastconv as fc
from fastconv import _backend
from fastconv._backend import BACKENDS
from fastconv.backends import auto

#: every backend except the oracle is compared with naive
COMPARED_BACKENDS = [name for name in BACKENDS if name != "naive"]

#: relative tolerance of a result against naive, keyed by dtype (the public contract: 1e-10 in float64, 1e-4 in float32)
RTOL = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-4}


@dataclass(frozen=True)
class ConvCase:
    """x (n, c, h, w) and w (k, c // groups, r, s), with conv2d's keyword arguments."""

    name: str
    x: tuple[int, int, int, int]
    w: tuple[int, int, int, int]
    kwargs: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class PoolCase:
    """x (n, c, h, w) with the pooling keyword arguments shared by max and avg pooling."""

    name: str
    x: tuple[int, int, int, int]
    kernel_size: int | tuple[int, int]
    kwargs: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return self.name


CONV_CASES = [
    ConvCase("basic_3x3", (2, 3, 7, 7), (4, 3, 3, 3)),
    ConvCase("batch1_odd", (1, 2, 9, 5), (3, 2, 3, 3), dict(padding=1)),
    ConvCase("pointwise_1x1", (2, 8, 6, 6), (5, 8, 1, 1)),
    ConvCase("pointwise_stride2", (2, 4, 7, 7), (3, 4, 1, 1), dict(stride=2)),
    ConvCase("kernel_equals_input", (2, 3, 5, 4), (2, 3, 5, 4)),
    ConvCase("stride2_pad1", (2, 3, 9, 9), (4, 3, 3, 3), dict(stride=2, padding=1)),
    ConvCase("stride_asym", (2, 2, 11, 10), (3, 2, 3, 2), dict(stride=(3, 2))),
    ConvCase("dilation2", (2, 3, 10, 10), (4, 3, 3, 3), dict(dilation=2, padding=2)),
    ConvCase("dilation_asym_stride", (1, 2, 13, 12), (2, 2, 3, 2), dict(dilation=(2, 3), stride=2)),
    ConvCase("padding_asym", (2, 3, 6, 7), (2, 3, 3, 3), dict(padding=((0, 2), (1, 0)))),
    ConvCase("padding_pair", (2, 2, 5, 6), (3, 2, 3, 5), dict(padding=(1, 2))),
    ConvCase("same_stride1", (2, 3, 7, 6), (4, 3, 3, 3), dict(padding="same")),
    ConvCase("same_even_kernel", (2, 3, 7, 6), (4, 3, 4, 2), dict(padding="same")),
    ConvCase("same_stride2", (2, 3, 9, 8), (4, 3, 3, 3), dict(padding="same", stride=2)),
    ConvCase("same_stride2_even", (1, 2, 8, 7), (3, 2, 4, 4), dict(padding="same", stride=2)),
    ConvCase("groups2", (2, 4, 7, 7), (6, 2, 3, 3), dict(groups=2, padding=1)),
    ConvCase("groups3_stride2", (2, 6, 8, 8), (3, 2, 3, 3), dict(groups=3, stride=2)),
    ConvCase("depthwise", (2, 4, 8, 8), (4, 1, 3, 3), dict(groups=4, padding=1)),
    ConvCase("depthwise_multiplier", (2, 3, 6, 6), (6, 1, 3, 3), dict(groups=3, padding="same")),
    ConvCase("depthwise_stride2", (2, 5, 9, 9), (5, 1, 3, 3), dict(groups=5, stride=2, padding=1)),
    ConvCase("large_kernel_stride", (2, 3, 19, 19), (4, 3, 7, 7), dict(stride=4, padding=3)),
    ConvCase("single_channel_5x5", (3, 1, 12, 12), (5, 1, 5, 5)),
    ConvCase("wide_channels", (2, 17, 5, 5), (9, 17, 3, 3), dict(padding=1)),
    ConvCase("one_pixel_output", (2, 3, 3, 3), (2, 3, 3, 3), dict(padding="valid")),
    # zero-size dimensions follow the maths: a sum over no channels is zero, a padded empty image convolves zeros
    ConvCase("empty_batch", (0, 2, 5, 5), (3, 2, 3, 3), dict(padding=1)),
    ConvCase("empty_channels", (2, 0, 9, 10), (3, 0, 3, 3), dict(stride=2)),
    ConvCase("empty_groups", (1, 0, 6, 6), (4, 0, 3, 3), dict(groups=2, padding="same")),
    ConvCase("no_filters", (2, 2, 5, 5), (0, 2, 3, 3)),
    ConvCase("zero_width_padded", (2, 2, 9, 0), (2, 2, 4, 5), dict(padding=((10, 8), (7, 13)))),
    ConvCase("zero_height_strided", (1, 2, 0, 6), (3, 2, 3, 3), dict(padding=2, stride=2)),
    ConvCase("padding_larger_than_kernel", (1, 2, 4, 4), (2, 2, 2, 2), dict(padding=3)),
    # the grad of x by rotation has padding -1 here (a kernel of one row padded by one): it must not reach the
    # polyphase copies, which wrote before their scratch for a negative side (heap corruption, an abort later)
    ConvCase("depthwise_padding_beyond_kernel", (2, 3, 7, 3), (3, 1, 1, 3), dict(padding=1, groups=3)),
]

POOL_CASES = [
    PoolCase("2x2_s2", (2, 3, 8, 8), 2),
    PoolCase("2x2_s2_odd", (2, 2, 7, 9), 2),
    PoolCase("2x2_s2_odd_ceil", (2, 2, 7, 9), 2, dict(ceil_mode=True)),
    PoolCase("3x3_s2_p1_overlap", (2, 3, 9, 9), 3, dict(stride=2, padding=1)),
    PoolCase("3x3_s2_p1_ceil", (1, 2, 10, 8), 3, dict(stride=2, padding=1, ceil_mode=True)),
    PoolCase("3x3_s1_overlap", (2, 2, 6, 7), 3, dict(stride=1)),
    PoolCase("rect_kernel", (2, 2, 9, 8), (3, 2), dict(stride=(2, 1), padding=(1, 1))),
    PoolCase("kernel_equals_input", (2, 3, 5, 6), (5, 6)),
    PoolCase("same_stride2", (2, 2, 7, 7), 3, dict(padding="same", stride=2)),
    PoolCase("same_even", (1, 3, 6, 5), 2, dict(padding="same", stride=1)),
    PoolCase("batch1_1x1", (1, 4, 5, 5), 1),
    PoolCase("empty_channels", (2, 0, 6, 6), 2),
    PoolCase("empty_batch", (0, 3, 5, 5), 3, dict(stride=2, padding=1)),
    PoolCase("ceil_stride3", (2, 2, 11, 11), 3, dict(stride=3, ceil_mode=True, padding=1)),
]


def random_array(rng: np.random.Generator, shape, dtype) -> np.ndarray:
    return rng.standard_normal(shape).astype(dtype)


def assert_close(actual, expected, dtype, what: str = "") -> None:
    """Agreement to RTOL[dtype] relative to the largest magnitude of the expected array."""
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    finite = np.abs(expected[np.isfinite(expected)])
    scale = max(float(finite.max()) if finite.size else 0.0, 1.0)
    np.testing.assert_allclose(actual, expected, rtol=RTOL[np.dtype(dtype)], atol=RTOL[np.dtype(dtype)] * scale,
                               err_msg=what)


#: set in CI, where every backend must be built: an unavailable backend then fails instead of skipping
REQUIRE_ALL = os.environ.get("FASTCONV_REQUIRE_ALL_BACKENDS", "0") == "1"
if os.environ.get("FASTCONV_REQUIRE_ALL_BACKENDS", "0") not in ("", "0", "1"):
    raise ValueError(f"FASTCONV_REQUIRE_ALL_BACKENDS={os.environ['FASTCONV_REQUIRE_ALL_BACKENDS']!r}: use 1 or 0")


def require_backend(name: str) -> str:
    reason = _backend.unavailable_reason(name)
    if reason is not None:
        if REQUIRE_ALL:
            pytest.fail(f"FASTCONV_REQUIRE_ALL_BACKENDS=1 but {reason}")
        pytest.skip(reason)
    return name


def check_conv(case: ConvCase, backend: str, dtype, rng) -> None:
    x = random_array(rng, case.x, dtype)
    w = random_array(rng, case.w, dtype)
    b = random_array(rng, case.w[0], dtype)
    y_ref = fc.conv2d(x, w, b, backend="naive", **case.kwargs)
    assert_close(fc.conv2d(x, w, b, backend=backend, **case.kwargs), y_ref, dtype, f"{case} y")
    dy = random_array(rng, y_ref.shape, dtype)
    expected = fc.conv2d_backward(dy, x, w, backend="naive", **case.kwargs)
    actual = fc.conv2d_backward(dy, x, w, backend=backend, **case.kwargs)
    for name, a, e in zip(("dx", "dw", "db"), actual, expected):
        assert_close(a, e, dtype, f"{case} {name}")


def check_pools(x: np.ndarray, kernel_size, kwargs: dict, backend: str, dtype, rng, what: str) -> None:
    y_ref, idx_ref = fc.max_pool2d(x, kernel_size, return_indices=True, backend="naive", **kwargs)
    y, idx = fc.max_pool2d(x, kernel_size, return_indices=True, backend=backend, **kwargs)
    assert_close(y, y_ref, dtype, f"{what} max y")
    np.testing.assert_array_equal(idx, idx_ref, err_msg=f"{what} max indices")
    dy = random_array(rng, y_ref.shape, dtype)
    dx_ref = fc.max_pool2d_backward(dy, x, kernel_size, backend="naive", **kwargs)
    assert_close(fc.max_pool2d_backward(dy, x, kernel_size, indices=idx, backend=backend, **kwargs), dx_ref,
                 dtype, f"{what} max dx (indices given)")
    assert_close(fc.max_pool2d_backward(dy, x, kernel_size, backend=backend, **kwargs), dx_ref, dtype,
                 f"{what} max dx (indices recomputed)")
    for include_pad in (True, False):
        avg_kwargs = dict(kwargs, count_include_pad=include_pad)
        assert_close(fc.avg_pool2d(x, kernel_size, backend=backend, **avg_kwargs),
                     fc.avg_pool2d(x, kernel_size, backend="naive", **avg_kwargs), dtype, f"{what} avg y")
        assert_close(fc.avg_pool2d_backward(dy, x, kernel_size, backend=backend, **avg_kwargs),
                     fc.avg_pool2d_backward(dy, x, kernel_size, backend="naive", **avg_kwargs), dtype,
                     f"{what} avg dx")


def write_idx_by_hand(path, array: np.ndarray, type_byte: int, gzipped: bool = False) -> None:
    """An IDX file written independently of fastconv.nn.write_idx: 0, 0, type byte, ndim, big-endian uint32
    sizes, big-endian data."""
    payload = (bytes([0, 0, type_byte, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
               + array.astype(array.dtype.newbyteorder(">")).tobytes())
    with (gzip.open if gzipped else open)(path, "wb") as f:
        f.write(payload)


def write_fake_mnist(folder, rng, n_train=5, n_test=3) -> None:
    """Tiny MNIST-format files, the training ones gzipped and the test ones plain."""
    for prefix, n, gzipped in (("train", n_train, True), ("t10k", n_test, False)):
        suffix = ".gz" if gzipped else ""
        write_idx_by_hand(folder / f"{prefix}-images-idx3-ubyte{suffix}",
                          rng.integers(0, 256, (n, 28, 28), np.uint8), 0x08, gzipped)
        write_idx_by_hand(folder / f"{prefix}-labels-idx1-ubyte{suffix}", rng.integers(0, 10, n, np.uint8), 0x08,
                          gzipped)


def use_stable_candidates(set_attribute=setattr) -> None:
    """auto chooses between two names for the im2col kernels: candidates that always run, whatever state the
    compiled backends are in (a decision taken while a candidate failed is measured again, which the round-trip
    tests must not see). With im2col the only candidate backend, a subprocess imports neither numba nor the Cython
    extension. set_attribute: monkeypatch.setattr, to undo it after a test."""
    set_attribute(auto, "CANDIDATE_BACKENDS", ("im2col",))
    set_attribute(auto, "candidates",
                  lambda op, g: {name: getattr(_backend.load("im2col"), op) for name in ("a", "b")})
