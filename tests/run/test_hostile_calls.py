"""Calls a careless user or a hostile type makes: each is refused up front or ends exact, never leaking a ticket.

- an ``ignored_exceptions`` type whose ``isinstance`` check raises: the call is the run's failure, ticket back;
- a probe in flight when its command's timeout is reconfigured: the new timeout is its deadline, so a hung probe
  cannot keep the circuit half-open for good;
- a sync call whose run returns a coroutine or an asyncio future (an ``async def`` passed to `breaker.do`):
  a `TypeError` naming the command and pointing to `breaker.do_async`, nothing counted, the ticket back;
- ``@command`` on a generator or async generator function, or with a fallback that cannot take the decorated
  function's arguments: refused when decorating;
- a finished call keeps no reference to its function's arguments, result or exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from drivers import (
    ALL,
    DRIVERS,
    NAME,
    SLEEP,
    TRIP,
    VALUE,
    WAIT,
    WITH_FALLBACK,
    Boom,
    Driver,
    Fallback,
    events,
    failing,
    ok,
    settle,
    state,
    stats,
    trip,
    wait_until,
)

import breaker
from breaker import CommandConfig, State
from breaker.testing import FakeClock


class RaisingCheck(type):
    """A metaclass whose ``isinstance`` check raises, as a broken or hostile exception type's may."""

    def __instancecheck__(cls, instance: object) -> bool:
        raise RuntimeError("isinstance check exploded")


@pytest.fixture
def unmatchable() -> type[Exception]:
    """A new exception type, configured as ignored, whose check raises (a new one per test: a broken check is
    logged once per configuration and error type)."""
    made: type[Exception] = RaisingCheck("Unmatchable", (Exception,), {})  # type: ignore[assignment]
    return made


@ALL
@WITH_FALLBACK
def test_an_ignored_exception_check_that_raises_is_the_calls_failure(
    driver: Driver, with_fallback: bool, unmatchable: type[Exception], caplog: pytest.LogCaptureFixture
) -> None:
    """The check's own error is logged; the call is the run's failure (fallback as usual) and its ticket is back."""
    driver.configure(ignored_exceptions=(unmatchable,), max_concurrent_requests=1)
    fallback = Fallback() if with_fallback else None
    for _ in range(3):  # one ticket: a leaked one would reject the next call
        if fallback is None:
            with pytest.raises(Boom):
                driver.call(NAME, failing)
        else:
            assert driver.call(NAME, failing, fallback) == "fallback"
        settle()
    assert events() == ({"failure": 3, "fallback-success": 3} if with_fallback else {"failure": 3})
    assert stats().active == 0
    assert driver.call(NAME, ok) == VALUE
    assert "ignored_exceptions" in caplog.text
    assert "isinstance check exploded" in caplog.text


def test_an_ignored_exception_check_that_raises_in_an_async_call_is_its_failure(
    unmatchable: type[Exception], caplog: pytest.LogCaptureFixture
) -> None:
    """The async path judges the run's error by the same rule: a failure, ticket back, the check's error logged."""
    breaker.configure_command(NAME, CommandConfig(ignored_exceptions=(unmatchable,), max_concurrent_requests=1))

    async def failing_async() -> str:
        raise Boom("down")

    async def scenario() -> None:
        for _ in range(3):
            with pytest.raises(Boom):
                await breaker.do_async(NAME, failing_async)

    asyncio.run(scenario())
    assert events() == {"failure": 3}
    assert stats().active == 0
    assert len([r for r in caplog.records if "ignored_exceptions" in r.getMessage()]) == 1  # once, not per call


@pytest.mark.parametrize("isolation", ["caller", "thread"])
def test_a_reconfigured_timeout_is_the_deadline_of_the_probe_in_flight(isolation: str, clock: FakeClock) -> None:
    """A probe started with no timeout hangs; once a timeout is configured, the probe is judged by it."""
    driver = next(d for d in DRIVERS if d.id == ("do-caller" if isolation == "caller" else "do-thread"))
    driver.configure(timeout=float("inf"), **TRIP)
    trip(driver)
    clock.advance(SLEEP)
    release = threading.Event()
    started = threading.Event()

    def hung() -> str:
        started.set()
        release.wait(WAIT)
        return VALUE

    outcomes: list[object] = []

    def probe() -> None:
        try:
            outcomes.append(driver.call(NAME, hung))
        except breaker.CommandTimeoutError as error:  # judged by the timeout it outlived
            outcomes.append(error)

    prober = threading.Thread(target=probe, name="hung-probe", daemon=True)
    prober.start()
    try:
        assert started.wait(WAIT)
        assert state() is State.HALF_OPEN
        clock.advance(3600.0)  # without a timeout, the probe may take as long as it likes
        with pytest.raises(breaker.CircuitOpenError):
            driver.call(NAME, ok)
        assert state() is State.HALF_OPEN
        breaker.configure_command(NAME, CommandConfig(timeout=1.0))
        clock.advance(1.0)  # the probe has now outlived its (new) timeout by far: it failed
        with pytest.raises(breaker.CircuitOpenError):
            driver.call(NAME, ok)
        assert state() is State.OPEN
        clock.advance(SLEEP)
        assert driver.call(NAME, ok) == VALUE  # the next probe goes through and closes the circuit
        assert state() is State.CLOSED
    finally:
        release.set()
        prober.join(WAIT)
    assert not prober.is_alive()
    # Caller isolation judges the returned probe by the timeout it outlived; thread isolation's caller had no
    # timeout to wait for, and takes the value. Either way the late outcome no longer moves the circuit.
    assert len(outcomes) == 1
    assert state() is State.CLOSED


