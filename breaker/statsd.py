"""Send every command's calls to StatsD, with the metric names of hystrix-go's statsd plugin.

::

    import breaker
    from breaker.statsd import StatsdCollector

    collector = StatsdCollector(host="127.0.0.1", port=8125, prefix="myapp", sample_rate=1.0)
    breaker.register_collector(collector.factory)
    ...
    collector.close()  # at shutdown: sends what is buffered and stops the thread (or use it as a context manager)

Metrics, for a command ``name`` (``prefix.`` in front when a prefix is set), as afex/hystrix-go's
``plugins/statsd_collector.go`` names them:

- counters (``|c``): ``name.attempts``, ``.errors``, ``.successes``, ``.failures``, ``.rejects``,
  ``.shortCircuits``, ``.timeouts``, ``.fallbackSuccesses``, ``.fallbackFailures``, and, for the events hystrix-go
  does not have, ``.badRequests``, ``.cancelled`` and ``.slow`` (each name is the `breaker.CallResult` field in
  camelCase). ``.slow`` counts the successes and failures whose run took at least the command's
  ``slow_call_duration`` (`breaker.CallResult.slow`); they are in ``.successes`` or ``.failures`` too. A count of 0
  is not sent. Counters are summed per flush: 40 successes in one interval are one line,
  ``name.successes:40|c``.
- timings (``|ms``), one line per call: ``name.totalDuration`` and ``name.runDuration`` in milliseconds, and
  ``name.concurrencyInUse``, the tickets in use as a whole percentage (0 to 100), sent as a timing as hystrix-go
  does, so that StatsD keeps its distribution instead of the last value. ``runDuration`` is not sent for a call that
  never ran (short-circuited or rejected); hystrix-go sends 0 ms for those, which drags the run timings down.
- a gauge (``|g``): ``name.circuitOpen``, 1 while the circuit is open, half-open or forced open, else 0.

Command names are sanitised as hystrix-go does ("/", ":" and "." become "-"), and every other character that is not
an ASCII letter, digit, "_" or "-" becomes "_", so that no name can break the line protocol ("|", ":", "@", "#",
newlines) or add a level to the metric path: a name can neither inject a metric nor change another's. Two names
that sanitise alike (``a.b`` and ``a:b``) share their metrics; a name so long that its lines do not fit in
``max_packet_size`` loses its own lines (counted in `StatsdStatistics.oversized`), never another command's.

Sampling: at ``sample_rate`` < 1 each call is kept with that probability (one draw per call, so a kept call sends
all its lines) and its counters and timings carry ``|@rate``, from which StatsD scales them back up. The gauge is
never sampled: a lost change would stay wrong until the next one (hystrix-go samples it too; StatsD ignores the rate
on gauges anyway).

Design:

- ``update()`` runs on the caller's thread; it draws the sample and appends the `CallResult` to an in-memory
  buffer under a lock held for that append alone, never across I/O. The buffer holds at most ``max_buffered``
  calls: when it is full the oldest call is dropped and counted (`StatsdStatistics.dropped`). Size it above
  calls per second times ``flush_interval``.
- One daemon thread per collector, named ``breaker-statsd <host>:<port>`` and started at construction, wakes every
  ``flush_interval`` seconds, takes the whole buffer, formats it and sends it in datagrams of at most
  ``max_packet_size`` bytes (lines joined with "\\n"; 1432 by default, hystrix-go's LAN size). It serves every
  command: the factory's per-command objects only hold the command's metric key.
- The socket is UDP, non-blocking and connected, created (and the host resolved) by the first send, never by a
  call. A send that fails (a refused port reported by ICMP, a full socket buffer, an unresolvable host) is counted
  in `StatsdStatistics.send_errors`, logged once per run of failures on logger ``breaker.statsd``, and the next
  flush tries again. Nothing raises into a call, or out of the thread.
- The circuit-open gauge is read from the circuits at flush time (`breaker.circuits`, then `Circuit.is_open`, both
  pure; no circuit is created), for the commands this collector serves, and sent when it changed, when it is first
  seen, or when the command had calls in the interval (so a lost datagram is repaired by the next call). A circuit
  is open for at least its sleep window, so a flush interval shorter than the sleep window sees every opening. The
  alternative, a `breaker.on_state_change` listener, would need a second registration next to the factory's, and
  its first value would wait for a change. The circuits read are the current registry's.
- ``reset()`` (the command's circuit dropped by `breaker.flush`) stops the gauge for that command object; calls
  still buffered, and late calls from runs that were in flight, are sent: they happened.
- `StatsdCollector.close` (or leaving the ``with`` block) stops and joins the thread, then sends what is buffered
  and closes the socket. Afterwards ``update()`` ignores calls. `breaker` has no way to unregister a collector
  factory, so the per-command objects stay registered and idle. The collector is not fork-safe: make it in the
  process that uses it.

The module needs only the standard library; the ``breaker[statsd]`` extra is not required by it.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
import random
import re
import socket
import threading
import weakref
from collections.abc import Callable, Iterable
from datetime import timedelta
from decimal import Decimal
from types import TracebackType

from . import CallResult, Event, circuits

__all__ = ["StatsdCollector", "StatsdCommandCollector", "StatsdStatistics"]

logger = logging.getLogger("breaker.statsd")

#: hystrix-go's LAN packet size: an Ethernet MTU less the IP and UDP headers, with room to spare.
DEFAULT_PACKET_SIZE = 1432
#: The largest UDP payload over IPv4.
MAX_PACKET_SIZE = 65507
MIN_PACKET_SIZE = 64

#: Counter metric names and the `CallResult` field each one counts, in the order they are sent.
_COUNTERS: tuple[tuple[str, str], ...] = (
    ("attempts", "attempts"),
    ("errors", "errors"),
    ("successes", "successes"),
    ("failures", "failures"),
    ("rejects", "rejects"),
    ("shortCircuits", "short_circuits"),
    ("timeouts", "timeouts"),
    ("fallbackSuccesses", "fallback_successes"),
    ("fallbackFailures", "fallback_failures"),
    ("badRequests", "bad_requests"),
    ("cancelled", "cancelled"),
    ("slow", "slow"),
)
#: Calls whose run never started: they send no ``runDuration``.
_NEVER_RAN = frozenset({Event.SHORT_CIRCUIT, Event.REJECTED})

_HYSTRIX_GO = str.maketrans({"/": "-", ":": "-", ".": "-"})
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-]")
_PREFIX = re.compile(r"[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*")


def metric_name(command: str) -> str:
    """The metric path element of ``command``: hystrix-go's replacements, then anything else unsafe to "_"."""
    return _UNSAFE.sub("_", command.translate(_HYSTRIX_GO))


