"""The shared tables: which backends are tested, which shapes, and the tolerances per dtype.

A new backend joins every agreement, gradient and invariance test through fastconv._backend.BACKENDS;
a new case joins every test by adding one line here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fastconv._backend import BACKENDS

#: every backend except the oracle is compared with naive
COMPARED_BACKENDS = [name for name in BACKENDS if name != "naive"]

#: relative tolerance of a result against naive, keyed by dtype (API.md)
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
    ConvCase("padding_larger_than_kernel", (1, 2, 4, 4), (2, 2, 2, 2), dict(padding=3)),
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
