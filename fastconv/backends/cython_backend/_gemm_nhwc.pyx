"""Im2col + GEMM convolution on channels-last float32/float64 arrays, GIL released: the kernels of
fastconv.backends._gemm_nhwc (see there for the method, its tiles and chunks).

Shapes (one ConvShape p): x and dx (n, h, w, c), filters (k, r, s, cg) (w re-laid; (r, s, cg, k) for the grad of
x by tap), y and dy (n*out_h*out_w, k) as rows of output pixels. Row i of a tile's columns (pixels, r*s*cg) holds
the taps of output pixel p0 + i, each its group's cg contiguous channels of x (zeros in the padding); laid by tap
(by_tap) they are (r*s*cg, pixels) instead. scipy's BLAS, single-threaded inside the parallel loops, writes each
group's block of y in place (row stride k) and accumulates each thread's partial dw^T (r*s*cg, k).
"""

from cython cimport floating
from cython.parallel cimport prange

from ._blas cimport gemm
from ._common cimport ConvShape, fill, valid_span


cdef void tile_taps(floating *dst, const floating *src, bint to_x, const ConvShape *p, Py_ssize_t group,
                    Py_ssize_t p0, Py_ssize_t pixels) noexcept nogil:
    """Between x (n, h, w, c) and a tile's columns (pixels, r*s*cg) for output pixels p0.., one group: with
    to_x, dst is x and src the columns, added at the cells they read (the adjoint); else dst = the columns,
    copied from src = x, zeros in the padding."""
    cdef Py_ssize_t cg = p.c // p.groups, row = p.r * p.s * cg, i, r, s, j, ih, iw0, lo, hi
    cdef Py_ssize_t steps, span, at_x, at_col
    # the slices of one input row's taps follow each other in x (dilation 1, one group): one run per row
    cdef bint adjacent = p.dilation_w * p.c == cg
    cdef Py_ssize_t n = p0 // (p.out_h * p.out_w), oh = p0 // p.out_w % p.out_h, ow = p0 % p.out_w
    for i in range(pixels):
        iw0 = ow * p.stride_w - p.pad_left
        if iw0 >= 0 and iw0 + (p.s - 1) * p.dilation_w < p.w:  # every tap inside: no division
            lo, hi = 0, p.s
        else:
            valid_span(iw0, p.dilation_w, p.w, p.s, &lo, &hi)
        steps = 1 if adjacent else hi - lo
        span = (hi - lo) * cg if adjacent else cg
        for r in range(p.r):
            at_col = i * row + r * p.s * cg
            ih = oh * p.stride_h + r * p.dilation_h - p.pad_top
            if ih < 0 or ih >= p.h:
                if not to_x:
                    fill(dst + at_col, p.s * cg, 0)
                continue
            if not to_x:
                fill(dst + at_col, lo * cg, 0)
                fill(dst + at_col + hi * cg, (p.s - hi) * cg, 0)
            for s in range(lo, lo + steps):
                at_x = ((n * p.h + ih) * p.w + iw0 + s * p.dilation_w) * p.c + group * cg
                if to_x:
                    for j in range(span):
                        dst[at_x + j] += src[at_col + s * cg + j]
                else:
                    for j in range(span):
                        dst[at_col + s * cg + j] = src[at_x + j]
        ow += 1
        if ow == p.out_w:  # the next output row, or image
            ow = 0
            oh += 1
            if oh == p.out_h:
                oh = 0
                n += 1


