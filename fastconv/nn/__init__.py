"""Drop-in layers, networks, optimizers and trainer of "Deep Learning from Scratch", with convolution and pooling
done by fastconv (``backend=`` on each conv/pool layer and network; None follows ``fastconv.use_backend``)."""

from fastconv.nn.data import load_dataset, load_digits, load_mnist, read_idx, write_idx
from fastconv.nn.layers import Affine, Convolution, Dropout, Pooling, Relu, SoftmaxWithLoss, softmax
from fastconv.nn.networks import DeepConvNetLite, LayerNet, SimpleConvNet
from fastconv.nn.optimizers import OPTIMIZERS, SGD, AdaGrad, Adam, Momentum, Nesterov, RMSprop
from fastconv.nn.trainer import Trainer, make_optimizer

__all__ = [
    "Convolution", "Pooling", "Relu", "Affine", "SoftmaxWithLoss", "Dropout", "softmax",
    "LayerNet", "SimpleConvNet", "DeepConvNetLite",
    "SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam", "OPTIMIZERS", "make_optimizer",
    "Trainer", "load_digits", "load_mnist", "load_dataset", "read_idx", "write_idx",
]
