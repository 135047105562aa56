"""The Hystrix event stream: every circuit's figures as server-sent events, for the Hystrix Dashboard and Turbine.

Three ways to serve it, over one engine:

- `serve(host, port)` runs a small stdlib server (`http.server.ThreadingHTTPServer`) with the stream at
  ``/hystrix.stream`` and returns its `StreamServer` (``.port``, ``.url``, ``.close()``, a context manager);
  ``block=False`` runs it on a thread the `StreamServer` owns. ``routes`` adds pages at other paths (room for a
  dashboard at ``/``).
- `wsgi_app()` returns a `WSGIApp`, to mount in any WSGI server or framework.
- `asgi_app()` returns an `ASGIApp`: raw ASGI 3, no framework needed; it handles ``lifespan`` too.

What is sent. Every ``interval`` seconds (0.5 by default), for each circuit of the current registry
(`breaker.circuits`), one ``HystrixCommand`` and one ``HystrixThreadPool`` message, then a keep-alive::

    data: {"type":"HystrixCommand","name":"payments",...}

    data: {"type":"HystrixThreadPool","name":"payments",...}

    ping:

`command_message` and `thread_pool_message` build the messages from a `breaker.CircuitStatistics` (pure; each
documents how our figures map to Hystrix's fields); `encode` and `render` make the bytes. Hystrix speaks integers
and milliseconds: durations are rounded half up to whole milliseconds, and anything unbounded (a ``math.inf``
timeout or ticket count) is sent as `INT_MAX` (2**31 - 1), since JSON has no infinity.

Concurrency. Each app or server has one publisher thread. Once per interval it reads every circuit's
``statistics()`` (nothing else: reading the stream trips nothing and takes no probe), encodes the messages once
and appends them to each client's buffer, which keeps the last ``buffer`` intervals: a client that falls behind
loses its oldest intervals, never the latest. The publisher never writes to a socket, so a slow client holds up
neither it nor any call. Each client's own request thread (or task) writes its buffer out. A client is dropped
when it disconnects (at the next write; at once on ASGI's ``http.disconnect``) and when one write waits
``send_timeout`` seconds (the stdlib server and the ASGI app; under WSGI the server's own timeouts apply). Past
``max_clients`` (5, as Java Hystrix) clients at once, the answer is HTTP 503. The publisher thread starts with
the first client and stops when the last one leaves; ``close()`` ends every stream and waits for every thread.

Bounds of the stdlib server on every connection, streams and pages alike, so that bad clients are shed and the
server goes on serving the others (each is an argument of `serve`; `breaker.stream._bounds` enforces them):

- at most ``max_connections`` (64) connections at once: one more is answered 503 and closed by the accepting
  thread, which starts no thread for it and never waits on it;
- a request's line and headers must arrive within ``header_timeout`` seconds (10) of its first byte, however
  slowly they trickle in (else 408), and fit in ``max_header_bytes`` (16384; else 414 for the request line, 431);
- a connection that sends nothing for ``idle_timeout`` seconds (5) is closed without an answer;
- a malformed request line is answered 400, an HTTP version other than 1.x 400 or 505, a method other than GET
  405 (with ``Allow: GET``).

Each refusal closes its connection. The server answers one request per connection (HTTP/1.0), so no connection
idles between requests. ``close()`` shuts down every connection, which wakes a thread waiting on a slow or idle
client at once, whatever is left of its bounds.

Headers. Every response, of every server and app, carries `SECURITY_HEADERS` (``X-Content-Type-Options: nosniff``,
a Content-Security-Policy that allows nothing, ``X-Frame-Options: DENY``, ``Referrer-Policy: no-referrer``). No
CORS header is sent unless ``cors_origins`` names the origins whose pages may read the stream from a browser (or is
``["*"]``): the Hystrix Dashboard and Turbine read the stream from their servers and need none. The stdlib server
answers any ``Host`` unless given ``allowed_hosts`` (what the dashboard's server does, against DNS rebinding).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import io
import logging
import re
import socket
import threading
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, MutableMapping, Sequence
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Final, TypeAlias

from breaker._core.validation import seconds

from ._bounds import Bounds, HeadError, bounds, read_head, refuse
from ._http import SECURITY_HEADERS, AllowedHosts, CorsOrigins
from ._hystrix import (
    INT_MAX,
    PING,
    CommandMessage,
    ThreadPoolMessage,
    command_message,
    encode,
    render,
    thread_pool_message,
)
from ._publisher import AsyncSubscriber, Circuits, Publisher, StreamStatistics, ThreadSubscriber

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = [
    "HEADERS",
    "INT_MAX",
    "PING",
    "SECURITY_HEADERS",
    "STREAM_PATH",
    "ASGIApp",
    "CommandMessage",
    "Route",
    "StreamServer",
    "StreamStatistics",
    "ThreadPoolMessage",
    "WSGIApp",
    "asgi_app",
    "command_message",
    "encode",
    "render",
    "serve",
    "thread_pool_message",
    "wsgi_app",
]

logger = logging.getLogger("breaker")

#: Where `serve` puts the stream.
STREAM_PATH: Final = "/hystrix.stream"
#: The response headers of the stream.
HEADERS: Final[tuple[tuple[str, str], ...]] = (
    ("Content-Type", "text/event-stream;charset=UTF-8"),
    ("Cache-Control", "no-cache, no-store, max-age=0, must-revalidate"),
    ("Pragma", "no-cache"),
)

#: A page `serve` adds at another path: called with the request handler, it writes the whole response.
Route: TypeAlias = Callable[[http.server.BaseHTTPRequestHandler], None]
Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]


def _asgi_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]


_ASGI_HEADERS: Final = _asgi_headers((*HEADERS, *SECURITY_HEADERS))


def _asgi_origin(scope: Scope) -> str | None:
    """The request's ``Origin`` header, if it sent one."""
    origins = [v for k, v in scope.get("headers", ()) if k.lower() == b"origin"]
    return origins[0].decode("latin-1") if len(origins) == 1 else None


