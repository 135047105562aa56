"""`@breaker.command`: one decorator, choosing its driver once, at decoration time."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar, overload

from . import _registry
from ._api import check_callable
from ._circuit import Circuit
from ._execute import call_in_caller, call_in_thread
from ._registry import check_name

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
    ``fallback(error, *args, **kwargs)`` with the arguments of the failed call.

    Raises:
        TypeError: The name is not a str, or ``fallback`` or the decorated object is not callable.
    """
    check_name(name)
    check_callable("fallback", name, fallback, optional=True)

    def decorate(fn: Callable[P, T]) -> Callable[P, T]:
        check_callable("the decorated object", name, fn)

        circuit: Circuit | None = None  # cached until flush() or a registry swap makes it stale

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            nonlocal circuit
            current = circuit
            if current is None or not current.live:
                current = circuit = _registry._current.get_circuit(name)[0]
            result: T  # the fallback is typed loosely above; a typed local costs nothing, unlike cast()
            if current.threaded:
                result = call_in_thread(_registry._current, current, fn, args, kwargs, fallback)
            else:
                result = call_in_caller(current, fn, args, kwargs, fallback)
            return result

        return wrapper

    return decorate
