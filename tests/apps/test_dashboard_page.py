"""The live dashboard page (breaker/dashboard/static), in real headless Chromium, fed by a real HTTP server.

A stdlib `ThreadingHTTPServer` on 127.0.0.1 serves the page under ``/app/`` (so only relative references work),
with ``__BREAKER_CONFIG__`` replaced as the real server does (or left raw), and these server-sent event streams:

- ``hystrix.stream``: tests/data/hystrix-plain.stream, hand-written in Java Hystrix 1.5's wire format, one
  interval every `PAUSE` seconds, then keep-alive comments only (so its cards go stale);
- ``breaker.stream``: breaker's own format (a half-open circuit with abandoned runs) and one malformed message;
- ``live.stream``: one breaker-style message every `PAUSE` seconds, for as long as the page listens;
- ``slow.stream``: the plain stream, after a one-second silence;
- ``proxy.stream``: stands in for the server's proxy: records its ``origin`` parameter, answers the plain stream;
- ``down.stream``: HTTP 503.

Final figures of the plain fixture (its last interval), which the assertions use:

- ChargeCard: open (it opened in the second interval), 4.2/s, 85% / 50%, run p99 900 ms, tickets 0 / ∞ (INT_MAX);
- GetUser: closed, 10.0/s (100 requests, 10 s window), 7% / 50%, run p99 120 ms, tickets 2 / 10;
- SearchIndex: Turbine's aggregate of 3 hosts, open (one host of three), 30.0/s, 20% / 50% (a threshold map),
  run p99 250 ms, tickets 5 / 30;
- SendEmail: forced open, 0.0/s, 0% / 50%, run p99 0 ms, tickets 0 / 20.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import html
import http.server
import json
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pytest
from playwright.sync_api import Locator, Page, expect

import breaker
import breaker.dashboard
from breaker.testing import FakeClock

if TYPE_CHECKING:  # imported as a plugin, below: importing it here first would keep pytest from rewriting its asserts
    from browser_support import PageRecord

pytest_plugins = ["browser_support"]

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "breaker" / "dashboard" / "static"
PLAIN_STREAM = Path(__file__).resolve().parents[1] / "support" / "data" / "hystrix-plain.stream"
PREFIX = "/app/"
PAUSE = 0.1  # seconds between two intervals of a stream
PLAIN_NAMES = ["ChargeCard", "GetUser", "SearchIndex", "SendEmail"]
STATIC_TYPES = {".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8", ".js": "text/javascript"}


def plain_intervals() -> list[bytes]:
    """The plain fixture cut after each keep-alive: one chunk per interval, as Java Hystrix writes them."""
    intervals, current = [], []
    for block in PLAIN_STREAM.read_text(encoding="utf-8").split("\n\n"):
        if not block:
            continue
        current.append(block + "\n\n")
        if block.startswith((":ping", "ping:")):
            intervals.append("".join(current).encode())
            current = []
    assert not current, "the fixture ends with a keep-alive"
    return intervals


def plain_messages() -> list[dict[str, Any]]:
    """Every message of the plain fixture, in order."""
    return [
        json.loads(line.removeprefix("data: "))
        for line in PLAIN_STREAM.read_text(encoding="utf-8").splitlines()
        if line.startswith("data: ")
    ]


def breaker_command(name: str, **fields: Any) -> dict[str, Any]:
    """A HystrixCommand message as breaker sends it: a standard one plus circuitState and the abandoned count."""
    base = next(m for m in plain_messages() if m["name"] == "GetUser")
    extras = {"circuitState": "closed", "rollingCountCancelled": 0, "currentAbandonedCount": 0}
    return {**base, "name": name, "group": name, "threadPool": name, **extras, **fields}


def event(message: dict[str, Any]) -> bytes:
    """One unnamed server-sent event carrying ``message``."""
    return b"data: " + json.dumps(message, separators=(",", ":")).encode() + b"\n\n"


BREAKER_STREAM = [
    event(
        breaker_command(
            "Inventory",
            circuitState="half_open",
            isCircuitBreakerOpen=True,
            currentAbandonedCount=2,
            rollingCountCancelled=1,
            currentConcurrentExecutionCount=3,
            propertyValue_executionIsolationSemaphoreMaxConcurrentRequests=10,
        )
    )
    + b"data: {not json\n\n"
    + event(
        {
            "type": "HystrixThreadPool",
            "name": "Inventory",
            "currentActiveCount": 3,
            "currentMaximumPoolSize": 10,
            "currentQueueSize": 0,
            "rollingCountThreadsExecuted": 12,
            "rollingCountCommandRejections": 1,
            "reportingHosts": 1,
        }
    )
    + b"ping: \n\n"
]
LIVE_STREAM = [event(breaker_command("Heartbeat")) + b"ping: \n\n"]


class Site:
    """A test server on 127.0.0.1 (port 0): the page under ``/app/`` and the streams; stopped by `close`."""

    def __init__(self) -> None:
        self.config: str | None = json.dumps({"streams": ["hystrix.stream"], "proxy": None})
        self.proxied: list[str] = []  # the origin= parameter of every proxy.stream request
        self.csp: str | None = None  # a Content-Security-Policy header for the page
        self.stopped = threading.Event()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self.thread = threading.Thread(
            target=self.server.serve_forever, args=(0.05,), name="dashboard-site", daemon=True
        )
        self.thread.start()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def url(self) -> str:
        """The page's URL."""
        return self.origin + PREFIX

    def configure(self, config: dict[str, Any] | None) -> None:
        """Inject ``config`` as JSON into the page (None: serve the page raw)."""
        self.config = None if config is None else json.dumps(config)

    def close(self) -> None:
        self.stopped.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def _handler_for(site: Site) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(_Handler):
        pass

    Handler.site = site
    return Handler


