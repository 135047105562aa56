"""The StatsD collector, `breaker.statsd`: the lines a real UDP socket on 127.0.0.1 receives, and its robustness.

Most tests give the collector a flush interval far longer than the test and call `StatsdCollector.send_now`, so
what is sent is decided by the test, not by the thread's timing; the receiver then reads exactly as many datagrams
as the collector reports sent, each within a bound. Durations come from a `FakeClock`.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import re
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

import breaker
from breaker import CommandConfig, FallbackError
from breaker.statsd import StatsdCollector, StatsdStatistics, metric_name
from breaker.testing import FakeClock

WAIT = 5.0  # the bound on every wait for something that should happen promptly
LONG = 3600.0  # a flush interval no test lasts: the thread never flushes by itself
LINE = re.compile(r"[A-Za-z0-9_.\-]+:\d+(\.\d+)?\|(c|ms|g)(\|@0\.\d+)?")


class Boom(Exception):
    """The dependency's own failure."""


class Receiver:
    """A StatsD server stand-in: a UDP socket on 127.0.0.1 that keeps every datagram it reads."""

    def __init__(self, port: int = 0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind(("127.0.0.1", port))
        self.sock.settimeout(WAIT)
        self.port: int = self.sock.getsockname()[1]
        self.datagrams: list[bytes] = []

    def expect(self, collector: StatsdCollector, already: int = 0) -> list[str]:
        """The lines of the datagrams ``collector`` has sent since the last read (``already`` sent elsewhere)."""
        new: list[bytes] = []
        while len(self.datagrams) + len(new) + already < collector.statistics().packets:
            new.append(self.sock.recv(65535))
        self.datagrams.extend(new)
        return [line for datagram in new for line in datagram.decode().split("\n")]

    def take(self, collector: StatsdCollector) -> list[str]:
        """Make ``collector`` send now; the lines it sent."""
        collector.send_now()
        return self.expect(collector)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A listening UDP socket on a free port."""
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def make(receiver: Receiver) -> Iterator[Callable[..., StatsdCollector]]:
    """Make a collector sending to ``receiver`` (flushing only when told), registered with the test's registry."""
    made: list[StatsdCollector] = []

    def make(**kwargs: Any) -> StatsdCollector:
        kwargs.setdefault("flush_interval", LONG)
        collector = StatsdCollector("127.0.0.1", receiver.port, **kwargs)
        made.append(collector)
        breaker.register_collector(collector.factory)
        return collector

    yield make
    for collector in made:
        collector.close()


def statsd_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("breaker-statsd")]


def caller(name: str, **fields: Any) -> None:
    """Configure ``name`` to run on the caller's thread (its durations then follow the fake clock exactly)."""
    breaker.configure_command(name, CommandConfig(isolation="caller", **fields))


def ok() -> str:
    return "ok"


# -- the lines ----------------------------------------------------------------------------------------------------


def test_calls_arrive_as_hystrix_go_statsd_lines(
    make: Callable[..., StatsdCollector], receiver: Receiver, clock: FakeClock
) -> None:
    """A success and a failure with a fallback arrive as hystrix-go's lines: prefix, names, values and types."""
    caller("pay", max_concurrent_requests=4)
    collector = make(prefix="myapp")

    def slow() -> str:
        clock.advance(0.25)
        return "ok"

    def fail() -> str:
        clock.advance(0.0125)
        raise Boom

    assert breaker.do("pay", slow) == "ok"
    assert breaker.do("pay", fail, fallback=lambda error: "fallback") == "fallback"
    assert receiver.take(collector) == [
        "myapp.pay.attempts:2|c",
        "myapp.pay.successes:1|c",
        "myapp.pay.errors:1|c",
        "myapp.pay.failures:1|c",
        "myapp.pay.fallbackSuccesses:1|c",
        "myapp.pay.totalDuration:250|ms",
        "myapp.pay.runDuration:250|ms",
        "myapp.pay.concurrencyInUse:25|ms",
        "myapp.pay.totalDuration:12.5|ms",
        "myapp.pay.runDuration:12.5|ms",
        "myapp.pay.concurrencyInUse:25|ms",
        "myapp.pay.circuitOpen:0|g",
    ]
    assert collector.statistics().lines == 12


