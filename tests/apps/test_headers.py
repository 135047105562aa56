"""The headers every response of the stream and the dashboard carries, whoever serves them, and the stream's CORS.

`breaker.stream.SECURITY_HEADERS` (nosniff, a Content-Security-Policy, no framing, no referrer) on every response:
the stdlib servers' (read off the socket, byte for byte, errors that `http.server` writes itself included), and the
WSGI and ASGI apps' (driven directly, as a server would: ``start_response``, ``receive``/``send``). The dashboard's
page replaces the Content-Security-Policy with its own; no response has a CORS header unless ``cors_origins``
asks for one.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from typing import TYPE_CHECKING, Any

import pytest

import breaker
import breaker.dashboard
import breaker.stream
from breaker.stream import SECURITY_HEADERS, StreamServer

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

Json = dict[str, Any]
Headers = list[tuple[str, str]]
WAIT = 5.0  # seconds: the bound on any wait for something that should take milliseconds
DEFAULT_POLICY = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'{}; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def check_hardened(headers: Headers, policy: str = DEFAULT_POLICY, cors: bool = False) -> None:
    """Each security header once, with its value (``policy`` for the CSP); no CORS header unless ``cors``."""
    names = [name.lower() for name, _ in headers]
    expected = {**{k.lower(): v for k, v in SECURITY_HEADERS}, "content-security-policy": policy}
    for name, value in expected.items():
        assert names.count(name) == 1, (name, headers)
        assert {k.lower(): v for k, v in headers}[name] == value, (name, headers)
    assert ("access-control-allow-origin" in names) == cors, headers


def test_the_security_headers_are_these() -> None:
    """SECURITY_HEADERS: nosniff, a policy allowing nothing and no framing, X-Frame-Options DENY, no referrer."""
    assert SECURITY_HEADERS == (
        ("X-Content-Type-Options", "nosniff"),
        ("Content-Security-Policy", DEFAULT_POLICY),
        ("X-Frame-Options", "DENY"),
        ("Referrer-Policy", "no-referrer"),
    )


# -- the stdlib servers, read off the socket -----------------------------------------------------------------------


def raw_head(port: int, request: bytes) -> tuple[int, Headers]:
    """Write ``request`` as is; the status and headers of the answer, in order (repeated ones kept)."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        sock.sendall(request)
        return read_head(sock)


