"""The Hystrix stream's messages: what the Hystrix Dashboard and Turbine read, built from circuit snapshots.

Pure functions, no I/O: `command_message` and `thread_pool_message` turn a `CircuitStatistics` into the JSON
objects Java Hystrix sends, `encode` makes one unnamed server-sent event of one, and `render` one interval of the
stream (both messages of every circuit, then `PING`). Hystrix speaks integers and milliseconds: durations are
rounded half up to whole milliseconds, and anything unbounded (a ``math.inf`` timeout or ticket count, and the
fallbacks, which have no limit) is sent as `INT_MAX`, Java's ``Integer.MAX_VALUE``, which is what a Java user sets
for "no limit" (JSON has no infinity). How each of our figures maps to Hystrix's fields is on each builder.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Final, Literal, TypedDict

from typing_extensions import NotRequired

from breaker import PERCENTILES, Circuit, CircuitStatistics, LatencyStatistics, State

__all__ = [
    "INT_MAX",
    "PING",
    "CommandMessage",
    "ThreadPoolMessage",
    "command_message",
    "encode",
    "render",
    "thread_pool_message",
]

#: What stands for "no limit" (and for any figure too large for a Java int): Java's ``Integer.MAX_VALUE``.
INT_MAX: Final = 2**31 - 1
#: The keep-alive sent after each interval's messages (a field every SSE client ignores).
PING: Final = b"ping: \n\n"

_OPEN_STATES: Final = frozenset({State.OPEN, State.HALF_OPEN, State.FORCED_OPEN})
_RUNS: Final = ("success", "failure", "timeout", "bad-request")  # the events of a call whose run started
_NEED_FALLBACK: Final = ("failure", "timeout", "short-circuit", "rejected")  # the events a fallback answers
#: Hystrix's name for each isolation `CircuitStatistics.isolation` names (asyncio is ours).
_STRATEGIES: Final = {"thread": "THREAD", "caller": "SEMAPHORE", "asyncio": "ASYNCIO"}


class CommandMessage(TypedDict):
    """The ``HystrixCommand`` message of one circuit, as `command_message` builds it (JSON types)."""

    type: Literal["HystrixCommand"]
    name: str
    group: str
    currentTime: int
    isCircuitBreakerOpen: bool
    errorPercentage: int
    errorCount: int
    requestCount: int
    rollingCountBadRequests: int
    rollingCountCollapsedRequests: int
    rollingCountEmit: int
    rollingCountExceptionsThrown: int
    rollingCountFailure: int
    rollingCountFallbackEmit: int
    rollingCountFallbackFailure: int
    rollingCountFallbackMissing: int
    rollingCountFallbackRejection: int
    rollingCountFallbackSuccess: int
    rollingCountResponsesFromCache: int
    rollingCountSemaphoreRejected: int
    rollingCountShortCircuited: int
    rollingCountSuccess: int
    rollingCountThreadPoolRejected: int
    rollingCountTimeout: int
    currentConcurrentExecutionCount: int
    rollingMaxConcurrentExecutionCount: int
    latencyExecute_mean: int
    latencyExecute: dict[str, int]
    latencyTotal_mean: int
    latencyTotal: dict[str, int]
    propertyValue_circuitBreakerRequestVolumeThreshold: int
    propertyValue_circuitBreakerSleepWindowInMilliseconds: int
    propertyValue_circuitBreakerErrorThresholdPercentage: int
    propertyValue_circuitBreakerForceOpen: bool
    propertyValue_circuitBreakerForceClosed: bool
    propertyValue_circuitBreakerEnabled: bool
    propertyValue_executionIsolationStrategy: str
    propertyValue_executionIsolationThreadTimeoutInMilliseconds: int
    propertyValue_executionTimeoutInMilliseconds: int
    propertyValue_executionIsolationThreadInterruptOnTimeout: bool
    propertyValue_executionIsolationThreadPoolKeyOverride: None
    propertyValue_executionIsolationSemaphoreMaxConcurrentRequests: int
    propertyValue_fallbackIsolationSemaphoreMaxConcurrentRequests: int
    propertyValue_metricsRollingStatisticalWindowInMilliseconds: int
    propertyValue_requestCacheEnabled: bool
    propertyValue_requestLogEnabled: bool
    reportingHosts: int
    threadPool: str
    # Not Hystrix's (the dashboard ignores unknown keys):
    circuitState: str
    rollingCountCancelled: int
    rollingCountSlow: int
    currentAbandonedCount: int
    propertyValue_slowCallDurationInMilliseconds: int
    propertyValue_slowCallPercentThreshold: int
    # Fleet mode only (`breaker.configure_fleet`):
    fleetState: NotRequired[str]
    fleetRequestCount: NotRequired[int]
    fleetErrorCount: NotRequired[int]
    fleetErrorPercentage: NotRequired[int]
    fleetGeneration: NotRequired[int]
    fleetConnected: NotRequired[bool]
    fleetProbing: NotRequired[bool]
    fleetTripRequestCount: NotRequired[int]
    fleetTripErrorCount: NotRequired[int]
    fleetTripErrorPercentage: NotRequired[int]


class ThreadPoolMessage(TypedDict):
    """The ``HystrixThreadPool`` message of one circuit's tickets, as `thread_pool_message` builds it."""

    type: Literal["HystrixThreadPool"]
    name: str
    currentTime: int
    currentActiveCount: int
    currentCompletedTaskCount: int
    currentCorePoolSize: int
    currentLargestPoolSize: int
    currentMaximumPoolSize: int
    currentPoolSize: int
    currentQueueSize: int
    currentTaskCount: int
    rollingCountThreadsExecuted: int
    rollingMaxActiveThreads: int
    rollingCountCommandRejections: int
    propertyValue_queueSizeRejectionThreshold: int
    propertyValue_metricsRollingStatisticalWindowInMilliseconds: int
    reportingHosts: int


