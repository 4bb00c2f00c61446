"""Kernels on channels-last (n, h, w, c) float32/float64 arrays, GIL released: pooling, depthwise, 1x1 and Winograd
3x3 convolution.

Pooling: each window cell is a run of c contiguous channels, the innermost loop (it vectorizes); work items are
(image, output row) pairs forward and (image, input row) pairs backward. rows (out_h, 2) and cols (out_w, 2) hold
each window's [start, stop) clipped to the input (PoolGeometry.window_bounds); row_cover (h, 2) and col_cover
(w, 2) the [first, stop) windows holding each input row and column (PoolGeometry.covering_ranges). Ties go to the
first maximum in row-major window order and a NaN wins, as in _pool.pyx; built without -ffast-math for that.

Depthwise convolution (one input channel per group; fastconv.backends._channelwise_nhwc has the tables): output
rows accumulate their taps along the channels, one SIMD register of channels of eight pixels in registers (C
vector types, as in _blocked_direct.pyx), the next run's newest input row prefetched; the grad of x is the forward
on the tables of the taps' sources with one channel per group, else a gather per input row; the grad of w sums
per thread, the same runs of pixels' dy in registers.

1x1 convolution (stride 1, unpadded, one group): x (p, c) and y (p, k) over all p = n*h*w pixels, w (k, c);
each thread runs one GEMM on its chunk of rows (scipy's BLAS, single-threaded inside the parallel loop).

Winograd F(4x4, 3x3) (fastconv.backends._winograd_nhwc has the maths, arrays and blocking): each thread's blocks
of tiles are transformed along the channels, multiplied in 36 GEMMs and transformed back into y.
"""

from cython cimport floating
from cython.parallel cimport prange

from ._blas cimport gemm
from ._common cimport fill
from ._depthwise cimport (depthwise_grad_span_f32, depthwise_grad_span_f64, depthwise_pixel_f32, depthwise_pixel_f64,
                         depthwise_span_f32, depthwise_span_f64, lanes_of)


cdef void max_row(const floating *x, floating *y, long long *index, const long long *row, const long long *cols,
                  Py_ssize_t w, Py_ssize_t c, Py_ssize_t out_w) noexcept nogil:
    """One output row of one image: x (h, w, c) -> y, index (out_w, c); row = [h0, h1) of its windows."""
    cdef Py_ssize_t ow, i, j, ch, q, first
    cdef const floating *src
    cdef floating v, best
    cdef bint take
    for ow in range(out_w):
        first = row[0] * w + cols[2 * ow]
        src = x + first * c
        for ch in range(c):
            y[ch] = src[ch]
            index[ch] = first
        for i in range(row[0], row[1]):
            for j in range(cols[2 * ow], cols[2 * ow + 1]):
                q = i * w + j
                if q != first:
                    src = x + q * c
                    for ch in range(c):
                        v = src[ch]
                        best = y[ch]
                        take = (best == best) & (not (v <= best))  # a larger value or a NaN, unless best is NaN
                        y[ch] = v if take else best
                        index[ch] = q if take else index[ch]
        y += c
        index += c


def max_forward(const floating[:, :, :, ::1] x, floating[:, :, :, ::1] y, long long[:, :, :, ::1] indices,
                const long long[:, ::1] rows, const long long[:, ::1] cols, int num_threads):
    """y, indices (n, out_h, out_w, c) from x (n, h, w, c); indices are flat h*w positions in the image."""
    cdef Py_ssize_t h = x.shape[1], w = x.shape[2], c = x.shape[3], out_h = y.shape[1], out_w = y.shape[2], job
    for job in prange(x.shape[0] * out_h, nogil=True, schedule="static", num_threads=num_threads):
        max_row(&x[0, 0, 0, 0] + job // out_h * h * w * c, &y[0, 0, 0, 0] + job * out_w * c,
                &indices[0, 0, 0, 0] + job * out_w * c, &rows[job % out_h, 0], &cols[0, 0], w, c, out_w)


cdef void avg_row(const floating *x, floating *y, const floating *divisor, const long long *row,
                  const long long *cols, Py_ssize_t w, Py_ssize_t c, Py_ssize_t out_w) noexcept nogil:
    """One output row of one image: y (out_w, c) = window sums of x (h, w, c) / divisor (out_w,)."""
    cdef Py_ssize_t ow, i, q, ch
    cdef const floating *src
    for ow in range(out_w):
        for ch in range(c):
            y[ch] = 0
        for i in range(row[0], row[1]):
            for q in range(i * w + cols[2 * ow], i * w + cols[2 * ow + 1]):
                src = x + q * c
                for ch in range(c):
                    y[ch] += src[ch]
        for ch in range(c):
            y[ch] = y[ch] / divisor[ow]
        y += c


