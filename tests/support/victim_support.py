"""A plain HTTP service on 127.0.0.1 standing for what a hostile page would reach through the dashboard's proxy.

`Victim` counts the requests it gets (``paths``) and answers each with a fixed status and headers: 200 for a
service with a dangerous GET (``/admin/drop-all``), a redirect to another victim, or an event stream's head for
one a browser may read. The ``victims`` fixture starts them on demand and stops them after the test.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

WAIT = 5.0  # seconds: the bound on stopping the service


class Victim:
    """A ThreadingHTTPServer on a port the OS picks: records each GET's path, answers ``status`` with ``headers``.

    Args:
        status: The status of every answer.
        headers: Its headers (a ``Content-Length: 0`` is added: the body is empty).
    """

    def __init__(self, status: int = 200, headers: tuple[tuple[str, str], ...] = (("Content-Type", "text/plain"),)):
        self.paths: list[str] = []
        # Guards paths: request threads append while the test reads.
        self._lock = threading.Lock()
        victim = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with victim._lock:  # see above
                    victim.paths.append(self.path)
                self.send_response(status)
                for name, value in [*headers, ("Content-Length", "0")]:
                    self.send_header(name, value)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port: int = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), name="victim")
        self.thread.start()

    def __repr__(self) -> str:
        return f"<Victim {self.url('/')} requests={self.requested()}>"

    def url(self, path: str) -> str:
        """The URL of ``path`` on this service."""
        return f"http://127.0.0.1:{self.port}{path}"

    def requested(self) -> list[str]:
        """The paths requested so far."""
        with self._lock:  # see __init__
            return list(self.paths)

    def close(self) -> None:
        """Stop serving and wait for the serving thread."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(WAIT)


@pytest.fixture
def victims() -> Iterator[Callable[..., Victim]]:
    """Starts victim services on demand (arguments as `Victim`'s); stops them after the test."""
    started: list[Victim] = []

    def start(*args: Any, **kwargs: Any) -> Victim:
        started.append(Victim(*args, **kwargs))
        return started[-1]

    yield start
    for victim in started:
        victim.close()
