"""The async driver: runs a call through its circuit inline in the awaiting task. The only module importing asyncio.

The run is awaited in the caller's own task under ``asyncio.timeout``, so a timeout cancels it for real and the
ticket comes back only once it has finished unwinding: async runs are never abandoned. Sync and async callers of
one name share one circuit: the same tickets, window, state and probe.

Nothing here blocks the event loop. The usual paths take no lock (`Circuit.try_enter`, the lock-free success
count); when the circuit's lock is needed, `_hold` takes it without blocking, yielding to the loop while a thread
holds it (for microseconds). No lock is ever held across an await.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import math
import sys
import types
from collections.abc import Awaitable, Callable, Coroutine
from math import trunc  # for a positive float, int() but cheaper: a plain function, not a type call
from typing import Any, ParamSpec, TypeVar, cast

from . import _registry
from ._circuit import SHORT_CIRCUITED, Circuit
from ._errors import CircuitOpenError, CommandTimeoutError, FallbackError, MaxConcurrencyError
from ._events import (
    BAD_REQUEST,
    CANCELLED,
    FAILURE,
    FALLBACK_FAILURE,
    FALLBACK_SUCCESS,
    SUCCESS,
    TIMEOUT,
    State,
)
from ._execute import _EMPTY, _STALE, Args, Kwargs
from ._latency import BOUNDS, EDGE, FINE, FINE_SCALE, both_counter, bucket_of, record_both, record_run, record_total
from ._observe import NotAwaitable, Watch
from ._registry import check_callable, circuit_for

__all__ = ["async_wrapper", "do_async"]

T = TypeVar("T")
P = ParamSpec("P")
_INF = math.inf  # one global load on the hot path, not a global and an attribute
_Coroutine = types.CoroutineType  # the usual awaitable: checked by identity before inspect.isawaitable

if sys.version_info >= (3, 11):
    _timeout = asyncio.timeout
else:  # pragma: no cover - Python 3.10
    _timeout = None


async def _hold(circuit: Circuit) -> bool:
    """Take the circuit's lock without blocking the loop.

    Returns:
        Whether the task was cancelled while it waited: the caller finishes its bookkeeping (which must not be
        lost) and then raises `asyncio.CancelledError` itself.
    """
    lock = circuit._lock
    cancelled = False
    while not lock.acquire(False):  # held by a thread, for a few bytecodes: let it run
        try:
            await asyncio.sleep(0)
        except asyncio.CancelledError:  # noqa: PERF203 - the loop turns only while a thread holds the lock
            cancelled = True
    return cancelled


def _emit(circuit: Circuit, transition: tuple[State, State] | None) -> None:
    if transition is not None:
        circuit._deliver()


async def _admit(circuit: Circuit, now: float) -> int:
    cancelled = await _hold(circuit)
    try:
        code, transition = circuit._admit(now)
    finally:
        circuit._lock.release()
    _emit(circuit, transition)
    if cancelled:
        if code >= 0:
            await _finish(circuit, CANCELLED, code, now)
        raise asyncio.CancelledError
    return code


async def _count(circuit: Circuit, slot: int) -> None:
    cancelled = await _hold(circuit)
    try:
        circuit._add(slot, circuit.clock())
    finally:
        circuit._lock.release()
    if cancelled:
        raise asyncio.CancelledError


async def _fall_back(
    circuit: Circuit, error: BaseException, args: Args, kwargs: Kwargs, fallback: Callable[..., Any] | None
) -> Any:
    if fallback is None:
        try:
            raise error
        finally:
            del error
    try:
        value = fallback(error, *args, **kwargs)
        if inspect.isawaitable(value):
            value = await value
    except asyncio.CancelledError:
        raise  # the caller was cancelled while an async fallback ran: not the fallback's failure
    except Exception as fallback_error:
        await _count(circuit, FALLBACK_FAILURE)
        raise FallbackError(circuit.name, error, fallback_error) from fallback_error
    except BaseException:
        await _count(circuit, FALLBACK_FAILURE)
        raise
    await _count(circuit, FALLBACK_SUCCESS)
    return value


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
    circuit = circuit_for(name)[1]
    if circuit.collectors:
        return cast(T, await observed_async(circuit, run, (), _EMPTY, fallback))
    fn, args, kwargs = run, (), _EMPTY
    # -- the async caller path: one text in do_async(), async_wrapper() and call_here_async(); a test checks --
    clock = circuit.clock
    start = clock()
    probe = 0
    tokens = circuit._tokens
    if circuit._gate:  # `Circuit.try_enter`, inlined
        try:
            tokens.pop()
        except IndexError:
            probe = await _admit(circuit, start)
        else:
            if not circuit._gate:  # opened as we took the ticket: let the lock decide
                tokens.append(1)
                probe = await _admit(circuit, start)
    elif circuit.short_circuit(start):
        probe = SHORT_CIRCUITED
    else:
        probe = await _admit(circuit, start)
    if probe < 0:
        refusal: CircuitOpenError | MaxConcurrencyError
        if probe == SHORT_CIRCUITED:
            refusal = CircuitOpenError(circuit.name)
        else:
            refusal = MaxConcurrencyError(circuit.name, circuit.settings.max_concurrent_requests)
        return cast(T, await _fall_back(circuit, refusal, args, kwargs, fallback))
    timeout = circuit.timeout
    deadline = None
    try:
        awaitable = fn(*args, **kwargs)
        if awaitable.__class__ is not _Coroutine and not inspect.isawaitable(awaitable):
            raise NotAwaitable(awaitable)
        if timeout == _INF:
            value = await awaitable
        elif _timeout is not None:
            deadline = _timeout(timeout)
            async with deadline:
                value = await awaitable
        else:  # pragma: no cover - Python 3.10: no asyncio.timeout
            value = await asyncio.wait_for(awaitable, timeout)
    except NotAwaitable as bad:
        await _withdraw(circuit, probe)
        raise TypeError(
            f"command {circuit.name!r}: run must return an awaitable for an async call, "
            f"got {type(bad.value).__name__} {bad.value!r}"
        ) from None
    except asyncio.CancelledError:
        # The caller was cancelled (or its own enclosing timeout fired): never swallowed, no fallback.
        with contextlib.suppress(asyncio.CancelledError):  # cancelled again while recording: re-raise the first
            await _finish(circuit, CANCELLED, probe, clock())
        raise
    except Exception as error:
        end = clock()
        if circuit.ignored and isinstance(error, circuit.ignored):
            await _finish(circuit, BAD_REQUEST, probe, end)
            record_both(circuit, end - start)  # no fallback runs for a bad request
            raise
        if (deadline is not None and deadline.expired()) or end - start > timeout:
            await _finish(circuit, TIMEOUT, probe, end)
            timeout_error = CommandTimeoutError(circuit.name, timeout)
            if not (deadline is not None and deadline.expired()):
                timeout_error.__cause__ = error  # the run failed on its own, after its deadline
            return cast(T, await _fall_back_timed(circuit, timeout_error, args, kwargs, fallback, start, end))
        await _finish(circuit, FAILURE, probe, end)
        return cast(T, await _fall_back_timed(circuit, error, args, kwargs, fallback, start, end))
    except BaseException:
        end = clock()
        await _finish(circuit, FAILURE, probe, end)
        record_both(circuit, end - start)
        raise
    end = clock()
    elapsed = end - start
    if elapsed > timeout:  # the run ignored its cancellation and returned late
        await _finish(circuit, TIMEOUT, probe, end)
        late = CommandTimeoutError(circuit.name, timeout)
        return cast(T, await _fall_back_timed(circuit, late, args, kwargs, fallback, start, end))
    rolling = circuit._rolling
    if probe:
        await _finish(circuit, SUCCESS, probe, end)
        record_both(circuit, elapsed)  # after counting, which turns the window over if due
        return value
    if end < rolling.end and not circuit._watch:  # the lock-free success count, as in the sync driver
        next(rolling.success)
    else:
        await _finish(circuit, SUCCESS, 0, end, ticket=False)
    # After counting, which turns the window over if due: the duration then lands in the current bucket.
    try:  # the run's duration is the call's: `_latency.record_both`, inlined
        i = FINE[trunc(elapsed * FINE_SCALE - EDGE)]
    except IndexError:  # 13 ms or more: search the bounds
        i = bucket_of(BOUNDS, elapsed)
    lat = rolling.lat  # read after the last call (`_latency.record_both`); a turnover updates it
    next(lat[i] or both_counter(circuit, i))
    if circuit._debt:
        await _finish_repay(circuit)
    else:
        tokens.append(1)
    return value
    # -- end of the async caller path --


def async_wrapper(
    name: str, fn: Callable[P, Awaitable[T]], fallback: Callable[..., Any] | None
) -> Callable[P, Coroutine[Any, Any, T]]:
    """The wrapper `@breaker.command` puts around a coroutine function.

    The caller path is `do_async`'s text, copied rather than awaited: one more coroutine (created, and awaited)
    per call costs about as much as the path's whole bookkeeping. A test keeps the two copies identical.
    """
    circuit = _STALE  # the circuit of ``name``, cached until flush() or a registry swap makes it stale

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        nonlocal circuit
        if not circuit.inline_async:  # stale (flushed, or from another registry), or collectors to report to
            if not circuit.live:
                circuit = _registry._current.get_circuit(name)[0]
            if circuit.collectors:
                return cast(T, await observed_async(circuit, fn, args, kwargs, fallback))
        # -- the async caller path: one text in do_async(), async_wrapper() and call_here_async(); a test checks --
        clock = circuit.clock
        start = clock()
        probe = 0
        tokens = circuit._tokens
        if circuit._gate:  # `Circuit.try_enter`, inlined
            try:
                tokens.pop()
            except IndexError:
                probe = await _admit(circuit, start)
            else:
                if not circuit._gate:  # opened as we took the ticket: let the lock decide
                    tokens.append(1)
                    probe = await _admit(circuit, start)
        elif circuit.short_circuit(start):
            probe = SHORT_CIRCUITED
        else:
            probe = await _admit(circuit, start)
        if probe < 0:
            refusal: CircuitOpenError | MaxConcurrencyError
            if probe == SHORT_CIRCUITED:
                refusal = CircuitOpenError(circuit.name)
            else:
                refusal = MaxConcurrencyError(circuit.name, circuit.settings.max_concurrent_requests)
            return cast(T, await _fall_back(circuit, refusal, args, kwargs, fallback))
        timeout = circuit.timeout
        deadline = None
        try:
            awaitable = fn(*args, **kwargs)
            if awaitable.__class__ is not _Coroutine and not inspect.isawaitable(awaitable):
                raise NotAwaitable(awaitable)
            if timeout == _INF:
                value = await awaitable
            elif _timeout is not None:
                deadline = _timeout(timeout)
                async with deadline:
                    value = await awaitable
            else:  # pragma: no cover - Python 3.10: no asyncio.timeout
                value = await asyncio.wait_for(awaitable, timeout)
        except NotAwaitable as bad:
            await _withdraw(circuit, probe)
            raise TypeError(
                f"command {circuit.name!r}: run must return an awaitable for an async call, "
                f"got {type(bad.value).__name__} {bad.value!r}"
            ) from None
        except asyncio.CancelledError:
            # The caller was cancelled (or its own enclosing timeout fired): never swallowed, no fallback.
            with contextlib.suppress(asyncio.CancelledError):  # cancelled again while recording: re-raise the first
                await _finish(circuit, CANCELLED, probe, clock())
            raise
        except Exception as error:
            end = clock()
            if circuit.ignored and isinstance(error, circuit.ignored):
                await _finish(circuit, BAD_REQUEST, probe, end)
                record_both(circuit, end - start)  # no fallback runs for a bad request
                raise
            if (deadline is not None and deadline.expired()) or end - start > timeout:
                await _finish(circuit, TIMEOUT, probe, end)
                timeout_error = CommandTimeoutError(circuit.name, timeout)
                if not (deadline is not None and deadline.expired()):
                    timeout_error.__cause__ = error  # the run failed on its own, after its deadline
                return cast(T, await _fall_back_timed(circuit, timeout_error, args, kwargs, fallback, start, end))
            await _finish(circuit, FAILURE, probe, end)
            return cast(T, await _fall_back_timed(circuit, error, args, kwargs, fallback, start, end))
        except BaseException:
            end = clock()
            await _finish(circuit, FAILURE, probe, end)
            record_both(circuit, end - start)
            raise
        end = clock()
        elapsed = end - start
        if elapsed > timeout:  # the run ignored its cancellation and returned late
            await _finish(circuit, TIMEOUT, probe, end)
            late = CommandTimeoutError(circuit.name, timeout)
            return cast(T, await _fall_back_timed(circuit, late, args, kwargs, fallback, start, end))
        rolling = circuit._rolling
        if probe:
            await _finish(circuit, SUCCESS, probe, end)
            record_both(circuit, elapsed)  # after counting, which turns the window over if due
            return value
        if end < rolling.end and not circuit._watch:  # the lock-free success count, as in the sync driver
            next(rolling.success)
        else:
            await _finish(circuit, SUCCESS, 0, end, ticket=False)
        # After counting, which turns the window over if due: the duration then lands in the current bucket.
        try:  # the run's duration is the call's: `_latency.record_both`, inlined
            i = FINE[trunc(elapsed * FINE_SCALE - EDGE)]
        except IndexError:  # 13 ms or more: search the bounds
            i = bucket_of(BOUNDS, elapsed)
        lat = rolling.lat  # read after the last call (`_latency.record_both`); a turnover updates it
        next(lat[i] or both_counter(circuit, i))
        if circuit._debt:
            await _finish_repay(circuit)
        else:
            tokens.append(1)
        return value
        # -- end of the async caller path --

    return wrapper


async def _fall_back_timed(
    circuit: Circuit,
    error: BaseException,
    args: Args,
    kwargs: Kwargs,
    fallback: Callable[..., Any] | None,
    start: float,
    end: float,
) -> Any:
    """`_fall_back` after a run that took from ``start`` to ``end``: counts its duration, and the call's."""
    if fallback is None:
        record_both(circuit, end - start)
        return await _fall_back(circuit, error, args, kwargs, fallback)
    record_run(circuit, end - start)
    try:
        return await _fall_back(circuit, error, args, kwargs, fallback)
    finally:  # the latency window now: the fallback may have reconfigured it
        record_total(circuit, circuit.clock() - start)


