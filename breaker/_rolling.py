"""Rolling event counters: counts per event over the last ``window`` seconds, in a ring of buckets.

The three events of the hot paths, success, failure and short-circuit, are counted without a lock: each bucket
counts them on `itertools.count` objects, whose ``next()`` is one atomic C call. Reading such a counter is
``next()`` again, minus the reads made before (`_read`), so reads are exact too; they happen only under the
circuit's lock. Every other event is counted under the circuit's lock in plain lists.
Running totals over the window are kept up to date as buckets expire, so the health check never sums the ring.
Counts since creation cost nothing per call: a bucket's counts join ``_retired`` when it is reset. A thread may
still bump a counter it looked up just before the reset (it is between two bytecodes): the counters that left
the ring stay on a short list (`LEAVING` of them) whose late counts are drained into ``_retired`` too.

The counter also carries the circuit's `LatencyWindow`, whose time buckets turn over as the ring advances, so
that the hot path needs no clock check of its own: it counts durations in ``lat``.
"""

from __future__ import annotations

import collections
import itertools

from ._events import FAILURE, N_EVENTS, REJECTED, SHORT_CIRCUIT, SUCCESS, TIMEOUT
from ._latency import LatencyWindow

__all__ = ["RollingCounter"]

_ERRORS = (FAILURE, TIMEOUT, REJECTED)
#: The slots counted lock-free, on itertools.count objects.
LOCK_FREE = (SUCCESS, FAILURE, SHORT_CIRCUIT)
#: How many counters that left the ring are still watched for late counts: far more than any straggler needs
#: (one between two bytecodes when its counter is replaced), while bounded.
LEAVING = 32


class _Leaving:
    """A counter that left the ring, and the raw value it reads next if nothing more was counted on it."""

    __slots__ = ("counter", "expected", "slot")

    def __init__(self, counter: itertools.count[int], expected: int, slot: int) -> None:
        self.counter = counter
        self.expected = expected
        self.slot = slot