class _Handler(http.server.BaseHTTPRequestHandler):
    site: ClassVar[Site]

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        if not url.path.startswith(PREFIX):
            self.send_error(404)
            return
        name = url.path.removeprefix(PREFIX) or "dashboard.html"
        streams: dict[str, Callable[[], None]] = {
            "hystrix.stream": lambda: self.send_stream(plain_intervals()),
            "breaker.stream": lambda: self.send_stream(BREAKER_STREAM),
            "fleet.stream": lambda: self.send_stream(FLEET_STREAM),
            "live.stream": lambda: self.send_stream(LIVE_STREAM, repeat=True),
            "slow.stream": lambda: self.send_stream(plain_intervals(), delay=1.0),
            "proxy.stream": lambda: self.send_proxy(url.query),
        }
        if name in streams:
            streams[name]()
        elif name == "down.stream":
            self.send_error(503)
        elif (STATIC / name).suffix in STATIC_TYPES and (STATIC / name).is_file() and "/" not in name:
            self.send_static(name)
        else:
            self.send_error(404)

    def send_static(self, name: str) -> None:
        body = (STATIC / name).read_bytes()
        if name == "dashboard.html" and self.site.config is not None:
            body = body.replace(b"__BREAKER_CONFIG__", html.escape(self.site.config, quote=True).encode())
        self.send_response(200)
        self.send_header("Content-Type", STATIC_TYPES[(STATIC / name).suffix])
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        if self.site.csp is not None:
            self.send_header("Content-Security-Policy", self.site.csp)
        self.end_headers()
        self.wfile.write(body)

    def send_proxy(self, query: str) -> None:
        self.site.proxied.extend(urllib.parse.parse_qs(query).get("origin", []))
        self.send_stream(plain_intervals())

    def send_stream(self, intervals: list[bytes], *, repeat: bool = False, delay: float = 0.0) -> None:
        """The intervals as server-sent events, PAUSE apart (over and over if ``repeat``), then only keep-alives."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream;charset=UTF-8")
        self.send_header("Cache-Control", "no-cache, no-store, max-age=0, must-revalidate")
        self.send_header("Access-Control-Allow-Origin", "*")
        self.end_headers()
        stopped = self.site.stopped
        try:
            self.wfile.write(b":\n\n")  # the headers and a first byte now: the browser sees the stream open
            if stopped.wait(delay):
                return
            while True:
                for chunk in intervals:
                    self.wfile.write(chunk)
                    if stopped.wait(PAUSE):
                        return
                if not repeat:
                    break
            while not stopped.wait(PAUSE):
                self.wfile.write(b":ping\n\n")
        except (BrokenPipeError, ConnectionResetError):
            return  # the page went away


@pytest.fixture
def sites() -> Iterator[Callable[[], Site]]:
    """Starts test servers on demand; stops them all after the test."""
    started: list[Site] = []

    def start() -> Site:
        started.append(Site())
        return started[-1]

    yield start
    for site in started:
        site.close()


@pytest.fixture
def site(sites: Callable[[], Site]) -> Site:
    """The test server (request it before ``page``, so the page closes before the server stops)."""
    return sites()


def card(page: Page, name: str) -> Locator:
    """The card of the circuit ``name``."""
    return page.locator(f'.card[data-name="{name}"]')


def open_plain(site: Site, page: Page, query: str = "") -> None:
    """Open the page on the plain stream and wait until its last interval is shown."""
    page.goto(site.url + query)
    expect(page.locator(".card")).to_have_count(4)
    expect(card(page, "GetUser").locator('[data-count="success"]')).to_have_text("93")
    expect(card(page, "SearchIndex").locator('[data-count="short-circuited"]')).to_have_text("40")


def test_cards_appear_for_every_command(site: Site, page: Page, page_record: PageRecord, tmp_path: Path) -> None:
    """Every HystrixCommand of the stream gets one card, with its name, group and pool; the status turns live."""
    page.goto(site.url)
    for name in PLAIN_NAMES:
        expect(card(page, name)).to_have_count(1)
        expect(card(page, name).locator(".name")).to_have_text(name)
        expect(card(page, name)).to_have_attribute("data-source", "hystrix.stream")
    expect(page.locator(".card")).to_have_count(4)
    expect(page.locator("#status")).to_have_attribute("data-status", "live")
    expect(page.locator("#status")).to_have_text("live")
    expect(page.locator("#empty")).to_be_hidden()
    expect(card(page, "GetUser").locator(".group")).to_have_text("group UserService")
    expect(card(page, "GetUser").locator(".pool-name")).to_have_text("pool UserService (thread)")
    expect(card(page, "GetUser").locator(".pool")).to_have_text(
        "pool UserService: 2 active of 10, 0 queued, 97 run, 0 rejected"
    )
    expect(card(page, "SearchIndex").locator(".hosts")).to_have_text("3 hosts")
    expect(card(page, "GetUser").locator(".hosts")).to_be_hidden()
    expect(page.locator("#summary")).to_have_text("4 circuits · 3 open")
    expect(page.locator("#cards > .card .name")).to_have_text(["ChargeCard", "SearchIndex", "SendEmail", "GetUser"])
    assert "/app/dashboard.css" in page_record.requested_paths()
    assert "/app/dashboard.js" in page_record.requested_paths()
    page.screenshot(path=tmp_path / "dashboard-light.png", full_page=True)
    page.emulate_media(color_scheme="dark")
    page.screenshot(path=tmp_path / "dashboard-dark.png", full_page=True)


def test_page_runs_under_a_strict_content_security_policy(site: Site, page: Page) -> None:
    """No inline script, style or handler, no eval, nothing from elsewhere: a strict CSP blocks nothing."""
    site.csp = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src data:"
    open_plain(site, page)  # a blocked resource or script would be a console error, failing the test
    expect(card(page, "ChargeCard").locator(".state")).to_have_text("open")
    # The bar's width is set through the CSSOM, which the policy allows: the fill settles at 85% of the track.
    page.wait_for_function(
        """() => {
            const bar = document.querySelector('.card[data-name="ChargeCard"] .error-bar');
            const ratio = bar.firstElementChild.getBoundingClientRect().width / bar.getBoundingClientRect().width;
            return ratio > 0.84 && ratio < 0.86;
        }""",
        timeout=5000,
    )


def test_states_map_from_plain_and_turbine_messages(site: Site, page: Page) -> None:
    """data-state and the badge's text come from isCircuitBreakerOpen, ForceOpen and Turbine's maps; colours differ."""
    open_plain(site, page)
    expected = {
        "GetUser": ("closed", "closed"),
        "ChargeCard": ("open", "open"),
        "SendEmail": ("forced_open", "forced open"),
        "SearchIndex": ("open", "open"),  # {"true": 1, "false": 2}: one host open is open
    }
    for name, (state, label) in expected.items():
        expect(card(page, name)).to_have_attribute("data-state", state)
        expect(card(page, name).locator(".state")).to_have_text(label)

    def badge_rgb(name: str) -> list[int]:
        colour: str = card(page, name).locator(".state").evaluate("badge => getComputedStyle(badge).color")
        return [int(part) for part in colour.removeprefix("rgb(").removesuffix(")").split(",")[:3]]

    red, green, _ = badge_rgb("ChargeCard")
    assert red > 2 * green, "open is red"
    red, green, _ = badge_rgb("GetUser")
    assert green > 2 * red, "closed is green"
    assert badge_rgb("SendEmail") not in (badge_rgb("ChargeCard"), badge_rgb("GetUser"))


def test_rate_and_error_percentage_are_derived(site: Site, page: Page) -> None:
    """Rate is requestCount per second of the window; error % and the window are divided by reportingHosts."""
    open_plain(site, page)
    expect(card(page, "GetUser").locator(".rate")).to_have_text("10.0/s")  # 100 requests, 10 s window
    expect(card(page, "GetUser").locator(".error-pct")).to_have_text("7% / 50%")
    expect(card(page, "ChargeCard").locator(".rate")).to_have_text("4.2/s")
    expect(card(page, "ChargeCard").locator(".error-pct")).to_have_text("85% / 50%")
    expect(card(page, "ChargeCard").locator(".errors")).to_have_attribute("data-over", "true")
    expect(card(page, "GetUser").locator(".errors")).to_have_attribute("data-over", "false")
    # Turbine, 3 hosts: 300 requests over 30000 ms summed (10 s each); errorPercentage 60 -> 20%; threshold map.
    expect(card(page, "SearchIndex").locator(".rate")).to_have_text("30.0/s")
    expect(card(page, "SearchIndex").locator(".error-pct")).to_have_text("20% / 50%")
    expect(card(page, "SendEmail").locator(".rate")).to_have_text("0.0/s")
    fill = card(page, "ChargeCard").locator(".error-fill").evaluate("fill => fill.style.width")
    marker = card(page, "ChargeCard").locator(".error-threshold").evaluate("marker => marker.style.left")
    assert (fill, marker) == ("85%", "50%")


def test_counts_and_latency_are_shown(site: Site, page: Page) -> None:
    """Each event count and latency figure lands in its data-count / data-latency element; missing counts are 0."""
    open_plain(site, page)
    get_user = card(page, "GetUser")
    counts = {
        "success": "93",
        "failure": "4",
        "timeout": "3",
        "short-circuited": "0",
        "rejected": "0",
        "bad-request": "1",
        "fallback-success": "6",
        "fallback-failure": "1",
        "fallback-missing": "0",
    }
    for key, text in counts.items():
        expect(get_user.locator(f'[data-count="{key}"]')).to_have_text(text)
    expect(card(page, "ChargeCard").locator('[data-count="short-circuited"]')).to_have_text("58")
    expect(card(page, "ChargeCard").locator('[data-count="fallback-missing"]')).to_have_text("4")
    expect(card(page, "ChargeCard").locator('[data-count="fallback-missing"]')).to_be_visible()
    search = card(page, "SearchIndex")  # pre-1.4 hosts: no rollingCountBadRequests, no FallbackMissing
    expect(search.locator('[data-count="rejected"]')).to_have_text("10")
    expect(search.locator('[data-count="bad-request"]')).to_have_text("0")
    expect(search.locator('[data-count="fallback-missing"]')).to_be_hidden()
    expect(get_user.locator('[data-count="cancelled"]')).to_be_hidden()
    latency = {
        "execute-mean": "15",
        "execute-50": "9",
        "execute-90": "35",
        "execute-99": "120",
        "execute-99.5": "180",
        "execute-100": "310",
        "total-mean": "16",
        "total-99": "123",
    }
    for key, text in latency.items():
        expect(get_user.locator(f'[data-latency="{key}"]')).to_have_text(text)
    expect(search.locator('[data-latency="execute-mean"]')).to_have_text("30")  # 90 summed over 3 hosts
    expect(search.locator('[data-latency="execute-99"]')).to_have_text("250")  # percentiles as sent
    expect(search.locator('[data-latency="total-mean"]')).to_have_text("31")


def test_tickets_and_abandoned_on_a_plain_stream(site: Site, page: Page) -> None:
    """Tickets read "in use / limit" with INT_MAX as ∞; a plain stream's abandoned count is "—"."""
    open_plain(site, page)
    expect(card(page, "GetUser").locator(".tickets")).to_have_text("2 / 10")
    expect(card(page, "ChargeCard").locator(".tickets")).to_have_text("0 / ∞")
    expect(card(page, "SearchIndex").locator(".tickets")).to_have_text("5 / 30")
    for name in PLAIN_NAMES:
        expect(card(page, name).locator(".abandoned")).to_have_text("—")


