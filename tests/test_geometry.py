"""Output sizes and padding rules, checked against hand-computed values."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from fastconv._geometry import conv_geometry, pool_geometry


def conv(x_shape, w_shape, **kwargs):
    return conv_geometry(np.empty(x_shape), np.empty(w_shape), **kwargs)


@pytest.mark.parametrize("x_shape, w_shape, kwargs, out_hw, pads", [
    ((1, 1, 28, 28), (30, 1, 5, 5), {}, (24, 24), (0, 0, 0, 0)),
    ((8, 3, 227, 227), (96, 3, 11, 11), dict(stride=4), (55, 55), (0, 0, 0, 0)),
    ((1, 1, 56, 56), (1, 1, 3, 3), dict(padding=1), (56, 56), (1, 1, 1, 1)),
    ((1, 1, 10, 9), (1, 1, 3, 3), dict(padding=(2, 0)), (12, 7), (2, 2, 0, 0)),
    ((1, 1, 10, 9), (1, 1, 3, 3), dict(padding=((0, 1), (2, 3))), (9, 12), (0, 1, 2, 3)),
    ((1, 1, 10, 10), (1, 1, 3, 3), dict(dilation=2), (6, 6), (0, 0, 0, 0)),
    ((1, 1, 10, 10), (1, 1, 3, 3), dict(padding="valid", stride=3), (3, 3), (0, 0, 0, 0)),
    # "same" (TensorFlow): out = ceil(H / stride), odd padding pixel at the bottom/right
    ((1, 1, 7, 7), (1, 1, 3, 3), dict(padding="same"), (7, 7), (1, 1, 1, 1)),
    ((1, 1, 7, 7), (1, 1, 4, 4), dict(padding="same"), (7, 7), (1, 2, 1, 2)),
    ((1, 1, 7, 8), (1, 1, 3, 3), dict(padding="same", stride=2), (4, 4), (1, 1, 0, 1)),
    ((1, 1, 8, 8), (1, 1, 4, 2), dict(padding="same", stride=2), (4, 4), (1, 1, 0, 0)),
    ((1, 1, 5, 5), (1, 1, 3, 3), dict(padding="same", dilation=2), (5, 5), (2, 2, 2, 2)),
    ((1, 1, 5, 5), (1, 1, 1, 1), dict(padding="same", stride=3), (2, 2), (0, 0, 0, 0)),
])
def test_conv_output_size_and_padding(x_shape, w_shape, kwargs, out_hw, pads):
    g = conv(x_shape, w_shape, **kwargs)
    assert (g.out_h, g.out_w) == out_hw
    assert (g.pad_top, g.pad_bottom, g.pad_left, g.pad_right) == pads


def test_conv_geometry_derived_numbers():
    g = conv((2, 6, 9, 9), (4, 3, 3, 3), groups=2, stride=(2, 1))
    assert (g.c_per_group, g.k_per_group) == (3, 2)
    assert g.y_shape == (2, 4, 4, 7)
    assert g.flops == 2 * 2 * 4 * 4 * 7 * 3 * 3 * 3
    assert g.dtype == np.float64


@pytest.mark.parametrize("x_hw, kernel, kwargs, out_hw", [
    ((112, 112), 2, {}, (56, 56)),
    ((7, 9), 2, {}, (3, 4)),
    ((7, 9), 2, dict(ceil_mode=True), (4, 5)),
    ((9, 9), 3, dict(stride=2, padding=1), (5, 5)),
    ((10, 10), 3, dict(stride=2, padding=1, ceil_mode=True), (6, 6)),
    # ceil_mode: the last window would start in the right padding, so it is dropped (PyTorch's rule)
    ((5, 5), 2, dict(stride=2, padding=1, ceil_mode=True), (3, 3)),
    ((5, 5), 3, dict(padding="same", stride=2), (3, 3)),
])
def test_pool_output_size(x_hw, kernel, kwargs, out_hw):
    g = pool_geometry(np.empty((1, 1) + x_hw), kernel, **kwargs)
    assert (g.out_h, g.out_w) == out_hw


def test_pool_output_size_matches_ceil_formula():
    for h in range(3, 20):
        for k in range(1, 4):
            for s in range(1, 4):
                g = pool_geometry(np.empty((1, 1, h, h)), k, stride=s, ceil_mode=True)
                expected = math.ceil((h - k) / s) + 1
                if (expected - 1) * s >= h:
                    expected -= 1
                assert g.out_h == expected, (h, k, s)


def test_avg_divisor_counts_padding_only_when_asked():
    x = np.empty((1, 1, 4, 4))
    with_pad = pool_geometry(x, 3, stride=2, padding=1).avg_divisor()
    without = pool_geometry(x, 3, stride=2, padding=1, count_include_pad=False).avg_divisor()
    np.testing.assert_array_equal(with_pad, np.full((2, 2), 9.0))
    np.testing.assert_array_equal(without, [[4.0, 6.0], [6.0, 9.0]])


def test_a_geometry_hashes_once_keeps_its_twin_and_pickles_its_fields_only():
    import pickle

    g = conv_geometry(np.zeros((1, 3, 8, 8), np.float32), np.zeros((4, 3, 3, 3), np.float32))
    assert g.nhwc is g.nhwc and g.nhwc.nchw is g and g.nhwc.channels_last and g.nchw is g
    assert hash(g) == hash(dataclasses.replace(g)) and g == dataclasses.replace(g)
    copy = pickle.loads(pickle.dumps(g))
    assert copy == g and not [name for name in vars(copy) if name.startswith("_")]
