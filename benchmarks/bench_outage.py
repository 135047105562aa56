"""Outage benchmark: a real HTTP service on loopback whose dependency goes down, with and without circuit breakers.

Run from the repository root::

    .venv/bin/python benchmarks/bench_outage.py            # full run (about 3-4 minutes)
    .venv/bin/python benchmarks/bench_outage.py --quick    # a smoke run (under 30 s): tiny phases, hang only
    .venv/bin/python benchmarks/bench_outage.py --json out.json --plot benchmarks/outage.png

The setup, every part a separate process on 127.0.0.1 (ports picked by binding port 0):

- Two **dependency servers** (stdlib ``ThreadingHTTPServer``, one process for both, with the canary below):
  ``healthy`` and ``faulty``, each answering ``200`` after 3 ms. For the middle third of each run the faulty one is
  down, in one of two ways: ``hang`` (a request waits until the outage ends, far beyond every client timeout; when
  it ends the waiting requests are answered, as a stalled server that recovers would) or ``503`` (answered at
  once). It counts the requests it receives while down: the requests that reached the dead dependency.
- The **service**, started afresh for each contender, in one of two flavours, with two endpoints: ``/healthy``
  calls the healthy dependency, ``/faulty`` the faulty one, each through the contender; a failure or a refusal
  answers ``503`` at once (the fallback). Both flavours have the same bounded capacity, which is what an outage
  exhausts: **WSGI**, ``wsgiref`` with a fixed pool of 12 worker threads (each accepted connection waits in the
  pool's queue for a worker, as in waitress or gunicorn's gthread worker), calling the dependency with
  ``http.client`` (1 s socket timeout); **ASGI**, an app written directly against the ASGI spec, under uvicorn
  (one event loop), calling the dependency with one shared ``aiohttp.ClientSession`` (the recommended one per
  application) whose connection pool holds 12 connections (aiohttp's default is 100: with more connections than
  hung requests an async service does not starve, see benchmarks/README.md), total timeout 1 s.
- The **load**, in this process: the demo's hey-style generator (`breaker._demo.load.Load`), two of them at once:
  4 workers x 50 calls/s on ``/healthy`` (200/s) and 16 workers x 6.25 calls/s on ``/faulty`` (100/s). The faulty
  endpoint has many slow workers so that, as with real users, requests keep arriving while earlier ones hang:
  up to 16 in flight, more than the service's 12. Each worker is a ``Load`` of its own, at its own rate (spread
  evenly over the endpoint's rate +- 10 %, so that workers a stall brought into step drift apart again), and its
  first call only shifts its schedule by a random part of its interval and is not counted. Client timeout 5 s.
- A **canary**: a third load, 4 workers x 50 calls/s (as many as on ``/healthy``, so that a stall touches as many
  of its requests), on a server beside the dependencies that answers at once, bypassing the service: its latency
  shows the machine's own stalls (a shared 2-core machine; other jobs), which would otherwise pass for a
  contender's figures. The first 0.5 s after the return are left out of it: a contender that let requests hang
  gets them all answered at once there, a burst of the run's own making.

Each run: 0.5 s warm-up (not counted), then three phases of equal length: ``before`` (healthy), ``outage`` (the
faulty dependency down), ``after`` (healthy again). The phase is drawn per table (the same for every row of it)
from 2.75-3.75 s for ``hang`` (the headline) and 1.5-2.5 s for ``503``: with a fixed one the dependency would come back
at the same point of every run's probe cycle, which favours whichever library's cycle it happens to suit. A run
whose canary p99 exceeds 10 ms in any phase is run once more (at most 3 such reruns per full run), and the attempt
with the lower canary p99 is kept: chosen by the canary alone, never by the figures. A kept run that is still
stalled is marked in its table.

The contenders and their settings (the same thresholds, windows and timeouts wherever a library has the concept):

- ``no breaker``: the client's own timeout (1 s) only.
- ``breaker (thread)``, ``breaker (caller)`` (WSGI), ``breaker (async)`` (ASGI): ``breaker.do`` /
  ``breaker.do_async`` with ``CommandConfig(isolation=..., timeout=1.0, max_concurrent_requests=4,
  request_volume_threshold=20, error_percent_threshold=50, sleep_window=1.0, rolling_window=1.0,
  rolling_buckets=10)``, a fallback answering ``503``. Four tickets per endpoint is Hystrix's sizing rule (peak
  calls/s x p99 latency, plus room: 200/s x 5 ms = 1): the two commands together hold at most 8 of the 12
  workers (or connections).
- ``pybreaker`` (WSGI only: its async support needs Tornado): ``CircuitBreaker(fail_max=5, reset_timeout=1.0)``.
- ``circuitbreaker``: ``CircuitBreaker(failure_threshold=5, recovery_timeout=1.0)``, its decorator (sync and async).
- ``aiobreaker`` (ASGI only: an asyncio library): ``CircuitBreaker(fail_max=5, timeout_duration=1 s)``.
- ``interlock-cb``: its pipeline ``Pipeline(CircuitBreakerStrategy(cb), BulkheadStrategy(4))`` (a bulkhead of 4, as
  breaker's tickets) with ``Config(failure_rate_threshold=0.5, minimum_number_of_calls=20, window_type=TIME_BASED,
  window_size=1, wait_duration_in_open=1.0, permitted_calls_in_half_open=1, max_concurrent_probes=1)`` and
  ``unreachable_exceptions=(BulkheadFullError,)``. No ``TimeoutStrategy``: the client's timeout already bounds the
  call (as for pybreaker, circuitbreaker and aiobreaker), and its sync form starts a thread per call.

Five for the consecutive-failure breakers is their default; they have no volume threshold, window or bulkhead.

The figures, per contender (phases by the switch times measured here):

- healthy endpoint's goodput (``200`` answers completed per second) during the outage / before it;
- its p99 latency (every request started in the phase) during the outage / before it;
- requests that reached the dead dependency (counted by the dependency server);
- recovery: seconds from the dependency's return until the faulty endpoint's goodput is back to >= 90 % of its
  level before the outage: the start of the first 0.5 s window after the return (stepped by 0.05 s) with that
  many ``200`` answers ("never": none within the after phase).

Targets for each breaker row: healthy goodput ratio >= 0.9 and p99 ratio <= 1.5 during the outage, and at least
as good as every other contender of the same table (no breaker included) on every figure, within the
measurement's resolution: a goodput ratio lower by more than 0.02 (ratios capped at 1: the load offers the same
rate in every phase), a p99 ratio higher by more than 25 % (ratios floored at 1: an outage cannot make the healthy
endpoint faster, so a ratio under 1 is the before phase's noise; runs with no outage at all gave ratios of
0.84-1.11 on a quiet machine), more dead-dependency requests, or a recovery later by more than 0.25 s counts as
worse. Misses are reported as misses. Progress goes to stderr,
the tables to stdout; ``--plot`` draws the healthy and faulty endpoints' goodput over time for the headline outage
kind; ``--json`` writes every run's figures, breaker's state changes and counts, and the goodput timelines.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import dataclasses
import http.client
import http.server
import json
import logging
import math
import os
import random
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import wsgiref.simple_server
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from types import TracebackType
from typing import Any, Final, Literal, NoReturn

from typing_extensions import Self

import breaker
from breaker._demo.load import Load, LoadOptions, Report

perf_counter = time.perf_counter

Kind = Literal["hang", "503"]
Flavour = Literal["wsgi", "asgi"]

HOST: Final = "127.0.0.1"
POOL: Final = 12  # the service's workers (WSGI) or client connections (ASGI): its bounded capacity
TICKETS: Final = 4  # breaker's max_concurrent_requests and interlock's bulkhead, per endpoint
VOLUME: Final = 20  # request_volume_threshold / minimum_number_of_calls
ERROR_PERCENT: Final = 50  # error_percent_threshold / failure_rate_threshold
FAIL_MAX: Final = 5  # consecutive failures, for pybreaker, circuitbreaker and aiobreaker (their default)
DEP_LATENCY: Final = 0.003  # seconds a healthy dependency takes to answer
HANG_MAX: Final = 60.0  # seconds a hung request waits at most, if the outage never ended
HEALTHY_LOAD: Final = (4, 50.0)  # workers, calls/s per worker on /healthy
FAULTY_LOAD: Final = (16, 6.25)  # the same on /faulty
CANARY_LOAD: Final = (4, 50.0)  # the same on the canary
RATE_SPREAD: Final = 0.1  # each endpoint's workers have rates spread evenly over its rate +- 10 %
RECOVERED: Final = 0.9  # share of the pre-outage goodput that counts as recovered
GOODPUT_TARGET: Final = 0.9
P99_TARGET: Final = 1.5
# The resolution of "at least as good": differences smaller than these are noise, not a loss.
GOODPUT_SLACK: Final = 0.02  # goodput ratios are compared capped at 1: the load offers the same rate throughout
P99_SLACK: Final = 1.25  # p99 ratios are compared floored at 1: an outage cannot make /healthy faster
CANARY_LIMIT: Final = 0.010  # seconds: a canary p99 above this in any phase means the machine stalled the run
RERUNS: Final = 3  # stalled runs run again, at most this many in all (and each at most once): the time budget
SKIP: Final = "skip"  # the label of each load worker's first call, which only shifts its schedule

CONTENDERS: Final[Mapping[Flavour, Sequence[str]]] = {
    "wsgi": ("none", "breaker-thread", "breaker-caller", "pybreaker", "circuitbreaker", "interlock"),
    "asgi": ("none", "breaker-async", "circuitbreaker", "aiobreaker", "interlock"),
}
LABELS: Final[Mapping[str, str]] = {
    "none": "no breaker",
    "breaker-thread": "breaker (thread)",
    "breaker-caller": "breaker (caller)",
    "breaker-async": "breaker (async)",
    "pybreaker": "pybreaker",
    "circuitbreaker": "circuitbreaker",
    "aiobreaker": "aiobreaker",
    "interlock": "interlock-cb",
}
COLOURS: Final[Mapping[str, str]] = {
    "none": "#7f7f7f",
    "breaker-thread": "#d62728",
    "breaker-caller": "#ff7f0e",
    "breaker-async": "#d62728",
    "pybreaker": "#1f77b4",
    "circuitbreaker": "#2ca02c",
    "aiobreaker": "#9467bd",
    "interlock": "#8c564b",
}
FLAVOUR_TITLES: Final[Mapping[Flavour, str]] = {
    "wsgi": f"WSGI (wsgiref, {POOL} worker threads)",
    "asgi": f"ASGI (uvicorn, aiohttp pool of {POOL})",
}


def is_breaker(contender: str) -> bool:
    return contender.startswith("breaker-")


def progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- sizes ------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Timing:
    """The contenders' times, in seconds: passed to each service process as JSON."""

    timeout: float  # the client's timeout, and breaker's
    sleep_window: float  # sleep window / reset timeout / recovery timeout / wait in open
    window: float  # breaker's rolling window; interlock's is the nearest whole number of seconds, at least 1

    @property
    def interlock_window(self) -> int:
        return max(1, round(self.window))


