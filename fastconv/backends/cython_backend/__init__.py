"""The cython backend: kernels compiled from this package's .pyx files (OpenMP loops, scipy's BLAS).

One module per method, each beside the extension it wraps:

    conv.py                       which conv method runs by default; the backward pass composed of the methods
    gemm.py       _gemm.pyx       im2col + GEMM per tile of output rows: every layer (grad of x by col2im)
    pointwise.py  (_gemm.pyx)     1x1 stride 1 unpadded: the same GEMMs, reading x in place
    direct.py     _direct.pyx     one input channel per group (depthwise): loops along rows
    polyphase.py  (_direct.pyx)   the same on small maps: whole-plane loops over phase planes
    blocked.py    _blocked.pyx    the same over blocks of 16 channels interleaved: strided layers, small maps
    winograd.py   _winograd.pyx   3x3 stride 1: F(2x2, 3x3) forward, F(3x3, 2x2) grad of w
    blocked_direct.py _blocked_direct.pyx forward, groups of several input channels: register-blocked micro-kernel
    pool.py       _pool.pyx       max and average pooling
    pool_nhwc.py  _nhwc.pyx       max and average pooling on channels-last arrays, channels innermost
    pointwise_nhwc.py (_nhwc.pyx) the 1x1 convolution on channels-last arrays: one GEMM over all pixels
    channelwise_nhwc.py (_nhwc.pyx) depthwise convolution on channels-last arrays, channels innermost
    winograd_nhwc.py (_nhwc.pyx)  Winograd F(4x4, 3x3) on channels-last arrays, the channels as the transforms' vectors
    blocked_direct_nhwc.py (_blocked_direct.pyx) blocked_direct's forward on channels-last arrays: bands of
                                  contiguous channels, y written channels innermost
    gemm_nhwc.py  _gemm_nhwc.pyx  every convolution on channels-last arrays: im2col of contiguous channel slices
                                  + GEMM per tile of output pixels, written in place into y
                  _common.pxd/.pyx, _blas.pxd   shared by the kernels: ConvShape, row loops, bias grad; GEMM
    _levels/                      which build of the kernels runs: -march=native, or a portable build's best level
    _reduce.py                    the frame of a grad-of-w pass with per-thread partials (gemm, winograd)

A method module says whether it ``applies(g)`` and, per pass, has a function and its plan (``forward`` and
``forward_plan``, ``grad_w`` and ``grad_w_plan``, ...): the function takes its scratch from the plan and runs
its kernel in ``parallel_region(plan.threads)``, the only place the thread counts are set.
"""

from __future__ import annotations

import os
from pathlib import Path

# A wheel's kernels run on the OpenMP runtime bundled beside the package (fastconv.libs), numba's parallel loops on
# the system's: two thread pools, whose idle threads spin by default while the other pool's threads work (measured
# in the wheel: 8-16% slower on the quick benchmark, some rows 1.3-2.1x; with idle threads that sleep, within 2% of
# a source build, whose one runtime serves both). The user's own OMP_WAIT_POLICY wins.
if any(Path(__file__).resolve().parents[3].glob("fastconv.libs/libgomp*")):
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")

try:
    from fastconv.backends.cython_backend import _levels

    for _module in ("_common", *_levels.HOT_MODULES):
        _levels.load(_module)
except ImportError as exc:  # the registry reports this as BackendUnavailableError
    raise ImportError(f"the cython backend's compiled extensions are missing ({exc}); build them with `pip install .` "
                      f"(needs a C compiler) or `python setup.py build_ext --inplace` in a source checkout") from exc

from fastconv.backends._channels_last import adapted
from fastconv.backends._protocol import KERNELS, default_kernels, methods_of
from fastconv.backends.cython_backend import (blocked_direct_nhwc, channelwise_nhwc, conv, gemm_nhwc,
                                              plane_gemm_nhwc, pointwise_nhwc, pool, pool_nhwc, winograd_nhwc)

#: conv2d ops from conv's tables, pooling from pool's; channels-last geometries also from the native modules
methods = adapted(methods_of(conv, pool), pointwise_nhwc, channelwise_nhwc, winograd_nhwc, blocked_direct_nhwc,
                  plane_gemm_nhwc, gemm_nhwc, pool_nhwc)
globals().update(default_kernels(methods))

__all__ = [*KERNELS, "methods"]
