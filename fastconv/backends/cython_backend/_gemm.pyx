"""im2col + GEMM convolution (forward, grad of w, grad of x) for float32/float64 NCHW arrays, GIL released.

Shapes (one ConvShape p): x (n, c, h, w), w (k, cg, r, s), y and dy (n, k, out_h, out_w), with cg = c/groups
and kg = k/groups. Padding is implicit: a tap outside x reads zero. pad_top/pad_left may be negative (the grad
of x at stride 1 runs as a forward convolution with padding dilation*(r-1) - pad).

A work item is a tile of output rows of one image and one group, and a block of its channels: im2col of the tile
into the thread's row of ``columns`` (col, cg*r*s rows of tile*out_w), then one BLAS call whose output is the
block's rows of the tile of y in place (row stride out_h*out_w). In the forward pass a tile may also be several
whole images of a small map side by side, so that its GEMM is wide; it then writes the thread's ``products``,
copied into y image by image. Without ``columns`` (None, for a 1x1, stride-1, unpadded layer) the tile of x
is the column matrix itself. Threads own work items and call BLAS single-threaded (the caller limits it). Channel
blocks (output channels in the forward and grad of w, input channels in the grad of x) give every thread work
when images and tiles are fewer than threads (batch 1, small maps). When the tiles are fewer than the threads,
the forward's blocks share their tile's columns, which the threads fill together first (a block of input
channels each); otherwise, and in the grad of w, each block repeats its tile's im2col, which costs little beside
the GEMM.
"""

from cython cimport floating
from cython.parallel cimport prange, threadid

from ._blas cimport gemm
from ._common cimport Block, ConvShape, Span, block_of, ceil_div, fill, span_of, valid_span


cdef void im2col_rows(const floating *xg, floating *col, const ConvShape *p, Py_ssize_t cg,
                      Py_ssize_t oh0, Py_ssize_t oh1, Py_ssize_t cols) noexcept nogil:
    """col[(c*r + i)*s + j, (oh - oh0)*out_w + ow] = xg[c, oh*sh + i*dh - pt, ow*sw + j*dw - pl] (0 outside).

    xg (cg, h, w): one image's channels of one group; col (cg*r*s, cols), of which the tile fills the first
    (oh1 - oh0)*out_w columns.
    """
    cdef Py_ssize_t c, i, j, oh, ow, ih, iw0, lo, hi
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


cdef inline const floating *tile_matrix(const floating *xg, const floating *col, const ConvShape *p,
                                        Py_ssize_t oh0, Py_ssize_t oh1, int *ld) noexcept nogil:
    """The column matrix of a tile of output rows, and its row stride: col (its im2col), or x itself when col is
    NULL (a pointwise layer)."""
    if col == NULL:
        ld[0] = <int>(p.h * p.w)
        return xg + oh0 * p.w
    ld[0] = <int>((oh1 - oh0) * p.out_w)
    return col


cdef inline const floating *column_matrix(const floating *xg, floating *col, const ConvShape *p, Py_ssize_t cg,
                                          Py_ssize_t oh0, Py_ssize_t oh1, int *ld) noexcept nogil:
    """tile_matrix, after the im2col of the tile into col (unless col is NULL)."""
    if col != NULL:
        im2col_rows(xg, col, p, cg, oh0, oh1, (oh1 - oh0) * p.out_w)
    return tile_matrix(xg, col, p, oh0, oh1, ld)


cdef inline void add_scalar(floating *a, Py_ssize_t count, floating value) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(count):
        a[i] += value


cdef inline Block tile_of(Py_ssize_t tile, const ConvShape *p, Py_ssize_t tile_rows,
                         Py_ssize_t images) noexcept nogil:
    """Forward tile `tile`: rows of one image, or `images` whole images from image t.n (tile_rows = out_h)."""
    cdef Block t = block_of(tile, p.groups, p.out_h, tile_rows)
    t.n = t.n * images
    return t


