"""The decision core (`breaker._circuit.Circuit`) driven directly: no threads, no sleeping, a fake clock."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from test_api import EVENTS

import breaker
from breaker import State
from breaker._circuit import (
    ADMITTED,
    REJECTED_CALL,
    SHORT_CIRCUITED,
    Circuit,
    CircuitStatistics,
)
from breaker._events import (
    BAD_REQUEST,
    FAILURE,
    FALLBACK_FAILURE,
    FALLBACK_SUCCESS,
    REJECTED,
    SUCCESS,
    TIMEOUT,
    Event,
)
from breaker._settings import BUILTIN, Settings
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

#: Every event name the contract lists (semantics item 1).
CONTRACT_EVENTS = EVENTS  # the contract's event names, pinned in test_api


@dataclasses.dataclass
class Attempt:
    """A run handed to a (pretend) worker thread: what `Circuit.finish` / `Circuit.time_out` race on."""

    probe: int
    guard: list[object] = dataclasses.field(default_factory=lambda: [None])


def settings(**fields: Any) -> Settings:
    """`BASE` with ``fields`` laid over it, resolved over the built-in defaults."""
    return breaker.CommandConfig(**{**BASE, **fields}).over(BUILTIN)


def recorder(transitions: list[Transition]) -> Emit:
    """An emit callback that records each transition and checks it is not called under the circuit's lock."""

    def emit(circuit: Circuit, old: State, new: State) -> None:
        assert not circuit._lock.locked(), f"emit({old}, {new}) called while the circuit's lock is held"
        transitions.append((old, new))

    return emit


def make(**fields: Any) -> tuple[Circuit, FakeClock, list[Transition]]:
    """A circuit with `BASE` settings overridden by ``fields``, its fake clock and its recorded transitions."""
    clock = FakeClock()
    transitions: list[Transition] = []
    circuit = Circuit("cmd", settings(**fields), clock, recorder(transitions))
    return circuit, clock, transitions


def admit(circuit: Circuit, clock: FakeClock) -> int:
    """Admit one call as the drivers do: the lock-free ticket first, else `Circuit.admit`."""
    if circuit.try_enter():
        return ADMITTED
    return circuit.admit(clock())


def call(circuit: Circuit, clock: FakeClock, slot: int) -> int:
    """Admit one call and, if admitted, complete it on the caller's thread with ``slot``; the admission code."""
    code = admit(circuit, clock)
    if code >= 0:
        circuit.complete(slot, code, clock())
    return code


def reject(circuit: Circuit, clock: FakeClock) -> int:
    """Make one call find no free ticket: hold every free ticket, admit (rejected), then release the holders."""
    held = 0
    while circuit.try_enter():
        held += 1
    code = circuit.admit(clock())
    for _ in range(held):
        circuit.give_back()
    return code


def trip(circuit: Circuit, clock: FakeClock) -> None:
    """Open a closed circuit with failures."""
    for _ in range(circuit.settings.request_volume_threshold):
        assert call(circuit, clock, FAILURE) == ADMITTED
        if circuit.state is OPEN:
            return
    raise AssertionError(f"{circuit!r} did not trip")


def to_half_open(circuit: Circuit, clock: FakeClock) -> int:
    """Open a `BASE` circuit, let its sleep window pass and admit the probe; the probe id."""
    trip(circuit, clock)
    clock.advance(SLEEP)
    probe = circuit.admit(clock())
    assert probe > 0
    assert circuit.state is HALF_OPEN
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


@pytest.mark.parametrize(("volume", "threshold", "outcomes", "trips"), TRIP_CASES)
def test_trip_rule(volume: int, threshold: int, outcomes: Sequence[int], trips: bool) -> None:
    """Trips on the last outcome iff requests >= volume and the rounded-half-up error percentage >= threshold."""
    circuit, clock, transitions = make(
        request_volume_threshold=volume, error_percent_threshold=threshold, max_concurrent_requests=1
    )
    for i, slot in enumerate(outcomes):
        assert circuit.state is CLOSED, f"tripped early, at outcome {i}"
        if slot == REJECTED:
            assert reject(circuit, clock) == REJECTED_CALL
        else:
            assert call(circuit, clock, slot) == ADMITTED
    assert circuit.state is (OPEN if trips else CLOSED)
    assert transitions == ([(CLOSED, OPEN)] if trips else [])


