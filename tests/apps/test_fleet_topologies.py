"""Fleet mode on real Redis topologies: a 3-master Redis Cluster, a Sentinel-managed master, and the traffic bound.

- Cluster: three processes trip a fleet together; every key of a namespace lives in its hash tag's slot, with a
  TTL; namespaces on different masters work side by side.
- Sentinel (``master_for``): the fleet follows the master through ``SENTINEL FAILOVER`` and through a killed master,
  and calls never notice.
- Traffic: Redis gets about one round trip per sync interval, at 100 calls/s as at a million; and a sync that the
  client sends again (redis-py's Retry, after a timeout) adds its counts once.

The servers are real ``redis-server`` processes on free ports (tests/redis_topologies.py); the other processes of
the fleet are real processes too (tests/fleet_topology_worker.py). Every wait is a bounded poll.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import pytest
import redis

import breaker
from breaker import Circuit, CommandConfig, State
from breaker.fleet import SYNC_SCRIPT, Fleet

if TYPE_CHECKING:  # imported as a plugin, below: importing it here first would keep pytest from rewriting its asserts
    from redis_topologies import Cluster, SentinelSetup, Server

pytest_plugins = ["redis_topologies"]

SYNC = 0.1  # seconds between two syncs
WAIT = 10.0  # the bound on every wait for something the fleet should do within a few syncs
WORKER = Path(__file__).resolve().parents[1] / "support" / "fleet_topology_worker.py"
#: The directory the tested `breaker` package was imported from: the workers import the same one.
PACKAGE_ROOT = Path(breaker.__file__).resolve().parent.parent

T = TypeVar("T")


class Boom(Exception):
    """The dependency's failure."""


def ok() -> str:
    """A call to a healthy dependency."""
    return "ok"


def fail() -> str:
    """A call to a dependency that is down."""
    raise Boom("down")


def fallback(error: Exception) -> str:
    """The fallback of failing calls: the test makes errors without catching them."""
    return "fallback"


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = WAIT) -> T:
    """Poll ``probe`` until it returns something other than None or False, for at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None and value is not False:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what} (last: {value!r})")
        time.sleep(0.02)


def unique(prefix: str) -> str:
    """A namespace no other test (or earlier run) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def shared(name: str, **config: object) -> Circuit:
    """Configure ``name`` (caller isolation, plus ``config``) and create its circuit."""
    breaker.configure_command(name, CommandConfig(isolation="caller", **config))  # type: ignore[arg-type]
    circuit, _ = breaker.get_circuit(name)
    return circuit


@contextlib.contextmanager
def joined(fleet: Fleet, client: redis.Redis | redis.RedisCluster) -> Iterator[Fleet]:
    """Close ``fleet`` and its ``client`` at the end of the block."""
    try:
        yield fleet
    finally:
        fleet.close()
        client.close()


def known(*circuits: Circuit) -> None:
    """Wait until the fleet has synced each circuit once: the counts made from then on are sent."""
    wait_for(
        "the fleet's first sync of " + ", ".join(c.name for c in circuits),
        lambda: all(c.statistics().fleet for c in circuits),
    )


def opened(circuit: Circuit) -> bool:
    """Whether the fleet and the local circuit are both open."""
    view = circuit.statistics().fleet
    return view is not None and view.state == "open" and circuit.state is State.OPEN


def state_of(server: Server, key: str) -> dict[str, str]:
    """The fleet's state hash ``key`` on ``server``."""
    with server.client(decode_responses=True) as r:
        fields: dict[str, str] = r.hgetall(key)
        return fields


# -- Redis Cluster ----------------------------------------------------------------------------------------------


