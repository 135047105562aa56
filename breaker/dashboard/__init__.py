"""A live dashboard of every circuit: one page, served next to the Hystrix stream it reads.

The page (plain HTML, CSS and JavaScript shipped in the package: no CDN, no build step, works offline) reads a
Hystrix event stream and shows one card per circuit: its state, request rate, error percentage against the
threshold, counts per event, latency percentiles, tickets in use, abandoned runs, and a sparkline of rate and
error percentage over the last five minutes, with sorting and a filter by name. It renders any standard Hystrix
stream (Java Hystrix, Turbine, hystrix-go), not only this library's.

Three ways to serve it, as for `breaker.stream`:

- `serve(host, port)` (and ``python -m breaker dashboard --port 8000``): the stream's stdlib server, with the page
  at ``/`` and the stream at ``/hystrix.stream``;
- `wsgi_app()` and `asgi_app()`: the page and the stream under one mount point, e.g. ``/breaker/``.

Which streams the page reads: ``streams`` (default: the stream next to the page), overridden by the page's own
``?stream=<url>`` query parameters and by the URL typed into the page. A browser reads another origin's stream
only if that server allows it (CORS, which Java Hystrix does not send); with ``proxy=True`` the page reads such
streams through its server's ``/proxy.stream?origin=<url>``, as Hystrix's dashboard did. The proxy fetches any
http(s) URL the page asks for, so it is off by default: turn it on only where the page's users may reach those
URLs themselves (``python -m breaker dashboard`` turns it on, listening on 127.0.0.1).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import html
import http.server
import importlib.resources
import json
import threading
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Final

from breaker import stream as _stream
from breaker._core.validation import seconds
from breaker.stream._publisher import Circuits

from ._proxy import PROXY_PATH, ProxyError, Relay, Relays, origin_of

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = ["ASSETS", "PROXY_PATH", "ASGIApp", "WSGIApp", "asgi_app", "page", "routes", "serve", "wsgi_app"]

#: The page's files by path, relative to where the dashboard is mounted, with their content types.
ASSETS: Final[Mapping[str, tuple[str, str]]] = {
    "/": ("dashboard.html", "text/html; charset=utf-8"),
    "/dashboard.css": ("dashboard.css", "text/css; charset=utf-8"),
    "/dashboard.js": ("dashboard.js", "text/javascript; charset=utf-8"),
}
_STREAM: Final = _stream.STREAM_PATH.lstrip("/")  # relative: the page may be mounted under a prefix
_CONFIG_SLOT: Final = b"__BREAKER_CONFIG__"
_NO_CACHE: Final = ("Cache-Control", "no-cache")


@functools.cache
def _asset(name: str) -> bytes:
    return importlib.resources.files(__package__).joinpath("static").joinpath(name).read_bytes()


def page(*, streams: Sequence[str] | None = None, proxy: bool = False) -> bytes:
    """The dashboard's HTML, set to read ``streams``.

    Args:
        streams: Stream URLs the page reads when its address names none (``?stream=``). Relative URLs are
            resolved against the page's. Default: the stream next to the page (``["hystrix.stream"]``).
        proxy: Whether the page's server relays other origins' streams at ``proxy.stream``.

    Raises:
        TypeError: ``streams`` is not a sequence of strings.
    """
    streams = _streams(streams)
    config = json.dumps({"streams": streams, "proxy": PROXY_PATH.lstrip("/") if proxy else None})
    return _asset("dashboard.html").replace(_CONFIG_SLOT, html.escape(config, quote=True).encode())


def _streams(streams: Sequence[str] | None) -> list[str]:
    if streams is None:
        return [_STREAM]
    if isinstance(streams, str) or not isinstance(streams, Sequence):
        raise TypeError(f"streams must be a sequence of non-empty URL strings, got {streams!r}")
    if not all(isinstance(s, str) and s for s in streams):
        raise TypeError(f"streams must be a sequence of non-empty URL strings, got {streams!r}")
    return list(streams) or [_STREAM]


def _body(path: str, streams: list[str], proxy: bool) -> tuple[bytes, str] | None:
    """The bytes and type of the asset at ``path``, or None."""
    asset = ASSETS.get(path)
    if asset is None:
        return None
    name, kind = asset
    return (page(streams=streams, proxy=proxy) if path == "/" else _asset(name)), kind


# -- the stdlib server ------------------------------------------------------------------------------------------


def routes(*, streams: Sequence[str] | None = None, proxy: bool = False) -> dict[str, _stream.Route]:
    """The dashboard's pages as ``routes`` for `breaker.stream.serve` (what `serve` passes it).

    Args:
        streams, proxy: See `page`.
    """
    chosen = _streams(streams)

    def asset(handler: http.server.BaseHTTPRequestHandler) -> None:
        found = _body(urllib.parse.urlsplit(handler.path).path, chosen, proxy)
        assert found is not None  # routed here by its path
        body, kind = found
        handler.send_response(200)
        handler.send_header("Content-Type", kind)
        handler.send_header("Content-Length", str(len(body)))
        handler.send_header(*_NO_CACHE)
        handler.end_headers()
        handler.wfile.write(body)

    table: dict[str, _stream.Route] = dict.fromkeys(ASSETS, asset)
    if proxy:
        relays = Relays(limit=5)  # as many as the stream's clients by default
        table[PROXY_PATH] = functools.partial(_relay, relays)
    return table


def _relay(relays: Relays, handler: http.server.BaseHTTPRequestHandler) -> None:
    """Relay the stream named by the request's ``origin`` to the client, until either side ends or the server."""
    server: _stream.StreamServer = getattr(handler, "owner")  # noqa: B009 - set on the handler's class per server
    relay = None
    try:
        relay = Relay(origin_of(urllib.parse.urlsplit(handler.path).query))
        relays.add(relay)
        if not server._on_close(relays.close):
            raise ProxyError(503, "the server is closing")
        relay.open()
    except ProxyError as error:
        if relay is not None:
            relays.discard(relay)
        _reply(handler, error.status, error.reason)
        return
    try:
        handler.send_response(200)
        for header, value in _stream.HEADERS:
            handler.send_header(header, value)
        handler.end_headers()
        for chunk in relay.chunks():
            handler.wfile.write(chunk)
            handler.wfile.flush()
    except OSError:
        pass  # the page went away, or stopped reading: the relay ends
    finally:
        relays.discard(relay)


