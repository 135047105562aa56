"""Collectors (`breaker.register_collector`): one `CallResult` per call, on every path and for every outcome.

Each case of the scenario table is played twice on each path that can produce it, in a fresh registry on a fresh
`FakeClock`: once with no collector and once with one. The two plays must answer alike (the same value, or the
same exception, the run's own object where it should be) and count alike; the collector must get exactly one
result for the call, before the call returns (for `breaker.go`, before its future resolves, as the outcome is
counted), on the caller's thread or task, with the event, the fallback's event, the flags and the durations the
fake clock gives.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import random
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any, Literal

import pytest
from observability_support import (
    FALLBACK,
    NAME,
    PATHS,
    PRIMARY,
    VALUE,
    WAIT,
    BadInput,
    Boom,
    FallbackBoom,
    Path,
    Recorder,
    Recorders,
    Seen,
    Stop,
    paths,
    settle,
    stats,
    tally,
)

import breaker
from breaker import (
    CallResult,
    CircuitOpenError,
    CommandConfig,
    CommandTimeoutError,
    Event,
    FallbackError,
    MaxConcurrencyError,
)
from breaker._run.observe import REPORT_INTERVAL
from breaker.testing import FakeClock, isolated_registry

RUN = 0.010  # seconds a run takes on the fake clock
FALLBACK_TIME = 0.020  # seconds a fallback takes on the fake clock
SLOW = 1.5  # a run past the caller-judged timeout
TIMEOUT = 1.0  # the timeout the fake clock judges (caller isolation and async)
THREAD_TIMEOUT = 0.05  # real seconds: thread isolation's timeout, raced by a run blocked on a gate


# -- the scenario table ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Case:
    """One outcome, and what the collector must be told about it."""

    id: str
    event: Event
    fallback: Event | None = None
    ran: bool = True  # the run was called
    async_only: bool = False

    def applies(self, path: Path) -> bool:
        return path.is_async or not self.async_only


CASES = (
    Case("success", Event.SUCCESS),
    Case("success-with-unused-fallback", Event.SUCCESS),
    Case("failure", Event.FAILURE),
    Case("failure-fallback", Event.FAILURE, Event.FALLBACK_SUCCESS),
    Case("failure-fallback-fails", Event.FAILURE, Event.FALLBACK_FAILURE),
    Case("timeout", Event.TIMEOUT),
    Case("timeout-fallback", Event.TIMEOUT, Event.FALLBACK_SUCCESS),
    Case("short-circuit", Event.SHORT_CIRCUIT, ran=False),
    Case("short-circuit-fallback", Event.SHORT_CIRCUIT, Event.FALLBACK_SUCCESS, ran=False),
    Case("rejected", Event.REJECTED, ran=False),
    Case("rejected-fallback", Event.REJECTED, Event.FALLBACK_SUCCESS, ran=False),
    Case("bad-request", Event.BAD_REQUEST),
    Case("base-exception", Event.FAILURE),
    Case("cancelled", Event.CANCELLED, async_only=True),
)


def table() -> list[Any]:
    return [
        pytest.param(path, case, id=f"{case.id}-{path.id}") for case in CASES for path in PATHS if case.applies(path)
    ]


@dataclasses.dataclass
class Play:
    """What one play of a case gave."""

    outcome: tuple[Any, ...]
    cumulative: dict[str, int]
    counts: dict[str, int]
    latency: tuple[int, int, tuple[tuple[float, int], ...], tuple[tuple[float, int], ...]]
    during: list[Seen]  # results that arrived while the call was being made
    results: list[CallResult]  # every result, once everything settled
    recorders: Recorders | None
    thread: int
    task: asyncio.Task[Any] | None


def signature(value: object, error: BaseException | None, own: list[BaseException]) -> tuple[Any, ...]:
    """How a call answered, comparable across plays: the value, or the exception and where it came from."""
    if error is None:
        return ("value", value)
    if isinstance(error, FallbackError):
        return ("raise", FallbackError, type(error.run_error), type(error.fallback_error), error.run_error in own)
    return ("raise", type(error), error in own)  # `own`: the exceptions the run raised, the very objects


def perform(case: Case, path: Path, clock: FakeClock, recorders: Recorders | None) -> Play:
    """Play ``case`` once on ``path`` in the current registry, reading ``clock``."""
    threaded = path.threaded
    config: dict[str, Any] = {
        "timeout": THREAD_TIMEOUT if threaded and case.id.startswith("timeout") else TIMEOUT,
        "ignored_exceptions": (BadInput,),
        "latency_window": 3600.0,
    }
    gate = threading.Event()  # blocked runs wait on it
    own: list[BaseException] = []  # what the run raised
    holder: threading.Thread | None = None

    def raising(error: BaseException) -> Callable[[], str]:
        def run() -> str:
            clock.advance(RUN)
            own.append(error)
            raise error

        return run

    def ok() -> str:
        clock.advance(RUN)
        return VALUE

    def fallback(error: Exception) -> str:
        clock.advance(FALLBACK_TIME)
        if case.id.endswith("fallback-fails"):
            raise FallbackBoom
        return FALLBACK

    run: Callable[[], str] = ok
    with_fallback = "fallback" in case.id
    if case.id in ("failure", "failure-fallback", "failure-fallback-fails"):
        run = raising(Boom())
    elif case.id == "bad-request":
        run = raising(BadInput())
        with_fallback = True  # configured, never called
    elif case.id == "base-exception":
        run = raising(Stop())
    elif case.id.startswith("timeout"):
        if threaded:

            def run() -> str:
                assert gate.wait(WAIT), "the timed-out run was never released"
                return VALUE

        else:

            def run() -> str:
                clock.advance(SLOW)
                return VALUE

    elif case.id.startswith("short-circuit"):
        config["force_open"] = True
    elif case.id.startswith("rejected"):
        config["max_concurrent_requests"] = 1
        started = threading.Event()

        def held() -> str:
            started.set()
            assert gate.wait(WAIT), "the held run was never released"
            return VALUE

        # The ticket is held by a plain caller-isolated call on another thread (the same circuit either way).
        holder = threading.Thread(target=lambda: breaker.do(NAME, held), daemon=True)
    path.configure(**config)
    recorder: Recorder | None = None
    if recorders is not None:
        breaker.get_circuit(NAME)
        breaker.register_collector(recorders)
        recorder = recorders.made[NAME][0]
    if holder is not None:
        holder.start()
        assert started.wait(WAIT), "the held run did not start"
    before = 0 if recorder is None else len(recorder.seen)
    value: object = None
    error: BaseException | None = None
    task: asyncio.Task[Any] | None = None
    try:
        if case.id == "cancelled":
            value, error, task = cancel_async(path)
        else:
            value = path.call(run, fallback if with_fallback else None)
    except (Exception, Stop) as raised:
        error = raised
    during = [] if recorder is None else recorder.seen[before:]
    gate.set()
    if holder is not None:
        holder.join(WAIT)
        assert not holder.is_alive()
    settle()
    s = stats()
    return Play(
        outcome=signature(value, error, own),
        cumulative=dict(s.cumulative),
        counts=dict(s.counts),
        latency=(s.latency_execute.count, s.latency_total.count, s.run_durations.buckets, s.total_durations.buckets),
        during=during,
        results=[] if recorders is None else recorders.results(),
        recorders=recorders,
        thread=threading.get_ident(),
        task=task,
    )


def cancel_async(path: Path) -> tuple[object, BaseException | None, asyncio.Task[Any] | None]:
    """Start an async call whose run waits forever, cancel it once the run has started; how it ended."""
    out: list[Any] = []

    async def main() -> None:
        started = asyncio.Event()

        async def forever() -> str:
            started.set()
            await asyncio.Event().wait()
            return VALUE

        if path.id == "do_async":
            task = asyncio.create_task(breaker.do_async(NAME, forever))
        else:
            task = asyncio.create_task(breaker.command(NAME)(forever)())
        await started.wait()
        task.cancel()
        try:
            await task
        except asyncio.CancelledError as error:
            out.extend((None, error, task))
        else:  # pragma: no cover - reported by the caller's assertions
            out.extend((task.result(), None, task))

    asyncio.run(main())
    return out[0], out[1], out[2]


def play(case: Case, path: Path, *, collect: bool) -> Play:
    clock = FakeClock()
    with isolated_registry(clock=clock):
        return perform(case, path, clock, Recorders() if collect else None)


@pytest.mark.parametrize(("path", "case"), table())
def test_each_call_reports_one_result_and_answers_as_it_would_without_collectors(path: Path, case: Case) -> None:
    """With a collector a call answers and counts as without; the collector gets one right result, in the call."""
    plain = play(case, path, collect=False)
    watched = play(case, path, collect=True)
    assert watched.outcome == plain.outcome, "a collector changed the call's answer"
    assert watched.cumulative == plain.cumulative, "a collector changed the counts"
    assert watched.counts == plain.counts
    assert watched.latency == plain.latency, "a collector changed the latency figures"
    assert plain.cumulative[case.event.value] == 1

    assert len(watched.during) == 1, f"{len(watched.during)} results during the call: {watched.during}"
    seen = watched.during[0]
    result = seen.result
    assert (result.name, result.event, result.fallback, result.attempts) == (NAME, case.event, case.fallback, 1)
    flags = {
        Event.SUCCESS: result.successes,
        Event.FAILURE: result.failures,
        Event.TIMEOUT: result.timeouts,
        Event.SHORT_CIRCUIT: result.short_circuits,
        Event.REJECTED: result.rejects,
        Event.BAD_REQUEST: result.bad_requests,
        Event.CANCELLED: result.cancelled,
    }
    assert flags == {event: int(event is case.event) for event in flags}
    assert result.errors == int(case.event in (Event.FAILURE, Event.TIMEOUT, Event.REJECTED))
    assert result.fallback_successes == int(case.fallback is Event.FALLBACK_SUCCESS)
    assert result.fallback_failures == int(case.fallback is Event.FALLBACK_FAILURE)

    # The outcome (and the fallback's) was counted before update() ran.
    assert seen.cumulative[case.event.value] >= 1
    if case.fallback is not None:
        assert seen.cumulative[case.fallback.value] >= 1
    if not path.is_go:
        assert seen.thread == watched.thread, "update() did not run on the caller's thread"
    if path.is_async:
        assert seen.task is not None, "update() did not run in the caller's task"
        if watched.task is not None:
            assert seen.task is watched.task

    # Durations, on the fake clock.
    fallback_time = FALLBACK_TIME if case.fallback is not None else 0.0
    if path.threaded and case.event is Event.TIMEOUT:
        # The run is still blocked (on a real event) when the call answers: it has run "so far", which on the
        # fake clock is at most the call's time (the fallback's).
        assert result.total_duration == pytest.approx(fallback_time, abs=1e-9)
        assert 0.0 <= result.run_duration <= result.total_duration + 1e-9
    else:
        run = RUN if case.ran and case.id != "cancelled" else 0.0
        run = SLOW if case.event is Event.TIMEOUT else run
        assert result.run_duration == pytest.approx(run, abs=1e-9)
        assert result.total_duration == pytest.approx(run + fallback_time, abs=1e-9)
    tickets = 1 if case.id.startswith("rejected") else 10
    held = 0 if case.event is Event.SHORT_CIRCUIT else 1
    assert result.concurrency_in_use == pytest.approx(held / tickets)

    # Every call reported once: the results add up to the counts (the holder's call included).
    assert tally(watched.results) == watched.cumulative


# -- the results add up -----------------------------------------------------------------------------------------------


@paths()
def test_results_add_up_to_the_cumulative_counts(path: Path, clock: FakeClock) -> None:
    """Random outcomes on one path: the events of the results equal statistics().cumulative, event by event."""
    recorders = breaker.register_collector(Recorders())
    path.configure(
        timeout=TIMEOUT,
        ignored_exceptions=(BadInput,),
        request_volume_threshold=5,
        error_percent_threshold=50,
        sleep_window=0.5,
    )
    rng = random.Random(17)

    def run() -> str:
        kind = rng.choice(("ok", "boom", "boom", "bad", "slow"))
        if kind == "boom":
            raise Boom
        if kind == "bad":
            raise BadInput
        if kind == "slow" and not path.threaded:
            clock.advance(SLOW)
        return VALUE

    def fallback(error: Exception) -> str:
        if rng.random() < 0.3:
            raise FallbackBoom
        return FALLBACK

    for i in range(200):
        with contextlib.suppress(Boom, BadInput, CircuitOpenError, CommandTimeoutError, FallbackError):
            path.call(run, fallback if i % 3 else None)
        clock.advance(rng.choice((0.0, 0.05, 0.3)))
    settle()
    counted = dict(stats().cumulative)
    assert sum(counted[e] for e in PRIMARY) == 200
    assert tally(recorders.results()) == counted
    assert counted["short-circuit"] > 0  # the circuit tripped and probed along the way


@pytest.mark.parametrize("isolation", ["caller", "thread"])
def test_concurrent_callers_each_get_their_own_results_exactly_once(isolation: Literal["caller", "thread"]) -> None:
    """8 threads of random calls: every call reported once, on its caller's thread, adding up to the counts."""
    recorders = breaker.register_collector(Recorders())
    breaker.configure_command(
        NAME,
        CommandConfig(isolation=isolation, ignored_exceptions=(BadInput,), timeout=WAIT, max_concurrent_requests=4),
    )
    calls = 1500
    idents: dict[int, int] = {}
    start = threading.Barrier(8)

    def caller(k: int) -> None:
        rng = random.Random(k)
        idents[k] = threading.get_ident()
        start.wait()
        for _ in range(calls):
            kind = rng.choice(("ok", "boom", "bad"))

            def run(kind: str = kind) -> str:
                if kind == "boom":
                    raise Boom
                if kind == "bad":
                    raise BadInput
                return VALUE

            with contextlib.suppress(Boom, BadInput, MaxConcurrencyError, CircuitOpenError):
                breaker.do(NAME, run, (lambda error: FALLBACK) if rng.random() < 0.5 else None)

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not [t for t in threads if t.is_alive()]
    settle()
    seen = [s for recorder in recorders.made[NAME] for s in recorder.seen]
    assert len(seen) == 8 * calls
    per_thread = dict.fromkeys(idents.values(), 0)
    for s in seen:
        assert s.thread in per_thread, "update() ran on a thread that made no call"
        per_thread[s.thread] += 1
    assert set(per_thread.values()) == {calls}
    assert tally([s.result for s in seen]) == dict(stats().cumulative)