class RollingCounter:
    """Counts per event slot over a rolling window of ``buckets`` buckets of ``window / buckets`` seconds.

    The window covers the current bucket and the ``buckets - 1`` before it. Every method must be called under
    the owning circuit's lock; only ``next(counter.success)`` and ``next(counter.short)`` are not.

    Attributes:
        success, failure, short: The current bucket's success, failure and short-circuit counters: ``next()`` on
            one counts an event, lock-free, while ``now < end``. ``next(failure)`` also returns an upper bound on
            the failures counted in this bucket before it (it is their number plus the reads made so far).
        current: The current bucket's other counts (index by event slot).
        end: When the current bucket ends: an event at or after it must `add` (which advances the ring).
        totals: The counts over the window as of the current bucket, except the lock-free slots, which hold only
            the buckets before the current one (see `lock_free_total`).
        errors: failure + timeout + rejected over the window, except the current bucket's failures (see
            `error_total`).
        latency: The circuit's latency window; it turns over with this ring (`advance`).
        lat: ``latency.fast``, the histogram the hot paths count durations in: ``next(lat[i] or
            both_counter(circuit, i))`` counts one in bucket ``i`` (see `_latency.record_both`).
    """

    __slots__ = (
        "_counts",
        "_epoch",
        "_leaving",
        "_n",
        "_reads",
        "_retired",
        "_tallies",
        "current",
        "end",
        "errors",
        "failure",
        "lat",
        "latency",
        "peaks",
        "short",
        "success",
        "totals",
        "width",
        "window",
    )

    def __init__(self, window: float, buckets: int, now: float, latency: LatencyWindow | None = None) -> None:
        self.window = window
        self.width = window / buckets
        self._n = buckets
        self._counts = [[0] * N_EVENTS for _ in range(buckets)]
        # _tallies[slot][i]: bucket i's counter for a lock-free slot; _reads[slot][i]: how often it was read.
        self._tallies: dict[int, list[itertools.count[int]]] = {
            slot: [itertools.count() for _ in range(buckets)] for slot in LOCK_FREE
        }
        self._reads: dict[int, list[int]] = {slot: [0] * buckets for slot in LOCK_FREE}
        self.totals = [0] * N_EVENTS
        self.errors = 0
        #: The most tickets seen held at once, per bucket (`observe`).
        self.peaks = [0] * buckets
        #: Counts of buckets that were reset: with the ring's, the counts since creation.
        self._retired = [0] * N_EVENTS
        #: Counters that left the ring, watched for late counts (`_drain`).
        self._leaving: collections.deque[_Leaving] = collections.deque()
        self.latency = latency = LatencyWindow(60.0, 6, now) if latency is None else latency
        self.lat = latency.fast
        self._set_epoch(int(now // self.width))

    def __repr__(self) -> str:
        return f"<RollingCounter window={self.window:g}s buckets={self._n} errors={self.errors}>"

    def _set_epoch(self, epoch: int) -> None:
        self._epoch = epoch
        i = epoch % self._n
        self.current = self._counts[i]
        self.success = self._tallies[SUCCESS][i]
        self.failure = self._tallies[FAILURE][i]
        self.short = self._tallies[SHORT_CIRCUIT][i]
        self.end = (epoch + 1) * self.width

    def _read(self, slot: int, i: int) -> int:
        """The events of lock-free ``slot`` counted in bucket ``i`` so far (each read bumps the counter once)."""
        reads = self._reads[slot]
        value = next(self._tallies[slot][i]) - reads[i]
        reads[i] += 1
        return value

    def _leave(self, slot: int, i: int, *, trim: bool = True) -> int:
        """Bucket ``i``'s counter of lock-free ``slot`` leaves the ring: its count, and it is watched for late ones."""
        raw = next(self._tallies[slot][i])
        self._leaving.append(_Leaving(self._tallies[slot][i], raw + 1, slot))
        while trim and len(self._leaving) > LEAVING:
            self._drain(self._leaving.popleft())
        return raw - self._reads[slot][i]

    def _drain(self, entry: _Leaving) -> None:
        """Add the late counts of a counter that left the ring to ``_retired``."""
        raw = next(entry.counter)
        self._retired[entry.slot] += raw - entry.expected
        entry.expected = raw + 1  # this read's own bump

    def _reset(self, i: int) -> None:
        retired, counts = self._retired, self._counts[i]
        for slot in range(N_EVENTS):
            retired[slot] += self._leave(slot, i) if slot in LOCK_FREE else counts[slot]
        counts[:] = [0] * N_EVENTS  # in place: `current` may point at it
        self.peaks[i] = 0
        for slot in LOCK_FREE:
            self._tallies[slot][i] = itertools.count()
            self._reads[slot][i] = 0

    def lock_free_total(self, slot: int) -> int:
        """The window's count of a lock-free slot (success or short-circuit)."""
        return self.totals[slot] + self._read(slot, self._epoch % self._n)

    def error_total(self) -> int:
        """failure + timeout + rejected over the window."""
        return self.errors + self._read(FAILURE, self._epoch % self._n)

    def successes(self) -> int:
        """Successes over the window."""
        return self.totals[SUCCESS] + self._read(SUCCESS, self._epoch % self._n)

    def add(self, slot: int, now: float) -> None:
        """Count one event at ``now`` (a clock that went back counts in the current bucket)."""
        if now >= self.end:
            self.advance(now)
        if slot == SUCCESS:
            next(self.success)
        elif slot == FAILURE:
            next(self.failure)
        elif slot == SHORT_CIRCUIT:
            next(self.short)
        else:
            self.current[slot] += 1
            self.totals[slot] += 1
            if slot in _ERRORS:
                self.errors += 1

    def observe(self, active: int, now: float) -> None:
        """Note that ``active`` tickets were held at ``now`` (in the current bucket: this never advances the ring,
        which only counting does, so that a query cannot change when health is next evaluated)."""
        if now >= self.end:
            return
        i = self._epoch % self._n
        self.peaks[i] = max(self.peaks[i], active)

    def peak_at(self, now: float) -> int:
        """The most tickets seen held at once over the window at ``now``."""
        oldest = int(now // self.width) - self._n + 1
        return max(
            (self.peaks[e % self._n] for e in range(max(oldest, self._epoch - self._n + 1), self._epoch + 1)),
            default=0,
        )

    def use_latency(self, latency: LatencyWindow) -> None:
        """Count durations in ``latency`` from now on."""
        self.latency = latency
        self.lat = latency.fast

    def cumulative(self) -> list[int]:
        """The counts since creation: the reset buckets' and every bucket still in the ring."""
        for entry in self._leaving:
            self._drain(entry)
        totals = list(self._retired)
        for i, counts in enumerate(self._counts):
            for slot in range(N_EVENTS):
                totals[slot] += self._read(slot, i) if slot in LOCK_FREE else counts[slot]
        return totals

    def advance(self, now: float) -> None:
        """Move the ring to the bucket of ``now``, dropping the buckets that leave the window."""
        latency = self.latency
        if now >= latency.end:
            latency.advance(now)
            self.lat = latency.fast
        epoch = int(now // self.width)
        if epoch <= self._epoch:
            self.end = (self._epoch + 1) * self.width  # float rounding put ``now`` on the boundary
            return
        totals = self.totals
        n = self._n
        if epoch - self._epoch >= n:
            for i in range(n):
                self._reset(i)
            totals[:] = [0] * N_EVENTS
        else:
            # The outgoing bucket's lock-free counts join the running totals. (An event counted on its counter
            # after this still shows in statistics, which read every counter, but not in the health totals: it
            # would take a thread stalled between two bytecodes across a bucket boundary.)
            current = self._epoch % n
            for slot in LOCK_FREE:
                folded = self._read(slot, current)
                self._counts[current][slot] = folded
                totals[slot] += folded
            for e in range(self._epoch + 1, epoch + 1):
                i = e % n  # held epoch e - n (or older): now out of the window
                for slot, count in enumerate(self._counts[i]):
                    totals[slot] -= count
                self._reset(i)
        self.errors = totals[FAILURE] + totals[TIMEOUT] + totals[REJECTED]
        self._set_epoch(epoch)

    def totals_at(self, now: float) -> list[int]:
        """The window's exact sums as they will be at ``now``, without advancing anything."""
        epoch = int(now // self.width)
        totals = [0] * N_EVENTS
        for k in range(self._n):
            e = self._epoch - k
            if e > epoch - self._n:
                i = e % self._n
                for slot, count in enumerate(self._counts[i]):
                    if slot not in LOCK_FREE:
                        totals[slot] += count
                for slot in LOCK_FREE:
                    totals[slot] += self._read(slot, i)
        return totals

    def clear(self) -> None:
        """Forget everything (the circuit closed after a good probe)."""
        for i in range(self._n):
            self._reset(i)
        self.totals[:] = [0] * N_EVENTS
        self.errors = 0
        self._set_epoch(self._epoch)

    def resized(self, window: float, buckets: int, now: float) -> RollingCounter:
        """A counter of the new geometry holding the counts of this one that fall in its window."""
        new = RollingCounter(window, buckets, now, self.latency)
        self.advance(now)
        for entry in self._leaving:
            self._drain(entry)
        retired = new._retired = list(self._retired)  # plus every bucket below; the moved counts come off again
        moved = [[0] * N_EVENTS for _ in range(new._n)]
        for k in range(self._n):
            e = self._epoch - k
            i = e % self._n
            bucket = list(self._counts[i])
            for slot in LOCK_FREE:
                bucket[slot] = self._leave(slot, i, trim=False)  # a straggler's late count reaches the new one
            for slot in range(N_EVENTS):
                retired[slot] += bucket[slot]  # the same reads as moved: a count between two reads is not lost
            # The bucket's events happened somewhere in [e * width, (e + 1) * width); placing them at its start
            # keeps them in the window no longer than the old geometry would have.
            new_epoch = min(int((e * self.width) // new.width), new._epoch)
            if any(bucket) and new_epoch > new._epoch - new._n:
                target = moved[new_epoch % new._n]
                for slot in range(N_EVENTS):
                    target[slot] += bucket[slot]
        current = new._epoch % new._n
        for j, bucket in enumerate(moved):
            for slot in range(N_EVENTS):
                new._retired[slot] -= bucket[slot]  # counted in the new ring (by `cumulative`): not retired
            for slot in LOCK_FREE:
                new._tallies[slot][j] = itertools.count(bucket[slot])
                if j == current:
                    bucket[slot] = 0  # the current bucket's lock-free counts live on its counters only
            new._counts[j] = bucket
            for slot in range(N_EVENTS):
                new.totals[slot] += bucket[slot]
        new.errors = new.totals[FAILURE] + new.totals[TIMEOUT] + new.totals[REJECTED]
        new._leaving = self._leaving  # watched from the new counter now: their late counts are its
        while len(new._leaving) > LEAVING:
            new._drain(new._leaving.popleft())
        new._set_epoch(new._epoch)
        new.peaks[new._epoch % new._n] = self.peak_at(now)  # the peak seen over the old window carries over
        return new
