"""The named benchmark shapes: layers of real networks, one table for conv and one for pooling.

Batch sizes are 100 for MNIST-sized nets and 8 for ImageNet-sized ones. The ``_b1`` rows are
the same layers at batch 1: the only shapes small enough for the naive backend's Python loops.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fastconv._geometry import ConvGeometry, PoolGeometry, conv_geometry, pool_geometry


@dataclass(frozen=True)
class ConvShape:
    """x (n, c, h, w) and w (k, c // groups, r, s), with conv2d's keyword arguments (ints only)."""

    name: str
    source: str
    x: tuple[int, int, int, int]
    w: tuple[int, int, int, int]
    kwargs: dict = field(default_factory=dict)
    small: bool = False  # naive runs only on small shapes

    def geometry(self, dtype, channels_last: bool = False) -> ConvGeometry:
        return conv_geometry(np.empty(self.x, dtype), np.empty(self.w, dtype), channels_last=channels_last,
                             **self.kwargs)

    def describe(self) -> str:
        return f"x{_dims(self.x)} w{_dims(self.w)}{_options(self.kwargs)}"


@dataclass(frozen=True)
class PoolShape:
    """x (n, c, h, w), with the pooling keyword arguments shared by max and avg pooling."""

    name: str
    source: str
    x: tuple[int, int, int, int]
    kernel_size: int | tuple[int, int]
    kwargs: dict = field(default_factory=dict)
    small: bool = False

    def geometry(self, dtype, channels_last: bool = False) -> PoolGeometry:
        return pool_geometry(np.empty(self.x, dtype), self.kernel_size, channels_last=channels_last, **self.kwargs)

    def describe(self) -> str:
        kh, kw = (self.kernel_size,) * 2 if isinstance(self.kernel_size, int) else self.kernel_size
        return f"x{_dims(self.x)} {kh}x{kw}{_options(self.kwargs)}"


def _dims(shape: tuple[int, ...]) -> str:
    return "(" + ",".join(map(str, shape)) + ")"


def _options(kwargs: dict) -> str:
    return "".join(f" {key}={value}" for key, value in kwargs.items())


CONV_SHAPES = [
    ConvShape("mnist_5x5_b1", "SimpleConvNet conv (Deep Learning from Scratch), batch 1",
              (1, 1, 28, 28), (30, 1, 5, 5), small=True),
    ConvShape("lenet_c2_b1", "LeNet-5 second conv, batch 1", (1, 6, 14, 14), (16, 6, 5, 5), small=True),
    ConvShape("mnist_5x5", "SimpleConvNet conv (Deep Learning from Scratch)", (100, 1, 28, 28), (30, 1, 5, 5)),
    ConvShape("lenet_c2", "LeNet-5 second conv", (100, 6, 14, 14), (16, 6, 5, 5)),
    ConvShape("resnet_stem", "ResNet 7x7 stride-2 stem", (8, 3, 224, 224), (64, 3, 7, 7),
              dict(stride=2, padding=3)),
    ConvShape("resnet_3x3", "ResNet-18 conv2_x 3x3", (8, 64, 56, 56), (64, 64, 3, 3), dict(padding=1)),
    ConvShape("resnet_down", "ResNet-18 conv3_1 3x3 stride-2 downsample", (8, 64, 56, 56), (128, 64, 3, 3),
              dict(stride=2, padding=1)),
    ConvShape("vgg_3x3", "VGG-style 3x3 at 28x28", (8, 128, 28, 28), (128, 128, 3, 3), dict(padding=1)),
    ConvShape("alexnet_c1", "AlexNet conv1 11x11 stride 4", (8, 3, 227, 227), (96, 3, 11, 11), dict(stride=4)),
    ConvShape("pointwise", "MobileNet 1x1 pointwise", (8, 256, 28, 28), (64, 256, 1, 1)),
    ConvShape("depthwise", "MobileNet 3x3 depthwise", (8, 128, 56, 56), (128, 1, 3, 3),
              dict(padding=1, groups=128)),
]

POOL_SHAPES = [
    PoolShape("lenet_pool_b1", "LeNet-5 2x2 pool after conv1, batch 1", (1, 6, 28, 28), 2, dict(stride=2),
              small=True),
    PoolShape("pool_2x2", "2x2 stride-2 pool on a 112x112 map (VGG-style)", (8, 64, 112, 112), 2, dict(stride=2)),
    PoolShape("resnet_pool", "ResNet 3x3 stride-2 pool (overlapping windows)", (8, 64, 112, 112), 3,
              dict(stride=2, padding=1)),
]

SHAPES: dict[str, ConvShape | PoolShape] = {shape.name: shape for shape in CONV_SHAPES + POOL_SHAPES}

#: `fastconv bench --quick`: one naive-sized layer, the classic small and large convs, depthwise, one pool
QUICK_SHAPES = ("mnist_5x5_b1", "mnist_5x5", "resnet_3x3", "depthwise", "lenet_pool_b1", "pool_2x2")

SMALL_SHAPES = tuple(name for name, shape in SHAPES.items() if shape.small)
