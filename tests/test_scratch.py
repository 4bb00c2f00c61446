"""Scratch kept between calls (fastconv._scratch): one arena per thread, carved while nothing views it, grown to
the largest scratch asked for within its limit, and released on request."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from fastconv import _scratch

#: two float32 buffers, 256 KiB and 128 KiB: enough to be carved from the arena
BUFFERS = {"a": ((256, 256), np.dtype(np.float32)), "b": ((128, 128), np.dtype(np.float64))}


@pytest.fixture(autouse=True)
def fresh_arena():
    _scratch.release()
    yield
    _scratch.release()


def carve(buffers: dict) -> dict[str, np.ndarray]:
    return _scratch.allocate(_scratch.layout(buffers))


def address(array: np.ndarray) -> int:
    return array.__array_interface__["data"][0]


def test_buffers_are_carved_apart_and_aligned():
    arrays = carve(BUFFERS)
    assert {name: (a.shape, a.dtype) for name, a in arrays.items()} == BUFFERS
    assert not np.shares_memory(arrays["a"], arrays["b"])
    assert all(address(a) % _scratch.ALIGN == 0 for a in arrays.values())
    arrays["a"][...] = 1
    arrays["b"][...] = 2
    assert (arrays["a"] == 1).all() and (arrays["b"] == 2).all()


def test_an_unused_arena_is_carved_again():
    first = address(carve(BUFFERS)["a"])
    assert address(carve(BUFFERS)["a"]) == first
    assert address(carve({"c": ((64, 1024), np.dtype(np.float32))})["c"]) == first


def test_an_arena_still_viewed_is_not_carved_again():
    view = carve(BUFFERS)["a"].reshape(-1)[10:]  # a view of a view refers to the arena too
    again = carve(BUFFERS)
    assert not np.shares_memory(again["a"], view) and not np.shares_memory(again["b"], view)
    assert _scratch.kept_bytes() >= 256 * 256 * 4 + 128 * 128 * 8


def test_the_arena_grows_to_the_largest_scratch_and_no_further(monkeypatch):
    carve(BUFFERS)
    larger = carve({"c": ((512, 512), np.dtype(np.float32))})["c"]
    assert _scratch.kept_bytes() < 2 * larger.nbytes
    del larger
    carve(BUFFERS)
    assert _scratch.kept_bytes() >= 512 * 512 * 4
    monkeypatch.setattr(_scratch, "KEEP_BYTES", 1 << 20)
    huge = carve({"d": ((1024, 512), np.dtype(np.float32))})["d"]  # 2 MiB: allocated afresh
    assert not np.shares_memory(huge, _scratch._arena.buffer)


def test_small_scratch_is_not_carved():
    small = carve({"e": ((8, 8), np.dtype(np.float32))})["e"]
    assert small.shape == (8, 8) and _scratch.kept_bytes() == 0


def test_threads_keep_their_own_arenas():
    carve(BUFFERS)
    kept_elsewhere = []
    thread = threading.Thread(target=lambda: kept_elsewhere.append(_scratch.kept_bytes()))
    thread.start()
    thread.join()
    assert kept_elsewhere == [0] and _scratch.kept_bytes() > 0


def test_release_keeps_an_arena_in_use():
    held = carve(BUFFERS)
    _scratch.release()
    assert _scratch.kept_bytes() > 0
    del held
    _scratch.release()
    assert _scratch.kept_bytes() == 0
