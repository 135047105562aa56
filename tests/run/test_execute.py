"""The sync drivers, `breaker.do`, `breaker.go` and `@breaker.command`, as a scenario table run through each driver.

Drivers (test ids):

- ``do-thread`` / ``do-caller``: `breaker.do` with ``isolation="thread"`` / ``isolation="caller"``;
- ``go-thread``: `breaker.go` (thread isolation), then waiting on its future;
- ``decorator-thread`` / ``decorator-caller``: a ``@breaker.command`` function.

Threads are coordinated with events and barriers; where a background run has to end, the test polls with a bounded
deadline. The circuits' state machine reads a `FakeClock` where sleep windows matter; thread-isolation timeouts
are real time, and short.
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
import time
import traceback
from collections.abc import Callable
from concurrent import futures
from concurrent.futures import Future
from typing import Any

import pytest
from drivers import (
    ALL,
    CALLER,
    CONTRACT_EVENTS,
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
    BadInput,
    Boom,
    Counter,
    Driver,
    Fallback,
    FallbackBoom,
    Held,
    events,
    failing,
    ok,
    settle,
    state,
    stats,
    trip,
)

import breaker
from breaker import CircuitOpenError, CommandTimeoutError, FallbackError, MaxConcurrencyError, State
from breaker._registry import Registry
from breaker.testing import FakeClock

# -- 1. one primary event per call ----------------------------------------------------------------------------------

OUTCOMES = ("success", "failure", "bad-request", "short-circuit", "rejected", "timeout")


@WITH_FALLBACK
@pytest.mark.parametrize("outcome", OUTCOMES)
@ALL
def test_each_call_records_exactly_one_primary_event(
    driver: Driver,
    outcome: str,
    with_fallback: bool,
    clock: FakeClock,
    gate: threading.Event,
    held: Callable[[Driver], Held],
) -> None:
    """A call records exactly one primary event, plus fallback-success when its fallback ran."""
    fields: dict[str, Any] = {"timeout": 30.0}
    if outcome == "bad-request":
        fields["ignored_exceptions"] = (BadInput,)
    elif outcome == "short-circuit":
        fields["force_open"] = True
    elif outcome == "rejected":
        fields["max_concurrent_requests"] = 1
    elif outcome == "timeout":
        fields["timeout"] = TIMEOUT if driver.threaded else 1.0
    driver.configure(**fields)
    runs = Counter()

    def run() -> str:
        runs.increment()
        if outcome == "failure":
            raise Boom("down")
        if outcome == "bad-request":
            raise BadInput("bad")
        if outcome == "timeout":
            if driver.threaded:
                gate.wait(WAIT)
            else:
                clock.advance(2.0)
        return VALUE

    holder = held(driver)
    if outcome == "rejected":
        holder.start()
    fallback = Fallback() if with_fallback else None
    errors: dict[str, type[Exception]] = {
        "failure": Boom,
        "bad-request": BadInput,
        "short-circuit": CircuitOpenError,
        "rejected": MaxConcurrencyError,
        "timeout": CommandTimeoutError,
    }
    falls_back = with_fallback and outcome in ("failure", "short-circuit", "rejected", "timeout")
    result: object
    try:
        result = driver.call(NAME, run, fallback)
    except Exception as error:
        result = error
    if outcome == "success":
        assert result == VALUE
    elif falls_back:
        assert result == FALLBACK
    else:
        assert isinstance(result, errors[outcome])
    assert set(CONTRACT_EVENTS) <= set(stats().counts)
    expected = {outcome: 1, "fallback-success": 1} if falls_back else {outcome: 1}
    assert events() == expected
    assert runs.value == (0 if outcome in ("short-circuit", "rejected") else 1)
    if fallback is not None:
        assert len(fallback.errors) == int(falls_back)
    # The background runs end: the held one counts its own success; a timed-out one counts nothing more.
    gate.set()
    assert holder.release() == ([HELD] if outcome == "rejected" else [])
    settle()
    if outcome == "rejected":
        expected["success"] = 1
    assert events() == expected


# -- 2. the outcome and the ticket are back before the call returns --------------------------------------------------


@ALL
def test_outcome_is_counted_before_the_call_returns(driver: Driver) -> None:
    """statistics() read right after a call returns already holds its outcome and its fallback's."""
    driver.configure(force_closed=True)
    expected = dict.fromkeys(("success", "failure", "fallback-success"), 0)
    for i in range(60):
        if i % 3 == 0:
            assert driver.call(NAME, ok) == VALUE
            expected["success"] += 1
        elif i % 3 == 1:
            assert driver.call(NAME, failing, Fallback()) == FALLBACK
            expected["failure"] += 1
            expected["fallback-success"] += 1
        else:
            with pytest.raises(Boom):
                driver.call(NAME, failing)
            expected["failure"] += 1
        assert events() == {k: v for k, v in expected.items() if v}, f"after call {i}"


