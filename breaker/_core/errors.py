"""The errors `breaker` raises to callers.

::

    Exception
     └── CircuitError                  every error of the breaker itself; has ``.name``
          ├── CircuitOpenError          the circuit is open: the call was short-circuited; ``.retry_after``
          ├── MaxConcurrencyError       no free ticket: the call was rejected
          ├── CommandTimeoutError       the run outlasted its timeout (also a builtin TimeoutError)
          ├── FailedResultError         ``result_is_failure`` said the run's value is a failure; ``.result``
          └── FallbackError             the fallback raised; ``.run_error`` and ``.fallback_error``

Bad configuration and bad arguments raise the builtin ``TypeError`` and ``ValueError``: they are bugs in the
calling code, not outcomes of a call, and nothing is counted for them.

Messages are built in ``__str__`` from attributes that stay available, and the attributes read ``args``, so that
creating one of these errors runs no Python code: an open circuit may reject hundreds of thousands of calls a
second, and most of those errors are caught and never printed.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

__all__ = [
    "CircuitError",
    "CircuitOpenError",
    "CommandTimeoutError",
    "FailedResultError",
    "FallbackError",
    "MaxConcurrencyError",
]


class CircuitError(Exception):
    """Base class of every error raised by the breaker itself.

    Attributes:
        name: The command whose call failed.
    """

    if TYPE_CHECKING:  # the signature, for type checkers; at run time BaseException's C __init__ stores args

        def __init__(self, name: str, *details: object) -> None: ...

    @property
    def name(self) -> str:
        name: str = self.args[0]
        return name

    def __str__(self) -> str:
        return f"command {self.name!r} failed"


class CircuitOpenError(CircuitError):
    """The circuit is open (or forced open, or half-open with its probe in flight): ``run`` was not called.

    Created as ``CircuitOpenError(name, retry_after)``.

    Attributes:
        retry_after: Seconds until the circuit can next let a probe through, as a hint for the caller's own
            caller (an HTTP ``Retry-After``): 0.0 when one could go now or is in flight (half-open), ``math.inf``
            while forced open. In fleet mode, where the fleet's lease decides, it is the local sleep window's end.
    """

    if TYPE_CHECKING:

        def __init__(self, name: str, retry_after: float = 0.0) -> None: ...

    @property
    def retry_after(self) -> float:
        # Stored as given (the engine passes "next probe time - now", negative once it passed): clamped here, so
        # that raising one runs no Python code.
        until: float = self.args[1] if len(self.args) > 1 else 0.0
        return until if until > 0.0 else 0.0

    def __str__(self) -> str:
        retry = self.retry_after
        hint = f"; a probe may go in {retry:.3g} s" if 0.0 < retry < math.inf else ""
        return f"circuit {self.name!r} is open: the call was short-circuited and not run{hint}"


class MaxConcurrencyError(CircuitError):
    """Every ticket of the command was in use: ``run`` was not called.

    Created as ``MaxConcurrencyError(name, max_concurrent_requests)``.

    Attributes:
        max_concurrent_requests: The command's ticket count at the time.
    """

    @property
    def max_concurrent_requests(self) -> float:
        value: float = self.args[1]
        return value

    def __str__(self) -> str:
        return (
            f"command {self.name!r} rejected the call: all {self.max_concurrent_requests} tickets "
            "(max_concurrent_requests) are in use"
        )


class CommandTimeoutError(CircuitError, TimeoutError):
    """The run did not finish within the command's timeout.

    With thread isolation the run goes on in the background, holding its ticket, and its result is discarded.

    Attributes:
        timeout: The timeout in seconds.
    """

    def __init__(self, name: str, timeout: float) -> None:
        # OSError (TimeoutError's base) would read two arguments as errno and strerror: give it the name only.
        TimeoutError.__init__(self, name)
        self.timeout = timeout

    def __str__(self) -> str:
        return f"command {self.name!r} timed out after {self.timeout:g} s"

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.name, self.timeout))


class FailedResultError(CircuitError):
    """The command's ``result_is_failure`` judged what the run returned a failure. The fallback gets this error
    (without a fallback, the caller gets the result itself: nothing is raised).

    Created as ``FailedResultError(name, result)``.

    Attributes:
        result: What the run returned.
    """

    @property
    def result(self) -> object:
        return self.args[1]

    def __str__(self) -> str:
        return f"command {self.name!r}: the run returned a result judged a failure: {self.result!r:.200}"


class FallbackError(CircuitError):
    """The fallback raised. Raised ``from`` the fallback's exception.

    Created as ``FallbackError(name, run_error, fallback_error)``.

    Attributes:
        run_error: What made the call fail: the run's own exception or the breaker's error.
        fallback_error: What the fallback raised.
    """

    @property
    def run_error(self) -> BaseException:
        error: BaseException = self.args[1]
        return error

    @property
    def fallback_error(self) -> BaseException:
        error: BaseException = self.args[2]
        return error

    def __str__(self) -> str:
        return f"command {self.name!r}: fallback failed with {self.fallback_error!r}. run error was {self.run_error!r}"
