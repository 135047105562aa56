"""Real HTTP servers on 127.0.0.1 for the HTTP client integrations' tests, with behaviours the tests control.

``with serve(behaviour) as server:`` runs a stdlib `ThreadingHTTPServer` (HTTP/1.1, keep-alive) on a port the OS
picks; ``server.url`` is its base URL and ``server.requests`` the number of requests it got. ``behaviour(handler)``
answers each request (``handler`` is the stdlib request handler: ``send_response``, ``wfile``...). The canned ones:

- `status`: a status with a small body;
- `body`: a streaming body, in chunks (chunked transfer encoding or a Content-Length);
- `Hang`: blocks until the test calls ``release()`` (at most `BOUND` seconds), then answers;
- `Paced`: the headers and the first chunk, then each further chunk once the test lets it go (``release(n)``);
- `broken`: the headers and part of the body, then the connection closed (or reset) before the rest;
- `refused_url`: a URL whose port nobody listens on.

Every wait of the server's is bounded by `BOUND`, and leaving ``serve`` releases the behaviour, shuts down every
connection and joins every thread: nothing of a test's server outlives it, whatever the test did.
"""

from __future__ import annotations

import contextlib
import http.server
import socket
import struct
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

__all__ = ["BOUND", "Behaviour", "Hang", "Paced", "Server", "body", "broken", "refused_url", "serve", "status"]

#: Seconds: the bound on every wait of a server (a behaviour's gate, an idle keep-alive connection).
BOUND = 10.0

Behaviour = Callable[[http.server.BaseHTTPRequestHandler], None]


class Server:
    """A running test server: its base URL and what it received."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.paths: list[str] = []
        # Guards paths: request threads append while the test reads.
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<Server {self.url} requests={self.requests}>"

    def __str__(self) -> str:
        return self.url

    def got(self, path: str) -> None:
        with self._lock:  # see __init__
            self.paths.append(path)

    @property
    def requests(self) -> int:
        """The number of requests received so far."""
        with self._lock:  # see __init__
            return len(self.paths)


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = False  # server_close joins every request thread
    block_on_close = True

    def __init__(self, behaviour: Behaviour, record: Server | None) -> None:
        self.behaviour = behaviour
        self.record = record
        self.connections: set[socket.socket] = set()
        # Guards connections: request threads add and remove theirs while `close` shuts them down.
        self.connections_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that went away mid-answer is what these tests do on purpose

    def close(self) -> None:
        self.shutdown()
        with self.connections_lock:  # see __init__
            for connection in self.connections:
                with contextlib.suppress(OSError):  # closed already
                    connection.shutdown(socket.SHUT_RDWR)
        self.server_close()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = BOUND  # an idle keep-alive connection ends after this
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:  # see _HTTPServer.__init__
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:  # see _HTTPServer.__init__
            self.server.connections.discard(self.connection)
        with contextlib.suppress(OSError):  # the client reset the connection
            super().finish()

    def _answer(self) -> None:
        if self.server.record is not None:
            self.server.record.got(self.path)
        self.server.behaviour(self)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def serve(behaviour: Behaviour) -> Iterator[Server]:
    """Serve ``behaviour`` on 127.0.0.1 until the block ends; yields the `Server` (``url``, ``requests``)."""
    record = Server("")
    server = _HTTPServer(behaviour, record)
    record.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="test-http-server")
    thread.start()
    try:
        yield record
    finally:
        release = getattr(behaviour, "release_all", None)
        if release is not None:
            release()
        server.close()
        thread.join(BOUND)


def _head(handler: http.server.BaseHTTPRequestHandler, code: int, headers: Sequence[tuple[str, str]]) -> None:
    handler.send_response(code)
    for name, value in headers:
        handler.send_header(name, value)
    handler.end_headers()


def status(code: int, content: bytes = b"", headers: Sequence[tuple[str, str]] = ()) -> Behaviour:
    """Answer ``code`` with ``content`` (and ``headers``)."""

    def answer(handler: http.server.BaseHTTPRequestHandler) -> None:
        _head(handler, code, [*headers, ("Content-Length", str(len(content)))])
        if handler.command != "HEAD":
            handler.wfile.write(content)

    return answer


def body(chunks: Sequence[bytes], *, chunked: bool = True) -> Behaviour:
    """Answer 200 with ``chunks``, in chunked transfer encoding or (``chunked=False``) after a Content-Length."""

    def answer(handler: http.server.BaseHTTPRequestHandler) -> None:
        if chunked:
            _head(handler, 200, [("Transfer-Encoding", "chunked")])
            for chunk in chunks:
                handler.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            handler.wfile.write(b"0\r\n\r\n")
        else:
            _head(handler, 200, [("Content-Length", str(sum(map(len, chunks))))])
            for chunk in chunks:
                handler.wfile.write(chunk)

    return answer


class Hang:
    """A behaviour that blocks each request until ``release()`` (at most `BOUND` seconds), then answers ``code``.

    ``arrived`` is set when a request is blocked here.
    """

    def __init__(self, code: int = 200) -> None:
        self.code = code
        self.arrived = threading.Event()
        self._released = threading.Event()

    def __repr__(self) -> str:
        return f"<Hang arrived={self.arrived.is_set()} released={self._released.is_set()}>"

    def __call__(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        self.arrived.set()
        self._released.wait(BOUND)
        status(self.code)(handler)

    def release(self) -> None:
        """Let every blocked request (and every later one) answer."""
        self._released.set()

    release_all = release


class Paced:
    """A behaviour that sends the headers (with the Content-Length of every chunk) and ``chunks[0]``, then each
    further chunk once the test lets it go with ``release()`` (waiting at most `BOUND` seconds for each).

    ``started`` is set once the headers and the first chunk are sent.
    """

    def __init__(self, chunks: Sequence[bytes]) -> None:
        self.chunks = list(chunks)
        self.started = threading.Event()
        self._permits = threading.Semaphore(0)
        self._free = threading.Event()

    def __repr__(self) -> str:
        return f"<Paced {len(self.chunks)} chunks started={self.started.is_set()}>"

    def __call__(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        _head(handler, 200, [("Content-Length", str(sum(map(len, self.chunks))))])
        first, *rest = self.chunks
        handler.wfile.write(first)
        self.started.set()
        for chunk in rest:
            if not self._free.is_set():
                self._permits.acquire(timeout=BOUND)
            handler.wfile.write(chunk)

    def release(self, chunks: int = 1) -> None:
        """Let the next ``chunks`` chunks go."""
        self._permits.release(chunks)

    def release_all(self) -> None:
        """Let every chunk go, now and for later requests."""
        self._free.set()
        self._permits.release(len(self.chunks))


def broken(sent: bytes = b"partial", promised: int = 1000, *, reset: bool = False) -> Behaviour:
    """Answer 200 promising ``promised`` bytes, send ``sent``, then close the connection (``reset``: with a TCP
    reset, as a crashed peer would)."""

    def answer(handler: http.server.BaseHTTPRequestHandler) -> None:
        _head(handler, 200, [("Content-Length", str(promised))])
        handler.wfile.write(sent)
        handler.close_connection = True  # the server closes it now: the client sees the body end early
        if reset:  # SO_LINGER on, 0 s: the close sends RST instead of FIN (once the file objects let it go)
            handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            handler.rfile.close()
            handler.wfile.close()
            handler.connection.close()

    return answer


def refused_url() -> str:
    """A base URL on 127.0.0.1 whose port nobody listens on (bound by the OS for this, then closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"
