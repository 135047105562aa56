"""The async driver: do_async and async @command, sharing circuits with sync callers."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import math
import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import blockbuster
import pytest

import breaker
from breaker import _registry
from breaker._core.circuit import engine_of
from breaker.testing import FakeClock

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a scenario on a fresh event loop in debug mode (slow callbacks and unawaited coroutines get reported)."""
    return asyncio.run(coro, debug=True)


def counts(name: str) -> dict[str, int]:
    return dict(breaker.get_circuit(name)[0].statistics().counts)


async def value(x: T) -> T:
    return x


async def fail(error: BaseException) -> Any:
    raise error


# -- outcomes: one primary event per call, plus the fallback's ------------------------------------------------


@pytest.mark.parametrize("with_fallback", [False, True], ids=["no-fallback", "fallback"])
def test_success_counts_success_and_returns_the_value(with_fallback: bool) -> None:
    """A successful async run returns its value and counts exactly one success, before do_async returns."""

    async def scenario() -> None:
        fallback = (lambda error: "fb") if with_fallback else None
        assert await breaker.do_async("a", lambda: value(42), fallback) == 42
        assert counts("a")["success"] == 1
        assert sum(counts("a").values()) == 1

    run(scenario())


def test_failure_without_fallback_raises_the_runs_own_exception() -> None:
    """Without a fallback the caller gets the run's exception object itself, counted as one failure."""
    error = ConnectionError("down")

    async def scenario() -> None:
        with pytest.raises(ConnectionError) as caught:
            await breaker.do_async("a", lambda: fail(error))
        assert caught.value is error
        assert counts("a")["failure"] == 1

    run(scenario())


@pytest.mark.parametrize("kind", ["sync", "async"], ids=["sync-fallback", "async-fallback"])
def test_fallback_gets_the_error_and_its_value_is_returned(kind: str) -> None:
    """The fallback, sync or async, is called once with the run's error and its value becomes the call's."""
    seen: list[BaseException] = []

    def sync_fallback(error: Exception) -> str:
        seen.append(error)
        return "fb"

    async def async_fallback(error: Exception) -> str:
        seen.append(error)
        return "fb"

    fallback = sync_fallback if kind == "sync" else async_fallback
    error = ValueError("boom")

    async def scenario() -> None:
        assert await breaker.do_async("a", lambda: fail(error), fallback) == "fb"

    run(scenario())
    assert seen == [error]
    assert counts("a")["failure"] == 1
    assert counts("a")["fallback-success"] == 1


def test_failing_fallback_raises_fallback_error_chained() -> None:
    """A fallback that raises gives FallbackError from the fallback's exception, keeping the run's error."""
    run_error, fallback_error = ValueError("run"), KeyError("fallback")

    async def broken(error: Exception) -> str:
        raise fallback_error

    async def scenario() -> None:
        with pytest.raises(breaker.FallbackError) as caught:
            await breaker.do_async("a", lambda: fail(run_error), broken)
        assert caught.value.run_error is run_error
        assert caught.value.fallback_error is fallback_error
        assert caught.value.__cause__ is fallback_error

    run(scenario())
    assert counts("a")["fallback-failure"] == 1


def test_bad_request_is_reraised_without_fallback_or_failure() -> None:
    """An ignored exception is re-raised unchanged, runs no fallback and counts as bad-request only."""
    breaker.configure_command("a", breaker.CommandConfig(ignored_exceptions=(KeyError,)))
    fallback_calls: list[Exception] = []

    async def scenario() -> None:
        with pytest.raises(KeyError):
            await breaker.do_async("a", lambda: fail(KeyError("x")), fallback_calls.append)

    run(scenario())
    stats = breaker.get_circuit("a")[0].statistics()
    assert fallback_calls == []
    assert stats.counts["bad-request"] == 1
    assert (stats.requests, stats.errors) == (0, 0)