def _reply(handler: http.server.BaseHTTPRequestHandler, status: int, text: str) -> None:
    body = (text + "\n").encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "text/plain; charset=utf-8")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def serve(
    host: str,
    port: int,
    *,
    block: bool = True,
    streams: Sequence[str] | None = None,
    proxy: bool = False,
    interval: float | timedelta = 0.5,
    max_clients: int = 5,
    send_timeout: float | timedelta = 10.0,
    max_connections: int = 64,
    header_timeout: float | timedelta = 10.0,
    max_header_bytes: int = 16384,
    idle_timeout: float | timedelta = 5.0,
    circuits: Circuits | None = None,
) -> _stream.StreamServer:
    """Serve the dashboard at ``http://host:port/`` and this process's stream at ``/hystrix.stream``.

    ::

        with breaker.dashboard.serve("127.0.0.1", 8000, block=False) as server:
            print("dashboard at", server.url.removesuffix("hystrix.stream"))

    Args:
        host: Address to listen on.
        port: Port to listen on; 0 picks a free one.
        block: True: serve on this thread until interrupted. False: on a thread the returned server owns.
        streams, proxy: See `page`.
        interval, max_clients, send_timeout, circuits: The stream's, see `breaker.stream.serve`.
        max_connections, header_timeout, max_header_bytes, idle_timeout: The server's bounds on every connection,
            see `breaker.stream.serve`.

    Returns:
        The `breaker.stream.StreamServer`.

    Raises:
        TypeError, ValueError: A bad option, named in the message.
        OSError: The address cannot be bound.
    """
    return _stream.serve(
        host,
        port,
        block=block,
        interval=interval,
        max_clients=max_clients,
        send_timeout=send_timeout,
        max_connections=max_connections,
        header_timeout=header_timeout,
        max_header_bytes=max_header_bytes,
        idle_timeout=idle_timeout,
        circuits=circuits,
        routes=routes(streams=streams, proxy=proxy),
    )


# -- WSGI -------------------------------------------------------------------------------------------------------


