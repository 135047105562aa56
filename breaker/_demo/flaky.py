"""The demo's flaky dependency: a small HTTP service on loopback with a latency, an error rate and scripted outages.

``GET`` on any path answers ``200`` with a small JSON body after ``latency`` seconds (plus up to ``jitter``), or
``500`` for a share ``error_rate`` of requests. During an `Outage` it is down: in ``"hang"`` mode a request waits
``hang`` seconds and then gets ``503`` (the clients' timeouts fire first: the failure that hurts most), in
``"error"`` mode it gets ``503`` at once. Times count from `FlakyService.start`.
"""

from __future__ import annotations

import collections
import dataclasses
import http.server
import json
import math
import random
import sys
import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Literal

__all__ = ["FlakyService", "Outage"]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Outage:
    """A time the service is down, in seconds from its start.

    Args:
        start: Seconds after the start when the outage begins.
        duration: Seconds it lasts.
        mode: ``"hang"``: requests wait ``hang`` seconds, then get 503. ``"error"``: 503 at once.
        hang: Seconds a request waits in ``"hang"`` mode. Default 2.0.

    Raises:
        ValueError: A negative or non-finite time, an unknown mode.
    """

    start: float
    duration: float
    mode: Literal["hang", "error"] = "hang"
    hang: float = 2.0

    def __post_init__(self) -> None:
        for field in ("start", "duration", "hang"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
                raise ValueError(f"Outage.{field} must be a finite number of seconds >= 0, got {value!r}")
        if self.mode not in ("hang", "error"):
            raise ValueError(f"Outage.mode must be 'hang' or 'error', got {self.mode!r}")

    def covers(self, elapsed: float) -> bool:
        """Whether the service is down ``elapsed`` seconds after its start."""
        return self.start <= elapsed < self.start + self.duration


class _Handler(http.server.BaseHTTPRequestHandler):
    service: FlakyService  # set on a subclass made per service
    server_version = "breaker-flaky"

    def do_GET(self) -> None:
        status, delay = self.service._decide()
        if delay and self.service._closing.wait(delay):
            status = 503  # closing: answer at once
        body = json.dumps({"path": self.path, "status": status}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the demo prints its own view


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins the request threads: close() leaves none behind
    block_on_close = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client that gave up waiting is no error
            super().handle_error(request, client_address)


class FlakyService:
    """A flaky HTTP dependency on loopback, for the demo and the tests.

    Args:
        host: Address to listen on. Default ``"127.0.0.1"``.
        port: Port; 0 (the default) picks a free one.
        latency: Seconds a healthy answer takes. Default 0.02.
        jitter: Up to this many seconds more, uniformly. Default 0.01.
        error_rate: Share of requests answered 500 while healthy, from 0 to 1. Default 0.
        outages: When the service is down.
        seed: Seeds the choice of errors and jitter, for repeatable runs.
        clock: Seconds, monotonic; the schedule is read on it. Default `time.monotonic`.

    Raises:
        ValueError: A bad option, named in the message.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        latency: float = 0.02,
        jitter: float = 0.01,
        error_rate: float = 0.0,
        outages: Sequence[Outage] = (),
        seed: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        for field, value in (("latency", latency), ("jitter", jitter)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
                raise ValueError(f"{field} must be a finite number of seconds >= 0, got {value!r}")
        if isinstance(error_rate, bool) or not isinstance(error_rate, (int, float)) or not 0 <= error_rate <= 1:
            raise ValueError(f"error_rate must be a share from 0 to 1, got {error_rate!r}")
        if not all(isinstance(outage, Outage) for outage in outages):
            raise ValueError(f"outages must be Outage objects, got {outages!r}")
        self.latency = float(latency)
        self.jitter = float(jitter)
        self.error_rate = float(error_rate)
        self.outages = tuple(outages)
        self._clock = clock
        # Guards the random generator and the counts: every request thread draws from one and adds to the other.
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self._counts: collections.Counter[str] = collections.Counter()
        self._started: float | None = None
        self._closing = threading.Event()
        handler = type("Handler", (_Handler,), {"service": self})
        self._server = _Server((host, port), handler)
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        state = "closed" if self._closing.is_set() else "serving" if self._thread else "bound"
        return f"<FlakyService {self.url} {state} latency={self.latency:g}s error_rate={self.error_rate:g}>"

    @property
    def url(self) -> str:
        """``http://host:port``."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def elapsed(self) -> float:
        """Seconds since `start` (0 before it)."""
        return 0.0 if self._started is None else self._clock() - self._started

    def down(self) -> Outage | None:
        """The outage under way now, if any."""
        elapsed = self.elapsed()
        return next((outage for outage in self.outages if outage.covers(elapsed)), None)

    def counts(self) -> dict[str, int]:
        """Requests answered so far, by how: ``"ok"``, ``"error"`` (500), ``"down"`` (503 during an outage)."""
        with self._lock:  # a copy, while request threads add to it
            return dict(self._counts)

    def _decide(self) -> tuple[int, float]:
        """This request's status and delay; counts it."""
        outage = self.down()
        with self._lock:  # one generator and one counter for every request thread
            if outage is not None:
                self._counts["down"] += 1
                return 503, outage.hang if outage.mode == "hang" else 0.0
            failed = self._random.random() < self.error_rate
            delay = self.latency + self._random.uniform(0.0, self.jitter)
            self._counts["error" if failed else "ok"] += 1
        return (500 if failed else 200), delay

    def start(self) -> FlakyService:
        """Serve on a thread this service owns (`close` stops it); the outage schedule starts now."""
        if self._thread is not None or self._closing.is_set():
            raise RuntimeError(f"{self!r} is already started or closed")
        self._started = self._clock()
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="breaker-flaky", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving, answer hanging requests at once, and wait for every thread. Idempotent."""
        with self._lock:  # close once, even when called from two threads
            if self._closing.is_set():
                return
            self._closing.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()  # joins the request threads

    def __enter__(self) -> FlakyService:
        return self.start() if self._thread is None else self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