def test_breaker_extras_half_open_and_abandoned(site: Site, page: Page) -> None:
    """breaker's circuitState wins (half-open), abandoned runs and cancellations show; bad JSON is counted."""
    page.goto(site.url + "?stream=breaker.stream")
    inventory = card(page, "Inventory")
    expect(inventory).to_have_attribute("data-state", "half_open")
    expect(inventory.locator(".state")).to_have_text("half-open")
    expect(inventory.locator(".abandoned")).to_have_text("2")
    expect(inventory.locator(".tickets")).to_have_text("3 / 10")
    expect(inventory.locator('[data-count="cancelled"]')).to_have_text("1")
    expect(inventory.locator(".pool")).to_have_text("pool Inventory: 3 active of 10, 0 queued, 12 run, 1 rejected")
    expect(page.locator("#dropped")).to_have_text("1 malformed message ignored")
    expect(page.locator(".card")).to_have_count(1)


#: Fleet mode: one circuit shared through Redis (open fleet-wide), one the fleet opened (its window cleared by the
#: trip, the figures that tripped it sent beside), one whose process lost Redis.
FLEET_STREAM = [
    event(
        breaker_command(
            "Payments",
            circuitState="open",
            fleetState="open",
            fleetRequestCount=1234,
            fleetErrorCount=700,
            fleetErrorPercentage=57,
            fleetGeneration=3,
            fleetConnected=True,
            fleetProbing=True,
        )
    )
    + event(
        breaker_command(
            "Orders",
            circuitState="open",
            fleetState="open",
            fleetRequestCount=0,
            fleetErrorCount=0,
            fleetErrorPercentage=0,
            fleetGeneration=1,
            fleetConnected=True,
            fleetProbing=False,
            fleetTripRequestCount=100,
            fleetTripErrorCount=60,
            fleetTripErrorPercentage=60,
        )
    )
    + event(
        breaker_command(
            "Ledger",
            fleetState="closed",
            fleetRequestCount=0,
            fleetErrorCount=0,
            fleetErrorPercentage=0,
            fleetGeneration=8,
            fleetConnected=False,
            fleetProbing=False,
        )
    )
    + event(breaker_command("Local"))
]


