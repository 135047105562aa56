"""The sync driver: runs a call through its circuit, on the caller's thread or on a worker.

Thread isolation races the run (on a worker) against the timeout (the caller's wait in `call_in_thread`, the
timer for `start_in_thread`). The circuit's once-guard (`Circuit.finish` / `Circuit.time_out`) lets exactly one
side decide the outcome; the ticket is back, and the outcome counted, before the caller is woken.
"""

from __future__ import annotations

import functools
import queue
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from math import trunc  # for a positive float, int() but cheaper: a plain function, not a type call
from typing import Any, Generic, ParamSpec, TypeVar, cast

from . import _registry
from ._circuit import SHORT_CIRCUITED, Circuit
from ._errors import CircuitOpenError, CommandTimeoutError, FallbackError, MaxConcurrencyError
from ._events import BAD_REQUEST, FAILURE, FALLBACK_FAILURE, FALLBACK_SUCCESS, SUCCESS, TIMEOUT
from ._latency import BOUNDS, EDGE, FINE, FINE_SCALE, both_counter, bucket_of, record_both, record_run, record_total
from ._observe import Watch
from ._registry import Registry, check_callable, circuit_for

__all__ = ["call_in_thread", "do", "start_in_thread", "sync_wrapper"]

T = TypeVar("T")
P = ParamSpec("P")

Args = tuple[Any, ...]
Kwargs = Mapping[str, Any]
Fallback = Callable[..., T]

_TIMEOUT_MAX = threading.TIMEOUT_MAX
_EMPTY: Mapping[str, Any] = {}


class _Stale:
    live = inline = inline_async = False


_STALE = cast(Circuit, _Stale())  # a cached circuit that is never live: the first call looks the name up


def fall_back(circuit: Circuit, error: BaseException, args: Args, kwargs: Kwargs, fallback: Fallback[T] | None) -> T:
    """Answer a failed call: the fallback's value, or raise ``error`` (no fallback) or `FallbackError`."""
    if fallback is None:
        try:
            raise error
        finally:
            del error  # no frame -> traceback -> error cycle
    try:
        value = fallback(error, *args, **kwargs)
    except Exception as fallback_error:
        circuit.count(FALLBACK_FAILURE, circuit.clock())
        raise FallbackError(circuit.name, error, fallback_error) from fallback_error
    except BaseException:
        circuit.count(FALLBACK_FAILURE, circuit.clock())
        raise
    circuit.count(FALLBACK_SUCCESS, circuit.clock())
    return value


def refused(circuit: Circuit, code: int, args: Args, kwargs: Kwargs, fallback: Fallback[T] | None) -> T:
    """Answer a call that was not admitted (already counted by `Circuit.admit`)."""
    error: CircuitOpenError | MaxConcurrencyError
    if code == SHORT_CIRCUITED:
        error = CircuitOpenError(circuit.name)
    else:
        error = MaxConcurrencyError(circuit.name, circuit.settings.max_concurrent_requests)
    return fall_back(circuit, error, args, kwargs, fallback)


