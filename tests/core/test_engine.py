"""The decision core (`breaker._core.engine.Engine`) driven directly: no threads, no sleeping, a fake clock.

Calls arrive as the drivers make them arrive (`Engine.enter`: the lock-free attempt, then the lock). Outcomes end
on the locked path (`Engine.finish`) unless a test says otherwise; the drivers' lock-free success
(`Engine.succeed`) is checked beside it where a success matters. Run this file with ``BREAKER_LOCKED=1`` too:
then every fast path declines and the engine decides everything under its lock.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from contract import EVENTS

import breaker
from breaker import State
from breaker._core.circuit import Circuit, engine_of
from breaker._core.engine import NO_LATENCY, Engine
from breaker._core.events import (
    BAD_REQUEST,
    CANCELLED,
    FAILURE,
    FALLBACK_FAILURE,
    FALLBACK_SUCCESS,
    REJECTED,
    SUCCESS,
    TIMEOUT,
    Event,
)
from breaker._core.health import error_budget
from breaker._core.latency import RUN
from breaker._core.lockfree import DONE, LOCK_FREE, NOT_DONE, try_enter, try_succeed
from breaker._core.outcome import ADMITTED, REJECTED_CALL, SHORT_CIRCUITED, UNDECIDED, Admission, Probe
from breaker._core.settings import BUILTIN, Settings
from breaker._core.statistics import CircuitStatistics
from breaker.testing import FakeClock

Transition = tuple[State, State]
Emit = Callable[[Circuit, State, State], None]

CLOSED, OPEN, HALF_OPEN = State.CLOSED, State.OPEN, State.HALF_OPEN
FORCED_OPEN, FORCED_CLOSED = State.FORCED_OPEN, State.FORCED_CLOSED

#: The circuit most tests use: trips on 2 requests at >= 50% errors, 3 tickets, 5 s sleep window, 1 s timeout.
BASE: dict[str, Any] = {
    "request_volume_threshold": 2,
    "error_percent_threshold": 50,
    "max_concurrent_requests": 3,
    "sleep_window": 5.0,
    "timeout": 1.0,
}
SLEEP = 5.0
#: The duration every run reports (the clock does not move meanwhile: when calls end is the test's to choose).
RUN_SECONDS = 0.25

#: Every event name the contract lists (semantics item 1).
CONTRACT_EVENTS = EVENTS  # the contract's event names, pinned in tests/support/contract.py

#: How an admitted run's success is ended: on the locked path, or as the drivers end one with no fallback.
SUCCESS_PATHS = [pytest.param("finish", id="finish"), pytest.param("succeed", id="succeed")]


def settings(**fields: Any) -> Settings:
    """`BASE` with ``fields`` laid over it, resolved over the built-in defaults."""
    return breaker.CommandConfig(**{**BASE, **fields}).over(BUILTIN)


def recorder(transitions: list[Transition]) -> Emit:
    """An emit callback that records each transition and checks it gets the engine's own facade, outside the
    engine's lock."""

    def emit(circuit: Circuit, old: State, new: State) -> None:
        engine = engine_of(circuit)
        assert engine.circuit is circuit, f"emit({old}, {new}) was not given the engine's facade"
        assert not engine.lock.locked(), f"emit({old}, {new}) called while the engine's lock is held"
        transitions.append((old, new))

    return emit


def make(**fields: Any) -> tuple[Engine, Circuit, FakeClock, list[Transition]]:
    """An engine with `BASE` settings overridden by ``fields``, its users' facade, its fake clock and its recorded
    transitions."""
    clock = FakeClock()
    transitions: list[Transition] = []
    engine = Engine("cmd", settings(**fields), clock, recorder(transitions))
    engine.circuit = circuit = Circuit(engine)
    return engine, circuit, clock, transitions


def state(engine: Engine) -> State:
    """The state as users see it (through the facade)."""
    assert engine.circuit is not None
    return engine.circuit.state


def admit(engine: Engine, clock: FakeClock) -> Admission:
    """Admit one call as the drivers do: `Engine.enter` (lock-free first, else the lock)."""
    return engine.enter(clock())


def end_success(engine: Engine, admission: Admission, clock: FakeClock, path: str) -> None:
    """End an admitted run with a success on ``path``: ``finish`` (the locked path), or ``succeed`` (the drivers'
    path for a success with no fallback: lock-free when it can be)."""
    if path == "finish":
        assert engine.finish(SUCCESS, admission, clock(), RUN_SECONDS)
    else:
        engine.succeed(admission, clock(), RUN_SECONDS)


def call(engine: Engine, clock: FakeClock, event: int, path: str = "finish") -> Admission:
    """Admit one call and, if it may run, end it with ``event`` (a success on ``path``); the admission."""
    admission = admit(engine, clock)
    if not admission.refused:
        if event == SUCCESS:
            end_success(engine, admission, clock, path)
        else:
            assert engine.finish(event, admission, clock(), RUN_SECONDS)
    return admission


def reject(engine: Engine, clock: FakeClock) -> Admission:
    """Make one call find no free ticket: hold every free ticket (admitted: nothing counted), let one call arrive
    (rejected and counted), then withdraw the holders (nothing counted); the last call's admission."""
    held = 0
    while (admission := admit(engine, clock)) is ADMITTED:
        held += 1
    for _ in range(held):
        assert engine.withdraw(ADMITTED)
    return admission