cdef void tile_columns(const floating *x, floating *col, const ConvShape *p, Block t, Py_ssize_t images,
                       Span cs) noexcept nogil:
    """The rows of channels cs (of the group's) in tile t's column matrix col (cg*r*s x tile): its rows
    t.start:t.stop of one image, or `images` whole images side by side."""
    cdef Py_ssize_t cg = p.c // p.groups, ohw = p.out_h * p.out_w, i
    cdef Py_ssize_t cols = images * ohw if images > 1 else (t.stop - t.start) * p.out_w
    for i in range(images):
        im2col_rows(x + ((t.n + i) * p.c + t.group * cg + cs.lo) * p.h * p.w, col + cs.lo * p.r * p.s * cols + i * ohw,
                    p, cs.hi - cs.lo, t.start, t.stop, cols)


cdef void tile_product(const floating *x, const floating *w, const floating *b, floating *y, const floating *col,
                       floating *prod, const ConvShape *p, Block t, Span ks, Py_ssize_t images) noexcept nogil:
    """y[t.n : t.n + images, group t.group, channels ks of the group, t.start:t.stop, :] = w[those] (ks x cg*r*s)
    @ col (cg*r*s x tile, filled by tile_columns; NULL for a pointwise layer: x itself) + b.

    images > 1: the GEMM's output goes to prod (ks x tile), copied into y image by image.
    """
    cdef Py_ssize_t cg = p.c // p.groups, kg = p.k // p.groups, kb = ks.hi - ks.lo
    cdef Py_ssize_t crs = cg * p.r * p.s, ohw = p.out_h * p.out_w, cols = (t.stop - t.start) * p.out_w, kk, i, q
    cdef Py_ssize_t first = t.group * kg + ks.lo
    cdef int ld
    cdef floating *yt = y + (t.n * p.k + first) * ohw + t.start * p.out_w
    cdef const floating *cm
    cdef const floating *src
    cdef floating add
    if images == 1:
        cm = tile_matrix(x + (t.n * p.c + t.group * cg) * p.h * p.w, col, p, t.start, t.stop, &ld)
        gemm(False, False, <int>kb, <int>cols, <int>crs, 1, w + first * crs, <int>crs, cm, ld, 0, yt, <int>ohw)
        if b != NULL:
            for kk in range(kb):
                add_scalar(yt + kk * ohw, cols, b[first + kk])
        return
    cols = images * ohw
    gemm(False, False, <int>kb, <int>cols, <int>crs, 1, w + first * crs, <int>crs, col, <int>cols, 0, prod,
         <int>cols)
    for i in range(images):
        for kk in range(kb):
            add = b[first + kk] if b != NULL else 0
            src = prod + kk * cols + i * ohw
            for q in range(ohw):
                yt[(i * p.k + kk) * ohw + q] = src[q] + add


cdef inline const floating *dy_block(const floating *dy, const ConvShape *p, Py_ssize_t n, Py_ssize_t channel,
                                     Py_ssize_t pixel, bint dy_last, int *ld) noexcept nogil:
    """Image n's block of dy from output channel `channel` and output pixel `pixel` on: a (channels x pixels)
    matrix of row step ld[0] in dy (n, k, out_h*out_w); with dy_last, dy is (n, out_h*out_w, k) and the block the
    transposed matrix, ld[0] = k."""
    cdef Py_ssize_t ohw = p.out_h * p.out_w
    if dy_last:
        ld[0] = <int>p.k
        return dy + (n * ohw + pixel) * p.k + channel
    ld[0] = <int>ohw
    return dy + (n * p.k + channel) * ohw + pixel


cdef void grad_w_tile(const floating *dy, const floating *x, floating *dw, floating *col, const ConvShape *p,
                      Block t, Span ks, floating beta, bint dy_last) noexcept nogil:
    """dw[group t.group, channels ks] (ks x cg*r*s) = dy[t.n, those, t.start:t.stop, :] (ks x tile) @ col^T
    + beta * dw[...] (beta 1: accumulate); dy_last as in dy_block."""
    cdef Py_ssize_t cg = p.c // p.groups, kg = p.k // p.groups
    cdef Py_ssize_t crs = cg * p.r * p.s, first = t.group * kg + ks.lo
    cdef int ld, ld_dy
    cdef const floating *cm = column_matrix(x + (t.n * p.c + t.group * cg) * p.h * p.w, col, p, cg, t.start,
                                            t.stop, &ld)
    cdef const floating *block = dy_block(dy, p, t.n, first, t.start * p.out_w, dy_last, &ld_dy)
    gemm(dy_last, True, <int>(ks.hi - ks.lo), <int>crs, <int>((t.stop - t.start) * p.out_w), 1, block, ld_dy, cm,
         ld, beta, dw + first * crs, <int>crs)


