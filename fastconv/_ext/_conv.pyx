# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Convolution kernels (forward, grad of x, grad of w) for float32/float64 NCHW arrays, GIL released.

Shapes (one ConvShape p): x (n, c, h, w), w (k, c/groups, r, s), y and dy (n, k, out_h, out_w).
Padding is implicit: a tap outside x reads zero. pad_top/pad_left may be negative (the grad of x at stride 1
runs as a forward convolution with padding dilation*(r-1) - pad).

Three families:
- GEMM kernels work on tiles of output rows of one image and one group: im2col of the tile into a per-thread
  workspace (col, (c/groups*r*s) x (rows*out_w)), then one BLAS call whose output is the tile of y in place
  (row stride out_h*out_w). A 1x1, stride-1, unpadded convolution skips im2col: the tile of x is the column
  matrix. Threads own work items (image, group, tile) and call BLAS single-threaded (the caller limits it).
- Direct kernels for c/groups == 1 (depthwise, and a single input channel): loops over (image, channel)
  planes whose inner loop runs along a row, so that the compiler vectorizes it.
- Winograd F(2x2, 3x3) for 3x3 stride-1 layers: transforms along rows, 16 GEMMs per block of tiles.
"""

from cython cimport floating
from cython.parallel cimport parallel, prange, threadid

from ._blas cimport gemm


cdef struct ConvShape:
    Py_ssize_t n, c, h, w, k, r, s
    Py_ssize_t stride_h, stride_w, dilation_h, dilation_w, pad_top, pad_left
    Py_ssize_t groups, out_h, out_w


cdef inline void valid_span(Py_ssize_t start, Py_ssize_t step, Py_ssize_t size, Py_ssize_t count,
                            Py_ssize_t *lo, Py_ssize_t *hi) noexcept nogil:
    """[lo, hi): the i in [0, count) with 0 <= start + i * step < size."""
    cdef Py_ssize_t first = 0, end = 0
    if start < 0:
        first = (-start + step - 1) // step
    if size > start:
        end = (size - start + step - 1) // step
    if end > count:
        end = count
    if first > end:
        first = end
    lo[0] = first
    hi[0] = end


cdef inline void fill(floating *a, Py_ssize_t count, floating value) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(count):
        a[i] = value


cdef inline double total(const floating *a, Py_ssize_t count) noexcept nogil:
    """Sum of a[0:count] with eight partial sums (the compiler may not reorder a plain sum loop)."""
    cdef floating acc[8]
    cdef Py_ssize_t i, j
    cdef double result = 0
    for j in range(8):
        acc[j] = 0
    for i in range(0, count - 7, 8):
        for j in range(8):
            acc[j] += a[i + j]
    for i in range(count - count % 8, count):
        result += a[i]
    for j in range(8):
        result += acc[j]
    return result


# ---------------------------------------------------------------------------------------------------------------
# im2col / col2im on a tile of output rows


cdef void im2col_rows(const floating *xg, floating *col, const ConvShape *p, Py_ssize_t cg,
                      Py_ssize_t oh0, Py_ssize_t oh1) noexcept nogil:
    """col[(c*r + i)*s + j, (oh - oh0)*out_w + ow] = xg[c, oh*sh + i*dh - pt, ow*sw + j*dw - pl] (0 outside).

    xg (cg, h, w): one image's channels of one group; col (cg*r*s, (oh1 - oh0)*out_w).
    """
    cdef Py_ssize_t c, i, j, oh, ow, ih, iw0, lo, hi
    cdef Py_ssize_t cols = (oh1 - oh0) * p.out_w
    cdef floating *dst
    cdef const floating *src
    for c in range(cg):
        for i in range(p.r):
            for j in range(p.s):
                dst = col + ((c * p.r + i) * p.s + j) * cols
                iw0 = j * p.dilation_w - p.pad_left
                valid_span(iw0, p.stride_w, p.w, p.out_w, &lo, &hi)
                for oh in range(oh0, oh1):
                    ih = oh * p.stride_h + i * p.dilation_h - p.pad_top
                    if ih < 0 or ih >= p.h:
                        fill(dst, p.out_w, 0)
                    else:
                        src = xg + (c * p.h + ih) * p.w + iw0
                        fill(dst, lo, 0)
                        if p.stride_w == 1:
                            for ow in range(lo, hi):
                                dst[ow] = src[ow]
                        else:
                            for ow in range(lo, hi):
                                dst[ow] = src[ow * p.stride_w]
                        fill(dst + hi, p.out_w - hi, 0)
                    dst += p.out_w


cdef void col2im_rows(const floating *col, floating *dxg, const ConvShape *p, Py_ssize_t cg,
                      Py_ssize_t oh0, Py_ssize_t oh1) noexcept nogil:
    """The adjoint of im2col_rows: dxg[c, ih, iw] += col[...] for every tap that read x[c, ih, iw]."""
    cdef Py_ssize_t c, i, j, oh, ow, ih, iw0, lo, hi
    cdef Py_ssize_t cols = (oh1 - oh0) * p.out_w
    cdef const floating *src
    cdef floating *dst
    for c in range(cg):
        for i in range(p.r):
            for j in range(p.s):
                src = col + ((c * p.r + i) * p.s + j) * cols
                iw0 = j * p.dilation_w - p.pad_left
                valid_span(iw0, p.stride_w, p.w, p.out_w, &lo, &hi)
                for oh in range(oh0, oh1):
                    ih = oh * p.stride_h + i * p.dilation_h - p.pad_top
                    if 0 <= ih < p.h:
                        dst = dxg + (c * p.h + ih) * p.w + iw0
                        if p.stride_w == 1:
                            for ow in range(lo, hi):
                                dst[ow] += src[ow]
                        else:
                            for ow in range(lo, hi):
                                dst[ow * p.stride_w] += src[ow]
                    src += p.out_w


cdef inline bint is_pointwise(const ConvShape *p) noexcept nogil:
    """1x1, stride 1, no padding: x of one image and group is already its own column matrix."""
    return (p.r == 1 and p.s == 1 and p.stride_h == 1 and p.stride_w == 1 and p.pad_top == 0
            and p.pad_left == 0 and p.out_h == p.h and p.out_w == p.w)


cdef inline const floating *columns(const floating *xg, floating *col, const ConvShape *p, Py_ssize_t cg,
                                    Py_ssize_t oh0, Py_ssize_t oh1, int *ld) noexcept nogil:
    """The column matrix of a tile of output rows: x itself (pointwise) or im2col into col; its row stride."""
    if is_pointwise(p):
        ld[0] = <int>(p.h * p.w)
        return xg + oh0 * p.w
    im2col_rows(xg, col, p, cg, oh0, oh1)
    ld[0] = <int>((oh1 - oh0) * p.out_w)
    return col


# ---------------------------------------------------------------------------------------------------------------
# GEMM kernels


cdef void forward_tile(const floating *x, const floating *w, const floating *b, floating *y, floating *col,
                       const ConvShape *p, Py_ssize_t n, Py_ssize_t gi, Py_ssize_t oh0,
                       Py_ssize_t oh1) noexcept nogil:
    """y[n, group gi, oh0:oh1, :] = w[group gi] (kg x cg*r*s) @ col (cg*r*s x tile) + b."""
    cdef Py_ssize_t cg = p.c // p.groups, kg = p.k // p.groups
    cdef Py_ssize_t crs = cg * p.r * p.s, ohw = p.out_h * p.out_w, cols = (oh1 - oh0) * p.out_w, kk
    cdef int ld
    cdef floating *yt = y + (n * p.k + gi * kg) * ohw + oh0 * p.out_w
    cdef const floating *cm = columns(x + (n * p.c + gi * cg) * p.h * p.w, col, p, cg, oh0, oh1, &ld)
    gemm(False, False, <int>kg, <int>cols, <int>crs, 1, w + gi * kg * crs, <int>crs, cm, ld, 0, yt, <int>ohw)
    if b != NULL:
        for kk in range(kg):
            add_scalar(yt + kk * ohw, cols, b[gi * kg + kk])


cdef inline void add_scalar(floating *a, Py_ssize_t count, floating value) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(count):
        a[i] += value


def forward_gemm(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] w, const floating[::1] b,
                 floating[:, :, :, ::1] y, floating[:, ::1] workspace, ConvShape p, Py_ssize_t tile_rows,
                 int num_threads):
    """y (n, k, out_h, out_w) = conv(x, w) + b, by tiles of tile_rows output rows; workspace (threads, col)."""
    cdef Py_ssize_t tiles = (p.out_h + tile_rows - 1) // tile_rows
    cdef Py_ssize_t items = p.n * p.groups * tiles, item, t, rest, tid
    cdef const floating *bias = &b[0] if b is not None else NULL
    cdef const floating *xp = &x[0, 0, 0, 0]
    cdef const floating *wp = &w[0, 0, 0, 0]
    cdef floating *yp = &y[0, 0, 0, 0]
    cdef floating *ws = &workspace[0, 0]
    cdef Py_ssize_t ws_stride = workspace.shape[1]
    tid = 0  # assigned again in each thread; set here so the compiler sees it initialized
    with nogil, parallel(num_threads=num_threads):
        tid = threadid()
        for item in prange(items, schedule="static"):
            t = item % tiles
            rest = item // tiles
            forward_tile(xp, wp, bias, yp, ws + tid * ws_stride, &p, rest // p.groups, rest % p.groups,
                         t * tile_rows, min((t + 1) * tile_rows, p.out_h))


def backward_weight_gemm(const floating[:, :, :, ::1] dy, const floating[:, :, :, ::1] x,
                         floating[:, :, ::1] dw_partial, floating[:, ::1] workspace, ConvShape p,
                         Py_ssize_t tile_rows, int num_threads):
    """dw_partial[thread] (k, cg*r*s) += dy tile (kg x tile) @ col^T, summed by the caller over threads.

    dw_partial must hold zeros on entry.
    """
    cdef Py_ssize_t tiles = (p.out_h + tile_rows - 1) // tile_rows
    cdef Py_ssize_t items = p.n * p.groups * tiles, item, t, rest, n, gi, oh0, oh1, tid
    cdef Py_ssize_t cg = p.c // p.groups, kg = p.k // p.groups
    cdef Py_ssize_t crs = cg * p.r * p.s, ohw = p.out_h * p.out_w
    cdef const floating *dyp = &dy[0, 0, 0, 0]
    cdef const floating *xp = &x[0, 0, 0, 0]
    cdef const floating *cm
    cdef floating *dwp = &dw_partial[0, 0, 0]
    cdef floating *ws = &workspace[0, 0]
    cdef Py_ssize_t ws_stride = workspace.shape[1], dw_stride = p.k * crs
    cdef int ld
    tid = 0  # assigned again in each thread; set here so the compiler sees it initialized
    with nogil, parallel(num_threads=num_threads):
        tid = threadid()
        for item in prange(items, schedule="static"):
            t = item % tiles
            rest = item // tiles
            n = rest // p.groups
            gi = rest % p.groups
            oh0 = t * tile_rows
            oh1 = min(oh0 + tile_rows, p.out_h)
            cm = columns(xp + (n * p.c + gi * cg) * p.h * p.w, ws + tid * ws_stride, &p, cg, oh0, oh1, &ld)
            gemm(False, True, <int>kg, <int>crs, <int>((oh1 - oh0) * p.out_w), 1,
                 dyp + (n * p.k + gi * kg) * ohw + oh0 * p.out_w, <int>ohw, cm, ld, 1,
                 dwp + tid * dw_stride + gi * kg * crs, <int>crs)


def backward_data_gemm(const floating[:, :, :, ::1] dy, const floating[:, :, :, ::1] w,
                       floating[:, :, :, ::1] dx, floating[:, ::1] workspace, ConvShape p,
                       Py_ssize_t tile_rows, int num_threads):
    """dx (n, c, h, w) = col2im(w[group]^T @ dy tile) per (image, group), tiles in order within one."""
    cdef Py_ssize_t tiles = (p.out_h + tile_rows - 1) // tile_rows
    cdef Py_ssize_t items = p.n * p.groups, item, t, n, gi, oh0, oh1, tid
    cdef Py_ssize_t cg = p.c // p.groups, kg = p.k // p.groups
    cdef Py_ssize_t crs = cg * p.r * p.s, ohw = p.out_h * p.out_w, cols
    cdef const floating *dyp = &dy[0, 0, 0, 0]
    cdef const floating *wp = &w[0, 0, 0, 0]
    cdef floating *dxp = &dx[0, 0, 0, 0]
    cdef floating *ws = &workspace[0, 0]
    cdef floating *col
    cdef floating *dxg
    cdef Py_ssize_t ws_stride = workspace.shape[1]
    tid = 0  # assigned again in each thread; set here so the compiler sees it initialized
    with nogil, parallel(num_threads=num_threads):
        tid = threadid()
        for item in prange(items, schedule="static"):
            n = item // p.groups
            gi = item % p.groups
            col = ws + tid * ws_stride
            dxg = dxp + (n * p.c + gi * cg) * p.h * p.w
            fill(dxg, cg * p.h * p.w, 0)
            for t in range(tiles):
                oh0 = t * tile_rows
                oh1 = min(oh0 + tile_rows, p.out_h)
                cols = (oh1 - oh0) * p.out_w
                gemm(True, False, <int>crs, <int>cols, <int>kg, 1, wp + gi * kg * crs, <int>crs,
                     dyp + (n * p.k + gi * kg) * ohw + oh0 * p.out_w, <int>ohw, 0, col, <int>cols)
                col2im_rows(col, dxg, &p, cg, oh0, oh1)


# ---------------------------------------------------------------------------------------------------------------
# direct kernels for one input channel per group (c/groups == 1): output channel k reads x[:, k // kg]


cdef inline Py_ssize_t padded_rows(const ConvShape *p) noexcept nogil:
    """Rows of x the windows read, padding included: the height of a padded plane."""
    return (p.out_h - 1) * p.stride_h + (p.r - 1) * p.dilation_h + 1


cdef inline Py_ssize_t padded_cols(const ConvShape *p) noexcept nogil:
    return (p.out_w - 1) * p.stride_w + (p.s - 1) * p.dilation_w + 1


cdef void pad_plane(const floating *xc, floating *xp, const ConvShape *p) noexcept nogil:
    """xp (padded_rows, padded_cols)[a, b] = xc (h, w)[a - pad_top, b - pad_left], zero outside xc."""
    cdef Py_ssize_t rows = padded_rows(p), cols = padded_cols(p), a, col, lo, hi
    cdef floating *dst
    cdef const floating *src
    valid_span(-p.pad_left, 1, p.w, cols, &lo, &hi)
    for a in range(rows):
        dst = xp + a * cols
        if a - p.pad_top < 0 or a - p.pad_top >= p.h:
            fill(dst, cols, 0)
            continue
        src = xc + (a - p.pad_top) * p.w - p.pad_left
        fill(dst, lo, 0)
        for col in range(lo, hi):
            dst[col] = src[col]
        fill(dst + hi, cols - hi, 0)


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


def forward_direct(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] w, const floating[::1] b,
                   floating[:, :, :, ::1] y, floating[:, ::1] workspace, ConvShape p, int num_threads):
    """y (n, k, out_h, out_w) for c/groups == 1, one (image, output channel) plane per work item.

    workspace (threads, padded_rows * padded_cols): each thread's padded plane.
    """
    cdef Py_ssize_t kg = p.k // p.groups, item, n, k, tid
    cdef const floating *bias = &b[0] if b is not None else NULL
    cdef const floating *xp = &x[0, 0, 0, 0]
    cdef const floating *wp = &w[0, 0, 0, 0]
    cdef floating *yp = &y[0, 0, 0, 0]
    cdef floating *ws = &workspace[0, 0]
    cdef Py_ssize_t ws_stride = workspace.shape[1]
    tid = 0  # assigned again in each thread; set here so the compiler sees it initialized
    with nogil, parallel(num_threads=num_threads):
        tid = threadid()
        for item in prange(p.n * p.k, schedule="static"):
            n = item // p.k
            k = item % p.k
            forward_plane(xp + (n * p.c + k // kg) * p.h * p.w, wp + k * p.r * p.s,
                          bias[k] if bias != NULL else 0, yp + item * p.out_h * p.out_w, ws + tid * ws_stride, &p)


cdef void backward_data_plane(const floating *dyk, const floating *wk, floating *dxc,
                              const ConvShape *p) noexcept nogil:
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


def backward_data_direct(const floating[:, :, :, ::1] dy, const floating[:, :, :, ::1] w,
                         floating[:, :, :, ::1] dx, ConvShape p, int num_threads):
    """dx (n, c, h, w) for c/groups == 1, one (image, input channel) plane per work item."""
    cdef Py_ssize_t kg = p.k // p.groups, item, n, c, kk
    cdef const floating *dyp = &dy[0, 0, 0, 0]
    cdef const floating *wp = &w[0, 0, 0, 0]
    cdef floating *dxp = &dx[0, 0, 0, 0]
    for item in prange(p.n * p.c, nogil=True, schedule="static", num_threads=num_threads):
        n = item // p.c
        c = item % p.c
        fill(dxp + item * p.h * p.w, p.h * p.w, 0)
        for kk in range(kg):
            backward_data_plane(dyp + (n * p.k + c * kg + kk) * p.out_h * p.out_w, wp + (c * kg + kk) * p.r * p.s,
                                dxp + item * p.h * p.w, &p)


cdef void backward_weight_channel(const floating *dy, const floating *x, floating *dwk, floating *dbk,
                                  floating *acc, floating *xp, const ConvShape *p, Py_ssize_t k) noexcept nogil:
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


def backward_weight_direct(const floating[:, :, :, ::1] dy, const floating[:, :, :, ::1] x,
                           floating[:, :, :, ::1] dw, floating[::1] db, floating[:, ::1] workspace, ConvShape p,
                           int num_threads):
    """dw (k, 1, r, s) and db (k,) (unless None) for c/groups == 1, one output channel per work item.

    workspace (threads, (r*s + 1) * out_w + padded_rows * padded_cols).
    """
    cdef Py_ssize_t k, tid
    cdef const floating *dyp = &dy[0, 0, 0, 0]
    cdef const floating *xp = &x[0, 0, 0, 0]
    cdef floating *dwp = &dw[0, 0, 0, 0]
    cdef floating *dbp = &db[0] if db is not None else NULL
    cdef floating *ws = &workspace[0, 0]
    cdef Py_ssize_t ws_stride = workspace.shape[1], acc_size = (p.r * p.s + 1) * p.out_w
    tid = 0  # assigned again in each thread; set here so the compiler sees it initialized
    with nogil, parallel(num_threads=num_threads):
        tid = threadid()
        for k in prange(p.k, schedule="static"):
            backward_weight_channel(dyp, xp, dwp + k * p.r * p.s, dbp + k if dbp != NULL else NULL,
                                    ws + tid * ws_stride, ws + tid * ws_stride + acc_size, &p, k)


# ---------------------------------------------------------------------------------------------------------------
# Winograd F(2x2, 3x3) for 3x3, stride-1, undilated layers (Lavin & Gray 2016): each 2x2 tile of output
# is A^T [(G g G^T) * (B^T d B)] A with d the 4x4 input patch under it; the elementwise products over channels
# are 16 GEMMs (k/groups x c/groups) @ (c/groups x tiles), 2.25x fewer multiplies than direct convolution.
# A work item is a block of tile rows of one image and one group. Transforms run along whole rows (vectorized).


cdef struct Block:
    Py_ssize_t n, group, ta0, ta1  # image, group, tile rows ta0:ta1


cdef inline Block block_of(Py_ssize_t item, const ConvShape *p, Py_ssize_t blocks, Py_ssize_t block_rows,
                           Py_ssize_t tile_rows) noexcept nogil:
    """Work item -> block; items run over (image, group, block of tile rows), blocks fastest. Returned by
    value, so that prange makes the caller's copy private."""
    cdef Block b
    b.n = item // blocks // p.groups
    b.group = item // blocks % p.groups
    b.ta0 = (item % blocks) * block_rows
    b.ta1 = min(b.ta0 + block_rows, tile_rows)
    return b


