"""Type and range checks for settings, each error naming the setting and what it accepts."""
from __future__ import annotations

import math
import numbers


def whole(name: str, value, minimum: int | None = None, *, none: bool = False) -> None:
    """``value`` is an integer (not a bool, not a string, not 5.5) >= ``minimum``; or None
    when ``none``. TypeError for the wrong type, ValueError for the wrong range."""
    if value is None and none:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer{'' if minimum is None else f' >= {minimum}'}, "
                        f"got {value!r} ({type(value).__name__})")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value!r}")


def number(name: str, value, *, none: bool = False) -> None:
    """``value`` is a real, finite number (not a bool or a string); or None when ``none``."""
    if value is None and none:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise TypeError(f"{name} must be a finite number, got {value!r} ({type(value).__name__})")


def choice(name: str, value, choices, *, none: bool = False) -> None:
    """``value`` is one of ``choices`` (or None when ``none``)."""
    if value is None and none:
        return
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")