def test_short_circuits_count_in_neither_requests_nor_errors() -> None:
    """Short-circuits (here under force_open) count in neither requests nor errors."""
    circuit, clock, _ = make(request_volume_threshold=4, error_percent_threshold=50)
    call(circuit, clock, FAILURE)
    call(circuit, clock, FAILURE)
    circuit.configure(settings(request_volume_threshold=4, force_open=True))
    for _ in range(10):
        assert admit(circuit, clock) == SHORT_CIRCUITED
    circuit.configure(settings(request_volume_threshold=4))
    assert call(circuit, clock, SUCCESS) == ADMITTED  # 3 requests, 2 errors: below the volume floor
    stats = circuit.statistics()
    assert (stats.requests, stats.errors, stats.counts["short-circuit"]) == (3, 2, 10)
    assert circuit.state is CLOSED


def test_hot_path_success_evaluates_health_after_the_window_moved() -> None:
    """A success counted on the drivers' lock-free path trips the circuit when the window now calls for it."""
    circuit, clock, transitions = make(request_volume_threshold=4, error_percent_threshold=50)
    for _ in range(3):
        call(circuit, clock, SUCCESS)  # t=1000: will age out at t=1010
    clock.advance(5.0)
    for _ in range(2):
        call(circuit, clock, FAILURE)  # 5 requests, 40%: stays closed
    clock.advance(5.5)  # t=1010.5: the three successes left the window
    circuit.count(FALLBACK_SUCCESS, clock())  # the last failure's fallback ends in the new bucket
    for _ in range(2):  # two ordinary successes, counted as the caller path counts them
        assert circuit.try_enter()
        circuit.count_success(clock())
        circuit.give_back()
    stats = circuit.statistics()
    assert (stats.requests, stats.errors, stats.error_percentage) == (4, 2, 50)
    assert circuit.state is OPEN
    assert transitions == [(CLOSED, OPEN)]


# -- health is evaluated only when an outcome is recorded -------------------------------------------------------


def test_queries_never_change_an_open_circuit() -> None:
    """state, is_open, allow_request and statistics change nothing, even after the sleep window: no probe taken."""
    circuit, clock, transitions = make()
    trip(circuit, clock)
    clock.advance(SLEEP + 1.0)
    before = circuit.statistics()
    for _ in range(3):
        assert circuit.state is OPEN
        assert circuit.is_open()
        assert circuit.allow_request()
        assert circuit.statistics() == before
    assert transitions == [(CLOSED, OPEN)]
    assert circuit.admit(clock()) > 0  # the probe is still there to take
    assert circuit.state is HALF_OPEN
    assert transitions == [(CLOSED, OPEN), (OPEN, HALF_OPEN)]


def test_queries_never_trip_a_closed_circuit() -> None:
    """A window that ageing made unhealthy stays CLOSED through queries; the next recorded outcome trips it."""
    circuit, clock, transitions = make(request_volume_threshold=3, error_percent_threshold=60)
    for _ in range(3):
        call(circuit, clock, SUCCESS)
    clock.advance(5.0)
    for _ in range(3):
        call(circuit, clock, FAILURE)  # 6 requests, 50%: below 60
    clock.advance(5.5)  # the successes aged out: 3 requests, 100% errors
    for _ in range(3):
        assert circuit.statistics().error_percentage == 100
        assert circuit.state is CLOSED
        assert not circuit.is_open()
        assert circuit.allow_request()
    assert transitions == []
    call(circuit, clock, SUCCESS)  # 4 requests, 75%
    assert circuit.state is OPEN
    assert transitions == [(CLOSED, OPEN)]


# -- open, half-open and the probe ------------------------------------------------------------------------------


