"""Row-major GEMM on scipy's BLAS (scipy.linalg.cython_blas), for float and double."""

from cython cimport floating
from scipy.linalg.cython_blas cimport dgemm, sgemm


cdef inline void gemm(bint trans_a, bint trans_b, int m, int n, int k, floating alpha,
                      const floating *a, int lda, const floating *b, int ldb, floating beta,
                      floating *c, int ldc) noexcept nogil:
    """C (m x n, row stride ldc) = alpha * op(A) (m x k) @ op(B) (k x n) + beta * C, all row-major.

    op(A) = A, or A^T when trans_a (A then stored k x m); lda, ldb are the row strides of the stored arrays.
    BLAS is column-major, where a row-major matrix reads as its transpose: compute C^T = op(B)^T op(A)^T,
    i.e. pass B first and swap m and n. The transpose flags carry over unchanged.
    """
    cdef char ta = b'T' if trans_a else b'N'
    cdef char tb = b'T' if trans_b else b'N'
    if floating is float:
        sgemm(&tb, &ta, &n, &m, &k, &alpha, <float *>b, &ldb, <float *>a, &lda, &beta, c, &ldc)
    else:
        dgemm(&tb, &ta, &n, &m, &k, &alpha, <double *>b, &ldb, <double *>a, &lda, &beta, c, &ldc)