@dataclasses.dataclass(frozen=True)
class Sizes:
    warmup: float  # seconds of load before the before phase, not counted
    phases: tuple[tuple[Kind, float], ...]  # the outage kinds run, with each phase's shortest length
    jitter: float  # each table's phase is that plus a random part of this (the same for every row of a table)
    timing: Timing
    bucket: float  # seconds per bucket of the recovery figure and the plot
    load_timeout: float  # the load's client timeout


FULL = Sizes(
    warmup=0.5,
    phases=(("hang", 2.75), ("503", 1.5)),
    jitter=1.0,
    timing=Timing(timeout=1.0, sleep_window=1.0, window=1.0),
    bucket=0.25,
    load_timeout=5.0,
)
QUICK = Sizes(
    warmup=0.25,
    phases=(("hang", 0.4),),
    jitter=0.0,
    timing=Timing(timeout=0.15, sleep_window=0.15, window=0.5),
    bucket=0.1,
    load_timeout=2.0,
)


# -- the dependency servers (their own process) -----------------------------------------------------------------


class DependencyState:
    """One dependency's mode and counts. ``released`` is set whenever the dependency is up."""

    def __init__(self) -> None:
        self.lock = threading.Lock()  # guards mode and the counts
        self.mode = "ok"
        self.released = threading.Event()
        self.released.set()
        self.received = 0
        self.while_down = 0

    def switch(self, mode: str) -> dict[str, Any]:
        """Go to ``mode`` (``ok``, ``hang``, ``503``); going down zeroes the count of requests received while down."""
        with self.lock:
            if mode != "ok" and self.mode == "ok":
                self.while_down = 0
                self.released = threading.Event()
            released = self.released
            self.mode = mode
            answer = {"mode": mode, "received": self.received, "while_down": self.while_down}
        if mode == "ok":
            released.set()  # the hung requests are answered: the dependency is back
        return answer

    def admit(self) -> tuple[str, threading.Event]:
        with self.lock:
            self.received += 1
            if self.mode != "ok":
                self.while_down += 1
            return self.mode, self.released


