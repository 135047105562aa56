"""The stdlib stream server sheds bad clients (`breaker.stream._bounds`): slow heads, oversized heads, idle and
surplus connections and malformed requests are refused, and the server goes on serving the others.

Every server and client is real, on 127.0.0.1 with a port the OS picks. Timing assertions are bounds with wide
margins (the tests also run beside a CPU hog), and every wait is a loop with a deadline.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

import breaker
import breaker.dashboard
import breaker.stream
from breaker.__main__ import main
from breaker.stream import StreamServer

WAIT = 5.0  # seconds: the bound on any wait for something that should take milliseconds
MARGIN = 4.0  # seconds: how late past its bound a server may act and still pass (a loaded machine is slow)


def eventually(predicate: Callable[[], bool], timeout: float = WAIT) -> None:
    """Wait until ``predicate()`` holds (a bound on a wait, not a guess at how long something takes)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting for the condition"
        time.sleep(0.005)


def stream_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("breaker-stream")]


def request_threads() -> int:
    """Connection threads of every stream server: one per connection accepted and not yet done."""
    return sum(t.name == "breaker-stream-request" for t in threading.enumerate())


def page(handler: Any) -> None:
    """A route answering 200 with a short body (a normal client's request)."""
    body = b"served"
    handler.send_response(200)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


@pytest.fixture
def start() -> Iterator[Callable[..., StreamServer]]:
    """Starts stream servers on 127.0.0.1 (a port the OS picks) with a page at /page; closes them after the test,
    and checks that no thread of theirs is left."""
    servers: list[StreamServer] = []

    def start(**options: Any) -> StreamServer:
        options.setdefault("interval", 0.02)
        server = breaker.stream.serve("127.0.0.1", 0, block=False, routes={"/page": page}, **options)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()
    assert stream_threads() == []


@dataclasses.dataclass
class Answer:
    status: int | None  # None: the connection ended without an answer
    head: bytes
    body: bytes


def read_to_end(sock: socket.socket, timeout: float = WAIT) -> bytes:
    """Everything the server sends until it ends the connection (a reset ends it too); raises TimeoutError if it
    has not ended within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    data = b""
    try:
        while True:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            chunk = sock.recv(65536)
            if not chunk:
                return data
            data += chunk
    except ConnectionResetError:
        return data


def parse(data: bytes) -> Answer:
    if not data:
        return Answer(None, b"", b"")
    head, _, body = data.partition(b"\r\n\r\n")
    version, status, _ = head.split(b" ", 2)
    assert version == b"HTTP/1.0"
    return Answer(int(status), head, body)


def exchange(port: int, request: bytes, *, half_close: bool = False) -> Answer:
    """Send ``request`` on a new connection and read the answer to the end of the connection, which the server
    must end within `WAIT` seconds."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):  # refused before it was all sent
            sock.sendall(request)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        return parse(read_to_end(sock))


