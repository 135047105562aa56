"""Calls whose holder runs the work and reports how it ended: `acquire` / `acquire_async` and their `Permit`.

`breaker.do` runs a function and judges its end itself. Some work does not fit in one function: an HTTP
response whose body is read after the client call returned, a stream, a connection checked out of a pool. For
those, `acquire` admits one call (taking a ticket, or the circuit's probe) or refuses it (counted, and raised as
`CircuitOpenError` / `MaxConcurrencyError`), and the `Permit` it returns is ended later with the call's event:
the count, the duration and the ticket land then, in one step, exactly once whichever thread or task ends it.
`fall_back` runs a fallback for such a call and counts it, as the drivers do for theirs.

A permit is the call: it holds its ticket until it is ended. One never ended holds it for good, as an unreleased
lock would; `with` (or ``async with``) ends it whatever happens. The engine's steps are the drivers' own; the
async twins never block the loop (`breaker._run.aio`), and a cancellation that arrives while one waits for the
lock is raised once the step is done, so the count and the ticket are whole.
"""

from __future__ import annotations

import asyncio
import math
import types
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

from breaker import _registry
from breaker._core.engine import NO_LATENCY, Engine
from breaker._core.errors import CircuitOpenError, MaxConcurrencyError
from breaker._core.events import BAD_REQUEST, CANCELLED, FAILURE, REJECTED, SHORT_CIRCUIT, SUCCESS, TIMEOUT, Event
from breaker._core.latency import BOTH
from breaker._core.lockfree import DONE, claim, try_fail, try_succeed
from breaker._core.metrics import CallResult
from breaker._core.outcome import Admission, is_slow, raised_event, refusal, returned_event
from breaker._registry import check_callable

from .aio import admission_for, hand_off_later, settle
from .aio import fall_back_async as answer_with_fallback_async
from .answer import fall_back as answer_with_fallback

__all__ = ["Permit", "acquire", "acquire_async", "fall_back", "fall_back_async"]

T = TypeVar("T")

#: The events a permit can end with, and their counter slots.
_ENDINGS: Final = {
    Event.SUCCESS: SUCCESS,
    Event.FAILURE: FAILURE,
    Event.TIMEOUT: TIMEOUT,
    Event.BAD_REQUEST: BAD_REQUEST,
    Event.CANCELLED: CANCELLED,
}
_EVENT_OF: Final = {slot: event for event, slot in _ENDINGS.items()}


