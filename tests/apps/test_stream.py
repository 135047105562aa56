"""breaker.stream: the Hystrix event stream, its messages, and the stdlib, WSGI and ASGI servers of it."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import http.client
import json
import math
import socket
import socketserver
import subprocess
import sys
import textwrap
import threading
import time
import wsgiref.simple_server
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any, Literal

import blockbuster
import pytest
import uvicorn

import breaker
import breaker.stream
from breaker.stream import INT_MAX, StreamServer
from breaker.testing import FakeClock

Json = dict[str, Any]

# -- what the Hystrix Dashboard reads (the project's REFERENCE.md, section 3) -------------------------------------

#: Every field of a HystrixCommand message, with its JSON type.
COMMAND_FIELDS: dict[str, type] = {
    "type": str,
    "name": str,
    "group": str,
    "currentTime": int,
    "isCircuitBreakerOpen": bool,
    "errorPercentage": int,
    "errorCount": int,
    "requestCount": int,
    **dict.fromkeys(
        (
            "rollingCountBadRequests",
            "rollingCountCollapsedRequests",
            "rollingCountEmit",
            "rollingCountExceptionsThrown",
            "rollingCountFailure",
            "rollingCountFallbackEmit",
            "rollingCountFallbackFailure",
            "rollingCountFallbackMissing",
            "rollingCountFallbackRejection",
            "rollingCountFallbackSuccess",
            "rollingCountResponsesFromCache",
            "rollingCountSemaphoreRejected",
            "rollingCountShortCircuited",
            "rollingCountSuccess",
            "rollingCountThreadPoolRejected",
            "rollingCountTimeout",
            "currentConcurrentExecutionCount",
            "rollingMaxConcurrentExecutionCount",
            "latencyExecute_mean",
            "latencyTotal_mean",
            "propertyValue_circuitBreakerRequestVolumeThreshold",
            "propertyValue_circuitBreakerSleepWindowInMilliseconds",
            "propertyValue_circuitBreakerErrorThresholdPercentage",
            "propertyValue_executionIsolationThreadTimeoutInMilliseconds",
            "propertyValue_executionTimeoutInMilliseconds",
            "propertyValue_executionIsolationSemaphoreMaxConcurrentRequests",
            "propertyValue_fallbackIsolationSemaphoreMaxConcurrentRequests",
            "propertyValue_metricsRollingStatisticalWindowInMilliseconds",
            "reportingHosts",
        ),
        int,
    ),
    "latencyExecute": dict,
    "latencyTotal": dict,
    **dict.fromkeys(
        (
            "propertyValue_circuitBreakerForceOpen",
            "propertyValue_circuitBreakerForceClosed",
            "propertyValue_circuitBreakerEnabled",
            "propertyValue_executionIsolationThreadInterruptOnTimeout",
            "propertyValue_requestCacheEnabled",
            "propertyValue_requestLogEnabled",
        ),
        bool,
    ),
    "propertyValue_executionIsolationStrategy": str,
    "propertyValue_executionIsolationThreadPoolKeyOverride": type(None),
    "threadPool": str,
}
#: The fields without which the dashboard rejects a HystrixCommand message.
COMMAND_REQUIRED = {
    "reportingHosts",
    "type",
    "name",
    "group",
    "isCircuitBreakerOpen",
    "errorPercentage",
    "errorCount",
    "requestCount",
    "rollingCountBadRequests",
    "rollingCountCollapsedRequests",
    "rollingCountEmit",
    "rollingCountExceptionsThrown",
    "rollingCountFailure",
    "rollingCountFallbackEmit",
    "rollingCountFallbackFailure",
    "rollingCountFallbackMissing",
    "rollingCountFallbackRejection",
    "rollingCountFallbackSuccess",
    "rollingCountResponsesFromCache",
    "rollingCountSemaphoreRejected",
    "rollingCountShortCircuited",
    "rollingCountSuccess",
    "rollingCountThreadPoolRejected",
    "rollingCountTimeout",
    "currentConcurrentExecutionCount",
    "latencyExecute_mean",
    "latencyExecute",
    *(k for k in COMMAND_FIELDS if k.startswith("propertyValue_") and not k.endswith("ThreadPoolKeyOverride")),
}
#: Every field of a HystrixThreadPool message, with its JSON type.
THREAD_POOL_FIELDS: dict[str, type] = {
    "type": str,
    "name": str,
    **dict.fromkeys(
        (
            "currentTime",
            "currentActiveCount",
            "currentCompletedTaskCount",
            "currentCorePoolSize",
            "currentLargestPoolSize",
            "currentMaximumPoolSize",
            "currentPoolSize",
            "currentQueueSize",
            "currentTaskCount",
            "rollingCountThreadsExecuted",
            "rollingMaxActiveThreads",
            "rollingCountCommandRejections",
            "propertyValue_queueSizeRejectionThreshold",
            "propertyValue_metricsRollingStatisticalWindowInMilliseconds",
            "reportingHosts",
        ),
        int,
    ),
}
#: breaker's own fields of a HystrixCommand message (outside fleet mode), with their JSON types.
COMMAND_EXTRAS: dict[str, type] = {
    "circuitState": str,
    "rollingCountCancelled": int,
    "rollingCountSlow": int,
    "currentAbandonedCount": int,
    "propertyValue_slowCallDurationInMilliseconds": int,
    "propertyValue_slowCallPercentThreshold": int,
}
THREAD_POOL_REQUIRED = set(THREAD_POOL_FIELDS) - {"currentTime", "rollingCountCommandRejections"}
PERCENTILE_KEYS = ["0", "25", "50", "75", "90", "95", "99", "99.5", "100"]


def parse(data: bytes) -> Json:
    """The JSON of one encoded SSE message, checking its framing: one ``data:`` line and a blank line."""
    assert data.startswith(b"data: ")
    assert data.endswith(b"\n\n")
    assert data.count(b"\n") == 2
    message: Json = json.loads(data[len(b"data: ") : -2])
    return message


def check_types(message: Json, fields: dict[str, type]) -> None:
    for key, kind in fields.items():
        assert type(message[key]) is kind, f"{key}: {message[key]!r} is not a JSON {kind.__name__}"


def snapshot(name: str) -> breaker.CircuitStatistics:
    return breaker.get_circuit(name)[0].statistics()


def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until ``predicate()`` holds (a bound on a wait, not a guess at how long something takes)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting for the condition"
        time.sleep(0.005)


def stream_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("breaker-stream")]


# -- the messages, pure -------------------------------------------------------------------------------------------


def test_messages_carry_every_field_the_dashboard_requires_with_its_json_type() -> None:
    """A fresh circuit's two messages hold every documented field, with the JSON type the dashboard expects."""
    stats = snapshot("fresh")
    command = parse(breaker.stream.encode(breaker.stream.command_message(stats, 1234)))
    pool = parse(breaker.stream.encode(breaker.stream.thread_pool_message(stats, 1234)))
    assert set(COMMAND_FIELDS) >= COMMAND_REQUIRED
    check_types(command, COMMAND_FIELDS)
    check_types(command, COMMAND_EXTRAS)
    assert set(command) == set(COMMAND_FIELDS) | set(COMMAND_EXTRAS)
    check_types(pool, THREAD_POOL_FIELDS)
    assert list(command["latencyExecute"]) == PERCENTILE_KEYS == list(command["latencyTotal"])
    assert all(type(v) is int for v in [*command["latencyExecute"].values(), *command["latencyTotal"].values()])
    assert (command["type"], pool["type"]) == ("HystrixCommand", "HystrixThreadPool")
    assert command["currentTime"] == pool["currentTime"] == 1234