def fetch(port: int, path: str = "/page") -> int:
    """A normal client's request (http.client): the answer's status."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def head_of(size: int) -> bytes:
    """A GET of /page whose request line and headers take exactly ``size`` bytes (an X-Pad header fills it)."""
    start, end = b"GET /page HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: ", b"\r\n\r\n"
    return start + b"a" * (size - len(start) - len(end)) + end


# -- the request's head ---------------------------------------------------------------------------------------------


def test_a_head_sent_a_byte_at_a_time_is_cut_at_header_timeout_while_others_are_served(
    start: Callable[..., StreamServer],
) -> None:
    """Slowloris: a header byte every 0.2 s renews no deadline; at header_timeout (1 s) of its first byte the
    connection gets 408 and is closed, while a normal client is served meanwhile."""
    server = start(header_timeout=1.0, idle_timeout=30)
    served: int | None = None
    answer = b""
    with socket.create_connection(("127.0.0.1", server.port)) as slow:
        began = time.monotonic()
        slow.sendall(b"GET /hystrix.stream HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        while time.monotonic() - began < 1.0 + MARGIN:
            readable, _, _ = select.select([slow], [], [], 0.2)  # the pace of the attack: a byte every 0.2 s
            if readable:
                answer = read_to_end(slow)
                break
            with contextlib.suppress(ConnectionResetError, BrokenPipeError):  # closed: the select then says so
                slow.send(b"a")
            if served is None:
                served = fetch(server.port)  # a normal client, while the slow one is connected
        elapsed = time.monotonic() - began
    assert served == 200
    assert parse(answer).status == 408, answer
    assert 0.9 <= elapsed < 1.0 + MARGIN


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (head_of(16384 + 1), 431),
        (b"GET /page HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n", 431),
        (b"GET /" + b"a" * 17_000 + b" HTTP/1.1\r\n\r\n", 414),
        (b"GET /page HTTP/1.1\r\n" + b"".join(b"X-%d: a\r\n" % i for i in range(101)) + b"\r\n", 431),
    ],
    ids=["one-byte-over-16k", "100k-header", "17k-request-line", "101-headers"],
)
def test_a_head_over_the_caps_is_refused_and_closed_and_the_server_keeps_serving(
    request_bytes: bytes, status: int, start: Callable[..., StreamServer]
) -> None:
    """With the default max_header_bytes (16384), a bigger head gets 431 (414 while still in the request line; 431
    for over 100 header lines too), its connection is closed, and the next client is served."""
    server = start()
    assert exchange(server.port, request_bytes).status == status
    assert fetch(server.port) == 200


def test_a_head_of_exactly_max_header_bytes_is_served(start: Callable[..., StreamServer]) -> None:
    """The cap counts the request line, the headers and the blank line: a head of exactly 16384 bytes is served."""
    server = start()
    answer = exchange(server.port, head_of(16384))
    assert (answer.status, answer.body) == (200, b"served")
    small = start(max_header_bytes=100)
    assert exchange(small.port, head_of(100)).status == 200
    assert exchange(small.port, head_of(101)).status == 431


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"hello\r\n\r\n", 400),
        (b"GET /page\r\n\r\n", 400),  # HTTP/0.9: no version
        (b"GET /page HTTP/1.1 more\r\n\r\n", 400),
        (b"\r\n\r\n", 400),
        (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\n", 400),  # TLS spoken to a plain HTTP port
        (b"GET /page FOO/1.0\r\n\r\n", 400),
        (b"GET /page HTTP/1\r\n\r\n", 400),
        (b"GET /page HTTP/2.0\r\n\r\n", 505),
        (b"GET /page HTTP/0.9\r\n\r\n", 505),
        (b"POST /hystrix.stream HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}", 405),
        (b"DELETE /page HTTP/1.1\r\n\r\n", 405),
        (b"HEAD /page HTTP/1.1\r\n\r\n", 405),
    ],
    ids=[
        "one-word",
        "http-0.9-line",
        "four-words",
        "empty-line",
        "tls",
        "not-http",
        "no-minor-version",
        "http-2",
        "http-0.9-version",
        "post",
        "delete",
        "head",
    ],
)
def test_a_malformed_request_gets_a_4xx_and_the_server_keeps_serving(
    request_bytes: bytes, status: int, start: Callable[..., StreamServer]
) -> None:
    """A bad request line, an HTTP version other than 1.x or a method other than GET is answered (405 with Allow:
    GET), the connection is closed, and the next client is served."""
    server = start()
    answer = exchange(server.port, request_bytes)
    assert answer.status == status, answer
    if status == 405:
        assert b"\r\nAllow: GET\r\n" in answer.head
    assert fetch(server.port) == 200


def test_a_head_cut_short_by_the_client_gets_400(start: Callable[..., StreamServer]) -> None:
    """A client that ends its side before the blank line gets 400 at once (not at header_timeout)."""
    server = start(header_timeout=60)
    began = time.monotonic()
    answer = exchange(server.port, b"GET /page HTTP/1.1\r\nHost: 127.0.0.1\r\n", half_close=True)
    assert answer.status == 400
    assert time.monotonic() - began < WAIT


# -- connections ----------------------------------------------------------------------------------------------------


def test_a_connection_that_sends_nothing_is_closed_after_idle_timeout(start: Callable[..., StreamServer]) -> None:
    """A connection with no request is closed without an answer idle_timeout (1 s) after it was accepted."""
    server = start(idle_timeout=1.0, header_timeout=60)
    with socket.create_connection(("127.0.0.1", server.port)) as idle:
        began = time.monotonic()
        assert read_to_end(idle, timeout=1.0 + MARGIN) == b""
        elapsed = time.monotonic() - began
    assert 0.9 <= elapsed < 1.0 + MARGIN
    assert fetch(server.port) == 200


def test_a_connection_waiting_for_its_next_request_is_closed_within_idle_timeout(
    start: Callable[..., StreamServer],
) -> None:
    """A client asking to keep the connection alive gets its answer, then the connection ends within idle_timeout:
    an idle keep-alive connection holds no thread past the bound (this server closes it at once: HTTP/1.0)."""
    server = start(idle_timeout=1.0, header_timeout=60)
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET /page HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n")
        answer = parse(read_to_end(sock, timeout=1.0 + MARGIN))
    assert (answer.status, answer.body) == (200, b"served")


def test_connections_past_max_connections_are_refused_at_once_and_served_once_others_go(
    start: Callable[..., StreamServer],
) -> None:
    """With max_connections (4) idle connections held, each further one gets 503 at once and is closed, with no
    thread started for it; once the idle ones go, a normal client is served."""
    server = start(max_connections=4, idle_timeout=60, header_timeout=60)
    with contextlib.ExitStack() as held:
        for _ in range(4):
            held.enter_context(socket.create_connection(("127.0.0.1", server.port)))
        eventually(lambda: request_threads() == 4)
        for _ in range(3):
            began = time.monotonic()
            with socket.create_connection(("127.0.0.1", server.port)) as extra:
                answer = parse(read_to_end(extra))
            assert (answer.status, answer.body) == (503, b"too many connections; try again later\n")
            assert time.monotonic() - began < WAIT  # not after an idle bound (60 s)
        assert fetch(server.port) == 503  # a normal client too, while they are held
        assert request_threads() == 4
    eventually(lambda: request_threads() == 0)
    assert fetch(server.port) == 200


def test_streams_count_against_max_connections_and_keep_their_own_bounds(start: Callable[..., StreamServer]) -> None:
    """A stream holds one of max_connections (2): with it and one more connection held, a third gets 503; below
    that cap, max_clients (1) still refuses a second stream with its own 503."""
    breaker.get_circuit("c")
    server = start(max_connections=2, max_clients=1, interval=60)  # the stream unread: no interval fills its socket
    first = http.client.HTTPConnection("127.0.0.1", server.port, timeout=WAIT)
    second = http.client.HTTPConnection("127.0.0.1", server.port, timeout=WAIT)
    try:
        first.request("GET", "/hystrix.stream")
        assert first.getresponse().status == 200
        second.request("GET", "/hystrix.stream")
        assert second.getresponse().status == 503  # max_clients: answered, then its connection ends
        eventually(lambda: request_threads() == 1)
        assert fetch(server.port) == 200  # the second connection
        eventually(lambda: request_threads() == 1)  # the page's connection is let go
        with (
            socket.create_connection(("127.0.0.1", server.port)),
            socket.create_connection(("127.0.0.1", server.port)) as third,
        ):
            assert parse(read_to_end(third)).status == 503
    finally:
        first.close()
        second.close()


def test_close_returns_at_once_with_slow_idle_and_streaming_clients_and_leaves_no_thread(
    start: Callable[..., StreamServer],
) -> None:
    """close() does not wait for the bounds (60 s here) of a client idle, one halfway through its head, or one
    streaming: it wakes and joins every thread."""
    breaker.get_circuit("c")
    server = start(header_timeout=60, idle_timeout=60)
    stream = http.client.HTTPConnection("127.0.0.1", server.port, timeout=WAIT)
    with (
        socket.create_connection(("127.0.0.1", server.port)) as idle,
        socket.create_connection(("127.0.0.1", server.port)) as slow,
    ):
        slow.sendall(b"GET /page HTTP/1.1\r\nX-Slow: a")
        stream.request("GET", "/hystrix.stream")
        response = stream.getresponse()
        assert response.readline().startswith(b"data: ")
        eventually(lambda: request_threads() == 3)
        closer = threading.Thread(target=server.close)
        began = time.monotonic()
        closer.start()
        closer.join(WAIT)
        assert not closer.is_alive()
        assert time.monotonic() - began < WAIT
        assert (read_to_end(idle), read_to_end(slow)) == (b"", b"")
    stream.close()
    assert stream_threads() == []


# -- options --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"max_connections": 0}, ValueError, "max_connections must be at least 1, got 0"),
        ({"max_connections": 1.5}, TypeError, "max_connections must be an int"),
        ({"header_timeout": 0}, ValueError, "header_timeout must be a positive, finite number of seconds.*got 0"),
        ({"header_timeout": "10"}, TypeError, "header_timeout must be seconds"),
        ({"max_header_bytes": True}, TypeError, "max_header_bytes must be an int"),
        ({"max_header_bytes": -1}, ValueError, "max_header_bytes must be at least 1, got -1"),
        ({"idle_timeout": float("inf")}, ValueError, "idle_timeout must be a positive, finite number of seconds"),
        ({"idle_timeout": timedelta(seconds=-1)}, ValueError, "idle_timeout must be a positive"),
    ],
    ids=[
        "no-connections",
        "float-connections",
        "zero-header-timeout",
        "str-header-timeout",
        "bool-header-bytes",
        "negative-header-bytes",
        "inf-idle",
        "negative-idle",
    ],
)
@pytest.mark.parametrize("make", ["StreamServer", "stream.serve", "dashboard.serve"])
def test_bad_bounds_are_refused_with_a_message_naming_them(
    options: dict[str, Any], error: type[Exception], match: str, make: str
) -> None:
    """Every bound is checked when the server is built, the error naming the argument, the rule and the value."""
    build: Callable[..., StreamServer] = {
        "StreamServer": lambda **o: StreamServer("127.0.0.1", 0, **o),
        "stream.serve": lambda **o: breaker.stream.serve("127.0.0.1", 0, block=False, **o),
        "dashboard.serve": lambda **o: breaker.dashboard.serve("127.0.0.1", 0, block=False, **o),
    }[make]
    with pytest.raises(error, match=match):
        build(**options)
    assert stream_threads() == []


def test_the_bounds_and_their_defaults_show_in_the_repr() -> None:
    """The server's repr names every bound; the defaults are 64 connections, 10 s, 16384 bytes and 5 s."""
    with StreamServer("127.0.0.1", 0) as server:
        assert "max_connections=64 header_timeout=10s max_header_bytes=16384 idle_timeout=5s" in repr(server)
    given: dict[str, Any] = {
        "max_connections": 3,
        "header_timeout": timedelta(milliseconds=1500),
        "max_header_bytes": 2048,
    }
    with breaker.dashboard.serve("127.0.0.1", 0, block=False, idle_timeout=0.25, **given) as server:
        assert "max_connections=3 header_timeout=1.5s max_header_bytes=2048 idle_timeout=0.25s" in repr(server)


