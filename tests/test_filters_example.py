"""examples/filters.py: its filter bank, applied by one conv2d call, equals scipy.ndimage.correlate per filter,
its pooling equals block max/mean, and the script runs end to end."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn", reason="the example's photo ships with scikit-learn")

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "filters.py"


@pytest.fixture(scope="module")
def filters():
    spec = importlib.util.spec_from_file_location("filters_example", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bank_matches_scipy_correlate_per_filter(filters):
    names, weights = filters.filter_bank()
    assert weights.shape == (len(names), 1, filters.SIZE, filters.SIZE)
    photo = filters.grayscale_photo().astype(np.float64)[:, :120, :150]  # a crop keeps the test quick
    result = filters.apply_bank(photo, weights.astype(np.float64))
    expected = filters.scipy_responses(photo, weights.astype(np.float64))
    np.testing.assert_allclose(result["responses"], expected, rtol=1e-10, atol=1e-10)


def test_pooling_is_block_max_and_mean(filters):
    _, weights = filters.filter_bank()
    photo = filters.grayscale_photo()[:, :64, :96]
    result = filters.apply_bank(photo, weights, pool=4)
    blocks = result["responses"].reshape(1, 16, 4, 24, 4, len(weights))
    np.testing.assert_array_equal(result["max"], blocks.max(axis=(2, 4)))
    np.testing.assert_allclose(result["avg"], blocks.mean(axis=(2, 4)), rtol=1e-5, atol=1e-6)


def test_script_prints_timings_and_saves_the_grid(filters, tmp_path, capsys):
    out = tmp_path / "grid.png"
    filters.main(["--out", str(out), "--repeat", "1"])
    printed = capsys.readouterr().out
    assert "scipy.ndimage.correlate" in printed and f"wrote {out}" in printed
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