# -- collectors that fail, late collectors, flush -------------------------------------------------------------------


def boom() -> str:
    raise Boom


class Failing(Recorder):
    """A recorder whose update and reset raise after recording."""

    def update(self, result: CallResult) -> None:
        super().update(result)
        raise RuntimeError("collector bug in update")

    def reset(self) -> None:
        super().reset()
        raise RuntimeError("collector bug in reset")


@paths("do-caller", "do-thread", "go-caller", "do_async", "decorator-async")
def test_failing_collectors_and_factories_are_logged_and_skipped(path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A raising factory, update or reset is logged on "breaker"; the call answers; other collectors get it."""
    path.configure(timeout=WAIT)
    first = breaker.register_collector(Recorders())

    def broken_factory(name: str) -> Recorder:
        raise RuntimeError("factory bug")

    breaker.register_collector(broken_factory)
    failing: list[Failing] = []

    def failing_factory(name: str) -> Failing:
        failing.append(Failing(name))
        return failing[-1]

    breaker.register_collector(failing_factory)
    last = breaker.register_collector(Recorders())
    with caplog.at_level(logging.WARNING, logger="breaker"):
        assert path.call(lambda: VALUE) == VALUE
        assert path.call(lambda: 1 / 0, lambda error: FALLBACK) == FALLBACK
        with pytest.raises(Boom):
            path.call(boom)
        breaker.flush()
    assert [r.event for r in first.results()] == [Event.SUCCESS, Event.FAILURE, Event.FAILURE]
    assert [r.event for r in last.results()] == [Event.SUCCESS, Event.FAILURE, Event.FAILURE]
    assert len(failing) == 1
    assert len(failing[0].seen) == 3
    assert (first.made[NAME][0].resets, failing[0].resets, last.made[NAME][0].resets) == (1, 1, 1)
    logged = [r for r in caplog.records if r.name == "breaker" and r.levelno == logging.ERROR]
    messages = [str(r.exc_info[1]) for r in logged if r.exc_info is not None]
    assert messages.count("factory bug") == 1
    assert messages.count("collector bug in update") == 1  # the first failure; the others are counted
    assert messages.count("collector bug in reset") == 1
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "was reset" in r.getMessage()]
    assert len(lines) == 1
    assert lines[0].endswith(f"of command {NAME!r} failed on 2 more calls before it was reset (3 in all)")


class Broken:
    """A collector whose update always raises, and which counts its resets."""

    def __init__(self) -> None:
        self.resets = 0

    def __repr__(self) -> str:
        return "<Broken>"

    def update(self, result: CallResult) -> None:
        raise RuntimeError("collector bug in update")

    def reset(self) -> None:
        self.resets += 1


def collector_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The records the "breaker" logger wrote about collectors."""
    return [r for r in caplog.records if r.name == "breaker" and "collector" in r.getMessage()]


def test_a_failing_collector_logs_one_traceback_then_a_counted_line_per_interval(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """1,000 failing calls log one traceback; past the interval one line counts the rest; flush logs what is left."""
    broken = Broken()
    breaker.register_collector(lambda name: broken)
    breaker.configure_command(NAME, CommandConfig(isolation="caller"))
    with caplog.at_level(logging.DEBUG, logger="breaker"):
        for _ in range(1000):
            assert breaker.do(NAME, lambda: VALUE) == VALUE
        first = collector_records(caplog)
        assert len(first) == 1
        assert first[0].levelno == logging.ERROR
        assert first[0].exc_info is not None
        assert str(first[0].exc_info[1]) == "collector bug in update"
        assert f"at most every {REPORT_INTERVAL:g} s" in first[0].getMessage()
        assert sum(len(r.getMessage()) for r in first) < 1000  # one short line and one traceback, not 448 KB

        clock.advance(REPORT_INTERVAL - 0.001)
        breaker.do(NAME, lambda: VALUE)
        assert len(collector_records(caplog)) == 1  # still inside the interval: counted only
        clock.advance(0.001)
        breaker.do(NAME, lambda: VALUE)
        for _ in range(9):
            breaker.do(NAME, lambda: VALUE)
        breaker.flush()
    records = collector_records(caplog)
    assert [(r.levelno, r.exc_info) for r in records[1:]] == [(logging.WARNING, None)] * 2
    assert [r.getMessage() for r in records[1:]] == [
        f"collector <Broken> of command {NAME!r} failed on 1001 more calls (1002 in all); "
        "the last: RuntimeError: collector bug in update",
        f"collector <Broken> of command {NAME!r} failed on 9 more calls before it was reset (1011 in all)",
    ]
    assert broken.resets == 1
    assert stats().cumulative["success"] == 0  # flushed: a new circuit


def test_a_reset_with_nothing_left_to_count_logs_nothing(clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    """A collector whose failures were all logged already is reset silently."""
    breaker.register_collector(lambda name: Broken())
    breaker.configure_command(NAME, CommandConfig(isolation="caller"))
    with caplog.at_level(logging.DEBUG, logger="breaker"):
        breaker.do(NAME, lambda: VALUE)
        breaker.flush()
    assert len(collector_records(caplog)) == 1


def test_failures_from_many_threads_are_each_counted_once(clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    """8 threads of failing calls: one traceback in all, and the count at flush is exact."""
    breaker.register_collector(lambda name: Broken())
    breaker.configure_command(NAME, CommandConfig(isolation="caller", max_concurrent_requests=math.inf))
    calls = 500
    start = threading.Barrier(8)

    def caller() -> None:
        start.wait()
        for _ in range(calls):
            breaker.do(NAME, lambda: VALUE)

    with caplog.at_level(logging.DEBUG, logger="breaker"):
        threads = [threading.Thread(target=caller) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not [t for t in threads if t.is_alive()]
        breaker.flush()
    records = collector_records(caplog)
    assert [r.levelno for r in records] == [logging.ERROR, logging.WARNING]
    total = 8 * calls
    assert records[1].getMessage().endswith(f"failed on {total - 1} more calls before it was reset ({total} in all)")


def test_each_failing_collector_is_logged_on_its_own(clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    """The rule holds per collector: each command's failing collector logs its own first traceback."""
    breaker.register_collector(lambda name: Broken())
    breaker.configure_defaults(CommandConfig(isolation="caller"))
    with caplog.at_level(logging.DEBUG, logger="breaker"):
        for name in ("a", "b", "a", "b"):
            breaker.do(name, lambda: VALUE)
    records = collector_records(caplog)
    assert [r.args[1] for r in records if isinstance(r.args, tuple)] == ["a", "b"]
    assert all(r.exc_info is not None for r in records)


@paths("do-caller", "decorator-caller", "do-thread", "decorator-thread", "go-thread", "do_async", "decorator-async")
def test_collector_registered_after_the_circuit_exists_gets_the_calls_made_after(path: Path) -> None:
    """A collector registered late is made for existing circuits and gets every later call (decorated ones too)."""
    path.configure(timeout=WAIT)
    for _ in range(3):
        path.call(lambda: VALUE)
    recorders = breaker.register_collector(Recorders())
    assert list(recorders.made) == [NAME]
    for _ in range(2):
        path.call(lambda: VALUE)
    assert [r.event for r in recorders.results()] == [Event.SUCCESS, Event.SUCCESS]
    assert stats().cumulative["success"] == 5


def test_a_decorated_function_reports_once_a_collector_is_registered() -> None:
    """A decorated function that already cached its circuit reports calls made after register_collector."""
    breaker.configure_command(NAME, CommandConfig(isolation="caller"))

    @breaker.command(NAME)
    def dependency(x: int) -> int:
        return x * 2

    @breaker.command(NAME)
    async def adependency(x: int) -> int:
        return x * 3

    assert dependency(1) == 2
    assert asyncio.run(adependency(1)) == 3
    recorders = breaker.register_collector(Recorders())
    assert dependency(2) == 4
    assert asyncio.run(adependency(2)) == 6
    assert [r.event for r in recorders.results()] == [Event.SUCCESS, Event.SUCCESS]


def test_factory_is_called_once_per_command_with_its_name_and_flush_resets_what_it_made() -> None:
    """One collector per command, made for new commands too; flush() resets each; new circuits get new ones."""
    breaker.do("a", lambda: 1)
    recorders = breaker.register_collector(Recorders())
    breaker.do("b", lambda: 2)
    breaker.do("a", lambda: 3)
    breaker.do("b", lambda: 4)
    assert {name: len(made) for name, made in recorders.made.items()} == {"a": 1, "b": 1}
    assert [r.name for r in recorders.results("a")] == ["a"]
    assert [r.name for r in recorders.results("b")] == ["b", "b"]
    breaker.flush()
    assert [m.resets for made in recorders.made.values() for m in made] == [1, 1]
    breaker.do("a", lambda: 5)
    assert len(recorders.made["a"]) == 2
    assert len(recorders.made["a"][1].results) == 1
    assert recorders.made["a"][0].resets == 1  # the dropped one is not reset again, nor told of new calls
    assert len(recorders.made["a"][0].results) == 1


def test_register_collector_returns_the_factory_and_rejects_non_callables() -> None:
    """register_collector returns its argument (usable as a decorator) and raises TypeError for a non-callable."""
    recorders = Recorders()
    assert breaker.register_collector(recorders) is recorders
    with pytest.raises(TypeError):
        breaker.register_collector("not callable")  # type: ignore[type-var]


def test_an_async_run_that_returns_no_awaitable_reports_nothing() -> None:
    """do_async with a run returning a plain value raises TypeError: nothing counted, nothing reported."""
    recorders = breaker.register_collector(Recorders())

    async def main() -> None:
        with pytest.raises(TypeError, match="awaitable"):
            await breaker.do_async(NAME, lambda: 42)  # type: ignore[arg-type, return-value]

    asyncio.run(main())
    assert recorders.results() == []
    assert set(stats().cumulative.values()) == {0}


@pytest.fixture
def finest_switching() -> Iterator[None]:
    """Switch threads every microsecond during the test, so that racing threads interleave as finely as they can."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def register_at_once(factories: list[Recorders]) -> None:
    """Register ``factories``, each from its own thread, all released together."""
    start = threading.Barrier(len(factories))

    def register(factory: Recorders) -> None:
        start.wait()
        breaker.register_collector(factory)

    threads = [threading.Thread(target=register, args=(f,)) for f in factories]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert not [t for t in threads if t.is_alive()]


@pytest.mark.slow
@pytest.mark.usefixtures("finest_switching")
def test_concurrent_registrations_on_an_existing_circuit_are_all_kept() -> None:
    """8 collectors registered from 8 threads at once on an existing circuit each get its next call (2,000 rounds)."""
    lost: list[int] = []
    for round_ in range(2000):
        with isolated_registry():
            breaker.do(NAME, lambda: VALUE)
            made = [Recorders() for _ in range(8)]
            register_at_once(made)
            breaker.do(NAME, lambda: VALUE)
            if [len(m.results()) for m in made] != [1] * 8:
                lost.append(round_)
    assert not lost, f"a registration was lost in {len(lost)} of 2,000 rounds (rounds {lost[:10]}...)"


def test_concurrency_in_use_is_zero_without_a_ticket_limit() -> None:
    """With no ticket limit, concurrency_in_use is 0.0."""
    recorders = breaker.register_collector(Recorders())
    breaker.configure_command(NAME, CommandConfig(isolation="caller", max_concurrent_requests=math.inf))
    breaker.do(NAME, lambda: VALUE)
    assert [r.concurrency_in_use for r in recorders.results()] == [0.0]