def trip(engine: Engine, clock: FakeClock) -> None:
    """Open a closed circuit with failures."""
    for _ in range(engine.settings.request_volume_threshold):
        assert call(engine, clock, FAILURE) is ADMITTED
        if state(engine) is OPEN:
            return
    raise AssertionError(f"{engine!r} did not trip")


def to_half_open(engine: Engine, clock: FakeClock) -> Probe:
    """Open a `BASE` circuit, let its sleep window pass and admit the probe; the probe."""
    trip(engine, clock)
    clock.advance(SLEEP)
    probe = admit(engine, clock)
    assert isinstance(probe, Probe)
    assert state(engine) is HALF_OPEN
    return probe


def counts(circuit: Circuit) -> dict[str, int]:
    return dict(circuit.statistics().counts)


# -- the trip rule ----------------------------------------------------------------------------------------------

S, F, T, R, B = SUCCESS, FAILURE, TIMEOUT, REJECTED, BAD_REQUEST

TRIP_CASES = [
    pytest.param(4, 50, [F, F, F, F], True, id="exactly-at-volume"),
    pytest.param(4, 50, [F, F, F], False, id="one-below-volume"),
    pytest.param(4, 25, [S, S, S, F], True, id="percentage-exactly-at-threshold"),
    pytest.param(4, 26, [S, S, S, F], False, id="percentage-just-below-threshold"),
    pytest.param(8, 13, [S] * 7 + [F], True, id="12.5-rounds-half-up-to-13"),
    pytest.param(8, 14, [S] * 7 + [F], False, id="12.5-is-below-14"),
    pytest.param(200, 50, [S] * 101 + [F] * 99, True, id="49.5-rounds-half-up-to-50"),
    pytest.param(9, 45, [S] * 5 + [F] * 4, False, id="44.4-rounds-down-to-44"),
    pytest.param(4, 100, [F, F, F, S], False, id="threshold-100-75pct-stays-closed"),
    pytest.param(4, 100, [F, F, F, F], True, id="threshold-100-all-errors-trips"),
    pytest.param(200, 100, [S] + [F] * 199, True, id="threshold-100-99.5-rounds-up-and-trips"),
    pytest.param(4, 50, [F, F, F, S], True, id="success-lifts-requests-over-volume"),
    pytest.param(4, 50, [T, T, S, S], True, id="timeouts-are-errors"),
    pytest.param(4, 50, [S, S, R, R], True, id="rejections-are-errors-and-trip"),
    pytest.param(4, 50, [R, R, R], False, id="rejections-below-volume"),
    pytest.param(4, 50, [F, F, F, B], False, id="bad-request-is-no-request"),
    pytest.param(2, 50, [S, B], False, id="bad-request-is-no-error"),
]


@pytest.mark.parametrize("path", SUCCESS_PATHS)
@pytest.mark.parametrize(("volume", "threshold", "outcomes", "trips"), TRIP_CASES)
def test_trip_rule(volume: int, threshold: int, outcomes: Sequence[int], trips: bool, path: str) -> None:
    """Trips on the last outcome iff requests >= volume and the rounded-half-up error percentage >= threshold."""
    engine, circuit, clock, transitions = make(
        request_volume_threshold=volume, error_percent_threshold=threshold, max_concurrent_requests=1
    )
    for i, slot in enumerate(outcomes):
        assert circuit.state is CLOSED, f"tripped early, at outcome {i}"
        if slot == REJECTED:
            assert reject(engine, clock) is REJECTED_CALL
        else:
            assert call(engine, clock, slot, path) is ADMITTED
    assert circuit.state is (OPEN if trips else CLOSED)
    assert transitions == ([(CLOSED, OPEN)] if trips else [])


def test_short_circuits_count_in_neither_requests_nor_errors() -> None:
    """Short-circuits (here under force_open) count in neither requests nor errors."""
    engine, circuit, clock, _ = make(request_volume_threshold=4, error_percent_threshold=50)
    call(engine, clock, FAILURE)
    call(engine, clock, FAILURE)
    engine.configure(settings(request_volume_threshold=4, force_open=True))
    for _ in range(10):
        assert admit(engine, clock) is SHORT_CIRCUITED
    engine.configure(settings(request_volume_threshold=4))
    assert call(engine, clock, SUCCESS) is ADMITTED  # 3 requests, 2 errors: below the volume floor
    stats = circuit.statistics()
    assert (stats.requests, stats.errors, stats.counts["short-circuit"]) == (3, 2, 10)
    assert circuit.state is CLOSED


@pytest.mark.parametrize("moved_by", ["fallback", "success"], ids=["a-fallback-moved-it", "the-success-moves-it"])
def test_hot_path_success_evaluates_health_after_the_window_moved(moved_by: str) -> None:
    """A success counted on the drivers' lock-free path trips the circuit when the window now calls for it."""
    engine, circuit, clock, transitions = make(request_volume_threshold=4, error_percent_threshold=50)
    for _ in range(3):
        call(engine, clock, SUCCESS)  # t=1000: will age out at t=1010
    clock.advance(5.0)
    for _ in range(2):
        call(engine, clock, FAILURE)  # 5 requests, 40%: stays closed
    assert circuit.state is CLOSED
    clock.advance(5.5)  # t=1010.5: the three successes left the window
    if moved_by == "fallback":
        # the last failure's fallback ends in the new bucket: the window moves under the lock, nothing is evaluated
        assert engine.count_fallback(FALLBACK_SUCCESS, clock(), None)
        assert circuit.state is CLOSED
    for i in range(2):  # two ordinary successes, ended as the drivers end them
        admission = admit(engine, clock)
        assert admission is ADMITTED
        engine.succeed(admission, clock(), RUN_SECONDS)
        assert circuit.state is (OPEN if i == 1 else CLOSED)  # 3 requests, then 4 at 50%
    stats = circuit.statistics()
    assert (stats.requests, stats.errors, stats.error_percentage) == (4, 2, 50)
    assert circuit.state is OPEN
    assert transitions == [(CLOSED, OPEN)]


