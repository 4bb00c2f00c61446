"""What only the cython backend promises: the GIL is released, OpenMP threads are used, every method agrees."""

from __future__ import annotations

import contextlib
import threading
import time

import numpy as np
import pytest

import fastconv as fc
from fastconv._geometry import conv_geometry

from _helpers import assert_close, random_array, require_backend


@pytest.fixture
def cython_backend():
    require_backend("cython")
    from fastconv.backends import cython_backend

    return cython_backend


@contextlib.contextmanager
def num_threads(n: int):
    before = fc.get_num_threads()
    fc.set_num_threads(n)
    try:
        yield
    finally:
        fc.set_num_threads(before)


@pytest.fixture
def one_thread():
    with num_threads(1):
        yield


@pytest.fixture
def two_threads():
    with num_threads(2):
        yield


def test_kernels_release_the_gil(cython_backend, rng, one_thread):
    """While one thread runs a long convolution, another keeps running Python code."""
    x = random_array(rng, (48, 64, 48, 48), np.float32)
    w = random_array(rng, (64, 64, 3, 3), np.float32)
    started = time.perf_counter()
    fc.conv2d(x, w, padding=1, backend="cython")
    one_call = time.perf_counter() - started

    ticks = []
    worker = threading.Thread(target=fc.conv2d, args=(x, w), kwargs=dict(padding=1, backend="cython"))
    worker.start()
    while worker.is_alive():
        ticks.append(time.perf_counter())
        time.sleep(0.001)
    worker.join()
    longest_gap = max(np.diff(ticks), default=0.0)
    assert len(ticks) > 5 and longest_gap < one_call / 2, (len(ticks), longest_gap, one_call)


def test_parallel_loops_use_the_requested_threads(cython_backend):
    from fastconv.backends.cython_backend import _common

    assert _common.parallel_threads(1) == 1
    assert _common.parallel_threads(2) == 2, "the extension was built without OpenMP (see setup.py's warning)"


def test_one_and_two_threads_agree(cython_backend, rng):
    x = random_array(rng, (4, 6, 13, 12), np.float32)
    w = random_array(rng, (8, 3, 3, 3), np.float32)
    kw = dict(stride=(1, 2), padding=1, groups=2)
    dy = random_array(rng, fc.conv2d(x, w, backend="naive", **kw).shape, np.float32)
    results = []
    for threads in (1, 2):
        with num_threads(threads):
            results.append((fc.conv2d(x, w, backend="cython", **kw),
                            *fc.conv2d_backward(dy, x, w, backend="cython", **kw),
                            *fc.max_pool2d(x, 3, stride=2, return_indices=True, backend="cython")))
    for one, two in zip(*results):
        assert_close(two, one, np.float32)


@pytest.mark.parametrize("shapes, kw, owned", [
    (((1, 6, 5, 7), (16, 6, 3, 3)), dict(padding=1, stride=(1, 2)), True),  # batch 1: blocks of channels
    (((1, 6, 5, 7), (24, 6, 1, 1)), {}, True),  # pointwise: x its own column matrix
    (((3, 4, 9, 8), (6, 2, 3, 3)), dict(padding=((0, 2), (1, 0)), groups=2), True),  # a group per thread
    (((5, 2, 40, 36), (3, 2, 3, 3)), dict(dilation=2), False),  # large maps: per-thread partial dw
])
def test_gemm_splits_of_the_work_agree_with_naive(cython_backend, rng, two_threads, monkeypatch, dtype, shapes, kw,
                                                  owned):
    """Each way the gemm and pointwise methods split a call over two threads: output channels in blocks when
    tiles are fewer than threads, dw by threads owning its rows or by per-thread partial sums, dx by blocks of
    input channels."""
    from fastconv.backends.cython_backend import conv, gemm

    monkeypatch.setattr(fc._threads, "MIN_WORK_PER_THREAD", 1)  # two threads even on these small layers
    x, w = random_array(rng, shapes[0], dtype), random_array(rng, shapes[1], dtype)
    b = random_array(rng, shapes[1][:1], dtype)
    g = conv_geometry(x, w, b, **kw)
    assert gemm.owns_dw(g) == owned
    dy = random_array(rng, g.y_shape, dtype)
    expected_y = fc.conv2d(x, w, b, backend="naive", **kw)
    expected_grads = fc.conv2d_backward(dy, x, w, backend="naive", **kw)
    names = ["gemm"] + (["pointwise"] if g.is_pointwise else [])
    for name in names:
        assert_close(conv.FORWARD[name].run(x, w, b, g), expected_y, dtype)
        for got, expected in zip(conv.BACKWARD[name].run(dy, x, w, g, True, True, True), expected_grads):
            assert_close(got, expected, dtype)


