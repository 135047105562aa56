"""Helpers for testing code that uses `breaker`, deterministically.

::

    from breaker.testing import FakeClock, isolated_registry

    def test_trips_after_errors():
        clock = FakeClock()
        with isolated_registry(clock=clock):
            ...  # configure and call commands; nothing leaks into the global registry
            clock.advance(5.0)  # the sleep window passes, instantly
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

from . import _registry

__all__ = ["FakeClock", "isolated_registry"]


class FakeClock:
    """A monotonic clock that moves only when told to. Thread-safe.

    The circuits' state machine (rolling windows, sleep windows, caller-isolation timeouts) reads it; waits for
    thread-isolated runs still use real time, since they are real threads.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._lock = threading.Lock()  # advance() from one thread while calls read from others

    def __repr__(self) -> str:
        return f"FakeClock({self._now!r})"

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds`` (>= 0)."""
        if seconds < 0:
            raise ValueError(f"FakeClock.advance() takes seconds >= 0, got {seconds!r}: a monotonic clock")
        with self._lock:
            self._now += seconds


@contextlib.contextmanager
def isolated_registry(clock: Callable[[], float] = time.monotonic) -> Iterator[_registry.Registry]:
    """Run the block against a fresh, empty registry (circuits, settings and defaults) reading ``clock``.

    The global registry is restored afterwards, untouched; the isolated one's idle threads are stopped.
    """
    registry = _registry.Registry(clock=clock)
    previous = _registry.swap(registry)
    try:
        yield registry
    finally:
        _registry.swap(previous)
        registry.flush()