class WSGIApp:
    """The dashboard and the stream as one WSGI application: the page at its mount point's ``/``, the stream at
    ``/hystrix.stream``, the proxy (if on) at ``/proxy.stream``. Made by `wsgi_app`; call `close` on shutdown.
    """

    def __init__(
        self, *, stream: _stream.WSGIApp | None = None, streams: Sequence[str] | None = None, proxy: bool = False
    ) -> None:
        self.stream = _stream.wsgi_app() if stream is None else stream
        self._streams = _streams(streams)
        self._proxy = bool(proxy)
        self._relays = Relays(limit=5)

    def __repr__(self) -> str:
        return f"<dashboard.WSGIApp streams={self._streams} proxy={self._proxy} stream={self.stream!r}>"

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "") or ""
        if path == "":  # mounted at /prefix and asked for /prefix: the page's relative links need the slash
            location = urllib.parse.quote(environ.get("SCRIPT_NAME", "")) + "/"
            start_response("301 Moved Permanently", [("Location", location), ("Content-Type", "text/plain")])
            return [b""]
        if path == _stream.STREAM_PATH:
            return self.stream(environ, start_response)
        if environ.get("REQUEST_METHOD", "GET") != "GET":
            start_response("405 Method Not Allowed", [("Allow", "GET"), ("Content-Type", "text/plain")])
            return [b"the dashboard answers GET only\n"]
        if path == PROXY_PATH and self._proxy:
            return self._relay(environ.get("QUERY_STRING", ""), start_response)
        found = _body(path, self._streams, self._proxy)
        if found is None:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [f"nothing at {path}\n".encode()]
        body, kind = found
        start_response("200 OK", [("Content-Type", kind), ("Content-Length", str(len(body))), _NO_CACHE])
        return [body]

    def _relay(self, query: str, start_response: StartResponse) -> Iterable[bytes]:
        relay = None
        try:
            relay = Relay(origin_of(query))
            self._relays.add(relay)
            relay.open()
        except ProxyError as error:
            if relay is not None:
                self._relays.discard(relay)
            start_response(f"{error.status} {http.HTTPStatus(error.status).phrase}", [("Content-Type", "text/plain")])
            return [(error.reason + "\n").encode()]
        start_response("200 OK", list(_stream.HEADERS))
        return _RelayBody(self._relays, relay)

    def close(self) -> None:
        """End every stream and relay, and stop the stream's thread."""
        self._relays.close()
        self.stream.close()


class _RelayBody:
    """A relayed stream as a WSGI body: the server calls ``close()`` when the page goes away."""

    def __init__(self, relays: Relays, relay: Relay) -> None:
        self._relays = relays
        self._relay = relay
        self._chunks = relay.chunks()

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks

    def close(self) -> None:
        self._relays.discard(self._relay)


def wsgi_app(
    *, stream: _stream.WSGIApp | None = None, streams: Sequence[str] | None = None, proxy: bool = False
) -> WSGIApp:
    """The dashboard and its stream as one WSGI application, to mount anywhere (call its ``close()`` on shutdown).

    Args:
        stream: The stream to serve at ``hystrix.stream`` (default: ``breaker.stream.wsgi_app()``).
        streams, proxy: See `page`.
    """
    return WSGIApp(stream=stream, streams=streams, proxy=proxy)


# -- ASGI -------------------------------------------------------------------------------------------------------