class DependencyHandler(http.server.BaseHTTPRequestHandler):
    state: DependencyState  # set on a subclass made per server, with latency
    latency: float

    def do_GET(self) -> None:
        if self.path.startswith("/_control"):
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
            self.answer(200, json.dumps(self.state.switch(query.get("mode", ["ok"])[0])).encode())
            return
        mode, released = self.state.admit()
        if mode == "503":
            self.answer(503, b'{"down": true}')
            return
        if mode == "hang":
            released.wait(HANG_MAX)
        else:
            time.sleep(self.latency)
        self.answer(200, b'{"items": [1, 2, 3]}')

    def answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(OSError):  # a client that timed out has gone
            self.wfile.write(body)

    def handle_one_request(self) -> None:
        with contextlib.suppress(OSError):
            super().handle_one_request()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class DependencyServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the listen backlog: bursts of connections must not wait for a SYN retry


def serve_dependencies() -> int:
    """The dependencies' process: print the ports of healthy, faulty and the canary; serve until stdin closes."""
    ports = []
    for latency in (DEP_LATENCY, DEP_LATENCY, 0.0):
        handler = type("Handler", (DependencyHandler,), {"state": DependencyState(), "latency": latency})
        server = DependencyServer((HOST, 0), handler)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        ports.append(server.server_address[1])
    print(*ports, flush=True)
    sys.stdin.read()  # until the benchmark closes our stdin (or exits)
    return 0


# -- the contenders (in the service's process) ------------------------------------------------------------------


class DependencyError(Exception):
    """The dependency answered something other than 200."""


def refuse(error: Exception) -> bytes | None:
    """breaker's fallback: the endpoint answers 503 at once."""
    return None


def breaker_config(timing: Timing, isolation: Literal["thread", "caller"] = "thread") -> breaker.CommandConfig:
    return breaker.CommandConfig(
        isolation=isolation,
        timeout=timing.timeout,
        max_concurrent_requests=TICKETS,
        request_volume_threshold=VOLUME,
        error_percent_threshold=ERROR_PERCENT,
        sleep_window=timing.sleep_window,
        rolling_window=timing.window,
        rolling_buckets=10,
    )


def interlock_pipeline(name: str, timing: Timing) -> Any:
    import interlock

    cb = interlock.CircuitBreaker(
        name=name,
        config=interlock.Config(
            failure_rate_threshold=ERROR_PERCENT / 100,
            minimum_number_of_calls=VOLUME,
            window_type=interlock.WindowType("time_based"),  # TIME_BASED: its auto() value
            window_size=timing.interlock_window,
            wait_duration_in_open=timing.sleep_window,
            permitted_calls_in_half_open=1,
            max_concurrent_probes=1,
        ),
        unreachable_exceptions=(interlock.BulkheadFullError,),
    )
    return interlock.Pipeline(interlock.CircuitBreakerStrategy(cb), interlock.BulkheadStrategy(TICKETS))


SyncEndpoint = Callable[[], "bytes | None"]
AsyncEndpoint = Callable[[], Awaitable["bytes | None"]]


def sync_endpoint(contender: str, name: str, fetch: Callable[[], bytes], timing: Timing) -> SyncEndpoint:
    """``fetch`` through the contender: its value, or None (the endpoint answers 503) if it failed or was refused."""
    if contender in ("breaker-thread", "breaker-caller"):
        breaker.configure_command(name, breaker_config(timing, "thread" if contender == "breaker-thread" else "caller"))
        return lambda: breaker.do(name, fetch, fallback=refuse)
    guarded: Callable[[], bytes]
    if contender == "none":
        guarded = fetch
    elif contender == "pybreaker":
        import pybreaker

        pb = pybreaker.CircuitBreaker(fail_max=FAIL_MAX, reset_timeout=timing.sleep_window, name=name)
        guarded = lambda: pb.call(fetch)  # noqa: E731
    elif contender == "circuitbreaker":
        import circuitbreaker

        cb = circuitbreaker.CircuitBreaker(
            failure_threshold=FAIL_MAX, recovery_timeout=timing.sleep_window, name=f"outage-{name}"
        )
        guarded = cb(fetch)  # its decorator: cb.call() alone does not check whether the circuit is open
    elif contender == "interlock":
        pipeline = interlock_pipeline(name, timing)
        guarded = lambda: pipeline.call(fetch)  # noqa: E731
    else:
        raise ValueError(f"no sync contender {contender!r}")

    def call() -> bytes | None:
        try:
            return guarded()
        except Exception:
            return None

    return call


def async_endpoint(contender: str, name: str, fetch: Callable[[], Awaitable[bytes]], timing: Timing) -> AsyncEndpoint:
    """`sync_endpoint` for the ASGI service: ``fetch`` is an ``async def``."""
    if contender == "breaker-async":
        breaker.configure_command(name, breaker_config(timing))

        def call_breaker() -> Awaitable[bytes | None]:
            return breaker.do_async(name, fetch, fallback=refuse)

        return call_breaker
    guarded: Callable[[], Awaitable[bytes]]
    if contender == "none":
        guarded = fetch
    elif contender == "circuitbreaker":
        import circuitbreaker

        cb = circuitbreaker.CircuitBreaker(
            failure_threshold=FAIL_MAX, recovery_timeout=timing.sleep_window, name=f"outage-{name}"
        )
        guarded = cb(fetch)
    elif contender == "aiobreaker":
        import aiobreaker

        ab = aiobreaker.CircuitBreaker(
            fail_max=FAIL_MAX, timeout_duration=timedelta(seconds=timing.sleep_window), name=name
        )
        guarded = lambda: ab.call_async(fetch)  # noqa: E731
    elif contender == "interlock":
        pipeline = interlock_pipeline(name, timing)
        guarded = lambda: pipeline.call(fetch)  # noqa: E731
    else:
        raise ValueError(f"no async contender {contender!r}")

    async def call() -> bytes | None:
        try:
            return await guarded()
        except Exception:
            return None

    return call