# -- WSGI -------------------------------------------------------------------------------------------------------


class WSGIApp:
    """The stream as a WSGI application: every GET is a stream, whatever its path (mount it where you like).

    Blocking, like WSGI: each client holds a server thread while connected. A client that disconnects is dropped
    at the next interval, when the server's write fails and it closes the response.

    Args:
        interval, max_clients, buffer, circuits, group, clock, cors_origins: See `wsgi_app`.

    Raises:
        TypeError, ValueError: A bad option, named in the message.
    """

    def __init__(
        self,
        *,
        interval: float | timedelta = 0.5,
        max_clients: int = 5,
        buffer: int = 16,
        circuits: Circuits | None = None,
        group: Callable[[str], str] | None = None,
        clock: Callable[[], float] = time.time,
        cors_origins: Sequence[str] = (),
    ) -> None:
        self._publisher = Publisher(interval, max_clients, buffer, circuits, group, clock)
        self._cors = CorsOrigins(cors_origins)

    def __repr__(self) -> str:
        return f"<WSGIApp {self._publisher.describe()} {self.statistics()}>"

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD", "GET") != "GET":
            start_response(
                "405 Method Not Allowed", [("Allow", "GET"), ("Content-Type", "text/plain"), *SECURITY_HEADERS]
            )
            return [b"the Hystrix stream answers GET only\n"]
        subscriber = ThreadSubscriber(self._publisher.buffer)
        if not self._publisher.subscribe(subscriber):
            start_response("503 Service Unavailable", [("Content-Type", "text/plain"), *SECURITY_HEADERS])
            return [b"too many Hystrix stream clients\n"]
        start_response("200 OK", [*HEADERS, *SECURITY_HEADERS, *self._cors.headers(environ.get("HTTP_ORIGIN"))])
        return _WSGIBody(self._publisher, subscriber)

    def statistics(self) -> StreamStatistics:
        """Clients connected, rejected and counters (see `StreamStatistics`)."""
        return self._publisher.statistics()

    def close(self) -> None:
        """End every stream and stop the publisher thread; clients arriving after get 503."""
        self._publisher.close()

    def __enter__(self) -> WSGIApp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _WSGIBody:
    """The response body of one client: its intervals as they come; ``close()`` (called by the server) leaves."""

    def __init__(self, publisher: Publisher, subscriber: ThreadSubscriber) -> None:
        self._publisher = publisher
        self._subscriber = subscriber
        self._started = False

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if not self._started:
            self._started = True
            return b""  # makes the server send the headers now: the client knows it is connected
        payload = self._subscriber.next()
        if payload is None:
            raise StopIteration
        return payload

    def close(self) -> None:
        self._publisher.unsubscribe(self._subscriber)