@pytest.mark.parametrize("plane, kernel, stride", [
    ((15, 17), 1, 1),  # 255 outputs: the whole plane at once, the last block of 8 padded
    ((16, 32), 2, 2),  # 8 x 16 = 128 outputs, whole blocks
    ((33, 31), 3, 2),  # 16 x 15 = 240 outputs of overlapping windows
    ((34, 34), 3, 2),  # 16 x 16 = 256: the most the plane-at-once loop takes
    ((35, 33), 3, 2),  # 17 x 16 = 272 outputs: row by row
])
def test_pools_on_small_planes_agree_with_naive(cython_backend, rng, plane, kernel, stride):
    """Pooling of a plane whose windows all lie inside it runs over the whole plane at once (a gather per tap)
    when it has at most 256 outputs, row by row above: max's ties to the first maximum, NaN and -inf as naive;
    averages as naive."""
    x = rng.integers(0, 3, size=(2, 3, *plane)).astype(np.float32)
    x[:, :, ::4, :] = -np.inf
    x[0, 1, 5, 3] = x[1, 2, 6, 6] = x[1, 2, 6, 7] = np.nan
    y_ref, idx_ref = fc.max_pool2d(x, kernel, stride=stride, return_indices=True, backend="naive")
    y, idx = fc.max_pool2d(x, kernel, stride=stride, return_indices=True, backend="cython")
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(idx, idx_ref)
    x = random_array(rng, x.shape, np.float64)
    assert_close(fc.avg_pool2d(x, kernel, stride=stride, backend="cython"),
                 fc.avg_pool2d(x, kernel, stride=stride, backend="naive"), np.float64)


@pytest.mark.parametrize("kernel, kwargs", [(3, dict(stride=2, padding=1)), ((3, 2), dict(stride=1)),
                                            (3, dict(stride=2, padding=1, ceil_mode=True, count_include_pad=False))])
def test_avg_pool_backward_of_overlapping_windows_agrees_with_naive(cython_backend, rng, two_threads, monkeypatch,
                                                                     dtype, kernel, kwargs):
    """Overlapping windows' average-pool gradient spreads each window row's shares along a row of its thread's
    own, then adds that row to the window row's input rows: on two threads, as naive."""
    monkeypatch.setattr(fc._threads, "MIN_WORK_PER_THREAD", 1)  # two threads even on this small call
    x = random_array(rng, (2, 5, 11, 9), dtype)
    dy = random_array(rng, fc.avg_pool2d(x, kernel, backend="naive", **kwargs).shape, dtype)
    assert_close(fc.avg_pool2d_backward(dy, x, kernel, backend="cython", **kwargs),
                 fc.avg_pool2d_backward(dy, x, kernel, backend="naive", **kwargs), dtype)