def exit_on_eof() -> NoReturn:
    """A service ends when the benchmark closes its stdin, at once: its figures were read, and a graceful shutdown
    would wait for connections and calls in progress."""
    sys.stdin.read()
    os._exit(0)


class Transitions:
    """breaker's state changes in the service (for the JSON and for diagnosis), with the shared monotonic clock."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, str, str, str]] = []
        breaker.on_state_change(self.record)

    def record(self, name: str, old: breaker.State, new: breaker.State) -> None:
        self.seen.append((perf_counter(), name, old.value, new.value))

    def stats(self, contender: str) -> dict[str, Any]:
        if not is_breaker(contender):
            return {}
        counts = {}
        for name in ("healthy", "faulty"):
            circuit = breaker.get_circuit(name)[0]
            counts[name] = {str(event): n for event, n in circuit.statistics().cumulative.items() if n}
        return {"counts": counts, "transitions": self.seen}


# -- the WSGI service -------------------------------------------------------------------------------------------


def fetch_sync(port: int, timeout: float) -> Callable[[], bytes]:
    def fetch() -> bytes:
        conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
        try:
            conn.request("GET", "/items")
            response = conn.getresponse()
            body = response.read()
        finally:
            conn.close()
        if response.status != 200:
            raise DependencyError(response.status)
        return body

    return fetch


class QuietHandler(wsgiref.simple_server.WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class PooledWSGIServer(wsgiref.simple_server.WSGIServer):
    """wsgiref with a fixed pool of worker threads: each accepted connection waits in the pool's queue for one."""

    request_queue_size = 256

    def __init__(self, workers: int) -> None:
        super().__init__((HOST, 0), QuietHandler)
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="service-worker")

    def process_request(self, request: Any, client_address: Any) -> None:
        self.pool.submit(self.serve_connection, request, client_address)

    def serve_connection(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that timed out and closed: nothing to report


WsgiStart = Callable[[str, list[tuple[str, str]]], Any]


def wsgi_app(endpoints: Mapping[str, SyncEndpoint], stats: Callable[[], bytes]) -> Any:
    def app(environ: Mapping[str, Any], start_response: WsgiStart) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/ready":
            status, body = "200 OK", b"ready"
        elif path == "/_stats":
            status, body = "200 OK", stats()
        elif path in endpoints:
            value = endpoints[path]()
            status, body = ("200 OK", value) if value is not None else ("503 Service Unavailable", b"degraded")
        else:
            status, body = "404 Not Found", b"no such endpoint"
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    return app


def serve_wsgi(contender: str, ports: tuple[int, int], timing: Timing) -> int:
    transitions = Transitions()
    endpoints = {
        f"/{name}": sync_endpoint(contender, name, fetch_sync(port, timing.timeout), timing)
        for name, port in zip(("healthy", "faulty"), ports, strict=True)
    }
    server = PooledWSGIServer(POOL)
    server.set_app(wsgi_app(endpoints, lambda: json.dumps(transitions.stats(contender)).encode()))
    print(server.server_address[1], flush=True)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    exit_on_eof()


# -- the ASGI service -------------------------------------------------------------------------------------------

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class AsgiService:
    """The ASGI app, written directly: ``/healthy``, ``/faulty``, ``/ready``, ``/_stats``; lifespan opens the
    client session (it needs the running loop)."""

    def __init__(self, contender: str, ports: tuple[int, int], timing: Timing) -> None:
        self.contender = contender
        self.ports = ports
        self.timing = timing
        self.endpoints: dict[str, AsyncEndpoint] = {}
        self.transitions = Transitions()
        self.session: Any = None

    def start(self) -> None:
        import aiohttp

        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=POOL),
            timeout=aiohttp.ClientTimeout(total=self.timing.timeout),
        )
        for name, port in zip(("healthy", "faulty"), self.ports, strict=True):
            self.endpoints[f"/{name}"] = async_endpoint(self.contender, name, self.fetcher(port), self.timing)

    def fetcher(self, port: int) -> Callable[[], Awaitable[bytes]]:
        url = f"http://{HOST}:{port}/items"

        async def fetch() -> bytes:
            async with self.session.get(url) as response:
                body: bytes = await response.read()
                if response.status != 200:
                    raise DependencyError(response.status)
                return body

        return fetch

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    self.start()
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    if self.session is not None:
                        await self.session.close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path == "/ready":
            status, body = 200, b"ready"
        elif path == "/_stats":
            status, body = 200, json.dumps(self.transitions.stats(self.contender)).encode()
        elif path in self.endpoints:
            value = await self.endpoints[path]()
            status, body = (200, value) if value is not None else (503, b"degraded")
        else:
            status, body = 404, b"no such endpoint"
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def serve_asgi(contender: str, ports: tuple[int, int], timing: Timing) -> int:
    import uvicorn

    # IPPROTO_TCP named, as uvicorn's own binding gets it from getaddrinfo: asyncio sets TCP_NODELAY only on
    # sockets that say so, and without it every answer on a keep-alive connection waits 40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
    config = uvicorn.Config(
        AsgiService(contender, ports, timing),
        loop="asyncio",
        http="h11",
        lifespan="on",
        log_level="warning",
        access_log=False,
        backlog=256,
    )
    server = uvicorn.Server(config)

    threading.Thread(target=exit_on_eof, daemon=True).start()
    print(sock.getsockname()[1], flush=True)
    server.run(sockets=[sock])
    return 0


# -- processes (from the benchmark's side) ----------------------------------------------------------------------