def test_open_circuit_short_circuits_and_counts_it() -> None:
    """An open circuit short-circuits every call (no ticket taken) and counts each as 'short-circuit'."""
    circuit, clock, _ = make()
    trip(circuit, clock)
    for _ in range(5):
        assert not circuit.allow_request()
        assert not circuit.try_enter()
        assert circuit.admit(clock()) == SHORT_CIRCUITED
    stats = circuit.statistics()
    assert stats.counts["short-circuit"] == 5
    assert stats.active == 0
    assert circuit.state is OPEN


def test_exactly_one_probe_after_the_sleep_window() -> None:
    """Before the sleep window ends calls short-circuit; after it one call is the probe, the rest short-circuit."""
    circuit, clock, _ = make()
    trip(circuit, clock)
    clock.advance(SLEEP - 0.25)
    assert not circuit.allow_request()
    assert circuit.admit(clock()) == SHORT_CIRCUITED
    clock.advance(0.25)
    assert circuit.allow_request()
    probe = circuit.admit(clock())
    assert probe > 0
    assert circuit.state is HALF_OPEN
    for _ in range(5):
        assert not circuit.allow_request()
        assert not circuit.try_enter()
        assert circuit.admit(clock()) == SHORT_CIRCUITED
    assert circuit.state is HALF_OPEN
    assert circuit.statistics().active == 1  # the probe holds a ticket


def test_probe_success_closes_and_clears_the_window() -> None:
    """A successful probe closes the circuit, clears the rolling counts and lets calls in again."""
    circuit, clock, transitions = make()
    probe = to_half_open(circuit, clock)
    circuit.complete(SUCCESS, probe, clock())
    assert circuit.state is CLOSED
    stats = circuit.statistics()
    assert (stats.requests, stats.errors, stats.active) == (0, 0, 0)
    assert set(stats.counts.values()) == {0}
    assert transitions[-1] == (HALF_OPEN, CLOSED)
    assert circuit.try_enter()


@pytest.mark.parametrize(
    "ending",
    ["failure", "timeout", "worker-timeout", "worker-failure"],
)
def test_failed_probe_reopens_with_a_fresh_sleep_window(ending: str) -> None:
    """A probe's failure or timeout reopens the circuit; it short-circuits until a fresh sleep window has passed."""
    circuit, clock, transitions = make()
    probe = to_half_open(circuit, clock)
    clock.advance(0.5)
    if ending == "failure":
        circuit.complete(FAILURE, probe, clock())
    elif ending == "timeout":
        circuit.complete(TIMEOUT, probe, clock())
    elif ending == "worker-timeout":
        assert circuit.time_out(Attempt(probe), clock())
    else:
        assert circuit.finish(Attempt(probe), FAILURE, clock())
    assert circuit.state is OPEN
    assert transitions[-1] == (HALF_OPEN, OPEN)
    clock.advance(SLEEP - 0.25)
    assert circuit.admit(clock()) == SHORT_CIRCUITED
    clock.advance(0.25)
    assert circuit.admit(clock()) > 0
    assert circuit.state is HALF_OPEN


def test_probe_without_a_ticket_is_rejected_and_restarts_the_sleep_window() -> None:
    """A would-be probe that finds every ticket held is rejected (counted), and the sleep window starts over."""
    circuit, clock, transitions = make(max_concurrent_requests=1, request_volume_threshold=2)
    assert admit(circuit, clock) == ADMITTED  # the only ticket, held by a slow call
    assert reject(circuit, clock) == REJECTED_CALL
    assert reject(circuit, clock) == REJECTED_CALL  # 2 requests, 100% errors
    assert circuit.state is OPEN
    clock.advance(SLEEP)
    assert circuit.admit(clock()) == REJECTED_CALL
    assert circuit.statistics().counts["rejected"] == 3
    assert circuit.state is OPEN
    circuit.complete(SUCCESS, 0, clock())  # the slow call returns its ticket (and cannot close the circuit)
    clock.advance(SLEEP - 0.25)
    assert circuit.admit(clock()) == SHORT_CIRCUITED
    clock.advance(0.25)
    assert circuit.admit(clock()) > 0
    assert transitions == [(CLOSED, OPEN), (OPEN, HALF_OPEN)]