def test_base_exception_counts_failure_runs_no_fallback_and_propagates() -> None:
    """A BaseException from the run counts as failure, runs no fallback, propagates, and returns the ticket."""
    fallback_calls: list[Exception] = []

    async def scenario() -> None:
        with pytest.raises(KeyboardInterrupt):
            await breaker.do_async("a", lambda: fail(KeyboardInterrupt()), fallback_calls.append)

    run(scenario())
    stats = breaker.get_circuit("a")[0].statistics()
    assert fallback_calls == []
    assert stats.counts["failure"] == 1
    assert stats.active == 0


def test_open_circuit_short_circuits_without_calling_run() -> None:
    """A forced-open circuit short-circuits: CircuitOpenError (or the fallback) and the run is never called."""
    breaker.configure_command("a", breaker.CommandConfig(force_open=True))
    calls: list[int] = []

    async def tracked() -> int:
        calls.append(1)
        return 1

    async def scenario() -> None:
        with pytest.raises(breaker.CircuitOpenError) as caught:
            await breaker.do_async("a", tracked)
        assert caught.value.name == "a"
        assert await breaker.do_async("a", tracked, lambda e: type(e).__name__) == "CircuitOpenError"

    run(scenario())
    assert calls == []
    assert counts("a")["short-circuit"] == 2


def test_no_ticket_rejects_at_once() -> None:
    """With every ticket held by an async run, the next call is rejected without running."""
    breaker.configure_command("a", breaker.CommandConfig(max_concurrent_requests=1, timeout=math.inf))

    async def scenario() -> None:
        release = asyncio.Event()
        started = asyncio.Event()

        async def held() -> str:
            started.set()
            await release.wait()
            return "held"

        first = asyncio.ensure_future(breaker.do_async("a", held))
        await started.wait()
        with pytest.raises(breaker.MaxConcurrencyError):
            await breaker.do_async("a", lambda: value(2))
        release.set()
        assert await first == "held"

    run(scenario())
    assert counts("a")["rejected"] == 1
    assert breaker.get_circuit("a")[0].statistics().active == 0


def test_ticket_is_back_before_do_async_returns() -> None:
    """A caller making one call at a time never trips over its own previous call, even with one ticket."""
    breaker.configure_command("a", breaker.CommandConfig(max_concurrent_requests=1))

    async def scenario() -> None:
        for i in range(200):
            assert await breaker.do_async("a", lambda i=i: value(i)) == i  # type: ignore[misc]

    run(scenario())
    assert counts("a")["success"] == 200


# -- timeouts and cancellation ------------------------------------------------------------------------------------


def test_timeout_cancels_the_run_for_real_and_returns_its_ticket() -> None:
    """At the timeout the run sees CancelledError inside itself, and its ticket is back when the caller resumes."""
    breaker.configure_command("a", breaker.CommandConfig(timeout=0.05))
    observed: list[str] = []

    async def hang() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            observed.append("cancelled inside the run")
            raise
        finally:
            observed.append("unwound")

    async def scenario() -> None:
        with pytest.raises(breaker.CommandTimeoutError) as caught:
            await breaker.do_async("a", hang)
        assert isinstance(caught.value, TimeoutError)
        assert observed == ["cancelled inside the run", "unwound"]
        stats = breaker.get_circuit("a")[0].statistics()
        assert (stats.active, stats.abandoned) == (0, 0)
        assert stats.counts["timeout"] == 1

    run(scenario())


def test_timeout_runs_the_fallback_with_command_timeout_error() -> None:
    """A timed-out async call answers with the fallback, given a CommandTimeoutError."""
    breaker.configure_command("a", breaker.CommandConfig(timeout=0.02))

    async def scenario() -> None:
        answer = await breaker.do_async("a", lambda: asyncio.sleep(30), lambda e: type(e).__name__)
        assert answer == "CommandTimeoutError"

    run(scenario())
    assert counts("a")["fallback-success"] == 1


def test_run_raising_its_own_timeout_error_is_a_failure_not_a_timeout() -> None:
    """A TimeoutError raised by the run itself, before the command's deadline, counts as failure."""

    async def scenario() -> None:
        with pytest.raises(TimeoutError):
            await breaker.do_async("a", lambda: fail(TimeoutError("socket")))

    run(scenario())
    assert counts("a")["failure"] == 1
    assert counts("a")["timeout"] == 0