async def coroutine_run() -> str:
    return VALUE


def future_run() -> asyncio.Future[str]:
    loop = asyncio.new_event_loop()
    try:
        future: asyncio.Future[str] = loop.create_future()
        future.set_result(VALUE)
        return future
    finally:
        loop.close()


@ALL
@pytest.mark.parametrize("run", [coroutine_run, future_run], ids=["coroutine", "asyncio-future"])
def test_a_sync_call_refuses_a_run_that_returns_an_awaitable(driver: Driver, run: Callable[[], Any]) -> None:
    """TypeError naming the command and do_async; nothing counted; the ticket back; no never-awaited warning."""
    driver.configure(max_concurrent_requests=1)
    for _ in range(2):
        with pytest.raises(TypeError, match=rf"{NAME!r}.*do_async"):
            driver.call(NAME, run)
        settle()
    assert events() == {}
    assert driver.call(NAME, ok) == VALUE
    assert events() == {"success": 1}


def test_go_refuses_an_async_function_before_anything_is_counted() -> None:
    """`go()` with an ``async def``: its future raises the same TypeError; nothing counted."""
    future = breaker.go(NAME, coroutine_run)
    with pytest.raises(TypeError, match="do_async"):
        _ = future.result(WAIT)
    settle()
    assert events() == {}


def generator_function() -> Iterator[int]:
    yield 1


async def async_generator_function() -> AsyncIterator[int]:
    yield 1


@pytest.mark.parametrize("fn", [generator_function, async_generator_function], ids=["generator", "async-generator"])
def test_command_refuses_a_generator_function_when_decorating(fn: Callable[..., Any]) -> None:
    """Its calls would return before any of its code ran: exceptions raised while iterating could never count."""
    with pytest.raises(TypeError, match=rf"{NAME!r}.*{fn.__name__}.*generator"):
        breaker.command(NAME)(fn)
    assert breaker.get_circuit(NAME)[0].statistics().counts["success"] == 0


def two_args(a: int, b: int = 2, *, c: int = 3) -> int:
    return a + b + c


def fallback_error_only(error: Exception) -> int:
    return 0


def fallback_missing_keyword(error: Exception, a: int, b: int = 2) -> int:
    return 0


def fallback_requires_more(error: Exception, a: int, b: int, c: int, d: int) -> int:
    return 0


def fallback_exact(error: Exception, a: int, b: int = 0, *, c: int = 0) -> int:
    return -1


def fallback_anything(error: Exception, *args: Any, **kwargs: Any) -> int:
    return -1


@pytest.mark.parametrize(
    "fallback",
    [fallback_error_only, fallback_missing_keyword, fallback_requires_more],
    ids=["error-only", "missing-keyword", "requires-more"],
)
def test_command_refuses_a_fallback_that_cannot_take_the_functions_arguments(fallback: Callable[..., int]) -> None:
    """Found when decorating, not during an outage: a TypeError naming the command and the fallback."""
    with pytest.raises(TypeError, match=rf"{NAME!r}.*{fallback.__name__}"):
        breaker.command(NAME, fallback=fallback)(two_args)


@pytest.mark.parametrize("fallback", [fallback_exact, fallback_anything], ids=["exact", "catch-all"])
def test_command_accepts_a_fallback_that_takes_every_call_of_the_function(fallback: Callable[..., int]) -> None:
    """A fallback matching the function's parameters, or taking anything, is accepted and used."""
    breaker.configure_command(NAME, CommandConfig(isolation="caller"))

    def down(a: int, b: int = 2, *, c: int = 3) -> int:
        raise Boom("down")

    decorated = breaker.command(NAME, fallback=fallback)(down)
    assert decorated(1) == -1
    assert decorated(1, b=5, c=6) == -1


class Payload:
    """An object whose lifetime the test follows with a weak reference."""


@ALL
@pytest.mark.parametrize("outcome", ["value", "error"])
def test_a_finished_call_keeps_no_reference_to_its_arguments_result_or_error(driver: Driver, outcome: str) -> None:
    """After the call answered, nothing in the library keeps the run's function, arguments, value or exception."""
    refs: list[weakref.ref[Any]] = []

    def make_call() -> None:
        argument, result = Payload(), Payload()
        error = Boom("down")
        refs.extend([weakref.ref(argument), weakref.ref(result), weakref.ref(error)])

        def run(held: Payload = argument) -> Payload:
            if outcome == "error":
                raise error
            return result

        refs.append(weakref.ref(run))
        with contextlib.suppress(Boom):
            driver.call(NAME, run)

    driver.configure()
    make_call()
    settle()

    def all_gone() -> bool:
        gc.collect()
        return all(ref() is None for ref in refs)

    wait_until(all_gone, "every object of the finished call was freed")
