"""Depthwise (one input channel per group) convolution over channel blocks (fastconv.backends._blocked has the
layout), float32/float64 NCHW arrays, GIL released.

Shapes: x (n, c, h, w), y and dy (n, k, out_h, out_w) with k = c*m, filters (blocks, m, r*s, LANES); params
(sh, sw, dh, dw, top, left, r, s, rows, wp). Work items (image, block, tile of ``rows`` output rows) are split into
one contiguous chunk per thread, each with its row of scratch: the tile's buffer (rows of wp cells of LANES
channels, zero padding included), then a stage of cells for the tile's input rows, or its output (or dy) rows,
which the transposes between planes and cells fill or empty in one call per tile. The buffer is a channels-last
tile of LANES channels: the forward and the grad of w run _depthwise.pxd's micro-kernels on it (sums in registers
over runs of pixels); the grad of x's lane loops have the constant trip count LANES and store after their loads, so
that the compiler vectorizes them.
"""

from cython cimport floating
from cython.parallel cimport prange
from libc.string cimport memcpy

from ._common cimport fill
from ._depthwise cimport (depthwise_grad_span_f32, depthwise_grad_span_f64, depthwise_span_f32, depthwise_span_f64,
                         lanes_of)


cdef extern from *:
    """
    /* dst[i*dst_step + j] = src[j*src_step + i] for i < ni, j < nj: between planes and lane-interleaved cells.
       With AVX, by 8x8 (float) or 4x4 (double) register transposes: the plain loop moves one element a cycle,
       and these moves cost as much as the taps' multiply-adds on small maps. */
    #include <stddef.h>
    #ifdef __AVX__
    #include <immintrin.h>

    static inline void fastconv_block_f32(const float *src, ptrdiff_t ss, float *dst, ptrdiff_t ds) {
        __m256 r0 = _mm256_loadu_ps(src), r1 = _mm256_loadu_ps(src + ss), r2 = _mm256_loadu_ps(src + 2 * ss);
        __m256 r3 = _mm256_loadu_ps(src + 3 * ss), r4 = _mm256_loadu_ps(src + 4 * ss);
        __m256 r5 = _mm256_loadu_ps(src + 5 * ss), r6 = _mm256_loadu_ps(src + 6 * ss);
        __m256 r7 = _mm256_loadu_ps(src + 7 * ss);
        __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
        __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
        __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
        __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
        __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
        __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
        __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
        __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
        _mm256_storeu_ps(dst, _mm256_permute2f128_ps(u0, u4, 0x20));
        _mm256_storeu_ps(dst + ds, _mm256_permute2f128_ps(u1, u5, 0x20));
        _mm256_storeu_ps(dst + 2 * ds, _mm256_permute2f128_ps(u2, u6, 0x20));
        _mm256_storeu_ps(dst + 3 * ds, _mm256_permute2f128_ps(u3, u7, 0x20));
        _mm256_storeu_ps(dst + 4 * ds, _mm256_permute2f128_ps(u0, u4, 0x31));
        _mm256_storeu_ps(dst + 5 * ds, _mm256_permute2f128_ps(u1, u5, 0x31));
        _mm256_storeu_ps(dst + 6 * ds, _mm256_permute2f128_ps(u2, u6, 0x31));
        _mm256_storeu_ps(dst + 7 * ds, _mm256_permute2f128_ps(u3, u7, 0x31));
    }

    static inline void fastconv_block_f64(const double *src, ptrdiff_t ss, double *dst, ptrdiff_t ds) {
        __m256d r0 = _mm256_loadu_pd(src), r1 = _mm256_loadu_pd(src + ss);
        __m256d r2 = _mm256_loadu_pd(src + 2 * ss), r3 = _mm256_loadu_pd(src + 3 * ss);
        __m256d t0 = _mm256_unpacklo_pd(r0, r1), t1 = _mm256_unpackhi_pd(r0, r1);
        __m256d t2 = _mm256_unpacklo_pd(r2, r3), t3 = _mm256_unpackhi_pd(r2, r3);
        _mm256_storeu_pd(dst, _mm256_permute2f128_pd(t0, t2, 0x20));
        _mm256_storeu_pd(dst + ds, _mm256_permute2f128_pd(t1, t3, 0x20));
        _mm256_storeu_pd(dst + 2 * ds, _mm256_permute2f128_pd(t0, t2, 0x31));
        _mm256_storeu_pd(dst + 3 * ds, _mm256_permute2f128_pd(t1, t3, 0x31));
    }
    #define FASTCONV_BLOCKS(T, B, blocks) \\
        for (; i + B <= ni; i += B) { \\
            for (j = 0; j + B <= nj; j += B) blocks(src + j * ss + i, ss, dst + i * ds + j, ds); \\
            for (; j < nj; j++) for (k = i; k < i + B; k++) dst[k * ds + j] = src[j * ss + k]; \\
        }
    #else
    #define FASTCONV_BLOCKS(T, B, blocks)
    #endif

    #define FASTCONV_TRANSPOSE(T, B, blocks) \\
    static void fastconv_transpose_##T(const T *src, ptrdiff_t ss, T *dst, ptrdiff_t ds, ptrdiff_t ni, \\
                                       ptrdiff_t nj) { \\
        ptrdiff_t i = 0, j, k; \\
        FASTCONV_BLOCKS(T, B, blocks) \\
        for (; i < ni; i++) for (j = 0; j < nj; j++) dst[i * ds + j] = src[j * ss + i]; \\
    }
    FASTCONV_TRANSPOSE(float, 8, fastconv_block_f32)
    FASTCONV_TRANSPOSE(double, 4, fastconv_block_f64)
    """
    void transpose_float "fastconv_transpose_float"(const float *src, Py_ssize_t src_step, float *dst,
                                                    Py_ssize_t dst_step, Py_ssize_t ni, Py_ssize_t nj) noexcept nogil
    void transpose_double "fastconv_transpose_double"(const double *src, Py_ssize_t src_step, double *dst,
                                                      Py_ssize_t dst_step, Py_ssize_t ni, Py_ssize_t nj) noexcept nogil


