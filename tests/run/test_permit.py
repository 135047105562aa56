"""Permits (`breaker.acquire`, `breaker.acquire_async`): one admitted call whose holder reports how it ended,
counted once, its ticket always given back, sync and async callers sharing the circuit."""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from lock_holder import LockHolder

import breaker
from breaker import CallResult, CircuitOpenError, CommandConfig, Event, MaxConcurrencyError, State
from breaker._core.circuit import engine_of
from breaker.testing import FakeClock

NAME = "permits"
WAIT = 10.0


def stats() -> breaker.CircuitStatistics:
    return breaker.get_circuit(NAME)[0].statistics()


def counted() -> dict[str, int]:
    """The events counted since creation that are not zero."""
    return {event: count for event, count in stats().cumulative.items() if count}


@pytest.fixture
def hold_lock() -> Iterator[Callable[[], LockHolder]]:
    """Makes `LockHolder`s of the command's lock, each released at the end of the test if the test did not."""
    made: list[LockHolder] = []

    def make() -> LockHolder:
        holder = LockHolder(engine_of(breaker.get_circuit(NAME)[0]))
        made.append(holder)
        return holder

    yield make
    for holder in made:
        holder.release()


def test_a_permit_holds_its_ticket_until_it_ends(clock: FakeClock) -> None:
    """An admitted permit holds one ticket; ending it counts a success with its duration and gives it back."""
    permit = breaker.acquire(NAME)
    assert stats().active == 1
    clock.advance(0.25)
    assert permit.end() is True
    assert stats().active == 0
    assert counted() == {"success": 1}
    assert stats().latency_execute.count == 1
    assert stats().latency_execute.mean == pytest.approx(0.25, rel=0.2)


@pytest.mark.parametrize(
    ("event", "key"),
    [
        (Event.SUCCESS, "success"),
        (Event.FAILURE, "failure"),
        (Event.TIMEOUT, "timeout"),
        (Event.BAD_REQUEST, "bad-request"),
        (Event.CANCELLED, "cancelled"),
    ],
    ids=str,
)
def test_a_permit_ends_with_the_event_it_is_given(event: Event, key: str) -> None:
    """Each primary event a run can end with is counted as given, exactly once."""
    permit = breaker.acquire(NAME)
    assert permit.end(event) is True
    assert permit.end(Event.SUCCESS) is False
    assert permit.ended
    assert counted() == {key: 1}
    assert stats().active == 0


@pytest.mark.parametrize(
    ("event", "error"),
    [
        (Event.SHORT_CIRCUIT, ValueError),
        (Event.REJECTED, ValueError),
        (Event.SLOW, ValueError),
        ("success", TypeError),
        (None, TypeError),
        (0, TypeError),
    ],
    ids=repr,
)
def test_a_permit_refuses_an_event_a_run_cannot_end_with(event: Any, error: type[Exception]) -> None:
    """An event that is no run's end is refused with an error naming it; the permit stays open."""
    permit = breaker.acquire(NAME)
    with pytest.raises(error, match="a permit ends with"):
        permit.end(event)
    assert not permit.ended
    assert stats().active == 1
    assert counted() == {}
    permit.end()


@pytest.mark.parametrize("seconds", [-1.0, math.inf, math.nan, True, "1"], ids=repr)
def test_a_permit_refuses_a_bad_duration(seconds: Any) -> None:
    """``seconds`` must be a finite number >= 0; nothing is counted when it is not."""
    permit = breaker.acquire(NAME)
    with pytest.raises(ValueError, match="seconds must be"):
        permit.end(seconds=seconds)
    assert counted() == {}
    assert permit.end(seconds=0.5)


def test_a_slow_end_is_also_counted_slow() -> None:
    """A success or failure whose duration reaches ``slow_call_duration`` is counted as slow beside it."""
    breaker.configure_command(NAME, CommandConfig(slow_call_duration=1.0))
    breaker.acquire(NAME).end(seconds=1.0)
    breaker.acquire(NAME).end(Event.FAILURE, seconds=2.0)
    breaker.acquire(NAME).end(seconds=0.5)
    breaker.acquire(NAME).end(Event.TIMEOUT, seconds=5.0)
    assert counted() == {"success": 2, "failure": 1, "timeout": 1, "slow": 2}


def test_an_open_circuit_refuses_a_permit_with_retry_after(clock: FakeClock) -> None:
    """A forced-open circuit raises CircuitOpenError from acquire, counted as a short-circuit."""
    breaker.configure_command(NAME, CommandConfig(force_open=True))
    with pytest.raises(CircuitOpenError) as raised:
        breaker.acquire(NAME)
    assert raised.value.name == NAME
    assert counted() == {"short-circuit": 1}


