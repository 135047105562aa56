"""Hystrix-style fault tolerance for Python: named commands with timeouts, bulkheads and circuit breakers."""

from __future__ import annotations

from ._api import (
    circuits,
    configure,
    configure_command,
    configure_defaults,
    do,
    do_async,
    flush,
    get_circuit,
    get_settings,
    go,
    on_state_change,
    register_collector,
    remove_state_listener,
    reset_defaults,
)
from ._circuit import Circuit, CircuitStatistics, FleetView
from ._decorator import command
from ._errors import CircuitError, CircuitOpenError, CommandTimeoutError, FallbackError, MaxConcurrencyError
from ._events import Event, State
from ._latency import BOUNDS, PERCENTILES, Histogram, LatencyStatistics
from ._metrics import CallResult, Collector, CollectorFactory
from ._settings import UNSET, CommandConfig, Settings
from .fleet import configure_fleet

__all__ = [
    "BOUNDS",
    "PERCENTILES",
    "UNSET",
    "CallResult",
    "Circuit",
    "CircuitError",
    "CircuitOpenError",
    "CircuitStatistics",
    "Collector",
    "CollectorFactory",
    "CommandConfig",
    "CommandTimeoutError",
    "Event",
    "FallbackError",
    "FleetView",
    "Histogram",
    "LatencyStatistics",
    "MaxConcurrencyError",
    "Settings",
    "State",
    "circuits",
    "command",
    "configure",
    "configure_command",
    "configure_defaults",
    "configure_fleet",
    "do",
    "do_async",
    "flush",
    "get_circuit",
    "get_settings",
    "go",
    "on_state_change",
    "register_collector",
    "remove_state_listener",
    "reset_defaults",
]

__version__ = "0.1.0"