class Child:
    """A process running this script in another role; it prints one line (its ports), and ends when stdin closes."""

    def __init__(self, role_args: Sequence[str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), *role_args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            self.close()
            raise RuntimeError(f"{' '.join(role_args)}: the process ended before it printed its ports")
        self.ports = tuple(int(word) for word in line.split())

    def close(self) -> None:
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        try:
            self.process.wait(5.0)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_ready(port: int, deadline: float = 15.0) -> None:
    until = perf_counter() + deadline
    while True:
        try:
            if get(port, "/ready", 1.0)[0] == 200:
                return
        except OSError:
            pass
        if perf_counter() > until:
            raise RuntimeError(f"the service on port {port} did not become ready in {deadline:g} s")
        time.sleep(0.02)


class Dependencies(Child):
    def __init__(self) -> None:
        super().__init__(["--serve-dependencies"])
        self.healthy_port, self.faulty_port, self.canary_port = self.ports

    def switch(self, mode: str) -> dict[str, Any]:
        status, body = get(self.faulty_port, f"/_control?mode={mode}")
        if status != 200:
            raise RuntimeError(f"the faulty dependency refused mode {mode!r}: {status}")
        answer: dict[str, Any] = json.loads(body)
        return answer


class HttpTarget:
    """The load's target: ``GET path`` on the service over a keep-alive connection per worker thread."""

    def __init__(self, port: int, path: str, interval: float, timeout: float, seed: int) -> None:
        self.port = port
        self.path = path
        self.interval = interval
        self.timeout = timeout
        self.local = threading.local()
        self.rng = random.Random(seed)
        self.rng_lock = threading.Lock()

    def __call__(self) -> str:
        conn: http.client.HTTPConnection | None = getattr(self.local, "conn", None)
        if conn is None:
            # The worker's first call: shift its schedule by a random part of its interval. Load sets the next
            # call's time before a call, so a first call longer than one interval moves every later one.
            self.local.conn = http.client.HTTPConnection(HOST, self.port, timeout=self.timeout)
            with self.rng_lock:
                shift = self.rng.random()
            time.sleep(self.interval * (1.0 + shift))
            return SKIP
        try:
            conn.request("GET", self.path)
            response = conn.getresponse()
            response.read()
        except (OSError, http.client.HTTPException) as error:
            conn.close()
            return f"error: {type(error).__name__}"
        if response.will_close:
            conn.close()
        return "ok" if response.status == 200 else str(response.status)


# -- one run ----------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Call:
    """One request of the load: start and end in seconds from the run's origin, and whether it got a 200."""

    start: float
    end: float
    ok: bool


@dataclasses.dataclass
class Run:
    flavour: Flavour
    contender: str
    kind: Kind
    phase: float
    warmup: float
    down_at: float  # seconds from the origin: when the faulty dependency went down
    up_at: float  # ... and came back
    end: float  # the end of the after phase
    healthy: list[Call]
    faulty: list[Call]
    canary: list[Call]  # requests to a server beside the dependencies that answers at once: the machine's own stalls
    dead: int  # requests the faulty dependency received while down
    outcomes: dict[str, dict[str, int]]
    service_stats: dict[str, Any]
    attempts: list[float] = dataclasses.field(default_factory=list)  # canary p99 of each attempt, if rerun


def calls_of(report: Report, origin: float, offset: float) -> list[Call]:
    """The report's calls (not the schedule-shifting first ones), in seconds from ``origin``."""
    shift = offset - origin
    return [
        Call(s.start + shift, s.start + shift + s.latency, s.outcome == "ok")
        for s in report.samples
        if s.outcome != SKIP
    ]


def sleep_until(moment: float) -> None:
    delay = moment - perf_counter()
    if delay > 0:
        time.sleep(delay)


def run_one(deps: Dependencies, flavour: Flavour, contender: str, kind: Kind, phase: float, sizes: Sizes) -> Run:
    deps.switch("ok")
    timing = sizes.timing
    args = ["--serve", flavour, "--contender", contender, "--ports", f"{deps.healthy_port},{deps.faulty_port}"]
    args += ["--timing", json.dumps(dataclasses.asdict(timing))]
    with Child(args) as service:
        port = service.ports[0]
        wait_ready(port)
        duration = sizes.warmup + 3 * phase
        # One Load per worker (hey -c 1 -q RATE), each at its own rate, spread evenly around the endpoint's:
        # workers at one rate that a stall once held and released together would stay in step for the rest of
        # the run, firing in bursts; rates a few percent apart drift out of step again within a second or so.
        loads: list[tuple[str, Load]] = []
        for name, (workers, rate), to in (
            ("healthy", HEALTHY_LOAD, port),
            ("faulty", FAULTY_LOAD, port),
            ("canary", CANARY_LOAD, deps.canary_port),
        ):
            for worker in range(workers):
                own = rate * (1.0 + RATE_SPREAD * ((2 * worker + 1) / workers - 1))
                target = HttpTarget(to, f"/{name}", 1.0 / own, sizes.load_timeout, len(loads))
                loads.append((name, Load(target, LoadOptions(concurrency=1, rate=own, duration=duration))))
        origins = []
        for _, load in loads:
            load.start()
            origins.append(perf_counter() - load.elapsed())
        origin = origins[0]
        sleep_until(origin + sizes.warmup + phase)
        deps.switch(kind)
        down_at = perf_counter() - origin
        sleep_until(origin + sizes.warmup + 2 * phase)
        answer = deps.switch("ok")
        up_at = perf_counter() - origin
        for _, load in loads:
            if not load.wait(duration + sizes.load_timeout + 10.0):
                load.stop()
        reports = [(name, load.report(), start) for (name, load), start in zip(loads, origins, strict=True)]
        stats: dict[str, Any] = json.loads(get(port, "/_stats")[1])
    calls: dict[str, list[Call]] = {"healthy": [], "faulty": [], "canary": []}
    outcomes: dict[str, dict[str, int]] = {"healthy": {}, "faulty": {}, "canary": {}}
    for name, report, start in reports:
        calls[name] += calls_of(report, origin, start)
        for outcome, count in report.outcomes().items():
            outcomes[name][outcome] = outcomes[name].get(outcome, 0) + count
    for event in stats.get("transitions", []):
        event[0] -= origin
    return Run(
        flavour=flavour,
        contender=contender,
        kind=kind,
        phase=phase,
        warmup=sizes.warmup,
        down_at=down_at,
        up_at=up_at,
        end=sizes.warmup + 3 * phase,
        healthy=calls["healthy"],
        faulty=calls["faulty"],
        canary=calls["canary"],
        dead=int(answer["while_down"]),
        outcomes=outcomes,
        service_stats=stats,
    )


# -- figures ----------------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest rank, as `Report.percentile`; nan with no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered), max(1, math.ceil(p / 100 * len(ordered)))) - 1]


def goodput(calls: Sequence[Call], start: float, end: float) -> float:
    """200 answers completed per second in [start, end)."""
    return sum(1 for c in calls if c.ok and start <= c.end < end) / (end - start)


def p99(calls: Sequence[Call], start: float, end: float) -> float:
    return percentile([c.end - c.start for c in calls if start <= c.start < end], 99)


def buckets(calls: Sequence[Call], start: float, end: float, width: float) -> list[float]:
    """Goodput (200 answers per second) in consecutive buckets of ``width`` from ``start`` until ``end``."""
    count = max(0, int((end - start) / width + 1e-9))
    counts = [0] * count
    for c in calls:
        if c.ok and start <= c.end < start + count * width:
            counts[int((c.end - start) / width)] += 1
    return [n / width for n in counts]


def recovery(run: Run, width: float) -> float | None:
    """Seconds from the dependency's return to the start of the first window of two buckets (stepped by a fifth of
    a bucket) whose goodput is >= 90 % of the faulty endpoint's before the outage; None if none in the after phase.

    A window of 0.5 s, not one bucket: each closed-loop worker completes one or two calls in a 0.25 s bucket, which
    alone moves a bucket's count by about 10 %."""
    level = RECOVERED * goodput(run.faulty, run.warmup, run.down_at)
    ends = sorted(c.end for c in run.faulty if c.ok and c.end >= run.up_at)
    window, step = 2 * width, width / 5
    for index in range(int((run.end - run.up_at - window) / step + 1e-9) + 1):
        start = run.up_at + index * step
        if bisect.bisect_left(ends, start + window) - bisect.bisect_left(ends, start) >= level * window:
            return index * step
    return None


@dataclasses.dataclass(frozen=True)
class Figures:
    goodput_before: float
    goodput_outage: float
    goodput_after: float
    p99_before: float
    p99_outage: float
    p99_after: float
    dead: int
    recovery: float | None
    faulty_before: float
    faulty_outage: float
    canary_p99: float  # the highest of the canary's p99s in the three phases

    @property
    def stalled(self) -> bool:
        return self.canary_p99 > CANARY_LIMIT

    @property
    def goodput_ratio(self) -> float:
        return self.goodput_outage / self.goodput_before if self.goodput_before else math.nan

    @property
    def p99_ratio(self) -> float:
        return self.p99_outage / self.p99_before if self.p99_before else math.nan

    @property
    def p99_noise(self) -> float:
        """p99 after the outage / before it: both phases healthy, so this shows the run's own noise."""
        return self.p99_after / self.p99_before if self.p99_before else math.nan


def figures_of(run: Run) -> Figures:
    phases = ((run.warmup, run.down_at), (run.down_at, run.up_at), (run.up_at, run.end))
    settle = min(0.5, run.phase / 4)
    return Figures(
        goodput_before=goodput(run.healthy, *phases[0]),
        goodput_outage=goodput(run.healthy, *phases[1]),
        goodput_after=goodput(run.healthy, *phases[2]),
        p99_before=p99(run.healthy, *phases[0]),
        p99_outage=p99(run.healthy, *phases[1]),
        p99_after=p99(run.healthy, *phases[2]),
        dead=run.dead,
        recovery=None,
        faulty_before=goodput(run.faulty, *phases[0]),
        faulty_outage=goodput(run.faulty, *phases[1]),
        # Not the first 0.5 s after the return (less in a quick run): requests that hung until then are all
        # answered at once, a burst of the run's own making.
        canary_p99=max(p99(run.canary, *phase) for phase in (*phases[:2], (run.up_at + settle, run.end))),
    )


def worse(mine: Figures, other: Figures, width: float) -> list[str]:
    """The figures on which ``mine`` is worse than ``other``, beyond the resolution of the measurement."""
    found = []
    if min(mine.goodput_ratio, 1.0) < min(other.goodput_ratio, 1.0) - GOODPUT_SLACK:
        found.append(f"goodput {mine.goodput_ratio:.2f} < {other.goodput_ratio:.2f}")
    if max(mine.p99_ratio, 1.0) > max(other.p99_ratio, 1.0) * P99_SLACK:
        found.append(f"p99 ratio {mine.p99_ratio:.2f} > {other.p99_ratio:.2f}")
    if mine.dead > other.dead:
        found.append(f"dead-dependency requests {mine.dead} > {other.dead}")
    mine_rec = math.inf if mine.recovery is None else mine.recovery
    other_rec = math.inf if other.recovery is None else other.recovery
    if mine_rec > other_rec + width + 1e-9:
        found.append(f"recovery {recovery_text(mine.recovery)} > {recovery_text(other.recovery)}")
    return found


def recovery_text(value: float | None) -> str:
    return "never" if value is None else f"{value:.2f} s"


@dataclasses.dataclass
class Verdict:
    goodput: bool
    p99: bool
    beaten_by: dict[str, list[str]]

    @property
    def passed(self) -> bool:
        return self.goodput and self.p99 and not self.beaten_by


def judge(figures: Mapping[str, Figures], width: float) -> dict[str, Verdict]:
    verdicts = {}
    for contender, mine in figures.items():
        if not is_breaker(contender):
            continue
        beaten = {
            other: found
            for other, theirs in figures.items()
            if other != contender and not is_breaker(other) and (found := worse(mine, theirs, width))
        }
        verdicts[contender] = Verdict(mine.goodput_ratio >= GOODPUT_TARGET, mine.p99_ratio <= P99_TARGET, beaten)
    return verdicts


# -- report -----------------------------------------------------------------------------------------------------


def mark(passed: bool) -> str:
    return "PASS" if passed else "MISS"


def render_table(
    kind: Kind, flavour: Flavour, runs: Sequence[Run], figures: Mapping[str, Figures], width: float
) -> str:
    verdicts = judge(figures, width)
    lines = [
        f"### {FLAVOUR_TITLES[flavour]}, outage: {kind}, {runs[0].phase:.2f} s per phase",
        "",
        "| contender | healthy goodput, outage / before | healthy p99, before → outage | p99 outage / before "
        "| requests to the dead dependency | recovery | machine: canary p99 | breaker targets "
        "(goodput >= 0.9 / p99 <= 1.5) | at least as good as every contender |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for run in runs:
        f = figures[run.contender]
        verdict = verdicts.get(run.contender)
        if verdict is None:
            targets = compare = "-"
        else:
            targets = f"{mark(verdict.goodput)} / {mark(verdict.p99)}"
            compare = (
                "PASS"
                if not verdict.beaten_by
                else "MISS: "
                + "; ".join(f"vs {LABELS[o]}: {', '.join(found)}" for o, found in verdict.beaten_by.items())
            )
        name = f"**{LABELS[run.contender]}**" if is_breaker(run.contender) else LABELS[run.contender]
        lines.append(
            f"| {name} | {f.goodput_ratio:.2f} ({f.goodput_outage:.0f} / {f.goodput_before:.0f} /s) "
            f"| {f.p99_before * 1e3:.1f} → {f.p99_outage * 1e3:.1f} ms | {f.p99_ratio:.2f} | {f.dead} "
            f"| {recovery_text(f.recovery)} | {canary_text(f)} | {targets} | {compare} |"
        )
    stalled = [LABELS[r.contender] for r in runs if figures[r.contender].stalled]
    if stalled:
        lines += [
            "",
            f"Stalled by the machine (the canary's p99 above {CANARY_LIMIT * 1e3:g} ms in a phase, in the attempt "
            f"kept): {', '.join(stalled)}. Their figures, and every comparison with them, are unreliable.",
        ]
    return "\n".join(lines)


def canary_text(f: Figures) -> str:
    text = f"{f.canary_p99 * 1e3:.1f} ms"
    return f"{text} STALLED" if f.stalled else text


def render(
    env: Mapping[str, str], tables: Sequence[str], verdicts: Sequence[tuple[str, Verdict]], seconds: float
) -> str:
    lines = [f"# breaker outage benchmark ({env['mode']} run)", ""]
    lines += [f"- {key}: {value}" for key, value in env.items() if key != "mode"]
    lines.append(f"- run time: {seconds:.1f} s")
    lines.append(
        "- one run per contender and table; goodput counts 200 answers of /healthy; p99 over every request started"
        " in the phase; recovery: the first window of two buckets back at 90 %"
    )
    for table in tables:
        lines += ["", table]
    met = sum(1 for _, v in verdicts if v.passed)
    lines += ["", f"breaker rows meeting every target: {met}/{len(verdicts)}"]
    for name, count in (
        ("healthy goodput >= 0.9", sum(1 for _, v in verdicts if v.goodput)),
        ("healthy p99 <= 1.5", sum(1 for _, v in verdicts if v.p99)),
        ("at least as good as every contender", sum(1 for _, v in verdicts if not v.beaten_by)),
    ):
        lines.append(f"- {name}: {count}/{len(verdicts)}")
    for label, verdict in verdicts:
        if not verdict.passed:
            misses = [name for name, ok in (("goodput", verdict.goodput), ("p99", verdict.p99)) if not ok]
            misses += [f"worse than {LABELS[o]}" for o in verdict.beaten_by]
            lines.append(f"- MISS {label}: {', '.join(misses)}")
    return "\n".join(lines)


def run_json(run: Run, f: Figures, width: float) -> dict[str, Any]:
    start = run.down_at - run.phase
    return {
        "flavour": run.flavour,
        "contender": run.contender,
        "kind": run.kind,
        "phase_seconds": run.phase,
        "down_at": run.down_at,
        "up_at": run.up_at,
        "figures": dataclasses.asdict(f)
        | {"goodput_ratio": f.goodput_ratio, "p99_ratio": f.p99_ratio, "p99_noise": f.p99_noise, "stalled": f.stalled},
        "canary_p99_of_attempts": run.attempts,
        "outcomes": run.outcomes,
        "service": run.service_stats,
        "timeline": {
            "start_from_outage": start - run.down_at,
            "bucket_seconds": width,
            "healthy_goodput": buckets(run.healthy, start, run.end, width),
            "faulty_goodput": buckets(run.faulty, start, run.end, width),
        },
    }


def plot(path: str, runs: Sequence[Run], kind: Kind, width: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    flavours = [f for f in CONTENDERS if any(r.flavour == f and r.kind == kind for r in runs)]
    runs = sorted(runs, key=lambda r: CONTENDERS[r.flavour].index(r.contender))
    fig, axes = plt.subplots(2, len(flavours), figsize=(6 * len(flavours), 6.4), sharex="col", squeeze=False)
    for column, flavour in enumerate(flavours):
        for row, (endpoint, title) in enumerate((("healthy", "/healthy (its dependency up)"), ("faulty", "/faulty"))):
            ax = axes[row][column]
            phase = 0.0
            for run in runs:
                if run.flavour != flavour or run.kind != kind:
                    continue
                phase = run.phase
                start = run.down_at - run.phase
                series = buckets(run.healthy if endpoint == "healthy" else run.faulty, start, run.end, width)
                times = [start - run.down_at + (i + 0.5) * width for i in range(len(series))]
                style = "-" if is_breaker(run.contender) or run.contender == "none" else "--"
                ax.plot(
                    times,
                    series,
                    style,
                    color=COLOURS[run.contender],
                    linewidth=2.0 if is_breaker(run.contender) else 1.2,
                    label=LABELS[run.contender],
                )
            ax.axvspan(0.0, phase, color="#f4c7c3", alpha=0.5, linewidth=0)
            ax.set_title(f"{FLAVOUR_TITLES[flavour]}: {title}", fontsize=9)
            ax.set_ylim(bottom=0)
            ax.grid(alpha=0.3)
            if column == 0:
                ax.set_ylabel("goodput (200 answers/s)", fontsize=8)
            if row == 1:
                ax.set_xlabel(f"seconds from the outage's start ({kind}; shaded: dependency down)", fontsize=8)
            ax.tick_params(labelsize=7)
        axes[0][column].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)


# -- main -------------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny phases, the hang outage only: a smoke run")
    parser.add_argument("--json", metavar="PATH", help="also write every run's figures and timeline as JSON to PATH")
    parser.add_argument(
        "--plot",
        metavar="PATH",
        default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "outage.png"),
        help="where to draw goodput over time (PNG; default benchmarks/outage.png); '' for no plot",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of the contenders' order (default: random)")
    parser.add_argument("--only", metavar="NAMES", help="comma-separated contenders to run (for investigation)")
    parser.add_argument("--kinds", metavar="KINDS", help="comma-separated outage kinds to run: hang, 503")
    parser.add_argument("--phase", type=float, help="seconds per phase, fixed (for investigation; default: drawn)")
    # The roles of the child processes (this script runs them):
    parser.add_argument("--serve-dependencies", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve", choices=("wsgi", "asgi"), help=argparse.SUPPRESS)
    parser.add_argument("--contender", help=argparse.SUPPRESS)
    parser.add_argument("--ports", help=argparse.SUPPRESS)
    parser.add_argument("--timing", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def serve(args: argparse.Namespace) -> int:
    logging.getLogger("breaker").setLevel(logging.ERROR)  # its state changes are in /_stats, not on stderr
    healthy, faulty = (int(p) for p in args.ports.split(","))
    timing = Timing(**json.loads(args.timing))
    if args.serve == "wsgi":
        return serve_wsgi(args.contender, (healthy, faulty), timing)
    return serve_asgi(args.contender, (healthy, faulty), timing)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_dependencies:
        return serve_dependencies()
    if args.serve:
        return serve(args)
    from bench_core import environment, version_of

    sizes = QUICK if args.quick else FULL
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    rng = random.Random(seed)
    only = set(args.only.split(",")) if args.only else None
    env = environment(args)
    env.pop("switch interval", None)
    for package in ("aiobreaker", "interlock-cb", "uvicorn", "aiohttp"):
        env[package] = version_of(package)
    env["seed"] = str(seed)
    env["load"] = (
        f"/healthy {HEALTHY_LOAD[0]} workers x {HEALTHY_LOAD[1]:g}/s, /faulty {FAULTY_LOAD[0]} workers x "
        f"{FAULTY_LOAD[1]:g}/s; warm-up {sizes.warmup:g} s"
    )
    t = sizes.timing
    env["settings"] = (
        f"timeout {t.timeout:g} s, sleep window {t.sleep_window:g} s, window {t.window:g} s, tickets {TICKETS}, "
        f"volume {VOLUME}, errors {ERROR_PERCENT} %, consecutive failures {FAIL_MAX}; service capacity {POOL}"
    )
    kinds = [(kind, phase) for kind, phase in sizes.phases if not args.kinds or kind in args.kinds.split(",")]
    jitter = sizes.jitter
    if args.phase is not None:
        kinds, jitter = [(kind, args.phase) for kind, _ in kinds], 0.0
    started = perf_counter()
    runs: list[Run] = []
    reruns = RERUNS if not args.quick else 0
    with Dependencies() as deps:
        for kind, shortest in kinds:
            for flavour, contenders in CONTENDERS.items():
                # One phase length per table, drawn: a fixed one would put the dependency's return at the same
                # point of every run's probe cycle, and so favour whichever library's cycle it happens to suit.
                phase = round(shortest + rng.uniform(0.0, jitter), 2)
                order = [c for c in contenders if only is None or c in only]
                rng.shuffle(order)
                for contender in order:
                    attempts: list[tuple[Run, Figures]] = []
                    while True:
                        run = run_one(deps, flavour, contender, kind, phase, sizes)
                        f = figures_of(run)
                        attempts.append((run, f))
                        progress(
                            f"{kind} {flavour} {LABELS[contender]} ({phase:.2f} s phases): healthy goodput "
                            f"{f.goodput_ratio:.2f} ({f.goodput_outage:.0f}/{f.goodput_before:.0f}/s), p99 "
                            f"{f.p99_before * 1e3:.1f} -> {f.p99_outage * 1e3:.1f} -> {f.p99_after * 1e3:.1f} ms, "
                            f"dead {f.dead}, recovery {recovery_text(recovery(run, sizes.bucket))}, canary p99 "
                            f"{f.canary_p99 * 1e3:.1f} ms ({perf_counter() - started:.0f} s)"
                        )
                        if not f.stalled or len(attempts) > 1 or reruns == 0:
                            break
                        reruns -= 1
                        progress(f"  the machine stalled this run (canary p99 > {CANARY_LIMIT * 1e3:g} ms): again")
                    # The attempt the machine disturbed least, judged by the canary alone (never by the figures).
                    run = min(attempts, key=lambda attempt: attempt[1].canary_p99)[0]
                    run.attempts = [attempt[1].canary_p99 for attempt in attempts]
                    runs.append(run)
    seconds = perf_counter() - started
    tables = []
    verdicts: list[tuple[str, Verdict]] = []
    payload_runs = []
    for kind, _ in kinds:
        for flavour in CONTENDERS:
            group = [r for r in runs if r.kind == kind and r.flavour == flavour]
            if not group:
                continue
            group.sort(key=lambda r: CONTENDERS[r.flavour].index(r.contender))
            figures = {
                r.contender: dataclasses.replace(figures_of(r), recovery=recovery(r, sizes.bucket)) for r in group
            }
            tables.append(render_table(kind, flavour, group, figures, sizes.bucket))
            verdicts += [(f"{kind} {flavour} {LABELS[c]}", v) for c, v in judge(figures, sizes.bucket).items()]
            payload_runs += [run_json(r, figures[r.contender], sizes.bucket) for r in group]
    print(render(env, tables, verdicts, seconds))
    if args.plot:
        plot(args.plot, runs, kinds[0][0], sizes.bucket)
        progress(f"plot written to {args.plot}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump({"environment": env, "run_seconds": seconds, "runs": payload_runs}, out, indent=1)
            out.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
