"""Model-based test of the decision core: a reference model of the circuit checked step by step.

The real `Engine`, on a `FakeClock`, and the `Model` (the README's Semantics written as plainly as possible) are
driven by the same random steps; after every step their state, statistics, admission and transitions must agree.
Calls arrive by the drivers' path (`Engine.enter`: lock-free first, then the lock) or by the locked path alone
(`Engine.admit`), and ordinary successes end by the drivers' lock-free path (`Engine.succeed`) or the locked one
(`Engine.finish`), so the fast paths are checked against the model too.
"""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import (
    Bundle,
    MultipleResults,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    rule,
)

import breaker
from breaker import State
from breaker._core.circuit import Circuit
from breaker._core.engine import Engine
from breaker._core.events import BAD_REQUEST, EVENTS, FAILURE, REJECTED, SHORT_CIRCUIT, SLOW, SUCCESS, TIMEOUT
from breaker._core.latency import BOTH
from breaker._core.outcome import ADMITTED, REJECTED_CALL, SHORT_CIRCUITED, Admission, Probe
from breaker._core.settings import BUILTIN, Settings
from breaker.testing import FakeClock

# Exact float times: the clock starts at a multiple of 0.25 and only ever moves by multiples of 0.25, bucket widths
# are 0.5, 1.0 or 2.0, sleep windows and timeouts are multiples of 0.25. Every time, bucket boundary, sleep-window
# end and probe deadline is then an exact binary float, so boundaries (``>=`` vs ``>``) are tested exactly and no
# comparison depends on float rounding.
QUARTER = 0.25
START = 1000.0

CLOSED, OPEN, HALF_OPEN = State.CLOSED, State.OPEN, State.HALF_OPEN
FORCED_OPEN, FORCED_CLOSED = State.FORCED_OPEN, State.FORCED_CLOSED
Transition = tuple[State, State]

#: (rolling_window, rolling_buckets): fixed for one run (reconfiguration keeps the window's geometry).
GEOMETRIES = [(10.0, 10), (4.0, 4), (3.0, 6), (8.0, 4), (1.0, 2)]
VOLUMES = st.integers(min_value=0, max_value=5)
#: Many sit between a percentage truncated and rounded half up: 2/3 is 66.67% (66 vs 67), 1/6, 2/7, 3/7, 1/8, 5/8.
THRESHOLDS = st.sampled_from([1, 12.5, 17, 25, 29, 33.3, 43, 50, 50.5, 62.5, 75, 100] + [66.7] * 4)
SLEEPS = st.sampled_from([0.25, 0.5, 1.0, 2.5, 5.0])
TIMEOUTS = st.sampled_from([0.25, 1.0, 2.0, math.inf])
TICKETS = st.sampled_from([1, 2, 3, 5, math.inf])
#: Gradual recovery: successful probes needed to close, the sleep window's growth per failed probe, and its cap as
#: a multiple of the sleep window (powers of two keep every time exact).
PROBES = st.sampled_from([1, 1, 2, 3])
#: The slow-call rule's threshold (100: only a window of slow calls trips it).
SLOW_THRESHOLDS = st.sampled_from([100, 50, 34, 1])
MULTIPLIERS = st.sampled_from([1.0, 1.0, 2.0])
CAPS = st.sampled_from([math.inf, 1.0, 2.0, 8.0])
#: (force_open, force_closed), mostly unforced.
FORCES = st.sampled_from([(False, False)] * 4 + [(True, False), (False, True)])
OUTCOMES = st.sampled_from([SUCCESS, FAILURE, TIMEOUT, BAD_REQUEST])
#: Whether a success or failure ran at least slow_call_duration (mostly not).
SLOWS = st.sampled_from([False, False, False, True])
PATHS = st.sampled_from(["enter", "locked"])
#: How far `advance` moves the clock; the targets of the state machine's own boundaries come up more often.
STEPS = st.sampled_from(
    ["quarters", "next-boundary", "bucket", "sleep", "window", "long"] + ["sleep-end", "deadline", "past-deadline"] * 2
)
#: The event slots a call can end in here; statistics().counts must hold every other event name at 0.
COUNTED = (SUCCESS, FAILURE, TIMEOUT, SHORT_CIRCUIT, REJECTED, BAD_REQUEST, SLOW)