def test_caller_cancellation_propagates_and_counts_cancelled() -> None:
    """A cancelled caller gets CancelledError: no fallback, the run is cancelled, the ticket returns, and a
    cancelled event is counted that is neither a request nor an error."""
    breaker.configure_command("a", breaker.CommandConfig(timeout=math.inf))
    fallback_calls: list[Exception] = []
    inside: list[str] = []

    async def hang() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            inside.append("cancelled")
            raise

    async def scenario() -> None:
        task = asyncio.ensure_future(breaker.do_async("a", hang, fallback_calls.append))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(scenario())
    stats = breaker.get_circuit("a")[0].statistics()
    assert inside == ["cancelled"]
    assert fallback_calls == []
    assert stats.counts["cancelled"] == 1
    assert (stats.requests, stats.errors, stats.active) == (0, 0, 0)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.timeout and TaskGroup are Python 3.11+")
def test_enclosing_asyncio_timeout_wins_and_is_not_swallowed() -> None:
    """An asyncio.timeout around do_async fires as the caller's TimeoutError; breaker counts a cancellation."""
    asyncio_timeout: Any = getattr(asyncio, "timeout", None)  # Python 3.11+; the test is skipped before
    breaker.configure_command("a", breaker.CommandConfig(timeout=10.0))

    async def scenario() -> None:
        with pytest.raises(TimeoutError) as caught:
            async with asyncio_timeout(0.02):
                await breaker.do_async("a", lambda: asyncio.sleep(30), lambda e: "fallback must not run")
        assert not isinstance(caught.value, breaker.CommandTimeoutError)

    run(scenario())
    assert counts("a")["cancelled"] == 1
    assert counts("a")["fallback-success"] == 0


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.TaskGroup is Python 3.11+")
def test_works_in_a_task_group_and_a_failing_sibling_cancels_the_others() -> None:
    """In a TaskGroup, commands run concurrently; a sibling's failure cancels them, counted as cancelled."""
    breaker.configure_command("slow", breaker.CommandConfig(timeout=10.0))

    task_group: Any = getattr(asyncio, "TaskGroup", None)  # Python 3.11+; the test is skipped before

    async def scenario() -> list[int]:
        async with task_group() as group:
            tasks = [group.create_task(breaker.do_async("fast", lambda i=i: value(i))) for i in range(5)]  # type: ignore[misc]
        results = [task.result() for task in tasks]

        async def sibling_fails() -> None:
            async with task_group() as group:
                group.create_task(breaker.do_async("slow", lambda: asyncio.sleep(30)))
                group.create_task(fail(RuntimeError("sibling")))

        with pytest.raises(Exception, match="unhandled errors in a TaskGroup"):  # an ExceptionGroup (3.11+ name)
            await sibling_fails()
        return results

    assert run(scenario()) == [0, 1, 2, 3, 4]
    assert counts("slow")["cancelled"] == 1
    assert breaker.get_circuit("slow")[0].statistics().active == 0


# -- bad input ----------------------------------------------------------------------------------------------------


def test_run_returning_a_non_awaitable_is_a_type_error_and_counts_nothing() -> None:
    """A run that returns something not awaitable raises TypeError naming the command; nothing is counted."""

    async def scenario() -> None:
        with pytest.raises(TypeError, match="'a'"):
            await breaker.do_async("a", lambda: 5)  # type: ignore[arg-type, return-value]

    run(scenario())
    stats = breaker.get_circuit("a")[0].statistics()
    assert sum(stats.counts.values()) == 0
    assert stats.active == 0


@pytest.mark.parametrize(
    ("run_arg", "fallback"),
    [(None, None), ("not callable", None), (lambda: value(1), "not callable")],
    ids=["run-none", "run-str", "fallback-str"],
)
def test_non_callable_arguments_raise_before_anything_is_counted(run_arg: Any, fallback: Any) -> None:
    """do_async checks run and fallback are callable before counting anything."""

    async def scenario() -> None:
        with pytest.raises(TypeError, match="'a'"):
            await breaker.do_async("a", run_arg, fallback)

    run(scenario())
    assert "a" not in _registry.current.circuits or sum(counts("a").values()) == 0


