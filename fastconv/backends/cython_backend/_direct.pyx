"""Direct convolution for one input channel per group (cg = c/groups == 1: depthwise, or a single-channel
image), float32/float64 NCHW arrays, GIL released.

Shapes (one ConvShape p): x (n, c, h, w), w (k, 1, r, s), y and dy (n, k, out_h, out_w); output channel k reads
x[:, k // kg] with kg = k/groups. Work items are (image, channel) planes, or output channels for the grad of w;
the inner loops run along a row, so that the compiler vectorizes them. A thread copies each plane of x it reads
into its zero-padded plane (``planes``), so that every tap covers whole output rows.
"""

from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.string cimport memcpy

from ._common cimport ConvShape, fill, pad_rows, total, valid_span


cdef inline Py_ssize_t padded_rows(const ConvShape *p) noexcept nogil:
    """Rows of x the windows read, padding included: the height of a padded plane."""
    return (p.out_h - 1) * p.stride_h + (p.r - 1) * p.dilation_h + 1


cdef inline Py_ssize_t padded_cols(const ConvShape *p) noexcept nogil:
    return (p.out_w - 1) * p.stride_w + (p.s - 1) * p.dilation_w + 1


cdef inline void pad_plane(const floating *xc, floating *xp, const ConvShape *p) noexcept nogil:
    """xp (padded_rows, padded_cols)[a, b] = xc (h, w)[a - pad_top, b - pad_left], zero outside xc."""
    pad_rows(xc, xp, 0, padded_rows(p), padded_cols(p), p)


cdef void forward_plane(const floating *xc, const floating *wk, floating bias, floating *yk, floating *xp,
                        const ConvShape *p) noexcept nogil:
    """yk (out_h, out_w) = bias + sum_{i,j} wk[i, j] * xc[oh*sh + i*dh - pt, ow*sw + j*dw - pl].

    xc is first copied into the zero-padded plane xp, so that every tap covers whole output rows; a kernel
    row of three taps (the common 3x3) updates an output row in one pass.
    """
    cdef Py_ssize_t cols = padded_cols(p), oh, ow, i, j, sw = p.stride_w, dw = p.dilation_w
    cdef floating w0, w1, w2
    cdef floating *row
    cdef const floating *src
    pad_plane(xc, xp, p)
    fill(yk, p.out_h * p.out_w, bias)
    for oh in range(p.out_h):
        row = yk + oh * p.out_w
        for i in range(p.r):
            src = xp + (oh * p.stride_h + i * p.dilation_h) * cols
            if p.s == 3:
                w0, w1, w2 = wk[i * 3], wk[i * 3 + 1], wk[i * 3 + 2]
                for ow in range(p.out_w):
                    row[ow] += w0 * src[ow * sw] + w1 * src[ow * sw + dw] + w2 * src[ow * sw + 2 * dw]
                continue
            for j in range(p.s):
                w0 = wk[i * p.s + j]
                for ow in range(p.out_w):
                    row[ow] += w0 * src[ow * sw + j * dw]


