"""Convolutional networks with the book's interface: SimpleConvNet (conv-relu-pool-affine-relu-affine) and
DeepConvNetLite (two blocks of conv-relu-conv-relu-pool, then affine-relu-dropout-affine).

Both take keyword-only extras the book does not have: ``backend`` (passed to every conv and pool layer; None means
the current default), ``rng`` (a numpy Generator or int seed for the initial weights and dropout; None uses numpy's
global random state as the book does, so ``np.random.seed`` applies) and ``dtype`` of the parameters (float64 as
in the book; float32 is faster).
"""

from __future__ import annotations

import os
import pickle
from collections import OrderedDict

import numpy as np

from fastconv.nn.layers import Affine, Convolution, Dropout, Pooling, Relu, SoftmaxWithLoss


def _generator(rng) -> np.random.Generator | None:
    return None if rng is None else np.random.default_rng(rng)


def _normal(rng: np.random.Generator | None, shape: tuple[int, ...], std: float, dtype) -> np.ndarray:
    """std * standard normal of the given shape, from rng or (rng None) numpy's global state like the book."""
    sample = rng.standard_normal(shape) if rng is not None else np.random.randn(*shape)
    return (std * sample).astype(dtype)


def _conv_out(size: int, filter_size: int, pad: int, stride: int) -> int:
    return (size + 2 * pad - filter_size) // stride + 1


class LayerNet:
    """What every network here shares: params {W1, b1, ...} held by the layers named in ``self.layers``,
    prediction, loss, accuracy, backprop and numerical gradients, saving and loading.

    Subclasses fill ``self.params`` and ``self.layers`` (an OrderedDict, input first); the i-th layer with
    parameters (i = 1, 2, ...) holds W{i} and b{i}.
    """

    params: dict[str, np.ndarray]
    layers: OrderedDict

    def __init__(self):
        self.last_layer = SoftmaxWithLoss()

    @property
    def param_layers(self) -> list:
        """The layers that hold parameters, in order: the i-th holds W{i} and b{i}."""
        return [layer for layer in self.layers.values() if hasattr(layer, "W")]

    def predict(self, x, train_flg=False):
        """x (N, C, H, W) -> class scores (N, output_size). train_flg turns dropout on."""
        for layer in self.layers.values():
            x = layer.forward(x, train_flg) if isinstance(layer, Dropout) else layer.forward(x)
        return x

    def loss(self, x, t):
        """Mean cross-entropy of predict(x) (with dropout on) against labels t (N,) or one-hot t (N, classes)."""
        return self.last_layer.forward(self.predict(x, train_flg=True), t)

    def accuracy(self, x, t, batch_size=100):
        """Fraction of x classified as t, predicting batch_size images at a time (all of them, unlike the book,
        which drops the last partial batch)."""
        if t.ndim != 1:
            t = np.argmax(t, axis=1)
        correct = 0
        for start in range(0, x.shape[0], batch_size):
            scores = self.predict(x[start:start + batch_size])
            correct += int(np.sum(np.argmax(scores, axis=1) == t[start:start + batch_size]))
        return correct / x.shape[0]

    def gradient(self, x, t):
        """Gradients of loss(x, t) by backpropagation: dict with the keys of params."""
        self.loss(x, t)
        dout = self.last_layer.backward(1)
        for layer in reversed(self.layers.values()):
            dout = layer.backward(dout)
        grads = {}
        for i, layer in enumerate(self.param_layers, start=1):
            grads[f"W{i}"], grads[f"b{i}"] = layer.dW, layer.db
        return grads

    def numerical_gradient(self, x, t, h=1e-4):
        """Gradients of loss(x, t) by central differences (loss(p + h) - loss(p - h)) / 2h, element by element.
        Slow: for checking gradient() on small networks (with dropout_ratio=0: loss() draws new dropout masks)."""
        grads = {}
        for key, param in self.params.items():
            grad = np.zeros(param.shape, np.result_type(param.dtype, np.float64))
            for index in np.ndindex(param.shape):
                original = param[index]
                param[index] = original + h
                loss_plus = self.loss(x, t)
                param[index] = original - h
                loss_minus = self.loss(x, t)
                param[index] = original
                grad[index] = (loss_plus - loss_minus) / (2 * h)
            grads[key] = grad
        return grads

    def save_params(self, file_name="params.npz"):
        """Write params to file_name: pickle (the book's format) when it ends in .pkl, else numpy .npz."""
        if os.fspath(file_name).endswith(".pkl"):
            with open(file_name, "wb") as f:
                pickle.dump({key: value.copy() for key, value in self.params.items()}, f)
        else:
            with open(file_name, "wb") as f:  # a file object keeps np.savez from appending ".npz"
                np.savez(f, **self.params)

    def load_params(self, file_name="params.npz"):
        """Read params saved by save_params (a .pkl only from a source you trust) into the existing arrays."""
        if os.fspath(file_name).endswith(".pkl"):
            with open(file_name, "rb") as f:
                loaded = pickle.load(f)
        else:
            with np.load(file_name, allow_pickle=False) as npz:
                loaded = {key: npz[key] for key in npz.files}
        if set(loaded) != set(self.params):
            raise ValueError(f"load_params: {file_name} holds {sorted(loaded)}, this network needs "
                             f"{sorted(self.params)}")
        for key, value in loaded.items():
            if value.shape != self.params[key].shape:
                raise ValueError(f"load_params: {key} in {file_name} has shape {value.shape}, this network's "
                                 f"has {self.params[key].shape}")
        for key, value in loaded.items():
            self.params[key][...] = value  # in place: the layers hold these very arrays


