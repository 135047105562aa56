"""The sync drivers under concurrency: half-open stampedes, nested commands, live reconfiguration, flush().

The scenario table of test_execute.py continued (scenarios 9-12), through the same drivers and helpers.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from types import FrameType

import pytest
from drivers import (
    ALL,
    DECORATORS,
    FALLBACK,
    HELD,
    NAME,
    SLEEP,
    THREADED,
    TIMEOUT,
    TRIP,
    VALUE,
    WAIT,
    WITH_FALLBACK,
    Counter,
    Driver,
    Fallback,
    Held,
    events,
    ok,
    settle,
    state,
    stats,
    trip,
)

import breaker
from breaker import CircuitOpenError, CommandTimeoutError, MaxConcurrencyError, State
from breaker.testing import FakeClock


def library_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("breaker-worker-") or t.name == "breaker-timer"]


def assert_library_threads_end() -> None:
    """Every worker and timer thread ends within WAIT seconds."""
    deadline = time.monotonic() + WAIT
    for thread in library_threads():
        thread.join(max(0.0, deadline - time.monotonic()))
    assert [t.name for t in library_threads()] == []


# -- 9. half-open stampede ---------------------------------------------------------------------------------------------

STAMPEDE = 8


def stampede(driver: Driver, clock: FakeClock, fallback: Fallback | None) -> None:
    """Trip the circuit, pass the sleep window, and send STAMPEDE callers at once: one probe, the rest refused."""
    trip(driver)
    clock.advance(SLEEP)
    runs = Counter()
    refused = Counter()
    others_returned = threading.Event()
    barrier = threading.Barrier(STAMPEDE, timeout=WAIT)
    results: list[object] = [None] * STAMPEDE
    released: list[bool] = []

    def probe() -> str:
        runs.increment()
        released.append(others_returned.wait(WAIT))  # hold the probe until every other caller has its answer
        return VALUE

    def caller(i: int) -> None:
        try:
            barrier.wait()
            results[i] = driver.call(NAME, probe, fallback)
        except BaseException as error:  # recorded for the test to check
            results[i] = error
        if results[i] != VALUE and refused.increment() == STAMPEDE - 1:
            others_returned.set()

    threads = [threading.Thread(target=caller, args=(i,), name=f"stampede-{i}") for i in range(STAMPEDE)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(2 * WAIT)
    assert not [t for t in threads if t.is_alive()]
    assert runs.value == 1, results
    assert released == [True]
    assert results.count(VALUE) == 1
    others = [r for r in results if r != VALUE]
    if fallback is None:
        assert all(isinstance(r, CircuitOpenError) for r in others), others
    else:
        assert others == [FALLBACK] * (STAMPEDE - 1)
        assert all(isinstance(e, CircuitOpenError) for e in fallback.errors)
    assert state() is State.CLOSED


@ALL
def test_half_open_stampede_reaches_the_dependency_once(driver: Driver, clock: FakeClock) -> None:
    """8 callers released together after the sleep window: exactly one probe runs, 7 are short-circuited (x20)."""
    driver.configure(timeout=30.0, **TRIP)
    for round_ in range(20):
        stampede(driver, clock, Fallback() if round_ % 2 else None)


# -- 10. nested commands -----------------------------------------------------------------------------------------------


@ALL
def test_nested_commands_work_with_one_ticket_each(driver: Driver) -> None:
    """A's run calls B, whose run calls C, each with a single ticket, again and again."""
    for name in ("A", "B", "C"):
        driver.configure(name, max_concurrent_requests=1, timeout=30.0)

    def run_c() -> str:
        return "c"

    def run_b() -> str:
        return driver.call("C", run_c) + "b"

    def run_a() -> str:
        return driver.call("B", run_b) + "a"

    for _ in range(20):
        assert driver.call("A", run_a) == "cba"
    for name in ("A", "B", "C"):
        assert events(name) == {"success": 20}
        assert stats(name).active == 0


@WITH_FALLBACK
@ALL
def test_run_reentering_its_own_command_is_rejected_instead_of_deadlocking(driver: Driver, with_fallback: bool) -> None:
    """With one ticket, a run calling its own command gets MaxConcurrencyError or the fallback, never a hang."""
    driver.configure(max_concurrent_requests=1, timeout=30.0)
    inner_runs = Counter()
    fallback = Fallback() if with_fallback else None

    def inner() -> str:
        inner_runs.increment()
        return "inner"

    def outer() -> str:
        try:
            return "outer got " + driver.call(NAME, inner, fallback)
        except MaxConcurrencyError as error:
            return f"outer got {type(error).__name__} {error.name} {error.max_concurrent_requests}"

    result = driver.call(NAME, outer)
    assert inner_runs.value == 0
    if fallback is None:
        assert result == f"outer got MaxConcurrencyError {NAME} 1"
        assert events() == {"success": 1, "rejected": 1}
    else:
        assert result == f"outer got {FALLBACK}"
        assert [type(e) for e in fallback.errors] == [MaxConcurrencyError]
        assert events() == {"success": 1, "rejected": 1, "fallback-success": 1}


