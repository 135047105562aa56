"""Reporting calls to collectors: what one call did, seen from outside the driver, as a `CallResult`.

A call with collectors to report to detours from the inline paths (`breaker._run.entries`). Its run and fallback
are wrapped in a `Watch`, which notes when the run started and ended, what it raised and what the fallback was
given and did; the driver runs unchanged. Once the call has its answer, `Watch.report` works out the call's
events from those facts and hands the record to every collector, outside every lock. This costs a few
microseconds per call, and only for commands that have collectors; the others never come here.

The registry holds each collector in a `Guarded`, which keeps a failing collector from reaching the call and from
flooding the log: its first failure is logged with the traceback, later ones are counted and logged as one line
with their count at most once every `REPORT_INTERVAL` seconds of the circuit's clock, and whatever count is left
unlogged is logged when the collector is reset (`breaker.flush`).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import threading
from collections.abc import Callable
from typing import Any, Final

from breaker._core.engine import Engine
from breaker._core.errors import CircuitOpenError, CommandTimeoutError, MaxConcurrencyError
from breaker._core.events import Event
from breaker._core.metrics import CallResult, Collector
from breaker._core.outcome import failed_result, is_ignored, is_slow
from breaker._core.validation import show

from .aio import NotAwaitable

__all__ = ["REPORT_INTERVAL", "Guarded", "Watch"]

logger = logging.getLogger("breaker")

#: Seconds (on the circuit's clock) between two log lines about one failing collector, after its first.
REPORT_INTERVAL: Final = 60.0
#: The events a ``slow`` event may come beside.
_MAY_BE_SLOW: Final = frozenset({Event.SUCCESS, Event.FAILURE})


class Watch:
    """The facts of one call, noted by wrappers around its run and fallback."""

    __slots__ = ("active", "begin", "circuit", "end", "error", "fallback", "given", "invalid", "start", "value")

    def __init__(self, circuit: Engine) -> None:
        self.circuit = circuit
        self.start = circuit.clock()
        self.begin: float | None = None  # when the run started (None: it never did)
        self.end: float | None = None  # when it ended (None: still running, or never started)
        self.active = 0  # tickets held when the run started, or when the call was refused
        self.error: BaseException | None = None  # what the run raised
        self.value: object = None  # what the run returned, for `result_is_failure` (dropped once reported)
        self.given: BaseException | None = None  # what the fallback was called with
        self.fallback: Event | None = None
        self.invalid = False  # the call was refused as bad input: nothing was counted, nothing is reported

    def run(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn``, noting when it starts and ends and what it raises."""

        def run(*args: Any, **kwargs: Any) -> Any:
            self.active = self.circuit.active
            self.begin = self.circuit.clock()
            try:
                self.value = fn(*args, **kwargs)
                return self.value
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
                self.value = await awaitable
                return self.value
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
            # A result judged a failure with no fallback returns as a success would: ask the predicate again
            # (with collectors, a predicate may be asked twice per call: keep it pure).
            judged = self.circuit.result_is_failure is not None and failed_result(self.circuit, self.value)
            return Event.FAILURE if judged else Event.SUCCESS
        if cause is self.error:  # the run's own exception
            ignored = self.circuit.ignored
            return Event.BAD_REQUEST if ignored and is_ignored(cause, ignored) else Event.FAILURE
        if isinstance(cause, CommandTimeoutError):
            return Event.TIMEOUT
        if isinstance(cause, CircuitOpenError):
            return Event.SHORT_CIRCUIT
        if isinstance(cause, MaxConcurrencyError):
            return Event.REJECTED
        return Event.FAILURE  # pragma: no cover - every other error a call can end with is the run's own

    def report(self, raised: BaseException | None) -> None:
        """Hand the record of the call to every collector (each a `Guarded`: one that raises is skipped)."""
        if self.invalid:
            return
        circuit = self.circuit
        now = circuit.clock()
        if self.begin is None:
            self.active = circuit.active
            run = 0.0
        else:
            run = (now if self.end is None else self.end) - self.begin
        settings = circuit.settings
        tickets = settings.max_concurrent_requests
        event = self.event(raised)
        self.value = None  # judged: nothing of the call stays referenced
        result = CallResult.of(
            circuit.name,
            event,
            self.fallback,
            total_duration=now - self.start,
            run_duration=run,
            concurrency_in_use=0.0 if tickets == float("inf") else self.active / tickets,
            # As the engine counts it: a success or failure whose run took at least slow_call_duration.
            slow=event in _MAY_BE_SLOW and self.begin is not None and is_slow(run, settings.slow_call_duration),
        )
        for collector in circuit.collectors:
            collector.update(result)