def read_head(sock: socket.socket) -> tuple[int, Headers]:
    """The status and headers of the answer coming on ``sock``."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(1)  # a byte at a time: what follows the head stays unread
        assert chunk, f"the connection closed before the head ended: {data!r}"
        data += chunk
    lines = data.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    headers = [(name.strip(), value.strip()) for name, _, value in (line.partition(":") for line in lines[1:])]
    return int(lines[0].split()[1]), headers


def get(path: str, port: int, *headers: str) -> bytes:
    """An HTTP/1.0 GET of ``path`` with the server's own Host and ``headers`` (``"Name: value"``)."""
    lines = [f"GET {path} HTTP/1.0", f"Host: 127.0.0.1:{port}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.fixture
def servers() -> Iterator[Callable[[StreamServer], StreamServer]]:
    """Closes the servers a test hands it; then no thread of theirs is left."""
    started: list[StreamServer] = []

    def keep(server: StreamServer) -> StreamServer:
        started.append(server)
        return server

    yield keep
    for server in reversed(started):
        server.close()
    names = [t.name for t in threading.enumerate()]
    assert [name for name in names if name.startswith("breaker-stream") or name == "breaker-dashboard-relay"] == []


def test_every_answer_of_the_stream_server_is_hardened(servers: Callable[[StreamServer], StreamServer]) -> None:
    """The stdlib stream server: the stream, 404, 503, a route's page, 405, and the head's own 400 and 431."""

    def page(handler: Any) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    server = servers(breaker.stream.serve("127.0.0.1", 0, block=False, max_clients=1, routes={"/page": page}))
    port = server.port
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as holder:  # takes the one client place
        holder.sendall(get("/hystrix.stream", port))
        assert read_head(holder)[0] == 200  # subscribed: the place is taken
        answers = {
            "503": raw_head(port, get("/hystrix.stream", port)),
            "404": raw_head(port, get("/nothing", port)),
            "route": raw_head(port, get("/page", port)),
            "405": raw_head(port, b"BREW /hystrix.stream HTTP/1.0\r\n\r\n"),
            "431": raw_head(port, b"GET /hystrix.stream HTTP/1.0\r\nX-Big: " + b"x" * 20_000 + b"\r\n\r\n"),
            "400": raw_head(port, b"GET /hystrix.stream two-paths HTTP/1.0\r\n\r\n"),
        }
    deadline = time.monotonic() + WAIT
    while server.statistics().clients:  # the server notices the holder left at its next write
        assert time.monotonic() < deadline, "the holder's stream goes on"
        time.sleep(0.005)
    answers["200"] = raw_head(port, get("/hystrix.stream", port))
    assert {name: status for name, (status, _) in answers.items()} == {
        "503": 503,
        "404": 404,
        "route": 200,
        "405": 405,
        "431": 431,
        "400": 400,
        "200": 200,
    }
    for _, headers in answers.values():
        check_hardened(headers)


def test_the_answer_past_max_connections_is_hardened(servers: Callable[[StreamServer], StreamServer]) -> None:
    """The 503 the accepting thread writes itself, to a connection past max_connections, carries them too."""
    server = servers(breaker.stream.serve("127.0.0.1", 0, block=False, max_connections=1))
    with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT):  # holds the one place, idle
        deadline = time.monotonic() + WAIT
        while True:  # the holder is counted once the server accepted it
            status, headers = raw_head(server.port, get("/hystrix.stream", server.port))
            if status == 503:
                break
            assert time.monotonic() < deadline, "the second connection was never refused"
    check_hardened(headers)


def test_every_answer_of_the_dashboard_server_is_hardened(servers: Callable[[StreamServer], StreamServer]) -> None:
    """The stdlib dashboard: the page (its own policy), assets, stream, proxy answers, 404, 403, 501."""
    upstream = servers(breaker.stream.serve("127.0.0.1", 0, block=False))
    down = f"http://127.0.0.1:{_closed_port()}/hystrix.stream"
    board = servers(
        breaker.dashboard.serve(
            "127.0.0.1", 0, block=False, proxy=True, streams=[upstream.url], allowed_upstreams=[down]
        )
    )
    port = board.port
    proxy = _proxy_base(raw_body(port, "/"))

    def relay(origin: str, base: str = proxy) -> bytes:
        return get(f"/{base}&" + urllib.parse.urlencode({"origin": origin}), port)

    answers = {
        "page": raw_head(port, get("/", port)),
        "css": raw_head(port, get("/dashboard.css", port)),
        "js": raw_head(port, get("/dashboard.js", port)),
        "stream": raw_head(port, get("/hystrix.stream", port)),
        "relayed": raw_head(port, relay(upstream.url)),
        "upstream-down": raw_head(port, relay(down)),
        "not-allowed": raw_head(port, relay("http://127.0.0.1:1/other")),
        "malformed": raw_head(port, relay("http://[::1/")),
        "no-token": raw_head(port, relay(upstream.url, "proxy.stream?")),
        "foreign-host": raw_head(port, b"GET / HTTP/1.0\r\nHost: evil.example\r\n\r\n"),
        "nothing": raw_head(port, get("/nothing", port)),
        "post": raw_head(port, b"POST / HTTP/1.0\r\nContent-Length: 0\r\n\r\n"),
    }
    statuses = {name: status for name, (status, _) in answers.items()}
    assert statuses == {
        "page": 200,
        "css": 200,
        "js": 200,
        "stream": 200,
        "relayed": 200,
        "upstream-down": 502,
        "not-allowed": 403,
        "malformed": 400,
        "no-token": 403,
        "foreign-host": 403,
        "nothing": 404,
        "post": 405,
    }
    for name, (_, headers) in answers.items():
        check_hardened(headers, PAGE_POLICY.format("") if name == "page" else DEFAULT_POLICY)
    assert dict(answers["page"][1])["Cache-Control"] == "no-store"  # the page holds the proxy's token


