"""Failed results: ``result_is_failure`` judges what a run returned, on every path, sync and async.

A value the predicate calls a failure counts as a `failure` (in requests and errors, tripping the circuit and
failing a probe); the fallback gets a `FailedResultError` and answers, and without one the caller gets the result
unchanged. The predicate is asked only about runs that returned in time: never for short-circuited or rejected
calls. A predicate that raises makes the call a failure with its exception, logged once.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable

import pytest
from drivers import ALL, NAME, SLEEP, TRIP, Driver, Fallback, events, state

import breaker
from breaker import CircuitOpenError, CommandConfig, FailedResultError, MaxConcurrencyError, State
from breaker.testing import FakeClock


class Response:
    """What an HTTP client returns: a status the predicate reads."""

    def __init__(self, status: int) -> None:
        self.status = status

    def __repr__(self) -> str:
        return f"Response({self.status})"


class Judge:
    """A predicate counting the values it was asked about."""

    def __init__(self) -> None:
        self.asked: list[object] = []

    def __call__(self, value: object) -> bool:
        self.asked.append(value)
        return isinstance(value, Response) and value.status >= 500


def returning(status: int) -> Callable[[], Response]:
    return lambda: Response(status)


@ALL
def test_a_failed_result_without_fallback_is_returned_and_counted_a_failure(driver: Driver) -> None:
    """The caller gets the 503 response as it is; the window holds a failure; a 200 is a success."""
    driver.configure(result_is_failure=Judge())
    bad = driver.call(NAME, returning(503))
    assert isinstance(bad, Response)
    assert bad.status == 503
    assert driver.call(NAME, returning(200)).status == 200
    assert events() == {"failure": 1, "success": 1}


@ALL
def test_the_fallback_gets_a_failed_result_error_and_answers(driver: Driver) -> None:
    """FailedResultError carries the command's name and the result; the fallback's value is the call's."""
    driver.configure(result_is_failure=Judge())
    fallback = Fallback()
    assert driver.call(NAME, returning(500), fallback) == "fallback"
    (error,) = fallback.errors
    assert isinstance(error, FailedResultError)
    assert isinstance(error, breaker.CircuitError)
    assert error.name == NAME
    assert isinstance(error.result, Response)
    assert error.result.status == 500
    assert "Response(500)" in str(error)
    assert events() == {"failure": 1, "fallback-success": 1}


@ALL
def test_failed_results_trip_the_circuit_and_fail_a_probe(driver: Driver, clock: FakeClock) -> None:
    """Two failed results trip it; after the sleep window a failed result as the probe reopens it."""
    driver.configure(result_is_failure=Judge(), **TRIP)
    driver.call(NAME, returning(502))
    driver.call(NAME, returning(502))
    assert state() is State.OPEN
    clock.advance(SLEEP)
    assert driver.call(NAME, returning(502)).status == 502  # the probe, judged a failure
    assert state() is State.OPEN
    clock.advance(SLEEP)
    assert driver.call(NAME, returning(200)).status == 200
    assert state() is State.CLOSED


@ALL
def test_the_predicate_is_never_asked_about_refused_calls(driver: Driver) -> None:
    """Short-circuited and rejected calls never ran: nothing to judge."""
    judge = Judge()
    driver.configure(result_is_failure=judge, force_open=True)
    with pytest.raises(CircuitOpenError):
        driver.call(NAME, returning(200))
    driver.configure(result_is_failure=judge, max_concurrent_requests=1)

    def nested() -> Response:
        with pytest.raises(MaxConcurrencyError):
            driver.call(NAME, returning(200))  # the one ticket is held by this run
        return Response(200)

    driver.call(NAME, nested)
    assert [getattr(value, "status", value) for value in judge.asked] == [200]


class Broken(Exception):
    """What a broken predicate raises."""


