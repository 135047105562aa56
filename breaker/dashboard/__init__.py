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
streams through its server's ``/proxy.stream?origin=<url>``, as Hystrix's dashboard did.

What any web page open in the same browser could make it do, it may not (`breaker.dashboard._proxy` has the
details). The proxy is off unless ``proxy=True`` (``python -m breaker dashboard --proxy``); it relays only for the
dashboard's own page (a secret token in the page, same-origin fetch metadata), only the absolute ``streams`` named
at start and the ``allowed_upstreams``, exactly, and only their ``200 text/event-stream`` answers (no redirect);
a refused or failing request never holds one of its 5 slots. Every response has a ``Host`` checked against DNS
rebinding (the server's own address, loopback names, ``allowed_hosts``; 403 otherwise) and carries
`breaker.stream.SECURITY_HEADERS`; the page's Content-Security-Policy allows its own script, style and stream
connections only (the origins of its ``streams`` too, with the proxy off), and no page may frame it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http.server
import threading
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Final

from breaker import stream as _stream
from breaker._core.validation import seconds
from breaker.stream._http import SECURITY_HEADERS, AllowedHosts
from breaker.stream._publisher import Circuits

from ._page import ASSETS, TEXT_HEADERS, Setup, check_token, render, stream_list
from ._page import asset as _asset
from ._proxy import PROXY_PATH, Proxy, ProxyError, Relay, Relays, page_path

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = ["ASSETS", "PROXY_PATH", "ASGIApp", "WSGIApp", "asgi_app", "page", "routes", "serve", "wsgi_app"]

_RELAYED: Final = (*_stream.HEADERS, *SECURITY_HEADERS)  # a relayed stream's own headers are not passed on


def page(*, streams: Sequence[str] | None = None, proxy: bool = False, proxy_token: str | None = None) -> bytes:
    """The dashboard's HTML, set to read ``streams``.

    Args:
        streams: Stream URLs the page reads when its address names none (``?stream=``): relative URLs (resolved
            against the page's), or absolute http(s) ones. Default: the stream next to the page
            (``["hystrix.stream"]``).
        proxy: Whether the page's server relays other origins' streams at ``proxy.stream``.
        proxy_token: With ``proxy``, the secret the proxy requires of every request (`serve`, `routes` and the
            apps make one for the page they serve).

    Raises:
        TypeError: ``streams`` is not a sequence of strings.
        ValueError: A stream with a scheme or host is not an absolute http(s) URL; ``proxy`` without a
            ``proxy_token`` (16 or more URL-safe characters), or a ``proxy_token`` without ``proxy``.
    """
    chosen = stream_list(streams)
    token = check_token(proxy_token, proxy)
    return render(chosen, None if token is None else page_path(token))


# -- the stdlib server ------------------------------------------------------------------------------------------


def routes(
    *, streams: Sequence[str] | None = None, proxy: bool = False, allowed_upstreams: Sequence[str] = ()
) -> dict[str, _stream.Route]:
    """The dashboard's pages as ``routes`` for `breaker.stream.serve` (what `serve` passes it).

    Serve them with ``allowed_hosts`` (`serve` does) so that no DNS rebinding can reach the page or the proxy.

    Args:
        streams, proxy, allowed_upstreams: See `serve`.

    Raises:
        TypeError, ValueError: A bad option, named in the message.
    """
    setup = Setup(streams, proxy, allowed_upstreams)

    def asset(handler: http.server.BaseHTTPRequestHandler) -> None:
        found = setup.response(urllib.parse.urlsplit(handler.path).path)
        assert found is not None  # routed here by its path
        body, headers = found
        handler.send_response(200)
        for header, value in headers:
            handler.send_header(header, value)
        handler.end_headers()
        handler.wfile.write(body)

    table: dict[str, _stream.Route] = dict.fromkeys(ASSETS, asset)
    if setup.proxy is not None:
        table[PROXY_PATH] = functools.partial(_relay, setup.proxy)
    return table


def _relay(proxy: Proxy, handler: http.server.BaseHTTPRequestHandler) -> None:
    """Relay the stream named by the request's ``origin`` to the client, until either side ends or the server."""
    server: _stream.StreamServer = getattr(handler, "owner")  # noqa: B009 - set on the handler's class per server
    try:
        relay = proxy.admit(
            urllib.parse.urlsplit(handler.path).query,
            fetch_site=handler.headers.get("Sec-Fetch-Site"),
            origin=handler.headers.get("Origin"),
            host=handler.headers.get("Host"),
        )
        proxy.relays.add(relay)  # the slot: taken only by a request that passed every check
    except ProxyError as error:
        _reply(handler, error.status, error.reason)
        return
    try:
        try:
            if not server._on_close(proxy.relays.close):
                raise ProxyError(503, "the server is closing")
            relay.open()
        except ProxyError as error:
            _reply(handler, error.status, error.reason)
            return
        handler.send_response(200)
        for header, value in _RELAYED:
            handler.send_header(header, value)
        handler.end_headers()
        for chunk in relay.chunks():
            handler.wfile.write(chunk)
            handler.wfile.flush()
    except OSError:
        pass  # the page went away, or stopped reading: the relay ends
    finally:
        proxy.relays.discard(relay)  # whatever happened, the slot is free again


def _reply(handler: http.server.BaseHTTPRequestHandler, status: int, text: str) -> None:
    body = (text + "\n").encode()
    handler.send_response(status)
    for header, value in TEXT_HEADERS:
        handler.send_header(header, value)
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
    allowed_upstreams: Sequence[str] = (),
    allowed_hosts: Sequence[str] = (),
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
        streams: See `page`.
        proxy: Relay the streams of other origins at ``/proxy.stream`` for the page (off by default).
        allowed_upstreams: Stream URLs the proxy may relay besides the absolute ``streams`` (which it may): a URL
            typed into the page is relayed only if it is one of those, exactly. Only with ``proxy``.
        allowed_hosts: Host names the dashboard is reached by besides its address (and, on loopback,
            ``localhost``, ``127.0.0.1`` and ``[::1]``): a request whose ``Host`` names another gets 403, against
            DNS rebinding. ``["*"]``: any.
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
        routes=routes(streams=streams, proxy=proxy, allowed_upstreams=allowed_upstreams),
        allowed_hosts=allowed_hosts,
    )


