"""The sync drivers as a scenario table: each way of calling through a command, and the helpers the scenarios share.

Drivers (test ids):

- ``do-thread`` / ``do-caller``: `breaker.do` with ``isolation="thread"`` / ``isolation="caller"``;
- ``go-thread``: `breaker.go` (thread isolation), then waiting on its future;
- ``decorator-thread`` / ``decorator-caller``: a ``@breaker.command`` function;
- ``source-do-caller`` / ``source-decorator-caller``: the same, through `breaker._run.entries`, the source that
  ``tools/generate.py`` makes the generated entry points from.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any, Literal, Protocol, TypeVar

import pytest
from contract import EVENTS

import breaker
from breaker import CircuitStatistics, State
from breaker._run import entries

T = TypeVar("T")

NAME = "dependency"
VALUE = "value"
FALLBACK = "fallback"
HELD = "held"
TIMEOUT = 0.2  # seconds; thread-isolation timeouts run on real time
WAIT = 5.0  # the bound on every wait for something that should happen promptly
SLEEP = 5.0  # the sleep window, where the fake clock moves it
#: Trips on two failures in a row; probes after SLEEP.
TRIP: dict[str, Any] = {"request_volume_threshold": 2, "error_percent_threshold": 50, "sleep_window": SLEEP}
CONTRACT_EVENTS = EVENTS  # the contract's event names, pinned in test_api


class Boom(Exception):
    """The dependency's own failure."""


class BadInput(ValueError):
    """The caller's fault: configured as an ignored exception."""


class FallbackBoom(Exception):
    """The fallback's own failure."""


# -- the drivers ----------------------------------------------------------------------------------------------------


class Call(Protocol):
    """Call ``run`` through command ``name`` and return the call's value (or raise its error)."""

    def __call__(self, name: str, run: Callable[[], T], fallback: Callable[[Exception], T] | None = None) -> T: ...


def call_do(name: str, run: Callable[[], T], fallback: Callable[[Exception], T] | None = None) -> T:
    return breaker.do(name, run, fallback)


def call_go(name: str, run: Callable[[], T], fallback: Callable[[Exception], T] | None = None) -> T:
    future = breaker.go(name, run, fallback)
    assert isinstance(future, Future)
    return future.result(timeout=WAIT)


def call_decorated(name: str, run: Callable[[], T], fallback: Callable[[Exception], T] | None = None) -> T:
    def dependency() -> T:
        return run()

    if fallback is None:
        return breaker.command(name)(dependency)()
    return breaker.command(name, fallback=fallback)(dependency)()


@dataclasses.dataclass(frozen=True)
class Driver:
    """One way of calling through a command."""

    id: str
    isolation: Literal["thread", "caller"]
    call: Call

    @property
    def threaded(self) -> bool:
        return self.isolation == "thread"

    def configure(self, name: str = NAME, **fields: Any) -> None:
        """Configure command ``name`` with this driver's isolation and ``fields``."""
        breaker.configure_command(name, breaker.CommandConfig(isolation=self.isolation, **fields))


def call_source_do(name: str, run: Callable[[], T], fallback: Callable[[Exception], T] | None = None) -> T:
    return entries.do(name, run, fallback)


def call_source_decorated(name: str, run: Callable[[], T], fallback: Callable[[Exception], T] | None = None) -> T:
    def dependency() -> T:
        return run()

    return entries.sync_wrapper(name, dependency, fallback)()


DRIVERS = (
    Driver("do-thread", "thread", call_do),
    Driver("do-caller", "caller", call_do),
    Driver("go-thread", "thread", call_go),
    Driver("decorator-thread", "thread", call_decorated),
    Driver("decorator-caller", "caller", call_decorated),
    # The sources the generated entry points are made from (tools/generate.py) run the same scenarios.
    Driver("source-do-caller", "caller", call_source_do),
    Driver("source-decorator-caller", "caller", call_source_decorated),
)


def drivers(*ids: str) -> pytest.MarkDecorator:
    """Parametrize ``driver`` over the drivers named (all of them by default)."""
    return pytest.mark.parametrize("driver", [pytest.param(d, id=d.id) for d in DRIVERS if not ids or d.id in ids])