def fall_back_timed(
    circuit: Circuit,
    error: BaseException,
    args: Args,
    kwargs: Kwargs,
    fallback: Fallback[T] | None,
    start: float,
    end: float,
) -> T:
    """`fall_back` after a run that took from ``start`` to ``end``: counts its duration, and the call's."""
    if fallback is None:
        record_both(circuit, end - start)
        return fall_back(circuit, error, args, kwargs, fallback)
    record_run(circuit, end - start)
    try:
        return fall_back(circuit, error, args, kwargs, fallback)
    finally:  # the latency window now: the fallback may have reconfigured it
        record_total(circuit, circuit.clock() - start)


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
    registry = _registry._current
    circuit = registry.circuits.get(name) if name.__class__ is str else None
    if circuit is None:
        registry, circuit = circuit_for(name)
    if circuit.detour:
        if circuit.collectors:
            return detour(registry, circuit, run, (), _EMPTY, fallback)
        return call_in_thread(registry, circuit, run, (), _EMPTY, fallback)
    fn, args, kwargs = run, (), _EMPTY
    # -- the caller path: the same text in do(), sync_wrapper() and call_here(); tests/test_execute.py checks it --
    clock = circuit.clock
    start = clock()
    probe = 0
    tokens = circuit._tokens
    if circuit._gate:
        try:
            tokens.pop()
        except IndexError:
            probe = circuit.admit(start)
        else:
            if not circuit._gate:  # opened as we took the ticket: let the lock decide
                tokens.append(1)
                probe = circuit.admit(start)
    elif circuit.short_circuit(start):
        if fallback is None:
            raise CircuitOpenError(circuit.name)
        return fall_back(circuit, CircuitOpenError(circuit.name), args, kwargs, fallback)
    else:
        probe = circuit.admit(start)
    if probe < 0:
        return refused(circuit, probe, args, kwargs, fallback)
    try:
        value = fn(*args, **kwargs)
    except Exception as error:
        end = clock()
        elapsed = end - start
        if circuit.ignored and isinstance(error, circuit.ignored):
            circuit.complete(BAD_REQUEST, probe, end)
            record_both(circuit, elapsed)  # no fallback runs for a bad request
            raise
        if elapsed > circuit.timeout:
            circuit.complete(TIMEOUT, probe, end)
            timeout_error = CommandTimeoutError(circuit.name, circuit.timeout)
            timeout_error.__cause__ = error
            return fall_back_timed(circuit, timeout_error, args, kwargs, fallback, start, end)
        if probe:
            circuit.complete(FAILURE, probe, end)
            rolling = circuit._rolling
        else:
            rolling = circuit._rolling  # just before counting: no call in between (`_latency.record_both`)
            if end >= rolling.end:
                circuit.fail(end)
            elif rolling.errors + next(rolling.failure) >= circuit._error_budget:  # `Circuit.fail`, inlined
                circuit.check_health(end)
            if circuit._debt:
                circuit.give_back()
            else:
                tokens.append(1)
        if fallback is None:
            # After counting, which turns the window over if due: the duration then lands in the current bucket.
            try:  # the run's duration is the call's: `_latency.record_both`, inlined
                i = FINE[trunc(elapsed * FINE_SCALE - EDGE)]
            except IndexError:  # 13 ms or more: search the bounds
                i = bucket_of(BOUNDS, elapsed)
            lat = rolling.lat  # read after the last call (`_latency.record_both`); a turnover updates it
            next(lat[i] or both_counter(circuit, i))
            raise  # the run's own exception, unchanged
        return fall_back_timed(circuit, error, args, kwargs, fallback, start, end)
    except BaseException:
        end = clock()
        circuit.complete(FAILURE, probe, end)
        record_both(circuit, end - start)
        raise
    end = clock()
    elapsed = end - start
    if elapsed > circuit.timeout:
        circuit.complete(TIMEOUT, probe, end)
        timeout_error = CommandTimeoutError(circuit.name, circuit.timeout)
        return fall_back_timed(circuit, timeout_error, args, kwargs, fallback, start, end)
    rolling = circuit._rolling
    if probe:
        circuit.complete(SUCCESS, probe, end)
        record_both(circuit, elapsed)  # after counting, which turns the window over if due
        return value
    if end < rolling.end:  # `Circuit.count_success`, inlined
        next(rolling.success)  # atomic: no lock
        if circuit._watch:
            circuit.check_health(end)
    else:
        circuit.count_success(end)
    # After counting, which turns the window over if due: the duration then lands in the current bucket.
    try:  # the run's duration is the call's: `_latency.record_both`, inlined
        i = FINE[trunc(elapsed * FINE_SCALE - EDGE)]
    except IndexError:  # 13 ms or more: search the bounds
        i = bucket_of(BOUNDS, elapsed)
    lat = rolling.lat  # read after the last call (`_latency.record_both`); a turnover updates it
    next(lat[i] or both_counter(circuit, i))
    if circuit._debt:
        circuit.give_back()
    else:
        tokens.append(1)
    return value
    # -- end of the caller path --