def _ms(seconds: float) -> int:
    """Seconds as whole milliseconds, rounded half up; `INT_MAX` for infinity and anything beyond it."""
    if seconds * 1000 >= INT_MAX:
        return INT_MAX
    return max(0, math.floor(seconds * 1000 + 0.5))


def _limit(value: float) -> int:
    """A count that may be ``math.inf``, as a Java int."""
    return INT_MAX if value >= INT_MAX else int(value)


def _strategy(isolation: str) -> str:
    """``executionIsolationStrategy`` for `CircuitStatistics.isolation`: ``"thread+asyncio"`` -> ``"THREAD+ASYNCIO"``,
    ``"caller"`` -> ``"SEMAPHORE"``."""
    return "+".join(_STRATEGIES.get(part, part.upper()) for part in isolation.split("+"))


def _latency(stats: LatencyStatistics) -> dict[str, int]:
    return {f"{p:g}": _ms(stats.percentiles[p]) for p in PERCENTILES}


def command_message(stats: CircuitStatistics, now_ms: int, *, group: str | None = None) -> CommandMessage:
    """The ``HystrixCommand`` message of one circuit's snapshot. Pure.

    Every figure is the snapshot's own, over the rolling window unless said otherwise:

    - ``requestCount`` / ``errorCount`` / ``errorPercentage``: ``requests`` / ``errors`` / ``error_percentage``
      (requests = success + failure + timeout + rejected; errors = failure + timeout + rejected).
    - ``rollingCountSuccess``, ``Failure``, ``Timeout``, ``ShortCircuited``, ``BadRequests``, ``FallbackSuccess``,
      ``FallbackFailure``: the events of the same names. ``rejected`` is ``ThreadPoolRejected`` under thread
      isolation and ``SemaphoreRejected`` under caller isolation (the other one is 0).
    - ``rollingCountExceptionsThrown``: calls that raised to their caller, derived as failure + timeout +
      short-circuit + rejected + bad-request - fallback-success (a bad request always raises; a fallback that
      failed raises `breaker.FallbackError`). ``rollingCountFallbackMissing``: failure + timeout + short-circuit +
      rejected - fallback-success - fallback-failure, the calls that needed a fallback and ran none (a
      ``BaseException`` from a run, which skips the fallback, counts here too). Both are clamped at 0: a call's
      fallback event can land in the next window bucket.
    - ``Emit``, ``FallbackEmit``, ``CollapsedRequests``, ``ResponsesFromCache``, ``FallbackRejection``: 0 (no such
      feature: fallbacks are not bounded, so never rejected).
    - ``currentConcurrentExecutionCount``: ``active`` (tickets held); ``rollingMaxConcurrentExecutionCount``:
      ``peak_active``.
    - ``latencyExecute`` / ``latencyTotal``: the run and whole-call percentiles over the latency window, in ms.
    - ``isCircuitBreakerOpen``: true when open, half-open or forced open. ``circuitState`` (extra) has the exact
      state: ``"closed"``, ``"open"``, ``"half_open"``, ``"forced_open"`` or ``"forced_closed"``.
    - Properties: from ``settings``. ``executionIsolationStrategy`` is ``stats.isolation`` in Hystrix's words:
      ``"THREAD"`` (thread isolation) or ``"SEMAPHORE"`` (caller isolation) for a command called by sync callers
      only (or not called yet), as Java Hystrix sends; ``"ASYNCIO"`` for one called only by async callers
      (`breaker.do_async`, a decorated coroutine function: awaited on the event loop, whatever the setting); and
      ``"THREAD+ASYNCIO"`` or ``"SEMAPHORE+ASYNCIO"`` for one called by both. ``rejected`` goes to
      ``ThreadPoolRejected`` or ``SemaphoreRejected`` by the ``isolation`` setting alone, as above. Both timeout
      properties are ``timeout``; ``executionIsolationSemaphoreMaxConcurrentRequests`` is
      ``max_concurrent_requests``; ``fallbackIsolationSemaphoreMaxConcurrentRequests`` is `INT_MAX`;
      ``circuitBreakerErrorThresholdPercentage`` is the threshold rounded up (equivalent: the percentage it is
      compared with is a whole number); ``InterruptOnTimeout`` is false (Python threads cannot be interrupted);
      ``ThreadPoolKeyOverride`` is null; request cache and request log are false; ``circuitBreakerEnabled`` is
      true.
    - ``threadPool``: the command name (each circuit has its own tickets). ``reportingHosts``: 1.
    - Extras: ``rollingCountCancelled`` (async callers cancelled), ``rollingCountSlow`` (``slow``: successes and
      failures whose run took at least ``slow_call_duration``, counted in their own field too),
      ``currentAbandonedCount`` (``abandoned``), ``propertyValue_slowCallDurationInMilliseconds``
      (``slow_call_duration``, at least 1; `INT_MAX` when infinite: no call is slow) and
      ``propertyValue_slowCallPercentThreshold`` (``slow_call_percent_threshold`` rounded up, as the error
      threshold); in fleet mode (``stats.fleet``), the fleet's figures: ``fleetState``, ``fleetRequestCount``,
      ``fleetErrorCount``, ``fleetErrorPercentage``, ``fleetGeneration``, ``fleetConnected``, ``fleetProbing``,
      and while the fleet is open, the figures that tripped it (when known here): ``fleetTripRequestCount``,
      ``fleetTripErrorCount``, ``fleetTripErrorPercentage``.

    Args:
        stats: The circuit's snapshot (``circuit.statistics()``).
        now_ms: ``currentTime``: milliseconds since the epoch.
        group: The command group; default the command name.

    Returns:
        The message, ready for `encode`.
    """
    counts, settings = stats.counts, stats.settings
    thread = settings.isolation == "thread"
    raised = sum(counts[e] for e in _NEED_FALLBACK) + counts["bad-request"] - counts["fallback-success"]
    missing = sum(counts[e] for e in _NEED_FALLBACK) - counts["fallback-success"] - counts["fallback-failure"]
    timeout = max(1, _ms(settings.timeout))
    window = max(1, _ms(settings.rolling_window))
    message: CommandMessage = {
        "type": "HystrixCommand",
        "name": stats.name,
        "group": stats.name if group is None else group,
        "currentTime": now_ms,
        "isCircuitBreakerOpen": stats.state in _OPEN_STATES,
        "errorPercentage": stats.error_percentage,
        "errorCount": stats.errors,
        "requestCount": stats.requests,
        "rollingCountBadRequests": counts["bad-request"],
        "rollingCountCollapsedRequests": 0,
        "rollingCountEmit": 0,
        "rollingCountExceptionsThrown": max(0, raised),
        "rollingCountFailure": counts["failure"],
        "rollingCountFallbackEmit": 0,
        "rollingCountFallbackFailure": counts["fallback-failure"],
        "rollingCountFallbackMissing": max(0, missing),
        "rollingCountFallbackRejection": 0,
        "rollingCountFallbackSuccess": counts["fallback-success"],
        "rollingCountResponsesFromCache": 0,
        "rollingCountSemaphoreRejected": 0 if thread else counts["rejected"],
        "rollingCountShortCircuited": counts["short-circuit"],
        "rollingCountSuccess": counts["success"],
        "rollingCountThreadPoolRejected": counts["rejected"] if thread else 0,
        "rollingCountTimeout": counts["timeout"],
        "currentConcurrentExecutionCount": stats.active,
        "rollingMaxConcurrentExecutionCount": stats.peak_active,
        "latencyExecute_mean": _ms(stats.latency_execute.mean),
        "latencyExecute": _latency(stats.latency_execute),
        "latencyTotal_mean": _ms(stats.latency_total.mean),
        "latencyTotal": _latency(stats.latency_total),
        "propertyValue_circuitBreakerRequestVolumeThreshold": settings.request_volume_threshold,
        "propertyValue_circuitBreakerSleepWindowInMilliseconds": max(1, _ms(settings.sleep_window)),
        "propertyValue_circuitBreakerErrorThresholdPercentage": math.ceil(settings.error_percent_threshold),
        "propertyValue_circuitBreakerForceOpen": settings.force_open,
        "propertyValue_circuitBreakerForceClosed": settings.force_closed,
        "propertyValue_circuitBreakerEnabled": True,
        "propertyValue_executionIsolationStrategy": _strategy(stats.isolation),
        "propertyValue_executionIsolationThreadTimeoutInMilliseconds": timeout,
        "propertyValue_executionTimeoutInMilliseconds": timeout,
        "propertyValue_executionIsolationThreadInterruptOnTimeout": False,
        "propertyValue_executionIsolationThreadPoolKeyOverride": None,
        "propertyValue_executionIsolationSemaphoreMaxConcurrentRequests": _limit(settings.max_concurrent_requests),
        "propertyValue_fallbackIsolationSemaphoreMaxConcurrentRequests": INT_MAX,
        "propertyValue_metricsRollingStatisticalWindowInMilliseconds": window,
        "propertyValue_requestCacheEnabled": False,
        "propertyValue_requestLogEnabled": False,
        "reportingHosts": 1,
        "threadPool": stats.name,
        "circuitState": stats.state.value,
        "rollingCountCancelled": counts["cancelled"],
        "rollingCountSlow": counts["slow"],
        "currentAbandonedCount": stats.abandoned,
        "propertyValue_slowCallDurationInMilliseconds": max(1, _ms(settings.slow_call_duration)),
        "propertyValue_slowCallPercentThreshold": math.ceil(settings.slow_call_percent_threshold),
    }
    fleet = stats.fleet
    if fleet is not None:  # the fleet's figures beside the local ones
        message["fleetState"] = fleet.state
        message["fleetRequestCount"] = fleet.requests
        message["fleetErrorCount"] = fleet.errors
        message["fleetErrorPercentage"] = fleet.error_percentage
        message["fleetGeneration"] = fleet.generation
        message["fleetConnected"] = fleet.connected
        message["fleetProbing"] = fleet.probing
        requests, errors, percentage = fleet.trip_requests, fleet.trip_errors, fleet.trip_error_percentage
        if requests is not None and errors is not None and percentage is not None:  # open: what tripped it
            message["fleetTripRequestCount"] = requests
            message["fleetTripErrorCount"] = errors
            message["fleetTripErrorPercentage"] = percentage
    return message


