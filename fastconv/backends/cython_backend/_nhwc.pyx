"""Kernels on channels-last (n, h, w, c) float32/float64 arrays, GIL released: pooling, depthwise and 1x1 convolution.

Pooling: each window cell is a run of c contiguous channels, the innermost loop (it vectorizes); work items are
(image, output row) pairs forward and (image, input row) pairs backward. rows (out_h, 2) and cols (out_w, 2) hold
each window's [start, stop) clipped to the input (PoolGeometry.window_bounds); row_cover (h, 2) and col_cover
(w, 2) the [first, stop) windows holding each input row and column (PoolGeometry.covering_ranges). Ties go to the
first maximum in row-major window order and a NaN wins, as in _pool.pyx; built without -ffast-math for that.

Depthwise convolution (one input channel per group; fastconv.backends._channelwise_nhwc has the tables): output
rows accumulate their taps along the channels; the grad of x gathers per input row, the grad of w sums per thread.

1x1 convolution (stride 1, unpadded, one group): x (p, c) and y (p, k) over all p = n*h*w pixels, w (k, c);
each thread runs one GEMM on its chunk of rows (scipy's BLAS, single-threaded inside the parallel loop).
"""

from cython cimport floating
from cython.parallel cimport prange

from ._blas cimport gemm


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
    cdef Py_ssize_t o, i
    for i in range(cells):
        dx[i] = 0
    for o in range(outputs):
        dx[index[o] * c + o % c] += dy[o]


def max_backward_scatter(const floating[:, :, :, ::1] dy, const long long[:, :, :, ::1] indices,
                         floating[:, :, :, ::1] dx, int num_threads):
    """dx (n, h, w, c) = zeros plus each dy (n, out_h, out_w, c) at the cell its index names, images in
    parallel (windows in order, so overlapping windows add up as the gather adds them)."""
    cdef Py_ssize_t outputs = dy.shape[1] * dy.shape[2] * dy.shape[3], cells = dx.shape[1] * dx.shape[2] * dx.shape[3]
    cdef Py_ssize_t image
    for image in prange(dx.shape[0], nogil=True, schedule="static", num_threads=num_threads):
        scatter_image(&dy[0, 0, 0, 0] + image * outputs, &indices[0, 0, 0, 0] + image * outputs,
                      &dx[0, 0, 0, 0] + image * cells, outputs, cells, dx.shape[3])


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


cdef void channelwise_row(floating *pixels, floating *taps, const floating *x, const long long *row_taps,
                          const long long *cols, Py_ssize_t r_size, Py_ssize_t s_size, Py_ssize_t out_w,
                          Py_ssize_t width, Py_ssize_t c, Py_ssize_t m, bint into_taps) noexcept nogil:
    """One output row of one image: pixels (out_w, k) and x the image (h, width, c); row_taps (r_size,) and cols
    (out_w, s_size) the input row and column of each tap (-1 in the padding). Adds taps (r, s, k) * x into the
    pixels (forward) or pixels * x into the taps (grad of w)."""
    cdef Py_ssize_t ow, r, s, k = c * m
    cdef const floating *src
    for ow in range(out_w):
        for r in range(r_size):
            if row_taps[r] >= 0:
                for s in range(s_size):
                    if cols[ow * s_size + s] >= 0:
                        src = x + (row_taps[r] * width + cols[ow * s_size + s]) * c
                        if into_taps:
                            add_products(taps + (r * s_size + s) * k, pixels + ow * k, src, c, m)
                        else:
                            add_products(pixels + ow * k, taps + (r * s_size + s) * k, src, c, m)


def channelwise_forward(const floating[::1] x, const floating[::1] filters, const floating[::1] bias,
                        floating[::1] y, const long long[:, ::1] rows, const long long[:, ::1] cols,
                        Py_ssize_t images, Py_ssize_t height, Py_ssize_t width, Py_ssize_t c, int num_threads):
    """y (n, out_h, out_w, k) from x (n, height, width, c) and filters (r, s, k); (image, output row) pairs in
    num_threads chunks."""
    cdef Py_ssize_t out_h = rows.shape[0], out_w = cols.shape[0], k = bias.shape[0], jobs = images * out_h
    cdef Py_ssize_t t, job, i, j
    for t in prange(num_threads, nogil=True, schedule="static", num_threads=num_threads):
        for job in range(jobs * t // num_threads, jobs * (t + 1) // num_threads):
            for i in range(job * out_w, (job + 1) * out_w):
                for j in range(k):
                    y[i * k + j] = bias[j]
            channelwise_row(&y[0] + job * out_w * k, <floating *>&filters[0], &x[0] + job // out_h * height * width * c,
                            &rows[job % out_h, 0], &cols[0, 0], rows.shape[1], cols.shape[1], out_w, width, c,
                            k // c, False)


def channelwise_grad_w(const floating[::1] dy, const floating[::1] x, floating[:, ::1] dw_parts,
                       const long long[:, ::1] rows, const long long[:, ::1] cols, Py_ssize_t images,
                       Py_ssize_t height, Py_ssize_t width, Py_ssize_t c):
    """dw_parts[t] (r, s, k): chunk t of the (image, output row) pairs' share of dy * x, one chunk per thread."""
    cdef Py_ssize_t out_h = rows.shape[0], out_w = cols.shape[0], k = dw_parts.shape[1] // (rows.shape[1] * cols.shape[1])
    cdef Py_ssize_t jobs = images * out_h, chunks = dw_parts.shape[0], t, job, i
    for t in prange(chunks, nogil=True, schedule="static", num_threads=chunks):
        for i in range(dw_parts.shape[1]):
            dw_parts[t, i] = 0
        for job in range(jobs * t // chunks, jobs * (t + 1) // chunks):
            channelwise_row(<floating *>&dy[0] + job * out_w * k, &dw_parts[t, 0],
                            &x[0] + job // out_h * height * width * c, &rows[job % out_h, 0], &cols[0, 0],
                            rows.shape[1], cols.shape[1], out_w, width, c, k // c, True)


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
                        if m == 1:
                            for ch in range(c):
                                dx[ch] += tap[ch] * src[ch]
                        else:
                            for ch in range(c):
                                acc = 0
                                for j in range(ch * m, (ch + 1) * m):
                                    acc = acc + tap[j] * src[j]
                                dx[ch] += acc
        dx += c


def channelwise_grad_x(const floating[::1] dy, const floating[::1] filters, floating[::1] dx,
                       const long long[:, ::1] row_sources, const long long[:, ::1] col_sources, Py_ssize_t images,
                       Py_ssize_t out_h, Py_ssize_t out_w, Py_ssize_t c, int num_threads):
    """dx (n, h, w, c) from dy (n, out_h, out_w, k); (image, input row) pairs in num_threads chunks, every dx
    cell written once."""
    cdef Py_ssize_t h = row_sources.shape[0], width = col_sources.shape[0], k = filters.shape[0] // (
        row_sources.shape[1] * col_sources.shape[1])
    cdef Py_ssize_t jobs = images * h, t, job
    for t in prange(num_threads, nogil=True, schedule="static", num_threads=num_threads):
        for job in range(jobs * t // num_threads, jobs * (t + 1) // num_threads):
            channelwise_gather_row(&dy[0] + job // h * out_h * out_w * k, &filters[0], &dx[0] + job * width * c,
                                   &row_sources[job % h, 0], &col_sources[0, 0], row_sources.shape[1],
                                   col_sources.shape[1], width, out_w, c, k // c)
