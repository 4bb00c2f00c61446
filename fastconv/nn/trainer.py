"""The book's Trainer: mini-batch training with an optimizer, accuracy after every epoch, histories kept."""

from __future__ import annotations

import sys
import time

import numpy as np
from tqdm import tqdm

from fastconv.nn.optimizers import OPTIMIZERS


def make_optimizer(optimizer, optimizer_param: dict):
    """An optimizer instance from a name (case-insensitive: sgd, momentum, nesterov, adagrad, rmsprop, adam) and
    its keyword arguments; an object with an update method is returned as it is."""
    if hasattr(optimizer, "update"):
        return optimizer
    cls = OPTIMIZERS.get(str(optimizer).lower())
    if cls is None:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
    return cls(**optimizer_param)


class Trainer:
    """Trains network on (x_train, t_train) for `epochs` epochs of mini-batches and measures accuracy after each.

    Each epoch visits the training set once in a shuffled order (the book samples batches with replacement), in
    ceil(N / mini_batch_size) mini-batches. seed (keyword-only) makes the order reproducible: an int or a numpy
    Generator; None uses numpy's global random state, as the book does (so np.random.seed applies).

    Histories: train_loss_list (loss of every mini-batch before its update, as network.last_layer computed it in
    the gradient's forward pass: a term that network.loss adds, such as weight decay, is left out),
    epoch_loss_list (their mean per epoch), train_acc_list and test_acc_list (per epoch, on the first
    evaluate_sample_num_per_epoch samples, or all), epoch_seconds (time of each epoch's training pass, evaluation
    excluded) and, after train(), test_acc on the whole test set. verbose: a tqdm bar per epoch (stderr) and one
    line of figures per epoch (stdout).
    """

    def __init__(self, network, x_train, t_train, x_test, t_test, epochs=20, mini_batch_size=100,
                 optimizer='SGD', optimizer_param={'lr': 0.01},  # noqa: B006 (the book's signature)
                 evaluate_sample_num_per_epoch=None, verbose=True, *, seed=None):
        self.network = network
        self.x_train, self.t_train = x_train, t_train
        self.x_test, self.t_test = x_test, t_test
        self.epochs = epochs
        self.batch_size = mini_batch_size
        self.evaluate_sample_num_per_epoch = evaluate_sample_num_per_epoch
        self.verbose = verbose
        self.optimizer = make_optimizer(optimizer, optimizer_param)
        self.rng = None if seed is None else np.random.default_rng(seed)

        self.train_size = x_train.shape[0]
        self.iter_per_epoch = max(-(-self.train_size // mini_batch_size), 1)
        self.max_iter = epochs * self.iter_per_epoch
        self.current_iter = 0
        self.current_epoch = 0
        self.train_loss_list, self.epoch_loss_list = [], []
        self.train_acc_list, self.test_acc_list = [], []
        self.epoch_seconds = []
        self.test_acc = None

    def _shuffled_indices(self) -> np.ndarray:
        if self.rng is None:
            return np.random.permutation(self.train_size)
        return self.rng.permutation(self.train_size)

    def train_step(self, batch_indices: np.ndarray) -> float:
        """One gradient step on the given training samples; returns that mini-batch's loss."""
        x_batch, t_batch = self.x_train[batch_indices], self.t_train[batch_indices]
        grads = self.network.gradient(x_batch, t_batch)
        self.optimizer.update(self.network.params, grads)
        last_layer = getattr(self.network, "last_layer", None)
        loss = getattr(last_layer, "loss", None)  # computed by gradient's forward pass: no second forward
        loss = float(self.network.loss(x_batch, t_batch) if loss is None else loss)
        self.train_loss_list.append(loss)
        self.current_iter += 1
        return loss

    def train_epoch(self) -> None:
        """One pass over the shuffled training set, then accuracy on train and test samples."""
        self.current_epoch += 1
        order = self._shuffled_indices()
        bar = tqdm(total=self.iter_per_epoch, desc=f"epoch {self.current_epoch}/{self.epochs}", unit="batch",
                   leave=False, disable=not self.verbose, file=sys.stderr)
        start = time.perf_counter()
        losses = []
        for first in range(0, self.train_size, self.batch_size):
            losses.append(self.train_step(order[first:first + self.batch_size]))
            bar.set_postfix(loss=f"{losses[-1]:.4f}", refresh=False)
            bar.update()
        self.epoch_seconds.append(time.perf_counter() - start)
        self.epoch_loss_list.append(float(np.mean(losses)))

        samples = self.evaluate_sample_num_per_epoch
        self.train_acc_list.append(self.network.accuracy(self.x_train[:samples], self.t_train[:samples]))
        self.test_acc_list.append(self.network.accuracy(self.x_test[:samples], self.t_test[:samples]))
        bar.set_postfix(loss=f"{self.epoch_loss_list[-1]:.4f}", train_acc=f"{self.train_acc_list[-1]:.4f}",
                        test_acc=f"{self.test_acc_list[-1]:.4f}")
        bar.close()
        if self.verbose:
            tqdm.write(f"epoch {self.current_epoch:>3}/{self.epochs}  loss {self.epoch_loss_list[-1]:.4f}  "
                       f"train acc {self.train_acc_list[-1]:.4f}  test acc {self.test_acc_list[-1]:.4f}  "
                       f"{self.epoch_seconds[-1]:.2f} s", file=sys.stdout)

    def train(self) -> None:
        """All epochs, then the accuracy on the whole test set (test_acc)."""
        for _ in range(self.epochs):
            self.train_epoch()
        self.test_acc = self.network.accuracy(self.x_test, self.t_test)
        if self.verbose:
            print(f"test acc {self.test_acc:.4f}")