@ALL
def test_ticket_is_back_before_the_call_returns(driver: Driver) -> None:
    """With one ticket, 200 calls one after another are never rejected."""
    driver.configure(max_concurrent_requests=1, force_closed=True)
    for i in range(200):
        if i % 2:
            assert driver.call(NAME, ok) == VALUE
        else:
            assert driver.call(NAME, failing, Fallback()) == FALLBACK
        assert stats().active == 0
    assert events() == {"success": 100, "failure": 100, "fallback-success": 100}


# -- 3. the fallback --------------------------------------------------------------------------------------------------

CAUSES = ("failure", "short-circuit", "rejected", "timeout")


@pytest.mark.parametrize("cause", CAUSES)
@ALL
def test_fallback_runs_once_with_the_error_that_failed_the_call(
    driver: Driver, cause: str, clock: FakeClock, gate: threading.Event, held: Callable[[Driver], Held]
) -> None:
    """The fallback is called once, with the run's own exception or the breaker's error; its value is returned."""
    fields: dict[str, Any] = {"timeout": 30.0}
    if cause == "short-circuit":
        fields["force_open"] = True
    elif cause == "rejected":
        fields["max_concurrent_requests"] = 1
    elif cause == "timeout":
        fields["timeout"] = TIMEOUT if driver.threaded else 1.0
    driver.configure(**fields)
    run_error = Boom("down")

    def run() -> str:
        if cause == "failure":
            raise run_error
        if driver.threaded:
            gate.wait(WAIT)
        else:
            clock.advance(2.0)
        return VALUE

    if cause == "rejected":
        held(driver).start()
    fallback = Fallback()
    assert driver.call(NAME, run, fallback) == FALLBACK
    assert len(fallback.errors) == 1
    error = fallback.errors[0]
    if cause == "failure":
        assert error is run_error
        return
    expected = {"short-circuit": CircuitOpenError, "rejected": MaxConcurrencyError, "timeout": CommandTimeoutError}
    assert type(error) is expected[cause]
    assert isinstance(error, breaker.CircuitError)
    assert error.name == NAME
    assert NAME in str(error)


@DECORATORS
def test_decorator_fallback_gets_the_error_and_the_call_arguments(driver: Driver) -> None:
    """A decorated function keeps its metadata; its fallback is called as fallback(error, *args, **kwargs)."""
    driver.configure()
    run_error = Boom("down")
    got: list[tuple[Exception, str, int, str]] = []

    def offline(error: Exception, order: str, amount: int, *, currency: str = "EUR") -> str:
        got.append((error, order, amount, currency))
        return f"offline {order}"

    def charge(order: str, amount: int, *, currency: str = "EUR") -> str:
        """Charge an order."""
        if amount < 0:
            raise run_error
        return f"{order}: {amount} {currency}"

    wrapped = breaker.command(NAME, fallback=offline)(charge)
    assert wrapped.__name__ == "charge"
    assert wrapped.__doc__ == "Charge an order."
    assert inspect.signature(wrapped) == inspect.signature(charge)
    assert wrapped("o-1", 5, currency="USD") == "o-1: 5 USD"
    assert got == []
    assert wrapped("o-2", -1, currency="GBP") == "offline o-2"
    assert got == [(run_error, "o-2", -1, "GBP")]
    assert got[0][0] is run_error
    assert events() == {"success": 1, "failure": 1, "fallback-success": 1}


