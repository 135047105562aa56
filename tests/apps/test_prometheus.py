"""`breaker.prometheus`: every metric and label of a real scrape, and the Grafana dashboard in examples/.

Each test registers the collector on a fresh `prometheus_client.CollectorRegistry`, renders it with
``generate_latest`` (or serves it with prometheus_client's own HTTP exporter) and parses the text back, so what is
checked is what Prometheus would read. Circuits read a `FakeClock`; runs advance it, so durations are exact.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families

import breaker
import breaker.prometheus
from breaker import CircuitOpenError, CommandConfig, FallbackError, State
from breaker._registry import Registry
from breaker.prometheus import DEFAULT_BUCKETS, CircuitCollector
from breaker.testing import FakeClock

NAME = "payments"
WAIT = 5.0  # the bound on every wait for something that should happen promptly
DASHBOARD = Path(__file__).resolve().parents[2] / "examples" / "grafana-dashboard.json"
STATES = ("closed", "open", "half_open", "forced_open", "forced_closed")
EVENTS = (
    "success",
    "failure",
    "timeout",
    "short-circuit",
    "rejected",
    "bad-request",
    "fallback-success",
    "fallback-failure",
    "cancelled",
    "slow",
)
LES = ("0.005", "0.01", "0.025", "0.05", "0.075", "0.1", "0.25", "0.5", "0.75", "1.0", "2.5", "5.0", "7.5", "10.0")
FAMILIES = {
    "breaker_state": "gauge",
    "breaker_calls": "counter",
    "breaker_call_duration_seconds": "histogram",
    "breaker_concurrent_calls": "gauge",
    "breaker_abandoned_calls": "gauge",
    "breaker_error_percentage": "gauge",
}
#: Trips on two errors in a row (caller isolation, no timeout); probes after 5 s.
TRIP: dict[str, Any] = {
    "isolation": "caller",
    "request_volume_threshold": 2,
    "error_percent_threshold": 50,
    "sleep_window": 5.0,
    "timeout": math.inf,
}

Labels = tuple[tuple[str, str], ...]
Samples = dict[tuple[str, Labels], float]


class Boom(Exception):
    """The dependency's own failure."""


class BadInput(ValueError):
    """The caller's fault: configured as an ignored exception."""


def fail() -> str:
    """A run that fails."""
    raise Boom("down")


def ok() -> str:
    """A run that succeeds at once."""
    return "ok"


def fallback_fails(error: Exception) -> str:
    """A fallback that fails."""
    raise Boom("the fallback is down too") from error


def taking(clock: FakeClock, seconds: float, error: Exception | None = None) -> Callable[[], str]:
    """A run that takes exactly ``seconds`` on ``clock``, then returns (or raises ``error``)."""

    def run() -> str:
        clock.advance(seconds)
        if error is not None:
            raise error
        return "ok"

    return run


def parse(text: str) -> tuple[dict[str, prometheus_client.Metric], Samples]:
    """The families of an exposition by name, and every sample by (sample name, sorted labels)."""
    families = {family.name: family for family in text_string_to_metric_families(text)}
    samples: Samples = {}
    for family in families.values():
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            assert key not in samples, f"duplicate series {key}"
            samples[key] = sample.value
    return families, samples


def scrape(registry: prometheus_client.CollectorRegistry) -> Samples:
    """Every sample ``registry`` exposes now."""
    return parse(prometheus_client.generate_latest(registry).decode())[1]


def series(samples: Samples, sample: str, name: str = NAME, label: str | None = None) -> dict[str, float]:
    """The samples called ``sample`` of command ``name``, by the value of their other label ``label``."""
    found = {}
    for (sample_name, labels), value in samples.items():
        held = dict(labels)
        if sample_name == sample and held.pop("name") == name:
            key = "" if label is None else held.pop(label)
            assert not held, f"unexpected labels {held} on {sample_name}"
            found[key] = value
    return found


def value(samples: Samples, sample: str, name: str = NAME) -> float:
    """The one sample called ``sample`` of command ``name``."""
    found = series(samples, sample, name)
    assert list(found) == [""], f"{sample}{{name={name!r}}}: {found}"
    return found[""]


