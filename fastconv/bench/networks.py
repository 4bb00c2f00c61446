"""Layer tables of five classic networks: every distinct convolution and pooling layer, and how often it occurs.

LeNet-5 (LeCun et al. 1998) on 28x28 digits, its first conv padded by 2 (the paper's 32x32 input), and torchvision's
AlexNet, VGG-16, ResNet-18 and MobileNetV2 at 224x224, written down from their definitions. A layer is named after
its place in the network (torchvision's module path: ``resnet18.layer2.0.conv1``). Layers of one network with the
same geometry are listed once, under their first name, with ``count`` occurrences: a network's time is
sum(count * time). Pools that do nothing at 224x224 (AlexNet's and VGG-16's adaptive average pools, whose input is
already their output size) are left out; the global average pools of ResNet-18 and MobileNetV2 are the 7x7 average
pools they amount to.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np

from fastconv.bench.shapes import ConvShape, PoolShape

Pair = tuple[int, int]


@dataclass(frozen=True)
class ConvLayer:
    """x (n, in_channels, *hw) convolved with w (out_channels, in_channels // groups, *kernel)."""

    network: str
    name: str
    in_channels: int
    out_channels: int
    kernel: Pair
    stride: Pair
    padding: Pair
    groups: int
    hw: Pair
    count: int

    @property
    def ops(self) -> tuple[str, ...]:
        return ("conv_fwd", "conv_fwd_bwd")

    def shape(self, batch: int) -> ConvShape:
        kwargs = _kwargs(stride=self.stride, padding=self.padding, groups=self.groups)
        return ConvShape(shape_name(self.name, batch), self.network, (batch, self.in_channels, *self.hw),
                         (self.out_channels, self.in_channels // self.groups, *self.kernel), kwargs)

    def describe(self) -> str:
        """e.g. '64->128 3x3 /2 pad 1 @56x56'."""
        groups = f" groups {self.groups}" if self.groups > 1 else ""
        return (f"{self.in_channels}->{self.out_channels} {_window(self.kernel, self.stride, self.padding)}"
                f"{groups} @{_size(self.hw)}")


@dataclass(frozen=True)
class PoolLayer:
    """Max or avg pooling of x (n, channels, *hw) with a kernel window."""

    network: str
    name: str
    mode: str  # "max" or "avg"
    channels: int
    kernel: Pair
    stride: Pair
    padding: Pair
    hw: Pair
    count: int

    @property
    def ops(self) -> tuple[str, ...]:
        return (f"{self.mode}pool_fwd_bwd",)

    @property
    def in_channels(self) -> int:
        return self.channels

    @property
    def out_channels(self) -> int:
        return self.channels

    def shape(self, batch: int) -> PoolShape:
        return PoolShape(shape_name(self.name, batch), self.network, (batch, self.channels, *self.hw),
                         _compact(self.kernel), _kwargs(stride=self.stride, padding=self.padding))

    def describe(self) -> str:
        """e.g. 'max 64 3x3 /2 pad 1 @112x112'."""
        return f"{self.mode} {self.channels} {_window(self.kernel, self.stride, self.padding)} @{_size(self.hw)}"


Layer = ConvLayer | PoolLayer


def out_hw(layer: Layer) -> Pair:
    """The layer's output size (out_h, out_w)."""
    g = layer.shape(1).geometry(np.float32)
    return g.out_h, g.out_w


def shape_name(layer_name: str, batch: int) -> str:
    """The benchmark shape of a layer at a batch size: 'resnet18.conv1@b8'."""
    return f"{layer_name}@b{batch}"


def find(name: str) -> tuple[Layer, int]:
    """(layer, batch) of a shape name made by shape_name; KeyError when it names no layer."""
    layer, _, batch = name.rpartition("@b")
    if layer not in LAYERS or not batch.isdigit():
        raise KeyError(name)
    return LAYERS[layer], int(batch)


def shapes(network: str, batch: int) -> list[ConvShape | PoolShape]:
    """Every distinct layer of a network as a benchmark shape at the given batch size."""
    return [layer.shape(batch) for layer in NETWORKS[network]]


def _pair(value: int | Pair) -> Pair:
    return (value, value) if isinstance(value, int) else tuple(value)


def _compact(pair: Pair) -> int | Pair:
    return pair[0] if pair[0] == pair[1] else pair


def _kwargs(**options) -> dict:
    """conv2d / pooling keyword arguments that differ from the default (stride 1, padding 0, groups 1)."""
    defaults = {"stride": (1, 1), "padding": (0, 0), "groups": 1}
    return {key: _compact(value) if isinstance(value, tuple) else value
            for key, value in options.items() if value != defaults[key]}


def _window(kernel: Pair, stride: Pair, padding: Pair) -> str:
    """e.g. '3x3 /2 pad 1', '1x7 pad 0,3'."""
    stride_text = f" /{_text(stride)}" if stride != (1, 1) else ""
    padding_text = f" pad {_text(padding)}" if padding != (0, 0) else ""
    return f"{_size(kernel)}{stride_text}{padding_text}"


def _text(pair: Pair) -> str:
    return str(pair[0]) if pair[0] == pair[1] else f"{pair[0]},{pair[1]}"


def _size(pair: Pair) -> str:
    return f"{pair[0]}x{pair[1]}"


def _conv(network: str, name: str, in_channels: int, out_channels: int, kernel: int | Pair, hw: int | Pair, *,
          stride: int | Pair = 1, padding: int | Pair = 0, groups: int = 1, count: int = 1) -> ConvLayer:
    return ConvLayer(network, f"{network}.{name}", in_channels, out_channels, _pair(kernel), _pair(stride),
                     _pair(padding), groups, _pair(hw), count)


def _pool(network: str, name: str, mode: str, channels: int, kernel: int | Pair, hw: int | Pair, *,
          stride: int | Pair, padding: int | Pair = 0, count: int = 1) -> PoolLayer:
    return PoolLayer(network, f"{network}.{name}", mode, channels, _pair(kernel), _pair(stride), _pair(padding),
                     _pair(hw), count)


def _builders(network: str):
    """conv(name, in, out, kernel, hw, ...) and pool(name, mode, channels, kernel, hw, ...) for one network."""
    return partial(_conv, network), partial(_pool, network)


def _lenet() -> tuple[Layer, ...]:
    """LeNet-5: C1, S2, C3, S4 and C5 (a 5x5 convolution whose output is 1x1); subsampling averages 2x2."""
    conv, pool = _builders("lenet")
    return (
        conv("conv1", 1, 6, 5, 28, padding=2),
        pool("pool1", "avg", 6, 2, 28, stride=2),
        conv("conv2", 6, 16, 5, 14),
        pool("pool2", "avg", 16, 2, 10, stride=2),
        conv("conv3", 16, 120, 5, 5),
    )


def _alexnet() -> tuple[Layer, ...]:
    conv, pool = _builders("alexnet")
    return (
        conv("features.0", 3, 64, 11, 224, stride=4, padding=2),
        pool("features.2", "max", 64, 3, 55, stride=2),
        conv("features.3", 64, 192, 5, 27, padding=2),
        pool("features.5", "max", 192, 3, 27, stride=2),
        conv("features.6", 192, 384, 3, 13, padding=1),
        conv("features.8", 384, 256, 3, 13, padding=1),
        conv("features.10", 256, 256, 3, 13, padding=1),
        pool("features.12", "max", 256, 3, 13, stride=2),
    )


def _vgg16() -> tuple[Layer, ...]:
    """Configuration D: 13 convs 3x3 pad 1 (each followed by a ReLU), 5 max pools 2x2 /2."""
    conv, pool = _builders("vgg16")
    return (
        conv("features.0", 3, 64, 3, 224, padding=1),
        conv("features.2", 64, 64, 3, 224, padding=1),
        pool("features.4", "max", 64, 2, 224, stride=2),
        conv("features.5", 64, 128, 3, 112, padding=1),
        conv("features.7", 128, 128, 3, 112, padding=1),
        pool("features.9", "max", 128, 2, 112, stride=2),
        conv("features.10", 128, 256, 3, 56, padding=1),
        conv("features.12", 256, 256, 3, 56, padding=1, count=2),  # and features.14
        pool("features.16", "max", 256, 2, 56, stride=2),
        conv("features.17", 256, 512, 3, 28, padding=1),
        conv("features.19", 512, 512, 3, 28, padding=1, count=2),  # and features.21
        pool("features.23", "max", 512, 2, 28, stride=2),
        conv("features.24", 512, 512, 3, 14, padding=1, count=3),  # and features.26, 28
        pool("features.30", "max", 512, 2, 14, stride=2),
    )


def _resnet18() -> tuple[Layer, ...]:
    """Basic blocks; the first block of layers 2-4 halves the map in conv1 and in its 1x1 downsample."""
    conv, pool = _builders("resnet18")
    return (
        conv("conv1", 3, 64, 7, 224, stride=2, padding=3),
        pool("maxpool", "max", 64, 3, 112, stride=2, padding=1),
        conv("layer1.0.conv1", 64, 64, 3, 56, padding=1, count=4),  # conv1, conv2 of layer1.0 and layer1.1
        conv("layer2.0.conv1", 64, 128, 3, 56, stride=2, padding=1),
        conv("layer2.0.conv2", 128, 128, 3, 28, padding=1, count=3),  # and layer2.1.conv1, conv2
        conv("layer2.0.downsample.0", 64, 128, 1, 56, stride=2),
        conv("layer3.0.conv1", 128, 256, 3, 28, stride=2, padding=1),
        conv("layer3.0.conv2", 256, 256, 3, 14, padding=1, count=3),
        conv("layer3.0.downsample.0", 128, 256, 1, 28, stride=2),
        conv("layer4.0.conv1", 256, 512, 3, 14, stride=2, padding=1),
        conv("layer4.0.conv2", 512, 512, 3, 7, padding=1, count=3),
        conv("layer4.0.downsample.0", 256, 512, 1, 14, stride=2),
        pool("avgpool", "avg", 512, 7, 7, stride=7),
    )


def _mobilenet_v2() -> tuple[Layer, ...]:
    """Inverted residual blocks (t, c, n, s) = (1,16,1,1) (6,24,2,2) (6,32,3,2) (6,64,4,2) (6,96,3,1) (6,160,3,2)
    (6,320,1,1): conv.0.0 expands 1x1 by t (absent when t = 1), conv.1.0 is the depthwise 3x3 (stride s in a
    stage's first block), conv.2 projects 1x1. The global average pool is a functional call in forward()."""
    conv, pool = _builders("mobilenet_v2")

    def dw(name: str, channels: int, hw: int, stride: int = 1, count: int = 1) -> ConvLayer:
        return conv(name, channels, channels, 3, hw, stride=stride, padding=1, groups=channels, count=count)

    return (
        conv("features.0.0", 3, 32, 3, 224, stride=2, padding=1),
        dw("features.1.conv.0.0", 32, 112),
        conv("features.1.conv.1", 32, 16, 1, 112),
        conv("features.2.conv.0.0", 16, 96, 1, 112),
        dw("features.2.conv.1.0", 96, 112, stride=2),
        conv("features.2.conv.2", 96, 24, 1, 56),
        conv("features.3.conv.0.0", 24, 144, 1, 56, count=2),  # and features.4
        dw("features.3.conv.1.0", 144, 56),
        conv("features.3.conv.2", 144, 24, 1, 56),
        dw("features.4.conv.1.0", 144, 56, stride=2),
        conv("features.4.conv.2", 144, 32, 1, 28),
        conv("features.5.conv.0.0", 32, 192, 1, 28, count=3),  # features.5-7
        dw("features.5.conv.1.0", 192, 28, count=2),  # features.5-6
        conv("features.5.conv.2", 192, 32, 1, 28, count=2),
        dw("features.7.conv.1.0", 192, 28, stride=2),
        conv("features.7.conv.2", 192, 64, 1, 14),
        conv("features.8.conv.0.0", 64, 384, 1, 14, count=4),  # features.8-11
        dw("features.8.conv.1.0", 384, 14, count=4),  # features.8-11
        conv("features.8.conv.2", 384, 64, 1, 14, count=3),  # features.8-10
        conv("features.11.conv.2", 384, 96, 1, 14),
        conv("features.12.conv.0.0", 96, 576, 1, 14, count=3),  # features.12-14
        dw("features.12.conv.1.0", 576, 14, count=2),  # features.12-13
        conv("features.12.conv.2", 576, 96, 1, 14, count=2),
        dw("features.14.conv.1.0", 576, 14, stride=2),
        conv("features.14.conv.2", 576, 160, 1, 7),
        conv("features.15.conv.0.0", 160, 960, 1, 7, count=3),  # features.15-17
        dw("features.15.conv.1.0", 960, 7, count=3),  # features.15-17
        conv("features.15.conv.2", 960, 160, 1, 7, count=2),  # features.15-16
        conv("features.17.conv.2", 960, 320, 1, 7),
        conv("features.18.0", 320, 1280, 1, 7),
        pool("adaptive_avg_pool2d", "avg", 1280, 7, 7, stride=7),
    )


#: network name -> its distinct layers, in the order they first run
NETWORKS: dict[str, tuple[Layer, ...]] = {
    "lenet": _lenet(), "alexnet": _alexnet(), "vgg16": _vgg16(), "resnet18": _resnet18(),
    "mobilenet_v2": _mobilenet_v2(),
}

LAYERS: dict[str, Layer] = {layer.name: layer for layers in NETWORKS.values() for layer in layers}
