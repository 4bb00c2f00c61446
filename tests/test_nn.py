"""fastconv.nn: the book's layers as drop-ins, backprop against numerical gradients on every backend, training on
digits (accuracy, determinism, the same losses on every backend), saving and loading, the data loaders."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

import fastconv as fc
from fastconv.nn import (OPTIMIZERS, Affine, Convolution, DeepConvNetLite, Pooling, Relu, SimpleConvNet,
                         SoftmaxWithLoss, Trainer, load_digits, load_mnist, read_idx, write_idx)

from _helpers import COMPARED_BACKENDS, require_backend, write_fake_mnist, write_idx_by_hand

DIGITS_CONV = {'filter_num': 16, 'filter_size': 3, 'pad': 1, 'stride': 1}


def book_im2col(x, filter_h, filter_w, stride=1, pad=0):
    """The book's im2col: x (N, C, H, W) -> (N * Ho * Wo, C * filter_h * filter_w)."""
    n, c, h, w = x.shape
    out_h, out_w = (h + 2 * pad - filter_h) // stride + 1, (w + 2 * pad - filter_w) // stride + 1
    img = np.pad(x, [(0, 0), (0, 0), (pad, pad), (pad, pad)])
    col = np.zeros((n, c, filter_h, filter_w, out_h, out_w))
    for y in range(filter_h):
        for x_ in range(filter_w):
            col[:, :, y, x_] = img[:, :, y:y + stride * out_h:stride, x_:x_ + stride * out_w:stride]
    return col.transpose(0, 4, 5, 1, 2, 3).reshape(n * out_h * out_w, -1), out_h, out_w


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """The shapes here are tiny: one thread is as fast, and far faster when other processes hold the cores
    (a two-thread kernel then waits a scheduler time slice for its second thread on every call)."""
    threads = fc.get_num_threads()
    fc.set_num_threads(1)
    yield
    fc.set_num_threads(threads)


@pytest.fixture(params=["naive", *COMPARED_BACKENDS])
def any_backend(request) -> str:
    """Every backend, naive included."""
    return require_backend(request.param)


@pytest.fixture(scope="module")
def digits():
    return load_digits(seed=0)


def digits_net(backend, dtype=np.float64, seed=1) -> SimpleConvNet:
    return SimpleConvNet((1, 8, 8), DIGITS_CONV, hidden_size=100, weight_init_std=0.1, backend=backend, rng=seed,
                         dtype=dtype)


def train_digits(digits, backend, epochs, dtype=np.float64) -> Trainer:
    (x_train, t_train), (x_test, t_test) = digits
    trainer = Trainer(digits_net(backend, dtype), x_train, t_train, x_test, t_test, epochs=epochs,
                      mini_batch_size=50, optimizer='Adam', optimizer_param={'lr': 0.01}, verbose=False, seed=2)
    trainer.train()
    return trainer


# --- the layers, used as the book uses them ---------------------------------------------------------------------