class ASGIApp:
    """The dashboard and the stream as one raw ASGI 3 application (see `WSGIApp`); it handles ``lifespan`` too.

    A relayed stream is read on a thread of its own (the stdlib has no asynchronous HTTP client), which the
    request's task starts and joins; the event loop never blocks.
    """

    def __init__(
        self,
        *,
        stream: _stream.ASGIApp | None = None,
        streams: Sequence[str] | None = None,
        proxy: bool = False,
        send_timeout: float | timedelta = 10.0,
    ) -> None:
        self.stream = _stream.asgi_app() if stream is None else stream
        self._streams = _streams(streams)
        self._proxy = bool(proxy)
        self._relays = Relays(limit=5)
        self._send_timeout = seconds("send_timeout", send_timeout)
        for name, _ in ASSETS.values():
            _asset(name)  # read the packaged files now: not on the event loop, at the first request

    def __repr__(self) -> str:
        return f"<dashboard.ASGIApp streams={self._streams} proxy={self._proxy} stream={self.stream!r}>"

    async def __call__(self, scope: _stream.Scope, receive: _stream.Receive, send: _stream.Send) -> None:
        if scope["type"] == "lifespan":
            await self.stream(scope, receive, self._on_lifespan(send))
            return
        if scope["type"] != "http":
            raise ValueError(f"the dashboard speaks HTTP only, got an ASGI {scope['type']!r} connection")
        path = scope.get("path", "")
        root = scope.get("root_path", "")
        if path.startswith(root):
            path = path[len(root) :]
        if path == "":
            await _stream._asgi_reply(send, 301, b"", [(b"location", (root + "/").encode("latin-1"))])
        elif path == _stream.STREAM_PATH:
            await self.stream(scope, receive, send)
        elif scope.get("method", "GET") != "GET":
            await _stream._asgi_reply(send, 405, b"the dashboard answers GET only\n", [(b"allow", b"GET")])
        elif path == PROXY_PATH and self._proxy:
            await self._relay(scope.get("query_string", b"").decode("latin-1"), receive, send)
        elif (found := _body(path, self._streams, self._proxy)) is None:
            await _stream._asgi_reply(send, 404, f"nothing at {path}\n".encode())
        else:
            body, kind = found
            headers = [(b"content-type", kind.encode()), (b"cache-control", b"no-cache")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})

    def _on_lifespan(self, send: _stream.Send) -> _stream.Send:
        async def forward(message: _stream.Message) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                self._relays.close()
            await send(message)

        return forward

    async def _relay(self, query: str, receive: _stream.Receive, send: _stream.Send) -> None:
        try:
            relay = Relay(origin_of(query))
            self._relays.add(relay)
        except ProxyError as error:
            await _stream._asgi_reply(send, error.status, (error.reason + "\n").encode())
            return
        loop = asyncio.get_running_loop()
        items: asyncio.Queue[bytes | ProxyError | None] = asyncio.Queue()

        def post(item: bytes | ProxyError | None) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is left to read it
                loop.call_soon_threadsafe(items.put_nowait, item)

        def pump() -> None:
            try:
                relay.open()
                post(b"")  # the head is fine: the task answers 200
                for chunk in relay.chunks():
                    post(chunk)
            except ProxyError as error:
                post(error)
            finally:
                post(None)

        thread = threading.Thread(target=pump, name="breaker-dashboard-relay", daemon=True)
        thread.start()
        watcher = asyncio.ensure_future(_watch_disconnect(receive, relay))
        item: bytes | ProxyError | None = b""
        try:
            item = await items.get()
            if isinstance(item, ProxyError):
                await _stream._asgi_reply(send, item.status, (item.reason + "\n").encode())
            elif item is not None:
                headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in _stream.HEADERS]
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                while isinstance(item := await items.get(), bytes):
                    body = {"type": "http.response.body", "body": item, "more_body": True}
                    await asyncio.wait_for(send(body), self._send_timeout)
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except (OSError, asyncio.TimeoutError):
            pass  # the page went away, or stopped reading for send_timeout
        finally:
            self._relays.discard(relay)  # wakes the pump if it is still reading
            watcher.cancel()
            while item is not None:  # the pump's last word: after it, its thread is done
                item = await items.get()
            await asyncio.to_thread(thread.join)  # at once, but not on the loop: the thread may not have exited

    def close(self) -> None:
        """End every stream and relay, and stop the stream's thread (call it off the event loop)."""
        self._relays.close()
        self.stream.close()


async def _watch_disconnect(receive: _stream.Receive, relay: Relay) -> None:
    with contextlib.suppress(Exception):  # a receive that fails means the page is gone just as well
        while (await receive())["type"] != "http.disconnect":
            pass
    relay.close()


def asgi_app(
    *,
    stream: _stream.ASGIApp | None = None,
    streams: Sequence[str] | None = None,
    proxy: bool = False,
    send_timeout: float | timedelta = 10.0,
) -> ASGIApp:
    """The dashboard and its stream as one raw ASGI 3 application, to mount anywhere; it handles ``lifespan``.

    Args:
        stream: The stream to serve at ``hystrix.stream`` (default: ``breaker.stream.asgi_app()``).
        streams, proxy: See `page`.
        send_timeout: Seconds a write of a relayed stream may wait for a page that stopped reading. Default 10.
    """
    return ASGIApp(stream=stream, streams=streams, proxy=proxy, send_timeout=send_timeout)