def boom(*args: object) -> str:
    raise Boom


def fail_twice(clock: FakeClock) -> None:
    with pytest.raises(FallbackError):
        breaker.do("cmd", boom, fallback=boom)


def time_out(clock: FakeClock) -> None:
    def slow() -> str:
        clock.advance(0.2)
        return "late"

    assert breaker.do("cmd", slow, fallback=lambda error: "fallback") == "fallback"


def short_circuit(clock: FakeClock) -> None:
    assert breaker.do("cmd", ok, fallback=lambda error: "fallback") == "fallback"


def bad_request(clock: FakeClock) -> None:
    with pytest.raises(ValueError, match="bad"):
        breaker.do("cmd", lambda: int("bad"))


def cancel(clock: FakeClock) -> None:
    async def scenario() -> None:
        started = asyncio.Event()

        async def hang() -> None:
            started.set()
            await asyncio.sleep(WAIT * 10)

        task = asyncio.ensure_future(breaker.do_async("cmd", hang))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("config", "call", "counters", "ran"),
    [
        pytest.param({}, lambda clock: breaker.do("cmd", ok), {"attempts", "successes"}, True, id="success"),
        pytest.param({}, fail_twice, {"attempts", "errors", "failures", "fallbackFailures"}, True, id="failure"),
        pytest.param(
            {"timeout": 0.1}, time_out, {"attempts", "errors", "timeouts", "fallbackSuccesses"}, True, id="timeout"
        ),
        pytest.param(
            {"force_open": True},
            short_circuit,
            {"attempts", "shortCircuits", "fallbackSuccesses"},
            False,
            id="short-circuit",
        ),
        pytest.param(
            {"ignored_exceptions": (ValueError,)}, bad_request, {"attempts", "badRequests"}, True, id="bad-request"
        ),
        pytest.param({"timeout": WAIT * 10}, cancel, {"attempts", "cancelled"}, True, id="cancelled"),
    ],
)
def test_each_event_has_its_counter(
    make: Callable[..., StatsdCollector],
    receiver: Receiver,
    clock: FakeClock,
    config: dict[str, Any],
    call: Callable[[FakeClock], None],
    counters: set[str],
    ran: bool,
) -> None:
    """Each primary and fallback event is counted under its own name, zeros are not sent, and runDuration only
    for a call that ran."""
    caller("cmd", **config)
    collector = make()
    call(clock)
    lines = receiver.take(collector)
    assert {line.split(":")[0].removeprefix("cmd.") for line in lines if line.endswith("|c")} == counters
    assert all(line.endswith(":1|c") for line in lines if line.endswith("|c"))
    timings = [line.split(":")[0] for line in lines if line.endswith("|ms")]
    expected = ["totalDuration", "runDuration", "concurrencyInUse"] if ran else ["totalDuration", "concurrencyInUse"]
    assert timings == [f"cmd.{metric}" for metric in expected]


def test_slow_calls_send_a_slow_counter_beside_their_success_or_failure(
    make: Callable[..., StatsdCollector], receiver: Receiver, clock: FakeClock
) -> None:
    """Runs that took at least slow_call_duration, sync and async, successes and failures, are summed into one
    ``slow`` counter; the fast call adds nothing to it."""
    caller("cmd", slow_call_duration=0.1, timeout=10)
    collector = make()

    def run(seconds: float, fails: bool = False) -> str:
        clock.advance(seconds)
        if fails:
            raise Boom
        return "ok"

    async def arun() -> str:
        return run(0.5)

    assert breaker.do("cmd", lambda: run(0.1)) == "ok"
    assert breaker.do("cmd", lambda: run(0.2, fails=True), fallback=lambda error: "fallback") == "fallback"
    assert breaker.do("cmd", lambda: run(0.05)) == "ok"
    assert asyncio.run(breaker.do_async("cmd", arun)) == "ok"
    counters = {line for line in receiver.take(collector) if line.endswith("|c")}
    assert counters == {
        "cmd.attempts:4|c",
        "cmd.successes:3|c",
        "cmd.errors:1|c",
        "cmd.failures:1|c",
        "cmd.fallbackSuccesses:1|c",
        "cmd.slow:3|c",
    }
    assert breaker.get_circuit("cmd")[0].statistics().cumulative["slow"] == 3


