"""How a circuit recovers, as callers see it: `CircuitOpenError.retry_after`.

The circuits read a `FakeClock`, so sleep windows pass instantly and the figures are exact.
"""

from __future__ import annotations

import asyncio
import math
import pickle
from collections.abc import Callable

import pytest
from drivers import ALL, HELD, NAME, SLEEP, TRIP, VALUE, Boom, Driver, Held, failing, ok, state, trip

import breaker
from breaker import CircuitOpenError, CommandConfig, State
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


# -- gradual recovery: probes_to_close, and a sleep window that grows after failed probes -----------------------


def retry_after(driver: Driver) -> float:
    """The retry_after of a short-circuited call made now."""
    with pytest.raises(CircuitOpenError) as refused:
        driver.call(NAME, ok)
    return refused.value.retry_after


@ALL
def test_probes_to_close_needs_that_many_successful_probes_in_a_row(driver: Driver, clock: FakeClock) -> None:
    """Half-open until the third probe succeeds, one probe at a time; each transition is seen once."""
    seen: list[tuple[str, str]] = []
    breaker.on_state_change(lambda name, old, new: seen.append((old.value, new.value)))
    driver.configure(probes_to_close=3, **TRIP)
    trip(driver)
    clock.advance(SLEEP)
    for probe in range(3):
        assert state() is (State.OPEN if probe == 0 else State.HALF_OPEN)
        assert driver.call(NAME, ok) == VALUE
    assert state() is State.CLOSED
    assert seen == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


@ALL
def test_a_failed_probe_before_enough_successes_reopens_and_starts_the_count_again(
    driver: Driver, clock: FakeClock
) -> None:
    """Two good probes, then a failed one: open again; after the sleep window, two good probes are not enough."""
    driver.configure(probes_to_close=3, **TRIP)
    trip(driver)
    clock.advance(SLEEP)
    driver.call(NAME, ok)
    driver.call(NAME, ok)
    with pytest.raises(Boom):
        driver.call(NAME, failing)
    assert state() is State.OPEN
    clock.advance(SLEEP)
    driver.call(NAME, ok)
    driver.call(NAME, ok)
    assert state() is State.HALF_OPEN
    driver.call(NAME, ok)
    assert state() is State.CLOSED


@ALL
def test_only_one_probe_is_in_flight_while_several_are_needed(
    driver: Driver, clock: FakeClock, held: Callable[[Driver], Held]
) -> None:
    """Between probes the circuit is half-open and every call but the probe is short-circuited."""
    driver.configure(probes_to_close=2, **TRIP)
    trip(driver)
    clock.advance(SLEEP)
    assert driver.call(NAME, ok) == VALUE  # the first probe
    probe = held(driver)
    probe.start()  # the second probe, in flight
    assert retry_after(driver) == 0.0  # short-circuited meanwhile
    assert state() is State.HALF_OPEN
    assert probe.release() == [HELD]
    assert state() is State.CLOSED


@ALL
def test_the_sleep_window_grows_after_each_failed_probe_up_to_its_cap_and_resets_on_close(
    driver: Driver, clock: FakeClock
) -> None:
    """5 s, then 10 s, then 15 s (20 capped), ...; a good probe closes; the next trip waits 5 s again."""
    driver.configure(sleep_window_multiplier=2.0, max_sleep_window=15.0, **TRIP)
    trip(driver)
    assert retry_after(driver) == SLEEP
    for expected in (10.0, 15.0, 15.0):
        clock.advance(retry_after(driver))
        with pytest.raises(Boom):
            driver.call(NAME, failing)  # the probe fails
        assert state() is State.OPEN
        assert retry_after(driver) == expected
        clock.advance(expected - 0.5)
        assert retry_after(driver) == 0.5  # short-circuited until the grown window ends
    clock.advance(0.5)
    assert driver.call(NAME, ok) == VALUE
    assert state() is State.CLOSED
    trip(driver)
    assert retry_after(driver) == SLEEP


@ALL
def test_a_new_multiplier_applies_at_once_to_an_open_circuit(driver: Driver, clock: FakeClock) -> None:
    """Live reconfiguration: the failed probes already counted grow the window by the new factor."""
    driver.configure(sleep_window_multiplier=2.0, **TRIP)
    trip(driver)
    clock.advance(SLEEP)
    with pytest.raises(Boom):
        driver.call(NAME, failing)
    assert retry_after(driver) == 10.0
    breaker.configure_command(NAME, CommandConfig(sleep_window_multiplier=3.0))
    assert retry_after(driver) == 15.0
    breaker.configure_command(NAME, CommandConfig(probes_to_close=2, sleep_window_multiplier=1.0))
    assert retry_after(driver) == SLEEP


def test_async_callers_recover_gradually_too(clock: FakeClock) -> None:
    """do_async: the grown sleep window, and two good probes to close."""
    breaker.configure_command(
        NAME, CommandConfig(probes_to_close=2, sleep_window_multiplier=2.0, isolation="caller", **TRIP)
    )

    async def failing_async() -> str:
        raise ValueError("down")

    async def fine() -> str:
        return "fine"

    async def refused_after() -> float:
        try:
            await breaker.do_async(NAME, fine)
        except CircuitOpenError as error:
            return error.retry_after
        raise AssertionError("not short-circuited")

    async def scenario() -> list[object]:
        seen: list[object] = []
        for _ in range(2):
            with pytest.raises(ValueError, match="down"):
                await breaker.do_async(NAME, failing_async)
        seen.append(await refused_after())
        clock.advance(SLEEP)
        with pytest.raises(ValueError, match="down"):
            await breaker.do_async(NAME, failing_async)  # the probe fails
        seen.append(await refused_after())
        clock.advance(2 * SLEEP)
        seen.append(await breaker.do_async(NAME, fine))
        seen.append(breaker.get_circuit(NAME)[0].state.value)
        seen.append(await breaker.do_async(NAME, fine))
        seen.append(breaker.get_circuit(NAME)[0].state.value)
        return seen

    assert asyncio.run(scenario()) == [SLEEP, 2 * SLEEP, "fine", "half_open", "fine", "closed"]
