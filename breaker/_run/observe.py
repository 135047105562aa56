"""Reporting calls to collectors: what one call did, seen from outside the driver, as a `CallResult`.

A call with collectors to report to detours from the inline paths (`breaker._run.entries`). Its run and fallback
are wrapped in a `Watch`, which notes when the run started and ended, what it raised and what the fallback was
given and did; the driver runs unchanged. Once the call has its answer, `Watch.report` works out the call's
events from those facts and hands the record to every collector, outside every lock. This costs a few
microseconds per call, and only for commands that have collectors; the others never come here.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import Any

from breaker._core.engine import Engine
from breaker._core.errors import CircuitOpenError, CommandTimeoutError, MaxConcurrencyError
from breaker._core.events import Event
from breaker._core.metrics import CallResult

from .aio import NotAwaitable

__all__ = ["Watch"]

logger = logging.getLogger("breaker")


class Watch:
    """The facts of one call, noted by wrappers around its run and fallback."""

    __slots__ = ("active", "begin", "circuit", "end", "error", "fallback", "given", "invalid", "start")

    def __init__(self, circuit: Engine) -> None:
        self.circuit = circuit
        self.start = circuit.clock()
        self.begin: float | None = None  # when the run started (None: it never did)
        self.end: float | None = None  # when it ended (None: still running, or never started)
        self.active = 0  # tickets held when the run started, or when the call was refused
        self.error: BaseException | None = None  # what the run raised
        self.given: BaseException | None = None  # what the fallback was called with
        self.fallback: Event | None = None
        self.invalid = False  # the call was refused as bad input: nothing was counted, nothing is reported

    def run(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn``, noting when it starts and ends and what it raises."""

        def run(*args: Any, **kwargs: Any) -> Any:
            self.active = self.circuit.active
            self.begin = self.circuit.clock()
            try:
                return fn(*args, **kwargs)
            except BaseException as error:
                self.error = error
                raise
            finally:
                self.end = self.circuit.clock()

        return run

    def run_async(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` returning an awaitable, noting when it starts and ends and what it raises."""

        async def run(*args: Any, **kwargs: Any) -> Any:
            self.active = self.circuit.active
            self.begin = self.circuit.clock()
            try:
                awaitable = fn(*args, **kwargs)
                if not inspect.isawaitable(awaitable):
                    self.invalid = True
                    raise NotAwaitable(awaitable)  # the driver's own check, which this wrapper hides
                return await awaitable
            except BaseException as error:
                self.error = error
                raise
            finally:
                self.end = self.circuit.clock()

        return run

    def fallback_of(self, fallback: Callable[..., Any] | None, *, awaits: bool = False) -> Callable[..., Any] | None:
        """``fallback``, noting what it was given and whether it raised; with ``awaits`` (the async driver), an
        awaitable it returns is followed to its end."""
        if fallback is None:
            return None

        def observed(error: BaseException, *args: Any, **kwargs: Any) -> Any:
            self.given = error
            try:
                value = fallback(error, *args, **kwargs)
            except BaseException:
                self.fallback = Event.FALLBACK_FAILURE
                raise
            if awaits and inspect.isawaitable(value):
                return self._settle(value)
            self.fallback = Event.FALLBACK_SUCCESS
            return value

        return observed

    async def _settle(self, awaitable: Any) -> Any:
        try:
            value = await awaitable
        except asyncio.CancelledError:
            raise  # the caller was cancelled: not the fallback's failure
        except BaseException:
            self.fallback = Event.FALLBACK_FAILURE
            raise
        self.fallback = Event.FALLBACK_SUCCESS
        return value

    def event(self, raised: BaseException | None) -> Event:
        """The call's primary event, from what its run raised, what its fallback was given and what it raised."""
        cause = self.given if self.given is not None else raised
        if isinstance(cause, asyncio.CancelledError) and cause is raised:
            return Event.CANCELLED
        if cause is None:
            return Event.SUCCESS
        if cause is self.error:  # the run's own exception
            ignored = self.circuit.ignored
            return Event.BAD_REQUEST if ignored and isinstance(cause, ignored) else Event.FAILURE
        if isinstance(cause, CommandTimeoutError):
            return Event.TIMEOUT
        if isinstance(cause, CircuitOpenError):
            return Event.SHORT_CIRCUIT
        if isinstance(cause, MaxConcurrencyError):
            return Event.REJECTED
        return Event.FAILURE  # pragma: no cover - every other error a call can end with is the run's own

    def report(self, raised: BaseException | None) -> None:
        """Hand the record of the call to every collector; one that raises is logged and skipped."""
        if self.invalid:
            return
        circuit = self.circuit
        now = circuit.clock()
        if self.begin is None:
            self.active = circuit.active
            run = 0.0
        else:
            run = (now if self.end is None else self.end) - self.begin
        tickets = circuit.settings.max_concurrent_requests
        result = CallResult.of(
            circuit.name,
            self.event(raised),
            self.fallback,
            total_duration=now - self.start,
            run_duration=run,
            concurrency_in_use=0.0 if tickets == float("inf") else self.active / tickets,
        )
        for collector in circuit.collectors:
            try:
                collector.update(result)
            except Exception:  # noqa: PERF203 - a collector's failure must not reach the caller
                logger.exception("collector %r of command %r failed on a call; skipped", collector, circuit.name)
