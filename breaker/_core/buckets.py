"""The histogram buckets durations are counted in.

Bucket ``i`` holds durations in ``(BOUNDS[i - 1], BOUNDS[i]]`` seconds (bucket 0 from 0, the last one past
``BOUNDS[-1]``). The bounds are the E24 series plus 2.5 and 5 in every decade from 1 us to 100 s, so
neighbouring bounds differ by at most 16% (1.3 to 1.5), and the Prometheus default buckets are among them.
"""

from __future__ import annotations

import bisect
import math
from math import trunc  # for a positive float, int() but cheaper: a plain function, not a type call
from typing import Final

from .inline import inline

__all__ = ["BOUNDS", "EDGE", "FINE", "FINE_N", "FINE_SCALE", "bucket_of", "duration_bucket", "lower", "upper"]

_E24: Final = (1.0, 1.1, 1.2, 1.3, 1.5, 1.6, 1.8, 2.0, 2.2, 2.4, 2.5, 2.7, 3.0, 3.3, 3.6, 3.9, 4.3, 4.7, 5.0, 5.1, 5.6)
_E24_TAIL: Final = (6.2, 6.8, 7.5, 8.2, 9.1)
#: Upper bounds of the histogram buckets, in seconds (exact decimal floats: 0.005 is the float 0.005).
BOUNDS: Final[tuple[float, ...]] = (
    *(float(f"{m}e{e}") for e in range(-6, 2) for m in (*_E24, *_E24_TAIL)),
    100.0,
)

bucket_of: Final = bisect.bisect_left  # bucket_of(BOUNDS, seconds): the histogram bucket of a duration, by search

#: Durations under ``FINE_N / FINE_SCALE`` seconds (13 ms) find their bucket by table:
#: ``FINE[trunc(d * FINE_SCALE - EDGE)]``. ``FINE[j]`` is the bucket of the durations inside the 0.1 us step
#: ``(j / 1e7, (j + 1) / 1e7)``; bounds from 1 us up are whole steps, so no bound falls inside a step. ``EDGE``
#: (in steps: 1e-16 s) moves a duration on a step's edge, and one the multiplication rounded onto it, into the
#: step below, so a duration exactly on a bound counts in the bucket the bound closes. Placement is exact except
#: within 1e-16 s above a bound (clocks read nanoseconds at best). One index instead of a binary search over
#: float bounds (eight comparisons).
FINE_SCALE: Final = 1e7
FINE_N: Final = 1 << 17
EDGE: Final = 1e-9


def _fine_table() -> tuple[int, ...]:
    return tuple(bisect.bisect_left(BOUNDS, (j + 0.5) / FINE_SCALE) for j in range(FINE_N))


FINE: Final = _fine_table()


@inline
def duration_bucket(seconds: float) -> int:
    """The histogram bucket of a duration of ``seconds`` (a negative one, from a clock that went back, is 0)."""
    fine = trunc(seconds * FINE_SCALE - EDGE)
    try:
        bucket = FINE[fine] if fine >= 0 else 0
    except IndexError:  # 13 ms or more: search the bounds
        bucket = bucket_of(BOUNDS, seconds)
    return bucket


def lower(i: int) -> float:
    """The lower bound of bucket ``i`` (exclusive), in seconds."""
    return BOUNDS[i - 1] if i else 0.0


def upper(i: int) -> float:
    """The upper bound of bucket ``i`` (inclusive), in seconds; ``math.inf`` for the last."""
    return BOUNDS[i] if i < len(BOUNDS) else math.inf
