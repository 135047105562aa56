"""breaker.dashboard, server side: the page and its config, the assets, the stream next to them, mounting under a
prefix, the stream proxy (`breaker.dashboard._proxy`), closing, and ``python -m breaker dashboard``. No browser.

Every server runs for real on 127.0.0.1: the stdlib one (`breaker.dashboard.serve`), the WSGI app behind wsgiref,
the ASGI app behind uvicorn. Upstreams are a second `breaker.stream.serve` (a live Hystrix stream, which answers
HTTP/1.0 and ends its body by closing the connection) and `QuietUpstream`, a raw socket server that answers a
stream's head and one ping and then stays silent (chunked as Java Hystrix, or ended by the connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import html
import html.parser
import http.client
import http.server
import importlib.resources
import json
import logging
import os
import re
import select
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
import types
import urllib.parse
import wsgiref.simple_server
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from typing import TYPE_CHECKING, Any, Literal

import blockbuster
import pytest
import uvicorn

import breaker
import breaker.dashboard
import breaker.dashboard._page
import breaker.stream
from breaker.dashboard._proxy import ProxyError, Relay, Relays, Upstreams, origin_of, parse_stream_url
from breaker.stream import StreamServer
from breaker.testing import FakeClock

if TYPE_CHECKING:  # imported as a plugin, below: importing it here first would keep pytest from rewriting it
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from victim_support import Victim

pytest_plugins = ["victim_support"]

Json = dict[str, Any]
Kind = Literal["stdlib", "wsgi", "asgi"]
KINDS: list[Kind] = ["stdlib", "wsgi", "asgi"]
MOUNTABLE: list[Kind] = ["wsgi", "asgi"]  # the stdlib server serves at / only
UpstreamKind = Literal["hystrix", "quiet-chunked", "quiet-close"]
UPSTREAMS: list[UpstreamKind] = ["hystrix", "quiet-chunked", "quiet-close"]
WAIT = 5.0  # seconds: the bound on any wait for something that should take milliseconds
STATIC = importlib.resources.files("breaker.dashboard").joinpath("static")


# -- helpers --------------------------------------------------------------------------------------------------------


def eventually(predicate: Callable[[], bool], timeout: float = WAIT) -> None:
    """Wait until ``predicate()`` holds (a bound on a wait, not a guess at how long something takes)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting for the condition"
        time.sleep(0.005)


def board_threads() -> list[str]:
    """Names of the threads a dashboard or a stream server runs (none may outlive its close)."""
    return [
        t.name
        for t in threading.enumerate()
        if t.name.startswith("breaker-stream") or t.name == "breaker-dashboard-relay"
    ]


PROXY_CONFIG = re.compile(r"proxy\.stream\?token=[A-Za-z0-9_-]{40,}")


def proxy_of(config: Json) -> str:
    """The page config's proxy path: proxy.stream with the proxy's secret token."""
    proxy = config["proxy"]
    assert isinstance(proxy, str)
    assert PROXY_CONFIG.fullmatch(proxy), proxy
    return proxy


def closed_port() -> int:
    """A port nothing listens on: bound, then released."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class Client:
    """One request with http.client; for streams, reads the server-sent events as they come (a ping is None)."""

    def __init__(self, port: int, path: str, method: str = "GET", timeout: float = WAIT) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            self.connection.request(method, path)
            self.response = self.connection.getresponse()
        except BaseException:
            self.connection.close()
            raise
        self.status = self.response.status

    def header(self, name: str) -> str | None:
        return self.response.getheader(name)

    def close(self) -> None:
        self.response.close()
        self.connection.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def events(self) -> Iterator[Json | None]:
        data: list[bytes] = []
        ping = False
        while line := self.response.readline():
            if line == b"\n":
                assert len(data) + ping == 1, f"one field per message, got {data!r} ping={ping}"
                yield json.loads(data[0]) if data else None
                data, ping = [], False
            elif line.startswith(b"data: "):
                data.append(line[len(b"data: ") : -1])
            elif line == b"ping: \n":
                ping = True
            else:
                raise AssertionError(f"not a line of a Hystrix stream: {line!r}")

    def command(self, name: str, timeout: float = WAIT) -> Json:
        """The first HystrixCommand message of ``name``, within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        for event in self.events():
            if event is not None and event["type"] == "HystrixCommand" and event["name"] == name:
                return event
            assert time.monotonic() < deadline, f"no HystrixCommand message of {name!r}"
        raise AssertionError("the stream ended")

    def ends_within(self, seconds: float) -> bool:
        """Reads the body to its end: whether it ended within ``seconds`` (a body that goes on, or falls silent
        for the client's timeout, has not)."""
        deadline = time.monotonic() + seconds
        try:
            while self.response.read1(65536):
                if time.monotonic() > deadline:
                    return False
        except TimeoutError:
            return False
        except (http.client.IncompleteRead, ConnectionError):
            pass  # cut off: ended just as well
        return time.monotonic() <= deadline


@dataclasses.dataclass
class Reply:
    status: int | None  # None: the server closed the connection without answering
    headers: dict[str, str]
    body: bytes


def fetch(port: int, path: str, method: str = "GET") -> Reply:
    """A whole (finite) response."""
    try:
        with Client(port, path, method) as client:
            headers = {k.lower(): v for k, v in client.response.getheaders()}
            return Reply(client.status, headers, client.response.read())
    except http.client.RemoteDisconnected:
        return Reply(None, {}, b"")


class _MetaReader(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.configs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "meta" and values.get("name") == "breaker-config":
            self.configs.append(values.get("content") or "")


def config_of(page: bytes) -> Json:
    """The JSON of the page's ``<meta name="breaker-config">``, read as a browser reads the attribute."""
    assert b"__BREAKER_CONFIG__" not in page
    reader = _MetaReader()
    reader.feed(page.decode("utf-8"))
    reader.close()
    assert len(reader.configs) == 1, reader.configs
    config: Json = json.loads(reader.configs[0])
    return config


def check_stream_headers(client: Client) -> None:
    for name, value in breaker.stream.HEADERS:
        assert client.header(name) == value, name


# -- upstreams ------------------------------------------------------------------------------------------------------

_QUIET_HEADS = {
    # Java Hystrix's servlet: HTTP/1.1, chunked.
    "quiet-chunked": b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream;charset=UTF-8\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n8\r\nping: \n\n\r\n",
    # breaker.stream.serve's framing: HTTP/1.0, the body ends with the connection.
    "quiet-close": b"HTTP/1.0 200 OK\r\nContent-Type: text/event-stream;charset=UTF-8\r\n\r\nping: \n\n",
}


#: Answers that are not a stream to relay, with what the proxy's reason says of them.
NOT_STREAMS = {
    "404-close": (b"HTTP/1.0 404 Not Found\r\nContent-Type: text/plain\r\n\r\n", "answered 404 'text/plain'"),
    "html-close": (b"HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\n<p>", "answered 200 'text/html'"),
    "html-chunked": (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n<p>\r\n",
        "answered 200 'text/html'",
    ),
    "no-type": (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n<p>", "answered 200 ''"),
    "503-stream": (
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/event-stream\r\nContent-Length: 0\r\n\r\n",
        "answered 503 'text/event-stream'",
    ),
}


class QuietUpstream:
    """A raw socket server: to each request it answers ``head`` (a stream's head and one ping), then nothing more.

    ``requests`` holds the request heads it read; ``left`` is set once a client closes its connection.
    """

    def __init__(self, head: bytes) -> None:
        self._head = head
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)  # the accept loop checks _stop this often
        self.port: int = self._listener.getsockname()[1]
        self.requests: list[bytes] = []
        self.left = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()  # the connections and threads: accepted on one thread, closed from another
        self._connections: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._accepter = threading.Thread(target=self._accept, name="quiet-upstream")
        self._accepter.start()

    def url(self, path: str = "/hystrix.stream") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            connection.settimeout(60)
            thread = threading.Thread(target=self._serve, args=(connection,), name="quiet-upstream-connection")
            with self._lock:
                self._connections.append(connection)
                self._threads.append(thread)
            thread.start()

    def _serve(self, connection: socket.socket) -> None:
        try:
            request = b""
            while b"\r\n\r\n" not in request:
                data = connection.recv(65536)
                if not data:
                    return
                request += data
            self.requests.append(request)
            connection.sendall(self._head)
            while connection.recv(65536):  # silent until the client leaves
                pass
        except OSError:
            pass  # reset by the client: gone just as well
        finally:
            self.left.set()

    def close(self) -> None:
        self._stop.set()
        self._accepter.join(WAIT)
        with self._lock:
            connections, threads = list(self._connections), list(self._threads)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(WAIT)
        for connection in connections:
            connection.close()
        self._listener.close()


@dataclasses.dataclass
class Upstream:
    """A stream to relay: its URL, and whether the relay's connection to it has gone."""

    url: str
    left: Callable[[], bool]
    close: Callable[[], None]


# -- dashboards -----------------------------------------------------------------------------------------------------


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, wsgiref.simple_server.WSGIServer):
    daemon_threads = False  # server_close() joins the request threads