def test_convolution_matches_the_books_im2col_layer(rng):
    x, W, b = rng.standard_normal((2, 3, 7, 6)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    layer = Convolution(W, b, 2, 1)  # positional stride, pad, as the book's code calls it
    out = layer.forward(x)
    col, out_h, out_w = book_im2col(x, 3, 3, stride=2, pad=1)
    expected = (col @ W.reshape(4, -1).T + b).reshape(2, out_h, out_w, -1).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(out, expected, rtol=1e-12)

    dout = rng.standard_normal(out.shape)
    dx = layer.backward(dout)
    dout_col = dout.transpose(0, 2, 3, 1).reshape(-1, 4)
    np.testing.assert_allclose(layer.dW, (col.T @ dout_col).T.reshape(W.shape), rtol=1e-12)
    np.testing.assert_allclose(layer.db, dout_col.sum(axis=0), rtol=1e-12)
    assert dx.shape == x.shape and layer.W is W and layer.b is b


def test_pooling_matches_the_books_max_and_plain_mean(rng):
    x = rng.standard_normal((2, 3, 6, 6))
    layer = Pooling(pool_h=2, pool_w=2, stride=2)
    col, _, _ = book_im2col(x, 2, 2, stride=2)
    expected = col.reshape(-1, 2 * 2).max(axis=1).reshape(2, 3, 3, 3).transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(layer.forward(x), expected)
    dx = layer.backward(np.ones((2, 3, 3, 3)))
    np.testing.assert_array_equal(dx, x == expected.repeat(2, axis=2).repeat(2, axis=3))  # 1 at each maximum

    avg = Pooling(2, 2, 2, mode="avg")
    np.testing.assert_allclose(avg.forward(x), x.reshape(2, 3, 3, 2, 3, 2).mean(axis=(3, 5)))
    np.testing.assert_allclose(avg.backward(np.ones((2, 3, 3, 3))), np.full(x.shape, 0.25))


def test_pooling_rejects_an_unknown_mode():
    with pytest.raises(ValueError, match="mode must be 'max' or 'avg'"):
        Pooling(2, 2, mode="min")


def test_layers_follow_use_backend(rng, monkeypatch):
    """backend=None runs the kernels of the use_backend default, forward and backward; an explicit backend wins."""
    calls = []
    for name in ("naive", "im2col"):
        module = fc._backend.load(name)
        for op in fc._backend.KERNELS:
            def spy(*args, _name=name, _op=op, _kernel=getattr(module, op)):
                calls.append(f"{_name}.{_op}")
                return _kernel(*args)
            monkeypatch.setattr(module, op, spy)
    W, x = rng.standard_normal((2, 1, 3, 3)), rng.standard_normal((1, 1, 6, 6))
    conv, pool = Convolution(W, np.zeros(2)), Pooling(2, 2, 2)
    explicit = Convolution(W, np.zeros(2), backend="im2col")
    with fc.use_backend("naive"):
        out = pool.forward(conv.forward(x))
        conv.backward(pool.backward(np.ones_like(out)))
        explicit.forward(x)
    assert calls == ["naive.conv2d_forward", "naive.max_pool2d_forward", "naive.max_pool2d_backward",
                     "naive.conv2d_backward", "im2col.conv2d_forward"]


def test_affine_flattens_4d_input_and_restores_its_shape(rng):
    x, W, b = rng.standard_normal((2, 3, 2, 2)), rng.standard_normal((12, 5)), rng.standard_normal(5)
    layer = Affine(W, b)
    np.testing.assert_allclose(layer.forward(x), x.reshape(2, 12) @ W + b)
    assert layer.backward(np.ones((2, 5))).shape == x.shape and layer.dW.shape == W.shape


def test_softmax_with_loss_takes_labels_or_one_hot(rng):
    scores, labels = rng.standard_normal((4, 3)), np.array([0, 2, 1, 2])
    by_label, by_one_hot = SoftmaxWithLoss(), SoftmaxWithLoss()
    loss = by_label.forward(scores, labels)
    assert loss == pytest.approx(by_one_hot.forward(scores, np.eye(3)[labels]), rel=1e-12)
    probs = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
    assert loss == pytest.approx(-np.log(probs[np.arange(4), labels]).mean(), rel=1e-12)
    np.testing.assert_allclose(by_label.backward(), by_one_hot.backward(), rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layers_keep_the_dtype_of_params_and_input(dtype, rng):
    net = SimpleConvNet((1, 8, 8), DIGITS_CONV, hidden_size=10, backend="im2col", rng=0, dtype=dtype)
    x, t = rng.random((3, 1, 8, 8)).astype(dtype), np.array([1, 2, 3])
    assert net.predict(x).dtype == dtype
    assert all(grad.dtype == dtype for grad in net.gradient(x, t).values())
    assert Relu().forward(x).dtype == dtype


# --- gradients: backprop against numerical differentiation, on every backend ------------------------------------

def test_simple_convnet_gradient_matches_numerical_gradient(any_backend):
    rng = np.random.default_rng(3)
    net = SimpleConvNet((1, 5, 5), {'filter_num': 2, 'filter_size': 3, 'pad': 1, 'stride': 1}, hidden_size=4,
                        output_size=3, weight_init_std=0.5, backend=any_backend, rng=1)
    x, t = rng.random((3, 1, 5, 5)), np.array([0, 2, 1])
    backprop, numerical = net.gradient(x, t), net.numerical_gradient(x, t)
    assert set(backprop) == {"W1", "b1", "W2", "b2", "W3", "b3"}
    for key in backprop:
        np.testing.assert_allclose(backprop[key], numerical[key], rtol=1e-5, atol=1e-8, err_msg=key)


def test_the_books_gradient_check_runs_unchanged():
    """ch07/gradient_check.py of the book, with fastconv.nn's SimpleConvNet."""
    np.random.seed(0)
    with fc.use_backend("im2col"):
        network = SimpleConvNet(input_dim=(1, 10, 10),
                                conv_param={'filter_num': 10, 'filter_size': 3, 'pad': 0, 'stride': 1},
                                hidden_size=10, output_size=10, weight_init_std=0.01)
        X = np.random.rand(100).reshape((1, 1, 10, 10))
        T = np.array([1]).reshape((1, 1))
        grad_num = network.numerical_gradient(X, T)
        grad = network.gradient(X, T)
    for key, val in grad_num.items():  # the book prints these means; h = 1e-4 straddles a few max/ReLU kinks
        assert np.abs(grad[key] - val).mean() < 1e-5, key


def test_deep_convnet_gradient_matches_directional_derivatives(any_backend):
    """For each parameter array p and a random direction d: <dL/dp, d> == (L(p + hd) - L(p - hd)) / 2h.
    (Cheaper than numerical_gradient's two losses per element, which the test above covers.)"""
    rng = np.random.default_rng(4)
    net = DeepConvNetLite((1, 4, 4), (2, 2, 3, 3), hidden_size=6, output_size=3, dropout_ratio=0.0,
                          backend=any_backend, rng=5)
    x, t, h = rng.random((3, 1, 4, 4)), np.array([0, 2, 1]), 1e-4
    backprop = net.gradient(x, t)
    assert len(backprop) == 12 and all(np.any(grad != 0) for grad in backprop.values())
    for key, param in net.params.items():
        original, direction = param.copy(), rng.standard_normal(param.shape)
        param[...] = original + h * direction
        loss_plus = net.loss(x, t)
        param[...] = original - h * direction
        loss_minus = net.loss(x, t)
        param[...] = original
        assert np.sum(backprop[key] * direction) == pytest.approx((loss_plus - loss_minus) / (2 * h),
                                                                  rel=1e-6, abs=1e-10), key


# --- training ---------------------------------------------------------------------------------------------------

def test_training_on_digits_reaches_95_percent(digits):
    trainer = train_digits(digits, "im2col", epochs=5, dtype=np.float32)
    assert trainer.test_acc >= 0.95
    assert len(trainer.train_acc_list) == len(trainer.test_acc_list) == len(trainer.epoch_seconds) == 5
    assert len(trainer.train_loss_list) == 5 * trainer.iter_per_epoch
    assert trainer.epoch_loss_list[-1] < trainer.epoch_loss_list[0] / 5


@pytest.fixture(scope="module")
def im2col_losses(digits):
    return np.array(train_digits(digits, "im2col", epochs=2).train_loss_list)


def test_training_is_deterministic_for_a_seed(digits, im2col_losses):
    np.testing.assert_array_equal(train_digits(digits, "im2col", epochs=2).train_loss_list, im2col_losses)


def test_training_gives_the_same_losses_on_every_backend(backend, digits, im2col_losses):
    losses = np.array(train_digits(digits, backend, epochs=2).train_loss_list)
    np.testing.assert_allclose(losses, im2col_losses, rtol=1e-6, atol=1e-6)


def test_trainer_takes_the_books_positional_arguments(digits):
    (x_train, t_train), (x_test, t_test) = digits
    np.random.seed(0)  # seed=None: numpy's global state, as in the book
    trainer = Trainer(digits_net("im2col"), x_train[:200], t_train[:200], x_test, t_test, 1, 100, 'SGD',
                      {'lr': 0.01}, 50, False)
    trainer.train()
    assert len(trainer.train_loss_list) == 2 and len(trainer.test_acc_list) == 1
    with pytest.raises(ValueError, match="unknown optimizer 'sgdd'; choose one of sgd, momentum"):
        Trainer(digits_net("im2col"), x_train, t_train, x_test, t_test, optimizer='sgdd')


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizers_descend_a_quadratic_in_place(name):
    optimizer = OPTIMIZERS[name](lr=0.05)
    params = {"a": np.array([3.0, -2.0]), "b": np.array([[1.5]])}
    arrays = dict(params)
    for _ in range(50):
        optimizer.update(params, {key: 2 * value for key, value in params.items()})
    assert all(params[key] is arrays[key] for key in params)
    assert sum(np.sum(value ** 2) for value in params.values()) < 0.8 * (3.0 ** 2 + 2.0 ** 2 + 1.5 ** 2)


def book_update(name: str, p, g, state: dict, lr: float):
    """The book's update rule (common/optimizer.py, default hyper-parameters) for one array; state carries the
    optimizer's memory from call to call."""
    if name == "sgd":
        return p - lr * g
    if name in ("momentum", "nesterov"):
        v = state["v"] = 0.9 * state.get("v", 0.0) - lr * g
        return p + v if name == "momentum" else p + 0.9 * 0.9 * v - (1 + 0.9) * lr * g
    if name in ("adagrad", "rmsprop"):
        h = state.get("h", 0.0)
        h = state["h"] = h + g * g if name == "adagrad" else 0.99 * h + 0.01 * g * g
        return p - lr * g / (np.sqrt(h) + 1e-7)
    t = state["t"] = state.get("t", 0) + 1
    m = state["m"] = state.get("m", 0.0) + 0.1 * (g - state.get("m", 0.0))
    v = state["v"] = state.get("v", 0.0) + 0.001 * (g * g - state.get("v", 0.0))
    return p - lr * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t) * m / (np.sqrt(v) + 1e-7)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizers_follow_the_books_update_rules(name, rng):
    optimizer, state = OPTIMIZERS[name](lr=0.05), {}
    params = {"W": rng.standard_normal((3, 2))}
    expected = params["W"].copy()
    for _ in range(3):
        grad = rng.standard_normal((3, 2))
        optimizer.update(params, {"W": grad})
        expected = book_update(name, expected, grad, state, lr=0.05)
    np.testing.assert_allclose(params["W"], expected, rtol=1e-12)


# --- saving and loading -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".npz", ".pkl"])
def test_save_and_load_params_round_trip(tmp_path, suffix, rng):
    x = rng.random((4, 1, 8, 8))
    trained, fresh = digits_net("im2col", seed=1), digits_net("im2col", seed=2)
    path = tmp_path / f"params{suffix}"
    trained.save_params(path)
    assert path.exists()
    fresh.load_params(path)
    for key in trained.params:
        np.testing.assert_array_equal(fresh.params[key], trained.params[key])
    np.testing.assert_array_equal(fresh.predict(x), trained.predict(x))


def test_load_params_rejects_another_architecture(tmp_path):
    path = tmp_path / "params.npz"
    digits_net("im2col").save_params(path)
    other = SimpleConvNet((1, 8, 8), DIGITS_CONV, hidden_size=20, rng=0)
    with pytest.raises(ValueError, match=r"W2 in .*params.npz has shape \(256, 100\), this network's has"):
        other.load_params(path)


# --- data -------------------------------------------------------------------------------------------------------

def unpacked_bytes(path) -> bytes:
    with (gzip.open if str(path).endswith(".gz") else open)(path, "rb") as f:
        return f.read()


@pytest.mark.parametrize("gzipped", [False, True], ids=["plain", "gz"])
@pytest.mark.parametrize("dtype, type_byte", [(np.uint8, 0x08), (np.int32, 0x0C), (np.float64, 0x0E)])
def test_read_idx_and_write_idx_round_trip(tmp_path, rng, dtype, type_byte, gzipped):
    array = (rng.random((3, 4, 5)) * 200).astype(dtype)
    suffix = ".gz" if gzipped else ""
    write_idx_by_hand(tmp_path / f"by_hand.idx{suffix}", array, type_byte, gzipped)
    result = read_idx(tmp_path / f"by_hand.idx{suffix}")
    np.testing.assert_array_equal(result, array)
    assert result.dtype == dtype
    write_idx(tmp_path / f"written.idx{suffix}", array)
    assert unpacked_bytes(tmp_path / f"written.idx{suffix}") == unpacked_bytes(tmp_path / f"by_hand.idx{suffix}")


def test_read_idx_rejects_bad_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01abcd")
    with pytest.raises(ValueError, match="is not an IDX file"):
        read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">I", 10) + b"\0" * 9)
    with pytest.raises(ValueError, match=r"needs 10 data bytes, the file has 9"):
        read_idx(tmp_path / "short")
    with pytest.raises(TypeError, match="IDX holds uint8, int8, int16, int32, float32 or float64, not int64"):
        write_idx(tmp_path / "int64.idx", np.zeros(3, np.int64))