class Guarded:
    """A collector as a circuit holds it: its failures never reach the call, and are logged without flooding.

    The rule, per collector: the first failure of ``update`` is logged (logger ``breaker``, level ERROR) with its
    traceback; later ones are counted, and logged as one WARNING line with the count since the last line, the total
    and the last error, once `REPORT_INTERVAL` seconds (on ``clock``) have passed since the last line, when the next
    failure comes; `reset` logs the count not yet logged, if any, before resetting the collector. A failure of
    ``reset`` itself (once per `breaker.flush`) is logged with its traceback.

    Attributes:
        collector: The collector the factory made.
        name: Its command.
        failures: How many times ``update`` has raised so far.
    """

    __slots__ = ("_clock", "_lock", "_next_line", "_unlogged", "collector", "failures", "name")

    def __init__(self, collector: Collector, name: str, clock: Callable[[], float]) -> None:
        self.collector = collector
        self.name = name
        self._clock = clock
        # Guards the counts below: failures come from every calling thread at once, and each must be counted once
        # and logged by one thread only. Taken on the failure path alone, and never held while logging.
        self._lock = threading.Lock()
        self.failures = 0
        self._unlogged = 0  # failures since the last line about them
        self._next_line = -math.inf  # when a failure may log the next line

    def __repr__(self) -> str:
        return f"<Guarded {self.collector!r} of {self.name!r} failures={self.failures}>"

    def update(self, result: CallResult) -> None:
        """Hand ``result`` to the collector; if it raises, count and maybe log the failure (never raise)."""
        try:
            self.collector.update(result)
        except Exception as error:  # a collector's failure must not reach the caller
            self._failed(error)

    def reset(self) -> None:
        """Log the failures not logged yet, then reset the collector (logging, never raising, its failure)."""
        with self._lock:  # the count not yet logged is taken by one thread
            unlogged, self._unlogged = self._unlogged, 0
            total = self.failures
        if unlogged:
            logger.warning(
                "collector %r of command %r failed on %d more calls before it was reset (%d in all)",
                self.collector,
                self.name,
                unlogged,
                total,
            )
        try:
            self.collector.reset()
        except Exception:  # a collector's failure must not stop the flush
            logger.exception("collector %r of command %r failed to reset; skipped", self.collector, self.name)

    def _failed(self, error: Exception) -> None:
        try:
            now = self._clock()
        except Exception:  # the registry's clock (the user's, in tests) must not turn this into the call's error
            now = -math.inf  # count it; the next failure with a working clock, or the reset, logs the count
        with self._lock:  # one count per failure, and one thread logs each line
            self.failures += 1
            first = self.failures == 1
            line = not first and now >= self._next_line
            if first or line:
                self._next_line = now + REPORT_INTERVAL
            unlogged = 0 if first else self._unlogged + 1
            self._unlogged = 0 if line else unlogged
            total = self.failures
        if first:
            logger.error(
                "collector %r of command %r failed on a call; skipped. Its later failures are counted and logged "
                "as one line at most every %g s",
                self.collector,
                self.name,
                REPORT_INTERVAL,
                exc_info=error,
            )
        elif line:
            logger.warning(
                "collector %r of command %r failed on %d more calls (%d in all); the last: %s",
                self.collector,
                self.name,
                unlogged,
                total,
                _brief(error),
            )


def _brief(error: BaseException) -> str:
    """``TypeName: message``, on one line, for a log line without a traceback."""
    try:
        text = str(error)
    except Exception:  # a hostile __str__
        text = show(error)
    text = " ".join(text.split())
    return f"{type(error).__name__}: {text[:200]}" if text else type(error).__name__
