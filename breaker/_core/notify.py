"""State changes of one circuit, handed to a callback in the order they happened, outside every lock.

The engine pushes each change while it holds its lock, so the queue's order is the order of the changes. Then,
after releasing the lock, it calls `TransitionQueue.deliver`: one thread at a time delivers (the one holding the
delivery token), and a thread that finds the token taken leaves its change to the holder, which looks at the
queue again after putting the token back, so nothing is left behind. Delivery never blocks: nobody waits for the
token. It relies on two documented guarantees, not on the GIL: ``collections.deque`` appends and pops are
thread-safe ("Deques support thread-safe, memory efficient appends and pops from either side"), and so is
``Lock.acquire(blocking=False)``.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable

from .events import State

__all__ = ["TransitionQueue"]

Emit = Callable[[State, State], None]


class TransitionQueue:
    """Ordered, non-blocking delivery of one circuit's state changes to ``emit(old, new)``."""

    __slots__ = ("_emit", "_pending", "_token")

    def __init__(self, emit: Emit) -> None:
        self._emit = emit
        # Both made on the first change: most circuits never change state.
        self._pending: collections.deque[tuple[State, State]] | None = None
        self._token: threading.Lock | None = None

    def __repr__(self) -> str:
        return f"<TransitionQueue pending={len(self._pending or ())}>"

    def push(self, old: State, new: State) -> None:
        """Queue a change. Call under the engine's lock (it orders the changes, and guards the first one)."""
        if self._pending is None:
            self._token = threading.Lock()
            self._pending = collections.deque()
        self._pending.append((old, new))

    def deliver(self) -> None:
        """Hand every queued change to ``emit``, in order, unless another thread is doing it. Call outside the
        engine's lock, after a `push`."""
        pending, token = self._pending, self._token
        if pending is None or token is None:
            return
        while pending:
            if not token.acquire(blocking=False):  # another thread delivers: it looks again after releasing
                return
            try:
                while pending:
                    old, new = pending.popleft()
                    self._emit(old, new)
            finally:
                token.release()
