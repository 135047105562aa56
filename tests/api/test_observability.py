"""Observability of a circuit: counts since creation (`statistics().cumulative`), `peak_active`, `settings`, and
state-change listeners (`breaker.on_state_change`).

The cumulative counts are checked against a tally the test keeps from what each caller saw (the value, the
exception, the error its fallback was handed), never from the library's own counters: after every step of a
seeded random scenario that moves a `FakeClock` across buckets and whole windows, trips and probes the circuit and
reconfigures its windows; and after many threads made calls at once.

Listeners are checked for the path they see: every change must start where the previous one ended, from CLOSED to
the circuit's current state, delivered one at a time, with re-entrant listeners and failing listeners.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from observability_support import (
    FALLBACK,
    NAME,
    PRIMARY,
    VALUE,
    WAIT,
    BadInput,
    Boom,
    FallbackBoom,
    Path,
    paths,
    settle,
    stats,
)

import breaker
from breaker import (
    CircuitOpenError,
    CommandConfig,
    CommandTimeoutError,
    Event,
    FallbackError,
    MaxConcurrencyError,
    State,
)
from breaker.testing import FakeClock, isolated_registry

EVENT_NAMES = tuple(e.value for e in Event)
NEVER = 10**9  # a request volume threshold out of reach: the circuit never trips
SWITCH_INTERVAL = 1e-5  # seconds between forced thread switches in the concurrency tests (CPython's default: 5 ms)

CLOSED, OPEN, HALF_OPEN = State.CLOSED, State.OPEN, State.HALF_OPEN
FORCED_OPEN, FORCED_CLOSED = State.FORCED_OPEN, State.FORCED_CLOSED


@pytest.fixture
def fine_switching() -> Iterator[None]:
    """Switch threads every `SWITCH_INTERVAL` seconds during the test, so that callers interleave finely."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL)
    yield
    sys.setswitchinterval(before)


# -- telling what happened to a call from what its caller saw -------------------------------------------------------


def failing() -> str:
    raise Boom


def primary_of(error: BaseException) -> str:
    """The primary event of a call whose fallback was handed ``error`` (or that raised it, with no fallback)."""
    if isinstance(error, CommandTimeoutError):
        return "timeout"
    if isinstance(error, CircuitOpenError):
        return "short-circuit"
    if isinstance(error, MaxConcurrencyError):
        return "rejected"
    if isinstance(error, BadInput):
        return "bad-request"
    if isinstance(error, asyncio.CancelledError):
        return "cancelled"
    assert isinstance(error, Boom), f"unexpected error {error!r}"
    return "failure"


class Observed:
    """A fallback (answering or raising) that notes what it was handed, and how the call ended."""

    def __init__(self, mode: str | None) -> None:
        self.mode = mode  # None: no fallback; "value": it answers; "raise": it raises FallbackBoom
        self.handed: list[Exception] = []

    @property
    def fallback(self) -> Callable[[Exception], str] | None:
        if self.mode is None:
            return None

        def fallback(error: Exception) -> str:
            self.handed.append(error)
            if self.mode == "raise":
                raise FallbackBoom
            return FALLBACK

        return fallback

    def events(self, value: object = None, raised: BaseException | None = None) -> list[str]:
        """The events of the call: its primary event, then its fallback's, if one ran."""
        assert len(self.handed) <= 1, f"the fallback ran {len(self.handed)} times"
        if self.handed:
            fallback_event = "fallback-failure" if isinstance(raised, FallbackError) else "fallback-success"
            if fallback_event == "fallback-success":
                assert value == FALLBACK
            return [primary_of(self.handed[0]), fallback_event]
        if raised is not None:
            return [primary_of(raised)]
        assert value == VALUE
        return ["success"]


def call_sync(run: Callable[[], str], mode: str | None, name: str = NAME) -> list[str]:
    """Call ``run`` through `breaker.do`; the call's events as its caller saw them."""
    observed = Observed(mode)
    try:
        value = breaker.do(name, run, observed.fallback)
    except (Boom, BadInput, CommandTimeoutError, CircuitOpenError, MaxConcurrencyError, FallbackError) as error:
        return observed.events(raised=error)
    return observed.events(value)


