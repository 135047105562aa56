"""The sync driver: runs a call through its circuit, on the caller's thread or on a worker.

Thread isolation races the run (on a worker) against the timeout (the caller's wait in `call_in_thread`, the
timer for `start_in_thread`). The circuit's once-guard (`Circuit.finish` / `Circuit.time_out`) lets exactly one
side decide the outcome; the ticket is back, and the outcome counted, before the caller is woken.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

from ._circuit import SHORT_CIRCUITED, Circuit
from ._errors import CircuitOpenError, CommandTimeoutError, FallbackError, MaxConcurrencyError
from ._events import BAD_REQUEST, FAILURE, FALLBACK_FAILURE, FALLBACK_SUCCESS, SUCCESS, TIMEOUT
from ._registry import Registry

__all__ = ["call_in_caller", "call_in_thread", "start_in_thread"]

T = TypeVar("T")

Args = tuple[Any, ...]
Kwargs = Mapping[str, Any]
Fallback = Callable[..., T]

_TIMEOUT_MAX = threading.TIMEOUT_MAX


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


def call_in_caller(
    circuit: Circuit, fn: Callable[..., T], args: Args, kwargs: Kwargs, fallback: Fallback[T] | None
) -> T:
    """Caller isolation: run on this thread; a run that outlasts its timeout counts as a timeout when it returns.

    The body inlines `Circuit.try_enter` and the ticket's return: every call pays for this function, and a
    method call costs as much here as the work it wraps.
    """
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
        if circuit.ignored and isinstance(error, circuit.ignored):
            circuit.complete(BAD_REQUEST, probe, end)
            raise
        if end - start > circuit.timeout:
            circuit.complete(TIMEOUT, probe, end)
            timeout_error = CommandTimeoutError(circuit.name, circuit.timeout)
            timeout_error.__cause__ = error
            return fall_back(circuit, timeout_error, args, kwargs, fallback)
        if probe:
            circuit.complete(FAILURE, probe, end)
        else:
            rolling = circuit._rolling
            if end >= rolling.end:
                circuit.fail(end)
            elif rolling.errors + next(rolling.failure) >= circuit._error_budget:  # `Circuit.fail`, inlined
                circuit.check_health(end)
            if circuit._debt:
                circuit.give_back()
            else:
                tokens.append(1)
        if fallback is None:
            raise  # the run's own exception, unchanged
        return fall_back(circuit, error, args, kwargs, fallback)
    except BaseException:
        circuit.complete(FAILURE, probe, clock())
        raise
    end = clock()
    if end - start > circuit.timeout:
        circuit.complete(TIMEOUT, probe, end)
        return fall_back(circuit, CommandTimeoutError(circuit.name, circuit.timeout), args, kwargs, fallback)
    if probe:
        circuit.complete(SUCCESS, probe, end)
        return value
    rolling = circuit._rolling
    if end < rolling.end:  # `Circuit.count_success`, inlined
        next(rolling.success)  # atomic: no lock
        if circuit._watch:
            circuit.check_health(end)
    else:
        circuit.count_success(end)
    if circuit._debt:
        circuit.give_back()
    else:
        tokens.append(1)
    return value


class _Attempt(Generic[T]):
    """One run handed to a worker. Its outcome is decided once, by whichever of run and timeout pops ``guard``."""

    __slots__ = ("args", "circuit", "done", "error", "fn", "guard", "kwargs", "probe", "slot", "value")

    def __init__(self, circuit: Circuit, fn: Callable[..., T], args: Args, kwargs: Kwargs, probe: int) -> None:
        self.circuit = circuit
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.probe = probe
        self.guard: list[object] = [None]
        self.value: T | None = None
        self.error: BaseException | None = None
        self.slot = SUCCESS
        # Held until the outcome is decided; the waiting caller blocks on it.
        self.done = threading.Lock()
        self.done.acquire()

    def run(self) -> bool:
        """Run on the worker; True if this decided the outcome (the timeout had not)."""
        try:
            self.value = self.fn(*self.args, **self.kwargs)
        except BaseException as error:
            self.error = error
            ignored = self.circuit.ignored
            self.slot = BAD_REQUEST if ignored and isinstance(error, ignored) else FAILURE
        self.fn = self.args = self.kwargs = None  # type: ignore[assignment]  # free them while the caller reads
        if self.circuit.finish(self, self.slot, self.circuit.clock()):
            return True
        self.value = self.error = None  # a late result: discarded
        return False

    def __call__(self) -> Callable[[], object] | None:
        return self.done.release if self.run() else None

    def answer(self, args: Args, kwargs: Kwargs, fallback: Fallback[T] | None) -> T:
        """The caller's answer once the run decided the outcome."""
        error = self.error
        if error is None:
            return self.value  # type: ignore[return-value]
        self.error = None
        if self.slot == FAILURE and isinstance(error, Exception):
            return fall_back(self.circuit, error, args, kwargs, fallback)
        try:
            raise error  # a bad request, or a BaseException: to the caller, no fallback
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
    probe = circuit.enter(circuit.clock())
    if probe < 0:
        return refused(circuit, probe, args, kwargs, fallback)
    attempt = _Attempt(circuit, fn, args, kwargs, probe)
    try:
        registry.pool.submit(attempt)
    except BaseException:
        circuit.withdraw(attempt)
        raise
    timeout = circuit.timeout
    if not attempt.done.acquire(True, timeout if timeout <= _TIMEOUT_MAX else -1):
        if circuit.time_out(attempt, circuit.clock()):
            error = CommandTimeoutError(circuit.name, timeout)
            return fall_back(circuit, error, args, kwargs, fallback)
        attempt.done.acquire()  # the run finished as the wait ran out: its outcome stands and is counted
    return attempt.answer(args, kwargs, fallback)


class _FutureAttempt(_Attempt[T]):
    """A run started by `go()`: the worker or the timer resolves the future."""

    __slots__ = ("fallback", "future", "registry", "timer_entry", "user_args", "user_kwargs")

    def __init__(
        self,
        registry: Registry,
        circuit: Circuit,
        fn: Callable[..., T],
        args: Args,
        kwargs: Kwargs,
        probe: int,
        fallback: Fallback[T] | None,
    ) -> None:
        super().__init__(circuit, fn, args, kwargs, probe)
        self.registry = registry
        self.user_args = args
        self.user_kwargs = kwargs
        self.fallback = fallback
        self.future: Future[T] = Future()
        self.future.set_running_or_notify_cancel()  # admitted: it can no longer be cancelled
        self.timer_entry: list[object] | None = None

    def __call__(self) -> None:
        decided = self.run()
        if self.timer_entry is not None:
            self.registry.timer.cancel(self.timer_entry)
        if decided:
            _resolve(self.future, self.answer, self.user_args, self.user_kwargs, self.fallback)

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
        _resolve(self.future, self._fall_back, error, self.user_args, self.user_kwargs, self.fallback)

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
    if not circuit.threaded:
        future: Future[T] = Future()
        future.set_running_or_notify_cancel()
        try:
            value = call_in_caller(circuit, fn, args, kwargs, fallback)
        except Exception as error:
            future.set_exception(error)
        else:
            future.set_result(value)
        return future
    probe = circuit.enter(circuit.clock())
    if probe < 0:
        future = Future()
        future.set_running_or_notify_cancel()
        _resolve(future, refused, circuit, probe, args, kwargs, fallback)
        return future
    attempt = _FutureAttempt(registry, circuit, fn, args, kwargs, probe, fallback)
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
