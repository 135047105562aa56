"""The demo's load generator, in the style of the ``hey`` tool: ``-n`` requests, ``-c`` workers, ``-q``, ``-z``.

`Load` runs ``concurrency`` worker threads that call a target until ``requests`` calls are done between them (each
worker takes its share) or, when ``duration`` is given, until it has passed; ``rate`` caps each worker's calls per
second. `Load.stop` (the demo calls it on Ctrl-C) ends them after their call in progress. The target returns a
label for how the call ended (``"ok"``, ``"fallback: timeout"``...); an exception it raises is recorded as
``"error: <type>"``, never lost. `Report` holds every call and prints a hey-style summary.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import threading
import time
from collections.abc import Callable
from typing import Final

__all__ = ["Load", "LoadOptions", "Report", "Sample"]

#: The percentiles of the summary's latency distribution, as hey prints them.
DISTRIBUTION: Final = (10, 25, 50, 75, 90, 95, 99)
_BAR: Final = "■"
_BAR_WIDTH: Final = 40


def _positive(field: str, value: object, kind: type) -> None:
    if isinstance(value, bool) or not isinstance(value, kind if kind is int else (int, float)):
        raise TypeError(f"{field} must be {'an int' if kind is int else 'a number'}, got {value!r}")
    if not 0 < value < math.inf:
        raise ValueError(f"{field} must be positive and finite, got {value!r}")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class LoadOptions:
    """How much load to drive (hey's flags).

    Args:
        requests: ``-n``: calls to make in all, shared between the workers. Ignored when ``duration`` is given.
            Default 200. At least ``concurrency``.
        concurrency: ``-c``: worker threads calling at once. Default 50.
        rate: ``-q``: calls per second per worker at most; None for no limit.
        duration: ``-z``: seconds to run for; None to run ``requests`` calls.

    Raises:
        TypeError, ValueError: A bad option, named in the message.
    """

    requests: int = 200
    concurrency: int = 50
    rate: float | None = None
    duration: float | None = None

    def __post_init__(self) -> None:
        _positive("requests (-n)", self.requests, int)
        _positive("concurrency (-c)", self.concurrency, int)
        if self.rate is not None:
            _positive("rate (-q)", self.rate, float)
        if self.duration is not None:
            _positive("duration (-z)", self.duration, float)
        elif self.requests < self.concurrency:
            raise ValueError(f"requests (-n) {self.requests} cannot be less than concurrency (-c) {self.concurrency}")

    def shares(self) -> list[int | None]:
        """Each worker's number of calls (None: until the duration has passed). They add up to ``requests``."""
        if self.duration is not None:
            return [None] * self.concurrency
        each, extra = divmod(self.requests, self.concurrency)
        return [each + (i < extra) for i in range(self.concurrency)]


@dataclasses.dataclass(frozen=True, slots=True)
class Sample:
    """One call: when it started (seconds from the start of the run), how long it took, how it ended."""

    start: float
    latency: float
    outcome: str


@dataclasses.dataclass(frozen=True, slots=True)
class Report:
    """Every call of a run, and how the run ended.

    Attributes:
        samples: The calls, by start time.
        elapsed: Seconds from the start to the end of the last call.
        stopped: Whether `Load.stop` ended the run early.
    """

    samples: tuple[Sample, ...]
    elapsed: float
    stopped: bool

    def outcomes(self) -> collections.Counter[str]:
        """How many calls ended each way."""
        return collections.Counter(sample.outcome for sample in self.samples)

    def rate(self) -> float:
        """Calls per second over the run."""
        return len(self.samples) / self.elapsed if self.elapsed > 0 else 0.0

    def latencies(self) -> list[float]:
        """Every call's latency, sorted."""
        return sorted(sample.latency for sample in self.samples)

    def percentile(self, p: float) -> float:
        """The latency ``p`` percent of the calls took at most (nearest rank); 0 with no calls."""
        latencies = self.latencies()
        if not latencies:
            return 0.0
        rank = max(1, math.ceil(p / 100 * len(latencies)))
        return latencies[min(rank, len(latencies)) - 1]

    def histogram(self, buckets: int = 10) -> list[tuple[float, int]]:
        """hey's histogram: ``buckets + 1`` marks from the fastest to the slowest call, each with the number of
        calls above the previous mark and at most this one. Empty with no calls."""
        latencies = self.latencies()
        if not latencies:
            return []
        fastest, slowest = latencies[0], latencies[-1]
        step = (slowest - fastest) / buckets
        marks = [fastest + step * i for i in range(buckets)] + [slowest]
        counts = [0] * len(marks)
        mark = 0
        for latency in latencies:
            while latency > marks[mark]:
                mark += 1
            counts[mark] += 1
        return list(zip(marks, counts, strict=True))

    def format(self) -> str:
        """The hey-style summary: totals, requests/s, histogram, latency distribution, results by outcome."""
        latencies = self.latencies()
        lines = ["", "Summary:" + (" (stopped early)" if self.stopped else "")]
        lines.append(f"  Total:\t{self.elapsed:.4f} secs")
        if latencies:
            lines.append(f"  Slowest:\t{latencies[-1]:.4f} secs")
            lines.append(f"  Fastest:\t{latencies[0]:.4f} secs")
            lines.append(f"  Average:\t{sum(latencies) / len(latencies):.4f} secs")
        lines.append(f"  Requests/sec:\t{self.rate():.4f}")
        lines.append(f"  Requests:\t{len(latencies)}")
        if latencies:
            histogram = self.histogram()
            top = max(count for _, count in histogram)
            lines += ["", "Response time histogram:"]
            lines += [f"  {mark:.3f} [{count}]\t|{_BAR * (count * _BAR_WIDTH // top)}" for mark, count in histogram]
            lines += ["", "Latency distribution:"]
            lines += [f"  {p}% in {self.percentile(p):.4f} secs" for p in DISTRIBUTION]
        lines += ["", "Results by outcome:"]
        outcomes = self.outcomes()
        waited: dict[str, float] = dict.fromkeys(outcomes, 0.0)
        for sample in self.samples:
            waited[sample.outcome] += sample.latency
        width = max((len(outcome) for outcome in outcomes), default=0)
        lines += [
            f"  {outcome:<{width}}  {count:>7}  avg {waited[outcome] / count * 1000:9.3f} ms"
            for outcome, count in sorted(outcomes.items())
        ]
        return "\n".join(lines) + "\n"


class Load:
    """Drives a target with ``options``'s workers; `start`, then `wait` or `stop`, then `report`.

    Args:
        target: Called once per request; returns a label for how it ended.
        options: How much load (see `LoadOptions`).
        clock: Seconds, monotonic. Default `time.perf_counter`.
    """

    def __init__(
        self, target: Callable[[], str], options: LoadOptions, *, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        if not callable(target):
            raise TypeError(f"target must be callable, got {target!r}")
        self.target = target
        self.options = options
        self._clock = clock
        self._stop = threading.Event()
        self._done = threading.Event()
        # Guards the count of workers still running: the last one to finish sets _done.
        self._lock = threading.Lock()
        self._running = 0
        self._samples: list[list[Sample]] = []
        self._threads: list[threading.Thread] = []
        self._start = 0.0
        self._end = 0.0
        self._stopped = False

    def __repr__(self) -> str:
        return f"<Load {self.options} {self.completed()} calls done>"

    def start(self) -> Load:
        """Start the workers (threads this load owns: `report` joins them).

        Raises:
            RuntimeError: Already started.
        """
        if self._threads:
            raise RuntimeError(f"{self!r} was started already")
        shares = self.options.shares()
        self._samples = [[] for _ in shares]
        self._running = len(shares)
        self._start = self._clock()
        deadline = None if self.options.duration is None else self._start + self.options.duration
        self._threads = [
            threading.Thread(
                target=self._work, args=(share, deadline, self._samples[i]), name=f"breaker-load-{i}", daemon=True
            )
            for i, share in enumerate(shares)
        ]
        for thread in self._threads:
            thread.start()
        return self

    def _work(self, share: int | None, deadline: float | None, samples: list[Sample]) -> None:
        clock, target, stop = self._clock, self.target, self._stop
        gap = None if self.options.rate is None else 1.0 / self.options.rate
        next_at = clock()
        try:
            while not stop.is_set() and (share is None or len(samples) < share):
                now = clock()
                if deadline is not None and now >= deadline:
                    break
                if gap is not None:
                    if next_at > now and stop.wait(next_at - now):
                        break
                    next_at = max(next_at, clock()) + gap  # a late call pushes the next one back: no burst
                started = clock()
                try:
                    outcome = target()
                except Exception as error:  # recorded, never lost: the summary counts it
                    outcome = f"error: {type(error).__name__}"
                ended = clock()
                samples.append(Sample(started - self._start, ended - started, outcome))
        finally:
            with self._lock:  # the last worker out records the end and wakes wait()
                self._running -= 1
                if self._running == 0:
                    self._end = clock()
                    self._stopped = stop.is_set()  # a stop() after the end did not cut the run short
                    self._done.set()

    def completed(self) -> int:
        """Calls done so far (while it runs: a moment's reading)."""
        return sum(len(samples) for samples in self._samples)

    def elapsed(self) -> float:
        """Seconds since `start` (until the end, once done)."""
        if not self._threads:
            return 0.0
        return (self._end if self._done.is_set() else self._clock()) - self._start

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the run to end, at most ``timeout`` seconds; returns whether it has."""
        return self._done.wait(timeout)

    def stop(self) -> None:
        """Ask the workers to stop after their call in progress (from any thread, e.g. on Ctrl-C)."""
        self._stop.set()

    def report(self) -> Report:
        """Wait for every worker, then the run's `Report`.

        Raises:
            RuntimeError: Not started.
        """
        if not self._threads:
            raise RuntimeError(f"{self!r} was not started")
        for thread in self._threads:
            thread.join()
        samples = sorted((s for worker in self._samples for s in worker), key=lambda s: s.start)
        return Report(tuple(samples), self._end - self._start, self._stopped)