def test_probe_bad_request_frees_the_probe_slot() -> None:
    """A probe ending in a bad request leaves the circuit HALF_OPEN; the next call becomes the probe."""
    circuit, clock, transitions = make()
    probe = to_half_open(circuit, clock)
    circuit.complete(BAD_REQUEST, probe, clock())
    assert circuit.state is HALF_OPEN
    assert circuit.statistics().active == 0
    assert not circuit.try_enter()
    second = circuit.admit(clock())
    assert second > 0
    assert second != probe
    assert circuit.admit(clock()) == SHORT_CIRCUITED
    circuit.complete(SUCCESS, second, clock())
    assert circuit.state is CLOSED
    assert transitions == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]


def test_half_open_probe_without_a_ticket_reopens() -> None:
    """In HALF_OPEN with no probe running, a would-be probe that finds no ticket is rejected and reopens."""
    circuit, clock, transitions = make(max_concurrent_requests=2)
    assert admit(circuit, clock) == ADMITTED  # call A holds a ticket through everything below
    probe = to_half_open(circuit, clock)
    circuit.complete(BAD_REQUEST, probe, clock())
    circuit.configure(settings(max_concurrent_requests=1))  # A's ticket is now the only one
    assert circuit.state is HALF_OPEN
    assert circuit.admit(clock()) == REJECTED_CALL
    assert circuit.state is OPEN
    assert transitions == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, OPEN)]
    assert circuit.statistics().counts["rejected"] == 1
    clock.advance(SLEEP - 0.25)
    assert circuit.admit(clock()) == SHORT_CIRCUITED


# -- only the probe decides -------------------------------------------------------------------------------------


@pytest.mark.parametrize("driver", ["caller", "worker"])
def test_late_success_does_not_close_an_open_circuit(driver: str) -> None:
    """A success from a call admitted before the circuit opened leaves it OPEN."""
    circuit, clock, transitions = make()
    assert admit(circuit, clock) == ADMITTED  # call A, admitted while closed
    trip(circuit, clock)
    if driver == "caller":
        circuit.complete(SUCCESS, 0, clock())
    else:
        assert circuit.finish(Attempt(0), SUCCESS, clock())
    assert circuit.state is OPEN
    assert transitions == [(CLOSED, OPEN)]
    assert circuit.statistics().active == 0


@pytest.mark.parametrize("slot", [SUCCESS, FAILURE, TIMEOUT], ids=["success", "failure", "timeout"])
def test_late_outcome_does_not_decide_a_half_open_circuit(slot: int) -> None:
    """An outcome from a call admitted before the circuit opened leaves a HALF_OPEN circuit HALF_OPEN."""
    circuit, clock, transitions = make()
    assert admit(circuit, clock) == ADMITTED  # call A, admitted while closed
    probe = to_half_open(circuit, clock)
    circuit.complete(slot, 0, clock())
    assert circuit.state is HALF_OPEN
    assert circuit.admit(clock()) == SHORT_CIRCUITED  # the probe is still the one running
    circuit.complete(SUCCESS, probe, clock())
    assert circuit.state is CLOSED
    assert transitions == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]


@pytest.mark.parametrize("slot", [SUCCESS, FAILURE], ids=["success", "failure"])
def test_stale_probe_is_ignored(slot: int) -> None:
    """A probe whose id is no longer the current one decides nothing; the current probe still does."""
    circuit, clock, transitions = make()
    stale = to_half_open(circuit, clock)
    clock.advance(1.5)  # past the probe's 1 s timeout
    assert circuit.admit(clock()) == SHORT_CIRCUITED  # the stale probe now counts as failed
    clock.advance(SLEEP)
    current = circuit.admit(clock())
    assert current > 0
    assert current != stale
    circuit.complete(slot, stale, clock())
    assert circuit.state is HALF_OPEN
    assert circuit.admit(clock()) == SHORT_CIRCUITED
    circuit.complete(SUCCESS, current, clock())
    assert circuit.state is CLOSED
    assert transitions[-1] == (HALF_OPEN, CLOSED)


