"""The stdlib server's bounds on its clients, so that slow, idle, oversized or too many connections are shed.

`Bounds` holds them (`bounds` validates them); `read_head` reads one request's head (its request line and header
lines, up to the blank line) off a connection within them, and `refuse` answers a connection past the cap:

- ``idle_timeout``: seconds a connection may wait, with nothing sent, for a request to start. Past it `read_head`
  returns None and the server closes the connection without an answer: nothing was asked.
- ``header_timeout``: seconds from a request's first byte to the end of its head, however slowly the bytes come.
  A socket timeout bounds one read only (a byte every few seconds would renew it forever), so before each read
  `read_head` sets the socket's timeout to what is left of this deadline. Past it: `HeadError` 408.
- ``max_header_bytes``: bytes of the request line and the header lines together. Past it: `HeadError` 414 while
  the request line is still coming, 431 after.
- ``max_connections``: connections held at once (streams, pages, anything), checked by the server as it accepts
  one. One more is answered 503 (`refuse`) and closed on the accepting thread, which never waits on it.

A request line that is not three words (method, target, HTTP version) is `HeadError` 400 at once, without waiting
for headers. `read_head` never reads past the head: what follows stays in the reader for the request's handler.
Nothing here starts a thread or keeps state between calls.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import socket
import time
from http import HTTPStatus
from typing import Final

from breaker._core.validation import positive_int, seconds

from ._http import SECURITY_HEADERS

__all__ = ["BUSY", "Bounds", "HeadError", "bounds", "read_head", "refuse"]

_BUSY_BODY: Final = b"too many connections; try again later\n"
#: The whole answer to a connection past ``max_connections``.
BUSY: Final = (
    b"HTTP/1.0 503 Service Unavailable\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: " + str(len(_BUSY_BODY)).encode() + b"\r\n"
    b"Connection: close\r\n"
    + b"".join(f"{header}: {value}\r\n".encode() for header, value in SECURITY_HEADERS)  # as on every answer
    + b"\r\n"
    + _BUSY_BODY
)
_BLANK: Final = (b"\r\n", b"\n")


class HeadError(Exception):
    """A request's head the server refuses: it answers ``status`` with ``reason``, then closes the connection."""

    def __init__(self, status: HTTPStatus, reason: str) -> None:
        super().__init__(f"{status.value} {status.phrase}: {reason}")
        self.status = status
        self.reason = reason


@dataclasses.dataclass(frozen=True, slots=True)
class Bounds:
    """The server's bounds, validated (made by `bounds`); durations in float seconds."""

    max_connections: int
    header_timeout: float
    max_header_bytes: int
    idle_timeout: float

    def describe(self) -> str:
        """The bounds, for the server's repr."""
        return (
            f"max_connections={self.max_connections} header_timeout={self.header_timeout:g}s "
            f"max_header_bytes={self.max_header_bytes} idle_timeout={self.idle_timeout:g}s"
        )


def bounds(
    *, max_connections: object, header_timeout: object, max_header_bytes: object, idle_timeout: object
) -> Bounds:
    """The bounds, each checked: a count is an int of at least 1, a duration positive finite seconds (or timedelta).

    Raises:
        TypeError, ValueError: A bad bound, named in the message.
    """
    return Bounds(
        max_connections=positive_int("max_connections", max_connections),
        header_timeout=seconds("header_timeout", header_timeout),
        max_header_bytes=positive_int("max_header_bytes", max_header_bytes),
        idle_timeout=seconds("idle_timeout", idle_timeout),
    )


def read_head(reader: io.BufferedReader, connection: socket.socket, bounds: Bounds) -> tuple[bytes, bytes] | None:
    """Read one request's head off ``connection``, through ``reader`` (its buffered reader), within ``bounds``.

    Each read takes what is buffered or makes one ``recv`` (``peek``), with the socket's timeout set to the time
    left; lines are taken out of the buffer only up to their end, so nothing past the blank line is consumed.
    The caller sets the socket's timeout back afterwards.

    Returns:
        The request line and the header lines (the blank line included), each line with its line end; or None if
        no request came: the client closed the connection, or sent nothing for ``idle_timeout`` seconds.

    Raises:
        HeadError: The head is malformed (400), too slow (408) or too big (414, 431): answer it and close.
        OSError: The connection failed: reset by the client, or shut down by the server's ``close()``.
    """
    left = bounds.max_header_bytes  # bytes the rest of the head may take
    deadline: float | None = None  # set at the first byte: before it, the connection is idle
    request_line: bytes | None = None
    lines: list[bytes] = []  # the header lines read whole
    pieces: list[bytes] = []  # the line being read
    while True:
        if deadline is None:
            connection.settimeout(bounds.idle_timeout)
        else:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _too_slow(bounds)
            connection.settimeout(remaining)
        try:
            data = reader.peek(1)  # what is buffered, else one recv (b"" at the end of the connection)
        except TimeoutError:
            if deadline is None:
                return None
            raise _too_slow(bounds) from None
        if not data:
            if deadline is None:
                return None
            raise HeadError(HTTPStatus.BAD_REQUEST, "the connection ended inside the request's head")
        if deadline is None:
            deadline = time.monotonic() + bounds.header_timeout
        end = data.find(b"\n", 0, left)
        piece = reader.read(end + 1 if end >= 0 else min(len(data), left))  # buffered: does not wait
        left -= len(piece)
        pieces.append(piece)
        if end >= 0:
            line = b"".join(pieces)
            pieces.clear()
            if request_line is None:
                if len(line.split()) != 3:
                    reason = f"not a request line (method, target, HTTP version): {line[:80]!r}"
                    raise HeadError(HTTPStatus.BAD_REQUEST, reason)
                request_line = line
            else:
                lines.append(line)
                if line in _BLANK:
                    return request_line, b"".join(lines)
        if left == 0:
            if request_line is None:
                reason = f"the request line is over max_header_bytes ({bounds.max_header_bytes})"
                raise HeadError(HTTPStatus.REQUEST_URI_TOO_LONG, reason)
            reason = f"the request's head is over max_header_bytes ({bounds.max_header_bytes})"
            raise HeadError(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, reason)


def _too_slow(bounds: Bounds) -> HeadError:
    reason = f"the request's head took over header_timeout ({bounds.header_timeout:g}s)"
    return HeadError(HTTPStatus.REQUEST_TIMEOUT, reason)


def refuse(connection: socket.socket) -> None:
    """Answer `BUSY` on a connection past ``max_connections`` without waiting: the caller then closes it.

    The answer is sent non-blocking (a fresh connection's send buffer takes it whole); if the client has gone, or
    does not take it, nothing more is tried.
    """
    with contextlib.suppress(OSError):
        connection.setblocking(False)
        connection.send(BUSY)