@dataclasses.dataclass(frozen=True, slots=True)
class StatsdStatistics:
    """A snapshot of a `StatsdCollector`'s work since it was made.

    Attributes:
        buffered: Calls waiting for the next flush.
        dropped: Calls dropped, oldest first, because the buffer was full.
        packets: Datagrams handed to the operating system.
        lines: Metric lines in those datagrams.
        send_errors: Datagrams not sent: the send failed (refused port, full socket buffer) or no socket could be
            made (unresolvable host).
        oversized: Lines longer than ``max_packet_size`` bytes, dropped (a very long command name).
        commands: Per-command collectors made by the factory and not reset.
    """

    buffered: int
    dropped: int
    packets: int
    lines: int
    send_errors: int
    oversized: int
    commands: int


class StatsdCommandCollector:
    """What `StatsdCollector.factory` makes for one command: it hands each call to the collector's buffer."""

    __slots__ = ("__weakref__", "_owner", "key", "name")

    def __init__(self, owner: StatsdCollector, name: str, key: str) -> None:
        self._owner = owner
        #: The command's name, as given.
        self.name = name
        #: The metric path every line of this command starts with: ``prefix.sanitised-name.``.
        self.key = key

    def __repr__(self) -> str:
        return f"<StatsdCommandCollector {self.name!r} key={self.key!r}>"

    def update(self, result: CallResult) -> None:
        """Buffer the record of one call for the next flush (or skip it, when sampled out). Never blocks on I/O."""
        self._owner._push(self, result)

    def reset(self) -> None:
        """The command's circuit was dropped (`breaker.flush`): stop reporting its circuit-open gauge."""
        self._owner._forget(self)