def _scenario(clock: FakeClock) -> None:
    """12 requests through 'pay' (caller isolation, one ticket), the last of which trips it, then 3 short-circuits."""
    name = "pay"
    config = breaker.CommandConfig(
        isolation="caller", timeout=1.0, max_concurrent_requests=1, request_volume_threshold=12, sleep_window=7.5
    )
    breaker.configure_command(name, dataclasses.replace(config, ignored_exceptions=(KeyError,)))

    def ok() -> str:
        clock.advance(0.010)
        return "ok"

    def boom() -> str:
        clock.advance(0.005)
        raise RuntimeError("down")

    def bad() -> str:
        raise KeyError("no such order")

    def slow() -> str:
        clock.advance(1.5)
        return "late"

    def nested() -> str:  # holds the only ticket: the inner call is rejected
        clock.advance(0.020)
        return breaker.do(name, ok, fallback=lambda e: "rejected")

    def failing_fallback(error: Exception) -> str:
        raise ValueError("fallback down")

    for _ in range(5):
        breaker.do(name, ok)  # 5 successes
    assert breaker.do(name, nested) == "rejected"  # 1 success, 1 rejected + fallback-success
    with pytest.raises(KeyError):
        breaker.do(name, bad)  # 1 bad request, raised
    for _ in range(2):
        breaker.do(name, boom, fallback=lambda e: "fb")  # 2 failures + fallback-success
    with pytest.raises(breaker.FallbackError):
        breaker.do(name, boom, fallback=failing_fallback)  # 1 failure + fallback-failure, raised
    assert breaker.do(name, slow, fallback=lambda e: "fb") == "fb"  # 1 timeout + fallback-success
    assert breaker.get_circuit(name)[0].state is breaker.State.CLOSED
    with pytest.raises(RuntimeError):
        breaker.do(name, boom)  # 1 failure, raised: 6 errors in 12 requests, 50%: trips
    assert breaker.get_circuit(name)[0].state is breaker.State.OPEN
    for _ in range(2):
        with pytest.raises(breaker.CircuitOpenError):
            breaker.do(name, ok)  # 2 short-circuits, raised
    breaker.do(name, ok, fallback=lambda e: "fb")  # 1 short-circuit + fallback-success


def test_command_message_values_follow_a_known_scenario(clock: FakeClock) -> None:
    """Each count, property and latency of the HystrixCommand message is the scenario's own figure."""
    _scenario(clock)
    stats = snapshot("pay")
    message = parse(breaker.stream.encode(breaker.stream.command_message(stats, 1_700_000_000_123)))
    expected = {
        "type": "HystrixCommand",
        "name": "pay",
        "group": "pay",
        "currentTime": 1_700_000_000_123,
        "isCircuitBreakerOpen": True,
        "circuitState": "open",
        "errorPercentage": 50,
        "errorCount": 6,
        "requestCount": 12,
        "rollingCountSuccess": 6,
        "rollingCountFailure": 4,
        "rollingCountTimeout": 1,
        "rollingCountShortCircuited": 3,
        "rollingCountSemaphoreRejected": 1,
        "rollingCountThreadPoolRejected": 0,
        "rollingCountBadRequests": 1,
        "rollingCountFallbackSuccess": 5,
        "rollingCountFallbackFailure": 1,
        "rollingCountExceptionsThrown": 5,  # bad request, fallback failure, a failure and 2 short-circuits
        "rollingCountFallbackMissing": 3,  # that failure and those 2 short-circuits
        "rollingCountCollapsedRequests": 0,
        "rollingCountEmit": 0,
        "rollingCountFallbackEmit": 0,
        "rollingCountFallbackRejection": 0,
        "rollingCountResponsesFromCache": 0,
        "rollingCountCancelled": 0,
        "rollingCountSlow": 0,
        "currentConcurrentExecutionCount": 0,
        "rollingMaxConcurrentExecutionCount": 1,
        "currentAbandonedCount": 0,
        "propertyValue_circuitBreakerRequestVolumeThreshold": 12,
        "propertyValue_circuitBreakerSleepWindowInMilliseconds": 7500,
        "propertyValue_circuitBreakerErrorThresholdPercentage": 50,
        "propertyValue_circuitBreakerForceOpen": False,
        "propertyValue_circuitBreakerForceClosed": False,
        "propertyValue_circuitBreakerEnabled": True,
        "propertyValue_executionIsolationStrategy": "SEMAPHORE",
        "propertyValue_executionIsolationThreadTimeoutInMilliseconds": 1000,
        "propertyValue_executionTimeoutInMilliseconds": 1000,
        "propertyValue_executionIsolationThreadInterruptOnTimeout": False,
        "propertyValue_executionIsolationThreadPoolKeyOverride": None,
        "propertyValue_executionIsolationSemaphoreMaxConcurrentRequests": 1,
        "propertyValue_fallbackIsolationSemaphoreMaxConcurrentRequests": INT_MAX,
        "propertyValue_metricsRollingStatisticalWindowInMilliseconds": 10_000,
        "propertyValue_requestCacheEnabled": False,
        "propertyValue_requestLogEnabled": False,
        "propertyValue_slowCallDurationInMilliseconds": INT_MAX,  # no call is slow
        "propertyValue_slowCallPercentThreshold": 100,
        "reportingHosts": 1,
        "threadPool": "pay",
    }
    assert {key: message[key] for key in expected} == expected
    # 12 runs: the bad request took 0 ms, three 5 ms, five 10 ms, one 20 ms, the timed-out one 1500 ms; the
    # histogram's percentiles are within a bucket's width (16%) of the exact figures.
    latency = message["latencyExecute"]
    assert latency["0"] == 0
    assert 1300 <= latency["100"] <= 1500
    assert 4 <= latency["25"] <= 6
    assert 8 <= latency["50"] <= 10
    assert 110 <= message["latencyExecute_mean"] <= 150
    for key in PERCENTILE_KEYS:
        assert latency[key] == math.floor(stats.latency_execute.percentiles[float(key)] * 1000 + 0.5)
    assert message["latencyTotal"] == latency  # no fallback took any time