# -- the circuit: trip, probe, close; one circuit for sync and async ---------------------------------------------


def test_trip_probe_and_close_through_the_async_path(clock: FakeClock) -> None:
    """Errors trip the circuit, calls short-circuit, one probe after the sleep window closes it again."""
    breaker.configure_command("a", breaker.CommandConfig(request_volume_threshold=3, sleep_window=5.0))

    async def scenario() -> None:
        for _ in range(3):
            await breaker.do_async("a", lambda: fail(ValueError()), lambda e: None)
        circuit = breaker.get_circuit("a")[0]
        assert circuit.state is breaker.State.OPEN
        with pytest.raises(breaker.CircuitOpenError):
            await breaker.do_async("a", lambda: value(1))
        clock.advance(5.0)
        assert await breaker.do_async("a", lambda: value("probe")) == "probe"
        assert breaker.get_circuit("a")[0].state is breaker.State.CLOSED

    run(scenario())


def test_sync_and_async_callers_share_tickets() -> None:
    """A sync call holding the only ticket makes an async call get rejected, and the other way round."""
    breaker.configure_command("shared", breaker.CommandConfig(max_concurrent_requests=1, timeout=5.0))
    release, started = threading.Event(), threading.Event()

    def held() -> str:
        started.set()
        release.wait(5)
        return "sync"

    sync_result: list[str] = []
    thread = threading.Thread(target=lambda: sync_result.append(breaker.do("shared", held)))
    thread.start()
    assert started.wait(5)

    async def scenario() -> None:
        with pytest.raises(breaker.MaxConcurrencyError):
            await breaker.do_async("shared", lambda: value(1))

    run(scenario())
    release.set()
    thread.join(5)
    assert sync_result == ["sync"]

    async def hold_async() -> None:
        gate = asyncio.Event()
        entered = asyncio.Event()

        async def async_held() -> str:
            entered.set()
            await gate.wait()
            return "async"

        task = asyncio.ensure_future(breaker.do_async("shared", async_held))
        await entered.wait()
        rejected = await asyncio.to_thread(lambda: breaker.do("shared", lambda: "sync", lambda e: type(e).__name__))
        assert rejected == "MaxConcurrencyError"
        gate.set()
        assert await task == "async"

    run(hold_async())
    assert counts("shared")["rejected"] == 2
    assert counts("shared")["success"] == 2


def test_sync_and_async_callers_share_one_window_and_state() -> None:
    """Failures from sync and async callers add up in one window and trip one circuit for both."""
    breaker.configure_command("shared", breaker.CommandConfig(request_volume_threshold=4, isolation="caller"))
    for _ in range(2):
        breaker.do("shared", lambda: 1 / 0, lambda e: None)

    async def scenario() -> None:
        for _ in range(2):
            await breaker.do_async("shared", lambda: fail(ValueError()), lambda e: None)

    run(scenario())
    assert breaker.get_circuit("shared")[0].state is breaker.State.OPEN
    with pytest.raises(breaker.CircuitOpenError):
        breaker.do("shared", lambda: 1)


