"""Backend registry: names, lazy loading, the current default, and why a backend cannot run here.

What a backend module provides (six kernels and ``methods(op, g)``) is written down in
``fastconv.backends._protocol``. Adding a backend means adding one module and one entry in ``BACKENDS``.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import os
from types import ModuleType

from fastconv.backends._protocol import KERNELS  # noqa: F401  (re-exported: the registry's view of the protocol)

#: name -> (module, how to make it available when the module cannot be imported)
BACKENDS: dict[str, tuple[str, str]] = {
    "naive": ("fastconv.backends.naive", "it is pure numpy and should always import; reinstall fastconv"),
    "im2col": ("fastconv.backends.im2col", "it is pure numpy and should always import; reinstall fastconv"),
    "numba": ("fastconv.backends.numba_backend", "install numba (pip install numba)"),
    "cython": ("fastconv.backends.cython_backend", "build the compiled extension: pip install . (needs a C "
               "compiler and OpenMP), or python setup.py build_ext --inplace in a source checkout"),
    "auto": ("fastconv.backends.auto", "auto chooses between the compiled backends cython and numba: fix whichever "
             "fails to import"),
}
DEFAULT_BACKEND = "auto"

_modules: dict[str, ModuleType] = {}
_failures: dict[str, str] = {}
_process_default: str | None = None
_scoped_default: contextvars.ContextVar[str | None] = contextvars.ContextVar("fastconv_backend", default=None)


class BackendUnavailableError(RuntimeError):
    """A known backend cannot run on this machine; the message says why and how to fix it."""


def check_name(name: str, source: str = "backend") -> str:
    if not isinstance(name, str) or name not in BACKENDS:
        raise ValueError(f"{source}: unknown backend {name!r}; valid names are {', '.join(BACKENDS)}")
    return name


def load(name: str) -> ModuleType:
    """The backend's module, imported on first use; BackendUnavailableError if it cannot run here."""
    check_name(name)
    if name in _modules:
        return _modules[name]
    if name not in _failures:
        try:
            _modules[name] = importlib.import_module(BACKENDS[name][0])
            return _modules[name]
        except ImportError as exc:
            _failures[name] = f"{type(exc).__name__}: {exc}"
    raise BackendUnavailableError(f"backend {name!r} is unavailable here ({_failures[name]}); "
                                  f"to fix: {BACKENDS[name][1]}")


def unavailable_reason(name: str) -> str | None:
    """None when the backend loads, else the reason it does not."""
    try:
        load(name)
    except BackendUnavailableError as exc:
        return str(exc)
    return None


def available_backends() -> list[str]:
    """List the backends that can run here, in registry order.

    Returns
    -------
    list of str
        Each name of "naive", "im2col", "numba", "cython" and "auto" whose module imports here. A name left out
        cannot run here; ``fastconv info`` says why.

    Examples
    --------
    >>> import fastconv as fc
    >>> names = fc.available_backends()
    >>> names[:2]
    ['naive', 'im2col']
    """
    return [name for name in BACKENDS if unavailable_reason(name) is None]


def get_backend() -> str:
    """The current default backend: what ``backend=None`` means.

    The innermost ``use_backend`` of this thread or task, else ``set_backend``'s, else ``$FASTCONV_BACKEND``,
    else "auto".

    Returns
    -------
    str
        A backend name (not necessarily available here: running a kernel says so).

    Raises
    ------
    ValueError
        If ``$FASTCONV_BACKEND`` decides and is not a backend name; the message lists the valid names.

    Examples
    --------
    >>> import fastconv as fc
    >>> with fc.use_backend("im2col"):
    ...     fc.get_backend()
    'im2col'
    """
    scoped = _scoped_default.get()
    if scoped is not None:
        return scoped
    if _process_default is not None:
        return _process_default
    env = os.environ.get("FASTCONV_BACKEND")
    return check_name(env, "FASTCONV_BACKEND") if env else DEFAULT_BACKEND


def set_backend(name: str | None) -> None:
    """Set the process-wide default backend, or reset it with None.

    ``use_backend`` still overrides it within its scope.

    Parameters
    ----------
    name : str or None
        A backend name ("naive", "im2col", "numba", "cython" or "auto"). None forgets the name set before, so that
        ``$FASTCONV_BACKEND``, else "auto", is the default again.

    Raises
    ------
    ValueError
        If `name` is neither None nor a backend name; the message lists the valid names. Whether the backend can
        run here is checked when it runs (``BackendUnavailableError``).

    Examples
    --------
    >>> import fastconv as fc
    >>> fc.set_backend("naive")
    >>> fc.get_backend()
    'naive'
    >>> fc.set_backend(None)
    """
    global _process_default
    _process_default = None if name is None else check_name(name, "set_backend")


@contextlib.contextmanager
def use_backend(name: str):
    """Set the default backend within a ``with`` block, per thread and per asyncio task (contextvars).

    Blocks nest; leaving one restores the default that held before it.

    Parameters
    ----------
    name : str
        A backend name ("naive", "im2col", "numba", "cython" or "auto").

    Yields
    ------
    str
        `name`.

    Raises
    ------
    ValueError
        If `name` is not a backend name; the message lists the valid names.

    Examples
    --------
    >>> import numpy as np
    >>> import fastconv as fc
    >>> with fc.use_backend("naive") as name:
    ...     y = fc.avg_pool2d(np.arange(16.0).reshape(1, 1, 4, 4), 2)   # runs on naive
    >>> name, y.shape
    ('naive', (1, 1, 2, 2))
    """
    token = _scoped_default.set(check_name(name, "use_backend"))
    try:
        yield name
    finally:
        _scoped_default.reset(token)


def resolve(backend: str | None) -> ModuleType:
    """The module for an explicit name, or for the current default when backend is None."""
    return load(get_backend() if backend is None else check_name(backend))
