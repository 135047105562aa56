"""``python -m breaker demo``: load through circuit breakers at a flaky HTTP service, an outage, and recovery.

Two dependencies run on loopback (`FlakyService`): ``inventory``, which goes down for a while (its requests hang
past the clients' timeout), and ``pricing``, healthy but for a few errors. Client functions protected by
``@breaker.command`` call them, driven by a hey-style `Load`. While it runs, a live view prints one line per
circuit (state, rate, error %, p99, fallbacks) and the dashboard serves the same figures in a browser. At the end
comes a hey-style summary, the circuits' state changes, and what the services themselves answered: during the
outage the callers got fallbacks at once instead of waiting out timeouts, and hardly a call reached ``inventory``.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import http.client
import itertools
import logging
import math
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Literal, TextIO

from breaker import (
    CircuitOpenError,
    CommandConfig,
    CommandTimeoutError,
    MaxConcurrencyError,
    State,
    command,
    configure_command,
    dashboard,
    get_circuit,
    on_state_change,
    remove_state_listener,
)

from .flaky import FlakyService, Outage
from .load import Load, LoadOptions, Report

__all__ = ["DemoOptions", "DemoResult", "run_demo"]

#: The calls that count as requests in the rate the live view shows.
_CALLS = ("success", "failure", "timeout", "short-circuit", "rejected", "bad-request")
_FALLBACKS = ("fallback-success", "fallback-failure")
_LABELS = {
    State.CLOSED: "closed",
    State.OPEN: "OPEN",
    State.HALF_OPEN: "half-open",
    State.FORCED_OPEN: "forced open",
    State.FORCED_CLOSED: "forced closed",
}


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DemoOptions:
    """What the demo runs. The defaults tell the whole story in about 30 seconds.

    Args:
        load: The load (hey's ``-n -c -q -z``). Default: 8 workers, 20 calls/s each, for 30 s.
        outage_start: Seconds after the start when ``inventory`` goes down. Default 8.
        outage_duration: Seconds it stays down. Default 10.
        outage_mode: ``"hang"`` (requests hang past the timeout) or ``"error"`` (503 at once). Default "hang".
        latency: Seconds a healthy answer takes (plus up to half as much jitter). Default 0.02.
        error_rate: Share of healthy answers that are errors. Default 0.02.
        timeout: Each command's timeout, seconds. Default 0.25.
        sleep_window: Seconds an open circuit waits before its probe. Default 2.
        rolling_window: Seconds of history the circuits judge health on. Default 5.
        port: The dashboard's port; 0 picks a free one, None serves no dashboard. Default 8000 (a free one if
            it is taken).
        live: Redraw the live view in place (a terminal); None: when the output is a terminal.
        view_interval: Seconds between two readings of the live view. Default 0.5 (2 when not redrawing).
        seed: Seeds the services' errors, for repeatable runs.
    """

    load: LoadOptions = dataclasses.field(default_factory=lambda: LoadOptions(concurrency=8, rate=20, duration=30))
    outage_start: float = 8.0
    outage_duration: float = 10.0
    outage_mode: Literal["hang", "error"] = "hang"
    latency: float = 0.02
    error_rate: float = 0.02
    timeout: float = 0.25
    sleep_window: float = 2.0
    rolling_window: float = 5.0
    port: int | None = 8000
    live: bool | None = None
    view_interval: float | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        self.outage()  # checks the outage's fields
        if isinstance(self.error_rate, bool) or not 0 <= self.error_rate <= 1:
            raise ValueError(f"error_rate must be a share from 0 to 1, got {self.error_rate!r}")
        for field in ("latency", "timeout", "sleep_window", "rolling_window"):
            value = getattr(self, field)
            if isinstance(value, bool) or not 0 <= value < math.inf or (value == 0 and field != "latency"):
                raise ValueError(f"{field} must be a positive, finite number of seconds, got {value!r}")

    def outage(self) -> Outage:
        """The inventory service's outage."""
        return Outage(start=self.outage_start, duration=self.outage_duration, mode=self.outage_mode)


@dataclasses.dataclass(frozen=True, slots=True)
class DemoResult:
    """How a demo run went.

    Attributes:
        report: Every call the load made.
        changes: The circuits' state changes: seconds from the start, command, old state, new state.
        served: What each service answered, by command: ``{"ok": ..., "error": ..., "down": ...}``.
        dashboard: The dashboard's URL, if one was served.
    """

    report: Report
    changes: tuple[tuple[float, str, State, State], ...]
    served: dict[str, dict[str, int]]
    dashboard: str | None