@pytest.mark.parametrize("cause", ["failure", "short-circuit", "timeout"])
@ALL
def test_failing_fallback_raises_fallback_error_chained(
    driver: Driver, cause: str, clock: FakeClock, gate: threading.Event
) -> None:
    """A raising fallback gives FallbackError(.run_error, .fallback_error) raised from the fallback's exception."""
    timeout = TIMEOUT if driver.threaded else 1.0
    driver.configure(force_open=cause == "short-circuit", timeout=timeout)
    run_error = Boom("down")
    fallback_error = FallbackBoom("fallback down")
    seen: list[Exception] = []

    def run() -> str:
        if cause != "timeout":
            raise run_error
        if driver.threaded:
            gate.wait(WAIT)
        else:
            clock.advance(2 * timeout)
        return VALUE

    def fallback(error: Exception) -> str:
        seen.append(error)
        raise fallback_error

    with pytest.raises(FallbackError) as info:
        driver.call(NAME, run, fallback)
    error = info.value
    assert len(seen) == 1
    assert error.run_error is seen[0]
    breaker_errors = {"short-circuit": CircuitOpenError, "timeout": CommandTimeoutError}
    if cause == "failure":
        assert error.run_error is run_error
    else:
        assert type(error.run_error) is breaker_errors[cause]
    assert error.fallback_error is fallback_error
    assert error.__cause__ is fallback_error
    assert error.name == NAME
    assert NAME in str(error)
    assert events() == {cause: 1, "fallback-failure": 1}


@ALL
def test_without_fallback_the_caller_gets_the_runs_own_exception(driver: Driver) -> None:
    """With no fallback, the run's exception object itself reaches the caller, unwrapped."""
    driver.configure()
    run_error = Boom("down")

    def run() -> str:
        raise run_error

    with pytest.raises(Boom) as info:
        driver.call(NAME, run)
    assert info.value is run_error
    assert info.value.args == ("down",)
    assert events() == {"failure": 1}


# -- 4. timeouts in thread isolation ----------------------------------------------------------------------------------


@pytest.mark.parametrize("late", ["late-success", "late-failure"])
@WITH_FALLBACK
@THREADED
def test_timed_out_run_goes_on_holding_its_ticket_and_its_result_is_discarded(
    driver: Driver, with_fallback: bool, late: str, gate: threading.Event
) -> None:
    """The caller gets the timeout promptly; the run keeps its ticket until it returns, then counts nothing."""
    driver.configure(timeout=TIMEOUT)
    started = threading.Event()

    def run() -> str:
        started.set()
        gate.wait(WAIT)
        if late == "late-failure":
            raise Boom("late")
        return VALUE

    fallback = Fallback() if with_fallback else None
    begin = time.monotonic()
    try:
        result: object = driver.call(NAME, run, fallback)
    except CommandTimeoutError as error:
        result = error
    elapsed = time.monotonic() - begin
    assert elapsed < TIMEOUT + 1.0
    assert started.is_set()
    if fallback is None:
        assert isinstance(result, CommandTimeoutError)
        assert isinstance(result, TimeoutError)
        assert result.name == NAME
        assert result.timeout == TIMEOUT
    else:
        assert result == FALLBACK
        assert len(fallback.errors) == 1
        assert isinstance(fallback.errors[0], CommandTimeoutError)
    expected = {"timeout": 1, "fallback-success": 1} if with_fallback else {"timeout": 1}
    snapshot = stats()
    assert (snapshot.active, snapshot.abandoned) == (1, 1)
    assert events() == expected
    gate.set()
    settle()
    assert events() == expected
    assert (stats().active, stats().abandoned) == (0, 0)
    if fallback is not None:
        assert len(fallback.errors) == 1


