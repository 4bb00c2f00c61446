"""The depthwise micro-kernels in C (GCC/Clang vector types of the SIMD registers the module is compiled for, as
in _blocked_direct.pyx), shared by the channels-last depthwise kernels (_nhwc.pyx) and the NCHW channel blocks
(_blocked.pyx, whose buffers hold their channels interleaved as a channels-last tile).

Arrays: x and y (or dy) as (pixels, channels) rows of a channels-last image or tile, a register of channels per
block; filters (r, s, k) as taps[(r*s_size + s)*k]; row_taps (r_size,) the input row each kernel row reads (-1:
none), or NULL when kernel row r reads row r of x.
"""

from cython cimport floating

from ._common cimport LANES_F32, LANES_F64


cdef extern from *:
    """
    #if defined(__GNUC__)
    #define FASTCONV_PREFETCH(address) __builtin_prefetch(address)
    #else
    #define FASTCONV_PREFETCH(address)
    #endif

    /* The depthwise micro-kernels share their first arguments: `runs` runs of PB pixels one after the other, y
       (or dy) PB*y_step and x PB*pixel_step elements further per run, whose column taps all read inside the
       image, at x + row_taps[r]*row_step + q*pixel_step + s*col_step for pixel q < PB of a run and tap (r, s) of
       its valid rows; the first `blocks` registers of channels, filters (r, s, k) as taps[(r*s_size + s)*k]. A
       run takes all its registers of channels before the next, reading x along its rows. */

    /* the input row kernel row r reads (row_taps NULL: row r) */
    static inline Py_ssize_t fastconv_row_of(const long long *row_taps, Py_ssize_t r) {
        return row_taps ? (Py_ssize_t)row_taps[r] : r;
    }

    /* the input row furthest down of valid row taps: the one the previous output rows did not read, whose next
       run the kernels prefetch */
    static inline Py_ssize_t fastconv_newest_row(const long long *row_taps, Py_ssize_t r_size) {
        Py_ssize_t newest = 0;
        for (Py_ssize_t r = 0; r < r_size; r++)
            newest = fastconv_row_of(row_taps, r) > newest ? fastconv_row_of(row_taps, r) : newest;
        return newest;
    }

    /* forward: y[q*y_step + l] = start[l] + the sum over the taps of taps[...] * x[...], the PB sums of one
       register of channels in registers over all taps */
    #define FASTCONV_DEPTHWISE_RUNS(NAME, T, V, PB)                                                        \
    static inline void NAME(T *y, Py_ssize_t y_step, Py_ssize_t runs, const T *x, Py_ssize_t pixel_step,   \
                            Py_ssize_t blocks, const T *start, const T *taps, Py_ssize_t k,                \
                            Py_ssize_t s_size, const long long *row_taps, Py_ssize_t r_size,               \
                            Py_ssize_t row_step, Py_ssize_t col_step) {                                    \
        const Py_ssize_t lanes = sizeof(V) / sizeof(T), newest = fastconv_newest_row(row_taps, r_size);    \
        for (Py_ssize_t run = 0; run < runs; run++, y += PB * y_step, x += PB * pixel_step) {              \
            const T *ahead = x + newest * row_step + PB * pixel_step;                                      \
            for (Py_ssize_t b = 0; b < blocks * lanes; b += lanes) {                                       \
                V acc[PB], bias = *(const V *)(start + b);                                                 \
                for (int q = 0; q < PB; q++) {                                                             \
                    acc[q] = bias;                                                                         \
                    FASTCONV_PREFETCH(ahead + q * pixel_step + b);                                         \
                }                                                                                          \
                for (Py_ssize_t r = 0; r < r_size; r++) {                                                  \
                    if (fastconv_row_of(row_taps, r) < 0)                                                  \
                        continue;                                                                          \
                    const T *src = x + fastconv_row_of(row_taps, r) * row_step + b, *tap = taps + r * s_size * k + b; \
                    for (Py_ssize_t s = 0; s < s_size; s++, src += col_step, tap += k) {                   \
                        V w = *(const V *)tap;                                                             \
                        for (int q = 0; q < PB; q++)                                                       \
                            acc[q] += w * *(const V *)(src + q * pixel_step);                              \
                    }                                                                                      \
                }                                                                                          \
                for (int q = 0; q < PB; q++)                                                               \
                    *(V *)(y + q * y_step + b) = acc[q];                                                   \
            }                                                                                              \
        }                                                                                                  \
    }

    /* grad of w: taps[...] += the sum over the PB pixels of dy[q*y_step + l] * x[...], the run's dy in
       registers over all taps, each tap's sum in four chains; and bias[l] += the sum of their dy */
    #define FASTCONV_DEPTHWISE_GRAD_RUNS(NAME, T, V, PB)                                                   \
    static inline void NAME(const T *dy, Py_ssize_t y_step, Py_ssize_t runs, const T *x,                   \
                            Py_ssize_t pixel_step, Py_ssize_t blocks, T *taps, T *bias, Py_ssize_t k,      \
                            Py_ssize_t s_size, const long long *row_taps, Py_ssize_t r_size,               \
                            Py_ssize_t row_step, Py_ssize_t col_step) {                                    \
        const Py_ssize_t lanes = sizeof(V) / sizeof(T), newest = fastconv_newest_row(row_taps, r_size);    \
        for (Py_ssize_t run = 0; run < runs; run++, dy += PB * y_step, x += PB * pixel_step) {             \
            const T *ahead = x + newest * row_step + PB * pixel_step;                                      \
            for (Py_ssize_t b = 0; b < blocks * lanes; b += lanes) {                                       \
                V d[PB], total = *(const V *)(bias + b);                                                   \
                for (int q = 0; q < PB; q++) {                                                             \
                    d[q] = *(const V *)(dy + q * y_step + b);                                              \
                    total += d[q];                                                                         \
                    FASTCONV_PREFETCH(ahead + q * pixel_step + b);                                         \
                }                                                                                          \
                *(V *)(bias + b) = total;                                                                  \
                for (Py_ssize_t r = 0; r < r_size; r++) {                                                  \
                    if (fastconv_row_of(row_taps, r) < 0)                                                  \
                        continue;                                                                          \
                    const T *src = x + fastconv_row_of(row_taps, r) * row_step + b;                        \
                    T *tap = taps + r * s_size * k + b;                                                    \
                    for (Py_ssize_t s = 0; s < s_size; s++, src += col_step, tap += k) {                   \
                        V zero = {0}, sums[4] = {zero, zero, zero, zero};                                  \
                        for (int q = 0; q < PB; q++)                                                       \
                            sums[q % 4] += d[q] * *(const V *)(src + q * pixel_step);                      \
                        *(V *)tap += (sums[0] + sums[1]) + (sums[2] + sums[3]);                            \
                    }                                                                                      \
                }                                                                                          \
            }                                                                                              \
        }                                                                                                  \
    }

    /* the grad of w of a 3x3 kernel whose three row taps are all valid, over `pixels` pixels of one output row
       (the common case, as _direct.pyx's nine_dots): per register of channels, the nine taps' sums and the
       bias's stay in registers over the whole row, ten independent chains, added to taps and bias once; dy and
       the newest input row read eight pixels ahead (a register of channels is one line in every pixel's) */
    #define FASTCONV_DEPTHWISE_GRAD_3X3(T, V, SUFFIX)                                                      \
    static inline void fastconv_depthwise_grad3x3_##SUFFIX(                                                \
            const T *dy, Py_ssize_t y_step, Py_ssize_t pixels, const T *x, Py_ssize_t pixel_step,          \
            Py_ssize_t blocks, T *taps, T *bias, Py_ssize_t k, const long long *row_taps,                  \
            Py_ssize_t row_step, Py_ssize_t col_step) {                                                    \
        const Py_ssize_t lanes = sizeof(V) / sizeof(T), newest = fastconv_newest_row(row_taps, 3);         \
        for (Py_ssize_t b = 0; b < blocks * lanes; b += lanes) {                                           \
            V zero = {0}, sums[10] = {zero, zero, zero, zero, zero, zero, zero, zero, zero, zero};         \
            const T *top = x + fastconv_row_of(row_taps, 0) * row_step + b;                                \
            const T *middle = x + fastconv_row_of(row_taps, 1) * row_step + b;                             \
            const T *bottom = x + fastconv_row_of(row_taps, 2) * row_step + b;                             \
            const T *ahead = x + newest * row_step + b;                                                    \
            for (Py_ssize_t q = 0; q < pixels; q++) {                                                      \
                V d = *(const V *)(dy + q * y_step + b);                                                   \
                Py_ssize_t at = q * pixel_step;                                                            \
                FASTCONV_PREFETCH(ahead + at + 8 * pixel_step);                                            \
                FASTCONV_PREFETCH(dy + (q + 8) * y_step + b);                                              \
                sums[9] += d;                                                                              \
                _Pragma("GCC unroll 3") for (int s = 0; s < 3; s++) {                                      \
                    sums[s] += d * *(const V *)(top + at + s * col_step);                                  \
                    sums[3 + s] += d * *(const V *)(middle + at + s * col_step);                           \
                    sums[6 + s] += d * *(const V *)(bottom + at + s * col_step);                           \
                }                                                                                          \
            }                                                                                              \
            for (int t = 0; t < 9; t++)                                                                    \
                *(V *)(taps + t * k + b) += sums[t];                                                       \
            *(V *)(bias + b) += sums[9];                                                                   \
        }                                                                                                  \
    }
    FASTCONV_DEPTHWISE_GRAD_3X3(float, fastconv_f32v, f32)
    FASTCONV_DEPTHWISE_GRAD_3X3(double, fastconv_f64v, f64)

    #define FASTCONV_DEPTHWISE_KERNELS(T, V, SUFFIX)                                                       \
    FASTCONV_DEPTHWISE_RUNS(fastconv_depthwise8_##SUFFIX, T, V, 8)                                         \
    FASTCONV_DEPTHWISE_RUNS(fastconv_depthwise4_##SUFFIX, T, V, 4)                                         \
    FASTCONV_DEPTHWISE_RUNS(fastconv_depthwise2_##SUFFIX, T, V, 2)                                         \
    FASTCONV_DEPTHWISE_RUNS(fastconv_depthwise1_##SUFFIX, T, V, 1)                                         \
    FASTCONV_DEPTHWISE_GRAD_RUNS(fastconv_depthwise_grad8_##SUFFIX, T, V, 8)                               \
    FASTCONV_DEPTHWISE_GRAD_RUNS(fastconv_depthwise_grad4_##SUFFIX, T, V, 4)                               \
    FASTCONV_DEPTHWISE_GRAD_RUNS(fastconv_depthwise_grad2_##SUFFIX, T, V, 2)                               \
    FASTCONV_DEPTHWISE_GRAD_RUNS(fastconv_depthwise_grad1_##SUFFIX, T, V, 1)
    FASTCONV_DEPTHWISE_KERNELS(float, fastconv_f32v, f32)
    FASTCONV_DEPTHWISE_KERNELS(double, fastconv_f64v, f64)

    /* KERNEL over `pixels` pixels: runs of 8 (eight pixels in flight hide the multiply-adds' latency), then one
       of 4, 2 and 1 as the pixels left ask */
    #define FASTCONV_RUNS_OF(KERNEL, SUFFIX, y, y_step, pixels, x, pixel_step, ...)                        \
        do {                                                                                               \
            Py_ssize_t done_ = (pixels) / 8 * 8;                                                           \
            KERNEL##8_##SUFFIX(y, y_step, (pixels) / 8, x, pixel_step, __VA_ARGS__);                       \
            if ((pixels) - done_ >= 4) {                                                                   \
                KERNEL##4_##SUFFIX(y + done_ * (y_step), y_step, 1, x + done_ * (pixel_step), pixel_step,  \
                                   __VA_ARGS__);                                                           \
                done_ += 4;                                                                                \
            }                                                                                              \
            if ((pixels) - done_ >= 2) {                                                                   \
                KERNEL##2_##SUFFIX(y + done_ * (y_step), y_step, 1, x + done_ * (pixel_step), pixel_step,  \
                                   __VA_ARGS__);                                                           \
                done_ += 2;                                                                                \
            }                                                                                              \
            if ((pixels) - done_ >= 1)                                                                     \
                KERNEL##1_##SUFFIX(y + done_ * (y_step), y_step, 1, x + done_ * (pixel_step), pixel_step,  \
                                   __VA_ARGS__);                                                           \
        } while (0)

    /* the forward and the grad of w over `pixels` pixels: runs, and for the grad of a 3x3 kernel whose three row
       taps are all valid the whole row at once */
    #define FASTCONV_DEPTHWISE_SPANS(T, SUFFIX)                                                            \
    static inline void fastconv_depthwise_span_##SUFFIX(                                                   \
            T *y, Py_ssize_t y_step, Py_ssize_t pixels, const T *x, Py_ssize_t pixel_step,                 \
            Py_ssize_t blocks, const T *start, const T *taps, Py_ssize_t k, Py_ssize_t s_size,             \
            const long long *row_taps, Py_ssize_t r_size, Py_ssize_t row_step, Py_ssize_t col_step) {      \
        FASTCONV_RUNS_OF(fastconv_depthwise, SUFFIX, y, y_step, pixels, x, pixel_step, blocks, start,      \
                         taps, k, s_size, row_taps, r_size, row_step, col_step);                           \
    }                                                                                                      \
    static inline void fastconv_depthwise_grad_span_##SUFFIX(                                              \
            const T *dy, Py_ssize_t y_step, Py_ssize_t pixels, const T *x, Py_ssize_t pixel_step,          \
            Py_ssize_t blocks, T *taps, T *bias, Py_ssize_t k, Py_ssize_t s_size,                          \
            const long long *row_taps, Py_ssize_t r_size, Py_ssize_t row_step, Py_ssize_t col_step) {      \
        if (r_size == 3 && s_size == 3 && fastconv_row_of(row_taps, 0) >= 0                                \
                && fastconv_row_of(row_taps, 1) >= 0 && fastconv_row_of(row_taps, 2) >= 0)                 \
            fastconv_depthwise_grad3x3_##SUFFIX(dy, y_step, pixels, x, pixel_step, blocks, taps, bias, k,  \
                                                row_taps, row_step, col_step);                             \
        else                                                                                               \
            FASTCONV_RUNS_OF(fastconv_depthwise_grad, SUFFIX, dy, y_step, pixels, x, pixel_step, blocks,   \
                             taps, bias, k, s_size, row_taps, r_size, row_step, col_step);                 \
    }
    FASTCONV_DEPTHWISE_SPANS(float, f32)
    FASTCONV_DEPTHWISE_SPANS(double, f64)

    /* one pixel, the first `blocks` registers of channels: y[l] = start[l] + sum over the taps whose row_taps[r]
       and col_taps[s] are both valid of taps[(r*s_size + s)*k + l] * x[row_taps[r]*row_step + col_taps[s]*c + l] */
    #define FASTCONV_DEPTHWISE_PIXEL(T, V, SUFFIX)                                                         \
    static inline void fastconv_depthwise_pixel_##SUFFIX(                                                  \
            T *y, Py_ssize_t blocks, const T *start, const T *taps, Py_ssize_t k, Py_ssize_t s_size,       \
            const T *x, const long long *row_taps, const long long *col_taps, Py_ssize_t r_size,           \
            Py_ssize_t row_step, Py_ssize_t c) {                                                           \
        const Py_ssize_t lanes = sizeof(V) / sizeof(T);                                                    \
        for (Py_ssize_t b = 0; b < blocks * lanes; b += lanes) {                                           \
            V acc = *(const V *)(start + b);                                                               \
            for (Py_ssize_t r = 0; r < r_size; r++)                                                        \
                for (Py_ssize_t s = 0; s < s_size && row_taps[r] >= 0; s++)                                \
                    if (col_taps[s] >= 0)                                                                  \
                        acc += *(const V *)(taps + (r * s_size + s) * k + b)                               \
                               * *(const V *)(x + row_taps[r] * row_step + col_taps[s] * c + b);           \
            *(V *)(y + b) = acc;                                                                           \
        }                                                                                                  \
    }
    FASTCONV_DEPTHWISE_PIXEL(float, fastconv_f32v, f32)
    FASTCONV_DEPTHWISE_PIXEL(double, fastconv_f64v, f64)
    """
    void depthwise_span_f32 "fastconv_depthwise_span_f32"(
        float *y, Py_ssize_t y_step, Py_ssize_t pixels, const float *x, Py_ssize_t pixel_step, Py_ssize_t blocks,
        const float *start, const float *taps, Py_ssize_t k, Py_ssize_t s_size, const long long *row_taps,
        Py_ssize_t r_size, Py_ssize_t row_step, Py_ssize_t col_step) noexcept nogil
    void depthwise_span_f64 "fastconv_depthwise_span_f64"(
        double *y, Py_ssize_t y_step, Py_ssize_t pixels, const double *x, Py_ssize_t pixel_step, Py_ssize_t blocks,
        const double *start, const double *taps, Py_ssize_t k, Py_ssize_t s_size, const long long *row_taps,
        Py_ssize_t r_size, Py_ssize_t row_step, Py_ssize_t col_step) noexcept nogil
    void depthwise_grad_span_f32 "fastconv_depthwise_grad_span_f32"(
        const float *dy, Py_ssize_t y_step, Py_ssize_t pixels, const float *x, Py_ssize_t pixel_step,
        Py_ssize_t blocks, float *taps, float *bias, Py_ssize_t k, Py_ssize_t s_size, const long long *row_taps,
        Py_ssize_t r_size, Py_ssize_t row_step, Py_ssize_t col_step) noexcept nogil
    void depthwise_grad_span_f64 "fastconv_depthwise_grad_span_f64"(
        const double *dy, Py_ssize_t y_step, Py_ssize_t pixels, const double *x, Py_ssize_t pixel_step,
        Py_ssize_t blocks, double *taps, double *bias, Py_ssize_t k, Py_ssize_t s_size, const long long *row_taps,
        Py_ssize_t r_size, Py_ssize_t row_step, Py_ssize_t col_step) noexcept nogil
    void depthwise_pixel_f32 "fastconv_depthwise_pixel_f32"(
        float *y, Py_ssize_t blocks, const float *start, const float *taps, Py_ssize_t k, Py_ssize_t s_size,
        const float *x, const long long *row_taps, const long long *col_taps, Py_ssize_t r_size,
        Py_ssize_t row_step, Py_ssize_t c) noexcept nogil
    void depthwise_pixel_f64 "fastconv_depthwise_pixel_f64"(
        double *y, Py_ssize_t blocks, const double *start, const double *taps, Py_ssize_t k, Py_ssize_t s_size,
        const double *x, const long long *row_taps, const long long *col_taps, Py_ssize_t r_size,
        Py_ssize_t row_step, Py_ssize_t c) noexcept nogil


cdef inline Py_ssize_t lanes_of(const floating *any) noexcept nogil:
    """The channels of one SIMD register of this fused type."""
    if floating is float:
        return LANES_F32
    else:
        return LANES_F64