def raw_body(port: int, path: str) -> bytes:
    """The body of a finite answer to GET ``path``."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        sock.sendall(get(path, port))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data.partition(b"\r\n\r\n")[2]


def _proxy_base(page: bytes) -> str:
    """The page's proxy path, token included (``proxy.stream?token=...``)."""
    start = page.index(b"proxy.stream?token=")
    return page[start : page.index(b"&quot;", start)].decode()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


HOSTS = ["127.0.0.1:{port}", "localhost:{port}", "[::1]:{port}", "named.internal:{port}", "named.internal:81"]
FOREIGN = ["evil.example", "127.0.0.1:1", "10.1.2.3:{port}"]


@pytest.mark.parametrize(
    ("allowed_hosts", "refused"),
    [
        (None, []),
        ([], ["named.internal:{port}", "named.internal:81", *FOREIGN]),
        (["named.internal"], FOREIGN),
        (["*"], []),
    ],
    ids=["default-any", "own-only", "own-and-named", "star"],
)
def test_the_stream_server_checks_host_only_when_given_allowed_hosts(
    allowed_hosts: list[str] | None, refused: list[str], servers: Callable[[StreamServer], StreamServer]
) -> None:
    """Default: any Host (Turbine names a server as it likes); with allowed_hosts, only its own and those: else 403."""
    server = servers(breaker.stream.serve("127.0.0.1", 0, block=False, allowed_hosts=allowed_hosts))
    port = server.port
    for host in [*HOSTS, *FOREIGN]:
        status, headers = raw_head(port, f"GET /nothing HTTP/1.0\r\nHost: {host.format(port=port)}\r\n\r\n".encode())
        assert status == (403 if host in refused else 404), host
        check_hardened(headers)


# -- WSGI, driven directly -----------------------------------------------------------------------------------------


def call_wsgi(
    app: WSGIApplication,
    path: str,
    *,
    method: str = "GET",
    query: str = "",
    host: str | None = "127.0.0.1:8000",
    extra: dict[str, str] | None = None,
) -> tuple[int, Headers, bytes]:
    """One request as a WSGI server makes it: the status, the headers, and the body's first chunk (then closed)."""
    environ: Json = {"REQUEST_METHOD": method, "SCRIPT_NAME": "", "PATH_INFO": path, "QUERY_STRING": query}
    if host is not None:
        environ["HTTP_HOST"] = host
    environ.update(extra or {})
    started: list[tuple[str, Headers]] = []

    def start_response(status: str, headers: Headers, exc_info: object = None) -> Callable[[bytes], object]:
        started.append((status, headers))
        return lambda data: None

    body = app(environ, start_response)
    try:
        first = next(iter(body), b"")
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()
    status, headers = started[0]
    return int(status.split()[0]), headers, first


@pytest.mark.parametrize(
    ("method", "status"), [("GET", 200), ("POST", 405), ("GET-past-max-clients", 503)], ids=["200", "405", "503"]
)
def test_every_answer_of_the_wsgi_stream_is_hardened(method: str, status: int) -> None:
    """The WSGI stream app: a stream, a method not allowed, and past max_clients."""
    app = breaker.stream.wsgi_app(max_clients=1)
    held = None
    try:
        if method == "GET-past-max-clients":
            held = app({"REQUEST_METHOD": "GET"}, lambda status, headers, exc_info=None: lambda data: None)
            next(iter(held))
            method = "GET"
        answer = call_wsgi(app, "/hystrix.stream", method=method)
    finally:
        if held is not None:
            held.close()  # type: ignore[attr-defined]
        app.close()
    assert answer[0] == status
    check_hardened(answer[1])


