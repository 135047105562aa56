"""A real HTTP/1.1 service on 127.0.0.1 whose answers the tests of `breaker.aiohttp` control, by path.

=================  ===================================================================================================
``/status/<n>``    status ``n`` with a short body, sent with the head in one write
``/hang``          nothing until the test calls `Service.release` (or the bound passes), then 200
``/slow``          the head and half the body (``Content-Length: 8``, ``part``), the rest (``rest``) once released
``/stream``        a chunked body: one chunk, then three more once released
``/broken``        the head and part of the body (``Content-Length: 100``), then, once released, a reset connection
``/redirect/<p>``  302 to ``/<p>`` on the same service
``/hangup``        no answer: the connection is closed at once
=================  ===================================================================================================

A POST is answered as a GET of its path, once its body is read. `Service.requests` lists the paths the service
received; `Service.wait_for` waits until one arrives. Every wait of the service is bounded by `WAIT`, and
`Service.close` releases them all, so no thread outlives its test by more.
"""

from __future__ import annotations

import http
import http.server
import socket
import struct
import threading
from collections.abc import Iterator
from typing import Any

import pytest

WAIT = 10.0  # seconds: the bound on every wait (of the service for the test, of the test for the service)


class Service:
    """A ThreadingHTTPServer on a port the OS picks, answering as the module docstring says."""

    def __init__(self) -> None:
        self.released = threading.Event()
        # Guards requests; notified when one arrives.
        self._arrived = threading.Condition()
        self._requests: list[str] = []
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.port: int = self.server.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), name="aiohttp-test-service")
        self.thread.start()

    def __repr__(self) -> str:
        return f"<Service {self.base} requests={self.requests}>"

    def url(self, path: str) -> str:
        return self.base + path

    @property
    def requests(self) -> list[str]:
        """The paths received so far, in order."""
        with self._arrived:  # see __init__
            return list(self._requests)

    def arrived(self, path: str) -> None:
        with self._arrived:  # see __init__
            self._requests.append(path)
            self._arrived.notify_all()

    def wait_for(self, path: str, count: int = 1) -> None:
        """Block until ``path`` was received ``count`` times (bounded by `WAIT`)."""
        with self._arrived:  # see __init__
            done = self._arrived.wait_for(lambda: self._requests.count(path) >= count, WAIT)
        assert done, f"{path} never arrived: {self.requests}"

    def release(self) -> None:
        """Let every held answer go on (``/hang``, ``/slow``, ``/stream``, ``/broken``)."""
        self.released.set()

    def hold(self) -> None:
        """Hold the answers that wait again (after `release`)."""
        self.released.clear()

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(WAIT)


def _handler(service: Service) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: aiohttp pools the connections
        timeout = WAIT  # an idle kept-alive connection ends its thread after this

        def do_GET(self) -> None:
            path = self.path
            service.arrived(path)
            if path.startswith("/status/"):
                self.answer(int(path.rpartition("/")[2]), b"status " + path.rpartition("/")[2].encode())
            elif path == "/hang":
                service.released.wait(WAIT)
                self.answer(200, b"late")
            elif path == "/slow":
                self.head(200, ("Content-Length", "8"))
                self.send(b"part")
                service.released.wait(WAIT)
                self.send(b"rest")
            elif path == "/stream":
                self.head(200, ("Transfer-Encoding", "chunked"))
                self.send(b"5\r\nchunk\r\n")
                service.released.wait(WAIT)
                self.send(b"5\r\nchunk\r\n" * 3 + b"0\r\n\r\n")
            elif path.startswith("/redirect/"):
                self.head(302, ("Location", path.removeprefix("/redirect")), ("Content-Length", "0"))
            elif path == "/hangup":
                self.close_connection = True
            elif path == "/broken":
                self.head(200, ("Content-Length", "100"))
                self.send(b"only part of it")
                service.released.wait(WAIT)
                self.reset()
            else:
                self.answer(404, b"no such behaviour")

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.do_GET()

        def answer(self, status: int, body: bytes) -> None:
            """The head and the body in one write: they reach the client together, as a short answer does."""
            reason = http.HTTPStatus(status).phrase
            head = f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n"
            self.send(head.encode() + body)

        def head(self, status: int, *headers: tuple[str, str]) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            for name, value in headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.flush()

        def send(self, data: bytes) -> None:
            try:
                self.wfile.write(data)
                self.wfile.flush()
            except OSError:  # the client went away (it closed or released the response): nothing to do
                self.close_connection = True

        def reset(self) -> None:
            """Abort the connection: close it with a zero linger, which sends a reset."""
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.wfile.close()
            self.rfile.close()
            self.connection.close()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def closed_port() -> int:
    """A port nothing listens on: bound, then released (a connection to it is refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def service() -> Iterator[Service]:
    """A running `Service`, closed (every held answer released) after the test."""
    running = Service()
    try:
        yield running
    finally:
        running.close()