cdef void grad_w_block(const floating *dy, const floating *x, floating *dw, floating *col, const ConvShape *p,
                       Py_ssize_t group, Span ks, Py_ssize_t tile_rows, bint dy_last) noexcept nogil:
    """dw[group, channels ks] = the sum of grad_w_tile over every image and tile (the first overwrites)."""
    cdef Py_ssize_t n, tile
    cdef Block t
    t.group = group
    for n in range(p.n):
        t.n = n
        for tile in range(ceil_div(p.out_h, tile_rows)):
            t.start = tile * tile_rows
            t.stop = min(t.start + tile_rows, p.out_h)
            grad_w_tile(dy, x, dw, col, p, t, ks, 0 if n == 0 and tile == 0 else 1, dy_last)


cdef void grad_x_image(const floating *dy, const floating *w, floating *dx, floating *col, const ConvShape *p,
                       Py_ssize_t n, Py_ssize_t gi, Span cs, Py_ssize_t tile_rows, bint dy_last) noexcept nogil:
    """dx[n, group gi, channels cs of the group] (cs, h, w) = col2im(w[group gi][:, those]^T @ dy tile), tile
    after tile; dy_last as in dy_block."""
    cdef Py_ssize_t cg = p.c // p.groups, kg = p.k // p.groups, rs = p.r * p.s
    cdef Py_ssize_t crs = cg * rs, t, oh0, oh1, cols
    cdef int ld_dy
    cdef const floating *block
    cdef floating *dxc = dx + (n * p.c + gi * cg + cs.lo) * p.h * p.w
    fill(dxc, (cs.hi - cs.lo) * p.h * p.w, 0)
    for t in range(ceil_div(p.out_h, tile_rows)):
        oh0 = t * tile_rows
        oh1 = min(oh0 + tile_rows, p.out_h)
        cols = (oh1 - oh0) * p.out_w
        block = dy_block(dy, p, n, gi * kg, oh0 * p.out_w, dy_last, &ld_dy)
        gemm(True, dy_last, <int>((cs.hi - cs.lo) * rs), <int>cols, <int>kg, 1, w + gi * kg * crs + cs.lo * rs,
             <int>crs, block, ld_dy, 0, col, <int>cols)
        col2im_rows(col, dxc, p, cs.hi - cs.lo, oh0, oh1)