def test_fleet_figures_show_beside_the_local_ones(site: Site, page: Page) -> None:
    """A fleet-mode circuit's card shows the fleet's state, requests, errors and link; a local one shows none."""
    page.goto(site.url + "?stream=fleet.stream")
    payments = card(page, "Payments").locator(".fleet")
    expect(payments).to_have_text("fleet: open · 1,234 req · 57% errors · gen 3 · probing for the fleet")
    expect(payments).to_have_attribute("data-state", "open")
    orders = card(page, "Orders").locator(".fleet")
    expect(orders).to_have_text("fleet: open · tripped at 100 req · 60% errors · gen 1 · synced")
    ledger = card(page, "Ledger").locator(".fleet")
    expect(ledger).to_have_text("fleet: closed · 0 req · 0% errors · gen 8 · Redis unreachable: local")
    expect(ledger).to_have_attribute("data-connected", "false")
    expect(card(page, "Local")).to_be_visible()
    expect(card(page, "Local").locator(".fleet")).to_be_hidden()


def test_sparkline_draws_rate_and_error(site: Site, page: Page) -> None:
    """The sparkline has one point per message on each line: error % on a 0-100 scale, rate scaled to its max."""
    open_plain(site, page)

    def points(name: str, line: str) -> list[tuple[float, float]]:
        text = card(page, name).locator(f"svg.spark polyline.{line}").get_attribute("points") or ""
        return [(float(x), float(y)) for x, y in (pair.split(",") for pair in text.split())]

    rate, error = points("ChargeCard", "spark-rate"), points("ChargeCard", "spark-error")
    assert len(rate) == len(error) == 3
    assert all(0 <= x <= 100 and 0 <= y <= 30 for x, y in rate + error)
    assert [x for x, _ in rate] == sorted(x for x, _ in rate)
    assert error[0][1] > error[1][1] > error[2][1], "error % rose: 48, 80, 85 (y grows downwards)"
    assert min(y for _, y in rate) == rate[0][1], "the highest rate (50 requests) is the top of the scale"
    assert error[2][1] > min(y for _, y in rate), "85% is below the top of the 0-100 scale"