def test_thread_pool_message_maps_the_tickets_of_a_known_scenario(clock: FakeClock) -> None:
    """The HystrixThreadPool message reports the circuit's tickets as a pool: size, peak, runs, rejections."""
    _scenario(clock)
    message = parse(breaker.stream.encode(breaker.stream.thread_pool_message(snapshot("pay"), 99)))
    assert message == {
        "type": "HystrixThreadPool",
        "name": "pay",
        "currentTime": 99,
        "currentActiveCount": 0,
        "currentCompletedTaskCount": 12,  # runs: 6 successes, 4 failures, 1 timeout, 1 bad request
        "currentCorePoolSize": 1,
        "currentLargestPoolSize": 1,
        "currentMaximumPoolSize": 1,
        "currentPoolSize": 1,
        "currentQueueSize": 0,
        "currentTaskCount": 12,
        "rollingCountThreadsExecuted": 12,
        "rollingMaxActiveThreads": 1,
        "rollingCountCommandRejections": 1,
        "propertyValue_queueSizeRejectionThreshold": 0,
        "propertyValue_metricsRollingStatisticalWindowInMilliseconds": 10_000,
        "reportingHosts": 1,
    }


def test_messages_taken_during_a_run_count_it_as_active(clock: FakeClock) -> None:
    """While a run holds its ticket, both messages show it active; completed tasks do not include it yet."""
    breaker.configure_command("busy", breaker.CommandConfig(isolation="caller", max_concurrent_requests=3))
    breaker.do("busy", lambda: None)

    def run() -> tuple[breaker.stream.CommandMessage, breaker.stream.ThreadPoolMessage]:
        stats = snapshot("busy")
        return breaker.stream.command_message(stats, 0), breaker.stream.thread_pool_message(stats, 0)

    command, pool = breaker.do("busy", run)
    assert (command["currentConcurrentExecutionCount"], command["rollingMaxConcurrentExecutionCount"]) == (1, 1)
    assert (pool["currentActiveCount"], pool["currentCompletedTaskCount"], pool["currentTaskCount"]) == (1, 1, 2)
    assert pool["currentPoolSize"] == 3


def test_an_abandoned_run_is_active_and_not_completed() -> None:
    """A thread-isolated run that timed out and still runs: active, abandoned, counted as a timeout, not done."""
    release = threading.Event()
    breaker.configure_command("hung", breaker.CommandConfig(timeout=0.05, max_concurrent_requests=2))
    try:
        assert breaker.do("hung", lambda: release.wait(10), fallback=lambda e: False) is False
        stats = snapshot("hung")
        command = breaker.stream.command_message(stats, 0)
        pool = breaker.stream.thread_pool_message(stats, 0)
        assert (command["rollingCountTimeout"], command["currentAbandonedCount"]) == (1, 1)
        assert command["currentConcurrentExecutionCount"] == 1
        assert command["propertyValue_executionIsolationStrategy"] == "THREAD"
        assert (pool["currentActiveCount"], pool["currentCompletedTaskCount"], pool["currentTaskCount"]) == (1, 0, 1)
    finally:
        release.set()
    eventually(lambda: snapshot("hung").active == 0)


@pytest.mark.parametrize(
    ("state", "is_open"),
    [
        (breaker.State.CLOSED, False),
        (breaker.State.OPEN, True),
        (breaker.State.HALF_OPEN, True),
        (breaker.State.FORCED_OPEN, True),
        (breaker.State.FORCED_CLOSED, False),
    ],
    ids=lambda value: str(value).lower(),
)
def test_is_circuit_breaker_open_and_the_exact_state(state: breaker.State, is_open: bool) -> None:
    """isCircuitBreakerOpen is true for open, half-open and forced open; circuitState names the exact state."""
    stats = dataclasses.replace(snapshot("s"), state=state)
    message = breaker.stream.command_message(stats, 0)
    assert message["isCircuitBreakerOpen"] is is_open
    assert message["circuitState"] == state.value


@pytest.mark.parametrize(("isolation", "thread", "semaphore"), [("thread", 4, 0), ("caller", 0, 4)], ids=str)
def test_rejections_are_thread_pool_or_semaphore_ones_by_isolation(
    isolation: Literal["thread", "caller"], thread: int, semaphore: int
) -> None:
    """Rejections count as ThreadPoolRejected under thread isolation and SemaphoreRejected under caller isolation."""
    stats = snapshot("r")
    stats = dataclasses.replace(
        stats,
        counts={**stats.counts, "rejected": 4},
        settings=dataclasses.replace(stats.settings, isolation=isolation),
    )
    message = breaker.stream.command_message(stats, 0)
    assert (message["rollingCountThreadPoolRejected"], message["rollingCountSemaphoreRejected"]) == (thread, semaphore)
    assert breaker.stream.thread_pool_message(stats, 0)["rollingCountCommandRejections"] == 4