async def call_async(run: Callable[[], str], mode: str | None, *, cancel: bool = False) -> list[str]:
    """Await ``run`` through `breaker.do_async` (cancelled once it has started, with ``cancel``)."""
    observed = Observed(mode)
    started = asyncio.Event()

    async def arun() -> str:
        started.set()
        if cancel:
            await asyncio.Event().wait()  # until cancelled
        return run()

    task = asyncio.create_task(breaker.do_async(NAME, arun, observed.fallback))
    if cancel:
        waiter = asyncio.create_task(started.wait())
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if not task.done():
            task.cancel()
    try:
        value = await task
    except asyncio.CancelledError:
        assert cancel
        return ["cancelled"]
    except (Boom, BadInput, CommandTimeoutError, CircuitOpenError, MaxConcurrencyError, FallbackError) as error:
        return observed.events(raised=error)
    return observed.events(value)


class Tally:
    """Events counted from what callers saw; thread-safe."""

    def __init__(self) -> None:
        self.counts = dict.fromkeys(EVENT_NAMES, 0)
        self._lock = threading.Lock()

    def add(self, events: list[str]) -> None:
        with self._lock:
            for event in events:
                self.counts[event] += 1

    def merge(self, other: dict[str, int]) -> None:
        with self._lock:
            for event, n in other.items():
                self.counts[event] += n


# -- a seeded random scenario, one step at a time ------------------------------------------------------------------

GEOMETRIES = ((10.0, 10), (3.0, 1), (60.0, 600), (0.5, 5), (2.0, 7), (30.0, 3))
#: A latency bucket is never narrower than a rolling bucket (they turn over together): each is paired with the
#: rolling geometries it allows.
LATENCY_GEOMETRIES = ((60.0, 6), (5.0, 5), (1.0, 1), (600.0, 60), (0.5, 5))


def latency_geometry(rng: random.Random, rolling: tuple[float, int]) -> tuple[float, int]:
    """A latency geometry whose buckets are at least as wide as the rolling ones."""
    width = rolling[0] / rolling[1]
    return rng.choice([g for g in LATENCY_GEOMETRIES if g[0] / g[1] >= width])


ADVANCES = (0.0, 0.0, 0.01, 0.05, 0.3, 0.999, 1.0, 2.5, 6.1, 10.0, 25.0, 300.0)


@dataclasses.dataclass
class Scenario:
    """Random calls through one caller-isolated command on a fake clock, the tally kept as they go."""

    clock: FakeClock
    rng: random.Random
    config: dict[str, Any]
    reconfigure: bool = False  # also change the rolling and latency windows' geometry now and then
    tally: Tally = dataclasses.field(default_factory=Tally)
    steps: int = 0

    def configure(self) -> None:
        breaker.configure_command(NAME, CommandConfig(isolation="caller", ignored_exceptions=BadInput, **self.config))

    def run(self, kind: str) -> Callable[[], str]:
        clock = self.clock

        def run() -> str:
            if kind == "slow":
                clock.advance(1.5)  # past the 1 s timeout
                return VALUE
            if kind == "slow-boom":
                clock.advance(1.5)
                raise Boom
            if kind == "boom":
                raise Boom
            if kind == "bad":
                raise BadInput
            if kind == "nested":  # the one ticket is this run's: the inner call is rejected (if it gets that far)
                self.tally.add(call_sync(self.run("ok"), "value"))
            return VALUE

        return run

    async def step(self) -> None:
        """One random action, then the check."""
        rng = self.rng
        action = rng.choices(
            ("sync", "async", "cancel", "advance", "reconfigure"),
            weights=(50, 10, 3, 25, 4 if self.reconfigure else 0),
        )[0]
        kind = rng.choices(("ok", "boom", "bad", "slow", "slow-boom", "nested"), weights=(40, 30, 5, 8, 4, 8))[0]
        mode = rng.choice((None, "value", "value", "raise"))
        if action == "sync":
            self.tally.add(call_sync(self.run(kind), mode))
        elif action == "async":
            self.tally.add(await call_async(self.run(kind), mode))
        elif action == "cancel":
            self.tally.add(await call_async(self.run("ok"), mode, cancel=True))
        elif action == "advance":
            self.clock.advance(rng.choice(ADVANCES))
        else:
            rolling = rng.choice(GEOMETRIES)
            self.config["rolling_window"], self.config["rolling_buckets"] = rolling
            latency = self.config.get("latency_window", 60.0), self.config.get("latency_buckets", 6)
            if rng.random() < 0.5 or latency[0] / latency[1] < rolling[0] / rolling[1]:
                self.config["latency_window"], self.config["latency_buckets"] = latency_geometry(rng, rolling)
            self.configure()
        self.steps += 1

    def check(self, previous: dict[str, int]) -> dict[str, int]:
        counted = dict(stats().cumulative)
        assert counted == self.tally.counts, f"step {self.steps}: cumulative {counted} != tally {self.tally.counts}"
        shrunk = {e: (previous[e], counted[e]) for e in EVENT_NAMES if counted[e] < previous[e]}
        assert not shrunk, f"step {self.steps}: cumulative went down: {shrunk}"
        s = stats()
        for event in EVENT_NAMES:  # the window never holds more than there has ever been
            assert s.counts[event] <= counted[event], f"step {self.steps}: {event}"
        return counted

    def play(self, steps: int) -> None:
        async def scenario() -> None:
            self.configure()
            counted = dict.fromkeys(EVENT_NAMES, 0)
            for _ in range(steps):
                await self.step()
                counted = self.check(counted)

        asyncio.run(scenario())


