"""`@breaker.command`: one decorator, choosing its driver once, at decoration time."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar, overload

from ._registry import check_callable, check_name
from ._run._generated import async_wrapper, sync_wrapper

__all__ = ["check_fallback_signature", "check_not_generator", "command"]

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
        TypeError: The name is not a str; ``fallback`` or the decorated object is not callable; the decorated
            object is a generator or async generator function (its calls return before any of its code runs, so
            nothing it raises could be counted); ``fallback`` cannot be called as ``fallback(error, *args,
            **kwargs)`` with every set of arguments the decorated function accepts (checked from both
            signatures, when both can be read).
    """
    name = check_name(name)  # a str subclass (an enum of names) is taken as its plain text
    check_callable("fallback", name, fallback, optional=True)

    def decorate(fn: Callable[P, T]) -> Callable[P, T]:
        check_callable("the decorated object", name, fn)
        check_not_generator(name, fn)
        if fallback is not None:
            check_fallback_signature(name, fn, fallback)
        if is_async_callable(fn):
            return async_wrapper(name, fn, fallback)  # type: ignore[arg-type, return-value]

        return sync_wrapper(name, fn, fallback)

    return decorate


def is_async_callable(fn: object) -> bool:
    """Whether calling ``fn`` returns a coroutine: an ``async def``, a partial of one, or an async ``__call__``."""
    fn = unwrapped(fn)
    if inspect.iscoroutinefunction(fn):
        return True
    if inspect.isfunction(fn) or inspect.ismethod(fn) or isinstance(fn, type):
        return False
    return inspect.iscoroutinefunction(getattr(fn, "__call__", None))  # noqa: B004 - the method itself


def unwrapped(fn: object) -> object:
    """The function behind ``functools.partial`` layers."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    return fn


def check_not_generator(name: str, fn: object) -> None:
    """Refuse a generator or async generator function: a command cannot guard what runs after the call returned."""
    inner = unwrapped(fn)
    if inspect.isgeneratorfunction(inner) or inspect.isasyncgenfunction(inner):
        kind = "an async generator" if inspect.isasyncgenfunction(inner) else "a generator"
        raise TypeError(
            f"command {name!r}: cannot decorate {getattr(inner, '__qualname__', inner)!r}, {kind} function: its "
            "calls return before any of its code runs, so nothing it raises could count. Decorate a function "
            "that consumes it (for example one returning list(...)) instead"
        )


def check_fallback_signature(name: str, fn: Callable[..., Any], fallback: Callable[..., Any]) -> None:
    """Refuse a ``fallback`` that cannot take ``(error, *args, **kwargs)`` for some call ``fn`` accepts.

    Every call of ``fn`` passes each parameter positionally or by keyword, or leaves out those with defaults:
    the fallback must accept the error plus the required parameters alone, plus all of them positionally, plus
    all of them by keyword (where ``fn`` allows that), and ``*args`` / ``**kwargs`` if ``fn`` takes them. When
    either signature cannot be read (some builtins), nothing is checked.
    """
    try:
        accepts = inspect.signature(fn)
        takes = inspect.signature(fallback)
    except (TypeError, ValueError):
        return
    error = Exception("placeholder")
    shapes: list[tuple[list[object], dict[str, object]]] = [([error], {}), ([error], {}), ([error], {})]
    for parameter in accepts.parameters.values():
        kind, required = parameter.kind, parameter.default is inspect.Parameter.empty
        value = object()
        if kind is inspect.Parameter.VAR_POSITIONAL:
            shapes[1][0].extend([value, value])
        elif kind is inspect.Parameter.VAR_KEYWORD:
            shapes[2][1]["any_keyword_argument"] = value
        elif kind is inspect.Parameter.KEYWORD_ONLY:
            for index in (1, 2) if not required else (0, 1, 2):
                shapes[index][1][parameter.name] = value
        elif kind is inspect.Parameter.POSITIONAL_ONLY:
            for index in (1, 2) if not required else (0, 1, 2):
                shapes[index][0].append(value)
        else:  # positional or keyword
            if required:
                shapes[0][0].append(value)
            shapes[1][0].append(value)
            shapes[2][1][parameter.name] = value
    for args, kwargs in shapes:
        try:
            takes.bind(*args, **kwargs)
        except TypeError as mismatch:  # noqa: PERF203 - at decoration time, three tries at most
            raise TypeError(
                f"command {name!r}: fallback {getattr(fallback, '__qualname__', fallback)!r}{takes} cannot be "
                f"called as fallback(error, *args, **kwargs) for every call of "
                f"{getattr(fn, '__qualname__', fn)!r}{accepts} ({mismatch}): give it the function's parameters "
                "after the error, or *args and **kwargs"
            ) from None
