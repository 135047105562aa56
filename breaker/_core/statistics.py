"""The frozen snapshots users read: `CircuitStatistics` of a circuit, and `FleetView` of what the fleet shares."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from .events import State
from .latency import Histogram, LatencyStatistics
from .settings import Settings

__all__ = ["ASYNCIO", "CircuitStatistics", "FleetView", "isolation_of"]

#: What `CircuitStatistics.isolation` says of calls awaited on the event loop (`breaker.do_async`, a decorated
#: coroutine function): the ``isolation`` setting does not apply to them.
ASYNCIO = "asyncio"


@dataclasses.dataclass(frozen=True, slots=True)
class CircuitStatistics:
    """A frozen snapshot of one circuit.

    Attributes:
        name: The command name.
        state: The state, forced states included.
        requests: success + failure + timeout + rejected over the rolling window.
        errors: failure + timeout + rejected over the rolling window.
        error_percentage: ``errors / requests`` as a percentage rounded half up (0 with no requests).
        counts: Every event name mapped to its count over the rolling window, zeros included. ``slow`` counts
            the successes and failures whose run took at least ``slow_call_duration``: they are counted under
            their own event too, so ``slow`` adds nothing to ``requests``.
        active: Tickets held: runs in progress, abandoned ones included.
        abandoned: Runs that timed out and are still running (thread isolation); each still holds its ticket.
        max_concurrent_requests: The ticket count.
        peak_active: The most tickets seen held at once over the rolling window. Sampled, not exact: taken when
            an outcome is recorded under the lock, when a call finds no ticket, and at each `statistics()`.
        cumulative: Every event name mapped to its count since the circuit was created (monotonic).
        latency_execute: Run durations over the latency window (calls that ran).
        latency_total: Whole call durations over the latency window, fallback included (calls that ran; the
            microseconds of a thread hand-off are left out, as in hystrix-go).
        run_durations: Run durations since creation, by histogram bucket.
        total_durations: Whole call durations since creation, by histogram bucket.
        settings: The settings the circuit runs with.
        isolation: How the calls so far ran: the ``isolation`` setting (``"thread"`` or ``"caller"``) while every
            call was sync (or none came yet); ``"asyncio"`` while every call was async (`breaker.do_async` or a
            decorated coroutine function, awaited on the event loop whatever the setting); the setting plus
            ``"+asyncio"`` (``"thread+asyncio"``, ``"caller+asyncio"``) once both kinds came. `breaker.flush`
            starts it again with the new circuit.
        fleet: What the fleet shares of the circuit (`breaker.configure_fleet`), or None outside fleet mode.
    """

    name: str
    state: State
    requests: int
    errors: int
    error_percentage: int
    counts: Mapping[str, int]
    active: int
    abandoned: int
    max_concurrent_requests: float
    peak_active: int
    cumulative: Mapping[str, int]
    latency_execute: LatencyStatistics
    latency_total: LatencyStatistics
    run_durations: Histogram
    total_durations: Histogram
    settings: Settings
    isolation: str
    fleet: FleetView | None = None


def isolation_of(configured: str, called_sync: bool, called_async: bool) -> str:
    """`CircuitStatistics.isolation` of a circuit whose ``isolation`` setting is ``configured`` and which has had
    sync calls (``called_sync``) and async calls (``called_async``)."""
    if not called_async:
        return configured
    return f"{configured}+{ASYNCIO}" if called_sync else ASYNCIO


@dataclasses.dataclass(frozen=True, slots=True)
class FleetView:
    """What the fleet (`breaker.configure_fleet`) shares of a circuit, as of the last sync with Redis.

    Attributes:
        state: The fleet's state: ``"closed"`` or ``"open"`` (an open fleet lets one process probe).
        requests: The fleet's requests over its rolling window (every process's successes and errors).
        errors: The fleet's errors over the window.
        error_percentage: ``errors / requests`` as a percentage rounded half up (0 with no requests).
        generation: Bumped at every fleet state change; counts sent for an older one are dropped.
        connected: Whether the last sync reached Redis. While it does not, the circuit runs on local state alone.
        probing: Whether this process holds the fleet's probe lease.
        synced_at: When the last sync that reached Redis ended, on the circuit's clock.
        trip_requests: While the fleet is open, its window's requests when it tripped (the trip clears the window,
            so ``requests`` tells little then); None while it is closed, or when the figures did not reach this
            process.
        trip_errors: Likewise, its errors when it tripped.
        trip_error_percentage: Likewise, ``trip_errors / trip_requests`` as a percentage rounded half up.
    """

    state: str
    requests: int
    errors: int
    error_percentage: int
    generation: int
    connected: bool
    probing: bool
    synced_at: float
    trip_requests: int | None = None
    trip_errors: int | None = None
    trip_error_percentage: int | None = None
