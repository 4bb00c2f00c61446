"""Build script for the compiled part of fastconv: the cython backend's extensions (its .pyx files).

A source build compiles every extension with -march=native: it runs where it was built, at full speed.

Environment switches:
    FASTCONV_PORTABLE=1   build for other CPUs (wheels): every extension for x86-64-v2, and the hot kernels once
                          more for each of ADDED_LEVELS, into the subpackages of cython_backend/_levels; the
                          best level the running CPU supports is chosen at import (cython_backend/_levels)
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
    """build_ext that adds the optimization, instruction-set and OpenMP flags this compiler accepts."""

    def build_extensions(self):
        compile_args, link_args = self._flags()
        accepted = {level: self._accepts_level(level) for level in {ext.level for ext in self.extensions}}
        for level in ADDED_LEVELS:
            if level in accepted and not accepted[level]:
                warnings.warn(f"fastconv: the C compiler does not know -march={level}; the kernels are not built "
                              f"for it (the {BASELINE_LEVEL} build runs on such CPUs)")
        self.extensions = [ext for ext in self.extensions if accepted[ext.level] or ext.level not in ADDED_LEVELS]
        for ext in self.extensions:
            if accepted[ext.level]:
                ext.extra_compile_args.append(f"-march={ext.level}")
            else:  # what build_target() reports
                ext.define_macros = [(name, '"generic"' if name == "FASTCONV_TARGET" else value)
                                     for name, value in ext.define_macros]
            ext.extra_compile_args += compile_args
            ext.extra_link_args += link_args
        super().build_extensions()

    def _accepts_level(self, level: str) -> bool:
        """Whether this compiler builds with -march=level (native: this CPU's; a source build without it, or
        with MSVC, is generic)."""
        return self.compiler.compiler_type != "msvc" and self._compiles(PLAIN_PROBE, [f"-march={level}"], [])

    def _flags(self) -> tuple[list[str], list[str]]:
        """(compile, link) flags shared by every extension; OpenMP left out, with a warning, when the compiler
        lacks it."""
        msvc = self.compiler.compiler_type == "msvc"
        # -O3 auto-vectorizes the direct-convolution and pooling loops; never -ffast-math: NaN must propagate
        # through max pooling
        compile_args = ["/O2"] if msvc else ["-O3"]
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
MODULES = ("_common", "_gemm", "_direct", "_blocked", "_blocked_direct", "_winograd", "_pool", "_nhwc", "_gemm_nhwc")
#: the modules whose loops are the kernels: built again per instruction-set level in a portable build
HOT_MODULES = ("_gemm", "_direct", "_blocked", "_blocked_direct", "_winograd", "_pool", "_nhwc", "_gemm_nhwc")
#: GCC/Clang -march levels of a portable build: the baseline every extension is built for, then the others
BASELINE_LEVEL = "x86-64-v2"
ADDED_LEVELS = ("x86-64-v3", "x86-64-v4")


def _extension(name: str, target: str) -> Extension:
    """The extension of cython_backend/<name>.pyx; target ("native" or a -march level) is what _common's
    build_target() reports."""
    return Extension(f"{PACKAGE}.{name}", [os.path.join(*PACKAGE.split("."), f"{name}.pyx")],
                     include_dirs=[numpy.get_include()],
                     define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION"),  # no deprecated-API warning
                                    ("FASTCONV_TARGET", f'"{target}"')])


def _at_level(ext: Extension, level: str) -> Extension:
    """ext compiled with -march=level, under _levels.<level> for an added level. The C source is the same: an
    extension's init function is named after the last part of its module name, not its package."""
    name = ext.name if level not in ADDED_LEVELS else \
        f"{PACKAGE}._levels.{level.replace('-', '_')}.{ext.name.rsplit('.', 1)[1]}"
    copy = Extension(name, list(ext.sources), include_dirs=list(ext.include_dirs),
                     define_macros=list(ext.define_macros))
    copy.level = level
    return copy


def _extensions() -> list[Extension]:
    """Every module at -march=native; or, portable, at the baseline and the hot ones at each added level."""
    target = BASELINE_LEVEL if _switch("FASTCONV_PORTABLE") else "native"
    built = cythonize([_extension(name, target) for name in MODULES], compiler_directives=COMPILER_DIRECTIVES)
    if target == "native":
        return [_at_level(ext, "native") for ext in built]
    hot = [ext for ext in built if ext.name.rsplit(".", 1)[1] in HOT_MODULES]
    return [_at_level(ext, BASELINE_LEVEL) for ext in built] + \
        [_at_level(ext, level) for level in ADDED_LEVELS for ext in hot]


setup(ext_modules=_extensions(), cmdclass={"build_ext": BuildExt})