def transitions_log() -> list[tuple[State, State]]:
    """Register a listener noting every state change; the list it fills."""
    seen: list[tuple[State, State]] = []
    breaker.on_state_change(lambda name, old, new: seen.append((old, new)))
    return seen


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_cumulative_counts_are_exact_and_monotonic_across_bucket_turnover_and_skipped_windows(
    seed: int, clock: FakeClock
) -> None:
    """Every event's count since creation equals the callers' tally after every step, across turnover and skips."""
    scenario = Scenario(
        clock, random.Random(seed), {"timeout": 1.0, "max_concurrent_requests": 1, "request_volume_threshold": NEVER}
    )
    scenario.play(500)
    every = scenario.tally.counts
    unseen = ("short-circuit", "slow")  # no slow_call_duration here: a run is never slow
    assert all(every[e] > 0 for e in EVENT_NAMES if e not in unseen), f"not every event happened: {every}"


@pytest.mark.parametrize("seed", [4, 5, 6])
def test_cumulative_counts_are_exact_through_trips_and_probes_that_clear_the_window(
    seed: int, clock: FakeClock
) -> None:
    """With the circuit tripping and its probes closing it (which clears the window), cumulative stays exact."""
    seen = transitions_log()
    config: dict[str, Any] = {
        "timeout": 1.0,
        "max_concurrent_requests": 1,
        "request_volume_threshold": 3,
        "error_percent_threshold": 50,
        "sleep_window": 2.0,
    }
    scenario = Scenario(clock, random.Random(seed), config)
    scenario.play(600)
    assert seen.count((HALF_OPEN, CLOSED)) >= 3, f"too few probes closed the circuit to test anything: {seen}"
    assert scenario.tally.counts["short-circuit"] > 0


@pytest.mark.parametrize("seed", [7, 8, 9])
def test_cumulative_counts_are_exact_across_reconfigured_window_geometry(seed: int, clock: FakeClock) -> None:
    """Changing rolling_window/rolling_buckets and the latency window mid-run keeps cumulative exact and monotonic."""
    config: dict[str, Any] = {
        "timeout": 1.0,
        "max_concurrent_requests": 1,
        "request_volume_threshold": 3,
        "error_percent_threshold": 50,
        "sleep_window": 2.0,
    }
    scenario = Scenario(clock, random.Random(seed), config, reconfigure=True)
    scenario.play(600)


def test_probe_success_clears_the_window_but_not_the_cumulative_counts(clock: FakeClock) -> None:
    """A good probe empties the window's counts; the counts since creation keep every event, the probe included."""
    breaker.configure_command(
        NAME,
        CommandConfig(isolation="caller", request_volume_threshold=2, error_percent_threshold=50, sleep_window=5.0),
    )
    tally = Tally()
    for _ in range(3):
        tally.add(call_sync(lambda: VALUE, None))
    for _ in range(3):
        tally.add(call_sync(failing, "value"))
    assert breaker.get_circuit(NAME)[0].state is OPEN
    for _ in range(4):
        tally.add(call_sync(lambda: VALUE, "value"))
    clock.advance(5.0)
    tally.add(call_sync(lambda: VALUE, None))  # the probe
    s = stats()
    assert s.state is CLOSED
    assert set(s.counts.values()) == {0}, f"the window was not cleared: {dict(s.counts)}"
    assert dict(s.cumulative) == tally.counts
    assert tally.counts["success"] == 4
    assert tally.counts["short-circuit"] == 4