def avg_forward(const floating[:, :, :, ::1] x, const floating[:, ::1] divisor, floating[:, :, :, ::1] y,
                const long long[:, ::1] rows, const long long[:, ::1] cols, int num_threads):
    """y (n, out_h, out_w, c) from x (n, h, w, c); divisor (out_h, out_w)."""
    cdef Py_ssize_t h = x.shape[1], w = x.shape[2], c = x.shape[3], out_h = y.shape[1], out_w = y.shape[2], job
    for job in prange(x.shape[0] * out_h, nogil=True, schedule="static", num_threads=num_threads):
        avg_row(&x[0, 0, 0, 0] + job // out_h * h * w * c, &y[0, 0, 0, 0] + job * out_w * c,
                &divisor[job % out_h, 0], &rows[job % out_h, 0], &cols[0, 0], w, c, out_w)


cdef Py_ssize_t gather_row(const floating *dy, const long long *index, const floating *divisor, floating *dx,
                           Py_ssize_t ih, const long long *cover, const long long *col_cover, Py_ssize_t w,
                           Py_ssize_t c, Py_ssize_t out_w, bint is_max) noexcept nogil:
    """Input row ih of one image: dx (w, c), each cell the sum of what the windows holding it send, in row-major
    window order: dy (out_h, out_w, c) where index names the cell (max), or dy / divisor (avg). Returns the
    argmax hits (max)."""
    cdef Py_ssize_t iw, oh, ow, ch, o, q, hits = 0
    cdef floating share
    for iw in range(w):
        q = ih * w + iw
        for ch in range(c):
            dx[ch] = 0
        for oh in range(cover[0], cover[1]):
            for ow in range(col_cover[2 * iw], col_cover[2 * iw + 1]):
                o = (oh * out_w + ow) * c
                if is_max:
                    for ch in range(c):
                        dx[ch] += dy[o + ch] if index[o + ch] == q else 0
                        hits += index[o + ch] == q
                else:
                    share = divisor[oh * out_w + ow]
                    for ch in range(c):
                        dx[ch] += dy[o + ch] / share
        dx += c
    return hits


