"""`@breaker.command`: one decorator, choosing its driver once, at decoration time."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar, overload

from ._registry import check_callable, check_name
from ._run._generated import async_wrapper, sync_wrapper

__all__ = ["command"]

P = ParamSpec("P")
T = TypeVar("T")


@overload
def command(name: str) -> Callable[[Callable[P, T]], Callable[P, T]]: ...


@overload
def command(
    name: str, *, fallback: Callable[Concatenate[Exception, P], T]
) -> Callable[[Callable[P, T]], Callable[P, T]]: ...


def command(name: str, *, fallback: Callable[..., Any] | None = None) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Decorate a function so that every call to it goes through the command ``name``.

    The wrapper keeps the function's signature and metadata. ``fallback``, if given, is called as
    ``fallback(error, *args, **kwargs)`` with the arguments of the failed call. A coroutine function (also behind
    `functools.partial`, or an object whose ``__call__`` is ``async def``) gets an async wrapper that goes
    through `breaker.do_async`'s path; the choice is made once, here; its fallback may be sync or async.

    Raises:
        TypeError: The name is not a str, or ``fallback`` or the decorated object is not callable.
    """
    check_name(name)
    check_callable("fallback", name, fallback, optional=True)

    def decorate(fn: Callable[P, T]) -> Callable[P, T]:
        check_callable("the decorated object", name, fn)
        if is_async_callable(fn):
            return async_wrapper(name, fn, fallback)  # type: ignore[arg-type, return-value]

        return sync_wrapper(name, fn, fallback)

    return decorate


def is_async_callable(fn: object) -> bool:
    """Whether calling ``fn`` returns a coroutine: an ``async def``, a partial of one, or an async ``__call__``."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    if inspect.iscoroutinefunction(fn):
        return True
    if inspect.isfunction(fn) or inspect.ismethod(fn) or isinstance(fn, type):
        return False
    return inspect.iscoroutinefunction(getattr(fn, "__call__", None))  # noqa: B004 - the method itself
