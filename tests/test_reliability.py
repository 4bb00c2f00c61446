"""Reliability: a damaged autotune cache, environment values that are not understood, zero-size pooling input."""

from __future__ import annotations

import numpy as np
import pytest

import fastconv as fc
from fastconv.autotune import autotune_enabled, cache
from fastconv.backends import auto

from _helpers import assert_close


@pytest.fixture
def measuring(tmp_path, monkeypatch):
    """auto measures into an empty cache dir of its own, with no decisions in memory."""
    monkeypatch.setenv("FASTCONV_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("FASTCONV_AUTOTUNE", "1")
    auto.clear_memory()
    yield tmp_path
    auto.clear_memory()


@pytest.mark.parametrize("content", [bytes(range(256)) * 4, b"\xff\xfe{", b'{"version": 1, "entries": {"k": 3}}'],
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