def test_half_open_stampede_of_tasks_and_threads_reaches_the_dependency_once(clock: FakeClock) -> None:
    """After the sleep window, 50 tasks and 8 threads arriving together send exactly one probe."""
    breaker.configure_command("dep", breaker.CommandConfig(request_volume_threshold=1, sleep_window=5.0, timeout=10.0))
    breaker.do("dep", lambda: 1 / 0, lambda e: None)
    assert breaker.get_circuit("dep")[0].state is breaker.State.OPEN
    clock.advance(5.0)
    reached = 0
    reached_lock = threading.Lock()
    release = threading.Event()
    barrier = threading.Barrier(9)

    def dependency_sync() -> None:
        nonlocal reached
        with reached_lock:
            reached += 1
        release.wait(5)
        raise ConnectionError

    async def dependency_async() -> None:
        nonlocal reached
        with reached_lock:
            reached += 1
        await asyncio.to_thread(release.wait, 5)
        raise ConnectionError

    def thread_caller() -> None:
        barrier.wait(5)
        breaker.do("dep", dependency_sync, lambda e: None)

    threads = [threading.Thread(target=thread_caller) for _ in range(8)]
    for thread in threads:
        thread.start()

    async def scenario() -> None:
        calls = [breaker.do_async("dep", dependency_async, lambda e: None) for _ in range(50)]
        await asyncio.to_thread(barrier.wait, 5)
        gathered = asyncio.gather(*calls)
        await asyncio.sleep(0.2)
        release.set()
        await gathered

    run(scenario())
    for thread in threads:
        thread.join(5)
    assert reached == 1
    stats = breaker.get_circuit("dep")[0].statistics()
    assert stats.counts["short-circuit"] == 57
    assert stats.active == 0


def test_nested_async_commands() -> None:
    """An async run can call other commands, async and sync, without deadlock."""

    async def inner() -> int:
        return await breaker.do_async("c", lambda: value(3)) + 1

    async def scenario() -> int:
        return await breaker.do_async("a", lambda: breaker.do_async("b", inner))

    assert run(scenario()) == 4


def test_state_changes_are_logged(caplog: pytest.LogCaptureFixture, clock: FakeClock) -> None:
    """Opening logs a warning, the probe and closing log info, also through the async path."""
    breaker.configure_command("a", breaker.CommandConfig(request_volume_threshold=1, sleep_window=1.0))
    caplog.set_level(logging.INFO, logger="breaker")

    async def scenario() -> None:
        await breaker.do_async("a", lambda: fail(ValueError()), lambda e: None)
        clock.advance(1.0)
        await breaker.do_async("a", lambda: value(1))

    run(scenario())
    levels = [(r.levelno, r.getMessage().split(" ")[2]) for r in caplog.records]
    assert levels == [(logging.WARNING, "opened"), (logging.INFO, "half-open:"), (logging.INFO, "is")]


# -- the decorator ------------------------------------------------------------------------------------------------


class AsyncCallable:
    async def __call__(self, x: int) -> int:
        return x * 2


async def double(x: int, *, plus: int = 0) -> int:
    """Doubles x."""
    return x * 2 + plus


@pytest.mark.parametrize(
    "target",
    [double, functools.partial(double, plus=1), AsyncCallable()],
    ids=["async-def", "partial", "callable-object"],
)
def test_decorator_on_async_callables_returns_an_async_wrapper(target: Callable[..., Awaitable[int]]) -> None:
    """@command on an async def, a partial of one, or an object with async __call__ gives a coroutine function."""
    wrapped = breaker.command("d")(target)
    assert inspect.iscoroutinefunction(wrapped)
    assert run(wrapped(5)) in (10, 11)
    assert counts("d")["success"] == 1


def test_async_decorator_keeps_metadata_and_passes_arguments_to_the_fallback() -> None:
    """The async wrapper keeps name, doc and signature; the fallback gets (error, *args, **kwargs)."""
    seen: list[tuple[Any, ...]] = []

    async def fallback(error: Exception, x: int, *, plus: int = 0) -> int:
        seen.append((type(error), x, plus))
        return -1

    @breaker.command("d", fallback=fallback)
    async def flaky(x: int, *, plus: int = 0) -> int:
        """Fails."""
        raise ConnectionError

    assert flaky.__name__ == "flaky"
    assert flaky.__doc__ == "Fails."
    assert list(inspect.signature(flaky).parameters) == ["x", "plus"]
    assert run(flaky(3, plus=4)) == -1
    assert seen == [(ConnectionError, 3, 4)]


def test_sync_function_gets_a_sync_wrapper() -> None:
    """@command on a plain function stays sync (the choice is made at decoration time)."""
    wrapped = breaker.command("d")(lambda: 1)
    assert not inspect.iscoroutinefunction(wrapped)
    assert wrapped() == 1