class SimpleConvNet(LayerNet):
    """conv - relu - pool(2x2, stride 2) - affine - relu - affine - softmax, as in the book.

    input_dim (C, H, W); conv_param filter_num, filter_size, pad, stride; x (N, C, H, W) -> scores (N, output_size).
    """

    def __init__(self, input_dim=(1, 28, 28),
                 conv_param={'filter_num': 30, 'filter_size': 5, 'pad': 0, 'stride': 1},  # noqa: B006 (book)
                 hidden_size=100, output_size=10, weight_init_std=0.01, *, backend=None, rng=None,
                 dtype=np.float64):
        super().__init__()
        rng = _generator(rng)
        filter_num, filter_size = conv_param['filter_num'], conv_param['filter_size']
        pad, stride = conv_param['pad'], conv_param['stride']
        channels, height, width = input_dim
        pooled_h = _conv_out(height, filter_size, pad, stride) // 2
        pooled_w = _conv_out(width, filter_size, pad, stride) // 2

        shapes = [((filter_num, channels, filter_size, filter_size), filter_num),
                  ((filter_num * pooled_h * pooled_w, hidden_size), hidden_size),
                  ((hidden_size, output_size), output_size)]
        self.params = {}
        for i, (w_shape, b_size) in enumerate(shapes, start=1):
            self.params[f"W{i}"] = _normal(rng, w_shape, weight_init_std, dtype)
            self.params[f"b{i}"] = np.zeros(b_size, dtype)

        p = self.params
        self.layers = OrderedDict()
        self.layers['Conv1'] = Convolution(p['W1'], p['b1'], stride, pad, backend=backend, input_grad=False)
        self.layers['Relu1'] = Relu()
        self.layers['Pool1'] = Pooling(pool_h=2, pool_w=2, stride=2, backend=backend)
        self.layers['Affine1'] = Affine(p['W2'], p['b2'])
        self.layers['Relu2'] = Relu()
        self.layers['Affine2'] = Affine(p['W3'], p['b3'])


class DeepConvNetLite(LayerNet):
    """Two blocks of (conv3x3 - relu - conv3x3 - relu - maxpool 2x2), then affine - relu - dropout - affine:
    the first four conv layers of the book's DeepConvNet, for MNIST-size (or digits-size) input.

    filter_nums: the four conv layers' filter counts; He initialisation (std sqrt(2 / fan_in)) as in the book.
    x (N, C, H, W) -> scores (N, output_size); params W1..W6, b1..b6.
    """

    def __init__(self, input_dim=(1, 28, 28), filter_nums=(16, 16, 32, 32), hidden_size=100, output_size=10,
                 dropout_ratio=0.5, *, backend=None, rng=None, dtype=np.float64):
        super().__init__()
        rng = _generator(rng)
        channels, height, width = input_dim
        self.params = {}
        self.layers = layers = OrderedDict()

        def new_params(w_shape, outputs, fan_in):
            """W{i} (He-initialised) and b{i} (zeros, (outputs,)) for the next layer with parameters."""
            i = len(self.params) // 2 + 1
            self.params[f"W{i}"] = _normal(rng, w_shape, np.sqrt(2.0 / fan_in), dtype)
            self.params[f"b{i}"] = np.zeros(outputs, dtype)
            return self.params[f"W{i}"], self.params[f"b{i}"]

        for i, filters in enumerate(filter_nums, start=1):
            W, b = new_params((filters, channels, 3, 3), filters, channels * 9)
            layers[f"Conv{i}"] = Convolution(W, b, 1, 1, backend=backend, input_grad=i > 1)
            layers[f"Relu{i}"] = Relu()
            channels = filters
            if i % 2 == 0:
                layers[f"Pool{i // 2}"] = Pooling(2, 2, stride=2, backend=backend)
                height, width = height // 2, width // 2
        flat = channels * height * width
        layers["Affine1"] = Affine(*new_params((flat, hidden_size), hidden_size, flat))
        layers["ReluAffine1"] = Relu()
        layers["Dropout1"] = Dropout(dropout_ratio, rng=rng)
        layers["Affine2"] = Affine(*new_params((hidden_size, output_size), output_size, hidden_size))