class _QuietHandler(wsgiref.simple_server.WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def recording_wsgi(app: WSGIApplication, errors: list[BaseException]) -> WSGIApplication:
    """``app``, recording what it raises, also while its body is read (wsgiref would only log it)."""

    def run(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        try:
            body = app(environ, start_response)
        except Exception as error:
            errors.append(error)
            raise
        return _RecordedBody(body, errors)

    return run


class _RecordedBody:
    def __init__(self, body: Iterable[bytes], errors: list[BaseException]) -> None:
        self._body = body
        self._errors = errors

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._body
        except Exception as error:
            self._errors.append(error)
            raise

    def close(self) -> None:
        close = getattr(self._body, "close", None)
        if close is not None:
            close()


def mounted_wsgi(app: WSGIApplication, prefix: str) -> WSGIApplication:
    """A dispatcher mounting ``app`` at ``prefix``, as frameworks do: the prefix moves to SCRIPT_NAME."""

    def dispatch(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path != prefix and not path.startswith(prefix + "/"):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not mounted here\n"]
        environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + prefix
        environ["PATH_INFO"] = path[len(prefix) :]
        return app(environ, start_response)

    return dispatch


ASGIApplication = Callable[[breaker.stream.Scope, breaker.stream.Receive, breaker.stream.Send], Any]


def recording_asgi(app: ASGIApplication, errors: list[BaseException]) -> ASGIApplication:
    """``app``, recording what it raises (also after its response is complete, where uvicorn would only log it)."""

    async def run(scope: breaker.stream.Scope, receive: breaker.stream.Receive, send: breaker.stream.Send) -> None:
        try:
            await app(scope, receive, send)
        except Exception as error:
            errors.append(error)
            raise

    return run


def mounted_asgi(app: ASGIApplication, prefix: str) -> ASGIApplication:
    """A dispatcher mounting ``app`` at ``prefix``, as ASGI asks: ``root_path`` gets the prefix, ``path`` keeps it."""

    async def dispatch(scope: breaker.stream.Scope, receive: breaker.stream.Receive, send: breaker.stream.Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if path != prefix and not path.startswith(prefix + "/"):
                await breaker.stream._asgi_reply(send, 404, b"not mounted here\n")
                return
            scope = {**scope, "root_path": scope.get("root_path", "") + prefix}
        await app(scope, receive, send)

    return dispatch


@dataclasses.dataclass
class Board:
    """A dashboard being served: ``close`` closes the dashboard (server or app), ``stop`` its server too."""

    kind: Kind
    port: int
    prefix: str
    close: Callable[[], None]
    stop: Callable[[], None]
    errors: list[BaseException]
    proxy_base: str = "proxy.stream"  # with the token its page holds, when the proxy is on

    def proxy(self, origin: str) -> str:
        """The path of a request to the proxy for ``origin``, as the dashboard's page makes it."""
        return self.proxy_query(urllib.parse.urlencode({"origin": origin}))

    def proxy_query(self, query: str) -> str:
        """The path of a request to the proxy with ``query`` after the page's token."""
        return f"{self.prefix}/{self.proxy_base}{'&' if '?' in self.proxy_base else '?'}{query}"


class Servers:
    """Starts what a test serves; at teardown closes the upstreams first (ending relays blocked on them), then
    the dashboards, and checks that nothing raised and no thread is left."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._upstreams: list[Callable[[], None]] = []
        self._boards: list[Board] = []
        self.errors: list[BaseException] = []  # what the stdlib servers' request handlers raised

        def handle_error(server: object, request: object, client_address: object) -> None:
            self.errors.append(sys.exc_info()[1] or RuntimeError("handle_error without an exception"))

        monkeypatch.setattr(breaker.stream._HTTPServer, "handle_error", handle_error)

    def hystrix(self, **options: Any) -> StreamServer:
        """A live Hystrix stream (a second `breaker.stream.serve`), an interval every 20 ms."""
        options.setdefault("interval", 0.02)
        options.setdefault("max_clients", 10)
        server = breaker.stream.serve("127.0.0.1", 0, block=False, **options)
        self._upstreams.append(server.close)
        return server

    def quiet(self, framing: Literal["quiet-chunked", "quiet-close"]) -> QuietUpstream:
        return self.raw(_QUIET_HEADS[framing])

    def raw(self, head: bytes) -> QuietUpstream:
        upstream = QuietUpstream(head)
        self._upstreams.append(upstream.close)
        return upstream

    def upstream(self, kind: UpstreamKind) -> Upstream:
        if kind == "hystrix":
            server = self.hystrix()
            return Upstream(server.url, lambda: server.statistics().clients == 0, server.close)
        quiet = self.quiet(kind)
        return Upstream(quiet.url(), quiet.left.is_set, quiet.close)

    def board(self, kind: Kind, *, prefix: str = "", **options: Any) -> Board:
        """A dashboard of ``kind`` on a port the OS picks; its stream publishes every 20 ms."""
        if kind == "stdlib":
            assert not prefix
            server = breaker.dashboard.serve("127.0.0.1", 0, block=False, interval=0.02, **options)
            board = Board(kind, server.port, "", server.close, server.close, self.errors)
        elif kind == "wsgi":
            board = self._wsgi(prefix, options)
        else:
            board = self._asgi(prefix, options)
        self._boards.append(board)
        if options.get("proxy"):
            board.proxy_base = proxy_of(config_of(fetch(board.port, f"{prefix}/").body))
        return board

    def _wsgi(self, prefix: str, options: Any) -> Board:
        app = breaker.dashboard.wsgi_app(stream=breaker.stream.wsgi_app(interval=0.02), **options)
        errors: list[BaseException] = []
        served = recording_wsgi(app, errors)
        server = wsgiref.simple_server.make_server(
            "127.0.0.1",
            0,
            mounted_wsgi(served, prefix) if prefix else served,
            server_class=_ThreadingWSGIServer,
            handler_class=_QuietHandler,
        )
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="wsgiref")
        thread.start()

        def stop() -> None:
            app.close()
            if thread.is_alive():
                server.shutdown()
                server.server_close()
                thread.join(WAIT)
                assert not thread.is_alive()

        return Board("wsgi", server.server_address[1], prefix, app.close, stop, errors)

    def _asgi(self, prefix: str, options: Any) -> Board:
        app = breaker.dashboard.asgi_app(stream=breaker.stream.asgi_app(interval=0.02), **options)
        errors: list[BaseException] = []
        served = recording_asgi(app, errors)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        config = uvicorn.Config(
            mounted_asgi(served, prefix) if prefix else served,
            log_level="warning",
            lifespan="on",
            ws="none",
            http="h11",
            loop="asyncio",
            timeout_graceful_shutdown=2,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uvicorn")
        thread.start()
        eventually(lambda: server.started or not thread.is_alive())
        assert server.started, "uvicorn did not start: the lifespan startup failed"

        def stop() -> None:
            server.should_exit = True
            thread.join(10)
            sock.close()
            assert not thread.is_alive(), "uvicorn did not stop: the lifespan shutdown did not complete"

        return Board("asgi", sock.getsockname()[1], prefix, app.close, stop, errors)

    def close(self) -> None:
        for close in [*reversed(self._upstreams), *(board.stop for board in reversed(self._boards))]:
            close()

    def all_errors(self) -> list[BaseException]:
        return [*self.errors, *(e for board in self._boards if board.kind != "stdlib" for e in board.errors)]


@pytest.fixture
def servers(monkeypatch: pytest.MonkeyPatch) -> Iterator[Servers]:
    """Runs the servers of a test; afterwards: no error raised in any of them, no thread of theirs left."""
    started = Servers(monkeypatch)
    try:
        yield started
    finally:
        started.close()
    assert started.all_errors() == []
    eventually(lambda: board_threads() == [])


def circuit_named(name: str) -> None:
    """A circuit made with ``@breaker.command``, called once (caller isolation: no pool thread)."""
    breaker.configure_command(name, breaker.CommandConfig(isolation="caller"))

    @breaker.command(name)
    def call() -> str:
        return "ok"

    assert call() == "ok"


# -- the page -------------------------------------------------------------------------------------------------------


def test_public_names_are_pinned() -> None:
    """breaker.dashboard exports exactly its documented names."""
    assert sorted(breaker.dashboard.__all__) == sorted(
        ["ASSETS", "PROXY_PATH", "ASGIApp", "WSGIApp", "asgi_app", "page", "routes", "serve", "wsgi_app"]
    )
    assert all(hasattr(breaker.dashboard, name) for name in breaker.dashboard.__all__)
    assert breaker.dashboard.PROXY_PATH == "/proxy.stream"
    assert set(breaker.dashboard.ASSETS) == {"/", "/dashboard.css", "/dashboard.js"}


def test_page_reads_the_stream_next_to_it_without_proxy_by_default() -> None:
    """page(): the config is {"streams": ["hystrix.stream"], "proxy": null}, the slot replaced."""
    assert config_of(breaker.dashboard.page()) == {"streams": ["hystrix.stream"], "proxy": None}


def test_page_holds_the_streams_and_proxy_given() -> None:
    """page(streams=..., proxy=True, proxy_token=T): the streams in order; the proxy at proxy.stream?token=T."""
    streams = ["http://a.example:8080/hystrix.stream", "relative.stream"]
    token = "t" * 43
    page = breaker.dashboard.page(streams=streams, proxy=True, proxy_token=token)
    assert config_of(page) == {"streams": streams, "proxy": f"proxy.stream?token={token}"}
    assert page.startswith(b"<!doctype html>")


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"proxy": True}, "needs proxy_token"),
        ({"proxy": True, "proxy_token": "short"}, "needs proxy_token"),
        ({"proxy": True, "proxy_token": "a&b=c" * 5}, "needs proxy_token"),
        ({"proxy_token": "t" * 43}, "with proxy=True only"),
    ],
    ids=["no-token", "short-token", "unsafe-token", "token-without-proxy"],
)
def test_page_refuses_a_proxy_without_its_token_and_a_token_without_proxy(options: Any, match: str) -> None:
    """page(): proxy=True needs a URL-safe proxy_token of 16+ characters; a token without the proxy: ValueError."""
    with pytest.raises(ValueError, match=match):
        breaker.dashboard.page(**options)


def test_page_config_is_html_escaped_json() -> None:
    """Quotes, angle brackets and ampersands in a stream URL are escaped: the attribute holds, no tag gets in."""
    streams = ['x"><script>alert(1)</script>', "http://h/s?a=1&b=2", "it's <b>bold</b>"]
    page = breaker.dashboard.page(streams=streams)
    found = re.search(rb'<meta name="breaker-config" content="([^"]*)">', page)
    assert found is not None, "the meta tag is cut short or malformed"
    raw = found.group(1).decode()
    assert not set("<>'") & set(raw)
    assert json.loads(html.unescape(raw)) == {"streams": streams, "proxy": None}
    assert config_of(page)["streams"] == streams
    assert b"<script>alert" not in page


@pytest.mark.parametrize(
    "streams",
    ["hystrix.stream", ["a", 1], ["a", ""], [None], b"abc"],
    ids=["a-str", "a-non-str", "an-empty-str", "none-item", "bytes"],
)
@pytest.mark.parametrize("make", ["page", "routes", "serve", "wsgi_app", "asgi_app"])
def test_bad_streams_are_refused_with_a_type_error_naming_them(streams: Any, make: str) -> None:
    """A str, or anything but non-empty strings, as ``streams``: TypeError naming streams (before binding)."""
    factories: dict[str, Callable[[], object]] = {
        "page": lambda: breaker.dashboard.page(streams=streams),
        "routes": lambda: breaker.dashboard.routes(streams=streams),
        "serve": lambda: breaker.dashboard.serve("127.0.0.1", 0, block=False, streams=streams),
        "wsgi_app": lambda: breaker.dashboard.wsgi_app(stream=breaker.stream.wsgi_app(), streams=streams),
        "asgi_app": lambda: breaker.dashboard.asgi_app(stream=breaker.stream.asgi_app(), streams=streams),
    }
    with pytest.raises(TypeError, match="streams"):
        factories[make]()


def test_routes_are_the_assets_and_the_proxy_only_when_on() -> None:
    """routes() maps the three assets; with proxy=True also /proxy.stream."""
    assert set(breaker.dashboard.routes()) == set(breaker.dashboard.ASSETS)
    assert set(breaker.dashboard.routes(proxy=True)) == {*breaker.dashboard.ASSETS, "/proxy.stream"}


# -- the servers: page, assets, stream ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_root_serves_the_page_with_its_config(kind: Kind, servers: Servers) -> None:
    """GET / answers 200 text/html with the page: default config, or the streams and proxy given."""
    plain = servers.board(kind)
    reply = fetch(plain.port, "/")
    assert (reply.status, reply.headers["content-type"]) == (200, "text/html; charset=utf-8")
    assert reply.body == breaker.dashboard.page()
    assert config_of(reply.body) == {"streams": ["hystrix.stream"], "proxy": None}

    streams = ["http://127.0.0.1:1/hystrix.stream", 'q"<&>']
    configured = servers.board(kind, streams=streams, proxy=True)
    reply = fetch(configured.port, "/")
    assert reply.status == 200
    assert config_of(reply.body)["streams"] == streams
    proxy_of(config_of(reply.body))


@pytest.mark.parametrize("kind", KINDS)
def test_assets_answer_with_their_content_types(kind: Kind, servers: Servers) -> None:
    """/dashboard.css and /dashboard.js answer 200, their packaged bytes, their types, not cached stale."""
    board = servers.board(kind)
    for path, name, kind_of in [
        ("/dashboard.css", "dashboard.css", "text/css; charset=utf-8"),
        ("/dashboard.js", "dashboard.js", "text/javascript; charset=utf-8"),
    ]:
        reply = fetch(board.port, path)
        assert (reply.status, reply.headers["content-type"]) == (200, kind_of)
        assert reply.headers["cache-control"] == "no-cache"
        assert reply.body == STATIC.joinpath(name).read_bytes()


@pytest.mark.parametrize("kind", KINDS)
def test_unknown_paths_are_404(kind: Kind, servers: Servers) -> None:
    """Paths that are not the page, an asset, the stream or an enabled proxy answer 404."""
    board = servers.board(kind)
    for path in ["/nothing", "/dashboard.html", "/_static/dashboard.js", "/proxy.stream", "/index.html"]:
        assert fetch(board.port, path).status == 404, path


@pytest.mark.parametrize("kind", KINDS)
def test_methods_other_than_get_are_405(kind: Kind, servers: Servers) -> None:
    """POST to the page, an asset, the proxy or the stream answers 405 with Allow: GET."""
    board = servers.board(kind, proxy=True)
    for path in ["/", "/dashboard.js", "/proxy.stream", "/hystrix.stream"]:
        reply = fetch(board.port, path, method="POST")
        assert (reply.status, reply.headers.get("allow")) == (405, "GET"), path


@pytest.mark.parametrize("kind", KINDS)
def test_the_stream_next_to_the_page_is_the_hystrix_stream(kind: Kind, servers: Servers) -> None:
    """/hystrix.stream answers with the stream's headers and a data: message of a circuit made here."""
    circuit_named("board.svc")
    board = servers.board(kind)
    with Client(board.port, "/hystrix.stream") as client:
        assert client.status == 200
        check_stream_headers(client)
        message = client.command("board.svc")
        assert (message["requestCount"], message["rollingCountSuccess"]) == (1, 1)


@pytest.mark.parametrize("kind", MOUNTABLE)
def test_mounted_under_a_prefix(kind: Kind, servers: Servers) -> None:
    """Under /board: /board redirects 301 to /board/, which serves the page; the stream and proxy are beneath."""
    circuit_named("mounted")
    board = servers.board(kind, prefix="/board", proxy=True)
    redirect = fetch(board.port, "/board")
    assert (redirect.status, redirect.headers["location"]) == (301, "/board/")
    page = fetch(board.port, "/board/")
    assert page.status == 200
    assert config_of(page.body)["streams"] == ["hystrix.stream"]
    assert f"/board/{proxy_of(config_of(page.body))}" == board.proxy_query("")[:-1]
    assert fetch(board.port, "/board/dashboard.js").status == 200
    assert fetch(board.port, "/board/nothing").status == 404
    assert fetch(board.port, board.proxy_query("")).status == 400  # the proxy, asking for its origin
    with Client(board.port, "/board/hystrix.stream") as client:
        assert client.status == 200
        check_stream_headers(client)
        assert client.command("mounted")["name"] == "mounted"


# -- the proxy ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_the_proxy_is_off_by_default(kind: Kind, servers: Servers) -> None:
    """Without proxy=True, /proxy.stream is 404 and never contacts the origin."""
    upstream = servers.quiet("quiet-chunked")
    board = servers.board(kind)
    assert fetch(board.port, board.proxy(upstream.url())).status == 404
    assert upstream.requests == []


@pytest.mark.parametrize("kind", KINDS)
def test_the_proxy_relays_an_upstream_stream_byte_for_byte(kind: Kind, servers: Servers, clock: FakeClock) -> None:
    """proxy=True: /proxy.stream?origin=<a live Hystrix stream> answers with the SSE headers and its very bytes."""
    breaker.configure_command("relayed", breaker.CommandConfig(isolation="caller"))

    @breaker.command("relayed")
    def relayed() -> str:
        clock.advance(0.012)
        return "ok"

    relayed()
    # A frozen clock for the circuit and the stream: every interval is the same bytes.
    upstream = servers.hystrix(clock=lambda: 1_700_000_000.0)
    interval = breaker.stream.render(breaker.circuits(), 1_700_000_000_000)
    with Client(upstream.port, "/hystrix.stream") as direct:
        assert direct.response.read(2 * len(interval)) == 2 * interval  # the expectation is what the origin sends
    board = servers.board(kind, proxy=True, streams=[upstream.url])
    with Client(board.port, board.proxy(upstream.url)) as client:
        assert client.status == 200
        check_stream_headers(client)
        assert client.response.read(3 * len(interval)) == 3 * interval
        assert client.command("relayed")["requestCount"] == 1


BAD_ORIGINS = {
    "missing": ("", "exactly one origin="),
    "empty": ("origin=", "exactly one origin="),
    "duplicate": ("origin=http://127.0.0.1:1/a&origin=http://127.0.0.1:1/b", "exactly one origin="),
    "relative": ("origin=/hystrix.stream", "absolute http(s) URLs only"),
    "ftp": ("origin=ftp://127.0.0.1/hystrix.stream", "absolute http(s) URLs only"),
    "file": ("origin=file:///etc/passwd", "absolute http(s) URLs only"),
    "no-host": ("origin=http:///hystrix.stream", "absolute http(s) URLs only"),
    "bad-port": ("origin=" + urllib.parse.quote("http://127.0.0.1:99999/hystrix.stream"), "absolute http(s)"),
    "bad-ipv6": ("origin=" + urllib.parse.quote("http://[::1/hystrix.stream"), "absolute http(s)"),
}


@pytest.mark.parametrize(("query", "reason"), BAD_ORIGINS.values(), ids=BAD_ORIGINS.keys())
def test_origin_of_refuses_what_is_not_one_absolute_http_url(query: str, reason: str) -> None:
    """origin_of: no origin, several, or one that is not an absolute http(s) URL: ProxyError 400 with the reason."""
    with pytest.raises(ProxyError, match=re.escape(reason)) as raised:
        origin_of(query)
    assert raised.value.status == 400


def test_origin_of_returns_the_one_http_url() -> None:
    """origin_of returns the decoded URL, http or https, with its path and query."""
    url = "https://example.com:8443/turbine.stream?cluster=a&x=1"
    assert str(origin_of(urllib.parse.urlencode({"origin": url, "other": "y"}))) == url
    assert str(origin_of("origin=http://127.0.0.1/hystrix.stream")) == "http://127.0.0.1/hystrix.stream"


@pytest.mark.parametrize("kind", KINDS)
def test_the_proxy_answers_400_with_a_reason_for_a_bad_origin(kind: Kind, servers: Servers) -> None:
    """Missing, duplicate or non-http(s) origins (and malformed ones) answer 400, with the reason as text."""
    board = servers.board(kind, proxy=True)
    replies = {name: fetch(board.port, board.proxy_query(query)) for name, (query, _) in BAD_ORIGINS.items()}
    assert {name: reply.status for name, reply in replies.items()} == dict.fromkeys(BAD_ORIGINS, 400)
    for name, (_, reason) in BAD_ORIGINS.items():
        assert reason in replies[name].body.decode(), name
        assert replies[name].headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize("kind", KINDS)
def test_the_proxy_answers_502_for_an_upstream_that_is_not_a_stream_or_unreachable(
    kind: Kind, servers: Servers
) -> None:
    """An origin answering 404, 200 but not an event stream, an event stream with 503, or nothing: 502."""

    def html_page(handler: Any) -> None:
        body = b"<h1>not a stream</h1>"
        handler.send_response(200)
        handler.send_header("Content-Type", "text/html")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    upstream = servers.hystrix(routes={"/page": html_page})
    origin = f"http://127.0.0.1:{upstream.port}"
    failing = servers.raw(NOT_STREAMS["503-stream"][0])
    origins = {
        "404": (f"{origin}/nothing", "answered 404"),
        "text/html": (f"{origin}/page", "answered 200 'text/html'"),
        "503 event stream": (failing.url(), "answered 503 'text/event-stream'"),
        "unreachable": (f"http://127.0.0.1:{closed_port()}/hystrix.stream", "cannot read"),
    }
    board = servers.board(kind, proxy=True, allowed_upstreams=[url for url, _ in origins.values()])
    replies = {name: fetch(board.port, board.proxy(url)) for name, (url, _) in origins.items()}
    assert {name: reply.status for name, reply in replies.items()} == dict.fromkeys(origins, 502)
    for name, (_, reason) in origins.items():
        assert reason in replies[name].body.decode(), name


@pytest.mark.parametrize("kind", KINDS)
def test_the_proxy_answers_503_past_five_relays_and_frees_a_slot_when_a_page_leaves(
    kind: Kind, servers: Servers
) -> None:
    """Five relays at once are served; the sixth gets 503; once a page leaves, a new one is relayed again."""
    breaker.get_circuit("many")
    upstream = servers.hystrix()
    board = servers.board(kind, proxy=True, streams=[upstream.url])
    path = board.proxy(upstream.url)
    with contextlib.ExitStack() as stack:
        pages = [stack.enter_context(Client(board.port, path)) for _ in range(5)]
        for page in pages:
            assert page.status == 200
            page.command("many")
        refused = fetch(board.port, path)
        assert (refused.status, refused.body) == (503, b"too many proxied streams\n")
        pages[0].close()

        def relayed_again() -> bool:
            with Client(board.port, path) as client:
                return client.status == 200

        eventually(relayed_again)


# -- closing --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("upstream_kind", UPSTREAMS)
@pytest.mark.parametrize("kind", KINDS)
def test_closing_the_dashboard_ends_its_relays_promptly(
    kind: Kind, upstream_kind: UpstreamKind, servers: Servers
) -> None:
    """Closing the server or app mid-relay (upstream live or silent) ends the relay at once, leaving no thread."""
    breaker.get_circuit("closing")
    upstream = servers.upstream(upstream_kind)
    board = servers.board(kind, proxy=True, streams=[upstream.url])
    with Client(board.port, board.proxy(upstream.url)) as client:
        assert client.status == 200
        next(client.events())  # the relay is under way
        closer = threading.Thread(target=board.close, name="closer")
        closer.start()
        closer.join(WAIT)  # well under the upstream timeout (30 s) that a relay left blocked would wait out
        assert not closer.is_alive(), "close() waits on the relay"
        assert client.ends_within(WAIT), "the relayed stream goes on after close()"
    eventually(upstream.left)
    eventually(lambda: "breaker-dashboard-relay" not in board_threads())
    upstream.close()
    eventually(lambda: board_threads() == [])


@pytest.mark.parametrize("kind", KINDS)
def test_a_page_that_disconnects_ends_its_relay(kind: Kind, servers: Servers) -> None:
    """A page that goes away ends its relay: the upstream Hystrix server sees its client leave."""
    breaker.get_circuit("leaving")
    upstream = servers.hystrix()
    board = servers.board(kind, proxy=True, streams=[upstream.url])
    with Client(board.port, board.proxy(upstream.url)) as client:
        client.command("leaving")
        assert upstream.statistics().clients == 1
    eventually(lambda: upstream.statistics().clients == 0)
    eventually(lambda: "breaker-dashboard-relay" not in board_threads())


# -- Relay and Relays, directly -------------------------------------------------------------------------------------


class ChunkReader:
    """Reads a relay's chunks on a thread of its own, keeping what came and what was raised."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.chunks: list[bytes] = []
        self.raised: list[BaseException] = []
        self.first = threading.Event()
        self.thread = threading.Thread(target=self._read, name="relay-reader")
        self.thread.start()

    def _read(self) -> None:
        try:
            for chunk in self.relay.chunks():
                self.chunks.append(chunk)
                self.first.set()
        except BaseException as error:
            self.raised.append(error)


@pytest.mark.parametrize("framing", ["quiet-chunked", "quiet-close"])
def test_relay_close_from_another_thread_wakes_a_read_blocked_on_a_quiet_upstream(
    framing: Literal["quiet-chunked", "quiet-close"], servers: Servers
) -> None:
    """Relay.close() on another thread ends a chunks() blocked on a silent upstream at once, raising nothing."""
    upstream = servers.quiet(framing)
    for _ in range(10):  # ten times over: the wake-up must not race the read
        upstream.left.clear()
        relay = Relay(upstream.url())
        relay.open()
        reader = ChunkReader(relay)
        assert reader.first.wait(WAIT)
        relay.close()
        reader.thread.join(WAIT)
        assert not reader.thread.is_alive(), "close() did not wake the blocked read"
        assert (reader.chunks, reader.raised) == ([b"ping: \n\n"], [])
        assert upstream.left.wait(WAIT), "the upstream connection stays open"


def test_relay_asks_the_origin_for_its_path_and_query_as_an_event_stream(servers: Servers) -> None:
    """open() sends GET <path>?<query> with Accept: text/event-stream and the origin's Host."""
    upstream = servers.quiet("quiet-chunked")
    relay = Relay(upstream.url("/turbine.stream?cluster=a%20b&x=1"))
    try:
        relay.open()
        assert next(relay.chunks()) == b"ping: \n\n"
    finally:
        relay.close()
    head = upstream.requests[0].decode("latin-1").split("\r\n")
    assert head[0] == "GET /turbine.stream?cluster=a%20b&x=1 HTTP/1.1"
    assert "Accept: text/event-stream" in head
    assert f"Host: 127.0.0.1:{upstream.port}" in head


def test_relay_open_after_close_fails_and_leaves_no_connection(servers: Servers) -> None:
    """A relay closed before (or while) it connects: open() raises ProxyError 502 and closes what it opened."""
    upstream = servers.quiet("quiet-chunked")
    relay = Relay(upstream.url())
    relay.close()
    with pytest.raises(ProxyError) as raised:
        relay.open()
    assert raised.value.status == 502
    assert upstream.left.wait(WAIT), "the relay's connection to the upstream stays open"
    assert repr(relay).endswith(" closed>")


@pytest.mark.parametrize(("head", "reason"), NOT_STREAMS.values(), ids=NOT_STREAMS.keys())
def test_relay_open_refuses_an_answer_that_is_not_a_200_event_stream(
    head: bytes, reason: str, servers: Servers
) -> None:
    """open() raises ProxyError 502 naming the origin's answer, and closes its connection to the origin."""
    upstream = servers.raw(head)
    relay = Relay(upstream.url())
    with pytest.raises(ProxyError, match=re.escape(reason)) as raised:
        relay.open()
    assert raised.value.status == 502
    assert upstream.left.wait(WAIT), "the relay's connection to the upstream stays open"
    assert list(relay.chunks()) == []


def test_relays_refuse_past_their_limit_until_one_is_discarded() -> None:
    """Relays(limit=2): a third add raises ProxyError 503; discard closes one and frees its place."""
    relays = Relays(limit=2)
    first, second, third = (Relay(f"http://127.0.0.1:1/{i}") for i in range(3))
    relays.add(first)
    relays.add(second)
    with pytest.raises(ProxyError, match="too many") as raised:
        relays.add(third)
    assert raised.value.status == 503
    relays.discard(first)
    assert repr(first).endswith(" closed>")
    relays.add(third)
    relays.discard(Relay("http://127.0.0.1:1/never-added"))  # nothing to do


def test_relays_close_closes_every_relay_and_refuses_new_ones() -> None:
    """Relays.close() closes the open relays at once; any later add raises ProxyError 503."""
    relays = Relays(limit=5)
    opened = [Relay(f"http://127.0.0.1:1/{i}") for i in range(3)]
    for relay in opened:
        relays.add(relay)
    relays.close()
    assert all(repr(relay).endswith(" closed>") for relay in opened)
    late = Relay("http://127.0.0.1:1/late")
    with pytest.raises(ProxyError) as raised:
        relays.add(late)
    assert raised.value.status == 503
    relays.close()  # idempotent


# -- ASGI -----------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def slow_thread_exit(function: str, seconds: float) -> Iterator[None]:
    """Threads started meanwhile linger ``seconds`` once ``function`` has returned, as a thread descheduled under
    load does before it exits."""

    def profile(frame: types.FrameType, event: str, arg: object) -> None:
        if event == "return" and frame.f_code.co_name == function:
            time.sleep(seconds)

    threading.setprofile(profile)
    try:
        yield
    finally:
        threading.setprofile(None)


def test_asgi_app_serves_the_page_assets_and_stream_without_blocking_the_event_loop(servers: Servers) -> None:
    """With blockbuster watching the loop: the page and assets (their first read) and the stream never block it."""
    breaker.get_circuit("loop")
    breaker.dashboard._page.asset.cache_clear()  # the packaged files are read once, wherever the first read runs
    with blockbuster.blockbuster_ctx(scanned_modules=["breaker"]):
        board = servers.board("asgi", proxy=True)
        replies = {path: fetch(board.port, path).status for path in breaker.dashboard.ASSETS}
        assert replies == dict.fromkeys(breaker.dashboard.ASSETS, 200)
        with Client(board.port, "/hystrix.stream") as client:
            assert client.command("loop")["name"] == "loop"
        board.stop()
    assert board.errors == []


def test_asgi_app_relays_without_blocking_the_event_loop(servers: Servers) -> None:
    """With blockbuster watching, and relay threads slow to exit (as under load): relays never block the loop."""
    breaker.get_circuit("loop")
    upstream = servers.hystrix()
    closed = f"http://127.0.0.1:{closed_port()}/"
    with blockbuster.blockbuster_ctx(scanned_modules=["breaker"]), slow_thread_exit("pump", 0.05):
        board = servers.board("asgi", proxy=True, streams=[upstream.url], allowed_upstreams=[closed])
        for _ in range(3):
            with Client(board.port, board.proxy(upstream.url)) as client:
                assert client.status == 200
                assert client.command("loop")["name"] == "loop"
        assert fetch(board.port, board.proxy("ftp://x/")).status == 400
        assert fetch(board.port, board.proxy(closed)).status == 502
        eventually(lambda: upstream.statistics().clients == 0)
        eventually(lambda: "breaker-dashboard-relay" not in board_threads())
        board.stop()
    assert board.errors == []


async def _call(app: breaker.dashboard.ASGIApp, scope: Json, incoming: list[Json]) -> list[Json]:
    """Drive ``app`` with one ASGI connection: ``incoming`` messages in, what it sends out."""
    sent: list[Json] = []

    async def receive() -> Json:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    await app(scope, receive, send)
    return sent


def _http(path: str, query: str = "") -> Json:
    scope = {"type": "http", "method": "GET", "path": path, "root_path": "", "query_string": query.encode()}
    return {**scope, "headers": [(b"host", b"127.0.0.1:8000")]}


async def _proxy_query(app: breaker.dashboard.ASGIApp, origin: str) -> str:
    """The query string of a request to the app's proxy for ``origin``, with the token the app's page holds."""
    page = await _call(app, _http("/"), [])
    token = proxy_of(config_of(page[1]["body"])).partition("?")[2]
    return f"{token}&" + urllib.parse.urlencode({"origin": origin})


def test_asgi_lifespan_completes_and_its_shutdown_closes_the_app() -> None:
    """The lifespan's startup and shutdown complete; after the shutdown the stream and the proxy answer 503."""
    upstream = "http://127.0.0.1:1/hystrix.stream"
    app = breaker.dashboard.asgi_app(stream=breaker.stream.asgi_app(interval=0.02), proxy=True, streams=[upstream])

    async def scenario() -> tuple[list[Json], list[Json], list[Json]]:
        query = await _proxy_query(app, upstream)
        lifespan = await _call(app, {"type": "lifespan"}, [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
        stream = await _call(app, _http("/hystrix.stream"), [])
        proxy = await _call(app, _http("/proxy.stream", query), [])
        return lifespan, stream, proxy

    lifespan, stream, proxy = asyncio.run(scenario())
    assert lifespan == [{"type": "lifespan.startup.complete"}, {"type": "lifespan.shutdown.complete"}]
    assert (stream[0]["status"], proxy[0]["status"]) == (503, 503)
    app.close()
    assert board_threads() == []


@pytest.mark.parametrize("upstream_kind", UPSTREAMS)
def test_asgi_lifespan_shutdown_ends_open_relays(upstream_kind: UpstreamKind, servers: Servers) -> None:
    """A relay under way when the lifespan shuts down ends promptly, its thread with it."""
    breaker.get_circuit("lifespan")
    upstream = servers.upstream(upstream_kind)
    app = breaker.dashboard.asgi_app(stream=breaker.stream.asgi_app(interval=0.02), proxy=True, streams=[upstream.url])

    async def scenario() -> tuple[bool, list[Json]]:
        started, gone = asyncio.Event(), asyncio.Event()
        sent: list[Json] = []

        async def receive() -> Json:  # the page stays
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(dict(message))
            if message.get("body"):
                started.set()

        query = await _proxy_query(app, upstream.url)
        relay = asyncio.ensure_future(app(_http("/proxy.stream", query), receive, send))
        await asyncio.wait_for(started.wait(), WAIT)
        await _call(app, {"type": "lifespan"}, [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
        done, _ = await asyncio.wait({relay}, timeout=WAIT)
        if not done:  # let it end, for the next tests: end its upstream, then the page
            await asyncio.to_thread(upstream.close)
            gone.set()
        await relay
        return bool(done), sent

    ended, sent = asyncio.run(scenario())
    assert ended, "the relay goes on after the lifespan shutdown"
    assert sent[0]["status"] == 200
    assert sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
    app.close()


def test_asgi_app_refuses_connections_that_are_not_http() -> None:
    """A websocket connection: the app raises ValueError, as ASGI asks of unknown scopes."""
    app = breaker.dashboard.asgi_app(stream=breaker.stream.asgi_app())
    with pytest.raises(ValueError, match="websocket"):
        asyncio.run(_call(app, {"type": "websocket"}, [{"type": "websocket.connect"}]))
    app.close()


# -- the command line -----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def cli(*args: str) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """``python -m breaker dashboard --port 0 <args>``; yields the process and the port it printed."""
    process = subprocess.Popen(
        [sys.executable, "-m", "breaker", "dashboard", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"},  # a pipe buffers, as for a service
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 20)
        assert ready, "the dashboard printed nothing"
        line = process.stdout.readline()
        found = re.match(r"dashboard: http://127\.0\.0\.1:(\d+)/(\s|$)", line)
        assert found is not None, line
        yield process, int(found.group(1))
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


def interrupt(process: subprocess.Popen[str]) -> str:
    """Ctrl-C: the dashboard stops and exits 0, promptly; returns what it wrote to stderr."""
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=10)
    assert process.returncode == 0, err
    return err


def test_cli_serves_the_streams_given_with_the_proxy_off_by_default() -> None:
    """`python -m breaker dashboard --stream URL`: prints its address, serves URL, no proxy (404), hints at --proxy."""
    url = "http://127.0.0.1:9/hystrix.stream"
    with cli("--stream", url, "--stream", "other.stream") as (process, port):
        page = fetch(port, "/")
        assert page.status == 200
        assert config_of(page.body) == {"streams": [url, "other.stream"], "proxy": None}
        assert fetch(port, proxy_path_for(url)).status == 404
        with Client(port, "/hystrix.stream") as client:
            assert client.status == 200
        err = interrupt(process)
    assert "add --proxy" in err


def proxy_path_for(origin: str, proxy: str = "proxy.stream") -> str:
    return f"/{proxy}{'&' if '?' in proxy else '?'}" + urllib.parse.urlencode({"origin": origin})


def test_cli_proxy_relays_only_the_streams_given_and_the_upstreams_allowed() -> None:
    """--proxy: the page's proxy has a token; it tries the --stream and --allow-upstream URLs only (403 others)."""
    named, allowed = (f"http://127.0.0.1:{closed_port()}/{name}.stream" for name in ("named", "allowed"))
    with cli("--proxy", "--stream", named, "--allow-upstream", allowed) as (process, port):
        proxy = proxy_of(config_of(fetch(port, "/").body))
        for url in (named, allowed):
            reply = fetch(port, proxy_path_for(url, proxy))
            assert (reply.status, b"cannot read" in reply.body) == (502, True), url  # tried: nothing listens there
        other = fetch(port, proxy_path_for(f"http://127.0.0.1:{closed_port()}/other.stream", proxy))
        assert (other.status, b"may not relay" in other.body) == (403, True)
        assert fetch(port, proxy_path_for(named)).status == 403  # no token
        assert "--proxy" not in interrupt(process)


def test_cli_no_proxy_turns_the_proxy_off() -> None:
    """--no-proxy (the default now, kept for old scripts): the config's proxy is null and /proxy.stream is 404."""
    with cli("--no-proxy") as (process, port):
        page = fetch(port, "/")
        assert config_of(page.body) == {"streams": ["hystrix.stream"], "proxy": None}
        assert fetch(port, "/proxy.stream").status == 404
        interrupt(process)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--allow-upstream", "http://127.0.0.1:1/s"], "--allow-upstream names what the proxy may relay: give --proxy"),
        (["--proxy", "--no-proxy"], "not allowed with argument"),
        (["--proxy", "--allow-upstream", "ftp://127.0.0.1/s"], "allowed_upstreams: 'ftp://127.0.0.1/s' cannot be"),
        (["--stream", "localhost:8080/hystrix.stream"], "streams: 'localhost:8080/hystrix.stream' cannot be read"),
        (["--allow-host", "http://dash.example"], "allowed_hosts: 'http://dash.example' is not a host name"),
    ],
    ids=["allow-upstream-without-proxy", "proxy-and-no-proxy", "bad-upstream", "bad-stream", "bad-host"],
)
def test_cli_refuses_bad_proxy_options_with_a_message(args: list[str], message: str) -> None:
    """Contradictory or malformed proxy and host options: exit code 2 and a message naming the option."""
    result = subprocess.run(
        [sys.executable, "-m", "breaker", "dashboard", "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "dashboard:" not in result.stdout


# -- hostile input: what a web page, or a request it makes a browser send, cannot make the dashboard do -------------


def raw(port: int, path: str, headers: Iterable[tuple[str, str]] = (), method: str = "GET") -> Reply:
    """One HTTP/1.0 request written byte for byte (only the headers given: no Host unless given), and its answer:
    the head, and the body unless it is an event stream (whose head is all that is read)."""
    request = f"{method} {path} HTTP/1.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        sock.sendall(request.encode("latin-1"))
        data = b""
        while b"\r\n\r\n" not in data and (chunk := sock.recv(65536)):
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        if not lines[0]:
            return Reply(None, {}, b"")
        found: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            found[name.strip().lower()] = value.strip()
        if not found.get("content-type", "").startswith("text/event-stream"):
            while chunk := sock.recv(65536):
                body += chunk
    return Reply(int(lines[0].split()[1]), found, body)


class Listener:
    """A raw TCP listener that never accepts, standing for a service that is not HTTP (Redis): a connection to it,
    and the bytes sent on it, wait in its queue, where `connected` finds them."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]

    def connected(self) -> bytes | None:
        """What the first connection made to it sent (None: no connection was made)."""
        self.sock.setblocking(False)
        try:
            connection, _ = self.sock.accept()
        except BlockingIOError:
            return None
        with connection:
            connection.settimeout(WAIT)
            try:
                return connection.recv(65536)
            except TimeoutError:
                return b""

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    """A Redis-like listener on 127.0.0.1, closed after the test."""
    started = Listener()
    yield started
    started.close()


ROUTES = ["/", "/dashboard.css", "/dashboard.js", "/hystrix.stream", "/nothing", "PROXY"]
FOREIGN_HOSTS = {
    "a-name": "evil.example:{port}",
    "a-name-without-port": "evil.example",
    "localhost-as-a-subdomain": "localhost.evil.example:{port}",
    "loopback-ip-as-a-subdomain": "127.0.0.1.evil.example:{port}",
    "malformed": "evil.example:{port}/x",
    "two-in-one": "127.0.0.1:{port}, evil.example",
}
#: Refused by the stdlib server only: a mounted app cannot know its server's address or port.
FOREIGN_TO_THE_STDLIB_SERVER = {"another-port": "127.0.0.1:{other}", "another-ip": "10.1.2.3:{port}"}


def host_cases(kind: Kind) -> dict[str, str]:
    return {**FOREIGN_HOSTS, **(FOREIGN_TO_THE_STDLIB_SERVER if kind == "stdlib" else {})}


@pytest.mark.parametrize("kind", KINDS)
def test_a_foreign_host_is_refused_on_every_route(kind: Kind, servers: Servers) -> None:
    """A Host that is not the server's own (DNS rebinding) gets 400/403 on every route; the proxy contacts nothing."""
    upstream = servers.quiet("quiet-chunked")
    board = servers.board(kind, proxy=True, streams=[upstream.url()])
    other = closed_port()
    for name, host in host_cases(kind).items():
        for route in ROUTES:
            path = board.proxy(upstream.url()) if route == "PROXY" else route
            reply = raw(board.port, path, [("Host", host.format(port=board.port, other=other))])
            assert reply.status in (400, 403), (name, route, reply)
            assert b"Host" in reply.body, (name, route, reply.body)
            assert "access-control-allow-origin" not in reply.headers
    assert upstream.requests == []
    assert raw(board.port, board.proxy(upstream.url()), [("Host", f"127.0.0.1:{board.port}")]).status == 200


@pytest.mark.parametrize("kind", ["stdlib", "wsgi"])
def test_a_request_without_one_host_header_is_refused(kind: Kind, servers: Servers) -> None:
    """No Host header, or two: 400 on every route (uvicorn refuses those itself, before the ASGI app)."""
    board = servers.board(kind, proxy=True)
    for headers in ([], [("Host", f"127.0.0.1:{board.port}"), ("Host", "evil.example")]):
        for route in ROUTES:
            reply = raw(board.port, board.proxy_query("origin=x") if route == "PROXY" else route, headers)
            assert reply.status == 400, (headers, route, reply)


@pytest.mark.parametrize("kind", KINDS)
def test_the_servers_own_host_and_the_allowed_names_are_answered(kind: Kind, servers: Servers) -> None:
    """127.0.0.1, localhost and [::1] at the server's port (any case), and allowed_hosts names at any port: 200."""
    board = servers.board(kind, allowed_hosts=["dash.example"])
    for host in ["127.0.0.1:{port}", "localhost:{port}", "LocalHost:{port}", "[::1]:{port}", "dash.example:1234"]:
        assert raw(board.port, "/", [("Host", host.format(port=board.port))]).status == 200, host
    assert raw(board.port, "/", [("Host", "other.example")]).status == 403
    anything = servers.board(kind, allowed_hosts=["*"])
    assert raw(anything.port, "/", [("Host", "other.example")]).status == 200


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"allowed_hosts": "dash.example"}, TypeError, "allowed_hosts must be a sequence"),
        ({"allowed_hosts": ["http://dash.example"]}, ValueError, "'http://dash.example' is not a host name"),
        ({"allowed_hosts": ["dash.example:80"]}, ValueError, "without a scheme, port or path"),
        ({"allowed_hosts": ["*", "dash.example"]}, ValueError, "give it alone"),
        ({"allowed_upstreams": ["http://127.0.0.1:1/s"]}, ValueError, "are for the proxy: give proxy=True"),
        ({"proxy": True, "allowed_upstreams": "http://127.0.0.1:1/s"}, TypeError, "allowed_upstreams must be"),
        ({"proxy": True, "allowed_upstreams": ["ftp://h/s"]}, ValueError, "not an absolute http"),
        ({"proxy": True, "allowed_upstreams": [f"http://{'a' * 64}.example/s"]}, ValueError, "longer than 63"),
        ({"proxy": True, "allowed_upstreams": ["http://u:p@h/s"]}, ValueError, "user info"),
        ({"streams": ["javascript:alert(1)"]}, ValueError, "streams: 'javascript:alert(1)' cannot be read"),
        ({"streams": ["//h/hystrix.stream"]}, ValueError, "not an absolute http"),
    ],
    ids=[
        "hosts-a-str",
        "hosts-a-url",
        "hosts-a-port",
        "hosts-star-and-more",
        "upstreams-without-proxy",
        "upstreams-a-str",
        "upstreams-ftp",
        "upstreams-long-label",
        "upstreams-user-info",
        "streams-javascript",
        "streams-no-scheme",
    ],
)
@pytest.mark.parametrize("make", ["serve", "wsgi_app", "asgi_app"])
def test_bad_host_and_upstream_options_are_refused_naming_them(
    make: str, options: Any, error: type[Exception], match: str
) -> None:
    """allowed_hosts and allowed_upstreams that are malformed, or upstreams without the proxy: an error naming them."""
    factories: dict[str, Callable[[], object]] = {
        "serve": lambda: breaker.dashboard.serve("127.0.0.1", 0, block=False, **options),
        "wsgi_app": lambda: breaker.dashboard.wsgi_app(stream=breaker.stream.wsgi_app(), **options),
        "asgi_app": lambda: breaker.dashboard.asgi_app(stream=breaker.stream.asgi_app(), **options),
    }
    with pytest.raises(error, match=re.escape(match)):
        factories[make]()
    assert board_threads() == []


def test_cli_allow_host_answers_that_name() -> None:
    """--allow-host NAME: a Host of NAME is answered; another name gets 403."""
    with cli("--allow-host", "dash.example") as (process, port):
        assert raw(port, "/", [("Host", f"dash.example:{port}")]).status == 200
        assert raw(port, "/", [("Host", f"evil.example:{port}")]).status == 403
        interrupt(process)


CALLERS = {
    "no-token": ("", {}),
    "wrong-token": ("token=" + "x" * 43, {}),
    "cross-site": (None, {"Sec-Fetch-Site": "cross-site"}),
    "same-site-other-port": (None, {"Sec-Fetch-Site": "same-site"}),
    "foreign-origin": (None, {"Origin": "http://127.0.0.1:1"}),
    "null-origin": (None, {"Origin": "null"}),
}


@pytest.mark.parametrize("kind", KINDS)
def test_the_proxy_relays_only_for_its_own_page(kind: Kind, servers: Servers) -> None:
    """Without the page's token, or with fetch metadata or an Origin of another site: 403, and no upstream request;
    the page's own request (token, same-origin) is relayed."""
    upstream = servers.quiet("quiet-chunked")
    board = servers.board(kind, proxy=True, streams=[upstream.url()])
    other = servers.board(kind, proxy=True, streams=[upstream.url()])
    origin = urllib.parse.urlencode({"origin": upstream.url()})
    own = [("Host", f"127.0.0.1:{board.port}")]
    for name, (token, headers) in CALLERS.items():
        path = board.proxy_query(origin) if token is None else f"/proxy.stream?{token}&{origin}"
        reply = raw(board.port, path, [*own, *headers.items()])
        assert (reply.status, b"for its dashboard's page" in reply.body) == (403, True), (name, reply)
    stolen = raw(board.port, f"/{other.proxy_base}&{origin}", own)  # another dashboard's token
    assert stolen.status == 403
    assert upstream.requests == []
    same_origin = [*own, ("Sec-Fetch-Site", "same-origin"), ("Origin", f"http://127.0.0.1:{board.port}")]
    assert raw(board.port, board.proxy_query(origin), same_origin).status == 200
    assert len(upstream.requests) == 1


@pytest.mark.parametrize("kind", KINDS)
def test_the_proxy_never_connects_to_an_upstream_not_allowed(kind: Kind, servers: Servers, listener: Listener) -> None:
    """Any origin but the allowed stream URLs, exactly (Redis's port, other paths, hosts, ports, schemes): 403 or
    400, and the Redis-like listener never sees a connection or a byte."""
    upstream = servers.quiet("quiet-chunked")
    allowed = upstream.url()
    board = servers.board(kind, proxy=True, streams=[allowed])
    redis = f"127.0.0.1:{listener.port}"
    refused = {
        f"http://{redis}/": 403,
        f"http://{redis}/hystrix.stream": 403,
        f"http://{redis}/%0D%0ASET%20k%20v%0D%0A": 403,
        f"http://localhost:{listener.port}/": 403,
        f"http://{redis}/\r\nSET k v\r\n": 400,
        f"gopher://{redis}/_SET%20k%20v": 400,
        f"dict://{redis}/info": 400,
        f"redis://{redis}/": 400,
        "file:///etc/passwd": 400,
        f"ftp://{redis}/": 400,
        "javascript:alert(1)": 400,
        allowed + "?extra=1": 403,
        allowed.replace("/hystrix.stream", "/admin/drop-all"): 403,
        allowed.replace("http://", "https://"): 403,
        allowed.replace("127.0.0.1", "127.0.0.2"): 403,
    }
    replies = {origin: fetch(board.port, board.proxy(origin)).status for origin in refused}
    assert replies == refused
    assert listener.connected() is None, "the proxy connected to the Redis-like listener"
    assert upstream.requests == []
    assert fetch(board.port, board.proxy(allowed.replace("127.0.0.1", "127.0.0.1."))).status == 403


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("kind", KINDS)
def test_the_proxy_does_not_follow_a_redirect(
    kind: Kind, status: int, servers: Servers, victims: Callable[..., Victim]
) -> None:
    """An allowed upstream answering a redirect to another service: 502 naming the answer; the target gets nothing."""
    target = victims()
    redirecting = victims(status, (("Location", target.url("/admin/drop-all?confirm=yes")),))
    upstream = redirecting.url("/hystrix.stream")
    board = servers.board(kind, proxy=True, streams=[upstream])
    reply = fetch(board.port, board.proxy(upstream))
    assert (reply.status, f"answered {status}".encode() in reply.body) == (502, True), reply
    assert redirecting.requested() == ["/hystrix.stream"]
    assert target.requested() == []


#: Origins that never reach an upstream, each repeated until 100 requests are made.
MALFORMED_ORIGINS = [
    f"http://{'a' * 64}.example/hystrix.stream",
    f"http://{'b' * 300}/hystrix.stream",
    f"http://{'é' * 64}.example/",
    "http://a..b/hystrix.stream",
    "http://.example/",
    "http://[::1/hystrix.stream",
    "http://[::g]/hystrix.stream",
    "http://127.0.0.1:99999/hystrix.stream",
    "http://127.0.0.1:0/hystrix.stream",
    "http://user:password@127.0.0.1:1/hystrix.stream",
    "http://127.0.0.1:1/a b",
    "http://bad;host/",
    "",
]


@pytest.mark.parametrize("kind", KINDS)
def test_malformed_refused_and_failing_origins_never_hold_a_slot(
    kind: Kind, servers: Servers, victims: Callable[..., Victim]
) -> None:
    """100 requests with malformed origins (a DNS label over 63 characters...), origins not allowed and allowed
    upstreams that fail (down, 404, redirect) hold no slot: five streams are relayed at once after them."""
    breaker.get_circuit("after")
    live = servers.hystrix()
    down = f"http://127.0.0.1:{closed_port()}/hystrix.stream"
    missing = victims(404).url("/hystrix.stream")
    moved = victims(302, (("Location", live.url),)).url("/hystrix.stream")
    board = servers.board(kind, proxy=True, streams=[live.url], allowed_upstreams=[down, missing, moved])
    origins = [*MALFORMED_ORIGINS, "http://127.0.0.1:1/not-allowed.stream", down, missing, moved]
    statuses = [fetch(board.port, board.proxy(origins[i % len(origins)])).status for i in range(100)]
    assert set(statuses) == {400, 403, 502}
    assert statuses[: len(origins)] == [400] * len(MALFORMED_ORIGINS) + [403, 502, 502, 502]
    with contextlib.ExitStack() as stack:
        pages = [stack.enter_context(Client(board.port, board.proxy(live.url))) for _ in range(5)]
        assert [page.status for page in pages] == [200] * 5
        for page in pages:
            assert page.command("after")["name"] == "after"
        assert fetch(board.port, board.proxy(live.url)).status == 503  # the five slots are these five


def test_relay_refuses_a_malformed_url_before_it_connects() -> None:
    """Relay(url) checks the URL: a DNS label over 63 characters is a ValueError naming it, not a UnicodeError later."""
    with pytest.raises(ValueError, match="longer than 63"):
        Relay(f"http://{'a' * 64}.example/hystrix.stream")


def test_upstreams_match_exactly_after_normalizing() -> None:
    """Case, default ports, IDNA and fragments are normalized; path, query, host, port and scheme must match."""
    upstreams = Upstreams(["HTTP://Example.COM:80/hystrix.stream", "https://bücher.example/s?cluster=a"])
    assert sorted(upstreams.urls) == ["http://example.com/hystrix.stream", "https://xn--bcher-kva.example/s?cluster=a"]
    for url in ["http://example.com/hystrix.stream#x", "http://EXAMPLE.com:80/hystrix.stream"]:
        assert upstreams.allows(parse_stream_url(url)), url
    for url in [
        "http://example.com/hystrix.stream?x=1",
        "http://example.com/Hystrix.stream",
        "http://example.com:8080/hystrix.stream",
        "https://example.com/hystrix.stream",
        "http://www.example.com/hystrix.stream",
        "https://xn--bcher-kva.example/s?cluster=b",
    ]:
        assert not upstreams.allows(parse_stream_url(url)), url


def test_the_proxy_token_never_reaches_the_log(servers: Servers, caplog: pytest.LogCaptureFixture) -> None:
    """The stdlib server logs request lines at DEBUG: the page's proxy token in them is redacted."""
    caplog.set_level(logging.DEBUG, logger="breaker")
    board = servers.board("stdlib", proxy=True)
    token = board.proxy_base.partition("token=")[2]
    assert len(token) >= 32
    assert fetch(board.port, f"/{board.proxy_base}&origin=ftp://127.0.0.1/x").status == 400
    assert "token=<redacted>" in caplog.text
    assert token not in caplog.text