def test_cluster_fleet_trips_on_the_totals_of_its_processes(topology_cluster: Cluster) -> None:
    """Three processes on a Redis Cluster, each below the volume threshold alone, trip the fleet together."""
    namespace = unique("trip")
    volume, errors, successes = 20, 8, 5  # any two processes' 16 errors stay below the volume of 20
    pay = shared("pay", request_volume_threshold=volume, sleep_window=60.0, rolling_window=30.0)
    ship = shared("ship", rolling_window=30.0)
    client = topology_cluster.client(socket_timeout=0.5)
    with joined(breaker.configure_fleet(client, namespace, SYNC), client) as fleet:
        assert fleet.wait_synced(WAIT)
        known(pay, ship)
        arguments = [
            *("--port", str(topology_cluster.ports[0]), "--namespace", namespace),
            *("--command", "pay", "--healthy", "ship", "--errors", str(errors), "--successes", str(successes)),
            *("--volume", str(volume), "--interval", str(SYNC), "--deadline", str(2 * WAIT)),
        ]
        pythonpath = os.environ.get("PYTHONPATH", "")
        workers = [
            subprocess.Popen(
                [sys.executable, str(WORKER), *arguments],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PACKAGE_ROOT), pythonpath]))},
            )
            for _ in range(2)
        ]
        try:
            for _ in range(successes):
                assert breaker.do("ship", ok) == "ok"
            for _ in range(errors):
                assert breaker.do("pay", fail, fallback) == "fallback"
            local = pay.statistics()
            assert (local.state, local.requests, local.errors) == (State.CLOSED, errors, errors)  # no local trip
            wait_for("the fleet to open pay", lambda: opened(pay), 2 * WAIT)
            # the healthy command's window holds every process's successes
            wait_for(
                "ship's fleet window to count 3 processes",
                lambda: (view := ship.statistics().fleet) is not None and view.requests == 3 * successes,
            )
            outputs = [worker.communicate(timeout=2 * WAIT) for worker in workers]
            view = pay.statistics().fleet
            assert view is not None
            assert view.generation == 1  # one trip, seen by all three processes
        finally:
            for worker in workers:
                if worker.poll() is None:
                    worker.kill()
                worker.communicate()
    reports = []
    for worker, (stdout, stderr) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, (stdout, stderr)
        reports.append(json.loads(stdout))
    for report in reports:
        assert report["local_requests_before"] == errors
        assert report["local_state_before"] == "closed"
        assert (report["state"], report["fleet_state"]) == ("open", "open")
        assert report["fleet"]["connected"]
        assert report["fleet"]["failures"] == 0
    assert {report["generation"] for report in reports} == {1}
    owner = topology_cluster.owner(f"{{{namespace}}}")
    assert state_of(owner, f"{{{namespace}}}:breaker:pay:state")["state"] == "open"
    assert fleet.statistics().failures == 0


def test_cluster_keys_of_a_namespace_share_one_slot_and_expire(topology_cluster: Cluster) -> None:
    """Every key of a namespace (state, window, probe lease, version) lives in the slot of its hash tag, with a TTL."""
    namespace = unique("slot")
    alpha = shared("alpha", request_volume_threshold=4, sleep_window=0.3)  # trips, then its probe is leased
    shared("beta")  # healthy: a window of successes
    client = topology_cluster.client(socket_timeout=0.5)
    with joined(breaker.configure_fleet(client, namespace, SYNC), client) as fleet:
        known(*breaker.circuits())
        for _ in range(4):
            breaker.do("alpha", fail, fallback)
        for _ in range(3):
            breaker.do("beta", ok)
        wait_for("the fleet to open alpha", lambda: opened(alpha))
        breaker.do("alpha", fail, fallback)  # short-circuited: a call waits here, so the probe lease comes here
        wait_for("the probe lease", lambda: (view := alpha.statistics().fleet) is not None and view.probing)
        owner = topology_cluster.owner(f"{{{namespace}}}")
        prefix = f"{{{namespace}}}:breaker"
        window = f"{prefix}-window:10000:10"  # the window's running totals, shared by the commands of that window
        expected = {f"{prefix}:alpha:state", f"{prefix}:alpha:probe", f"{window}:r", f"{prefix}-version"}

        # the lease expires and is granted anew: poll until one scan sees it too
        def scanned() -> set[str] | None:
            found = set(topology_cluster.keys(owner, f"*{namespace}*"))
            return found if found >= expected else None

        keys = wait_for("every kind of key on the slot's owner", scanned)  # and any other key of the namespace
        with owner.client(decode_responses=True) as r:
            slots = {key: r.execute_command("CLUSTER KEYSLOT", key) for key in keys}
            ttls = {key: r.pttl(key) for key in keys}
            tag_slot = r.execute_command("CLUSTER KEYSLOT", namespace)
        assert set(slots.values()) == {tag_slot}, slots
        assert all(ttl > 0 for ttl in ttls.values()), ttls
        for node in topology_cluster.nodes:
            if node is not owner:
                assert topology_cluster.keys(node, f"*{namespace}*") == []
        assert fleet.statistics().failures == 0