# -- nothing blocks the event loop -------------------------------------------------------------------------------


def test_async_path_never_blocks_the_loop_even_with_sync_threads_on_the_same_circuit() -> None:
    """With blockbuster active and threads hammering the same circuit, no async call blocks the loop."""
    breaker.configure_command("hot", breaker.CommandConfig(force_closed=True, isolation="caller"))
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            for _ in range(50):
                breaker.do("hot", lambda: 1)
                breaker.do("hot", lambda: 1 / 0, lambda e: None)
            stop.wait(0.001)  # let the loop thread have the GIL now and then: debug mode is slow enough

    threads = [threading.Thread(target=hammer) for _ in range(2)]
    for thread in threads:
        thread.start()

    async def scenario() -> int:
        done = 0
        for i in range(600):
            if i % 3:
                await breaker.do_async("hot", lambda: value(1))
            else:
                await breaker.do_async("hot", lambda: fail(ValueError()), lambda e: None)
            done += 1
        return done

    try:
        with blockbuster.blockbuster_ctx(scanned_modules=["breaker"]):
            assert run(scenario()) == 600
    finally:
        stop.set()
        for thread in threads:
            thread.join(5)
    assert breaker.get_circuit("hot")[0].statistics().active == 0


def test_recording_while_a_thread_holds_the_lock_yields_to_the_loop() -> None:
    """While a thread holds the circuit's lock, an async call that must record waits by yielding: other tasks
    run meanwhile, and blockbuster (which raises on a blocking acquire of a held lock) stays silent."""
    circuit = breaker.get_circuit("held")[0]
    holding, release = threading.Event(), threading.Event()

    def hold_the_lock() -> None:
        with engine_of(circuit).lock:
            holding.set()
            release.wait(5)

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    assert holding.wait(5)

    async def scenario() -> int:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                if ticks == 20:
                    release.set()  # the loop kept running while the call waited: let the holder go
                await asyncio.sleep(0.001)

        tick_task = asyncio.ensure_future(ticker())
        answer = await breaker.do_async("held", lambda: fail(ValueError()), lambda e: "fallback")
        tick_task.cancel()
        assert answer == "fallback"
        return ticks

    try:
        with blockbuster.blockbuster_ctx(scanned_modules=["breaker"]):
            assert run(scenario()) >= 20
    finally:
        release.set()
        holder.join(5)
    assert circuit.statistics().counts["failure"] == 1


def test_configure_command_applies_at_once_to_async_callers() -> None:
    """Raising max_concurrent_requests while an async run holds the only ticket admits more calls at once."""
    breaker.configure_command("live", breaker.CommandConfig(max_concurrent_requests=1, timeout=math.inf))

    async def scenario() -> list[str]:
        gate, entered = asyncio.Event(), asyncio.Event()

        async def held() -> str:
            entered.set()
            await gate.wait()
            return "held"

        first = asyncio.ensure_future(breaker.do_async("live", held))
        await entered.wait()
        rejected = await breaker.do_async("live", lambda: value("x"), lambda e: type(e).__name__)
        breaker.configure_command("live", breaker.CommandConfig(max_concurrent_requests=2, timeout=math.inf))
        admitted = await breaker.do_async("live", lambda: value("admitted"))
        gate.set()
        return [rejected, admitted, await first]

    assert run(scenario()) == ["MaxConcurrencyError", "admitted", "held"]
    assert counts("live")["rejected"] == 1


def test_async_decorated_function_follows_flush_to_the_new_circuit() -> None:
    """flush() drops the circuit an async wrapper cached; its next call counts on the new circuit."""

    @breaker.command("flushed")
    async def ping() -> str:
        return "pong"

    assert run(ping()) == "pong"
    old = breaker.get_circuit("flushed")[0]
    breaker.flush()
    assert run(ping()) == "pong"
    new = breaker.get_circuit("flushed")[0]
    assert new is not old
    assert (old.statistics().counts["success"], new.statistics().counts["success"]) == (1, 1)
