"""Caller isolation: the call runs on the caller's own thread, with no hand-off.

`call` is the one text of this path. `breaker.do` and the sync wrapper of `@breaker.command` run it inlined, with
the engine's hot steps inlined into it as well, from `breaker._run._generated`, which ``tools/generate.py`` makes
from this module (see `breaker._run.entries`). A run that outlasts its timeout cannot be interrupted here: it is
a timeout when it returns.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from breaker._core.engine import Engine
from breaker._core.errors import FailedResultError
from breaker._core.events import BAD_REQUEST, FAILURE, SUCCESS, TIMEOUT
from breaker._core.inline import inline
from breaker._core.latency import BOTH, RUN
from breaker._core.outcome import ADMITTED, Admission, failed_result, in_time, is_slow, raised_event, refusal

from .answer import AWAITABLES, Args, Fallback, Kwargs, awaitable_refused, fall_back, timeout_error

__all__ = ["call", "settle_returned"]

T = TypeVar("T")


@inline
def call(core: Engine, fn: Callable[..., T], args: Args, kwargs: Kwargs, fallback: Fallback[T] | None) -> T:
    """Run ``fn(*args, **kwargs)`` through ``core``'s circuit on this thread and answer the call."""
    clock = core.clock
    start = clock()
    admission = core.enter(start)
    if admission is not ADMITTED and admission.refused:
        if fallback is None:
            raise refusal(core, admission, start)
        return fall_back(core, refusal(core, admission, start), args, kwargs, fallback, None)
    try:
        value = fn(*args, **kwargs)
    except BaseException as error:
        end = clock()
        seconds = end - start
        event = raised_event(error, seconds, core.timeout, core.ignored, False)
        if event == FAILURE and (fallback is None or not isinstance(error, Exception)):  # the common failure
            core.fail(admission, end, seconds, BOTH)
            raise  # the run's own exception, unchanged: no fallback runs
        answered = fallback is None or event == BAD_REQUEST or not isinstance(error, Exception)  # no fallback runs
        if event == FAILURE:
            core.fail(admission, end, seconds, RUN)
        else:
            core.finish(event, admission, end, seconds, BOTH if answered else RUN)
        if answered:
            if event == TIMEOUT:
                raise timeout_error(core, error)  # noqa: B904 - its cause is set: the run's own error
            raise  # the run's own exception, unchanged
        assert fallback is not None  # else the call was answered above
        return fall_back(core, error if event == FAILURE else timeout_error(core, error), args, kwargs, fallback, start)
    if value.__class__ in AWAITABLES:  # an async function's work, never awaited: it never ran
        core.withdraw(admission)
        raise awaitable_refused(core, value)
    end = clock()
    seconds = end - start
    if seconds <= core.plain_until:  # in time, not slow, no result to judge: the plain success
        core.succeed(admission, end, seconds)
        return value
    return settle_returned(core, admission, value, start, end, seconds, args, kwargs, fallback)


def settle_returned(
    core: Engine,
    admission: Admission,
    value: T,
    start: float,
    end: float,
    seconds: float,
    args: Args,
    kwargs: Kwargs,
    fallback: Fallback[T] | None,
) -> T:
    """Answer a run that returned ``value`` after ``seconds``, but not plainly: after its timeout (a timeout, its
    value discarded), slow (``slow`` counted beside its event), or with a value ``result_is_failure`` judges."""
    if not in_time(seconds, core.timeout):
        if fallback is None:
            core.finish(TIMEOUT, admission, end, seconds)
            raise timeout_error(core, None)
        core.finish(TIMEOUT, admission, end, seconds, RUN)
        return fall_back(core, timeout_error(core, None), args, kwargs, fallback, start)
    error = failed_result(core, value)
    if error is None:
        if not is_slow(seconds, core.slow_call_duration):
            core.succeed(admission, end, seconds)
        else:
            core.finish_slow(SUCCESS, admission, end, seconds)
        return value
    answered = fallback is None or not isinstance(error, Exception)  # no fallback runs
    core.fail(admission, end, seconds, BOTH if answered else RUN)
    if not answered:
        assert fallback is not None
        return fall_back(core, error, args, kwargs, fallback, start)
    if isinstance(error, FailedResultError):
        return value  # a failed result, and no fallback: the caller gets the result unchanged
    raise error