async def observed_async(
    circuit: Circuit, fn: Callable[..., Awaitable[Any]], args: Args, kwargs: Kwargs, fallback: Callable[..., Any] | None
) -> Any:
    """An async call with collectors to report it to (see `_observe`)."""
    watch = Watch(circuit)
    raised: BaseException | None = None
    try:
        return await call_here_async(
            circuit, watch.run_async(fn), args, kwargs, watch.fallback_of(fallback, awaits=True)
        )
    except BaseException as error:
        raised = error
        raise
    finally:
        watch.report(raised)
        del raised  # no frame -> traceback -> error cycle


async def call_here_async(
    circuit: Circuit, fn: Callable[..., Awaitable[T]], args: Args, kwargs: Kwargs, fallback: Callable[..., Any] | None
) -> T:
    """The async caller path as a coroutine function, for `observed_async`. The text of `do_async`'s."""
    # -- the async caller path: one text in do_async(), async_wrapper() and call_here_async(); a test checks --
    clock = circuit.clock
    start = clock()
    probe = 0
    tokens = circuit._tokens
    if circuit._gate:  # `Circuit.try_enter`, inlined
        try:
            tokens.pop()
        except IndexError:
            probe = await _admit(circuit, start)
        else:
            if not circuit._gate:  # opened as we took the ticket: let the lock decide
                tokens.append(1)
                probe = await _admit(circuit, start)
    elif circuit.short_circuit(start):
        probe = SHORT_CIRCUITED
    else:
        probe = await _admit(circuit, start)
    if probe < 0:
        refusal: CircuitOpenError | MaxConcurrencyError
        if probe == SHORT_CIRCUITED:
            refusal = CircuitOpenError(circuit.name)
        else:
            refusal = MaxConcurrencyError(circuit.name, circuit.settings.max_concurrent_requests)
        return cast(T, await _fall_back(circuit, refusal, args, kwargs, fallback))
    timeout = circuit.timeout
    deadline = None
    try:
        awaitable = fn(*args, **kwargs)
        if awaitable.__class__ is not _Coroutine and not inspect.isawaitable(awaitable):
            raise NotAwaitable(awaitable)
        if timeout == _INF:
            value = await awaitable
        elif _timeout is not None:
            deadline = _timeout(timeout)
            async with deadline:
                value = await awaitable
        else:  # pragma: no cover - Python 3.10: no asyncio.timeout
            value = await asyncio.wait_for(awaitable, timeout)
    except NotAwaitable as bad:
        await _withdraw(circuit, probe)
        raise TypeError(
            f"command {circuit.name!r}: run must return an awaitable for an async call, "
            f"got {type(bad.value).__name__} {bad.value!r}"
        ) from None
    except asyncio.CancelledError:
        # The caller was cancelled (or its own enclosing timeout fired): never swallowed, no fallback.
        with contextlib.suppress(asyncio.CancelledError):  # cancelled again while recording: re-raise the first
            await _finish(circuit, CANCELLED, probe, clock())
        raise
    except Exception as error:
        end = clock()
        if circuit.ignored and isinstance(error, circuit.ignored):
            await _finish(circuit, BAD_REQUEST, probe, end)
            record_both(circuit, end - start)  # no fallback runs for a bad request
            raise
        if (deadline is not None and deadline.expired()) or end - start > timeout:
            await _finish(circuit, TIMEOUT, probe, end)
            timeout_error = CommandTimeoutError(circuit.name, timeout)
            if not (deadline is not None and deadline.expired()):
                timeout_error.__cause__ = error  # the run failed on its own, after its deadline
            return cast(T, await _fall_back_timed(circuit, timeout_error, args, kwargs, fallback, start, end))
        await _finish(circuit, FAILURE, probe, end)
        return cast(T, await _fall_back_timed(circuit, error, args, kwargs, fallback, start, end))
    except BaseException:
        end = clock()
        await _finish(circuit, FAILURE, probe, end)
        record_both(circuit, end - start)
        raise
    end = clock()
    elapsed = end - start
    if elapsed > timeout:  # the run ignored its cancellation and returned late
        await _finish(circuit, TIMEOUT, probe, end)
        late = CommandTimeoutError(circuit.name, timeout)
        return cast(T, await _fall_back_timed(circuit, late, args, kwargs, fallback, start, end))
    rolling = circuit._rolling
    if probe:
        await _finish(circuit, SUCCESS, probe, end)
        record_both(circuit, elapsed)  # after counting, which turns the window over if due
        return value
    if end < rolling.end and not circuit._watch:  # the lock-free success count, as in the sync driver
        next(rolling.success)
    else:
        await _finish(circuit, SUCCESS, 0, end, ticket=False)
    # After counting, which turns the window over if due: the duration then lands in the current bucket.
    try:  # the run's duration is the call's: `_latency.record_both`, inlined
        i = FINE[trunc(elapsed * FINE_SCALE - EDGE)]
    except IndexError:  # 13 ms or more: search the bounds
        i = bucket_of(BOUNDS, elapsed)
    lat = rolling.lat  # read after the last call (`_latency.record_both`); a turnover updates it
    next(lat[i] or both_counter(circuit, i))
    if circuit._debt:
        await _finish_repay(circuit)
    else:
        tokens.append(1)
    return value
    # -- end of the async caller path --