def test_fast_paths_decide_only_in_lock_free_mode() -> None:
    """Lock-free mode admits, counts successes and short-circuits without the lock; BREAKER_LOCKED=1 declines all."""
    if os.environ.get("BREAKER_LOCKED", "0") not in ("", "0"):
        assert not LOCK_FREE
    engine, circuit, clock, _ = make()
    now = clock()
    admission = try_enter(engine, now)
    assert admission is (ADMITTED if LOCK_FREE else UNDECIDED)
    assert engine.active == (1 if LOCK_FREE else 0)
    if admission is UNDECIDED:
        admission = engine.admit(now)
    assert admission is ADMITTED
    stage = try_succeed(engine, admission, now, RUN_SECONDS)
    assert stage == (DONE if LOCK_FREE else NOT_DONE)
    assert circuit.statistics().counts["success"] == (1 if LOCK_FREE else 0)
    if stage == NOT_DONE:
        assert engine.settle_success(stage, admission, now, RUN_SECONDS)
    stats = circuit.statistics()
    assert (stats.counts["success"], stats.active, stats.latency_execute.count) == (1, 0, 1)
    trip(engine, clock)
    refused = try_enter(engine, clock())
    assert refused is (SHORT_CIRCUITED if LOCK_FREE else UNDECIDED)
    assert circuit.statistics().counts["short-circuit"] == (1 if LOCK_FREE else 0)


# -- health is evaluated only when an outcome is recorded -------------------------------------------------------


def test_queries_never_change_an_open_circuit() -> None:
    """state, is_open, allow_request and statistics change nothing, even after the sleep window: no probe taken."""
    engine, circuit, clock, transitions = make()
    trip(engine, clock)
    clock.advance(SLEEP + 1.0)
    before = circuit.statistics()
    for _ in range(3):
        assert circuit.state is OPEN
        assert circuit.is_open()
        assert circuit.allow_request()
        assert circuit.statistics() == before
    assert transitions == [(CLOSED, OPEN)]
    assert isinstance(admit(engine, clock), Probe)  # the probe is still there to take
    assert circuit.state is HALF_OPEN
    assert transitions == [(CLOSED, OPEN), (OPEN, HALF_OPEN)]


def test_queries_never_trip_a_closed_circuit() -> None:
    """A window that ageing made unhealthy stays CLOSED through queries; the next recorded outcome trips it."""
    engine, circuit, clock, transitions = make(request_volume_threshold=3, error_percent_threshold=60)
    for _ in range(3):
        call(engine, clock, SUCCESS)
    clock.advance(5.0)
    for _ in range(3):
        call(engine, clock, FAILURE)  # 6 requests, 50%: below 60
    clock.advance(5.5)  # the successes aged out: 3 requests, 100% errors
    for _ in range(3):
        assert circuit.statistics().error_percentage == 100
        assert circuit.state is CLOSED
        assert not circuit.is_open()
        assert circuit.allow_request()
    assert transitions == []
    call(engine, clock, SUCCESS)  # 4 requests, 75%
    assert circuit.state is OPEN
    assert transitions == [(CLOSED, OPEN)]


# -- open, half-open and the probe ------------------------------------------------------------------------------


def test_open_circuit_short_circuits_and_counts_it() -> None:
    """An open circuit short-circuits every call (no ticket taken) and counts each as 'short-circuit'."""
    engine, circuit, clock, _ = make()
    trip(engine, clock)
    for _ in range(5):
        assert not circuit.allow_request()
        assert admit(engine, clock) is SHORT_CIRCUITED
        assert engine.active == 0
    stats = circuit.statistics()
    assert stats.counts["short-circuit"] == 5
    assert stats.active == 0
    assert circuit.state is OPEN


def test_exactly_one_probe_after_the_sleep_window() -> None:
    """Before the sleep window ends calls short-circuit; after it one call is the probe, the rest short-circuit."""
    engine, circuit, clock, _ = make()
    trip(engine, clock)
    clock.advance(SLEEP - 0.25)
    assert not circuit.allow_request()
    assert admit(engine, clock) is SHORT_CIRCUITED
    clock.advance(0.25)
    assert circuit.allow_request()
    assert isinstance(admit(engine, clock), Probe)
    assert circuit.state is HALF_OPEN
    for _ in range(5):
        assert not circuit.allow_request()
        assert admit(engine, clock) is SHORT_CIRCUITED
    assert circuit.state is HALF_OPEN
    stats = circuit.statistics()
    assert stats.active == 1  # the probe holds a ticket
    assert stats.counts["short-circuit"] == 6


@pytest.mark.parametrize("path", SUCCESS_PATHS)
def test_probe_success_closes_and_clears_the_window(path: str) -> None:
    """A successful probe closes the circuit, clears the rolling counts and lets calls in again."""
    engine, circuit, clock, transitions = make()
    probe = to_half_open(engine, clock)
    end_success(engine, probe, clock, path)
    assert circuit.state is CLOSED
    stats = circuit.statistics()
    assert (stats.requests, stats.errors, stats.active) == (0, 0, 0)
    assert set(stats.counts.values()) == {0}
    assert (stats.cumulative["failure"], stats.cumulative["success"]) == (2, 1)  # since creation: never cleared
    assert transitions[-1] == (HALF_OPEN, CLOSED)
    # the fast path admits again (it declines in locked mode, and the lock admits)
    assert try_enter(engine, clock()) is (ADMITTED if LOCK_FREE else UNDECIDED)
    assert admit(engine, clock) is ADMITTED


