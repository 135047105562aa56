"""Forced interleavings: pause one chosen thread at a lock-free step, do something else, let it go on.

Each lock-free step of the library (`breaker._core.lockfree`) writes to an object: a `Tally` (``next()`` counts
an event), or the list of free tickets (``pop`` takes one, ``append`` returns one). The stand-ins here behave the
same, but the thread a `Pause` is armed for stops inside the step, before it takes effect, until the test lets it
go: a schedule that a real thread switch could produce, made certain. Other threads go through untouched.

Typical use::

    pause = Pause()
    with pausing_counts(pause):                      # circuits made inside count on PausingTally
        worker = pause.run(lambda: breaker.do(...))  # a thread armed to stop at its first step
        pause.reached()                              # it is stopped inside the step
        ...                                          # turn the window over, resize, flush...
        pause.release()
        worker.outcome()
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from breaker._core import lockfree, rolling
from breaker._core.engine import Engine
from breaker._core.lockfree import Tally
from breaker._run import _generated as generated

#: The bound on every wait for something that must happen promptly.
WAIT = 10.0


class Pause:
    """A point where the armed thread stops, once, until `release`."""

    def __init__(self) -> None:
        self._target: int | None = None
        self._fired = False
        self._at = threading.Event()
        self._go = threading.Event()
        self._lock = threading.Lock()  # the target and the fired flag, between the test and the stopping thread

    def arm(self, thread: threading.Thread | None = None) -> None:
        """Stop ``thread`` (or the calling thread) the next time it reaches a pausing step."""
        with self._lock:
            self._target = (thread or threading.current_thread()).ident

    def hit(self) -> None:
        """Called at the step by whichever thread gets there: the armed one stops."""
        with self._lock:
            stop = not self._fired and self._target == threading.get_ident()
            if stop:
                self._fired = True
        if stop:
            self._at.set()
            if not self._go.wait(WAIT):
                raise AssertionError("a paused thread was never released")

    def run(self, body: Callable[[], object]) -> Worker:
        """Start ``body`` on a new thread armed to stop at its first pausing step."""
        worker = Worker(body, self)
        worker.start()
        return worker

    def reached(self) -> None:
        """Wait until the armed thread is stopped at the step."""
        assert self._at.wait(WAIT), "the armed thread never reached the step"

    @property
    def fired(self) -> bool:
        return self._fired

    def release(self) -> None:
        """Let the stopped thread go on."""
        self._go.set()


class Worker(threading.Thread):
    """A thread running one body, armed on a `Pause` before it starts; keeps what the body returned or raised."""

    def __init__(self, body: Callable[[], object], pause: Pause) -> None:
        super().__init__(name="interleave-worker", daemon=True)
        self.body = body
        self.pause = pause
        self.result: object = None
        self.error: BaseException | None = None

    def run(self) -> None:
        self.pause.arm()
        try:
            self.result = self.body()
        except BaseException as error:  # reported by outcome()
            self.error = error

    def outcome(self) -> object:
        """Join, then the body's result (or raise what it raised)."""
        self.join(WAIT)
        assert not self.is_alive(), "the worker did not finish"
        if self.error is not None:
            raise self.error
        return self.result


class PausingTally(Tally):
    """A `Tally` whose ``next()`` stops the armed thread before it counts (the step `lockfree.try_succeed` and
    `lockfree.try_enter` take with the success and short-circuit counters)."""

    __slots__ = ()
    pause: Pause | None = None  # set on the class by `pausing_counts`

    def __next__(self) -> int:
        pause = type(self).pause
        if pause is not None:
            pause.hit()
        value: int = super().__next__()
        return value


class PausingList(list[int]):
    """A free-ticket list whose steps stop the armed thread: ``"pop"`` and ``"append"`` before they take effect,
    ``"popped"`` just after a ``pop`` took its ticket (before the taker looks at anything else)."""

    def __init__(self, items: list[int], pause: Pause, *, on: str) -> None:
        super().__init__(items)
        self.pause = pause
        self.on = on

    def pop(self, *args: Any) -> int:
        if self.on == "pop":
            self.pause.hit()
        item = super().pop(*args)
        if self.on == "popped":
            self.pause.hit()
        return item

    def append(self, item: int) -> None:
        if self.on == "append":
            self.pause.hit()
        super().append(item)


def pausing_tickets(core: Engine, pause: Pause, *, on: str) -> PausingList:
    """Give ``core`` a free-ticket list that stops the armed thread at step ``on`` (see `PausingList`). Call it
    while no call is in flight: the pool and the engine's fast surface then share the new list from the start."""
    free = PausingList(list(core.free), pause, on=on)
    core.tickets.free = free
    core.free = free
    return free


@contextlib.contextmanager
def pausing_counts(pause: Pause, *, durations: bool = False) -> Iterator[None]:
    """Circuits created inside count successes and short-circuits on `PausingTally` counters stopping at
    ``pause``; with ``durations``, the duration histograms' counters too (and not the event counters)."""
    PausingTally.pause = pause
    try:
        with pytest.MonkeyPatch.context() as patch:
            if durations:
                patch.setattr(lockfree, "Tally", PausingTally)
                patch.setattr(generated, "Tally", PausingTally)
            else:
                patch.setattr(rolling, "Tally", PausingTally)
            yield
    finally:
        PausingTally.pause = None


def needs_lock_free() -> pytest.MarkDecorator:
    """These interleavings exist only where the steps are lock-free: in locked mode each step runs under the
    engine's lock, where no other thread can come between (and a paused thread would hold the lock)."""
    return pytest.mark.skipif(not lockfree.LOCK_FREE, reason="the step runs under the engine's lock in locked mode")