def wsgi_app(
    *,
    interval: float | timedelta = 0.5,
    max_clients: int = 5,
    buffer: int = 16,
    circuits: Circuits | None = None,
    group: Callable[[str], str] | None = None,
    clock: Callable[[], float] = time.time,
    cors_origins: Sequence[str] = (),
) -> WSGIApp:
    """A WSGI application serving the stream, on every path it is mounted at (call its ``close()`` on shutdown).

    Args:
        interval: Seconds (float or timedelta) between two intervals of messages. Default 0.5.
        max_clients: Clients served at once; more get HTTP 503. Default 5.
        buffer: Intervals kept for a client that has not read them; past it the oldest are dropped. Default 16.
        circuits: Returns the circuits to report; default `breaker.circuits` (the current registry, each time).
        group: Maps a command name to its ``group``; default the name itself.
        clock: Seconds since the epoch, for ``currentTime``. Default `time.time`.
        cors_origins: Origins whose pages may read the stream from a browser, e.g. ``["https://board.example"]``
            (``Access-Control-Allow-Origin``), or ``["*"]`` for any. Default none: no CORS header.

    Returns:
        A `WSGIApp`.

    Raises:
        TypeError, ValueError: A bad option, named in the message.
    """
    return WSGIApp(
        interval=interval,
        max_clients=max_clients,
        buffer=buffer,
        circuits=circuits,
        group=group,
        clock=clock,
        cors_origins=cors_origins,
    )


# -- ASGI -------------------------------------------------------------------------------------------------------


