"""Rolling event counters: counts per event over the last ``window`` seconds, in a ring of buckets.

Not thread-safe: the circuit's lock guards every use. Running totals over the window are kept up to date as
buckets expire, so the health check never sums the ring, and the hot path is one float compare (is ``now`` still
in the current bucket?) and two list increments.
"""

from __future__ import annotations

from ._events import FAILURE, N_EVENTS, REJECTED, TIMEOUT

__all__ = ["RollingCounter"]

_ERRORS = (FAILURE, TIMEOUT, REJECTED)


class RollingCounter:
    """Counts per event slot over a rolling window of ``buckets`` buckets of ``window / buckets`` seconds.

    The window covers the current bucket and the ``buckets - 1`` before it.

    Attributes:
        current: The counts of the current bucket.
        end: When the current bucket ends: an event at or after it must `add` (which advances the ring).
        totals: The counts over the window as of the current bucket.
        errors: failure + timeout + rejected over the window.
    """

    __slots__ = ("_counts", "_epoch", "_n", "current", "end", "errors", "totals", "width", "window")

    def __init__(self, window: float, buckets: int, now: float) -> None:
        self.window = window
        self.width = window / buckets
        self._n = buckets
        self._counts = [[0] * N_EVENTS for _ in range(buckets)]
        self.totals = [0] * N_EVENTS
        self.errors = 0
        self._set_epoch(int(now // self.width))

    def __repr__(self) -> str:
        return f"<RollingCounter window={self.window:g}s buckets={self._n} totals={self.totals}>"

    def _set_epoch(self, epoch: int) -> None:
        self._epoch = epoch
        self.current = self._counts[epoch % self._n]
        self.end = (epoch + 1) * self.width

    def add(self, slot: int, now: float) -> None:
        """Count one event at ``now`` (a clock that went back counts in the current bucket)."""
        if now >= self.end:
            self.advance(now)
        self.current[slot] += 1
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
        if epoch - self._epoch >= self._n:
            for bucket in self._counts:
                bucket[:] = [0] * N_EVENTS
            totals[:] = [0] * N_EVENTS
        else:
            for e in range(self._epoch + 1, epoch + 1):
                bucket = self._counts[e % self._n]  # held epoch e - n (or older): now out of the window
                if any(bucket):
                    for slot in range(N_EVENTS):
                        totals[slot] -= bucket[slot]
                    bucket[:] = [0] * N_EVENTS
        self.errors = totals[FAILURE] + totals[TIMEOUT] + totals[REJECTED]
        self._set_epoch(epoch)

    def totals_at(self, now: float) -> list[int]:
        """The window's sums as they will be at ``now``, without advancing anything (a pure query)."""
        epoch = int(now // self.width)
        if epoch <= self._epoch:
            return list(self.totals)
        totals = [0] * N_EVENTS
        for k in range(self._n):
            e = self._epoch - k
            if e > epoch - self._n:
                for slot, count in enumerate(self._counts[e % self._n]):
                    totals[slot] += count
        return totals

    def clear(self) -> None:
        """Forget everything (the circuit closed after a good probe)."""
        for bucket in self._counts:
            bucket[:] = [0] * N_EVENTS
        self.totals[:] = [0] * N_EVENTS
        self.errors = 0

    def resized(self, window: float, buckets: int, now: float) -> RollingCounter:
        """A counter of the new geometry holding the counts of this one that fall in its window."""
        new = RollingCounter(window, buckets, now)
        self.advance(now)
        for k in range(self._n):
            e = self._epoch - k
            bucket = self._counts[e % self._n]
            if not any(bucket):
                continue
            # The bucket's events happened somewhere in [e * width, (e + 1) * width); placing them at its start
            # keeps them in the window no longer than the old geometry would have.
            new_epoch = min(int((e * self.width) // new.width), new._epoch)
            if new_epoch <= new._epoch - new._n:
                continue
            target = new._counts[new_epoch % new._n]
            for slot in range(N_EVENTS):
                target[slot] += bucket[slot]
                new.totals[slot] += bucket[slot]
        new.errors = new.totals[FAILURE] + new.totals[TIMEOUT] + new.totals[REJECTED]
        return new
