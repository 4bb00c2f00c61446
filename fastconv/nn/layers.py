"""The layers of "Deep Learning from Scratch" (Saito), with convolution and pooling done by fastconv.

Same constructor arguments, attributes (W, b, dW, db, x, ...) and forward(x) / backward(dout) as the book, so code
written for the book's classes runs unchanged. Convolution and Pooling take a keyword-only ``backend=`` (None: the
current default, so ``fastconv.use_backend`` switches every layer at once).

Layers keep references to the parameter arrays they are given (an optimizer updating ``params[key]`` in place
updates the layer) and compute in the dtype numpy would pick for the parameters and the input.
"""

from __future__ import annotations

import numpy as np

import fastconv as fc
from fastconv._threads import serial_region


def log_softmax(x: np.ndarray) -> np.ndarray:
    """x (N, classes) -> log-probabilities (N, classes), computed without overflow (max subtracted first)."""
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def softmax(x: np.ndarray) -> np.ndarray:
    """x (N, classes) -> probabilities (N, classes), each row summing to 1."""
    return np.exp(log_softmax(x))


class Relu:
    """max(x, 0) elementwise, any shape (NaN stays NaN); backward zeroes dout where x <= 0, as the book."""

    def __init__(self):
        self.mask = None

    def forward(self, x):
        self.mask = x <= 0
        return np.where(self.mask, 0, x)

    def backward(self, dout):
        return np.where(self.mask, 0, dout)


class Affine:
    """x (N, ...) flattened to (N, D) -> x @ W + b, W (D, M), b (M,).

    Its GEMMs are small and run on one BLAS thread: a threaded OpenBLAS call leaves its worker spinning on the other
    core for a while, and the next conv or pool kernel's parallel loop then waits for that core (measured: 8 ms
    added to a 1 ms convolution on 2 cores).
    """

    def __init__(self, W, b):
        self.W, self.b = W, b
        self.x = None
        self.original_x_shape = None
        self.dW = self.db = None

    def forward(self, x):
        self.original_x_shape = x.shape
        self.x = x.reshape(x.shape[0], -1)
        with serial_region():
            return self.x @ self.W + self.b

    def backward(self, dout):
        with serial_region():
            dx = dout @ self.W.T
            self.dW = self.x.T @ dout
        self.db = dout.sum(axis=0)
        return dx.reshape(self.original_x_shape)


class SoftmaxWithLoss:
    """Softmax followed by the mean cross-entropy: scores x (N, classes) -> a float; t holds labels (N,) or
    one-hot rows (N, classes). backward returns d loss / dx (N, classes); y keeps the probabilities.

    The loss is computed from log-softmax, so it is exact and consistent with backward (the book adds 1e-7 inside
    the log, which changes values by at most ~1e-7 per sample).
    """

    def __init__(self):
        self.loss = self.y = self.t = None

    def forward(self, x, t):
        self.t = t
        log_probs = log_softmax(x)
        self.y = np.exp(log_probs)
        labels = t.argmax(axis=1) if t.size == self.y.size else t
        self.loss = float(-log_probs[np.arange(x.shape[0]), labels].mean())
        return self.loss

    def backward(self, dout=1):
        batch_size = self.t.shape[0]
        if self.t.size == self.y.size:
            dx = self.y - self.t
        else:
            dx = self.y.copy()
            dx[np.arange(batch_size), self.t] -= 1
        return dx * (dout / batch_size)


class Dropout:
    """Zeroes a random fraction dropout_ratio of the inputs while training; scales by (1 - ratio) otherwise.

    rng: a numpy Generator, or None for numpy's global random state (as the book, so np.random.seed applies).
    """

    def __init__(self, dropout_ratio=0.5, *, rng: np.random.Generator | None = None):
        self.dropout_ratio = dropout_ratio
        self.rng = rng
        self.mask = None

    def forward(self, x, train_flg=True):
        if not train_flg:
            return x * (1.0 - self.dropout_ratio)
        uniform = self.rng.random(x.shape) if self.rng is not None else np.random.rand(*x.shape)
        self.mask = uniform > self.dropout_ratio
        return x * self.mask

    def backward(self, dout):
        return dout * self.mask


class Convolution:
    """x (N, C, H, W) -> conv2d(x, W, b) (N, FN, Ho, Wo) with W (FN, C, FH, FW), b (FN,).

    input_grad=False skips dx in backward (which then returns None): for a network's first layer.
    data_format="NHWC" takes x (N, H, W, C) and returns (N, Ho, Wo, FN); W keeps its layout.
    """

    def __init__(self, W, b, stride=1, pad=0, *, backend: str | None = None, input_grad: bool = True,
                 data_format: str = "NCHW"):
        self.W, self.b = W, b
        self.stride, self.pad = stride, pad
        self.backend = backend
        self.data_format = data_format
        self.input_grad = input_grad
        self.x = None
        self.dW = self.db = None

    def forward(self, x):
        self.x = x
        return fc.conv2d(x, self.W, self.b, stride=self.stride, padding=self.pad, data_format=self.data_format,
                         backend=self.backend)

    def backward(self, dout):
        dx, self.dW, self.db = fc.conv2d_backward(dout, self.x, self.W, stride=self.stride, padding=self.pad,
                                                  need_dx=self.input_grad, data_format=self.data_format,
                                                  backend=self.backend)
        return dx


class Pooling:
    """x (N, C, H, W) -> max (or, with mode="avg", mean) over pool_h x pool_w windows -> (N, C, Ho, Wo).

    Unlike the book, padded cells are -inf for max pooling (never selected) and pad must be <= pool size // 2.
    data_format="NHWC" takes x (N, H, W, C) and returns (N, Ho, Wo, C).
    """

    def __init__(self, pool_h, pool_w, stride=1, pad=0, *, mode: str = "max", backend: str | None = None,
                 data_format: str = "NCHW"):
        if mode not in ("max", "avg"):
            raise ValueError(f"Pooling: mode must be 'max' or 'avg', got {mode!r}")
        self.pool_h, self.pool_w = pool_h, pool_w
        self.stride, self.pad = stride, pad
        self.mode = mode
        self.backend = backend
        self.data_format = data_format
        self.x = None
        self.arg_max = None  # flat h * W + w of each maximum, as fastconv.max_pool2d returns, in data_format

    def _pool_args(self) -> dict:
        """The keyword arguments every fastconv pooling call of this layer takes."""
        return dict(kernel_size=(self.pool_h, self.pool_w), stride=self.stride, padding=self.pad,
                    data_format=self.data_format, backend=self.backend)

    def forward(self, x):
        self.x = x
        if self.mode == "avg":
            return fc.avg_pool2d(x, **self._pool_args())
        out, self.arg_max = fc.max_pool2d(x, return_indices=True, **self._pool_args())
        return out

    def backward(self, dout):
        if self.mode == "avg":
            return fc.avg_pool2d_backward(dout, self.x, **self._pool_args())
        return fc.max_pool2d_backward(dout, self.x, indices=self.arg_max, **self._pool_args())
