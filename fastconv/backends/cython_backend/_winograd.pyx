"""Winograd convolution for 3x3, stride-1, undilated layers (Lavin & Gray 2016), float32/float64 NCHW arrays,
GIL released.

Forward F(2x2, 3x3): each 2x2 tile of output is A^T [(G g G^T) * (B^T d B)] A with d the 4x4 input patch
under it; the elementwise products summed over channels are 16 GEMMs (kg x cg) @ (cg x tiles), 2.25x fewer
multiplies than direct convolution. The grad of w is F(3x3, 2x2), its transpose: 16 GEMMs of the transformed
dy and x per block, summed by the caller as G^T M G. Shapes as in _gemm (one ConvShape p).

A work item is a block of tile rows of one group, counted over the whole batch (n * ceil(out_h / 2) rows, so
that a block of a small map spans several images and its GEMMs are wide), and a block of the group's output
channels (when blocks of rows are fewer than threads, as at batch 1 on small maps, each channel block repeats the
block's input transform). Each thread transforms its block into ``inputs`` (B^T d B) and ``products`` /
``grads`` (the GEMM output, or A g A^T of dy), one row of tiles at a time through ``rows`` so that the
transforms run along whole rows (vectorized). The weight transforms G w G^T and G^T M G run here too, one
output channel per iteration over the threads: as a matmul on one thread they took longer than the GEMMs.
"""

from cython cimport floating
from cython.parallel cimport prange, threadid

from ._blas cimport gemm
from ._common cimport ConvShape, Span, ceil_div, fill, span_of, valid_span


cdef void winograd_input_rows(const floating *xg, floating *v, floating *buf, const ConvShape *p,
                              Py_ssize_t cg, Py_ssize_t ta0, Py_ssize_t ta1, Py_ssize_t tw,
                              Py_ssize_t tiles) noexcept nogil:
    """v (16, cg, tiles)[4*i + j, c, t] = (B^T d B)[i, j] for the tiles in tile rows ta0:ta1 (tw per row) of one
    image, the first at t = 0 (tiles: v's row length, at least (ta1 - ta0) * tw).

    buf: 4 rows of 2*tw + 2: the four zero-padded input rows under a tile row, overwritten by B^T d.
    """
    cdef Py_ssize_t width = 2 * tw + 2, c, a, q, e, t0, lo, hi, ih
    cdef floating *d0 = buf
    cdef floating *d1 = buf + width
    cdef floating *d2 = buf + 2 * width
    cdef floating *d3 = buf + 3 * width
    cdef floating *row
    cdef floating *vt
    cdef const floating *src
    valid_span(-p.pad_left, 1, p.w, width, &lo, &hi)
    for c in range(cg):
        for a in range(ta0, ta1):
            for e in range(4):
                row = buf + e * width
                ih = 2 * a + e - p.pad_top
                if ih < 0 or ih >= p.h:
                    fill(row, width, 0)
                    continue
                src = xg + (c * p.h + ih) * p.w - p.pad_left
                fill(row, lo, 0)
                for q in range(lo, hi):
                    row[q] = src[q]
                fill(row + hi, width - hi, 0)
            for q in range(width):  # B^T d along columns of the patch rows: rows t0..t3 overwrite d0..d3
                d0[q], d1[q], d2[q], d3[q] = d0[q] - d2[q], d1[q] + d2[q], d2[q] - d1[q], d1[q] - d3[q]
            t0 = (a - ta0) * tw
            for e in range(4):  # (B^T d) B along rows, tile by tile
                row = buf + e * width
                vt = v + (4 * e * cg + c) * tiles + t0
                for q in range(tw):
                    vt[q] = row[2 * q] - row[2 * q + 2]
                vt += cg * tiles
                for q in range(tw):
                    vt[q] = row[2 * q + 1] + row[2 * q + 2]
                vt += cg * tiles
                for q in range(tw):
                    vt[q] = row[2 * q + 2] - row[2 * q + 1]
                vt += cg * tiles
                for q in range(tw):
                    vt[q] = row[2 * q + 1] - row[2 * q + 3]