cdef void tile_taps_by_tap(floating *dst, const floating *src, bint to_x, const ConvShape *p, Py_ssize_t group,
                           Py_ssize_t p0, Py_ssize_t pixels) noexcept nogil:
    """As tile_taps, with the columns laid tap by tap, (r*s*cg, pixels): each tap's row holds the runs of output
    row segments of the tile, read from x at a step of stride_w*c."""
    cdef Py_ssize_t cg = p.c // p.groups, step = p.stride_w * p.c, r, s, c, lo, hi, i, count, n, oh, ow, ih, a, b, o
    cdef Py_ssize_t at_col, at_x
    for r in range(p.r):
        for s in range(p.s):
            valid_span(s * p.dilation_w - p.pad_left, p.stride_w, p.w, p.out_w, &lo, &hi)
            for c in range(cg):
                at_col = ((r * p.s + s) * cg + c) * pixels
                n, oh, ow = p0 // (p.out_h * p.out_w), p0 // p.out_w % p.out_h, p0 % p.out_w
                i = 0
                while i < pixels:  # one output row's segment at a time: [ow, ow + count) of row oh, image n
                    count = min(p.out_w - ow, pixels - i)
                    ih = oh * p.stride_h + r * p.dilation_h - p.pad_top
                    a = min(max(lo, ow), ow + count)
                    b = max(min(hi, ow + count), a)
                    if ih < 0 or ih >= p.h:
                        a = b = ow
                    at_x = ((n * p.h + ih) * p.w + s * p.dilation_w - p.pad_left) * p.c + group * cg + c
                    if to_x and step == 1:  # unit steps apart: loops the compiler vectorizes
                        for o in range(a, b):
                            dst[at_x + o] += src[at_col + i + o - ow]
                    elif to_x:
                        for o in range(a, b):
                            dst[at_x + o * step] += src[at_col + i + o - ow]
                    else:
                        fill(dst + at_col + i, a - ow, 0)
                        fill(dst + at_col + i + b - ow, ow + count - b, 0)
                        if step == 1:
                            for o in range(a, b):
                                dst[at_col + i + o - ow] = src[at_x + o]
                        else:
                            for o in range(a, b):
                                dst[at_col + i + o - ow] = src[at_x + o * step]
                    i += count
                    ow = 0
                    oh += 1
                    if oh == p.out_h:
                        oh = 0
                        n += 1


cdef inline void move_taps(floating *dst, const floating *src, bint to_x, const ConvShape *p, Py_ssize_t group,
                           Py_ssize_t p0, Py_ssize_t pixels, bint by_tap) noexcept nogil:
    """tile_taps, or tile_taps_by_tap when by_tap."""
    if by_tap:
        tile_taps_by_tap(dst, src, to_x, p, group, p0, pixels)
    else:
        tile_taps(dst, src, to_x, p, group, p0, pixels)


cdef void forward_chunk(const floating *x, const floating *filters, const floating *bias, floating *y,
                        floating *col, const ConvShape *p, Py_ssize_t p0, Py_ssize_t p1, Py_ssize_t tile,
                        bint by_tap) noexcept nogil:
    """y rows p0:p1 (k each), tile after tile: each group's columns @ filters[group]^T, plus the bias (if not
    NULL) while the tile is in cache."""
    cdef Py_ssize_t cg = p.c // p.groups, kg = p.k // p.groups, row = p.r * p.s * cg, size, group, i, kk
    while p0 < p1:
        size = min(tile, p1 - p0)
        for group in range(p.groups):
            move_taps(col, x, False, p, group, p0, size, by_tap)
            gemm(by_tap, True, <int>size, <int>kg, <int>row, 1, col, <int>(size if by_tap else row),
                 filters + group * kg * row, <int>row, 0, y + p0 * p.k + group * kg, <int>p.k)
        if bias != NULL:
            for i in range(p0, p0 + size):
                for kk in range(p.k):
                    y[i * p.k + kk] += bias[kk]
        p0 += tile


cdef void grad_w_chunk(const floating *dy, const floating *x, floating *partial, floating *col, const ConvShape *p,
                       Py_ssize_t p0, Py_ssize_t p1, Py_ssize_t tile, bint by_tap) noexcept nogil:
    """partial (r*s*cg, k) = the sum over dy rows p0:p1, tile after tile, of each group's columns^T @ dy block."""
    cdef Py_ssize_t cg = p.c // p.groups, kg = p.k // p.groups, row = p.r * p.s * cg, size, group
    fill(partial, p.k * row, 0)
    while p0 < p1:
        size = min(tile, p1 - p0)
        for group in range(p.groups):
            move_taps(col, x, False, p, group, p0, size, by_tap)
            gemm(not by_tap, False, <int>row, <int>kg, <int>size, 1, col, <int>(size if by_tap else row),
                 dy + p0 * p.k + group * kg, <int>p.k, 1, partial + group * kg, <int>p.k)
        p0 += tile