def test_every_answer_of_the_wsgi_dashboard_is_hardened(servers: Callable[[StreamServer], StreamServer]) -> None:
    """The WSGI dashboard: 301, page (its policy), assets, stream, proxy answers, 400, 403, 404, 405."""
    upstream = servers(breaker.stream.serve("127.0.0.1", 0, block=False))
    app = breaker.dashboard.wsgi_app(stream=breaker.stream.wsgi_app(), proxy=True, streams=[upstream.url])
    try:
        token = _proxy_base(call_wsgi(app, "/")[2]).partition("?")[2]
        answers = {
            "redirect": call_wsgi(app, ""),
            "page": call_wsgi(app, "/"),
            "css": call_wsgi(app, "/dashboard.css"),
            "js": call_wsgi(app, "/dashboard.js"),
            "stream": call_wsgi(app, "/hystrix.stream"),
            "relayed": call_wsgi(app, "/proxy.stream", query=f"{token}&origin={upstream.url}"),
            "not-allowed": call_wsgi(app, "/proxy.stream", query=f"{token}&origin=http://127.0.0.1:1/x"),
            "malformed": call_wsgi(app, "/proxy.stream", query=f"{token}&origin=ftp://x/"),
            "no-token": call_wsgi(app, "/proxy.stream", query=f"origin={upstream.url}"),
            "foreign-host": call_wsgi(app, "/", host="evil.example"),
            "no-host": call_wsgi(app, "/hystrix.stream", host=None),
            "nothing": call_wsgi(app, "/nothing"),
            "post": call_wsgi(app, "/", method="POST"),
        }
    finally:
        app.close()
    assert {name: status for name, (status, _, _) in answers.items()} == {
        "redirect": 301,
        "page": 200,
        "css": 200,
        "js": 200,
        "stream": 200,
        "relayed": 200,
        "not-allowed": 403,
        "malformed": 400,
        "no-token": 403,
        "foreign-host": 403,
        "no-host": 400,
        "nothing": 404,
        "post": 405,
    }
    for name, (_, headers, _) in answers.items():
        check_hardened(headers, PAGE_POLICY.format("") if name == "page" else DEFAULT_POLICY)


# -- ASGI, driven directly -----------------------------------------------------------------------------------------


ASGIApplication = Callable[[breaker.stream.Scope, breaker.stream.Receive, breaker.stream.Send], Any]


async def call_asgi(
    app: ASGIApplication,
    path: str,
    *,
    method: str = "GET",
    query: str = "",
    host: str | None = "127.0.0.1:8000",
    headers: Iterable[tuple[str, str]] = (),
) -> tuple[int, Headers, bytes]:
    """One request as an ASGI server makes it; the client leaves once the answer has started (or is whole)."""
    given = [*([] if host is None else [("Host", host)]), *headers]
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "root_path": "",
        "query_string": query.encode(),
        "headers": [(k.lower().encode(), v.encode()) for k, v in given],
    }
    sent: list[Json] = []
    started = asyncio.Event()

    async def receive() -> Json:
        if not sent:  # first: the request's (empty) body
            sent.append({"type": "-"})
            return {"type": "http.request", "body": b"", "more_body": False}
        await started.wait()
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))
        if message["type"] == "http.response.body":
            started.set()

    await asyncio.wait_for(app(scope, receive, send), WAIT)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = next((m["body"] for m in sent if m["type"] == "http.response.body"), b"")
    return start["status"], [(k.decode(), v.decode()) for k, v in start["headers"]], body


def test_every_answer_of_the_asgi_stream_is_hardened() -> None:
    """The ASGI stream app: a stream, a method not allowed, and past max_clients."""
    app = breaker.stream.asgi_app(max_clients=1, interval=0.02)

    async def scenario() -> list[tuple[int, Headers, bytes]]:
        answers = [await call_asgi(app, "/hystrix.stream"), await call_asgi(app, "/", method="POST")]
        holding = asyncio.Event()
        gone = asyncio.Event()

        async def receive() -> Json:
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: MutableMapping[str, Any]) -> None:
            holding.set()

        holder = asyncio.ensure_future(app({"type": "http", "method": "GET", "path": "/"}, receive, send))
        await asyncio.wait_for(holding.wait(), WAIT)
        answers.append(await call_asgi(app, "/hystrix.stream"))
        gone.set()
        await holder
        await app.aclose()
        return answers

    answers = asyncio.run(scenario())
    assert [status for status, _, _ in answers] == [200, 405, 503]
    for _, headers, _ in answers:
        check_hardened(headers)


