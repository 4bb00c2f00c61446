"""Winograd convolution for 3x3, stride-1, undilated layers (Lavin & Gray 2016), float32/float64 NCHW arrays,
GIL released.

Forward F(2x2, 3x3): each 2x2 tile of output is A^T [(G g G^T) * (B^T d B)] A with d the 4x4 input patch
under it; the elementwise products summed over channels are 16 GEMMs (kg x cg) @ (cg x tiles), 2.25x fewer
multiplies than direct convolution. The grad of w is F(3x3, 2x2), its transpose: 16 GEMMs of the transformed
dy and x per block, summed by the caller as G^T M G. Shapes as in _gemm (one ConvShape p).

A work item is a block of tile rows of one image and one group. Each thread transforms its block into
``inputs`` (B^T d B) and ``products`` / ``grads`` (the GEMM output, or A g A^T of dy), one row of tiles at a
time through ``rows`` so that the transforms run along whole rows (vectorized).
"""

from cython cimport floating
from cython.parallel cimport prange, threadid

from ._blas cimport gemm
from ._common cimport Block, ConvShape, block_of, ceil_div, fill, valid_span


cdef void winograd_input_rows(const floating *xg, floating *v, floating *buf, const ConvShape *p,
                              Py_ssize_t cg, Py_ssize_t ta0, Py_ssize_t ta1, Py_ssize_t tw) noexcept nogil:
    """v (16, cg, tiles)[4*i + j, c, t] = (B^T d B)[i, j] for the tiles in tile rows ta0:ta1 (tw per row).

    buf: 4 rows of 2*tw + 2: the four zero-padded input rows under a tile row, overwritten by B^T d.
    """
    cdef Py_ssize_t width = 2 * tw + 2, tiles = (ta1 - ta0) * tw, c, a, q, e, t0, lo, hi, ih
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
                               Py_ssize_t tw) noexcept nogil:
    """yg (kg, out_h, out_w) rows 2*ta0 : 2*ta1 = A^T m A + bias, m (16, kg, tiles) from the GEMMs.

    buf: 8 rows of tw (A^T m, rows 0/1 by column j) and 2 rows of 2*tw (the output rows before cropping).
    """
    cdef Py_ssize_t tiles = (ta1 - ta0) * tw, k, a, j, q, i, oh, t0
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


cdef void forward_block(const floating *x, const floating *u, const floating *b, floating *y, floating *v,
                        floating *m, floating *buf, const ConvShape *p, Block t, Py_ssize_t tw) noexcept nogil:
    """y[t.n, group t.group] output rows 2*t.start : 2*t.stop; v and m hold the block's B^T d B and GEMM output."""
    cdef Py_ssize_t cg = p.c // p.groups, kg = p.k // p.groups, tiles = (t.stop - t.start) * tw, xi
    winograd_input_rows(x + (t.n * p.c + t.group * cg) * p.h * p.w, v, buf, p, cg, t.start, t.stop, tw)
    for xi in range(16):
        gemm(False, False, <int>kg, <int>tiles, <int>cg, 1, u + (t.group * 16 + xi) * kg * cg, <int>cg,
             v + xi * cg * tiles, <int>tiles, 0, m + xi * kg * tiles, <int>tiles)
    winograd_output_rows(m, b + t.group * kg if b != NULL else NULL,
                         y + (t.n * p.k + t.group * kg) * p.out_h * p.out_w, buf, p, kg, t.start, t.stop, tw)


