"""What `statistics()` says beyond the events of issue 14's engine side: ``slow`` in the window and since creation
(sync and async), `CircuitStatistics.isolation` (how the calls so far ran), and `CallResult.slow` for collectors.

Durations follow a `FakeClock` (caller isolation, and async runs, time their runs on the circuit's clock), so a run
is slow or not by construction, never by how long the machine took.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import breaker
from breaker import CallResult, CommandConfig, Event
from breaker._run import entries
from breaker.testing import FakeClock

NAME = "dependency"
SLOW = 0.5  # slow_call_duration of the tests that set one


class Boom(Exception):
    """The dependency's own failure."""


def taking(clock: FakeClock, seconds: float, error: Exception | None = None) -> Callable[[], str]:
    """A run that takes ``seconds`` on ``clock``, then returns "ok" or raises ``error``."""

    def run() -> str:
        clock.advance(seconds)
        if error is not None:
            raise error
        return "ok"

    return run


def taking_async(clock: FakeClock, seconds: float, error: Exception | None = None) -> Callable[[], Awaitable[str]]:
    """`taking`, as a coroutine function."""
    run = taking(clock, seconds, error)

    async def arun() -> str:
        return run()

    return arun


def stats(name: str = NAME) -> breaker.CircuitStatistics:
    return breaker.get_circuit(name)[0].statistics()


def fallback(error: Exception) -> str:
    return "fallback"


# -- slow in the counts -----------------------------------------------------------------------------------------------


def test_sync_slow_calls_are_counted_beside_their_success_or_failure(clock: FakeClock) -> None:
    """A success and a failure that took at least slow_call_duration count ``slow`` in the window and since creation;
    a faster one and a bad request do not; requests are unchanged by it."""
    breaker.configure_command(
        NAME, CommandConfig(isolation="caller", slow_call_duration=SLOW, ignored_exceptions=(ValueError,))
    )
    assert breaker.do(NAME, taking(clock, SLOW)) == "ok"  # exactly the duration: slow
    assert breaker.do(NAME, taking(clock, SLOW * 2, Boom()), fallback) == "fallback"
    assert breaker.do(NAME, taking(clock, SLOW / 2)) == "ok"
    with pytest.raises(ValueError, match="bad"):
        breaker.do(NAME, taking(clock, SLOW * 2, ValueError("bad")))
    snapshot = stats()
    assert (snapshot.counts["slow"], snapshot.cumulative["slow"]) == (2, 2)
    assert (snapshot.counts["success"], snapshot.counts["failure"], snapshot.counts["bad-request"]) == (2, 1, 1)
    assert snapshot.requests == 3


def test_async_slow_calls_are_counted_beside_their_success_or_failure(clock: FakeClock) -> None:
    """The same through `breaker.do_async` and a decorated coroutine function."""
    breaker.configure_command(NAME, CommandConfig(slow_call_duration=SLOW, timeout=10))

    @breaker.command(NAME)
    async def decorated(seconds: float) -> str:
        return await taking_async(clock, seconds)()

    async def scenario() -> None:
        assert await breaker.do_async(NAME, taking_async(clock, SLOW)) == "ok"
        assert await breaker.do_async(NAME, taking_async(clock, SLOW, Boom()), fallback) == "fallback"
        assert await breaker.do_async(NAME, taking_async(clock, SLOW / 2)) == "ok"
        assert await decorated(SLOW * 3) == "ok"

    asyncio.run(scenario())
    snapshot = stats()
    assert (snapshot.counts["slow"], snapshot.cumulative["slow"]) == (3, 3)
    assert (snapshot.counts["success"], snapshot.counts["failure"]) == (3, 1)


def test_without_a_slow_call_duration_no_call_is_slow(clock: FakeClock) -> None:
    """The default (math.inf): a run of an hour is not slow."""
    breaker.configure_command(NAME, CommandConfig(isolation="caller", timeout=7200))
    assert breaker.do(NAME, taking(clock, 3600)) == "ok"
    assert (stats().counts["slow"], stats().cumulative["slow"]) == (0, 0)


# -- CallResult.slow --------------------------------------------------------------------------------------------------


class Recorder:
    """A collector keeping every CallResult."""

    def __init__(self) -> None:
        self.results: list[CallResult] = []

    def update(self, result: CallResult) -> None:
        self.results.append(result)

    def reset(self) -> None:
        self.results.clear()


def test_call_results_say_which_calls_were_slow(clock: FakeClock) -> None:
    """Collectors see ``slow`` True for the slow successes and failures (sync and async), False for the others,
    short-circuits included."""
    recorder = Recorder()
    breaker.register_collector(lambda name: recorder)
    breaker.configure_command(NAME, CommandConfig(isolation="caller", slow_call_duration=SLOW))
    breaker.do(NAME, taking(clock, SLOW))
    breaker.do(NAME, taking(clock, SLOW, Boom()), fallback)
    breaker.do(NAME, taking(clock, SLOW / 2))

    async def scenario() -> None:
        await breaker.do_async(NAME, taking_async(clock, SLOW * 2))
        await breaker.do_async(NAME, taking_async(clock, 0.0))

    asyncio.run(scenario())
    breaker.configure_command(NAME, CommandConfig(force_open=True))
    breaker.do(NAME, taking(clock, SLOW), fallback)
    seen = [(result.event, result.slow) for result in recorder.results]
    assert seen == [
        (Event.SUCCESS, True),
        (Event.FAILURE, True),
        (Event.SUCCESS, False),
        (Event.SUCCESS, True),
        (Event.SUCCESS, False),
        (Event.SHORT_CIRCUIT, False),
    ]
    assert stats().cumulative["slow"] == sum(result.slow for result in recorder.results) == 3


