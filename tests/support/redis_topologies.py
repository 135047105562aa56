"""Real Redis topologies for fleet mode's tests: a 3-master Redis Cluster, a Sentinel-managed master, a lone server.

Every server is Debian's ``redis-server`` (``redis-cli`` builds the cluster), started on free ports of 127.0.0.1
with its files in a temporary directory, and stopped (killed if need be) when its fixture ends. A missing binary is
an error, never a skip: install Debian's ``redis-server`` package (``.ci/run`` does).

A test module gets the fixtures by naming this module as a plugin (and imports it only under ``TYPE_CHECKING``, for
the types: importing it first would keep pytest from rewriting its asserts)::

    pytest_plugins = ["redis_topologies"]

- ``topology_cluster``: a `Cluster` of 3 masters (module-scoped: tests share it, each under its own namespace).
- ``topology_sentinel``: a `SentinelSetup`: master, replica and one Sentinel (per test: a failover changes it).
- ``topology_server``: one plain `Server` (per test).

Every wait is bounded (`WAIT`, or the argument). A server that exits at startup is reported with what it logged;
when that is because another process took its port meanwhile (the ports are picked free, then released), the whole
topology is started again on fresh ports, a few times.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest
import redis
from redis.crc import key_slot

__all__ = [
    "WAIT",
    "Cluster",
    "SentinelSetup",
    "Server",
    "free_ports",
    "redis_binaries",
    "wait_for",
]

#: The bound on every wait for something that should happen promptly (a server starting, a cluster forming).
WAIT = 15.0
#: The name the Sentinel monitors its master under.
MASTER_NAME = "mymaster"
#: A cluster node's bus port is its port plus this.
BUS_OFFSET = 10000

T = TypeVar("T")


def redis_binaries() -> tuple[str, str]:
    """The paths of ``redis-server`` and ``redis-cli``; a clear error when either is missing."""
    found = {name: shutil.which(name) for name in ("redis-server", "redis-cli")}
    missing = sorted(name for name, path in found.items() if path is None)
    if missing:
        raise RuntimeError(
            f"{' and '.join(missing)} not found on PATH: fleet mode's topology tests run real Redis servers. "
            "Install Debian's redis-server package (`sudo apt-get install redis-server`; .ci/run does)."
        )
    return found["redis-server"] or "", found["redis-cli"] or ""


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = WAIT, *, interval: float = 0.02) -> T:
    """Poll ``probe`` until it returns something other than None (or False), within ``timeout`` seconds.

    Exceptions of redis-py (a server not up yet) count as "not yet". Raises AssertionError naming ``what``.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = probe()
        except redis.RedisError as error:
            last = error
        else:
            if value is not None and value is not False:
                return value
            last = value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what} (last: {last!r})")
        time.sleep(interval)


def free_ports(count: int, *, bus: bool = False) -> list[int]:
    """``count`` distinct free TCP ports of 127.0.0.1 (and, with ``bus``, each one's port + 10000 free too)."""
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < count:
            if len(held) > 200:
                raise RuntimeError("cannot find free ports on 127.0.0.1 (with their cluster bus ports)")
            probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.append(probe)
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
            if port in ports or any(port == p + BUS_OFFSET for p in ports):
                continue
            if bus:
                if port + BUS_OFFSET > 65535 or port + BUS_OFFSET in ports:
                    continue
                partner = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                held.append(partner)
                try:
                    partner.bind(("127.0.0.1", port + BUS_OFFSET))
                except OSError:
                    continue
            ports.append(port)
    finally:
        for sock in held:
            sock.close()
    return ports


@dataclass
class Server:
    """One ``redis-server`` process on 127.0.0.1:``port``, logging to ``log``."""

    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def client(self, **options: Any) -> redis.Redis:
        """A new plain client of this server (close it: ``with server.client() as r:``)."""
        options.setdefault("socket_timeout", 2.0)
        return redis.Redis(host="127.0.0.1", port=self.port, **options)

    def info(self, section: str) -> dict[str, Any]:
        """``INFO section``, parsed by redis-py."""
        with self.client() as r:
            info: dict[str, Any] = r.info(section)
            return info

    def command_calls(
        self, client: redis.Redis | None = None, *, exclude: tuple[str, ...] = ("info", "config|resetstat")
    ) -> dict[str, int]:
        """``INFO commandstats`` as {command: calls} (through ``client``, or a new connection), leaving out
        ``exclude`` (the test's own INFO and CONFIG RESETSTAT). Commands that scripts run are counted too."""
        stats = self.info("commandstats") if client is None else client.info("commandstats")
        calls = {name.removeprefix("cmdstat_"): int(entry["calls"]) for name, entry in stats.items()}
        return {name: count for name, count in calls.items() if name not in exclude}

    def script_calls(self) -> int:
        """How many scripts the server ran (EVALSHA and EVAL calls)."""
        calls = self.command_calls()
        return calls.get("evalsha", 0) + calls.get("eval", 0)

    def log_tail(self, lines: int = 20) -> str:
        """The last lines the server logged (for error messages)."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL after a bounded wait) and reap it. Idempotent."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5.0)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process.wait()

    def kill(self) -> None:
        """Kill the process at once (SIGKILL: a crash, no goodbye) and reap it."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


