"""The dashboard's stream proxy: relays another service's Hystrix stream to the page, as Hystrix's dashboard did.

A browser's ``EventSource`` may read another origin's stream only if that server sends CORS headers, and Java
Hystrix's servlet (like most) does not. So the page asks its own server for ``proxy.stream?origin=<url>`` and the
server relays the bytes. A `Relay` is one upstream connection, read on one thread; `Relay.close` may be called
from any thread and wakes a read blocked on the socket, so a server closing down never waits on a quiet upstream.

Any web page open in a browser can make that browser send GETs to the proxy (an ``<img>``, a ``no-cors`` fetch), so
the proxy relays only what a person asked for, to streams: a `Proxy` checks, in this order,

1. that the request comes from the dashboard's own page: it carries the proxy's secret token, which the page holds
   and a page of another origin cannot read, and its ``Sec-Fetch-Site`` and ``Origin`` headers (when sent) say it
   is same-origin (403 otherwise; the server has checked ``Host`` before, against DNS rebinding);
2. that ``origin`` is one well-formed absolute http(s) URL (`parse_stream_url`; 400 otherwise);
3. that it is one of the upstreams allowed when the proxy was made, exactly (`Upstreams`; 403 otherwise).

Only then does a relay take one of the proxy's slots (`Relays`, 503 past the limit), connect, and relay the answer
if it is a ``200`` of type ``text/event-stream`` (502 otherwise: a redirect is not followed); whatever happens, the
slot is given back when the relay ends. A request the checks refuse never opens a connection.
"""

from __future__ import annotations

import contextlib
import hmac
import http.client
import ipaddress
import re
import secrets
import socket
import threading
import urllib.parse
from collections.abc import Iterable, Iterator
from typing import Final, NamedTuple

__all__ = [
    "PROXY_PATH",
    "Proxy",
    "ProxyError",
    "Relay",
    "Relays",
    "StreamURL",
    "Upstreams",
    "origin_of",
    "page_path",
    "parse_stream_url",
]

#: Where the proxy answers, next to the page.
PROXY_PATH: Final = "/proxy.stream"
#: Seconds a relay waits for the upstream to connect or to send anything (a Hystrix stream pings every 0.5 s).
UPSTREAM_TIMEOUT: Final = 30.0
_CHUNK: Final = 64 * 1024
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_SPACE_OR_CONTROL: Final = re.compile(r"[\x00-\x20\x7f-\x9f]")
_LABEL: Final = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?")
#: The values of ``Sec-Fetch-Site`` a request for the proxy may carry: from the page, or typed by a person.
_OWN_FETCH_SITES: Final = frozenset({"same-origin", "none"})


