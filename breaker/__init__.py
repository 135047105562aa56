"""Hystrix-style fault tolerance for Python: named commands with timeouts, bulkheads and circuit breakers."""

from __future__ import annotations

from ._api import (
    configure,
    configure_command,
    configure_defaults,
    do,
    do_async,
    flush,
    get_circuit,
    get_settings,
    go,
    reset_defaults,
)
from ._circuit import Circuit, CircuitStatistics
from ._decorator import command
from ._errors import CircuitError, CircuitOpenError, CommandTimeoutError, FallbackError, MaxConcurrencyError
from ._events import Event, State
from ._settings import UNSET, CommandConfig, Settings

__all__ = [
    "UNSET",
    "Circuit",
    "CircuitError",
    "CircuitOpenError",
    "CircuitStatistics",
    "CommandConfig",
    "CommandTimeoutError",
    "Event",
    "FallbackError",
    "MaxConcurrencyError",
    "Settings",
    "State",
    "command",
    "configure",
    "configure_command",
    "configure_defaults",
    "do",
    "do_async",
    "flush",
    "get_circuit",
    "get_settings",
    "go",
    "reset_defaults",
]

__version__ = "0.1.0"
