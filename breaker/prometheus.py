"""Export every circuit's state, counts and latency to Prometheus (the extra ``breaker[prometheus]``).

::

    import prometheus_client
    import breaker.prometheus

    breaker.prometheus.register()                 # on prometheus_client.REGISTRY
    prometheus_client.start_http_server(9100)     # or any exposition prometheus_client offers

`CircuitCollector` is a custom collector: it reads each circuit's `breaker.Circuit.statistics` snapshot when
Prometheus scrapes, so it adds nothing to a call's cost, and it asks `breaker.circuits` for the circuits at every
scrape, so new commands appear and commands dropped by `breaker.flush` disappear. A scrape is a pure query: it
never trips a circuit or takes the probe.

Metrics, each labelled with the command ``name``:

- ``breaker_state{name,state}`` (gauge): 1 for the circuit's current state, 0 for the other four of ``closed``,
  ``open``, ``half_open``, ``forced_open`` and ``forced_closed``.
- ``breaker_calls_total{name,event}`` (counter): calls by event since the circuit was created, for every event
  (``success``, ``failure``, ``timeout``, ``short-circuit``, ``rejected``, ``bad-request``, ``fallback-success``,
  ``fallback-failure``, ``cancelled``, and ``slow``: the successes and failures whose run took at least
  ``slow_call_duration``, counted under their own event too). A circuit's counts survive its rolling window, its
  closing and its reconfiguration; `breaker.flush` starts them again from zero (a counter reset, which ``rate()``
  handles).
- ``breaker_call_duration_seconds{name}`` (histogram): how long the runs took, for calls whose run started. Bucket
  counts are exact; ``_sum`` is estimated from the middle of each duration's bucket (within 8%).
- ``breaker_concurrent_calls{name}`` (gauge): tickets held, abandoned runs included.
- ``breaker_abandoned_calls{name}`` (gauge): runs that outlived their timeout and are still running.
- ``breaker_error_percentage{name}`` (gauge): the error percentage over the rolling window, as the circuit
  judges it.

This module imports ``prometheus_client`` when it is imported, and raises `ImportError` if it is missing;
``import breaker`` alone never imports it.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from typing import Final

try:
    from prometheus_client.metrics_core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )
    from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry
except ImportError as error:  # pragma: no cover - tests/test_extras.py runs this in a subprocess
    raise ImportError(
        "breaker.prometheus needs prometheus-client, which is not installed: "
        "install the extra with `pip install 'breaker[prometheus]'`",
        name=error.name,
    ) from error

from . import BOUNDS, CircuitStatistics, State, circuits

__all__ = ["DEFAULT_BUCKETS", "CircuitCollector", "register"]

#: The histogram's upper bounds in seconds: Prometheus' default buckets (``+Inf`` is always added). All are in
#: `breaker.BOUNDS`, so every bucket count is exact.
DEFAULT_BUCKETS: Final[tuple[float, ...]] = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)  # fmt: skip

_STATES: Final = tuple(State)


def _check_buckets(buckets: Sequence[float]) -> tuple[float, ...]:
    if isinstance(buckets, (str, bytes)) or not isinstance(buckets, Sequence):
        raise TypeError(f"CircuitCollector(buckets=...) takes a sequence of seconds, got {buckets!r}")
    bounds = tuple(buckets)
    for bound in bounds:
        if isinstance(bound, bool) or not isinstance(bound, (int, float)):
            raise TypeError(f"CircuitCollector(buckets=...) takes numbers of seconds, got {bound!r} in {bounds!r}")
    if not bounds:
        raise ValueError("CircuitCollector(buckets=...) needs at least one bucket; +Inf is added on its own")
    if list(bounds) != sorted(set(bounds)):
        raise ValueError(f"CircuitCollector(buckets=...) must be strictly increasing, got {bounds!r}")
    for bound in bounds:
        if bound not in BOUNDS:
            i = bisect.bisect_left(BOUNDS, bound)
            near = " or ".join(repr(b) for b in BOUNDS[max(i - 1, 0) : i + 1])
            raise ValueError(
                f"CircuitCollector(buckets=...) takes bounds from breaker.BOUNDS, where bucket counts are exact; "
                f"{bound!r} is not one of them: use {near} instead (+Inf is always added)"
            )
    return tuple(float(bound) for bound in bounds)


_Families = tuple[
    GaugeMetricFamily,
    CounterMetricFamily,
    HistogramMetricFamily,
    GaugeMetricFamily,
    GaugeMetricFamily,
    GaugeMetricFamily,
]


def _families() -> _Families:
    """Fresh, empty metric families, in the order the module docstring lists them."""
    return (
        GaugeMetricFamily(
            "breaker_state",
            "Circuit state: 1 for the current one of closed, open, half_open, forced_open, forced_closed.",
            labels=["name", "state"],
        ),
        CounterMetricFamily(
            "breaker_calls",
            "Calls through the command by event, since its circuit was created.",
            labels=["name", "event"],
        ),
        HistogramMetricFamily(
            "breaker_call_duration_seconds",
            "Run duration of the calls that ran. Bucket counts are exact; the sum is estimated from bucket "
            "midpoints (within 8%).",
            labels=["name"],
            unit="seconds",
        ),
        GaugeMetricFamily(
            "breaker_concurrent_calls",
            "Runs in progress (tickets held), abandoned runs included.",
            labels=["name"],
        ),
        GaugeMetricFamily(
            "breaker_abandoned_calls",
            "Runs that outlived their timeout and are still running, each holding its ticket.",
            labels=["name"],
        ),
        GaugeMetricFamily(
            "breaker_error_percentage",
            "Errors (failure, timeout, rejected) over requests in the rolling window, as a percentage.",
            labels=["name"],
        ),
    )


class CircuitCollector(Collector):
    """A Prometheus collector of every circuit of the current `breaker` registry.

    Register it on a ``prometheus_client.CollectorRegistry`` (or use `register`); each scrape calls `collect`,
    which reads one `breaker.Circuit.statistics` snapshot per circuit. The module docstring lists the metrics.

    Args:
        buckets: Upper bounds in seconds of the duration histogram, increasing, each one of `breaker.BOUNDS`
            (``+Inf`` is added). Defaults to Prometheus' default buckets.

    Raises:
        TypeError: ``buckets`` is not a sequence of numbers.
        ValueError: ``buckets`` is empty, not increasing, or holds a bound that is not in `breaker.BOUNDS`.
    """

    def __init__(self, *, buckets: Sequence[float] = DEFAULT_BUCKETS) -> None:
        self.buckets = _check_buckets(buckets)
        # The ``le`` label as prometheus_client's own histograms write it (Go's float format, which is Python's
        # repr for every bound in breaker.BOUNDS).
        self._les = tuple(repr(bound) for bound in self.buckets)

    def __repr__(self) -> str:
        return f"CircuitCollector(buckets={self.buckets!r})"

    def describe(self) -> Iterable[Metric]:
        """The metric families this collector yields, without samples (the registry checks names with it)."""
        return _families()

    def collect(self) -> Iterable[Metric]:
        """Every metric of every circuit, from one statistics snapshot per circuit taken now.

        Returns:
            The metric families, in the order the module docstring lists them.
        """
        families = _families()
        state, calls, durations, concurrent, abandoned, error_percentage = families
        for circuit in circuits():
            stats = circuit.statistics()
            name = stats.name
            for s in _STATES:
                state.add_metric([name, s.value], 1.0 if stats.state is s else 0.0)
            for event, count in stats.cumulative.items():
                calls.add_metric([name, event], count)
            durations.add_metric([name], self._buckets_of(stats), stats.run_durations.sum)
            concurrent.add_metric([name], stats.active)
            abandoned.add_metric([name], stats.abandoned)
            error_percentage.add_metric([name], stats.error_percentage)
        return families

    def _buckets_of(self, stats: CircuitStatistics) -> list[tuple[str, float]]:
        """Cumulative bucket counts of the run durations, ``+Inf`` last."""
        histogram = stats.run_durations
        counts = [float(histogram.count_at_most(bound)) for bound in self.buckets]
        return [*zip(self._les, counts, strict=True), ("+Inf", float(histogram.count))]


def register(registry: CollectorRegistry = REGISTRY, *, buckets: Sequence[float] = DEFAULT_BUCKETS) -> CircuitCollector:
    """Make a `CircuitCollector` and register it on ``registry``.

    Args:
        registry: Where to register it; prometheus_client's global ``REGISTRY`` by default.
        buckets: The duration histogram's bounds in seconds (see `CircuitCollector`).

    Returns:
        The collector, for ``registry.unregister(collector)``.

    Raises:
        ValueError: ``registry`` already holds these metric names (a collector was registered there before), or
            ``buckets`` is invalid.
        TypeError: ``buckets`` is not a sequence of numbers.
    """
    collector = CircuitCollector(buckets=buckets)
    registry.register(collector)
    return collector
