"""Where a call enters the library: `do`, `do_async`, `go`, and the wrappers `@breaker.command` makes.

Each looks its circuit up, sends a call that must take a detour (thread isolation, or collectors to report it to)
to the driver for it, and runs the inline driver otherwise: `breaker._run.caller.call` for sync calls,
`breaker._run.aio.call_async` for async ones. What users call is `breaker._run._generated`, which
``tools/generate.py`` makes from this module: the same functions with the inline drivers and the engine's hot
steps copied into them (one Python frame costs as much as a call's whole bookkeeping). CI fails if it is stale.
This module is the source, and it runs as it is too: the tests drive both.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Future
from typing import Any, ParamSpec, TypeVar, cast

from breaker import _registry
from breaker._core.engine import Engine
from breaker._registry import Registry, check_callable

from .aio import call_async
from .answer import EMPTY, Args, Fallback, Kwargs
from .caller import call
from .observe import Watch
from .threaded import Attempt, call_in_thread, run_attempt, start_in_thread
from .workers import Wake

__all__ = ["async_wrapper", "do", "do_async", "go", "sync_wrapper", "work_in_thread"]

T = TypeVar("T")
P = ParamSpec("P")


class _Stale:
    """Stands in for a decorated function's circuit before its first call: never live, so it looks the name up."""

    live = runs_inline = runs_inline_async = False


STALE = cast(Engine, _Stale())


def do(name: str, run: Callable[[], T], fallback: Callable[[Exception], T] | None = None) -> T:
    """Call ``run()`` through the command ``name`` and wait for its outcome.

    Args:
        name: The command; its circuit is created on first use.
        run: A zero-argument callable: the call to the dependency.
        fallback: Called as ``fallback(error)`` when the call fails, times out, is short-circuited or rejected;
            its return value becomes the call's value.

    Returns:
        ``run()``'s value, or the fallback's.

    Raises:
        CircuitOpenError: The circuit is open and there is no fallback.
        MaxConcurrencyError: No ticket was free and there is no fallback.
        CommandTimeoutError: The run outlasted the timeout and there is no fallback.
        FallbackError: The fallback raised.
        TypeError: ``run`` or ``fallback`` is not callable (nothing is counted).
        Exception: The run's own exception, unchanged, when there is no fallback, or when it is one of the
            command's ``ignored_exceptions``.
    """
    if not callable(run) or (fallback is not None and not callable(fallback)):
        check_callable("run", name, run)
        check_callable("fallback", name, fallback, optional=True)
    registry = _registry.current
    core = registry.engines.get(name) if type(name) is str else None  # exactly a str: a fake __class__ cannot pass
    if core is None:
        core = registry.engine(name)
    if not core.called_sync:  # the circuit's first sync call: `statistics().isolation` tells
        core.called_sync = True
    if core.runs_elsewhere:  # thread isolation, or collectors to report to
        if core.collectors:
            return observed(registry, core, run, (), EMPTY, fallback)
        return call_in_thread(registry.pool, core, run, (), {}, fallback, work_in_thread)
    return call(core, run, (), {}, fallback)


def sync_wrapper(name: str, fn: Callable[P, T], fallback: Fallback[T] | None) -> Callable[P, T]:
    """The wrapper `@breaker.command` puts around a sync function: the circuit is cached until it goes stale."""
    core = STALE

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        nonlocal core
        if not core.runs_inline:  # stale (flushed, or from another registry), or a call that detours
            if not core.live:
                core = _registry.current.engine(name)
                core.called_sync = True  # once per circuit this wrapper uses: `statistics().isolation` tells
            if core.runs_elsewhere:  # thread isolation, or collectors to report to
                registry = _registry.current
                if core.collectors:
                    result: T = observed(registry, core, fn, args, kwargs, fallback)
                    return result
                return call_in_thread(registry.pool, core, fn, args, kwargs, fallback, work_in_thread)
        engine = core  # a local from here on: cheaper to read than the closure's cell
        return call(engine, fn, args, kwargs, fallback)

    return wrapper


def work_in_thread(attempt: Attempt[Any]) -> Wake | None:
    """What a worker runs for `do` and `sync_wrapper` in thread isolation: `breaker._run.threaded.run_attempt`,
    which the generated module emits with the engine's steps inlined (the worker's side is on the path the caller
    waits on, as much as the caller's)."""
    return run_attempt(attempt)


def observed(
    registry: Registry, core: Engine, fn: Callable[..., T], args: Args, kwargs: Kwargs, fallback: Fallback[T] | None
) -> T:
    """A sync call with collectors to report it to (see `breaker._run.observe`), in either isolation."""
    watch = Watch(core)
    raised: BaseException | None = None
    try:
        run: Callable[..., T] = watch.run(fn)
        observed: Fallback[T] | None = watch.fallback_of(fallback)
        if core.threaded:
            return call_in_thread(registry.pool, core, run, args, kwargs, observed, run_attempt)
        return call(core, run, args, kwargs, observed)
    except BaseException as error:
        raised = error
        raise
    finally:
        watch.report(raised)
        del raised  # no frame -> traceback -> error cycle