def sync_wrapper(name: str, fn: Callable[P, T], fallback: Fallback[T] | None) -> Callable[P, T]:
    """The wrapper `@breaker.command` puts around a sync function.

    Caller isolation runs inline, here: the text of the caller path is `do`'s, copied rather than called,
    because one more Python frame (for the call, and for an exception to unwind through) costs as much as the
    whole path's bookkeeping. A test keeps the two copies identical.
    """
    circuit = _STALE  # the circuit of ``name``, cached until flush() or a registry swap makes it stale

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        nonlocal circuit
        if not circuit.inline:  # stale (flushed, or from another registry), or a call that detours
            if not circuit.live:
                circuit = _registry._current.get_circuit(name)[0]
            if circuit.detour:
                if circuit.collectors:
                    result: T = detour(_registry._current, circuit, fn, args, kwargs, fallback)
                    return result
                return call_in_thread(_registry._current, circuit, fn, args, kwargs, fallback)
        # -- the caller path: the same text in do(), sync_wrapper() and call_here(); tests/test_execute.py checks it --
        clock = circuit.clock
        start = clock()
        probe = 0
        tokens = circuit._tokens
        if circuit._gate:
            try:
                tokens.pop()
            except IndexError:
                probe = circuit.admit(start)
            else:
                if not circuit._gate:  # opened as we took the ticket: let the lock decide
                    tokens.append(1)
                    probe = circuit.admit(start)
        elif circuit.short_circuit(start):
            if fallback is None:
                raise CircuitOpenError(circuit.name)
            return fall_back(circuit, CircuitOpenError(circuit.name), args, kwargs, fallback)
        else:
            probe = circuit.admit(start)
        if probe < 0:
            return refused(circuit, probe, args, kwargs, fallback)
        try:
            value = fn(*args, **kwargs)
        except Exception as error:
            end = clock()
            elapsed = end - start
            if circuit.ignored and isinstance(error, circuit.ignored):
                circuit.complete(BAD_REQUEST, probe, end)
                record_both(circuit, elapsed)  # no fallback runs for a bad request
                raise
            if elapsed > circuit.timeout:
                circuit.complete(TIMEOUT, probe, end)
                timeout_error = CommandTimeoutError(circuit.name, circuit.timeout)
                timeout_error.__cause__ = error
                return fall_back_timed(circuit, timeout_error, args, kwargs, fallback, start, end)
            if probe:
                circuit.complete(FAILURE, probe, end)
                rolling = circuit._rolling
            else:
                rolling = circuit._rolling  # just before counting: no call in between (`_latency.record_both`)
                if end >= rolling.end:
                    circuit.fail(end)
                elif rolling.errors + next(rolling.failure) >= circuit._error_budget:  # `Circuit.fail`, inlined
                    circuit.check_health(end)
                if circuit._debt:
                    circuit.give_back()
                else:
                    tokens.append(1)
            if fallback is None:
                # After counting, which turns the window over if due: the duration then lands in the current bucket.
                try:  # the run's duration is the call's: `_latency.record_both`, inlined
                    i = FINE[trunc(elapsed * FINE_SCALE - EDGE)]
                except IndexError:  # 13 ms or more: search the bounds
                    i = bucket_of(BOUNDS, elapsed)
                lat = rolling.lat  # read after the last call (`_latency.record_both`); a turnover updates it
                next(lat[i] or both_counter(circuit, i))
                raise  # the run's own exception, unchanged
            return fall_back_timed(circuit, error, args, kwargs, fallback, start, end)
        except BaseException:
            end = clock()
            circuit.complete(FAILURE, probe, end)
            record_both(circuit, end - start)
            raise
        end = clock()
        elapsed = end - start
        if elapsed > circuit.timeout:
            circuit.complete(TIMEOUT, probe, end)
            timeout_error = CommandTimeoutError(circuit.name, circuit.timeout)
            return fall_back_timed(circuit, timeout_error, args, kwargs, fallback, start, end)
        rolling = circuit._rolling
        if probe:
            circuit.complete(SUCCESS, probe, end)
            record_both(circuit, elapsed)  # after counting, which turns the window over if due
            return value
        if end < rolling.end:  # `Circuit.count_success`, inlined
            next(rolling.success)  # atomic: no lock
            if circuit._watch:
                circuit.check_health(end)
        else:
            circuit.count_success(end)
        # After counting, which turns the window over if due: the duration then lands in the current bucket.
        try:  # the run's duration is the call's: `_latency.record_both`, inlined
            i = FINE[trunc(elapsed * FINE_SCALE - EDGE)]
        except IndexError:  # 13 ms or more: search the bounds
            i = bucket_of(BOUNDS, elapsed)
        lat = rolling.lat  # read after the last call (`_latency.record_both`); a turnover updates it
        next(lat[i] or both_counter(circuit, i))
        if circuit._debt:
            circuit.give_back()
        else:
            tokens.append(1)
        return value
        # -- end of the caller path --

    return wrapper


