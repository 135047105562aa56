"""Latency: fixed-bucket histograms over a rolling window of time buckets, and since creation.

A duration is counted in the histogram bucket `bucket_of` gives it: bucket ``i`` holds durations in
``(BOUNDS[i - 1], BOUNDS[i]]`` seconds (bucket 0 from 0, the last one past ``BOUNDS[-1]``). The bounds are the
E24 series plus 2.5 and 5 in every decade from 1 us to 100 s, so neighbouring bounds differ by at most 16% (1.3 to
1.5) and the Prometheus default buckets are among them. Memory is one `itertools.count` per bucket in use per time
bucket: it depends on how spread the durations are, never on how many calls there are.

Counting is lock-free, as for the event counters (`_rolling`): a time bucket's histogram is a dict of
`itertools.count` objects, created on first use with ``dict.setdefault`` (atomic) and bumped with ``next()``
(atomic). Each time bucket keeps three histograms, so that the common case counts once:

- ``both``: calls whose run took as long as the whole call (no fallback ran; in thread isolation the hand-off to
  the worker and back, some microseconds, is left out, as hystrix-go leaves it out);
- ``run``: run durations of the other calls (a fallback ran, or a `go()` future);
- ``total``: the whole duration of those calls, fallback included.

Execution latency is ``both + run``; total latency is ``both + total``. Calls that never ran (short-circuited or
rejected) have no latency.
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import itertools
import math
from collections.abc import Iterable, Mapping
from math import trunc  # for a positive float, int() but cheaper: a plain function, not a type call
from types import MappingProxyType
from typing import Any, Final, Protocol

#: Time buckets that left the window and are still watched for late counts. The drivers look a bucket's counters
#: up with no call before counting (see `record_both`), so a thread cannot be switched out between the two; the
#: watch is a margin for what that reasoning may miss.
LEAVING: Final = 4

__all__ = ["BOUNDS", "PERCENTILES", "Histogram", "LatencyStatistics", "LatencyWindow", "bucket_of"]

_E24: Final = (1.0, 1.1, 1.2, 1.3, 1.5, 1.6, 1.8, 2.0, 2.2, 2.4, 2.5, 2.7, 3.0, 3.3, 3.6, 3.9, 4.3, 4.7, 5.0, 5.1, 5.6)
_E24_TAIL: Final = (6.2, 6.8, 7.5, 8.2, 9.1)
#: Upper bounds of the histogram buckets, in seconds (exact decimal floats: 0.005 is the float 0.005).
BOUNDS: Final[tuple[float, ...]] = (
    *(float(f"{m}e{e}") for e in range(-6, 2) for m in (*_E24, *_E24_TAIL)),
    100.0,
)
#: The percentiles reported, as Hystrix does.
PERCENTILES: Final = (0.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 100.0)

bucket_of: Final = bisect.bisect_left  # bucket_of(BOUNDS, seconds): the histogram bucket of a duration

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
assert len(FINE) == FINE_N

Counts = dict[int, "itertools.count[int]"]


def _lower(i: int) -> float:
    return BOUNDS[i - 1] if i else 0.0


def _upper(i: int) -> float:
    return BOUNDS[i] if i < len(BOUNDS) else math.inf


def _middle(i: int) -> float:
    upper = _upper(i)
    return _lower(i) if upper == math.inf else (_lower(i) + upper) / 2


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
                lower, upper = _lower(i), _upper(i)
                if upper == math.inf:
                    values[p] = lower
                else:
                    values[p] = lower + (upper - lower) * max(0.0, target - seen) / n
                break
            seen += n
    return LatencyStatistics(total, mean, MappingProxyType(values))


def histogram(counts: Mapping[int, int]) -> Histogram:
    items = sorted((i, n) for i, n in counts.items() if n > 0)
    return Histogram(
        buckets=tuple((_upper(i), n) for i, n in items),
        count=sum(n for _, n in items),
        sum=sum(_middle(i) * n for i, n in items),
    )


class _Slot:
    """One time bucket's three histograms, and how often each counter was read (a read bumps it once)."""

    __slots__ = ("both", "epoch", "fast", "folded", "reads", "run", "total")

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        self.both: Counts = {}
        #: ``both``'s counters by bucket index (None until first used): a list index is cheaper than a dict lookup
        #: on the hot path. ``both`` stays the record; this only caches its values (see `both_counter`).
        self.fast: list[itertools.count[int] | None] = [None] * (len(BOUNDS) + 1)
        self.run: Counts = {}
        self.total: Counts = {}
        self.reads: tuple[dict[int, int], dict[int, int], dict[int, int]] = ({}, {}, {})
        #: What `LatencyWindow._retire` has folded so far, to add only what came since.
        self.folded: tuple[dict[int, int], dict[int, int], dict[int, int]] = ({}, {}, {})

    def read(self) -> tuple[dict[int, int], dict[int, int], dict[int, int]]:
        """The counts of ``both``, ``run`` and ``total`` so far. Call under the owning circuit's lock."""
        out = []
        for counts, reads in zip((self.both, self.run, self.total), self.reads, strict=True):
            values = {}
            for i, counter in list(counts.items()):  # a copy: a writer may add a bucket meanwhile
                done = reads.get(i, 0)
                values[i] = next(counter) - done
                reads[i] = done + 1
            out.append(values)
        return out[0], out[1], out[2]


