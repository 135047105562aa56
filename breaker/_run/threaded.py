"""Thread isolation: the run goes to a worker thread and races its timeout.

`call_in_thread` (for `breaker.do` and decorated functions) waits for the run on the caller's thread, at most the
timeout; `start_in_thread` (for `breaker.go`) returns a future, which the worker resolves, or the timer when the
timeout comes first. The worker runs `run_attempt` (for `call_in_thread`, the generated entries hand it their copy
of it, with the engine's steps inlined: the worker's side is on the path the caller waits on). Either way exactly
one side settles the call's outcome: whichever claims the `Attempt` first (`breaker._core.lockfree.claim` on the
attempt's ``once``: only one taker ever gets it). The other side only does its own bookkeeping: a run that lost to
its timeout gives its ticket back when it really returns (`Engine.finish_abandoned`), so that
``max_concurrent_requests`` bounds the threads a hung dependency can hold. The outcome is counted and the ticket is
back before the caller is woken or the future resolved. Here the timeout is the race's to decide: a run that settles
first stands, however long it took.

Durations. The worker measures the run. When no fallback follows, it counts the run's duration as the call's too:
the hand-off to the worker and back, some microseconds, is left out, as hystrix-go leaves it out. When a fallback
follows, it counts the run, and the caller the whole call, fallback included. A `go()` future counts its whole
duration, from `go()` to its answer, when it is resolved.
"""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

from breaker._core.engine import Engine
from breaker._core.errors import FailedResultError
from breaker._core.events import FAILURE, SUCCESS
from breaker._core.inline import inline
from breaker._core.latency import BOTH, RUN
from breaker._core.lockfree import claim
from breaker._core.outcome import ADMITTED, Admission, failed_result, is_slow, raised_event, refusal

from .answer import AWAITABLES, Args, Fallback, Kwargs, awaitable_refused, fall_back, timeout_error
from .workers import Timer, Wake, Work, WorkerPool

__all__ = ["Attempt", "call_in_thread", "run_attempt", "start_in_thread"]

T = TypeVar("T")

_TIMEOUT_MAX = threading.TIMEOUT_MAX
#: An attempt's event when its run returned an awaitable: refused, nothing counted (see `answer.AWAITABLES`).
NEVER_RAN = -1


class Attempt(Generic[T]):  # Generic costs nothing per instance: it defines no __new__ or __init__
    """One run handed to a worker, and its outcome once settled."""

    __slots__ = (
        "admission",
        "args",
        "core",
        "done",
        "error",
        "event",
        "falls_back",
        "fn",
        "kwargs",
        "once",
        "ran",
        "value",
    )

    value: T  # set when the run returns
    event: int  # the run's own outcome, set when it ends
    ran: float  # seconds the run took, set when it ends
    #: Whether the worker counts a run with no fallback after it as the whole call (see the module docstring);
    #: `go()`'s futures count the whole call when they are resolved instead.
    COUNTS_CALL = True

    def __init__(
        self, core: Engine, fn: Callable[..., T], args: Args, kwargs: Kwargs, admission: Admission, falls_back: bool
    ) -> None:
        self.core = core
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.admission = admission
        self.falls_back = falls_back
        self.error: BaseException | None = None
        #: Claimed by whichever of the run and its timeout settles the outcome first (`lockfree.claim`).
        self.once = [None]
        # Gets one item once the outcome is settled; the waiting caller blocks on it. A queue, not a Lock: a
        # Lock.acquire with a timeout wakes about 20 us later than SimpleQueue.get with one (measured here).
        self.done: queue.SimpleQueue[None] = queue.SimpleQueue()

    @inline
    def answer(self, args: Args, kwargs: Kwargs, fallback: Fallback[T] | None) -> T:
        """The call's answer, once the run settled the outcome."""
        error = self.error
        if error is None:
            return self.value
        self.error = None
        try:
            if self.event == FAILURE and fallback is not None and isinstance(error, Exception):
                start = self.core.clock() - self.ran  # the whole call: the run, then the fallback (no hand-off)
                return fall_back(self.core, error, args, kwargs, fallback, start if self.COUNTS_CALL else None)
            if error.__class__ is FailedResultError:
                return self.value  # a failed result, and no fallback: the caller gets the result unchanged
            raise error  # the run's own exception, unchanged: a bad request, or no fallback
        finally:
            del error  # no frame -> traceback -> error cycle


@inline
def run_attempt(attempt: Attempt[Any]) -> Wake | None:
    """The worker's side of a call: run it, then settle its outcome unless its timeout did first. Returns how to
    wake the waiting caller if the run settled it, else None."""
    core = attempt.core
    clock = core.clock
    begin = clock()
    try:
        attempt.value = attempt.fn(*attempt.args, **attempt.kwargs)
    except BaseException as error:
        end = clock()
        attempt.error = error
        event = raised_event(error, end - begin, math.inf, core.ignored, False)  # timeouts: the race decides
    else:
        end = clock()
        event = SUCCESS
    attempt.event = event
    attempt.ran = seconds = end - begin
    if not claim(attempt.once):  # the timeout settled it first: the run was abandoned, and now it is over
        attempt.error = None  # its late outcome is discarded
        core.finish_abandoned(seconds)
        return None
    admission = attempt.admission
    if event == SUCCESS and attempt.value.__class__ in AWAITABLES:  # an async function's work: it never ran
        attempt.error = awaitable_refused(core, attempt.value)
        attempt.event = NEVER_RAN
        core.withdraw(admission)
        return attempt.done.put
    if event == SUCCESS and core.result_is_failure is not None:  # judged here, outside every lock
        failed = failed_result(core, attempt.value)
        if failed is not None:
            attempt.error = failed
            event = attempt.event = FAILURE
    counts_run = not attempt.COUNTS_CALL or (
        event == FAILURE and attempt.falls_back and isinstance(attempt.error, Exception)
    )
    if event in (SUCCESS, FAILURE) and is_slow(seconds, core.slow_call_duration):
        core.finish_slow(event, admission, end, seconds, RUN if counts_run else BOTH)
    elif event == FAILURE:
        core.fail(admission, end, seconds, RUN if counts_run else BOTH)
    elif counts_run:
        core.finish(event, admission, end, seconds, RUN)
    elif event == SUCCESS:
        core.succeed(admission, end, seconds)
    else:
        core.finish(event, admission, end, seconds, BOTH)
    return attempt.done.put


