"""Real headless Chromium for browser tests: Debian's ``chromium`` driven by Playwright, with guards.

Playwright's own browser download is not used: the browser is the executable at ``$BREAKER_CHROMIUM``, or
``/usr/bin/chromium`` (Debian's ``chromium`` package; ``apt-get install chromium``). A missing browser is an error,
never a skip.

A test module gets the fixtures by naming this module as a plugin::

    pytest_plugins = ["browser_support"]

- ``browser``: one headless Chromium per test module (module-scoped, so Playwright's event loop lives only while
  that module's tests run).
- ``page``: a fresh page in its own browser context. The test fails (at teardown) on any console error or uncaught
  page error, and on any request to a host other than 127.0.0.1 (every request URL is recorded).
- ``page_record``: what that page did (`PageRecord`); a test that provokes a console error on purpose declares it
  with `PageRecord.allow_console_error` first.

Plain functions, for modules that manage the browser themselves: `chromium_path` and `launch_chromium`.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, sync_playwright

CHROMIUM_ENV = "BREAKER_CHROMIUM"
DEFAULT_CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
LOCAL_HOST = "127.0.0.1"
_LOCAL_SCHEMES = frozenset({"data", "about", "blob"})  # URLs that never reach the network


def chromium_path() -> str:
    """The Chromium executable to drive: ``$BREAKER_CHROMIUM`` or ``/usr/bin/chromium``.

    Raises:
        RuntimeError: There is no executable there.
    """
    path = os.environ.get(CHROMIUM_ENV) or DEFAULT_CHROMIUM
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise RuntimeError(
            f"no Chromium executable at {path!r}: the browser tests need Debian's `chromium` package "
            f"(`apt-get install chromium`, as .ci/run does), or ${CHROMIUM_ENV} set to a Chromium executable"
        )
    return path


def launch_chromium(playwright: Playwright) -> Browser:
    """Headless Chromium from `chromium_path`, with the flags that keep it off the network and quiet."""
    return playwright.chromium.launch(executable_path=chromium_path(), headless=True, args=list(CHROMIUM_ARGS))


def is_local(url: str) -> bool:
    """Whether a request for ``url`` stays on this machine (127.0.0.1, or a data:/about:/blob: URL)."""
    parts = urllib.parse.urlsplit(url)
    return parts.scheme in _LOCAL_SCHEMES or parts.hostname == LOCAL_HOST


@dataclass
class PageRecord:
    """What one page did: every request URL, its console errors and uncaught errors."""

    requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    allowed: list[re.Pattern[str]] = field(default_factory=list)

    def allow_console_error(self, pattern: str) -> None:
        """Let console errors matching the regular expression ``pattern`` (searched) pass."""
        self.allowed.append(re.compile(pattern))

    def unexpected_console_errors(self) -> list[str]:
        """The console errors no `allow_console_error` pattern matches."""
        return [text for text in self.console_errors if not any(p.search(text) for p in self.allowed)]

    def foreign_requests(self) -> list[str]:
        """The requests that left 127.0.0.1."""
        return [url for url in self.requests if not is_local(url)]

    def requested_paths(self) -> list[str]:
        """The path and query of every request to 127.0.0.1, in order (``/app/hystrix.stream``, ...)."""
        paths = []
        for url in self.requests:
            parts = urllib.parse.urlsplit(url)
            if parts.hostname == LOCAL_HOST:
                paths.append(parts.path + (f"?{parts.query}" if parts.query else ""))
        return paths


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the module's tests."""
    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page_record() -> PageRecord:
    """What the test's `page` did."""
    return PageRecord()


@pytest.fixture
def page(browser: Browser, page_record: PageRecord) -> Iterator[Page]:
    """A fresh page; fails the test on a console error, a page error or a request that leaves 127.0.0.1."""
    context = browser.new_context()
    context.on("request", lambda request: page_record.requests.append(request.url))
    new_page = context.new_page()

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            page_record.console_errors.append(f"{message.text} ({message.location.get('url', '')})")

    new_page.on("console", on_console)
    new_page.on("pageerror", lambda error: page_record.page_errors.append(f"{error.name}: {error.message}"))
    try:
        yield new_page
    finally:
        context.close()
    assert not page_record.page_errors, f"uncaught errors in the page: {page_record.page_errors}"
    assert not page_record.unexpected_console_errors(), f"console errors: {page_record.unexpected_console_errors()}"
    assert not page_record.foreign_requests(), f"requests that left {LOCAL_HOST}: {page_record.foreign_requests()}"
