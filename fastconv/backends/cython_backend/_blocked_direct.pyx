"""Register-blocked direct convolution: any kernel size, stride, dilation, padding and groups, float32/float64
NCHW or channels-last arrays, GIL released.

Shapes (one ConvShape p; cg = c/groups, kg = k/groups, KB = k_block(itemsize) output channels, PB = PIXEL_RUN output
pixels): x (n, c, h, w); packed (groups, ceil(kg/KB), cg*r*s*KB), each block of KB output channels of a group as
[c][i][j][lane], zero past kg (or each thread's one block of one chunk, re-laid by the item that reads it); y (n, k,
out_h, out_w). Channels-last: x (n, h, w, c) and y (n, out_h, out_w, k); the band is then (band_rows, cols, CC),
copied from x's rows (as they are when CC = c), and the micro-kernel steps through it by CC elements per pixel.

Work items are (image, group, block of output rows, chunk of the group's blocks of KB output channels). Per chunk
of CC of the group's input channels, a thread copies the rows of x the block's windows read into its zero-padded
``band`` (CC, band_rows, cols), so that the micro-kernel never tests a border. Then, per block of KB output
channels, per run of PB consecutive output pixels of the block (runs go on across output rows: each pixel's window
has its own offset in the band), it keeps the PB x KB sums in registers over (c, i, j) of the chunk, and writes
them to y (the first chunk) or adds them (the others): a block's weights of one chunk stay in cache for all the
runs of the item, however many input channels the layer has.

    y[n, k0 + l, oh_q, ow_q] = b[k0 + l] + sum_{c,i,j} packed[c, i, j, l] * band[c, oh_q*sh + i*dh, ow_q*sw + j*dw]

A block's last pixels take runs of at most TAIL_RUN pixels, the last one as long as the pixels left, so that no
computed pixel is thrown away, whatever the width of the rows (a 7 x 7 map is 4 runs of 12 and one of 1).

The micro-kernel is C with GCC/Clang vector types (plain loops left the sums on the stack): KB is two SIMD
registers of the instruction set the module is compiled for, PB as many pixels as leave registers for the two
weight vectors and a broadcast input (16 registers below AVX-512, 32 with it).
"""

from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.string cimport memcpy

from ._common cimport (LANES_F32, LANES_F64, Block, ConvShape, Span, block_of, ceil_div, fill, pad_rows, span_of,
                      valid_span)

