"""Rolling windows: what happened over the last ``window`` seconds, as differences of counts since creation.

Counts are never moved, replaced or reset. Every event is counted once, on a counter that lives as long as the
circuit (`EventCounts`: success and short-circuit on lock-free `Tally` counters, the other events as plain ints
changed under the engine's lock). A window is a ring of snapshots of those counts, one taken as each of its time
buckets begins (`BucketRing`); its counts are the counts now minus the snapshot at the start of its oldest
bucket. Turning the window over, clearing it, changing its shape, or a thread that counts long after it read the
clock can therefore change which snapshot an event falls after, never whether it is counted: an event counts in
the bucket that is current when it lands, and always since creation.

Every method here runs under the engine's lock; only ``next()`` on the two tallies happens outside it, in
`breaker._core.lockfree`.
"""

from __future__ import annotations

import array
import math
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Final

from .events import (
    FAILURE,
    FALLBACK_FAILURE,
    FALLBACK_SUCCESS,
    N_EVENTS,
    REJECTED,
    SHORT_CIRCUIT,
    SLOW,
    SUCCESS,
    TIMEOUT,
)
from .lockfree import Tally

__all__ = ["BucketRing", "EventCounts", "RollingWindow", "bucket_end"]


def bucket_end(epoch: int, width: float) -> float:
    """The first time that falls in a bucket after ``epoch``: at or after it, ``time // width > epoch``.

    ``(epoch + 1) * width`` can round below the boundary that ``//`` sees; then the next float up is taken, so
    that a time at or after the end always belongs to a later bucket.
    """
    end = (epoch + 1) * width
    while end // width <= epoch:
        end = math.nextafter(end, math.inf)
    return end


def _floor_ratio(numerator: float, denominator: float) -> int:
    """``floor(numerator / denominator)``, treating a quotient within 1e-9 of a whole number as that number."""
    quotient = numerator / denominator
    nearest = round(quotient)
    return nearest if abs(quotient - nearest) < 1e-9 else math.floor(quotient)


#: Counts by slot, only the slots that are not zero.
Sparse = dict[int, int]
_NONE: Final[Mapping[int, int]] = MappingProxyType({})  # no counts: shared, never changed


def _array(counts: Mapping[int, int], size: int) -> array.array[int]:
    compact = array.array("q", bytes(8 * size))
    for slot, n in counts.items():
        compact[slot] = n
    return compact


def _add(into: Sparse, part: Mapping[int, int] | None) -> None:
    if part:
        for slot, n in part.items():
            into[slot] = into.get(slot, 0) + n


