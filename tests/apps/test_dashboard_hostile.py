"""The dashboard against hostile web pages, and under its own Content-Security-Policy, in real headless Chromium.

A hostile page, served by a server of its own on 127.0.0.1 (another port: same site, another origin), tries what
any page open in the browser of someone running ``python -m breaker dashboard`` could: make the browser ask the
dashboard's proxy for a local service's ``/admin/drop-all`` (an ``<img>``, ``no-cors`` fetches), read the page
that holds the proxy's token, and frame the dashboard. A `Victim` service counts what reaches it: nothing may.

The real page (served by `breaker.dashboard.serve`) then renders cards from its own stream, through its proxy,
and from a stream of another origin that allows it (CORS), with no Content-Security-Policy violation; and the
policy stops it reading a stream it does not name.
"""

from __future__ import annotations

import http.server
import json
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from playwright.sync_api import Page, expect

import breaker
import breaker.dashboard
import breaker.stream
from breaker.stream import StreamServer

if TYPE_CHECKING:  # imported as plugins, below: importing them here first would keep pytest from rewriting them
    from browser_support import PageRecord
    from victim_support import Victim

pytest_plugins = ["browser_support", "victim_support"]

WAIT_MS = 10_000  # the bound on any wait in the browser for something that should take milliseconds
#: Collects the page's Content-Security-Policy violations in ``window.violations`` (run before the page's own script).
RECORD_VIOLATIONS = """
window.violations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.violations.push(`${event.effectiveDirective} ${event.blockedURI}`);
});
"""
#: What the hostile page does, once it knows the dashboard's and the victim's addresses (``window.targets``).
HOSTILE_SCRIPT = """
const { dashboard, victim } = window.targets;
const relay = (extra) => `${dashboard}/proxy.stream?${extra}origin=${encodeURIComponent(victim)}`;
const results = {};
const settle = (name, value) => {
  results[name] = value;
  if (Object.keys(results).length === 6) document.body.dataset.results = JSON.stringify(results);
};
const image = new Image();
image.onload = () => settle("img", "loaded");
image.onerror = () => settle("img", "error");
image.src = relay("");
fetch(relay(""), { mode: "no-cors" }).then(() => settle("fetch", "opaque"), () => settle("fetch", "failed"));
fetch(relay("token=guessed&"), { mode: "no-cors" }).then(
  () => settle("fetch-guessed-token", "opaque"),
  () => settle("fetch-guessed-token", "failed"),
);
fetch(relay(""), { mode: "cors" }).then(
  (response) => settle("fetch-cors", `read ${response.status}`),
  () => settle("fetch-cors", "blocked"),
);
fetch(`${dashboard}/`, { mode: "cors" }).then(
  (response) => response.text().then((text) => settle("read-page", `read ${text.length}`)),
  () => settle("read-page", "blocked"),
);
const frame = document.createElement("iframe");
frame.onload = () => settle("frame", "loaded");
frame.src = `${dashboard}/`;
document.body.append(frame);
"""


class HostileSite:
    """A server of its own on 127.0.0.1: serves the hostile page at ``/`` (no policy: it runs inline script)."""

    def __init__(self, dashboard: str, victim: str) -> None:
        targets = json.dumps({"dashboard": dashboard, "victim": victim})
        head = '<!doctype html><title>hostile</title><link rel="icon" href="data:,">'
        body = f"{head}<body><script>window.targets = {targets};{HOSTILE_SCRIPT}</script>"

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                data = body.encode() if self.path == "/" else b""
                self.send_response(200 if data else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), name="hostile-site")
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def servers() -> Iterator[Callable[[StreamServer], StreamServer]]:
    """Closes the stream and dashboard servers a test hands it (request it before ``page``: the page goes first)."""
    started: list[StreamServer] = []

    def keep(server: StreamServer) -> StreamServer:
        started.append(server)
        return server

    yield keep
    for server in reversed(started):
        server.close()


def origin_of(server: StreamServer) -> str:
    return f"http://127.0.0.1:{server.port}"


@pytest.mark.parametrize("victim_allowed", [False, True], ids=["victim-not-allowed", "victim-allowed"])
def test_a_hostile_page_cannot_make_the_proxy_reach_a_local_service(
    victim_allowed: bool,
    servers: Callable[[StreamServer], StreamServer],
    victims: Callable[..., Victim],
    page: Page,
    page_record: PageRecord,
) -> None:
    """<img>, no-cors and cors fetches of the proxy from another origin: 403, the victim gets nothing (even when the
    proxy may relay it: only the dashboard's own page holds the token), the page is unreadable and unframeable."""
    page_record.allow_console_error(r"status of 403|blocked by CORS policy|frame-ancestors|X-Frame-Options|ERR_FAILED")
    victim = victims()
    target = victim.url("/admin/drop-all?confirm=yes")
    board = servers(
        breaker.dashboard.serve(
            "127.0.0.1", 0, block=False, proxy=True, allowed_upstreams=[target] if victim_allowed else []
        )
    )
    hostile = HostileSite(origin_of(board), target)
    try:
        page.goto(hostile.url)
        expect(page.locator("body[data-results]")).to_have_count(1, timeout=WAIT_MS)
        results = json.loads(page.locator("body").get_attribute("data-results") or "{}")
    finally:
        hostile.close()
    assert results == {
        "img": "error",  # 403, and not an image
        "fetch": "opaque",
        "fetch-guessed-token": "opaque",
        "fetch-cors": "blocked",
        "read-page": "blocked",  # no CORS header: the token in the page stays unread
        "frame": "loaded",  # the browser's error page, not the dashboard: see below
    }
    proxied = [url for url in page_record.requests if url.startswith(f"{origin_of(board)}/proxy.stream")]
    assert len(proxied) >= 4, page_record.requests  # the browser did send them; each was answered before it settled
    assert victim.requested() == []
    (frame,) = page.main_frame.child_frames
    assert frame.evaluate("() => document.querySelector('meta[name=breaker-config]') === null")