# -- WSGI -------------------------------------------------------------------------------------------------------


class WSGIApp:
    """The dashboard and the stream as one WSGI application: the page at its mount point's ``/``, the stream at
    ``/hystrix.stream``, the proxy (if on) at ``/proxy.stream``. Made by `wsgi_app`; call `close` on shutdown.

    Args:
        stream, streams, proxy, allowed_upstreams, allowed_hosts: See `wsgi_app`.

    Raises:
        TypeError, ValueError: A bad option, named in the message.
    """

    def __init__(
        self,
        *,
        stream: _stream.WSGIApp | None = None,
        streams: Sequence[str] | None = None,
        proxy: bool = False,
        allowed_upstreams: Sequence[str] = (),
        allowed_hosts: Sequence[str] = (),
    ) -> None:
        self._setup = Setup(streams, proxy, allowed_upstreams)
        self._hosts = AllowedHosts(allowed_hosts)
        self.stream = _stream.wsgi_app() if stream is None else stream

    def __repr__(self) -> str:
        return f"<dashboard.WSGIApp {self._setup!r} {self._hosts!r} stream={self.stream!r}>"

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        host = environ.get("HTTP_HOST")
        if refused := self._hosts.refusal([] if host is None else [host], None):
            return _wsgi_reply(start_response, *refused)
        path = environ.get("PATH_INFO", "") or ""
        if path == "":  # mounted at /prefix and asked for /prefix: the page's relative links need the slash
            location = urllib.parse.quote(environ.get("SCRIPT_NAME", "")) + "/"
            start_response("301 Moved Permanently", [("Location", location), *TEXT_HEADERS])
            return [b""]
        if path == _stream.STREAM_PATH:
            return self.stream(environ, start_response)
        if environ.get("REQUEST_METHOD", "GET") != "GET":
            start_response("405 Method Not Allowed", [("Allow", "GET"), *TEXT_HEADERS])
            return [b"the dashboard answers GET only\n"]
        proxy = self._setup.proxy
        if path == PROXY_PATH and proxy is not None:
            return self._relay(proxy, environ, start_response)
        found = self._setup.response(path)
        if found is None:
            return _wsgi_reply(start_response, 404, f"nothing at {path}")
        body, headers = found
        start_response("200 OK", headers)
        return [body]

    def _relay(self, proxy: Proxy, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        try:
            relay = proxy.admit(
                environ.get("QUERY_STRING", ""),
                fetch_site=environ.get("HTTP_SEC_FETCH_SITE"),
                origin=environ.get("HTTP_ORIGIN"),
                host=environ.get("HTTP_HOST"),
            )
            proxy.relays.add(relay)  # the slot: taken only by a request that passed every check
        except ProxyError as error:
            return _wsgi_reply(start_response, error.status, error.reason)
        handed_over = False
        try:
            relay.open()
            start_response("200 OK", list(_RELAYED))
            body = _RelayBody(proxy.relays, relay)
            handed_over = True  # from now on the body's close(), which the server calls, frees the slot
            return body
        except ProxyError as error:
            return _wsgi_reply(start_response, error.status, error.reason)
        finally:
            if not handed_over:
                proxy.relays.discard(relay)

    def close(self) -> None:
        """End every stream and relay, and stop the stream's thread."""
        if self._setup.proxy is not None:
            self._setup.proxy.relays.close()
        self.stream.close()


def _wsgi_reply(start_response: StartResponse, status: int, text: str) -> list[bytes]:
    start_response(f"{status} {http.HTTPStatus(status).phrase}", list(TEXT_HEADERS))
    return [(text + "\n").encode()]


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
    *,
    stream: _stream.WSGIApp | None = None,
    streams: Sequence[str] | None = None,
    proxy: bool = False,
    allowed_upstreams: Sequence[str] = (),
    allowed_hosts: Sequence[str] = (),
) -> WSGIApp:
    """The dashboard and its stream as one WSGI application, to mount anywhere (call its ``close()`` on shutdown).

    Args:
        stream: The stream to serve at ``hystrix.stream`` (default: ``breaker.stream.wsgi_app()``).
        streams, proxy, allowed_upstreams: See `serve`.
        allowed_hosts: Host names the app is reached by: a mounted app cannot know its server's, so it answers a
            ``Host`` that is an IP address or ``localhost`` (no DNS rebinding can send those) and these names;
            others get 403. ``["*"]``: any (when the server in front checks ``Host`` itself).

    Raises:
        TypeError, ValueError: A bad option, named in the message.
    """
    return WSGIApp(
        stream=stream, streams=streams, proxy=proxy, allowed_upstreams=allowed_upstreams, allowed_hosts=allowed_hosts
    )