def test_filter_hides_non_matching_cards(site: Site, page: Page) -> None:
    """The filter keeps the cards whose name contains the text, ignoring case, and is kept in the URL."""
    open_plain(site, page)
    page.locator("#filter").fill("USER")
    expect(card(page, "GetUser")).to_be_visible()
    for name in ("ChargeCard", "SearchIndex", "SendEmail"):
        expect(card(page, name)).to_be_hidden()
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(page.url).query)["filter"] == ["USER"]
    page.locator("#filter").fill("zzz")
    expect(page.locator(".card:not([hidden])")).to_have_count(0)
    expect(page.locator("#empty")).to_be_visible()
    page.locator("#filter").fill("")
    expect(page.locator(".card:not([hidden])")).to_have_count(4)
    page.goto(site.url + "?filter=send")
    expect(card(page, "SendEmail")).to_be_visible()
    expect(page.locator("#filter")).to_have_value("send")
    expect(page.locator(".card:not([hidden])")).to_have_count(1)


def test_sort_orders_cards(site: Site, page: Page) -> None:
    """Sorting by state (the default, kept in order as states change), name, error %, rate and latency."""
    open_plain(site, page)
    names = page.locator("#cards > .card .name")
    expect(page.locator("#sort")).to_have_value("state")
    # ChargeCard arrives closed and opens later: the state order follows it.
    expect(names).to_have_text(["ChargeCard", "SearchIndex", "SendEmail", "GetUser"])
    orders = {
        "name": ["ChargeCard", "GetUser", "SearchIndex", "SendEmail"],
        "error": ["ChargeCard", "SearchIndex", "GetUser", "SendEmail"],
        "rate": ["SearchIndex", "GetUser", "ChargeCard", "SendEmail"],
        "latency": ["ChargeCard", "SearchIndex", "GetUser", "SendEmail"],
        "state": ["ChargeCard", "SearchIndex", "SendEmail", "GetUser"],
    }
    for key, order in orders.items():
        page.locator("#sort").select_option(key)
        expect(names).to_have_text(order)
    page.goto(site.url + "?sort=rate")
    expect(page.locator("#sort")).to_have_value("rate")
    expect(names).to_have_text(orders["rate"])