def forward(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] u, const floating[::1] b,
            floating[:, :, :, ::1] y, floating[:, ::1] inputs, floating[:, ::1] products, floating[:, ::1] rows,
            ConvShape p, Py_ssize_t block_rows, int num_threads):
    """y (n, k, out_h, out_w) = conv(x, w) + b (b may be None), from u (groups, 16, kg, cg) = G w G^T.

    Work items: (image, group, block of block_rows tile rows), tw = ceil(out_w / 2) tiles per row. Each thread's
    inputs (threads, 16*cg * block_rows*tw), products (threads, 16*kg * block_rows*tw) and rows (threads, the
    larger of winograd_input_rows' and winograd_output_rows' buf).
    """
    cdef Py_ssize_t th = ceil_div(p.out_h, 2), tw = ceil_div(p.out_w, 2), item, tid
    cdef const floating *bias = &b[0] if b is not None else NULL
    cdef Block t
    for item in prange(p.n * p.groups * ceil_div(th, block_rows), nogil=True, schedule="static",
                       num_threads=num_threads):
        tid = threadid()
        t = block_of(item, p.groups, th, block_rows)
        forward_block(&x[0, 0, 0, 0], &u[0, 0, 0, 0], bias, &y[0, 0, 0, 0], &inputs[tid, 0], &products[tid, 0],
                      &rows[tid, 0], &p, t, tw)


cdef void winograd_grad_rows(const floating *dyg, floating *dt, floating *buf, const ConvShape *p,
                             Py_ssize_t kg, Py_ssize_t ta0, Py_ssize_t ta1, Py_ssize_t tw) noexcept nogil:
    """dt (16, kg, tiles)[4*i + j, k, t] = (A g A^T)[i, j], g the 2x2 tile t of dyg[k] (0 past the output).

    With (B^T d B) of the same tile, sum_t G^T [(A g A^T) * (B^T d B)] G is the tile's share of the grad of the
    3x3 kernel (Winograd F(3x3, 2x2), the transpose of the forward F(2x2, 3x3)). buf: 4 rows of 2*tw.
    """
    cdef Py_ssize_t width = 2 * tw, tiles = (ta1 - ta0) * tw, k, a, q, e, oh, t0
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


cdef void grad_w_block(const floating *dy, const floating *x, floating *m, floating *v, floating *d,
                       floating *buf, const ConvShape *p, Block t, Py_ssize_t tw) noexcept nogil:
    """m[group t.group] (16, kg, cg) += (A g A^T) @ (B^T d B)^T over the block's tiles; v and d hold the two."""
    cdef Py_ssize_t cg = p.c // p.groups, kg = p.k // p.groups, tiles = (t.stop - t.start) * tw, xi
    cdef floating *mg = m + t.group * 16 * kg * cg
    winograd_input_rows(x + (t.n * p.c + t.group * cg) * p.h * p.w, v, buf, p, cg, t.start, t.stop, tw)
    winograd_grad_rows(dy + (t.n * p.k + t.group * kg) * p.out_h * p.out_w, d, buf, p, kg, t.start, t.stop, tw)
    for xi in range(16):
        gemm(False, True, <int>kg, <int>cg, <int>tiles, 1, d + xi * kg * tiles, <int>tiles,
             v + xi * cg * tiles, <int>tiles, 1, mg + xi * kg * cg, <int>cg)


def grad_w(const floating[:, :, :, ::1] dy, const floating[:, :, :, ::1] x, floating[:, :, :, :, ::1] partial,
           floating[:, ::1] inputs, floating[:, ::1] grads, floating[:, ::1] rows, ConvShape p,
           Py_ssize_t block_rows, int num_threads):
    """partial[thread] (groups, 16, kg, cg) += (A g A^T) @ (B^T d B)^T over the thread's tiles.

    partial holds zeros on entry; dw is G^T M G of its sum M over threads. inputs as in forward, grads (threads,
    16*kg * block_rows*tw) for A g A^T of dy, rows (threads, winograd_input_rows' buf).
    """
    cdef Py_ssize_t th = ceil_div(p.out_h, 2), tw = ceil_div(p.out_w, 2), item, tid
    cdef Block t
    for item in prange(p.n * p.groups * ceil_div(th, block_rows), nogil=True, schedule="static",
                       num_threads=num_threads):
        tid = threadid()
        t = block_of(item, p.groups, th, block_rows)
        grad_w_block(&dy[0, 0, 0, 0], &x[0, 0, 0, 0], &partial[tid, 0, 0, 0, 0], &inputs[tid, 0], &grads[tid, 0],
                     &rows[tid, 0], &p, t, tw)
