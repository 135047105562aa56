"""The frozen snapshots users read: `CircuitStatistics` of a circuit, and `FleetView` of what the fleet shares."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from .events import State
from .latency import Histogram, LatencyStatistics
from .settings import Settings

__all__ = ["CircuitStatistics", "FleetView"]


@dataclasses.dataclass(frozen=True, slots=True)
class CircuitStatistics:
    """A frozen snapshot of one circuit.

    Attributes:
        name: The command name.
        state: The state, forced states included.
        requests: success + failure + timeout + rejected over the rolling window.
        errors: failure + timeout + rejected over the rolling window.
        error_percentage: ``errors / requests`` as a percentage rounded half up (0 with no requests).
        counts: Every event name mapped to its count over the rolling window, zeros included.
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
    fleet: FleetView | None = None


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
    """

    state: str
    requests: int
    errors: int
    error_percentage: int
    generation: int
    connected: bool
    probing: bool
    synced_at: float