@dataclasses.dataclass(frozen=True)
class Config:
    """The reconfigurable settings of one run (the window's geometry is fixed separately)."""

    volume: int
    threshold: float
    sleep: float
    timeout: float
    tickets: float
    force_open: bool
    force_closed: bool
    probes: int = 1
    multiplier: float = 1.0
    cap: float = math.inf  # max_sleep_window, as a multiple of sleep
    slow_threshold: float = 100

    @property
    def max_sleep(self) -> float:
        return self.sleep * self.cap


def configs() -> st.SearchStrategy[Config]:
    """Random valid settings."""
    return st.builds(
        lambda v, t, s, o, m, f, p, g, c, w: Config(
            v, t, s, o, m, f[0], f[1], probes=p, multiplier=g, cap=c, slow_threshold=w
        ),
        VOLUMES,
        THRESHOLDS,
        SLEEPS,
        TIMEOUTS,
        TICKETS,
        FORCES,
        PROBES,
        MULTIPLIERS,
        CAPS,
        SLOW_THRESHOLDS,
    )


def resolve(config: Config, window: float, buckets: int) -> Settings:
    """The library's settings for ``config`` and the run's window geometry."""
    return breaker.CommandConfig(
        request_volume_threshold=config.volume,
        error_percent_threshold=config.threshold,
        sleep_window=config.sleep,
        timeout=config.timeout,
        max_concurrent_requests=config.tickets,
        force_open=config.force_open,
        force_closed=config.force_closed,
        probes_to_close=config.probes,
        sleep_window_multiplier=config.multiplier,
        max_sleep_window=config.max_sleep,
        slow_call_duration=1.0,  # the drivers judge durations; here a call is slow when the step says so
        slow_call_percent_threshold=config.slow_threshold,
        rolling_window=window,
        rolling_buckets=buckets,
        isolation="caller",
    ).over(BUILTIN)


#: The model's admission codes; a probe is its number, counting from 1.
MODEL_ADMITTED, MODEL_SHORT_CIRCUITED, MODEL_REJECTED = 0, -1, -2


def code_of(admission: Admission) -> int | str:
    """The engine's admission in the model's terms (a probe is "probe": only the model numbers them)."""
    if isinstance(admission, Probe):
        return "probe"
    codes = {ADMITTED: MODEL_ADMITTED, SHORT_CIRCUITED: MODEL_SHORT_CIRCUITED, REJECTED_CALL: MODEL_REJECTED}
    return codes[admission]


def rounded_percentage(errors: int, requests: int) -> int:
    """``100 * errors / requests`` rounded half up, in exact fractions (0 with no requests)."""
    if not requests:
        return 0
    return math.floor(Fraction(100 * errors, requests) + Fraction(1, 2))


@dataclasses.dataclass(eq=False)
class Call:
    """An admitted call in flight: it holds a ticket until it completes. ``probe``: 0, or the model's number of the
    probe it was admitted as; ``admission``: what the engine told it."""

    probe: int
    admission: Admission


