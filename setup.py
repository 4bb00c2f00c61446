"""Build script for the compiled part of fastconv: the cython backend's extensions (its .pyx files).

Environment switches:
    FASTCONV_PORTABLE=1   build without -march=native (for wheels that run on other CPUs)
"""

import os
import tempfile
import warnings

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CompileError, LinkError


def _switch(name: str) -> bool:
    """An on/off environment variable: unset, "" or "0" is off, "1" on; anything else is an error naming it."""
    value = os.environ.get(name, "")
    if value not in ("", "0", "1"):
        raise ValueError(f"{name}={value!r}: use 1 (on) or 0 (off)")
    return value == "1"

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

#: Cython directives for every .pyx (the one place they are set)
COMPILER_DIRECTIVES = {
    "language_level": 3,
    "boundscheck": False,
    "wraparound": False,
    "initializedcheck": False,
    "cdivision": True,  # C integer division: all divisions in the kernels have positive operands
}


class BuildExt(build_ext):
    """build_ext that adds the optimization, -march=native and OpenMP flags this compiler accepts."""

    def build_extensions(self):
        compile_args, link_args = self._flags()
        for ext in self.extensions:
            ext.extra_compile_args += compile_args
            ext.extra_link_args += link_args
        super().build_extensions()

    def _flags(self) -> tuple[list[str], list[str]]:
        """(compile, link) flags; OpenMP left out, with a warning, when the compiler lacks it."""
        msvc = self.compiler.compiler_type == "msvc"
        # -O3 auto-vectorizes the direct-convolution and pooling loops; never -ffast-math: NaN must propagate
        # through max pooling
        compile_args = ["/O2"] if msvc else ["-O3"]
        portable = _switch("FASTCONV_PORTABLE")
        if not msvc and not portable and self._compiles(PLAIN_PROBE, ["-march=native"], []):
            compile_args.append("-march=native")  # AVX2/FMA here: a source build runs where it was built
        # MSVC links OpenMP by itself; Apple's clang takes the flag through its preprocessor
        candidates = [(["/openmp"], [])] if msvc else [(["-fopenmp"],) * 2, (["-Xpreprocessor", "-fopenmp"],) * 2]
        for openmp_compile, openmp_link in candidates:
            if self._compiles(OPENMP_PROBE, openmp_compile, openmp_link):
                return compile_args + openmp_compile, openmp_link
        warnings.warn("fastconv: the C compiler does not support OpenMP; the cython backend is built "
                      "single-threaded (its parallel loops run serially)")
        return compile_args, []

    def _compiles(self, source: str, compile_args: list[str], link_args: list[str]) -> bool:
        """Whether this compiler builds and links the program with these flags."""
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "probe.c")
            with open(path, "w") as f:
                f.write(source)
            try:
                objects = self.compiler.compile([path], output_dir=tmp, extra_postargs=compile_args)
                self.compiler.link_executable(objects, "probe", output_dir=tmp, extra_postargs=link_args)
            except (CompileError, LinkError):
                return False
        return True


PACKAGE = "fastconv.backends.cython_backend"
MODULES = ("_common", "_gemm", "_direct", "_winograd", "_pool")


def _extension(name: str) -> Extension:
    return Extension(f"{PACKAGE}.{name}", [os.path.join(*PACKAGE.split("."), f"{name}.pyx")],
                     include_dirs=[numpy.get_include()],
                     define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")])  # no deprecated-API warning


setup(
    ext_modules=cythonize([_extension(name) for name in MODULES], compiler_directives=COMPILER_DIRECTIVES),
    cmdclass={"build_ext": BuildExt},
)