cdef void winograd_output_rows(const floating *m, const floating *bias, floating *yg, floating *buf,
                               const ConvShape *p, Py_ssize_t kg, Py_ssize_t ta0, Py_ssize_t ta1,
                               Py_ssize_t tw, Py_ssize_t tiles) noexcept nogil:
    """yg (kg, out_h, out_w) rows 2*ta0 : 2*ta1 = A^T m A + bias, m (16, kg, tiles) from the GEMMs, its first
    tile at t = 0 (kg: the channels of a block, yg and bias at its first).

    buf: 8 rows of tw (A^T m, rows 0/1 by column j) and 2 rows of 2*tw (the output rows before cropping).
    """
    cdef Py_ssize_t k, a, j, q, i, oh, t0
    cdef floating *s0
    cdef floating *s1
    cdef floating *out
    cdef const floating *m0
    cdef const floating *m1
    cdef const floating *m2
    cdef const floating *m3
    cdef floating add
    for k in range(kg):
        add = bias[k] if bias != NULL else 0
        for a in range(ta0, ta1):
            t0 = (a - ta0) * tw
            for j in range(4):  # A^T m: rows 0 and 1 of the 2x4 intermediate, column j
                m0 = m + ((0 + j) * kg + k) * tiles + t0
                m1 = m + ((4 + j) * kg + k) * tiles + t0
                m2 = m + ((8 + j) * kg + k) * tiles + t0
                m3 = m + ((12 + j) * kg + k) * tiles + t0
                s0 = buf + j * tw
                s1 = buf + (4 + j) * tw
                for q in range(tw):
                    s0[q] = m0[q] + m1[q] + m2[q]
                    s1[q] = m1[q] - m2[q] - m3[q]
            for i in range(2):  # (A^T m) A, interleaving the two output columns of each tile
                s0 = buf + 4 * i * tw
                out = buf + 8 * tw + i * 2 * tw
                for q in range(tw):
                    out[2 * q] = s0[q] + s0[tw + q] + s0[2 * tw + q] + add
                    out[2 * q + 1] = s0[tw + q] - s0[2 * tw + q] - s0[3 * tw + q] + add
                oh = 2 * a + i
                if oh < p.out_h:
                    for q in range(p.out_w):
                        yg[(k * p.out_h + oh) * p.out_w + q] = out[q]


cdef void winograd_grad_rows(const floating *dyg, floating *dt, floating *buf, const ConvShape *p,
                             Py_ssize_t kg, Py_ssize_t ta0, Py_ssize_t ta1, Py_ssize_t tw,
                             Py_ssize_t tiles) noexcept nogil:
    """dt (16, kg, tiles)[4*i + j, k, t] = (A g A^T)[i, j], g the 2x2 tile t of dyg[k] (0 past the output), for
    the tile rows ta0:ta1 of one image, the first at t = 0 (kg: the channels of a block, dyg at its first).

    With (B^T d B) of the same tile, sum_t G^T [(A g A^T) * (B^T d B)] G is the tile's share of the grad of the
    3x3 kernel (Winograd F(3x3, 2x2), the transpose of the forward F(2x2, 3x3)). buf: 4 rows of 2*tw.
    """
    cdef Py_ssize_t width = 2 * tw, k, a, q, e, oh, t0
    cdef floating *r0 = buf
    cdef floating *r1 = buf + width
    cdef floating *r2 = buf + 2 * width
    cdef floating *r3 = buf + 3 * width
    cdef floating *row
    cdef floating *dst
    cdef const floating *src
    for k in range(kg):
        for a in range(ta0, ta1):
            for e in range(2):  # the two dy rows of the tile row, zero past the output
                row = r0 if e == 0 else r1
                oh = 2 * a + e
                fill(row, width, 0)
                if oh < p.out_h:
                    src = dyg + (k * p.out_h + oh) * p.out_w
                    for q in range(p.out_w):
                        row[q] = src[q]
            for q in range(width):  # A g along rows: g0, g0 + g1, g0 - g1, -g1
                r2[q] = r0[q] - r1[q]
                r3[q] = -r1[q]
                r1[q] = r0[q] + r1[q]
            t0 = (a - ta0) * tw
            for e in range(4):  # (A g) A^T along columns, tile by tile
                row = buf + e * width
                dst = dt + (4 * e * kg + k) * tiles + t0
                for q in range(tw):
                    dst[q] = row[2 * q]
                dst += kg * tiles
                for q in range(tw):
                    dst[q] = row[2 * q] + row[2 * q + 1]
                dst += kg * tiles
                for q in range(tw):
                    dst[q] = row[2 * q] - row[2 * q + 1]
                dst += kg * tiles
                for q in range(tw):
                    dst[q] = -row[2 * q + 1]