class BucketRing:
    """Counts of ``size`` slots over the last ``buckets`` time buckets, kept as what each bucket added.

    The counts themselves live elsewhere, since creation; `advance` is handed a function that reads them all (as
    a mapping of the slots that are not zero).
    Bucket ``e`` covers ``[e * width, (e + 1) * width)``; ``epoch`` is the current one and ``end`` its end.
    The ring keeps the counts as the current bucket began (``_start``, one compact array) and, for each of the
    buckets before it in the window, what that bucket added (a sparse dict, or None for nothing), with their sum
    (``_closed``). Counting at or after ``end`` moves the ring first, so nothing is counted between a bucket's
    end and the moment the ring moves past it: a bucket the ring skips added nothing.
    """

    __slots__ = ("_added", "_closed", "_n", "_size", "_start", "end", "epoch", "width", "window")

    def __init__(self, window: float, buckets: int, now: float, size: int) -> None:
        self.window = window
        self.width = window / buckets
        self._n = buckets
        self._size = size
        self.epoch = int(now // self.width)
        self.end = bucket_end(self.epoch, self.width)
        #: The counts as the current bucket began (None: all zero, as at creation).
        self._start: array.array[int] | None = None
        #: ``_added[e % n]``: what bucket ``e`` added, for the buckets of the window before the current one (None
        #: until the ring first moves).
        self._added: list[Sparse | None] | None = None
        #: The sum of those.
        self._closed: Mapping[int, int] = _NONE

    def __repr__(self) -> str:
        return f"<BucketRing {self.window:g}s/{self._n} epoch={self.epoch}>"

    @property
    def buckets(self) -> int:
        return self._n

    def _since_start(self, now: Mapping[int, int]) -> Sparse:
        """What the current bucket added: ``now`` (every slot not zero) minus the counts as it began."""
        start = self._start
        if start is None:
            return {slot: n for slot, n in now.items() if n}
        return {slot: n - start[slot] for slot, n in now.items() if n != start[slot]}

    def advance(self, now: float, read: Callable[[], Mapping[int, int]]) -> range:
        """Move to the bucket of ``now`` (a clock that went back stays in the current one), reading the counts
        once with ``read()``; returns the epochs that began (empty if none)."""
        epoch = int(now // self.width)
        if epoch <= self.epoch:
            return range(0)
        counts = read()
        n = self._n
        start = self._start
        if start is None:
            start = self._start = array.array("q", bytes(8 * self._size))
        ended: Sparse = {}  # what the bucket that ends added; the start moves on to now, in place
        for slot, count in counts.items():
            begun = start[slot]
            if count != begun:
                ended[slot] = count - begun
                start[slot] = count
        added = self._added
        if added is None or epoch - self.epoch >= n:  # new, or the window moved past every bucket it held
            added = self._added = [None] * n
        if epoch - self.epoch < n:
            added[self.epoch % n] = ended or None
            for e in range(self.epoch + 1, epoch):
                added[e % n] = None  # the buckets skipped added nothing
        began = range(max(self.epoch + 1, epoch - n + 1), epoch + 1)
        self.epoch = epoch
        self.end = bucket_end(epoch, self.width)
        closed: Sparse = {}
        for e in range(epoch - n + 1, epoch):
            _add(closed, added[e % n])
        self._closed = closed or _NONE
        return began

    def over_window(self, now: float, counts: Mapping[int, int]) -> Sparse:
        """The counts over the window ending in ``now``'s bucket, ``counts`` being the counts now (without moving
        anything)."""
        latest = max(int(now // self.width), self.epoch)
        oldest = latest - self._n + 1
        if oldest > self.epoch:
            return {}  # the window began after the current bucket: nothing counted so far is in it
        total = self._since_start(counts)
        if oldest <= self.epoch - self._n + 1:
            _add(total, self._closed)
        elif self._added is not None:
            for e in range(oldest, self.epoch):
                _add(total, self._added[e % self._n])
        return total

    def current(self, slot: int, count: int) -> int:
        """Slot ``slot``'s count over the current window, ``count`` being its count now."""
        start = self._start
        return count - (0 if start is None else start[slot]) + self._closed.get(slot, 0)

    def in_window(self, now: float) -> range:
        """The epochs of the ring that fall in the window ending in ``now``'s bucket."""
        oldest = max(int(now // self.width), self.epoch) - self._n + 1
        return range(max(oldest, self.epoch - self._n + 1), self.epoch + 1)

    def reset(self, counts: Mapping[int, int]) -> None:
        """Forget the window: it holds nothing counted so far."""
        self._start = _array(counts, self._size)
        self._added = None
        self._closed = _NONE

    def regrid(self, window: float, buckets: int, now: float, counts: Mapping[int, int]) -> BucketRing:
        """A ring of another shape over the same history, at ``now`` (after `advance` to it).

        What an old bucket added goes to the new bucket holding the old one's start: its events count as if they
        came at its start, so none stays in the window longer than this ring would have kept it.
        """
        new = BucketRing(window, buckets, now, self._size)
        placed: dict[int, Sparse] = {}
        for e in range(self.epoch - self._n + 1, self.epoch + 1):
            if e == self.epoch:
                part: Sparse | None = self._since_start(counts)
            else:
                part = None if self._added is None else self._added[e % self._n]
            if part:
                target = min(_floor_ratio(e * self.width, new.width), new.epoch)
                if target > new.epoch - new._n:
                    _add(placed.setdefault(target, {}), part)
        current = placed.pop(new.epoch, {})
        start = _array(counts, self._size)
        for slot, n in current.items():
            start[slot] -= n
        new._start = start
        if placed:
            new._added = [None] * new._n
            closed: Sparse = {}
            for e, part in placed.items():
                new._added[e % new._n] = part
                _add(closed, part)
            new._closed = closed
        return new


class EventCounts:
    """How many of each event since the circuit was created: exact and never reset.

    The events the hot paths count lock-free (success, failure, short-circuit, and the fallbacks' outcomes) are
    counted on `Tally` counters; the others (timeout, rejected, bad request, cancelled), always counted under the
    engine's lock, as plain ints.

    Attributes:
        tallies: The lock-free events' counters, by slot (``next()`` counts one); never replaced.
    """

    __slots__ = ("_locked", "tallies")

    #: The events counted on tallies.
    LOCK_FREE: Final = (SUCCESS, FAILURE, SHORT_CIRCUIT, FALLBACK_SUCCESS, FALLBACK_FAILURE)

    def __init__(self) -> None:
        self.tallies: dict[int, Tally] = {slot: Tally() for slot in self.LOCK_FREE}
        #: The other events, by slot, changed under the engine's lock (the tallies' slots stay 0 here).
        self._locked = [0] * N_EVENTS

    def add(self, event: int) -> None:
        """Count one ``event`` (under the engine's lock)."""
        tally = self.tallies.get(event)
        if tally is None:
            self._locked[event] += 1
        else:
            next(tally)

    def read(self) -> dict[int, int]:
        """Every event's count, by slot (the slots that are not zero)."""
        counts = {slot: n for slot, n in enumerate(self._locked) if n}
        for slot, tally in self.tallies.items():
            n = tally.read()
            if n:
                counts[slot] = n
        return counts

    def locked(self, event: int) -> int:
        """The count of an event counted under the engine's lock (one not in `LOCK_FREE`)."""
        return self._locked[event]


class RollingWindow:
    """Event counts over the last ``window`` seconds, in ``buckets`` buckets, and the most tickets held at once.

    Attributes:
        counts: The counts since creation (shared by every shape of the window the circuit takes on).
    """

    __slots__ = ("_peaks", "_ring", "counts")

    def __init__(self, window: float, buckets: int, now: float) -> None:
        self.counts = EventCounts()
        self._ring = BucketRing(window, buckets, now, N_EVENTS)
        #: The most tickets seen held at once, per bucket of the ring (None until first observed).
        self._peaks: list[int] | None = None

    def __repr__(self) -> str:
        return f"<RollingWindow {self._ring.window:g}s/{self._ring.buckets}>"

    @property
    def end(self) -> float:
        """When the current bucket ends: an event at or after it must `advance` first."""
        return self._ring.end

    def advance(self, now: float) -> None:
        """Move to the bucket of ``now``."""
        began = self._ring.advance(now, self.counts.read)
        if began and self._peaks is not None:
            for e in began:
                self._peaks[e % self._ring.buckets] = 0

    def totals(self, now: float) -> list[int]:
        """Every event's count over the window ending in ``now``'s bucket (without moving anything)."""
        totals = self._ring.over_window(now, self.counts.read())
        return [totals.get(slot, 0) for slot in range(N_EVENTS)]

    def cumulative(self) -> list[int]:
        """Every event's count since creation."""
        counts = self.counts.read()
        return [counts.get(slot, 0) for slot in range(N_EVENTS)]

    def errors(self) -> int:
        """failure + timeout + rejected over the current window (reads the failure counter: see `Tally.mark`)."""
        ring, counts = self._ring, self.counts
        failures = ring.current(FAILURE, counts.tallies[FAILURE].read())
        return (
            failures + ring.current(TIMEOUT, counts.locked(TIMEOUT)) + ring.current(REJECTED, counts.locked(REJECTED))
        )

    def successes(self) -> int:
        """Successes over the current window."""
        return self._ring.current(SUCCESS, self.counts.tallies[SUCCESS].read())

    def slow(self) -> int:
        """Slow calls over the current window (counted under the engine's lock)."""
        return self._ring.current(SLOW, self.counts.locked(SLOW))

    def clear(self) -> None:
        """Forget the window (the circuit closed after a good probe); the counts since creation stay."""
        self._ring.reset(self.counts.read())
        self._peaks = None

    def observe(self, active: int, now: float) -> None:
        """Note that ``active`` tickets were held at ``now`` (in the current bucket; this never moves the ring, so
        that a query cannot change when health is next evaluated)."""
        if now >= self._ring.end:
            return
        if self._peaks is None:
            self._peaks = [0] * self._ring.buckets
        i = self._ring.epoch % self._ring.buckets
        self._peaks[i] = max(self._peaks[i], active)

    def peak(self, now: float) -> int:
        """The most tickets seen held at once over the window ending in ``now``'s bucket."""
        peaks = self._peaks
        if peaks is None:
            return 0
        return max((peaks[e % self._ring.buckets] for e in self._ring.in_window(now)), default=0)

    def reshaped(self, window: float, buckets: int, now: float) -> RollingWindow:
        """This window in another shape, over the same counts (see `BucketRing.regrid`)."""
        self.advance(now)
        new = RollingWindow.__new__(RollingWindow)
        new.counts = self.counts
        new._ring = self._ring.regrid(window, buckets, now, self.counts.read())
        new._peaks = None
        peak = self.peak(now)
        if peak:
            new.observe(peak, now)
        return new