# -- 11. configuration of a live circuit -------------------------------------------------------------------------------


@ALL
def test_raising_max_concurrent_requests_during_traffic_admits_more_at_once(
    driver: Driver, held: Callable[[Driver], Held]
) -> None:
    """max_concurrent_requests raised from 1 to 3 with one run held: two more are admitted, counts are kept."""
    driver.configure(max_concurrent_requests=1, timeout=30.0)
    holder = held(driver)
    holder.start()
    with pytest.raises(MaxConcurrencyError):
        driver.call(NAME, ok)
    driver.configure(max_concurrent_requests=3, timeout=30.0)
    snapshot = stats()
    assert (snapshot.max_concurrent_requests, snapshot.active) == (3, 1)
    assert events() == {"rejected": 1}
    holder.start()
    holder.start()
    assert stats().active == 3
    with pytest.raises(MaxConcurrencyError):
        driver.call(NAME, ok)
    assert holder.release() == [HELD] * 3
    assert events() == {"rejected": 2, "success": 3}
    assert stats().active == 0


@ALL
def test_lowering_max_concurrent_requests_during_traffic_applies_as_tickets_return(
    driver: Driver, held: Callable[[Driver], Held]
) -> None:
    """max_concurrent_requests lowered from 3 to 1 with three runs held: no call is admitted until two return."""
    driver.configure(max_concurrent_requests=3, timeout=30.0)
    first = held(driver)
    for _ in range(3):
        first.start()
    driver.configure(max_concurrent_requests=1, timeout=30.0)
    assert stats().active == 3
    with pytest.raises(MaxConcurrencyError):
        driver.call(NAME, ok)
    assert first.release() == [HELD] * 3
    assert stats().active == 0
    second = held(driver)
    second.start()
    with pytest.raises(MaxConcurrencyError):
        driver.call(NAME, ok)
    assert second.release() == [HELD]
    assert driver.call(NAME, ok) == VALUE
    assert events() == {"rejected": 2, "success": 5}


# -- 12. flush() and threads -------------------------------------------------------------------------------------------


def test_flush_stops_idle_worker_and_timer_threads(gate: threading.Event) -> None:
    """After thread-isolated calls (and a go() timeout), flush() lets every library thread end."""
    breaker.configure_command(NAME, breaker.CommandConfig(timeout=TIMEOUT))
    assert breaker.do(NAME, ok) == VALUE
    assert breaker.go(NAME, ok).result(WAIT) == VALUE
    with pytest.raises(CommandTimeoutError):
        breaker.go(NAME, lambda: str(gate.wait(WAIT))).result(WAIT)
    gate.set()
    settle()
    names = {t.name for t in library_threads()}
    assert "breaker-timer" in names
    assert any(n.startswith("breaker-worker-") for n in names)
    breaker.flush()
    assert_library_threads_end()


def test_worker_started_just_before_flush_still_exits() -> None:
    """A worker thread whose call was submitted just before flush() ends once that call has."""
    breaker.configure_command(NAME, breaker.CommandConfig(timeout=math.inf))  # no timer thread
    entered = threading.Event()
    proceed = threading.Event()

    def hold_new_worker(frame: FrameType, event: str, arg: object) -> None:
        # Runs on each thread started while it is installed: stop the new worker as it enters its loop.
        if event == "call" and frame.f_code.co_name == "_serve":
            entered.set()
            proceed.wait(WAIT)

    previous = threading.gettrace()
    threading.settrace(hold_new_worker)
    try:
        future = breaker.go(NAME, ok)
    finally:
        threading.settrace(previous)
    assert entered.wait(WAIT)
    breaker.flush()
    proceed.set()
    assert future.result(WAIT) == VALUE
    assert_library_threads_end()


@THREADED
def test_call_in_flight_during_flush_finishes_then_its_worker_exits(
    driver: Driver, held: Callable[[Driver], Held]
) -> None:
    """A call running across flush() ends normally on its old circuit, and then its worker thread ends."""
    driver.configure(timeout=30.0)
    circuit = breaker.get_circuit(NAME)[0]
    holder = held(driver)
    holder.start()
    breaker.flush()
    assert any(t.name.startswith("breaker-worker-") for t in library_threads())
    assert holder.release() == [HELD]
    old = circuit.statistics()
    assert (old.counts["success"], old.active) == (1, 0)
    assert_library_threads_end()
    new, created = breaker.get_circuit(NAME)
    assert created
    assert new is not circuit
    assert new.statistics().counts["success"] == 0


@DECORATORS
def test_decorated_function_follows_flush_to_the_new_circuit(driver: Driver) -> None:
    """A decorated function used across flush() counts on the fresh circuit afterwards."""
    driver.configure()

    @breaker.command(NAME)
    def fetch() -> str:
        return VALUE

    assert fetch() == VALUE
    before = breaker.get_circuit(NAME)[0]
    breaker.flush()
    assert fetch() == VALUE
    after = breaker.get_circuit(NAME)[0]
    assert after is not before
    assert after.statistics().counts["success"] == 1
    assert before.statistics().counts["success"] == 1
