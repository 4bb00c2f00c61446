"""What the convolution kernels share: the geometry as a C struct, and small loops over contiguous rows."""

from cython cimport floating


cdef extern from *:
    """
    #if defined(__AVX512F__)
    #define FASTCONV_VECTOR_BYTES 64
    #elif defined(__AVX__)
    #define FASTCONV_VECTOR_BYTES 32
    #else
    #define FASTCONV_VECTOR_BYTES 16
    #endif
    #if defined(__GNUC__)  /* GCC and Clang: vector types, read from any address of their elements */
    typedef float fastconv_f32v __attribute__((vector_size(FASTCONV_VECTOR_BYTES), aligned(4), may_alias));
    typedef double fastconv_f64v __attribute__((vector_size(FASTCONV_VECTOR_BYTES), aligned(8), may_alias));
    #else  /* one lane: the same loops on scalars */
    typedef float fastconv_f32v;
    typedef double fastconv_f64v;
    #endif
    #define FASTCONV_LANES_F32 ((Py_ssize_t)(sizeof(fastconv_f32v) / sizeof(float)))
    #define FASTCONV_LANES_F64 ((Py_ssize_t)(sizeof(fastconv_f64v) / sizeof(double)))
    """
    # the SIMD registers of the instruction set a module is compiled for, as C vector types (fastconv_f32v,
    # fastconv_f64v) for the micro-kernels written in C, and their lanes
    const Py_ssize_t LANES_F32 "FASTCONV_LANES_F32"
    const Py_ssize_t LANES_F64 "FASTCONV_LANES_F64"

cdef struct ConvShape:
    # a ConvGeometry's fields of the same names (Python passes vars(g), converted by Cython)
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


cdef inline void pad_rows(const floating *xc, floating *dst, Py_ssize_t first, Py_ssize_t rows, Py_ssize_t cols,
                          const ConvShape *p) noexcept nogil:
    """dst (rows, cols)[a, b] = xc (h, w)[first + a - pad_top, b - pad_left], zero outside xc: rows of the
    zero-padded plane, from row `first` on."""
    cdef Py_ssize_t a, col, lo, hi, ih
    cdef const floating *src
    valid_span(-p.pad_left, 1, p.w, cols, &lo, &hi)
    for a in range(rows):
        ih = first + a - p.pad_top
        if ih < 0 or ih >= p.h:
            fill(dst, cols, 0)
        else:
            src = xc + ih * p.w - p.pad_left
            fill(dst, lo, 0)
            for col in range(lo, hi):
                dst[col] = src[col]
            fill(dst + hi, cols - hi, 0)
        dst += cols


cdef inline double total(const floating *a, Py_ssize_t count) noexcept nogil:
    """Sum of a[0:count] with 8 partial sums, and on rows of at least 128 first with 32 (the compiler may not
    reorder a plain sum loop; 8 partial sums are one chain of dependent vector adds, 32 four independent ones:
    4x faster on rows of thousands; on short rows their setup and folding cost more than they save)."""
    cdef floating acc[32]
    cdef Py_ssize_t i, j, body = 0
    cdef double result = 0
    for j in range(8):
        acc[j] = 0
    if count >= 128:
        for j in range(8, 32):
            acc[j] = 0
        body = count - count % 32
        for i in range(0, body, 32):
            for j in range(32):
                acc[j] += a[i + j]
        for j in range(8):
            acc[j] += (acc[j + 8] + acc[j + 16]) + acc[j + 24]
    for i in range(body, count - 7, 8):
        for j in range(8):
            acc[j] += a[i + j]
    for i in range(count - (count - body) % 8, count):
        result += a[i]
    for j in range(8):
        result += acc[j]
    return result


cdef inline Py_ssize_t ceil_div(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    return (a + b - 1) // b


cdef struct Block:
    Py_ssize_t n, group, start, stop  # image, group, rows start:stop


cdef struct Span:
    Py_ssize_t lo, hi  # channels (or rows) lo:hi


cdef inline Span span_of(Py_ssize_t block, Py_ssize_t blocks, Py_ssize_t count) noexcept nogil:
    """Block `block` of `blocks` near-equal blocks of count channels; returned by value (private in prange)."""
    cdef Span span
    span.lo = block * count // blocks
    span.hi = (block + 1) * count // blocks
    return span


cdef inline Block block_of(Py_ssize_t item, Py_ssize_t groups, Py_ssize_t rows, Py_ssize_t block_rows) noexcept nogil:
    """Work item -> block, when items run over (image, group, block of block_rows of rows), blocks fastest.

    Returned by value, so that prange makes the caller's copy private.
    """
    cdef Py_ssize_t blocks = ceil_div(rows, block_rows)
    cdef Block b
    b.n = item // blocks // groups
    b.group = item // blocks % groups
    b.start = (item % blocks) * block_rows
    b.stop = min(b.start + block_rows, rows)
    return b
