"""auto's decisions, in memory and in a JSON file under the user cache dir, shared by later processes.

The file is ``<cache dir>/autotune.json`` with ``{"version": 1, "entries": {key: entry}}``; the cache dir is
``$FASTCONV_CACHE_DIR`` or ``platformdirs.user_cache_dir("fastconv")``. Writes hold a lock file, merge with
what is on disk and replace the file atomically (temp file + os.replace), so concurrent processes never leave
a half-written file and do not drop each other's entries. A corrupt file (any bytes) is ignored with a warning.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import tempfile
import warnings
from pathlib import Path

import platformdirs

try:
    import fcntl
except ImportError:  # not POSIX: the atomic replace still keeps the file whole
    fcntl = None

FILE_NAME = "autotune.json"
FORMAT_VERSION = 2  # 2: keys name buckets of sizes (1 named exact shapes; such a file is replaced silently)

#: geometry fields a decision does not depend on exactly: sizes, bucketed, and what follows from them
BUCKETED = ("n", "h", "w")
DERIVED = ("out_h", "out_w")


@dataclasses.dataclass(frozen=True)
class Entry:
    """One decision: the chosen candidate, the candidates it was chosen from, their best times in ms."""

    choice: str
    candidates: tuple[str, ...]
    times_ms: tuple[tuple[str, float], ...] = ()

    def to_json(self) -> dict:
        return {"choice": self.choice, "candidates": list(self.candidates), "times_ms": dict(self.times_ms)}

    @classmethod
    def from_json(cls, data: dict) -> Entry:
        if not isinstance(data.get("choice"), str) or not isinstance(data.get("candidates"), list):
            raise ValueError(f"entry needs 'choice' (str) and 'candidates' (list), got {data!r}")
        times = data.get("times_ms", {})
        return cls(data["choice"], tuple(str(c) for c in data["candidates"]),
                   tuple((str(name), float(ms)) for name, ms in times.items()))


_memory: dict[str, Entry] = {}
_loaded = False  # whether _memory holds the file's entries


def cache_dir() -> Path:
    """$FASTCONV_CACHE_DIR, else the per-user cache directory of fastconv."""
    override = os.environ.get("FASTCONV_CACHE_DIR")
    return Path(override).expanduser() if override else Path(platformdirs.user_cache_dir("fastconv"))


def cache_path() -> Path:
    return cache_dir() / FILE_NAME


def bucket(size: int) -> int:
    """The power of two at or above size (0 stays 0): sizes in one bucket share a decision."""
    return 1 << (size - 1).bit_length() if size > 0 else 0


@functools.cache
def _key_fields(geometry_class: type) -> tuple[tuple[str, bool], ...]:
    """(field name, whether bucketed) of the fields a decision key names, in order (asked on every new shape)."""
    return tuple((f.name, f.name in BUCKETED) for f in dataclasses.fields(geometry_class)
                 if f.name not in DERIVED + ("channels_last",))


def decision_key(op: str, g, threads: int, flags: tuple = ()) -> str:
    """One line naming everything a decision depends on: op, every geometry field (batch and spatial sizes as
    their buckets), dtype, threads, flags. Nearby geometries share a key, so one measurement serves them all.
    Channels-last geometries end their fields with "NHWC" (NCHW keys stay those of files written before)."""
    fields = " ".join(f"{name}~{bucket(getattr(g, name))}" if bucketed else f"{name}={getattr(g, name)}"
                      for name, bucketed in _key_fields(type(g)))
    key = f"{op} {fields}{' NHWC' if g.channels_last else ''} threads={threads}"
    return f"{key} flags={','.join(str(int(f)) for f in flags)}" if flags else key


def lookup(key: str) -> Entry | None:
    """The decision for key: from memory, which the file (other processes' decisions too) fills on the first
    lookup after start or clear_memory()."""
    global _loaded
    if not _loaded:
        for disk_key, entry in _read_file(cache_path()).items():
            _memory.setdefault(disk_key, entry)
        _loaded = True
    return _memory.get(key)


def store(key: str, entry: Entry) -> None:
    """Remember the decision in memory and merge it into the file; a file that cannot be written is a warning."""
    _memory[key] = entry
    path = cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with _locked(path):
            entries = _read_file(path)
            entries[key] = entry
            _write_file(path, entries)
    except OSError as exc:
        warnings.warn(f"fastconv: cannot write the autotune cache {path} ({exc}); decisions are kept in memory "
                      f"only (set FASTCONV_CACHE_DIR to a writable directory)", RuntimeWarning, stacklevel=2)


def entries() -> dict[str, Entry]:
    """Every known decision: the file's, updated with this process's."""
    return {**_read_file(cache_path()), **_memory}


def clear_memory() -> None:
    """Forget the in-memory decisions (the file stays, and is read again on the next lookup)."""
    global _loaded
    _memory.clear()
    _loaded = False


def _read_file(path: Path) -> dict[str, Entry]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        warnings.warn(f"fastconv: cannot read the autotune cache {path} ({exc}); ignoring it", RuntimeWarning,
                      stacklevel=3)
        return {}
    try:
        data = json.loads(raw.decode("utf-8"))  # a UnicodeDecodeError (any bytes on disk) is a ValueError
        if not isinstance(data, dict) or not isinstance(data.get("version"), int):
            raise ValueError(f"expected an object with version {FORMAT_VERSION}")
        if data["version"] < FORMAT_VERSION:  # an older fastconv's decisions: measured again, then replaced
            return {}
        return {str(key): Entry.from_json(value) for key, value in data["entries"].items()}
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        warnings.warn(f"fastconv: ignoring the corrupt autotune cache {path} ({exc}); it will be rewritten",
                      RuntimeWarning, stacklevel=3)
        return {}


def _write_file(path: Path, entries: dict[str, Entry]) -> None:
    data = {"version": FORMAT_VERSION, "entries": {key: entry.to_json() for key, entry in sorted(entries.items())}}
    fd, tmp = tempfile.mkstemp(prefix=FILE_NAME + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def _locked(path: Path):
    """Exclusive lock on path + '.lock' for a read-merge-write (a no-op where fcntl does not exist)."""
    if fcntl is None:
        yield
        return
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