@pytest.mark.parametrize(
    "ending",
    ["failure", "timeout", "worker-timeout", "worker-failure"],
    ids=["failure", "timeout", "worker-timeout", "worker-failure"],
)
def test_failed_probe_reopens_with_a_fresh_sleep_window(ending: str) -> None:
    """A probe's failure or timeout reopens the circuit; it short-circuits until a fresh sleep window has passed."""
    engine, circuit, clock, transitions = make()
    probe = to_half_open(engine, clock)
    clock.advance(0.5)
    if ending == "failure":
        assert engine.finish(FAILURE, probe, clock(), 0.5)
    elif ending == "timeout":  # the run returned after its timeout (caller isolation)
        assert engine.finish(TIMEOUT, probe, clock(), 1.5)
    elif ending == "worker-timeout":  # thread isolation: the timeout fired first; the run keeps its ticket
        engine.time_out(probe, clock(), 1.0)
    else:  # thread isolation: the run failed first, and a fallback follows
        assert engine.finish(FAILURE, probe, clock(), 0.5, RUN)
    assert circuit.state is OPEN
    assert transitions[-1] == (HALF_OPEN, OPEN)
    assert circuit.statistics().abandoned == (1 if ending == "worker-timeout" else 0)
    clock.advance(SLEEP - 0.25)
    assert admit(engine, clock) is SHORT_CIRCUITED
    clock.advance(0.25)
    assert isinstance(admit(engine, clock), Probe)
    assert circuit.state is HALF_OPEN


def test_probe_without_a_ticket_is_rejected_and_restarts_the_sleep_window() -> None:
    """A would-be probe that finds every ticket held is rejected (counted), and the sleep window starts over."""
    engine, circuit, clock, transitions = make(max_concurrent_requests=1, request_volume_threshold=2)
    slow = admit(engine, clock)
    assert slow is ADMITTED  # the only ticket, held by a slow call
    assert reject(engine, clock) is REJECTED_CALL
    assert reject(engine, clock) is REJECTED_CALL  # 2 requests, 100% errors
    assert circuit.state is OPEN
    clock.advance(SLEEP)
    assert admit(engine, clock) is REJECTED_CALL
    assert circuit.statistics().counts["rejected"] == 3
    assert circuit.state is OPEN
    assert engine.finish(SUCCESS, slow, clock(), 9.0)  # the slow call returns its ticket (and cannot close it)
    clock.advance(SLEEP - 0.25)
    assert admit(engine, clock) is SHORT_CIRCUITED
    clock.advance(0.25)
    assert isinstance(admit(engine, clock), Probe)
    assert transitions == [(CLOSED, OPEN), (OPEN, HALF_OPEN)]


@pytest.mark.parametrize(
    "ending", ["bad-request", "cancelled", "withdrawn"], ids=["bad-request", "cancelled", "withdrawn"]
)
def test_probe_bad_request_frees_the_probe_slot(ending: str) -> None:
    """A probe ending in a bad request (or cancelled, or withdrawn) leaves it HALF_OPEN; the next call probes."""
    engine, circuit, clock, transitions = make()
    probe = to_half_open(engine, clock)
    if ending == "bad-request":
        assert engine.finish(BAD_REQUEST, probe, clock(), RUN_SECONDS)
    elif ending == "cancelled":
        assert engine.finish(CANCELLED, probe, clock(), 0.0, NO_LATENCY)
    else:
        assert engine.withdraw(probe)
    assert circuit.state is HALF_OPEN
    assert circuit.statistics().active == 0
    assert try_enter(engine, clock()) is UNDECIDED  # the fast path leaves the probe to the lock
    second = engine.admit(clock())
    assert isinstance(second, Probe)
    assert second is not probe
    assert admit(engine, clock) is SHORT_CIRCUITED
    assert engine.finish(SUCCESS, second, clock(), RUN_SECONDS)
    assert circuit.state is CLOSED
    assert transitions == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]


def test_half_open_probe_without_a_ticket_reopens() -> None:
    """In HALF_OPEN with no probe running, a would-be probe that finds no ticket is rejected and reopens."""
    engine, circuit, clock, transitions = make(max_concurrent_requests=2)
    assert admit(engine, clock) is ADMITTED  # call A holds a ticket through everything below
    probe = to_half_open(engine, clock)
    assert engine.finish(BAD_REQUEST, probe, clock(), RUN_SECONDS)
    engine.configure(settings(max_concurrent_requests=1))  # A's ticket is now the only one
    assert circuit.state is HALF_OPEN
    assert admit(engine, clock) is REJECTED_CALL
    assert circuit.state is OPEN
    assert transitions == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, OPEN)]
    assert circuit.statistics().counts["rejected"] == 1
    clock.advance(SLEEP - 0.25)
    assert admit(engine, clock) is SHORT_CIRCUITED


# -- only the probe decides -------------------------------------------------------------------------------------


