"""Slow calls: a run that took at least ``slow_call_duration`` counts ``slow`` beside its success or failure, and
the slow-call rule trips the circuit on its own, with the error rule, or fails a probe; sync and async alike.

The circuits read a `FakeClock`; each run moves it by the duration it is meant to take.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from drivers import ALL, NAME, SLEEP, Boom, Driver, events, state, stats

import breaker
from breaker import CommandConfig, State
from breaker.testing import FakeClock

#: Trips on 2 requests when half are slow (or half are errors); a call of 2 s or more is slow.
SLOW_TRIP: dict[str, Any] = {
    "request_volume_threshold": 2,
    "slow_call_duration": 2.0,
    "slow_call_percent_threshold": 50,
    "error_percent_threshold": 100,
    "sleep_window": SLEEP,
    "timeout": 10.0,
}


def taking(clock: FakeClock, seconds: float, error: Exception | None = None) -> Callable[[], str]:
    """A run that takes exactly ``seconds`` on ``clock``, then returns "done" (or raises ``error``)."""

    def run() -> str:
        clock.advance(seconds)
        if error is not None:
            raise error
        return "done"

    return run


@ALL
def test_a_slow_success_and_a_slow_failure_also_count_slow(driver: Driver, clock: FakeClock) -> None:
    """At or above the duration: slow beside the event; just under it: not slow. Both windows and cumulative."""
    driver.configure(slow_call_duration=2.0, timeout=10.0)
    assert driver.call(NAME, taking(clock, 2.0)) == "done"
    assert driver.call(NAME, taking(clock, 1.5)) == "done"
    with pytest.raises(Boom):
        driver.call(NAME, taking(clock, 3.0, Boom("down")))
    assert events() == {"success": 2, "failure": 1, "slow": 2}
    assert stats().cumulative["slow"] == 2


@ALL
def test_slow_calls_alone_trip_the_circuit(driver: Driver, clock: FakeClock) -> None:
    """No error at all: two slow successes are 100% slow, at or above the 50% threshold with the volume floor."""
    driver.configure(**SLOW_TRIP)
    driver.call(NAME, taking(clock, 2.5))
    assert state() is State.CLOSED  # one request: under the volume floor
    driver.call(NAME, taking(clock, 2.5))
    assert state() is State.OPEN
    assert events() == {"success": 2, "slow": 2}


@ALL
def test_fast_successes_reaching_the_volume_floor_trip_on_slow_calls_already_there(
    driver: Driver, clock: FakeClock
) -> None:
    """Two slow calls of four requests with a floor of four: the fourth (fast) request trips it at 50%."""
    driver.configure(**{**SLOW_TRIP, "request_volume_threshold": 4})
    for seconds in (2.5, 2.5, 0.1):
        driver.call(NAME, taking(clock, seconds))
        assert state() is State.CLOSED
    driver.call(NAME, taking(clock, 0.1))
    assert state() is State.OPEN


@ALL
def test_the_error_rule_and_the_slow_rule_each_trip_by_their_own_threshold(driver: Driver, clock: FakeClock) -> None:
    """Errors at 50% trip with error_percent_threshold 50 although nothing is slow."""
    driver.configure(**{**SLOW_TRIP, "error_percent_threshold": 50})
    driver.call(NAME, taking(clock, 0.1))
    with pytest.raises(Boom):
        driver.call(NAME, taking(clock, 0.1, Boom("down")))
    assert state() is State.OPEN
    assert "slow" not in events()


@ALL
def test_a_slow_probe_fails_and_a_fast_one_closes(driver: Driver, clock: FakeClock) -> None:
    """The probe succeeded but took longer than slow_call_duration: the circuit reopens; a quick probe closes it."""
    driver.configure(**SLOW_TRIP)
    driver.call(NAME, taking(clock, 2.5))
    driver.call(NAME, taking(clock, 2.5))
    assert state() is State.OPEN
    clock.advance(SLEEP)
    assert driver.call(NAME, taking(clock, 3.0)) == "done"  # the caller still gets the value
    assert state() is State.OPEN
    clock.advance(SLEEP)
    driver.call(NAME, taking(clock, 0.5))
    assert state() is State.CLOSED


@ALL
def test_slow_call_settings_apply_at_once_and_keep_the_counts(driver: Driver, clock: FakeClock) -> None:
    """Live reconfiguration: a duration set later counts the next slow call; the counts stay."""
    driver.configure(timeout=10.0)
    driver.call(NAME, taking(clock, 3.0))
    breaker.configure_command(NAME, CommandConfig(slow_call_duration=2.0, timeout=10.0))
    driver.call(NAME, taking(clock, 3.0))
    assert events() == {"success": 2, "slow": 1}


def test_async_calls_count_slow_and_trip_on_it(clock: FakeClock) -> None:
    """do_async: a slow success, then a fast failure: 50% slow at the volume floor trips the circuit; a slow
    failure counts slow too."""
    breaker.configure_command(NAME, CommandConfig(**SLOW_TRIP))
    breaker.configure_command("other", CommandConfig(slow_call_duration=2.0, timeout=10.0))

    async def run(seconds: float, fail: bool = False) -> str:
        clock.advance(seconds)
        if fail:
            raise Boom("down")
        return "done"

    async def scenario() -> None:
        assert await breaker.do_async(NAME, lambda: run(2.5)) == "done"
        assert breaker.get_circuit(NAME)[0].state is State.CLOSED
        with pytest.raises(Boom):
            await breaker.do_async(NAME, lambda: run(0.5, fail=True))
        with pytest.raises(Boom):
            await breaker.do_async("other", lambda: run(2.5, fail=True))

    asyncio.run(scenario())
    assert state() is State.OPEN
    assert events() == {"success": 1, "failure": 1, "slow": 1}
    assert events("other") == {"failure": 1, "slow": 1}
