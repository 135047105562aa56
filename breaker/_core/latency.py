"""Latency: histograms of run and call durations since creation, and over a rolling window.

A duration is counted in a fixed histogram bucket (`breaker._core.buckets`), on a `Tally` that is added to its
histogram on first use and never replaced, so memory depends on how spread the durations are, never on how many
calls there are, and a count is never lost (the rule of `breaker._core.lockfree`). The window is a
`BucketRing` of snapshots of the histograms (`breaker._core.rolling`): its durations are the histograms now minus
their snapshot as its oldest bucket began.

Three histograms, so that the common case counts once:

- ``both``: calls whose run took as long as the whole call (no fallback ran; in thread isolation the hand-off to
  the worker and back, some microseconds, is left out, as hystrix-go leaves it out);
- ``run``: run durations of the other calls (a fallback ran, or a `go()` future);
- ``total``: the whole duration of those calls, fallback included.

Execution latency is ``both + run``; total latency is ``both + total``. Calls that never ran (short-circuited or
rejected) have no latency. Every method runs under the engine's lock; the hot paths count in the three histograms
lock-free (`breaker._core.lockfree.count_duration`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Final

from .buckets import BOUNDS, lower, upper
from .lockfree import Histogram as Counters
from .lockfree import count_duration
from .rolling import BucketRing

__all__ = ["BOUNDS", "PERCENTILES", "Histogram", "Latency", "LatencyStatistics"]

#: The percentiles reported, as Hystrix does.
PERCENTILES: Final = (0.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 100.0)

#: BOTH, RUN, TOTAL: which histogram a duration goes to (see the module docstring).
BOTH: Final = 0
RUN: Final = 1
TOTAL: Final = 2


def _middle(i: int) -> float:
    top = upper(i)
    return lower(i) if top == math.inf else (lower(i) + top) / 2


@dataclasses.dataclass(frozen=True, slots=True)
class LatencyStatistics:
    """Latency percentiles over the latency window, in seconds.

    Percentiles and the mean are read from histogram buckets, interpolating linearly within a bucket: each is
    within that bucket's width of the exact figure (neighbouring bounds differ by at most 16%).

    Attributes:
        count: Durations counted in the window.
        mean: Their mean (0.0 with none).
        percentiles: Each of `PERCENTILES` (0, 25, 50, 75, 90, 95, 99, 99.5, 100) mapped to seconds (0.0 with
            none). Index with an int or a float: ``percentiles[99]``.
    """

    count: int
    mean: float
    percentiles: Mapping[float, float]

    def __repr__(self) -> str:
        p = self.percentiles
        return f"LatencyStatistics(count={self.count}, mean={self.mean:.6f}, p50={p[50]:.6f}, p99={p[99]:.6f})"


@dataclasses.dataclass(frozen=True, slots=True)
class Histogram:
    """Durations counted since the circuit was created, by bucket (for Prometheus).

    Attributes:
        buckets: ``(upper bound in seconds, count)`` for every bucket that holds a duration, in order; the last
            bucket's bound can be ``math.inf``. Not cumulative.
        count: Durations counted.
        sum: Their sum in seconds, estimated from bucket midpoints (within 8% of the exact sum).
    """

    buckets: tuple[tuple[float, int], ...]
    count: int
    sum: float

    def count_at_most(self, seconds: float) -> int:
        """How many durations were at most ``seconds`` (exact when ``seconds`` is one of `BOUNDS`)."""
        return sum(count for upper, count in self.buckets if upper <= seconds)


EMPTY_LATENCY: Final = LatencyStatistics(0, 0.0, MappingProxyType(dict.fromkeys(PERCENTILES, 0.0)))


def merge(parts: Iterable[Mapping[int, int]]) -> dict[int, int]:
    merged: dict[int, int] = {}
    for part in parts:
        for i, n in part.items():
            if n:
                merged[i] = merged.get(i, 0) + n
    return merged


def latency_statistics(counts: Mapping[int, int]) -> LatencyStatistics:
    """Percentiles and mean of the durations in ``counts`` (bucket index -> count)."""
    items = sorted((i, n) for i, n in counts.items() if n > 0)
    total = sum(n for _, n in items)
    if not total:
        return EMPTY_LATENCY
    mean = sum(_middle(i) * n for i, n in items) / total
    values: dict[float, float] = {}
    for p in PERCENTILES:
        target = p / 100 * total
        seen = 0
        for i, n in items:
            if seen + n >= target:
                bottom, top = lower(i), upper(i)
                if top == math.inf:
                    values[p] = bottom
                else:
                    values[p] = bottom + (top - bottom) * max(0.0, target - seen) / n
                break
            seen += n
    return LatencyStatistics(total, mean, MappingProxyType(values))


def histogram(counts: Mapping[int, int]) -> Histogram:
    items = sorted((i, n) for i, n in counts.items() if n > 0)
    return Histogram(
        buckets=tuple((upper(i), n) for i, n in items),
        count=sum(n for _, n in items),
        sum=sum(_middle(i) * n for i, n in items),
    )


#: Histogram slots: ``kind * SLOTS + bucket`` for kind `BOTH`, `RUN`, `TOTAL` (the window counts all three).
SLOTS: Final = len(BOUNDS) + 1


class Latency:
    """The duration histograms of one circuit, since creation and over the latency window.

    Attributes:
        both, run, total: The histograms since creation (see the module docstring); ``both`` is counted lock-free
            by the hot path.
    """

    __slots__ = ("_ring", "both", "run", "total")

    def __init__(self, window: float, buckets: int, now: float) -> None:
        # Counted lock-free by the hot paths (or under the engine's lock), on counters never replaced.
        self.both: Counters = {}
        self.run: Counters = {}
        self.total: Counters = {}
        self._ring = BucketRing(window, buckets, now, 3 * SLOTS)

    def __repr__(self) -> str:
        return f"<Latency {self._ring.window:g}s/{self._ring.buckets}>"

    @property
    def end(self) -> float:
        """When the current time bucket ends: a duration counted at or after it must `advance` first."""
        return self._ring.end

    def count(self, kind: int, seconds: float) -> None:
        """Count one duration of ``seconds`` in histogram ``kind`` (`BOTH`, `RUN` or `TOTAL`)."""
        count_duration((self.both, self.run, self.total)[kind], seconds)

    def _read(self) -> dict[int, int]:
        """Every histogram's counts, by slot (the slots that are not zero)."""
        counts: dict[int, int] = {}
        for kind, histogram in enumerate((self.both, self.run, self.total)):
            offset = kind * SLOTS
            for bucket, tally in list(histogram.items()):  # a copy first: a counter may be added meanwhile
                counts[offset + bucket] = tally.read()
        return counts

    def advance(self, now: float) -> None:
        """Move the window to the time bucket of ``now``."""
        self._ring.advance(now, self._read)

    def snapshot(self, now: float) -> tuple[LatencyStatistics, LatencyStatistics, Histogram, Histogram]:
        """Run and call latency over the window ending in ``now``'s bucket, and the run and call histograms since
        creation."""
        counts = self._read()
        window = _split(self._ring.over_window(now, counts))
        since = _split(counts)
        return (
            latency_statistics(merge((window[BOTH], window[RUN]))),
            latency_statistics(merge((window[BOTH], window[TOTAL]))),
            histogram(merge((since[BOTH], since[RUN]))),
            histogram(merge((since[BOTH], since[TOTAL]))),
        )

    def reshaped(self, window: float, buckets: int, now: float) -> Latency:
        """These histograms over a window of another shape (see `BucketRing.regrid`)."""
        self.advance(now)
        new = Latency.__new__(Latency)
        new.both, new.run, new.total = self.both, self.run, self.total
        new._ring = self._ring.regrid(window, buckets, now, self._read())
        return new


def _split(counts: Mapping[int, int]) -> tuple[dict[int, int], dict[int, int], dict[int, int]]:
    """Slot counts as three histograms (bucket -> count): BOTH, RUN, TOTAL."""
    kinds: tuple[dict[int, int], dict[int, int], dict[int, int]] = ({}, {}, {})
    for slot, n in counts.items():
        kinds[slot // SLOTS][slot % SLOTS] = n
    return kinds