def test_a_rejected_call_counts_rejects_and_sends_no_run_duration(
    make: Callable[..., StatsdCollector], receiver: Receiver, clock: FakeClock
) -> None:
    """A call refused for want of a ticket (nested in a run holding the only one) counts attempts, errors and
    rejects, with the tickets in use as 100 percent."""
    caller("one", max_concurrent_requests=1)
    collector = make()
    inner = breaker.do("one", lambda: breaker.do("one", ok, fallback=lambda error: type(error).__name__))
    assert inner == "MaxConcurrencyError"
    assert receiver.take(collector) == [
        "one.attempts:2|c",
        "one.errors:1|c",
        "one.rejects:1|c",
        "one.fallbackSuccesses:1|c",
        "one.successes:1|c",
        "one.totalDuration:0|ms",
        "one.concurrencyInUse:100|ms",
        "one.totalDuration:0|ms",
        "one.runDuration:0|ms",
        "one.concurrencyInUse:100|ms",
        "one.circuitOpen:0|g",
    ]


@pytest.mark.parametrize(
    ("name", "prefix", "key"),
    [
        pytest.param("payments", "", "payments.", id="plain"),
        pytest.param("api/v1:users.get", "", "api-v1-users-get.", id="hystrix-go-replacements"),
        pytest.param("a b|c@d#e\nf=ü", "app", "app.a_b_c_d_e_f__.", id="line-protocol-characters"),
        pytest.param("x", "app.eu-1", "app.eu-1.x.", id="dotted-prefix"),
    ],
)
def test_command_names_are_sanitised_and_prefixed(
    make: Callable[..., StatsdCollector], receiver: Receiver, name: str, prefix: str, key: str
) -> None:
    """Names are sanitised as hystrix-go does ("/", ":", "." to "-"), anything else unsafe becomes "_", and the
    prefix leads."""
    caller(name)
    collector = make(prefix=prefix)
    assert collector.factory(name).key == key
    breaker.do(name, ok)
    assert f"{key}attempts:1|c" in receiver.take(collector)


def test_sampling_sends_the_seeded_fraction_with_the_rate_suffix(
    make: Callable[..., StatsdCollector], receiver: Receiver
) -> None:
    """At rate 0.25 each call is kept with that probability (a seeded draw per call); counters and timings carry
    |@0.25, the gauge does not."""
    caller("s")
    collector = make(sample_rate=0.25, rng=random.Random(7).random)
    for _ in range(400):
        breaker.do("s", ok)
    replay = random.Random(7)
    kept = sum(replay.random() < 0.25 for _ in range(400))
    assert 60 <= kept <= 140  # the seed's sample is a fair one
    lines = receiver.take(collector)
    assert lines[:2] == [f"s.attempts:{kept}|c|@0.25", f"s.successes:{kept}|c|@0.25"]
    timings = [line for line in lines if "|ms" in line]
    assert len(timings) == 3 * kept
    assert all(line.endswith("|ms|@0.25") for line in timings)
    assert lines[-1] == "s.circuitOpen:0|g"


# With the fake clock every duration is 0, so the lines are known: the first three take 73 bytes with separators.
FIRST_THREE = len(b"pack-me.attempts:200|c\npack-me.successes:200|c\npack-me.totalDuration:0|ms")