def test_cluster_namespaces_on_different_nodes_both_work(topology_cluster: Cluster) -> None:
    """Two namespaces whose slots live on different masters each trip their own command, on their own node."""
    first = unique("east")
    first_owner = topology_cluster.owner(f"{{{first}}}")
    second = next(
        ns for ns in (unique("west") for _ in range(200)) if topology_cluster.owner(f"{{{ns}}}") != first_owner
    )
    second_owner = topology_cluster.owner(f"{{{second}}}")
    east = shared("east-api", request_volume_threshold=3, sleep_window=60.0)
    west = shared("west-api", request_volume_threshold=3, sleep_window=60.0)
    east_client = topology_cluster.client(socket_timeout=0.5)
    west_client = topology_cluster.client(socket_timeout=0.5)
    with (
        joined(breaker.configure_fleet(east_client, first, SYNC, commands=["east-api"]), east_client) as east_fleet,
        joined(Fleet(west_client, second, SYNC, commands=["west-api"]), west_client) as west_fleet,
    ):
        known(east, west)
        for _ in range(3):
            breaker.do("east-api", fail, fallback)
            breaker.do("west-api", fail, fallback)
        wait_for("both namespaces to open their command", lambda: opened(east) and opened(west))
        assert state_of(first_owner, f"{{{first}}}:breaker:east-api:state")["state"] == "open"
        assert state_of(second_owner, f"{{{second}}}:breaker:west-api:state")["state"] == "open"
        # each fleet shares only its own command: nothing of the other's in its namespace
        for node in topology_cluster.nodes:
            assert not [key for key in topology_cluster.keys(node, f"*{first}*") if "west-api" in key]
            assert not [key for key in topology_cluster.keys(node, f"*{second}*") if "east-api" in key]
        assert (east_fleet.statistics().commands, west_fleet.statistics().commands) == (("east-api",), ("west-api",))
        assert east_fleet.statistics().failures == west_fleet.statistics().failures == 0


# -- Sentinel ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "how",
    [
        # The Sentinel demotes a live old master only after 8 s and its next INFO (up to 10 s later): until then
        # redis-py's client stays connected to it, and the fleet syncs there. 10 to 20 s: slow.
        pytest.param("sentinel-failover", marks=pytest.mark.slow),
        "master-killed",
    ],
)
def test_sentinel_fleet_follows_the_master_through_a_failover(topology_sentinel: SentinelSetup, how: str) -> None:
    """Through ``master_for``, the fleet trips, keeps calls unharmed through a failover, and syncs with the new
    master."""
    setup = topology_sentinel
    namespace = unique("sentinel")
    pay = shared("pay", request_volume_threshold=5, sleep_window=60.0, rolling_window=30.0)
    ship = shared("ship")
    client = setup.client()
    with joined(breaker.configure_fleet(client, namespace, SYNC), client) as fleet:
        known(pay, ship)
        for _ in range(5):
            breaker.do("pay", fail, fallback)
        wait_for("the fleet to open pay", lambda: opened(pay))
        old, new = setup.master, setup.replica
        state_key = f"{{{namespace}}}:breaker:pay:state"
        assert state_of(old, state_key)["state"] == "open"
        wait_for("the replica to hold the open state", lambda: state_of(new, state_key).get("state") == "open")
        view = pay.statistics().fleet
        assert view is not None
        generation = view.generation
        assert new.script_calls() == 0  # a replica runs no scripts: the master's effects reach it

        started = time.monotonic()
        if how == "sentinel-failover":
            setup.failover()
        else:
            old.kill()
        calls = 0

        def synced_with_new_master() -> bool:
            nonlocal calls
            for _ in range(20):  # calls go on meanwhile, and never raise
                assert breaker.do("ship", ok) == "ok"
                calls += 1
            return (
                setup.master_port() == new.port
                and fleet.statistics().connected
                and new.script_calls() >= 2  # syncs reach the new master
            )

        wait_for("the fleet to sync with the new master", synced_with_new_master, 3 * WAIT)
        reconnected = time.monotonic() - started
        syncs = fleet.statistics().syncs
        wait_for("syncs to go on", lambda: fleet.statistics().syncs >= syncs + 3 and ship.statistics().fleet)
        print(f"{how}: the fleet synced with the new master {reconnected:.2f} s after the failover began")

        assert ship.state is State.CLOSED
        assert ship.statistics().cumulative["success"] == calls
        # the open state crossed the failover: the new master holds it, and the process still follows it
        assert state_of(new, state_key)["state"] == "open"
        assert state_of(new, f"{{{namespace}}}:breaker:ship:state").get("state", "closed") == "closed"  # no key: closed
        with new.client() as r:
            assert r.pttl(state_key) > 0
        assert opened(pay)
        view = pay.statistics().fleet
        assert view is not None
        assert (view.connected, view.generation) == (True, generation)
        stats = fleet.statistics()
        if how == "master-killed":
            assert stats.outages == 1  # one outage noticed (and one warning), then rejoined
            assert stats.failures >= 1