def test_unlimited_timeout_and_tickets_are_sent_as_int_max() -> None:
    """math.inf timeout and tickets become 2**31 - 1, so the JSON stays valid (no Infinity)."""
    breaker.configure_command("free", breaker.CommandConfig(timeout=math.inf, max_concurrent_requests=math.inf))
    stats = snapshot("free")
    command = parse(breaker.stream.encode(breaker.stream.command_message(stats, 0)))
    pool = parse(breaker.stream.encode(breaker.stream.thread_pool_message(stats, 0)))
    assert INT_MAX == 2**31 - 1
    assert command["propertyValue_executionTimeoutInMilliseconds"] == INT_MAX
    assert command["propertyValue_executionIsolationThreadTimeoutInMilliseconds"] == INT_MAX
    assert command["propertyValue_executionIsolationSemaphoreMaxConcurrentRequests"] == INT_MAX
    assert pool["currentPoolSize"] == pool["currentCorePoolSize"] == pool["currentMaximumPoolSize"] == INT_MAX


def test_properties_round_to_whole_milliseconds_and_percentages() -> None:
    """Sub-millisecond durations round half up; a fractional error threshold is sent rounded up (same trip rule)."""
    breaker.configure_command(
        "fine", breaker.CommandConfig(timeout=0.0125, sleep_window=0.0005, error_percent_threshold=33.3)
    )
    message = breaker.stream.command_message(snapshot("fine"), 0)
    assert message["propertyValue_executionTimeoutInMilliseconds"] == 13
    assert message["propertyValue_circuitBreakerSleepWindowInMilliseconds"] == 1
    assert message["propertyValue_circuitBreakerErrorThresholdPercentage"] == 34


def test_slow_call_properties_are_whole_milliseconds_and_percentages() -> None:
    """slow_call_duration rounds half up to ms (at least 1) and its threshold rounds up; math.inf is INT_MAX."""
    breaker.configure_command(
        "sluggish", breaker.CommandConfig(slow_call_duration=0.0125, slow_call_percent_threshold=33.3)
    )
    message = breaker.stream.command_message(snapshot("sluggish"), 0)
    assert message["propertyValue_slowCallDurationInMilliseconds"] == 13
    assert message["propertyValue_slowCallPercentThreshold"] == 34
    breaker.configure_command("sluggish", breaker.CommandConfig(slow_call_duration=0.0001))
    assert breaker.stream.command_message(snapshot("sluggish"), 0)["propertyValue_slowCallDurationInMilliseconds"] == 1
    breaker.configure_command("sluggish", breaker.CommandConfig(slow_call_duration=math.inf))
    assert (
        breaker.stream.command_message(snapshot("sluggish"), 0)["propertyValue_slowCallDurationInMilliseconds"]
        == INT_MAX
    )


async def _ok() -> int:
    return 1


@pytest.mark.parametrize(
    ("isolation", "sync", "is_async", "strategy"),
    [
        pytest.param("thread", False, False, "THREAD", id="thread-no-calls"),
        pytest.param("caller", True, False, "SEMAPHORE", id="caller-sync"),
        pytest.param("thread", True, False, "THREAD", id="thread-sync"),
        pytest.param("thread", False, True, "ASYNCIO", id="thread-async"),
        pytest.param("caller", False, True, "ASYNCIO", id="caller-async"),
        pytest.param("thread", True, True, "THREAD+ASYNCIO", id="thread-both"),
        pytest.param("caller", True, True, "SEMAPHORE+ASYNCIO", id="caller-both"),
    ],
)
def test_isolation_strategy_says_how_the_calls_ran(
    isolation: Literal["thread", "caller"], sync: bool, is_async: bool, strategy: str
) -> None:
    """executionIsolationStrategy is Hystrix's THREAD or SEMAPHORE for sync callers, ASYNCIO for async ones, and
    both joined by "+" for a command with both."""
    breaker.configure_command("iso", breaker.CommandConfig(isolation=isolation))
    if sync:
        breaker.do("iso", lambda: 1)
    if is_async:
        asyncio.run(breaker.do_async("iso", _ok))
    message = breaker.stream.command_message(snapshot("iso"), 0)
    assert message["propertyValue_executionIsolationStrategy"] == strategy


def test_group_defaults_to_the_command_name_and_can_be_mapped() -> None:
    """The group is the command name unless a group is given (directly, or by render's mapping)."""
    stats = snapshot("orders.get")
    assert breaker.stream.command_message(stats, 0)["group"] == "orders.get"
    assert breaker.stream.command_message(stats, 0, group="orders")["group"] == "orders"
    payload = breaker.stream.render([breaker.get_circuit("orders.get")[0]], 0, group=lambda n: n.split(".")[0])
    assert parse(payload.split(b"\n\n")[0] + b"\n\n")["group"] == "orders"


def test_encode_makes_one_unnamed_single_line_message_whatever_the_name() -> None:
    """A name with a newline, quotes and non-ASCII text still gives one ``data:`` line and no ``event:`` line."""
    name = 'line\nbreak "quoted" caf\u00e9 \u2603'
    data = breaker.stream.encode(breaker.stream.command_message(snapshot(name), 0))
    assert b"event:" not in data
    assert parse(data)["name"] == name


def test_render_sends_both_messages_of_every_circuit_then_a_ping() -> None:
    """One interval: command and thread pool message per circuit, in creation order, then ``ping: ``."""
    for name in ("a", "b"):
        breaker.get_circuit(name)
    payload = breaker.stream.render(breaker.circuits(), 5)
    parts = payload.split(b"\n\n")
    assert parts[-2:] == [b"ping: ", b""]
    messages = [parse(part + b"\n\n") for part in parts[:-2]]
    assert [(m["type"], m["name"]) for m in messages] == [
        ("HystrixCommand", "a"),
        ("HystrixThreadPool", "a"),
        ("HystrixCommand", "b"),
        ("HystrixThreadPool", "b"),
    ]
    assert breaker.stream.render([], 5) == breaker.stream.PING == b"ping: \n\n"


