"""An async call cancelled at every await point of the async path: its ticket comes back and it ends in exactly
one primary event (`breaker._run.aio`).

The path awaits in three kinds of places: the run, the fallback, and the engine's locked steps when a thread holds
the engine's lock (the task yields and tries again instead of blocking the loop). Each test parks a call at one of
them, cancels it there, and checks the books. The engine's lock is held by a helper thread where a step must
wait; the test lets it go only after the cancellation, so the step finishes after it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any

import pytest
from lock_holder import LockHolder

import breaker
from breaker import CommandConfig, State
from breaker._core.circuit import engine_of
from breaker._core.engine import Engine
from breaker.testing import FakeClock

NAME = "dependency"
WAIT = 10.0
PRIMARY = ("success", "failure", "timeout", "short-circuit", "rejected", "bad-request", "cancelled")


def engine() -> Engine:
    return engine_of(breaker.get_circuit(NAME)[0])


def primary() -> dict[str, int]:
    """The primary events counted since creation that are not zero."""
    counts = breaker.get_circuit(NAME)[0].statistics().cumulative
    return {event: counts[event] for event in PRIMARY if counts[event]}


class WatchedLock:
    """The engine's lock, counting the times a step found it held and went away to try again."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.turned_away = 0

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        got = self._lock.acquire(blocking, timeout)
        if not got:
            self.turned_away += 1
        return got

    def release(self) -> None:
        self._lock.release()

    def locked(self) -> bool:
        return self._lock.locked()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


@pytest.fixture
def lock() -> WatchedLock:
    """The command's engine, with its lock watched (made before any call)."""
    watched = WatchedLock()
    engine().lock = watched  # type: ignore[assignment]
    return watched


@pytest.fixture
def holders() -> Iterator[Callable[[], LockHolder]]:
    made: list[LockHolder] = []

    def make() -> LockHolder:
        holder = LockHolder(engine())
        made.append(holder)
        return holder

    yield make
    for holder in made:
        holder.release()


async def until(condition: Callable[[], bool], task: asyncio.Task[Any] | None = None) -> None:
    """Let the loop run until ``condition()`` (the task, if given, must not end first)."""
    for _ in range(100_000):
        if condition():
            return
        assert task is None or not task.done(), f"the call ended before it got there: {task}"
        await asyncio.sleep(0)
    raise AssertionError("the call never got there")


async def parked(call: Awaitable[Any], park: Callable[[], bool]) -> asyncio.Task[Any]:
    """Start ``call`` as a task and let the loop run until ``park()`` says it is where the test wants it."""
    task = asyncio.ensure_future(call)
    await until(park, task)
    return task


async def cancelled(task: asyncio.Task[Any], then: Callable[[], None] = lambda: None) -> None:
    """Cancel ``task``, do ``then()`` (let a held lock go), and check that it ends in CancelledError."""
    task.cancel()
    for _ in range(3):
        await asyncio.sleep(0)  # the cancellation reaches the task while it still waits
    then()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, WAIT)


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


def configure(**fields: Any) -> None:
    breaker.configure_command(NAME, CommandConfig(timeout=WAIT, **fields))


# -- at the run and the fallback ----------------------------------------------------------------------------------


def test_cancelled_while_the_run_is_awaited() -> None:
    """Cancelled in its run: counted as cancelled, ticket back, no fallback."""
    configure()
    started = asyncio.Event()
    fallbacks: list[Exception] = []

    async def dependency() -> str:
        started.set()
        await asyncio.Event().wait()
        return "never"

    async def scenario() -> None:
        call = breaker.do_async(NAME, dependency, fallbacks.append)
        task = await parked(call, started.is_set)
        await cancelled(task)

    run(scenario)
    assert (primary(), engine().active, fallbacks) == ({"cancelled": 1}, 0, [])


def test_cancelled_while_the_fallback_is_awaited() -> None:
    """Cancelled in an async fallback: the run's failure stays its one primary event, no fallback event, ticket
    back."""
    configure()
    in_fallback = asyncio.Event()

    async def dependency() -> str:
        raise ValueError("boom")

    async def fallback(error: Exception) -> str:
        in_fallback.set()
        await asyncio.Event().wait()
        return "never"

    async def scenario() -> None:
        task = await parked(breaker.do_async(NAME, dependency, fallback), in_fallback.is_set)
        await cancelled(task)

    run(scenario)
    counts = breaker.get_circuit(NAME)[0].statistics().cumulative
    assert (primary(), engine().active) == ({"failure": 1}, 0)
    assert counts["fallback-success"] + counts["fallback-failure"] == 0


# -- at the engine's locked steps, while a thread holds the lock ----------------------------------------------------