@pytest.mark.parametrize("shapes, kw, tiles, blocks, shared", [
    (((1, 3, 9, 8), (10, 3, 3, 3)), dict(padding=1), 1, 2, True),  # one tile: shared; 3 input channels
    (((3, 5, 4, 4), (7, 5, 3, 3)), dict(stride=2, padding=1), 1, 2, True),  # one tile of 3 images, 5 channels
    (((1, 3, 9, 8), (10, 3, 3, 3)), dict(padding=1, dilation=(2, 1)), 3, 2, False),  # 3 tiles: each its own
    (((1, 4, 6, 6), (6, 2, 3, 3)), dict(padding=1, groups=2), 4, 1, False),  # 2 tiles per group: no blocks
])
def test_gemm_forward_channel_blocks_share_a_tile_columns(cython_backend, rng, two_threads, monkeypatch, tiling,
                                                          dtype, shapes, kw, tiles, blocks, shared):
    """With blocks of output channels on fewer tiles than threads (batch 1, one tile) the threads fill the tile's
    column matrix together, a block of input channels each, then multiply their blocks by it (one copy, not one per
    thread); with more tiles each thread copies the tiles of its blocks."""
    from fastconv.backends.cython_backend import conv, gemm

    monkeypatch.setattr(fc._threads, "MIN_WORK_PER_THREAD", 1)  # two threads even on these small layers
    tiling(gemm, MIN_TILE_COLUMNS=18 if tiles != 1 else 100, COL_TILE_BYTES=1)
    x, w = random_array(rng, shapes[0], dtype), random_array(rng, shapes[1], dtype)
    b = random_array(rng, shapes[1][:1], dtype)
    g = conv_geometry(x, w, b, **kw)
    images = gemm.images_per_tile(g)
    assert gemm._tiles(g, images) == tiles and gemm._forward_channel_blocks(g, images) == blocks
    assert gemm.forward_plan(g).buffers["columns"][0][0] == (1 if shared else 2)
    assert_close(conv.FORWARD["gemm"].run(x, w, b, g), fc.conv2d(x, w, b, backend="naive", **kw), dtype)


@pytest.mark.parametrize("shapes, kw, min_columns, images", [
    (((5, 4, 6, 6), (6, 2, 3, 3)), dict(padding=1, groups=2), None, 5),  # one tile of the batch, channel blocks
    (((7, 4, 8, 14), (6, 4, 3, 3)), dict(stride=(1, 2)), None, 4),  # 6x6 maps: tiles of 4 and 3 images
    (((7, 8, 5, 5), (12, 8, 1, 1)), {}, 40, 2),  # 1x1; tiles of 2, 2, 2 and a last one of 1 image
])
def test_gemm_forward_tiles_of_several_images_agree_with_naive(cython_backend, rng, two_threads, monkeypatch, tiling,
                                                               dtype, shapes, kw, min_columns, images):
    """On small maps the gemm forward GEMMs take whole images side by side (at least MIN_TILE_COLUMNS columns), the
    last tile possibly smaller, a single image written in place; pointwise keeps reading x in place, image by
    image (copying x side by side measured slower on MobileNetV2's 1x1 layers)."""
    from fastconv.backends.cython_backend import conv, gemm

    monkeypatch.setattr(fc._threads, "MIN_WORK_PER_THREAD", 1)  # two threads even on these small layers
    if min_columns is not None:
        tiling(gemm, MIN_TILE_COLUMNS=min_columns)
    x, w = random_array(rng, shapes[0], dtype), random_array(rng, shapes[1], dtype)
    b = random_array(rng, shapes[1][:1], dtype)
    g = conv_geometry(x, w, b, **kw)
    assert gemm.images_per_tile(g) == images
    expected = fc.conv2d(x, w, b, backend="naive", **kw)
    for name in ["gemm"] + (["pointwise"] if g.is_pointwise else []):
        assert_close(conv.FORWARD[name].run(x, w, b, g), expected, dtype)
        assert_close(conv.FORWARD[name].run(x, w, None, g), expected - b[:, None, None], dtype)
    if g.is_pointwise:
        assert "products" not in conv.FORWARD["pointwise"].plan(g).buffers