cdef void grad_x_chunk(const floating *dy, const floating *filters, floating *dx, floating *col,
                       const ConvShape *p, Py_ssize_t p0, Py_ssize_t p1, Py_ssize_t tile, bint by_tap) noexcept nogil:
    """dx += the adjoint of the columns of dy rows p0:p1, tile after tile: each group's dy block @ filters[group]
    (by tap: its transpose)."""
    cdef Py_ssize_t cg = p.c // p.groups, kg = p.k // p.groups, row = p.r * p.s * cg, size, group
    while p0 < p1:
        size = min(tile, p1 - p0)
        for group in range(p.groups):
            if by_tap:  # dcolumns^T = filters[group]^T @ dy block^T, the filters laid (r*s*cg, k)
                gemm(False, True, <int>row, <int>size, <int>kg, 1, filters + group * kg, <int>p.k,
                     dy + p0 * p.k + group * kg, <int>p.k, 0, col, <int>size)
            else:
                gemm(False, False, <int>size, <int>row, <int>kg, 1, dy + p0 * p.k + group * kg, <int>p.k,
                     filters + group * kg * row, <int>row, 0, col, <int>row)
            move_taps(dx, col, True, p, group, p0, size, by_tap)
        p0 += tile


def forward(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] filters, const floating[::1] b,
            floating[:, ::1] y, floating[:, ::1] columns, ConvShape p, bint by_tap, int num_threads):
    """y (n*out_h*out_w, k) from x and the filters, plus b (None: no bias); thread t takes chunk t of the pixels;
    columns laid tap by tap when by_tap."""
    cdef const floating *bias = &b[0] if b is not None else NULL
    cdef Py_ssize_t pixels = y.shape[0], tile = columns.shape[1] // (p.r * p.s * (p.c // p.groups)), t
    for t in prange(num_threads, nogil=True, schedule="static", num_threads=num_threads):
        forward_chunk(&x[0, 0, 0, 0], &filters[0, 0, 0, 0], bias, &y[0, 0], &columns[t, 0], &p,
                      pixels * t // num_threads, pixels * (t + 1) // num_threads, tile, by_tap)


def grad_w(const floating[:, ::1] dy, const floating[:, :, :, ::1] x, floating[:, :, ::1] partial,
           floating[:, ::1] columns, ConvShape p, bint by_tap, int num_threads):
    """partial[t] (r*s*cg, k): chunk t of the pixels' share of dw^T, one chunk per thread."""
    cdef Py_ssize_t pixels = dy.shape[0], tile = columns.shape[1] // partial.shape[1], t
    for t in prange(num_threads, nogil=True, schedule="static", num_threads=num_threads):
        grad_w_chunk(&dy[0, 0], &x[0, 0, 0, 0], &partial[t, 0, 0], &columns[t, 0], &p, pixels * t // num_threads,
                     pixels * (t + 1) // num_threads, tile, by_tap)


def grad_x(const floating[:, ::1] dy, const floating[:, :, :, ::1] filters, floating[:, :, :, ::1] dx,
           floating[:, :, :, :, ::1] dx_parts, floating[:, ::1] columns, ConvShape p, bint by_tap, int num_threads):
    """dx (n, h, w, c) from dy and the filters ((r, s, cg, k) when by_tap): thread t adds its chunk's columns into
    dx, its chunk being whole images; with fewer images than threads, chunks of pixels, thread t > 0 into its
    zeroed dx_parts[t - 1] (summed by the caller; None otherwise)."""
    cdef Py_ssize_t pixels = dy.shape[0], images = dx.shape[0], image = dx.shape[1] * dx.shape[2] * dx.shape[3]
    cdef Py_ssize_t tile = columns.shape[1] // (p.r * p.s * (p.c // p.groups)), t, n0, n1
    cdef bint shared = images < num_threads
    cdef floating *target
    for t in prange(num_threads, nogil=True, schedule="static", num_threads=num_threads):
        if shared:
            target = &dx[0, 0, 0, 0] if t == 0 else &dx_parts[t - 1, 0, 0, 0, 0]
            fill(target, images * image, 0)
            grad_x_chunk(&dy[0, 0], &filters[0, 0, 0, 0], target, &columns[t, 0], &p, pixels * t // num_threads,
                         pixels * (t + 1) // num_threads, tile, by_tap)
        else:
            n0 = images * t // num_threads
            n1 = images * (t + 1) // num_threads
            fill(&dx[0, 0, 0, 0] + n0 * image, (n1 - n0) * image, 0)
            grad_x_chunk(&dy[0, 0], &filters[0, 0, 0, 0], &dx[0, 0, 0, 0], &columns[t, 0], &p,
                         pixels * n0 // images, pixels * n1 // images, tile, by_tap)