def test_probe_outliving_its_timeout_reopens_and_its_late_success_is_ignored() -> None:
    """A probe past its timeout counts as failed when the next call arrives; its late success does not close."""
    circuit, clock, transitions = make(timeout=1.0)
    probe = to_half_open(circuit, clock)
    clock.advance(1.25)
    assert circuit.admit(clock()) == SHORT_CIRCUITED
    assert circuit.state is OPEN
    assert transitions == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, OPEN)]
    circuit.complete(SUCCESS, probe, clock())
    assert circuit.state is OPEN
    assert circuit.statistics().active == 0
    clock.advance(SLEEP - 0.25)  # the sleep window restarted when the probe was declared failed
    assert circuit.admit(clock()) == SHORT_CIRCUITED
    clock.advance(0.25)
    assert circuit.admit(clock()) > 0
    assert transitions[-1] == (OPEN, HALF_OPEN)


def test_probe_at_exactly_its_timeout_is_still_running() -> None:
    """A call arriving exactly `timeout` after the probe started leaves the probe to decide (it has not outlived it).

    The caller-isolation driver counts a run as timed out only when ``end - start > timeout``.
    """
    circuit, clock, transitions = make(timeout=1.0)
    probe = to_half_open(circuit, clock)
    clock.advance(1.0)
    assert circuit.admit(clock()) == SHORT_CIRCUITED
    assert circuit.state is HALF_OPEN
    circuit.complete(SUCCESS, probe, clock())  # what the caller path records for a run of exactly `timeout`
    assert circuit.state is CLOSED
    assert transitions == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]


# -- tickets ----------------------------------------------------------------------------------------------------


def test_tickets_bound_admissions_and_come_back() -> None:
    """N tickets admit N calls; the next is rejected and counted; completing a call frees its ticket."""
    circuit, clock, _ = make(max_concurrent_requests=3, request_volume_threshold=100)
    for expected_active in (1, 2, 3):
        assert admit(circuit, clock) == ADMITTED
        assert circuit.statistics().active == expected_active
    assert not circuit.allow_request()
    assert admit(circuit, clock) == REJECTED_CALL
    stats = circuit.statistics()
    assert (stats.active, stats.counts["rejected"], stats.max_concurrent_requests) == (3, 1, 3)
    circuit.complete(SUCCESS, 0, clock())
    assert circuit.statistics().active == 2
    assert circuit.allow_request()
    assert admit(circuit, clock) == ADMITTED
    attempt = Attempt(0)
    assert circuit.finish(attempt, SUCCESS, clock())
    assert attempt.guard == []
    assert circuit.statistics().active == 2


def test_timed_out_run_keeps_its_ticket_until_it_finishes() -> None:
    """time_out records one timeout and keeps the ticket (abandoned); the late finish returns it, records nothing."""
    circuit, clock, _ = make(max_concurrent_requests=1, request_volume_threshold=100)
    assert admit(circuit, clock) == ADMITTED
    attempt = Attempt(0)
    assert circuit.time_out(attempt, clock())
    assert attempt.guard == []
    stats = circuit.statistics()
    assert (stats.active, stats.abandoned, stats.counts["timeout"]) == (1, 1, 1)
    assert admit(circuit, clock) == REJECTED_CALL  # the abandoned run still holds the only ticket
    assert not circuit.time_out(attempt, clock())  # decided once
    assert not circuit.finish(attempt, SUCCESS, clock())
    stats = circuit.statistics()
    assert (stats.active, stats.abandoned) == (0, 0)
    assert (stats.counts["timeout"], stats.counts["success"], stats.counts["rejected"]) == (1, 0, 1)
    assert admit(circuit, clock) == ADMITTED


def test_finish_before_time_out_decides_and_time_out_is_a_no_op() -> None:
    """A run that finished first decides the outcome; the timeout firing afterwards returns False, counts nothing."""
    circuit, clock, _ = make(max_concurrent_requests=1)
    assert admit(circuit, clock) == ADMITTED
    attempt = Attempt(0)
    assert circuit.finish(attempt, SUCCESS, clock())
    assert not circuit.time_out(attempt, clock())
    assert attempt.guard == []
    stats = circuit.statistics()
    assert (stats.active, stats.abandoned, stats.counts["success"], stats.counts["timeout"]) == (0, 0, 1, 0)