cdef extern from *:
    """
    #include <string.h>
    #if defined(__AVX512F__)
    #define FASTCONV_PIXEL_RUN 12
    #define FASTCONV_TAIL_RUN 4
    #else
    #define FASTCONV_PIXEL_RUN 6
    #define FASTCONV_TAIL_RUN 3
    #endif
    #define FASTCONV_MAX_SUMS (FASTCONV_PIXEL_RUN * 2 * FASTCONV_VECTOR_BYTES / 4)

    /* sums (PB, 2 vectors) = sum over (c, i, j) of wk's two vectors times src[c*channel_step + i*row_step +
       j*dw + offsets[q]], broadcast, for each of the PB pixels q; wk advances two vectors per (c, i, j). The
       PB x 2 accumulators stay in registers: the loop over q has a fixed trip count and is unrolled. */
    #define FASTCONV_RUN_SUMS(NAME, T, V, PB)                                                               \
    static inline void NAME(const T *src, const Py_ssize_t *offsets, const T *wk, T *sums,                  \
                            Py_ssize_t channels, Py_ssize_t r, Py_ssize_t s, Py_ssize_t dw,                 \
                            Py_ssize_t row_step, Py_ssize_t channel_step) {                                 \
        const Py_ssize_t lanes = sizeof(V) / sizeof(T);                                                     \
        Py_ssize_t at[PB];                                                                                  \
        V zero = {0}, acc[PB][2];                                                                           \
        for (int q = 0; q < PB; q++) {                                                                      \
            at[q] = offsets[q];                                                                             \
            acc[q][0] = acc[q][1] = zero;                                                                   \
        }                                                                                                   \
        for (Py_ssize_t c = 0; c < channels; c++) {                                                         \
            const T *row = src + c * channel_step;                                                          \
            for (Py_ssize_t i = 0; i < r; i++, row += row_step) {                                           \
                for (Py_ssize_t j = 0; j < s; j++, wk += 2 * lanes) {                                       \
                    const T *tap = row + j * dw;                                                            \
                    V w0 = *(const V *)wk, w1 = *(const V *)(wk + lanes);                                   \
                    for (int q = 0; q < PB; q++) {                                                          \
                        T v = tap[at[q]];                                                                   \
                        acc[q][0] += v * w0;                                                                \
                        acc[q][1] += v * w1;                                                                \
                    }                                                                                       \
                }                                                                                           \
            }                                                                                               \
        }                                                                                                   \
        memcpy(sums, acc, sizeof acc);                                                                      \
    }
    FASTCONV_RUN_SUMS(fastconv_whole_sums_f32, float, fastconv_f32v, FASTCONV_PIXEL_RUN)
    FASTCONV_RUN_SUMS(fastconv_whole_sums_f64, double, fastconv_f64v, FASTCONV_PIXEL_RUN)
    FASTCONV_RUN_SUMS(fastconv_sums4_f32, float, fastconv_f32v, 4)
    FASTCONV_RUN_SUMS(fastconv_sums4_f64, double, fastconv_f64v, 4)
    FASTCONV_RUN_SUMS(fastconv_sums3_f32, float, fastconv_f32v, 3)
    FASTCONV_RUN_SUMS(fastconv_sums3_f64, double, fastconv_f64v, 3)
    FASTCONV_RUN_SUMS(fastconv_sums2_f32, float, fastconv_f32v, 2)
    FASTCONV_RUN_SUMS(fastconv_sums2_f64, double, fastconv_f64v, 2)
    FASTCONV_RUN_SUMS(fastconv_sums1_f32, float, fastconv_f32v, 1)
    FASTCONV_RUN_SUMS(fastconv_sums1_f64, double, fastconv_f64v, 1)

    /* the sums of a run of `run` pixels: FASTCONV_PIXEL_RUN, or 1 to FASTCONV_TAIL_RUN at the end of a block
       (a run of one pixel takes about a tenth of a whole run's time, one of four a third) */
    #define FASTCONV_ANY_RUN_SUMS(T, SUFFIX)                                                                \
    static inline void fastconv_run_sums_##SUFFIX(Py_ssize_t run, const T *src, const Py_ssize_t *offsets,  \
                                                   const T *wk, T *sums, Py_ssize_t channels, Py_ssize_t r, \
                                                   Py_ssize_t s, Py_ssize_t dw, Py_ssize_t row_step,        \
                                                   Py_ssize_t channel_step) {                               \
        void (*sums_of)(const T *, const Py_ssize_t *, const T *, T *, Py_ssize_t, Py_ssize_t, Py_ssize_t,  \
                        Py_ssize_t, Py_ssize_t, Py_ssize_t) =                                               \
            run == FASTCONV_PIXEL_RUN ? fastconv_whole_sums_##SUFFIX : run == 4 ? fastconv_sums4_##SUFFIX   \
            : run == 3 ? fastconv_sums3_##SUFFIX : run == 2 ? fastconv_sums2_##SUFFIX                       \
            : fastconv_sums1_##SUFFIX;                                                                      \
        sums_of(src, offsets, wk, sums, channels, r, s, dw, row_step, channel_step);                        \
    }
    FASTCONV_ANY_RUN_SUMS(float, f32)
    FASTCONV_ANY_RUN_SUMS(double, f64)

    /* dst[t * dst_step + l] = src[l * src_step + t] for l, t < L, the lanes of V: a square of L rows transposed
       in registers. Each of the log2(L) steps swaps, in each pair of rows i and i + h (h a power of two, i & h
       zero), the elements whose column has bit h set in row i with those whose column has it clear in row i + h:
       two-register shuffles (GCC's __builtin_shuffle; elsewhere plain copies). */
    #if defined(__GNUC__) && !defined(__clang__)
    #define FASTCONV_TRANSPOSE(NAME, T, V, IV)                                                              \
    static inline void NAME(const T *src, Py_ssize_t src_step, T *dst, Py_ssize_t dst_step) {               \
        enum { L = sizeof(V) / sizeof(T) };                                                                 \
        V rows[L];                                                                                          \
        _Pragma("GCC unroll 16") for (int l = 0; l < L; l++) {                                              \
            rows[l] = *(const V *)(src + l * src_step);                                                     \
        }                                                                                                   \
        _Pragma("GCC unroll 4") for (int h = L / 2; h >= 1; h /= 2) {                                       \
            IV low, high;                                                                                   \
            _Pragma("GCC unroll 16") for (int j = 0; j < L; j++) {                                          \
                low[j] = j & h ? L + j - h : j;                                                             \
                high[j] = j & h ? L + j : j + h;                                                            \
            }                                                                                               \
            _Pragma("GCC unroll 16") for (int pair = 0; pair < L / 2; pair++) {                             \
                int i = pair / h * 2 * h + pair % h;  /* the pair's first row: bit h clear */               \
                V a = rows[i], b = rows[i + h];                                                             \
                rows[i] = __builtin_shuffle(a, b, low);                                                     \
                rows[i + h] = __builtin_shuffle(a, b, high);                                                \
            }                                                                                               \
        }                                                                                                   \
        _Pragma("GCC unroll 16") for (int t = 0; t < L; t++)                                                \
            *(V *)(dst + t * dst_step) = rows[t];                                                           \
    }
    typedef int fastconv_i32v __attribute__((vector_size(sizeof(fastconv_f32v))));
    typedef long long fastconv_i64v __attribute__((vector_size(sizeof(fastconv_f64v))));
    FASTCONV_TRANSPOSE(fastconv_transpose_f32, float, fastconv_f32v, fastconv_i32v)
    FASTCONV_TRANSPOSE(fastconv_transpose_f64, double, fastconv_f64v, fastconv_i64v)
    #else
    #define FASTCONV_TRANSPOSE(NAME, T, L)                                                                  \
    static inline void NAME(const T *src, Py_ssize_t src_step, T *dst, Py_ssize_t dst_step) {               \
        for (Py_ssize_t l = 0; l < L; l++)                                                                  \
            for (Py_ssize_t t = 0; t < L; t++)                                                              \
                dst[t * dst_step + l] = src[l * src_step + t];                                              \
    }
    FASTCONV_TRANSPOSE(fastconv_transpose_f32, float, FASTCONV_LANES_F32)
    FASTCONV_TRANSPOSE(fastconv_transpose_f64, double, FASTCONV_LANES_F64)
    #endif
    """
    enum: PIXEL_RUN "FASTCONV_PIXEL_RUN"  # PB (an enum: it sizes arrays)
    const Py_ssize_t TAIL_RUN "FASTCONV_TAIL_RUN"  # most pixels of the runs that end a block
    enum: MAX_SUMS "FASTCONV_MAX_SUMS"  # PB * KB for float32, the most sums a run keeps
    void run_sums_f32 "fastconv_run_sums_f32"(Py_ssize_t run, const float *src, const Py_ssize_t *offsets,
                                              const float *wk, float *sums, Py_ssize_t channels, Py_ssize_t r,
                                              Py_ssize_t s, Py_ssize_t dw, Py_ssize_t row_step,
                                              Py_ssize_t channel_step) noexcept nogil
    void run_sums_f64 "fastconv_run_sums_f64"(Py_ssize_t run, const double *src, const Py_ssize_t *offsets,
                                              const double *wk, double *sums, Py_ssize_t channels, Py_ssize_t r,
                                              Py_ssize_t s, Py_ssize_t dw, Py_ssize_t row_step,
                                              Py_ssize_t channel_step) noexcept nogil
    void transpose_f32 "fastconv_transpose_f32"(const float *src, Py_ssize_t src_step, float *dst,
                                                Py_ssize_t dst_step) noexcept nogil
    void transpose_f64 "fastconv_transpose_f64"(const double *src, Py_ssize_t src_step, double *dst,
                                                Py_ssize_t dst_step) noexcept nogil

