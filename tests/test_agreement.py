"""Every backend agrees with naive: forward and all gradients, on the shape table and on random shapes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastconv as fc

from _helpers import CONV_CASES, POOL_CASES, ConvCase, check_conv, check_pools, random_array


@pytest.mark.parametrize("case", CONV_CASES, ids=str)
def test_conv_matches_naive(case, backend, dtype, rng):
    check_conv(case, backend, dtype, rng)


@pytest.mark.parametrize("case", POOL_CASES, ids=str)
def test_pools_match_naive(case, backend, dtype, rng):
    x = random_array(rng, case.x, dtype)
    check_pools(x, case.kernel_size, case.kwargs, backend, dtype, rng, str(case))


@pytest.mark.parametrize("case", POOL_CASES, ids=str)
def test_max_pool_ties_and_infinities_match_naive(case, backend, rng):
    """Few distinct values make ties everywhere; -inf rows make all--inf windows; first max must win."""
    x = rng.integers(0, 3, size=case.x).astype(np.float64)
    x[:, :, ::3, :] = -np.inf
    check_pools(x, case.kernel_size, case.kwargs, backend, np.dtype(np.float64), rng, f"{case} ties")


def test_max_pool_nan_propagates(backend, rng):
    x = random_array(rng, (2, 3, 8, 8), np.float32)
    x[0, 1, 2, 3] = np.nan
    x[1, 2, 5, 4] = np.nan
    x[1, 2, 5, 5] = np.nan  # two NaNs in one window: the first one is named
    y_ref, idx_ref = fc.max_pool2d(x, 2, return_indices=True, backend="naive")
    y, idx = fc.max_pool2d(x, 2, return_indices=True, backend=backend)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(y_ref))
    assert np.isnan(y[0, 1, 1, 1]) and np.isnan(y[1, 2, 2, 2])
    np.testing.assert_array_equal(idx, idx_ref)
    assert idx[1, 2, 2, 2] == 5 * 8 + 4


def test_conv_nan_and_inf_propagate(backend):
    x = np.ones((1, 1, 4, 4))
    x[0, 0, 0, 0] = np.nan
    x[0, 0, 3, 3] = np.inf
    y = fc.conv2d(x, np.ones((1, 1, 2, 2)), backend=backend)
    assert np.isnan(y[0, 0, 0, 0]) and np.isinf(y[0, 0, 2, 2])
    assert np.isfinite(y[0, 0, 1, 1])


# ---------------------------------------------------------------------------------------------------------------
# random shapes


@st.composite
def conv_cases(draw) -> ConvCase:
    groups = draw(st.integers(1, 3))
    c, k = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    r, s = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = draw(st.one_of(
        st.just("same"), st.just("valid"), st.integers(0, 2),
        st.tuples(st.tuples(st.integers(0, 2), st.integers(0, 2)), st.tuples(st.integers(0, 2), st.integers(0, 2)))))
    extent_h, extent_w = (r - 1) * dilation[0] + 1, (s - 1) * dilation[1] + 1
    h, w = draw(st.integers(extent_h, extent_h + 7)), draw(st.integers(extent_w, extent_w + 7))
    n = draw(st.integers(1, 3))
    return ConvCase("random", (n, c, h, w), (k, c // groups, r, s),
                    dict(stride=stride, dilation=dilation, padding=padding, groups=groups))


@st.composite
def pool_cases(draw):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    padding = draw(st.one_of(st.just("same"), st.tuples(st.integers(0, kh // 2), st.integers(0, kw // 2))))
    h, w = draw(st.integers(kh, kh + 8)), draw(st.integers(kw, kw + 8))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), h, w)
    return shape, (kh, kw), dict(stride=stride, padding=padding, ceil_mode=draw(st.booleans()))


RANDOM = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@RANDOM
@given(case=conv_cases())
def test_conv_random_shapes_match_naive(case, backend, dtype):
    check_conv(case, backend, dtype, np.random.default_rng(0))


@RANDOM
@given(case=pool_cases())
def test_pools_random_shapes_match_naive(case, backend, dtype):
    shape, kernel_size, kwargs = case
    rng = np.random.default_rng(0)
    check_pools(random_array(rng, shape, dtype), kernel_size, kwargs, backend, dtype, rng, f"{case}")
