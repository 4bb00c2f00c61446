"""The book's optimizers. Each update(params, grads) changes the arrays in params in place (the layers hold them);
per-parameter state (velocities, squared-gradient sums) is created on the first update."""

from __future__ import annotations

import numpy as np

_EPS = 1e-7  # keeps the adaptive methods' division finite, as in the book


def _zeros_like(params: dict) -> dict:
    return {key: np.zeros_like(value) for key, value in params.items()}


class SGD:
    """p -= lr * g"""

    def __init__(self, lr=0.01):
        self.lr = lr

    def update(self, params, grads):
        for key in params:
            params[key] -= self.lr * grads[key]


class Momentum:
    """v = momentum * v - lr * g; p += v"""

    def __init__(self, lr=0.01, momentum=0.9):
        self.lr, self.momentum = lr, momentum
        self.v = None

    def update(self, params, grads):
        if self.v is None:
            self.v = _zeros_like(params)
        for key in params:
            v = self.v[key]
            v *= self.momentum
            v -= self.lr * grads[key]
            self._step(params[key], v, grads[key])

    def _step(self, param, v, grad):
        """The parameter's move, given the updated velocity v."""
        param += v


class Nesterov(Momentum):
    """Nesterov's accelerated gradient in the book's form (Sutskever's reformulation):
    v = momentum * v - lr * g; p += momentum**2 * v - (1 + momentum) * lr * g"""

    def _step(self, param, v, grad):
        param += self.momentum * self.momentum * v
        param -= (1 + self.momentum) * self.lr * grad


class AdaGrad:
    """h += g * g; p -= lr * g / (sqrt(h) + eps)"""

    def __init__(self, lr=0.01):
        self.lr = lr
        self.h = None

    def update(self, params, grads):
        if self.h is None:
            self.h = _zeros_like(params)
        for key in params:
            self._accumulate(self.h[key], grads[key])
            params[key] -= self.lr * grads[key] / (np.sqrt(self.h[key]) + _EPS)

    def _accumulate(self, h, grad):
        h += grad * grad


class RMSprop(AdaGrad):
    """h = decay_rate * h + (1 - decay_rate) * g * g; p -= lr * g / (sqrt(h) + eps)"""

    def __init__(self, lr=0.01, decay_rate=0.99):
        super().__init__(lr)
        self.decay_rate = decay_rate

    def _accumulate(self, h, grad):
        h *= self.decay_rate
        h += (1 - self.decay_rate) * grad * grad


class Adam:
    """Adam (Kingma & Ba) with the bias correction folded into the step size, as in the book."""

    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999):
        self.lr, self.beta1, self.beta2 = lr, beta1, beta2
        self.iter = 0
        self.m = self.v = None

    def update(self, params, grads):
        if self.m is None:
            self.m = _zeros_like(params)
            self.v = _zeros_like(params)
        self.iter += 1
        lr_t = self.lr * np.sqrt(1.0 - self.beta2 ** self.iter) / (1.0 - self.beta1 ** self.iter)
        for key in params:
            self.m[key] += (1 - self.beta1) * (grads[key] - self.m[key])
            self.v[key] += (1 - self.beta2) * (grads[key] ** 2 - self.v[key])
            params[key] -= lr_t * self.m[key] / (np.sqrt(self.v[key]) + _EPS)


#: lower-case name -> class, for Trainer(optimizer='adam') and `fastconv train --optimizer`
OPTIMIZERS = {cls.__name__.lower(): cls for cls in (SGD, Momentum, Nesterov, AdaGrad, RMSprop, Adam)}