cdef inline void transpose(const floating *src, Py_ssize_t src_step, floating *dst, Py_ssize_t dst_step,
                           Py_ssize_t ni, Py_ssize_t nj) noexcept nogil:
    """dst[i*dst_step + j] = src[j*src_step + i] for i < ni, j < nj."""
    if floating is float:
        transpose_float(src, src_step, dst, dst_step, ni, nj)
    else:
        transpose_double(src, src_step, dst, dst_step, ni, nj)


cdef enum:
    LANES = 16  # fastconv.backends._blocked.LANES


cdef struct Layout:
    Py_ssize_t sh, sw, dh, dw, top, left, r, s, rows, wp


cdef inline Layout layout_of(const long long[::1] params) noexcept nogil:
    cdef Layout p
    p.sh, p.sw, p.dh, p.dw, p.top, p.left = params[0], params[1], params[2], params[3], params[4], params[5]
    p.r, p.s, p.rows, p.wp = params[6], params[7], params[8], params[9]
    return p


cdef inline Py_ssize_t buffer_rows(const Layout *p, Py_ssize_t out_rows) noexcept nogil:
    """Padded input rows the windows of out_rows consecutive output rows read."""
    return (out_rows - 1) * p.sh + (p.r - 1) * p.dh + 1


cdef void to_lanes(const floating *planes, Py_ssize_t plane_step, floating *cells, Py_ssize_t count,
                   Py_ssize_t valid) noexcept nogil:
    """cells (count, LANES)[i, j] = planes[j*plane_step + i] for j < valid, zero in the other lanes."""
    cdef Py_ssize_t i
    transpose(planes, plane_step, cells, LANES, count, valid)
    if valid < LANES:
        for i in range(count):
            fill(cells + i * LANES + valid, LANES - valid, 0)


cdef inline void from_lanes(const floating *cells, floating *planes, Py_ssize_t plane_step, Py_ssize_t count,
                            Py_ssize_t valid) noexcept nogil:
    """planes[j*plane_step + i] = cells (count, LANES)[i, j] for j < valid."""
    transpose(cells, LANES, planes, plane_step, valid, count)