@pytest.mark.parametrize("shapes, kw, expected_methods", [
    (((3, 1, 9, 9), (4, 1, 3, 3)), dict(padding=1),
     {"gemm", "direct", "polyphase", "blocked", "winograd", "blocked_direct"}),
    (((2, 4, 9, 8), (8, 1, 3, 3)), dict(stride=2, padding=(1, 0), groups=4),
     {"gemm", "direct", "polyphase", "blocked"}),
    (((2, 4, 7, 7), (4, 1, 3, 3)), dict(padding="same", dilation=2, groups=4),
     {"gemm", "direct", "polyphase", "blocked"}),
    (((2, 6, 9, 8), (4, 3, 3, 3)), dict(padding=((0, 2), (1, 0)), groups=2), {"gemm", "winograd", "blocked_direct"}),
    (((1, 3, 4, 5), (2, 3, 3, 3)), dict(padding=2), {"gemm", "winograd", "blocked_direct"}),
    (((2, 3, 23, 19), (20, 3, 7, 5)), dict(stride=(2, 3), padding=((3, 1), (0, 2))), {"gemm", "blocked_direct"}),
])
def test_every_forward_method_agrees_with_naive(cython_backend, rng, dtype, shapes, kw, expected_methods):
    x = random_array(rng, shapes[0], dtype)
    w = random_array(rng, shapes[1], dtype)
    b = random_array(rng, shapes[1][:1], dtype)
    g = conv_geometry(x, w, b, **kw)
    expected = fc.conv2d(x, w, b, backend="naive", **kw)
    methods = cython_backend.methods("conv2d_forward", g).options
    assert set(methods) == expected_methods
    for method in methods.values():
        assert_close(method.run(x, w, b, g), expected, dtype)


def test_rotated_grad_x_with_negative_padding_takes_no_polyphase(cython_backend):
    """Padding beyond the kernel's extent makes the rotated geometry's padding negative (here -1 on the rows): the
    rotated forward must be a method whose padded buffers crop (blocked, direct), not polyphase, whose phase copies
    wrote before their scratch buffer for a negative side; polyphase's kernel parameters refuse such a geometry."""
    from fastconv.backends import _polyphase
    from fastconv.backends.cython_backend import conv

    g = conv_geometry(np.empty((2, 3, 7, 3)), np.empty((3, 1, 1, 3)), padding=1, groups=3)
    rotated = g.rotated()
    assert (rotated.pad_top, rotated.pad_left) == (-1, 1)
    assert cython_backend.methods("conv2d_backward", g).default == "rotated"
    assert not _polyphase.applies(rotated)
    assert conv.default_method(rotated) == "blocked"
    with pytest.raises(ValueError, match="negative padding"):
        _polyphase.params(rotated)


