"""PNG pictures of a training run: the loss and accuracy curves, and the first layer's filters.

matplotlib is imported only here, only when a picture is asked for, and drawn off-screen (a bare Figure, no
pyplot, so no GUI backend and no global state)."""

from __future__ import annotations

import math

import numpy as np


def require_matplotlib():
    """matplotlib's Figure class, or ImportError saying how to install matplotlib."""
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError("plots need matplotlib: pip install matplotlib (or pip install 'fastconv[train]')"
                          ) from exc
    return Figure


def _figure(**kwargs):
    return require_matplotlib()(**kwargs)


def plot_training(trainer, path, title: str = "") -> None:
    """Write a PNG with the mini-batch loss (and its mean per epoch) and the train/test accuracy per epoch
    of a Trainer that has run."""
    fig = _figure(figsize=(10, 4), layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    iterations = np.arange(1, len(trainer.train_loss_list) + 1)
    epochs = np.arange(1, len(trainer.epoch_loss_list) + 1)
    loss_ax.plot(iterations, trainer.train_loss_list, color="tab:blue", alpha=0.35, lw=0.8, label="mini-batch")
    loss_ax.plot(epochs * trainer.iter_per_epoch, trainer.epoch_loss_list, "o-", color="tab:blue",
                 label="epoch mean")
    loss_ax.set(xlabel="iteration", ylabel="loss (cross-entropy)", yscale="log", title="training loss")
    loss_ax.legend()
    acc_ax.plot(epochs, trainer.train_acc_list, "o-", label="train")
    acc_ax.plot(epochs, trainer.test_acc_list, "s-", label="test")
    acc_ax.set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(min(0.8, *trainer.test_acc_list,
                                                                               *trainer.train_acc_list), 1.0))
    acc_ax.grid(alpha=0.3)
    acc_ax.legend(loc="lower right")
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=100)


def plot_filters(W: np.ndarray, path, columns: int = 8) -> None:
    """Write a PNG of the filters W (FN, C, FH, FW) of a first conv layer: channel 0 of each, as grey images
    scaled to their own range (as the book's visualize_filter)."""
    count = W.shape[0]
    columns = min(columns, count)
    rows = math.ceil(count / columns)
    fig = _figure(figsize=(columns * 0.9, rows * 0.9 + 0.4))
    for i, ax in enumerate(fig.subplots(rows, columns, squeeze=False).ravel()):
        ax.set_axis_off()
        if i < count:
            ax.imshow(W[i, 0], cmap="gray_r", interpolation="nearest")
    fig.suptitle(f"first-layer filters {W.shape[2]}x{W.shape[3]} ({count})")
    fig.savefig(path, dpi=100)