class ASGIApp:
    """The stream as a raw ASGI 3 application: every GET is a stream, whatever its path.

    It never blocks the event loop: snapshots are taken on the publisher thread, which wakes each client's task
    with ``loop.call_soon_threadsafe``, and the app takes its one lock without blocking. A client is dropped at
    once on ``http.disconnect``, when a write fails, or when a write waits ``send_timeout`` seconds. On
    ``lifespan.shutdown`` the app closes. (uvicorn waits for open responses before it sends that message: call
    ``close()`` first, or set uvicorn's ``timeout_graceful_shutdown``, to stop a server with clients connected.)

    Args:
        interval, max_clients, buffer, circuits, group, clock, cors_origins: See `asgi_app`.
        send_timeout: Seconds a write may wait for a client that stopped reading. Default 10.0.

    Raises:
        TypeError, ValueError: A bad option, named in the message.
    """

    def __init__(
        self,
        *,
        interval: float | timedelta = 0.5,
        max_clients: int = 5,
        buffer: int = 16,
        send_timeout: float | timedelta = 10.0,
        circuits: Circuits | None = None,
        group: Callable[[str], str] | None = None,
        clock: Callable[[], float] = time.time,
        cors_origins: Sequence[str] = (),
    ) -> None:
        self._publisher = Publisher(interval, max_clients, buffer, circuits, group, clock)
        self._send_timeout = seconds("send_timeout", send_timeout)
        self._cors = CorsOrigins(cors_origins)

    def __repr__(self) -> str:
        return f"<ASGIApp {self._publisher.describe()} send_timeout={self._send_timeout:g}s {self.statistics()}>"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind != "http":
            raise ValueError(f"the Hystrix stream speaks HTTP only, got an ASGI {kind!r} connection")
        elif scope.get("method", "GET") != "GET":
            await _asgi_reply(send, 405, b"the Hystrix stream answers GET only\n", [(b"allow", b"GET")])
        else:
            await self._stream(receive, send, _asgi_headers(self._cors.headers(_asgi_origin(scope))))

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._publisher.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _stream(self, receive: Receive, send: Send, cors: list[tuple[bytes, bytes]]) -> None:
        subscriber = AsyncSubscriber(self._publisher.buffer, asyncio.get_running_loop())
        if not await self._publisher.asubscribe(subscriber):
            await _asgi_reply(send, 503, b"too many Hystrix stream clients\n")
            return
        watcher = asyncio.ensure_future(_watch_disconnect(receive, subscriber))
        try:
            await send({"type": "http.response.start", "status": 200, "headers": [*_ASGI_HEADERS, *cors]})
            while (payload := await subscriber.next()) is not None:
                body = {"type": "http.response.body", "body": payload, "more_body": True}
                await asyncio.wait_for(send(body), self._send_timeout)
            if not subscriber.gone:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except (OSError, asyncio.TimeoutError):
            pass  # the client went away, or stopped reading for send_timeout: drop it
        finally:
            watcher.cancel()
            await asyncio.wait({watcher})
            await self._publisher.aunsubscribe(subscriber)

    def statistics(self) -> StreamStatistics:
        """Clients connected, rejected and counters (see `StreamStatistics`). Call it off the event loop."""
        return self._publisher.statistics()

    def close(self) -> None:
        """End every stream and stop the publisher thread (waits for it: call it off the event loop)."""
        self._publisher.close()

    async def aclose(self) -> None:
        """`close`, from the event loop, without blocking it."""
        await self._publisher.aclose()


async def _watch_disconnect(receive: Receive, subscriber: AsyncSubscriber) -> None:
    with contextlib.suppress(Exception):  # a receive that fails means the client is gone just as well
        while (await receive())["type"] != "http.disconnect":
            pass
    subscriber.leave()


async def _asgi_reply(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [(b"content-type", b"text/plain"), *(headers or []), *_asgi_headers(SECURITY_HEADERS)]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def asgi_app(
    *,
    interval: float | timedelta = 0.5,
    max_clients: int = 5,
    buffer: int = 16,
    send_timeout: float | timedelta = 10.0,
    circuits: Circuits | None = None,
    group: Callable[[str], str] | None = None,
    clock: Callable[[], float] = time.time,
    cors_origins: Sequence[str] = (),
) -> ASGIApp:
    """An ASGI 3 application serving the stream, on every path it is mounted at; it handles ``lifespan`` too.

    Args:
        interval: Seconds (float or timedelta) between two intervals of messages. Default 0.5.
        max_clients: Clients served at once; more get HTTP 503. Default 5.
        buffer: Intervals kept for a client that has not read them; past it the oldest are dropped. Default 16.
        send_timeout: Seconds a write may wait for a client that stopped reading before it is dropped. Default 10.
        circuits: Returns the circuits to report; default `breaker.circuits` (the current registry, each time).
        group: Maps a command name to its ``group``; default the name itself.
        clock: Seconds since the epoch, for ``currentTime``. Default `time.time`.
        cors_origins: Origins whose pages may read the stream from a browser, e.g. ``["https://board.example"]``
            (``Access-Control-Allow-Origin``), or ``["*"]`` for any. Default none: no CORS header.

    Returns:
        An `ASGIApp`.

    Raises:
        TypeError, ValueError: A bad option, named in the message.
    """
    return ASGIApp(
        interval=interval,
        max_clients=max_clients,
        buffer=buffer,
        send_timeout=send_timeout,
        circuits=circuits,
        group=group,
        clock=clock,
        cors_origins=cors_origins,
    )


# -- the stdlib server ------------------------------------------------------------------------------------------


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True  # a server never closed does not keep the process alive; close() joins them
    owner: StreamServer

    def process_request(self, request: Any, client_address: Any) -> None:
        # The mixin's, keeping each thread and its connection for close() to wake and join. Past max_connections
        # the connection is answered 503 and closed here, on the accepting thread, without waiting on the client.
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name="breaker-stream-request",
            daemon=True,
        )
        if not self.owner._track(thread, request):
            logger.debug("Hystrix stream server: %s refused, max_connections reached", client_address)
            refuse(request)
            self.shutdown_request(request)
            return
        thread.start()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.owner._untrack(threading.current_thread())


