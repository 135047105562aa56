"""Shared by the observability tests (`test_latency`, `test_observability`, `test_collectors`): every way of calling
through a command, as one table, and a collector that records what it is given.

The paths (test ids):

- ``do-caller`` / ``do-thread``: `breaker.do` with ``isolation="caller"`` / ``"thread"``;
- ``decorator-caller`` / ``decorator-thread``: a ``@breaker.command`` sync function;
- ``go-caller`` / ``go-thread``: `breaker.go`, then waiting on its future;
- ``do_async``: `breaker.do_async`, in a fresh event loop;
- ``decorator-async``: a ``@breaker.command`` ``async def``, in a fresh event loop.

A run is written once, as a sync callable; the async paths await a coroutine that calls it, and get an async
fallback that calls the sync one. So a run that advances a `FakeClock` by a known amount takes that long on every
path, on whichever thread runs it.
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import math
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import pytest

import breaker
from breaker import BOUNDS, CallResult, CircuitStatistics, Event

NAME = "dependency"
VALUE = "value"
FALLBACK = "fallback"
WAIT = 10.0  # the bound on every wait for something that should happen promptly
PRIMARY = ("success", "failure", "timeout", "short-circuit", "rejected", "bad-request", "cancelled")

Run = Callable[[], Any]
Fallback = Callable[[Exception], Any]


class Boom(Exception):
    """The dependency's own failure."""


class BadInput(ValueError):
    """The caller's fault: configured as an ignored exception."""


class FallbackBoom(Exception):
    """The fallback's own failure."""


class Stop(BaseException):
    """A BaseException that is not KeyboardInterrupt or SystemExit (which pytest and asyncio treat specially)."""


# -- the paths ----------------------------------------------------------------------------------------------------


def _do(name: str, run: Run, fallback: Fallback | None) -> Any:
    return breaker.do(name, run, fallback)


def _go(name: str, run: Run, fallback: Fallback | None) -> Any:
    return breaker.go(name, run, fallback).result(timeout=WAIT)


def _decorated(name: str, run: Run, fallback: Fallback | None) -> Any:
    def dependency() -> Any:
        return run()

    if fallback is None:
        return breaker.command(name)(dependency)()
    return breaker.command(name, fallback=fallback)(dependency)()


def _async_fallback(fallback: Fallback | None) -> Callable[[Exception], Awaitable[Any]] | None:
    if fallback is None:
        return None

    async def afallback(error: Exception) -> Any:
        await asyncio.sleep(0)
        return fallback(error)

    return afallback


def _do_async(name: str, run: Run, fallback: Fallback | None) -> Any:
    async def arun() -> Any:
        await asyncio.sleep(0)
        return run()

    return asyncio.run(breaker.do_async(name, arun, _async_fallback(fallback)))


def _decorated_async(name: str, run: Run, fallback: Fallback | None) -> Any:
    async def dependency() -> Any:
        await asyncio.sleep(0)
        return run()

    afallback = _async_fallback(fallback)
    wrapped: Callable[[], Awaitable[Any]] = (
        breaker.command(name)(dependency)
        if afallback is None
        else breaker.command(name, fallback=afallback)(dependency)
    )

    async def main() -> Any:
        return await wrapped()

    return asyncio.run(main())


@dataclasses.dataclass(frozen=True)
class Path:
    """One way of calling through a command."""

    id: str
    isolation: Literal["thread", "caller"]
    is_async: bool
    invoke: Callable[[str, Run, Fallback | None], Any]

    @property
    def threaded(self) -> bool:
        return self.isolation == "thread" and not self.is_async

    @property
    def is_go(self) -> bool:
        return self.id.startswith("go-")

    def configure(self, name: str = NAME, **fields: Any) -> None:
        """Configure command ``name`` with this path's isolation and ``fields``."""
        breaker.configure_command(name, breaker.CommandConfig(isolation=self.isolation, **fields))

    def call(self, run: Run, fallback: Fallback | None = None, name: str = NAME) -> Any:
        """Call ``run`` through command ``name`` on this path; the call's value (or its exception)."""
        return self.invoke(name, run, fallback)


