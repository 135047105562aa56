"""Rolling event counters: counts per event over the last ``window`` seconds, in a ring of buckets.

Successes, the one event of a healthy call, are counted without a lock: each bucket counts them in an
`itertools.count`, whose ``next()`` is a single atomic C call. Reading such a counter is ``next()`` again, minus
the reads made before (`_read`), so reads are exact too; they happen only under the circuit's lock. Every other
event is counted under the circuit's lock in plain lists. Running totals over the window are kept up to date as
buckets expire, so the health check never sums the ring.
"""

from __future__ import annotations

import itertools

from ._events import FAILURE, N_EVENTS, REJECTED, SUCCESS, TIMEOUT

__all__ = ["RollingCounter"]

_ERRORS = (FAILURE, TIMEOUT, REJECTED)


class RollingCounter:
    """Counts per event slot over a rolling window of ``buckets`` buckets of ``window / buckets`` seconds.

    The window covers the current bucket and the ``buckets - 1`` before it. Every method but the lock-free
    ``next(counter.success)`` must be called under the owning circuit's lock.

    Attributes:
        success: The current bucket's success counter: ``next(counter.success)`` counts one success, lock-free,
            while ``now < end``.
        end: When the current bucket ends: an event at or after it must `add` (which advances the ring).
        totals: The counts over the window as of the current bucket, except ``totals[SUCCESS]``, which holds only
            the buckets before the current one (see `successes`).
        errors: failure + timeout + rejected over the window.
    """

    __slots__ = (
        "_counts",
        "_epoch",
        "_n",
        "_reads",
        "_success",
        "end",
        "errors",
        "success",
        "totals",
        "width",
        "window",
    )

    def __init__(self, window: float, buckets: int, now: float) -> None:
        self.window = window
        self.width = window / buckets
        self._n = buckets
        self._counts = [[0] * N_EVENTS for _ in range(buckets)]
        self._success = [itertools.count() for _ in range(buckets)]
        self._reads = [0] * buckets
        self.totals = [0] * N_EVENTS
        self.errors = 0
        self._set_epoch(int(now // self.width))

    def __repr__(self) -> str:
        return f"<RollingCounter window={self.window:g}s buckets={self._n} errors={self.errors}>"

    def _set_epoch(self, epoch: int) -> None:
        self._epoch = epoch
        self.success = self._success[epoch % self._n]
        self.end = (epoch + 1) * self.width

    def _read(self, i: int) -> int:
        """The successes counted in bucket ``i`` so far (each read bumps the counter once; we subtract them)."""
        value = next(self._success[i]) - self._reads[i]
        self._reads[i] += 1
        return value

    def _reset(self, i: int) -> None:
        self._counts[i] = [0] * N_EVENTS
        self._success[i] = itertools.count()
        self._reads[i] = 0

    def successes(self) -> int:
        """Successes over the window."""
        return self.totals[SUCCESS] + self._read(self._epoch % self._n)

    def add(self, slot: int, now: float) -> None:
        """Count one event at ``now`` (a clock that went back counts in the current bucket)."""
        if now >= self.end:
            self.advance(now)
        if slot == SUCCESS:
            next(self.success)
            return
        self._counts[self._epoch % self._n][slot] += 1
        self.totals[slot] += 1
        if slot in _ERRORS:
            self.errors += 1

    def advance(self, now: float) -> None:
        """Move the ring to the bucket of ``now``, dropping the buckets that leave the window."""
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
            # The outgoing bucket's successes join the running total (a success counted on its counter after this
            # still shows in statistics, which read every counter, but not in the health totals: it would take a
            # thread stalled between two bytecodes across a bucket boundary).
            current = self._epoch % n
            folded = self._read(current)
            self._counts[current][SUCCESS] = folded
            totals[SUCCESS] += folded
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
                    if slot != SUCCESS:
                        totals[slot] += count
                totals[SUCCESS] += self._read(i)
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
        new = RollingCounter(window, buckets, now)
        self.advance(now)
        moved = [[0] * N_EVENTS for _ in range(new._n)]
        for k in range(self._n):
            e = self._epoch - k
            i = e % self._n
            bucket = list(self._counts[i])
            bucket[SUCCESS] = self._read(i)
            # The bucket's events happened somewhere in [e * width, (e + 1) * width); placing them at its start
            # keeps them in the window no longer than the old geometry would have.
            new_epoch = min(int((e * self.width) // new.width), new._epoch)
            if any(bucket) and new_epoch > new._epoch - new._n:
                target = moved[new_epoch % new._n]
                for slot in range(N_EVENTS):
                    target[slot] += bucket[slot]
        current = new._epoch % new._n
        for j, bucket in enumerate(moved):
            new._success[j] = itertools.count(bucket[SUCCESS])
            if j == current:
                bucket[SUCCESS] = 0  # the current bucket's successes live on its counter only
            new._counts[j] = bucket
            for slot in range(N_EVENTS):
                new.totals[slot] += bucket[slot]
        new.errors = new.totals[FAILURE] + new.totals[TIMEOUT] + new.totals[REJECTED]
        new.success = new._success[current]
        return new