def k_block(Py_ssize_t itemsize):
    """KB, the output channels of one block: two SIMD registers of this itemsize (4 or 8)."""
    return 2 * (LANES_F32 if itemsize == 4 else LANES_F64)


def pixel_run():
    """PB, the output pixels along a row that the micro-kernel computes at once."""
    return PIXEL_RUN


cdef inline Py_ssize_t block_lanes(const floating *any) noexcept nogil:
    """KB for this fused type."""
    if floating is float:
        return 2 * LANES_F32
    else:
        return 2 * LANES_F64


#: taps re-laid together per output channel where squares do not: the rows of w they read and the lines of packed
#: they write stay in L1
cdef enum:
    PACK_TAPS = 16


cdef inline void transpose(const floating *src, Py_ssize_t src_step, floating *dst,
                           Py_ssize_t dst_step) noexcept nogil:
    """dst[t * dst_step + l] = src[l * src_step + t] for l, t < KB / 2 (a square of one SIMD register's lanes)."""
    if floating is float:
        transpose_f32(src, src_step, dst, dst_step)
    else:
        transpose_f64(src, src_step, dst, dst_step)


cdef void pack_taps(const floating *w, floating *dst, Py_ssize_t lanes, Py_ssize_t taps, Py_ssize_t first,
                    Py_ssize_t count) noexcept nogil:
    """dst (count, KB)[t, l] = w (lanes, taps)[l, first + t], zero for l >= lanes: taps first:first+count of a
    block of output channels re-laid (see the module docstring). A full block by squares of KB/2 taps x KB/2
    channels transposed in registers (4-5x faster than element by element: at batch 1 re-laying 512 x 512 x 3 x 3
    weights took as long as a third of the convolution on a 7x7 map); the taps left and the group's last, partial
    block by tiles of PACK_TAPS taps, each row of w read in runs of PACK_TAPS."""
    cdef Py_ssize_t kb = block_lanes(w), half = kb // 2, squares = 0, tile, t0, t1, t, l
    cdef const floating *wl
    w += first
    if lanes == kb:
        squares = count // half
        for l in range(2):  # each half of the block's rows, read along its rows
            for tile in range(squares):
                t0 = tile * half
                transpose(w + l * half * taps + t0, taps, dst + t0 * kb + l * half, kb)
    for tile in range(ceil_div(count - squares * half, PACK_TAPS)):
        t0 = squares * half + tile * PACK_TAPS
        t1 = min(t0 + PACK_TAPS, count)
        for l in range(lanes):
            wl = w + l * taps
            for t in range(t0, t1):
                dst[t * kb + l] = wl[t]
        for l in range(lanes, kb):  # the lanes past the group's last filter
            for t in range(t0, t1):
                dst[t * kb + l] = 0