@ALL
def test_a_predicate_that_raises_makes_the_call_a_failure_with_its_error(
    driver: Driver, caplog: pytest.LogCaptureFixture
) -> None:
    """Without a fallback the predicate's error is raised; with one, the fallback gets it; logged once."""
    calls = itertools.count()

    def broken(value: object) -> bool:
        raise Broken(f"cannot judge {next(calls)}")

    driver.configure(result_is_failure=broken)
    with pytest.raises(Broken):
        driver.call(NAME, returning(200))
    fallback = Fallback()
    assert driver.call(NAME, returning(200), fallback) == "fallback"
    assert isinstance(fallback.errors[0], Broken)
    assert events() == {"failure": 2, "fallback-success": 1}
    assert len([r for r in caplog.records if "result_is_failure raised" in r.getMessage()]) == 1


@ALL
def test_a_predicate_configured_later_applies_at_once(driver: Driver) -> None:
    """Live reconfiguration: the next call is judged; taking the predicate away makes it a success again."""
    driver.configure()
    driver.call(NAME, returning(500))
    breaker.configure_command(NAME, CommandConfig(result_is_failure=Judge()))
    driver.call(NAME, returning(500))
    breaker.configure_command(NAME, CommandConfig(result_is_failure=None))
    driver.call(NAME, returning(500))
    assert events() == {"success": 2, "failure": 1}


def test_async_calls_judge_their_results_the_same_way(caplog: pytest.LogCaptureFixture) -> None:
    """do_async: returned unchanged without a fallback, FailedResultError to the fallback, broken predicates."""
    breaker.configure_command(NAME, CommandConfig(result_is_failure=Judge()))

    async def respond(status: int) -> Response:
        return Response(status)

    async def scenario() -> list[object]:
        seen: list[object] = []
        seen.append((await breaker.do_async(NAME, lambda: respond(503))).status)
        fallback = Fallback()
        seen.append(await breaker.do_async(NAME, lambda: respond(503), fallback))
        seen.append(type(fallback.errors[0]).__name__)
        seen.append((await breaker.do_async(NAME, lambda: respond(200))).status)
        return seen

    assert asyncio.run(scenario()) == [503, "fallback", "FailedResultError", 200]
    assert events() == {"failure": 2, "success": 1, "fallback-success": 1}

    def broken(value: object) -> bool:
        raise Broken("cannot judge")

    breaker.configure_command(NAME, CommandConfig(result_is_failure=broken))
    with pytest.raises(Broken):
        asyncio.run(breaker.do_async(NAME, lambda: respond(200)))
    assert events()["failure"] == 3


def test_the_decorator_judges_results_too() -> None:
    """@command: the fallback gets the error and the call's arguments."""
    breaker.configure_command(
        NAME, CommandConfig(result_is_failure=lambda value: value == "server error", isolation="caller")
    )
    received: list[object] = []

    def fallback(error: Exception, status: int) -> str:
        received.append((type(error).__name__, status))
        return "cached"

    @breaker.command(NAME, fallback=fallback)
    def fetch(status: int) -> str:
        return f"status {status}" if status < 500 else "server error"

    assert fetch(504) == "cached"
    assert received == [("FailedResultError", 504)]


@ALL
def test_collectors_see_a_failed_result_as_a_failure(driver: Driver) -> None:
    """With or without a fallback, the collector's record says failure, as statistics() counts it."""
    records: list[breaker.CallResult] = []

    class Recorder:
        def update(self, result: breaker.CallResult) -> None:
            records.append(result)

        def reset(self) -> None:
            pass

    breaker.register_collector(lambda name: Recorder())
    driver.configure(result_is_failure=Judge())
    driver.call(NAME, returning(503))
    driver.call(NAME, returning(503), Fallback())
    driver.call(NAME, returning(200))
    assert [r.event.value for r in records] == ["failure", "failure", "success"]
    assert events() == {"failure": 2, "success": 1, "fallback-success": 1}