@pytest.mark.parametrize("driver", ["caller", "worker"], ids=["caller", "worker"])
def test_late_success_does_not_close_an_open_circuit(driver: str) -> None:
    """A success from a call admitted before the circuit opened leaves it OPEN."""
    engine, circuit, clock, transitions = make()
    late = admit(engine, clock)
    assert late is ADMITTED  # call A, admitted while closed
    trip(engine, clock)
    if driver == "caller":
        assert engine.finish(SUCCESS, late, clock(), RUN_SECONDS)
    else:  # the drivers' way (the thread driver's worker included) to end a success with no fallback
        engine.succeed(late, clock(), RUN_SECONDS)
    assert circuit.state is OPEN
    assert transitions == [(CLOSED, OPEN)]
    stats = circuit.statistics()
    assert (stats.active, stats.counts["success"]) == (0, 1)


@pytest.mark.parametrize(
    ("slot", "path"),
    [
        pytest.param(SUCCESS, "finish", id="success"),
        pytest.param(SUCCESS, "succeed", id="success-succeed"),
        pytest.param(FAILURE, "finish", id="failure"),
        pytest.param(TIMEOUT, "finish", id="timeout"),
    ],
)
def test_late_outcome_does_not_decide_a_half_open_circuit(slot: int, path: str) -> None:
    """An outcome from a call admitted before the circuit opened leaves a HALF_OPEN circuit HALF_OPEN."""
    engine, circuit, clock, transitions = make()
    late = admit(engine, clock)
    assert late is ADMITTED  # call A, admitted while closed
    probe = to_half_open(engine, clock)
    if slot == SUCCESS:
        end_success(engine, late, clock, path)
    else:
        assert engine.finish(slot, late, clock(), RUN_SECONDS)
    assert circuit.state is HALF_OPEN
    assert admit(engine, clock) is SHORT_CIRCUITED  # the probe is still the one running
    assert engine.finish(SUCCESS, probe, clock(), RUN_SECONDS)
    assert circuit.state is CLOSED
    assert transitions == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]


@pytest.mark.parametrize("slot", [SUCCESS, FAILURE], ids=["success", "failure"])
def test_stale_probe_is_ignored(slot: int) -> None:
    """A probe that is no longer the current one decides nothing; the current probe still does."""
    engine, circuit, clock, transitions = make()
    stale = to_half_open(engine, clock)
    clock.advance(1.5)  # past the probe's 1 s timeout
    assert admit(engine, clock) is SHORT_CIRCUITED  # the stale probe now counts as failed
    assert circuit.state is OPEN
    clock.advance(SLEEP)
    current = admit(engine, clock)
    assert isinstance(current, Probe)
    assert current is not stale
    assert engine.finish(slot, stale, clock(), 1.5 + SLEEP)
    assert circuit.state is HALF_OPEN
    assert admit(engine, clock) is SHORT_CIRCUITED
    assert engine.finish(SUCCESS, current, clock(), RUN_SECONDS)
    assert circuit.state is CLOSED
    assert transitions[-1] == (HALF_OPEN, CLOSED)


def test_probe_outliving_its_timeout_reopens_and_its_late_success_is_ignored() -> None:
    """A probe past its timeout counts as failed when the next call arrives; its late success does not close."""
    engine, circuit, clock, transitions = make(timeout=1.0)
    probe = to_half_open(engine, clock)
    clock.advance(1.25)
    assert admit(engine, clock) is SHORT_CIRCUITED
    assert circuit.state is OPEN
    assert transitions == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, OPEN)]
    assert engine.finish(SUCCESS, probe, clock(), 1.25)
    assert circuit.state is OPEN
    assert circuit.statistics().active == 0
    clock.advance(SLEEP - 0.25)  # the sleep window restarted when the probe was declared failed
    assert admit(engine, clock) is SHORT_CIRCUITED
    clock.advance(0.25)
    assert isinstance(admit(engine, clock), Probe)
    assert transitions[-1] == (OPEN, HALF_OPEN)


def test_probe_at_exactly_its_timeout_is_still_running() -> None:
    """A call arriving exactly `timeout` after the probe started leaves the probe to decide (it has not outlived it).

    The caller-isolation driver counts a run as timed out only when ``end - start > timeout``.
    """
    engine, circuit, clock, transitions = make(timeout=1.0)
    probe = to_half_open(engine, clock)
    clock.advance(1.0)
    assert admit(engine, clock) is SHORT_CIRCUITED
    assert circuit.state is HALF_OPEN
    assert engine.finish(SUCCESS, probe, clock(), 1.0)  # what the caller path records for a run of exactly `timeout`
    assert circuit.state is CLOSED
    assert transitions == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]


# -- tickets ----------------------------------------------------------------------------------------------------


def test_tickets_bound_admissions_and_come_back() -> None:
    """N tickets admit N calls; the next is rejected and counted; completing a call frees its ticket."""
    engine, circuit, clock, _ = make(max_concurrent_requests=3, request_volume_threshold=100)
    for expected_active in (1, 2, 3):
        assert admit(engine, clock) is ADMITTED
        assert circuit.statistics().active == expected_active
    assert not circuit.allow_request()
    assert admit(engine, clock) is REJECTED_CALL
    stats = circuit.statistics()
    assert (stats.active, stats.counts["rejected"], stats.max_concurrent_requests) == (3, 1, 3)
    assert engine.finish(SUCCESS, ADMITTED, clock(), RUN_SECONDS)
    assert circuit.statistics().active == 2
    assert circuit.allow_request()
    assert admit(engine, clock) is ADMITTED
    engine.succeed(ADMITTED, clock(), RUN_SECONDS)  # the drivers' way to end a success with no fallback
    stats = circuit.statistics()
    assert (stats.active, stats.counts["success"]) == (2, 2)