cdef inline const floating *block_weights(const floating *w, Py_ssize_t group, Py_ssize_t block,
                                          const ConvShape *p) noexcept nogil:
    """The rows of w (k, cg, r, s) of a group's block of KB output channels."""
    cdef Py_ssize_t kg = p.k // p.groups
    return w + (group * kg + block * block_lanes(w)) * (p.c // p.groups * p.r * p.s)


cdef inline Py_ssize_t block_filters(Py_ssize_t block, Py_ssize_t kb, const ConvShape *p) noexcept nogil:
    """The output channels of a group's block of KB (fewer in the group's last)."""
    return min(kb, p.k // p.groups - block * kb)


cdef void pack_block(const floating *w, floating *packed, Py_ssize_t item, const ConvShape *p) noexcept nogil:
    """packed[group, block] (cg*r*s*KB) from w (k, cg, r, s), item = group * ceil(kg/KB) + block."""
    cdef Py_ssize_t kb = block_lanes(w), taps = p.c // p.groups * p.r * p.s, blocks = ceil_div(p.k // p.groups, kb)
    pack_taps(block_weights(w, item // blocks, item % blocks, p), packed + item * taps * kb,
              block_filters(item % blocks, kb, p), taps, 0, taps)


cdef inline void store_run(const floating *band, const Py_ssize_t *offsets, Py_ssize_t run, const floating *wk,
                           floating *yk, const floating *bias, bint accumulate, Py_ssize_t channels,
                           Py_ssize_t lanes, Py_ssize_t lane_step, Py_ssize_t pixel_step,
                           Py_ssize_t cols, Py_ssize_t cell, Py_ssize_t channel_step,
                           const ConvShape *p) noexcept nogil:
    """yk[l * lane_step + q * pixel_step] = bias[l] (0 if bias is NULL) + the run's sums over `channels` input
    channels, or += the sums with accumulate, for l < lanes, q < run (pixel_step 1 unless lane_step is).

    band: rows of cols pixels of cell elements each (1: planes channel_step apart; the channels: channels-last),
    the window of the run's pixel q at band + offsets[q]; run: PIXEL_RUN, or 1 to TAIL_RUN pixels; wk: the block
    of packed weights at the first of the channels.
    """
    cdef Py_ssize_t kb = block_lanes(band), q, l
    cdef Py_ssize_t dw = p.dilation_w * cell, row_step = p.dilation_h * cols * cell
    cdef floating sums[MAX_SUMS]
    cdef floating v
    if floating is float:
        run_sums_f32(run, band, offsets, wk, sums, channels, p.r, p.s, dw, row_step, channel_step)
    else:
        run_sums_f64(run, band, offsets, wk, sums, channels, p.r, p.s, dw, row_step, channel_step)
    if lane_step == 1:  # channels-last: each pixel's lanes contiguous in y, as in sums (2.5x faster than by lane)
        for q in range(run):
            for l in range(lanes):
                if accumulate:
                    yk[q * pixel_step + l] += sums[q * kb + l]
                else:
                    yk[q * pixel_step + l] = sums[q * kb + l] + (bias[l] if bias != NULL else 0)
    elif accumulate:
        for l in range(lanes):
            for q in range(run):
                yk[l * lane_step + q] += sums[q * kb + l]
    elif run == PIXEL_RUN:  # a whole run: a fixed count of pixels, unrolled without a test per pixel
        for l in range(lanes):
            v = bias[l] if bias != NULL else 0
            for q in range(PIXEL_RUN):
                yk[l * lane_step + q] = sums[q * kb + l] + v
    else:
        for l in range(lanes):
            v = bias[l] if bias != NULL else 0
            for q in range(run):
                yk[l * lane_step + q] = sums[q * kb + l] + v


cdef void pad_pixel_rows(const floating *xc, floating *dst, Py_ssize_t first, Py_ssize_t rows, Py_ssize_t cols,
                         Py_ssize_t channels, const ConvShape *p) noexcept nogil:
    """dst (rows, cols, channels)[a, b, c] = xc (h, w, c)[first + a - pad_top, b - pad_left, c], zero outside
    xc: the zero-padded rows of `channels` channels (xc at the first) of a channels-last image, in its own order
    (one copy per row when they are all its channels)."""
    cdef Py_ssize_t a, col, lo, hi, ih
    cdef const floating *src
    valid_span(-p.pad_left, 1, p.w, cols, &lo, &hi)
    for a in range(rows):
        ih = first + a - p.pad_top
        if ih < 0 or ih >= p.h:
            fill(dst, cols * channels, 0)
        else:
            src = xc + (ih * p.w - p.pad_left) * p.c
            fill(dst, lo * channels, 0)
            if channels == p.c:
                memcpy(dst + lo * channels, src + lo * channels, (hi - lo) * channels * sizeof(floating))
            else:
                for col in range(lo, hi):
                    memcpy(dst + col * channels, src + col * p.c, channels * sizeof(floating))
            fill(dst + hi * channels, (cols - hi) * channels, 0)
        dst += cols * channels


cdef void forward_block(const floating *x, const floating *w, const floating *packed, floating *chunk_weights,
                        const floating *b, floating *y, floating *band, Block blk, Span blocks,
                        Py_ssize_t channel_chunk, bint channels_last, const ConvShape *p) noexcept nogil:
    """The rows blk.start:blk.stop of image blk.n's outputs of group blk.group, its blocks blocks.lo:blocks.hi of
    KB channels, summed over chunks of channel_chunk input channels (the first chunk writes y, the others add).
    The blocks' weights from packed, or, when chunk_weights is not NULL, each block's of one chunk re-laid there
    from w just before its runs."""
    cdef Py_ssize_t kb = block_lanes(x), cg = p.c // p.groups, kg = p.k // p.groups, plane = p.out_h * p.out_w
    cdef Py_ssize_t cols = (p.out_w - 1) * p.stride_w + (p.s - 1) * p.dilation_w + 1
    cdef Py_ssize_t rows = (blk.stop - blk.start - 1) * p.stride_h + (p.r - 1) * p.dilation_h + 1
    cdef Py_ssize_t last = blk.stop * p.out_w, part, c0, chunk, c, block, k0, pixel, run, q, oh, ow
    cdef Py_ssize_t lane_step, pixel_step, cell, channel_step, taps = cg * p.r * p.s
    cdef Py_ssize_t offsets[PIXEL_RUN]
    cdef const floating *wk
    for part in range(ceil_div(cg, channel_chunk)):
        c0 = part * channel_chunk
        chunk = min(channel_chunk, cg - c0)
        if channels_last:
            pad_pixel_rows(x + blk.n * p.h * p.w * p.c + blk.group * cg + c0, band, blk.start * p.stride_h, rows,
                           cols, chunk, p)
            lane_step, pixel_step, cell, channel_step = 1, p.k, chunk, 1
        else:
            for c in range(chunk):
                pad_rows(x + (blk.n * p.c + blk.group * cg + c0 + c) * p.h * p.w, band + c * rows * cols,
                         blk.start * p.stride_h, rows, cols, p)
            lane_step, pixel_step, cell, channel_step = plane, 1, 1, rows * cols
        for block in range(blocks.lo, blocks.hi):
            k0 = blk.group * kg + block * kb
            if chunk_weights != NULL:
                pack_taps(block_weights(w, blk.group, block, p), chunk_weights, block_filters(block, kb, p), taps,
                          c0 * p.r * p.s, chunk * p.r * p.s)
                wk = chunk_weights
            else:
                wk = packed + ((blk.group * ceil_div(kg, kb) + block) * cg + c0) * p.r * p.s * kb
            pixel, oh, ow = blk.start * p.out_w, 0, 0  # (oh, ow): the next pixel, its row counted from blk.start
            while pixel < last:
                run = PIXEL_RUN if last - pixel >= PIXEL_RUN else min(TAIL_RUN, last - pixel)
                for q in range(run):
                    offsets[q] = (oh * p.stride_h * cols + ow * p.stride_w) * cell
                    ow += 1
                    if ow == p.out_w:
                        oh, ow = oh + 1, 0
                store_run(band, offsets, run, wk, y + blk.n * p.k * plane + k0 * lane_step + pixel * pixel_step,
                          b + k0 if b != NULL else NULL, c0 > 0, chunk, min(kb, kg - block * kb), lane_step,
                          pixel_step, cols, cell, channel_step, p)
                pixel += run


def forward(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] w, const floating[::1] b,
            floating[:, :, :, ::1] y, floating[:, :, ::1] packed, floating[:, ::1] bands, Py_ssize_t block_rows,
            Py_ssize_t channel_chunks, Py_ssize_t channel_chunk, bint relay_per_item, ConvShape p,
            bint channels_last, int num_threads):
    """y = conv(x, w) + b (b may be None), one (image, group, block_rows output rows, chunk of the group's blocks
    of KB output channels, channel_chunks chunks) per work item, chunks slowest (a thread's consecutive items
    share their weights), summed over chunks of channel_chunk input channels; x (n, c, h, w) and y (n, k, out_h,
    out_w), or with channels_last x (n, h, w, c) and y (n, out_h, out_w, k).

    packed (groups, ceil(kg/KB), cg*r*s*KB): filled here; or with relay_per_item (each block of weights is used by
    one item: one image and one block of rows) (threads, 1, channel_chunk*r*s*KB), each thread's re-laid weights
    of one block and one chunk. bands (threads, channel_chunk * band rows * cols): each thread's input band for a
    block of block_rows rows and a chunk of input channels.
    """
    cdef const floating *bias = &b[0] if b is not None else NULL
    cdef Py_ssize_t item, k_blocks = ceil_div(p.k // p.groups, block_lanes(&x[0, 0, 0, 0]))
    cdef Py_ssize_t row_items = p.n * p.groups * ceil_div(p.out_h, block_rows)
    if not relay_per_item:
        for item in prange(p.groups * k_blocks, nogil=True, schedule="static", num_threads=num_threads):
            pack_block(&w[0, 0, 0, 0], &packed[0, 0, 0], item, &p)
    for item in prange(row_items * channel_chunks, nogil=True, schedule="static", num_threads=num_threads):
        forward_block(&x[0, 0, 0, 0], &w[0, 0, 0, 0], &packed[0, 0, 0],
                      &packed[threadid(), 0, 0] if relay_per_item else NULL, bias, &y[0, 0, 0, 0],
                      &bands[threadid(), 0], block_of(item % row_items, p.groups, p.out_h, block_rows),
                      span_of(item // row_items, channel_chunks, k_blocks), channel_chunk, channels_last, &p)