def test_cards_go_stale_when_their_source_stops(site: Site, page: Page) -> None:
    """With ?stale=1, the cards of a stream that stopped sending are marked stale; a live stream's card is not."""
    page.goto(site.url + "?stream=hystrix.stream&stream=live.stream&stale=1")
    expect(page.locator(".card")).to_have_count(5)
    for name in PLAIN_NAMES:
        expect(card(page, name)).to_have_attribute("data-stale", "true")
        expect(card(page, name).locator(".stale-note")).to_be_visible()
    expect(card(page, "Heartbeat")).to_have_attribute("data-stale", "false")
    expect(card(page, "Heartbeat")).to_have_attribute("data-source", "live.stream")
    expect(card(page, "Heartbeat").locator(".stale-note")).to_be_hidden()
    expect(card(page, "Heartbeat").locator(".source")).to_have_text("live.stream")  # shown with several streams
    opacity = card(page, "GetUser").evaluate("c => getComputedStyle(c).opacity")
    assert float(opacity) < 1, "a stale card is dimmed"


def test_watch_form_switches_streams(site: Site, page: Page, page_record: PageRecord) -> None:
    """The watch form replaces the stream: old cards go, the URL gets ?stream=, the new stream's cards come."""
    open_plain(site, page)
    expect(page.locator("#stream-url")).to_have_value("hystrix.stream")
    page.locator("#stream-url").fill("breaker.stream")
    page.locator("#watch").click()
    expect(page.locator(".card")).to_have_count(1)
    expect(card(page, "Inventory")).to_have_attribute("data-source", "breaker.stream")
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(page.url).query)["stream"] == ["breaker.stream"]
    assert "/app/breaker.stream" in page_record.requested_paths()