async def _finish(circuit: Circuit, slot: int, probe: int, now: float, *, ticket: bool = True) -> None:
    """Record an outcome (and give back the ticket); a cancellation that came meanwhile is raised after."""
    cancelled = await _hold(circuit)
    try:
        transition = circuit._record(slot, probe, now)
        repaid = circuit._repay() if ticket else True
    finally:
        circuit._lock.release()
    if not repaid:
        circuit._tokens.append(1)
    _emit(circuit, transition)
    if cancelled:
        raise asyncio.CancelledError


async def _finish_repay(circuit: Circuit) -> None:
    cancelled = await _hold(circuit)
    try:
        repaid = circuit._repay()
    finally:
        circuit._lock.release()
    if not repaid:
        circuit._tokens.append(1)
    if cancelled:
        raise asyncio.CancelledError


async def _withdraw(circuit: Circuit, probe: int) -> None:
    """Give back the ticket (and the probe slot) of a call that never ran; nothing is counted."""
    cancelled = await _hold(circuit)
    try:
        if probe and probe == circuit._probe_id:
            circuit._probe_in_flight = False
        repaid = circuit._repay()
    finally:
        circuit._lock.release()
    if not repaid:
        circuit._tokens.append(1)
    if cancelled:
        raise asyncio.CancelledError