@inline
def call_in_thread(
    pool: WorkerPool,
    core: Engine,
    fn: Callable[..., T],
    args: Args,
    kwargs: Kwargs,
    fallback: Fallback[T] | None,
    work: Work[Attempt[Any]],
) -> T:
    """Run ``fn(*args, **kwargs)`` on a worker and wait for it at most the timeout. ``work`` is `run_attempt`, or
    the copy of it the generated entries pass, with the engine's steps inlined: the worker runs it."""
    arrived = core.clock()
    admission = core.enter(arrived)
    if admission is not ADMITTED and admission.refused:
        if fallback is None:
            raise refusal(core, admission, arrived)
        return fall_back(core, refusal(core, admission, arrived), args, kwargs, fallback, None)
    attempt = Attempt(core, fn, args, kwargs, admission, fallback is not None)
    try:
        pool.submit(work, attempt)
    except BaseException:
        core.withdraw(admission)
        raise
    timeout = core.timeout
    try:
        attempt.done.get(True, timeout if timeout <= _TIMEOUT_MAX else None)
    except queue.Empty:
        timed_out = core.clock()
        if claim(attempt.once):  # the timeout settles it; the run goes on, holding its ticket
            core.time_out(admission, timed_out, None if fallback is not None else timeout)
            error = timeout_error(core, None)
            if fallback is None:
                raise error from None
            return fall_back(core, error, args, kwargs, fallback, timed_out - timeout)
        attempt.done.get()  # the run settled it as the wait ran out: its outcome stands, and is counted
    return attempt.answer(args, kwargs, fallback)


class FutureAttempt(Attempt[T]):
    """A run started by `go()`: the worker, or the timer at the timeout, resolves its future."""

    __slots__ = ("fallback", "future", "pool", "start", "timer", "timer_entry")
    COUNTS_CALL = False  # the future counts the whole call when it is resolved

    def __init__(
        self,
        pool: WorkerPool,
        timer: Timer,
        core: Engine,
        fn: Callable[..., T],
        admission: Admission,
        fallback: Fallback[T] | None,
        start: float,
    ) -> None:
        super().__init__(core, fn, (), {}, admission, fallback is not None)
        self.pool = pool
        self.timer = timer
        self.fallback = fallback
        self.start = start
        self.future: Future[T] = Future()
        self.future.set_running_or_notify_cancel()  # admitted: it can no longer be cancelled
        self.timer_entry: list[object] | None = None

    def work(self) -> None:
        """On the worker: run, and resolve the future unless the timeout did."""
        settled = run_attempt(self) is not None
        if self.timer_entry is not None:
            self.timer.cancel(self.timer_entry)
        if settled:
            self._resolve(self.event != NEVER_RAN, self.answer, (), {}, self.fallback)

    def expire(self) -> None:
        """On the timer thread: the timeout came."""
        if not claim(self.once):
            return
        self.core.time_out(self.admission, self.core.clock(), None)
        if self.fallback is None:  # nothing to run: resolve here (the future's callbacks run here, as usual)
            self.answer_timeout()
            return
        try:
            self.pool.submit(FutureAttempt.answer_timeout, self)  # the fallback is user code: not on the timer
        except RuntimeError:
            self.answer_timeout()

    def answer_timeout(self) -> None:
        self._resolve(True, self._fall_back, timeout_error(self.core, None))

    def _fall_back(self, error: BaseException) -> T:
        if self.fallback is None:
            raise error
        return fall_back(self.core, error, (), {}, self.fallback, None)

    def _resolve(self, counted: bool, answer: Callable[..., T], *args: Any) -> None:
        """Resolve the future with ``answer(*args)``, after recording the call's duration (from go() to answer)
        if the call is ``counted``."""
        try:
            value = answer(*args)
        except BaseException as error:
            if counted:
                self.core.record_total(self.core.clock() - self.start)
            self.future.set_exception(error)
        else:
            if counted:
                self.core.record_total(self.core.clock() - self.start)
            self.future.set_result(value)


def start_in_thread(
    pool: WorkerPool, timer: Timer, core: Engine, fn: Callable[[], T], fallback: Fallback[T] | None
) -> Future[T]:
    """`go()` in thread isolation: admission is decided here, before the future is returned; the rest happens on
    the worker and the timer."""
    start = core.clock()
    admission = core.enter(start)
    if admission.refused:
        future: Future[T] = Future()
        future.set_running_or_notify_cancel()
        try:
            if fallback is None:
                raise refusal(core, admission, start)
            future.set_result(fall_back(core, refusal(core, admission, start), (), {}, fallback, None))
        except BaseException as error:
            future.set_exception(error)
        return future
    attempt = FutureAttempt(pool, timer, core, fn, admission, fallback, start)
    timeout = core.timeout
    if timeout <= _TIMEOUT_MAX:
        attempt.timer_entry = timer.schedule(timeout, attempt.expire)
    try:
        pool.submit(FutureAttempt.work, attempt)
    except BaseException:
        if attempt.timer_entry is not None:
            timer.cancel(attempt.timer_entry)
        core.withdraw(admission)
        raise
    return attempt.future
