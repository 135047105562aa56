"""A real ``redis-server`` for the fleet-mode tests: Debian's, started per test on a free port of 127.0.0.1.

The server is the executable at ``$BREAKER_REDIS_SERVER``, or ``redis-server`` on the ``PATH`` (Debian's
``redis-server`` package; ``apt-get install redis-server``, as .ci/run does). A missing server is an error, never a
skip.

A test module gets the fixture by naming this module as a plugin (and imports it only under ``TYPE_CHECKING``, for
the type: importing it first would keep pytest from rewriting its asserts)::

    pytest_plugins = ["redis_support"]

- ``redis_server``: a `RedisServer`, started for the test (function-scoped) and always stopped after it. It runs
  without persistence (``--save "" --appendonly no``), in the test's own temporary directory; `RedisServer.kill`
  and `RedisServer.restart` (same port) simulate an outage.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

SERVER_ENV = "BREAKER_REDIS_SERVER"
HOST = "127.0.0.1"
START_TIMEOUT = 10.0  # seconds for a started server to answer PING
STOP_TIMEOUT = 5.0  # seconds for a server to exit after SIGTERM (then SIGKILL)
PORT_ATTEMPTS = 5  # fresh ports tried when another process takes the one picked first


def redis_server_path() -> str:
    """The redis-server executable: ``$BREAKER_REDIS_SERVER``, else ``redis-server`` on the PATH.

    Raises:
        RuntimeError: There is none.
    """
    path = os.environ.get(SERVER_ENV) or shutil.which("redis-server") or "/usr/bin/redis-server"
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise RuntimeError(
            f"no redis-server executable at {path!r}: the fleet-mode tests need Debian's `redis-server` package "
            f"(`apt-get install redis-server`, as .ci/run does), or ${SERVER_ENV} set to a redis-server executable"
        )
    return path


def free_port() -> int:
    """A port of 127.0.0.1 that was free a moment ago (bound to port 0, read, closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def answers_ping(port: int) -> bool:
    """Whether a Redis server on 127.0.0.1:``port`` answers PING now (raw RESP, no client library)."""
    try:
        with socket.create_connection((HOST, port), timeout=0.5) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One ``redis-server`` process on 127.0.0.1, on a port it picks itself, without persistence.

    Args:
        directory: Its working directory (``--dir``) and log file; created if missing.
    """

    def __init__(self, directory: Path) -> None:
        self.executable = redis_server_path()
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.host = HOST
        self.port = 0
        self.starts = 0  # processes started, restarts included: each logs to its own file
        self._process: subprocess.Popen[bytes] | None = None
        self._clients: list[redis.Redis] = []

    def __repr__(self) -> str:
        running = self._process is not None and self._process.poll() is None
        return f"<RedisServer {self.host}:{self.port} {'running' if running else 'stopped'}>"

    @property
    def log_path(self) -> Path:
        """The log of the current (or last) process."""
        return self.directory / f"redis-{self.starts}.log"

    def start(self) -> None:
        """Start on a fresh free port; wait until it answers PING. A port taken meanwhile: another one.

        Raises:
            RuntimeError: It did not come up (its log is in the message).
        """
        for _ in range(PORT_ATTEMPTS):
            self.port = free_port()
            if self._launch():
                return
        raise RuntimeError(f"redis-server found no free port in {PORT_ATTEMPTS} attempts: {self._log_tail()}")

    def restart(self) -> None:
        """Start again on the same port (after `kill` or `stop`), empty; wait until it answers PING.

        Raises:
            RuntimeError: It did not come up.
        """
        if self._process is not None and self._process.poll() is None:
            raise RuntimeError(f"{self!r} is still running: kill() or stop() it first")
        deadline = time.monotonic() + START_TIMEOUT
        while not self._launch():  # the port is only ever in use by another process
            if time.monotonic() >= deadline:
                raise RuntimeError(f"redis-server could not take port {self.port} again: {self._log_tail()}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL the server and wait for it to be gone (an outage: no shutdown, connections just break)."""
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait()

    def stop(self) -> None:
        """Close the clients made by `client`, then stop the server (SIGTERM, SIGKILL after a bound). Idempotent."""
        clients, self._clients = self._clients, []
        for client in clients:
            client.close()
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.kill()

    def client(self, **options: Any) -> redis.Redis:
        """A redis-py client of this server (closed by `stop`); ``options`` go to `redis.Redis`."""
        options.setdefault("socket_timeout", 2.0)
        options.setdefault("socket_connect_timeout", 2.0)
        client = redis.Redis(host=self.host, port=self.port, **options)
        self._clients.append(client)
        return client

    def _launch(self) -> bool:
        """Start a process on ``self.port`` and wait for PING; False if the port was taken (the process exited
        saying so).

        Raises:
            RuntimeError: It exited for another reason, or did not answer in time.
        """
        self.starts += 1
        command = [
            self.executable,
            "--port", str(self.port),
            "--bind", self.host,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.directory),
            "--logfile", str(self.log_path),
        ]  # fmt: skip
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        self._process = process
        deadline = time.monotonic() + START_TIMEOUT
        while not answers_ping(self.port):
            if process.poll() is not None:
                log = self._log_tail()
                if "in use" in log:  # another process took the port between free_port() and the bind
                    return False
                raise RuntimeError(f"redis-server exited with {process.returncode}: {log}")
            if time.monotonic() >= deadline:
                self.kill()
                raise RuntimeError(f"redis-server did not answer PING within {START_TIMEOUT} s: {self._log_tail()}")
            time.sleep(0.01)
        return True

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-2000:]
        return "(no log)"


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own, on a free port of 127.0.0.1; stopped (and its clients closed) after it."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()
