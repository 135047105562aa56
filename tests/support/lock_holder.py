"""A thread that holds a circuit's engine lock until the test lets it go, as a thread in the middle of a step
would: what makes the async path hand its locked steps to a worker."""

from __future__ import annotations

import threading

from breaker._core.engine import Engine

__all__ = ["WAIT", "LockHolder"]

WAIT = 10.0


class LockHolder:
    """Holds ``core``'s lock from construction until `release` (at most `WAIT` seconds)."""

    def __init__(self, core: Engine) -> None:
        self.core = core
        self.held = threading.Event()
        self.go = threading.Event()
        self.thread = threading.Thread(target=self._hold, daemon=True)
        self.thread.start()
        assert self.held.wait(WAIT)

    def _hold(self) -> None:
        with self.core.lock:
            self.held.set()
            self.go.wait(WAIT)

    def release(self) -> None:
        self.go.set()
        self.thread.join(WAIT)
