"""Fixtures shared by the tests: the backend under test (visible skip when it cannot run here)."""

from __future__ import annotations

import os

import numpy as np
import pytest

import fastconv as fc

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


@pytest.fixture(autouse=True)
def _restore_defaults():
    """Tests that change the default backend or threads do not leak into others."""
    threads = fc.get_num_threads()
    yield
    fc.set_backend(None)
    if fc.get_num_threads() != threads:
        fc.set_num_threads(threads)