# -- a plain HTTP client of the stream ------------------------------------------------------------------------------


class SseClient:
    """Reads the stream over HTTP with http.client and parses its server-sent events (a ping is None)."""

    def __init__(self, port: int, path: str = "/hystrix.stream", method: str = "GET") -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        self.connection.request(method, path)
        self.response = self.connection.getresponse()
        self.status = self.response.status

    def close(self) -> None:
        self.response.close()
        self.connection.close()

    def __enter__(self) -> SseClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def events(self) -> Iterator[Json | None]:
        data: list[bytes] = []
        ping = False
        while line := self.response.readline():
            if line == b"\n":
                assert len(data) + ping == 1, f"one field per message, got {data!r} ping={ping}"
                yield json.loads(data[0]) if data else None
                data, ping = [], False
            elif line.startswith(b"data: "):
                data.append(line[len(b"data: ") : -1])
            elif line == b"ping: \n":
                ping = True
            else:
                raise AssertionError(f"not a line of the Hystrix stream: {line!r}")

    def command(self, name: str, until: Callable[[Json], bool] = lambda m: True, timeout: float = 5.0) -> Json:
        """The first HystrixCommand message of ``name`` for which ``until`` holds, within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        for event in self.events():
            if event is not None and event["type"] == "HystrixCommand" and event["name"] == name and until(event):
                return event
            assert time.monotonic() < deadline, f"no HystrixCommand message of {name!r} as expected"
        raise AssertionError("the stream ended")


@pytest.fixture
def start() -> Iterator[Callable[..., StreamServer]]:
    """Starts stream servers on 127.0.0.1, on a port the OS picks; closes them after the test."""
    servers: list[StreamServer] = []

    def start(**options: Any) -> StreamServer:
        options.setdefault("interval", 0.02)
        server = breaker.stream.serve("127.0.0.1", 0, block=False, **options)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()
    assert stream_threads() == []


# -- the stdlib server ----------------------------------------------------------------------------------------------


def test_server_streams_with_the_hystrix_headers_and_follows_the_calls(start: Callable[..., StreamServer]) -> None:
    """GET /hystrix.stream answers 200 with the SSE headers, then messages whose counts follow the calls."""
    breaker.configure_command("svc", breaker.CommandConfig(isolation="caller"))
    breaker.do("svc", lambda: 1)
    server = start()
    assert server.url == f"http://127.0.0.1:{server.port}/hystrix.stream"
    with SseClient(server.port) as client:
        assert client.status == 200
        assert client.response.getheader("Content-Type") == "text/event-stream;charset=UTF-8"
        assert client.response.getheader("Cache-Control") == "no-cache, no-store, max-age=0, must-revalidate"
        assert client.response.getheader("Pragma") == "no-cache"
        first = client.command("svc")
        assert (first["requestCount"], first["rollingCountSuccess"]) == (1, 1)
        for _ in range(2):
            breaker.do("svc", lambda: 1 / 0, fallback=lambda e: 0.0)
        later = client.command("svc", until=lambda m: m["requestCount"] == 3)
        assert (later["errorCount"], later["errorPercentage"], later["rollingCountFallbackSuccess"]) == (2, 67, 2)
        kinds = {None if e is None else e["type"] for e, _ in zip(client.events(), range(9), strict=False)}
        assert kinds == {None, "HystrixCommand", "HystrixThreadPool"}
        assert later["currentTime"] >= first["currentTime"] > 1_600_000_000_000


def test_server_streams_the_slow_count_the_slow_properties_and_the_async_isolation(
    start: Callable[..., StreamServer], clock: FakeClock
) -> None:
    """Over the real server: rollingCountSlow follows slow calls, the slow-call properties are the settings, and
    a command called through do_async only is ASYNCIO."""
    breaker.configure_command(
        "lag", breaker.CommandConfig(slow_call_duration=0.25, slow_call_percent_threshold=80, timeout=10)
    )

    async def slow() -> int:
        clock.advance(0.25)
        return 1

    async def fast() -> int:
        return 1

    asyncio.run(breaker.do_async("lag", fast))
    server = start()
    with SseClient(server.port) as client:
        first = client.command("lag")
        assert (first["rollingCountSlow"], first["rollingCountSuccess"]) == (0, 1)
        assert first["propertyValue_slowCallDurationInMilliseconds"] == 250
        assert first["propertyValue_slowCallPercentThreshold"] == 80
        assert first["propertyValue_executionIsolationStrategy"] == "ASYNCIO"
        for _ in range(2):
            asyncio.run(breaker.do_async("lag", slow))
        later = client.command("lag", until=lambda m: m["rollingCountSuccess"] == 3)
        assert (later["rollingCountSlow"], later["requestCount"], later["errorCount"]) == (2, 3, 0)


def test_server_answers_503_past_max_clients(start: Callable[..., StreamServer]) -> None:
    """With max_clients clients connected, one more gets 503; once one leaves, a new one is served."""
    breaker.get_circuit("any")
    server = start(max_clients=2)
    first, second = SseClient(server.port), SseClient(server.port)
    try:
        assert (first.status, second.status) == (200, 200)
        with SseClient(server.port) as third:
            assert third.status == 503
        assert server.statistics().rejected == 1
        first.close()
        eventually(lambda: server.statistics().clients == 1)
        with SseClient(server.port) as fourth:
            assert fourth.status == 200
            assert fourth.command("any")["name"] == "any"
    finally:
        first.close()
        second.close()


def test_a_disconnected_client_is_dropped_and_the_publisher_stops(start: Callable[..., StreamServer]) -> None:
    """A client that hangs up is dropped (the count goes back to 0) and the last one out stops the publisher."""
    server = start()
    breaker.get_circuit("x")
    with SseClient(server.port) as client:
        client.command("x")
        assert server.statistics().clients == 1
        assert server.statistics().running
        assert [t.name for t in stream_threads()].count("breaker-stream-publisher") == 1
    eventually(lambda: server.statistics().clients == 0)
    assert not server.statistics().running
    eventually(lambda: "breaker-stream-publisher" not in [t.name for t in stream_threads()])


def _big_circuits(count: int) -> list[breaker.Circuit]:
    """Circuits with 4,000-character names: each interval weighs about 16 kB per circuit."""
    return [breaker.get_circuit(f"{i}-" + "x" * 4000)[0] for i in range(count)]


def _stalled_client(port: int) -> socket.socket:
    """A client that asks for the stream and never reads (a small receive buffer fills quickly)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"GET /hystrix.stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    return sock


