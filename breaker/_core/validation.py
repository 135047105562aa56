"""Checks of the arguments applications take (intervals, sizes): a clear error naming the argument, or its value.

`breaker._core.settings` checks `CommandConfig`'s fields itself; these are for the options of the stream, the
dashboard, fleet mode and the exporters.
"""

from __future__ import annotations

import math
from datetime import timedelta

__all__ = ["positive_int", "seconds"]


def seconds(field: str, value: object) -> float:
    """``value`` as a positive, finite number of seconds (a float, an int or a timedelta).

    Raises:
        TypeError: It is not a number of seconds (a bool is not).
        ValueError: It is not positive and finite.
    """
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{field} must be seconds as a float or a timedelta, got {type(value).__name__} {value!r}")
    if not 0 < value < math.inf:
        raise ValueError(f"{field} must be a positive, finite number of seconds, got {value!r}")
    return float(value)


def positive_int(field: str, value: object) -> int:
    """``value`` as an int of at least 1.

    Raises:
        TypeError: It is not an int (a bool is not).
        ValueError: It is below 1.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{field} must be an int, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{field} must be at least 1, got {value!r}")
    return value
