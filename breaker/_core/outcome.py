"""What a call is told when it arrives (its `Admission`), and the rule that turns a run's end into an event.

Every driver asks its circuit's engine for an admission before running anything, and applies `returned_event`
or `raised_event` when the run ends: these are the whole contract between one call and its circuit, written
once, here.

The rule runs one piece of user code: the ``isinstance`` check of an error against the command's
``ignored_exceptions``, which a type with a custom ``__instancecheck__`` can make raise. Such a check decides
nothing: the error is not ignored, so the call is the run's failure, and the check's own error is logged (once per
configuration and error type: the only thing this pure module reports, through the standard `logging` module).
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Final

from .errors import CircuitOpenError, FailedResultError, FallbackError, MaxConcurrencyError
from .events import BAD_REQUEST, FAILURE, REJECTED, SHORT_CIRCUIT, SUCCESS, TIMEOUT
from .inline import inline

if TYPE_CHECKING:
    from .engine import Engine

__all__ = [
    "ADMITTED",
    "REJECTED_CALL",
    "SHORT_CIRCUITED",
    "UNDECIDED",
    "Admission",
    "Probe",
    "failed_result",
    "in_time",
    "is_ignored",
    "is_slow",
    "mark_bad_request",
    "raised_event",
    "refusal",
    "retryable",
    "returned_event",
]


class Admission:
    """What the circuit told an arriving call: one of the module's constants, or a `Probe`.

    Attributes:
        name: What it is, for reprs and messages.
        refused: The run must not be called (`SHORT_CIRCUITED`, `REJECTED_CALL`); the refusal is already counted.
        event: The event a refusal was counted as (``SHORT_CIRCUIT`` or ``REJECTED``); -1 otherwise.
    """

    __slots__ = ("event", "name", "refused")

    def __init__(self, name: str, *, refused: bool = False, event: int = -1) -> None:
        self.name = name
        self.refused = refused
        self.event = event

    def __repr__(self) -> str:
        return f"<Admission {self.name}>"


class Probe(Admission):
    """The one call let through an open circuit after its sleep window. Each probe is an object of its own: only
    the outcome of the circuit's current probe moves it (a late one from an earlier probe is an ordinary outcome).

    Attributes:
        started: When the probe was let through.
        deadline: When the probe counts as failed if it has not reported (its start plus the timeout).
    """

    __slots__ = ("deadline", "started")

    def __init__(self, started: float, timeout: float) -> None:
        super().__init__("probe")
        self.started = started
        self.deadline = started + timeout


#: An ordinary call admitted to a closed circuit: it holds a ticket.
ADMITTED: Final = Admission("admitted")
#: Refused: the circuit is open (counted as a short-circuit).
SHORT_CIRCUITED: Final = Admission("short-circuited", refused=True, event=SHORT_CIRCUIT)
#: Refused: no ticket was free (counted as rejected).
REJECTED_CALL: Final = Admission("rejected", refused=True, event=REJECTED)
#: Not a decision: a lock-free path could not decide, and the engine's lock must (never returned to a driver).
UNDECIDED: Final = Admission("undecided")


@inline
def in_time(seconds: float, timeout: float) -> bool:
    """Whether a run that took ``seconds`` ended within ``timeout`` (one at exactly its timeout is in time)."""
    return seconds <= timeout


@inline
def is_slow(seconds: float, slow_call_duration: float) -> bool:
    """Whether a run that took ``seconds`` was slow: at least ``slow_call_duration`` (one exactly that long is).
    Only a success or a failure counts as slow; a timeout, a bad request or a cancelled call never does."""
    return seconds >= slow_call_duration


@inline
def returned_event(seconds: float, timeout: float) -> int:
    """The event of a run that returned after ``seconds``: a success, or a timeout if it outlasted ``timeout``."""
    return SUCCESS if in_time(seconds, timeout) else TIMEOUT


@inline
def raised_event(
    error: BaseException, seconds: float, timeout: float, ignored: tuple[type[BaseException], ...], expired: bool
) -> int:
    """The event of a run that raised ``error`` after ``seconds``.

    A bad request when ``error`` is one of the command's ``ignored_exceptions`` (whenever it came); a timeout when
    the driver's deadline ``expired`` or an `Exception` came after ``timeout``; else a failure (a `BaseException`
    such as `KeyboardInterrupt` is a failure, however late).
    """
    if ignored and is_ignored(error, ignored):
        mark_bad_request(error)
        event = BAD_REQUEST
    elif expired or (not in_time(seconds, timeout) and isinstance(error, Exception)):
        event = TIMEOUT
    else:
        event = FAILURE
    return event


#: The attribute `mark_bad_request` sets on an error, which `retryable` reads.
BAD_REQUEST_MARK: Final = "__breaker_bad_request__"


def mark_bad_request(error: BaseException) -> None:
    """Mark ``error`` as a bad request (one of its command's ``ignored_exceptions``), so that `retryable` can tell
    without knowing the command. An error that takes no attribute stays unmarked."""
    # A __setattr__ of its own may refuse: `retryable` then says True for it, as for a failure.
    with contextlib.suppress(Exception):
        setattr(error, BAD_REQUEST_MARK, True)


def retryable(error: BaseException) -> bool:
    """Whether retrying the call that raised ``error`` could help: True for a run's failure or timeout.

    False for `CircuitOpenError` and `MaxConcurrencyError` (the breaker refused the call: a retry now would be
    refused too, and would only add load), for a bad request (an error that was one of its command's
    ``ignored_exceptions``, or an HTTP status error with a 4xx status other than 429), and for a `BaseException`
    that is not an `Exception` (`KeyboardInterrupt`, a cancellation). A `FallbackError` is judged by the run's
    error. An HTTP status error (httpx's ``HTTPStatusError``, requests' ``HTTPError``, aiohttp's
    ``ClientResponseError``) is retryable when its status is 5xx or 429.

    Args:
        error: What a call through the breaker raised.
    """
    if isinstance(error, FallbackError):
        error = error.run_error
    if not isinstance(error, Exception) or isinstance(error, (CircuitOpenError, MaxConcurrencyError)):
        return False
    try:
        marked = error.__dict__.get(BAD_REQUEST_MARK) is True  # the instance's own: no __getattr__ runs
    except Exception:  # an error with no usable __dict__ was never marked
        marked = False
    if marked:
        return False
    status = _http_status(error)
    return status is None or status >= 500 or status == 429


def _http_status(error: Exception) -> int | None:
    """The HTTP status an HTTP client's status error carries (httpx, requests, aiohttp), or None."""
    try:
        status = getattr(error, "status", None)  # aiohttp.ClientResponseError
        if status is None:
            response = getattr(error, "response", None)  # httpx.HTTPStatusError, requests.HTTPError
            status = getattr(response, "status_code", None)
    except Exception:  # a property that raises (httpx's .request when unset): no status to go by
        return None
    if isinstance(status, int) and not isinstance(status, bool):  # an int, or an int enum such as HTTPStatus
        return int(status)
    return None


logger = logging.getLogger("breaker")
#: The (user code, error type) pairs whose failure was logged already: a broken ``ignored_exceptions`` check or a
#: ``result_is_failure`` predicate that raised. Cleared when it grows past `_REPORTED_MAX`, so that it stays bounded.
#: Set operations are atomic in CPython, and a pair logged twice by two threads racing here does no harm.
_reported: set[tuple[object, type[BaseException]]] = set()
_REPORTED_MAX: Final = 1024


def _log_once(culprit: object, error: BaseException, message: str, *args: object) -> None:
    """Log ``message`` with the exception being handled, once per ``culprit`` and type of ``error``."""
    key = (culprit, type(error))
    if key in _reported:
        return
    if len(_reported) >= _REPORTED_MAX:
        _reported.clear()
    _reported.add(key)
    logger.exception(message, *args)


def is_ignored(error: BaseException, ignored: tuple[type[BaseException], ...]) -> bool:
    """Whether ``error`` is one of the ``ignored`` types; False when checking raises (see the module docstring)."""
    try:
        return isinstance(error, ignored)
    except Exception as broken:  # a broken __instancecheck__: the error is not ignored, and this is logged once
        _log_once(
            ignored,
            broken,
            "checking %s against ignored_exceptions %r raised: it is not ignored, the call counts as a failure "
            "(logged once per configuration and error type)",
            type(error).__name__,
            ignored,
        )
        return False


def failed_result(core: Engine, value: object) -> BaseException | None:
    """What makes a call whose run returned ``value`` (in time) a failure: a `FailedResultError` when the
    command's ``result_is_failure`` says so, the predicate's own exception when it raises (logged once per
    predicate and error type), or None: a success. The predicate is user code: never called under a lock."""
    predicate = core.result_is_failure
    if predicate is None:
        return None
    try:
        return FailedResultError(core.name, value) if predicate(value) else None
    except Exception as error:  # a broken predicate: its error is the call's, and it is logged once
        _log_once(
            predicate,
            error,
            "command %r: result_is_failure raised: the call counts as a failure with its error (logged once per "
            "predicate and error type)",
            core.name,
        )
        return error
    except BaseException as error:  # KeyboardInterrupt and the like: the call's failure too, and it propagates
        return error


@inline
def refusal(core: Engine, admission: Admission, now: float) -> CircuitOpenError | MaxConcurrencyError:
    """The error that tells the caller, refused at ``now``, why (and, when short-circuited, when to retry)."""
    return (
        CircuitOpenError(core.name, core.next_probe_at - now)
        if admission is SHORT_CIRCUITED
        else MaxConcurrencyError(core.name, core.settings.max_concurrent_requests)
    )