def test_status_is_connecting_until_a_message_arrives(site: Site, page: Page) -> None:
    """#status says connecting while the stream is silent, live once a message has arrived."""
    page.goto(site.url + "?stream=slow.stream")
    expect(page.locator("#status")).to_have_attribute("data-status", "connecting")
    expect(page.locator("#empty")).to_have_text("Waiting for data from slow.stream…")
    expect(page.locator("#status")).to_have_attribute("data-status", "live", timeout=5000)
    expect(page.locator(".card")).to_have_count(4)


def test_status_shows_an_error_when_the_stream_fails(site: Site, page: Page, page_record: PageRecord) -> None:
    """A stream answering HTTP 503 puts #status in error."""
    page_record.allow_console_error(r"503|EventSource")
    page.goto(site.url + "?stream=down.stream")
    expect(page.locator("#status")).to_have_attribute("data-status", "error")
    expect(page.locator(".card")).to_have_count(0)


def test_raw_config_falls_back_to_defaults(site: Site, page: Page, page_record: PageRecord) -> None:
    """Served raw (__BREAKER_CONFIG__ is not JSON), the page watches hystrix.stream next to it."""
    site.configure(None)
    page.goto(site.url)
    expect(page.locator('meta[name="breaker-config"]')).to_have_attribute("content", "__BREAKER_CONFIG__")
    expect(page.locator(".card")).to_have_count(4)
    expect(card(page, "GetUser")).to_have_attribute("data-source", "hystrix.stream")
    assert "/app/hystrix.stream" in page_record.requested_paths()


def test_config_streams_are_honoured(site: Site, page: Page, page_record: PageRecord) -> None:
    """The config's streams (attribute-escaped JSON) are watched instead of hystrix.stream."""
    source = 'breaker.stream?tag=a&quote="q"'
    site.configure({"streams": [source], "proxy": None})
    page.goto(site.url)
    expect(card(page, "Inventory")).to_have_attribute("data-source", source)
    expect(page.locator(".card")).to_have_count(1)
    assert not any(path.startswith("/app/hystrix.stream") for path in page_record.requested_paths())