def test_blocked_direct_crops_a_negative_padding(cython_backend, rng, dtype):
    """The grad of x by rotation of a layer padded beyond its kernel's extent is a forward convolution with
    negative padding (here -1 on the rows): blocked_direct's bands crop the input instead of padding it."""
    from fastconv.backends.cython_backend import conv

    x, w = random_array(rng, (2, 4, 7, 9), dtype), random_array(rng, (18, 4, 1, 3), dtype)
    g = conv_geometry(x, w, padding=(1, 1))
    dy = random_array(rng, g.y_shape, dtype)
    rotated = g.rotated()
    assert rotated.pad_top == -1 and conv.blocked_direct.applies(rotated)
    dx = conv.FORWARD["blocked_direct"].run(dy, g.rotate_kernel(w), None, rotated)
    assert_close(dx, fc.conv2d_backward(dy, x, w, padding=(1, 1), backend="naive")[0], dtype)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("x_shape, w_shape, kw", [
    ((2, 3, 7, 7), (70, 3, 3, 3), dict(padding=1)),  # 49 pixels: runs across rows, a tail of one pixel
    ((1, 5, 27, 27), (40, 5, 5, 5), dict(padding=2)),  # AlexNet's 27-wide rows
    ((1, 4, 15, 9), (66, 2, 3, 2), dict(stride=(2, 3), dilation=(1, 2), padding=((1, 0), (2, 1)), groups=2)),
    ((3, 2, 4, 4), (9, 2, 4, 4), {}),  # kernel as large as the input: one pixel per image
    ((1, 3, 5, 14), (34, 3, 3, 3), dict(padding=1)),  # 70 pixels (rows of 14): tails of 4, 3, 2 and 1 pixels
])
@pytest.mark.parametrize("band_bytes, items, min_runs, chunk_taps", [(128 << 10, 8, 4, 1024), (1, 1 << 20, 0, 1)])
def test_blocked_direct_runs_cross_rows_and_items_split_channel_blocks(cython_backend, rng, two_threads,
                                                                         monkeypatch, tiling, dtype, channels_last,
                                                                         x_shape, w_shape, kw, band_bytes, items,
                                                                         min_runs, chunk_taps):
    """Runs of PB pixels go on across output rows and end in runs of 1 to TAIL_RUN pixels; work items are blocks
    of rows and chunks of the blocks of KB output channels, summed over chunks of input channels: the default split,
    and one row per block with as many chunks as blocks, one input channel per chunk (two threads, both layouts),
    against naive."""
    from fastconv.backends.cython_backend import blocked_direct

    monkeypatch.setattr(fc._threads, "MIN_WORK_PER_THREAD", 1)
    tiling(blocked_direct, BAND_BYTES=band_bytes, ITEMS_PER_THREAD=items, MIN_RUNS_PER_BLOCK=min_runs,
           CHUNK_TAPS=chunk_taps)
    x, w = random_array(rng, x_shape, dtype), random_array(rng, w_shape, dtype)
    b = random_array(rng, w_shape[:1], dtype)
    g = conv_geometry(x, w, b, **kw)
    rows, chunks = blocked_direct.work_items(g)
    if band_bytes == 1:
        kb = blocked_direct.channel_block(np.dtype(dtype))
        assert rows == 1 and chunks == -(-g.k_per_group // kb) and blocked_direct.channel_chunk(g) == 1
    expected = fc.conv2d(x, w, b, backend="naive", **kw)
    if channels_last:
        g = conv_geometry(x, w, b, channels_last=True, **kw)
        x, expected = x.transpose(0, 2, 3, 1).copy(), expected.transpose(0, 2, 3, 1)
    y = np.empty(expected.shape, dtype)
    blocked_direct.forward(x, w, b, y, g)
    assert_close(y, expected, dtype, f"{g}")


@pytest.mark.parametrize("x_shape, relays", [((1, 70, 7, 7), True), ((2, 70, 7, 7), False)])
@pytest.mark.parametrize("chunk_taps", [1024, 72])
def test_blocked_direct_items_relay_the_weights_where_each_block_serves_one_item(cython_backend, rng, two_threads,
                                                                                 monkeypatch, tiling, dtype, x_shape,
                                                                                 relays, chunk_taps):
    """At batch 1 with one block of rows, each item re-lays its blocks' weights chunk by chunk (one chunk, or eight
    input channels per chunk), the group's last block partly filled; with two images the weights are re-laid once
    for both. Against naive."""
    from fastconv.backends.cython_backend import blocked_direct

    monkeypatch.setattr(fc._threads, "MIN_WORK_PER_THREAD", 1)
    tiling(blocked_direct, CHUNK_TAPS=chunk_taps)
    x, w = random_array(rng, x_shape, dtype), random_array(rng, (40, 70, 3, 3), dtype)
    b = random_array(rng, (40,), dtype)
    g = conv_geometry(x, w, b, padding=1)
    assert blocked_direct.relays_per_item(g) is relays
    y = np.empty(g.y_shape, dtype)
    blocked_direct.forward(x, w, b, y, g)
    assert_close(y, fc.conv2d(x, w, b, padding=1, backend="naive"), dtype)


@pytest.mark.parametrize("groups, padding", [(1, 1), (2, ((0, 2), (1, 0)))])
@pytest.mark.parametrize("batch, min_tiles", [(3, None), (3, 1), (1, 20), (3, 36), (1, 1000)])
def test_winograd_layer_forward_and_backward_agree_with_naive(cython_backend, rng, dtype, groups, padding,
                                                              batch, min_tiles, two_threads, tiling, monkeypatch):
    """Enough channels for Winograd by default: forward, grad of w, and grad of x (through the forward); several
    work items per thread; blocks of one tile row, of three with one image on two threads, of four spanning two
    images (9 tile rows per image), and one block of the whole image whose output channels the two threads split
    (min_tiles: blocks of at least that many tiles, or of the fewest bytes' worth)."""
    from fastconv.backends.cython_backend import winograd

    monkeypatch.setattr(fc._threads, "MIN_WORK_PER_THREAD", 1)  # two threads even on these small layers
    if min_tiles is not None:
        tiling(winograd, WINOGRAD_MIN_TILES=min_tiles, WINOGRAD_BLOCK_BYTES=1)
    x = random_array(rng, (batch, 16 * groups, 17, 17), dtype)
    w = random_array(rng, (16 * groups, 16, 3, 3), dtype)
    kw = dict(padding=padding, groups=groups)
    g = conv_geometry(x, w, **kw)
    assert cython_backend.methods("conv2d_forward", g).default == "winograd"
    dy = random_array(rng, g.y_shape, dtype)
    assert_close(fc.conv2d(x, w, backend="cython", **kw), fc.conv2d(x, w, backend="naive", **kw), dtype)
    for got, want in zip(fc.conv2d_backward(dy, x, w, backend="cython", **kw),
                         fc.conv2d_backward(dy, x, w, backend="naive", **kw)):
        assert_close(got, want, dtype)


@pytest.mark.parametrize("x_shape, forward, backward", [
    ((8, 80, 13, 13), "winograd", "rotated"),  # below winograd_pays' map size, but 1352 output pixels over the batch
    ((1, 80, 13, 13), "winograd", "gemm"),  # a 13x13 map at batch 1: Winograd's forward pays, its backward not
    ((1, 80, 12, 12), "winograd", "gemm"),  # FORWARD_MIN_PIXELS
    ((1, 80, 11, 11), "gemm", "gemm"),
    ((4, 80, 7, 7), "blocked_direct", "rotated"),  # from batch 2 dx is the rotated forward (below)
    ((1, 80, 16, 16), "winograd", "winograd"),  # where winograd_pays
    ((8, 8, 13, 13), "gemm", "rotated"),  # too few channels for Winograd
])
def test_winograd_is_the_default_on_small_maps_over_a_batch(cython_backend, x_shape, forward, backward):
    """Winograd forward on maps from 12x12 or over a batch of many pixels, backward (at batch 1, where dx is not
    the rotated forward) only where it pays on the map alone."""
    g = conv_geometry(np.empty(x_shape, np.float32), np.empty((x_shape[1], x_shape[1], 3, 3), np.float32), padding=1)
    assert cython_backend.methods("conv2d_forward", g).default == forward
    assert cython_backend.methods("conv2d_backward", g).default == backward


@pytest.mark.parametrize("batch, default", [(1, "gemm"), (2, "rotated"), (8, "rotated")])
def test_the_grad_of_x_by_rotation_is_the_default_from_two_images(cython_backend, batch, default):
    g = conv_geometry(np.empty((batch, 64, 14, 14), np.float32), np.empty((64, 64, 3, 3), np.float32), padding=1)
    assert cython_backend.methods("conv2d_backward", g).default == default


@pytest.mark.parametrize("width", [8, 9])
@pytest.mark.parametrize("ceil_mode", [False, True])
def test_disjoint_avg_pool_backward_on_even_and_odd_widths(cython_backend, rng, width, ceil_mode):
    """2x2 windows tiling w take a vectorized path; an odd last column is left out or pooled alone."""
    x = random_array(rng, (2, 3, 7, width), np.float64)
    kw = dict(ceil_mode=ceil_mode, count_include_pad=False)
    dy = random_array(rng, fc.avg_pool2d(x, 2, backend="naive", **kw).shape, np.float64)
    assert_close(fc.avg_pool2d_backward(dy, x, 2, backend="cython", **kw),
                 fc.avg_pool2d_backward(dy, x, 2, backend="naive", **kw), np.float64)


@pytest.mark.parametrize("width", [8, 9])
def test_max_pool_backward_with_foreign_indices(cython_backend, rng, width):
    """An index outside its window (not from max_pool2d) gets naive's scatter semantics, as its own do."""
    x = random_array(rng, (2, 3, 7, width), np.float64)
    y, indices = fc.max_pool2d(x, 2, return_indices=True, backend="naive")
    dy = random_array(rng, y.shape, np.float64)
    foreign = indices.copy()
    foreign[0, 1, 0, 0] = 7 * width - 1
    foreign[1, 2, 1, 1] = foreign[1, 2, 1, 0]
    for idx in (indices, foreign):
        assert_close(fc.max_pool2d_backward(dy, x, 2, indices=idx, backend="cython"),
                     fc.max_pool2d_backward(dy, x, 2, indices=idx, backend="naive"), np.float64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_blocked_direct_is_not_the_default_for_mostly_empty_channel_blocks(cython_backend, dtype):
    """blocked_direct computes whole blocks of KB output channels: with fewer than KB / 2 filters per group gemm
    is the default, with KB / 2 or more (and few input channels, maps of at least one run) blocked_direct."""
    kb = cython_backend.conv.blocked_direct.channel_block(np.dtype(dtype))
    x = np.empty((2, 3, 40, 40), dtype)
    for filters, expected in ((1, "gemm"), (kb // 2 - 1, "gemm"), (kb // 2, "blocked_direct"),
                              (kb + 1, "blocked_direct")):
        g = conv_geometry(x, np.empty((filters, 3, 5, 5), dtype))
        assert cython_backend.methods("conv2d_forward", g).default == expected, filters


@pytest.mark.parametrize("x_shape, w_shape, kw, expected", [
    ((2, 6, 14, 14), (32, 6, 5, 5), {}, "blocked_direct"),  # 10-wide rows: runs go on across them
    ((2, 16, 5, 5), (120, 16, 5, 5), {}, "gemm"),  # one output pixel, less than a run
    ((2, 64, 56, 56), (128, 64, 1, 1), dict(stride=2), "gemm"),  # 1x1: im2col is a strided copy
    ((2, 64, 56, 56), (128, 64, 3, 3), dict(stride=2, padding=1), "blocked_direct"),
    ((1, 512, 7, 7), (512, 512, 3, 3), dict(padding=1), "gemm"),  # many channels, 49 pixels: re-laying costs
    ((3, 512, 7, 7), (512, 512, 3, 3), dict(padding=1), "blocked_direct"),  # 147 pixels over the batch
    ((1, 128, 28, 28), (256, 128, 3, 3), dict(stride=2, padding=1), "blocked_direct"),
])
def test_blocked_direct_default_needs_a_run_of_pixels_and_a_kernel_wider_than_1x1(cython_backend, x_shape, w_shape,
                                                                                   kw, expected):
    """The forward default is blocked_direct on maps of at least one run of pixels (whatever their row width) and
    kernels of more than one tap, with many input channels only from BLOCKED_DIRECT_MIN_PIXELS output pixels over
    the batch; gemm on maps smaller than a run, on 1x1 kernels, and on few pixels of many channels."""
    g = conv_geometry(np.empty(x_shape, np.float32), np.empty(w_shape, np.float32), **kw)
    assert cython_backend.methods("conv2d_forward", g).default == expected


@pytest.mark.parametrize("pixels", [1, 7, 8, 49, 127, 128, 129, 135, 160, 161, 1000])
def test_bias_grad_sums_planes_of_every_length(cython_backend, dtype, rng, pixels):
    """db by the shared row sum: 8 partial sums on short rows, 32 then 8 from 128 cells on, with the 32-, 8- and
    1-element remainders; against numpy's float64 sum."""
    from fastconv._threads import parallel_region
    from fastconv.backends.cython_backend import _common

    dy = random_array(rng, (3, 4, 1, pixels), dtype)
    db = np.empty(4, dtype)
    with parallel_region(2) as threads:
        _common.bias_grad(dy, db, threads)
    assert_close(db, dy.astype(np.float64).sum(axis=(0, 2, 3)).astype(dtype), dtype, f"{pixels} pixels")