@THREADED
def test_hung_dependency_holds_at_most_max_concurrent_requests_runs_and_threads(
    driver: Driver, gate: threading.Event, fresh_registry: Registry
) -> None:
    """10 calls to a hung dependency start at most 3 runs on at most 3 threads; the rest are rejected."""
    driver.configure(timeout=TIMEOUT, max_concurrent_requests=3)
    started = Counter()
    threads_seen: list[int] = []

    def hung() -> str:
        started.increment()
        threads_seen.append(fresh_registry.pool.threads)
        gate.wait(WAIT)
        return VALUE

    outcomes: list[type[Exception]] = []
    for _ in range(10):
        with pytest.raises(breaker.CircuitError) as info:
            driver.call(NAME, hung)
        outcomes.append(type(info.value))
        threads_seen.append(fresh_registry.pool.threads)
    assert started.value == 3
    assert outcomes == [CommandTimeoutError] * 3 + [MaxConcurrencyError] * 7
    assert events() == {"timeout": 3, "rejected": 7}
    assert (stats().active, stats().abandoned) == (3, 3)
    gate.set()
    settle()
    threads_seen.append(fresh_registry.pool.threads)
    assert max(threads_seen) <= 3, threads_seen


# -- 5. timeouts in caller isolation ----------------------------------------------------------------------------------


@pytest.mark.parametrize("run_ends", ["returns", "raises"])
@WITH_FALLBACK
@CALLER
def test_caller_isolation_run_that_outlasts_its_timeout_counts_as_timeout(
    driver: Driver, with_fallback: bool, run_ends: str, clock: FakeClock
) -> None:
    """A run on the caller's thread that returns after its timeout is a timeout; its value is discarded."""
    driver.configure(timeout=1.0)

    def slow() -> str:
        clock.advance(1.5)
        if run_ends == "raises":
            raise Boom("late")
        return VALUE

    fallback = Fallback() if with_fallback else None
    try:
        result: object = driver.call(NAME, slow, fallback)
    except CommandTimeoutError as error:
        result = error
    if fallback is None:
        assert isinstance(result, CommandTimeoutError)
        assert result.name == NAME
    else:
        assert result == FALLBACK
        assert [type(e) for e in fallback.errors] == [CommandTimeoutError]
    assert events() == ({"timeout": 1, "fallback-success": 1} if with_fallback else {"timeout": 1})
    assert stats().active == 0


# -- 6. BaseException --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [KeyboardInterrupt, SystemExit])
@ALL
def test_base_exception_from_run_propagates_counts_failure_and_returns_the_ticket(
    driver: Driver, kind: type[BaseException]
) -> None:
    """KeyboardInterrupt or SystemExit from run: counted as failure, no fallback, propagates, ticket back."""
    driver.configure(max_concurrent_requests=1)
    raised = kind()

    def run() -> str:
        raise raised

    fallback = Fallback()
    with pytest.raises(kind) as info:
        driver.call(NAME, run, fallback)
    assert info.value is raised
    assert fallback.errors == []
    assert events() == {"failure": 1}
    assert stats().active == 0
    assert driver.call(NAME, ok) == VALUE


@pytest.mark.parametrize("kind", [KeyboardInterrupt, SystemExit])
@ALL
def test_base_exception_from_fallback_propagates_unwrapped(driver: Driver, kind: type[BaseException]) -> None:
    """A BaseException from the fallback is not wrapped in FallbackError and counts fallback-failure."""
    driver.configure()
    raised = kind()

    def fallback(error: Exception) -> str:
        raise raised

    with pytest.raises(kind) as info:
        driver.call(NAME, failing, fallback)
    assert info.value is raised
    assert events() == {"failure": 1, "fallback-failure": 1}
    assert stats().active == 0


# -- 7. bad requests --------------------------------------------------------------------------------------------------


@WITH_FALLBACK
@ALL
def test_bad_request_is_reraised_unchanged_and_counted_apart(driver: Driver, with_fallback: bool) -> None:
    """An ignored exception reaches the caller unchanged, runs no fallback and is neither a request nor an error."""
    driver.configure(ignored_exceptions=(ValueError,), **TRIP)
    fallback = Fallback() if with_fallback else None
    for i in range(3):
        bad = BadInput(f"bad {i}")

        def run(bad: BadInput = bad) -> str:
            raise bad

        with pytest.raises(BadInput) as info:
            driver.call(NAME, run, fallback)
        assert info.value is bad
    assert fallback is None or fallback.errors == []
    snapshot = stats()
    assert events() == {"bad-request": 3}
    assert (snapshot.requests, snapshot.errors) == (0, 0)
    assert snapshot.state is State.CLOSED
    assert snapshot.active == 0