def test_query_streams_override_config(site: Site, page: Page, page_record: PageRecord) -> None:
    """?stream= in the page URL wins over the config's streams."""
    site.configure({"streams": ["breaker.stream"], "proxy": None})
    open_plain(site, page, "?stream=hystrix.stream")
    assert not any(path.startswith("/app/breaker.stream") for path in page_record.requested_paths())


def test_cross_origin_stream_goes_through_the_proxy(
    sites: Callable[[], Site], page: Page, page_record: PageRecord
) -> None:
    """A stream of another origin is requested as proxy.stream?origin=<the URL> when the config names a proxy."""
    site, other = sites(), sites()
    site.configure({"streams": ["hystrix.stream"], "proxy": "proxy.stream"})
    remote = other.url + "hystrix.stream"
    page.goto(site.url + "?stream=" + urllib.parse.quote(remote, safe=""))
    expect(page.locator(".card")).to_have_count(4)
    expect(card(page, "GetUser")).to_have_attribute("data-source", remote)
    assert site.proxied == [remote]
    assert f"/app/proxy.stream?origin={urllib.parse.quote(remote, safe='')}" in page_record.requested_paths()
    assert not any(url.startswith(other.origin) for url in page_record.requests)


def test_cross_origin_stream_without_proxy_is_opened_directly(
    sites: Callable[[], Site], page: Page, page_record: PageRecord
) -> None:
    """Without a proxy, a stream of another origin is opened directly (it answers with CORS headers)."""
    site, other = sites(), sites()
    remote = other.url + "breaker.stream"
    page.goto(site.url + "?stream=" + urllib.parse.quote(remote, safe=""))
    expect(card(page, "Inventory")).to_have_attribute("data-source", remote)
    assert remote in page_record.requests
    assert site.proxied == other.proxied == []


# -- breaker's own server, with real circuits --------------------------------------------------------------------


def test_cards_of_real_circuits_show_the_slow_count_its_rule_and_how_the_calls_ran(
    page: Page, clock: FakeClock
) -> None:
    """Served by `breaker.dashboard.serve` (its CSP included): an async-only command with a slow-call rule shows
    its slow count, the rule and "asyncio"; a thread command with sync and async callers shows "thread+asyncio",
    a slow count of 0 and no slow rule."""
    breaker.configure_command(
        "Quotes",
        breaker.CommandConfig(slow_call_duration=0.25, slow_call_percent_threshold=60, timeout=10),
    )

    async def slow() -> str:
        clock.advance(0.3)
        return "ok"

    async def fast() -> str:
        return "ok"

    async def calls() -> None:
        for run in (slow, slow, fast):
            assert await breaker.do_async("Quotes", run) == "ok"
        assert await breaker.do_async("Ledger", fast) == "ok"

    with concurrent.futures.ThreadPoolExecutor(1) as executor:  # Playwright runs an event loop on this thread
        executor.submit(asyncio.run, calls()).result(timeout=5)
    assert breaker.do("Ledger", lambda: "ok") == "ok"
    with breaker.dashboard.serve("127.0.0.1", 0, block=False, interval=0.05) as server:
        page.goto(server.url.removesuffix("hystrix.stream"))
        quotes, ledger = card(page, "Quotes"), card(page, "Ledger")
        expect(quotes.locator(".pool-name")).to_have_text("pool Quotes (asyncio)", timeout=5000)
        expect(quotes.locator('[data-count="slow"]')).to_have_text("2")
        expect(quotes.locator('[data-count="slow"]')).to_be_visible()
        expect(quotes.locator('[data-count="success"]')).to_have_text("3")
        expect(quotes.locator(".slow-rule")).to_have_text("slow: run ≥ 250 ms · trips at 60%")
        expect(ledger.locator(".pool-name")).to_have_text("pool Ledger (thread+asyncio)")
        expect(ledger.locator('[data-count="slow"]')).to_have_text("0")
        expect(ledger.locator('[data-count="slow"]')).to_be_visible()
        expect(ledger.locator(".slow-rule")).to_be_hidden()