def test_a_client_that_stops_reading_blocks_neither_the_others_nor_the_calls(
    start: Callable[..., StreamServer],
) -> None:
    """While one client's writer is stuck on a full socket, another client gets fresh figures and calls go on."""
    big = _big_circuits(8)
    breaker.configure_command("svc", breaker.CommandConfig(isolation="caller"))
    phase = ["fill"]
    server = start(
        interval=0.01,
        buffer=2,
        send_timeout=60,
        circuits=lambda: big if phase[0] == "fill" else [breaker.get_circuit("svc")[0]],
    )
    with contextlib.closing(_stalled_client(server.port)):
        # The stalled client's buffer overflowing 20 times over means its writer has been stuck for 20 intervals.
        eventually(lambda: server.statistics().dropped >= 20)
        phase[0] = "small"
        with SseClient(server.port) as reader:
            reader.command("svc", until=lambda m: m["requestCount"] == 0)
            for _ in range(3):
                assert breaker.do("svc", lambda: "ok") == "ok"
            assert reader.command("svc", until=lambda m: m["requestCount"] == 3)["rollingCountSuccess"] == 3
            assert server.statistics().clients == 2


def test_a_client_stuck_past_send_timeout_is_dropped(start: Callable[..., StreamServer]) -> None:
    """A client that does not read for send_timeout seconds is disconnected, freeing its slot."""
    big = _big_circuits(8)
    server = start(interval=0.01, buffer=2, send_timeout=0.2, max_clients=1, circuits=lambda: big)
    with contextlib.closing(_stalled_client(server.port)):
        eventually(lambda: server.statistics().clients == 1)
        eventually(lambda: server.statistics().clients == 0)
        with SseClient(server.port) as client:
            assert client.status == 200


def test_streaming_never_changes_a_circuit(start: Callable[..., StreamServer], clock: FakeClock) -> None:
    """An open circuit past its sleep window stays open with its probe untaken; errors below volume never trip."""
    breaker.configure_command("opened", breaker.CommandConfig(isolation="caller", request_volume_threshold=2))
    breaker.configure_command("quiet", breaker.CommandConfig(isolation="caller", request_volume_threshold=100))
    for _ in range(2):
        breaker.do("opened", lambda: 1 / 0, fallback=lambda e: None)
    for _ in range(10):
        breaker.do("quiet", lambda: 1 / 0, fallback=lambda e: None)
    clock.advance(6.0)  # past the 5 s sleep window
    opened, quiet = breaker.get_circuit("opened")[0], breaker.get_circuit("quiet")[0]
    before = {c.name: (c.statistics().counts, c.statistics().cumulative) for c in (opened, quiet)}
    server = start(interval=0.005)
    with SseClient(server.port) as client:
        for _ in range(10):
            assert client.command("opened")["circuitState"] == "open"
            message = client.command("quiet")
            assert (message["errorPercentage"], message["isCircuitBreakerOpen"]) == (100, False)
    assert server.statistics().published >= 10
    assert (opened.state, quiet.state) == (breaker.State.OPEN, breaker.State.CLOSED)
    assert {c.name: (c.statistics().counts, c.statistics().cumulative) for c in (opened, quiet)} == before
    assert breaker.do("opened", lambda: "probe") == "probe"  # the probe was still there to take
    assert opened.state is breaker.State.CLOSED


def test_streaming_does_not_change_whether_a_circuit_trips(
    start: Callable[..., StreamServer], clock: FakeClock
) -> None:
    """Two circuits get the same calls; the one streamed across a window boundary trips just as the other does."""
    config = breaker.CommandConfig(isolation="caller", request_volume_threshold=4, error_percent_threshold=50)
    breaker.configure({"read": config, "unread": config})
    read, unread = breaker.get_circuit("read")[0], breaker.get_circuit("unread")[0]

    def calls(run: Callable[[], object], times: int) -> None:
        for _ in range(times):
            for name in ("read", "unread"):
                breaker.do(name, run, fallback=lambda e: None)

    calls(lambda: "ok", 3)  # in the 1 s bucket [1000, 1001)
    clock.advance(1.5)
    calls(lambda: 1 / 0, 2)  # in the bucket [1001, 1002)
    clock.advance(8.7)  # 1010.2: the successes have left the 10 s window, the failures have not
    server = start(interval=0.01, circuits=lambda: [read])
    with SseClient(server.port) as client:
        client.command("read", until=lambda m: m["requestCount"] == 2)  # read at 1010.2: 2 failures left
    server.close()
    clock.advance(0.1)
    calls(lambda: "ok", 2)  # 2 errors in 4 requests: 50%, at the threshold
    assert unread.state is breaker.State.OPEN, "the scenario itself trips"
    assert read.state is breaker.State.OPEN


def test_routes_serve_extra_pages_and_other_paths_are_404(start: Callable[..., StreamServer]) -> None:
    """A route answers at its path (room for a dashboard at /); unknown paths get 404."""

    def page(handler: Any) -> None:
        body = b"<h1>dashboard</h1>"
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    server = start(routes={"/": page})
    with SseClient(server.port, "/") as client:
        assert (client.status, client.response.read()) == (200, b"<h1>dashboard</h1>")
    with SseClient(server.port, "/nothing") as client:
        assert client.status == 404
    with pytest.raises(ValueError, match=r"hystrix\.stream"):
        StreamServer("127.0.0.1", 0, routes={"/hystrix.stream": page})


def test_close_ends_open_streams_and_leaves_no_thread() -> None:
    """close() ends every response (the client sees the end), stops and joins every thread it started."""
    server = breaker.stream.serve("127.0.0.1", 0, block=False, interval=0.02)
    breaker.get_circuit("c")
    with SseClient(server.port) as client:
        client.command("c")
        names = {t.name for t in stream_threads()}
        assert names == {"breaker-stream-server", "breaker-stream-publisher", "breaker-stream-request"}
        server.close()
        assert list(client.events())[-1:] in ([], [None])  # whatever was in flight, then the end of the body
    assert stream_threads() == []
    server.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        server.start()


