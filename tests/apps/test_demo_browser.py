"""The dashboard in real headless Chromium: live during the demo's outage, and on another service's plain stream."""

from __future__ import annotations

import http.server
import io
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from breaker._demo import DemoOptions, DemoResult, run_demo
from breaker._demo.load import LoadOptions

pytest_plugins = ["browser_support"]

RECORDED = Path(__file__).resolve().parents[1] / "support" / "data" / "hystrix-plain.stream"


class Output(io.StringIO):
    """The demo's output, watched for the dashboard's URL from another thread."""

    def __init__(self) -> None:
        super().__init__()
        self.url = ""
        self.ready = threading.Event()
        # Guards the buffer: the demo writes on its thread while the test reads on its own.
        self.lock = threading.Lock()

    def write(self, text: str) -> int:
        with self.lock:
            if match := re.search(r"dashboard: (http://127\.0\.0\.1:\d+/)", text):
                self.url = match[1]
                self.ready.set()
            return super().write(text)

    def text(self) -> str:
        with self.lock:
            return self.getvalue()


@pytest.mark.timeout(90)
def test_dashboard_follows_the_demo_outage(page: Page, tmp_path: Path) -> None:
    """The inventory card appears closed, turns open during the demo's outage, and closed after recovery."""
    options = DemoOptions(
        load=LoadOptions(concurrency=4, rate=40, duration=12.0),
        outage_start=3.0,
        outage_duration=3.0,
        timeout=0.1,
        sleep_window=1.0,
        rolling_window=1.0,
        error_rate=0.0,
        port=0,
        live=False,
        seed=1,
    )
    out = Output()
    results: list[DemoResult] = []
    demo = threading.Thread(target=lambda: results.append(run_demo(out, options)))
    demo.start()
    try:
        assert out.ready.wait(20), out.text()
        page.goto(out.url)
        card = page.locator('article.card[data-name="inventory"]')
        expect(card).to_have_attribute("data-state", "closed", timeout=5_000)
        expect(page.locator('article.card[data-name="pricing"]')).to_be_visible()
        page.screenshot(path=str(tmp_path / "1-closed.png"), full_page=True)

        expect(card).to_have_attribute("data-state", "open", timeout=10_000)
        expect(card.locator(".state")).to_have_text(re.compile("open", re.IGNORECASE))
        page.screenshot(path=str(tmp_path / "2-open.png"), full_page=True)
        # The snapshot that shows the trip may come before any call was refused (the count is then 0, rightly): the
        # count must become positive while the outage lasts, as the next snapshots arrive.
        expect(card.locator('[data-count="short-circuited"]')).to_have_text(re.compile(r"^[1-9][\d,]*$"), timeout=5_000)

        expect(card).to_have_attribute("data-state", "closed", timeout=15_000)
        page.screenshot(path=str(tmp_path / "3-recovered.png"), full_page=True)
    finally:
        demo.join(60)
    assert not demo.is_alive()
    changes = [(name, old.value, new.value) for _, name, old, new in results[0].changes]
    assert ("inventory", "closed", "open") in changes
    assert changes[-1] == ("inventory", "half_open", "closed")
    for name in ("1-closed.png", "2-open.png", "3-recovered.png"):
        assert (tmp_path / name).stat().st_size > 1000


class RecordedStream(http.server.BaseHTTPRequestHandler):
    """Another service's Hystrix stream: plays the recorded file, then holds the connection until told to stop."""

    stop: threading.Event

    def do_GET(self) -> None:
        if self.path != "/hystrix.stream":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream;charset=UTF-8")
        self.send_header("Cache-Control", "no-cache, no-store, max-age=0, must-revalidate")
        self.end_headers()
        self.wfile.write(RECORDED.read_bytes())
        self.wfile.flush()
        while not self.stop.wait(0.5):
            self.wfile.write(b":ping\n\n")  # Java Hystrix's keep-alive
            self.wfile.flush()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def recorded_stream() -> Iterator[str]:
    stop = threading.Event()
    handler = type("Handler", (RecordedStream,), {"stop": stop})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hystrix.stream"
    finally:
        stop.set()
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.timeout(60)
def test_dashboard_command_renders_another_services_plain_stream(
    page: Page, recorded_stream: str, tmp_path: Path
) -> None:
    """`python -m breaker dashboard --proxy --stream URL` shows another service's plain Hystrix stream, relayed."""
    with subprocess.Popen(
        [sys.executable, "-m", "breaker", "dashboard", "--port", "0", "--proxy", "--stream", recorded_stream],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    ) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            match = re.search(r"dashboard: (http://127\.0\.0\.1:\d+/)", line)
            assert match, line
            page.goto(match[1])
            cards = page.locator("article.card")
            expect(cards.first).to_be_visible(timeout=10_000)
            names = set(cards.evaluate_all("cards => cards.map(card => card.dataset.name)"))
            recorded_names = set(re.findall(r'"type":\s*"HystrixCommand",\s*"name":\s*"([^"]+)"', RECORDED.read_text()))
            assert recorded_names
            expect(cards).to_have_count(len(recorded_names))
            names = set(cards.evaluate_all("cards => cards.map(card => card.dataset.name)"))
            assert names == recorded_names
            assert any(state == "open" for state in cards.evaluate_all("cs => cs.map(c => c.dataset.state)"))
            page.screenshot(path=str(tmp_path / "recorded.png"), full_page=True)
        finally:
            process.send_signal(signal.SIGINT)
            assert process.wait(10) == 0
