"""A real HTTP dependency on 127.0.0.1 for the HTTP client integrations' tests, with canned behaviours by path.

- ``/status/N``: answers status N with a short body.
- ``/hang``: waits until the test sets `Dependency.release` (at most `WAIT` s), then answers 200.
- ``/stream``: a chunked body; each chunk after the first waits for `Dependency.release`.
- ``/broken``: promises 100 bytes, sends 10, and closes the connection.
- ``/slow-headers``: waits for `Dependency.release` before the status line (for client read timeouts).

Every request is counted by path in `Dependency.hits` before it is answered. `refused_url` is a URL on a port
nothing listens on.
"""

from __future__ import annotations

import collections
import contextlib
import http.server
import socket
import sys
import threading
from collections.abc import Iterator
from typing import ClassVar

__all__ = ["WAIT", "Dependency", "dependency", "refused_url"]

WAIT = 10.0


class Dependency:
    """The running server: its base URL, its hit counts, and the event that lets held requests go."""

    def __init__(self, server: http.server.ThreadingHTTPServer) -> None:
        self.server = server
        host, port = server.server_address[:2]
        self.url = f"http://{host!s}:{port}"
        self.port = port
        self.hits: collections.Counter[str] = collections.Counter()
        self.release = threading.Event()
        self._lock = threading.Lock()  # the Counter is updated from the server's request threads

    def hit(self, path: str) -> None:
        with self._lock:
            self.hits[path] += 1

    def total(self) -> int:
        with self._lock:
            return sum(self.hits.values())


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    dependency: ClassVar[Dependency]

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        dependency = self.server.dependency  # type: ignore[attr-defined]
        path = self.path.split("?")[0]
        dependency.hit(path)
        if path.startswith("/status/"):
            self._answer(int(path.rsplit("/", 1)[1]), f"status {path.rsplit('/', 1)[1]}".encode())
        elif path in {"/hang", "/slow-headers"}:
            dependency.release.wait(WAIT)
            self._answer(200, b"late")
        elif path == "/stream":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for index in range(3):
                if index:
                    dependency.release.wait(WAIT)
                chunk = f"chunk {index}\n".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/broken":
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.write(b"x" * 10)
            self.wfile.flush()
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
        else:
            self._answer(404, b"no such behaviour")

    do_POST = do_GET

    def _answer(self, status: int, body: bytes) -> None:
        if status in (204, 304):
            body = b""  # these have no body
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(body)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that hung up mid-answer (a reader that stopped early) is the test's doing, not an error;
        anything else is reported as the base class does."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


@contextlib.contextmanager
def dependency() -> Iterator[Dependency]:
    """Serve on 127.0.0.1 (a port the OS picks) until the block ends; held requests are let go at the end."""
    server = _Server(("127.0.0.1", 0), _Handler)
    running = Dependency(server)
    server.dependency = running  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), name="test-dependency", daemon=True)
    thread.start()
    try:
        yield running
    finally:
        running.release.set()
        server.shutdown()
        server.server_close()
        thread.join(WAIT)


def refused_url() -> str:
    """A URL on 127.0.0.1 whose port nothing listens on (bound by the OS, then closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"
