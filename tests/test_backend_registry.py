"""Backend names, defaults and their scoping."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import fastconv as fc
from fastconv import _backend


def test_naive_and_im2col_are_always_available():
    assert {"naive", "im2col"} <= set(fc.available_backends())


def test_default_is_auto(monkeypatch):
    monkeypatch.delenv("FASTCONV_BACKEND", raising=False)
    assert fc.get_backend() == "auto"


def test_environment_sets_the_default(monkeypatch):
    monkeypatch.setenv("FASTCONV_BACKEND", "im2col")
    assert fc.get_backend() == "im2col"
    fc.set_backend("naive")
    assert fc.get_backend() == "naive"


@pytest.mark.parametrize("env", [None, "im2col"])
def test_set_backend_none_restores_the_environment_or_auto(monkeypatch, env):
    if env is None:
        monkeypatch.delenv("FASTCONV_BACKEND", raising=False)
    else:
        monkeypatch.setenv("FASTCONV_BACKEND", env)
    fc.set_backend("naive")
    fc.set_backend(None)
    assert fc.get_backend() == (env or "auto")


def test_use_backend_is_scoped_and_restored():
    fc.set_backend("im2col")
    with fc.use_backend("naive"):
        assert fc.get_backend() == "naive"
        with fc.use_backend("im2col"):
            assert fc.get_backend() == "im2col"
        assert fc.get_backend() == "naive"
    assert fc.get_backend() == "im2col"


def test_use_backend_does_not_leak_into_other_threads():
    seen = []
    with fc.use_backend("naive"):
        thread = threading.Thread(target=lambda: seen.append(fc.get_backend()))
        thread.start()
        thread.join()
    assert seen == [_backend.get_backend()]


def test_default_backend_is_used_by_calls(monkeypatch):
    calls = []
    naive = _backend.load("naive")
    monkeypatch.setattr(naive, "avg_pool2d_forward", lambda x, g: calls.append(g) or np.zeros(g.y_shape))
    with fc.use_backend("naive"):
        fc.avg_pool2d(np.ones((1, 1, 4, 4)), 2)
    assert len(calls) == 1


def test_unavailable_backend_raises_with_reason_and_fix(monkeypatch):
    monkeypatch.setitem(_backend._failures, "cython", "ImportError: no compiled extension")
    monkeypatch.delitem(_backend._modules, "cython", raising=False)
    with pytest.raises(fc.BackendUnavailableError, match=r"'cython' is unavailable here .*to fix: build"):
        fc.conv2d(np.ones((1, 1, 3, 3)), np.ones((1, 1, 3, 3)), backend="cython")
    assert "cython" not in fc.available_backends()


def test_every_backend_module_has_the_six_kernels():
    for name in fc.available_backends():
        module = _backend.load(name)
        missing = [k for k in _backend.KERNELS if not callable(getattr(module, k, None))]
        assert not missing, f"{name} lacks {missing}"
