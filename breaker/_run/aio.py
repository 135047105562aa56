"""The async driver: runs a call through its circuit in the awaiting task.

`call_async` is the one text of this path; `breaker.do_async` and the async wrapper of `@breaker.command` run it
inlined, with the engine's hot steps inlined too (`breaker._run._generated`, made by ``tools/generate.py``). The
run is awaited in the caller's own task under `asyncio.timeout`, so a timeout cancels it for real, and its ticket
comes back once it has finished unwinding: async runs are never abandoned. Sync and async callers of one name
share one circuit: the same tickets, window, state and probe.

Nothing here blocks the event loop, or spins on it. The engine's locked steps are called with ``block=False``;
when a thread holds the lock, the step goes to a worker thread, which waits for the lock and does it, while the
task awaits the result (`_hand_off`); one worker at a time does an engine's handed-off steps, in order
(`_HandOff`), so that contention never starts a thread per waiting task. (Yielding and trying again instead
would starve: threads queued on the lock hand it to one another outside the GIL, so a task that only tries finds
it held every time, while its loop keeps the GIL the lock's holder needs.) Each step is done whole, and a
cancellation that arrives while the task awaits one is held until it is done, then raised. Between the steps the
only awaits are the run's and the fallback's, so a call cancelled at any point still ends in exactly one primary
event, and its ticket always comes back.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import logging
import math
import os
import threading
import types
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from breaker._core.engine import NO_LATENCY, Engine, Pool
from breaker._core.errors import FailedResultError, FallbackError
from breaker._core.events import (
    BAD_REQUEST,
    CANCELLED,
    FAILURE,
    FALLBACK_FAILURE,
    FALLBACK_SUCCESS,
    SUCCESS,
    TIMEOUT,
)
from breaker._core.inline import inline
from breaker._core.latency import BOTH, RUN
from breaker._core.lockfree import DONE, try_fail, try_succeed
from breaker._core.outcome import ADMITTED, Admission, failed_result, in_time, is_slow, raised_event, refusal

from .answer import Args, Kwargs, timeout_error

__all__ = ["NotAwaitable", "call_async", "fall_back_async", "hand_off_later", "settle_returned_async"]

logger = logging.getLogger("breaker")

T = TypeVar("T")

INFINITY = math.inf
COROUTINE = types.CoroutineType  # the usual awaitable: checked by identity before inspect.isawaitable
#: ``asyncio.timeout`` (Python 3.11+); on 3.10 the driver uses ``asyncio.wait_for``.
deadline_after = getattr(asyncio, "timeout", None)


class NotAwaitable(Exception):
    """Raised inside the driver when a run returned something not awaitable (a TypeError for the caller)."""

    def __init__(self, value: object) -> None:
        self.value = value


class _HandOff:
    """The locked steps of one engine that tasks handed to a thread because the lock was held: one worker at a time
    does them, in order. A worker per step would start a thread per waiting task (hundreds, under contention, each
    started on the event loop); these steps all wait for the same lock anyway."""

    __slots__ = ("_draining", "_lock", "_pool", "_steps")

    def __init__(self, pool: Pool) -> None:
        self._pool = pool
        # Guards the queue and the draining flag, so that a step is never left queued with no worker to do it. Held
        # for a deque operation only, never while a step runs.
        self._lock = threading.Lock()
        self._steps: collections.deque[Callable[[], None]] = collections.deque()
        self._draining = False

    def submit(self, work: Callable[[], None]) -> None:
        """Have ``work`` done on a worker thread, after the steps queued before it."""
        with self._lock:  # see __init__
            self._steps.append(work)
            if self._draining:
                return
            self._draining = True
        try:
            self._pool.submit(self._drain, None)
        except RuntimeError:  # no thread can be started (interpreter shutdown): do them here, as a last resort
            self._drain(None)

    def _drain(self, _: None) -> None:
        while True:
            with self._lock:  # see __init__
                if not self._steps:
                    self._draining = False
                    return
                work = self._steps.popleft()
            work()  # never raises: each step's outcome, error included, goes to its task


#: Each engine's `_HandOff`, made on first use; the lock guards making one (tasks on several loops and threads). An
#: RLock: a dropped HTTP response's finalizer ends its call through here (`Permit.end_nowait`), and a collection may
#: run it on a thread inside this very section (making a `_HandOff` allocates); re-entered, it makes or finds one.
_hand_offs: weakref.WeakKeyDictionary[Engine, _HandOff] = weakref.WeakKeyDictionary()
_hand_offs_lock = threading.RLock()


def _reinit_after_fork() -> None:
    """In a forked child: a fresh lock (a parent's thread may have held it at the fork), and no hand-off of the
    parent's engines, whose workers did not survive the fork."""
    global _hand_offs_lock, _hand_offs
    _hand_offs_lock = threading.RLock()
    _hand_offs = weakref.WeakKeyDictionary()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinit_after_fork)


