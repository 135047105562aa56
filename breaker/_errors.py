"""The errors `breaker` raises to callers.

::

    Exception
     └── CircuitError                  every error of the breaker itself; has ``.name``
          ├── CircuitOpenError          the circuit is open: the call was short-circuited
          ├── MaxConcurrencyError       no free ticket: the call was rejected
          ├── CommandTimeoutError       the run outlasted its timeout (also a builtin TimeoutError)
          └── FallbackError             the fallback raised; ``.run_error`` and ``.fallback_error``

Bad configuration and bad arguments raise the builtin ``TypeError`` and ``ValueError``: they are bugs in the
calling code, not outcomes of a call, and nothing is counted for them.

Messages are built in ``__str__`` from attributes that stay available, rather than in ``__init__``: an open
circuit may reject hundreds of thousands of calls a second, and most of those errors are caught and never printed.
"""

from __future__ import annotations

__all__ = [
    "CircuitError",
    "CircuitOpenError",
    "CommandTimeoutError",
    "FallbackError",
    "MaxConcurrencyError",
]


class CircuitError(Exception):
    """Base class of every error raised by the breaker itself.

    Attributes:
        name: The command whose call failed.
    """

    name: str

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"command {self.name!r} failed"

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), self.args)


class CircuitOpenError(CircuitError):
    """The circuit is open (or forced open, or half-open with its probe in flight): ``run`` was not called."""

    def __str__(self) -> str:
        return f"circuit {self.name!r} is open: the call was short-circuited and not run"


class MaxConcurrencyError(CircuitError):
    """Every ticket of the command was in use: ``run`` was not called.

    Attributes:
        max_concurrent_requests: The command's ticket count at the time.
    """

    def __init__(self, name: str, max_concurrent_requests: float) -> None:
        super().__init__(name)
        self.args = (name, max_concurrent_requests)
        self.max_concurrent_requests = max_concurrent_requests

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
        super().__init__(name)
        self.args = (name, timeout)
        self.timeout = timeout

    def __str__(self) -> str:
        return f"command {self.name!r} timed out after {self.timeout:g} s"


class FallbackError(CircuitError):
    """The fallback raised. Raised ``from`` the fallback's exception.

    Attributes:
        run_error: What made the call fail: the run's own exception or the breaker's error.
        fallback_error: What the fallback raised.
    """

    def __init__(self, name: str, run_error: BaseException, fallback_error: BaseException) -> None:
        super().__init__(name)
        self.args = (name, run_error, fallback_error)
        self.run_error = run_error
        self.fallback_error = fallback_error

    def __str__(self) -> str:
        return f"command {self.name!r}: fallback failed with {self.fallback_error!r}. run error was {self.run_error!r}"