@pytest.mark.parametrize("decision", ["probe", "rejected"])
def test_cancelled_while_waiting_to_be_admitted(
    clock: FakeClock, lock: WatchedLock, holders: Callable[[], LockHolder], decision: str
) -> None:
    """Cancelled while its admission waits for the lock (a probe is due: only the lock decides): once decided, an
    admitted probe counts as cancelled and frees its ticket and its slot; a would-be probe finding no ticket
    counts as rejected."""
    configure(isolation="caller", request_volume_threshold=1, sleep_window=5.0, max_concurrent_requests=1)
    ticket = engine().admit(clock()) if decision == "rejected" else None  # holds the one ticket, counts nothing
    with pytest.raises((ZeroDivisionError, breaker.MaxConcurrencyError)):
        breaker.do(NAME, lambda: 1 / 0)  # a failure (or, the ticket held, a rejection): trips
    assert breaker.get_circuit(NAME)[0].state is State.OPEN
    clock.advance(5.0)
    before = primary()
    holder = holders()

    async def dependency() -> str:
        return "never"

    async def scenario() -> None:
        task = await parked(breaker.do_async(NAME, dependency), lambda: lock.turned_away > 0)
        await cancelled(task, holder.release)

    run(scenario)
    after = primary()
    added = {event: after.get(event, 0) - before.get(event, 0) for event in PRIMARY}
    assert {event: n for event, n in added.items() if n} == {"cancelled" if decision == "probe" else "rejected": 1}
    if ticket is not None:
        engine().withdraw(ticket)
    assert engine().active == 0
    if decision == "probe":
        assert engine().machine.probe is None  # the slot is free: the next call probes
        assert breaker.get_circuit(NAME)[0].allow_request()


@pytest.mark.parametrize("ending", ["failure", "success-window-turned", "cancelled"])
def test_cancelled_while_its_outcome_waits_for_the_lock(
    clock: FakeClock, lock: WatchedLock, holders: Callable[[], LockHolder], ending: str
) -> None:
    """Cancelled while recording its outcome waits for the lock: the outcome is recorded whole, the ticket comes
    back, the cancellation is raised after (and no fallback runs)."""
    configure(isolation="caller")
    started, finish = asyncio.Event(), asyncio.Event()
    fallbacks: list[Exception] = []

    async def dependency() -> str:
        started.set()
        await finish.wait()
        if ending == "failure":
            raise ValueError("boom")
        return "done"

    async def scenario() -> None:
        task = await parked(breaker.do_async(NAME, dependency, fallbacks.append), started.is_set)
        holder = holders()
        if ending == "success-window-turned":
            clock.advance(1.0)  # the window's next bucket: counting the success needs the lock
        if ending == "cancelled":
            task.cancel()  # cancelled in its run; recording the cancellation waits for the lock
        else:
            finish.set()
        await until(lambda: lock.turned_away > 0, task)
        await cancelled(task, holder.release)

    run(scenario)
    expected = {"failure": "failure", "success-window-turned": "success", "cancelled": "cancelled"}[ending]
    assert (primary(), engine().active, fallbacks) == ({expected: 1}, 0, [])


def test_cancelled_while_the_fallback_outcome_waits_for_the_lock(
    clock: FakeClock, lock: WatchedLock, holders: Callable[[], LockHolder]
) -> None:
    """Cancelled while counting its fallback's outcome waits for the lock (the window must turn over first):
    counted whole, then cancelled."""
    configure(isolation="caller")
    started, finish = asyncio.Event(), asyncio.Event()

    async def dependency() -> str:
        started.set()
        await finish.wait()
        raise ValueError("boom")

    holder: list[LockHolder] = []

    def fallback(error: Exception) -> str:
        clock.advance(1.0)  # the window's next bucket: counting the outcome needs the lock
        holder.append(holders())  # which a thread holds as the fallback's outcome is counted
        return "fallback"

    async def scenario() -> None:
        task = await parked(breaker.do_async(NAME, dependency, fallback), started.is_set)
        finish.set()
        await until(lambda: lock.turned_away > 0, task)
        await cancelled(task, holder[0].release)

    run(scenario)
    counts = breaker.get_circuit(NAME)[0].statistics().cumulative
    assert (primary(), engine().active, counts["fallback-success"]) == ({"failure": 1}, 0, 1)


def test_cancelled_while_a_run_that_is_not_awaitable_is_withdrawn(
    lock: WatchedLock, holders: Callable[[], LockHolder]
) -> None:
    """Cancelled while giving back the ticket of a run that returned something not awaitable: nothing counted
    (bad input), the ticket back, the cancellation raised."""
    configure(isolation="caller")
    holder: list[LockHolder] = []

    def not_awaitable() -> Any:
        holder.append(holders())
        return 42

    async def scenario() -> None:
        task = await parked(breaker.do_async(NAME, not_awaitable), lambda: lock.turned_away > 0)
        await cancelled(task, holder[0].release)

    run(scenario)
    assert (primary(), engine().active) == ({}, 0)