def states(samples: Samples, name: str = NAME) -> dict[str, float]:
    return series(samples, "breaker_state", name, "state")


def calls(samples: Samples, name: str = NAME) -> dict[str, float]:
    return series(samples, "breaker_calls_total", name, "event")


def buckets(samples: Samples, name: str = NAME) -> dict[str, float]:
    return series(samples, "breaker_call_duration_seconds_bucket", name, "le")


def one_hot(state: str) -> dict[str, float]:
    """``breaker_state`` of a circuit in ``state``: 1 for it, 0 for the other four."""
    return {s: float(s == state) for s in STATES}


def names(samples: Samples) -> set[str]:
    """The commands that have series in ``samples``."""
    return {dict(labels)["name"] for _, labels in samples}


def configure(**fields: Any) -> None:
    """Configure NAME with TRIP, overridden by ``fields``."""
    breaker.configure_command(NAME, CommandConfig(**{**TRIP, **fields}))


def stats() -> breaker.CircuitStatistics:
    return breaker.get_circuit(NAME)[0].statistics()


@pytest.fixture
def registry() -> prometheus_client.CollectorRegistry:
    """A fresh prometheus_client registry with the breaker collector on it."""
    registry = prometheus_client.CollectorRegistry()
    breaker.prometheus.register(registry)
    return registry


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """An event that held runs wait on; set at teardown so that none outlives its test."""
    event = threading.Event()
    yield event
    event.set()


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` until it holds; fail after WAIT seconds."""
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"still not true after {WAIT} s: {what}"
        time.sleep(0.002)


# -- the families and their series ----------------------------------------------------------------------------------


def test_families_have_the_contract_names_types_and_help(registry: prometheus_client.CollectorRegistry) -> None:
    """The exposition has exactly the six contract families, typed, with HELP that says the sum is estimated."""
    breaker.get_circuit(NAME)
    families, _ = parse(prometheus_client.generate_latest(registry).decode())
    assert {name: family.type for name, family in families.items()} == FAMILIES
    assert "estimated" in families["breaker_call_duration_seconds"].documentation
    assert all(family.documentation for family in families.values())


def test_a_new_circuit_exposes_every_series_at_zero(registry: prometheus_client.CollectorRegistry) -> None:
    """A circuit that saw no call: all five states (closed 1), ten event counters, 15 buckets and 3 gauges, exactly."""
    breaker.get_circuit(NAME)
    labels = (("name", NAME),)
    expected: Samples = {
        **{("breaker_state", (("name", NAME), ("state", s))): float(s == "closed") for s in STATES},
        **{("breaker_calls_total", (("event", e), ("name", NAME))): 0.0 for e in EVENTS},
        **{("breaker_call_duration_seconds_bucket", (("le", le), ("name", NAME))): 0.0 for le in (*LES, "+Inf")},
        ("breaker_call_duration_seconds_count", labels): 0.0,
        ("breaker_call_duration_seconds_sum", labels): 0.0,
        ("breaker_concurrent_calls", labels): 0.0,
        ("breaker_abandoned_calls", labels): 0.0,
        ("breaker_error_percentage", labels): 0.0,
    }
    assert scrape(registry) == expected


def test_circuits_appear_at_the_next_scrape_and_flushed_ones_disappear(
    registry: prometheus_client.CollectorRegistry,
) -> None:
    """Each scrape lists the current circuits: new ones appear, flush() drops them all, and counts restart at 0."""
    assert scrape(registry) == {}
    breaker.get_circuit("a")
    assert names(scrape(registry)) == {"a"}
    breaker.configure_command("b", CommandConfig(isolation="caller"))
    breaker.do("b", ok)
    samples = scrape(registry)
    assert names(samples) == {"a", "b"}
    assert calls(samples, "b")["success"] == 1
    breaker.flush()
    assert scrape(registry) == {}
    breaker.get_circuit("b")
    samples = scrape(registry)
    assert names(samples) == {"b"}
    assert calls(samples, "b")["success"] == 0


# -- breaker_state ----------------------------------------------------------------------------------------------------


def test_state_is_one_hot_through_every_transition(
    clock: FakeClock, registry: prometheus_client.CollectorRegistry
) -> None:
    """breaker_state is 1 for exactly the current state: closed, open, half_open (mid-probe), closed, forced ones."""
    configure()
    breaker.get_circuit(NAME)
    assert states(scrape(registry)) == one_hot("closed")
    for _ in range(2):
        breaker.do(NAME, fail, lambda e: "fallback")
    assert states(scrape(registry)) == one_hot("open")
    clock.advance(5.0)
    during_probe: list[dict[str, float]] = []

    def probe() -> str:
        during_probe.append(states(scrape(registry)))
        return "ok"

    assert breaker.do(NAME, probe) == "ok"
    assert during_probe == [one_hot("half_open")]
    assert states(scrape(registry)) == one_hot("closed")
    configure(force_open=True)
    assert states(scrape(registry)) == one_hot("forced_open")
    configure(force_closed=True)
    assert states(scrape(registry)) == one_hot("forced_closed")
    configure()
    assert states(scrape(registry)) == one_hot("closed")


def test_failed_probe_shows_open_again(clock: FakeClock, registry: prometheus_client.CollectorRegistry) -> None:
    """A probe that fails moves breaker_state from half_open back to open."""
    configure()
    for _ in range(2):
        breaker.do(NAME, fail, lambda e: "fallback")
    clock.advance(5.0)
    during_probe: list[dict[str, float]] = []

    def probe() -> str:
        during_probe.append(states(scrape(registry)))
        raise Boom("still down")

    assert breaker.do(NAME, probe, lambda e: "fallback") == "fallback"
    assert during_probe == [one_hot("half_open")]
    assert states(scrape(registry)) == one_hot("open")


# -- breaker_calls_total ------------------------------------------------------------------------------------------


def test_calls_total_counts_every_event_exactly(
    clock: FakeClock, registry: prometheus_client.CollectorRegistry
) -> None:
    """breaker_calls_total has one series per event, each the exact number of such calls."""
    configure(
        request_volume_threshold=1000,
        timeout=1.0,
        max_concurrent_requests=1,
        ignored_exceptions=(BadInput,),
        slow_call_duration=0.5,
    )
    for _ in range(3):
        breaker.do(NAME, ok)  # success x3
    assert breaker.do(NAME, taking(clock, 0.75)) == "ok"  # success, and slow
    for _ in range(2):
        breaker.do(NAME, fail, lambda e: "fallback")  # failure x2, fallback-success x2
    with pytest.raises(BadInput):
        breaker.do(NAME, taking(clock, 0.0, BadInput("no")))  # bad-request
    with pytest.raises(FallbackError):  # timeout (2 s of 1 s), fallback-failure
        breaker.do(NAME, taking(clock, 2.0), fallback_fails)
    # success (the outer call); the nested call finds no ticket: rejected, fallback-success
    assert breaker.do(NAME, lambda: breaker.do(NAME, ok, lambda e: type(e).__name__)) == "MaxConcurrencyError"

    async def cancel_one() -> None:
        started = asyncio.Event()

        async def hang() -> str:
            started.set()
            await asyncio.Event().wait()
            return "never"

        task = asyncio.create_task(breaker.do_async(NAME, hang))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_one())  # cancelled
    configure(force_open=True)
    for _ in range(2):
        with pytest.raises(CircuitOpenError):
            breaker.do(NAME, ok)  # short-circuit x2
    assert calls(scrape(registry)) == {
        "success": 5,
        "failure": 2,
        "timeout": 1,
        "short-circuit": 2,
        "rejected": 1,
        "bad-request": 1,
        "fallback-success": 3,
        "fallback-failure": 1,
        "cancelled": 1,
        "slow": 1,
    }


def test_calls_total_stays_monotonic_across_window_turnover_close_and_reconfiguration(
    clock: FakeClock, registry: prometheus_client.CollectorRegistry
) -> None:
    """Counters never drop when the window turns over, a probe closes the circuit or a reconfiguration re-buckets it."""
    configure(rolling_window=10.0, rolling_buckets=10)
    scrapes = []
    for _ in range(2):
        breaker.do(NAME, fail, lambda e: "fallback")
    assert stats().state is State.OPEN
    scrapes.append(calls(scrape(registry)))
    clock.advance(5.0)
    breaker.do(NAME, ok)  # the probe closes the circuit and clears the rolling window
    assert (stats().state, stats().counts["failure"], stats().counts["success"]) == (State.CLOSED, 0, 0)
    scrapes.append(calls(scrape(registry)))
    for _ in range(3):
        breaker.do(NAME, ok)
    clock.advance(30.0)  # every bucket of the window turns over
    assert stats().counts["success"] == 0
    scrapes.append(calls(scrape(registry)))
    breaker.do(NAME, ok)
    configure(rolling_window=20.0, rolling_buckets=4)  # re-bucketed
    scrapes.append(calls(scrape(registry)))
    zero = dict.fromkeys(EVENTS, 0.0)
    assert scrapes == [
        {**zero, "failure": 2, "fallback-success": 2},
        {**zero, "failure": 2, "fallback-success": 2, "success": 1},
        {**zero, "failure": 2, "fallback-success": 2, "success": 4},
        {**zero, "failure": 2, "fallback-success": 2, "success": 5},
    ]


# -- breaker_call_duration_seconds ----------------------------------------------------------------------------------

#: Run durations, exact in binary floating point from the fake clock's 1000.0: on a bucket bound (0.25, twice),
#: inside buckets, 0, and past the last bound (20 s: only +Inf).
DURATIONS = (0.0, 0.0078125, 0.0625, 0.25, 0.25, 3.0, 20.0)


def test_duration_histogram_counts_each_run_in_its_bucket_exactly(
    clock: FakeClock, registry: prometheus_client.CollectorRegistry
) -> None:
    """Run-duration buckets are exact and cumulative (bounds inclusive), +Inf = _count, _sum the snapshot's estimate."""
    configure(request_volume_threshold=1000)
    for seconds in DURATIONS:
        breaker.do(NAME, taking(clock, seconds))
    slow_fallback = taking(clock, 4.0)  # the call takes 4.5 s; its run, 0.5 s
    assert breaker.do(NAME, taking(clock, 0.5, Boom("down")), lambda e: slow_fallback()) == "ok"
    runs = (*DURATIONS, 0.5)
    configure(request_volume_threshold=1000, force_open=True)
    with pytest.raises(CircuitOpenError):
        breaker.do(NAME, ok)
    samples = scrape(registry)
    expected = {le: float(sum(d <= float(le) for d in runs)) for le in LES}
    assert buckets(samples) == {**expected, "+Inf": 8.0}
    assert (expected["0.005"], expected["0.25"], expected["0.5"], expected["10.0"]) == (1, 5, 6, 7)  # the data
    counts = list(buckets(samples).values())
    assert counts == sorted(counts)
    assert value(samples, "breaker_call_duration_seconds_count") == 8
    assert value(samples, "breaker_call_duration_seconds_sum") == stats().run_durations.sum
    assert value(samples, "breaker_call_duration_seconds_sum") == pytest.approx(sum(runs), rel=0.06)


@pytest.mark.parametrize("seconds", [0.005, 0.01], ids=["5ms", "10ms"])
def test_a_run_exactly_on_a_small_bound_counts_in_its_bucket(
    fresh_registry: Registry, registry: prometheus_client.CollectorRegistry, seconds: float
) -> None:
    """A run of exactly 5 ms (10 ms) counts in le="0.005" ("0.01"): le means at most, as for longer bounds."""
    clock = FakeClock(0.0)  # from 0.0 the run's duration is exactly ``seconds``
    fresh_registry.clock = clock
    configure()
    breaker.do(NAME, taking(clock, seconds))
    assert buckets(scrape(registry))[repr(seconds)] == 1


def test_custom_buckets_set_the_le_labels(registry: prometheus_client.CollectorRegistry, clock: FakeClock) -> None:
    """CircuitCollector(buckets=...) exposes exactly those bounds plus +Inf, with exact counts."""
    configure()
    for seconds in (0.03125, 0.25, 2.0):
        breaker.do(NAME, taking(clock, seconds))
    custom = prometheus_client.CollectorRegistry()
    breaker.prometheus.register(custom, buckets=[0.05, 1])
    assert buckets(scrape(custom)) == {"0.05": 1, "1.0": 2, "+Inf": 3}
    assert set(buckets(scrape(registry))) == {*LES, "+Inf"}


@pytest.mark.parametrize(
    ("bounds", "error", "message"),
    [
        pytest.param([0.0042], ValueError, "0.0042 is not one of them: use 0.0039 or 0.0043", id="not-a-bound"),
        pytest.param([0.1, math.inf], ValueError, "inf is not one of them", id="inf"),
        pytest.param([0.5, 0.1], ValueError, "strictly increasing", id="decreasing"),
        pytest.param([0.1, 0.1], ValueError, "strictly increasing", id="repeated"),
        pytest.param([], ValueError, "at least one bucket", id="empty"),
        pytest.param("0.1", TypeError, "sequence of seconds", id="string"),
        pytest.param([True], TypeError, "numbers of seconds", id="bool"),
    ],
)
def test_bad_buckets_are_refused_with_a_message(bounds: Any, error: type[Exception], message: str) -> None:
    """Buckets must be increasing bounds from breaker.BOUNDS; the error names the bad value and the fix."""
    with pytest.raises(error, match=re.escape(message)):
        CircuitCollector(buckets=bounds)


def test_default_buckets_are_prometheus_defaults_and_exact() -> None:
    """The default buckets are prometheus_client's, +Inf aside, and each is a bound of breaker's histogram."""
    assert (*DEFAULT_BUCKETS, math.inf) == prometheus_client.Histogram.DEFAULT_BUCKETS
    assert all(bound in breaker.BOUNDS for bound in DEFAULT_BUCKETS)


# -- gauges ---------------------------------------------------------------------------------------------------------


def test_concurrent_calls_counts_runs_in_progress(
    clock: FakeClock, registry: prometheus_client.CollectorRegistry
) -> None:
    """breaker_concurrent_calls is the tickets held: 1 inside a run, 2 inside a nested run, 0 after."""
    configure()
    seen: list[float] = []

    def inner() -> str:
        seen.append(value(scrape(registry), "breaker_concurrent_calls"))
        return "ok"

    def outer() -> str:
        seen.append(value(scrape(registry), "breaker_concurrent_calls"))
        return breaker.do(NAME, inner)

    breaker.do(NAME, outer)
    seen.append(value(scrape(registry), "breaker_concurrent_calls"))
    assert seen == [1, 2, 0]


@pytest.mark.parametrize(
    ("failures", "successes", "percentage"),
    [
        pytest.param(0, 3, 0, id="none"),
        pytest.param(1, 3, 25, id="quarter"),
        pytest.param(1, 2, 33, id="third-rounded-down"),
        pytest.param(1, 7, 13, id="half-rounded-up"),
        pytest.param(2, 1, 67, id="two-thirds"),
    ],
)
def test_error_percentage_is_the_circuits(
    registry: prometheus_client.CollectorRegistry, failures: int, successes: int, percentage: int
) -> None:
    """breaker_error_percentage is the rolling window's error percentage, rounded half up as the circuit does."""
    configure(request_volume_threshold=1000)
    for _ in range(successes):
        breaker.do(NAME, ok)
    for _ in range(failures):
        breaker.do(NAME, fail, lambda e: "fallback")
    assert value(scrape(registry), "breaker_error_percentage") == percentage == stats().error_percentage


def test_abandoned_calls_counts_timed_out_runs_still_running(
    registry: prometheus_client.CollectorRegistry, release: threading.Event
) -> None:
    """A timed-out thread run shows in abandoned_calls and concurrent_calls until it really returns."""
    breaker.configure_command(NAME, CommandConfig(isolation="thread", timeout=0.05))
    assert breaker.do(NAME, lambda: str(release.wait(WAIT)), lambda e: type(e).__name__) == "CommandTimeoutError"
    samples = scrape(registry)
    assert (value(samples, "breaker_abandoned_calls"), value(samples, "breaker_concurrent_calls")) == (1, 1)
    assert calls(samples)["timeout"] == 1
    release.set()
    wait_until(lambda: stats().active == 0, "the abandoned run returned its ticket")
    samples = scrape(registry)
    assert (value(samples, "breaker_abandoned_calls"), value(samples, "breaker_concurrent_calls")) == (0, 0)


# -- registration ---------------------------------------------------------------------------------------------------


def test_describe_names_the_families_without_samples() -> None:
    """describe() yields the six families with no samples, so the registry knows the names before any scrape."""
    described = list(CircuitCollector().describe())
    assert {family.name: family.type for family in described} == FAMILIES
    assert all(not family.samples for family in described)


def test_registering_twice_on_one_registry_is_refused() -> None:
    """A second collector on the same registry raises ValueError (duplicate series); unregister removes it."""
    registry = prometheus_client.CollectorRegistry()
    collector = breaker.prometheus.register(registry)
    with pytest.raises(ValueError, match="breaker_state"):
        breaker.prometheus.register(registry)
    breaker.get_circuit(NAME)
    assert names(scrape(registry)) == {NAME}
    registry.unregister(collector)
    assert scrape(registry) == {}


def test_register_defaults_to_the_global_registry() -> None:
    """register() with no registry puts the collector on prometheus_client.REGISTRY."""
    collector = breaker.prometheus.register()
    try:
        breaker.get_circuit(NAME)
        assert states(scrape(prometheus_client.REGISTRY)) == one_hot("closed")
    finally:
        prometheus_client.REGISTRY.unregister(collector)
    assert states(scrape(prometheus_client.REGISTRY)) == {}


def test_repr_shows_the_buckets() -> None:
    """The collector's repr shows its histogram bounds."""
    assert repr(CircuitCollector(buckets=(0.1, 1.0))) == "CircuitCollector(buckets=(0.1, 1.0))"


# -- scraping is a pure query ---------------------------------------------------------------------------------------


def http_get(port: int, path: str) -> tuple[int, str, str]:
    """GET ``path`` from 127.0.0.1:``port``: status, content type and body."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read().decode()
    finally:
        connection.close()


@contextlib.contextmanager
def http_exporter(registry: prometheus_client.CollectorRegistry) -> Iterator[int]:
    """prometheus_client's own HTTP exporter of ``registry`` on 127.0.0.1; yields its port, shuts it down."""
    server, thread = prometheus_client.start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(WAIT)
        assert not thread.is_alive()


def test_http_scrape_of_an_open_circuit_changes_nothing(
    clock: FakeClock, registry: prometheus_client.CollectorRegistry
) -> None:
    """HTTP scrapes show an open circuit past its sleep window as open and leave it so: the next call probes."""
    configure()
    for _ in range(2):
        breaker.do(NAME, fail, lambda e: "fallback")
    clock.advance(6.0)  # past the sleep window: the next call would probe
    circuit = breaker.get_circuit(NAME)[0]
    before = circuit.statistics()
    with http_exporter(registry) as port:
        for _ in range(3):
            status, content_type, body = http_get(port, "/metrics")
            assert (status, content_type.split(";")[0]) == (200, "text/plain")
            assert body == prometheus_client.generate_latest(registry).decode()
            samples = parse(body)[1]
            assert states(samples) == one_hot("open")
            assert calls(samples) == {**dict.fromkeys(EVENTS, 0.0), "failure": 2, "fallback-success": 2}
    after = circuit.statistics()
    assert circuit.state is State.OPEN
    assert (after.cumulative, after.counts, after.active) == (before.cumulative, before.counts, before.active)
    assert circuit.allow_request()  # the probe is still there to take
    ran: list[str] = []

    def probe() -> str:
        ran.append("probe")
        return "ok"

    assert breaker.do(NAME, probe) == "ok"
    assert (ran, circuit.state) == (["probe"], State.CLOSED)


def test_a_scrape_does_not_delay_a_trip(clock: FakeClock, registry: prometheus_client.CollectorRegistry) -> None:
    """A scrape between old successes leaving the window and the next success does not change when it trips."""
    configure(request_volume_threshold=5, rolling_window=10.0, rolling_buckets=10)
    for _ in range(10):
        breaker.do(NAME, ok)
    clock.advance(5.0)
    for _ in range(5):
        breaker.do(NAME, fail, lambda e: "fallback")  # 5 errors in 15 requests: 33%, closed
    clock.advance(5.5)  # the ten successes leave the window: 5 errors in 5 requests
    scrape(registry)
    breaker.do(NAME, ok)  # 5 in 6, 83%: without the scrape this success trips the circuit
    assert stats().state is State.OPEN


# -- the Grafana dashboard ------------------------------------------------------------------------------------------

#: PromQL words that look like metric names but are keywords (operators, modifiers, literals).
PROMQL_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2"}


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers that are not functions, aggregations, keywords,
    label names or template variables."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)  # string literals
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range and subquery durations
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)  # label lists
    found = set()
    for match in re.finditer(r"(?<![\w$.])[A-Za-z_:][\w:]*", expr):
        word = match.group()
        if expr[match.end() :].lstrip().startswith("(") or word.lower() in PROMQL_KEYWORDS:
            continue  # a function or an aggregation; or a keyword
        found.add(word)
    return found


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        pytest.param(
            'histogram_quantile(0.99, sum by (le, name) (rate(x_bucket{name=~"$name"}[$__rate_interval])))',
            {"x_bucket"},
            id="quantile",
        ),
        pytest.param(
            "sum(rate(a_total{b='c'}[5m] offset 1h)) by (job) / ignoring(x) b:rate5m", {"a_total", "b:rate5m"}
        ),
        pytest.param('count(s{state=~"open|half_open"} == bool 1) or vector(0)', {"s"}, id="keywords"),
        pytest.param("max by (name) (0 * s + ignoring (state) 1e3 * t)", {"s", "t"}, id="numbers"),
    ],
)
def test_promql_metric_names_finds_the_selectors(expr: str, expected: set[str]) -> None:
    """The dashboard test's PromQL reader finds exactly the metric names of an expression."""
    assert promql_metric_names(expr) == expected


def dashboard_expressions(dashboard: Any) -> list[str]:
    """Every ``expr`` in the dashboard, panels and rows at any depth."""
    found = []
    if isinstance(dashboard, dict):
        for key, item in dashboard.items():
            if key == "expr" and isinstance(item, str):
                found.append(item)
            else:
                found.extend(dashboard_expressions(item))
    elif isinstance(dashboard, list):
        for item in dashboard:
            found.extend(dashboard_expressions(item))
    return found


def test_grafana_dashboard_queries_only_metrics_the_exporter_emits(
    clock: FakeClock, registry: prometheus_client.CollectorRegistry
) -> None:
    """Every PromQL query of the Grafana dashboard selects only series a real scrape has, and all six are used."""
    configure()
    breaker.do(NAME, taking(clock, 0.0625))
    emitted = {name for name, _ in scrape(registry)}
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = dashboard_expressions(dashboard)
    assert len(expressions) >= 6
    used = set().union(*(promql_metric_names(expr) for expr in expressions))
    assert used <= emitted, f"the dashboard queries series the exporter does not emit: {used - emitted}"
    assert used >= {
        "breaker_state",
        "breaker_calls_total",
        "breaker_call_duration_seconds_bucket",
        "breaker_error_percentage",
        "breaker_concurrent_calls",
        "breaker_abandoned_calls",
    }
    assert any("histogram_quantile(0.5," in expr for expr in expressions)
    assert any("histogram_quantile(0.99," in expr for expr in expressions)
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    query = variables["name"]["query"]
    query = query["query"] if isinstance(query, dict) else query
    match = re.fullmatch(r"label_values\(\s*(\w+)\s*,\s*(\w+)\s*\)", query)
    assert match is not None
    assert match.groups() == ("breaker_state", "name")
    assert match.group(1) in emitted


def test_grafana_dashboard_is_importable() -> None:
    """The Grafana dashboard has schema 39, a datasource variable on every panel, unique ids and a grid."""
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["schemaVersion"] == 39
    assert dashboard["uid"]
    assert dashboard["title"]
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert (variables["name"]["type"], variables["name"]["multi"], variables["name"]["includeAll"]) == (
        "query",
        True,
        True,
    )
    panels = dashboard["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels)
    assert {panel["type"] for panel in panels} == {"stat", "state-timeline", "timeseries"}
    for panel in panels:
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"}
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"]
            assert 'name=~"$name"' in target["expr"]
