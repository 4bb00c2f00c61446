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

At stride 1 with the output as wide as the input ("same" padding across), the planes are instead the S column
shifts of the zero-padded plane on the input's own pitch W = Wo:

    shifted plane j[i, ow] = padded x[i, ow + j*dw]

Tap (r, s) reads plane s at row oh + r*dh, so the output is computed in place in y (its pitch is Wo), and dy is
read in place; each shifted plane is one flat copy of the input plane, its cells read from the side padding
zeroed after it (the phase plane took one copy per row, and the output one more copy).
"""

from __future__ import annotations

import numpy as np

from fastconv._geometry import ConvGeometry

#: widest output map the method is the default for: wider rows vectorize well in the direct method's row loops,
#: which also skip the phase copies (measured: 1.5-2x faster than them up to 28x28 maps, slower at 56x56 stride 1)
PREFERRED_MAX_OUT_W = 32
#: the same for shifted planes, which copy no rows: 3x3 at 56x56 took 0.6-0.9x the direct method's time, at
#: 112x112 0.8x (cython) to 1.4x (numba)
SHIFTED_PREFERRED_MAX_OUT_W = 64
#: fewest output cells of a plane on which shifted planes are preferred to channel blocks (fastconv.backends._blocked)
#: for at most nine taps: the per-plane copies and vector remainders cost more on 7x7 maps (1.3x blocked's time on
#: 960 channels at 7x7; 0.75x at 14x14). More taps stay with blocks, which keep each pixel's sum in registers.
SHIFTED_MIN_CELLS = 128


def applies(g: ConvGeometry) -> bool:
    """One input channel per group, and no negative padding. A negative side (the rotated geometry of a grad of x
    whose padding exceeds the kernel's extent, ConvGeometry.rotated) would crop input rows or columns, which the
    phase copies cannot skip: they would write before the phase planes, out of the scratch buffer."""
    return g.is_channelwise and g.pad_top >= 0 and g.pad_bottom >= 0 and g.pad_left >= 0 and g.pad_right >= 0


def preferred(g: ConvGeometry) -> bool:
    """Depthwise layers on small maps."""
    widest = SHIFTED_PREFERRED_MAX_OUT_W if shifted(g) else PREFERRED_MAX_OUT_W
    return applies(g) and g.groups > 1 and g.out_w <= widest


def shifted_pays(g: ConvGeometry) -> bool:
    """Whether shifted planes are preferred to channel blocks: at most nine taps, on SHIFTED_MIN_CELLS cells."""
    return applies(g) and shifted(g) and g.r * g.s <= 9 and g.out_h * g.out_w >= SHIFTED_MIN_CELLS


def shifted(g: ConvGeometry) -> bool:
    """Whether the planes are column shifts (stride 1, output as wide as the input) rather than phases."""
    return g.stride_h == g.stride_w == 1 and g.out_w == g.w


def layout(g: ConvGeometry) -> tuple[int, int, int]:
    """(planes, hq, wq): the number of phase (or shifted) planes and their rows and row pitch, large enough for
    every input cell and for the reads of every tap (one spare row takes the last row's overrun past wq)."""
    if shifted(g):
        return g.s, g.out_h + (g.r - 1) * g.dilation_h, g.w
    hq = max(-(-(g.h + g.pad_top) // g.stride_h), g.out_h + (g.r - 1) * g.dilation_h // g.stride_h + 1)
    wq = max(-(-(g.w + g.pad_left) // g.stride_w), g.out_w + (g.s - 1) * g.dilation_w // g.stride_w)
    return g.stride_h * g.stride_w, hq, wq


def scratch_buffer(g: ConvGeometry, chunks: int) -> dict:
    """The plan buffer of the work chunks' scratch, one row each: its phase planes, then its output (or dy) rows
    on pitch wq (none for shifted planes, whose pitch is the output's)."""
    planes, hq, wq = layout(g)
    return {"scratch": ((chunks, planes * hq * wq + (0 if shifted(g) else g.out_h * wq)), g.dtype)}


def params(g: ConvGeometry) -> np.ndarray:
    """(sh, sw, top, left, hq, wq, shifts, dw) int64: what the kernels need of the geometry besides the tap
    offsets; shifts is the number of shifted planes, 0 for phase planes.
    ValueError where the method does not apply (every kernel call builds these: a wrong dispatch is an error, not
    a write out of the scratch)."""
    if not applies(g):
        raise ValueError(f"polyphase: needs one input channel per group and no negative padding, not {g}")
    return np.array([g.stride_h, g.stride_w, g.pad_top, g.pad_left, *layout(g)[1:], g.s if shifted(g) else 0,
                     g.dilation_w], np.int64)


def tap_offsets(g: ConvGeometry) -> np.ndarray:
    """(R*S,) uint64: where tap (r, s) reads in the phase planes, relative to output cell 0 (computed once per
    call: divisions in the kernels' loops would cost more than the taps)."""
    _, hq, wq = layout(g)
    r = np.arange(g.r)[:, None] * g.dilation_h
    if shifted(g):
        return (np.arange(g.s)[None, :] * hq * wq + r * wq).astype(np.uint64).ravel()
    s = np.arange(g.s)[None, :] * g.dilation_w
    phase = (r % g.stride_h) * g.stride_w + s % g.stride_w
    return (phase * hq * wq + r // g.stride_h * wq + s // g.stride_w).astype(np.uint64).ravel()