cdef void pack(const floating *plane, Py_ssize_t plane_size, Py_ssize_t valid, Py_ssize_t height,
               Py_ssize_t width, floating *buf, floating *stage, Py_ssize_t first_row, Py_ssize_t rows,
               const Layout *p) noexcept nogil:
    """buf (rows, wp, LANES)[a, b, j] = plane j (height, width), at plane + j*plane_size, at (first_row + a - top,
    b - left); zero outside it and in lanes j >= valid. The input rows go through stage (their pixels, LANES
    each) in one transpose, then row by row into place."""
    cdef Py_ssize_t lo = min(max(p.left, 0), p.wp), hi = max(min(width + p.left, p.wp), lo), a, ih
    cdef Py_ssize_t first = max(first_row - p.top, 0), last = min(first_row - p.top + rows, height)
    cdef floating *cells
    if last > first:
        to_lanes(plane + first * width, plane_size, stage, (last - first) * width, valid)
    for a in range(rows):
        ih = first_row + a - p.top
        cells = buf + a * p.wp * LANES
        if ih < 0 or ih >= height:
            fill(cells, p.wp * LANES, 0)
            continue
        fill(cells, lo * LANES, 0)
        fill(cells + hi * LANES, (p.wp - hi) * LANES, 0)
        memcpy(cells + lo * LANES, stage + ((ih - first) * width + lo - p.left) * LANES,
               (hi - lo) * LANES * sizeof(floating))


cdef void forward_row(floating *row, const floating *taps, const floating *bias, const floating *buf,
                      Py_ssize_t first_row, Py_ssize_t count, const Layout *p) noexcept nogil:
    """row (count, LANES)[ow, j] = bias[j] + sum_{r, s} taps (r*s, LANES)[r*S + s, j] * buf[first_row + r*dh,
    ow*sw + s*dw, j]: the buffer is a channels-last tile of LANES channels, zero-padded, so every pixel is one of
    _depthwise.pxd's runs (the pixels' sums of a register of channels in registers over all taps)."""
    cdef Py_ssize_t blocks = LANES // lanes_of(taps)
    cdef const floating *rows = buf + first_row * p.wp * LANES
    if floating is float:
        depthwise_span_f32(row, LANES, count, rows, p.sw * LANES, blocks, bias, taps, LANES, p.s, NULL, p.r,
                           p.dh * p.wp * LANES, p.dw * LANES)
    else:
        depthwise_span_f64(row, LANES, count, rows, p.sw * LANES, blocks, bias, taps, LANES, p.s, NULL, p.r,
                           p.dh * p.wp * LANES, p.dw * LANES)


cdef void grad_w_row(const floating *row, floating *taps, const floating *buf, Py_ssize_t first_row,
                     Py_ssize_t count, const Layout *p) noexcept nogil:
    """taps (r*s, LANES)[r*S + s, j] += sum_ow row (count, LANES)[ow, j] * buf[first_row + r*dh, ow*sw + s*dw, j]:
    _depthwise.pxd's grad of w on the channels-last tile (a 3x3 kernel's nine sums over the whole row in registers,
    other kernels' runs of pixels); the kernels' sums of dy go to a local sink (db is summed apart)."""
    cdef floating sink[LANES]
    cdef const floating *rows = buf + first_row * p.wp * LANES
    if floating is float:
        depthwise_grad_span_f32(row, LANES, count, rows, p.sw * LANES, LANES // lanes_of(taps), taps, sink, LANES,
                                p.s, NULL, p.r, p.dh * p.wp * LANES, p.dw * LANES)
    else:
        depthwise_grad_span_f64(row, LANES, count, rows, p.sw * LANES, LANES // lanes_of(taps), taps, sink, LANES,
                                p.s, NULL, p.r, p.dh * p.wp * LANES, p.dw * LANES)


cdef void grad_x_row(const floating *row, const floating *taps, floating *buf, Py_ssize_t first_row,
                     Py_ssize_t count, const Layout *p) noexcept nogil:
    """buf[first_row + r*dh, ow*sw + s*dw, j] += taps (r*s, LANES)[r*S + s, j] * row (count, LANES)[ow, j]: the
    adjoint of forward_row (loads first, then stores, so that the lanes vectorize whatever may alias)."""
    cdef floating f[LANES]
    cdef floating acc[LANES]
    cdef Py_ssize_t ow, r, s, j
    cdef floating *v
    for r in range(p.r):
        for s in range(p.s):
            for j in range(LANES):
                f[j] = taps[(r * p.s + s) * LANES + j]
            for ow in range(count):
                v = buf + ((first_row + r * p.dh) * p.wp + ow * p.sw + s * p.dw) * LANES
                for j in range(LANES):
                    acc[j] = v[j] + f[j] * row[ow * LANES + j]
                for j in range(LANES):
                    v[j] = acc[j]