@pytest.mark.parametrize(
    "limit", [FIRST_THREE - 1, FIRST_THREE, 128, 1432], ids=["one-short", "exact-fit", "128-bytes", "default-1432"]
)
def test_datagrams_never_exceed_the_size_limit_and_are_packed_full(
    make: Callable[..., StatsdCollector], receiver: Receiver, clock: FakeClock, limit: int
) -> None:
    """Lines are joined with newlines into datagrams of at most the limit, each as full as the next line allows
    (a datagram may fill the limit exactly), and every line arrives whole."""
    caller("pack-me")
    collector = make(max_packet_size=limit)
    for _ in range(200):
        breaker.do("pack-me", ok)
    lines = receiver.take(collector)
    datagrams = receiver.datagrams
    assert len(datagrams) > 1
    assert all(len(datagram) <= limit for datagram in datagrams)
    for datagram, following in itertools.pairwise(datagrams):
        assert len(datagram) + 1 + len(following.split(b"\n")[0]) > limit  # the next line would not have fitted
    assert (len(datagrams[0]) == FIRST_THREE) is (limit == FIRST_THREE)
    assert len(lines) == 2 + 3 * 200 + 1 == collector.statistics().lines
    assert all(LINE.fullmatch(line) for line in lines)


def test_a_line_longer_than_a_datagram_is_dropped_and_counted(
    make: Callable[..., StatsdCollector], receiver: Receiver
) -> None:
    """A command whose lines cannot fit the limit loses them (counted as oversized); other commands still send."""
    long_name = "x" * 200
    caller(long_name)
    caller("short")
    collector = make(max_packet_size=128)
    breaker.do(long_name, ok)
    breaker.do("short", ok)
    lines = receiver.take(collector)
    assert collector.statistics().oversized == 6  # two counters, three timings, the gauge
    assert "short.attempts:1|c" in lines
    assert not [line for line in lines if line.startswith("x")]


def test_circuit_open_gauge_follows_the_circuit(
    make: Callable[..., StatsdCollector], receiver: Receiver, clock: FakeClock
) -> None:
    """circuitOpen is sent when first seen, turns 1 when the circuit opens and 0 once the probe closes it; an idle
    flush with no change sends nothing."""
    caller("g", request_volume_threshold=2, sleep_window=5.0)
    collector = make()
    breaker.get_circuit("g")
    assert receiver.take(collector) == ["g.circuitOpen:0|g"]
    assert receiver.take(collector) == []
    for _ in range(2):
        breaker.do("g", lambda: int("x"), fallback=lambda error: 0)
    assert breaker.get_circuit("g")[0].is_open()
    assert receiver.take(collector)[-1] == "g.circuitOpen:1|g"
    assert receiver.take(collector) == []
    clock.advance(5.0)
    assert breaker.do("g", ok) == "ok"  # the probe
    assert receiver.take(collector)[-1] == "g.circuitOpen:0|g"
    breaker.configure_command("g", CommandConfig(isolation="caller", force_open=True))
    assert receiver.take(collector) == ["g.circuitOpen:1|g"]


# -- robustness ---------------------------------------------------------------------------------------------------