cdef struct TileBlock:
    Py_ssize_t group, start, stop  # group, tile rows start:stop of the batch's n * ceil(out_h / 2)
    Py_ssize_t k_lo, k_hi  # the group's output channels k_lo:k_hi


cdef inline TileBlock tile_block(Py_ssize_t item, const ConvShape *p, Py_ssize_t block_rows,
                                 Py_ssize_t channel_blocks) noexcept nogil:
    """Work item -> block, items over (group, block of block_rows tile rows, channel block), the last fastest
    (threads with consecutive items share the block's input transform in cache). Returned by value."""
    cdef Py_ssize_t rows = p.n * ceil_div(p.out_h, 2), blocks = ceil_div(rows, block_rows)
    cdef Py_ssize_t row_block = item // channel_blocks
    cdef Span ks = span_of(item % channel_blocks, channel_blocks, p.k // p.groups)
    cdef TileBlock t
    t.group = row_block // blocks
    t.start = (row_block % blocks) * block_rows
    t.stop = min(t.start + block_rows, rows)
    t.k_lo = ks.lo
    t.k_hi = ks.hi
    return t


cdef inline Span image_rows(const TileBlock *t, Py_ssize_t n, Py_ssize_t th) noexcept nogil:
    """The tile rows lo:hi of image n (th per image) in block t."""
    cdef Span span
    span.lo = max(t.start - n * th, 0)
    span.hi = min(t.stop - n * th, th)
    return span


cdef void block_inputs(const floating *x, floating *v, floating *buf, const ConvShape *p, const TileBlock *t,
                       Py_ssize_t tw) noexcept nogil:
    """v (16, cg, tiles) = B^T d B of the block's tiles, image by image."""
    cdef Py_ssize_t cg = p.c // p.groups, th = ceil_div(p.out_h, 2), tiles = (t.stop - t.start) * tw, n
    cdef Span a
    for n in range(t.start // th, ceil_div(t.stop, th)):
        a = image_rows(t, n, th)
        winograd_input_rows(x + (n * p.c + t.group * cg) * p.h * p.w, v + (n * th + a.lo - t.start) * tw, buf, p,
                            cg, a.lo, a.hi, tw, tiles)


cdef void forward_block(const floating *x, const floating *u, const floating *b, floating *y, floating *v,
                        floating *m, floating *buf, const ConvShape *p, TileBlock t, Py_ssize_t tw) noexcept nogil:
    """y[:, group t.group, channels k_lo:k_hi] over the block's tile rows; v and m hold its B^T d B and GEMM
    output."""
    cdef Py_ssize_t cg = p.c // p.groups, kg = p.k // p.groups, kb = t.k_hi - t.k_lo, th = ceil_div(p.out_h, 2)
    cdef Py_ssize_t tiles = (t.stop - t.start) * tw, first = t.group * kg + t.k_lo, n, xi
    cdef Span a
    block_inputs(x, v, buf, p, &t, tw)
    for xi in range(16):
        gemm(False, False, <int>kb, <int>tiles, <int>cg, 1, u + ((t.group * 16 + xi) * kg + t.k_lo) * cg, <int>cg,
             v + xi * cg * tiles, <int>tiles, 0, m + xi * kb * tiles, <int>tiles)
    for n in range(t.start // th, ceil_div(t.stop, th)):
        a = image_rows(&t, n, th)
        winograd_output_rows(m + (n * th + a.lo - t.start) * tw, b + first if b != NULL else NULL,
                             y + (n * p.k + first) * p.out_h * p.out_w, buf, p, kb, a.lo, a.hi, tw, tiles)


def forward(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] u, const floating[::1] b,
            floating[:, :, :, ::1] y, floating[:, ::1] inputs, floating[:, ::1] products, floating[:, ::1] rows,
            ConvShape p, Py_ssize_t block_rows, Py_ssize_t channel_blocks, int num_threads):
    """y (n, k, out_h, out_w) = conv(x, w) + b (b may be None), from u (groups, 16, kg, cg) = G w G^T.

    Work items: (group, block of block_rows tile rows over the batch, block of the group's output channels in
    channel_blocks), tw = ceil(out_w / 2) tiles per row. Each thread's inputs (threads, 16*cg * block_rows*tw),
    products (threads, 16*kb * block_rows*tw, kb the largest channel block) and rows (threads, the larger of
    winograd_input_rows' and winograd_output_rows' buf).
    """
    cdef Py_ssize_t blocks = ceil_div(p.n * ceil_div(p.out_h, 2), block_rows), tw = ceil_div(p.out_w, 2), item
    cdef const floating *bias = &b[0] if b is not None else NULL
    for item in prange(p.groups * blocks * channel_blocks, nogil=True, schedule="static", num_threads=num_threads):
        forward_block(&x[0, 0, 0, 0], &u[0, 0, 0, 0], bias, &y[0, 0, 0, 0], &inputs[threadid(), 0],
                      &products[threadid(), 0], &rows[threadid(), 0], &p,
                      tile_block(item, &p, block_rows, channel_blocks), tw)


cdef void grad_w_block(const floating *dy, const floating *x, floating *m, floating *v, floating *d,
                       floating *buf, const ConvShape *p, TileBlock t, Py_ssize_t tw) noexcept nogil:
    """m (groups, 16, kg, cg)[group t.group, :, k_lo:k_hi] += (A g A^T) @ (B^T d B)^T over the block's tiles; v
    and d hold the two."""
    cdef Py_ssize_t cg = p.c // p.groups, kg = p.k // p.groups, kb = t.k_hi - t.k_lo, th = ceil_div(p.out_h, 2)
    cdef Py_ssize_t tiles = (t.stop - t.start) * tw, first = t.group * kg + t.k_lo, n, xi
    cdef Span a
    block_inputs(x, v, buf, p, &t, tw)
    for n in range(t.start // th, ceil_div(t.stop, th)):
        a = image_rows(&t, n, th)
        winograd_grad_rows(dy + (n * p.k + first) * p.out_h * p.out_w, d + (n * th + a.lo - t.start) * tw, buf, p,
                           kb, a.lo, a.hi, tw, tiles)
    for xi in range(16):
        gemm(False, True, <int>kb, <int>cg, <int>tiles, 1, d + xi * kb * tiles, <int>tiles,
             v + xi * cg * tiles, <int>tiles, 1, m + ((t.group * 16 + xi) * kg + t.k_lo) * cg, <int>cg)


def grad_w(const floating[:, :, :, ::1] dy, const floating[:, :, :, ::1] x, floating[:, :, :, :, ::1] partial,
           floating[:, ::1] inputs, floating[:, ::1] grads, floating[:, ::1] rows, ConvShape p,
           Py_ssize_t block_rows, Py_ssize_t channel_blocks, int num_threads):
    """partial[thread] (groups, 16, kg, cg) += (A g A^T) @ (B^T d B)^T over the thread's work items (as in
    forward).

    partial holds zeros on entry; dw is G^T M G of its sum M over threads (adjoint_weights). inputs as in
    forward, grads (threads, 16*kb * block_rows*tw) for A g A^T of dy, rows (threads, winograd_input_rows' buf).
    """
    cdef Py_ssize_t blocks = ceil_div(p.n * ceil_div(p.out_h, 2), block_rows), tw = ceil_div(p.out_w, 2), item
    for item in prange(p.groups * blocks * channel_blocks, nogil=True, schedule="static", num_threads=num_threads):
        grad_w_block(&dy[0, 0, 0, 0], &x[0, 0, 0, 0], &partial[threadid(), 0, 0, 0, 0], &inputs[threadid(), 0],
                     &grads[threadid(), 0], &rows[threadid(), 0], &p,
                     tile_block(item, &p, block_rows, channel_blocks), tw)


cdef enum:
    # kernels per chunk of the weight transforms: a chunk's 16 values per kernel are gathered in a small local
    # array, then written (or read) as 16 runs, one per Winograd component. Interleaving the 16 components kernel by
    # kernel ran at 2-5 GB/s where their planes were a multiple of 4 KiB apart (512 x 512 kernels: 11 ms on one
    # thread, against 1.7 ms for 500 x 500): the 16 streams competed for the same cache sets.
    KERNEL_CHUNK = 32


cdef void transform_kernels(const floating *w, floating *u, Py_ssize_t cg, Py_ssize_t stride) noexcept nogil:
    """u[(4a + b) * stride + c] = (G w_c G^T)[a, b] for the cg 3x3 kernels w_c = w[9c : 9c + 9] of one output
    channel."""
    cdef floating t[12]  # G w_c, 4 x 3
    cdef floating chunk[16][KERNEL_CHUNK]
    cdef const floating *wc
    cdef Py_ssize_t first, c0, c, count, j, a, e
    for first in range(ceil_div(cg, KERNEL_CHUNK)):
        c0 = first * KERNEL_CHUNK
        count = min(KERNEL_CHUNK, cg - c0)
        for c in range(count):
            wc = w + 9 * (c0 + c)
            for j in range(3):
                t[j] = wc[j]
                t[3 + j] = (wc[j] + wc[3 + j] + wc[6 + j]) * 0.5
                t[6 + j] = (wc[j] - wc[3 + j] + wc[6 + j]) * 0.5
                t[9 + j] = wc[6 + j]
            for a in range(4):
                chunk[4 * a][c] = t[3 * a]
                chunk[4 * a + 1][c] = (t[3 * a] + t[3 * a + 1] + t[3 * a + 2]) * 0.5
                chunk[4 * a + 2][c] = (t[3 * a] - t[3 * a + 1] + t[3 * a + 2]) * 0.5
                chunk[4 * a + 3][c] = t[3 * a + 2]
        for e in range(16):
            for c in range(count):
                u[e * stride + c0 + c] = chunk[e][c]


def transform_weights(const floating[:, :, :, ::1] w, floating[:, :, :, ::1] u, int num_threads):
    """u (groups, 16, kg, cg) = G w G^T for every 3x3 kernel of w (groups * kg, cg, 3, 3)."""
    cdef Py_ssize_t kg = u.shape[2], cg = u.shape[3], k
    for k in prange(w.shape[0], nogil=True, schedule="static", num_threads=num_threads):
        transform_kernels(&w[k, 0, 0, 0], &u[k // kg, 0, k % kg, 0], cg, kg * cg)


cdef void adjoint_kernels(const floating *m, Py_ssize_t parts, Py_ssize_t part_stride, floating *dw,
                          Py_ssize_t cg, Py_ssize_t stride) noexcept nogil:
    """dw[9c + 3i + j] = (G^T M_c G)[i, j] for the cg kernels of one output channel, M_c[a, b] the sum over parts
    of m[part * part_stride + (4a + b) * stride + c]."""
    cdef floating chunk[16][KERNEL_CHUNK]
    cdef floating s[12]  # M_c G, 4 x 3
    cdef floating *mc
    cdef const floating *src
    cdef Py_ssize_t first, c0, c, count, e, part, a, j
    for first in range(ceil_div(cg, KERNEL_CHUNK)):
        c0 = first * KERNEL_CHUNK
        count = min(KERNEL_CHUNK, cg - c0)
        for e in range(16):
            fill(chunk[e], count, 0)
            for part in range(parts):
                src = m + part * part_stride + e * stride + c0
                for c in range(count):
                    chunk[e][c] += src[c]
        for c in range(count):
            for a in range(4):
                s[3 * a] = chunk[4 * a][c] + (chunk[4 * a + 1][c] + chunk[4 * a + 2][c]) * 0.5
                s[3 * a + 1] = (chunk[4 * a + 1][c] - chunk[4 * a + 2][c]) * 0.5
                s[3 * a + 2] = (chunk[4 * a + 1][c] + chunk[4 * a + 2][c]) * 0.5 + chunk[4 * a + 3][c]
            mc = dw + 9 * (c0 + c)
            for j in range(3):
                mc[j] = s[j] + (s[3 + j] + s[6 + j]) * 0.5
                mc[3 + j] = (s[3 + j] - s[6 + j]) * 0.5
                mc[6 + j] = (s[3 + j] + s[6 + j]) * 0.5 + s[9 + j]


def adjoint_weights(const floating[:, :, :, :, ::1] partial, floating[:, :, :, ::1] dw, int num_threads):
    """dw (groups * kg, cg, 3, 3) = G^T M G for every kernel, M (groups, 16, kg, cg) the sum of partial
    (parts, groups, 16, kg, cg) over its parts."""
    cdef Py_ssize_t groups = partial.shape[1], kg = partial.shape[3], cg = partial.shape[4], k
    for k in prange(dw.shape[0], nogil=True, schedule="static", num_threads=num_threads):
        adjoint_kernels(&partial[0, k // kg, 0, k % kg, 0], partial.shape[0], groups * 16 * kg * cg, &dw[k, 0, 0, 0],
                        cg, kg * cg)