def hand_off_later(core: Engine, step: Callable[..., Any], *args: Any) -> None:
    """Do ``step(*args)``, an engine step that must wait for the engine's lock, on a worker thread (in order with
    the engine's other handed-off steps), without waiting for it; here if there is no pool (an engine not made by
    a registry)."""

    def work() -> None:
        try:
            step(*args)
        except Exception:  # nobody waits for it: an engine step fails only with a broken clock, logged
            logger.exception("command %r: a handed-off engine step failed", core.name)

    _submit(core, work)


def _submit(core: Engine, work: Callable[[], None]) -> None:
    pool = core.pool
    if pool is None:
        work()  # an engine not made by a registry: nowhere else to do it
        return
    with _hand_offs_lock:  # see _hand_offs
        hand_off = _hand_offs.get(core)
        if hand_off is None:
            hand_off = _hand_offs[core] = _HandOff(pool)
    hand_off.submit(work)


async def _hand_off(core: Engine, step: Callable[..., Any], *args: Any) -> tuple[Any, asyncio.CancelledError | None]:
    """Do ``step(*args)``, an engine step that must wait for the engine's lock, on a worker thread, and await it.

    Returns its result, and a cancellation of this task that came meanwhile: the step is done whole regardless,
    and the caller raises the cancellation once its own bookkeeping is whole too.
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Any] = loop.create_future()

    def settle_on_the_loop(result: Any, error: BaseException | None) -> None:
        if not done.done():
            if error is None:
                done.set_result(result)
            else:
                done.set_exception(error)

    def work() -> None:
        result: Any = None
        error: BaseException | None = None
        try:
            result = step(*args)  # waits for the lock, here on the worker
        except BaseException as raised:  # handed to the task, which raises it
            error = raised
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody awaits the result
            loop.call_soon_threadsafe(settle_on_the_loop, result, error)

    if core.pool is None:  # an engine not made by a registry: wait here, as a last resort
        return step(*args), None
    _submit(core, work)
    cancelled: asyncio.CancelledError | None = None
    while True:
        try:
            return await asyncio.shield(done), cancelled
        except asyncio.CancelledError as error:  # noqa: PERF203 - the step goes on: wait for it all the same
            if done.cancelled():
                raise  # nothing cancels ``done`` itself: an error in the loop's shutdown
            cancelled = error


async def settle(core: Engine, step: Callable[..., Any], *args: Any) -> None:
    """`_hand_off`, then raise the cancellation that came meanwhile, if any."""
    _, cancelled = await _hand_off(core, step, *args)
    if cancelled is not None:
        raise cancelled


async def admission_for(core: Engine, now: float) -> Admission:
    """Have the engine's lock decide a call (a thread holds it). If the task is cancelled meanwhile, the call is
    still decided, then ended: an admitted call counts as cancelled and gives its ticket back, and the
    cancellation is raised."""
    admission, cancelled = await _hand_off(core, core.admit, now)
    if cancelled is not None:
        if not admission.refused:
            with contextlib.suppress(asyncio.CancelledError):  # cancelled again meanwhile: raise the first
                await settle(core, core.finish, CANCELLED, admission, core.clock(), 0.0, NO_LATENCY)
        raise cancelled
    result: Admission = admission
    return result


async def fall_back_async(
    core: Engine,
    error: BaseException,
    args: Args,
    kwargs: Kwargs,
    fallback: Callable[..., T | Awaitable[T]],
    start: float | None,
) -> T:
    """The fallback's answer (sync or async) to a call that failed with ``error``; ``start``: when the call began,
    to count its whole duration (None: it never ran)."""
    try:
        value = fallback(error, *args, **kwargs)
        if inspect.isawaitable(value):
            value = await value
    except asyncio.CancelledError:
        raise  # the caller was cancelled while an async fallback ran: not the fallback's failure
    except Exception as fallback_error:
        await _count_fallback(core, FALLBACK_FAILURE, start)
        raise FallbackError(core.name, error, fallback_error) from fallback_error
    except BaseException:
        await _count_fallback(core, FALLBACK_FAILURE, start)
        raise
    await _count_fallback(core, FALLBACK_SUCCESS, start)
    return cast(T, value)


async def _count_fallback(core: Engine, event: int, start: float | None) -> None:
    now = core.clock()
    total = None if start is None else now - start
    if not core.count_fallback(event, now, total, block=False):
        await settle(core, core.count_fallback, event, now, total)


@inline
async def call_async(
    core: Engine, fn: Callable[..., Awaitable[T]], args: Args, kwargs: Kwargs, fallback: Callable[..., Any] | None
) -> T:
    """Await ``fn(*args, **kwargs)`` through ``core``'s circuit in this task and answer the call."""
    clock = core.clock
    start = clock()
    admission = core.enter_nowait(start)
    if admission is None:
        admission = await admission_for(core, start)
    if admission is not ADMITTED and admission.refused:
        if fallback is None:
            raise refusal(core, admission, start)
        return await fall_back_async(core, refusal(core, admission, start), args, kwargs, fallback, None)
    timeout = core.timeout
    deadline = None
    try:
        awaitable = fn(*args, **kwargs)
        if awaitable.__class__ is not COROUTINE and not inspect.isawaitable(awaitable):
            raise NotAwaitable(awaitable)
        if timeout == INFINITY:
            value = await awaitable
        elif deadline_after is not None:
            deadline = deadline_after(timeout)
            async with deadline:
                value = await awaitable
        else:  # pragma: no cover - Python 3.10: no asyncio.timeout
            value = await asyncio.wait_for(awaitable, timeout)
    except NotAwaitable as bad:
        if not core.withdraw(admission, block=False):
            await settle(core, core.withdraw, admission)
        raise TypeError(
            f"command {core.name!r}: run must return an awaitable for an async call, "
            f"got {type(bad.value).__name__} {bad.value!r}"
        ) from None
    except asyncio.CancelledError:
        # The caller was cancelled (or its own enclosing timeout fired): never swallowed, no fallback.
        end = clock()
        if not core.finish(CANCELLED, admission, end, 0.0, NO_LATENCY, block=False):
            with contextlib.suppress(asyncio.CancelledError):  # cancelled again meanwhile: raise the first
                await settle(core, core.finish, CANCELLED, admission, end, 0.0, NO_LATENCY)
        raise
    except BaseException as error:
        end = clock()
        seconds = end - start
        expired = deadline is not None and deadline.expired()
        event = raised_event(error, seconds, timeout, core.ignored, expired)
        answered = fallback is None or event == BAD_REQUEST or not isinstance(error, Exception)  # no fallback runs
        kind = BOTH if answered else RUN
        if event == FAILURE and not is_slow(seconds, core.slow_call_duration):
            stage = try_fail(core, admission, end, seconds, core.both_durations if answered else core.run_durations)
            if stage != DONE and not core.settle(stage, event, admission, end, seconds, kind, block=False):
                await settle(core, core.settle, stage, event, admission, end, seconds, kind)
        elif event == FAILURE:
            if not core.finish_slow(event, admission, end, seconds, kind, block=False):
                await settle(core, core.finish_slow, event, admission, end, seconds, kind)
        elif not core.finish(event, admission, end, seconds, kind, block=False):
            await settle(core, core.finish, event, admission, end, seconds, kind)
        if answered:
            if event == TIMEOUT:
                raise timeout_error(core, None if expired else error)  # noqa: B904 - the cause is set
            raise  # the run's own exception, unchanged
        assert fallback is not None  # else the call was answered above
        failure = error if event == FAILURE else timeout_error(core, None if expired else error)
        return await fall_back_async(core, failure, args, kwargs, fallback, start)
    end = clock()
    seconds = end - start
    if seconds <= core.plain_until:  # in time, not slow, no result to judge: the plain success
        stage = try_succeed(core, admission, end, seconds)
        if stage != DONE and not core.settle_success(stage, admission, end, seconds, block=False):
            await settle(core, core.settle_success, stage, admission, end, seconds)
        return value
    return await settle_returned_async(core, admission, value, start, end, seconds, timeout, args, kwargs, fallback)