def test_unlimited_tickets() -> None:
    """max_concurrent_requests=math.inf admits every call and counts each held ticket."""
    circuit, clock, _ = make(max_concurrent_requests=math.inf)
    for _ in range(500):
        assert admit(circuit, clock) == ADMITTED
    stats = circuit.statistics()
    assert (stats.active, stats.counts["rejected"], stats.max_concurrent_requests) == (500, 0, math.inf)
    assert circuit.allow_request()
    for _ in range(500):
        circuit.complete(SUCCESS, 0, clock())
    assert circuit.statistics().active == 0
    for _ in range(600):
        assert admit(circuit, clock) == ADMITTED
    assert circuit.statistics().active == 600


# -- reconfiguration --------------------------------------------------------------------------------------------


def free_tickets(circuit: Circuit, clock: FakeClock) -> int:
    """How many calls can be admitted right now (admitted and then withdrawn, so nothing is counted)."""
    taken = 0
    while admit(circuit, clock) == ADMITTED:
        taken += 1
    for _ in range(taken):
        circuit.give_back()
    return taken


def test_lowering_tickets_while_held() -> None:
    """Lowering max_concurrent_requests below the held tickets rejects calls until enough come back."""
    circuit, clock, _ = make(max_concurrent_requests=4, request_volume_threshold=100)
    for _ in range(4):
        assert admit(circuit, clock) == ADMITTED
    circuit.configure(settings(max_concurrent_requests=2, request_volume_threshold=100))
    stats = circuit.statistics()
    assert (stats.active, stats.max_concurrent_requests) == (4, 2)
    for still_held in (3, 2):
        circuit.complete(SUCCESS, 0, clock())
        assert circuit.statistics().active == still_held
        assert not circuit.allow_request()
        assert admit(circuit, clock) == REJECTED_CALL
    circuit.complete(SUCCESS, 0, clock())
    assert circuit.statistics().active == 1
    assert circuit.allow_request()
    circuit.complete(SUCCESS, 0, clock())
    assert circuit.statistics().active == 0
    assert free_tickets(circuit, clock) == 2


def test_raising_tickets_frees_them_at_once() -> None:
    """Raising max_concurrent_requests lets more calls in at once, the held tickets staying held."""
    circuit, clock, _ = make(max_concurrent_requests=2, request_volume_threshold=100)
    for _ in range(2):
        assert admit(circuit, clock) == ADMITTED
    assert admit(circuit, clock) == REJECTED_CALL
    circuit.configure(settings(max_concurrent_requests=4, request_volume_threshold=100))
    assert circuit.allow_request()
    assert free_tickets(circuit, clock) == 2
    assert circuit.statistics().active == 2
    for _ in range(2):
        circuit.complete(SUCCESS, 0, clock())
    assert free_tickets(circuit, clock) == 4


def test_lowering_then_raising_tickets_while_held() -> None:
    """Lower below the held tickets, then raise above them: free tickets are the new max minus those held."""
    circuit, clock, _ = make(max_concurrent_requests=4, request_volume_threshold=100)
    for _ in range(4):
        assert admit(circuit, clock) == ADMITTED
    circuit.configure(settings(max_concurrent_requests=2, request_volume_threshold=100))
    circuit.configure(settings(max_concurrent_requests=6, request_volume_threshold=100))
    assert free_tickets(circuit, clock) == 2
    for _ in range(4):
        circuit.complete(SUCCESS, 0, clock())
    assert circuit.statistics().active == 0
    assert free_tickets(circuit, clock) == 6


@pytest.mark.parametrize(
    ("first", "second", "final"),
    [
        pytest.param(math.inf, 3, 3, id="unlimited-to-3"),
        pytest.param(4, math.inf, None, id="4-to-unlimited"),
    ],
)
def test_switching_unlimited_tickets_while_held(first: float, second: float, final: int | None) -> None:
    """Switching between a ticket limit and math.inf while tickets are held ends with the new limit's tickets."""
    circuit, clock, _ = make(max_concurrent_requests=first, request_volume_threshold=100)
    held = 5 if first == math.inf else 4
    for _ in range(held):
        assert admit(circuit, clock) == ADMITTED
    circuit.configure(settings(max_concurrent_requests=second, request_volume_threshold=100))
    if final is not None:
        assert admit(circuit, clock) == REJECTED_CALL
    else:
        for _ in range(20):
            assert admit(circuit, clock) == ADMITTED
        held += 20
    for _ in range(held):
        circuit.complete(SUCCESS, 0, clock())
    assert circuit.statistics().active == 0
    if final is not None:
        assert free_tickets(circuit, clock) == final
    else:
        circuit.configure(settings(max_concurrent_requests=3, request_volume_threshold=100))
        assert free_tickets(circuit, clock) == 3


