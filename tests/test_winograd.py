"""Winograd F(2x2, 3x3) and F(4x4, 3x3) (numba): the transform constants, agreement with naive in float64, the
float32 accuracy bar on reduced versions of the benchmark's 3x3 layers, blocking, threads and read-only inputs."""

from __future__ import annotations

import numpy as np
import pytest

import fastconv as fc
from fastconv._geometry import conv_geometry
from fastconv.backends._winograd import AT, BT, G

from _helpers import random_array

pytest.importorskip("numba")
winograd = pytest.importorskip("fastconv.backends.numba_backend.winograd")

TILES = (2, 4)

#: a kernel that numba cannot cache on disk recompiles in every process: make that warning a failure
pytestmark = pytest.mark.filterwarnings("error::numba.core.errors.NumbaWarning")


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """max |actual - expected| / max |expected|: the measure of the agreement tests."""
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


def run(x, w, b, m, **kwargs) -> np.ndarray:
    return winograd.forward(x, w, b, conv_geometry(x, w, b, **kwargs), m)


@pytest.mark.parametrize("m", TILES)
def test_transforms_compute_a_1d_correlation(m, rng):
    """AT [(G g) * (BT d)] == correlation of d with g, the identity every Winograd algorithm rests on."""
    d, g = rng.standard_normal(m + 2), rng.standard_normal(3)
    expected = np.correlate(d, g, mode="valid")
    np.testing.assert_allclose(AT[m] @ ((G[m] @ g) * (BT[m] @ d)), expected,
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("m", TILES)
def test_written_out_transforms_match_the_matrices(m, rng):
    alpha = m + 2
    rows = rng.standard_normal((alpha, winograd.COLS))
    out = np.zeros((alpha, winograd.COLS))
    winograd._bt(rows, 0, 1, 0, out, 0, 1, 0, m)
    np.testing.assert_allclose(out, BT[m] @ rows, rtol=1e-13, atol=1e-13)
    winograd._at(rows, 0, 1, 0, out, 0, 1, 0, m)
    np.testing.assert_allclose(out[:m], AT[m] @ rows, rtol=1e-13, atol=1e-13)


SMALL = [
    ((2, 3, 7, 7), (4, 3, 3, 3), dict(padding=1)),
    ((1, 2, 9, 5), (3, 2, 3, 3), dict(padding=((0, 2), (1, 0)))),  # asymmetric padding, odd sizes
    ((2, 5, 6, 11), (3, 5, 3, 3), dict(padding="valid")),
    ((1, 2, 3, 3), (2, 2, 3, 3), dict(padding="valid")),  # a single output pixel
    ((3, 2, 10, 13), (2, 2, 3, 3), dict(padding="same")),
    ((1, 1, 5, 5), (1, 1, 3, 3), dict(padding=3)),  # padding wider than the kernel
    ((2, 3, 9, 250), (2, 3, 3, 3), dict(padding=1)),  # few tile rows per block, many blocks
    ((5, 2, 13, 130), (3, 2, 3, 3), dict(padding=1)),  # blocks span images; the last block is partial
]


@pytest.mark.parametrize("m", TILES)
@pytest.mark.parametrize("x_shape, w_shape, kwargs", SMALL, ids=[str(case[0]) for case in SMALL])
def test_float64_matches_naive(x_shape, w_shape, kwargs, m, rng):
    x, w, b = (random_array(rng, shape, np.float64) for shape in (x_shape, w_shape, w_shape[:1]))
    expected = fc.conv2d(x, w, b, backend="naive", **kwargs)
    assert relative_error(run(x, w, b, m, **kwargs), expected) < 1e-10
    assert relative_error(run(x, w, None, m, **kwargs), expected - b[:, None, None]) < 1e-10


def test_random_shapes_and_paddings_match_naive():
    """Sizes from 1 pixel up and each side padded 0..4 (also wider than the kernel), both tile sizes."""
    rng = np.random.default_rng(7)
    for _ in range(30):
        (n, c, k), (h, w) = rng.integers(1, 4, size=3), rng.integers(1, 14, size=2)
        top, bottom, left, right = (int(p) for p in rng.integers(0, 5, size=4))
        if h + top + bottom < 3 or w + left + right < 3:
            continue
        x, weights, b = rng.standard_normal((n, c, h, w)), rng.standard_normal((k, c, 3, 3)), rng.standard_normal(k)
        padding = ((top, bottom), (left, right))
        expected = fc.conv2d(x, weights, b, padding=padding, backend="naive")
        for m in TILES:
            assert relative_error(run(x, weights, b, m, padding=padding), expected) < 1e-10, (x.shape, padding, m)


# reduced versions of resnet_3x3 (8,64,56,56)x(64,64,3,3) p1 and vgg_3x3 (8,128,28,28)x(128,128,3,3) p1
BENCH_LIKE = [((1, 64, 18, 18), (64, 64, 3, 3)), ((1, 128, 10, 10), (128, 128, 3, 3))]


@pytest.mark.parametrize("m", TILES)
@pytest.mark.parametrize("x_shape, w_shape", BENCH_LIKE, ids=["resnet_3x3", "vgg_3x3"])
def test_float32_accuracy_on_benchmark_layers(x_shape, w_shape, m, rng):
    """The float32 result within 1e-3 (the bar for Winograd) and 1e-4 (the agreement tolerance) of float64."""
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal(w_shape) / np.sqrt(w_shape[1] * 9)  # He-like scale, as in a trained network
    expected = fc.conv2d(x, w, padding=1, backend="naive")
    actual = run(x.astype(np.float32), w.astype(np.float32), None, m, padding=1)
    assert actual.dtype == np.float32
    assert relative_error(actual, expected) < 1e-4


def test_threads_and_read_only_inputs_do_not_change_the_result(rng):
    x, w = random_array(rng, (4, 3, 12, 12), np.float32), random_array(rng, (5, 3, 3, 3), np.float32)
    x.flags.writeable = w.flags.writeable = False
    before = x.copy()
    results = []
    for threads in (1, 2):
        fc.set_num_threads(threads)
        results.append(run(x, w, None, 4, padding=1))
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_array_equal(x, before)


#: (conv2d keyword arguments, w's shape) of layers with x (1, 3, 12, 12) that Winograd does not compute
NOT_WINOGRAD = [
    (dict(stride=2), (4, 3, 3, 3)),
    (dict(dilation=2), (4, 3, 3, 3)),
    (dict(groups=3), (3, 1, 3, 3)),
    ({}, (4, 3, 5, 5)),
    ({}, (4, 3, 3, 1)),
]


@pytest.mark.parametrize("kwargs, w_shape", NOT_WINOGRAD)
def test_not_applicable_outside_3x3_stride_1(kwargs, w_shape):
    g = conv_geometry(np.empty((1, 3, 12, 12)), np.empty(w_shape), **kwargs)
    assert not winograd.applies(g)


def test_too_wide_a_row_is_a_clear_error():
    x, w = np.ones((1, 1, 3, winograd.COLS * 2 + 3)), np.ones((1, 1, 3, 3))
    with pytest.raises(ValueError, match="more than the 128 tiles"):
        run(x, w, None, 2)


def test_applicable_up_to_the_block_width():
    wide = winograd.COLS * 4
    assert winograd.applies(conv_geometry(np.empty((1, 1, 3, wide + 2)), np.empty((1, 1, 3, 3))))
    assert not winograd.applies(conv_geometry(np.empty((1, 1, 3, wide + 3)), np.empty((1, 1, 3, 3))))


def test_workspace_counts_the_transformed_weights_and_blocks():
    g = conv_geometry(np.empty((8, 64, 56, 56), np.float32), np.empty((64, 64, 3, 3), np.float32), padding=1)
    weights = 36 * 64 * 64 * 4
    assert weights < winograd.plan(g).nbytes < 16 * weights