ALL = drivers()
THREADED = drivers("do-thread", "go-thread", "decorator-thread")
CALLER = drivers("do-caller", "decorator-caller", "source-do-caller", "source-decorator-caller")
DECORATORS = drivers("decorator-thread", "decorator-caller")
WITH_FALLBACK = pytest.mark.parametrize("with_fallback", [False, True], ids=["no-fallback", "fallback"])


# -- helpers --------------------------------------------------------------------------------------------------------


class Counter:
    """A counter threads can bump."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0

    def increment(self) -> int:
        with self._lock:
            self.value += 1
            return self.value


class Fallback:
    """A fallback recording the errors it is called with; returns FALLBACK."""

    def __init__(self) -> None:
        self.errors: list[Exception] = []

    def __call__(self, error: Exception) -> str:
        self.errors.append(error)
        return FALLBACK


class Held:
    """Calls through a driver, each on its own thread, whose runs block until `release`."""

    def __init__(self, driver: Driver, name: str = NAME) -> None:
        self.driver = driver
        self.name = name
        self.gate = threading.Event()
        self.outcomes: list[object] = []  # each call's value or exception, in the order they ended
        self._started = threading.Semaphore(0)
        self._threads: list[threading.Thread] = []

    def _run(self) -> str:
        self._started.release()
        if not self.gate.wait(WAIT):
            raise AssertionError("a held run was never released")
        return HELD

    def _call(self) -> None:
        try:
            self.outcomes.append(self.driver.call(self.name, self._run))
        except BaseException as error:  # recorded for the test to check
            self.outcomes.append(error)

    def start(self) -> None:
        """Start one call and wait until its run is in progress."""
        thread = threading.Thread(target=self._call, name="held-caller", daemon=True)
        self._threads.append(thread)
        thread.start()
        assert self._started.acquire(timeout=WAIT), "the held call's run did not start"

    def release(self) -> list[object]:
        """Let every held run return; wait for their calls to end; their outcomes."""
        self.gate.set()
        for thread in self._threads:
            thread.join(WAIT)
        assert not [t for t in self._threads if t.is_alive()], "a held call did not end"
        return self.outcomes


def holders() -> Iterator[Callable[[Driver], Held]]:
    """The `held` fixture: make `Held` callers on command NAME, all released at the end whatever happened."""
    made: list[Held] = []

    def make(driver: Driver) -> Held:
        made.append(Held(driver))
        return made[-1]

    yield make
    for holder in made:
        holder.release()


def gates() -> Iterator[threading.Event]:
    """The `gate` fixture: an event blocked runs wait on, set at the end so that no run outlives its test."""
    event = threading.Event()
    yield event
    event.set()


@pytest.fixture
def held() -> Iterator[Callable[[Driver], Held]]:
    """Make `Held` callers on command NAME; released at teardown."""
    yield from holders()


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """An event blocked runs wait on; set at teardown."""
    yield from gates()


def stats(name: str = NAME) -> CircuitStatistics:
    return breaker.get_circuit(name)[0].statistics()


def state(name: str = NAME) -> State:
    return breaker.get_circuit(name)[0].state


def events(name: str = NAME) -> dict[str, int]:
    """The non-zero event counts of the circuit of ``name``."""
    return {event: n for event, n in stats(name).counts.items() if n}


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` until it holds; fail after WAIT seconds."""
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"still not true after {WAIT} s: {what}"
        time.sleep(0.002)


def settle(name: str = NAME) -> None:
    """Wait until no run of ``name`` is in progress, abandoned ones included."""
    wait_until(lambda: stats(name).active == 0 and stats(name).abandoned == 0, f"{name}: every run returned")


def ok() -> str:
    return VALUE


def failing() -> str:
    raise Boom("down")


def trip(driver: Driver, name: str = NAME) -> None:
    """Open the circuit of ``name`` (configured with TRIP) with two failures."""
    for _ in range(2):
        with pytest.raises(Boom):
            driver.call(name, failing)
    assert state(name) is State.OPEN