def test_no_free_ticket_refuses_a_permit() -> None:
    """With every ticket held, acquire raises MaxConcurrencyError, counted as rejected."""
    breaker.configure_command(NAME, CommandConfig(max_concurrent_requests=1))
    held = breaker.acquire(NAME)
    with pytest.raises(MaxConcurrencyError):
        breaker.acquire(NAME)
    held.end()
    assert counted() == {"rejected": 1, "success": 1}
    breaker.acquire(NAME).end()


def test_a_permit_can_be_the_probe_that_closes_or_reopens(clock: FakeClock) -> None:
    """After the sleep window the next permit is the probe: its end closes or reopens the circuit."""
    breaker.configure_command(NAME, CommandConfig(request_volume_threshold=2, sleep_window=5.0))
    for _ in range(2):
        breaker.acquire(NAME).end(Event.FAILURE)
    assert stats().state is State.OPEN
    clock.advance(5.0)
    probe = breaker.acquire(NAME)
    with pytest.raises(CircuitOpenError) as raised:
        breaker.acquire(NAME)  # one probe at a time
    assert raised.value.retry_after == 0.0
    probe.end(Event.FAILURE)
    assert stats().state is State.OPEN
    clock.advance(5.0)
    breaker.acquire(NAME).end()
    assert stats().state is State.CLOSED


def test_with_counts_a_success_or_the_exception_by_the_rule(clock: FakeClock) -> None:
    """As a context manager a permit ends by `breaker.do`'s rule: success, failure, bad request, late success."""
    breaker.configure_command(NAME, CommandConfig(timeout=1.0, ignored_exceptions=(KeyError,)))
    with breaker.acquire(NAME):
        pass
    with pytest.raises(ValueError, match="boom"), breaker.acquire(NAME):
        raise ValueError("boom")
    with pytest.raises(KeyError), breaker.acquire(NAME):
        raise KeyError("bad input")
    with breaker.acquire(NAME):
        clock.advance(2.0)  # outlasted the timeout: a timeout when it ends
    with breaker.acquire(NAME) as permit:
        permit.end(Event.BAD_REQUEST)  # ended in the block: leaving it adds nothing
    assert counted() == {"success": 1, "failure": 1, "bad-request": 2, "timeout": 1}
    assert stats().active == 0


def test_threads_racing_to_end_one_permit_count_it_once() -> None:
    """Many threads ending one permit at once: exactly one ends it; one count, one ticket back."""
    breaker.configure_command(NAME, CommandConfig(force_closed=True))  # 50 failures in a row must not trip it
    for _ in range(50):
        permit = breaker.acquire(NAME)
        start = threading.Barrier(8)
        wins: list[bool] = []

        def end(permit: breaker.Permit = permit, start: threading.Barrier = start, wins: list[bool] = wins) -> None:
            start.wait(WAIT)
            wins.append(permit.end(Event.FAILURE))

        threads = [threading.Thread(target=end) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT)
        assert sorted(wins) == [False] * 7 + [True]
    assert counted() == {"failure": 50}
    assert stats().active == 0


def test_end_nowait_never_waits_for_the_lock(hold_lock: Callable[[], LockHolder]) -> None:
    """With the lock held elsewhere, end_nowait returns at once; a worker ends the call once the lock is free."""
    breaker.configure_command(NAME, CommandConfig(slow_call_duration=1.0))
    permit = breaker.acquire(NAME)
    holder = hold_lock()
    assert permit.end_nowait(Event.SUCCESS, seconds=2.0) is True  # slow: a locked step
    assert permit.end_nowait() is False
    assert stats_without_lock_active() == 1  # not counted yet: the step waits for the lock on a worker
    holder.release()
    wait_until(lambda: stats().active == 0)
    assert counted() == {"success": 1, "slow": 1}


def stats_without_lock_active() -> int:
    """Tickets in use, read without the engine's lock (held by the test)."""
    return engine_of(breaker.get_circuit(NAME)[0]).active


def wait_until(condition: Any) -> None:
    for _ in range(10_000):
        if condition():
            return
        threading.Event().wait(0.001)
    raise AssertionError("never happened")


def test_collectors_get_a_record_of_each_permit_and_refusal() -> None:
    """Collectors receive one CallResult per ended permit and per refused acquire."""
    records: list[CallResult] = []

    class Collector:
        def update(self, result: CallResult) -> None:
            records.append(result)

        def reset(self) -> None:
            pass

    breaker.register_collector(lambda name: Collector())
    breaker.configure_command(NAME, CommandConfig(max_concurrent_requests=1))
    permit = breaker.acquire(NAME)
    with pytest.raises(MaxConcurrencyError):
        breaker.acquire(NAME)
    permit.end(Event.FAILURE, seconds=0.5)
    assert [(r.event, r.run_duration) for r in records] == [(Event.REJECTED, 0.0), (Event.FAILURE, 0.5)]
    assert records[1].concurrency_in_use == 1.0