# -- traffic ----------------------------------------------------------------------------------------------------


#: The commands the sync script runs inside Redis: INFO commandstats counts them too, but they are no round trips.
SCRIPT_COMMANDS = frozenset(re.findall(r"(?:redis\.p?call|safe)\('(\w+)'", SYNC_SCRIPT.lower()))


@dataclass
class Traffic:
    """What Redis received while one process called at some rate for a while."""

    calls: int
    seconds: float
    commands: dict[str, int]  # as INFO commandstats counts them: the script's own commands too
    syncs: int
    startup: dict[str, int]  # the commands before the fleet's first sync of the command (loading the script)

    @staticmethod
    def sent(commands: dict[str, int]) -> dict[str, int]:
        """The commands clients sent (those the scripts ran left out)."""
        return {name: count for name, count in commands.items() if name not in SCRIPT_COMMANDS}

    @property
    def per_second(self) -> float:
        """Commands clients sent, per second."""
        return sum(self.sent(self.commands).values()) / self.seconds


def measure(client: redis.Redis | redis.RedisCluster, nodes: list[Server], rate: float | None) -> Traffic:
    """Call a command for 2 s (``rate`` calls per second, or as fast as a loop goes) in a fleet syncing every
    `SYNC` s; count the commands every node received before the fleet's first sync, and during the 2 s."""
    name = unique("traffic")
    circuit = shared(name)
    with contextlib.ExitStack() as stack:
        observers = [stack.enter_context(node.client()) for node in nodes]  # connected before the count starts

        def count() -> dict[str, int]:
            """The commands every node received since the last count."""
            total: dict[str, int] = {}
            for node, observer in zip(nodes, observers, strict=True):
                for command, calls in node.command_calls(observer).items():
                    total[command] = total.get(command, 0) + calls
                observer.config_resetstat()
            return total

        count()
        fleet = Fleet(client, unique("traffic"), SYNC, commands=[name])
        try:
            known(circuit)
            startup = count()
            started = time.monotonic()
            syncs = fleet.statistics().syncs
            calls = 0
            end = started + 2.0
            if rate is None:
                while time.monotonic() < end:
                    for _ in range(100):
                        breaker.do(name, ok)
                    calls += 100
            else:
                tick = started
                while tick < end:
                    breaker.do(name, ok)
                    calls += 1
                    tick += 1 / rate
                    time.sleep(max(0.0, tick - time.monotonic()))
            commands = count()
            seconds = time.monotonic() - started
            syncs = fleet.statistics().syncs - syncs
            # and every call reached the fleet's window, through those few round trips
            wait_for(
                "the fleet to count every call",
                lambda: (view := circuit.statistics().fleet) is not None and view.requests == calls,
            )
        finally:
            fleet.close()
    return Traffic(calls, seconds, commands, syncs, startup)


