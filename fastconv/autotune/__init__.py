"""Autotuning for the "auto" backend: measure candidate kernels once per key, remember the fastest.

Measuring is on unless ``set_autotune(False)`` was called or ``$FASTCONV_AUTOTUNE`` is ``0`` (the API call wins
over the environment). With measuring off, auto uses its heuristic choice.
"""

from __future__ import annotations

import os

_enabled: bool | None = None  # None: follow $FASTCONV_AUTOTUNE


def set_autotune(enabled: bool | None) -> None:
    """Turn auto's measuring on or off for this process; None goes back to $FASTCONV_AUTOTUNE (default on)."""
    global _enabled
    if enabled is not None and not isinstance(enabled, bool):
        raise TypeError(f"set_autotune: enabled must be True, False or None, got {enabled!r}")
    _enabled = enabled


#: the values $FASTCONV_AUTOTUNE may take (case and surrounding spaces aside); unset means on
ENV_VALUES = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False,
              "off": False}


def autotune_enabled() -> bool:
    """Whether auto measures candidates (True) or takes its heuristic choice (False).

    Raises ValueError naming the variable when $FASTCONV_AUTOTUNE (read only when set_autotune left it to the
    environment) is not one of ENV_VALUES.
    """
    if _enabled is not None:
        return _enabled
    value = os.environ.get("FASTCONV_AUTOTUNE", "1")
    parsed = _parsed.get(value)  # auto asks on every call
    if parsed is None:
        try:
            parsed = _parsed[value] = ENV_VALUES[value.strip().lower()]
        except KeyError:
            raise ValueError(f"FASTCONV_AUTOTUNE={value!r} is not one of {', '.join(ENV_VALUES)}") from None
    return parsed


#: $FASTCONV_AUTOTUNE's values seen, parsed
_parsed: dict[str, bool] = {}