async def settle_returned_async(
    core: Engine,
    admission: Admission,
    value: T,
    start: float,
    end: float,
    seconds: float,
    timeout: float,
    args: Args,
    kwargs: Kwargs,
    fallback: Callable[..., Any] | None,
) -> T:
    """`breaker._run.caller.settle_returned` for an awaited run: after its timeout, or a value to judge."""
    if in_time(seconds, timeout):
        error = failed_result(core, value)
        slow = is_slow(seconds, core.slow_call_duration)
        if error is None:
            if slow:
                if not core.finish_slow(SUCCESS, admission, end, seconds, BOTH, block=False):
                    await settle(core, core.finish_slow, SUCCESS, admission, end, seconds, BOTH)
                return value
            stage = try_succeed(core, admission, end, seconds)
            if stage != DONE and not core.settle_success(stage, admission, end, seconds, block=False):
                await settle(core, core.settle_success, stage, admission, end, seconds)
            return value
        answered = fallback is None or not isinstance(error, Exception)  # no fallback runs
        kind = BOTH if answered else RUN
        if slow:
            if not core.finish_slow(FAILURE, admission, end, seconds, kind, block=False):
                await settle(core, core.finish_slow, FAILURE, admission, end, seconds, kind)
        else:
            stage = try_fail(core, admission, end, seconds, core.both_durations if answered else core.run_durations)
            if stage != DONE and not core.settle(stage, FAILURE, admission, end, seconds, kind, block=False):
                await settle(core, core.settle, stage, FAILURE, admission, end, seconds, kind)
        if not answered:
            assert fallback is not None
            answer: T = await fall_back_async(core, error, args, kwargs, fallback, start)
            return answer
        if isinstance(error, FailedResultError):
            return value  # a failed result, and no fallback: the caller gets the result unchanged
        raise error
    # It returned after its timeout (it did not give way to its cancellation): a timeout, its value discarded.
    if fallback is None:
        if not core.finish(TIMEOUT, admission, end, seconds, BOTH, block=False):
            await settle(core, core.finish, TIMEOUT, admission, end, seconds, BOTH)
        raise timeout_error(core, None)
    if not core.finish(TIMEOUT, admission, end, seconds, RUN, block=False):
        await settle(core, core.finish, TIMEOUT, admission, end, seconds, RUN)
    return await fall_back_async(core, timeout_error(core, None), args, kwargs, fallback, start)