cdef struct Item:
    Py_ssize_t n, c0, valid, oh0, oh1  # image, first channel, lanes in use, output rows [oh0, oh1)


cdef inline Item item_of(Py_ssize_t item, Py_ssize_t blocks, Py_ssize_t tiles, Py_ssize_t c, Py_ssize_t out_h,
                         Py_ssize_t rows) noexcept nogil:
    """Work item (n, block, tile) -> its image, channels and output rows. Returned by value, so that prange makes
    the caller's copy private."""
    cdef Item i
    i.n = item // (blocks * tiles)
    i.c0 = item // tiles % blocks * LANES
    i.valid = min(<Py_ssize_t>LANES, c - i.c0)
    i.oh0 = item % tiles * rows
    i.oh1 = min(i.oh0 + rows, out_h)
    return i


cdef inline Py_ssize_t tiles_of(const Layout *p, Py_ssize_t out_h) noexcept nogil:
    return (out_h + p.rows - 1) // p.rows


cdef inline Item packed_item(const floating[:, :, :, ::1] x, Py_ssize_t item, Py_ssize_t blocks, Py_ssize_t out_h,
                             floating *buf, const Layout *p) noexcept nogil:
    """Work item (n, block, tile), after packing into buf the padded input rows its output rows read, of its
    block's channels (see pack; its stage follows the tile's buffer)."""
    cdef Item it = item_of(item, blocks, tiles_of(p, out_h), x.shape[1], out_h, p.rows)
    pack(&x[it.n, it.c0, 0, 0], x.shape[2] * x.shape[3], it.valid, x.shape[2], x.shape[3], buf,
         buf + buffer_rows(p, p.rows) * p.wp * LANES, it.oh0 * p.sh, buffer_rows(p, it.oh1 - it.oh0), p)
    return it


