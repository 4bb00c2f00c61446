"""The bias gradient, which every conv method but the direct one computes apart, the OpenMP self-check, and what
the extensions were compiled for."""

from cython cimport floating
from cython.parallel cimport parallel, prange, threadid


def bias_grad(const floating[:, :, :, ::1] dy, floating[::1] db, int num_threads):
    """db (k,) = dy (n, k, out_h, out_w) summed over images and pixels."""
    cdef Py_ssize_t n, k, pixels = dy.shape[2] * dy.shape[3]
    cdef double acc
    for k in prange(dy.shape[1], nogil=True, schedule="static", num_threads=num_threads):
        acc = 0
        for n in range(dy.shape[0]):
            acc = acc + total(&dy[n, k, 0, 0], pixels)
        db[k] = <floating>acc


def parallel_threads(int num_threads):
    """How many threads a parallel region asked for num_threads runs (1 when built without OpenMP)."""
    cdef unsigned char[::1] seen = bytearray(num_threads)
    with nogil, parallel(num_threads=num_threads):
        seen[threadid()] = 1
    return sum(seen)


cdef extern from *:
    const char *FASTCONV_TARGET  # set by setup.py: "native", an -march level such as "x86-64-v2", or "generic"


def build_target():
    """The instruction set the baseline extensions were compiled for: "native" (-march=native, a source build),
    an -march level such as "x86-64-v2" (a portable build), or "generic" (no -march flag)."""
    return FASTCONV_TARGET.decode()