# -- ASGI -------------------------------------------------------------------------------------------------------


class ASGIApp:
    """The dashboard and the stream as one raw ASGI 3 application (see `WSGIApp`); it handles ``lifespan`` too.

    A relayed stream is read on a thread of its own (the stdlib has no asynchronous HTTP client), which the
    request's task starts and joins; the event loop never blocks.

    Args:
        stream, streams, proxy, allowed_upstreams, allowed_hosts, send_timeout: See `asgi_app`.

    Raises:
        TypeError, ValueError: A bad option, named in the message.
    """

    def __init__(
        self,
        *,
        stream: _stream.ASGIApp | None = None,
        streams: Sequence[str] | None = None,
        proxy: bool = False,
        allowed_upstreams: Sequence[str] = (),
        allowed_hosts: Sequence[str] = (),
        send_timeout: float | timedelta = 10.0,
    ) -> None:
        self._setup = Setup(streams, proxy, allowed_upstreams)
        self._hosts = AllowedHosts(allowed_hosts)
        self._send_timeout = seconds("send_timeout", send_timeout)
        self.stream = _stream.asgi_app() if stream is None else stream
        for name, _ in ASSETS.values():
            _asset(name)  # read the packaged files now: not on the event loop, at the first request

    def __repr__(self) -> str:
        return f"<dashboard.ASGIApp {self._setup!r} {self._hosts!r} stream={self.stream!r}>"

    async def __call__(self, scope: _stream.Scope, receive: _stream.Receive, send: _stream.Send) -> None:
        if scope["type"] == "lifespan":
            await self.stream(scope, receive, self._on_lifespan(send))
            return
        if scope["type"] != "http":
            raise ValueError(f"the dashboard speaks HTTP only, got an ASGI {scope['type']!r} connection")
        headers = _request_headers(scope)
        if refused := self._hosts.refusal(headers.get("host", []), None):
            await _stream._asgi_reply(send, refused[0], (refused[1] + "\n").encode())
            return
        path = scope.get("path", "")
        root = scope.get("root_path", "")
        if path.startswith(root):
            path = path[len(root) :]
        proxy = self._setup.proxy
        if path == "":
            await _stream._asgi_reply(send, 301, b"", [(b"location", (root + "/").encode("latin-1"))])
        elif path == _stream.STREAM_PATH:
            await self.stream(scope, receive, send)
        elif scope.get("method", "GET") != "GET":
            await _stream._asgi_reply(send, 405, b"the dashboard answers GET only\n", [(b"allow", b"GET")])
        elif path == PROXY_PATH and proxy is not None:
            await self._relay(proxy, scope.get("query_string", b"").decode("latin-1"), headers, receive, send)
        elif (found := self._setup.response(path)) is None:
            await _stream._asgi_reply(send, 404, f"nothing at {path}\n".encode())
        else:
            body, found_headers = found
            await send({"type": "http.response.start", "status": 200, "headers": _asgi_headers(found_headers)})
            await send({"type": "http.response.body", "body": body})

    def _on_lifespan(self, send: _stream.Send) -> _stream.Send:
        async def forward(message: _stream.Message) -> None:
            if message["type"] == "lifespan.shutdown.complete" and self._setup.proxy is not None:
                self._setup.proxy.relays.close()
            await send(message)

        return forward

    async def _relay(
        self,
        proxy: Proxy,
        query: str,
        headers: dict[str, list[str]],
        receive: _stream.Receive,
        send: _stream.Send,
    ) -> None:
        def first(name: str) -> str | None:
            return headers[name][0] if headers.get(name) else None

        try:
            relay = proxy.admit(query, fetch_site=first("sec-fetch-site"), origin=first("origin"), host=first("host"))
            proxy.relays.add(relay)  # the slot: taken only by a request that passed every check
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
        item: bytes | ProxyError | None = None  # until the thread runs, there is no last word of its to wait for
        watcher: asyncio.Future[None] | None = None
        try:
            thread.start()
            item = b""
            watcher = asyncio.ensure_future(_watch_disconnect(receive, relay))
            item = await items.get()
            if isinstance(item, ProxyError):
                await _stream._asgi_reply(send, item.status, (item.reason + "\n").encode())
            elif item is not None:
                await send({"type": "http.response.start", "status": 200, "headers": _asgi_headers(_RELAYED)})
                while isinstance(item := await items.get(), bytes):
                    body = {"type": "http.response.body", "body": item, "more_body": True}
                    await asyncio.wait_for(send(body), self._send_timeout)
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except (OSError, asyncio.TimeoutError):
            pass  # the page went away, or stopped reading for send_timeout
        finally:
            proxy.relays.discard(relay)  # the slot is free again, and the pump wakes if it is still reading
            if watcher is not None:
                watcher.cancel()
            while item is not None:  # the pump's last word: after it, its thread is done
                item = await items.get()
            if thread.ident is not None:
                await asyncio.to_thread(thread.join)  # at once, but not on the loop: the thread may not have exited

    def close(self) -> None:
        """End every stream and relay, and stop the stream's thread (call it off the event loop)."""
        if self._setup.proxy is not None:
            self._setup.proxy.relays.close()
        self.stream.close()