def test_timed_out_run_keeps_its_ticket_until_it_finishes() -> None:
    """time_out records one timeout and keeps the ticket (abandoned); the late finish returns it, records nothing."""
    engine, circuit, clock, _ = make(max_concurrent_requests=1, request_volume_threshold=100)
    admission = admit(engine, clock)
    assert admission is ADMITTED
    engine.time_out(admission, clock(), 1.0)
    stats = circuit.statistics()
    assert (stats.active, stats.abandoned, stats.counts["timeout"]) == (1, 1, 1)
    assert (stats.latency_total.count, stats.latency_execute.count) == (1, 0)  # the call's, not yet the run's
    assert admit(engine, clock) is REJECTED_CALL  # the abandoned run still holds the only ticket
    clock.advance(2.0)
    engine.finish_abandoned(3.0)  # the run returns at last
    stats = circuit.statistics()
    assert (stats.active, stats.abandoned) == (0, 0)
    assert (stats.counts["timeout"], stats.counts["success"], stats.counts["rejected"]) == (1, 0, 1)
    assert (stats.latency_total.count, stats.latency_execute.count) == (1, 1)
    assert admit(engine, clock) is ADMITTED


def test_unlimited_tickets() -> None:
    """max_concurrent_requests=math.inf admits every call and counts each held ticket."""
    engine, circuit, clock, _ = make(max_concurrent_requests=math.inf)
    for _ in range(500):
        assert admit(engine, clock) is ADMITTED
    stats = circuit.statistics()
    assert (stats.active, stats.counts["rejected"], stats.max_concurrent_requests) == (500, 0, math.inf)
    assert circuit.allow_request()
    for _ in range(500):
        assert engine.finish(SUCCESS, ADMITTED, clock(), RUN_SECONDS)
    assert circuit.statistics().active == 0
    for _ in range(600):
        assert admit(engine, clock) is ADMITTED
    assert circuit.statistics().active == 600


# -- reconfiguration --------------------------------------------------------------------------------------------


def free_tickets(engine: Engine, clock: FakeClock) -> int:
    """How many calls can be admitted right now (admitted and then withdrawn; only the last, rejected, call is
    counted)."""
    taken = 0
    while admit(engine, clock) is ADMITTED:
        taken += 1
    for _ in range(taken):
        assert engine.withdraw(ADMITTED)
    return taken


@pytest.mark.parametrize("path", SUCCESS_PATHS)
def test_lowering_tickets_while_held(path: str) -> None:
    """Lowering max_concurrent_requests below the held tickets rejects calls until enough come back."""
    engine, circuit, clock, _ = make(max_concurrent_requests=4, request_volume_threshold=100)
    for _ in range(4):
        assert admit(engine, clock) is ADMITTED
    engine.configure(settings(max_concurrent_requests=2, request_volume_threshold=100))
    stats = circuit.statistics()
    assert (stats.active, stats.max_concurrent_requests) == (4, 2)
    for still_held in (3, 2):
        end_success(engine, ADMITTED, clock, path)
        assert circuit.statistics().active == still_held
        assert not circuit.allow_request()
        assert admit(engine, clock) is REJECTED_CALL
    end_success(engine, ADMITTED, clock, path)
    assert circuit.statistics().active == 1
    assert circuit.allow_request()
    end_success(engine, ADMITTED, clock, path)
    assert circuit.statistics().active == 0
    assert free_tickets(engine, clock) == 2


def test_raising_tickets_frees_them_at_once() -> None:
    """Raising max_concurrent_requests lets more calls in at once, the held tickets staying held."""
    engine, circuit, clock, _ = make(max_concurrent_requests=2, request_volume_threshold=100)
    for _ in range(2):
        assert admit(engine, clock) is ADMITTED
    assert admit(engine, clock) is REJECTED_CALL
    engine.configure(settings(max_concurrent_requests=4, request_volume_threshold=100))
    assert circuit.allow_request()
    assert free_tickets(engine, clock) == 2
    assert circuit.statistics().active == 2
    for _ in range(2):
        assert engine.finish(SUCCESS, ADMITTED, clock(), RUN_SECONDS)
    assert free_tickets(engine, clock) == 4


@pytest.mark.parametrize("path", SUCCESS_PATHS)
def test_lowering_then_raising_tickets_while_held(path: str) -> None:
    """Lower below the held tickets, then raise above them: free tickets are the new max minus those held."""
    engine, circuit, clock, _ = make(max_concurrent_requests=4, request_volume_threshold=100)
    for _ in range(4):
        assert admit(engine, clock) is ADMITTED
    engine.configure(settings(max_concurrent_requests=2, request_volume_threshold=100))
    engine.configure(settings(max_concurrent_requests=6, request_volume_threshold=100))
    assert free_tickets(engine, clock) == 2
    for _ in range(4):
        end_success(engine, ADMITTED, clock, path)
    assert circuit.statistics().active == 0
    assert free_tickets(engine, clock) == 6


