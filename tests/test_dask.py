"""fastconv.dask: the six functions on dask arrays equal the in-memory ones for any chunking (the shape table and
hypothesis-drawn chunkings, strides, paddings, dilations and groups), on the synchronous, threaded, processes and
distributed schedulers; bad arguments are errors before any graph is built."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")

import fastconv as fc  # noqa: E402
import fastconv.dask as fcd  # noqa: E402
from fastconv.dask._graph import TREE_FANIN  # noqa: E402
from fastconv.dask._tiling import AxisTiling  # noqa: E402

from _helpers import CONV_CASES, POOL_CASES, ConvCase, assert_close, random_array  # noqa: E402

#: the block calls and the whole-array reference use the same backend: what is compared is the tiling. im2col
#: needs no compilation; every backend is run through once in test_every_backend_passes_through.
BACKEND = "im2col"
F64 = np.dtype(np.float64)


def lazy(a: np.ndarray, chunks) -> da.Array:
    """A dask array over a read-only copy of a: a block task that wrote into its input would raise."""
    a = a.copy()
    a.setflags(write=False)
    return da.from_array(a, chunks=chunks)


def compute(*arrays, scheduler="sync"):
    return dask.compute(*arrays, scheduler=scheduler)


def check_conv(x, w, b, chunks, kwargs, dtype=F64, dy_chunks=None, scheduler="sync", backend=BACKEND) -> None:
    """conv2d and conv2d_backward on x in chunks equal the in-memory calls (dy chunked its own way)."""
    rng = np.random.default_rng(1)
    xd = lazy(x, chunks)
    y = fc.conv2d(x, w, b, backend=backend, **kwargs)
    dy = random_array(rng, y.shape, dtype)
    expected = fc.conv2d_backward(dy, x, w, backend=backend, **kwargs)
    y_lazy = fcd.conv2d(xd, w, b, backend=backend, **kwargs)
    grads = fcd.conv2d_backward(lazy(dy, dy_chunks or "auto"), xd, w, backend=backend, **kwargs)
    actual = compute(y_lazy, *grads, scheduler=scheduler)
    assert y_lazy.chunks[0] == xd.chunks[0] and grads[0].chunks == xd.chunks
    for what, a, e in zip(("y", "dx", "dw", "db"), actual, (y, *expected)):
        assert_close(a, e, dtype, f"{kwargs} chunks {xd.chunks}: {what}")


def check_pools(x, kernel_size, chunks, kwargs, dy_chunks=None, scheduler="sync", backend=BACKEND) -> None:
    """max and avg pooling, forward and backward (max with and without indices), on x in chunks equal the
    in-memory calls; the indices exactly."""
    rng = np.random.default_rng(2)
    xd = lazy(x, chunks)
    y, indices = fc.max_pool2d(x, kernel_size, return_indices=True, backend=backend, **kwargs)
    dy = random_array(rng, y.shape, x.dtype)
    dyd = lazy(dy, dy_chunks or "auto")
    y_lazy, indices_lazy = fcd.max_pool2d(xd, kernel_size, return_indices=True, backend=backend, **kwargs)
    lazies = [y_lazy, indices_lazy,
              fcd.max_pool2d_backward(dyd, xd, kernel_size, backend=backend, **kwargs),
              fcd.max_pool2d_backward(dyd, xd, kernel_size, indices=indices_lazy, backend=backend, **kwargs)]
    expected = [y, indices, *[fc.max_pool2d_backward(dy, x, kernel_size, backend=backend, **kwargs)] * 2]
    for include_pad in (True, False):
        options = dict(kwargs, count_include_pad=include_pad, backend=backend)
        lazies += [fcd.avg_pool2d(xd, kernel_size, **options), fcd.avg_pool2d_backward(dyd, xd, kernel_size, **options)]
        expected += [fc.avg_pool2d(x, kernel_size, **options), fc.avg_pool2d_backward(dy, x, kernel_size, **options)]
    actual = compute(*lazies, scheduler=scheduler)
    names = ["max y", "indices", "max dx", "max dx from indices", "avg y", "avg dx", "avg y (no pad)",
             "avg dx (no pad)"]
    np.testing.assert_array_equal(actual[1], expected[1], err_msg=f"{kwargs} chunks {xd.chunks}: indices")
    for what, a, e in zip(names, actual, expected):
        if what != "indices":
            assert_close(a, e, x.dtype, f"{kwargs} chunks {xd.chunks}: {what}")


# ---------------------------------------------------------------------------------------------------------------
# the shape table of the in-memory tests, in small irregular chunks


@pytest.mark.parametrize("case", CONV_CASES, ids=str)
def test_conv_cases_in_small_chunks(case, rng):
    x, w, b = (random_array(rng, shape, F64) for shape in (case.x, case.w, case.w[:1]))
    check_conv(x, w, b, (1, 2, 3, 2), case.kwargs)


@pytest.mark.parametrize("case", POOL_CASES, ids=str)
def test_pool_cases_in_small_chunks(case, rng):
    check_pools(random_array(rng, case.x, F64), case.kernel_size, (1, 2, 3, 2), case.kwargs)


def test_max_pool_ties_and_minus_infinity_across_chunk_borders(rng):
    """Few distinct values put ties across chunk borders (the first maximum of the whole window must win, and
    its index be the whole plane's), rows of -inf make all--inf windows."""
    x = rng.integers(0, 3, size=(2, 2, 11, 10)).astype(np.float64)
    x[:, :, ::3, :] = -np.inf
    check_pools(x, 3, (1, 1, 2, 3), dict(stride=2, padding=1, ceil_mode=True))


# ---------------------------------------------------------------------------------------------------------------
# random geometries in random chunkings


@st.composite
def chunkings(draw, size: int) -> tuple[int, ...]:
    """Chunk sizes adding up to size: regular, or cut at random places."""
    if size == 1 or draw(st.booleans()):
        step = draw(st.integers(1, max(size, 1)))
        return (step,) * (size // step) + ((size % step,) if size % step else ())
    cuts = draw(st.lists(st.integers(1, size - 1), max_size=4, unique=True))
    edges = [0, *sorted(cuts), size]
    return tuple(b - a for a, b in zip(edges, edges[1:]))


@st.composite
def conv_cases(draw) -> tuple[ConvCase, tuple]:
    groups = draw(st.integers(1, 3))
    c, k = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 3))
    r, s = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = draw(st.one_of(
        st.just("same"), st.just("valid"), st.integers(0, 3), st.tuples(st.integers(0, 3), st.integers(0, 3)),
        st.tuples(st.tuples(st.integers(0, 5), st.integers(0, 5)), st.tuples(st.integers(0, 5), st.integers(0, 5)))))
    extent_h, extent_w = (r - 1) * dilation[0] + 1, (s - 1) * dilation[1] + 1
    h, w = draw(st.integers(extent_h, extent_h + 12)), draw(st.integers(extent_w, extent_w + 12))
    n = draw(st.integers(1, 3))
    chunks = tuple(draw(chunkings(size)) for size in (n, c, h, w))
    return (ConvCase("random", (n, c, h, w), (k, c // groups, r, s),
                     dict(stride=stride, dilation=dilation, padding=padding, groups=groups)), chunks)


@st.composite
def pool_cases(draw):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = draw(st.one_of(st.none(), st.tuples(st.integers(1, 4), st.integers(1, 4))))
    padding = draw(st.one_of(st.just("same"), st.just("valid"), st.integers(0, min(kh, kw) // 2),
                             st.tuples(st.integers(0, kh // 2), st.integers(0, kw // 2))))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(kh, kh + 12)),
             draw(st.integers(kw, kw + 12)))
    chunks = tuple(draw(chunkings(size)) for size in shape)
    return shape, (kh, kw), dict(stride=stride, padding=padding, ceil_mode=draw(st.booleans())), chunks


RANDOM = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@RANDOM
@given(drawn=conv_cases(), dy_chunks=st.integers(1, 4))
def test_conv_random_chunkings_match_in_memory(drawn, dy_chunks):
    case, chunks = drawn
    rng = np.random.default_rng(0)
    x, w, b = (random_array(rng, shape, F64) for shape in (case.x, case.w, case.w[:1]))
    check_conv(x, w, b, chunks, case.kwargs, dy_chunks=dy_chunks)


@RANDOM
@given(drawn=pool_cases(), dy_chunks=st.integers(1, 4))
def test_pools_random_chunkings_match_in_memory(drawn, dy_chunks):
    shape, kernel_size, kwargs, chunks = drawn
    x = random_array(np.random.default_rng(0), shape, F64)
    try:  # "same" padding can exceed kernel_size // 2, which pooling refuses
        fc.avg_pool2d(x, kernel_size, backend=BACKEND, **kwargs)
    except ValueError:
        assume(False)
    check_pools(x, kernel_size, chunks, kwargs, dy_chunks=dy_chunks)


# ---------------------------------------------------------------------------------------------------------------
# chunk geometry


def test_output_chunks_follow_the_input_chunks():
    """3x3, stride 2, padding 1: output o belongs to the chunk holding row 2o. Rows chunked (4, 4, 4): outputs
    0-1, 2-3, 4-5. Columns chunked (6, 6): 0-2, 3-5. With stride 1 and "same" padding: the input's chunks."""
    x = da.zeros((1, 1, 12, 12), chunks=(1, 1, 4, 6))
    assert fcd.conv2d(x, np.ones((1, 1, 3, 3)), stride=2, padding=1).chunks[2:] == ((2, 2, 2), (3, 3))
    assert fcd.conv2d(x, np.ones((1, 1, 5, 4)), padding="same").chunks[2:] == x.chunks[2:]


def test_padding_only_at_the_true_borders_and_halo_from_the_neighbouring_chunks():
    tiling = AxisTiling((4, 4, 1, 3), out_size=12, stride=1, extent=3, pad_before=1, pad_after=1)
    assert spans(tiling) == [(0, 4, 0, 5, 1, 0), (4, 8, 3, 9, 0, 0), (8, 9, 7, 10, 0, 0), (9, 12, 8, 12, 0, 1)]
    # block 1 reads rows 3..9: the last row of chunk 0, all of chunk 1 and the row of chunk 2
    assert [(chunk, o.start, o.stop) for chunk, o in tiling.pieces(1)] == [(0, 3, 4), (1, 0, 4), (2, 0, 1)]
    # chunk 1 (rows 4..8) gets gradient from the regions of blocks 0 (row 4), 1 (all) and 2 (row 7)
    assert [(block, o.start, o.stop, o.at) for block, o in tiling.contributions(1)] == [
        (0, 4, 5, 0), (1, 1, 5, 0), (2, 0, 1, 3)]


def spans(tiling: AxisTiling) -> list[tuple[int, ...]]:
    return [(b.out_start, b.out_stop, b.in_start, b.in_stop, b.pad_before, b.pad_after) for b in tiling.blocks]


def test_an_end_block_that_cannot_hold_its_windows_joins_its_neighbour():
    # padding wider than the kernel: output 1 (window at 5) would start past the input's end (4)
    assert spans(AxisTiling((3, 1), out_size=2, stride=5, extent=1, pad_before=0, pad_after=6)) == [
        (0, 2, 0, 4, 0, 6)]
    # ceil_mode: output 4's window (rows 8, 9) hangs past the input (9 rows) and its padding (none)
    assert spans(AxisTiling((8, 1), out_size=5, stride=2, extent=2, pad_before=0, pad_after=0)) == [
        (0, 5, 0, 9, 0, 0)]
    # output 0 (window at -2) would end before the input's start
    assert spans(AxisTiling((1, 1), out_size=2, stride=3, extent=1, pad_before=2, pad_after=2)) == [
        (0, 2, 0, 2, 2, 2)]


def test_a_block_reading_only_padding_has_an_empty_region():
    """Windows at 4 and 6 start at the input's end (4): their block reads no row, only the bottom padding."""
    tiling = AxisTiling((3, 1), out_size=4, stride=2, extent=2, pad_before=0, pad_after=5)
    assert spans(tiling) == [(0, 2, 0, 4, 0, 0), (2, 4, 4, 4, 0, 5)]
    assert [(chunk, o.start, o.stop) for chunk, o in tiling.pieces(1)] == [(1, 1, 1)]


def test_many_channel_chunks_are_summed_in_a_tree(rng):
    x, w = random_array(rng, (2, 3 * TREE_FANIN, 6, 6), F64), random_array(rng, (4, 3 * TREE_FANIN, 3, 3), F64)
    y = fcd.conv2d(lazy(x, (1, 1, 3, 6)), w, backend=BACKEND)
    assert_close(y.compute(scheduler="sync"), fc.conv2d(x, w, backend=BACKEND), F64, "y")


def test_float32_and_mixed_dtypes(rng):
    x32 = random_array(rng, (2, 3, 9, 8), np.float32)
    check_conv(x32, random_array(rng, (4, 3, 3, 3), np.float32), None, (1, 2, 4, 3), dict(padding="same"),
               dtype=np.dtype(np.float32))
    w64 = random_array(rng, (4, 3, 3, 3), F64)
    y = fcd.conv2d(lazy(x32, (1, 2, 4, 3)), w64, backend=BACKEND)
    assert y.dtype == F64
    assert_close(y.compute(scheduler="sync"), fc.conv2d(x32, w64, backend=BACKEND), F64, "mixed y")


def test_gradients_that_do_not_need_x_never_load_it(rng):
    """dx alone (conv), avg pooling's dx and max pooling's dx from indices use only x's shape."""
    x = random_array(rng, (2, 2, 8, 8), F64)

    def refuse(block):
        raise AssertionError("x was loaded")

    unreadable = lazy(x, (1, 1, 4, 4)).map_blocks(refuse, dtype=F64)
    w = random_array(rng, (3, 2, 3, 3), F64)
    dy = random_array(rng, (2, 3, 6, 6), F64)
    dx, dw, db = fcd.conv2d_backward(lazy(dy, 3), unreadable, w, need_dw=False, backend=BACKEND)
    assert dw is None
    expected = fc.conv2d_backward(dy, x, w, need_dw=False, backend=BACKEND)
    assert_close(dx.compute(scheduler="sync"), expected[0], F64, "dx")
    assert_close(db.compute(scheduler="sync"), expected[2], F64, "db")
    dy = random_array(rng, (2, 2, 4, 4), F64)
    assert_close(fcd.avg_pool2d_backward(lazy(dy, 2), unreadable, 2).compute(scheduler="sync"),
                 fc.avg_pool2d_backward(dy, x, 2), F64, "avg dx")
    _, indices = fc.max_pool2d(x, 2, return_indices=True)
    assert_close(fcd.max_pool2d_backward(lazy(dy, 2), unreadable, 2, indices=lazy(indices, 2)).compute(
        scheduler="sync"), fc.max_pool2d_backward(dy, x, 2, indices=indices), F64, "max dx from indices")


def test_nothing_needed_gives_nones():
    x = da.zeros((1, 2, 5, 5), chunks=2)
    assert fcd.conv2d_backward(da.zeros((1, 3, 3, 3)), x, np.zeros((3, 2, 3, 3)), need_dx=False, need_dw=False,
                               need_db=False) == (None, None, None)


def test_weights_given_as_dask_arrays_are_computed(rng):
    x, w, b = random_array(rng, (1, 2, 7, 7), F64), random_array(rng, (3, 2, 3, 3), F64), random_array(rng, 3, F64)
    y = fcd.conv2d(lazy(x, 4), da.from_array(w), da.from_array(b), padding=1, backend=BACKEND)
    assert_close(y.compute(scheduler="sync"), fc.conv2d(x, w, b, padding=1, backend=BACKEND), F64, "y")


def test_the_graph_keeps_its_own_copy_of_the_weights(rng):
    x, w = random_array(rng, (1, 2, 6, 6), F64), random_array(rng, (3, 2, 3, 3), F64)
    expected = fc.conv2d(x, w, backend=BACKEND)
    y = fcd.conv2d(lazy(x, 3), w, backend=BACKEND)
    dx = fcd.conv2d_backward(lazy(np.ones_like(expected), 2), lazy(x, 3), w, backend=BACKEND)[0]
    dx_expected = fc.conv2d_backward(np.ones_like(expected), x, w, backend=BACKEND)[0]
    w[:] = 0
    assert_close(y.compute(scheduler="sync"), expected, F64, "y")
    assert_close(dx.compute(scheduler="sync"), dx_expected, F64, "dx")


def test_every_backend_passes_through(backend, rng):
    check_conv(random_array(rng, (2, 4, 9, 9), F64), random_array(rng, (6, 2, 3, 3), F64), None, (1, 3, 4, 5),
               dict(padding="same", stride=2, groups=2), backend=backend)
    check_pools(random_array(rng, (2, 3, 9, 9), F64), 3, (1, 2, 4, 5), dict(stride=2, padding=1), backend=backend)


# ---------------------------------------------------------------------------------------------------------------
# schedulers


CONV = dict(x=(4, 3, 12, 12), w=(5, 3, 3, 3), chunks=(2, 3, 5, 7), kwargs=dict(padding="same", stride=2))


def check_on_scheduler(scheduler, rng) -> None:
    x, w = random_array(rng, CONV["x"], F64), random_array(rng, CONV["w"], F64)
    check_conv(x, w, None, CONV["chunks"], CONV["kwargs"], scheduler=scheduler)
    check_pools(x, 3, CONV["chunks"], dict(stride=2, padding=1), scheduler=scheduler)


@pytest.mark.parametrize("scheduler", ["threads", "processes"])
def test_local_schedulers(scheduler, rng):
    check_on_scheduler(scheduler, rng)


def test_distributed_local_cluster_with_worker_processes(rng):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None,
                                  worker_dashboard_address=None) as cluster, distributed.Client(cluster):
        check_on_scheduler(None, rng)  # None: the client just made is the default


# ---------------------------------------------------------------------------------------------------------------
# errors, before any graph is built

X = da.zeros((2, 4, 8, 8), chunks=4)
W = np.zeros((6, 4, 3, 3))
DY = da.zeros((2, 6, 6, 6), chunks=3)
P = da.zeros((2, 4, 4, 4), chunks=2)


@pytest.mark.parametrize("call, error, match", [
    (lambda: fcd.conv2d(np.zeros((2, 4, 8, 8)), W), TypeError,
     r"fastconv.dask.conv2d: x must be a dask.array.Array, got ndarray; wrap .* or call fastconv.conv2d"),
    (lambda: fcd.conv2d_backward(np.zeros((2, 6, 6, 6)), X, W), TypeError,
     r"conv2d_backward: dy must be a dask.array.Array, got ndarray"),
    (lambda: fcd.conv2d_backward(DY, [[1.0]], W), TypeError,
     r"conv2d_backward: x must be a dask.array.Array, got list"),
    (lambda: fcd.max_pool2d(np.zeros((2, 4, 8, 8)), 2), TypeError, r"max_pool2d: x must be a dask.array.Array"),
    (lambda: fcd.avg_pool2d(None, 2), TypeError, r"avg_pool2d: x must be a dask.array.Array, got NoneType"),
    (lambda: fcd.max_pool2d_backward(np.zeros((2, 4, 4, 4)), X, 2), TypeError, r"dy must be a dask.array.Array"),
    (lambda: fcd.avg_pool2d_backward(P, np.zeros((2, 4, 8, 8)), 2), TypeError, r"x must be a dask.array.Array"),
    (lambda: fcd.max_pool2d_backward(P, X, 2, indices=np.zeros((2, 4, 4, 4), np.int64)), TypeError,
     r"indices must be a dask.array.Array"),
    (lambda: fcd.conv2d(X, np.zeros((6, 3, 3, 3))), ValueError,
     r"fastconv.dask.conv2d: x has 4 channels but w expects 3 .*x.shape=\(2, 4, 8, 8\)"),
    (lambda: fcd.conv2d(X[0], W), ValueError, r"x must be 4-D .*shape \(4, 8, 8\)"),
    (lambda: fcd.conv2d(X, W, np.zeros(5)), ValueError, r"b must have shape \(6,\)"),
    (lambda: fcd.conv2d(X, W, padding="full"), ValueError, r"unknown padding string 'full'"),
    (lambda: fcd.conv2d(X.astype(np.int32), W), TypeError, r"x has dtype int32"),
    (lambda: fcd.conv2d(X, W, backend="fast"), ValueError, r"unknown backend 'fast'; valid names are naive"),
    (lambda: fcd.conv2d_backward(DY[:, :5], X, W), ValueError, r"dy must have the output's shape \(2, 6, 6, 6\)"),
    (lambda: fcd.max_pool2d(X, 2, padding=2), ValueError, r"must be at most half the kernel_size"),
    (lambda: fcd.avg_pool2d(X, 9), ValueError, r"avg_pool2d: output size would be 0x0"),
    (lambda: fcd.max_pool2d_backward(P[:, :2], X, 2), ValueError, r"dy must have the output's shape \(2, 4, 4, 4\)"),
    (lambda: fcd.max_pool2d_backward(P, X, 2, indices=P.astype(np.int32)), TypeError, r"indices must be int64"),
    (lambda: fcd.max_pool2d_backward(P, X, 2, indices=P[:1].astype(np.int64)), ValueError,
     r"indices must have the output's shape \(2, 4, 4, 4\), got \(1, 4, 4, 4\)"),
    (lambda: fcd.conv2d(X[X[:, 0, 0, 0] > 0], W), ValueError,
     r"x has unknown chunk sizes .*compute_chunk_sizes\(\)"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_bad_arguments_are_errors_naming_them(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_an_index_outside_its_window_is_a_value_error_when_its_block_runs():
    x = np.arange(64.0).reshape(1, 1, 8, 8)
    _, indices = fc.max_pool2d(x, 2, return_indices=True)
    indices[0, 0, 3, 3] = 0  # the last window's gradient sent to the first element: another block's region
    dx = fcd.max_pool2d_backward(da.ones((1, 1, 4, 4), chunks=2), lazy(x, 4), 2, indices=lazy(indices, 2))
    with pytest.raises(ValueError, match=r"index 0 lies outside the input rows \[4, 8\) and columns \[4, 8\)"):
        dx.compute(scheduler="sync")


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_importing_fastconv_does_not_import_dask():
    result = run_python("import sys, fastconv; print('dask' in sys.modules)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_fastconv_dask_without_dask_says_how_to_install_it():
    result = run_python("import sys; sys.modules['dask'] = None; import fastconv.dask")
    assert result.returncode != 0
    assert 'ImportError: fastconv.dask needs dask' in result.stderr
    assert 'pip install "fastconv[dask]"' in result.stderr