def _request_headers(scope: _stream.Scope) -> dict[str, list[str]]:
    """The request's headers by lower-case name, each with all its values."""
    headers: dict[str, list[str]] = {}
    for name, value in scope.get("headers", ()):
        headers.setdefault(name.decode("latin-1").lower(), []).append(value.decode("latin-1"))
    return headers


def _asgi_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]


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
    allowed_upstreams: Sequence[str] = (),
    allowed_hosts: Sequence[str] = (),
    send_timeout: float | timedelta = 10.0,
) -> ASGIApp:
    """The dashboard and its stream as one raw ASGI 3 application, to mount anywhere; it handles ``lifespan``.

    Args:
        stream: The stream to serve at ``hystrix.stream`` (default: ``breaker.stream.asgi_app()``).
        streams, proxy, allowed_upstreams: See `serve`.
        allowed_hosts: See `wsgi_app`.
        send_timeout: Seconds a write of a relayed stream may wait for a page that stopped reading. Default 10.

    Raises:
        TypeError, ValueError: A bad option, named in the message.
    """
    return ASGIApp(
        stream=stream,
        streams=streams,
        proxy=proxy,
        allowed_upstreams=allowed_upstreams,
        allowed_hosts=allowed_hosts,
        send_timeout=send_timeout,
    )
