"""The polyphase layout of depthwise convolution, shared by the numba and cython polyphase methods.

Each input plane is copied, zero-padded, into sh * sw phase planes of hq x wq cells:

    phase (a, b)[i, j] = padded x[i*sh + a, j*sw + b]

so that output (oh, ow) reads, for tap (r, s), phase ((r*dh) % sh, (s*dw) % sw) at (oh + r*dh // sh,
ow + s*dw // sw): a stride-1 shift. With the output laid out on the same row pitch wq (its columns past Wo are
scratch), every tap is one contiguous vector loop over out_h * wq cells, whatever the stride:

    acc[i] += w[k, 0, r, s] * phases[offset(r, s) + i]     for i < out_h * wq

The gradient of w is the matching dot product with dy laid out on pitch wq (zeros past Wo), and the gradient of
x the matching axpy into zeroed phase planes, copied back to dx. The row loops of the direct method are too short
on 7x7 or 14x14 maps for their vector loops to pay; these are not.
"""

from __future__ import annotations

import numpy as np

from fastconv._geometry import ConvGeometry

#: widest output map the method is the default for: wider rows vectorize well in the direct method's row loops,
#: which also skip the phase copies (measured: 1.5-2x faster than them up to 28x28 maps, slower at 56x56 stride 1)
PREFERRED_MAX_OUT_W = 32


def applies(g: ConvGeometry) -> bool:
    """One input channel per group, and no negative padding. A negative side (the rotated geometry of a grad of x
    whose padding exceeds the kernel's extent, ConvGeometry.rotated) would crop input rows or columns, which the
    phase copies cannot skip: they would write before the phase planes, out of the scratch buffer."""
    return g.is_channelwise and g.pad_top >= 0 and g.pad_bottom >= 0 and g.pad_left >= 0 and g.pad_right >= 0


def preferred(g: ConvGeometry) -> bool:
    """Depthwise layers on small maps."""
    return applies(g) and g.groups > 1 and g.out_w <= PREFERRED_MAX_OUT_W


def layout(g: ConvGeometry) -> tuple[int, int, int]:
    """(phases, hq, wq): the number of phase planes and their rows and row pitch, large enough for every input
    cell and for the reads of every tap (one spare row takes the last row's overrun past wq)."""
    hq = max(-(-(g.h + g.pad_top) // g.stride_h), g.out_h + (g.r - 1) * g.dilation_h // g.stride_h + 1)
    wq = max(-(-(g.w + g.pad_left) // g.stride_w), g.out_w + (g.s - 1) * g.dilation_w // g.stride_w)
    return g.stride_h * g.stride_w, hq, wq


def scratch_buffer(g: ConvGeometry, chunks: int) -> dict:
    """The plan buffer of the work chunks' scratch, one row each: its phase planes, then its output (or dy) rows
    on pitch wq."""
    phases, hq, wq = layout(g)
    return {"scratch": ((chunks, phases * hq * wq + g.out_h * wq), g.dtype)}


def params(g: ConvGeometry) -> np.ndarray:
    """(sh, sw, top, left, hq, wq) int64: what the kernels need of the geometry besides the tap offsets.
    ValueError where the method does not apply (every kernel call builds these: a wrong dispatch is an error, not
    a write out of the scratch)."""
    if not applies(g):
        raise ValueError(f"polyphase: needs one input channel per group and no negative padding, not {g}")
    return np.array([g.stride_h, g.stride_w, g.pad_top, g.pad_left, *layout(g)[1:]], np.int64)


def tap_offsets(g: ConvGeometry) -> np.ndarray:
    """(R*S,) uint64: where tap (r, s) reads in the phase planes, relative to output cell 0 (computed once per
    call: divisions in the kernels' loops would cost more than the taps)."""
    _, hq, wq = layout(g)
    r = np.arange(g.r)[:, None] * g.dilation_h
    s = np.arange(g.s)[None, :] * g.dilation_w
    phase = (r % g.stride_h) * g.stride_w + s % g.stride_w
    return (phase * hq * wq + r // g.stride_h * wq + s // g.stride_w).astype(np.uint64).ravel()