class ProxyError(Exception):
    """The proxy cannot relay this request; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class StreamURL(NamedTuple):
    """An absolute http(s) URL, checked and normalized by `parse_stream_url`."""

    scheme: str
    host: str  # lower case, ASCII (IDNA); an IPv6 address without brackets
    port: int  # the default port of the scheme when the URL gives none
    target: str  # path (at least "/") and query: what the request line asks for

    @property
    def netloc(self) -> str:
        """``host[:port]`` as the ``Host`` header says it (the port only if not the scheme's default)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == _DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"

    @property
    def origin(self) -> str:
        """``scheme://host[:port]``."""
        return f"{self.scheme}://{self.netloc}"

    def __str__(self) -> str:
        return self.origin + self.target


def parse_stream_url(text: str) -> StreamURL:
    """``text`` as a `StreamURL`: an absolute http(s) URL with a valid host, normalized (any fragment dropped).

    Raises:
        ValueError: It is not one; the message says what is wrong with it.
    """
    if _SPACE_OR_CONTROL.search(text):
        raise ValueError("it contains a space or a control character")
    try:
        parts = urllib.parse.urlsplit(text)
        port = parts.port  # raises ValueError for a port that is not a number from 0 to 65535
    except ValueError as error:  # that, or an unclosed [IPv6 address
        raise ValueError(f"it is malformed ({error})") from None
    if parts.scheme not in _DEFAULT_PORTS:
        raise ValueError("it is not an absolute http(s) URL")
    if "@" in parts.netloc:
        raise ValueError("it has user info (user@ or user:password@), which the proxy does not send")
    if not parts.hostname:
        raise ValueError("it has no host")
    if port == 0:
        raise ValueError("its port is 0")
    return StreamURL(
        parts.scheme,
        _host(parts.hostname, bracketed="[" in parts.netloc),
        _DEFAULT_PORTS[parts.scheme] if port is None else port,
        (parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
    )


def _host(hostname: str, *, bracketed: bool) -> str:
    """A URL's host, lower case and ASCII, or ValueError."""
    if bracketed:
        try:
            return str(ipaddress.IPv6Address(hostname))
        except ValueError:
            raise ValueError(f"its host [{hostname}] is not an IPv6 address") from None
    try:
        name = hostname.encode("idna").decode("ascii").lower()  # UnicodeError: a label empty or over 63 characters
    except UnicodeError:
        raise ValueError("its host name has a label that is empty or longer than 63 characters") from None
    labels = name.removesuffix(".").split(".")
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise ValueError(f"its host {name[:80]!r} is not a host name (letters, digits, '-', '_' and dots)")
    return name


def origin_of(query: str) -> StreamURL:
    """The stream URL in a proxy request's query string (``origin=<url>``).

    Raises:
        ProxyError: 400, when there is no ``origin`` or it is not a well-formed absolute http(s) URL.
    """
    origins = urllib.parse.parse_qs(query).get("origin", [])
    if len(origins) != 1:
        raise ProxyError(400, "the proxy needs exactly one origin=<stream URL> in its query string")
    try:
        return parse_stream_url(origins[0])
    except ValueError as error:
        raise ProxyError(
            400, f"the proxy relays absolute http(s) URLs only, got {origins[0][:200]!r}: {error}"
        ) from None


class Upstreams:
    """The stream URLs a proxy may relay: exactly these (scheme, host, port, path and query), nothing else.

    Args:
        urls: Absolute http(s) URLs.
        field: The option's name, for error messages.

    Raises:
        ValueError: A URL is not a well-formed absolute http(s) URL.
    """

    def __init__(self, urls: Iterable[str], field: str = "allowed_upstreams") -> None:
        self.urls: frozenset[str] = frozenset(_allowed(field, url) for url in urls)

    def __repr__(self) -> str:
        return f"Upstreams({sorted(self.urls)!r})"

    def allows(self, url: StreamURL) -> bool:
        """Whether ``url`` is one of them."""
        return str(url) in self.urls


def _allowed(field: str, url: str) -> str:
    try:
        return str(parse_stream_url(url))
    except ValueError as error:
        raise ValueError(f"{field}: {url!r} cannot be relayed: {error}") from None


class Relay:
    """One upstream stream: `open` connects and checks the answer, `chunks` yields its bytes, `close` ends it.

    Args:
        origin: The upstream stream's URL (a str is checked by `parse_stream_url`).
        timeout: Seconds to wait for the upstream to connect or send anything.

    Raises:
        ValueError: ``origin`` is not a well-formed absolute http(s) URL.
    """

    def __init__(self, origin: str | StreamURL, timeout: float = UPSTREAM_TIMEOUT) -> None:
        url = origin if isinstance(origin, StreamURL) else parse_stream_url(origin)
        kind = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        self.origin = str(url)
        self._target = url.target
        self._connection = kind(url.host, url.port, timeout=timeout)
        self._host = url.netloc
        # Guards _closed and the socket's shutdown: close() may come from another thread at any time.
        self._lock = threading.Lock()
        self._closed = False
        self._response: http.client.HTTPResponse | None = None
        self._sock: socket.socket | None = None  # kept: getresponse() drops a close-delimited answer's socket

    def __repr__(self) -> str:
        return f"<Relay {self.origin} {'closed' if self._closed else 'open'}>"

    def open(self) -> None:
        """Connect and read the answer's head.

        Raises:
            ProxyError: 502, when the upstream cannot be reached or does not answer with a 200 event stream (a
                redirect is not followed).
        """
        try:
            self._connection.request("GET", self._target, headers={"Accept": "text/event-stream", "Host": self._host})
            with self._lock:  # a close() that came while connecting must still wake the read below
                if self._closed:
                    self._connection.close()
                    raise ProxyError(502, "the proxy was closed")
                self._sock = self._connection.sock
            response = self._connection.getresponse()
        except (OSError, http.client.HTTPException, ValueError) as error:  # ValueError: UnicodeError of a host name
            raise ProxyError(502, f"cannot read {self.origin}: {error!r}") from error
        kind = response.getheader("Content-Type", "")
        if response.status != 200 or not kind.startswith("text/event-stream"):
            response.close()  # a close-delimited answer holds the socket, not the connection
            self.close()
            raise ProxyError(502, f"{self.origin} answered {response.status} {kind!r}, not a 200 event stream")
        self._response = response

    def chunks(self) -> Iterator[bytes]:
        """The upstream's bytes as they arrive, until it ends, fails, stays silent for the timeout, or `close`."""
        response = self._response
        if response is None:
            return
        while True:
            try:
                chunk = response.read1(_CHUNK)
            except (OSError, ValueError, AttributeError, http.client.HTTPException):
                # AttributeError: close() on another thread closed the response under the read (http.client is
                # not thread-safe); else closed under us, timed out, or cut off: the page's EventSource reconnects
                return
            if not chunk:
                return
            yield chunk

    def close(self) -> None:
        """End the relay from any thread: a read blocked on the upstream returns at once. Idempotent."""
        with self._lock:  # once; and not while open() is between its steps
            if self._closed:
                return
            self._closed = True
            sock = self._sock or self._connection.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._connection.close()


class Relays:
    """The relays open now, at most ``limit`` of them, so that closing a server or app ends them all."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        # Guards the set and the closed flag: request threads (or tasks) come and go while close() may run.
        self._lock = threading.Lock()
        self._open: set[Relay] = set()
        self._closed = False

    def __repr__(self) -> str:
        return f"<Relays {len(self)} of {self._limit}{' closed' if self._closed else ''}>"

    def __len__(self) -> int:
        """The relays tracked now: the slots in use."""
        with self._lock:  # see __init__
            return len(self._open)

    def add(self, relay: Relay) -> None:
        """Track ``relay``.

        Raises:
            ProxyError: 503, past the limit or once closed.
        """
        with self._lock:  # the limit and the closed flag are checked and the set changed in one step
            if self._closed or len(self._open) >= self._limit:
                raise ProxyError(503, "too many proxied streams")
            self._open.add(relay)

    def discard(self, relay: Relay) -> None:
        """Stop tracking ``relay`` (its slot is free again) and close it. Idempotent."""
        with self._lock:  # see __init__
            self._open.discard(relay)
        relay.close()

    def close(self) -> None:
        """Close every relay now and refuse new ones."""
        with self._lock:  # see __init__; the relays are closed outside it
            self._closed = True
            relays, self._open = self._open, set()
        for relay in relays:
            relay.close()


def page_path(token: str) -> str:
    """The address of a proxy whose token is ``token``, relative to its page."""
    return f"{PROXY_PATH.lstrip('/')}?token={token}"


class Proxy:
    """One dashboard's proxy: its secret token, the upstreams it may relay, and its relays.

    Args:
        upstreams: The stream URLs it may relay, exactly (see `Upstreams`).
        limit: Relays at once; past it, 503.

    Raises:
        ValueError: An upstream is not a well-formed absolute http(s) URL.
    """

    def __init__(self, upstreams: Iterable[str], limit: int = 5) -> None:
        self.upstreams = Upstreams(upstreams)
        self.relays = Relays(limit)
        self._token = secrets.token_urlsafe(32)  # per proxy: only a page this proxy's server served holds it

    def __repr__(self) -> str:
        return f"<Proxy {self.upstreams!r} {self.relays!r}>"  # never the token

    @property
    def page_path(self) -> str:
        """The proxy's address relative to the page, with its token: what the page's config holds."""
        return page_path(self._token)

    def admit(self, query: str, *, fetch_site: str | None, origin: str | None, host: str | None) -> Relay:
        """A relay for the request, if it passes every check (see the module's docstring); not yet tracked or open.

        Args:
            query: The request's query string.
            fetch_site: Its ``Sec-Fetch-Site`` header; None if it sent none (as browsers before 2020).
            origin: Its ``Origin`` header; None if it sent none (a same-origin GET sends none).
            host: Its ``Host`` header (the server checked it already).

        Raises:
            ProxyError: 403, when the request does not come from the dashboard's page or names an upstream not
                allowed; 400, when its ``origin`` is not one well-formed absolute http(s) URL.
        """
        tokens = urllib.parse.parse_qs(query).get("token", [])
        if len(tokens) != 1 or not hmac.compare_digest(tokens[0].encode(), self._token.encode()):
            raise ProxyError(
                403,
                "the proxy relays only for its dashboard's page, and this request lacks the page's token (a page "
                "from before the server restarted has an old one: reload it)",
            )
        if fetch_site is not None and fetch_site.lower() not in _OWN_FETCH_SITES:
            raise ProxyError(
                403, f"the proxy relays only for its dashboard's page, not for a {fetch_site[:40]!r} request"
            )
        if origin is not None and (host is None or urllib.parse.urlsplit(origin).netloc.lower() != host.lower()):
            raise ProxyError(403, f"the proxy relays only for its dashboard's page, not for one of {origin[:100]!r}")
        url = origin_of(query)
        if not self.upstreams.allows(url):
            raise ProxyError(
                403,
                f"the proxy may not relay {str(url)[:200]!r}: it relays only the streams it was given (streams=[...], "
                "allowed_upstreams=[...]; python -m breaker dashboard --stream URL or --allow-upstream URL)",
            )
        return Relay(url)