# -- 8. trip, short-circuit, probe, close -----------------------------------------------------------------------------


@ALL
def test_trip_short_circuit_probe_and_close(driver: Driver, clock: FakeClock) -> None:
    """Failures open the circuit; after the sleep window one call probes it while others are short-circuited."""
    driver.configure(**TRIP)
    trip(driver)
    circuit = breaker.get_circuit(NAME)[0]
    runs = Counter()

    def counted() -> str:
        runs.increment()
        return VALUE

    with pytest.raises(CircuitOpenError):
        driver.call(NAME, counted)
    clock.advance(SLEEP - 0.1)
    with pytest.raises(CircuitOpenError):
        driver.call(NAME, counted)
    assert runs.value == 0
    assert events() == {"failure": 2, "short-circuit": 2}
    clock.advance(0.1)
    during: list[object] = []

    def probe() -> str:
        runs.increment()
        during.append(circuit.state)
        try:
            during.append(driver.call(NAME, counted))
        except CircuitOpenError as error:
            during.append(error)
        return VALUE

    assert driver.call(NAME, probe) == VALUE
    assert runs.value == 1
    assert during[0] is State.HALF_OPEN
    assert isinstance(during[1], CircuitOpenError)
    assert state() is State.CLOSED
    assert stats().requests == 0  # closing cleared the window
    assert driver.call(NAME, counted) == VALUE
    assert runs.value == 2
    assert events() == {"success": 1}


@pytest.mark.parametrize("probe_ends", ["failure", "timeout"])
@ALL
def test_failed_probe_reopens_with_a_fresh_sleep_window(
    driver: Driver, probe_ends: str, clock: FakeClock, gate: threading.Event
) -> None:
    """A probe that fails or times out reopens the circuit for a whole new sleep window."""
    timeout = TIMEOUT if driver.threaded else 1.0
    driver.configure(timeout=timeout, **TRIP)
    trip(driver)
    clock.advance(SLEEP)

    def probe() -> str:
        if probe_ends == "failure":
            raise Boom("still down")
        if driver.threaded:
            gate.wait(WAIT)
        else:
            clock.advance(2 * timeout)
        return VALUE

    expected: type[Exception] = Boom if probe_ends == "failure" else CommandTimeoutError
    with pytest.raises(expected):
        driver.call(NAME, probe)
    assert state() is State.OPEN
    gate.set()
    settle()  # a timed-out probe's late success must not close the circuit
    assert state() is State.OPEN
    with pytest.raises(CircuitOpenError):
        driver.call(NAME, ok)
    clock.advance(SLEEP - 0.1)
    with pytest.raises(CircuitOpenError):
        driver.call(NAME, ok)
    clock.advance(0.1)
    assert driver.call(NAME, ok) == VALUE
    assert state() is State.CLOSED


@ALL
def test_late_success_of_a_call_admitted_before_the_trip_does_not_close(
    driver: Driver, clock: FakeClock, held: Callable[[Driver], Held]
) -> None:
    """Only the probe decides: a success from a run admitted while closed leaves an open circuit open."""
    driver.configure(timeout=30.0, **TRIP)
    holder = held(driver)
    holder.start()
    trip(driver)
    assert holder.release() == [HELD]
    assert state() is State.OPEN
    assert events() == {"failure": 2, "success": 1}
    with pytest.raises(CircuitOpenError):
        driver.call(NAME, ok)