def test_close_does_not_wait_for_clients_that_stopped_reading_or_never_asked() -> None:
    """close() returns although one client's writer is stuck (send_timeout 60 s) and another never sent a request."""
    big = _big_circuits(8)
    server = breaker.stream.serve(
        "127.0.0.1", 0, block=False, interval=0.01, buffer=2, send_timeout=60, circuits=lambda: big
    )
    with contextlib.closing(_stalled_client(server.port)), socket.create_connection(("127.0.0.1", server.port)):
        eventually(lambda: server.statistics().dropped >= 20)  # the stalled client's writer is stuck
        closer = threading.Thread(target=server.close)
        closer.start()
        closer.join(10)  # a bound: without waking them, close() would wait send_timeout for both
        assert not closer.is_alive()
    assert stream_threads() == []


def test_close_returns_only_once_every_request_has_finished() -> None:
    """close() waits for a request still in progress (a slow page), so no request thread outlives it."""
    entered, release = threading.Event(), threading.Event()
    page_threads: list[threading.Thread] = []

    def slow_page(handler: Any) -> None:
        page_threads.append(threading.current_thread())
        entered.set()
        release.wait(10)

    server = breaker.stream.serve("127.0.0.1", 0, block=False, routes={"/slow": slow_page})
    alive_when_closed: list[bool] = []

    def close() -> None:
        server.close()
        alive_when_closed.append(page_threads[0].is_alive())

    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET /slow HTTP/1.0\r\n\r\n")
        assert entered.wait(5)
        closer = threading.Thread(target=close)
        closer.start()
        closer.join(0.5)  # a close() that does not wait for the page returns meanwhile
        release.set()
        closer.join(10)
    assert alive_when_closed == [False]
    assert stream_threads() == []


def test_a_server_never_closed_does_not_keep_the_process_alive() -> None:
    """A process that exits with a server open and a client streaming still exits: its threads are daemons."""
    code = textwrap.dedent(
        """
        import http.client, breaker, breaker.stream
        breaker.get_circuit("c")
        server = breaker.stream.serve("127.0.0.1", 0, block=False, interval=0.02)
        client = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        client.request("GET", "/hystrix.stream")
        response = client.getresponse()
        assert response.readline().startswith(b"data: ")
        print("streaming")
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False)
    assert (result.returncode, result.stdout) == (0, "streaming\n"), result.stderr


def test_serve_forever_blocks_until_closed_from_another_thread() -> None:
    """StreamServer.serve_forever serves on the calling thread and returns once close() is called elsewhere."""
    server = StreamServer("127.0.0.1", 0, interval=0.02)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        with SseClient(server.port) as client:
            assert client.status == 200
    finally:
        server.close()
        thread.join(5)
    assert not thread.is_alive()


# -- WSGI, behind wsgiref ------------------------------------------------------------------------------------------


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, wsgiref.simple_server.WSGIServer):
    daemon_threads = False  # server_close() joins the request threads


class _QuietHandler(wsgiref.simple_server.WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def wsgiref_server(app: breaker.stream.WSGIApp) -> Iterator[int]:
    """Runs ``app`` in a threaded wsgiref server on 127.0.0.1 (a port the OS picks); yields the port."""
    server = wsgiref.simple_server.make_server(
        "127.0.0.1", 0, app, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler
    )
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        app.close()
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_wsgi_app_streams_through_wsgiref_and_follows_the_calls() -> None:
    """Behind wsgiref, the WSGI app streams with the SSE headers and its counts follow the calls."""
    breaker.configure_command("w", breaker.CommandConfig(isolation="caller"))
    breaker.get_circuit("w")
    with breaker.stream.wsgi_app(interval=0.02) as app, wsgiref_server(app) as port, SseClient(port) as client:
        assert client.status == 200
        assert client.response.getheader("Content-Type") == "text/event-stream;charset=UTF-8"
        assert client.response.getheader("Pragma") == "no-cache"
        assert client.command("w")["requestCount"] == 0
        breaker.do("w", lambda: 1)
        assert client.command("w", until=lambda m: m["requestCount"] == 1)["rollingCountSuccess"] == 1
        assert app.statistics().clients == 1
    assert stream_threads() == []


def test_wsgi_app_answers_503_past_max_clients_and_drops_a_disconnected_client() -> None:
    """Under WSGI too: 503 past max_clients, and a client that hangs up is dropped."""
    breaker.get_circuit("w")
    app = breaker.stream.wsgi_app(interval=0.02, max_clients=1)
    with wsgiref_server(app) as port:
        with SseClient(port) as client:
            client.command("w")
            with SseClient(port) as refused:
                assert refused.status == 503
            assert app.statistics() == breaker.stream.StreamStatistics(
                clients=1, rejected=1, dropped=0, published=app.statistics().published, running=True
            )
        eventually(lambda: app.statistics().clients == 0)
        assert not app.statistics().running
        with SseClient(port, method="POST") as client:
            assert client.status == 405


def test_wsgi_app_close_ends_the_streams() -> None:
    """close() ends every WSGI response, and later clients get 503."""
    breaker.get_circuit("w")
    app = breaker.stream.wsgi_app(interval=0.02)
    with wsgiref_server(app) as port, SseClient(port) as client:
        client.command("w")
        app.close()
        list(client.events())  # returns: the body ended
        with SseClient(port) as late:
            assert late.status == 503


# -- ASGI, behind uvicorn ------------------------------------------------------------------------------------------


@contextlib.contextmanager
def uvicorn_server(app: breaker.stream.ASGIApp) -> Iterator[int]:
    """Runs ``app`` in uvicorn (lifespan on) on a socket bound here to 127.0.0.1; yields the port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    config = uvicorn.Config(
        app, log_level="warning", lifespan="on", ws="none", http="h11", loop="asyncio", timeout_graceful_shutdown=5
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]})
    thread.start()
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
    assert not thread.is_alive()


