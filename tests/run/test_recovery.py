"""How a circuit recovers, as callers see it: `CircuitOpenError.retry_after`.

The circuits read a `FakeClock`, so sleep windows pass instantly and the figures are exact.
"""

from __future__ import annotations

import asyncio
import math
import pickle
from collections.abc import Callable

import pytest
from drivers import ALL, HELD, NAME, SLEEP, TRIP, Driver, Held, ok, trip

import breaker
from breaker import CircuitOpenError, CommandConfig
from breaker.testing import FakeClock


@ALL
def test_retry_after_counts_down_the_sleep_window(driver: Driver, clock: FakeClock) -> None:
    """Short-circuited calls learn when a probe may go: the sleep window's end, then 0.0."""
    driver.configure(**TRIP)
    trip(driver)
    with pytest.raises(CircuitOpenError) as opened:
        driver.call(NAME, ok)
    assert opened.value.retry_after == SLEEP
    clock.advance(SLEEP - 1.25)
    with pytest.raises(CircuitOpenError) as later:
        driver.call(NAME, ok)
    assert later.value.retry_after == 1.25
    assert "1.25 s" in str(later.value)


@ALL
def test_retry_after_is_zero_while_the_probe_is_in_flight(
    driver: Driver, clock: FakeClock, held: Callable[[Driver], Held]
) -> None:
    """Half-open: a probe is running, so a retry could go as soon as it succeeds."""
    driver.configure(**TRIP)
    trip(driver)
    clock.advance(SLEEP)
    probe = held(driver)
    probe.start()
    with pytest.raises(CircuitOpenError) as half_open:
        driver.call(NAME, ok)
    assert half_open.value.retry_after == 0.0
    assert probe.release() == [HELD]


@ALL
def test_retry_after_is_infinite_while_forced_open(driver: Driver) -> None:
    """No probe will go until someone unforces the circuit."""
    driver.configure(force_open=True)
    with pytest.raises(CircuitOpenError) as forced:
        driver.call(NAME, ok)
    assert forced.value.retry_after == math.inf


def test_retry_after_reaches_async_callers(clock: FakeClock) -> None:
    """do_async's short-circuits carry the same figure."""
    breaker.configure_command(NAME, CommandConfig(**TRIP))

    async def failing() -> str:
        raise ValueError("down")

    async def scenario() -> float:
        for _ in range(2):
            with pytest.raises(ValueError, match="down"):
                await breaker.do_async(NAME, failing)
        clock.advance(2.0)
        try:
            await breaker.do_async(NAME, failing)
        except CircuitOpenError as error:
            return error.retry_after
        raise AssertionError("not short-circuited")

    assert asyncio.run(scenario()) == SLEEP - 2.0


def test_a_circuit_open_error_made_by_hand_or_unpickled_keeps_its_figure() -> None:
    """The public constructor takes ``retry_after``; it survives pickling; the default is 0.0."""
    error = CircuitOpenError("payments", 3.5)
    assert error.retry_after == 3.5
    assert pickle.loads(pickle.dumps(error)).retry_after == 3.5
    assert CircuitOpenError("payments").retry_after == 0.0