# -- isolation --------------------------------------------------------------------------------------------------------


def run_sync(call: str) -> None:
    """Make one sync call to NAME, the way ``call`` names."""
    if call == "do":
        assert breaker.do(NAME, lambda: "ok") == "ok"
    elif call == "go":
        assert breaker.go(NAME, lambda: "ok").result(timeout=5.0) == "ok"
    elif call == "decorated":
        assert breaker.command(NAME)(lambda: "ok")() == "ok"
    elif call == "source-do":
        assert entries.do(NAME, lambda: "ok") == "ok"
    else:
        assert call == "source-decorated"
        assert entries.sync_wrapper(NAME, lambda: "ok", None)() == "ok"


async def ok() -> str:
    return "ok"


def run_async(call: str) -> None:
    """Make one async call to NAME, the way ``call`` names."""

    async def scenario() -> Any:
        if call == "do_async":
            return await breaker.do_async(NAME, ok)
        if call == "decorated":
            return await breaker.command(NAME)(ok)()
        if call == "source-do_async":
            return await entries.do_async(NAME, ok)
        assert call == "source-decorated"
        return await entries.async_wrapper(NAME, ok, None)()

    assert asyncio.run(scenario()) == "ok"


SYNC_CALLS = ["do", "go", "decorated", "source-do", "source-decorated"]
ASYNC_CALLS = ["do_async", "decorated", "source-do_async", "source-decorated"]


@pytest.mark.parametrize("isolation", ["thread", "caller"])
def test_a_command_not_called_yet_reports_its_isolation_setting(isolation: str) -> None:
    """Before any call, ``isolation`` is the setting."""
    breaker.configure_command(NAME, CommandConfig(isolation=isolation))  # type: ignore[arg-type]
    assert stats().isolation == isolation


@pytest.mark.parametrize("isolation", ["thread", "caller"])
@pytest.mark.parametrize("call", SYNC_CALLS)
def test_a_command_with_sync_callers_only_reports_its_isolation_setting(isolation: str, call: str) -> None:
    """Sync calls, of every kind, run as the setting says: ``isolation`` is the setting."""
    breaker.configure_command(NAME, CommandConfig(isolation=isolation))  # type: ignore[arg-type]
    run_sync(call)
    run_sync(call)
    assert stats().isolation == isolation


@pytest.mark.parametrize("isolation", ["thread", "caller"])
@pytest.mark.parametrize("call", ASYNC_CALLS)
def test_a_command_with_async_callers_only_reports_asyncio(isolation: str, call: str) -> None:
    """Async calls are awaited on the event loop whatever the setting: ``isolation`` is "asyncio"."""
    breaker.configure_command(NAME, CommandConfig(isolation=isolation))  # type: ignore[arg-type]
    run_async(call)
    run_async(call)
    assert stats().isolation == "asyncio"


@pytest.mark.parametrize("isolation", ["thread", "caller"])
@pytest.mark.parametrize(("sync_call", "async_call"), [("do", "do_async"), ("decorated", "decorated")])
@pytest.mark.parametrize("async_first", [False, True], ids=["sync-first", "async-first"])
def test_a_command_with_both_kinds_of_callers_reports_the_setting_plus_asyncio(
    isolation: str, sync_call: str, async_call: str, async_first: bool
) -> None:
    """Sync and async callers of one name: ``isolation`` is the setting plus "+asyncio", in either order."""
    breaker.configure_command(NAME, CommandConfig(isolation=isolation))  # type: ignore[arg-type]
    if async_first:
        run_async(async_call)
        assert stats().isolation == "asyncio"
    run_sync(sync_call)
    run_async(async_call)
    assert stats().isolation == f"{isolation}+asyncio"


def test_isolation_starts_again_with_the_circuit_after_flush() -> None:
    """`breaker.flush` drops the circuit; the new one reports only the calls it has had, a decorated function's
    included."""

    @breaker.command(NAME)
    async def decorated() -> str:
        return "ok"

    run_sync("do")
    assert asyncio.run(decorated()) == "ok"
    assert stats().isolation == "thread+asyncio"
    breaker.flush()
    assert asyncio.run(decorated()) == "ok"
    assert stats().isolation == "asyncio"


def test_isolation_follows_a_changed_setting() -> None:
    """The setting part of ``isolation`` is the setting in force now."""
    run_sync("do")
    run_async("do_async")
    breaker.configure_command(NAME, CommandConfig(isolation="caller"))
    assert stats().isolation == "caller+asyncio"