def test_dashboard_serve_holds_its_connections_to_the_bounds_given() -> None:
    """breaker.dashboard.serve passes the bounds to its server: a page's head over max_header_bytes gets 431."""
    with breaker.dashboard.serve("127.0.0.1", 0, block=False, max_header_bytes=1024) as server:
        big = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"a" * 1024 + b"\r\n\r\n"
        assert exchange(server.port, big).status == 431
        assert fetch(server.port, "/") == 200
    assert stream_threads() == []


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--max-connections", "0"),
        ("--max-clients", "many"),
        ("--header-timeout", "0"),
        ("--max-header-bytes", "1.5"),
        ("--idle-timeout", "soon"),
        ("--send-timeout", "inf"),
    ],
)
def test_cli_refuses_a_bad_bound_naming_its_flag(flag: str, value: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m breaker dashboard` with a bad bound exits 2 (argparse's usage error) naming the flag."""
    with pytest.raises(SystemExit) as exit_info:
        main(["dashboard", "--port", "0", flag, value])
    assert exit_info.value.code == 2
    assert f"argument {flag}: " in capsys.readouterr().err
    assert stream_threads() == []


def test_cli_passes_its_bound_flags_to_the_server() -> None:
    """`python -m breaker dashboard` with --max-connections, --header-timeout, --idle-timeout and
    --max-header-bytes: its server refuses past each of them; SIGINT then ends it with exit code 0."""
    flags = ["--max-connections", "2", "--header-timeout", "1s", "--idle-timeout", "1", "--max-header-bytes", "1024"]
    process = subprocess.Popen(
        [sys.executable, "-m", "breaker", "dashboard", "--port", "0", *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"},
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 20)
        assert ready, "the dashboard printed nothing"
        found = re.match(r"dashboard: http://127\.0\.0\.1:(\d+)/", process.stdout.readline())
        assert found is not None
        port = int(found.group(1))
        # The first two connections of a fresh server: both accepted, in this order, before the third.
        with (
            socket.create_connection(("127.0.0.1", port)) as slow,
            socket.create_connection(("127.0.0.1", port)) as idle,
        ):
            began = time.monotonic()
            slow.sendall(b"GET / HTTP/1.1\r\nX-Slow: a")
            with socket.create_connection(("127.0.0.1", port)) as extra:
                assert parse(read_to_end(extra)).status == 503
            assert parse(read_to_end(slow, timeout=1.0 + MARGIN)).status == 408
            assert read_to_end(idle, timeout=1.0 + MARGIN) == b""
            assert 0.9 <= time.monotonic() - began < 1.0 + MARGIN
        big = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"a" * 1024 + b"\r\n\r\n"
        # Each connection ended above is let go by the server just after the client sees its end: until then a
        # new one may still be refused (503).
        eventually(lambda: exchange(port, big).status == 431)
        eventually(lambda: fetch(port, "/") == 200)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=10)
        assert process.returncode == 0, err
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=10)