class Permit:
    """One admitted call of a command, ended by its holder with `end` (or `end_async`), exactly once.

    As a context manager (``with`` / ``async with``), a permit not ended in the block is ended on leaving it by the
    rule `breaker.do` applies: an exception is a failure (a bad request when it is one of the command's
    ``ignored_exceptions``, a timeout when an `Exception` came after the timeout; a cancellation is ``cancelled``),
    and no exception is a success (a timeout when the block outlasted the timeout). The exception propagates.

    Attributes:
        name: The command.
        started: When the call was admitted, on the registry's clock (seconds).
    """

    __slots__ = ("_active", "_admission", "_core", "_once", "started")

    def __init__(self, core: Engine, admission: Admission, started: float) -> None:
        self._core = core
        self._admission = admission
        self._once = [None]  # `claim`ed by the one `end` that settles the call
        self._active = core.active  # tickets held as the call began (its own included), for collectors
        self.started = started

    def __repr__(self) -> str:
        state = "ended" if not self._once else "open"
        return f"<Permit {self._core.name!r} {self._admission.name} {state}>"

    @property
    def name(self) -> str:
        return self._core.name

    @property
    def elapsed(self) -> float:
        """Seconds since the call was admitted, on the registry's clock."""
        return max(0.0, self._core.clock() - self.started)

    @property
    def ended(self) -> bool:
        """Whether the call was ended (its event counted and its ticket given back)."""
        return not self._once

    def end(self, event: Event = Event.SUCCESS, *, seconds: float | None = None) -> bool:
        """End the call with ``event``: count it and its duration, give back the ticket, apply the outcome.

        A success or a failure that took at least the command's ``slow_call_duration`` is counted as ``slow``
        too. ``event`` is recorded as given: the command's ``timeout`` and ``result_is_failure`` are not applied
        (the context manager applies the timeout).

        Args:
            event: ``SUCCESS``, ``FAILURE``, ``TIMEOUT``, ``BAD_REQUEST`` or ``CANCELLED``.
            seconds: The call's duration; by default the time since it was admitted.

        Returns:
            True if this call ended the permit; False if it had been ended already (nothing is done).

        Raises:
            TypeError: ``event`` is not a `breaker.Event` (nothing is done).
            ValueError: ``event`` is not one of those, or ``seconds`` is not a finite number >= 0 (nothing is done).
        """
        ending = self._claim(event, seconds)
        if ending is None:
            return False
        step = _try_end(self._core, self._admission, *ending)
        if step is not None:
            step[0](*step[1])  # waits for the lock here
        self._report(ending)
        return True

    async def end_async(self, event: Event = Event.SUCCESS, *, seconds: float | None = None) -> bool:
        """`end` for a task: never blocks the event loop. A cancellation that arrives while it waits for the
        circuit's lock is raised once the call is ended."""
        ending = self._claim(event, seconds)
        if ending is None:
            return False
        step = _try_end(self._core, self._admission, *ending)
        if step is not None:
            await settle(self._core, step[0], *step[1])  # a worker waits for the lock; the loop goes on
        self._report(ending)
        return True

    def end_nowait(self, event: Event = Event.SUCCESS, *, seconds: float | None = None) -> bool:
        """`end` from code that must not wait, such as a callback on an event loop: when the circuit's lock is
        held, a worker thread of the registry ends the call moments later (its count and ticket land then)."""
        ending = self._claim(event, seconds)
        if ending is None:
            return False
        step = _try_end(self._core, self._admission, *ending)
        if step is not None:
            hand_off_later(self._core, step[0], *step[1])  # a worker waits for the lock
        self._report(ending)
        return True

    def _claim(self, event: Event, seconds: float | None) -> tuple[int, float, float] | None:
        """Check ``event`` and ``seconds`` (raising before anything is done), then claim the permit: its event
        slot, the time it ends and its duration, or None if it was ended already."""
        slot = _slot(event)
        now = self._core.clock()
        duration = self._seconds(now, seconds)
        if not claim(self._once):
            return None
        return slot, now, duration

    def _seconds(self, now: float, seconds: float | None) -> float:
        if seconds is None:
            return max(0.0, now - self.started)
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds < math.inf:
            raise ValueError(f"seconds must be a finite number >= 0, got {seconds!r}")
        return float(seconds)

    def _judge(self, error: BaseException | None) -> Event:
        """The event `breaker.do` would count for a run that raised ``error`` (None: it returned) by now."""
        core = self._core
        seconds = core.clock() - self.started
        if error is None:
            return _EVENT_OF[returned_event(seconds, core.timeout)]
        if isinstance(error, asyncio.CancelledError):
            return Event.CANCELLED
        return _EVENT_OF[raised_event(error, seconds, core.timeout, core.ignored, False)]

    def _report(self, ending: tuple[int, float, float]) -> None:
        slot, _, seconds = ending
        core = self._core
        if core.collectors:
            tickets = core.settings.max_concurrent_requests
            event = _EVENT_OF[slot]
            slow = slot in (SUCCESS, FAILURE) and is_slow(seconds, core.slow_call_duration)
            result = CallResult.of(
                core.name,
                event,
                None,
                total_duration=seconds,
                run_duration=seconds,
                concurrency_in_use=0.0 if tickets == math.inf else self._active / tickets,
                slow=slow,
            )
            for collector in core.collectors:
                collector.update(result)

    def __enter__(self) -> Permit:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: types.TracebackType | None
    ) -> None:
        if self._once:
            self.end(self._judge(error))

    async def __aenter__(self) -> Permit:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: types.TracebackType | None
    ) -> None:
        if self._once:
            await self.end_async(self._judge(error))


def _slot(event: object) -> int:
    if not isinstance(event, Event):
        raise TypeError(f"a permit ends with a breaker.Event, got {type(event).__name__} {event!r}")
    slot = _ENDINGS.get(event)
    if slot is None:
        raise ValueError(f"a permit ends with Event.SUCCESS, FAILURE, TIMEOUT, BAD_REQUEST or CANCELLED, got {event!r}")
    return slot


Step = tuple[Callable[..., bool], tuple[Any, ...]]


