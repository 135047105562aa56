"""Reliability under abuse (issue 4): hung dependencies, leaks, fork safety, and hostile run/fallback behaviour.

Threads are coordinated with events; where background work has to end, the test polls with a bounded deadline.
Memory is measured with tracemalloc: a snapshot after a warm-up and one after the measured calls, both taken after
``gc.collect()``, compared by file, tracemalloc's own allocations filtered out. The long versions are marked
``slow`` (CI runs them; the default run has smaller ones).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import dataclasses
import gc
import os
import signal
import sys
import threading
import time
import traceback
import tracemalloc
import warnings
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Literal, TypeVar

import pytest

import breaker
from breaker import (
    CircuitError,
    CircuitOpenError,
    CommandConfig,
    CommandTimeoutError,
    FallbackError,
    MaxConcurrencyError,
    State,
)
from breaker._core.circuit import engine_of
from breaker._registry import Registry
from breaker.testing import FakeClock

T = TypeVar("T")

NAME = "dependency"
VALUE = "value"
WAIT = 10.0  # the bound on every wait for something that should happen promptly


class Boom(Exception):
    """The dependency's own failure."""


# -- helpers ------------------------------------------------------------------------------------------------------


def ok() -> str:
    return VALUE


def failing() -> str:
    raise Boom("down")


def stats(name: str = NAME) -> breaker.CircuitStatistics:
    return breaker.get_circuit(name)[0].statistics()


def events(name: str = NAME) -> dict[str, int]:
    """The non-zero event counts of the circuit of ``name``."""
    return {event: n for event, n in stats(name).counts.items() if n}


def wait_until(condition: Callable[[], bool], what: str, bound: float = WAIT) -> None:
    """Poll ``condition`` until it holds; fail after ``bound`` seconds."""
    deadline = time.monotonic() + bound
    while not condition():
        assert time.monotonic() < deadline, f"still not true after {bound} s: {what}"
        time.sleep(0.002)


def library_threads(prefix: str = "breaker-") -> set[threading.Thread]:
    """The library's threads alive now: workers are "breaker-worker-N", the go() timer "breaker-timer"."""
    return {t for t in threading.enumerate() if t.name.startswith(prefix)}


def assert_threads_end(threads: set[threading.Thread], what: str) -> None:
    """Every thread of ``threads`` ends within WAIT seconds (joined with a deadline)."""
    deadline = time.monotonic() + WAIT
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    alive = sorted(t.name for t in threads if t.is_alive())
    assert alive == [], f"{what}: still alive after {WAIT} s"


def end_of_library_threads(registry: Registry, before: set[threading.Thread], what: str) -> None:
    """After flush(): every library thread started since ``before`` ends, and the pool and timer hold none."""
    assert_threads_end(library_threads() - before, what)
    assert registry.pool.threads == 0
    wait_until(lambda: not registry.timer.running, "the timer thread let go of its handle")


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """An event blocked runs wait on; set at teardown so that no run outlives its test."""
    event = threading.Event()
    yield event
    event.set()


