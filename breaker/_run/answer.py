"""How the sync drivers answer a call that did not succeed: the fallback's value, or the error.

The fallback is called at most once per call, outside every lock, and its outcome is counted
(``fallback-success`` / ``fallback-failure``). If it raises, the caller gets `FallbackError` (raised from the
fallback's exception); a `BaseException` from it propagates as it is.

A sync call whose run returned a coroutine or an asyncio future (an ``async def`` given to `breaker.do`) is
answered with `awaitable_refused`'s `TypeError`: the run never really ran, so the driver withdraws the call and
nothing is counted. The check is one class lookup in `AWAITABLES`; other awaitables (any object with
``__await__``) would cost a slower check on every call and are returned as values.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar

from breaker._core.engine import Engine
from breaker._core.errors import CommandTimeoutError, FallbackError
from breaker._core.events import FALLBACK_FAILURE, FALLBACK_SUCCESS

__all__ = ["AWAITABLES", "EMPTY", "Args", "Fallback", "Kwargs", "awaitable_refused", "fall_back", "timeout_error"]

T = TypeVar("T")

Args = tuple[Any, ...]
Kwargs = Mapping[str, Any]
Fallback = Callable[..., T]

#: The keyword arguments of a call that has none (never changed).
EMPTY: Mapping[str, Any] = {}

#: What a sync run must not return: it would be an async call's work, never awaited (C and Python classes both).
AWAITABLES: Final = frozenset(
    {
        types.CoroutineType,
        asyncio.Future,
        asyncio.Task,
        getattr(asyncio.futures, "_PyFuture", asyncio.Future),
        getattr(asyncio.tasks, "_PyTask", asyncio.Task),
    }
)


def awaitable_refused(core: Engine, value: object) -> TypeError:
    """The error for a sync call whose run returned ``value``, one of `AWAITABLES`; a coroutine is closed, so
    that it is not reported as never awaited."""
    if isinstance(value, types.CoroutineType):
        value.close()
    return TypeError(
        f"command {core.name!r}: run returned {type(value).__name__} {value!r}, which a sync call cannot await: "
        "use `await breaker.do_async(...)` (or decorate the async function) for async work"
    )


def fall_back(
    core: Engine, error: BaseException, args: Args, kwargs: Kwargs, fallback: Fallback[T], start: float | None
) -> T:
    """The fallback's answer to a call that failed with ``error``. ``start``: when the call began, to count its
    whole duration (None: it never ran, so it has none)."""
    try:
        value = fallback(error, *args, **kwargs)
    except Exception as fallback_error:
        _count(core, FALLBACK_FAILURE, start)
        raise FallbackError(core.name, error, fallback_error) from fallback_error
    except BaseException:
        _count(core, FALLBACK_FAILURE, start)
        raise
    _count(core, FALLBACK_SUCCESS, start)
    return value


def _count(core: Engine, event: int, start: float | None) -> None:
    now = core.clock()
    core.count_fallback(event, now, None if start is None else now - start)


def timeout_error(core: Engine, cause: BaseException | None) -> CommandTimeoutError:
    """The error of a call whose run outlasted its timeout (``cause``: what the run raised, if it did)."""
    error = CommandTimeoutError(core.name, core.timeout)
    error.__cause__ = cause
    return error