def forward(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] w, const floating[::1] b,
            floating[:, :, :, ::1] y, floating[:, ::1] planes, ConvShape p, int num_threads):
    """y (n, k, out_h, out_w) = conv(x, w) + b (b may be None), one (image, output channel) plane per work item.

    planes (threads, padded_rows * padded_cols): each thread's padded plane of x.
    """
    cdef Py_ssize_t kg = p.k // p.groups, item, n, k
    cdef const floating *bias = &b[0] if b is not None else NULL
    for item in prange(p.n * p.k, nogil=True, schedule="static", num_threads=num_threads):
        n = item // p.k
        k = item % p.k
        forward_plane(&x[n, k // kg, 0, 0], &w[k, 0, 0, 0], bias[k] if bias != NULL else 0, &y[n, k, 0, 0],
                      &planes[threadid(), 0], &p)


cdef void grad_x_plane(const floating *dyk, const floating *wk, floating *dxc, const ConvShape *p) noexcept nogil:
    """dxc (h, w) += the adjoint of forward_plane applied to dyk (out_h, out_w)."""
    cdef Py_ssize_t oh, ow, i, j, ih, iw0, lo, hi
    cdef floating wv
    cdef const floating *row
    cdef floating *dst
    for i in range(p.r):
        for j in range(p.s):
            wv = wk[i * p.s + j]
            iw0 = j * p.dilation_w - p.pad_left
            valid_span(iw0, p.stride_w, p.w, p.out_w, &lo, &hi)
            for oh in range(p.out_h):
                ih = oh * p.stride_h + i * p.dilation_h - p.pad_top
                if ih < 0 or ih >= p.h:
                    continue
                row = dyk + oh * p.out_w
                dst = dxc + ih * p.w + iw0
                if p.stride_w == 1:
                    for ow in range(lo, hi):
                        dst[ow] += wv * row[ow]
                else:
                    for ow in range(lo, hi):
                        dst[ow * p.stride_w] += wv * row[ow]


def grad_x(const floating[:, :, :, ::1] dy, const floating[:, :, :, ::1] w, floating[:, :, :, ::1] dx,
           ConvShape p, int num_threads):
    """dx (n, c, h, w), one (image, input channel) plane per work item, summed over the channel's kg outputs."""
    cdef Py_ssize_t kg = p.k // p.groups, item, n, c, kk
    for item in prange(p.n * p.c, nogil=True, schedule="static", num_threads=num_threads):
        n = item // p.c
        c = item % p.c
        fill(&dx[n, c, 0, 0], p.h * p.w, 0)
        for kk in range(kg):
            grad_x_plane(&dy[n, c * kg + kk, 0, 0], &w[c * kg + kk, 0, 0, 0], &dx[n, c, 0, 0], &p)


cdef void grad_w_channel(const floating *dy, const floating *x, floating *dwk, floating *dbk, floating *acc,
                         floating *xp, const ConvShape *p, Py_ssize_t k) noexcept nogil:
    """dwk (r, s) = sum_{n, oh, ow} dy[n, k, oh, ow] * x[n, k // kg, oh*sh + i*dh - pt, ow*sw + j*dw - pl],
    and dbk[0] = sum of dy[:, k] unless dbk is NULL.

    acc (r*s + 1, out_w): per-tap row accumulators (the last for the bias), so that the inner loop is a
    vectorizable multiply-add; xp: a padded plane (see pad_plane).
    """
    cdef Py_ssize_t kg = p.k // p.groups, cols = padded_cols(p), taps = p.r * p.s
    cdef Py_ssize_t n, oh, ow, i, j, sw = p.stride_w, dw = p.dilation_w
    cdef const floating *row
    cdef const floating *src
    cdef floating *a
    cdef floating *bias_row = acc + taps * p.out_w
    fill(acc, (taps + 1) * p.out_w, 0)
    for n in range(p.n):
        pad_plane(x + (n * p.c + k // kg) * p.h * p.w, xp, p)
        for oh in range(p.out_h):
            row = dy + ((n * p.k + k) * p.out_h + oh) * p.out_w
            for ow in range(p.out_w):
                bias_row[ow] += row[ow]
            for i in range(p.r):
                src = xp + (oh * p.stride_h + i * p.dilation_h) * cols
                for j in range(p.s):
                    a = acc + (i * p.s + j) * p.out_w
                    for ow in range(p.out_w):
                        a[ow] += row[ow] * src[ow * sw + j * dw]
    for i in range(taps):
        dwk[i] = <floating>total(acc + i * p.out_w, p.out_w)
    if dbk != NULL:
        dbk[0] = <floating>total(bias_row, p.out_w)


def grad_w(const floating[:, :, :, ::1] dy, const floating[:, :, :, ::1] x, floating[:, :, :, ::1] dw,
           floating[::1] db, floating[:, ::1] sums, floating[:, ::1] planes, ConvShape p, int num_threads):
    """dw (k, 1, r, s) and db (k,) (unless None), one output channel per work item.

    sums (threads, (r*s + 1) * out_w): each thread's row accumulators; planes as in forward.
    """
    cdef Py_ssize_t k
    cdef floating *dbp = &db[0] if db is not None else NULL
    for k in prange(p.k, nogil=True, schedule="static", num_threads=num_threads):
        grad_w_channel(&dy[0, 0, 0, 0], &x[0, 0, 0, 0], &dw[k, 0, 0, 0], dbp + k if dbp != NULL else NULL,
                       &sums[threadid(), 0], &planes[threadid(), 0], &p, k)


# -----------------------------------------------------------------------------------------------------------------
# polyphase: whole-plane loops over phase (or shifted) planes (fastconv.backends._polyphase); params (sh, sw, top,
# left, hq, wq, shifts, dw)


cdef void copy_phases(floating *plane, floating *phases, Py_ssize_t height, Py_ssize_t width,
                      const long long *params, bint into_phases) noexcept nogil:
    """plane (height, width) <-> its cells of the phase planes (padding cells untouched): into the phases when
    into_phases, else back out of them. Phase by phase: phase (a, b) holds rows i0, i0 + sh, ... and columns
    j0, j0 + sw, ... of the plane (i0 = (a - top) mod sh), one phase row per plane row taken, so that no row
    costs a division; at unit column stride a row is one memcpy (small maps copy many short rows)."""
    cdef Py_ssize_t sh = params[0], sw = params[1], top = params[2], left = params[3], hq = params[4]
    cdef Py_ssize_t wq = params[5], a, b, i0, j0, m, q, rows, count
    cdef floating *cells
    cdef floating *inputs
    for a in range(sh):
        i0 = ((a - top) % sh + sh) % sh
        rows = (height - i0 + sh - 1) // sh if height > i0 else 0
        for b in range(sw):
            j0 = ((b - left) % sw + sw) % sw
            count = (width - j0 + sw - 1) // sw if width > j0 else 0
            cells = phases + (a * sw + b) * hq * wq + (i0 + top) // sh * wq + (j0 + left) // sw
            inputs = plane + i0 * width + j0
            for q in range(rows):
                if sw == 1 and into_phases:
                    memcpy(cells, inputs, count * sizeof(floating))
                elif sw == 1:
                    memcpy(inputs, cells, count * sizeof(floating))
                elif into_phases:
                    for m in range(count):
                        cells[m] = inputs[m * sw]
                else:
                    for m in range(count):
                        inputs[m * sw] = cells[m]
                cells += wq
                inputs += sh * width


cdef inline void zero_columns(floating *cells, Py_ssize_t height, Py_ssize_t width, Py_ssize_t lo,
                              Py_ssize_t hi) noexcept nogil:
    """cells (height, width)[:, :lo] = cells[:, hi:] = 0, a column at a time (a few columns of many short rows)."""
    cdef Py_ssize_t i, m
    for m in range(lo):
        for i in range(height):
            cells[i * width + m] = 0
    for m in range(hi, width):
        for i in range(height):
            cells[i * width + m] = 0


cdef void copy_shifted(floating *plane, floating *planes, Py_ssize_t height, Py_ssize_t width,
                       const long long *params, bint into_planes) noexcept nogil:
    """plane (height, width) <-> the shifted planes (hq rows of pitch width; padding rows untouched): plane j holds
    the padded plane shifted left by d = j*dw - left columns, one flat copy of the whole input plane, its cells
    past the row ends (read from the side padding) zero. Into the planes when into_planes; else the sum of the
    planes' cells inside the input is written to it (the adjoint: their padding cells are zeroed first)."""
    cdef Py_ssize_t top = params[2], left = params[3], hq = params[4], shifts = params[6], dw = params[7]
    cdef Py_ssize_t size = height * width, j, d, lo, hi, skip, i
    cdef floating *cells
    if not into_planes:
        fill(plane, size, 0)
    for j in range(shifts):
        d = j * dw - left
        if d >= width or -d >= width:
            continue  # every cell of this plane is padding
        cells = planes + (j * hq + top) * width
        lo, hi = max(-d, 0), min(width - d, width)  # the columns of the plane inside the input
        skip = max(d, 0)  # cell i of the plane (from cells + lo) is cell skip + i of the input plane
        if into_planes:
            memcpy(cells + lo, plane + skip, (size - lo - skip) * sizeof(floating))
        zero_columns(cells, height, width, lo, hi)
        if not into_planes:
            for i in range(size - lo - skip):
                plane[skip + i] += cells[lo + i]


cdef inline void copy_planes(floating *plane, floating *planes, Py_ssize_t height, Py_ssize_t width,
                             const long long *params, bint into_planes) noexcept nogil:
    """copy_shifted or copy_phases, as the layout says."""
    if params[6]:
        copy_shifted(plane, planes, height, width, params, into_planes)
    else:
        copy_phases(plane, planes, height, width, params, into_planes)


cdef inline void rows_on_pitch(floating *rows, const floating *plane, Py_ssize_t out_h, Py_ssize_t out_w,
                               Py_ssize_t wq) noexcept nogil:
    """rows[oh*wq + ow] = plane[oh*out_w + ow] (columns past out_w keep their zeros)."""
    cdef Py_ssize_t oh, ow
    for oh in range(out_h):
        for ow in range(out_w):
            rows[oh * wq + ow] = plane[oh * out_w + ow]


cdef inline const floating *rows_read(const floating *plane, floating *rows, Py_ssize_t rows_cells,
                                      Py_ssize_t out_h, Py_ssize_t out_w, Py_ssize_t wq) noexcept nogil:
    """A dy plane (out_h, out_w) as the taps read it: the plane itself for shifted planes (rows_cells 0, the
    same pitch), else copied into rows on pitch wq (rows_on_pitch)."""
    if rows_cells == 0:
        return plane
    rows_on_pitch(rows, plane, out_h, out_w, wq)
    return rows


cdef inline double dot(const floating *a, const floating *b, Py_ssize_t count) noexcept nogil:
    """Sum of a[i] * b[i] for i < count, with eight partial sums (so that it vectorizes without -ffast-math)."""
    cdef floating acc[8]
    cdef Py_ssize_t i, j
    cdef double result = 0
    for j in range(8):
        acc[j] = 0
    for i in range(0, count - 7, 8):
        for j in range(8):
            acc[j] += a[i + j] * b[i + j]
    for i in range(count - count % 8, count):
        result += a[i] * b[i]
    for j in range(8):
        result += acc[j]
    return result


cdef enum:
    DOT_LANES = 16  # partial sums per tap in nine_dots: a vector of float32 (two of float64)


cdef inline void add_partials(floating *total, const floating *partial, double tail) noexcept nogil:
    """total[0] += tail + the DOT_LANES partial sums, added in halves (vector adds), not one after another: on 7x7
    maps, nine taps' chains of sixteen dependent adds cost more than the products."""
    cdef floating half[8]  # DOT_LANES / 2
    cdef Py_ssize_t i
    for i in range(8):
        half[i] = partial[i] + partial[i + 8]
    for i in range(4):
        half[i] += half[i + 4]
    total[0] += <floating>(tail + ((half[0] + half[2]) + (half[1] + half[3])))


cdef void nine_dots(floating *sums, const floating *rows, const floating *phases,
                    const unsigned long long *offsets, Py_ssize_t cells) noexcept nogil:
    """sums[j] += the dot product of rows and the cells of tap j (a 3x3 kernel, the common case), for j < 9, and
    sums[9] += the sum of rows, in one pass over rows (dot takes one per tap): each sum gathers DOT_LANES partial
    sums in a local array, which the compiler keeps in a register."""
    cdef const floating *p[9]
    cdef floating a0[DOT_LANES]
    cdef floating a1[DOT_LANES]
    cdef floating a2[DOT_LANES]
    cdef floating a3[DOT_LANES]
    cdef floating a4[DOT_LANES]
    cdef floating a5[DOT_LANES]
    cdef floating a6[DOT_LANES]
    cdef floating a7[DOT_LANES]
    cdef floating a8[DOT_LANES]
    cdef floating a9[DOT_LANES]
    cdef Py_ssize_t i, l, body = cells - cells % DOT_LANES, tail = cells % DOT_LANES
    cdef floating r
    for i in range(9):
        p[i] = phases + offsets[i]
    for l in range(DOT_LANES):
        a0[l] = a1[l] = a2[l] = a3[l] = a4[l] = a5[l] = a6[l] = a7[l] = a8[l] = a9[l] = 0
    for i in range(0, body, 16):  # DOT_LANES (a literal, for Cython's C loop)
        for l in range(DOT_LANES):
            r = rows[i + l]
            a0[l] += r * p[0][i + l]
            a1[l] += r * p[1][i + l]
            a2[l] += r * p[2][i + l]
            a3[l] += r * p[3][i + l]
            a4[l] += r * p[4][i + l]
            a5[l] += r * p[5][i + l]
            a6[l] += r * p[6][i + l]
            a7[l] += r * p[7][i + l]
            a8[l] += r * p[8][i + l]
            a9[l] += r
    rows += body
    add_partials(sums, a0, dot(rows, p[0] + body, tail))
    add_partials(sums + 1, a1, dot(rows, p[1] + body, tail))
    add_partials(sums + 2, a2, dot(rows, p[2] + body, tail))
    add_partials(sums + 3, a3, dot(rows, p[3] + body, tail))
    add_partials(sums + 4, a4, dot(rows, p[4] + body, tail))
    add_partials(sums + 5, a5, dot(rows, p[5] + body, tail))
    add_partials(sums + 6, a6, dot(rows, p[6] + body, tail))
    add_partials(sums + 7, a7, dot(rows, p[7] + body, tail))
    add_partials(sums + 8, a8, dot(rows, p[8] + body, tail))
    add_partials(sums + 9, a9, total(rows, tail))


cdef inline void nine_taps(floating *acc, const floating *phases, const unsigned long long *offsets,
                           const floating *w, floating bias, Py_ssize_t cells) noexcept nogil:
    """acc[i] = bias + the nine taps (a 3x3 kernel, the common case) in one vectorized pass: no read-modify-write
    of acc per tap."""
    cdef const floating *p[9]
    cdef Py_ssize_t i
    for i in range(9):
        p[i] = phases + offsets[i]
    for i in range(cells):
        acc[i] = (bias + w[0] * p[0][i] + w[1] * p[1][i] + w[2] * p[2][i] + w[3] * p[3][i] + w[4] * p[4][i]
                  + w[5] * p[5][i] + w[6] * p[6][i] + w[7] * p[7][i] + w[8] * p[8][i])


cdef inline Py_ssize_t rows_size(const long long *params, Py_ssize_t out_h) noexcept nogil:
    """Cells of a chunk's output (or dy) rows on pitch wq at the end of its scratch: none for shifted planes, whose
    pitch is the output's (it is read and written in place)."""
    return 0 if params[6] else out_h * params[5]


def polyphase_forward(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] w, const floating[::1] bias,
                      floating[:, :, :, ::1] y, const long long[::1] params, const unsigned long long[::1] offsets,
                      floating[:, ::1] scratch, int num_threads):
    """y (n, k, out_h, out_w) from x (n, c, h, w), w (k, 1, r, s), bias (k,); planes (image, k) split into
    contiguous chunks, one per row of scratch (phase planes, then output rows on pitch wq; or shifted planes)."""
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], width = x.shape[3], k = w.shape[0]
    cdef Py_ssize_t taps = w.shape[2] * w.shape[3], out_h = y.shape[2], out_w = y.shape[3], wq = params[5]
    cdef Py_ssize_t cells = out_h * wq, chunks = scratch.shape[0], size = scratch.shape[1]
    cdef Py_ssize_t rows = rows_size(&params[0], out_h), t, plane, first, last, kk, j, i, oh, ow
    cdef floating *phases
    cdef floating *acc
    cdef floating *out
    cdef const floating *src
    cdef floating tap
    for t in prange(chunks, nogil=True, schedule="static", num_threads=num_threads):
        phases = &scratch[t, 0]
        fill(phases, size - rows, 0)
        first = n * k * t // chunks
        last = n * k * (t + 1) // chunks
        for plane in range(first, last):
            kk = plane % k
            out = &y[plane // k, kk, 0, 0]
            acc = phases + size - rows if rows else out
            copy_planes(<floating *>&x[plane // k, kk // (k // c), 0, 0], phases, h, width, &params[0], True)
            if taps == 9:
                nine_taps(acc, phases, &offsets[0], &w[kk, 0, 0, 0], bias[kk], cells)
            else:
                fill(acc, cells, bias[kk])
                for j in range(taps):
                    tap = w[kk, 0, j // w.shape[3], j % w.shape[3]]
                    src = phases + offsets[j]
                    for i in range(cells):
                        acc[i] += tap * src[i]
            if rows:
                for oh in range(out_h):
                    for ow in range(out_w):
                        out[oh * out_w + ow] = acc[oh * wq + ow]


def polyphase_grad_w(const floating[:, :, :, ::1] dy, const floating[:, :, :, ::1] x, floating[:, :, ::1] dw_parts,
                     const long long[::1] params, const unsigned long long[::1] offsets, floating[:, ::1] scratch,
                     int num_threads):
    """dw_parts (chunks, k, r*s + 1): each chunk's share of dW from dy (n, k, out_h, out_w) and x (n, c, h, w),
    then of db (read from dy as it passes)."""
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], width = x.shape[3], k = dy.shape[1]
    cdef Py_ssize_t taps = dw_parts.shape[2] - 1, out_h = dy.shape[2], out_w = dy.shape[3], wq = params[5]
    cdef Py_ssize_t cells = out_h * wq, chunks = scratch.shape[0], size = scratch.shape[1]
    cdef Py_ssize_t rows_cells = rows_size(&params[0], out_h), t, plane, first, last, kk, j
    cdef floating *phases
    cdef const floating *rows
    for t in prange(chunks, nogil=True, schedule="static", num_threads=num_threads):
        phases = &scratch[t, 0]
        fill(phases, size, 0)
        fill(&dw_parts[t, 0, 0], k * (taps + 1), 0)
        first = n * k * t // chunks
        last = n * k * (t + 1) // chunks
        for plane in range(first, last):
            kk = plane % k
            copy_planes(<floating *>&x[plane // k, kk // (k // c), 0, 0], phases, h, width, &params[0], True)
            rows = rows_read(&dy[plane // k, kk, 0, 0], phases + size - rows_cells, rows_cells, out_h, out_w, wq)
            if taps == 9:
                nine_dots(&dw_parts[t, kk, 0], rows, phases, &offsets[0], cells)
                continue
            for j in range(taps):
                dw_parts[t, kk, j] += <floating>dot(rows, phases + offsets[j], cells)
            dw_parts[t, kk, taps] += <floating>total(rows, cells)


def polyphase_grad_x(const floating[:, :, :, ::1] dy, const floating[:, :, :, ::1] w, floating[:, :, :, ::1] dx,
                     const long long[::1] params, const unsigned long long[::1] offsets, floating[:, ::1] scratch,
                     int num_threads):
    """dx (n, c, h, w) from dy (n, k, out_h, out_w) and w (k, 1, r, s): input planes (image, c) split into
    chunks, each plane gathering its kg output channels in its phase (or shifted) planes."""
    cdef Py_ssize_t n = dx.shape[0], c = dx.shape[1], h = dx.shape[2], width = dx.shape[3], k = w.shape[0]
    cdef Py_ssize_t kg = k // c, taps = w.shape[2] * w.shape[3], out_h = dy.shape[2], out_w = dy.shape[3]
    cdef Py_ssize_t wq = params[5], cells = out_h * wq, chunks = scratch.shape[0], size = scratch.shape[1]
    cdef Py_ssize_t rows_cells = rows_size(&params[0], out_h), t, plane, first, last, kk, j, i
    cdef floating *phases
    cdef const floating *rows
    cdef floating *dst
    cdef floating tap
    for t in prange(chunks, nogil=True, schedule="static", num_threads=num_threads):
        phases = &scratch[t, 0]
        fill(phases + size - rows_cells, rows_cells, 0)
        first = n * c * t // chunks
        last = n * c * (t + 1) // chunks
        for plane in range(first, last):
            fill(phases, size - rows_cells, 0)
            for kk in range((plane % c) * kg, (plane % c + 1) * kg):
                rows = rows_read(&dy[plane // c, kk, 0, 0], phases + size - rows_cells, rows_cells, out_h, out_w,
                                 wq)
                for j in range(taps):
                    tap = w[kk, 0, j // w.shape[3], j % w.shape[3]]
                    dst = phases + offsets[j]
                    for i in range(cells):
                        dst[i] += tap * rows[i]
            copy_planes(&dx[plane // c, plane % c, 0, 0], phases, h, width, &params[0], False)
