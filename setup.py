"""Build script for the compiled part of fastconv: the Cython backend's extensions in fastconv/_ext.

Environment switches:
    FASTCONV_PORTABLE=1   build without -march=native (for wheels that run on other CPUs)
"""

import os
import sys
import tempfile
import warnings

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools._distutils.ccompiler import new_compiler
from setuptools._distutils.errors import CompileError, LinkError
from setuptools._distutils.sysconfig import customize_compiler

OPENMP_PROBE = """
#include <omp.h>
int main(void) {
    int threads = 0;
    #pragma omp parallel reduction(+:threads)
    threads += 1;
    return threads > 0 ? 0 : 1;
}
"""
PLAIN_PROBE = "int main(void) { return 0; }\n"


def _compiles(source: str, compile_args: list[str], link_args: list[str]) -> bool:
    """Whether the platform's C compiler builds and links this program with these flags."""
    compiler = new_compiler()
    customize_compiler(compiler)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "probe.c")
        with open(path, "w") as f:
            f.write(source)
        try:
            objects = compiler.compile([path], output_dir=tmp, extra_postargs=compile_args)
            compiler.link_executable(objects, os.path.join(tmp, "probe"), extra_postargs=link_args)
        except (CompileError, LinkError):
            return False
    return True


def _openmp_flags() -> tuple[list[str], list[str]]:
    """(compile, link) flags that enable OpenMP here, or empty lists (serial kernels) with a warning."""
    for flag in ("-fopenmp", "-Xpreprocessor -fopenmp", "/openmp"):
        args = flag.split()
        if _compiles(OPENMP_PROBE, args, args if not flag.startswith("/") else []):
            return args, (args if not flag.startswith("/") else [])
    warnings.warn("fastconv: the C compiler does not support OpenMP; the cython backend is built "
                  "single-threaded (its parallel loops run serially)")
    return [], []


def _arch_flags() -> list[str]:
    """-march=native unless FASTCONV_PORTABLE=1 or the compiler does not know it."""
    if os.environ.get("FASTCONV_PORTABLE", "0") not in ("", "0"):
        return []
    if _compiles(PLAIN_PROBE, ["-march=native"], []):
        return ["-march=native"]  # AVX2/FMA on this machine; source builds run where they were built
    return []


def _extensions() -> list[Extension]:
    omp_compile, omp_link = _openmp_flags()
    compile_args = [
        "-O3",  # auto-vectorizes the direct-convolution and pooling loops (no -ffast-math: NaN must propagate)
        *_arch_flags(),
        *omp_compile,
    ]
    if sys.platform == "win32":
        compile_args = [a for a in compile_args if not a.startswith("-")] + ["/O2"]
    macros = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]  # silence numpy's deprecated-API warning
    return [
        Extension(f"fastconv._ext.{name}", [f"fastconv/_ext/{name}.pyx"], include_dirs=[numpy.get_include()],
                  define_macros=macros, extra_compile_args=compile_args, extra_link_args=omp_link)
        for name in ("_conv", "_pool")
    ]


setup(
    ext_modules=cythonize(
        _extensions(),
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "initializedcheck": False,
            "cdivision": True,  # C integer division: all divisions in the kernels have positive operands
        },
    ),
)