@pytest.mark.parametrize(
    ("first", "second", "final"),
    [
        pytest.param(math.inf, 3, 3, id="unlimited-to-3"),
        pytest.param(4, math.inf, None, id="4-to-unlimited"),
    ],
)
def test_switching_unlimited_tickets_while_held(first: float, second: float, final: int | None) -> None:
    """Switching between a ticket limit and math.inf while tickets are held ends with the new limit's tickets."""
    engine, circuit, clock, _ = make(max_concurrent_requests=first, request_volume_threshold=100)
    held = 5 if first == math.inf else 4
    for _ in range(held):
        assert admit(engine, clock) is ADMITTED
    engine.configure(settings(max_concurrent_requests=second, request_volume_threshold=100))
    if final is not None:
        assert admit(engine, clock) is REJECTED_CALL
    else:
        for _ in range(20):
            assert admit(engine, clock) is ADMITTED
        held += 20
    for _ in range(held):
        assert engine.finish(SUCCESS, ADMITTED, clock(), RUN_SECONDS)
    assert circuit.statistics().active == 0
    if final is not None:
        assert free_tickets(engine, clock) == final
    else:
        engine.configure(settings(max_concurrent_requests=3, request_volume_threshold=100))
        assert free_tickets(engine, clock) == 3


@pytest.mark.parametrize("reshape", [False, True], ids=["same-window", "new-window-shape"])
def test_configure_keeps_the_counts(reshape: bool) -> None:
    """configure keeps the rolling counts (re-bucketed when the window's shape changes)."""
    engine, circuit, clock, _ = make(request_volume_threshold=100)
    for slot in (SUCCESS, SUCCESS, FAILURE, TIMEOUT, BAD_REQUEST):
        call(engine, clock, slot)
    assert engine.count_fallback(FALLBACK_FAILURE, clock(), None)
    before = counts(circuit)
    cumulative = dict(circuit.statistics().cumulative)
    window = {"rolling_window": 20.0, "rolling_buckets": 5} if reshape else {}
    engine.configure(settings(request_volume_threshold=100, max_concurrent_requests=7, **window))
    assert counts(circuit) == before
    assert dict(circuit.statistics().cumulative) == cumulative
    assert circuit.statistics().max_concurrent_requests == 7


# -- forcing ----------------------------------------------------------------------------------------------------


def test_force_open_short_circuits_everything() -> None:
    """force_open short-circuits every call, even after a sleep window; state FORCED_OPEN; emits on change."""
    engine, circuit, clock, transitions = make()
    engine.configure(settings(force_open=True))
    assert transitions == [(CLOSED, FORCED_OPEN)]
    assert circuit.state is FORCED_OPEN
    assert circuit.is_open()
    assert not circuit.allow_request()
    for _ in range(3):
        assert admit(engine, clock) is SHORT_CIRCUITED
        clock.advance(SLEEP / 2 + 0.5)  # two advances pass a whole sleep window, within the rolling window
    stats = circuit.statistics()
    assert (stats.state, stats.counts["short-circuit"], stats.active) == (FORCED_OPEN, 3, 0)
    engine.configure(settings())
    assert transitions == [(CLOSED, FORCED_OPEN), (FORCED_OPEN, CLOSED)]
    assert admit(engine, clock) is ADMITTED


def test_force_open_from_the_start() -> None:
    """A circuit built with force_open is FORCED_OPEN and short-circuits its first call."""
    engine, circuit, clock, transitions = make(force_open=True)
    assert circuit.state is FORCED_OPEN
    assert admit(engine, clock) is SHORT_CIRCUITED
    assert circuit.statistics().counts["short-circuit"] == 1
    assert transitions == []


def test_force_closed_never_trips_but_enforces_tickets() -> None:
    """force_closed never trips, even at 100% errors over the volume floor; tickets still apply."""
    engine, circuit, clock, transitions = make(force_closed=True, max_concurrent_requests=2)
    assert circuit.state is FORCED_CLOSED
    for _ in range(10):
        assert call(engine, clock, FAILURE) is ADMITTED
    assert reject(engine, clock) is REJECTED_CALL
    stats = circuit.statistics()
    assert (stats.state, stats.requests, stats.error_percentage) == (FORCED_CLOSED, 11, 100)
    assert not circuit.is_open()
    for _ in range(2):
        assert admit(engine, clock) is ADMITTED
    assert admit(engine, clock) is REJECTED_CALL
    assert circuit.state is FORCED_CLOSED
    assert transitions == []


def test_force_closed_over_an_open_circuit() -> None:
    """Forcing an OPEN circuit closed emits (OPEN, FORCED_CLOSED) and admits calls; unforcing emits back."""
    engine, circuit, clock, transitions = make()
    trip(engine, clock)
    engine.configure(settings(force_closed=True))
    assert transitions == [(CLOSED, OPEN), (OPEN, FORCED_CLOSED)]
    assert call(engine, clock, FAILURE) is ADMITTED
    assert circuit.state is FORCED_CLOSED
    engine.configure(settings())
    assert transitions[-1] == (FORCED_CLOSED, OPEN)


# -- emit -------------------------------------------------------------------------------------------------------


def test_emit_exactly_on_transitions() -> None:
    """emit reports each transition once, in order, outside the lock, and nothing else."""
    engine, _, clock, transitions = make(max_concurrent_requests=2)
    call(engine, clock, SUCCESS)
    call(engine, clock, BAD_REQUEST)
    assert transitions == []
    trip(engine, clock)
    assert transitions == [(CLOSED, OPEN)]
    for _ in range(3):
        assert admit(engine, clock) is SHORT_CIRCUITED
    clock.advance(SLEEP)
    probe = admit(engine, clock)
    assert isinstance(probe, Probe)
    assert admit(engine, clock) is SHORT_CIRCUITED  # while the probe runs
    assert engine.finish(BAD_REQUEST, probe, clock(), RUN_SECONDS)  # no transition
    probe = admit(engine, clock)
    assert isinstance(probe, Probe)
    assert engine.finish(FAILURE, probe, clock(), RUN_SECONDS)
    clock.advance(SLEEP)
    probe = admit(engine, clock)
    assert isinstance(probe, Probe)
    engine.time_out(probe, clock(), 1.0)
    clock.advance(SLEEP)
    probe = admit(engine, clock)
    assert isinstance(probe, Probe)
    assert engine.finish(SUCCESS, probe, clock(), RUN_SECONDS)
    call(engine, clock, SUCCESS)
    assert transitions == [
        (CLOSED, OPEN),
        (OPEN, HALF_OPEN),
        (HALF_OPEN, OPEN),
        (OPEN, HALF_OPEN),
        (HALF_OPEN, OPEN),
        (OPEN, HALF_OPEN),
        (HALF_OPEN, CLOSED),
    ]


