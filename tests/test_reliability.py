"""Reliability: process pools (fork, spawn, forkserver) after the parent ran kernels, threads under numba's
workqueue layer, a damaged autotune cache, environment values that are not understood, pooling input without
rows."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import fastconv as fc
from fastconv.autotune import autotune_enabled, cache
from fastconv.backends import auto

from _helpers import assert_close, require_backend


@pytest.fixture
def measuring(tmp_path, monkeypatch):
    """auto measures every call into an empty cache dir of its own, with no decisions in memory."""
    monkeypatch.setenv("FASTCONV_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("FASTCONV_AUTOTUNE", "1")
    monkeypatch.setattr(auto, "TINY_S", 0.0)
    monkeypatch.setattr(auto, "MEASURE_ON_VISIT", 1)
    auto.clear_memory()
    yield tmp_path
    auto.clear_memory()


@pytest.mark.parametrize("content", [bytes(range(256)) * 4, b"\xff\xfe{", b'{"version": 2, "entries": {"k": 3}}'],
                         ids=["random_bytes", "bad_utf8", "wrong_schema"])
def test_any_bytes_in_the_cache_file_are_a_warning_then_correct_results(content, measuring):
    (measuring / cache.FILE_NAME).write_bytes(content)
    x, w = np.ones((1, 2, 6, 6)), np.ones((3, 2, 3, 3))
    with pytest.warns(RuntimeWarning, match="ignoring the corrupt autotune cache"):
        y = fc.conv2d(x, w, backend="auto")
    assert_close(y, fc.conv2d(x, w, backend="naive"), np.dtype(np.float64))
    cache.clear_memory()
    assert len(cache.entries()) == 1  # the file was rewritten whole, with the new decision


@pytest.mark.parametrize("value", ["of", "2", "enabled", ""])
def test_an_unknown_autotune_value_names_the_variable_and_the_accepted_values(value, monkeypatch):
    monkeypatch.setenv("FASTCONV_AUTOTUNE", value)
    fc.set_autotune(None)
    auto.clear_memory()
    with pytest.raises(ValueError, match=rf"FASTCONV_AUTOTUNE='{value}' is not one of 1, true, yes, on, 0, false"):
        fc.conv2d(np.ones((1, 1, 4, 4)), np.ones((1, 1, 3, 3)), backend="auto")


@pytest.mark.parametrize("value, enabled", [("0", False), (" Off ", False), ("TRUE", True), ("1", True)])
def test_autotune_values_are_read_case_and_space_insensitively(value, enabled, monkeypatch):
    monkeypatch.setenv("FASTCONV_AUTOTUNE", value)
    fc.set_autotune(None)
    assert autotune_enabled() is enabled


@pytest.mark.parametrize("shape", [(2, 1, 0, 4), (1, 2, 5, 0)])
def test_pooling_an_image_without_rows_or_columns_is_a_clear_error(shape):
    with pytest.raises(ValueError, match="max_pool2d: x has no (rows|columns) .* every pooling window would be empty"):
        fc.max_pool2d(np.zeros(shape), 2, padding=1, backend="naive")


#: a parent calls fastconv, then a pool of 2 children does the same: it must neither hang nor abort
POOL_SCRIPT = """
import multiprocessing, sys
import numpy as np
import fastconv as fc

method, backend = sys.argv[1], sys.argv[2]
x = np.arange(2 * 16 * 12 * 12, dtype=np.float64).reshape(2, 16, 12, 12) % 7
w = np.arange(16 * 16 * 9, dtype=np.float64).reshape(16, 16, 3, 3) % 5


def total(_):
    return float(fc.conv2d(x, w, padding=1, backend=backend).sum() + fc.max_pool2d(x, 2, backend=backend).sum())


if __name__ == "__main__":
    fc.set_num_threads(2)
    expected = total(0)
    with multiprocessing.get_context(method).Pool(2) as pool:
        assert pool.map(total, range(4)) == [expected] * 4
    print("ok")
"""


@pytest.mark.parametrize("method, backend", [("fork", "numba"), ("fork", "cython"), ("fork", "auto"),
                                             ("spawn", "auto"), ("forkserver", "auto")])
def test_a_process_pool_works_after_the_parent_ran_kernels(method, backend, tmp_path):
    require_backend(backend)
    script = tmp_path / "pool_script.py"
    script.write_text(POOL_SCRIPT)
    done = subprocess.run([sys.executable, str(script), method, backend], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


THREADS_SCRIPT = """
import threading
import numpy as np
import fastconv as fc

x = np.arange(4 * 8 * 16 * 16, dtype=np.float64).reshape(4, 8, 16, 16) % 11
w = np.arange(8 * 8 * 9, dtype=np.float64).reshape(8, 8, 3, 3) % 3
expected = fc.conv2d(x, w, padding=1, backend="naive"), fc.max_pool2d(x, 2, backend="naive")
wrong = []


def work(i):
    backend = ("numba", "cython", "auto", "im2col")[i % 4]
    for _ in range(10):
        results = fc.conv2d(x, w, padding=1, backend=backend), fc.max_pool2d(x, 2, backend=backend)
        wrong.extend(backend for a, e in zip(results, expected) if not np.allclose(a, e, rtol=1e-12))


threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
import numba
print(numba.threading_layer(), sorted(set(wrong)))
"""


def test_concurrent_threads_under_numbas_workqueue_layer(tmp_path):
    require_backend("numba"), require_backend("cython")
    done = subprocess.run([sys.executable, "-c", THREADS_SCRIPT], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NUMBA_THREADING_LAYER": "workqueue"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["workqueue", "[]"]


def test_an_older_cache_format_is_replaced_without_a_warning(measuring, recwarn):
    (measuring / cache.FILE_NAME).write_text('{"version": 1, "entries": {"conv2d_forward n=1": {"choice": "x"}}}')
    fc.conv2d(np.ones((1, 2, 6, 6)), np.ones((3, 2, 3, 3)), backend="auto")
    assert not [w for w in recwarn if "autotune cache" in str(w.message)]
    assert '"version": 2' in (measuring / cache.FILE_NAME).read_text() and len(cache.entries()) == 1