@pytest.mark.parametrize("reshape", [False, True], ids=["same-window", "new-window-shape"])
def test_configure_keeps_the_counts(reshape: bool) -> None:
    """configure keeps the rolling counts (re-bucketed when the window's shape changes)."""
    circuit, clock, _ = make(request_volume_threshold=100)
    for slot in (SUCCESS, SUCCESS, FAILURE, TIMEOUT, BAD_REQUEST):
        call(circuit, clock, slot)
    circuit.count(FALLBACK_FAILURE, clock())
    before = counts(circuit)
    window = {"rolling_window": 20.0, "rolling_buckets": 5} if reshape else {}
    circuit.configure(settings(request_volume_threshold=100, max_concurrent_requests=7, **window))
    assert counts(circuit) == before
    assert circuit.statistics().max_concurrent_requests == 7


# -- forcing ----------------------------------------------------------------------------------------------------


def test_force_open_short_circuits_everything() -> None:
    """force_open short-circuits every call, even after a sleep window; state FORCED_OPEN; emits on change."""
    circuit, clock, transitions = make()
    circuit.configure(settings(force_open=True))
    assert transitions == [(CLOSED, FORCED_OPEN)]
    assert circuit.state is FORCED_OPEN
    assert circuit.is_open()
    assert not circuit.allow_request()
    for _ in range(3):
        assert not circuit.try_enter()
        assert circuit.admit(clock()) == SHORT_CIRCUITED
        clock.advance(SLEEP / 2 + 0.5)  # two advances pass a whole sleep window, within the rolling window
    stats = circuit.statistics()
    assert (stats.state, stats.counts["short-circuit"], stats.active) == (FORCED_OPEN, 3, 0)
    circuit.configure(settings())
    assert transitions == [(CLOSED, FORCED_OPEN), (FORCED_OPEN, CLOSED)]
    assert admit(circuit, clock) == ADMITTED


def test_force_open_from_the_start() -> None:
    """A circuit built with force_open is FORCED_OPEN and short-circuits its first call."""
    circuit, clock, transitions = make(force_open=True)
    assert circuit.state is FORCED_OPEN
    assert admit(circuit, clock) == SHORT_CIRCUITED
    assert transitions == []


def test_force_closed_never_trips_but_enforces_tickets() -> None:
    """force_closed never trips, even at 100% errors over the volume floor; tickets still apply."""
    circuit, clock, transitions = make(force_closed=True, max_concurrent_requests=2)
    assert circuit.state is FORCED_CLOSED
    for _ in range(10):
        assert call(circuit, clock, FAILURE) == ADMITTED
    assert reject(circuit, clock) == REJECTED_CALL
    stats = circuit.statistics()
    assert (stats.state, stats.requests, stats.error_percentage) == (FORCED_CLOSED, 11, 100)
    assert not circuit.is_open()
    for _ in range(2):
        assert admit(circuit, clock) == ADMITTED
    assert admit(circuit, clock) == REJECTED_CALL
    assert circuit.state is FORCED_CLOSED
    assert transitions == []


def test_force_closed_over_an_open_circuit() -> None:
    """Forcing an OPEN circuit closed emits (OPEN, FORCED_CLOSED) and admits calls; unforcing emits back."""
    circuit, clock, transitions = make()
    trip(circuit, clock)
    circuit.configure(settings(force_closed=True))
    assert transitions == [(CLOSED, OPEN), (OPEN, FORCED_CLOSED)]
    assert call(circuit, clock, FAILURE) == ADMITTED
    assert circuit.state is FORCED_CLOSED
    circuit.configure(settings())
    assert transitions[-1] == (FORCED_CLOSED, OPEN)