class ServerExited(RuntimeError):
    """A redis-server exited while starting (its port was taken meanwhile, most likely)."""


#: Times a topology is started on fresh ports when a server exits at startup.
ATTEMPTS = 3


def start_server(directory: Path, port: int, *args: str, name: str | None = None, config: Path | None = None) -> Server:
    """Start ``redis-server`` on 127.0.0.1:``port`` (no persistence; files under ``directory``) and wait until it
    answers PING. ``config``: a config file to start from (a Sentinel's); ``args``: more options."""
    server_binary, _ = redis_binaries()
    directory.mkdir(parents=True, exist_ok=True)
    log = directory / f"{name or f'redis-{port}'}.log"
    command = [server_binary]
    if config is not None:
        command.append(str(config))
    command += ["--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory), "--logfile", str(log)]
    if "--sentinel" not in args:
        command += ["--save", "", "--appendonly", "no"]
    command += list(args)
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    server = Server(port, process, log)

    def answers() -> bool:
        if process.poll() is not None:
            stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
            raise ServerExited(
                f"redis-server on port {port} exited with {process.returncode}: {stderr}\n{server.log_tail()}"
            )
        with server.client(socket_timeout=0.5, socket_connect_timeout=0.5) as r:
            return bool(r.ping())

    try:
        wait_for(f"redis-server on port {port} to answer PING", answers)
    except BaseException:
        server.stop()
        raise
    finally:
        if process.stderr is not None:
            process.stderr.close()
    return server


# -- a Redis Cluster ----------------------------------------------------------------------------------------------


@dataclass
class Cluster:
    """A Redis Cluster of masters only, on 127.0.0.1 (`start_cluster`)."""

    nodes: list[Server]
    directory: Path

    @property
    def ports(self) -> list[int]:
        """Every node's port."""
        return [node.port for node in self.nodes]

    def client(self, **options: Any) -> redis.RedisCluster:
        """A new cluster client, bootstrapped from the first node (close it)."""
        options.setdefault("socket_timeout", 2.0)
        return redis.RedisCluster(host="127.0.0.1", port=self.nodes[0].port, **options)

    def slot_owners(self) -> dict[int, Server]:
        """Each slot's master, as the first node sees it (``CLUSTER SLOTS``)."""
        by_port = {node.port: node for node in self.nodes}
        owners: dict[int, Server] = {}
        with self.nodes[0].client() as r:
            ranges = r.execute_command("CLUSTER SLOTS")  # [[first, last, [host, port, id, ...], replicas...], ...]
        for first, last, primary, *_ in ranges:
            owner = by_port[int(primary[1])]
            for slot in range(int(first), int(last) + 1):
                owners[slot] = owner
        return owners

    def owner(self, key: str) -> Server:
        """The master that holds ``key`` (its hash tag's slot)."""
        return self.slot_owners()[key_slot(key.encode())]

    def keys(self, node: Server, pattern: str) -> list[str]:
        """Every key of ``node`` matching ``pattern`` (SCAN)."""
        with node.client(decode_responses=True) as r:
            return sorted(r.scan_iter(match=pattern, count=1000))

    def stop(self) -> None:
        """Stop every node."""
        for node in self.nodes:
            node.stop()


def start_cluster(directory: Path, masters: int = 3) -> Cluster:
    """Start ``masters`` cluster-enabled servers, join them with ``redis-cli --cluster create`` (no replicas), and
    wait until every node says ``cluster_state:ok``. On failure, every node started is stopped."""
    _, cli = redis_binaries()
    directory.mkdir(parents=True, exist_ok=True)
    nodes: list[Server] = []
    try:
        # extend() keeps the nodes started before one that fails to start: the except clause stops them
        nodes.extend(
            start_server(
                directory,
                port,
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                str(directory / f"nodes-{port}.conf"),
                "--cluster-node-timeout",
                "5000",
            )
            for port in free_ports(masters, bus=True)
        )
        addresses = [f"127.0.0.1:{node.port}" for node in nodes]
        created = subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True,
            text=True,
            timeout=WAIT,
            check=False,
        )
        if created.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed ({created.returncode}):\n{created.stdout}")

        def formed() -> bool:
            return all(_cluster_ok(node) for node in nodes)

        wait_for("every cluster node to report cluster_state:ok", formed)
    except BaseException:
        for node in nodes:
            node.stop()
        raise
    return Cluster(nodes, directory)


def _cluster_ok(node: Server) -> bool:
    with node.client(decode_responses=True) as r:
        info = r.execute_command("CLUSTER INFO")  # redis-py parses it into a dict
    return bool(info.get("cluster_state") == "ok")


# -- a Sentinel-managed master -------------------------------------------------------------------------------------


