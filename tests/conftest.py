"""Fixtures shared by the tests: the backend under test (visible skip when it cannot run here)."""

from __future__ import annotations

import os

import numpy as np
import pytest

import fastconv as fc
from fastconv import _threads

from _helpers import COMPARED_BACKENDS, require_backend

# auto's measurements are tested in test_auto.py; elsewhere it takes its heuristic, and never touches the
# user's real cache.
os.environ.setdefault("FASTCONV_AUTOTUNE", "0")
os.environ.setdefault("FASTCONV_CACHE_DIR", os.path.join(os.environ.get("TMPDIR", "/tmp"),
                                                         f"fastconv-test-cache-{os.getpid()}"))

@pytest.fixture(params=COMPARED_BACKENDS)
def backend(request) -> str:
    """Each backend other than naive, in turn."""
    return require_backend(request.param)


@pytest.fixture(params=[np.float64, np.float32], ids=["f64", "f32"])
def dtype(request):
    return np.dtype(request.param)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


@pytest.fixture
def tiling(monkeypatch):
    """tiling(module, NAME=value, ...) sets a module's tiling constants for this test; the plans made under other
    values are forgotten before and after, since a kernel tiles by the constants of the moment in scratch its
    cached plan sized (see fastconv._threads.per_budget)."""

    def set_constants(module, **constants):
        for name, value in constants.items():
            monkeypatch.setattr(module, name, value)
        _threads.clear_plans()

    yield set_constants
    monkeypatch.undo()
    _threads.clear_plans()


@pytest.fixture(autouse=True)
def _restore_defaults():
    """Tests that change the default backend or threads do not leak into others."""
    threads = fc.get_num_threads()
    yield
    fc.set_backend(None)
    if fc.get_num_threads() != threads:
        fc.set_num_threads(threads)