def test_emit_never_under_the_lock() -> None:
    """The recorder's lock check itself fails when emit runs under the engine's lock."""
    transitions: list[Transition] = []
    emit = recorder(transitions)
    engine, circuit, _, _ = make()
    with engine.lock, pytest.raises(AssertionError, match="lock is held"):
        emit(circuit, CLOSED, OPEN)
    with pytest.raises(AssertionError, match="facade"):
        emit(Circuit(engine), CLOSED, OPEN)
    emit(circuit, CLOSED, OPEN)
    assert transitions == [(CLOSED, OPEN)]


# -- statistics -------------------------------------------------------------------------------------------------


def test_statistics_is_a_frozen_snapshot_with_every_event() -> None:
    """statistics() is frozen, names every event (zeros included) and does not follow later calls."""
    engine, circuit, clock, _ = make()
    stats = circuit.statistics()
    assert isinstance(stats, CircuitStatistics)
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.requests = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        stats.counts["success"] = 1  # type: ignore[index]
    assert set(CONTRACT_EVENTS) <= set(stats.counts)
    assert {event.value for event in Event} == set(stats.counts)
    assert set(stats.counts.values()) == {0}
    assert (stats.name, stats.state, stats.requests, stats.errors, stats.error_percentage) == ("cmd", CLOSED, 0, 0, 0)
    assert (stats.active, stats.abandoned, stats.max_concurrent_requests) == (0, 0, 3)
    call(engine, clock, SUCCESS)
    assert stats.counts["success"] == 0
    assert circuit.statistics().counts["success"] == 1


def test_statistics_requests_and_errors() -> None:
    """requests = success+failure+timeout+rejected, errors = failure+timeout+rejected; the rest in neither."""
    engine, circuit, clock, _ = make(max_concurrent_requests=1, request_volume_threshold=100)
    for slot in (SUCCESS, SUCCESS, SUCCESS, FAILURE, TIMEOUT, BAD_REQUEST):
        call(engine, clock, slot)
    assert reject(engine, clock) is REJECTED_CALL
    assert engine.count_fallback(FALLBACK_SUCCESS, clock(), None)
    assert engine.count_fallback(FALLBACK_FAILURE, clock(), None)
    stats = circuit.statistics()
    assert (stats.requests, stats.errors, stats.error_percentage) == (6, 3, 50)
    expected = dict.fromkeys(CONTRACT_EVENTS, 1)
    expected["success"] = 3
    expected["short-circuit"] = 0
    assert {name: stats.counts[name] for name in CONTRACT_EVENTS} == expected


@pytest.mark.parametrize(
    ("successes", "failures", "percentage"),
    [
        pytest.param(2, 1, 33, id="33.3-down"),
        pytest.param(1, 2, 67, id="66.7-up"),
        pytest.param(7, 1, 13, id="12.5-half-up"),
        pytest.param(1, 1, 50, id="exact"),
        pytest.param(0, 3, 100, id="all"),
    ],
)
def test_statistics_error_percentage_rounds_half_up(successes: int, failures: int, percentage: int) -> None:
    """error_percentage is an int, errors/requests in percent rounded half up."""
    engine, circuit, clock, _ = make(request_volume_threshold=100)
    for _ in range(successes):
        call(engine, clock, SUCCESS)
    for _ in range(failures):
        call(engine, clock, FAILURE)
    value = circuit.statistics().error_percentage
    assert type(value) is int
    assert value == percentage


def test_statistics_follow_the_rolling_window() -> None:
    """Counts leave statistics() once the rolling window has passed them, without any call."""
    engine, circuit, clock, _ = make(request_volume_threshold=100)
    call(engine, clock, FAILURE)
    clock.advance(5.0)
    call(engine, clock, SUCCESS)
    clock.advance(5.0)
    stats = circuit.statistics()
    assert (stats.requests, stats.errors, stats.counts["success"]) == (1, 0, 1)
    clock.advance(5.0)
    assert circuit.statistics().requests == 0


THRESHOLDS = [0.5, 1, 12.5, 13, 49.5, 50, 50.5, 66.6, 99, 99.5, 100]


@pytest.mark.parametrize("threshold", THRESHOLDS, ids=[f"{threshold:g}%" for threshold in THRESHOLDS])
def test_error_budget_is_the_most_errors_that_cannot_trip(threshold: float) -> None:
    """error_budget(volume, threshold) is the largest error count whose best case cannot reach the threshold."""
    for volume in range(120):
        budget = -1
        for errors in range(volume + 2):
            fewest = max(volume, errors)
            if fewest and (200 * errors + fewest) // (2 * fewest) >= threshold:
                break
            if fewest:
                budget = errors
        assert error_budget(volume, threshold) == budget, (volume, threshold)