@dataclass
class SentinelSetup:
    """A master, one replica of it, and one Sentinel monitoring them as `MASTER_NAME` (`start_sentinel`)."""

    master: Server
    replica: Server
    sentinel: Server
    directory: Path

    def client(self, **options: Any) -> redis.Redis:
        """The Sentinel-managed client of the master: ``Sentinel(...).master_for(MASTER_NAME)`` (close it)."""
        sentinel = redis.Sentinel([("127.0.0.1", self.sentinel.port)], socket_timeout=0.5)
        options.setdefault("socket_timeout", 0.5)
        return cast(redis.Redis, sentinel.master_for(MASTER_NAME, **options))

    def master_port(self) -> int:
        """The master's port, as the Sentinel reports it now."""
        with self.sentinel.client(decode_responses=True) as r:
            host, port = r.execute_command("SENTINEL GET-MASTER-ADDR-BY-NAME", MASTER_NAME)
        assert host == "127.0.0.1"
        return int(port)

    def replicas_ready(self) -> bool:
        """Whether the Sentinel knows the replica, and sees it up and linked (so that it may promote it)."""
        with self.sentinel.client(decode_responses=True) as r:
            replicas = r.execute_command("SENTINEL REPLICAS", MASTER_NAME)
        # redis-py parses each replica into a dict of its fields
        return any(entry["flags"] == "slave" and entry["master-link-status"] == "ok" for entry in replicas)

    def failover(self, timeout: float = WAIT) -> None:
        """``SENTINEL FAILOVER``: promote the replica (retried while the Sentinel has no promotable replica yet)."""

        def asked() -> bool:
            with self.sentinel.client(decode_responses=True) as r:
                try:
                    r.execute_command("SENTINEL FAILOVER", MASTER_NAME)
                except redis.ResponseError as error:
                    if "NOGOODSLAVE" in str(error) or "INPROG" in str(error):
                        return False
                    raise
            return True

        wait_for("the Sentinel to accept SENTINEL FAILOVER", asked, timeout, interval=0.1)

    def stop(self) -> None:
        """Stop the Sentinel, then every server."""
        self.sentinel.stop()
        self.master.stop()
        self.replica.stop()


def start_sentinel(directory: Path, *, down_after_ms: int = 500, failover_timeout_ms: int = 2000) -> SentinelSetup:
    """Start a master, a replica of it (up and linked), and a Sentinel monitoring them, quorum 1, that knows the
    replica well enough to promote it. On failure, everything started is stopped."""
    directory.mkdir(parents=True, exist_ok=True)
    started: list[Server] = []
    try:
        master_port, replica_port, sentinel_port = free_ports(3)
        # no diskless-sync delay: the replica links at once
        master = start_server(directory, master_port, "--repl-diskless-sync-delay", "0", name="master")
        started.append(master)
        replica = start_server(
            directory,
            replica_port,
            "--replicaof",
            "127.0.0.1",
            str(master_port),
            "--repl-diskless-sync-delay",
            "0",
            name="replica",
        )
        started.append(replica)
        wait_for(
            "the replica to link to its master",
            lambda: replica.info("replication").get("master_link_status") == "up",
        )
        # Sentinel rewrites its config file (what it learns, its id): a copy of our own, in the temporary directory
        config = directory / "sentinel.conf"
        config.write_text(
            f"port {sentinel_port}\n"
            "bind 127.0.0.1\n"
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 1\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} {down_after_ms}\n"
            f"sentinel failover-timeout {MASTER_NAME} {failover_timeout_ms}\n"
        )
        sentinel = start_server(directory, sentinel_port, "--sentinel", name="sentinel", config=config)
        started.append(sentinel)
        setup = SentinelSetup(master, replica, sentinel, directory)
        wait_for("the Sentinel to know the replica as up and linked", setup.replicas_ready)
    except BaseException:
        for server in reversed(started):
            server.stop()
        raise
    return setup


# -- fixtures ----------------------------------------------------------------------------------------------------


def attempts(start: Callable[[Path], T], directory: Path, attempt: int = 1) -> T:
    """``start(fresh subdirectory)``, again on fresh ports (up to `ATTEMPTS` times) while a server exits at startup."""
    try:
        return start(directory / f"attempt-{attempt}")
    except ServerExited:
        if attempt >= ATTEMPTS:
            raise
    return attempts(start, directory, attempt + 1)


@pytest.fixture(scope="module")
def topology_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A 3-master Redis Cluster on free ports of 127.0.0.1, for the module; stopped at its end."""
    cluster = attempts(start_cluster, tmp_path_factory.mktemp("cluster"))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def topology_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSetup]:
    """A master, its replica and a Sentinel (``mymaster``, quorum 1, down after 500 ms), for the test."""
    setup = attempts(start_sentinel, tmp_path_factory.mktemp("sentinel"))
    try:
        yield setup
    finally:
        setup.stop()


@pytest.fixture
def topology_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One plain redis-server on a free port of 127.0.0.1, for the test."""
    server = attempts(lambda path: start_server(path, free_ports(1)[0]), tmp_path_factory.mktemp("server"))
    try:
        yield server
    finally:
        server.stop()
