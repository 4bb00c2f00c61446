"""`fastconv train`: train a small convolutional network (the book's SimpleConvNet, or DeepConvNetLite) with
fastconv doing the convolutions and pooling, print loss / accuracy / seconds per epoch, and optionally write the
training curves and first-layer filters as PNG pictures and the parameters as .npz.

Data is never downloaded: `digits` is scikit-learn's bundled 8x8 digits; `mnist:DIR` reads the four standard IDX
files (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, each
optionally .gz) from DIR."""

from __future__ import annotations

import argparse
import sys

import numpy as np

import fastconv
from fastconv import _backend

EXAMPLES = """examples:
  fastconv train                                     # digits, SimpleConvNet, 10 epochs, default backend
  fastconv train --backend numba --epochs 5 --plot curve.png --filters filters.png --save params.npz
  fastconv train --dataset mnist:~/data/mnist --network deep --epochs 3 --eval-samples 1000
"""


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def register(subparsers) -> argparse.ArgumentParser:
    from fastconv.nn.optimizers import OPTIMIZERS

    parser = subparsers.add_parser("train", help="train a small conv net on digits or MNIST", description=__doc__,
                                   epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=list(_backend.BACKENDS),
                        help="backend for every conv and pool layer (default: $FASTCONV_BACKEND, else auto)")
    parser.add_argument("--dataset", default="digits", metavar="digits|mnist:DIR",
                        help="digits (scikit-learn's 8x8 digits, default) or mnist:DIR (a folder of MNIST IDX files)")
    parser.add_argument("--network", choices=("simple", "deep"), default="simple",
                        help="simple: conv-relu-pool-affine-relu-affine (default); deep: two conv-conv-pool "
                             "blocks, affine-relu-dropout-affine")
    parser.add_argument("--epochs", type=_positive_int, default=10, metavar="N",
                        help="passes over the training set (10)")
    parser.add_argument("--batch-size", type=_positive_int, default=50, metavar="N", help="mini-batch size (50)")
    parser.add_argument("--optimizer", choices=list(OPTIMIZERS), default="adam", type=str.lower,
                        help="optimizer (adam)")
    parser.add_argument("--lr", type=float, default=0.01, metavar="X", help="learning rate (0.01)")
    parser.add_argument("--seed", type=int, default=0, metavar="N",
                        help="seed of the initial weights, the batch order and the digits train/test split (0)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                        help="dtype of the parameters (float32)")
    parser.add_argument("--threads", type=_positive_int, metavar="N",
                        help="threads for numba, OpenMP and BLAS (fastconv.set_num_threads; default: all cores). "
                             "On a busy machine --threads 1 can be much faster for small images")
    parser.add_argument("--eval-samples", type=_positive_int, metavar="N",
                        help="measure per-epoch accuracy on the first N train and test images only (default: all)")
    parser.add_argument("--plot", metavar="FILE", help="write the loss/accuracy curves to this PNG")
    parser.add_argument("--filters", metavar="FILE", help="write the first conv layer's filters to this PNG")
    parser.add_argument("--save", metavar="FILE", help="save the trained parameters (.npz; .pkl for the book's pickle)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no per-epoch lines")
    return parser


def _network(args: argparse.Namespace, input_dim: tuple[int, int, int], classes: int, rng):
    from fastconv.nn import DeepConvNetLite, SimpleConvNet

    common = dict(output_size=classes, backend=args.backend, rng=rng, dtype=np.dtype(args.dtype))
    if args.network == "deep":
        return DeepConvNetLite(input_dim, **common)
    small_image = input_dim[1] < 16  # digits: 3x3 "same" filters; MNIST: the book's 30 5x5 filters
    conv_param = ({'filter_num': 16, 'filter_size': 3, 'pad': 1, 'stride': 1} if small_image else
                  {'filter_num': 30, 'filter_size': 5, 'pad': 0, 'stride': 1})
    return SimpleConvNet(input_dim, conv_param, hidden_size=100, weight_init_std=0.1 if small_image else 0.01,
                         **common)


def _write_outputs(args: argparse.Namespace, trainer, title: str) -> None:
    """The PNGs and the parameter file that --plot, --filters and --save ask for."""
    from fastconv.nn import plots

    if args.plot:
        plots.plot_training(trainer, args.plot, title=title)
        print(f"wrote {args.plot}")
    if args.filters:
        plots.plot_filters(trainer.network.params["W1"], args.filters)
        print(f"wrote {args.filters}")
    if args.save:
        trainer.network.save_params(args.save)
        print(f"wrote {args.save}")


def _fail(message: str) -> int:
    print(f"fastconv train: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    from fastconv.nn import Trainer, load_dataset, plots

    if args.backend is not None and (reason := _backend.unavailable_reason(args.backend)) is not None:
        return _fail(reason)
    if args.plot or args.filters:
        try:
            plots.require_matplotlib()
        except ImportError as exc:
            return _fail(str(exc))
    try:
        (x_train, t_train), (x_test, t_test) = load_dataset(args.dataset, seed=args.seed)
    except (FileNotFoundError, ValueError, ImportError) as exc:
        return _fail(str(exc))

    if args.threads is not None:
        fastconv.set_num_threads(args.threads)
    weights_seed, order_seed = np.random.SeedSequence(args.seed).spawn(2)
    classes = int(max(t_train.max(), t_test.max())) + 1
    network = _network(args, x_train.shape[1:], classes, np.random.default_rng(weights_seed))
    backend = args.backend or fastconv.get_backend()
    if not args.quiet:
        print(f"{args.dataset}: {len(x_train)} train / {len(x_test)} test images {x_train.shape[1:]}; "
              f"{type(network).__name__} {args.dtype}; backend {backend}, threads {fastconv.get_num_threads()}; "
              f"{args.optimizer} lr={args.lr}, batch {args.batch_size}")
    trainer = Trainer(network, x_train, t_train, x_test, t_test, epochs=args.epochs,
                      mini_batch_size=args.batch_size, optimizer=args.optimizer, optimizer_param={'lr': args.lr},
                      evaluate_sample_num_per_epoch=args.eval_samples, verbose=not args.quiet,
                      seed=np.random.default_rng(order_seed))
    trainer.train()
    print(f"backend {backend}: test accuracy {trainer.test_acc:.4f} after {args.epochs} epochs, "
          f"{np.median(trainer.epoch_seconds):.3f} s per epoch (median training pass; the first, with any "
          f"compiling or autotuning, {trainer.epoch_seconds[0]:.3f} s)")

    _write_outputs(args, trainer, f"{type(network).__name__} on {args.dataset}, backend {backend}")
    return 0