def _try_end(core: Engine, admission: Admission, slot: int, now: float, seconds: float) -> Step | None:
    """End a call with event ``slot`` by the drivers' own steps, without waiting for the circuit's lock: None when
    it is ended, else the locked step still to do (its function and arguments; called, it waits for the lock)."""
    slow = slot in (SUCCESS, FAILURE) and is_slow(seconds, core.slow_call_duration)
    if slot == SUCCESS and not slow:
        stage = try_succeed(core, admission, now, seconds)
        if stage == DONE or core.settle_success(stage, admission, now, seconds, block=False):
            return None
        return core.settle_success, (stage, admission, now, seconds)
    if slot == FAILURE and not slow:
        stage = try_fail(core, admission, now, seconds, core.both_durations)
        if stage == DONE or core.settle(stage, FAILURE, admission, now, seconds, BOTH, block=False):
            return None
        return core.settle, (stage, FAILURE, admission, now, seconds, BOTH)
    if slow:
        if core.finish_slow(slot, admission, now, seconds, BOTH, block=False):
            return None
        return core.finish_slow, (slot, admission, now, seconds, BOTH)
    kind = NO_LATENCY if slot == CANCELLED else BOTH
    seconds = 0.0 if slot == CANCELLED else seconds
    if core.finish(slot, admission, now, seconds, kind, block=False):
        return None
    return core.finish, (slot, admission, now, seconds, kind)


def _engine(name: str, sync: bool) -> Engine:
    registry = _registry.current
    core = registry.engine(name)
    if sync and not core.called_sync:  # `statistics().isolation` tells which kinds of caller a circuit has
        core.called_sync = True
    elif not sync and not core.called_async:
        core.called_async = True
    return core


def _refused(core: Engine, admission: Admission, now: float) -> CircuitOpenError | MaxConcurrencyError:
    error = refusal(core, admission, now)
    if core.collectors:
        tickets = core.settings.max_concurrent_requests
        result = CallResult.of(
            core.name,
            _REFUSAL_EVENTS[admission.event],
            None,
            total_duration=0.0,
            run_duration=0.0,
            concurrency_in_use=0.0 if tickets == math.inf else core.active / tickets,
        )
        for collector in core.collectors:
            collector.update(result)
    return error


_REFUSAL_EVENTS: Final = {SHORT_CIRCUIT: Event.SHORT_CIRCUIT, REJECTED: Event.REJECTED}


def acquire(name: str) -> Permit:
    """Admit one call of command ``name``, whose work the caller does and ends with `Permit.end`.

    Takes a ticket (or the circuit's probe) as `breaker.do` would, without running anything: use it for work that
    does not fit in one function (an HTTP response read after the request returned). The circuit, its settings
    and its counts are the command's, shared with every other caller of the name.

    Returns:
        The call's `Permit`; end it exactly once, or use it as a context manager.

    Raises:
        CircuitOpenError: The circuit is open: the call is short-circuited (counted); see ``retry_after``.
        MaxConcurrencyError: No ticket was free: the call is rejected (counted).
        TypeError, ValueError: ``name`` is not a valid command name (nothing is counted).
    """
    core = _engine(name, True)
    start = core.clock()
    admission = core.enter(start)
    if admission.refused:
        raise _refused(core, admission, start)
    return Permit(core, admission, start)


async def acquire_async(name: str) -> Permit:
    """`acquire` for a task: never blocks the event loop. A cancellation that arrives while the circuit's lock
    decides is raised once the call is decided (an admitted call is then ended as ``cancelled``)."""
    core = _engine(name, False)
    start = core.clock()
    admission = core.enter_nowait(start)
    if admission is None:
        admission = await admission_for(core, start)
    if admission.refused:
        raise _refused(core, admission, start)
    return Permit(core, admission, start)


def _check_fallback(name: str, error: object, fallback: object) -> None:
    check_callable("fallback", name, fallback)
    if not isinstance(error, BaseException):
        raise TypeError(f"command {name!r}: error must be the exception the call failed with, got {error!r}")


def fall_back(name: str, error: BaseException, fallback: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Answer a call of ``name`` that failed with ``error`` (refused, failed, timed out) by its fallback, as
    `breaker.do` does: ``fallback(error, *args, **kwargs)``'s value, counted as ``fallback-success``.

    Raises:
        FallbackError: The fallback raised (counted as ``fallback-failure``); its error is the cause.
        TypeError: ``fallback`` is not callable, or ``error`` not an exception (nothing is counted).
    """
    _check_fallback(name, error, fallback)
    return answer_with_fallback(_registry.current.engine(name), error, args, kwargs, fallback, None)


async def fall_back_async(
    name: str, error: BaseException, fallback: Callable[..., T | Awaitable[T]], *args: Any, **kwargs: Any
) -> T:
    """`fall_back` for a task: an async fallback is awaited; never blocks the loop."""
    _check_fallback(name, error, fallback)
    return await answer_with_fallback_async(_registry.current.engine(name), error, args, kwargs, fallback, None)