@pytest.fixture
def background_errors(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Exceptions that escaped on a thread (threading.excepthook) or were unraisable (sys.unraisablehook)."""
    seen: list[str] = []

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        name = args.thread.name if args.thread is not None else "?"
        seen.append(f"thread {name}: {args.exc_type.__name__}: {args.exc_value!r}")

    def unraisable_hook(args: Any) -> None:
        seen.append(f"unraisable: {args.exc_type.__name__}: {args.exc_value!r} in {args.object!r}")

    monkeypatch.setattr(threading, "excepthook", thread_hook)
    monkeypatch.setattr(sys, "unraisablehook", unraisable_hook)
    return seen


Call = Callable[[str, Callable[[], str]], str]


class Holder:
    """Calls ``call(name, run)`` on threads of its own, each run blocking until `release`."""

    def __init__(self, call: Call, name: str, gate: threading.Event) -> None:
        self.call = call
        self.name = name
        self.gate = gate
        self.outcomes: list[object] = []
        self.run_threads: list[threading.Thread] = []  # the threads the held runs ran on
        self._started = threading.Semaphore(0)
        self._threads: list[threading.Thread] = []

    def _run(self) -> str:
        self.run_threads.append(threading.current_thread())
        self._started.release()
        self.gate.wait(WAIT * 6)  # released by the test or its teardown; the bound only guards the suite
        return VALUE

    def _call(self) -> None:
        try:
            self.outcomes.append(self.call(self.name, self._run))
        except BaseException as error:  # recorded for the test to check
            self.outcomes.append(error)

    def start(self, count: int = 1) -> None:
        """Start ``count`` calls and wait until each one's run is in progress."""
        for i in range(count):
            thread = threading.Thread(target=self._call, name=f"holder-{i}", daemon=True)
            self._threads.append(thread)
            thread.start()
        for _ in range(count):
            assert self._started.acquire(timeout=WAIT), "a held call's run did not start"

    def release(self) -> list[object]:
        """Let every held run return and wait for their calls to end; their outcomes."""
        self.gate.set()
        deadline = time.monotonic() + WAIT
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        assert not [t for t in self._threads if t.is_alive()], "a held call did not end"
        return self.outcomes


MakeHolder = Callable[..., Holder]


@pytest.fixture
def holders() -> Iterator[MakeHolder]:
    """Make `Holder`s: ``holders(call, name=NAME, gate=None)``; each is released at teardown whatever happened."""
    made: list[Holder] = []

    def make(call: Call, name: str = NAME, gate: threading.Event | None = None) -> Holder:
        made.append(Holder(call, name, threading.Event() if gate is None else gate))
        return made[-1]

    yield make
    for holder in made:
        holder.gate.set()


# -- memory -------------------------------------------------------------------------------------------------------

_NOT_TRACEMALLOC = (tracemalloc.Filter(False, tracemalloc.__file__),)


@contextlib.contextmanager
def tracing() -> Iterator[None]:
    """Trace allocations for the block (unless something traces already: then leave it on)."""
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    try:
        yield
    finally:
        if started:
            tracemalloc.stop()


def snapshot() -> tracemalloc.Snapshot:
    """A tracemalloc snapshot after a full collection, without tracemalloc's own allocations."""
    gc.collect()
    return tracemalloc.take_snapshot().filter_traces(_NOT_TRACEMALLOC)


def growth(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot) -> tuple[int, str]:
    """Bytes allocated between the snapshots and still held, and the top five files, for the message."""
    diff = after.compare_to(before, "filename")
    top = "; ".join(f"{stat.traceback[0].filename}: {stat.size_diff:+d} B" for stat in diff[:5])
    return sum(stat.size_diff for stat in diff), top


# -- 1. a hung dependency -----------------------------------------------------------------------------------------

HUNG_CALLS = 10_000
HUNG_WARMUP = 1_000
TICKETS = 8
HUNG_TIMEOUT = 0.01
#: The bound on one call: its timeout, or nothing for a rejection, plus a generous second for scheduling.
CALL_BOUND = HUNG_TIMEOUT + 1.0
#: The bound on the 10,000 calls. They take about 1 s here under tracemalloc (8 timeouts of 10 ms, then rejections
#: at about 0.1 ms each); if rejected callers waited for the timeout instead, they would take 100 s.
HUNG_TOTAL_BOUND = 15.0
#: Memory allowed to stay allocated over the 9,000 calls after the warm-up: 8 bytes a call (one list slot, the least a
#: per-call leak can cost) would be 72 KB, any per-call object (an exception, a future, a timer entry: 100 B to 1 KB)
#: 0.9 to 9 MB. What is measured here is under 2 KB of noise (interpreter caches, the Counter's ints).
HUNG_MEMORY_BOUND = 32 * 1024

HungMode = Literal["do-thread", "go-thread", "do-caller"]


@dataclasses.dataclass
class HungRun:
    """What the calling loop saw."""

    outcomes: collections.Counter[str]
    slowest: float
    elapsed: float
    most_workers: int
    growth: int
    top: str


def call_hung_dependency(
    mode: HungMode, run: Callable[[], str], registry: Registry, before: set[threading.Thread]
) -> HungRun:
    """HUNG_CALLS calls, one after another, to a run that does not return; checks the bounds as it goes."""
    outcomes: collections.Counter[str] = collections.Counter()
    slowest = 0.0
    most_workers = 0
    start = time.monotonic()
    baseline: tracemalloc.Snapshot | None = None
    with tracing():
        for i in range(HUNG_CALLS):
            if i == HUNG_WARMUP:
                baseline = snapshot()
            began = time.monotonic()
            error: BaseException | None
            if mode == "go-thread":
                error = breaker.go(NAME, run).exception(timeout=CALL_BOUND)
            else:
                try:
                    breaker.do(NAME, run)
                except CircuitError as raised:
                    error = raised
                else:
                    error = None
            took = time.monotonic() - began
            outcomes[type(error).__name__] += 1
            del error
            slowest = max(slowest, took)
            assert took < CALL_BOUND, f"call {i} took {took:.3f} s"
            most_workers = max(most_workers, registry.pool.threads)
            if i % 100 == 0:
                workers = library_threads("breaker-worker-") - before
                most_workers = max(most_workers, len(workers))
                if mode == "do-caller":
                    assert library_threads() - before == set(), f"call {i}: caller isolation started a thread"
                assert most_workers <= TICKETS, f"call {i}: {most_workers} worker threads for {TICKETS} tickets"
                assert time.monotonic() - start < HUNG_TOTAL_BOUND, f"{i} calls took over {HUNG_TOTAL_BOUND} s"
        elapsed = time.monotonic() - start
        assert baseline is not None
        size, top = growth(baseline, snapshot())
    return HungRun(outcomes, slowest, elapsed, most_workers, size, top)


@pytest.mark.parametrize("mode", ["do-thread", "go-thread", "do-caller"])
def test_hung_dependency_bounds_latency_threads_and_memory(
    mode: HungMode, fresh_registry: Registry, gate: threading.Event, holders: MakeHolder
) -> None:
    """10,000 calls to a dependency that never returns: prompt answers, <= 8 worker threads, flat memory, clean end."""
    isolation: Literal["thread", "caller"] = "caller" if mode == "do-caller" else "thread"
    # force_closed keeps the circuit from opening, so that every call contends for a ticket: the tickets alone stand
    # between the hung dependency and an unbounded number of threads.
    breaker.configure_command(
        NAME,
        CommandConfig(isolation=isolation, timeout=HUNG_TIMEOUT, max_concurrent_requests=TICKETS, force_closed=True),
    )
    before = library_threads()
    runs: collections.Counter[str] = collections.Counter()

    def hung() -> str:
        runs[threading.current_thread().name] += 1
        gate.wait(WAIT * 6)  # released at the end of the test (or its teardown); the bound only guards the suite
        return VALUE

    holder: Holder | None = None
    if mode == "do-caller":
        # In caller isolation a hung run hangs its own caller: eight callers on threads of the test hold the tickets,
        # and the calling loop measures what everyone else gets.
        holder = holders(breaker.do, gate=gate)
        holder.start(TICKETS)

    seen = call_hung_dependency(mode, hung, fresh_registry, before)

    if holder is not None:
        assert runs == {}  # no call of the loop reached the dependency
        assert {t.name for t in holder.run_threads} == {f"holder-{i}" for i in range(TICKETS)}
        assert seen.outcomes == {"MaxConcurrencyError": HUNG_CALLS}
        assert events() == {"rejected": HUNG_CALLS}
        assert (stats().active, stats().abandoned) == (TICKETS, 0)
        assert seen.most_workers == 0
        assert library_threads() - before == set()
    else:
        assert sum(runs.values()) == TICKETS, runs
        assert seen.outcomes == {"CommandTimeoutError": TICKETS, "MaxConcurrencyError": HUNG_CALLS - TICKETS}
        assert events() == {"timeout": TICKETS, "rejected": HUNG_CALLS - TICKETS}
        assert (stats().active, stats().abandoned) == (TICKETS, TICKETS)
        assert all(name.startswith("breaker-worker-") for name in runs), runs  # never on the caller's thread
        assert seen.most_workers <= TICKETS
    assert seen.slowest < CALL_BOUND
    assert seen.elapsed < HUNG_TOTAL_BOUND
    assert seen.growth < HUNG_MEMORY_BOUND, f"{seen.growth} B still allocated after the calls: {seen.top}"

    gate.set()
    if holder is not None:
        assert all(isinstance(o, CommandTimeoutError) for o in holder.release())  # they outlasted the timeout
    wait_until(lambda: (stats().active, stats().abandoned) == (0, 0), "every hung run returned its ticket")
    if mode == "do-caller":
        assert events() == {"timeout": TICKETS, "rejected": HUNG_CALLS}
    else:
        assert events() == {"timeout": TICKETS, "rejected": HUNG_CALLS - TICKETS}  # late results: discarded
    breaker.flush()
    end_of_library_threads(fresh_registry, before, "library threads after flush()")


def test_go_timeout_fallbacks_do_not_add_a_thread_per_call(fresh_registry: Registry, gate: threading.Event) -> None:
    """go() calls to a hung dependency with a quick fallback: 8 threads run the hung calls, at most one more serves."""
    breaker.configure_command(
        NAME, CommandConfig(timeout=HUNG_TIMEOUT, max_concurrent_requests=TICKETS, force_closed=True)
    )
    before = library_threads()
    in_run: collections.Counter[str] = collections.Counter()

    def hung() -> str:
        in_run[threading.current_thread().name] += 1
        gate.wait(WAIT)
        return VALUE

    def fallback(error: Exception) -> str:
        return type(error).__name__

    answers: collections.Counter[str] = collections.Counter()
    most_workers = 0
    for _ in range(4 * TICKETS):
        answers[breaker.go(NAME, hung, fallback).result(CALL_BOUND)] += 1
        most_workers = max(most_workers, fresh_registry.pool.threads, len(library_threads("breaker-worker-") - before))
    assert answers == {"CommandTimeoutError": TICKETS, "MaxConcurrencyError": 3 * TICKETS}
    assert len(in_run) == TICKETS  # the hung dependency holds one thread per ticket
    # The fallbacks (user code) run on a worker, one at a time here: the pool may hold one thread beyond the hung
    # runs for them, never one per call. (Running them on the timer thread instead would save it, at the cost of
    # every other go() timeout: see the next test.)
    assert most_workers <= TICKETS + 1, f"{most_workers} worker threads for {TICKETS} tickets"
    gate.set()
    wait_until(lambda: stats().active == 0, "every hung run returned its ticket")
    breaker.flush()
    end_of_library_threads(fresh_registry, before, "library threads after flush()")


def test_slow_go_fallback_does_not_delay_other_go_timeouts(fresh_registry: Registry, gate: threading.Event) -> None:
    """A go() fallback still running (user code) does not hold up the timeouts of other go() calls."""
    breaker.configure(
        {
            NAME: CommandConfig(timeout=HUNG_TIMEOUT, max_concurrent_requests=1),
            "other": CommandConfig(timeout=HUNG_TIMEOUT, max_concurrent_requests=1),
        }
    )
    before = library_threads()
    fallback_started = threading.Event()
    finish_fallback = threading.Event()

    def hung() -> str:
        gate.wait(WAIT)
        return VALUE

    def slow_fallback(error: Exception) -> str:  # e.g. a call to a second dependency that is slow too
        fallback_started.set()
        finish_fallback.wait(WAIT)
        return "fallback"

    try:
        first = breaker.go(NAME, hung, slow_fallback)
        assert fallback_started.wait(WAIT), "the first call's fallback never started"
        began = time.monotonic()
        second = breaker.go("other", hung)
        try:
            error = second.exception(timeout=CALL_BOUND)
        except concurrent.futures.TimeoutError:  # the builtin TimeoutError from 3.11 on
            error = None
        took = time.monotonic() - began
        assert isinstance(error, CommandTimeoutError), (
            f"a {HUNG_TIMEOUT} s go() timeout had not fired after {took:.2f} s, while another call's fallback ran"
        )
        assert took < CALL_BOUND
    finally:
        finish_fallback.set()
    assert first.result(WAIT) == "fallback"
    gate.set()
    wait_until(lambda: stats().active == stats("other").active == 0, "every hung run returned its ticket")
    breaker.flush()
    end_of_library_threads(fresh_registry, before, "library threads after flush()")


# -- 2. leaks -----------------------------------------------------------------------------------------------------

#: Memory allowed to stay allocated over the measured calls: about half a byte a call for 100,000 calls, a twentieth for
#: 1,000,000. Failures allocate an exception and its traceback (about 500 B) and free them: keeping one from one call
#: in a thousand would exceed it. What is measured is under 2 KB of noise.
LEAK_BOUND = 50 * 1024


def mixed_calls(count: int, clock: FakeClock, fetch: Callable[[], str]) -> collections.Counter[str]:
    """``count`` caller-isolated calls through NAME, 7 in 10 succeeding; the clock moves 1 s every 10,000 calls."""
    answers: collections.Counter[str] = collections.Counter()
    for i in range(count):
        if not i % 10_000:
            clock.advance(1.0)
        kind = i % 10
        if kind in (1, 5):
            answers[breaker.do(NAME, failing, lambda error: "fallback")] += 1
        elif kind == 8:
            try:
                breaker.do(NAME, failing)
            except Boom:
                answers["raised"] += 1
        elif kind in (2, 6):
            answers[fetch()] += 1
        else:
            answers[breaker.do(NAME, ok)] += 1
    return answers


def check_mixed_calls_leave_memory_flat(warmup: int, calls: int, fresh_registry: Registry, clock: FakeClock) -> None:
    breaker.configure_command(NAME, CommandConfig(isolation="caller"))  # 10 s window of 10 buckets, 1 s timeout
    before = library_threads()

    @breaker.command(NAME)
    def fetch() -> str:
        return VALUE

    with tracing():
        mixed_calls(warmup, clock, fetch)
        baseline = snapshot()
        answers = mixed_calls(calls, clock, fetch)
        size, top = growth(baseline, snapshot())
    assert answers == {VALUE: calls * 7 // 10, "fallback": calls * 2 // 10, "raised": calls // 10}
    assert size < LEAK_BOUND, f"{size} B still allocated after {calls} calls: {top}"
    # The window holds the last 10 buckets of 10,000 calls each, every one counted: 7 successes in 10.
    window = stats()
    assert window.state is State.CLOSED
    assert (window.requests, window.error_percentage, window.active) == (100_000, 30, 0)
    assert events() == {"success": 70_000, "failure": 30_000, "fallback-success": 20_000}
    breaker.flush()
    assert fresh_registry.circuits == {}
    end_of_library_threads(fresh_registry, before, "library threads after flush()")


def test_100k_mixed_calls_leave_memory_flat(fresh_registry: Registry, clock: FakeClock) -> None:
    """100,000 caller-isolated calls (successes, failures, fallbacks) after a 10,000 warm-up: memory stays flat."""
    check_mixed_calls_leave_memory_flat(10_000, 100_000, fresh_registry, clock)


@pytest.mark.slow
def test_million_mixed_calls_leave_memory_flat(fresh_registry: Registry, clock: FakeClock) -> None:
    """1,000,000 caller-isolated calls (successes, failures, fallbacks) after 100,000: memory stays flat."""
    check_mixed_calls_leave_memory_flat(100_000, 1_000_000, fresh_registry, clock)


#: What may stay allocated once the circuits are flushed. Each live circuit costs about 5.6 KB here and its name
#: about 60 B: keeping even the names of 1,000 commands would exceed it. What is measured is under 1 KB of noise.
FLUSHED_BOUND = 32 * 1024


@pytest.mark.parametrize("names", [1_000, pytest.param(10_000, marks=pytest.mark.slow)])
def test_many_commands_flushed_leave_no_threads_and_no_memory(fresh_registry: Registry, names: int) -> None:
    """Many names called in thread and caller isolation, then flush(): registry empty, no thread, memory back."""
    before = library_threads()
    thread_defaults = CommandConfig(isolation="thread", timeout=WAIT)
    breaker.configure_defaults(thread_defaults)
    breaker.do("warm-up", ok)  # the code paths' first use allocates caches: not part of what is measured
    breaker.configure_defaults(CommandConfig(isolation="caller"))
    breaker.do("warm-up", ok)
    breaker.flush()
    breaker.configure_defaults(thread_defaults)
    end_of_library_threads(fresh_registry, before, "warm-up threads after flush()")
    with tracing():
        baseline = snapshot()
        held_at_start = tracemalloc.get_traced_memory()[0]
        for i in range(names):
            assert breaker.do(f"command-{i}", ok) == VALUE
        assert fresh_registry.pool.threads == 1  # one call after another: one worker, reused
        breaker.configure_defaults(CommandConfig(isolation="caller"))  # applies at once to the live circuits
        main = threading.current_thread()
        for i in range(names):
            assert breaker.do(f"command-{i}", lambda: VALUE if threading.current_thread() is main else "moved") == VALUE
        assert len(fresh_registry.circuits) == names
        assert events(f"command-{names - 1}") == {"success": 2}
        gc.collect()
        peak = tracemalloc.get_traced_memory()[0] - held_at_start  # (a snapshot of this much is slow to compare)
        breaker.flush()
        assert fresh_registry.circuits == {}
        end_of_library_threads(fresh_registry, before, "library threads after flush()")
        breaker.configure_defaults(thread_defaults)
        size, top = growth(baseline, snapshot())
    assert peak > 10 * FLUSHED_BOUND  # what was at stake: the circuits, while live
    assert size < FLUSHED_BOUND, f"{size} B still allocated after flush() (was {peak} B): {top}"


# -- 3. fork ------------------------------------------------------------------------------------------------------

CHILD_WAIT = 20.0  # the child's whole life; past it the parent kills it and the test fails
CHILD_STEP = 2.0  # the bound on each wait in the child, so that one stuck step does not hide the next ones
HELD = "held"
WARM = "warm"
LOCAL = "local"
FORK = pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")


def fork_and_check(child: Callable[[Checks], None]) -> None:
    """Fork; in the child run ``child`` with a `Checks` and exit; fail unless every check held.

    The child writes each step and each failed check to a pipe as it goes and exits with os._exit (0: every check
    held), never returning into pytest. The parent polls waitpid up to CHILD_WAIT and kills a child still running.
    """
    read_fd, write_fd = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns (DeprecationWarning) that fork() in a multi-threaded process may deadlock the child.
        # That is exactly the situation under test (as gunicorn's preload forks), and pyproject makes warnings errors.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child: coverage and pytest do not follow it
        code = 2
        try:
            os.close(read_fd)

            def report(line: str) -> None:
                os.write(write_fd, f"{line[:2000]}\n".encode())

            checks = Checks(report)
            child(checks)
            code = 1 if checks.failures else 0
        except BaseException:
            os.write(write_fd, f"child raised:\n{traceback.format_exc()}".encode()[:8192])
        finally:
            os._exit(code)
    os.close(write_fd)
    deadline = time.monotonic() + CHILD_WAIT
    killed = False
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            done, status = os.waitpid(pid, 0)
            killed = True
            break
        time.sleep(0.01)
    chunks = []
    while chunk := os.read(read_fd, 65536):
        chunks.append(chunk)
    os.close(read_fd)
    output = b"".join(chunks).decode(errors="replace")
    assert not killed, f"the child was still running after {CHILD_WAIT} s (deadlocked?); its report:\n{output}"
    assert os.waitstatus_to_exitcode(status) == 0, f"the child failed:\n{output}"


class Checks:
    """Checks made in the child, each reported to the parent as it is made (an assert there would only end it)."""

    def __init__(self, report: Callable[[str], None]) -> None:
        self.report = report
        self.failures: list[str] = []

    def step(self, what: str) -> None:
        self.report(f"step: {what}")

    def fail(self, failure: str) -> None:
        self.failures.append(failure)
        self.report(f"FAILED: {failure}")  # now: a later deadlock must not hide it

    def check(self, what: str, condition: bool, detail: object = "") -> None:
        self.step(what)
        if not condition:
            self.fail(f"{what} {detail}".rstrip())

    def call(self, what: str, call: Callable[[], object], expected: object) -> None:
        """Check that ``call()`` returns ``expected``; an exception is a failure, not the end of the child."""
        self.step(what)
        try:
            got = call()
        except Exception as error:
            got = error
        if got != expected:
            self.fail(f"{what}: expected {expected!r}, got {got!r}")


def error_type(call: Callable[[], object]) -> type[BaseException] | None:
    """The type of what ``call()`` raised (None if it returned)."""
    try:
        call()
    except Exception as error:
        return type(error)
    return None


def child_starts_fresh(registry: Registry, checks: Checks) -> None:
    """In the child, before any call: no circuit, worker or timer thread inherited from the parent."""
    checks.check("the registry is the test's", breaker._registry.current is registry)
    checks.check("no circuit inherited", registry.circuits == {}, list(registry.circuits))
    checks.check("no worker thread counted", registry.pool.threads == 0, registry.pool.threads)
    checks.check("no timer thread recorded", not registry.timer.running)


def child_library_works(registry: Registry, checks: Checks, parent_circuit: breaker.Circuit) -> None:
    """In the child: fresh circuits; thread isolation, caller isolation, go() and timeouts work."""
    circuit, created = breaker.get_circuit(HELD)
    checks.check("the held command's circuit is created anew", created and circuit is not parent_circuit)
    held = circuit.statistics()
    checks.check("no inherited ticket", (held.active, held.abandoned) == (0, 0), held)
    checks.check("no inherited counts", not any(held.counts.values()), dict(held.counts))
    checks.check("the circuit is closed", held.state is State.CLOSED, held.state)

    def where() -> str:
        return threading.current_thread().name.rstrip("0123456789")

    # One ticket, held in the parent: an inherited ticket would reject this call.
    checks.call("thread isolation on the held command", lambda: breaker.do(HELD, where), "breaker-worker-")
    checks.call("a failure falls back", lambda: breaker.do(HELD, failing, lambda e: type(e).__name__), "Boom")
    checks.call("go() in the child", lambda: breaker.go(HELD, ok).result(CHILD_STEP), VALUE)
    checks.call("caller isolation", lambda: breaker.do(LOCAL, where), "MainThread")
    checks.call("a new command", lambda: breaker.do("new-in-child", ok), VALUE)
    checks.check("the new command's circuit exists", "new-in-child" in registry.circuits)
    counted = breaker.get_circuit(HELD)[0].statistics().counts
    checks.check("the child counts on its own circuit", (counted["success"], counted["failure"]) == (2, 1), counted)

    hang = threading.Event()  # the parent's events are the parent's: the child waits on its own
    breaker.configure_command("short", CommandConfig(timeout=0.05))
    future = breaker.go("short", lambda: str(hang.wait(WAIT)))
    checks.call(
        "a go() timeout fires (the timer runs)", lambda: type(future.exception(CHILD_STEP)), CommandTimeoutError
    )
    checks.call(
        "a do() timeout fires",
        lambda: error_type(lambda: breaker.do("short", lambda: str(hang.wait(WAIT)))),
        CommandTimeoutError,
    )
    hang.set()
    wait_until(lambda: stats("short").active == 0, "the child's hung runs returned", CHILD_STEP)
    breaker.flush()
    checks.step("flush() in the child")
    child_threads = library_threads()
    deadline = time.monotonic() + CHILD_STEP
    for thread in child_threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    checks.check("the child's library threads end", not [t for t in child_threads if t.is_alive()])


@FORK
def test_forked_child_starts_fresh_with_a_call_in_flight_in_the_parent(
    fresh_registry: Registry, holders: MakeHolder
) -> None:
    """Fork with worker threads alive and a call in flight: the child's library is fresh and works; the parent's too."""
    breaker.configure_command(HELD, CommandConfig(timeout=5.0, max_concurrent_requests=1))
    breaker.configure_command(WARM, CommandConfig(timeout=5.0))
    breaker.configure_command(LOCAL, CommandConfig(isolation="caller"))

    @breaker.command(WARM)
    def warm() -> str:
        return VALUE

    holder = holders(breaker.do, HELD)
    holder.start()
    for _ in range(3):  # on a second worker, idle at the fork
        assert warm() == VALUE
        assert breaker.go(WARM, ok).result(WAIT) == VALUE
    parent_circuit = breaker.get_circuit(HELD)[0]
    assert parent_circuit.statistics().active == 1
    assert fresh_registry.pool.threads >= 2  # the held run's worker, and the idle one(s) that served WARM
    assert fresh_registry.timer.running

    def child(checks: Checks) -> None:
        child_starts_fresh(fresh_registry, checks)
        warm_before = breaker.get_circuit(WARM)[0].statistics().counts["success"]
        checks.check("the warm command's circuit is fresh", warm_before == 0, warm_before)
        checks.call("a function decorated in the parent", warm, VALUE)
        checks.check("it counts on the child's circuit", events(WARM) == {"success": 1}, events(WARM))
        child_library_works(fresh_registry, checks, parent_circuit)

    fork_and_check(child)
    # The parent is untouched: its call in flight ends normally, its circuits and threads work.
    assert holder.release() == [VALUE]
    assert events(HELD) == {"success": 1}
    assert events(WARM) == {"success": 6}
    assert warm() == VALUE
    assert breaker.do(HELD, ok) == VALUE


@FORK
def test_forked_child_does_not_deadlock_on_locks_held_by_parent_threads(
    fresh_registry: Registry, holders: MakeHolder
) -> None:
    """Fork while a parent thread holds the circuit's, the registry's, the pool's and the timer's locks: no deadlock."""
    breaker.configure_command(HELD, CommandConfig(timeout=5.0, max_concurrent_requests=1))
    breaker.configure_command(LOCAL, CommandConfig(isolation="caller"))
    assert breaker.do(HELD, ok) == VALUE
    assert breaker.go(HELD, ok).result(WAIT) == VALUE
    holder = holders(breaker.do, HELD)
    holder.start()
    parent_circuit = breaker.get_circuit(HELD)[0]
    locks: list[threading.Lock | threading.Condition] = [
        engine_of(parent_circuit).lock,
        fresh_registry._lock,
        fresh_registry.pool._lock,
        fresh_registry.timer._cond,
    ]
    locked = threading.Event()
    unlock = threading.Event()

    def hold_locks() -> None:
        for lock in locks:
            lock.acquire()
        locked.set()
        unlock.wait(WAIT)
        for lock in reversed(locks):
            lock.release()

    locker = threading.Thread(target=hold_locks, name="locker")
    locker.start()
    try:
        assert locked.wait(WAIT)

        def child(checks: Checks) -> None:
            child_starts_fresh(fresh_registry, checks)

            def configure() -> str:
                breaker.configure_command("configured-in-child", CommandConfig(isolation="caller"))  # registry lock
                return breaker.get_settings("configured-in-child").isolation

            checks.call("configure_command in the child", configure, "caller")
            child_library_works(fresh_registry, checks, parent_circuit)

        fork_and_check(child)
    finally:
        unlock.set()
        locker.join(WAIT)
    assert not locker.is_alive()
    assert holder.release() == [VALUE]
    assert events(HELD) == {"success": 3}


# -- 4. hostile runs and fallbacks --------------------------------------------------------------------------------

SyncDriver = Literal["do-thread", "do-caller", "go-thread"]
AsyncDriver = Literal["async", "async-fallback-coroutine"]
Path = Literal["failure", "timeout", "short-circuit", "rejected"]
RAISED_FOR: dict[str, type[Exception]] = {
    "failure": Boom,
    "timeout": CommandTimeoutError,
    "short-circuit": CircuitOpenError,
    "rejected": MaxConcurrencyError,
}


def sync_call(driver: SyncDriver, name: str, run: Callable[[], T], fallback: Callable[[Exception], T] | None) -> T:
    if driver == "go-thread":
        return breaker.go(name, run, fallback).result(WAIT)
    return breaker.do(name, run, fallback)


@pytest.mark.parametrize("kind", [KeyboardInterrupt, SystemExit])
@pytest.mark.parametrize("path", ["failure", "timeout", "short-circuit", "rejected"])
@pytest.mark.parametrize("driver", ["do-thread", "do-caller", "go-thread"])
def test_base_exception_from_fallback_propagates_unwrapped_on_every_path(
    driver: SyncDriver,
    path: Path,
    kind: type[BaseException],
    clock: FakeClock,
    gate: threading.Event,
    holders: MakeHolder,
) -> None:
    """A fallback raising KeyboardInterrupt/SystemExit on any path: propagates as is, counted, ticket back."""
    isolation: Literal["thread", "caller"] = "caller" if driver == "do-caller" else "thread"
    config = CommandConfig(
        isolation=isolation,
        max_concurrent_requests=1,
        timeout=0.05 if path == "timeout" else WAIT,
        force_open=path == "short-circuit",
    )
    breaker.configure_command(NAME, config)
    raised = kind("from the fallback")
    fallback_errors: list[Exception] = []

    def fallback(error: Exception) -> str:
        fallback_errors.append(error)
        raise raised

    def run() -> str:
        if path == "failure":
            raise Boom("down")
        if isolation == "caller":
            clock.advance(1.0)  # outlasts the 0.05 s timeout on the circuit's clock
        else:
            gate.wait(WAIT)
        return VALUE

    holder = holders(lambda name, held_run: sync_call(driver, name, held_run, None))  # holds the single ticket
    if path == "rejected":
        holder.start()
    with pytest.raises(kind) as info:
        sync_call(driver, NAME, run, fallback)
    assert info.value is raised
    assert not isinstance(info.value, FallbackError)
    assert [type(e) for e in fallback_errors] == [RAISED_FOR[path]]
    assert events() == {path: 1, "fallback-failure": 1}
    gate.set()
    holder.release()
    wait_until(lambda: (stats().active, stats().abandoned) == (0, 0), "every ticket is back")
    breaker.configure_command(NAME, CommandConfig(isolation=isolation, max_concurrent_requests=1, timeout=WAIT))
    assert sync_call(driver, NAME, ok, None) == VALUE  # the single ticket is free


@pytest.mark.parametrize("kind", [KeyboardInterrupt, SystemExit])
@pytest.mark.parametrize("path", ["failure", "timeout", "short-circuit", "rejected"])
@pytest.mark.parametrize("driver", ["async", "async-fallback-coroutine"])
def test_base_exception_from_async_fallback_propagates_unwrapped(
    driver: AsyncDriver, path: Path, kind: type[BaseException], holders: MakeHolder
) -> None:
    """do_async: a sync or async fallback raising KeyboardInterrupt/SystemExit propagates as is; ticket back."""
    config = CommandConfig(
        max_concurrent_requests=1, timeout=0.05 if path == "timeout" else WAIT, force_open=path == "short-circuit"
    )
    breaker.configure_command(NAME, config)
    raised = kind("from the fallback")
    fallback_errors: list[Exception] = []

    def sync_fallback(error: Exception) -> str:
        fallback_errors.append(error)
        raise raised

    async def async_fallback(error: Exception) -> str:
        await asyncio.sleep(0)
        return sync_fallback(error)

    fallback: Callable[[Exception], str | Awaitable[str]] = (
        async_fallback if driver == "async-fallback-coroutine" else sync_fallback
    )

    async def run() -> str:
        if path == "failure":
            raise Boom("down")
        await asyncio.sleep(WAIT)
        return VALUE

    holder = holders(breaker.do)  # sync and async callers of a name share its tickets
    if path == "rejected":
        holder.start()

    async def scenario() -> BaseException:
        with pytest.raises(kind) as info:
            await breaker.do_async(NAME, run, fallback)
        return info.value

    got = asyncio.run(scenario())
    assert got is raised
    assert [type(e) for e in fallback_errors] == [RAISED_FOR[path]]
    assert events() == {path: 1, "fallback-failure": 1}
    holder.release()
    assert (stats().active, stats().abandoned) == (0, 0)
    breaker.configure_command(NAME, CommandConfig(max_concurrent_requests=1, timeout=WAIT))

    async def again() -> str:
        return await breaker.do_async(NAME, lambda: asyncio.sleep(0, result=VALUE))

    assert asyncio.run(again()) == VALUE  # the single ticket is free


@pytest.mark.parametrize("timed_out", [False, True], ids=["in-time", "abandoned"])
@pytest.mark.parametrize("driver", ["do-thread", "go-thread"])
def test_run_returning_after_its_circuit_was_flushed(
    driver: SyncDriver,
    timed_out: bool,
    fresh_registry: Registry,
    background_errors: list[str],
    holders: MakeHolder,
) -> None:
    """A run blocked across flush() returns later: no error anywhere; the old circuit counts it, not the new one."""
    breaker.configure_command(NAME, CommandConfig(timeout=0.05 if timed_out else WAIT, max_concurrent_requests=1))
    before = library_threads()
    holder = holders(lambda name, run: sync_call(driver, name, run, None))
    holder.start()
    old = breaker.get_circuit(NAME)[0]
    if timed_out:
        wait_until(lambda: len(holder.outcomes) == 1, "the held call timed out")
        assert isinstance(holder.outcomes[0], CommandTimeoutError)
        assert (old.statistics().active, old.statistics().abandoned) == (1, 1)
    breaker.flush()
    assert fresh_registry.circuits == {}
    assert breaker.get_circuit(NAME)[0] is not old  # dropped: the name resolves to a new circuit
    # The new circuit has tickets of its own: the old run's ticket belongs to the old circuit.
    assert breaker.do(NAME, ok) == VALUE
    new = breaker.get_circuit(NAME)[0]
    assert new is not old
    outcomes = holder.release()
    wait_until(lambda: (old.statistics().active, old.statistics().abandoned) == (0, 0), "the old run returned")
    old_counts = {e: n for e, n in old.statistics().counts.items() if n}
    if timed_out:
        assert outcomes[0].__class__ is CommandTimeoutError
        assert old_counts == {"timeout": 1}  # the late result is discarded
    else:
        assert outcomes == [VALUE]
        assert old_counts == {"success": 1}
    assert events() == {"success": 1}
    assert (stats().active, stats().abandoned) == (0, 0)
    assert fresh_registry.circuits == {NAME: new}
    # The worker that ran it was retired by the flush(): it ends with its run, no second flush() needed.
    assert [t.name for t in holder.run_threads if not t.name.startswith("breaker-worker-")] == []
    assert_threads_end(set(holder.run_threads), "the worker of the run that outlived its circuit")
    breaker.flush()
    end_of_library_threads(fresh_registry, before, "library threads after flush()")
    assert background_errors == []


def nested(call: Callable[[Callable[[], str]], str], level: int = 1) -> str:
    """Level ``level`` of a run that calls its own command again, until a call is rejected."""
    try:
        return f"{level}>" + call(lambda: nested(call, level + 1))
    except MaxConcurrencyError:
        return f"{level}>rejected"


@pytest.mark.parametrize("tickets", [2, 3])
@pytest.mark.parametrize("driver", ["do-thread", "do-caller", "go-thread"])
def test_run_reentering_its_own_command_nests_as_deep_as_its_tickets(driver: SyncDriver, tickets: int) -> None:
    """A run calling its own command with N tickets: N levels run, the next is rejected, nothing deadlocks."""
    isolation: Literal["thread", "caller"] = "caller" if driver == "do-caller" else "thread"
    breaker.configure_command(NAME, CommandConfig(isolation=isolation, max_concurrent_requests=tickets, timeout=WAIT))
    result: list[object] = []

    def top() -> None:
        try:
            result.append(nested(lambda run: sync_call(driver, NAME, run, None)))
        except BaseException as error:  # recorded for the test to check
            result.append(error)

    thread = threading.Thread(target=top, name="reentering-caller", daemon=True)
    thread.start()
    thread.join(WAIT * 2)
    assert not thread.is_alive(), "the re-entering call deadlocked"
    # The first `nested` runs outside any call; each level below it holds one ticket.
    assert result == [">".join(str(level) for level in range(1, tickets + 2)) + ">rejected"]
    assert events() == {"success": tickets, "rejected": 1}
    assert stats().active == 0


@pytest.mark.parametrize("tickets", [1, 2, 3])
def test_async_run_reentering_its_own_command_nests_as_deep_as_its_tickets(tickets: int) -> None:
    """do_async whose run awaits its own command with N tickets: N levels run, the next is rejected, no deadlock."""
    breaker.configure_command(NAME, CommandConfig(max_concurrent_requests=tickets, timeout=WAIT))

    async def level(n: int) -> str:
        try:
            return f"{n}>" + await breaker.do_async(NAME, lambda: level(n + 1))
        except MaxConcurrencyError:
            return f"{n}>rejected"

    async def scenario() -> str:
        return await asyncio.wait_for(level(1), WAIT)  # a deadlock fails here

    assert asyncio.run(scenario()) == ">".join(str(n) for n in range(1, tickets + 2)) + ">rejected"
    assert events() == {"success": tickets, "rejected": 1}
    assert stats().active == 0