def test_the_page_renders_its_own_stream_under_its_policy(
    servers: Callable[[StreamServer], StreamServer], page: Page
) -> None:
    """The dashboard's page, served with its Content-Security-Policy, shows its stream's cards: no violation."""
    breaker.get_circuit("local.svc")
    board = servers(breaker.dashboard.serve("127.0.0.1", 0, block=False, interval=0.05))
    page.add_init_script(RECORD_VIOLATIONS)
    response = page.goto(f"{origin_of(board)}/")
    assert response is not None
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "connect-src 'self';" in policy
    assert response.headers["x-frame-options"] == "DENY"
    card = page.locator('.card[data-name="local.svc"]')
    expect(card).to_have_attribute("data-source", "hystrix.stream", timeout=WAIT_MS)
    expect(card.locator(".state")).to_have_text("closed")
    expect(page.locator("#status")).to_have_attribute("data-status", "live")
    assert page.evaluate("window.violations") == []


def test_the_page_renders_a_stream_relayed_by_its_proxy_under_its_policy(
    servers: Callable[[StreamServer], StreamServer], page: Page, page_record: PageRecord
) -> None:
    """With the proxy on, another origin's stream is read through proxy.stream with the page's token: no violation."""
    breaker.get_circuit("remote.svc")
    upstream = servers(breaker.stream.serve("127.0.0.1", 0, block=False, interval=0.05))
    board = servers(breaker.dashboard.serve("127.0.0.1", 0, block=False, proxy=True, streams=[upstream.url]))
    page.add_init_script(RECORD_VIOLATIONS)
    page.goto(f"{origin_of(board)}/")
    card = page.locator('.card[data-name="remote.svc"]')
    expect(card).to_have_attribute("data-source", upstream.url, timeout=WAIT_MS)
    relayed = [path for path in page_record.requested_paths() if path.startswith("/proxy.stream?token=")]
    assert relayed, page_record.requested_paths()
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(relayed[0]).query)["origin"] == [upstream.url]
    assert not any(url.startswith(upstream.url) for url in page_record.requests)  # never read directly
    assert page.evaluate("window.violations") == []


def test_the_page_reads_a_stream_of_another_origin_that_allows_it_under_its_policy(
    servers: Callable[[StreamServer], StreamServer], page: Page, page_record: PageRecord
) -> None:
    """Proxy off: a stream named at start, whose server sends CORS headers, is read directly; no violation."""
    breaker.get_circuit("cors.svc")
    upstream = servers(breaker.stream.serve("127.0.0.1", 0, block=False, interval=0.05, cors_origins=["*"]))
    board = servers(breaker.dashboard.serve("127.0.0.1", 0, block=False, streams=[upstream.url]))
    page.add_init_script(RECORD_VIOLATIONS)
    response = page.goto(f"{origin_of(board)}/")
    assert response is not None
    assert f"connect-src 'self' {origin_of(upstream)};" in response.headers["content-security-policy"]
    expect(page.locator('.card[data-name="cors.svc"]')).to_have_attribute("data-source", upstream.url, timeout=WAIT_MS)
    assert upstream.url in page_record.requests
    assert page.evaluate("window.violations") == []


def test_the_policy_stops_the_page_reading_a_stream_it_does_not_name(
    servers: Callable[[StreamServer], StreamServer], victims: Callable[..., Victim], page: Page, page_record: PageRecord
) -> None:
    """?stream=<another origin>, proxy off: the browser refuses the connection (connect-src); nothing is sent."""
    page_record.allow_console_error(r"Refused to connect|Content Security Policy")
    other = victims(200, (("Content-Type", "text/event-stream"), ("Access-Control-Allow-Origin", "*")))
    board = servers(breaker.dashboard.serve("127.0.0.1", 0, block=False))
    page.add_init_script(RECORD_VIOLATIONS)
    stream = other.url("/hystrix.stream")
    page.goto(f"{origin_of(board)}/?stream=" + urllib.parse.quote(stream, safe=""))
    page.wait_for_function("window.violations.length > 0", timeout=WAIT_MS)
    assert page.evaluate("window.violations") == [f"connect-src {stream}"]
    expect(page.locator("#status")).to_have_attribute("data-status", "error")
    assert other.requested() == []
