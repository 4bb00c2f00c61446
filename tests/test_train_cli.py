"""`fastconv train`: one short training run in-process and one as a subprocess, each writing the plots and the
parameters; clear errors for a missing MNIST folder."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from fastconv import cli
from fastconv.nn import SimpleConvNet, load_digits

from _helpers import write_fake_mnist

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def outputs(tmp_path) -> tuple[list[str], dict]:
    paths = {"plot": tmp_path / "curve.png", "filters": tmp_path / "filters.png", "save": tmp_path / "params.npz"}
    return [arg for name, path in paths.items() for arg in (f"--{name}", str(path))], paths


def test_train_writes_plots_and_parameters(tmp_path, capsys):
    args, paths = outputs(tmp_path)
    assert cli.main(["train", "--epochs", "1", "--backend", "im2col", "--seed", "3", "--threads", "1", *args]) == 0
    out = capsys.readouterr().out
    assert "epoch   1/1  loss " in out and "test acc " in out
    assert "backend im2col: test accuracy 0." in out and "s per epoch" in out
    for path in (paths["plot"], paths["filters"]):
        assert path.read_bytes()[:8] == PNG_MAGIC
    with np.load(paths["save"]) as params:
        assert sorted(params.files) == ["W1", "W2", "W3", "b1", "b2", "b3"]
        assert params["W1"].shape == (16, 1, 3, 3) and params["W1"].dtype == np.float32


def test_saved_parameters_load_into_the_same_network(tmp_path, capsys):
    """The saved parameters are the trained ones: loaded into the network, they score the reported accuracy."""
    _, paths = outputs(tmp_path)
    assert cli.main(["train", "--epochs", "1", "--backend", "im2col", "--quiet", "--dtype", "float64",
                     "--save", str(paths["save"])]) == 0
    reported = capsys.readouterr().out.split("test accuracy ")[1].split()[0]
    net = SimpleConvNet((1, 8, 8), {'filter_num': 16, 'filter_size': 3, 'pad': 1, 'stride': 1}, backend="im2col")
    net.load_params(paths["save"])
    _, (x_test, t_test) = load_digits(seed=0)
    assert f"{net.accuracy(x_test, t_test):.4f}" == reported


def test_train_runs_as_a_command(tmp_path):
    args, paths = outputs(tmp_path)
    done = subprocess.run([sys.executable, "-m", "fastconv.cli", "train", "--epochs", "1", "--network", "deep",
                           "--threads", "1", "--backend", "im2col", "--optimizer", "momentum", "--lr", "0.05",
                           *args],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "DeepConvNetLite" in done.stdout and "test accuracy" in done.stdout
    assert all(path.exists() for path in paths.values())


def test_train_reads_an_mnist_folder(tmp_path, capsys):
    write_fake_mnist(tmp_path, np.random.default_rng(0), n_train=20, n_test=10)
    assert cli.main(["train", "--dataset", f"mnist:{tmp_path}", "--epochs", "1", "--backend", "im2col"]) == 0
    out = capsys.readouterr().out
    assert "20 train / 10 test images (1, 28, 28)" in out and "test accuracy" in out


def test_missing_matplotlib_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # makes the import fail
    assert cli.main(["train", "--epochs", "1", "--plot", str(tmp_path / "curve.png")]) == 2
    assert "plots need matplotlib: pip install matplotlib" in capsys.readouterr().err
    assert not (tmp_path / "curve.png").exists()


def test_missing_mnist_folder_is_a_clear_error(tmp_path, capsys):
    assert cli.main(["train", "--dataset", f"mnist:{tmp_path}", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert f"MNIST folder {tmp_path} is missing train-images-idx3-ubyte" in err