# -- emit -------------------------------------------------------------------------------------------------------


def test_emit_exactly_on_transitions() -> None:
    """emit reports each transition once, in order, outside the lock, and nothing else."""
    circuit, clock, transitions = make(max_concurrent_requests=2)
    call(circuit, clock, SUCCESS)
    call(circuit, clock, BAD_REQUEST)
    assert transitions == []
    trip(circuit, clock)
    assert transitions == [(CLOSED, OPEN)]
    for _ in range(3):
        circuit.admit(clock())  # short-circuits
    clock.advance(SLEEP)
    probe = circuit.admit(clock())
    circuit.admit(clock())  # short-circuited while the probe runs
    circuit.complete(BAD_REQUEST, probe, clock())  # no transition
    probe = circuit.admit(clock())
    circuit.complete(FAILURE, probe, clock())
    clock.advance(SLEEP)
    probe = circuit.admit(clock())
    assert circuit.time_out(Attempt(probe), clock())
    clock.advance(SLEEP)
    probe = circuit.admit(clock())
    circuit.complete(SUCCESS, probe, clock())
    call(circuit, clock, SUCCESS)
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
    """The recorder's lock check itself fails when emit runs under the circuit's lock."""
    transitions: list[Transition] = []
    emit = recorder(transitions)
    circuit, _, _ = make()
    with circuit._lock, pytest.raises(AssertionError, match="lock is held"):
        emit(circuit, CLOSED, OPEN)
    emit(circuit, CLOSED, OPEN)
    assert transitions == [(CLOSED, OPEN)]


# -- statistics -------------------------------------------------------------------------------------------------


def test_statistics_is_a_frozen_snapshot_with_every_event() -> None:
    """statistics() is frozen, names every event (zeros included) and does not follow later calls."""
    circuit, clock, _ = make()
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
    call(circuit, clock, SUCCESS)
    assert stats.counts["success"] == 0
    assert circuit.statistics().counts["success"] == 1


def test_statistics_requests_and_errors() -> None:
    """requests = success+failure+timeout+rejected, errors = failure+timeout+rejected; the rest in neither."""
    circuit, clock, _ = make(max_concurrent_requests=1, request_volume_threshold=100)
    for slot in (SUCCESS, SUCCESS, SUCCESS, FAILURE, TIMEOUT, BAD_REQUEST):
        call(circuit, clock, slot)
    assert reject(circuit, clock) == REJECTED_CALL
    circuit.count(FALLBACK_SUCCESS, clock())
    circuit.count(FALLBACK_FAILURE, clock())
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
    circuit, clock, _ = make(request_volume_threshold=100)
    for _ in range(successes):
        call(circuit, clock, SUCCESS)
    for _ in range(failures):
        call(circuit, clock, FAILURE)
    value = circuit.statistics().error_percentage
    assert type(value) is int
    assert value == percentage


def test_statistics_follow_the_rolling_window() -> None:
    """Counts leave statistics() once the rolling window has passed them, without any call."""
    circuit, clock, _ = make(request_volume_threshold=100)
    call(circuit, clock, FAILURE)
    clock.advance(5.0)
    call(circuit, clock, SUCCESS)
    clock.advance(5.0)
    stats = circuit.statistics()
    assert (stats.requests, stats.errors, stats.counts["success"]) == (1, 0, 1)
    clock.advance(5.0)
    assert circuit.statistics().requests == 0


@pytest.mark.parametrize("threshold", [0.5, 1, 12.5, 13, 49.5, 50, 50.5, 66.6, 99, 99.5, 100])
def test_error_budget_is_the_most_errors_that_cannot_trip(threshold: float) -> None:
    """error_budget(volume, threshold) is the largest error count whose best case cannot reach the threshold."""
    from breaker._circuit import error_budget

    for volume in range(120):
        budget = -1
        for errors in range(volume + 2):
            fewest = max(volume, errors)
            if fewest and (200 * errors + fewest) // (2 * fewest) >= threshold:
                break
            if fewest:
                budget = errors
        assert error_budget(volume, threshold) == budget, (volume, threshold)
