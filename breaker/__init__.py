"""Hystrix-style fault tolerance for Python: named commands with timeouts, bulkheads and circuit breakers.

The public names are all here. The package is layered, imports pointing one way: the decision core
(`breaker._core`), the drivers that run calls through it (`breaker._run`), the registry and the module-level API,
then the applications (`breaker.stream`, `breaker.dashboard`, `breaker.fleet`, `breaker.prometheus`,
`breaker.statsd`), which ``import breaker`` does not load. ARCHITECTURE.md draws it.
"""

from __future__ import annotations

import contextlib

from ._api import (
    circuits,
    configure,
    configure_command,
    configure_defaults,
    configure_fleet,
    configure_from,
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
from ._core.buckets import BOUNDS
from ._core.circuit import Circuit
from ._core.errors import (
    CircuitError,
    CircuitOpenError,
    CommandTimeoutError,
    FailedResultError,
    FallbackError,
    MaxConcurrencyError,
)
from ._core.events import Event, State
from ._core.latency import PERCENTILES, Histogram, LatencyStatistics
from ._core.metrics import CallResult, Collector, CollectorFactory
from ._core.outcome import retryable
from ._core.settings import UNSET, CommandConfig, Settings
from ._core.statistics import CircuitStatistics, FleetView
from ._decorator import command
from ._loading import ConfigError
from ._run.permit import Permit, acquire, acquire_async, fall_back, fall_back_async

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
    "ConfigError",
    "Event",
    "FailedResultError",
    "FallbackError",
    "FleetView",
    "Histogram",
    "LatencyStatistics",
    "MaxConcurrencyError",
    "Permit",
    "Settings",
    "State",
    "acquire",
    "acquire_async",
    "circuits",
    "command",
    "configure",
    "configure_command",
    "configure_defaults",
    "configure_fleet",
    "configure_from",
    "do",
    "do_async",
    "fall_back",
    "fall_back_async",
    "flush",
    "get_circuit",
    "get_settings",
    "go",
    "on_state_change",
    "register_collector",
    "remove_state_listener",
    "reset_defaults",
    "retryable",
]

__version__ = "0.1.0"


def _claim_public_names() -> None:
    """Public classes and functions say they are ``breaker``'s: reprs, docs and pickles show ``breaker.X``."""
    namespace = globals()
    for name in __all__:
        value = namespace[name]
        if isinstance(value, type) or (callable(value) and hasattr(value, "__qualname__")):
            with contextlib.suppress(AttributeError, TypeError):  # a typing alias may refuse: it has no home
                value.__module__ = __name__


_claim_public_names()
