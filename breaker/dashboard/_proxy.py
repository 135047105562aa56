"""The dashboard's stream proxy: relays another service's Hystrix stream to the page, as Hystrix's dashboard did.

A browser's ``EventSource`` may read another origin's stream only if that server sends CORS headers, and Java
Hystrix's servlet (like most) does not. So the page asks its own server for ``proxy.stream?origin=<url>`` and the
server relays the bytes. A `Relay` is one upstream connection, read on one thread; `Relay.close` may be called
from any thread and wakes a read blocked on the socket, so a server closing down never waits on a quiet upstream.

The proxy fetches the URLs its page asks for: it is off unless asked for (``proxy=True``), relays only http and
https, and only a ``200`` answer of type ``text/event-stream``.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from typing import Final

__all__ = ["PROXY_PATH", "ProxyError", "Relay", "Relays", "origin_of"]

#: Where the proxy answers, next to the page.
PROXY_PATH: Final = "/proxy.stream"
#: Seconds a relay waits for the upstream to connect or to send anything (a Hystrix stream pings every 0.5 s).
UPSTREAM_TIMEOUT: Final = 30.0
_CHUNK: Final = 64 * 1024


class ProxyError(Exception):
    """The proxy cannot relay this request; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def origin_of(query: str) -> str:
    """The stream URL in a proxy request's query string (``origin=<url>``).

    Raises:
        ProxyError: 400, when there is no ``origin`` or it is not an absolute http(s) URL.
    """
    origins = urllib.parse.parse_qs(query).get("origin", [])
    if len(origins) != 1:
        raise ProxyError(400, "the proxy needs exactly one origin=<stream URL> in its query string")
    origin = origins[0]
    try:
        parts = urllib.parse.urlsplit(origin)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number from 0 to 65535
    except ValueError:  # that, or an unclosed [IPv6 address
        parts = urllib.parse.SplitResult("", "", "", "", "")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ProxyError(400, f"the proxy relays absolute http(s) URLs only, got {origin!r}")
    return origin


class Relay:
    """One upstream stream: `open` connects and checks the answer, `chunks` yields its bytes, `close` ends it.

    Args:
        origin: The upstream stream's URL (checked by `origin_of`).
        timeout: Seconds to wait for the upstream to connect or send anything.
    """

    def __init__(self, origin: str, timeout: float = UPSTREAM_TIMEOUT) -> None:
        parts = urllib.parse.urlsplit(origin)
        kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        self.origin = origin
        self._target = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
        self._connection = kind(parts.hostname or "", parts.port, timeout=timeout)
        self._host = parts.netloc
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
            ProxyError: 502, when the upstream cannot be reached or does not answer with a 200 event stream.
        """
        try:
            self._connection.request("GET", self._target, headers={"Accept": "text/event-stream", "Host": self._host})
            with self._lock:  # a close() that came while connecting must still wake the read below
                if self._closed:
                    self._connection.close()
                    raise ProxyError(502, "the proxy was closed")
                self._sock = self._connection.sock
            response = self._connection.getresponse()
        except (OSError, http.client.HTTPException) as error:
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