class DependencyError(Exception):
    """A dependency answered with an error status."""


def _fetch(base: str, path: str, timeout: float) -> None:
    parts = urllib.parse.urlsplit(base)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
    finally:
        connection.close()
    if response.status != 200:
        raise DependencyError(f"{base}{path} answered {response.status}")


def _fallback_label(error: Exception) -> str:
    if isinstance(error, CircuitOpenError):
        return "fallback (short-circuit)"
    if isinstance(error, CommandTimeoutError):
        return "fallback (timeout)"
    if isinstance(error, MaxConcurrencyError):
        return "fallback (rejected)"
    return "fallback (failure)"


def _client(name: str, service: FlakyService, timeout: float) -> Callable[[int], str]:
    """A client function for one dependency, protected by a command: it answers how the call ended."""

    def fallback(error: Exception, item: int) -> str:
        return _fallback_label(error)

    @command(name, fallback=fallback)
    def get(item: int) -> str:
        # The socket timeout bounds a run the breaker has abandoned after its own timeout.
        _fetch(service.url, f"/{name}/{item}", timeout=4 * timeout)
        return "ok"

    return get


class _View:
    """The live view: a line per circuit, and the state changes as they come."""

    def __init__(self, out: TextIO, names: list[str], live: bool, start: float) -> None:
        self.out = out
        self.names = names
        self.live = live
        self.start = start
        self.drawn = 0
        # Recent readings of each circuit's call count: the rate is taken over the last few, not the last one.
        self.readings: dict[str, collections.deque[tuple[float, int]]] = {
            name: collections.deque([(start, 0)], maxlen=5) for name in names
        }
        # Guards the changes and the log lines not yet printed: listeners and loggers run on the callers' threads.
        self._lock = threading.Lock()
        self._pending: list[str] = []
        self.changes: list[tuple[float, str, State, State]] = []

    def on_change(self, name: str, old: State, new: State) -> None:
        if name not in self.names:
            return
        at = time.monotonic() - self.start
        with self._lock:  # see __init__
            self.changes.append((at, name, old, new))

    def on_log(self, message: str) -> None:
        """The library's own words on each change (logger ``breaker``), shown above the view."""
        with self._lock:  # see __init__
            self._pending.append(f"[{time.monotonic() - self.start:6.2f}s] {message}")

    def lines(self, load: Load) -> list[str]:
        now = time.monotonic()
        lines = [f"[{now - self.start:6.2f}s] {load.completed()} requests"]
        for name in self.names:
            stats = get_circuit(name)[0].statistics()
            calls = sum(stats.cumulative[e] for e in _CALLS)
            readings = self.readings[name]
            then, before = readings[0]
            readings.append((now, calls))
            rate = (calls - before) / (now - then) if now > then else 0.0
            fallbacks = sum(stats.cumulative[e] for e in _FALLBACKS)
            lines.append(
                f"  {name:<10} {_LABELS[stats.state]:<9} {rate:7.1f}/s  err {stats.error_percentage:3d}%"
                f"  p99 {stats.latency_total.percentiles[99] * 1000:7.1f} ms  fallbacks {fallbacks}"
            )
        return lines

    def refresh(self, load: Load) -> None:
        with self._lock:  # see __init__
            pending, self._pending = self._pending, []
        lines = self.lines(load)
        if self.live:
            erase = f"\x1b[{self.drawn}F\x1b[J" if self.drawn else ""
            self.out.write(erase + "".join(f"{line}\n" for line in [*pending, *lines]))
            self.drawn = len(lines)
        else:
            self.out.write("".join(f"{line}\n" for line in [*pending, *lines]))
        self.out.flush()


class _Lines(logging.Handler):
    def __init__(self, sink: Callable[[str], None]) -> None:
        super().__init__(logging.INFO)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink(record.getMessage())


@contextlib.contextmanager
def _logged(sink: Callable[[str], None]) -> Iterator[None]:
    """Send the ``breaker`` logger's records (INFO and up) to ``sink`` instead of stderr, for the demo's length."""
    logger = logging.getLogger("breaker")
    handler, level, propagate = _Lines(sink), logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


def _dashboard(port: int | None, out: TextIO) -> tuple[contextlib.AbstractContextManager[object], str | None]:
    if port is None:
        return contextlib.nullcontext(), None
    try:
        server = dashboard.serve("127.0.0.1", port, block=False)
    except OSError as error:
        out.write(f"port {port} is taken ({error.strerror}); the dashboard takes a free one\n")
        server = dashboard.serve("127.0.0.1", 0, block=False)
    return server, f"http://127.0.0.1:{server.port}/"