cdef void winograd_input_rows(const floating *xg, floating *v, floating *buf, const ConvShape *p,
                              Py_ssize_t cg, Py_ssize_t ta0, Py_ssize_t ta1, Py_ssize_t tw) noexcept nogil:
    """v (16, cg, tiles)[4*i + j, c, t] = (B^T d B)[i, j] for the tiles in tile rows ta0:ta1 (tw per row).

    buf: 8 rows of 2*tw + 2: the four zero-padded input rows under a tile row, then B^T applied to them.
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


def forward_winograd(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] u, const floating[::1] b,
                     floating[:, :, :, ::1] y, floating[:, ::1] workspace, ConvShape p, Py_ssize_t block_rows,
                     int num_threads):
    """y (n, k, out_h, out_w) for 3x3 stride 1, undilated; u (groups, 16, k/groups, c/groups) = G g G^T.

    Work items: (image, group, block of block_rows tile rows). workspace (threads, 16*(cg + kg)*block_rows*tw
    + 12*tw + 8): the transformed input and the GEMM output of a block, then row buffers.
    """
    cdef Py_ssize_t cg = p.c // p.groups, kg = p.k // p.groups
    cdef Py_ssize_t th = (p.out_h + 1) // 2, tw = (p.out_w + 1) // 2
    cdef Py_ssize_t blocks = (th + block_rows - 1) // block_rows, items = p.n * p.groups * blocks
    cdef Py_ssize_t item, n, gi, ta0, ta1, tiles, xi, tid
    cdef Block blk
    cdef Py_ssize_t v_size = 16 * cg * block_rows * tw, m_size = 16 * kg * block_rows * tw
    cdef const floating *bias = &b[0] if b is not None else NULL
    cdef const floating *xp = &x[0, 0, 0, 0]
    cdef const floating *up = &u[0, 0, 0, 0]
    cdef floating *yp = &y[0, 0, 0, 0]
    cdef floating *ws = &workspace[0, 0]
    cdef floating *v
    cdef floating *m
    cdef Py_ssize_t ws_stride = workspace.shape[1]
    tid = 0  # assigned again in each thread; set here so the compiler sees it initialized
    with nogil, parallel(num_threads=num_threads):
        tid = threadid()
        for item in prange(items, schedule="static"):
            blk = block_of(item, &p, blocks, block_rows, th)
            n, gi, ta0, ta1 = blk.n, blk.group, blk.ta0, blk.ta1
            tiles = (ta1 - ta0) * tw
            v = ws + tid * ws_stride
            m = v + v_size
            winograd_input_rows(xp + (n * p.c + gi * cg) * p.h * p.w, v, m + m_size, &p, cg, ta0, ta1, tw)
            for xi in range(16):
                gemm(False, False, <int>kg, <int>tiles, <int>cg, 1, up + (gi * 16 + xi) * kg * cg, <int>cg,
                     v + xi * cg * tiles, <int>tiles, 0, m + xi * kg * tiles, <int>tiles)
            winograd_output_rows(m, bias + gi * kg if bias != NULL else NULL,
                                 yp + (n * p.k + gi * kg) * p.out_h * p.out_w, m + m_size, &p, kg, ta0, ta1, tw)


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


def backward_weight_winograd(const floating[:, :, :, ::1] dy, const floating[:, :, :, ::1] x,
                             floating[:, :, :, :, ::1] m_partial, floating[:, ::1] workspace, ConvShape p,
                             Py_ssize_t block_rows, int num_threads):
    """m_partial[thread] (groups, 16, k/groups, c/groups) += (A g A^T) @ (B^T d B)^T over tiles, per thread;
    the caller sums threads and applies G^T . G to get dw. Must hold zeros on entry; workspace as in
    forward_winograd."""
    cdef Py_ssize_t cg = p.c // p.groups, kg = p.k // p.groups
    cdef Py_ssize_t th = (p.out_h + 1) // 2, tw = (p.out_w + 1) // 2
    cdef Py_ssize_t blocks = (th + block_rows - 1) // block_rows, items = p.n * p.groups * blocks
    cdef Py_ssize_t item, n, gi, ta0, ta1, tiles, xi, tid
    cdef Block blk
    cdef Py_ssize_t v_size = 16 * cg * block_rows * tw, d_size = 16 * kg * block_rows * tw
    cdef const floating *dyp = &dy[0, 0, 0, 0]
    cdef const floating *xp = &x[0, 0, 0, 0]
    cdef floating *mp = &m_partial[0, 0, 0, 0, 0]
    cdef floating *ws = &workspace[0, 0]
    cdef floating *v
    cdef floating *d
    cdef floating *m
    cdef Py_ssize_t ws_stride = workspace.shape[1], m_stride = p.groups * 16 * kg * cg
    tid = 0  # assigned again in each thread; set here so the compiler sees it initialized
    with nogil, parallel(num_threads=num_threads):
        tid = threadid()
        for item in prange(items, schedule="static"):
            blk = block_of(item, &p, blocks, block_rows, th)
            n, gi, ta0, ta1 = blk.n, blk.group, blk.ta0, blk.ta1
            tiles = (ta1 - ta0) * tw
            v = ws + tid * ws_stride
            d = v + v_size
            winograd_input_rows(xp + (n * p.c + gi * cg) * p.h * p.w, v, d + d_size, &p, cg, ta0, ta1, tw)
            winograd_grad_rows(dyp + (n * p.k + gi * kg) * p.out_h * p.out_w, d, d + d_size, &p, kg, ta0, ta1, tw)
            m = mp + tid * m_stride + gi * 16 * kg * cg
            for xi in range(16):
                gemm(False, True, <int>kg, <int>cg, <int>tiles, 1, d + xi * kg * tiles, <int>tiles,
                     v + xi * cg * tiles, <int>tiles, 1, m + xi * kg * cg, <int>cg)


def bias_grad(const floating[:, :, ::1] dy, floating[::1] db, int num_threads):
    """db (k,) = dy (n, k, out_h*out_w) summed over images and pixels."""
    cdef Py_ssize_t n, k
    cdef double acc
    for k in prange(dy.shape[1], nogil=True, schedule="static", num_threads=num_threads):
        acc = 0
        for n in range(dy.shape[0]):
            acc = acc + total(&dy[n, k, 0], dy.shape[2])
        db[k] = <floating>acc


def parallel_threads(int num_threads):
    """How many threads a parallel region asked for num_threads runs (1 when built without OpenMP)."""
    cdef unsigned char[::1] seen = bytearray(num_threads)
    with nogil, parallel(num_threads=num_threads):
        seen[threadid()] = 1
    return sum(seen)