def test_fall_back_counts_the_fallback() -> None:
    """`breaker.fall_back` answers with the fallback's value, counted; a raising fallback is a FallbackError."""
    error = ValueError("run failed")
    assert breaker.fall_back(NAME, error, lambda e, x: (str(e), x), 7) == ("run failed", 7)

    def broken(e: BaseException) -> str:
        raise RuntimeError("fallback failed")

    with pytest.raises(breaker.FallbackError) as raised:
        breaker.fall_back(NAME, error, broken)
    assert raised.value.run_error is error
    assert counted() == {"fallback-success": 1, "fallback-failure": 1}
    with pytest.raises(TypeError, match="fallback"):
        breaker.fall_back(NAME, error, "not callable")  # type: ignore[arg-type]


# -- async ----------------------------------------------------------------------------------------------------------


def test_async_permits_share_the_circuit_with_sync_ones() -> None:
    """acquire_async and end_async count into the same circuit as sync permits; async with applies the rule."""

    async def scenario() -> None:
        permit = await breaker.acquire_async(NAME)
        assert stats().active == 1
        assert await permit.end_async(Event.FAILURE) is True
        assert await permit.end_async() is False
        async with await breaker.acquire_async(NAME):
            pass
        with pytest.raises(ValueError, match="boom"):
            async with await breaker.acquire_async(NAME):
                raise ValueError("boom")

    asyncio.run(scenario())
    breaker.acquire(NAME).end()
    assert counted() == {"failure": 2, "success": 2}
    assert stats().active == 0
    assert stats().isolation == "thread+asyncio"


def test_end_async_waits_for_the_lock_without_blocking_the_loop(hold_lock: Callable[[], LockHolder]) -> None:
    """With a thread holding the lock, end_async hands the step to a worker; the loop keeps running meanwhile."""
    breaker.configure_command(NAME, CommandConfig(timeout=math.inf))

    async def scenario() -> None:
        permit = await breaker.acquire_async(NAME)
        holder = hold_lock()
        ending = asyncio.ensure_future(permit.end_async(Event.TIMEOUT))  # a timeout always takes the lock
        for _ in range(200):
            await asyncio.sleep(0)
        assert not ending.done()  # still waiting for the lock, and the loop turned 200 times meanwhile
        holder.release()
        assert await asyncio.wait_for(ending, WAIT) is True

    asyncio.run(scenario())
    assert counted() == {"timeout": 1}
    assert stats().active == 0


def test_a_task_cancelled_while_its_end_waits_still_ends_the_call(hold_lock: Callable[[], LockHolder]) -> None:
    """Cancelled while end_async waits for the lock: the call is ended all the same, then CancelledError raised."""

    async def scenario() -> None:
        permit = await breaker.acquire_async(NAME)
        holder = hold_lock()
        ending = asyncio.ensure_future(permit.end_async(Event.BAD_REQUEST))
        for _ in range(10):
            await asyncio.sleep(0)
        ending.cancel()
        for _ in range(10):
            await asyncio.sleep(0)
        holder.release()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(ending, WAIT)

    asyncio.run(scenario())
    assert counted() == {"bad-request": 1}
    assert stats().active == 0


def test_a_task_cancelled_while_acquire_waits_gets_no_permit_and_keeps_no_ticket(
    clock: FakeClock, hold_lock: Callable[[], LockHolder]
) -> None:
    """Cancelled while acquire_async waits for the lock to decide: the admitted call ends as cancelled."""
    breaker.configure_command(NAME, CommandConfig(request_volume_threshold=1, sleep_window=1.0))
    breaker.acquire(NAME).end(Event.FAILURE)
    assert stats().state is State.OPEN
    clock.advance(1.0)  # the next call is the probe: decided under the lock

    async def scenario() -> None:
        holder = hold_lock()
        acquiring = asyncio.ensure_future(breaker.acquire_async(NAME))
        for _ in range(10):
            await asyncio.sleep(0)
        acquiring.cancel()
        for _ in range(10):
            await asyncio.sleep(0)
        holder.release()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(acquiring, WAIT)

    asyncio.run(scenario())
    assert counted() == {"failure": 1, "cancelled": 1}
    assert stats().active == 0
    breaker.acquire(NAME).end()  # the probe slot came back: a new probe goes through and closes the circuit
    assert stats().state is State.CLOSED


# -- retryable, configure_command(replace=False) ---------------------------------------------------------------------