class Model:
    """The reference circuit: the README's Semantics written as plainly as possible."""

    def __init__(self, config: Config, window: float, buckets: int, now: float) -> None:
        self.config = config
        self.width = Fraction(window) / buckets
        self.buckets = buckets
        self.now = now
        self.events: list[tuple[int, int]] = []  # (bucket, slot) of every counted event since the last clear
        self.state = CLOSED  # underneath the force flags
        self.opened_at = -math.inf
        self.probe_in_flight = False
        self.failed_probes = 0  # in a row, since the circuit last closed
        self.good_probes = 0  # in a row, since the last failed probe
        self.probe_id = 0
        self.probe_started = math.inf
        self.probe_deadline = math.inf
        self.held = 0  # tickets held by calls in flight
        self.transitions: list[Transition] = []

    # -- queries --

    def bucket(self, time: float) -> int:
        """The index of the bucket holding ``time``."""
        return math.floor(Fraction(time) / self.width)

    def window(self) -> dict[int, int]:
        """Counts per slot over the current bucket and the ``buckets - 1`` before it."""
        first = self.bucket(self.now) - self.buckets + 1
        counts = dict.fromkeys(COUNTED, 0)
        for bucket, slot in self.events:
            if bucket >= first:
                counts[slot] += 1
        return counts

    def health(self, counts: dict[int, int]) -> tuple[int, int]:
        """(requests, errors) in window ``counts``: short-circuits and bad requests count in neither."""
        errors = counts[FAILURE] + counts[TIMEOUT] + counts[REJECTED]
        return counts[SUCCESS] + errors, errors

    def reported(self) -> State:
        """The state the circuit reports: the force flags override the state machine."""
        if self.config.force_open:
            return FORCED_OPEN
        if self.config.force_closed:
            return FORCED_CLOSED
        return self.state

    def sleep(self) -> float:
        """The sleep window now: ``sleep * multiplier ** failed_probes``, at most ``max_sleep``."""
        return min(self.config.sleep * self.config.multiplier**self.failed_probes, self.config.max_sleep)

    def ticket_free(self) -> bool:
        """Whether one more call may hold a ticket."""
        return self.held < self.config.tickets

    def decide(self) -> int:
        """What a call arriving now gets: admitted, a probe (its number), short-circuited or rejected."""
        if self.config.force_open:
            return MODEL_SHORT_CIRCUITED
        if self.config.force_closed or self.state is CLOSED:
            return MODEL_ADMITTED if self.ticket_free() else MODEL_REJECTED
        if self.state is OPEN and self.now - self.opened_at < self.sleep():
            return MODEL_SHORT_CIRCUITED
        if self.state is HALF_OPEN and self.probe_in_flight:
            return MODEL_SHORT_CIRCUITED
        return self.probe_id + 1 if self.ticket_free() else MODEL_REJECTED

    # -- changes --

    def count(self, slot: int) -> None:
        """Count one event now."""
        self.events.append((self.bucket(self.now), slot))

    def move(self, new: State) -> None:
        """Change the state underneath, recording the transition unless a forced state hides it (listeners see the
        reported state only: `configure` records the change when the force is lifted)."""
        if new is not self.state and not (self.config.force_open or self.config.force_closed):
            self.transitions.append((self.state, new))
        self.state = new

    def probe_failed(self) -> None:
        """The probe failed, or could not run: reopen, with one more failed probe in a row."""
        self.failed_probes += 1
        self.good_probes = 0
        self.reopen()

    def reopen(self) -> None:
        """Open with a fresh sleep window; any probe counts as failed."""
        self.move(OPEN)
        self.opened_at = self.now
        self.probe_in_flight = False

    def evaluate(self) -> None:
        """The trip rule, applied when an outcome is recorded."""
        if self.state is not CLOSED or self.config.force_closed:
            return
        counts = self.window()
        requests, errors = self.health(counts)
        if requests >= self.config.volume and (
            rounded_percentage(errors, requests) >= self.config.threshold
            or rounded_percentage(counts[SLOW], requests) >= self.config.slow_threshold
        ):
            self.reopen()

    def admit(self) -> int:
        """A call arrives now: decide it and apply what that does."""
        code = self.decide()
        if code == MODEL_ADMITTED or code > 0:
            self.held += 1
        if code > 0:
            self.move(HALF_OPEN)
            self.probe_in_flight = True
            self.probe_id = code
            self.probe_started = self.now
            self.probe_deadline = self.now + self.config.timeout
        elif code == MODEL_REJECTED:
            self.count(REJECTED)
            if self.config.force_closed or self.state is CLOSED:
                self.evaluate()
            elif self.state is OPEN:
                self.opened_at = self.now  # the would-be probe failed: a fresh sleep window
            else:
                self.probe_failed()
        elif code == MODEL_SHORT_CIRCUITED:
            self.count(SHORT_CIRCUIT)
            stuck = self.state is HALF_OPEN and self.probe_in_flight and self.now > self.probe_deadline
            if stuck and not self.config.force_open:
                self.probe_failed()  # the probe outlived its timeout without reporting
        return code

    def complete(self, slot: int, probe: int, slow: bool = False) -> None:
        """An admitted call ends with ``slot`` (and ``slow``, for a success or failure that ran long) and gives its
        ticket back. A slow probe failed."""
        self.held -= 1
        self.count(slot)
        if slow:
            self.count(SLOW)
        if probe and probe == self.probe_id and self.probe_in_flight:
            self.probe_in_flight = False
            if slot == SUCCESS and not slow:
                self.good_probes += 1
                if self.good_probes >= self.config.probes:  # else half-open still: the next call probes
                    self.move(CLOSED)
                    self.events.clear()
                    self.failed_probes = self.good_probes = 0
            elif slot != BAD_REQUEST:
                self.probe_failed()
            return
        self.evaluate()

    def configure(self, config: Config) -> None:
        """New settings apply at once and keep the counts (a probe in flight is judged by the new timeout from its
        start); a forced state change is reported."""
        before = self.reported()
        self.config = config
        if self.probe_in_flight:
            self.probe_deadline = self.probe_started + config.timeout
        after = self.reported()
        if after is not before:
            self.transitions.append((before, after))