class StatsdCollector:
    """A StatsD client for every command: buffers calls and sends them from one background thread.

    Register its `factory` with `breaker.register_collector`. See the module docstring for the metric names and
    the design.

    Args:
        host: The StatsD server's host name or IP address; resolved by the background thread, never by a call.
        port: Its UDP port.
        prefix: Prepended to every metric with a ".", e.g. ``"myapp"`` or ``"myapp.eu"``; ``""`` for none.
        sample_rate: The fraction of calls sent, in (0, 1]; their counters and timings carry ``|@rate``.
        flush_interval: Seconds (float or timedelta) between flushes; positive and finite.
        max_buffered: Calls held between flushes; when full, the oldest is dropped and counted.
        max_packet_size: The largest datagram sent, in bytes (64 to 65507); lines are joined with "\\n".
        rng: Returns floats uniform in [0, 1) for sampling; `random.random` unless given (pass
            ``random.Random(seed).random`` for a reproducible sample).

    Raises:
        TypeError, ValueError: A bad argument, named with the rule it breaks.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8125,
        *,
        prefix: str = "",
        sample_rate: float = 1.0,
        flush_interval: float | timedelta = 0.5,
        max_buffered: int = 10_000,
        max_packet_size: int = DEFAULT_PACKET_SIZE,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.host = _check_host(host)
        self.port = _check_int("port", port, 1, 65535)
        self.prefix = _check_prefix(prefix)
        self.sample_rate = _check_rate(sample_rate)
        self.flush_interval = _check_interval(flush_interval)
        self.max_buffered = _check_int("max_buffered", max_buffered, 1, None)
        self.max_packet_size = _check_int("max_packet_size", max_packet_size, MIN_PACKET_SIZE, MAX_PACKET_SIZE)
        if not callable(rng):
            raise TypeError(f"StatsdCollector rng must be callable returning floats in [0, 1), got {rng!r}")
        self._rng = rng
        self._suffix = "" if self.sample_rate == 1.0 else f"|@{_decimal(self.sample_rate)}"

        # Guards the buffer, the drop count, the closed flag and the set of command objects. update() appends (and
        # drops the oldest) in one step under it, so every drop is counted; the flusher holds it only to swap the
        # buffer out. Never held across I/O or user code.
        self._lock = threading.Lock()
        self._buffer: collections.deque[tuple[StatsdCommandCollector, CallResult]] = collections.deque()
        self._dropped = 0
        self._closed = False
        #: Per-command objects not yet reset; weak, so objects the registry made and threw away vanish by themselves.
        self._commands: weakref.WeakSet[StatsdCommandCollector] = weakref.WeakSet()

        # One sender at a time (the thread, send_now() and close()): the socket, the gauge memory and the send
        # counters belong to whoever holds it. update() never takes it, so a stalled send never stalls a call.
        self._send_lock = threading.Lock()
        self._socket: socket.socket | None = None
        self._finished = False  # close() has sent the last flush and closed the socket
        self._gauges: dict[str, int] = {}  # the circuit-open value last sent, by metric key
        self._failing = False  # the last send failed: further failures are logged at debug level
        self._packets = self._lines = self._send_errors = self._oversized = 0

        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"breaker-statsd {self.host}:{self.port}", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (
            f"<StatsdCollector {self.host}:{self.port} prefix={self.prefix!r} sample_rate={self.sample_rate!r} "
            f"flush_interval={self.flush_interval!r} buffered={len(self._buffer)} dropped={self._dropped} {state}>"
        )

    def __enter__(self) -> StatsdCollector:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- the plug-in ---------------------------------------------------------------------------------------------

    def factory(self, name: str) -> StatsdCommandCollector:
        """The collector factory: pass it to `breaker.register_collector`.

        Args:
            name: The command's name.

        Returns:
            A lightweight per-command object that hands each call to this collector.
        """
        key = f"{self.prefix}.{metric_name(name)}." if self.prefix else f"{metric_name(name)}."
        command = StatsdCommandCollector(self, name, key)
        with self._lock:  # the flusher iterates the set
            self._commands.add(command)
        return command

    def _push(self, command: StatsdCommandCollector, result: CallResult) -> None:
        if self._suffix and not self._rng() < self.sample_rate:  # user code (rng): before the lock
            return
        with self._lock:  # append and drop-oldest as one step, so each drop is counted exactly once
            if self._closed:
                return
            buffer = self._buffer
            if len(buffer) >= self.max_buffered:
                buffer.popleft()
                self._dropped += 1
            buffer.append((command, result))

    def _forget(self, command: StatsdCommandCollector) -> None:
        with self._lock:  # the flusher iterates the set
            self._commands.discard(command)

    # -- queries -------------------------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether `close` was called."""
        return self._closed

    def statistics(self) -> StatsdStatistics:
        """A snapshot of what was buffered, dropped and sent. Never waits for a send in progress."""
        with self._lock:  # buffered, dropped and commands as of one moment
            buffered, dropped, commands = len(self._buffer), self._dropped, len(self._commands)
        # Written only by the sender, one int at a time: each read is whole, if not of the same instant.
        return StatsdStatistics(
            buffered=buffered,
            dropped=dropped,
            packets=self._packets,
            lines=self._lines,
            send_errors=self._send_errors,
            oversized=self._oversized,
            commands=commands,
        )

    # -- sending -------------------------------------------------------------------------------------------------

    def send_now(self) -> None:
        """Send what is buffered, and the circuit-open gauges, now, on this thread (waiting for a send in progress).

        Never raises for a network failure: failed sends are counted in `StatsdStatistics.send_errors`. Does
        nothing after `close`.
        """
        self._flush()

    def close(self) -> None:
        """Stop and join the background thread, send what is buffered, and close the socket. Idempotent.

        Calls made afterwards are ignored.
        """
        with self._lock:  # from now on update() buffers nothing
            self._closed = True
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
        self._flush(last=True)

    def _run(self) -> None:
        while not self._stop.wait(self.flush_interval):
            try:
                self._flush()
            except Exception:  # noqa: PERF203  # pragma: no cover - a bug here must not end the thread silently
                logger.exception("the statsd collector for %s:%d failed to flush; retrying", self.host, self.port)

    def _flush(self, *, last: bool = False) -> None:
        failures: list[BaseException] = []
        with self._send_lock:  # one sender at a time (see __init__)
            if self._finished:
                return
            with self._lock:  # swap: callers append to a fresh buffer while this one is sent
                items, self._buffer = self._buffer, collections.deque()
                commands = list(self._commands)
            lines = self._format(items)
            lines.extend(self._gauge_lines(commands, active={command for command, _ in items}))
            packets = self._pack(lines)
            was_failing = self._failing
            if packets:
                self._send(packets, failures)
                self._failing = bool(failures)
            if last:
                self._finished = True
                if self._socket is not None:
                    self._socket.close()
                    self._socket = None
        # Logging runs the user's handlers: after the lock.
        if failures and not was_failing:
            logger.warning(
                "statsd: sending to %s:%d failed (%s); further failures are counted and logged at debug level "
                "until a send succeeds",
                self.host,
                self.port,
                failures[0],
            )
        elif failures:
            logger.debug("statsd: sending to %s:%d failed (%s)", self.host, self.port, failures[0])
        elif was_failing and packets:
            logger.info("statsd: sending to %s:%d works again", self.host, self.port)

    def _send(self, packets: list[bytes], failures: list[BaseException]) -> None:
        """Hand each datagram to the socket without blocking; count what fails, note why in ``failures``."""
        sock = self._connect(failures)
        if sock is None:
            self._send_errors += len(packets)
            return
        for packet in packets:
            try:
                sock.send(packet)
            except OSError as error:  # noqa: PERF203 - refused port (ICMP), full buffer, unreachable: never raise
                self._send_errors += 1
                failures.append(error)
            else:
                self._packets += 1
                self._lines += packet.count(b"\n") + 1

    def _connect(self, failures: list[BaseException]) -> socket.socket | None:
        """The connected, non-blocking UDP socket, made on first use; None (noted in ``failures``) if it can't be."""
        if self._socket is not None:
            return self._socket
        try:
            family, kind, proto, _, address = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_DGRAM)[0]
            sock = socket.socket(family, kind, proto)
            try:
                sock.setblocking(False)
                # Connected, so the kernel reports a refused port (ICMP) as ConnectionRefusedError on a later send,
                # which is counted, instead of silently.
                sock.connect(address)
            except BaseException:
                sock.close()
                raise
        except (OSError, ValueError) as error:  # unresolvable or malformed host: retried on the next flush
            failures.append(error)
            return None
        self._socket = sock
        return sock

    def _format(self, items: Iterable[tuple[StatsdCommandCollector, CallResult]]) -> list[str]:
        """Counter lines (summed per metric, in order of first appearance), then one set of timings per call."""
        suffix = self._suffix
        counts: dict[str, int] = {}
        timings: list[str] = []
        for command, result in items:
            key = command.key
            for metric, field in _COUNTERS:
                n: int = getattr(result, field)
                if n:
                    counts[key + metric] = counts.get(key + metric, 0) + n
            timings.append(f"{key}totalDuration:{_milliseconds(result.total_duration)}|ms{suffix}")
            if result.event not in _NEVER_RAN:
                timings.append(f"{key}runDuration:{_milliseconds(result.run_duration)}|ms{suffix}")
            timings.append(f"{key}concurrencyInUse:{round(100 * result.concurrency_in_use)}|ms{suffix}")
        lines = [f"{name}:{n}|c{suffix}" for name, n in counts.items()]
        lines.extend(timings)
        return lines

    def _gauge_lines(self, commands: list[StatsdCommandCollector], active: set[StatsdCommandCollector]) -> list[str]:
        """``circuitOpen`` of each command served: when first seen, changed, or the command had calls."""
        if not commands:
            self._gauges = {}
            return []
        by_name = {circuit.name: circuit for circuit in circuits()}
        gauges: dict[str, int] = {}
        lines = []
        for command in commands:
            circuit = by_name.get(command.name)
            if circuit is None or command.key in gauges:
                continue  # no live circuit (a reset is on its way), or already done for this key
            value = int(circuit.is_open())
            gauges[command.key] = value
            if command in active or self._gauges.get(command.key) != value:
                lines.append(f"{command.key}circuitOpen:{value}|g")
        self._gauges = gauges  # forget commands no longer served, so a new one is sent when first seen
        return lines

    def _pack(self, lines: list[str]) -> list[bytes]:
        """``lines`` as datagrams of at most ``max_packet_size`` bytes; a line too long for any is dropped."""
        limit = self.max_packet_size
        packets: list[bytes] = []
        current: list[bytes] = []
        size = 0
        for line in lines:
            data = line.encode()
            if len(data) > limit:
                self._oversized += 1
                continue
            if current and size + 1 + len(data) > limit:
                packets.append(b"\n".join(current))
                current, size = [], 0
            size += len(data) + (1 if current else 0)
            current.append(data)
        if current:
            packets.append(b"\n".join(current))
        return packets