_TOKEN_IN_QUERY: Final = re.compile(r"([?&])token=[^&\s]*")


class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "breaker-stream"
    default_request_version = "HTTP/1.0"  # an error found before the version is known still gets a status line
    owner: ClassVar[StreamServer]  # set on a subclass made per server
    bounds: ClassVar[Bounds]  # likewise

    def handle_one_request(self) -> None:
        # The stdlib's, but the head is read within the server's bounds (the stdlib reads it with no deadline
        # and no size cap), and anything but a GET over HTTP/1.x is refused.
        self.close_connection = True  # until a request says otherwise (the stdlib's HTTP/1.0 never does)
        head = self._head()
        if head is None:
            return
        self.raw_requestline, header_lines = head
        connection_reader, self.rfile = self.rfile, io.BytesIO(header_lines)
        try:
            parsed = self.parse_request()  # answers 400, 431 or 505 itself
        finally:
            self.rfile = connection_reader
        if not parsed:
            return
        if int(self.request_version.split("/", 1)[1].split(".")[0]) != 1:  # parse_request checked the form
            self.request_version = self.default_request_version  # answer with a status line (HTTP/0.9 has none)
            self.send_error(http.HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, explain="this server speaks HTTP/1.x")
            return
        if self.command != "GET":
            self._reply(405, f"{self.command} is not allowed here: GET only\n", [("Allow", "GET")])
            return
        try:
            self.do_GET()
            self.wfile.flush()
        except TimeoutError as error:  # a write waited send_timeout: the client stopped reading
            self.log_error("Request timed out: %r", error)
            self.close_connection = True

    def _head(self) -> tuple[bytes, bytes] | None:
        """The request line and header lines, read within the bounds; None when there is nothing to serve."""
        reader = self.rfile
        assert isinstance(reader, io.BufferedReader)  # what makefile() gives with the default rbufsize
        refused: HeadError | None = None
        head = None
        try:
            head = read_head(reader, self.connection, self.bounds)
        except HeadError as error:
            refused = error
        except OSError:  # reset by the client, or shut down by close(): nobody to answer
            pass
        self.connection.settimeout(self.timeout)  # from here on it bounds each write (send_timeout)
        if refused is not None:
            self.command, self.requestline, self.request_version = "", "", self.default_request_version
            with contextlib.suppress(OSError):
                self.send_error(refused.status, explain=refused.reason)
        return head

    _sent: set[str]  # the names of the headers of the response being written (lower case)

    def do_GET(self) -> None:
        hosts = self.owner._hosts
        if hosts is not None and (refused := hosts.refusal(self.headers.get_all("Host", []), self.owner._bound)):
            self._reply(refused[0], refused[1] + "\n")
            return
        path = urllib.parse.urlsplit(self.path).path
        route = self.owner._routes.get(path)
        if path == STREAM_PATH:
            self._stream()
        elif route is not None:
            route(self)
        else:
            self._reply(404, f"nothing at {path}; the Hystrix stream is at {STREAM_PATH}\n")

    def send_response_only(self, code: int, message: str | None = None) -> None:
        self._sent = set()
        super().send_response_only(code, message)

    def send_header(self, keyword: str, value: str) -> None:
        self._sent.add(keyword.lower())
        super().send_header(keyword, value)

    def end_headers(self) -> None:
        # Every response, the routes' and send_error's included, gets the SECURITY_HEADERS a route did not send
        # itself (the dashboard's page sends its own Content-Security-Policy).
        for header, value in SECURITY_HEADERS:
            if header.lower() not in self._sent:
                self.send_header(header, value)
        super().end_headers()

    def _reply(self, status: int, text: str, headers: Iterable[tuple[str, str]] = ()) -> None:
        body = text.encode()
        self.send_response(status)
        for header, value in headers:
            self.send_header(header, value)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _stream(self) -> None:
        publisher = self.owner._publisher
        subscriber = ThreadSubscriber(publisher.buffer)
        if not publisher.subscribe(subscriber):
            self._reply(503, "too many Hystrix stream clients\n")
            return
        try:
            self.send_response(200)
            for header, value in (*HEADERS, *self.owner._cors.headers(self.headers.get("Origin"))):
                self.send_header(header, value)
            self.end_headers()
            while (payload := subscriber.next()) is not None:
                self.wfile.write(payload)
        except OSError as error:  # the client went away, or stopped reading for send_timeout: drop it
            logger.debug("Hystrix stream client %s dropped: %r", self.client_address, error)
        finally:
            publisher.unsubscribe(subscriber)

    def log_message(self, format: str, *args: Any) -> None:
        # The request line may carry the dashboard proxy's token (a secret of the page): never logged.
        shown = [_TOKEN_IN_QUERY.sub(r"\1token=<redacted>", arg) if isinstance(arg, str) else arg for arg in args]
        logger.debug("Hystrix stream %s: " + format, self.client_address, *shown)