def forward(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] w, const floating[::1] b,
            floating[:, :, :, ::1] y, floating[:, ::1] columns, floating[:, ::1] products, ConvShape p,
            Py_ssize_t tile_rows, Py_ssize_t images, Py_ssize_t channel_blocks, int num_threads):
    """y (n, k, out_h, out_w) = conv(x, w) + b (b may be None), by tiles of tile_rows output rows of one image,
    or of `images` whole images (tile_rows = out_h), each group's output channels in channel_blocks blocks.

    columns (threads, cg*r*s * images*tile_rows*out_w): each thread's im2col tile; None for a pointwise layer
    (images 1). With channel blocks and fewer tiles than threads, columns holds one row per tile instead: the
    threads fill the tiles' column matrices together (a block of input channels each), then multiply each block
    of output channels by its tile's. products (threads, kb * images*out_h*out_w, kb the largest channel block):
    each thread's GEMM output; None when images is 1.
    """
    cdef const floating *bias = &b[0] if b is not None else NULL
    cdef bint several = images > 1
    cdef Py_ssize_t tiles = ceil_div(p.n, images) * p.groups * ceil_div(p.out_h, tile_rows)
    cdef Py_ssize_t cg = p.c // p.groups, kg = p.k // p.groups, item
    cdef bint shared = columns is not None and channel_blocks > 1 and tiles < num_threads
    cdef Block t
    if shared:
        for item in prange(tiles * channel_blocks, nogil=True, schedule="static", num_threads=num_threads):
            t = tile_of(item // channel_blocks, &p, tile_rows, images)
            tile_columns(&x[0, 0, 0, 0], &columns[item // channel_blocks, 0], &p, t, min(images, p.n - t.n),
                         span_of(item % channel_blocks, channel_blocks, cg))
    for item in prange(tiles * channel_blocks, nogil=True, schedule="static", num_threads=num_threads):
        t = tile_of(item // channel_blocks, &p, tile_rows, images)
        if columns is not None and not shared:
            tile_columns(&x[0, 0, 0, 0], &columns[threadid(), 0], &p, t, min(images, p.n - t.n), span_of(0, 1, cg))
        tile_product(&x[0, 0, 0, 0], &w[0, 0, 0, 0], bias, &y[0, 0, 0, 0],
                     NULL if columns is None else &columns[item // channel_blocks if shared else threadid(), 0],
                     &products[threadid(), 0] if several else NULL, &p, t,
                     span_of(item % channel_blocks, channel_blocks, kg), min(images, p.n - t.n))


def grad_w(const floating[:, :, :, ::1] dy, const floating[:, :, :, ::1] x, floating[:, :, ::1] partial,
           floating[:, ::1] columns, ConvShape p, Py_ssize_t tile_rows, Py_ssize_t channel_blocks, bint owned,
           bint dy_last, int num_threads):
    """dw (k, cg*r*s) = sum over images and tiles of dy tile (kg x tile) @ col^T, each group's output channels in
    channel_blocks blocks; dy (n, k, out_h, out_w), or with dy_last (n, out_h, out_w, k).

    owned: a work item is a block, over every image and tile, and partial (1, k, cg*r*s) is dw itself. Otherwise
    an item is a block of one tile, partial (threads, k, cg*r*s) holds zeros on entry, each thread adds its items
    into its own row, and dw is their sum. columns as in forward.
    """
    cdef bint im2col = columns is not None
    cdef Py_ssize_t item, kg = p.k // p.groups
    cdef Block t
    cdef Span ks
    if owned:
        for item in prange(p.groups * channel_blocks, nogil=True, schedule="static", num_threads=num_threads):
            grad_w_block(&dy[0, 0, 0, 0], &x[0, 0, 0, 0], &partial[0, 0, 0],
                         &columns[threadid(), 0] if im2col else NULL, &p, item // channel_blocks,
                         span_of(item % channel_blocks, channel_blocks, kg), tile_rows, dy_last)
        return
    for item in prange(p.n * p.groups * ceil_div(p.out_h, tile_rows) * channel_blocks, nogil=True,
                       schedule="static", num_threads=num_threads):
        t = block_of(item // channel_blocks, p.groups, p.out_h, tile_rows)
        ks = span_of(item % channel_blocks, channel_blocks, kg)
        grad_w_tile(&dy[0, 0, 0, 0], &x[0, 0, 0, 0], &partial[threadid(), 0, 0],
                    &columns[threadid(), 0] if im2col else NULL, &p, t, ks, 1, dy_last)


def grad_x(const floating[:, :, :, ::1] dy, const floating[:, :, :, ::1] w, floating[:, :, :, ::1] dx,
           floating[:, ::1] columns, ConvShape p, Py_ssize_t tile_rows, Py_ssize_t channel_blocks,
           bint dy_last, int num_threads):
    """dx (n, c, h, w) = col2im(w[group]^T @ dy) per (image, group, block of the group's input channels), its
    tiles in order; dy (n, k, out_h, out_w), or with dy_last (n, out_h, out_w, k).

    columns (threads, cg*r*s * tile_rows*out_w): each thread's GEMM output tile.
    """
    cdef Py_ssize_t item, image_group
    for item in prange(p.n * p.groups * channel_blocks, nogil=True, schedule="static", num_threads=num_threads):
        image_group = item // channel_blocks
        grad_x_image(&dy[0, 0, 0, 0], &w[0, 0, 0, 0], &dx[0, 0, 0, 0], &columns[threadid(), 0], &p,
                     image_group // p.groups, image_group % p.groups,
                     span_of(item % channel_blocks, channel_blocks, p.c // p.groups), tile_rows, dy_last)
