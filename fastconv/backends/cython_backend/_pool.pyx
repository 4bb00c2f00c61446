"""Max and average pooling kernels (forward and backward) for float32/float64 NCHW arrays, GIL released.

One work item is one (image, channel) plane. A window starts at (oh*sh - pad_top, ow*sw - pad_left), is
clipped to the padded input and reads only its cells inside x. Average pooling divides by a table of divisors
(out_h, out_w) from PoolGeometry.avg_divisor(). Built without -ffast-math: max pooling relies on IEEE
comparisons for NaN propagation.

Pooling forward of a plane of at most FLAT_OUTPUTS outputs whose windows all lie inside it runs each tap over all
the plane's windows at once (max_plane_flat, avg_plane_flat; channels-last planes too, their cells C apart). Row
by row, rows of a few outputs ran mostly in the vector loops' scalar remainders, where the NaN-aware select
compiles to branches that random data mispredicts (VGG-16's 2x2 max pool of 8x512x14x14: 2.74 -> 0.58 ms;
AlexNet's 3x3/2 of 8x256x13x13: 1.51 -> 0.43 ms).
"""

from cython cimport floating
from cython.parallel cimport prange, threadid

from ._common cimport fill, total


cdef struct PoolShape:
    Py_ssize_t n, c, h, w, kh, kw
    Py_ssize_t stride_h, stride_w, pad_top, pad_bottom, pad_left, pad_right
    Py_ssize_t out_h, out_w


cdef inline void window(Py_ssize_t o, Py_ssize_t stride, Py_ssize_t kernel, Py_ssize_t pad_before,
                        Py_ssize_t size, Py_ssize_t pad_after, Py_ssize_t *lo, Py_ssize_t *hi) noexcept nogil:
    """[lo, hi): the input cells of window o along one axis (the window clipped to the padded input, then to
    the input)."""
    cdef Py_ssize_t start = o * stride - pad_before
    lo[0] = max(start, 0)
    hi[0] = min(min(start + kernel, size + pad_after), size)