class CircuitMachine(RuleBasedStateMachine):
    """The real `Engine` on a `FakeClock` and the `Model`, driven by the same steps."""

    calls: Bundle[Call] = Bundle("calls")

    def __init__(self) -> None:
        super().__init__()
        self.engine: Engine
        self.circuit: Circuit
        self.clock: FakeClock
        self.model: Model
        self.window = 0.0
        self.buckets = 0
        self.transitions: list[Transition] = []

    def emit(self, circuit: Circuit, old: State, new: State) -> None:
        """Record a transition the circuit reports."""
        self.transitions.append((old, new))

    @initialize(geometry=st.sampled_from(GEOMETRIES), config=configs(), offset=st.integers(0, 7))
    def create(self, geometry: tuple[float, int], config: Config, offset: int) -> None:
        """A fresh circuit at a clock time that may or may not sit on a bucket boundary."""
        self.window, self.buckets = geometry
        now = START + offset * QUARTER
        self.clock = FakeClock(now)
        self.engine = Engine("model", resolve(config, *geometry), self.clock, self.emit)
        self.circuit = self.engine.circuit = Circuit(self.engine)
        self.model = Model(config, self.window, self.buckets, now)

    # -- rules --

    @rule(kind=STEPS, quarters=st.integers(0, 12))
    def advance(self, kind: str, quarters: int) -> None:
        """Move the clock: small steps, onto bucket boundaries, onto the sleep window's end and probe deadlines."""
        model = self.model
        width = self.window / self.buckets
        small = quarters * QUARTER
        step = {
            "quarters": small,
            "next-boundary": (math.floor(model.now / width) + 1) * width - model.now,
            "bucket": width,
            "sleep": model.sleep(),
            "sleep-end": model.opened_at + model.sleep() - model.now,
            "deadline": model.probe_deadline - model.now,
            "past-deadline": model.probe_deadline - model.now + QUARTER,
            "window": self.window,
            "long": self.window + small,
        }[kind]
        if not 0 <= step < math.inf or (kind.endswith("deadline") and not model.probe_in_flight):
            step = small  # the target is behind us, or there is none
        self.clock.advance(step)
        model.now += step
        assert self.clock() == model.now

    @rule(target=calls, path=PATHS)
    def start(self, path: str) -> Call | MultipleResults[Call]:
        """A call arrives and, if admitted, stays in flight holding its ticket."""
        call = self.arrive(path)
        return multiple() if call is None else call

    def arrive(self, path: str) -> Call | None:
        """Admit a call by `Engine.enter` (the drivers' path: lock-free first) or `Engine.admit` (the lock decides
        all); the call in flight, or None if it was refused."""
        now = self.clock()
        admission = self.engine.enter(now) if path == "enter" else self.engine.admit(now)
        expected = self.model.admit()
        got = code_of(admission)
        assert got == ("probe" if expected > 0 else expected), f"admission: engine {admission}, model {expected}"
        return None if admission.refused else Call(max(expected, 0), admission)

    @rule(call=consumes(calls), slot=OUTCOMES, hot=st.booleans(), slow=SLOWS)
    def complete(self, call: Call, slot: int, hot: bool, slow: bool) -> None:
        """An in-flight call ends; a success may take the drivers' path, lock-free when it can."""
        self.finish(call, slot, hot, slow)

    @rule(batch=st.lists(st.tuples(PATHS, OUTCOMES, st.booleans(), SLOWS), min_size=1, max_size=4))
    def burst(self, batch: list[tuple[str, int, bool, bool]]) -> None:
        """Whole calls at one instant with no query between them (queries read the lock-free counters)."""
        for path, slot, hot, slow in batch:
            call = self.arrive(path)
            if call is not None:
                self.finish(call, slot, hot, slow)

    def finish(self, call: Call, slot: int, hot: bool, slow: bool = False) -> None:
        """End ``call`` with ``slot``, in the engine and in the model. A ``hot`` success or failure takes the
        drivers' path (`Engine.succeed`, `Engine.fail`: lock-free for an ordinary call in the current bucket); a
        ``slow`` success or failure, `Engine.finish_slow`; the rest, `Engine.finish`."""
        now = self.clock()
        slow = slow and slot in (SUCCESS, FAILURE)
        if slow:
            self.engine.finish_slow(slot, call.admission, now, 2.0)
        elif hot and slot == SUCCESS:
            self.engine.succeed(call.admission, now, 0.0)
        elif hot and slot == FAILURE:
            self.engine.fail(call.admission, now, 0.0, BOTH)
        else:
            self.engine.finish(slot, call.admission, now, 0.0)
        self.model.complete(slot, call.probe, slow)

    @rule(config=configs())
    def reconfigure(self, config: Config) -> None:
        """Apply new thresholds, volume, sleep window, timeout, tickets and force flags at once."""
        self.engine.configure(resolve(config, self.window, self.buckets))
        self.model.configure(config)

    # -- invariants: checked after every step; every query is made twice, since queries change nothing --

    @invariant()
    def matches_model(self) -> None:
        """State, statistics, admission and transitions all match the model."""
        self.same_state()
        self.same_statistics()
        self.same_admission()
        self.same_transitions()

    def same_state(self) -> None:
        """The reported state and is_open() match the model."""
        for _ in range(2):
            assert self.circuit.state is self.model.reported()
            assert self.circuit.is_open() is (self.model.reported() in (OPEN, HALF_OPEN, FORCED_OPEN))

    def same_statistics(self) -> None:
        """Requests, errors, the rounded percentage, every count and the tickets held match the model."""
        model = self.model
        window = model.window()
        requests, errors = model.health(window)
        counts = {event.value: window.get(slot, 0) for slot, event in enumerate(EVENTS)}
        for _ in range(2):
            stats = self.circuit.statistics()
            assert stats.state is model.reported()
            assert (stats.requests, stats.errors) == (requests, errors)
            assert stats.error_percentage == rounded_percentage(errors, requests)
            assert dict(stats.counts) == counts
            assert (stats.active, stats.abandoned) == (model.held, 0)
            assert stats.max_concurrent_requests == model.config.tickets
            assert self.engine.active == model.held

    def same_admission(self) -> None:
        """allow_request() says whether the next call would be admitted (short of running it)."""
        for _ in range(2):
            assert self.circuit.allow_request() is (self.model.decide() >= 0)

    def same_transitions(self) -> None:
        """The circuit reported exactly the model's transitions, in order."""
        assert self.transitions == self.model.transitions