def test_load_mnist_reads_idx_files_gzipped_or_not(tmp_path, rng):
    write_fake_mnist(tmp_path, rng)
    (x_train, t_train), (x_test, t_test) = load_mnist(tmp_path)
    assert x_train.shape == (5, 1, 28, 28) and x_test.shape == (3, 1, 28, 28)
    assert x_train.dtype == np.float32 and 0 <= x_train.min() and x_train.max() <= 1
    assert t_train.shape == (5,) and t_test.dtype == np.int64
    raw = read_idx(tmp_path / "train-images-idx3-ubyte.gz")
    np.testing.assert_allclose(x_train[:, 0], raw / 255.0, rtol=1e-6)


def test_load_mnist_names_the_folder_and_the_missing_files(tmp_path, rng):
    write_fake_mnist(tmp_path, rng)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match=f"{tmp_path} is missing t10k-labels-idx1-ubyte"):
        load_mnist(tmp_path)
    with pytest.raises(FileNotFoundError, match="nowhere does not exist"):
        load_mnist(tmp_path / "nowhere")


def test_digits_are_scaled_images_with_a_fixed_split(digits):
    (x_train, t_train), (x_test, t_test) = digits
    assert x_train.shape[1:] == (1, 8, 8) and x_train.dtype == np.float32
    assert len(x_train) + len(x_test) == 1797 and len(x_test) == 359
    assert x_train.min() == 0 and x_train.max() == 1 and set(np.unique(t_train)) == set(range(10))
    (x_again, _), _ = load_digits(seed=0)
    (x_other, _), _ = load_digits(seed=1)
    np.testing.assert_array_equal(x_again, x_train)
    assert not np.array_equal(x_other, x_train)