@CALLER
def test_caller_probe_past_its_timeout_counts_as_failed(
    driver: Driver, clock: FakeClock, held: Callable[[Driver], Held]
) -> None:
    """A caller-isolated probe still running past its timeout is failed by the next call and cannot close it late."""
    driver.configure(timeout=1.0, **TRIP)
    trip(driver)
    clock.advance(SLEEP)
    holder = held(driver)
    holder.start()  # the probe, running on its caller's thread
    assert state() is State.HALF_OPEN
    with pytest.raises(CircuitOpenError):
        driver.call(NAME, ok)
    clock.advance(1.5)
    with pytest.raises(CircuitOpenError):
        driver.call(NAME, ok)
    assert state() is State.OPEN
    outcomes = holder.release()
    assert len(outcomes) == 1
    assert isinstance(outcomes[0], CommandTimeoutError)
    assert state() is State.OPEN
    clock.advance(SLEEP)
    assert driver.call(NAME, ok) == VALUE
    assert state() is State.CLOSED


# -- 13. logging -------------------------------------------------------------------------------------------------------


@ALL
def test_state_changes_are_logged(driver: Driver, clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    """Opening logs a WARNING naming the circuit; the probe (half-open) and the close log INFO."""
    caplog.set_level(logging.INFO, logger="breaker")
    driver.configure(**TRIP)
    trip(driver)
    opened = [r for r in caplog.records if r.name == "breaker"]
    assert [r.levelno for r in opened] == [logging.WARNING]
    assert NAME in opened[0].getMessage()
    assert "open" in opened[0].getMessage()
    caplog.clear()
    clock.advance(SLEEP)
    assert driver.call(NAME, ok) == VALUE
    records = [r for r in caplog.records if r.name == "breaker"]
    assert [r.levelno for r in records] == [logging.INFO, logging.INFO]
    assert all(NAME in r.getMessage() for r in records)
    assert "half-open" in records[0].getMessage()
    assert "closed" in records[1].getMessage()


# -- 14. go() ----------------------------------------------------------------------------------------------------------


def test_go_returns_a_concurrent_future() -> None:
    """go() returns a concurrent.futures.Future resolving to run()'s value."""
    future = breaker.go(NAME, ok)
    assert isinstance(future, Future)
    assert future.result(WAIT) == VALUE
    assert events() == {"success": 1}


@WITH_FALLBACK
def test_go_on_an_open_circuit_returns_an_already_done_future(with_fallback: bool) -> None:
    """With force_open, go() returns a future already done with CircuitOpenError or the fallback's value."""
    breaker.configure_command(NAME, breaker.CommandConfig(force_open=True))
    runs = Counter()

    def run() -> str:
        runs.increment()
        return VALUE

    fallback = Fallback() if with_fallback else None
    future = breaker.go(NAME, run, fallback)
    assert future.done()
    assert events() == ({"short-circuit": 1, "fallback-success": 1} if with_fallback else {"short-circuit": 1})
    if fallback is None:
        assert isinstance(future.exception(timeout=0), CircuitOpenError)
    else:
        assert future.result(timeout=0) == FALLBACK
    assert runs.value == 0


def test_go_without_a_free_ticket_returns_an_already_done_future(gate: threading.Event) -> None:
    """go() takes the ticket before returning; with none left the future is already done with MaxConcurrencyError."""
    breaker.configure_command(NAME, breaker.CommandConfig(max_concurrent_requests=1, timeout=30.0))
    first = breaker.go(NAME, lambda: VALUE if gate.wait(WAIT) else "gate never opened")
    assert stats().active == 1
    second = breaker.go(NAME, ok)
    assert second.done()
    assert isinstance(second.exception(timeout=0), MaxConcurrencyError)
    assert events() == {"rejected": 1}
    assert first.cancel() is False
    assert not first.cancelled()
    gate.set()
    assert first.result(WAIT) == VALUE
    assert events() == {"rejected": 1, "success": 1}


def test_go_timeout_resolves_the_future_while_the_run_goes_on(gate: threading.Event) -> None:
    """go()'s future resolves with the fallback after the timeout, while the run is still blocked."""
    breaker.configure_command(NAME, breaker.CommandConfig(timeout=TIMEOUT))
    fallback = Fallback()
    future = breaker.go(NAME, lambda: VALUE if gate.wait(WAIT) else "gate never opened", fallback)
    assert future.result(WAIT) == FALLBACK
    assert [type(e) for e in fallback.errors] == [CommandTimeoutError]
    assert stats().abandoned == 1
    gate.set()
    settle()
    assert events() == {"timeout": 1, "fallback-success": 1}


def test_go_timeouts_still_fire_after_an_earlier_timed_out_run_returned(gate: threading.Event) -> None:
    """After a go() run timed out and then returned, a later hung go() call still times out promptly."""
    breaker.configure_command(NAME, breaker.CommandConfig(timeout=TIMEOUT))
    first_gate = threading.Event()
    with pytest.raises(CommandTimeoutError):
        breaker.go(NAME, lambda: str(first_gate.wait(WAIT))).result(WAIT)
    first_gate.set()
    settle()
    hung = breaker.go(NAME, lambda: str(gate.wait(WAIT)))
    assert breaker.go(NAME, ok).result(WAIT) == VALUE  # a call that ends before its timeout, meanwhile
    futures.wait([hung], timeout=TIMEOUT + 1.0)
    assert hung.done(), "the hung go() call did not time out"
    assert isinstance(hung.exception(timeout=0), CommandTimeoutError)
    assert stats().abandoned == 1


def test_go_with_caller_isolation_runs_here_and_returns_a_done_future() -> None:
    """With caller isolation, go() runs the call on the calling thread; the future is done on return."""
    breaker.configure_command(NAME, breaker.CommandConfig(isolation="caller"))
    future = breaker.go(NAME, lambda: threading.current_thread().name)
    assert future.done()
    assert future.result(timeout=0) == threading.current_thread().name


# -- 15. tracebacks, isolation, bad arguments --------------------------------------------------------------------------


@ALL
def test_exceptions_keep_a_traceback_through_the_runs_frame(driver: Driver) -> None:
    """The run's exception, and a failing fallback's, carry tracebacks that include the frame that raised."""
    driver.configure()

    def dependency_that_fails() -> str:
        raise Boom("down")

    def fallback_that_fails(error: Exception) -> str:
        raise FallbackBoom("fallback down")

    def frames(error: BaseException) -> list[str]:
        return [frame.name for frame in traceback.extract_tb(error.__traceback__)]

    with pytest.raises(Boom) as info:
        driver.call(NAME, dependency_that_fails)
    assert "dependency_that_fails" in frames(info.value)
    with pytest.raises(FallbackError) as wrapped:
        driver.call(NAME, dependency_that_fails, fallback_that_fails)
    assert "dependency_that_fails" in frames(wrapped.value.run_error)
    assert "fallback_that_fails" in frames(wrapped.value.fallback_error)


@ALL
def test_isolation_decides_which_thread_runs_the_call(driver: Driver) -> None:
    """Thread isolation runs on a breaker worker; caller isolation on the caller's own thread."""
    driver.configure()
    where = driver.call(NAME, lambda: threading.current_thread().name)
    if driver.threaded:
        assert where.startswith("breaker-worker-")
    else:
        assert where == threading.current_thread().name


NOT_CALLABLE: Any = 42


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(functools.partial(breaker.do, NAME, NOT_CALLABLE), id="do-run"),
        pytest.param(functools.partial(breaker.do, NAME, ok, NOT_CALLABLE), id="do-fallback"),
        pytest.param(functools.partial(breaker.go, NAME, NOT_CALLABLE), id="go-run"),
        pytest.param(functools.partial(breaker.go, NAME, ok, NOT_CALLABLE), id="go-fallback"),
        pytest.param(functools.partial(breaker.command, NAME, fallback=NOT_CALLABLE), id="decorator-fallback"),
        pytest.param(lambda: breaker.command(NAME)(NOT_CALLABLE), id="decorator-object"),
    ],
)
def test_non_callable_arguments_raise_type_error_before_anything_is_counted(call: Callable[[], object]) -> None:
    """A run or fallback that is not callable raises TypeError naming the command; nothing is counted."""
    with pytest.raises(TypeError, match=NAME):
        call()
    assert events() == {}