CircuitMachine.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=60,
    deadline=None,
    # No explain phase: on a failing run it replays the shrunk example hundreds of times (minutes, for a machine).
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    report_multiple_bugs=False,  # shrink one failure, not every distinct one: a failing run stays short
    suppress_health_check=[HealthCheck.too_slow],
)
TestCircuitMatchesModel = CircuitMachine.TestCase


# -- defects the model found, pinned as plain tests ----------------------------------------------------------------

UNFORCED = Config(volume=1, threshold=50, sleep=5.0, timeout=1.0, tickets=3, force_open=False, force_closed=False)


def make(config: Config) -> tuple[Engine, FakeClock]:
    """An engine with ``config`` over a 10 s window of 10 buckets, and its clock."""
    clock = FakeClock(START)
    engine = Engine("pinned", resolve(config, 10.0, 10), clock, lambda *_: None)
    engine.circuit = Circuit(engine)
    return engine, clock


def run(engine: Engine, clock: FakeClock, event: int) -> None:
    """One whole call that ends with ``event``."""
    admission = engine.enter(clock())
    assert not admission.refused
    engine.finish(event, admission, clock(), 0.0)


@pytest.mark.parametrize(
    ("tickets", "expected"), [(1, REJECTED_CALL), (math.inf, ADMITTED)], ids=["no-ticket", "unlimited"]
)
def test_force_closed_enter_admits_or_rejects_never_short_circuits(tickets: float, expected: Admission) -> None:
    """Under force_closed, `Engine.enter` goes by tickets alone, even over an open circuit."""
    config = dataclasses.replace(UNFORCED, tickets=tickets)
    engine, clock = make(config)
    run(engine, clock, FAILURE)
    assert engine.circuit is not None
    assert engine.circuit.state is OPEN
    engine.configure(resolve(dataclasses.replace(config, force_closed=True), 10.0, 10))
    assert engine.enter(clock()) is ADMITTED  # holds the only ticket (unlimited: the only free one in stock)
    assert engine.allow_request() is (expected is ADMITTED)
    assert engine.enter(clock()) is expected
    assert engine.statistics().counts["short-circuit"] == 0


def test_stale_probe_outcome_recorded_while_closed_evaluates_health() -> None:
    """A timed-out probe reporting after a later probe closed the circuit is an outcome like any other: it may trip."""
    engine, clock = make(UNFORCED)
    circuit = engine.circuit
    assert circuit is not None
    run(engine, clock, FAILURE)
    clock.advance(5.0)
    stale = engine.enter(clock())
    assert isinstance(stale, Probe)
    clock.advance(1.25)  # past the probe's 1 s timeout: the next call counts it failed and reopens
    assert engine.enter(clock()) is SHORT_CIRCUITED
    assert circuit.state is OPEN
    clock.advance(5.0)
    probe = engine.enter(clock())
    assert isinstance(probe, Probe)
    assert probe is not stale
    engine.finish(SUCCESS, probe, clock(), 0.0)
    assert circuit.state is CLOSED
    engine.finish(TIMEOUT, stale, clock(), 0.0)  # 1 request, 1 error: the trip rule holds (volume 1, 50%)
    stats = circuit.statistics()
    assert (stats.requests, stats.errors, stats.error_percentage) == (1, 1, 100)
    assert circuit.state is OPEN
    assert not circuit.allow_request()