def thread_pool_message(stats: CircuitStatistics, now_ms: int) -> ThreadPoolMessage:
    """The ``HystrixThreadPool`` message of one circuit's snapshot: its tickets seen as a thread pool. Pure.

    Each circuit is its own pool, named after the command, in both isolations. A run is a call whose run started
    (success, failure, timeout or bad request):

    - ``currentActiveCount``: ``active`` (tickets held, abandoned runs included).
    - ``currentPoolSize``, ``currentCorePoolSize``, ``currentMaximumPoolSize``: ``max_concurrent_requests``
      (`INT_MAX` for no limit).
    - ``currentLargestPoolSize`` and ``rollingMaxActiveThreads``: ``peak_active``, the most tickets held at once
      over the rolling window (the core keeps no peak since creation).
    - ``rollingCountThreadsExecuted``: runs over the rolling window; ``rollingCountCommandRejections``:
      ``rejected``.
    - ``currentCompletedTaskCount``: runs since creation that have returned (``cumulative`` runs minus the
      ``abandoned`` ones still going); ``currentTaskCount``: that plus ``active``, the runs ever started.
    - ``currentQueueSize`` and ``propertyValue_queueSizeRejectionThreshold``: 0 (a call that finds no ticket is
      rejected at once: there is no queue).

    Args:
        stats: The circuit's snapshot (``circuit.statistics()``).
        now_ms: ``currentTime``: milliseconds since the epoch.

    Returns:
        The message, ready for `encode`.
    """
    completed = max(0, sum(stats.cumulative[e] for e in _RUNS) - stats.abandoned)
    tickets = _limit(stats.max_concurrent_requests)
    return {
        "type": "HystrixThreadPool",
        "name": stats.name,
        "currentTime": now_ms,
        "currentActiveCount": stats.active,
        "currentCompletedTaskCount": completed,
        "currentCorePoolSize": tickets,
        "currentLargestPoolSize": stats.peak_active,
        "currentMaximumPoolSize": tickets,
        "currentPoolSize": tickets,
        "currentQueueSize": 0,
        "currentTaskCount": completed + stats.active,
        "rollingCountThreadsExecuted": sum(stats.counts[e] for e in _RUNS),
        "rollingMaxActiveThreads": stats.peak_active,
        "rollingCountCommandRejections": stats.counts["rejected"],
        "propertyValue_queueSizeRejectionThreshold": 0,
        "propertyValue_metricsRollingStatisticalWindowInMilliseconds": max(1, _ms(stats.settings.rolling_window)),
        "reportingHosts": 1,
    }


def encode(message: Mapping[str, object]) -> bytes:
    """One unnamed SSE message: ``data: <the JSON on one line>`` and a blank line.

    Raises:
        ValueError: A value JSON cannot carry (NaN or infinity: the builders never produce one).
    """
    return b"data: " + json.dumps(message, separators=(",", ":"), allow_nan=False).encode("ascii") + b"\n\n"


def render(circuits: Iterable[Circuit], now_ms: int, *, group: Callable[[str], str] | None = None) -> bytes:
    """One interval of the stream: both messages of every circuit, in order, then `PING`.

    Reads each circuit's ``statistics()`` and nothing else.

    Args:
        circuits: The circuits to report (the publisher passes ``breaker.circuits()``).
        now_ms: ``currentTime`` of every message.
        group: Maps a command name to its group; default the name itself.
    """
    parts = []
    for circuit in circuits:
        stats = circuit.statistics()
        parts.append(encode(command_message(stats, now_ms, group=None if group is None else group(stats.name))))
        parts.append(encode(thread_pool_message(stats, now_ms)))
    parts.append(PING)
    return b"".join(parts)