def detour(
    registry: Registry, circuit: Circuit, fn: Callable[..., T], args: Args, kwargs: Kwargs, fallback: Fallback[T] | None
) -> T:
    """A sync call off the inline caller path: thread isolation, or collectors to report it to."""
    if not circuit.collectors:
        return call_in_thread(registry, circuit, fn, args, kwargs, fallback)
    watch = Watch(circuit)
    raised: BaseException | None = None
    try:
        run: Callable[..., T] = watch.run(fn)
        observed: Fallback[T] | None = watch.fallback_of(fallback)
        if circuit.threaded:
            return call_in_thread(registry, circuit, run, args, kwargs, observed)
        return call_here(circuit, run, args, kwargs, observed)
    except BaseException as error:
        raised = error
        raise
    finally:
        watch.report(raised)
        del raised  # no frame -> traceback -> error cycle


def call_here(circuit: Circuit, fn: Callable[..., T], args: Args, kwargs: Kwargs, fallback: Fallback[T] | None) -> T:
    """Caller isolation, as a function: for calls that detour (`call_observed`). The text of `do`'s caller path."""
    # -- the caller path: the same text in do(), sync_wrapper() and call_here(); tests/test_execute.py checks it --
    clock = circuit.clock
    start = clock()
    probe = 0
    tokens = circuit._tokens
    if circuit._gate:
        try:
            tokens.pop()
        except IndexError:
            probe = circuit.admit(start)
        else:
            if not circuit._gate:  # opened as we took the ticket: let the lock decide
                tokens.append(1)
                probe = circuit.admit(start)
    elif circuit.short_circuit(start):
        if fallback is None:
            raise CircuitOpenError(circuit.name)
        return fall_back(circuit, CircuitOpenError(circuit.name), args, kwargs, fallback)
    else:
        probe = circuit.admit(start)
    if probe < 0:
        return refused(circuit, probe, args, kwargs, fallback)
    try:
        value = fn(*args, **kwargs)
    except Exception as error:
        end = clock()
        elapsed = end - start
        if circuit.ignored and isinstance(error, circuit.ignored):
            circuit.complete(BAD_REQUEST, probe, end)
            record_both(circuit, elapsed)  # no fallback runs for a bad request
            raise
        if elapsed > circuit.timeout:
            circuit.complete(TIMEOUT, probe, end)
            timeout_error = CommandTimeoutError(circuit.name, circuit.timeout)
            timeout_error.__cause__ = error
            return fall_back_timed(circuit, timeout_error, args, kwargs, fallback, start, end)
        if probe:
            circuit.complete(FAILURE, probe, end)
            rolling = circuit._rolling
        else:
            rolling = circuit._rolling  # just before counting: no call in between (`_latency.record_both`)
            if end >= rolling.end:
                circuit.fail(end)
            elif rolling.errors + next(rolling.failure) >= circuit._error_budget:  # `Circuit.fail`, inlined
                circuit.check_health(end)
            if circuit._debt:
                circuit.give_back()
            else:
                tokens.append(1)
        if fallback is None:
            # After counting, which turns the window over if due: the duration then lands in the current bucket.
            try:  # the run's duration is the call's: `_latency.record_both`, inlined
                i = FINE[trunc(elapsed * FINE_SCALE - EDGE)]
            except IndexError:  # 13 ms or more: search the bounds
                i = bucket_of(BOUNDS, elapsed)
            lat = rolling.lat  # read after the last call (`_latency.record_both`); a turnover updates it
            next(lat[i] or both_counter(circuit, i))
            raise  # the run's own exception, unchanged
        return fall_back_timed(circuit, error, args, kwargs, fallback, start, end)
    except BaseException:
        end = clock()
        circuit.complete(FAILURE, probe, end)
        record_both(circuit, end - start)
        raise
    end = clock()
    elapsed = end - start
    if elapsed > circuit.timeout:
        circuit.complete(TIMEOUT, probe, end)
        timeout_error = CommandTimeoutError(circuit.name, circuit.timeout)
        return fall_back_timed(circuit, timeout_error, args, kwargs, fallback, start, end)
    rolling = circuit._rolling
    if probe:
        circuit.complete(SUCCESS, probe, end)
        record_both(circuit, elapsed)  # after counting, which turns the window over if due
        return value
    if end < rolling.end:  # `Circuit.count_success`, inlined
        next(rolling.success)  # atomic: no lock
        if circuit._watch:
            circuit.check_health(end)
    else:
        circuit.count_success(end)
    # After counting, which turns the window over if due: the duration then lands in the current bucket.
    try:  # the run's duration is the call's: `_latency.record_both`, inlined
        i = FINE[trunc(elapsed * FINE_SCALE - EDGE)]
    except IndexError:  # 13 ms or more: search the bounds
        i = bucket_of(BOUNDS, elapsed)
    lat = rolling.lat  # read after the last call (`_latency.record_both`); a turnover updates it
    next(lat[i] or both_counter(circuit, i))
    if circuit._debt:
        circuit.give_back()
    else:
        tokens.append(1)
    return value
    # -- end of the caller path --