class StreamServer:
    """A small HTTP server with the stream at ``/hystrix.stream`` (`STREAM_PATH`). Made by `serve`.

    One thread per connection (`http.server.ThreadingHTTPServer`), at most ``max_connections`` of them, plus the
    publisher thread while a client is connected, plus, after `start`, the thread running the server. `close`
    stops all of them and waits for them (they are daemon threads, so a server never closed does not keep the
    process alive); it is idempotent, and the server is a context manager that closes on exit.

    Args:
        host: Address to listen on (IPv4 or a host name), e.g. ``"127.0.0.1"``.
        port: Port to listen on; 0 picks a free one (read it from `port`).
        interval, max_clients, buffer, circuits, group, clock: See `serve`.
        send_timeout: Seconds a write may wait for a client; a client that stopped reading for that long is
            dropped. Default 10.0.
        max_connections, header_timeout, max_header_bytes, idle_timeout: The bounds on every connection, see
            `serve`.
        routes: Extra pages: a path mapped to a `Route`, called with the request handler to write a response.
        allowed_hosts: None (the default): answer any ``Host``. Else answer only the ``Host`` values that name the
            server (see `serve`) and these host names.
        cors_origins: See `serve`.

    Raises:
        TypeError, ValueError: A bad option, named in the message.
        OSError: The address cannot be bound.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        interval: float | timedelta = 0.5,
        max_clients: int = 5,
        buffer: int = 16,
        send_timeout: float | timedelta = 10.0,
        max_connections: int = 64,
        header_timeout: float | timedelta = 10.0,
        max_header_bytes: int = 16384,
        idle_timeout: float | timedelta = 5.0,
        routes: Mapping[str, Route] | None = None,
        circuits: Circuits | None = None,
        group: Callable[[str], str] | None = None,
        clock: Callable[[], float] = time.time,
        allowed_hosts: Sequence[str] | None = None,
        cors_origins: Sequence[str] = (),
    ) -> None:
        self._bounds = bounds(
            max_connections=max_connections,
            header_timeout=header_timeout,
            max_header_bytes=max_header_bytes,
            idle_timeout=idle_timeout,
        )
        self._routes = dict(routes or {})
        self._hosts = None if allowed_hosts is None else AllowedHosts(allowed_hosts)
        self._cors = CorsOrigins(cors_origins)
        for path, route in self._routes.items():
            if not isinstance(path, str) or not path.startswith("/") or path == STREAM_PATH:
                raise ValueError(f"routes: a path must be a str starting with '/', other than {STREAM_PATH!r}")
            if not callable(route):
                raise TypeError(f"routes: the route of {path!r} must be callable, got {route!r}")
        self._publisher = Publisher(interval, max_clients, buffer, circuits, group, clock)
        owner = self

        class Handler(_Handler):
            timeout = seconds("send_timeout", send_timeout)  # the socket timeout of every write

        Handler.owner = owner
        Handler.bounds = self._bounds
        self._httpd = _HTTPServer((host, port), Handler)
        self._httpd.owner = self
        self._bound = (self.host, self.port)  # what a Host header must name, with allowed_hosts
        # Guards the request threads, the flags and the serving thread: request threads come and go, and close()
        # may run on any thread.
        self._lock = threading.Lock()
        self._requests: dict[threading.Thread, socket.socket] = {}
        self._closers: set[Callable[[], None]] = set()
        self._serving = False
        self._closed = False
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        state = "closed" if self._closed else "serving" if self._serving else "bound"
        options = f"{self._publisher.describe()} {self._bounds.describe()}"
        return f"<StreamServer {self.url} {state} {options} {self.statistics()}>"

    @property
    def host(self) -> str:
        """The address the server listens on."""
        return str(self._httpd.server_address[0])

    @property
    def port(self) -> int:
        """The port the server listens on (the one picked, when given 0)."""
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """The stream's URL: ``http://host:port/hystrix.stream``."""
        return f"http://{self.host}:{self.port}{STREAM_PATH}"

    def statistics(self) -> StreamStatistics:
        """Clients connected, rejected and counters (see `StreamStatistics`)."""
        return self._publisher.statistics()

    def start(self) -> StreamServer:
        """Serve on a thread this server owns (`close` stops it); returns the server.

        Raises:
            RuntimeError: It is closed, or already serving.
        """
        thread = threading.Thread(target=self.serve_forever, name="breaker-stream-server", daemon=True)
        with self._lock:  # one serve_forever at a time
            self._check_startable()
            self._thread = thread
        thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve on this thread until `close` (from another thread).

        Raises:
            RuntimeError: It is closed, or already serving.
        """
        with self._lock:  # one serve_forever at a time
            if self._thread is not threading.current_thread():
                self._check_startable()
            self._serving = True
        self._httpd.serve_forever(poll_interval=0.1)

    def _check_startable(self) -> None:
        if self._closed or self._serving or self._thread is not None:
            raise RuntimeError(f"{self!r} is closed or already serving")

    def close(self) -> None:
        """Stop serving, end every stream and wait for every thread the server started. Idempotent."""
        with self._lock:  # close once; the flags tell what to undo
            if self._closed:
                return
            self._closed = True
            serving, thread = self._serving, self._thread
        if serving or thread is not None:
            self._httpd.shutdown()  # returns once serve_forever has
        self._publisher.close()  # every stream ends
        with self._lock:  # a copy: request threads remove themselves as they end
            requests = list(self._requests.items())
            closers = list(self._closers)
        for closer in closers:  # e.g. the dashboard's relays, whose threads may be blocked on another server
            closer()
        for _, connection in requests:  # wakes a request thread blocked on a client that does not read
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        for request_thread, _ in requests:
            request_thread.join()
        self._httpd.server_close()
        if thread is not None:
            thread.join()

    def _on_close(self, closer: Callable[[], None]) -> bool:
        """Have `close` call ``closer`` (once however often it is given) before it joins the request threads.

        Returns:
            False, when the server is closed already (``closer`` is not called).
        """
        with self._lock:  # a closer given while close() runs is either called by it or refused
            if self._closed:
                return False
            self._closers.add(closer)
            return True

    def _track(self, thread: threading.Thread, connection: socket.socket) -> bool:
        """Keep ``thread`` and its connection for `close`; False (nothing kept) past ``max_connections``."""
        with self._lock:  # request threads come and go while close() may copy them; the count is read with the add
            if len(self._requests) >= self._bounds.max_connections:
                return False
            self._requests[thread] = connection
            return True

    def _untrack(self, thread: threading.Thread) -> None:
        with self._lock:  # request threads come and go while close() may copy them
            self._requests.pop(thread, None)

    def __enter__(self) -> StreamServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def serve(
    host: str,
    port: int,
    *,
    block: bool = True,
    interval: float | timedelta = 0.5,
    max_clients: int = 5,
    buffer: int = 16,
    send_timeout: float | timedelta = 10.0,
    max_connections: int = 64,
    header_timeout: float | timedelta = 10.0,
    max_header_bytes: int = 16384,
    idle_timeout: float | timedelta = 5.0,
    routes: Mapping[str, Route] | None = None,
    circuits: Circuits | None = None,
    group: Callable[[str], str] | None = None,
    clock: Callable[[], float] = time.time,
    allowed_hosts: Sequence[str] | None = None,
    cors_origins: Sequence[str] = (),
) -> StreamServer:
    """Serve the stream at ``http://host:port/hystrix.stream`` with a stdlib HTTP server.

    ::

        with breaker.stream.serve("127.0.0.1", 0, block=False) as server:
            print("point the Hystrix Dashboard at", server.url)

    Args:
        host: Address to listen on (IPv4 or a host name).
        port: Port to listen on; 0 picks a free one (`StreamServer.port`).
        block: True: serve on this thread until interrupted (KeyboardInterrupt closes the server and propagates).
            False: serve on a thread the returned server owns, until its ``close()``.
        interval: Seconds (float or timedelta) between two intervals of messages. Default 0.5.
        max_clients: Clients served at once; more get HTTP 503. Default 5.
        buffer: Intervals kept for a client that has not read them; past it the oldest are dropped. Default 16.
        send_timeout: Seconds a write may wait for a client that stopped reading before it is dropped. Default 10.
        max_connections: Connections held at once, streams and pages alike; one more is answered 503 and closed at
            once. Default 64.
        header_timeout: Seconds from a request's first byte to the end of its request line and headers; past it
            the answer is 408 and the connection is closed. Default 10.
        max_header_bytes: Bytes of the request line and headers together; past them the answer is 414 (the
            request line alone) or 431, and the connection is closed. Default 16384.
        idle_timeout: Seconds a connection may wait, with nothing sent, for its request; past it the connection is
            closed without an answer. Default 5.
        routes: Extra pages, e.g. a dashboard at ``"/"``: a path mapped to a `Route`.
        circuits: Returns the circuits to report; default `breaker.circuits` (the current registry, each time).
        group: Maps a command name to its ``group``; default the name itself.
        clock: Seconds since the epoch, for ``currentTime``. Default `time.time`.
        allowed_hosts: None (the default, as Turbine names a server as it likes): answer any ``Host`` header.
            Else answer only a ``Host`` that names the server: its address and port (for a loopback address also
            ``localhost``, ``127.0.0.1`` or ``[::1]``; bound to every interface, any IP address or ``localhost``),
            or one of these host names, at any port; others get 403 (against DNS rebinding). ``["*"]``: any.
        cors_origins: Origins whose pages may read the stream from a browser, e.g. ``["https://board.example"]``
            (``Access-Control-Allow-Origin``), or ``["*"]`` for any. Default none: no CORS header.

    Returns:
        The `StreamServer` (closed, when ``block`` is True).

    Raises:
        TypeError, ValueError: A bad option, named in the message.
        OSError: The address cannot be bound.
    """
    server = StreamServer(
        host,
        port,
        interval=interval,
        max_clients=max_clients,
        buffer=buffer,
        send_timeout=send_timeout,
        max_connections=max_connections,
        header_timeout=header_timeout,
        max_header_bytes=max_header_bytes,
        idle_timeout=idle_timeout,
        routes=routes,
        circuits=circuits,
        group=group,
        clock=clock,
        allowed_hosts=allowed_hosts,
        cors_origins=cors_origins,
    )
    if not block:
        return server.start()
    try:
        server.serve_forever()
    finally:
        server.close()
    return server