def test_every_answer_of_the_asgi_dashboard_is_hardened(servers: Callable[[StreamServer], StreamServer]) -> None:
    """The ASGI dashboard: 301, page (its policy), assets, stream, proxy answers, 400, 403, 404, 405."""
    upstream = servers(breaker.stream.serve("127.0.0.1", 0, block=False))
    app = breaker.dashboard.asgi_app(stream=breaker.stream.asgi_app(interval=0.02), proxy=True, streams=[upstream.url])

    async def scenario() -> dict[str, tuple[int, Headers, bytes]]:
        token = _proxy_base((await call_asgi(app, "/"))[2]).partition("?")[2]
        return {
            "redirect": await call_asgi(app, ""),
            "page": await call_asgi(app, "/"),
            "css": await call_asgi(app, "/dashboard.css"),
            "js": await call_asgi(app, "/dashboard.js"),
            "stream": await call_asgi(app, "/hystrix.stream"),
            "relayed": await call_asgi(app, "/proxy.stream", query=f"{token}&origin={upstream.url}"),
            "not-allowed": await call_asgi(app, "/proxy.stream", query=f"{token}&origin=http://127.0.0.1:1/x"),
            "malformed": await call_asgi(app, "/proxy.stream", query=f"{token}&origin=ftp://x/"),
            "no-token": await call_asgi(app, "/proxy.stream", query=f"origin={upstream.url}"),
            "foreign-host": await call_asgi(app, "/", host="evil.example"),
            "no-host": await call_asgi(app, "/hystrix.stream", host=None),
            "two-hosts": await call_asgi(app, "/", headers=[("Host", "evil.example")]),
            "nothing": await call_asgi(app, "/nothing"),
            "post": await call_asgi(app, "/", method="POST"),
        }

    try:
        answers = asyncio.run(scenario())
    finally:
        app.close()
    assert {name: status for name, (status, _, _) in answers.items()} == {
        "redirect": 301,
        "page": 200,
        "css": 200,
        "js": 200,
        "stream": 200,
        "relayed": 200,
        "not-allowed": 403,
        "malformed": 400,
        "no-token": 403,
        "foreign-host": 403,
        "no-host": 400,
        "two-hosts": 400,
        "nothing": 404,
        "post": 405,
    }
    for name, (_, headers, _) in answers.items():
        check_hardened(headers, PAGE_POLICY.format("") if name == "page" else DEFAULT_POLICY)


# -- the page's policy ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "connect"),
    [
        ({}, ""),
        ({"streams": ["hystrix.stream", "/other/hystrix.stream"]}, ""),
        (
            {"streams": ["HTTP://Orders.example:80/hystrix.stream", "https://b.example:8443/turbine.stream?c=x"]},
            " http://orders.example https://b.example:8443",
        ),
        ({"streams": ["http://orders.example/hystrix.stream"], "proxy": True}, ""),
    ],
    ids=["default", "relative-streams", "other-origins", "other-origins-proxied"],
)
@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_the_page_policy_allows_its_own_script_style_and_streams_only(kind: str, options: Any, connect: str) -> None:
    """The page's CSP: own script and style, data: images, connections to itself and (no proxy) its streams' origins."""
    if kind == "wsgi":
        wsgi = breaker.dashboard.wsgi_app(stream=breaker.stream.wsgi_app(), **options)
        status, headers, _ = call_wsgi(wsgi, "/")
        wsgi.close()
    else:
        asgi = breaker.dashboard.asgi_app(stream=breaker.stream.asgi_app(), **options)
        status, headers, _ = asyncio.run(call_asgi(asgi, "/"))
        asgi.close()
    assert status == 200
    check_hardened(headers, PAGE_POLICY.format(connect))


# -- CORS ----------------------------------------------------------------------------------------------------------