class _Attempt(Generic[T]):  # Generic costs nothing per instance: it defines no __new__ or __init__
    """One run handed to a worker. Its outcome is decided once, by whichever of run and timeout pops ``guard``.

    Durations. The worker measures the run. A success or a bad request (no fallback runs) counts it as the call's
    duration too (``both``): the hand-off to the worker and back, some microseconds, is left out, as hystrix-go
    leaves it out; this keeps the path the caller waits on to one count. A failure counts it as a run
    (``run``), and the caller counts the call's total, run plus fallback (``total``).
    """

    __slots__ = ("args", "circuit", "done", "error", "fn", "guard", "kwargs", "probe", "ran", "slot", "value")

    value: T  # set when the run returns
    slot: int  # set when the run raises: FAILURE or BAD_REQUEST
    ran: float  # seconds the run took, set when it ends
    #: Whether an answered call's duration counts as both the run's and the call's (see above); `go()`'s futures
    #: count the call's total when they are resolved instead.
    RUN_IS_TOTAL = True

    def __init__(self, circuit: Circuit, fn: Callable[..., T], args: Args, kwargs: Kwargs, probe: int) -> None:
        self.circuit = circuit
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.probe = probe
        self.guard: list[object] = [None]
        self.error: BaseException | None = None
        # Gets one item once the outcome is decided; the waiting caller blocks on it. A queue, not a Lock: a
        # Lock.acquire with a timeout wakes about 20 us later than SimpleQueue.get with one (measured here).
        self.done: queue.SimpleQueue[None] = queue.SimpleQueue()

    def __call__(self) -> Callable[[None], object] | None:
        """Run on the worker; returns how to wake the caller if this decided the outcome (the timeout had not).

        An ordinary success is `Circuit.finish` inlined: it is on the path the caller waits on.
        """
        circuit = self.circuit
        clock = circuit.clock
        begin = clock()
        try:
            self.value = self.fn(*self.args, **self.kwargs)
        except BaseException as error:
            self.error = error
            ignored = circuit.ignored
            slot = self.slot = BAD_REQUEST if ignored and isinstance(error, ignored) else FAILURE
        else:
            slot = SUCCESS
            if not self.probe:
                try:
                    self.guard.pop()  # the once-guard
                except IndexError:
                    pass  # the timeout took it just now: finish() below sees that
                else:
                    now = clock()
                    rolling = circuit._rolling
                    if now < rolling.end:
                        next(rolling.success)  # atomic: no lock
                        if circuit._watch:
                            circuit.check_health(now)
                    else:
                        circuit.count_success(now)
                    # After counting, which turns the window over if due: `_latency.record_both`, inlined.
                    if self.RUN_IS_TOTAL:
                        try:
                            i = FINE[trunc((now - begin) * FINE_SCALE - EDGE)]
                        except IndexError:  # 13 ms or more: search the bounds
                            i = bucket_of(BOUNDS, now - begin)
                        lat = rolling.lat  # read after the last call (`_latency.record_both`); a turnover updates it
                        next(lat[i] or both_counter(circuit, i))
                    else:  # a go() future: `_resolve` counts the call's total
                        record_run(circuit, now - begin)
                    if circuit._debt:
                        circuit.give_back()
                    else:
                        circuit._tokens.append(1)
                    return self.done.put
        now = clock()
        self.ran = now - begin
        decided = circuit.finish(self, slot, now)
        answered = decided and slot != FAILURE and self.RUN_IS_TOTAL
        (record_both if answered else record_run)(circuit, self.ran)
        if decided:
            return self.done.put
        self.error = None  # a late result: discarded
        return None

    def answer(self, args: Args, kwargs: Kwargs, fallback: Fallback[T] | None) -> T:
        """The caller's answer once the run decided the outcome."""
        error = self.error
        if error is None:
            return self.value
        self.error = None
        if self.slot == FAILURE:
            began = self.circuit.clock()
            try:
                if isinstance(error, Exception):
                    return fall_back(self.circuit, error, args, kwargs, fallback)
                raise error  # a BaseException: to the caller, no fallback
            finally:
                if self.RUN_IS_TOTAL:  # the run, then the fallback
                    record_total(self.circuit, self.ran + self.circuit.clock() - began)
                del error
        try:
            raise error  # a bad request: to the caller, no fallback
        finally:
            del error