cdef void forward_chunk(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] filters,
                        const floating[:, :, :, ::1] bias, floating[:, :, :, ::1] y, floating *buf,
                        Py_ssize_t first, Py_ssize_t last, const Layout *p) noexcept nogil:
    """Items [first, last) of the forward, in one thread's scratch row buf (the tile's buffer, then its stage)."""
    cdef Py_ssize_t m = filters.shape[1], out_h = y.shape[2], out_w = y.shape[3], item, q, oh
    cdef floating *stage = buf + buffer_rows(p, p.rows) * p.wp * LANES
    cdef Item it
    for item in range(first, last):
        it = packed_item(x, item, filters.shape[0], out_h, buf, p)
        for q in range(m):
            for oh in range(it.oh0, it.oh1):
                forward_row(stage + (oh - it.oh0) * out_w * LANES, &filters[it.c0 // LANES, q, 0, 0],
                            &bias[it.c0 // LANES, q, 0, 0], buf, (oh - it.oh0) * p.sh, out_w, p)
            from_lanes(stage, &y[it.n, it.c0 * m + q, it.oh0, 0], m * out_h * out_w, (it.oh1 - it.oh0) * out_w,
                       it.valid)


def forward(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] filters,
            const floating[:, :, :, ::1] bias, floating[:, :, :, ::1] y, floating[:, ::1] scratch,
            const long long[::1] params, int num_threads):
    """y (n, k, out_h, out_w) from x (n, c, h, w), filters (blocks, m, r*s, LANES) and bias (blocks, m, 1,
    LANES)."""
    cdef Layout p = layout_of(params)
    cdef Py_ssize_t chunks = scratch.shape[0], items = x.shape[0] * filters.shape[0] * tiles_of(&p, y.shape[2]), t
    for t in prange(chunks, nogil=True, schedule="static", num_threads=num_threads):
        forward_chunk(x, filters, bias, y, &scratch[t, 0], items * t // chunks, items * (t + 1) // chunks, &p)


cdef void grad_w_chunk(const floating[:, :, :, ::1] dy, const floating[:, :, :, ::1] x, floating *part,
                       Py_ssize_t blocks, Py_ssize_t m, floating *buf, Py_ssize_t first, Py_ssize_t last,
                       const Layout *p) noexcept nogil:
    """Items [first, last) of the grad of w, summed into part (blocks, m, r*s, LANES), in one thread's scratch row
    buf (the tile's buffer, then its stage for the tile's dy)."""
    cdef Py_ssize_t out_h = dy.shape[2], out_w = dy.shape[3], taps = p.r * p.s * LANES, item, q, oh
    cdef floating *stage = buf + buffer_rows(p, p.rows) * p.wp * LANES
    cdef Item it
    fill(part, blocks * m * taps, 0)
    for item in range(first, last):
        it = packed_item(x, item, blocks, out_h, buf, p)
        for q in range(m):
            to_lanes(&dy[it.n, it.c0 * m + q, it.oh0, 0], m * out_h * out_w, stage, (it.oh1 - it.oh0) * out_w,
                     it.valid)
            for oh in range(it.oh0, it.oh1):
                grad_w_row(stage + (oh - it.oh0) * out_w * LANES, part + (it.c0 // LANES * m + q) * taps, buf,
                           (oh - it.oh0) * p.sh, out_w, p)


def grad_w(const floating[:, :, :, ::1] dy, const floating[:, :, :, ::1] x, floating[:, :, :, :, ::1] dw_parts,
           floating[:, ::1] scratch, const long long[::1] params, int num_threads):
    """dw_parts (chunks, blocks, m, r*s, LANES): each chunk's share of dW from dy (n, k, out_h, out_w) and
    x (n, c, h, w); items as in forward."""
    cdef Layout p = layout_of(params)
    cdef Py_ssize_t chunks = scratch.shape[0], blocks = dw_parts.shape[1], t
    cdef Py_ssize_t items = x.shape[0] * blocks * tiles_of(&p, dy.shape[2])
    for t in prange(chunks, nogil=True, schedule="static", num_threads=num_threads):
        grad_w_chunk(dy, x, &dw_parts[t, 0, 0, 0, 0], blocks, dw_parts.shape[2], &scratch[t, 0],
                     items * t // chunks, items * (t + 1) // chunks, &p)


def grad_x(const floating[:, :, :, ::1] dy, const floating[:, :, :, ::1] filters, floating[:, :, :, ::1] dx,
           floating[:, ::1] scratch, const long long[::1] params, int num_threads):
    """dx (n, c, h, w) from dy (n, k, out_h, out_w) and filters (blocks, m, r*s, LANES); items (image, block), each
    scattering its m output channels into a zeroed buffer of the whole padded plane, then cropping it into dx
    (through the scratch row's stage, which first holds each output channel's dy)."""
    cdef Layout p = layout_of(params)
    cdef Py_ssize_t c = dx.shape[1], h = dx.shape[2], width = dx.shape[3], blocks = filters.shape[0]
    cdef Py_ssize_t m = filters.shape[1], out_h = dy.shape[2], out_w = dy.shape[3], chunks = scratch.shape[0]
    cdef Py_ssize_t rows = buffer_rows(&p, out_h), lo = min(max(0, -p.left), width), hi
    cdef Py_ssize_t items = dx.shape[0] * blocks, t, item, q, oh, ih
    cdef Item it
    cdef floating *buf
    cdef floating *stage
    cdef floating *cells
    hi = max(min(width, p.wp - p.left), lo)
    for t in prange(chunks, nogil=True, schedule="static", num_threads=num_threads):
        buf = &scratch[t, 0]
        stage = buf + rows * p.wp * LANES
        for item in range(items * t // chunks, items * (t + 1) // chunks):
            it = item_of(item, blocks, 1, c, out_h, out_h)
            fill(buf, rows * p.wp * LANES, 0)
            for q in range(m):
                to_lanes(&dy[it.n, it.c0 * m + q, 0, 0], m * out_h * out_w, stage, out_h * out_w, it.valid)
                for oh in range(out_h):
                    grad_x_row(stage + oh * out_w * LANES, &filters[it.c0 // LANES, q, 0, 0], buf, oh * p.sh, out_w,
                               &p)
            for ih in range(h):
                cells = stage + ih * width * LANES
                if ih + p.top < 0 or ih + p.top >= rows:
                    fill(cells, width * LANES, 0)
                    continue
                fill(cells, lo * LANES, 0)
                fill(cells + hi * LANES, (width - hi) * LANES, 0)
                memcpy(cells + lo * LANES, buf + ((ih + p.top) * p.wp + lo + p.left) * LANES,
                       (hi - lo) * LANES * sizeof(floating))
            from_lanes(stage, &dx[it.n, it.c0, 0, 0], h * width, h * width, it.valid)