def test_an_unreachable_port_never_raises_and_sending_resumes_when_it_listens() -> None:
    """Sends to a port where nothing listens are counted (ICMP refusals surface as send errors), calls never see
    them, and the same collector delivers once a server listens there."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    caller("u")
    with StatsdCollector("127.0.0.1", port, flush_interval=LONG) as collector:
        breaker.register_collector(collector.factory)
        for _ in range(50):
            assert breaker.do("u", ok) == "ok"
            collector.send_now()
            if collector.statistics().send_errors:
                break
        stats = collector.statistics()
        assert stats.send_errors >= 1
        server = Receiver(port)
        try:
            breaker.do("u", ok)
            collector.send_now()
            assert collector.statistics().packets == stats.packets + 1
            assert "u.attempts:1|c" in server.expect(collector, already=stats.packets)
        finally:
            server.close()


def test_an_unresolvable_host_is_counted_and_retried(
    monkeypatch: pytest.MonkeyPatch, make: Callable[..., StatsdCollector], receiver: Receiver
) -> None:
    """When the host cannot be resolved, the datagrams are counted as send errors and the next flush tries again."""
    real = socket.getaddrinfo

    def unresolvable(*args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    caller("h")
    collector = make()
    monkeypatch.setattr(socket, "getaddrinfo", unresolvable)
    breaker.do("h", ok)
    collector.send_now()
    assert collector.statistics().send_errors == 1
    assert collector.statistics().packets == 0
    monkeypatch.setattr(socket, "getaddrinfo", real)
    breaker.do("h", ok)
    assert "h.attempts:1|c" in receiver.take(collector)


def test_a_full_buffer_drops_the_oldest_calls_and_counts_them(
    make: Callable[..., StatsdCollector], receiver: Receiver
) -> None:
    """With room for 5 calls, 3 older calls are dropped (and counted) to keep the 5 newest."""
    caller("old")
    caller("new")
    collector = make(max_buffered=5)
    for _ in range(3):
        breaker.do("old", ok)
    for _ in range(5):
        breaker.do("new", ok)
    stats = collector.statistics()
    assert (stats.buffered, stats.dropped) == (5, 3)
    lines = receiver.take(collector)
    assert "new.attempts:5|c" in lines
    assert [line for line in lines if line.startswith("old.")] == ["old.circuitOpen:0|g"]  # only the polled gauge
    assert collector.statistics().buffered == 0


def test_update_never_blocks_while_the_flusher_is_stalled(monkeypatch: pytest.MonkeyPatch, receiver: Receiver) -> None:
    """While the background thread is stuck in a send, calls go on at full speed into the bounded buffer."""
    caller("st")
    collector = StatsdCollector("127.0.0.1", receiver.port, flush_interval=0.01, max_buffered=50)
    breaker.register_collector(collector.factory)
    entered, release = threading.Event(), threading.Event()
    send = collector._send

    def stalled(packets: list[bytes], failures: list[BaseException]) -> None:
        entered.set()
        release.wait(WAIT)
        send(packets, failures)

    monkeypatch.setattr(collector, "_send", stalled)
    try:
        breaker.do("st", ok)
        assert entered.wait(WAIT)
        done = threading.Event()

        def calls() -> None:
            for _ in range(500):
                breaker.do("st", ok)
            done.set()

        worker = threading.Thread(target=calls)
        worker.start()
        assert done.wait(WAIT)
        worker.join(WAIT)
        stats = collector.statistics()
        assert (stats.buffered, stats.dropped) == (50, 450)
    finally:
        release.set()
        collector.close()
    lines = receiver.expect(collector)
    assert "st.attempts:1|c" in lines
    assert "st.attempts:50|c" in lines
    assert statsd_threads() == []


def test_close_stops_the_thread_sends_the_buffer_and_ignores_later_calls(receiver: Receiver) -> None:
    """Leaving the with block joins the thread (none is left) after sending what was buffered; calls made
    afterwards are ignored, and closing again is harmless."""
    caller("c")
    with StatsdCollector("127.0.0.1", receiver.port, flush_interval=LONG) as collector:
        breaker.register_collector(collector.factory)
        assert [thread.daemon for thread in statsd_threads()] == [True]
        breaker.do("c", ok)
    assert statsd_threads() == []
    assert "c.attempts:1|c" in receiver.expect(collector)
    sent = collector.statistics().packets
    breaker.do("c", ok)
    collector.send_now()
    collector.close()
    assert collector.closed
    assert (collector.statistics().buffered, collector.statistics().packets) == (0, sent)
    assert "closed>" in repr(collector)


def test_the_thread_flushes_every_interval(receiver: Receiver) -> None:
    """Without send_now, the background thread sends the buffered calls within its interval."""
    caller("t")
    with StatsdCollector("127.0.0.1", receiver.port, flush_interval=timedelta(milliseconds=20)) as collector:
        breaker.register_collector(collector.factory)
        breaker.do("t", ok)
        assert b"t.attempts:1|c" in receiver.sock.recv(65535)


def test_one_thread_and_socket_serve_every_command(make: Callable[..., StatsdCollector], receiver: Receiver) -> None:
    """Several commands share the collector's one thread; the factory makes a light object per command."""
    collector = make()
    for name in ("a", "b", "c"):
        caller(name)
        breaker.do(name, ok)
    assert len(statsd_threads()) == 1
    assert collector.statistics().commands == 3
    assert {line for line in receiver.take(collector) if line.endswith("attempts:1|c")} == {
        "a.attempts:1|c",
        "b.attempts:1|c",
        "c.attempts:1|c",
    }
    assert len(receiver.datagrams) == 1