PATHS = (
    Path("do-caller", "caller", False, _do),
    Path("decorator-caller", "caller", False, _decorated),
    Path("go-caller", "caller", False, _go),
    Path("do-thread", "thread", False, _do),
    Path("decorator-thread", "thread", False, _decorated),
    Path("go-thread", "thread", False, _go),
    Path("do_async", "caller", True, _do_async),
    Path("decorator-async", "caller", True, _decorated_async),
)


def paths(*ids: str) -> pytest.MarkDecorator:
    """Parametrize ``path`` over the paths named (all of them by default)."""
    unknown = set(ids) - {p.id for p in PATHS}
    assert not unknown, f"no such path: {unknown}"
    return pytest.mark.parametrize("path", [pytest.param(p, id=p.id) for p in PATHS if not ids or p.id in ids])


# -- reading the circuit ------------------------------------------------------------------------------------------


def stats(name: str = NAME) -> CircuitStatistics:
    return breaker.get_circuit(name)[0].statistics()


def cumulative(name: str = NAME) -> dict[str, int]:
    return dict(stats(name).cumulative)


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` until it holds; fail after WAIT seconds (for runs left going in the background)."""
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"still not true after {WAIT} s: {what}"
        time.sleep(0.002)


def settle(name: str = NAME) -> None:
    """Wait until no run of ``name`` is in progress, abandoned ones included."""
    wait_until(lambda: stats(name).active == 0 and stats(name).abandoned == 0, f"{name}: every run returned")


def bucket_bounds(seconds: float) -> tuple[float, float]:
    """The (lower, upper) bounds of the histogram bucket holding ``seconds``: (BOUNDS[i - 1], BOUNDS[i]]."""
    i = bisect.bisect_left(BOUNDS, seconds)
    lower = BOUNDS[i - 1] if i else 0.0
    upper = BOUNDS[i] if i < len(BOUNDS) else math.inf
    return lower, upper


def bucket_width(seconds: float) -> float:
    lower, upper = bucket_bounds(seconds)
    return upper - lower


# -- a collector ---------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Seen:
    """One `CallResult`, with where `update` ran and what the circuit had counted by then."""

    result: CallResult
    thread: int
    task: asyncio.Task[Any] | None
    cumulative: dict[str, int]


def _current_task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no running event loop
        return None


class Recorder:
    """A collector recording every result with where it ran; ``update`` reads the circuit's statistics, which
    takes the circuit's lock (so an update under that lock would deadlock: the per-test timeout turns that into a
    failure)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.seen: list[Seen] = []
        self.resets = 0
        self._lock = threading.Lock()  # results can come from several threads

    def __repr__(self) -> str:
        return f"<Recorder {self.name!r} results={len(self.seen)} resets={self.resets}>"

    def update(self, result: CallResult) -> None:
        counted = dict(breaker.get_circuit(result.name)[0].statistics().cumulative)
        seen = Seen(result, threading.get_ident(), _current_task(), counted)
        with self._lock:
            self.seen.append(seen)

    def reset(self) -> None:
        with self._lock:
            self.resets += 1

    @property
    def results(self) -> list[CallResult]:
        with self._lock:
            return [s.result for s in self.seen]


class Recorders:
    """A collector factory keeping every `Recorder` it made, by command name."""

    def __init__(self) -> None:
        self.made: dict[str, list[Recorder]] = {}
        self._lock = threading.Lock()

    def __call__(self, name: str) -> Recorder:
        recorder = Recorder(name)
        with self._lock:
            self.made.setdefault(name, []).append(recorder)
        return recorder

    def results(self, name: str = NAME) -> list[CallResult]:
        """The results every recorder of ``name`` got, in order."""
        with self._lock:
            recorders = list(self.made.get(name, ()))
        return [r for recorder in recorders for r in recorder.results]


def tally(results: list[CallResult]) -> dict[str, int]:
    """Every event name mapped to how many results report it (as primary event or fallback event)."""
    counts = dict.fromkeys((e.value for e in Event), 0)
    for result in results:
        counts[result.event.value] += 1
        if result.fallback is not None:
            counts[result.fallback.value] += 1
    return counts