def stream_headers(kind: str, origin: str | None, **options: Any) -> Headers:
    """The headers of a stream answer of the ``kind`` server to a request with ``Origin: origin``."""
    extra = [] if origin is None else [("Origin", origin)]
    if kind == "stdlib":
        server = breaker.stream.serve("127.0.0.1", 0, block=False, **options)
        try:
            status, headers = raw_head(
                server.port, get("/hystrix.stream", server.port, *(f"{k}: {v}" for k, v in extra))
            )
        finally:
            server.close()
    elif kind == "wsgi":
        wsgi = breaker.stream.wsgi_app(**options)
        status, headers, _ = call_wsgi(wsgi, "/", extra={f"HTTP_{k.upper()}": v for k, v in extra})
        wsgi.close()
    else:
        asgi = breaker.stream.asgi_app(**options)
        status, headers, _ = asyncio.run(call_asgi(asgi, "/", headers=extra))
        asgi.close()
    assert status == 200
    return headers


CORS_CASES = {
    "default-none": ({}, "https://board.example", None),
    "any": ({"cors_origins": ["*"]}, "https://board.example", "*"),
    "any-without-origin": ({"cors_origins": ["*"]}, None, "*"),
    "listed": ({"cors_origins": ["https://board.example", "http://127.0.0.1:8000"]}, "http://127.0.0.1:8000", "same"),
    "listed-normalized": ({"cors_origins": ["HTTPS://Board.example:443"]}, "https://board.example", "same"),
    "not-listed": ({"cors_origins": ["https://board.example"]}, "https://evil.example", None),
    "listed-without-origin": ({"cors_origins": ["https://board.example"]}, None, None),
}


@pytest.mark.parametrize(("options", "origin", "allowed"), CORS_CASES.values(), ids=CORS_CASES.keys())
@pytest.mark.parametrize("kind", ["stdlib", "wsgi", "asgi"])
def test_the_stream_sends_cors_headers_only_as_configured(
    kind: str, options: Any, origin: str | None, allowed: str | None
) -> None:
    """No Access-Control-Allow-Origin by default; "*" with ["*"]; the request's Origin if listed, with Vary: Origin."""
    headers = stream_headers(kind, origin, **options)
    found = [value for name, value in headers if name.lower() == "access-control-allow-origin"]
    assert found == ([] if allowed is None else [origin if allowed == "same" else allowed])
    listed = bool(options.get("cors_origins")) and options["cors_origins"] != ["*"]
    assert (("vary", "Origin") in [(name.lower(), value) for name, value in headers]) == listed
    check_hardened(headers, cors=allowed is not None)


@pytest.mark.parametrize(
    ("origins", "error", "match"),
    [
        ("*", TypeError, "cors_origins must be a sequence"),
        (["*", "https://board.example"], ValueError, "give it alone"),
        (["https://board.example/dashboard"], ValueError, "is not an origin"),
        (["board.example"], ValueError, "is not an origin"),
        (["ftp://board.example"], ValueError, "is not an origin"),
        (["https://board.example:99999"], ValueError, "port out of range"),
        ([""], TypeError, "non-empty strings"),
    ],
    ids=["a-str", "star-and-more", "a-path", "no-scheme", "ftp", "bad-port", "empty"],
)
@pytest.mark.parametrize("make", ["serve", "wsgi_app", "asgi_app"])
def test_bad_cors_origins_are_refused_naming_the_option(
    make: str, origins: Any, error: type[Exception], match: str
) -> None:
    """cors_origins that are not origins (a path, no scheme...), or "*" among others: an error naming cors_origins."""
    factories: dict[str, Callable[[], object]] = {
        "serve": lambda: breaker.stream.serve("127.0.0.1", 0, block=False, cors_origins=origins),
        "wsgi_app": lambda: breaker.stream.wsgi_app(cors_origins=origins),
        "asgi_app": lambda: breaker.stream.asgi_app(cors_origins=origins),
    }
    with pytest.raises(error, match=match) as raised:
        factories[make]()
    assert "cors_origins" in str(raised.value)