# -- many threads ---------------------------------------------------------------------------------------------------


def hammer(
    clock: FakeClock,
    seed: int,
    calls: int,
    tally: Tally,
    start: threading.Barrier,
    every: Callable[[int], None],
    modes: tuple[str | None, ...],
) -> None:
    """One caller: ``calls`` random calls, tallied from what it saw, added to ``tally`` at the end."""
    rng = random.Random(seed)
    mine = dict.fromkeys(EVENT_NAMES, 0)

    def slow() -> str:
        clock.advance(0.05)  # past the timeout: this run times out (and so may others in progress)
        return VALUE

    def boom() -> str:
        raise Boom

    def bad() -> str:
        raise BadInput

    def ok() -> str:
        return VALUE

    runs = (ok, ok, ok, ok, boom, boom, boom, bad, slow)
    start.wait()
    for i in range(calls):
        for event in call_sync(rng.choice(runs), rng.choice(modes)):
            mine[event] += 1
        if i % 10 == 0:
            clock.advance(rng.choice((0.001, 0.01, 0.1)))
        every(i)
    tally.merge(mine)


def run_callers(
    clock: FakeClock,
    threads: int,
    calls: int,
    every: Callable[[int, int], None] = lambda caller, i: None,
    modes: tuple[str | None, ...] = (None, "value", "value", "raise"),
) -> Tally:
    """``threads`` callers of ``calls`` calls each, started together; joined, with a bound."""
    tally = Tally()
    start = threading.Barrier(threads)
    failures: list[BaseException] = []

    def caller(k: int) -> None:
        try:
            hammer(clock, 1000 + k, calls, tally, start, lambda i: every(k, i), modes)
        except BaseException as error:  # reported by the test
            failures.append(error)
            start.abort()

    workers = [threading.Thread(target=caller, args=(k,), name=f"caller-{k}") for k in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert not [w for w in workers if w.is_alive()], "a caller did not finish"
    assert not failures, failures
    return tally


CALLS = 20_000  # per thread, 8 threads
CONCURRENT: dict[str, Any] = {
    "ignored_exceptions": (BadInput,),
    "timeout": 0.04,
    "max_concurrent_requests": 4,
    "request_volume_threshold": 40,
    "error_percent_threshold": 50,
    "sleep_window": 0.1,
    "rolling_window": 1.0,
    "rolling_buckets": 10,
}


@pytest.mark.usefixtures("fine_switching")
def test_cumulative_counts_are_exact_under_concurrent_callers(clock: FakeClock) -> None:
    """8 threads of random caller-isolated calls: each event's count since creation equals the callers' tally."""
    breaker.configure_command(NAME, CommandConfig(isolation="caller", **CONCURRENT))
    seen = transitions_log()
    tally = run_callers(clock, 8, CALLS)
    counted = dict(stats().cumulative)
    assert sum(counted[e] for e in PRIMARY) == 8 * CALLS
    assert counted == tally.counts
    assert all(tally.counts[e] for e in ("rejected", "short-circuit", "timeout")), tally.counts
    assert seen.count((HALF_OPEN, CLOSED)) > 0, "no probe closed the circuit: the test did not clear the window"


@pytest.mark.slow
@pytest.mark.usefixtures("fine_switching")
def test_cumulative_counts_are_exact_under_concurrent_callers_when_whole_windows_pass(clock: FakeClock) -> None:
    """8 threads x 60,000 random calls on a 0.1 s window the clock often jumps past: cumulative equals the tally."""
    config = {**CONCURRENT, "rolling_window": 0.1, "rolling_buckets": 10}
    breaker.configure_command(NAME, CommandConfig(isolation="caller", **config))
    tally = run_callers(clock, 8, 3 * CALLS)
    counted = dict(stats().cumulative)
    assert counted == tally.counts
    assert sum(counted[e] for e in PRIMARY) == 8 * 3 * CALLS


@pytest.mark.slow
@pytest.mark.usefixtures("fine_switching")
def test_cumulative_counts_are_exact_while_the_window_geometry_changes_under_concurrent_callers(
    clock: FakeClock,
) -> None:
    """8 threads x 60,000 random calls, one of them changing the windows' geometry: cumulative stays exact."""
    breaker.configure_command(NAME, CommandConfig(isolation="caller", **CONCURRENT))
    rng = random.Random(99)

    def reconfigure(caller: int, i: int) -> None:
        if caller == 0 and i % 20 == 0:
            window, buckets = rng.choice(((1.0, 10), (2.0, 4), (0.5, 5), (3.0, 30)))
            latency = rng.choice(((60.0, 6), (2.0, 4)))  # buckets at least as wide as every rolling one
            config: dict[str, Any] = {**CONCURRENT, "rolling_window": window, "rolling_buckets": buckets}
            breaker.configure_command(
                NAME, CommandConfig(isolation="caller", latency_window=latency[0], latency_buckets=latency[1], **config)
            )

    tally = run_callers(clock, 8, 3 * CALLS, reconfigure)
    counted = dict(stats().cumulative)
    assert counted == tally.counts
    assert sum(counted[e] for e in PRIMARY) == 8 * 3 * CALLS


@pytest.mark.slow
@pytest.mark.usefixtures("fine_switching")
def test_since_creation_latency_counts_every_run_while_the_latency_window_turns_over_concurrently(
    clock: FakeClock,
) -> None:
    """8 threads x 60,000 calls, the latency window turning over every 10 ms: every call that ran has one duration."""
    config = {**CONCURRENT, "rolling_window": 0.1, "rolling_buckets": 10}  # the latency window turns with the ring
    breaker.configure_command(NAME, CommandConfig(isolation="caller", latency_window=0.02, latency_buckets=2, **config))
    # Every call has a fallback: a late run that raised, with none, counts its duration twice (a defect of its own).
    tally = run_callers(clock, 8, 3 * CALLS, modes=("value", "raise"))
    ran = sum(tally.counts[e] for e in ("success", "failure", "timeout", "bad-request"))
    s = stats()
    assert s.run_durations.count == ran, f"{ran - s.run_durations.count} of {ran} run durations lost"
    assert s.total_durations.count == ran, f"{ran - s.total_durations.count} of {ran} call durations lost"


# -- peak_active and settings ---------------------------------------------------------------------------------------


def test_peak_active_is_the_most_tickets_held_at_once_over_the_rolling_window(clock: FakeClock) -> None:
    """Three runs held at once: peak_active is 3 while they run and after, until the rolling window has passed."""
    breaker.configure_command(NAME, CommandConfig(isolation="thread", timeout=float("inf")))
    gate = threading.Event()
    started = threading.Semaphore(0)

    def held() -> str:
        started.release()
        assert gate.wait(WAIT), "a held run was never released"
        return VALUE

    assert stats().peak_active == 0
    futures = [breaker.go(NAME, held) for _ in range(3)]
    try:
        for _ in range(3):
            assert started.acquire(timeout=WAIT)
        s = stats()
        assert (s.active, s.peak_active) == (3, 3)
    finally:
        gate.set()
    assert [f.result(WAIT) for f in futures] == [VALUE] * 3
    settle()
    s = stats()
    assert (s.active, s.peak_active) == (0, 3)
    breaker.do(NAME, lambda: VALUE)
    assert stats().peak_active == 3
    clock.advance(breaker.get_settings(NAME).rolling_window + 1.0)
    assert stats().peak_active == 0


def test_peak_active_survives_reconfiguring_the_rolling_window(clock: FakeClock) -> None:
    """A peak inside the window stays after rolling_window changes (as the window's counts do)."""
    breaker.configure_command(NAME, CommandConfig(isolation="thread", timeout=float("inf")))
    gate = threading.Event()
    started = threading.Semaphore(0)

    def held() -> str:
        started.release()
        assert gate.wait(WAIT), "a held run was never released"
        return VALUE

    futures = [breaker.go(NAME, held) for _ in range(3)]
    try:
        for _ in range(3):
            assert started.acquire(timeout=WAIT)
        assert stats().peak_active == 3
    finally:
        gate.set()
    assert [f.result(WAIT) for f in futures] == [VALUE] * 3
    settle()
    clock.advance(1.0)
    breaker.configure_command(NAME, CommandConfig(isolation="thread", timeout=float("inf"), rolling_window=20.0))
    s = stats()
    assert s.counts["success"] == 3  # the window's counts were kept
    assert s.peak_active == 3, "the peak seen one second ago left a 20 s window"


def test_peak_active_counts_the_tickets_held_when_a_call_is_rejected() -> None:
    """A call that finds both tickets taken (by the two calls it nests in) samples them: peak_active is 2."""
    breaker.configure_command(NAME, CommandConfig(isolation="caller", max_concurrent_requests=2))
    inner: list[str] = []

    def second() -> str:
        inner.extend(call_sync(lambda: VALUE, "value"))  # a third call, with both tickets held
        return VALUE

    assert breaker.do(NAME, lambda: breaker.do(NAME, second)) == VALUE
    assert inner == ["rejected", "fallback-success"]
    s = stats()
    assert (s.cumulative["rejected"], s.cumulative["success"]) == (1, 2)
    assert (s.active, s.peak_active) == (0, 2)


def test_statistics_settings_are_the_settings_the_circuit_runs_with() -> None:
    """statistics().settings is the command's resolved Settings, and follows reconfiguration."""
    breaker.configure_command(NAME, CommandConfig(timeout=0.25, latency_window=30.0, latency_buckets=3))
    s = stats()
    assert s.settings == breaker.get_settings(NAME)
    assert (s.settings.timeout, s.settings.latency_window, s.settings.latency_buckets) == (0.25, 30.0, 3)
    breaker.configure_defaults(CommandConfig(max_concurrent_requests=3))
    s = stats()
    assert s.settings == breaker.get_settings(NAME)
    assert s.settings.max_concurrent_requests == s.max_concurrent_requests == 3


def test_reading_statistics_does_not_change_whether_the_circuit_trips() -> None:
    """statistics() is a pure query: the same calls trip the circuit whether or not it is read in between."""

    def play(read: bool) -> State:
        fake = FakeClock(0.0)
        with isolated_registry(clock=fake):
            breaker.configure_command(
                NAME, CommandConfig(isolation="caller", request_volume_threshold=4, error_percent_threshold=50)
            )
            for _ in range(3):
                breaker.do(NAME, lambda: VALUE)  # in the bucket [0, 1)
            fake.advance(1.5)
            for _ in range(2):
                breaker.do(NAME, failing, lambda error: FALLBACK)  # in the bucket [1, 2)
            fake.advance(10.2 - 1.5)  # the successes have left the 10 s window; the failures have not
            if read:
                breaker.get_circuit(NAME)[0].statistics()
            fake.advance(0.1)
            for _ in range(2):
                breaker.do(NAME, lambda: VALUE)  # now 2 errors in 4 requests: 50%, at the threshold
            return breaker.get_circuit(NAME)[0].state

    assert play(read=False) is OPEN
    assert play(read=True) is OPEN


# -- state-change listeners -----------------------------------------------------------------------------------------


def check_path(seen: list[tuple[State, State]], end: State, what: str = "") -> None:
    """``seen`` is a path of the state machine: from CLOSED, each change starting where the last ended, to ``end``."""
    at = CLOSED
    for k, (old, new) in enumerate(seen):
        assert old is at, f"{what}change {k} {old.value}->{new.value} does not start at {at.value}: {seen}"
        assert new is not old, f"{what}change {k} is no change: {seen}"
        at = new
    assert at is end, f"{what}the changes end at {at.value}, the circuit is {end.value}: {seen}"


@paths("do-caller", "do-thread", "go-thread", "do_async", "decorator-async")
def test_listener_sees_every_state_change_in_order(path: Path, clock: FakeClock) -> None:
    """Trip, failed probe, good probe, forced open and closed: the listener gets each (old, new) in order."""
    path.configure(request_volume_threshold=2, error_percent_threshold=50, sleep_window=5.0, timeout=WAIT)
    seen = transitions_log()
    names: list[str] = []
    breaker.on_state_change(lambda name, old, new: names.append(name))
    for _ in range(2):
        path.call(failing, lambda error: FALLBACK)
    assert seen == [(CLOSED, OPEN)]
    clock.advance(5.0)
    path.call(failing, lambda error: FALLBACK)  # the probe fails
    clock.advance(5.0)
    assert path.call(lambda: VALUE) == VALUE  # the probe succeeds
    expected = [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]
    assert seen == expected
    config: dict[str, Any] = {"request_volume_threshold": 2, "sleep_window": 5.0, "timeout": WAIT}
    path.configure(force_open=True, **config)
    path.configure(**config)
    path.configure(force_closed=True, **config)
    path.configure(**config)
    expected += [(CLOSED, FORCED_OPEN), (FORCED_OPEN, CLOSED), (CLOSED, FORCED_CLOSED), (FORCED_CLOSED, CLOSED)]
    assert seen == expected
    assert names == [NAME] * len(expected)


@pytest.mark.parametrize(
    "case",
    ["force-open-while-a-tripping-call-runs", "force-open-while-the-probe-runs", "force-closed-while-the-probe-runs"],
)
def test_forcing_a_state_while_a_call_runs_keeps_the_listeners_path_valid(case: str, clock: FakeClock) -> None:
    """A forced state set while a call is in flight: the changes the listener sees still form a path to the state."""
    trip: dict[str, Any] = {"request_volume_threshold": 1, "error_percent_threshold": 50, "sleep_window": 5.0}
    breaker.configure_command(NAME, CommandConfig(isolation="caller", **trip))
    seen = transitions_log()
    force: dict[str, Any] = {"force_closed": True} if case.startswith("force-closed") else {"force_open": True}

    def forcing(then: Callable[[], str]) -> Callable[[], str]:
        def run() -> str:
            breaker.configure_command(NAME, CommandConfig(isolation="caller", **trip, **force))
            return then()

        return run

    if case == "force-open-while-a-tripping-call-runs":
        with pytest.raises(Boom):
            breaker.do(NAME, forcing(failing))  # 1 error in 1 request would trip a circuit that is not forced
    else:
        with pytest.raises(Boom):
            breaker.do(NAME, failing)
        clock.advance(5.0)
        breaker.do(NAME, forcing(lambda: VALUE))  # the probe: it succeeds once the state has been forced
    circuit = breaker.get_circuit(NAME)[0]
    check_path(seen, circuit.state, f"{case}: ")
    breaker.configure_command(NAME, CommandConfig(isolation="caller", **trip))  # unforced
    check_path(seen, circuit.state, f"{case}, unforced: ")


@pytest.mark.usefixtures("fine_switching")
def test_listeners_see_a_valid_path_one_change_at_a_time_under_concurrency(clock: FakeClock) -> None:
    """8 threads tripping and probing one circuit: two listeners each see one valid path, never two at once."""
    breaker.configure_command(
        NAME,
        CommandConfig(
            isolation="caller", request_volume_threshold=4, error_percent_threshold=50, sleep_window=0.2, timeout=WAIT
        ),
    )
    first, second = transitions_log(), transitions_log()
    inside = [0]
    overlaps: list[int] = []

    @breaker.on_state_change
    def exclusive(name: str, old: State, new: State) -> None:
        inside[0] += 1
        if inside[0] != 1:
            overlaps.append(inside[0])
        for _ in range(50):  # linger, so that a second delivery at once would overlap
            pass
        inside[0] -= 1

    def caller(k: int, start: threading.Barrier) -> None:
        rng = random.Random(k)
        start.wait()
        for i in range(1500):
            call_sync(failing if rng.random() < 0.6 else (lambda: VALUE), "value")
            if i % 10 == k % 10:
                clock.advance(0.05)

    start = threading.Barrier(8)
    threads = [threading.Thread(target=caller, args=(k, start)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not [t for t in threads if t.is_alive()], "a caller did not finish"
    state = breaker.get_circuit(NAME)[0].state
    assert first == second
    check_path(first, state)
    assert first.count((HALF_OPEN, CLOSED)) >= 5, first
    assert first.count((CLOSED, OPEN)) >= 5, first
    assert not overlaps, f"listeners ran {max(overlaps)} at once"


@paths("do-caller", "do-thread", "go-thread", "do_async")
def test_reentrant_listener_does_not_deadlock(path: Path, clock: FakeClock) -> None:
    """A listener that reads statistics, calls the same command and reconfigures it runs to the end, every time."""
    config: dict[str, Any] = {
        "request_volume_threshold": 2,
        "error_percent_threshold": 50,
        "sleep_window": 5.0,
        "timeout": WAIT,
    }
    path.configure(**config)
    done: list[tuple[State, State, str, int]] = []

    @breaker.on_state_change
    def reentrant(name: str, old: State, new: State) -> None:
        s = breaker.get_circuit(name)[0].statistics()
        answer = breaker.do(name, lambda: VALUE, lambda error: FALLBACK)
        breaker.configure_command(name, CommandConfig(isolation=path.isolation, **config))  # the same settings
        done.append((old, new, answer, s.requests))

    def scenario() -> None:
        for _ in range(2):
            path.call(failing, lambda error: FALLBACK)
        clock.advance(5.0)
        path.call(lambda: VALUE)

    driver = threading.Thread(target=scenario, daemon=True)  # a deadlock leaves it stuck: the join bounds it
    driver.start()
    driver.join(WAIT)
    assert not driver.is_alive(), "deadlock: a re-entrant listener never returned"
    settle()
    assert [(old, new) for old, new, _, _ in done] == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]
    assert [answer for _, _, answer, _ in done] == [FALLBACK, FALLBACK, VALUE]  # open, probe in flight, closed


@paths("do-caller", "do-thread", "go-thread", "do_async")
def test_failing_listener_is_logged_and_neither_the_call_nor_other_listeners_notice(
    path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A raising listener is logged on logger "breaker" with its traceback; the call answers; later listeners run."""
    path.configure(request_volume_threshold=2, error_percent_threshold=50, sleep_window=5.0, timeout=WAIT)

    @breaker.on_state_change
    def broken(name: str, old: State, new: State) -> None:
        raise RuntimeError(f"listener bug on {old.value}->{new.value}")

    after = transitions_log()
    with caplog.at_level(logging.ERROR, logger="breaker"):
        assert path.call(failing, lambda error: FALLBACK) == FALLBACK
        assert path.call(failing, lambda error: FALLBACK) == FALLBACK  # trips
        clock.advance(5.0)
        assert path.call(lambda: VALUE) == VALUE  # half-open, then closed
    assert after == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]
    errors = [r for r in caplog.records if r.name == "breaker" and r.levelno == logging.ERROR]
    assert len(errors) == 3
    for record in errors:
        assert record.exc_info is not None
        assert isinstance(record.exc_info[1], RuntimeError)
    s = stats()
    assert (s.cumulative["failure"], s.cumulative["success"]) == (2, 1)


def test_removed_listener_is_no_longer_called_and_removing_an_unknown_one_raises(clock: FakeClock) -> None:
    """remove_state_listener stops the calls; removing a listener that is not registered raises ValueError."""
    breaker.configure_command(NAME, CommandConfig(isolation="caller", request_volume_threshold=1, sleep_window=5.0))
    seen: list[tuple[State, State]] = []

    def listener(name: str, old: State, new: State) -> None:
        seen.append((old, new))

    assert breaker.on_state_change(listener) is listener
    breaker.do(NAME, failing, lambda error: FALLBACK)
    assert seen == [(CLOSED, OPEN)]
    breaker.remove_state_listener(listener)
    clock.advance(5.0)
    breaker.do(NAME, lambda: VALUE)
    assert seen == [(CLOSED, OPEN)]
    with pytest.raises(ValueError, match="not a registered"):
        breaker.remove_state_listener(listener)
    with pytest.raises(TypeError):
        breaker.on_state_change(42)  # type: ignore[type-var]


def test_listeners_belong_to_the_registry_they_were_registered_on() -> None:
    """A listener hears the circuits of the registry it was registered on, not an isolated one's (nor vice versa)."""
    outer = transitions_log()
    config = CommandConfig(isolation="caller", request_volume_threshold=1)
    with isolated_registry():
        inner = transitions_log()
        breaker.configure_command(NAME, config)
        breaker.do(NAME, failing, lambda error: FALLBACK)
        assert inner == [(CLOSED, OPEN)]
    assert outer == []
    breaker.configure_command(NAME, config)
    breaker.do(NAME, failing, lambda error: FALLBACK)
    assert outer == [(CLOSED, OPEN)]
    assert inner == [(CLOSED, OPEN)]