cdef inline void interior(Py_ssize_t stride, Py_ssize_t kernel, Py_ssize_t pad_before, Py_ssize_t size,
                          Py_ssize_t count, Py_ssize_t *lo, Py_ssize_t *hi) noexcept nogil:
    """[lo, hi): the windows o in [0, count) lying entirely inside the input along one axis."""
    cdef Py_ssize_t first = (pad_before + stride - 1) // stride, end = 0
    if size + pad_before >= kernel:
        end = min((size + pad_before - kernel) // stride + 1, count)
    lo[0] = min(first, end)
    hi[0] = end


cdef inline bint inside(const PoolShape *p) noexcept nogil:
    """Whether every window lies inside the input (none reaches into the padding)."""
    cdef Py_ssize_t lo, hi
    interior(p.stride_h, p.kh, p.pad_top, p.h, p.out_h, &lo, &hi)
    if lo != 0 or hi != p.out_h:
        return False
    interior(p.stride_w, p.kw, p.pad_left, p.w, p.out_w, &lo, &hi)
    return lo == 0 and hi == p.out_w


cdef inline void max_window(const floating *x, floating *y, long long *index, const PoolShape *p,
                            Py_ssize_t h0, Py_ssize_t h1, Py_ssize_t ow) noexcept nogil:
    """y[ow], index[ow] of one window in rows h0:h1: its first maximum, or its first NaN."""
    cdef Py_ssize_t ih, iw, w0, w1, best_at
    cdef floating best, v
    window(ow, p.stride_w, p.kw, p.pad_left, p.w, p.pad_right, &w0, &w1)
    best_at = h0 * p.w + w0
    best = x[best_at]
    for ih in range(h0, h1):
        for iw in range(w0, w1):
            v = x[ih * p.w + iw]
            # once best is NaN it stays; otherwise a larger value or a NaN replaces it
            if best == best and not (v <= best):
                best = v
                best_at = ih * p.w + iw
    y[ow] = best
    index[ow] = best_at


cdef void max_plane(const floating *x, floating *y, long long *index, const PoolShape *p) noexcept nogil:
    """y, index (out_h, out_w) of one plane x (h, w).

    Windows inside the input along w are updated a whole output row at a time, tap after tap in row-major
    window order (a vectorizable select), the others one by one.
    """
    cdef Py_ssize_t oh, ow, ih, j, h0, h1, lo, hi, at
    cdef floating *yrow
    cdef long long *irow
    cdef const floating *src
    cdef floating v, best
    cdef bint take
    interior(p.stride_w, p.kw, p.pad_left, p.w, p.out_w, &lo, &hi)
    for oh in range(p.out_h):
        window(oh, p.stride_h, p.kh, p.pad_top, p.h, p.pad_bottom, &h0, &h1)
        yrow = y + oh * p.out_w
        irow = index + oh * p.out_w
        for ow in range(lo):
            max_window(x, yrow, irow, p, h0, h1, ow)
        for ow in range(hi, p.out_w):
            max_window(x, yrow, irow, p, h0, h1, ow)
        for ow in range(lo, hi):
            at = h0 * p.w + ow * p.stride_w - p.pad_left
            yrow[ow] = x[at]
            irow[ow] = at
        for ih in range(h0, h1):
            for j in range(p.kw):
                at = ih * p.w + j - p.pad_left
                src = x + at
                for ow in range(lo, hi):
                    v = src[ow * p.stride_w]
                    best = yrow[ow]
                    take = (best == best) & (not (v <= best))  # as in max_window, without branches
                    yrow[ow] = v if take else best
                    irow[ow] = at + ow * p.stride_w if take else irow[ow]


cdef enum:
    FLAT_OUTPUTS = 256  # outputs of a plane small enough for the flat loops' local arrays (16x16)


cdef Py_ssize_t window_starts(int *start, const PoolShape *p) noexcept nogil:
    """start[o]: the first cell of window o of a plane whose windows all lie inside it, the last repeated up to
    a whole block of 8 (an AVX2 vector of float32, half an AVX-512 one: 6x6 outputs padded to 40 took 0.88x the
    time of 48); returns that padded count."""
    cdef Py_ssize_t outputs = p.out_h * p.out_w, padded = (outputs + 7) // 8 * 8, o, oh, ow
    for oh in range(p.out_h):
        for ow in range(p.out_w):
            start[oh * p.out_w + ow] = <int>((oh * p.stride_h - p.pad_top) * p.w + ow * p.stride_w - p.pad_left)
    for o in range(outputs, padded):
        start[o] = start[outputs - 1]
    return padded


cdef void max_plane_flat(const floating *x, floating *y, long long *index, const PoolShape *p,
                         Py_ssize_t step) noexcept nogil:
    """y, index (out_h, out_w) of one plane x (h, w) whose windows all lie inside it (flat_applies), all outputs
    at once: for each tap, one loop over every window of the plane (a gather of its cells), not one short loop
    per output row. The plane's cells, and its outputs, lie `step` elements apart (1 in NCHW, C channels-last).
    Offsets are 32-bit (twice the lanes of a gather); the loops run over whole blocks of 8 (window_starts)."""
    cdef int start[FLAT_OUTPUTS]
    cdef int at[FLAT_OUTPUTS]
    cdef floating best[FLAT_OUTPUTS]
    cdef Py_ssize_t padded = window_starts(start, p), o, i, j
    cdef int shift, stride = <int>step
    cdef floating v, b
    cdef bint take
    for o in range(padded):
        best[o] = x[start[o] * stride]
        at[o] = start[o]
    for i in range(p.kh):
        for j in range(p.kw):
            if i == 0 and j == 0:
                continue
            shift = <int>(i * p.w + j)
            for o in range(padded):
                v = x[(start[o] + shift) * stride]
                b = best[o]
                take = (b == b) & (not (v <= b))  # as in max_window, without branches
                best[o] = v if take else b
                at[o] = start[o] + shift if take else at[o]
    for o in range(p.out_h * p.out_w):
        y[o * step] = best[o]
        index[o * step] = at[o]


cdef void avg_plane_flat(const floating *x, floating *y, const floating *divisor, const PoolShape *p,
                         Py_ssize_t step) noexcept nogil:
    """y (out_h, out_w) of one plane x (h, w) whose windows all lie inside it, all outputs at once, as
    max_plane_flat; divisor (out_h, out_w)."""
    cdef int start[FLAT_OUTPUTS]
    cdef floating acc[FLAT_OUTPUTS]
    cdef Py_ssize_t padded = window_starts(start, p), o, i, j
    cdef int shift, stride = <int>step
    for o in range(padded):
        acc[o] = 0
    for i in range(p.kh):
        for j in range(p.kw):
            shift = <int>(i * p.w + j)
            for o in range(padded):
                acc[o] += x[(start[o] + shift) * stride]
    for o in range(p.out_h * p.out_w):
        y[o * step] = acc[o] / divisor[o]


cdef bint flat_applies(const PoolShape *p) noexcept nogil:
    """Whether the flat loops (max_plane_flat, avg_plane_flat) take p's planes: at most FLAT_OUTPUTS outputs,
    every window inside the input, offsets (of C-channel cells) within 32 bits."""
    return p.out_h * p.out_w <= FLAT_OUTPUTS and p.h * p.w * p.c < (<Py_ssize_t>1) << 31 and inside(p)


def max_forward(const floating[:, :, :, ::1] x, floating[:, :, :, ::1] y, long long[:, :, :, ::1] indices,
                PoolShape p, int num_threads):
    """y, indices (n, c, out_h, out_w) from x (n, c, h, w); indices are flat h*w positions in the plane."""
    cdef Py_ssize_t plane
    cdef bint flat = flat_applies(&p)
    for plane in prange(p.n * p.c, nogil=True, schedule="static", num_threads=num_threads):
        if flat:
            max_plane_flat(&x[0, 0, 0, 0] + plane * p.h * p.w, &y[0, 0, 0, 0] + plane * p.out_h * p.out_w,
                           &indices[0, 0, 0, 0] + plane * p.out_h * p.out_w, &p, 1)
        else:
            max_plane(&x[0, 0, 0, 0] + plane * p.h * p.w, &y[0, 0, 0, 0] + plane * p.out_h * p.out_w,
                      &indices[0, 0, 0, 0] + plane * p.out_h * p.out_w, &p)


def planes_apply(PoolShape p) -> bool:
    """Whether max_forward_planes and avg_forward_planes take p: see flat_applies."""
    return flat_applies(&p)


def max_forward_planes(const floating[:, :, :, ::1] x, floating[:, :, :, ::1] y, long long[:, :, :, ::1] indices,
                       PoolShape p, int num_threads):
    """y, indices (n, out_h, out_w, c) from channels-last x (n, h, w, c), where planes_apply(p): each channel of
    each image a plane of cells c apart, by max_plane_flat; indices are flat h*w positions in the image."""
    cdef Py_ssize_t plane, image, channel
    for plane in prange(p.n * p.c, nogil=True, schedule="static", num_threads=num_threads):
        image = plane // p.c
        channel = plane % p.c
        max_plane_flat(&x[image, 0, 0, channel], &y[image, 0, 0, channel], &indices[image, 0, 0, channel], &p, p.c)


cdef void scatter_plane(const floating *grad, const long long *at, floating *dst, Py_ssize_t outputs,
                        Py_ssize_t size) noexcept nogil:
    """dst (size,) = zeros, plus each grad[o] at dst[at[o]] (o < outputs)."""
    cdef Py_ssize_t o, i
    for i in range(size):
        dst[i] = 0
    for o in range(outputs):
        dst[at[o]] += grad[o]


def max_backward(const floating[:, :, ::1] dy, const long long[:, :, ::1] indices, floating[:, :, ::1] dx,
                 int num_threads):
    """dx (planes, h*w) = zeros, plus each dy (planes, out_h*out_w) at the cell its index names."""
    cdef Py_ssize_t plane, size = dx.shape[2], outputs = dy.shape[2]
    for plane in prange(dx.shape[0] * dx.shape[1], nogil=True, schedule="static", num_threads=num_threads):
        scatter_plane(&dy[0, 0, 0] + plane * outputs, &indices[0, 0, 0] + plane * outputs,
                      &dx[0, 0, 0] + plane * size, outputs, size)


cdef bint in_pairs(const long long[::1] col_window) noexcept nogil:
    """Whether 2-wide windows tile the columns from the left: column iw belongs to window iw // 2."""
    cdef Py_ssize_t iw
    for iw in range(col_window.shape[0]):
        if col_window[iw] != iw // 2:
            return False
    return True


cdef inline floating avg_window(const floating *x, const PoolShape *p, Py_ssize_t h0, Py_ssize_t h1,
                                Py_ssize_t ow, floating divisor) noexcept nogil:
    """The sum of one window's cells in rows h0:h1, divided by its divisor."""
    cdef Py_ssize_t ih, iw, w0, w1
    cdef floating acc = 0
    window(ow, p.stride_w, p.kw, p.pad_left, p.w, p.pad_right, &w0, &w1)
    for ih in range(h0, h1):
        for iw in range(w0, w1):
            acc += x[ih * p.w + iw]
    return acc / divisor


cdef void avg_plane(const floating *x, floating *y, const floating *divisor, const PoolShape *p) noexcept nogil:
    """y (out_h, out_w) of one plane x (h, w); windows inside the input along w a whole row at a time."""
    cdef Py_ssize_t oh, ow, ih, j, h0, h1, lo, hi
    cdef floating *yrow
    cdef const floating *src
    cdef const floating *div
    interior(p.stride_w, p.kw, p.pad_left, p.w, p.out_w, &lo, &hi)
    for oh in range(p.out_h):
        window(oh, p.stride_h, p.kh, p.pad_top, p.h, p.pad_bottom, &h0, &h1)
        yrow = y + oh * p.out_w
        div = divisor + oh * p.out_w
        for ow in range(lo):
            yrow[ow] = avg_window(x, p, h0, h1, ow, div[ow])
        for ow in range(hi, p.out_w):
            yrow[ow] = avg_window(x, p, h0, h1, ow, div[ow])
        for ow in range(lo, hi):
            yrow[ow] = 0
        for ih in range(h0, h1):
            for j in range(p.kw):
                src = x + ih * p.w + j - p.pad_left
                for ow in range(lo, hi):
                    yrow[ow] += src[ow * p.stride_w]
        for ow in range(lo, hi):
            yrow[ow] = yrow[ow] / div[ow]


def avg_forward(const floating[:, :, :, ::1] x, const floating[:, ::1] divisor, floating[:, :, :, ::1] y,
                PoolShape p, int num_threads):
    """y (n, c, out_h, out_w) from x (n, c, h, w); divisor (out_h, out_w)."""
    cdef Py_ssize_t plane
    cdef bint flat = flat_applies(&p)
    for plane in prange(p.n * p.c, nogil=True, schedule="static", num_threads=num_threads):
        if flat:
            avg_plane_flat(&x[0, 0, 0, 0] + plane * p.h * p.w, &y[0, 0, 0, 0] + plane * p.out_h * p.out_w,
                           &divisor[0, 0], &p, 1)
        else:
            avg_plane(&x[0, 0, 0, 0] + plane * p.h * p.w, &y[0, 0, 0, 0] + plane * p.out_h * p.out_w,
                      &divisor[0, 0], &p)


def avg_forward_planes(const floating[:, :, :, ::1] x, const floating[:, ::1] divisor, floating[:, :, :, ::1] y,
                       PoolShape p, int num_threads):
    """y (n, out_h, out_w, c) from channels-last x (n, h, w, c), where planes_apply(p), plane by plane as
    max_forward_planes; divisor (out_h, out_w)."""
    cdef Py_ssize_t plane, image, channel
    for plane in prange(p.n * p.c, nogil=True, schedule="static", num_threads=num_threads):
        image = plane // p.c
        channel = plane % p.c
        avg_plane_flat(&x[image, 0, 0, channel], &y[image, 0, 0, channel], &divisor[0, 0], &p, p.c)


cdef void avg_backward_plane(const floating *dy, floating *dx, const floating *divisor, floating *row,
                             const PoolShape *p) noexcept nogil:
    """dx (h, w) of one plane: zeros plus, for each window, dy / divisor on each of its input cells. A window's
    cells are its rows times its columns, so each window row's shares are spread along one input row first
    (row, w), which is then added to each input row of the window row: one vector loop per input row, not one
    scalar add per window cell."""
    cdef Py_ssize_t oh, ow, ih, iw, h0, h1, w0, w1
    cdef floating share
    fill(dx, p.h * p.w, 0)
    for oh in range(p.out_h):
        window(oh, p.stride_h, p.kh, p.pad_top, p.h, p.pad_bottom, &h0, &h1)
        fill(row, p.w, 0)
        for ow in range(p.out_w):
            window(ow, p.stride_w, p.kw, p.pad_left, p.w, p.pad_right, &w0, &w1)
            share = dy[oh * p.out_w + ow] / divisor[oh * p.out_w + ow]
            for iw in range(w0, w1):
                row[iw] += share
        for ih in range(h0, h1):
            for iw in range(p.w):
                dx[ih * p.w + iw] += row[iw]


def avg_backward(const floating[:, :, :, ::1] dy, const floating[:, ::1] divisor, floating[:, :, :, ::1] dx,
                 floating[:, ::1] rows, PoolShape p, int num_threads):
    """dx (n, c, h, w) from dy (n, c, out_h, out_w) for overlapping windows; divisor (out_h, out_w); rows
    (threads, w): each thread's spread window row."""
    cdef Py_ssize_t plane
    for plane in prange(p.n * p.c, nogil=True, schedule="static", num_threads=num_threads):
        avg_backward_plane(&dy[0, 0, 0, 0] + plane * p.out_h * p.out_w, &dx[0, 0, 0, 0] + plane * p.h * p.w,
                           &divisor[0, 0], &rows[threadid(), 0], &p)


def avg_backward_disjoint(const floating[:, :, :, ::1] dy, const floating[:, ::1] divisor,
                          const long long[::1] row_window, const long long[::1] col_window,
                          floating[:, :, :, ::1] dx, floating[:, ::1] shares, floating[:, ::1] rows, int num_threads):
    """dx (n, c, h, w) from dy (n, c, out_h, out_w) when windows do not overlap: every dx element written once.

    divisor (out_h, out_w); row_window (h,) / col_window (w,): the window row / column covering each input row /
    column, -1 where none does. Per thread, built once per window row and copied to each input row under it:
    shares (threads, 1 + out_w), a zero (what a column in no window gets) then dy / divisor of the window row;
    rows (threads, w), the dx row they expand to.
    """
    cdef Py_ssize_t n = dx.shape[0], c = dx.shape[1], h = dx.shape[2], w = dx.shape[3]
    cdef Py_ssize_t out_h = dy.shape[2], out_w = dy.shape[3], plane, ih, iw, ow, oh, tid
    cdef bint pairs = in_pairs(col_window)  # then the expansion is a vectorizable interleave
    cdef const floating *grad
    cdef const long long *cols = &col_window[0]
    cdef floating *row
    cdef floating *share
    cdef floating *expanded
    for plane in prange(n * c, nogil=True, schedule="static", num_threads=num_threads):
        tid = threadid()
        shares[tid, 0] = 0
        share = &shares[tid, 1]  # share[-1] is that zero
        expanded = &rows[tid, 0]
        for ih in range(h):
            row = &dx[0, 0, 0, 0] + (plane * h + ih) * w
            oh = row_window[ih]
            if oh < 0:
                for iw in range(w):
                    row[iw] = 0
                continue
            if ih == 0 or row_window[ih - 1] != oh:
                grad = &dy[0, 0, 0, 0] + (plane * out_h + oh) * out_w
                for ow in range(out_w):
                    share[ow] = grad[ow] / divisor[oh, ow]
                iw = 0
                if pairs:
                    for ow in range(w // 2):
                        expanded[2 * ow] = share[ow]
                        expanded[2 * ow + 1] = share[ow]
                    iw = w - w % 2
                for iw in range(iw, w):
                    expanded[iw] = share[cols[iw]]
            for iw in range(w):
                row[iw] = expanded[iw]


def plane_means(const floating[:, ::1] x, floating[::1] y, floating divisor, int num_threads):
    """y (planes,) = the sum of each plane x (planes, h*w) / divisor: global average pooling, one contiguous sum
    per plane (eight partial sums) instead of a window loop."""
    cdef Py_ssize_t plane
    for plane in prange(x.shape[0], nogil=True, schedule="static", num_threads=num_threads):
        y[plane] = <floating>total(&x[plane, 0], x.shape[1]) / divisor


def plane_shares(const floating[::1] dy, floating[:, ::1] dx, floating scale, int num_threads):
    """dx (planes, h*w): every cell of a plane dy[plane] * scale (global average pooling's gradient)."""
    cdef Py_ssize_t plane
    for plane in prange(dx.shape[0], nogil=True, schedule="static", num_threads=num_threads):
        fill(&dx[plane, 0], dx.shape[1], dy[plane] * scale)