def test_asgi_app_streams_through_uvicorn_without_blocking_the_loop() -> None:
    """Behind uvicorn, with blockbuster watching the loop: the SSE headers, then counts that follow the calls."""
    breaker.configure_command("a", breaker.CommandConfig(isolation="caller"))
    breaker.get_circuit("a")
    app = breaker.stream.asgi_app(interval=0.02)
    with (
        blockbuster.blockbuster_ctx(scanned_modules=["breaker"]),
        uvicorn_server(app) as port,
        SseClient(port) as client,
    ):
        assert client.status == 200
        assert client.response.getheader("Content-Type") == "text/event-stream;charset=UTF-8"
        assert client.response.getheader("Cache-Control") == "no-cache, no-store, max-age=0, must-revalidate"
        assert client.command("a")["requestCount"] == 0
        breaker.do("a", lambda: 1)
        breaker.do("a", lambda: 1 / 0, fallback=lambda e: 0.0)
        message = client.command("a", until=lambda m: m["requestCount"] == 2)
        assert (message["errorCount"], message["errorPercentage"]) == (1, 50)
    assert stream_threads() == []


def test_asgi_app_answers_503_past_max_clients_and_drops_a_client_on_disconnect() -> None:
    """Under ASGI: 503 past max_clients; http.disconnect drops the client at once and the publisher stops."""
    breaker.get_circuit("a")
    # One interval only, the first: no later write can notice the hang-up, so http.disconnect must.
    app = breaker.stream.asgi_app(interval=30, max_clients=1)
    with uvicorn_server(app) as port:
        with SseClient(port) as client:
            client.command("a")
            with SseClient(port) as refused:
                assert refused.status == 503
            assert app.statistics().clients == 1
        eventually(lambda: app.statistics().clients == 0)
        eventually(lambda: not app.statistics().running)
        with SseClient(port, method="POST") as client:
            assert client.status == 405


def test_asgi_app_drops_a_client_stuck_past_send_timeout() -> None:
    """Under ASGI a client that does not read for send_timeout seconds is dropped, freeing its slot."""
    big = _big_circuits(8)
    app = breaker.stream.asgi_app(interval=0.01, buffer=2, send_timeout=0.2, max_clients=1, circuits=lambda: big)
    with uvicorn_server(app) as port, contextlib.closing(_stalled_client(port)):
        eventually(lambda: app.statistics().clients == 1)
        eventually(lambda: app.statistics().clients == 0)
        with SseClient(port) as client:
            assert client.status == 200


async def _call(app: breaker.stream.ASGIApp, scope: Json, incoming: list[Json]) -> list[Json]:
    """Drive ``app`` with one ASGI connection: ``incoming`` messages in, what it sends out."""
    sent: list[Json] = []

    async def receive() -> Json:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    await app(scope, receive, send)
    return sent


def test_asgi_lifespan_shutdown_closes_the_app() -> None:
    """After uvicorn's lifespan shutdown the app is closed: a new connection gets 503, and no thread remains."""
    breaker.get_circuit("a")
    app = breaker.stream.asgi_app(interval=0.02)
    with uvicorn_server(app) as port, SseClient(port) as client:
        client.command("a")
    assert stream_threads() == []
    sent = asyncio.run(_call(app, {"type": "http", "method": "GET"}, []))
    assert sent[0]["status"] == 503


def test_asgi_app_refuses_connections_that_are_not_http() -> None:
    """A websocket connection is not the stream: the app raises, as the ASGI spec asks for unknown scopes."""
    app = breaker.stream.asgi_app()
    with pytest.raises(ValueError, match="websocket"):
        asyncio.run(_call(app, {"type": "websocket"}, [{"type": "websocket.connect"}]))


# -- API ------------------------------------------------------------------------------------------------------------


def test_public_names_are_pinned() -> None:
    """breaker.stream exports exactly its documented names."""
    assert sorted(breaker.stream.__all__) == sorted(
        [
            "HEADERS",
            "INT_MAX",
            "PING",
            "SECURITY_HEADERS",
            "STREAM_PATH",
            "ASGIApp",
            "CommandMessage",
            "Route",
            "StreamServer",
            "StreamStatistics",
            "ThreadPoolMessage",
            "WSGIApp",
            "asgi_app",
            "command_message",
            "encode",
            "render",
            "serve",
            "thread_pool_message",
            "wsgi_app",
        ]
    )
    assert all(hasattr(breaker.stream, name) for name in breaker.stream.__all__)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"interval": 0}, ValueError, "interval must be a positive"),
        ({"interval": math.inf}, ValueError, "interval must be a positive"),
        ({"interval": "1"}, TypeError, "interval must be seconds"),
        ({"max_clients": 0}, ValueError, "max_clients must be at least 1, got 0"),
        ({"max_clients": 2.5}, TypeError, "max_clients must be an int"),
        ({"buffer": True}, TypeError, "buffer must be an int"),
    ],
    ids=["zero-interval", "inf-interval", "str-interval", "no-clients", "float-clients", "bool-buffer"],
)
def test_bad_options_are_refused_with_a_message_naming_them(options: Json, error: type, match: str) -> None:
    """Every front end validates its options when built, naming the option, the rule and the value."""
    with pytest.raises(error, match=match):
        breaker.stream.wsgi_app(**options)
    with pytest.raises(error, match=match):
        breaker.stream.asgi_app(**options)
    with pytest.raises(error, match=match):
        StreamServer("127.0.0.1", 0, **options)


def test_reprs_show_the_options_and_the_state() -> None:
    """Each public object's repr shows its options and live figures."""
    with breaker.stream.wsgi_app(interval=0.25, max_clients=3) as wsgi:
        assert repr(wsgi).startswith("<WSGIApp interval=0.25s max_clients=3 buffer=16 StreamStatistics(clients=0")
    asgi = breaker.stream.asgi_app(send_timeout=2)
    assert "send_timeout=2s" in repr(asgi)
    asgi.close()
    with StreamServer("127.0.0.1", 0) as server:
        assert repr(server).startswith(f"<StreamServer {server.url} bound interval=0.5s max_clients=5")
    assert " closed " in repr(server)