def run_demo(out: TextIO = sys.stdout, options: DemoOptions | None = None) -> DemoResult:
    """Run the demo, printing as it goes; Ctrl-C stops the load early and still prints the summary.

    Args:
        out: Where to print.
        options: What to run (`DemoOptions`); default the 30-second story.

    Returns:
        How it went (`DemoResult`).
    """
    options = options or DemoOptions()
    outage = options.outage()
    jitter = options.latency / 2
    services = {
        "inventory": FlakyService(
            latency=options.latency,
            jitter=jitter,
            error_rate=options.error_rate,
            outages=[outage],
            seed=options.seed,
        ),
        "pricing": FlakyService(
            latency=options.latency, jitter=jitter, error_rate=options.error_rate, seed=options.seed
        ),
    }
    for name in services:
        configure_command(
            name,
            CommandConfig(
                timeout=options.timeout,
                max_concurrent_requests=options.load.concurrency + 2,
                request_volume_threshold=20,
                error_percent_threshold=50,
                sleep_window=options.sleep_window,
                rolling_window=options.rolling_window,
            ),
        )
    clients = {name: _client(name, service, options.timeout) for name, service in services.items()}
    names = list(services)
    turn = itertools.count()

    def request() -> str:
        i = next(turn)  # itertools.count: atomic under the GIL, so the workers alternate fairly
        name = names[i % len(names)]
        return f"{name} {clients[name](i)}"

    live = out.isatty() if options.live is None else options.live
    interval = options.view_interval or (0.5 if live else 2.0)
    server, url = _dashboard(options.port, out)
    with contextlib.ExitStack() as stack:
        stack.enter_context(server)
        for service in services.values():
            stack.enter_context(service)
        start = time.monotonic()
        view = _View(out, names, live, start)
        on_state_change(view.on_change)
        stack.callback(remove_state_listener, view.on_change)
        stack.enter_context(_logged(view.on_log))
        load = Load(request, options.load)
        _introduce(out, options, services, url)
        load.start()
        try:
            while not load.wait(interval):
                view.refresh(load)
        except KeyboardInterrupt:
            load.stop()
            out.write("\nstopping (Ctrl-C): the calls in progress finish first\n")
        report = load.report()
        view.refresh(load)
        served = {name: service.counts() for name, service in services.items()}
    result = DemoResult(report, tuple(view.changes), served, url)
    out.write(summary(result))
    out.flush()
    return result


def _introduce(out: TextIO, options: DemoOptions, services: dict[str, FlakyService], url: str | None) -> None:
    load, outage_end = options.load, options.outage_start + options.outage_duration
    amount = f"for {load.duration:g}s" if load.duration is not None else f"{load.requests} requests"
    rate = f", at most {load.rate:g}/s each" if load.rate is not None else ""
    out.write(
        f"breaker demo: {load.concurrency} workers{rate}, {amount}, calling two services on loopback through\n"
        f"circuit breakers (timeout {options.timeout:g}s, sleep window {options.sleep_window:g}s):\n"
        + "".join(f"  {name:<10} {service.url}\n" for name, service in services.items())
        + f"inventory goes down ({options.outage_mode}) from {options.outage_start:g}s to {outage_end:g}s.\n"
        + (f"dashboard: {url}\n" if url else "")
        + "Ctrl-C stops early.\n\n"
    )
    out.flush()


def summary(result: DemoResult) -> str:
    """The end of the demo: the load's hey-style summary, the state changes, what the services answered."""
    lines = [result.report.format().rstrip("\n"), f"  {'total':<{_width(result)}}  {len(result.report.samples):>7}"]
    lines += ["", "Circuit state changes:"]
    lines += [f"  [{at:6.2f}s] {name}: {old.value} -> {new.value}" for at, name, old, new in result.changes]
    if not result.changes:
        lines.append("  none")
    lines += ["", "What the services answered (requests that reached them):"]
    for name, counts in result.served.items():
        total = sum(counts.values())
        parts = ", ".join(f"{kind} {counts.get(kind, 0)}" for kind in ("ok", "error", "down"))
        lines.append(f"  {name:<10} {total} ({parts})")
    return "\n".join(lines) + "\n"


def _width(result: DemoResult) -> int:
    return max((len(outcome) for outcome in result.report.outcomes()), default=0)