cdef void scatter_image(const floating *dy, const long long *index, floating *dx, Py_ssize_t outputs,
                        Py_ssize_t cells, Py_ssize_t c) noexcept nogil:
    """dx (cells,) = zeros, plus each dy[o] (o < outputs) at its index's cell, in its channel o % c."""
    cdef Py_ssize_t o, i, ch
    for i in range(cells):
        dx[i] = 0
    for i in range(outputs // c if c else 0):  # pixel by pixel: no division per element
        for ch in range(c):
            o = i * c + ch
            dx[index[o] * c + ch] += dy[o]


def max_backward_scatter(const floating[:, :, :, ::1] dy, const long long[:, :, :, ::1] indices,
                         floating[:, :, :, ::1] dx, int num_threads):
    """dx (n, h, w, c) = zeros plus each dy (n, out_h, out_w, c) at the cell its index names, images in
    parallel (windows in order, so overlapping windows add up as the gather adds them)."""
    cdef Py_ssize_t outputs = dy.shape[1] * dy.shape[2] * dy.shape[3], cells = dx.shape[1] * dx.shape[2] * dx.shape[3]
    cdef Py_ssize_t image
    for image in prange(dx.shape[0], nogil=True, schedule="static", num_threads=num_threads):
        scatter_image(&dy[0, 0, 0, 0] + image * outputs, &indices[0, 0, 0, 0] + image * outputs,
                      &dx[0, 0, 0, 0] + image * cells, outputs, cells, dx.shape[3])


cdef void spread_image(const floating *dy, const floating *divisor, floating *dx, const long long *rows,
                       const long long *cols, Py_ssize_t out_h, Py_ssize_t out_w, Py_ssize_t w, Py_ssize_t c,
                       Py_ssize_t cells) noexcept nogil:
    """dx (cells,) = zeros plus each dy (out_h, out_w, c) over its divisor at every cell of its window, windows in
    order (so overlapping windows add up as the gather adds them)."""
    cdef Py_ssize_t oh, ow, i, j, ch, o, q
    cdef floating share
    fill(dx, cells, 0)
    for oh in range(out_h):
        for ow in range(out_w):
            o = (oh * out_w + ow) * c
            share = divisor[oh * out_w + ow]
            for i in range(rows[2 * oh], rows[2 * oh + 1]):
                for j in range(cols[2 * ow], cols[2 * ow + 1]):
                    q = (i * w + j) * c
                    for ch in range(c):
                        dx[q + ch] += dy[o + ch] / share


def avg_backward_scatter(const floating[:, :, :, ::1] dy, const floating[:, ::1] divisor,
                         floating[:, :, :, ::1] dx, const long long[:, ::1] rows, const long long[:, ::1] cols,
                         int num_threads):
    """dx (n, h, w, c) from dy (n, out_h, out_w, c): each dy over its divisor (out_h, out_w) spread over its
    window (rows (out_h, 2), cols (out_w, 2): the forward's bounds), images in parallel."""
    cdef Py_ssize_t out_h = dy.shape[1], out_w = dy.shape[2], c = dy.shape[3]
    cdef Py_ssize_t outputs = out_h * out_w * c, cells = dx.shape[1] * dx.shape[2] * c, image
    for image in prange(dx.shape[0], nogil=True, schedule="static", num_threads=num_threads):
        spread_image(&dy[0, 0, 0, 0] + image * outputs, &divisor[0, 0], &dx[0, 0, 0, 0] + image * cells,
                     &rows[0, 0], &cols[0, 0], out_h, out_w, dx.shape[2], c, cells)


def backward_gather(const floating[:, :, :, ::1] dy, const long long[:, :, :, ::1] indices,
                    const floating[:, ::1] divisor, floating[:, :, :, ::1] dx, const long long[:, ::1] row_cover,
                    const long long[:, ::1] col_cover, long long[::1] hits, bint is_max, int num_threads):
    """dx (n, h, w, c) from dy (n, out_h, out_w, c): max pooling with indices (as dy), avg pooling with divisor
    (out_h, out_w); every dx cell written once. hits (n*h,): each input row's argmax hits; an image whose hits
    fall short of its outputs has an index outside its own window (user-given only) and is redone by a scatter."""
    cdef Py_ssize_t n = dx.shape[0], h = dx.shape[1], w = dx.shape[2], c = dx.shape[3]
    cdef Py_ssize_t out_h = dy.shape[1], out_w = dy.shape[2], job, image, i, total
    cdef Py_ssize_t outputs = out_h * out_w * c, cells = h * w * c
    for job in prange(n * h, nogil=True, schedule="static", num_threads=num_threads):
        hits[job] = gather_row(&dy[0, 0, 0, 0] + job // h * outputs,
                               &indices[0, 0, 0, 0] + (job // h * outputs if is_max else 0), &divisor[0, 0],
                               &dx[0, 0, 0, 0] + job * w * c, job % h, &row_cover[job % h, 0], &col_cover[0, 0],
                               w, c, out_w, is_max)
    if not is_max:
        return
    for image in prange(n, nogil=True, schedule="static", num_threads=num_threads):
        total = 0
        for i in range(h):
            total = total + hits[image * h + i]
        if total != outputs:
            scatter_image(&dy[0, 0, 0, 0] + image * outputs, &indices[0, 0, 0, 0] + image * outputs,
                          &dx[0, 0, 0, 0] + image * cells, outputs, cells, c)


def pointwise_forward(const floating[:, ::1] x, const floating[:, ::1] w, const floating[::1] bias,
                      floating[:, ::1] y, int num_threads):
    """y (p, k) = x (p, c) @ w (k, c)^T + bias (k,), rows in num_threads chunks."""
    cdef Py_ssize_t p = x.shape[0], c = x.shape[1], k = w.shape[0], t, p0, p1, i, j
    for t in prange(num_threads, nogil=True, schedule="static", num_threads=num_threads):
        p0 = p * t // num_threads
        p1 = p * (t + 1) // num_threads
        if p1 > p0:
            for i in range(p0, p1):
                for j in range(k):
                    y[i, j] = bias[j]
            gemm(False, True, <int>(p1 - p0), <int>k, <int>c, 1, &x[p0, 0], <int>c, &w[0, 0], <int>c, 1,
                 &y[p0, 0], <int>k)


def pointwise_backward(const floating[:, ::1] dy, const floating[:, ::1] x, const floating[:, ::1] w,
                       floating[:, ::1] dx, floating[:, :, ::1] dw_parts, bint need_dx, bint need_dw,
                       int num_threads):
    """dx (p, c) = dy (p, k) @ w (k, c); dw_parts[t] (k, c) = dy^T @ x over chunk t of the rows (one chunk per
    thread: dw_parts has num_threads of them, summed by the caller)."""
    cdef Py_ssize_t p = x.shape[0], c = x.shape[1], k = w.shape[0], t, p0, p1, i, j
    for t in prange(num_threads, nogil=True, schedule="static", num_threads=num_threads):
        p0 = p * t // num_threads
        p1 = p * (t + 1) // num_threads
        if p1 > p0 and need_dx:
            gemm(False, False, <int>(p1 - p0), <int>c, <int>k, 1, &dy[p0, 0], <int>k, &w[0, 0], <int>c, 0,
                 &dx[p0, 0], <int>c)
        if p1 > p0 and need_dw:
            gemm(True, False, <int>k, <int>c, <int>(p1 - p0), 1, &dy[p0, 0], <int>k, &x[p0, 0], <int>c, 0,
                 &dw_parts[t, 0, 0], <int>c)
        elif need_dw:
            for i in range(k):
                for j in range(c):
                    dw_parts[t, i, j] = 0


cdef enum:
    SUM_ROWS = 64  # rows per tile of channel_sums: summed in float (sixteen to a chain), added in double per tile
    SUM_CHANNELS = 16  # channels summed at once by sum_tile


cdef void sum_tile(const floating *rows, double *sums, Py_ssize_t count, Py_ssize_t k) noexcept nogil:
    """sums[j] += the sum over count <= SUM_ROWS rows (k each) of rows[p*k + j], for j < k: blocks of SUM_CHANNELS
    channels, each in four partial sums (rows p % 4: independent chains of adds, where one chain waits on every
    add)."""
    cdef floating a0[SUM_CHANNELS]
    cdef floating a1[SUM_CHANNELS]
    cdef floating a2[SUM_CHANNELS]
    cdef floating a3[SUM_CHANNELS]
    cdef const floating *block
    cdef Py_ssize_t b, width, p, j
    for b in range((k + SUM_CHANNELS - 1) // SUM_CHANNELS):
        block = rows + b * SUM_CHANNELS
        width = min(<Py_ssize_t>SUM_CHANNELS, k - b * SUM_CHANNELS)
        for j in range(SUM_CHANNELS):
            a0[j] = a1[j] = a2[j] = a3[j] = 0
        for p in range(0, count - 3, 4):
            for j in range(width):
                a0[j] += block[p * k + j]
                a1[j] += block[(p + 1) * k + j]
                a2[j] += block[(p + 2) * k + j]
                a3[j] += block[(p + 3) * k + j]
        for p in range(count - count % 4, count):
            for j in range(width):
                a0[j] += block[p * k + j]
        for j in range(width):
            sums[b * SUM_CHANNELS + j] += (<double>a0[j] + a1[j]) + (<double>a2[j] + a3[j])


def channel_sums(const floating[:, ::1] rows, double[:, ::1] parts, floating[::1] sums, int num_threads):
    """sums (k,) = the column sums of rows (pixels, k): parts[t] (k,) those of chunk t of the rows, one chunk per
    thread, SUM_ROWS rows at a time (each tile read from cache once per block of channels), then added up."""
    cdef Py_ssize_t pixels = rows.shape[0], k = rows.shape[1], chunks = parts.shape[0], t, p, stop, j
    cdef double total
    for t in prange(chunks, nogil=True, schedule="static", num_threads=num_threads):
        for j in range(k):
            parts[t, j] = 0
        p = pixels * t // chunks
        stop = pixels * (t + 1) // chunks
        while p < stop:
            sum_tile(&rows[p, 0], &parts[t, 0], min(<Py_ssize_t>SUM_ROWS, stop - p), k)
            p = p + SUM_ROWS
    for j in range(k):
        total = 0
        for t in range(chunks):
            total += parts[t, j]
        sums[j] = <floating>total


cdef inline void add_products(floating *out, const floating *a, const floating *x, Py_ssize_t c,
                              Py_ssize_t m) noexcept nogil:
    """out[j] += a[j] * x[j // m] for j < c * m."""
    cdef Py_ssize_t j, ch
    cdef floating v
    if m == 1:
        for j in range(c):
            out[j] += a[j] * x[j]
    else:
        for ch in range(c):
            v = x[ch]
            for j in range(ch * m, (ch + 1) * m):
                out[j] += a[j] * v


cdef inline bint on_line(const long long *cols, Py_ssize_t ow, Py_ssize_t s_size, const Py_ssize_t *span) noexcept nogil:
    """Whether output column ow's taps all read inside the image, at span[2] + ow*span[3] + s*span[4]."""
    cdef Py_ssize_t s
    for s in range(s_size):
        if cols[ow * s_size + s] < 0 or cols[ow * s_size + s] != span[2] + ow * span[3] + s * span[4]:
            return False
    return True


cdef void regular_span(const long long *cols, Py_ssize_t out_w, Py_ssize_t s_size, Py_ssize_t *span) noexcept nogil:
    """span[0:2] = [lo, hi), the first stretch of output columns whose taps all read inside the image at columns
    span[2] + ow*span[3] + s*span[4] (span[3:5] the steps between pixels and between taps; the tables of the
    forward's taps are affine where valid, those of a strided grad of x's sources are never on one line)."""
    cdef Py_ssize_t lo = 0, hi, s
    while lo < out_w:
        for s in range(s_size):
            if cols[lo * s_size + s] < 0:
                break
        else:
            break
        lo += 1
    span[0] = span[1] = lo
    if lo == out_w:
        return
    span[4] = cols[lo * s_size + 1] - cols[lo * s_size] if s_size > 1 else 0
    span[3] = cols[(lo + 1) * s_size] - cols[lo * s_size] if lo + 1 < out_w else 0
    span[2] = cols[lo * s_size] - lo * span[3]
    hi = lo
    while hi < out_w and on_line(cols, hi, s_size, span):
        hi += 1
    span[1] = hi


cdef void forward_row(floating *pixels, const floating *bias, const floating *taps, const floating *x,
                      const long long *row_taps, const long long *cols, Py_ssize_t r_size, Py_ssize_t s_size,
                      Py_ssize_t out_w, Py_ssize_t width, Py_ssize_t c, Py_ssize_t m,
                      const Py_ssize_t *span) noexcept nogil:
    """One output row of one image: pixels (out_w, k) = bias (k,) + the sum over the valid taps of taps (r, s, k)
    * x, x the image (h, width, c); row_taps (r_size,) and cols (out_w, s_size) the input row and column of each
    tap (-1 in the padding), span from regular_span(cols). With one channel per group, each register of channels
    runs the columns of span in runs of pixels whose sums stay in registers, the other columns one pixel at a
    time; the channels past the last whole register (and every channel when m > 1) add one tap at a time."""
    cdef Py_ssize_t lanes = lanes_of(taps), k = c * m, ow, r, s, j
    cdef Py_ssize_t blocked = c - c % lanes if m == 1 else 0
    cdef Py_ssize_t lo = span[0], hi = span[1] if blocked else span[0]
    cdef const floating *src
    if hi > lo:
        if floating is float:
            depthwise_span_f32(pixels + lo * k, k, hi - lo, x + cols[lo * s_size] * c, span[3] * c,
                               blocked // lanes, bias, taps, k, s_size, row_taps, r_size, width * c, span[4] * c)
        else:
            depthwise_span_f64(pixels + lo * k, k, hi - lo, x + cols[lo * s_size] * c, span[3] * c,
                               blocked // lanes, bias, taps, k, s_size, row_taps, r_size, width * c, span[4] * c)
    for ow in range(out_w):
        if blocked and (ow < lo or ow >= hi):
            if floating is float:
                depthwise_pixel_f32(pixels + ow * k, blocked // lanes, bias, taps, k, s_size, x, row_taps,
                                    cols + ow * s_size, r_size, width * c, c)
            else:
                depthwise_pixel_f64(pixels + ow * k, blocked // lanes, bias, taps, k, s_size, x, row_taps,
                                    cols + ow * s_size, r_size, width * c, c)
    if blocked == k:
        return
    for ow in range(out_w):
        for j in range(blocked, k):
            pixels[ow * k + j] = bias[j]
        for r in range(r_size):
            if row_taps[r] >= 0:
                for s in range(s_size):
                    if cols[ow * s_size + s] >= 0:
                        src = x + (row_taps[r] * width + cols[ow * s_size + s]) * c + blocked
                        add_products(pixels + ow * k + blocked, taps + (r * s_size + s) * k + blocked, src,
                                     c - blocked, m)


def channelwise_forward(const floating[::1] x, const floating[::1] filters, const floating[::1] bias,
                        floating[::1] y, const long long[:, ::1] rows, const long long[:, ::1] cols,
                        Py_ssize_t images, Py_ssize_t height, Py_ssize_t width, Py_ssize_t c, int num_threads):
    """y (n, out_h, out_w, k) from x (n, height, width, c) and filters (r, s, k); (image, output row) pairs in
    num_threads chunks."""
    cdef Py_ssize_t out_h = rows.shape[0], out_w = cols.shape[0], k = bias.shape[0], jobs = images * out_h
    cdef Py_ssize_t t, job
    cdef Py_ssize_t span[5]
    regular_span(&cols[0, 0], out_w, cols.shape[1], span)
    for t in prange(num_threads, nogil=True, schedule="static", num_threads=num_threads):
        for job in range(jobs * t // num_threads, jobs * (t + 1) // num_threads):
            forward_row(&y[0] + job * out_w * k, &bias[0], &filters[0], &x[0] + job // out_h * height * width * c,
                        &rows[job % out_h, 0], &cols[0, 0], rows.shape[1], cols.shape[1], out_w, width, c, k // c,
                        span)


cdef void grad_w_row(const floating *pixels, floating *taps, const floating *x, const long long *row_taps,
                     const long long *cols, Py_ssize_t r_size, Py_ssize_t s_size, Py_ssize_t out_w,
                     Py_ssize_t width, Py_ssize_t c, Py_ssize_t m, const Py_ssize_t *span) noexcept nogil:
    """One output row of one image's share of the grads of w and b: taps (r*s + 1, k) += pixels (out_w, k) * x
    over the valid taps (r, s), and its last row, the bias, += pixels; x the image (h, width, c), the tables and
    span as forward_row's. With one channel per group, each register of channels runs the columns of span in runs
    of pixels; the other columns, the channels past the last whole register (and every channel when m > 1) add
    one tap at a time."""
    cdef Py_ssize_t lanes = lanes_of(taps), k = c * m, ow, r, s, j, first
    cdef Py_ssize_t blocked = c - c % lanes if m == 1 else 0
    cdef Py_ssize_t lo = span[0], hi = span[1] if blocked else span[0]
    cdef floating *bias = taps + r_size * s_size * k
    cdef const floating *src
    if hi > lo:
        if floating is float:
            depthwise_grad_span_f32(pixels + lo * k, k, hi - lo, x + cols[lo * s_size] * c, span[3] * c,
                                    blocked // lanes, taps, bias, k, s_size, row_taps, r_size, width * c,
                                    span[4] * c)
        else:
            depthwise_grad_span_f64(pixels + lo * k, k, hi - lo, x + cols[lo * s_size] * c, span[3] * c,
                                    blocked // lanes, taps, bias, k, s_size, row_taps, r_size, width * c,
                                    span[4] * c)
    for ow in range(out_w):
        first = blocked if lo <= ow < hi else 0
        for j in range(first, k):
            bias[j] += pixels[ow * k + j]
        if first < k:
            for r in range(r_size):
                if row_taps[r] >= 0:
                    for s in range(s_size):
                        if cols[ow * s_size + s] >= 0:
                            src = x + (row_taps[r] * width + cols[ow * s_size + s]) * c + first
                            add_products(taps + (r * s_size + s) * k + first, pixels + ow * k + first, src,
                                         c - first, m)


def channelwise_grad_w(const floating[::1] dy, const floating[::1] x, floating[:, ::1] dw_parts,
                       const long long[:, ::1] rows, const long long[:, ::1] cols, Py_ssize_t images,
                       Py_ssize_t height, Py_ssize_t width, Py_ssize_t c):
    """dw_parts[t] (r*s + 1, k): chunk t of the (image, output row) pairs' share of dy * x (r*s rows) and of dy
    (the last), one chunk per thread."""
    cdef Py_ssize_t out_h = rows.shape[0], out_w = cols.shape[0], jobs = images * out_h, chunks = dw_parts.shape[0]
    cdef Py_ssize_t k = dw_parts.shape[1] // (rows.shape[1] * cols.shape[1] + 1), t, job, i
    cdef Py_ssize_t span[5]
    regular_span(&cols[0, 0], out_w, cols.shape[1], span)
    for t in prange(chunks, nogil=True, schedule="static", num_threads=chunks):
        for i in range(dw_parts.shape[1]):
            dw_parts[t, i] = 0
        for job in range(jobs * t // chunks, jobs * (t + 1) // chunks):
            grad_w_row(&dy[0] + job * out_w * k, &dw_parts[t, 0], &x[0] + job // out_h * height * width * c,
                       &rows[job % out_h, 0], &cols[0, 0], rows.shape[1], cols.shape[1], out_w, width, c, k // c,
                       span)


cdef void channelwise_gather_row(const floating *dy, const floating *filters, floating *dx,
                                 const long long *row_sources, const long long *col_sources, Py_ssize_t r_size,
                                 Py_ssize_t s_size, Py_ssize_t width, Py_ssize_t out_w, Py_ssize_t c,
                                 Py_ssize_t m) noexcept nogil:
    """One input row of one image, dx (width, c): each cell the sum over the taps that read it of
    filters (r, s, k) * dy (out_h, out_w, k) over its m output channels; row_sources (r_size,) and col_sources
    (width, s_size) the output row and column reading it by each tap (-1 where none)."""
    cdef Py_ssize_t iw, r, s, ch, j, k = c * m
    cdef const floating *tap
    cdef const floating *src
    cdef floating acc
    for iw in range(width):
        for ch in range(c):
            dx[ch] = 0
        for r in range(r_size):
            if row_sources[r] >= 0:
                for s in range(s_size):
                    if col_sources[iw * s_size + s] >= 0:
                        src = dy + (row_sources[r] * out_w + col_sources[iw * s_size + s]) * k
                        tap = filters + (r * s_size + s) * k
                        for ch in range(c):
                            acc = 0
                            for j in range(ch * m, (ch + 1) * m):
                                acc = acc + tap[j] * src[j]
                            dx[ch] += acc
        dx += c


def channelwise_grad_x(const floating[::1] dy, const floating[::1] filters, floating[::1] dx,
                       const long long[:, ::1] row_sources, const long long[:, ::1] col_sources, Py_ssize_t images,
                       Py_ssize_t out_h, Py_ssize_t out_w, Py_ssize_t c, int num_threads):
    """dx (n, h, w, c) from dy (n, out_h, out_w, k) with several output channels per input channel (k = m*c, m > 1;
    with one, the grad of x is channelwise_forward on the source tables); (image, input row) pairs in num_threads
    chunks, every dx cell written once."""
    cdef Py_ssize_t h = row_sources.shape[0], width = col_sources.shape[0], k = filters.shape[0] // (
        row_sources.shape[1] * col_sources.shape[1])
    cdef Py_ssize_t jobs = images * h, t, job
    for t in prange(num_threads, nogil=True, schedule="static", num_threads=num_threads):
        for job in range(jobs * t // num_threads, jobs * (t + 1) // num_threads):
            channelwise_gather_row(&dy[0] + job // h * out_h * out_w * k, &filters[0], &dx[0] + job * width * c,
                                   &row_sources[job % h, 0], &col_sources[0, 0], row_sources.shape[1],
                                   col_sources.shape[1], width, out_w, c, k // c)


cdef inline void six_rows(const floating *s, Py_ssize_t step, const floating **rows) noexcept nogil:
    """rows[e] = s + e*step for e < 6: the rows a Winograd transform reads."""
    cdef Py_ssize_t e
    for e in range(6):
        rows[e] = s + e * step


cdef void winograd_bt(const floating *s, Py_ssize_t step, floating *d, Py_ssize_t d_step,
                      Py_ssize_t count) noexcept nogil:
    """d[i*d_step + c] = sum_e BT[i, e] s[e*step + c] for c < count: F(4x4, 3x3)'s BT (6 -> 6 rows), written out."""
    cdef const floating *r[6]
    cdef floating two = 2, four = 4, five = 5  # typed: a literal would compute in double
    cdef Py_ssize_t t
    six_rows(s, step, r)
    for t in range(count):
        d[t] = four * r[0][t] - five * r[2][t] + r[4][t]
    d += d_step
    for t in range(count):
        d[t] = (r[3][t] + r[4][t]) - four * (r[1][t] + r[2][t])
    d += d_step
    for t in range(count):
        d[t] = (r[4][t] - r[3][t]) + four * (r[1][t] - r[2][t])
    d += d_step
    for t in range(count):
        d[t] = (r[4][t] - r[2][t]) + two * (r[3][t] - r[1][t])
    d += d_step
    for t in range(count):
        d[t] = (r[4][t] - r[2][t]) - two * (r[3][t] - r[1][t])
    d += d_step
    for t in range(count):
        d[t] = four * r[1][t] - five * r[3][t] + r[5][t]


cdef void winograd_at(const floating *s, Py_ssize_t step, floating *d, Py_ssize_t d_step, Py_ssize_t count,
                      const floating *bias) noexcept nogil:
    """d[i*d_step + c] = sum_e AT[i, e] s[e*step + c] (+ bias[c] unless bias is NULL) for c < count: F(4x4, 3x3)'s
    AT (6 -> 4 rows), written out."""
    cdef const floating *r[6]
    cdef floating *d0 = d
    cdef floating *d1 = d + d_step
    cdef floating *d2 = d + 2 * d_step
    cdef floating *d3 = d + 3 * d_step
    cdef floating two = 2, four = 4, eight = 8  # typed: a literal would compute in double
    cdef Py_ssize_t t
    six_rows(s, step, r)
    for t in range(count):
        d0[t] = r[0][t] + r[1][t] + r[2][t] + r[3][t] + r[4][t]
    for t in range(count):
        d1[t] = (r[1][t] - r[2][t]) + two * (r[3][t] - r[4][t])
    for t in range(count):
        d2[t] = (r[1][t] + r[2][t]) + four * (r[3][t] + r[4][t])
    for t in range(count):
        d3[t] = (r[1][t] - r[2][t]) + eight * (r[3][t] - r[4][t]) + r[5][t]
    if bias != NULL:
        for t in range(count):
            d0[t] += bias[t]
            d1[t] += bias[t]
            d2[t] += bias[t]
            d3[t] += bias[t]


cdef void winograd_input_tile(const floating *x, Py_ssize_t n, Py_ssize_t h0, Py_ssize_t w0, Py_ssize_t height,
                              Py_ssize_t width, Py_ssize_t c, floating *u, Py_ssize_t plane, floating *patch,
                              floating *half) noexcept nogil:
    """u[p*plane : p*plane + c] = U[p] (p < 36) of the tile whose patch starts at x[n, h0, w0]: BT along the
    patch's columns into half (36, c), then along its rows. A patch not inside x is gathered into patch first."""
    cdef Py_ssize_t a, b, i, h, w
    cdef const floating *src
    if 0 <= h0 and h0 + 6 <= height and 0 <= w0 and w0 + 6 <= width:
        src = x + ((n * height + h0) * width + w0) * c
        for b in range(6):
            winograd_bt(src + b * c, width * c, half + b * c, 6 * c, c)
    else:
        for a in range(6):
            for b in range(6):
                h, w = h0 + a, w0 + b
                if 0 <= h < height and 0 <= w < width:
                    src = x + ((n * height + h) * width + w) * c
                    for i in range(c):
                        patch[(a * 6 + b) * c + i] = src[i]
                else:
                    fill(patch + (a * 6 + b) * c, c, 0)
        for b in range(6):
            winograd_bt(patch + b * c, 6 * c, half + b * c, 6 * c, c)
    for a in range(6):
        winograd_bt(half + a * 6 * c, c, u + a * 6 * plane, plane, c)


cdef void winograd_output_tile(const floating *mm, Py_ssize_t plane, const floating *bias, floating *y,
                               Py_ssize_t n, Py_ssize_t oh0, Py_ssize_t ow0, Py_ssize_t out_h, Py_ssize_t out_w,
                               Py_ssize_t k, floating *half, floating *tile_out) noexcept nogil:
    """y[n, oh0:oh0+4, ow0:ow0+4] (clipped to y) = AT M AT^T + bias, M[p] at mm[p*plane : p*plane + k]: AT across
    the rows of M into half (24, k), then along them, into y in place or through tile_out (16, k) at y's border."""
    cdef Py_ssize_t b, i, j, q
    cdef floating *dst
    for b in range(6):
        winograd_at(mm + b * plane, 6 * plane, half + b * k, 6 * k, k, NULL)
    if oh0 + 4 <= out_h and ow0 + 4 <= out_w:
        dst = y + ((n * out_h + oh0) * out_w + ow0) * k
        for i in range(4):
            winograd_at(half + i * 6 * k, k, dst + i * out_w * k, k, k, bias)
        return
    for i in range(4):
        winograd_at(half + i * 6 * k, k, tile_out + i * 4 * k, k, k, bias)
    for i in range(min(4, out_h - oh0)):
        for j in range(min(4, out_w - ow0)):
            dst = y + ((n * out_h + oh0 + i) * out_w + ow0 + j) * k
            for q in range(k):
                dst[q] = tile_out[(i * 4 + j) * k + q]


cdef void winograd_blocks(const floating *x, const floating *v, const floating *bias, floating *y,
                          Py_ssize_t n_images, Py_ssize_t height, Py_ssize_t width, Py_ssize_t out_h,
                          Py_ssize_t out_w, Py_ssize_t pad_top, Py_ssize_t pad_left, Py_ssize_t c, Py_ssize_t k,
                          Py_ssize_t block_tiles, Py_ssize_t first_block, Py_ssize_t block_step, floating *u,
                          Py_ssize_t u_plane, floating *mm, Py_ssize_t m_plane, floating *patch, floating *half,
                          floating *tile_out) noexcept nogil:
    """Blocks first_block, first_block + block_step, ... of block_tiles tiles: transformed into u, multiplied into
    mm (36 GEMMs (tiles x c) @ (c x k) with V[p] (k, c)), transformed back into y."""
    cdef Py_ssize_t tiles_h = (out_h + 3) // 4, tiles_w = (out_w + 3) // 4
    cdef Py_ssize_t tiles = n_images * tiles_h * tiles_w
    cdef Py_ssize_t blocks = (tiles + block_tiles - 1) // block_tiles
    cdef Py_ssize_t i, first, count, q, tile, p
    for i in range((blocks - first_block + block_step - 1) // block_step):
        first = (first_block + i * block_step) * block_tiles
        count = min(block_tiles, tiles - first)
        for q in range(count):
            tile = first + q
            winograd_input_tile(x, tile // (tiles_h * tiles_w), tile // tiles_w % tiles_h * 4 - pad_top,
                                tile % tiles_w * 4 - pad_left, height, width, c, u + q * c, u_plane, patch, half)
        for p in range(36):
            gemm(False, True, <int>count, <int>k, <int>c, 1, u + p * u_plane, <int>c, v + p * k * c, <int>c, 0,
                 mm + p * m_plane, <int>k)
        for q in range(count):
            tile = first + q
            winograd_output_tile(mm + q * k, m_plane, bias, y, tile // (tiles_h * tiles_w),
                                 tile // tiles_w % tiles_h * 4, tile % tiles_w * 4, out_h, out_w, k, half, tile_out)


def winograd_forward(const floating[::1] x, const floating[:, :, ::1] v, const floating[::1] bias,
                     floating[::1] y, Py_ssize_t n_images, Py_ssize_t height, Py_ssize_t width, Py_ssize_t out_h,
                     Py_ssize_t out_w, Py_ssize_t pad_top, Py_ssize_t pad_left, Py_ssize_t block_tiles,
                     floating[:, ::1] us, floating[:, ::1] mms, floating[:, ::1] patches, floating[:, ::1] halves,
                     floating[:, ::1] tile_outs):
    """y (n*out_h*out_w*k,) from x (n*h*w*c,) and V (36, k, c) by Winograd F(4x4, 3x3) in blocks of block_tiles
    tiles, one chunk of blocks per thread with its buffers (fastconv.backends._winograd_nhwc)."""
    cdef Py_ssize_t chunks = us.shape[0], t
    for t in prange(chunks, nogil=True, schedule="static", num_threads=chunks):
        winograd_blocks(&x[0], &v[0, 0, 0], &bias[0], &y[0], n_images, height, width, out_h, out_w, pad_top,
                        pad_left, v.shape[2], v.shape[1], block_tiles, t, chunks, &us[t, 0], us.shape[1] // 36,
                        &mms[t, 0], mms.shape[1] // 36, &patches[t, 0], &halves[t, 0], &tile_outs[t, 0])