def test_registry_flush_resets_the_command_but_sends_its_calls(
    make: Callable[..., StatsdCollector], receiver: Receiver
) -> None:
    """breaker.flush() calls reset(): the collector stops serving the dropped circuit's command object, while the
    calls it had buffered are still sent."""
    caller("r")
    collector = make()
    circuit = breaker.get_circuit("r")[0]  # kept alive, so only reset() can make the collector let go of it
    breaker.do("r", ok)
    assert collector.statistics().commands == 1
    breaker.flush()
    assert collector.statistics().commands == 0
    assert "r.attempts:1|c" in receiver.take(collector)
    assert breaker.get_circuit("r")[0] is not circuit  # the dropped circuit is no longer the name's


# -- configuration ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        pytest.param({"host": ""}, ValueError, "host must not be empty", id="empty-host"),
        pytest.param({"host": 1}, TypeError, "host must be a str", id="host-type"),
        pytest.param({"port": 0}, ValueError, "port must be at least 1 and at most 65535", id="port-0"),
        pytest.param({"port": "8125"}, TypeError, "port must be an int", id="port-type"),
        pytest.param({"prefix": "my app"}, ValueError, "prefix must be dot-separated", id="prefix-space"),
        pytest.param({"prefix": "app."}, ValueError, "trailing", id="prefix-trailing-dot"),
        pytest.param({"sample_rate": 0}, ValueError, r"sample_rate must be in \(0, 1\]", id="rate-0"),
        pytest.param({"sample_rate": 1.5}, ValueError, "sample_rate", id="rate-over-1"),
        pytest.param({"sample_rate": float("nan")}, ValueError, "sample_rate", id="rate-nan"),
        pytest.param({"sample_rate": True}, TypeError, "sample_rate must be a number", id="rate-bool"),
        pytest.param({"flush_interval": 0}, ValueError, "flush_interval must be a positive", id="interval-0"),
        pytest.param({"flush_interval": float("inf")}, ValueError, "finite", id="interval-inf"),
        pytest.param({"flush_interval": "1s"}, TypeError, "flush_interval must be seconds", id="interval-type"),
        pytest.param({"max_buffered": 0}, ValueError, "max_buffered must be at least 1", id="buffer-0"),
        pytest.param({"max_packet_size": 65508}, ValueError, "at most 65507", id="packet-too-big"),
        pytest.param({"max_packet_size": 10}, ValueError, "at least 64", id="packet-too-small"),
        pytest.param({"rng": 0.5}, TypeError, "rng must be callable", id="rng"),
    ],
)
def test_bad_arguments_are_refused_with_the_rule(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    """A bad argument raises TypeError or ValueError naming it and its rule, before any thread starts."""
    with pytest.raises(error, match=match):
        StatsdCollector(**kwargs)
    assert statsd_threads() == []


def test_repr_and_statistics_show_the_config_and_state(make: Callable[..., StatsdCollector]) -> None:
    """The repr shows address, prefix, rate and interval; statistics() is a frozen snapshot."""
    collector = make(prefix="app", sample_rate=0.5, flush_interval=2)
    text = repr(collector)
    assert text.startswith("<StatsdCollector 127.0.0.1:")
    assert "prefix='app' sample_rate=0.5 flush_interval=2.0 buffered=0 dropped=0 open>" in text
    assert repr(collector.factory("a.b")) == "<StatsdCommandCollector 'a.b' key='app.a-b.'>"
    assert collector.statistics() == StatsdStatistics(0, 0, 0, 0, 0, 0, 0)
    assert metric_name("a/b") == "a-b"
