"""Data sets for the trainer, never downloaded: scikit-learn's bundled 8x8 digits, and MNIST from a local folder of
the standard IDX files. Each loader returns ((x_train, t_train), (x_test, t_test)) like the book's load_mnist, with
x float32 (N, 1, H, W) in [0, 1] and t int64 labels (N,) (or one-hot (N, 10) with one_hot_label=True)."""

from __future__ import annotations

import gzip
import math
import os
import struct
from pathlib import Path

import numpy as np

#: IDX type byte -> big-endian numpy dtype
IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

#: the four MNIST files as distributed (each may also be gzipped, with .gz appended)
MNIST_FILES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
               "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}


def read_idx(path) -> np.ndarray:
    """The array stored in an IDX file (gzipped or not): magic 0, 0, type byte, ndim; then ndim big-endian
    uint32 sizes; then the data, big-endian, row-major."""
    with open(path, "rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    with (gzip.open if gzipped else open)(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] not in IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {data[:4].hex()})")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: IDX header promises {ndim} dimensions but the file ends after {len(data)} bytes")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(IDX_DTYPES[data[2]])
    expected = math.prod(shape) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(f"{path}: IDX shape {shape} of {dtype.name} needs {expected} data bytes, "
                         f"the file has {len(data) - header}")
    return np.frombuffer(data, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path, array: np.ndarray) -> None:
    """Write array (of a dtype in IDX_DTYPES) as an IDX file, gzipped when path ends in .gz."""
    types = {np.dtype(dtype).newbyteorder("="): code for code, dtype in IDX_DTYPES.items()}
    array = np.asarray(array)
    if array.dtype not in types:
        raise TypeError(f"write_idx: IDX holds uint8, int8, int16, int32, float32 or float64, not {array.dtype}")
    header = bytes([0, 0, types[array.dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with (gzip.open if os.fspath(path).endswith(".gz") else open)(path, "wb") as f:
        f.write(header + array.astype(array.dtype.newbyteorder(">")).tobytes())


def _images(x: np.ndarray, white: float, normalize: bool, flatten: bool) -> np.ndarray:
    """(N, H, W) pixels from 0 to white -> float32 (N, 1, H, W), or (N, H * W) with flatten; divided by white
    when normalize."""
    x = x.astype(np.float32)
    if normalize:
        x /= white
    return x.reshape(x.shape[0], -1) if flatten else x[:, None]


def _labels(t: np.ndarray, one_hot_label: bool, classes: int = 10) -> np.ndarray:
    t = t.astype(np.int64)
    return np.eye(classes, dtype=np.float32)[t] if one_hot_label else t


def _find_idx(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def load_mnist(folder, *, normalize=True, flatten=False, one_hot_label=False):
    """MNIST from folder holding train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and
    t10k-labels-idx1-ubyte (each optionally .gz). FileNotFoundError names the folder and what is missing."""
    folder = Path(os.fspath(folder)).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"MNIST folder {folder} does not exist; put the four IDX files "
                                f"({', '.join(MNIST_FILES.values())}, optionally .gz) there")
    paths = {key: _find_idx(folder, stem) for key, stem in MNIST_FILES.items()}
    missing = [MNIST_FILES[key] for key, path in paths.items() if path is None]
    if missing:
        raise FileNotFoundError(f"MNIST folder {folder} is missing {', '.join(missing)} (or the same name + .gz); "
                                f"fastconv never downloads: copy the standard IDX files there")
    arrays = {key: read_idx(path) for key, path in paths.items()}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
            raise ValueError(f"MNIST folder {folder}: {split} images {images.shape} and labels {labels.shape} "
                             f"do not match (expected (N, H, W) and (N,))")
    return tuple((_images(arrays[f"{split}_images"], 255.0, normalize, flatten),
                  _labels(arrays[f"{split}_labels"], one_hot_label)) for split in ("train", "test"))


def load_digits(*, test_fraction=0.2, seed=0, normalize=True, flatten=False, one_hot_label=False):
    """scikit-learn's bundled 8x8 digits (1797 images, no download), split at random by seed: a fixed split for
    a fixed seed, test_fraction of the images held out."""
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError as exc:
        raise ImportError("the digits data set comes with scikit-learn: pip install scikit-learn "
                          "(or pip install 'fastconv[train]')") from exc
    digits = sklearn_digits()
    order = np.random.default_rng(seed).permutation(len(digits.target))
    n_test = round(len(order) * test_fraction)
    x, t = _images(digits.images, 16.0, normalize, flatten), _labels(digits.target, one_hot_label)
    test, train = order[:n_test], order[n_test:]
    return (x[train], t[train]), (x[test], t[test])


def load_dataset(spec: str, *, seed=0):
    """'digits' or 'mnist:FOLDER' -> ((x_train, t_train), (x_test, t_test)); seed fixes the digits split."""
    if spec == "digits":
        return load_digits(seed=seed)
    if spec.startswith("mnist:"):
        return load_mnist(spec[len("mnist:"):])
    raise ValueError(f"unknown dataset {spec!r}; use 'digits' or 'mnist:FOLDER' (a folder of MNIST IDX files)")
