"""What collectors receive: the record of one call, and the collector protocol (as hystrix-go's metricCollector)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Protocol, TypeAlias

from .events import Event

__all__ = ["CallResult", "Collector", "CollectorFactory"]


@dataclasses.dataclass(frozen=True, slots=True)
class CallResult:
    """The record of one call through a command, made once its outcome is fixed.

    The counts are 0 or 1, as in hystrix-go's ``MetricResult``: exactly one of ``successes``, ``failures``,
    ``timeouts``, ``short_circuits``, ``rejects``, ``bad_requests`` and ``cancelled`` is 1 (the primary event),
    plus ``fallback_successes`` or ``fallback_failures`` when a fallback ran. ``errors`` is 1 for a failure, a
    timeout or a rejection: the events that count against the circuit's health.

    Attributes:
        name: The command.
        event: The primary event.
        fallback: The fallback's event, or None if no fallback ran.
        total_duration: Seconds from the call to its answer, fallback and thread hand-off included.
        run_duration: Seconds the run took (so far, for a run abandoned at its timeout); 0.0 if it never ran.
        concurrency_in_use: Tickets held as the run started (its own included) over ``max_concurrent_requests``;
            for a call that did not run, as it was refused; 0.0 with no ticket limit.
        slow: Whether the call is also a ``slow`` event: a success or a failure whose ``run_duration`` was at least
            the circuit's ``slow_call_duration``. Not a primary event: it comes beside ``successes`` or
            ``failures``. (A bool, so it adds up as 0 or 1 like the counts.)
    """

    name: str
    event: Event
    fallback: Event | None
    attempts: int
    errors: int
    successes: int
    failures: int
    rejects: int
    short_circuits: int
    timeouts: int
    fallback_successes: int
    fallback_failures: int
    bad_requests: int
    cancelled: int
    total_duration: float
    run_duration: float
    concurrency_in_use: float
    slow: bool = False

    @classmethod
    def of(
        cls,
        name: str,
        event: Event,
        fallback: Event | None,
        total_duration: float,
        run_duration: float,
        concurrency_in_use: float,
        slow: bool = False,
    ) -> CallResult:
        """The record of a call that ended in ``event`` (and ``fallback``), ``slow`` or not."""
        return cls(
            name=name,
            event=event,
            fallback=fallback,
            attempts=1,
            errors=int(event in (Event.FAILURE, Event.TIMEOUT, Event.REJECTED)),
            successes=int(event is Event.SUCCESS),
            failures=int(event is Event.FAILURE),
            rejects=int(event is Event.REJECTED),
            short_circuits=int(event is Event.SHORT_CIRCUIT),
            timeouts=int(event is Event.TIMEOUT),
            fallback_successes=int(fallback is Event.FALLBACK_SUCCESS),
            fallback_failures=int(fallback is Event.FALLBACK_FAILURE),
            bad_requests=int(event is Event.BAD_REQUEST),
            cancelled=int(event is Event.CANCELLED),
            total_duration=total_duration,
            run_duration=run_duration,
            concurrency_in_use=concurrency_in_use,
            slow=slow,
        )


class Collector(Protocol):
    """Receives every call of one command (made by a `CollectorFactory` for that command's name)."""

    def update(self, result: CallResult) -> None:
        """Take the record of one call. Runs on the caller's thread (or task), after the outcome is fixed and
        outside every lock of the library; an exception is skipped, and logged as `breaker.register_collector` says."""

    def reset(self) -> None:
        """Forget what was collected: the command's circuit was dropped by `breaker.flush`."""


#: Makes the collector of one command, or returns None to leave that command uncollected (and on the fast path).
CollectorFactory: TypeAlias = Callable[[str], "Collector | None"]