@pytest.mark.parametrize("topology", ["server", "cluster"])
def test_sync_traffic_is_bounded_by_the_interval_not_the_call_rate(
    topology: str, request: pytest.FixtureRequest
) -> None:
    """Redis gets about one script call per sync interval, whether the process calls 100 times a second or as often
    as a loop can."""
    client: redis.Redis | redis.RedisCluster
    if topology == "server":
        server: Server = request.getfixturevalue("topology_server")
        nodes = [server]
        client = server.client(socket_timeout=0.5)
    else:
        cluster: Cluster = request.getfixturevalue("topology_cluster")
        nodes = cluster.nodes
        client = cluster.client(socket_timeout=0.5)
    try:
        slow = measure(client, nodes, 100.0)
        fast = measure(client, nodes, None)
    finally:
        client.close()
    for run in (slow, fast):
        print(
            f"{topology}: {run.calls / run.seconds:.0f} calls/s -> {run.per_second:.1f} round trips/s, "
            f"{sum(run.commands.values()) / run.seconds:.0f} commands/s with the script's; {run}"
        )
    assert fast.calls > 20 * slow.calls  # the second run did call far more often
    for run in (slow, fast):
        # to start: EVALSHA refused (NOSCRIPT), EVALSHA; per node, a connection's HELLO and SCRIPT LOAD
        assert sum(Traffic.sent(run.startup).values()) <= 2 + 2 * len(nodes), run
        assert 0.5 / SYNC <= run.per_second <= 2 / SYNC, run
        scripts = run.commands.get("evalsha", 0) + run.commands.get("eval", 0)
        assert scripts <= run.syncs + 1, run  # one round trip per sync
    assert max(slow.per_second, fast.per_second) <= 1.5 * min(slow.per_second, fast.per_second)


#: A script that keeps Redis busy (every other client waits) for ARGV[1] microseconds: a slow Redis.
BUSY_SCRIPT = """
local t = redis.call('TIME')
local start = t[1] * 1000000 + t[2]
repeat
  t = redis.call('TIME')
until t[1] * 1000000 + t[2] - start > tonumber(ARGV[1])
return 1
"""


def command(*parts: str) -> bytes:
    """A Redis command in RESP, as a client sends it."""
    encoded = [part.encode() for part in parts]
    return b"".join([b"*%d\r\n" % len(encoded), *(b"$%d\r\n%s\r\n" % (len(part), part) for part in encoded)])


def test_a_sync_the_client_retries_is_counted_once(topology_server: Server) -> None:
    """A sync whose reply times out, and which redis-py's default Retry sends again, adds its counts once."""
    interval, volume, errors = 0.5, 10, 6
    pay = shared("pay", request_volume_threshold=volume, sleep_window=60.0, rolling_window=30.0)
    client = topology_server.client(socket_timeout=0.5)  # redis-py's default Retry: 10 retries on timeouts
    with joined(breaker.configure_fleet(client, unique("retry"), interval), client) as fleet:
        known(pay)
        with socket.create_connection(("127.0.0.1", topology_server.port), timeout=10.0) as blocker:
            assert fleet.wait_synced(WAIT)  # the next sync is about `interval` away
            blocker.sendall(command("EVAL", BUSY_SCRIPT, "0", "2500000"))  # Redis is busy for 2.5 s from now
            for _ in range(errors):  # below the volume threshold: the fleet must not trip
                breaker.do("pay", fail, fallback)
            # meanwhile, the next sync went out, timed out, and was sent again
            assert blocker.recv(16) == b":1\r\n"
        target = fleet.statistics().syncs + 2
        wait_for("two more syncs", lambda: fleet.statistics().syncs >= target)
        view = pay.statistics().fleet
        assert view is not None
        stats = fleet.statistics()
        calls = topology_server.command_calls()
        print(f"retried sync: {view}, {stats}, evalsha calls {calls.get('evalsha')}")
        assert (view.state, view.requests, view.errors) == ("closed", errors, errors), (view, calls)
        assert pay.state is State.CLOSED
