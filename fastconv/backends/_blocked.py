"""The channel-blocked layout of depthwise convolution behind the cython backend's "blocked" method.

Input channels are taken LANES at a time (the last block zero-filled past C). A work item, (image, block, tile of
output rows), copies its block's input rows into a thread's buffer laid out channels innermost, with the zero
padding materialized:

    buf[a, b, j] = x[n, c0 + j, row0 + a - top, b - left]     (zero outside x, and for lanes c0 + j >= C)

so that every output pixel of every output channel k = (c0 + j)*m + q (channel multiplier m = K/C) is LANES
independent sums over the taps with no bounds checks, the lane loop innermost (it vectorizes):

    y[n, k, oh, ow] = b[k] + sum_{r, s} filters[block, q, r*S + s, j] * buf[oh*sh + r*dh - row0, ow*sw + s*dw, j]

with the filters re-laid once per call as (blocks, m, R*S, LANES). The grad of w is the matching sum of dy * buf
per lane, and the grad of x scatters filters * dy into a zeroed buffer of the whole padded plane, then crops it
into dx. Tiles keep a buffer within TILE_BYTES on large maps; small maps are one tile.
"""

from __future__ import annotations

import numpy as np

from fastconv._geometry import ConvGeometry
from fastconv.backends import _polyphase

#: channels per block: one AVX-512 vector of float32, two of AVX2 (four of float64); one constant for both dtypes,
#: so that the kernels' lane loops have one fixed trip count
LANES = 16
#: widest output map on which the method is the default at stride 1 with at most nine taps: there, on wider maps,
#: polyphase's whole-plane loops (or direct's rows) were faster (0.77-0.93x of blocked's time at 28 and 56 wide,
#: 3x3 and dilated 3x3, one thread), since blocked's transposes in and out cost as much as nine taps' multiply-adds;
#: at strides over 1, with more taps and on small maps it was 1.1-2.1x faster than either
PREFERRED_MAX_OUT_W = 16
#: most bytes of a tile's input buffer: a quarter of the smallest L2 cache of the machines measured (512 KB), so
#: that the buffer and the filters stay in L2 while the tile's rows are computed
TILE_BYTES = 128 * 1024


def applies(g: ConvGeometry) -> bool:
    """One input channel per group (any kernel, stride, dilation and padding, negative sides included)."""
    return g.is_channelwise


def preferred(g: ConvGeometry) -> bool:
    """Depthwise layers (a single-channel image with many filters is faster as a GEMM) that are strided, have
    more than nine taps, or small maps (see PREFERRED_MAX_OUT_W), unless polyphase's shifted planes pay."""
    wide = g.out_w > PREFERRED_MAX_OUT_W and g.stride_h == g.stride_w == 1 and g.r * g.s <= 9
    return applies(g) and g.groups > 1 and not wide and not _polyphase.shifted_pays(g)


def blocks(g: ConvGeometry) -> int:
    return -(-g.c // LANES)


def padded_width(g: ConvGeometry) -> int:
    """Columns of the padded plane the windows read: the buffers' row pitch (in cells of LANES)."""
    return (g.out_w - 1) * g.stride_w + (g.s - 1) * g.dilation_w + 1


def padded_rows(g: ConvGeometry, out_rows: int) -> int:
    """Input rows (padding included) the windows of out_rows consecutive output rows read."""
    return (out_rows - 1) * g.stride_h + (g.r - 1) * g.dilation_h + 1


def tile_rows(g: ConvGeometry) -> int:
    """Output rows per tile: as many as keep the tile's buffer within TILE_BYTES (at least one), spread evenly."""
    cell = padded_width(g) * LANES * g.dtype.itemsize
    most = max(1, min(g.out_h, ((TILE_BYTES // cell) - (g.r - 1) * g.dilation_h - 1) // g.stride_h + 1))
    tiles = -(-g.out_h // most)
    return -(-g.out_h // tiles)


def params(g: ConvGeometry, rows: int) -> tuple[int, ...]:
    """(sh, sw, dh, dw, top, left, R, S, rows, wp): what the kernels need besides the arrays' shapes; rows is
    the output rows per tile."""
    return (g.stride_h, g.stride_w, g.dilation_h, g.dilation_w, g.pad_top, g.pad_left, g.r, g.s, rows,
            padded_width(g))


def filters_buffer(g: ConvGeometry) -> dict:
    """The plan buffer of the re-laid filters (blocks, m, R*S, LANES)."""
    return {"filters": ((blocks(g), g.k // g.c, g.r * g.s, LANES), g.dtype)}


def bias_buffer(g: ConvGeometry) -> dict:
    """The plan buffer of the re-laid bias (blocks, m, 1, LANES)."""
    return {"bias": ((blocks(g), g.k // g.c, 1, LANES), g.dtype)}


def _block_views(relaid: np.ndarray, values: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Views of the same entries in relaid (blocks, m, T, LANES) and values (C, m, T), C-contiguous: the full
    blocks' (blocks, LANES, m, T), then the last block's valid lanes (lanes, m, T) if it has fewer than LANES."""
    lanes = relaid.transpose(0, 3, 1, 2)
    full, rest = divmod(values.shape[0], LANES)
    pairs = [(lanes[:full], values[:full * LANES].reshape(full, LANES, *values.shape[1:]))]
    return pairs + [(lanes[full, :rest], values[full * LANES:])] if rest else pairs


def to_lanes(values: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out (blocks, m, T, LANES)[block, q, t, j] = values (C, m, T)[block*LANES + j, q, t], zero past C."""
    out[-1] = 0
    for relaid, entries in _block_views(out, values):
        relaid[...] = entries
    return out


def relay_filters(w: np.ndarray, g: ConvGeometry, out: np.ndarray) -> np.ndarray:
    """out (blocks, m, R*S, LANES)[block, q, t, j] = w (K, 1, R, S)[(block*LANES + j)*m + q, 0, t]."""
    return to_lanes(w.reshape(g.c, g.k // g.c, g.r * g.s), out)


def relay_bias(b: np.ndarray | None, g: ConvGeometry, out: np.ndarray) -> np.ndarray:
    """out (blocks, m, 1, LANES) from b (K,), as relay_filters; zeros for no bias."""
    if b is None:
        out[...] = 0
        return out
    return to_lanes(b.reshape(g.c, g.k // g.c, 1), out)


def unrelay_filters(relaid: np.ndarray, g: ConvGeometry, out: np.ndarray) -> np.ndarray:
    """out (K, 1, R, S) from relaid (blocks, m, R*S, LANES): the inverse of relay_filters."""
    for lanes, taps in _block_views(relaid, out.reshape(g.c, g.k // g.c, g.r * g.s)):
        taps[...] = lanes
    return out


def forward_scratch(g: ConvGeometry, threads: int, rows: int) -> dict:
    """Each thread's row of scratch, for a forward or grad of w: its tile buffer (padded_rows(g, rows), wp, LANES),
    then a stage (cells of LANES) for the tile's input rows or its output (or dy) rows."""
    stage = max(min(padded_rows(g, rows), g.h) * g.w, rows * g.out_w)
    return {"scratch": ((threads, (padded_rows(g, rows) * padded_width(g) + stage) * LANES), g.dtype)}


def grad_x_scratch(g: ConvGeometry, threads: int) -> dict:
    """Each thread's row of scratch, for the grad of x: its whole padded plane buffer, then a stage for a plane of
    dy or of dx."""
    stage = max(g.h * g.w, g.out_h * g.out_w)
    return {"scratch": ((threads, (padded_rows(g, g.out_h) * padded_width(g) + stage) * LANES), g.dtype)}