def call_in_thread(
    registry: Registry,
    circuit: Circuit,
    fn: Callable[..., T],
    args: Args,
    kwargs: Kwargs,
    fallback: Fallback[T] | None,
) -> T:
    """Thread isolation: run on a worker and wait at most the timeout."""
    probe = 0
    if circuit._gate:  # `Circuit.try_enter`, inlined
        tokens = circuit._tokens
        try:
            tokens.pop()
        except IndexError:
            probe = circuit.admit(circuit.clock())
        else:
            if not circuit._gate:  # opened as we took the ticket: let the lock decide
                tokens.append(1)
                probe = circuit.admit(circuit.clock())
    else:
        probe = circuit.enter(circuit.clock())
    if probe < 0:
        return refused(circuit, probe, args, kwargs, fallback)
    attempt = _Attempt(circuit, fn, args, kwargs, probe)
    pool = registry.pool
    try:
        inbox = pool._idle.pop()  # `WorkerPool.submit`, inlined: this is the path a waiting caller pays for
    except IndexError:
        try:
            pool._spawn(attempt)
        except BaseException:
            circuit.withdraw(attempt)
            raise
    else:
        inbox.put(attempt)
    timeout = circuit.timeout
    try:
        attempt.done.get(True, timeout if timeout <= _TIMEOUT_MAX else None)
    except queue.Empty:
        timed_out = circuit.clock()
        if circuit.time_out(attempt, timed_out):
            try:
                return fall_back(circuit, CommandTimeoutError(circuit.name, timeout), args, kwargs, fallback)
            finally:  # the wait (the timeout), then the fallback
                record_total(circuit, timeout + circuit.clock() - timed_out)
        attempt.done.get()  # the run finished as the wait ran out: its outcome stands and is counted
    if attempt.error is None:
        return attempt.value
    return attempt.answer(args, kwargs, fallback)


