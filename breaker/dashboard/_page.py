"""What one dashboard serves, whatever serves it: the page set to read its streams, the assets, their headers.

A `Setup` is made once per server or app from its options, which it checks: the streams the page reads (relative
URLs, or absolute http(s) ones), whether the proxy is on and which upstreams it may relay. It holds the `Proxy`
(with its token, which the page's config carries) and the page's Content-Security-Policy, which lets the page run
its own script and style only and connect to its own origin and, with the proxy off, to the origins of its
streams. Pure: no I/O but reading the packaged files once.
"""

from __future__ import annotations

import functools
import html
import importlib.resources
import json
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Final

from breaker.stream import SECURITY_HEADERS, STREAM_PATH

from ._proxy import Proxy, parse_stream_url

__all__ = ["ASSETS", "TEXT_HEADERS", "Setup", "asset", "check_token", "render", "stream_list"]

#: The page's files by path, relative to where the dashboard is mounted, with their content types.
ASSETS: Final[Mapping[str, tuple[str, str]]] = {
    "/": ("dashboard.html", "text/html; charset=utf-8"),
    "/dashboard.css": ("dashboard.css", "text/css; charset=utf-8"),
    "/dashboard.js": ("dashboard.js", "text/javascript; charset=utf-8"),
}
#: The headers of a short text answer (an error, a refusal).
TEXT_HEADERS: Final[tuple[tuple[str, str], ...]] = (("Content-Type", "text/plain; charset=utf-8"), *SECURITY_HEADERS)
_STREAM: Final = STREAM_PATH.lstrip("/")  # relative: the page may be mounted under a prefix
_CONFIG_SLOT: Final = b"__BREAKER_CONFIG__"
_TOKEN: Final = re.compile(r"[A-Za-z0-9_-]{16,}")
_PAGE_SECURITY: Final = tuple((k, v) for k, v in SECURITY_HEADERS if k != "Content-Security-Policy")


@functools.cache
def asset(name: str) -> bytes:
    """The packaged file ``static/<name>``, read once."""
    return importlib.resources.files(__package__).joinpath("static").joinpath(name).read_bytes()


def stream_list(streams: Sequence[str] | None) -> list[str]:
    """The streams a page reads, checked: relative URLs, or absolute http(s) ones; default the one next to it.

    Raises:
        TypeError: ``streams`` is not a sequence of non-empty strings.
        ValueError: A stream has a scheme or host but is not a well-formed absolute http(s) URL.
    """
    if streams is None:
        return [_STREAM]
    if isinstance(streams, str) or not isinstance(streams, Sequence):
        raise TypeError(f"streams must be a sequence of non-empty URL strings, got {streams!r}")
    if not all(isinstance(s, str) and s for s in streams):
        raise TypeError(f"streams must be a sequence of non-empty URL strings, got {streams!r}")
    for stream in streams:
        if _absolute(stream):
            try:
                parse_stream_url(stream)
            except ValueError as error:
                raise ValueError(
                    f"streams: {stream!r} cannot be read: {error} (a relative URL, like 'hystrix.stream', has no "
                    "':' before its first '/')"
                ) from None
    return list(streams) or [_STREAM]


def _absolute(stream: str) -> bool:
    """Whether the page would read ``stream`` from a host of its own (it names a scheme or a host)."""
    try:
        parts = urllib.parse.urlsplit(stream)
    except ValueError:
        return True  # an unclosed [IPv6 address: a host, malformed
    return bool(parts.scheme or parts.netloc)


def render(streams: list[str], proxy_path: str | None) -> bytes:
    """The page's HTML, its config (``<meta name="breaker-config">``) set to ``streams`` and the proxy's path."""
    config = json.dumps({"streams": streams, "proxy": proxy_path})
    return asset("dashboard.html").replace(_CONFIG_SLOT, html.escape(config, quote=True).encode())


def check_token(token: str | None, proxy: bool) -> str | None:
    """``token`` if it suits ``proxy``, or ValueError saying how it does not."""
    if not proxy:
        if token is not None:
            raise ValueError("proxy_token is the proxy's: give it with proxy=True only")
        return None
    if not isinstance(token, str) or _TOKEN.fullmatch(token) is None:
        raise ValueError(
            "page(proxy=True) needs proxy_token, the secret its proxy checks: 16 or more URL-safe characters "
            f"(got {type(token).__name__}); serve() and the apps make one themselves"
        )
    return token


class Setup:
    """What one dashboard serves: the streams its page reads, its proxy (or None), the page and its headers.

    Args:
        streams: See `breaker.dashboard.page`.
        proxy: Whether to relay other origins' streams.
        allowed_upstreams: Stream URLs the proxy may relay besides the absolute ``streams``.

    Raises:
        TypeError, ValueError: A bad option, named in the message.
    """

    def __init__(self, streams: Sequence[str] | None, proxy: bool, allowed_upstreams: Sequence[str]) -> None:
        self.streams = stream_list(streams)
        if isinstance(allowed_upstreams, str) or not isinstance(allowed_upstreams, Sequence):
            raise TypeError(f"allowed_upstreams must be a sequence of URL strings, got {allowed_upstreams!r}")
        if not all(isinstance(url, str) for url in allowed_upstreams):
            raise TypeError(f"allowed_upstreams must be a sequence of URL strings, got {allowed_upstreams!r}")
        if allowed_upstreams and not proxy:
            raise ValueError(f"allowed_upstreams={list(allowed_upstreams)!r} are for the proxy: give proxy=True too")
        named = [stream for stream in self.streams if _absolute(stream)]
        self.proxy = Proxy([*named, *allowed_upstreams]) if proxy else None
        # The page reads same-origin streams itself, and others through the proxy if there is one.
        direct = [] if proxy else sorted({parse_stream_url(stream).origin for stream in named})
        self.policy = "; ".join(
            [
                "default-src 'none'",
                "script-src 'self'",
                "style-src 'self'",
                "img-src 'self' data:",
                " ".join(["connect-src 'self'", *direct]),
                "base-uri 'none'",
                "form-action 'self'",
                "frame-ancestors 'none'",
            ]
        )

    def __repr__(self) -> str:
        return f"<dashboard streams={self.streams} proxy={self.proxy!r}>"

    def response(self, path: str) -> tuple[bytes, list[tuple[str, str]]] | None:
        """The body and headers of the page or asset at ``path`` (relative to the mount point), or None."""
        found = ASSETS.get(path)
        if found is None:
            return None
        name, kind = found
        if path == "/":
            body = render(self.streams, None if self.proxy is None else self.proxy.page_path)
            # Not stored: the page holds the proxy's token.
            extra = [("Cache-Control", "no-store"), ("Content-Security-Policy", self.policy), *_PAGE_SECURITY]
        else:
            body = asset(name)
            extra = [("Cache-Control", "no-cache"), *SECURITY_HEADERS]
        return body, [("Content-Type", kind), ("Content-Length", str(len(body))), *extra]
