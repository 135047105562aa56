"""Command names that are valid but hostile to a text format: every exporter carries each of them, and none can
break the output for the other commands or inject a metric of its own.

The names (quotes, backslashes, newlines, ``</script>``, HTML with an ``onerror``, ``{``, ``%``, emoji, NUL, line
separators, StatsD's ``:|@#``, Prometheus' own syntax, a 10,000-character name) are all made into live circuits of
one registry, with one call each, and then read back the way each consumer reads them: a Prometheus scrape parsed
by prometheus_client's parsers (text and OpenMetrics), the Hystrix stream split into server-sent events and parsed
as JSON, the StatsD datagrams a real UDP socket receives, and the dashboard page in real Chromium.
"""

from __future__ import annotations

import collections
import json
import re
import socket
from collections.abc import Iterator

import prometheus_client
import pytest
from playwright.sync_api import Dialog, Page, expect
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families

import breaker
import breaker.dashboard
import breaker.prometheus
from breaker import CommandConfig
from breaker.statsd import StatsdCollector, metric_name
from breaker.stream import render

pytest_plugins = ["browser_support"]

WAIT = 5.0  # the bound on every wait for something that should happen promptly
LONG = "x" * 10_000
NAMES = [
    "plain",
    'double"quote',
    "single'quote",
    "back\\slash",
    "trailing\\",
    "new\nline",
    "carriage\rreturn",
    "tab\there",
    "\u2028line\u2029separators",
    "nul\x00byte",
    "</script><script>alert(1)</script>",
    '<img src=x onerror="window.pwned = 1">',
    "{",
    "}{",
    "%s%d%n%%",
    "emoji 🔥💥",
    "日本語",
    "\ufeffbom",
    " ",
    "statsd:1|c",
    "other.attempts:999|c\nevil.metric:1|c",
    "a|b@0.5#tag:x",
    "dots.in.name",
    "/slashes/",
    'breaker_state{name="plain",state="open"} 1',
    'label="x",other="y"',
    LONG,
]


@pytest.fixture
def circuits() -> list[str]:
    """A live circuit for every name, each with one successful call (caller isolation)."""
    breaker.configure_defaults(CommandConfig(isolation="caller"))
    for name in NAMES:
        assert breaker.do(name, lambda: "ok") == "ok"
    assert [c.name for c in breaker.circuits()] == NAMES
    return NAMES


# -- Prometheus -----------------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("circuits")
def test_prometheus_text_scrape_carries_every_name() -> None:
    """The text exposition parses back whole: every name is a label value, exactly, with its own counts."""
    registry = prometheus_client.CollectorRegistry()
    breaker.prometheus.register(registry)
    text = prometheus_client.generate_latest(registry).decode("utf-8")
    families = {family.name: family for family in text_string_to_metric_families(text)}
    states = [s for s in families["breaker_state"].samples if s.labels["state"] == "closed"]
    assert [s.labels["name"] for s in states] == NAMES
    assert all(s.value == 1.0 for s in states)
    successes = {s.labels["name"]: s.value for s in families["breaker_calls"].samples if s.labels["event"] == "success"}
    assert successes == dict.fromkeys(NAMES, 1.0)
    assert len(families) == 6  # no name made a family of its own


@pytest.mark.usefixtures("circuits")
def test_prometheus_openmetrics_scrape_carries_every_name() -> None:
    """The OpenMetrics exposition parses back whole too, with every name exactly."""
    registry = prometheus_client.CollectorRegistry()
    breaker.prometheus.register(registry)
    text = generate_openmetrics(registry).decode("utf-8")  # type: ignore[no-untyped-call]
    families = {family.name: family for family in parse_openmetrics(text)}  # type: ignore[no-untyped-call]
    calls = families["breaker_calls"].samples
    successes = {s.labels["name"]: s.value for s in calls if s.labels.get("event") == "success"}
    assert successes == dict.fromkeys(NAMES, 1.0)


# -- the Hystrix stream ---------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("circuits")
def test_stream_sends_one_valid_json_event_per_message_for_every_name() -> None:
    """Each message is one `data:` line of ASCII JSON (no raw line break can end an event early) naming its circuit."""
    body = render(breaker.circuits(), 0)
    assert body.isascii()
    events = body.split(b"\n\n")
    assert events[-2:] == [b"ping: ", b""]
    messages = []
    for event in events[:-2]:
        assert event.startswith(b"data: ")
        assert not re.search(rb"[\r\n]", event), "a raw line break would end the event early"
        messages.append(json.loads(event.removeprefix(b"data: ")))
    assert [(m["type"], m["name"]) for m in messages] == [
        (kind, name) for name in NAMES for kind in ("HystrixCommand", "HystrixThreadPool")
    ]
    assert all(m["rollingCountSuccess"] == 1 for m in messages if m["type"] == "HystrixCommand")


# -- StatsD ---------------------------------------------------------------------------------------------------------

STATSD_LINE = re.compile(r"app\.([A-Za-z0-9_\-]+)\.([A-Za-z]+):(\d+(?:\.\d+)?)\|(c|ms|g)")


@pytest.fixture
def udp() -> Iterator[socket.socket]:
    """A UDP socket on 127.0.0.1 standing in for the StatsD server."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(WAIT)
    yield sock
    sock.close()


def test_statsd_names_cannot_inject_a_metric(udp: socket.socket) -> None:
    """Every line is one well-formed metric under a sanitised name; each name's calls arrive under its own key,
    and the name too long for a datagram loses only its own lines (counted)."""
    with StatsdCollector("127.0.0.1", udp.getsockname()[1], prefix="app", flush_interval=3600.0) as collector:
        breaker.register_collector(collector.factory)
        breaker.configure_defaults(CommandConfig(isolation="caller"))
        for name in NAMES:
            breaker.do(name, lambda: "ok")
        collector.send_now()
        statistics = collector.statistics()
        lines = []
        for _ in range(statistics.packets):
            lines.extend(udp.recv(65535).decode("ascii").split("\n"))
    assert statistics.oversized == 6  # the long name's two counters, three timings and gauge
    matched = [STATSD_LINE.fullmatch(line) for line in lines]
    assert all(matched), [line for line, match in zip(lines, matched, strict=True) if not match]
    attempts = collections.Counter({m[1]: int(m[3]) for m in matched if m is not None and m[2] == "attempts"})
    expected = collections.Counter(metric_name(name) for name in NAMES if name != LONG)
    assert attempts == expected  # names that sanitise alike share a key; no name adds one of its own
    assert {m[2] for m in matched if m is not None} == {
        "attempts",
        "successes",
        "totalDuration",
        "runDuration",
        "concurrencyInUse",
        "circuitOpen",
    }


# -- the dashboard --------------------------------------------------------------------------------------------------


def test_dashboard_shows_every_name_as_text(circuits: list[str], page: Page) -> None:
    """In real Chromium, each name is one card showing it as text: no markup is parsed, no script runs."""
    dialogs: list[str] = []

    def dismiss(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", dismiss)
    with breaker.dashboard.serve("127.0.0.1", 0, block=False, interval=0.1) as server:
        page.goto(server.url.removesuffix("hystrix.stream"))
        expect(page.locator(".card")).to_have_count(len(circuits), timeout=WAIT * 1000)
        shown = page.locator(".card .name").evaluate_all("(names) => names.map((n) => n.textContent)")
        assert sorted(shown) == sorted(circuits)
        assert page.evaluate("() => window.pwned === undefined && document.querySelector('.card img') === null")
    assert dialogs == []