class Status(Exception):
    """An HTTP client's status error, as httpx and requests carry it: ``.response.status_code``."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.response = type("Response", (), {"status_code": status})()


class AioStatus(Exception):
    """aiohttp's ClientResponseError carries ``.status``."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ValueError("a run's failure"), True),
        (breaker.CommandTimeoutError("x", 1.0), True),
        (breaker.FailedResultError("x", 503), True),
        (CircuitOpenError("x", 1.0), False),
        (MaxConcurrencyError("x", 10), False),
        (breaker.FallbackError("x", ValueError("run"), RuntimeError("fb")), True),
        (breaker.FallbackError("x", CircuitOpenError("x", 1.0), RuntimeError("fb")), False),
        (KeyboardInterrupt(), False),
        (asyncio.CancelledError(), False),
        (Status(503), True),
        (Status(429), True),
        (Status(404), False),
        (AioStatus(502), True),
        (AioStatus(400), False),
    ],
    ids=lambda v: repr(v) if isinstance(v, BaseException) else str(v),
)
def test_retryable(error: BaseException, expected: bool) -> None:
    """A run's failure or timeout is worth retrying; a refusal, a bad request or an interrupt is not."""
    assert breaker.retryable(error) is expected


@pytest.mark.parametrize("call", ["do", "decorated", "thread", "async"])
def test_an_ignored_exception_is_not_retryable(call: str) -> None:
    """An error counted as a bad request (one of ignored_exceptions) is marked so that retryable says False."""
    breaker.configure_command(
        NAME, CommandConfig(ignored_exceptions=(KeyError,), isolation="thread" if call == "thread" else "caller")
    )
    error = KeyError("bad input")

    def run() -> None:
        raise error

    async def run_async() -> None:
        raise error

    def through_the_breaker() -> None:
        if call == "async":
            asyncio.run(breaker.do_async(NAME, run_async))
        elif call == "decorated":
            breaker.command(NAME)(run)()
        else:
            breaker.do(NAME, run)

    with pytest.raises(KeyError):
        through_the_breaker()
    assert counted() == {"bad-request": 1}
    assert breaker.retryable(error) is False
    assert breaker.retryable(KeyError("never through the breaker")) is True


def test_configure_command_without_replace_keeps_an_existing_config() -> None:
    """replace=False sets a config only for a command that has none of its own, and says whether it did."""
    assert breaker.configure_command(NAME, CommandConfig(timeout=2.0), replace=False) is True
    assert breaker.configure_command(NAME, CommandConfig(timeout=3.0), replace=False) is False
    assert breaker.get_settings(NAME).timeout == 2.0
    assert breaker.configure_command(NAME, CommandConfig(timeout=4.0)) is True
    assert breaker.get_settings(NAME).timeout == 4.0


def test_tasks_waiting_for_a_held_lock_share_one_worker(hold_lock: Callable[[], LockHolder]) -> None:
    """Hundreds of tasks whose steps wait for a held lock are served by one worker thread, not one each."""
    breaker.configure_command(NAME, CommandConfig(max_concurrent_requests=300, force_closed=True))

    async def scenario() -> None:
        permits = [await breaker.acquire_async(NAME) for _ in range(200)]
        before = {t.name for t in threading.enumerate() if t.name.startswith("breaker-worker")}
        holder = hold_lock()
        endings = [asyncio.ensure_future(permit.end_async(Event.TIMEOUT)) for permit in permits]  # locked steps
        for _ in range(50):
            await asyncio.sleep(0)
        started = {t.name for t in threading.enumerate() if t.name.startswith("breaker-worker")} - before
        assert len(started) <= 1, started
        holder.release()
        assert all(await asyncio.wait_for(asyncio.gather(*endings), WAIT))

    asyncio.run(scenario())
    assert counted() == {"timeout": 200}
    assert stats().active == 0


def test_end_nowait_from_a_finalizer_inside_the_hand_off_section_does_not_deadlock(
    hold_lock: Callable[[], LockHolder],
) -> None:
    """A dropped response's finalizer may run in a collection triggered while its thread is inside the section that
    makes an engine's hand-off; ending its call there (the circuit's lock held elsewhere) must not wait on itself."""
    from breaker._run import aio

    breaker.configure_command(NAME, CommandConfig(timeout=math.inf))
    permit = breaker.acquire(NAME)
    holder = hold_lock()
    ended: list[bool] = []

    def finalizer_inside_the_section() -> None:
        with aio._hand_offs_lock:  # as a collection inside `_submit` would find it: held by this very thread
            ended.append(permit.end_nowait(Event.TIMEOUT))  # a timeout always takes the lock: a hand-off

    thread = threading.Thread(target=finalizer_inside_the_section, daemon=True)
    thread.start()
    thread.join(WAIT)
    assert not thread.is_alive(), "end_nowait waited on a lock its own thread held"
    assert ended == [True]
    holder.release()
    for _ in range(10_000):
        if stats().active == 0:
            break
        threading.Event().wait(0.001)
    assert counted() == {"timeout": 1}
    assert stats().active == 0