class _FutureAttempt(_Attempt[T]):
    """A run started by `go()`: the worker or the timer resolves the future."""

    __slots__ = ("fallback", "future", "registry", "start", "timer_entry", "user_args", "user_kwargs")
    RUN_IS_TOTAL = False  # `_resolve` counts the call's total, from go() to the future's result

    def __init__(
        self,
        registry: Registry,
        circuit: Circuit,
        fn: Callable[..., T],
        args: Args,
        kwargs: Kwargs,
        probe: int,
        fallback: Fallback[T] | None,
        start: float,
    ) -> None:
        super().__init__(circuit, fn, args, kwargs, probe)
        self.start = start
        self.registry = registry
        self.user_args = args
        self.user_kwargs = kwargs
        self.fallback = fallback
        self.future: Future[T] = Future()
        self.future.set_running_or_notify_cancel()  # admitted: it can no longer be cancelled
        self.timer_entry: list[object] | None = None

    def __call__(self) -> None:  # resolves the future instead of waking a caller
        decided = _Attempt.__call__(self) is not None
        if self.timer_entry is not None:
            self.registry.timer.cancel(self.timer_entry)
        if decided:
            self._resolve(self.answer, self.user_args, self.user_kwargs, self.fallback)

    def expire(self) -> None:
        """On the timer thread: the timeout fired."""
        if not self.circuit.time_out(self, self.circuit.clock()):
            return
        if self.fallback is None:  # nothing to run: resolve here (the future's callbacks run here, as usual)
            self.answer_timeout()
            return
        try:
            self.registry.pool.submit(self.answer_timeout)  # the fallback is user code: not on the timer thread
        except RuntimeError:
            self.answer_timeout()

    def answer_timeout(self) -> None:
        error = CommandTimeoutError(self.circuit.name, self.circuit.timeout)
        self._resolve(self._fall_back, error, self.user_args, self.user_kwargs, self.fallback)

    def _resolve(self, answer: Callable[..., T], *args: Any) -> None:
        """Resolve the future with ``answer(*args)``, after counting the call's duration (go() to answer)."""
        try:
            value = answer(*args)
        except BaseException as error:
            record_total(self.circuit, self.circuit.clock() - self.start)
            self.future.set_exception(error)
        else:
            record_total(self.circuit, self.circuit.clock() - self.start)
            self.future.set_result(value)

    def _fall_back(self, error: BaseException, args: Args, kwargs: Kwargs, fallback: Fallback[T] | None) -> T:
        return fall_back(self.circuit, error, args, kwargs, fallback)


def _resolve(future: Future[T], answer: Callable[..., T], *args: Any) -> None:
    try:
        value = answer(*args)
    except BaseException as error:
        future.set_exception(error)
    else:
        future.set_result(value)


def start_in_thread(
    registry: Registry,
    circuit: Circuit,
    fn: Callable[..., T],
    args: Args,
    kwargs: Kwargs,
    fallback: Fallback[T] | None,
) -> Future[T]:
    """`go()`: admission is decided here, before the future is returned; the rest happens on threads."""
    if not circuit.threaded:  # caller isolation: run here, return a done future
        future: Future[T] = Future()
        future.set_running_or_notify_cancel()
        try:
            value = do(circuit.name, fn, fallback)
        except Exception as error:
            future.set_exception(error)
        else:
            future.set_result(value)
        return future
    watch = None
    if circuit.collectors:
        watch = Watch(circuit)
        fn, fallback = watch.run(fn), watch.fallback_of(fallback)
    start = circuit.clock()
    probe = circuit.enter(start)
    if probe < 0:
        future = Future()
        future.set_running_or_notify_cancel()
        _resolve(future, refused, circuit, probe, args, kwargs, fallback)
        if watch is not None:
            watch.report(future.exception())
        return future
    attempt = _FutureAttempt(registry, circuit, fn, args, kwargs, probe, fallback, start)
    if watch is not None:  # reported once the future is resolved, on the thread that resolves it
        report = watch.report
        attempt.future.add_done_callback(lambda done: report(done.exception()))
    timeout = circuit.timeout
    if timeout <= _TIMEOUT_MAX:
        attempt.timer_entry = registry.timer.schedule(timeout, attempt.expire)
    try:
        registry.pool.submit(attempt)
    except BaseException:
        if attempt.timer_entry is not None:
            registry.timer.cancel(attempt.timer_entry)
        circuit.withdraw(attempt)
        raise
    return attempt.future