def _milliseconds(seconds: float) -> str:
    """``seconds`` in milliseconds, to the microsecond, without trailing zeros: ``0.25`` -> ``"250"``."""
    text = f"{seconds * 1000:.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _decimal(rate: float) -> str:
    """``rate`` positionally (never in exponent form), as StatsD servers parse it: ``1e-05`` -> ``"0.00001"``."""
    return format(Decimal(repr(rate)), "f")


def _check_host(host: object) -> str:
    if not isinstance(host, str):
        raise TypeError(f"StatsdCollector host must be a str (a host name or IP address), got {host!r}")
    if not host:
        raise ValueError("StatsdCollector host must not be empty: give a host name or IP address, e.g. '127.0.0.1'")
    return host


def _check_int(field: str, value: object, minimum: int, maximum: int | None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"StatsdCollector {field} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        upper = f" and at most {maximum}" if maximum is not None else ""
        raise ValueError(f"StatsdCollector {field} must be at least {minimum}{upper}, got {value!r}")
    return value


def _check_prefix(prefix: object) -> str:
    if not isinstance(prefix, str):
        raise TypeError(f"StatsdCollector prefix must be a str, got {type(prefix).__name__} {prefix!r}")
    if prefix and not _PREFIX.fullmatch(prefix):
        raise ValueError(
            "StatsdCollector prefix must be dot-separated parts of ASCII letters, digits, '_' or '-' (or '' for "
            f"none), with no leading, trailing or doubled dot, e.g. 'myapp.eu'; got {prefix!r}"
        )
    return prefix


def _check_rate(rate: object) -> float:
    if isinstance(rate, bool) or not isinstance(rate, (int, float)):
        raise TypeError(f"StatsdCollector sample_rate must be a number in (0, 1], got {type(rate).__name__} {rate!r}")
    if not 0 < rate <= 1:  # also rejects nan
        raise ValueError(
            f"StatsdCollector sample_rate must be in (0, 1] (1.0 sends every call), got {rate!r}",
        )
    return float(rate)


def _check_interval(interval: object) -> float:
    if isinstance(interval, timedelta):
        seconds = interval.total_seconds()
    elif isinstance(interval, bool) or not isinstance(interval, (int, float)):
        raise TypeError(
            f"StatsdCollector flush_interval must be seconds as a float or a timedelta, got "
            f"{type(interval).__name__} {interval!r}"
        )
    else:
        seconds = float(interval)
    if not 0 < seconds < math.inf:
        raise ValueError(
            f"StatsdCollector flush_interval must be a positive, finite number of seconds, got {interval!r}"
        )
    return seconds