async def do_async(
    name: str,
    run: Callable[[], Awaitable[T]],
    fallback: Callable[[Exception], T | Awaitable[T]] | None = None,
) -> T:
    """Await ``run()`` through the command ``name``, in the current task.

    The same circuit, tickets and probe serve sync and async callers of a name. The timeout cancels the run (it is
    awaited in this task under ``asyncio.timeout``) and its ticket comes back once it has finished unwinding.
    If this task is cancelled, `asyncio.CancelledError` propagates, no fallback runs, and a ``cancelled`` event
    (neither a request nor an error) is recorded. ``isolation`` does not apply: async runs are always awaited
    here, on the event loop.

    Args:
        name: The command.
        run: A zero-argument callable returning an awaitable: the call to the dependency.
        fallback: Called as ``fallback(error)``, sync or async, when the call fails, times out, is
            short-circuited or rejected; its (awaited) value becomes the call's value.

    Raises:
        The errors `breaker.do` raises; and TypeError if ``run`` returns something not awaitable (nothing is
        counted).
    """
    if not callable(run) or (fallback is not None and not callable(fallback)):
        check_callable("run", name, run)
        check_callable("fallback", name, fallback, optional=True)
    registry = _registry.current
    core = registry.engines.get(name) if type(name) is str else None  # exactly a str: a fake __class__ cannot pass
    if core is None:
        core = registry.engine(name)
    if not core.called_async:  # the circuit's first async call: `statistics().isolation` tells
        core.called_async = True
    if core.collectors:
        observed: T = await observed_async(core, run, (), EMPTY, fallback)
        return observed
    return await call_async(core, run, (), {}, fallback)


def async_wrapper(
    name: str, fn: Callable[P, Awaitable[T]], fallback: Callable[..., Any] | None
) -> Callable[P, Coroutine[Any, Any, T]]:
    """The wrapper `@breaker.command` puts around a coroutine function."""
    core = STALE

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        nonlocal core
        if not core.runs_inline_async:  # stale (flushed, or from another registry), or collectors to report to
            if not core.live:
                core = _registry.current.engine(name)
                core.called_async = True  # once per circuit this wrapper uses: `statistics().isolation` tells
            if core.collectors:
                observed: T = await observed_async(core, fn, args, kwargs, fallback)
                return observed
        engine = core  # a local from here on: cheaper to read than the closure's cell
        return await call_async(engine, fn, args, kwargs, fallback)

    return wrapper


async def observed_async(
    core: Engine, fn: Callable[..., Awaitable[Any]], args: Args, kwargs: Kwargs, fallback: Callable[..., Any] | None
) -> Any:
    """An async call with collectors to report it to (see `breaker._run.observe`)."""
    watch = Watch(core)
    raised: BaseException | None = None
    try:
        return await call_async(core, watch.run_async(fn), args, kwargs, watch.fallback_of(fallback, awaits=True))
    except BaseException as error:
        raised = error
        raise
    finally:
        watch.report(raised)
        del raised  # no frame -> traceback -> error cycle


def go(name: str, run: Callable[[], T], fallback: Callable[[Exception], T] | None = None) -> Future[T]:
    """Start ``run()`` through the command ``name``; returns a `concurrent.futures.Future` of `do`'s outcome.

    Admission (short-circuit, rejection or a ticket) is decided before this returns. With thread isolation the run
    and a fallback after a failure run on a worker; a fallback after a timeout runs on a worker too. With caller
    isolation the call runs here and the future is already done.

    Raises:
        TypeError: ``run`` or ``fallback`` is not callable (nothing is counted).
    """
    check_callable("run", name, run)
    check_callable("fallback", name, fallback, optional=True)
    registry = _registry.current
    core = registry.engine(name)
    core.called_sync = True  # `statistics().isolation` tells
    if not core.threaded:  # caller isolation: run here, return a done future
        future: Future[T] = Future()
        future.set_running_or_notify_cancel()
        try:
            value = do(name, run, fallback)
        except Exception as error:
            future.set_exception(error)
        else:
            future.set_result(value)
        return future
    if not core.collectors:
        return start_in_thread(registry.pool, registry.timer, core, run, fallback)
    watch = Watch(core)
    future = start_in_thread(registry.pool, registry.timer, core, watch.run(run), watch.fallback_of(fallback))
    report = watch.report
    future.add_done_callback(lambda done: report(done.exception()))  # once resolved, on the thread resolving it
    return future