class LatencyWindow:
    """Latency histograms over the last ``window`` seconds (``buckets`` time buckets), and since creation.

    Every method must be called under the owning circuit's lock; the hot paths only bump counters in the dicts
    ``both``, ``run`` and ``total`` (the current time bucket's), lock-free.
    """

    __slots__ = (
        "_leaving",
        "_n",
        "_retired",
        "_slots",
        "both",
        "end",
        "fast",
        "kinds",
        "run",
        "total",
        "width",
        "window",
    )

    def __init__(self, window: float, buckets: int, now: float) -> None:
        self.window = window
        self.width = window / buckets
        self._n = buckets
        self._slots: list[_Slot | None] = [None] * buckets
        #: Counts of time buckets that left the window: (both, run, total), for the since-creation histograms.
        self._retired: tuple[dict[int, int], dict[int, int], dict[int, int]] = ({}, {}, {})
        #: Time buckets that left the ring, still watched for late counts (a thread that looked up a histogram
        #: just before its bucket left); the oldest are dropped past `LEAVING`.
        self._leaving: collections.deque[_Slot] = collections.deque()
        self._start(int(now // self.width))

    def __repr__(self) -> str:
        return f"<LatencyWindow window={self.window:g}s buckets={self._n}>"

    def _start(self, epoch: int) -> None:
        slot = _Slot(epoch)
        old = self._slots[epoch % self._n]
        if old is not None:
            self._retire(old)
        self._slots[epoch % self._n] = slot
        self.both, self.run, self.total, self.fast = slot.both, slot.run, slot.total, slot.fast
        self.kinds = (slot.both, slot.run, slot.total)  # by `BOTH`, `RUN`, `TOTAL`: looked up with no call
        self.end = (epoch + 1) * self.width

    def _retire(self, slot: _Slot, *, watch: bool = True) -> None:
        """Fold what ``slot`` counted since it was last folded into the since-creation counts."""
        for into, counts, folded in zip(self._retired, slot.read(), slot.folded, strict=True):
            for i, n in counts.items():
                into[i] = into.get(i, 0) + n - folded.get(i, 0)
                folded[i] = n
        if watch:
            slot.fast = []  # only a straggler still holding the list writes to it (its counters are in the dicts)
            self._leaving.append(slot)
            while len(self._leaving) > LEAVING:
                self._retire(self._leaving.popleft(), watch=False)

    def advance(self, now: float) -> None:
        """Start the time bucket of ``now`` if it is past the current one."""
        if now >= self.end:
            epoch = int(now // self.width)
            if epoch * self.width > now:  # float rounding: stay in the current bucket
                self.end = now + self.width
                return
            self._start(epoch)

    def retire_all(self) -> tuple[dict[int, int], dict[int, int], dict[int, int]]:
        """Fold every time bucket into the since-creation counts (before this window is replaced)."""
        for k, slot in enumerate(self._slots):
            if slot is not None:
                self._retire(slot)
                self._slots[k] = None
        return self._retired

    def snapshot(self, now: float) -> tuple[LatencyStatistics, LatencyStatistics, Histogram, Histogram]:
        """Execution and total latency over the window at ``now``, and the run and total histograms since
        creation."""
        for leaving in self._leaving:  # their late counts
            self._retire(leaving, watch=False)
        oldest = int(now // self.width) - self._n + 1
        window: list[tuple[dict[int, int], dict[int, int], dict[int, int]]] = []
        held = []
        for slot in self._slots:
            if slot is None:
                continue
            counts = slot.read()
            held.append(counts)
            if slot.epoch >= oldest:
                window.append(counts)
        both = merge(c[0] for c in window)
        execute = latency_statistics(merge((both, *(c[1] for c in window))))
        total = latency_statistics(merge((both, *(c[2] for c in window))))
        every_both = merge((self._retired[0], *(c[0] for c in held)))
        run_since = histogram(merge((every_both, self._retired[1], *(c[1] for c in held))))
        total_since = histogram(merge((every_both, self._retired[2], *(c[2] for c in held))))
        return execute, total, run_since, total_since

    def resized(self, window: float, buckets: int, now: float) -> LatencyWindow:
        """A window of the new geometry: it starts empty, and keeps the since-creation counts."""
        new = LatencyWindow(window, buckets, now)
        for into, counts in zip(new._retired, self.retire_all(), strict=True):
            into.update(counts)
        new._leaving = self._leaving  # watched from the new window now: their late counts are its
        return new


# The drivers count through the functions below, and inline the same steps on their hot paths. CPython switches
# threads only at a call (as it returns) or a backward jump: so a histogram is looked up with no call between the
# lookup and the count (a subscript, then ``next`` counts inside its own call), and a lookup followed by a call
# (creating a counter) is made again after it. A histogram looked up before a call could otherwise be many time
# buckets stale when the count lands, past the watch of `LEAVING` (7 durations in 390,000 were lost so on a loaded
# machine, under a stress test whose window turns every 10 ms).


class Owner(Protocol):
    """A circuit, as far as these functions know it (its rolling counters hold its `LatencyWindow`)."""

    _rolling: Any


BOTH, RUN, TOTAL = 0, 1, 2


def _count(circuit: Owner, kind: int, seconds: float) -> None:
    i = trunc(seconds * FINE_SCALE - EDGE)
    i = FINE[i] if 0 <= i < FINE_N else bucket_of(BOUNDS, seconds)
    while True:
        counts: Counts = circuit._rolling.latency.kinds[kind]
        try:
            next(counts[i])  # the lookup above, a subscript, then the count: no call in between
        except KeyError:
            counts.setdefault(i, itertools.count())  # calls: a switch may follow, so look up again
        else:
            return


def record_both(circuit: Owner, seconds: float) -> None:
    """Count one duration as the run's and the call's, in the circuit's current time bucket (lock-free)."""
    _count(circuit, BOTH, seconds)


def record_run(circuit: Owner, seconds: float) -> None:
    """Count one run duration in the circuit's current time bucket (lock-free)."""
    _count(circuit, RUN, seconds)


def record_total(circuit: Owner, seconds: float) -> None:
    """Count one call duration in the circuit's current time bucket (lock-free)."""
    _count(circuit, TOTAL, seconds)


def both_counter(circuit: Owner, i: int) -> itertools.count[int]:
    """The circuit's current ``both`` counter of bucket ``i``, created if need be (on a miss of the hot path's
    list): current when this returns, with no call before the caller's ``next`` (see above)."""
    while True:
        latency = circuit._rolling.latency
        counts, fast = latency.both, latency.fast  # one time bucket's dict and list, read together
        counter: itertools.count[int] = counts.setdefault(i, itertools.count())
        fast[i] = counter
        if circuit._rolling.latency.both is counts:  # still the current bucket, and no call since this check
            return counter
