"""Which build of the cython backend's kernels runs on this CPU.

A source build compiles every extension for the machine it is built on (-march=native); its modules sit in
cython_backend itself and the subpackages here stay empty. A portable build (a wheel: FASTCONV_PORTABLE=1, see
setup.py) compiles them for x86-64-v2, and the hot kernel modules again for x86-64-v3 (AVX2, FMA) and x86-64-v4
(AVX-512) into the subpackages x86_64_v3 and x86_64_v4. `load` returns a kernel module from the best level that the
running CPU supports and that was built.
"""

from __future__ import annotations

import functools
import importlib
import platform

#: the CPU features (LLVM's names) each x86-64 level requires beyond the one before it, best level last
LEVEL_FEATURES = {
    "x86-64-v2": ("cx16", "popcnt", "sahf", "sse3", "sse4.1", "sse4.2", "ssse3"),
    "x86-64-v3": ("avx", "avx2", "bmi", "bmi2", "f16c", "fma", "lzcnt", "movbe", "xsave"),
    "x86-64-v4": ("avx512bw", "avx512cd", "avx512dq", "avx512f", "avx512vl"),
}
#: the levels a portable build adds, each in its subpackage here (setup.py's ADDED_LEVELS)
ADDED_LEVELS = ("x86-64-v3", "x86-64-v4")
#: the kernel modules built again per added level (setup.py's HOT_MODULES)
HOT_MODULES = ("_gemm", "_direct", "_blocked", "_blocked_direct", "_winograd", "_pool", "_nhwc", "_gemm_nhwc")
_PACKAGE = __name__.rsplit(".", 1)[0]


@functools.lru_cache(maxsize=None)
def cpu_level() -> str | None:
    """The best x86-64 level this CPU and its OS support (LLVM's host feature detection, which leaves out AVX
    and AVX-512 when the OS does not save their registers); None on other architectures or below x86-64-v2."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return None
    import llvmlite.binding  # numba's compiler library, a dependency already

    features = {name for name, present in llvmlite.binding.get_host_cpu_features().items() if present}
    best = None
    for level, required in LEVEL_FEATURES.items():
        if not features.issuperset(required):
            break
        best = level
    return best


def supports(level: str) -> bool:
    """Whether this CPU runs code built for this x86-64 level."""
    names = list(LEVEL_FEATURES)
    return cpu_level() is not None and names.index(level) <= names.index(cpu_level())


def require(level: str) -> None:
    """ImportError unless this CPU runs the level: each level's subpackage calls it first, so that importing its
    modules where they cannot run (a tool importing every submodule, say) is an error, not a crash on an illegal
    instruction."""
    if not supports(level):
        raise ImportError(f"fastconv's kernels built for {level} cannot run on this CPU (it supports "
                          f"{cpu_level() or 'no x86-64 level'})")


@functools.lru_cache(maxsize=None)
def running_level() -> str:
    """The level whose kernels `load` returns: an added level of a portable build, or the baseline's build
    target ("native" for a source build, "x86-64-v2" for a portable one on a CPU without AVX2)."""
    from fastconv.backends.cython_backend import _common

    for level in reversed(ADDED_LEVELS):
        if supports(level) and _built(level):
            return level
    return _common.build_target()


def load(name: str):
    """The compiled module `name` (e.g. "_gemm") of the running level: from its subpackage for an added level
    (hot modules only), from cython_backend otherwise."""
    level = running_level()
    if level in ADDED_LEVELS and name in HOT_MODULES:
        return importlib.import_module(f"{__name__}.{_subpackage(level)}.{name}")
    return importlib.import_module(f"{_PACKAGE}.{name}")


@functools.lru_cache(maxsize=None)
def _built(level: str) -> bool:
    """Whether a portable build put every hot module in this level's subpackage (for a level this CPU supports:
    the subpackage refuses to import otherwise)."""
    try:
        for name in HOT_MODULES:
            importlib.import_module(f"{__name__}.{_subpackage(level)}.{name}")
    except ImportError:
        return False
    return True


def _subpackage(level: str) -> str:
    return level.replace("-", "_")


def describe() -> str:
    """One line for `fastconv info`: the kernels' level and the CPU's."""
    level = running_level()
    build = "a source build for this machine" if level == "native" else "a portable build"
    return f"{level} ({build}; this CPU supports {cpu_level() or 'no x86-64 level'})"
