"""Fleet mode (`breaker.configure_fleet`) against a real redis-server: processes that share their circuits.

- The issue's scenarios: four OS processes (`fleet_worker`) each below the volume threshold trip together; exactly
  one probe fleet-wide per sleep window; Redis killed mid-run; every key expires.
- The sync script (`breaker.fleet.SYNC_SCRIPT`) on its own, called with hand-built KEYS and ARGV: no threads.
- The options (``commands``, ``exclude``, validation), `Fleet.close`, and the Hystrix stream's fleet fields.

Times: the processes report when their circuits changed state with `time.time`, and Redis stamps the fleet's
changes with its TIME; both read the same machine's real-time clock, so they compare directly (in ms).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NamedTuple, Protocol

import pytest
import redis
from fleet_support import call, failing, hash_of, keys_of, redis_ms, wait_for
from fleet_worker import CALLS_KEY, HEALTH_KEY
from redis.backoff import NoBackoff
from redis.retry import Retry

import breaker
import breaker.fleet
import breaker.stream
from breaker import CommandConfig, State
from breaker._registry import Registry
from breaker.fleet import Fleet, RedisClient

if TYPE_CHECKING:  # imported as a plugin, below: importing it here first would keep pytest from rewriting its asserts
    from redis_support import RedisServer

pytest_plugins = ["redis_support"]

WAIT = 10.0  # the bound on every wait for something that should happen promptly
INTERVAL = 0.25  # the sync interval of the multi-process tests (the bound is two of them)
WORKER = Path(__file__).resolve().parents[1] / "support" / "fleet_worker.py"
#: The directory the tested `breaker` package was imported from: the workers import the same one.
PACKAGE_ROOT = Path(breaker.__file__).resolve().parent.parent
FLEET_FIELDS = (
    "fleetState",
    "fleetRequestCount",
    "fleetErrorCount",
    "fleetErrorPercentage",
    "fleetGeneration",
    "fleetConnected",
    "fleetProbing",
)


def requests_since_creation(circuit: breaker.Circuit) -> int:
    """The circuit's requests since it was created, as health counts them (success, failure, timeout, rejected)."""
    counts = circuit.statistics().cumulative
    return counts["success"] + counts["failure"] + counts["timeout"] + counts["rejected"]


def plant_window(
    client: redis.Redis,
    namespace: str,
    command: str,
    buckets: dict[int, tuple[int, int]],
    window_ms: int = 10_000,
    count: int = 10,
) -> None:
    """Write counts (bucket index: (requests, errors)) into the fleet's window of ``command`` as other processes'
    syncs would have: the buckets, the running totals, and the oldest bucket counted (the window's first)."""
    prefix = f"{{{namespace}}}:breaker-window:{window_ms}:{count}"
    for idx, (requests, errors) in buckets.items():
        client.hset(f"{prefix}:{idx}:r", command, requests)
        client.hset(f"{prefix}:{idx}:e", command, errors)
    client.hincrby(f"{prefix}:r", command, sum(r for r, _ in buckets.values()))
    client.hincrby(f"{prefix}:e", command, sum(e for _, e in buckets.values()))
    client.set(f"{prefix}:lo", redis_ms(client) // (window_ms // count) - count + 1)


def fleet_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("breaker-fleet-")]


class MakeFleet(Protocol):
    def __call__(
        self,
        client: RedisClient,
        namespace: str,
        sync_interval: float = ...,
        *,
        commands: list[str] | None = ...,
        exclude: tuple[str, ...] | list[str] = ...,
    ) -> Fleet: ...


@pytest.fixture
def make_fleet(fresh_registry: Registry) -> Iterator[MakeFleet]:
    """`breaker.configure_fleet`, closing every fleet it made when the test ends (then no sync thread is left)."""
    made: list[Fleet] = []

    def make(
        client: RedisClient,
        namespace: str,
        sync_interval: float = 0.05,
        *,
        commands: list[str] | None = None,
        exclude: tuple[str, ...] | list[str] = (),
    ) -> Fleet:
        fleet = breaker.configure_fleet(client, namespace, sync_interval, commands=commands, exclude=exclude)
        made.append(fleet)
        return fleet

    yield make
    for fleet in made:
        fleet.close()
    assert not fleet_threads()


def joined(circuit: breaker.Circuit) -> bool:
    """Whether the circuit has its fleet's view, as of a sync that reached Redis."""
    return (view := circuit.statistics().fleet) is not None and view.connected


# -- the processes ------------------------------------------------------------------------------------------------


class Worker:
    """One `fleet_worker` process: its JSON lines, read by a thread into a queue; stdin for commands."""

    def __init__(self, config: dict[str, Any], stderr: IO[bytes]) -> None:
        self.index: int = config["index"]
        self.stderr = stderr
        path = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PACKAGE_ROOT), *([path] if path else [])])}
        self.process = subprocess.Popen(
            [sys.executable, str(WORKER), json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=env,
        )
        self.events: list[dict[str, Any]] = []  # every line read so far
        self._lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, name=f"worker-{self.index}-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(json.loads(line))
        self._lines.put(None)

    def send(self, command: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()

    def expect(self, predicate: Callable[[dict[str, Any]], bool], what: str, timeout: float = WAIT) -> dict[str, Any]:
        """The first line (read before or within ``timeout`` s) that ``predicate`` accepts."""
        for seen in self.events:
            if predicate(seen):
                return seen
        deadline = time.monotonic() + timeout
        while True:
            try:
                event = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"worker {self.index}: no {what} within {timeout:g} s: {self.events}") from None
            if event is None:
                self.process.wait(WAIT)
                self.stderr.flush()
                self.stderr.seek(0)
                log = self.stderr.read().decode(errors="replace")[-3000:]
                raise AssertionError(f"worker {self.index} ended ({self.process.returncode}) before {what}: {log}")
            self.events.append(event)
            if predicate(event):
                return event

    def event(self, name: str, timeout: float = WAIT) -> dict[str, Any]:
        return self.expect(lambda event: event["event"] == name, repr(name), timeout)

    def became(self, state: State, timeout: float = WAIT) -> float:
        """When (time.time) its circuit first became ``state``."""
        found = self.expect(lambda e: e["event"] == "state" and e["new"] == state.value, f"state {state}", timeout)
        when: float = found["time"]
        return when

    def transitions(self) -> list[tuple[str, str]]:
        return [(e["old"], e["new"]) for e in self.events if e["event"] == "state"]

    def finish(self) -> None:
        """Ask it to exit; wait for it (killed if it does not); close its pipes."""
        if self.process.poll() is None:
            try:
                self.send("exit")
                self.process.wait(WAIT)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        self._reader.join(WAIT)
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()
        assert self.process.returncode == 0, f"worker {self.index} exited with {self.process.returncode}"


class StartWorkers(Protocol):
    def __call__(self, count: int, **config: Any) -> list[Worker]: ...


@pytest.fixture
def workers(redis_server: RedisServer, tmp_path: Path) -> Iterator[StartWorkers]:
    """Start `fleet_worker` processes on the test's redis-server (each ready: synced with Redis); all of them are
    ended when the test ends."""
    started: list[Worker] = []
    logs: list[IO[bytes]] = []

    def start(count: int, **config: Any) -> list[Worker]:
        group = []
        for index in range(count):
            log = (tmp_path / f"worker-{len(started)}.err").open("w+b")
            logs.append(log)
            options = {
                "port": redis_server.port,
                "index": index,
                "namespace": "fleet",
                "sync_interval": INTERVAL,
                "fleet": True,
                "command": "dependency",
                "volume": 20,
                "sleep_window": 30.0,
                "calls": 0,
                "threads": 0,
                "pause": 0.0,
                "quorum": None,
                **config,
            }
            worker = Worker(options, log)
            started.append(worker)
            group.append(worker)
        for worker in group:
            worker.event("ready", timeout=30.0)  # a cold interpreter start on a loaded machine
        return group

    try:
        yield start
        for worker in started:
            worker.finish()
    finally:
        for worker in started:
            if worker.process.poll() is None:
                worker.process.kill()
                worker.process.wait()
        for log in logs:
            log.close()


def test_four_processes_each_below_the_volume_open_within_two_sync_intervals_of_the_fleet_trip(
    redis_server: RedisServer, workers: StartWorkers
) -> None:
    """4 processes x 8 failing calls (volume 20): the fleet trips, and every circuit opens within 2 sync intervals."""
    client = redis_server.client(decode_responses=True)
    group = workers(4, scenario="trip", calls=8, volume=20)
    for worker in group:
        worker.send("go")
    for worker in group:
        called = worker.event("called")
        assert called["unexpected"] == []
        assert called["failed"] + called["short_circuited"] == 8  # short-circuited: the fleet tripped first
    assert sum(worker.event("called")["failed"] for worker in group) >= 20
    opened_at = [worker.became(State.OPEN) for worker in group]
    fleet = hash_of(client, "{fleet}:breaker:dependency:state")
    assert (fleet["state"], fleet["gen"]) == ("open", "1"), fleet
    tripped = int(fleet["opened"])  # ms, Redis's TIME
    delays = [round(when * 1000 - tripped) for when in opened_at]
    # No slack: a process learns of the trip at its next sync (at most one interval later), and the process whose
    # sync tripped the fleet, at once. Both clocks are this machine's real-time clock: none opens before the trip.
    assert all(0 <= delay <= 2 * INTERVAL * 1000 for delay in delays), f"ms after the fleet's trip: {delays}"
    for worker in group:
        assert worker.transitions() == [("closed", "open")]


def test_without_fleet_mode_the_same_four_processes_open_no_circuit(
    redis_server: RedisServer, workers: StartWorkers
) -> None:
    """The control: the same 4 x 8 failing calls without fleet mode leave every circuit closed (8 < volume 20)."""
    group = workers(4, scenario="trip", calls=8, volume=20, fleet=False)
    for worker in group:
        worker.send("go")
    for worker in group:
        called = worker.event("called")
        assert (called["state"], called["failed"], called["unexpected"]) == ("closed", 8, [])
        assert worker.transitions() == []


class Call(NamedTuple):
    """A call that reached the dependency of the probe scenario (see `fleet_worker.DEPENDENCY`)."""

    worker: int
    ms: float  # Redis's TIME
    healthy: bool
    state: str  # the caller's circuit, as the run saw it


def test_exactly_one_probe_reaches_the_dependency_per_sleep_window_fleet_wide(
    redis_server: RedisServer, workers: StartWorkers
) -> None:
    """4 processes x 8 threads call on: one call per sleep window reaches the dependency; a good one closes all."""
    sleep_ms = 1000
    client = redis_server.client(decode_responses=True)
    key = "{fleet}:breaker:dependency:state"
    group = workers(4, scenario="probe", threads=8, pause=0.005, sleep_window=sleep_ms / 1000)
    seen: dict[int, tuple[str, int]] = {}  # generation (from 1): (state, opened ms), polled from Redis

    def watch_until(done: Callable[[], bool], what: str, timeout: float) -> None:
        def poll() -> bool:
            fields = hash_of(client, key)
            if fields and fields["gen"] != "0":  # generation 0: closed, since the first sync
                seen.setdefault(int(fields["gen"]), (fields["state"], int(fields["opened"])))
            return done()

        wait_for(what, poll, timeout, interval=0.002)

    for worker in group:
        worker.send("go")
    # The dependency fails: the fleet trips (generation 1), then each probe fails and reopens it (2, 3).
    watch_until(lambda: 3 in seen, "the fleet's trip and two failed probes", WAIT)
    client.set(HEALTH_KEY, "1")
    watch_until(lambda: any(state == "closed" for state, _ in seen.values()), "the fleet closing", WAIT)
    closed_at = [worker.became(State.CLOSED) for worker in group]
    for worker in group:
        worker.send("stop")
    for worker in group:
        done = worker.event("done")
        assert done["unexpected"] == []
        assert done["outcomes"]["CircuitOpenError"] > 100  # they kept calling while it was open
    calls = []
    for entry in client.lrange(CALLS_KEY, 0, -1):
        index, seconds, micros, healthy, state = str(entry).split()
        calls.append(Call(int(index), int(seconds) * 1000 + int(micros) / 1000, healthy == "1", state))

    generations = sorted(seen)
    assert generations == list(range(1, generations[-1] + 1)), seen  # none missed
    assert [state for gen, (state, _) in sorted(seen.items())] == ["open"] * (len(seen) - 1) + ["closed"], seen
    opened = [seen[gen][1] for gen in generations[:-1]]  # when each open generation began (ms)
    # The calls admitted before a process saw the trip reach the dependency within two intervals of it; from then
    # on, each open generation lets exactly one call through (its probe), once its sleep window has passed.
    # Redis stores whole ms (floored), so a generation that opened at ``opened`` began before ``opened + 1``: the
    # failed probe that began it may be logged in the same ms, and belongs to the generation before.
    settled = opened[0] + 2 * INTERVAL * 1000
    starts = [settled] + [start + 1 for start in opened[1:]]
    for gen, (start, end) in enumerate(zip(starts, [start + 1 for start in opened[1:]], strict=False), 1):
        between = [c for c in calls if start <= c.ms < end]
        assert len(between) == 1, f"generation {gen}: calls in [{start}, {end}): {between}"
        (only,) = between
        assert only.ms >= opened[gen - 1] + sleep_ms  # after the sleep window, not before
        assert (only.healthy, only.state) == (False, "half_open")
        assert end - start < 2 * sleep_ms  # a period shorter than two sleep windows
    # The dependency healthy: one probe, then every circuit closes within two sync intervals of it.
    after = [c for c in calls if c.ms >= opened[-1] + 1]
    assert after, "no call reached the healthy dependency"
    probe = after[0]
    assert (probe.healthy, probe.state) == (True, "half_open")
    assert probe.ms >= opened[-1] + sleep_ms
    assert [c for c in after if c.state == "half_open"] == [probe]
    delays = [round(when * 1000 - probe.ms) for when in closed_at]
    assert all(0 <= delay <= 2 * INTERVAL * 1000 for delay in delays), f"ms after the probe: {delays}"
    probes = [c for c in calls if c.state == "half_open"]
    assert len(probes) == len(opened)  # one per open generation, fleet-wide


def test_the_probe_goes_to_the_process_with_traffic_and_the_fleet_closes_within_a_sleep_window_and_two_syncs(
    redis_server: RedisServer, workers: StartWorkers
) -> None:
    """3 processes, calls on one only: its calls take the probe lease (the idle ones never do), so the fleet closes
    within the sleep window plus two sync intervals of the dependency's return."""
    sleep = 1.0
    client = redis_server.client(decode_responses=True)
    group = workers(3, scenario="probe", threads=2, pause=0.01, sleep_window=sleep)
    busy = group[0]
    busy.send("go")
    busy.became(State.OPEN)
    # A failed probe reopened the fleet (generation 2 or later): the idle processes have synced past a sleep window
    # many times by then (before, the lease went to whichever process synced first).
    key = "{fleet}:breaker:dependency:state"
    wait_for("a failed probe", lambda: int(hash_of(client, key).get("gen", 0)) >= 2, WAIT, interval=0.01)
    back = time.time()
    client.set(HEALTH_KEY, "1")
    closed = busy.became(State.CLOSED, timeout=WAIT)
    busy.send("stop")
    assert busy.event("done")["unexpected"] == []
    calls = [str(entry).split() for entry in client.lrange(CALLS_KEY, 0, -1)]
    assert {index for index, *_ in calls} == {"0"}  # only the busy process called the dependency
    # The sleep window restarts with a failed probe just before the return, at worst; then the busy process's next
    # sync asks for the lease (a call waits), its next call probes, and its outcome closes the fleet at the sync
    # after: two intervals, plus the calls' own pace.
    assert closed - back <= sleep + 2 * INTERVAL + 0.1, f"closed {closed - back:.3f} s after the return"
    for idle in group[1:]:
        assert idle.became(State.CLOSED, timeout=WAIT) >= closed - INTERVAL


def test_an_idle_process_never_takes_the_probe_lease(redis_server: RedisServer, make_fleet: MakeFleet) -> None:
    """Past the sleep window, syncs with no call waiting take no lease; the first refused call gets it here."""
    breaker.configure_command(
        "dep", CommandConfig(isolation="caller", sleep_window=0.2, request_volume_threshold=4, timeout=0.5)
    )
    client = redis_server.client(decode_responses=True)
    fleet = make_fleet(redis_server.client(), "idle", 0.05)
    circuit = breaker.get_circuit("dep")[0]
    wait_for("the first sync", lambda: joined(circuit))
    for _ in range(4):
        assert call("dep", failing) == "boom"
    wait_for("the fleet's trip", lambda: circuit.state is State.OPEN)
    opened = int(hash_of(client, "{idle}:breaker:dep:state")["opened"])
    wait_for("the sleep window's end, on Redis's clock", lambda: redis_ms(client) - opened >= 200)
    for _ in range(5):  # syncs past the sleep window, with no call waiting
        assert fleet.wait_synced(WAIT)
    view = circuit.statistics().fleet
    assert view is not None
    assert not view.probing
    assert client.get("{idle}:breaker:dep:probe") is None
    assert call("dep", lambda: "ok") == "short-circuit"  # a call waits: the next sync asks for the lease
    wait_for("the probe lease", lambda: (view := circuit.statistics().fleet) is not None and view.probing)


def test_with_a_quorum_one_bad_process_trips_itself_and_two_trip_the_fleet(
    redis_server: RedisServer, workers: StartWorkers
) -> None:
    """quorum=2, four processes: one whose calls all fail opens its own circuit and leaves the fleet closed; when a
    second one's do too, the fleet opens, and every circuit with it."""
    client = redis_server.client(decode_responses=True)
    group = workers(4, scenario="trip", calls=8, volume=4, quorum=2)
    votes = "{fleet}:breaker:dependency:over"
    mark = "{fleet}:breaker-sync:"
    first = group[0]
    first.send("go")
    assert first.event("called")["unexpected"] == []
    first.became(State.OPEN)
    wait_for("the first process's vote", lambda: client.zcard(votes) == 1)
    marks = {str(key): int(str(client.get(key))) for key in client.scan_iter(match=mark + "*")}
    wait_for(  # every process has synced twice since: each has seen the vote, and the fleet did not open
        "two more syncs of every process",
        lambda: all(int(str(client.get(key) or 0)) >= seq + 2 for key, seq in marks.items()),
    )
    assert client.hget("{fleet}:breaker:dependency:state", "state") in (None, "closed")
    for worker in group[1:]:
        assert worker.transitions() == []
    second = group[1]
    second.send("go")
    assert second.event("called")["unexpected"] == []
    for worker in group:
        worker.became(State.OPEN)
    assert client.hget("{fleet}:breaker:dependency:state", "state") == "open"


def test_local_health_never_trips_a_circuit_the_fleet_leads(redis_server: RedisServer, make_fleet: MakeFleet) -> None:
    """The fleet's figures decide trips: local failures past the volume trip nothing while the fleet is healthy."""
    breaker.configure_command("dep", CommandConfig(isolation="caller", request_volume_threshold=4))
    client = redis_server.client(decode_responses=True)
    idx = redis_ms(client) // 1000  # the fleet's window: 10 buckets of 1000 ms; other processes' successes in two
    plant_window(client, "led", "dep", {idx: (500, 0), idx - 1: (500, 0)})
    fleet = make_fleet(redis_server.client(), "led")
    circuit = breaker.get_circuit("dep")[0]
    wait_for("the first sync", lambda: joined(circuit))
    for _ in range(20):  # every call fails here: alone, the circuit would trip at the 4th
        assert call("dep", failing) == "boom"
    assert circuit.state is State.CLOSED
    assert fleet.wait_synced(WAIT)
    assert fleet.wait_synced(WAIT)
    view = circuit.statistics().fleet
    assert view is not None
    assert (view.state, view.requests, view.errors, view.error_percentage) == ("closed", 1020, 20, 2)
    assert (circuit.state, circuit.statistics().error_percentage) == (State.CLOSED, 100)


# -- Redis killed mid-run -----------------------------------------------------------------------------------------


def test_killing_redis_mid_run_fails_no_call_warns_once_and_rejoins_when_it_returns(
    redis_server: RedisServer, make_fleet: MakeFleet, caplog: pytest.LogCaptureFixture
) -> None:
    """SIGKILL redis-server under load: every call still succeeds, one warning, local state; restarted: rejoined."""
    caplog.set_level(logging.INFO, logger="breaker")
    breaker.configure_command("dep", CommandConfig(isolation="caller", max_concurrent_requests=10))
    # A client that gives up on a dead server at once (redis-py's default Retry would retry for seconds).
    client = redis_server.client(socket_timeout=0.5, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 1))
    fleet = make_fleet(client, "outage", 0.1)
    circuit = breaker.get_circuit("dep")[0]
    wait_for("the first sync", lambda: joined(circuit))
    stop = threading.Event()
    outcomes: list[str] = []  # "ok" or the exception's qualified name; list.append is atomic

    def caller() -> None:
        while not stop.is_set():
            try:
                outcomes.append(breaker.do("dep", lambda: "ok"))
            except Exception as error:
                outcomes.append(f"{type(error).__module__}.{type(error).__qualname__}: {error}")
            stop.wait(0.002)

    callers = [threading.Thread(target=caller) for _ in range(4)]
    for thread in callers:
        thread.start()
    try:
        wait_for("calls in fleet mode", lambda: len(outcomes) > 50)
        redis_server.kill()
        wait_for("the outage noticed", lambda: (view := circuit.statistics().fleet) is not None and not view.connected)
        failures = fleet.statistics().failures
        wait_for("more failed syncs", lambda: fleet.statistics().failures >= failures + 2)
        during = len(outcomes)
        wait_for("calls during the outage", lambda: len(outcomes) > during + 50)
        view = circuit.statistics().fleet
        assert view is not None
        assert (view.connected, view.probing) == (False, False)
        assert not fleet.statistics().connected
        restarted = requests_since_creation(circuit)
        redis_server.restart()
        wait_for("the fleet rejoined", lambda: joined(circuit), breaker.fleet.MAX_BACKOFF + WAIT)
        syncs = fleet.statistics().syncs
        wait_for("syncs resumed", lambda: fleet.statistics().syncs >= syncs + 2)
        # The calls made during the outage are not sent on rejoining: the fleet counts only later ones.
        view = circuit.statistics().fleet
        assert view is not None
        assert view.requests <= requests_since_creation(circuit) - restarted
        after = len(outcomes)
        wait_for("calls after the outage", lambda: len(outcomes) > after + 50)
    finally:
        stop.set()
        for thread in callers:
            thread.join(WAIT)
    assert [outcome for outcome in outcomes if outcome != "ok"] == []
    statistics = fleet.statistics()
    assert (statistics.connected, statistics.outages, statistics.commands) == (True, 1, ("dep",))
    assert statistics.failures >= 3
    checker = redis_server.client(decode_responses=True)
    # the restarted server started empty: the command is closed (a closed fleet needs no state key), and counted
    assert hash_of(checker, "{outage}:breaker:dep:state") == {}
    assert view.state == "closed"
    assert all(pttl > 0 for pttl in keys_of(checker, "outage").values())
    records = [r for r in caplog.records if r.name == "breaker"]
    warnings = [r.getMessage() for r in records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "cannot sync with Redis" in warnings[0]
    assert "'outage'" in warnings[0]
    rejoined = [r.getMessage() for r in records if r.levelno == logging.INFO and "rejoined" in r.getMessage()]
    assert len(rejoined) == 1, rejoined


# -- every key expires --------------------------------------------------------------------------------------------


def test_every_key_has_a_ttl_and_none_is_left_once_the_longest_ttl_has_passed(
    redis_server: RedisServer, make_fleet: MakeFleet
) -> None:
    """Trip, probe, close: every key of the namespace has a TTL all along; after the fleet stops, all expire."""
    breaker.configure_command(
        "dep",
        CommandConfig(
            isolation="caller",
            timeout=0.2,
            rolling_window=1.0,
            sleep_window=0.5,
            request_volume_threshold=4,
        ),
    )
    client = redis_server.client(decode_responses=True)
    fleet = make_fleet(redis_server.client(), "ttl", 0.05)
    circuit = breaker.get_circuit("dep")[0]
    wait_for("the first sync", lambda: joined(circuit))
    snapshots: list[dict[str, int]] = []
    for _ in range(4):
        assert call("dep", failing) == "boom"
    wait_for("the fleet's trip", lambda: circuit.state is State.OPEN)
    snapshots.append(keys_of(client, "ttl"))
    assert call("dep", lambda: "ok") == "short-circuit"  # a call waits here: the probe lease comes here
    wait_for("the probe lease", lambda: (view := circuit.statistics().fleet) is not None and view.probing)
    snapshots.append(keys_of(client, "ttl"))
    assert call("dep", lambda: "ok") == "ok"  # the probe
    wait_for("the fleet closed", lambda: (view := circuit.statistics().fleet) is not None and view.state == "closed")
    for _ in range(3):
        assert call("dep", lambda: "ok") == "ok"
    wait_for("the window counted", lambda: (view := circuit.statistics().fleet) is not None and view.requests == 3)
    snapshots.append(keys_of(client, "ttl"))
    fleet.close()
    snapshots.append(keys_of(client, "ttl"))
    prefix = "{ttl}:breaker:dep:"  # the command's keys; the namespace may hold others (the process's sync mark)
    assert prefix + "trip" in snapshots[0]  # the figures that tripped the fleet (it expires on its own clock)
    trip = prefix + "trip"
    assert [sorted(key for key in keys if key.startswith(prefix) and key != trip) for keys in snapshots] == [
        [prefix + "state"],
        [prefix + "probe", prefix + "state"],
        [prefix + "state"],
        [prefix + "state"],
    ]
    totals = "{ttl}:breaker-window:1000:10:r"  # the window's running totals (a field per command): emptied by a trip
    assert [totals in keys for keys in snapshots] == [False, False, True, True]
    assert all(pttl > 0 for keys in snapshots for pttl in keys.values()), snapshots  # every key of the namespace
    longest = max(snapshots[-1].values()) / 1000
    wait_for("every key expired", lambda: not keys_of(client, "ttl"), longest + 2.0, interval=0.05)


# -- options, close, the stream ----------------------------------------------------------------------------------


def shared_in_redis(client: redis.Redis, namespace: str) -> list[str]:
    """The commands Redis holds anything of: keys ``{namespace}:breaker:<command>:<part>``, or a field in the
    window's running totals (``{namespace}:breaker-window:<window>:<buckets>:r``)."""
    prefix = f"{{{namespace}}}:breaker:"
    keys = keys_of(client, namespace)
    names = {key.removeprefix(prefix).rsplit(":", 1)[0] for key in keys if key.startswith(prefix)}
    for key in keys:
        if key.startswith(f"{{{namespace}}}:breaker-window:") and key.endswith(":r") and key.count(":") == 4:
            names.update(str(field) for field in client.hkeys(key))
    return sorted(names)


def test_commands_opts_in_and_exclude_opts_out(redis_server: RedisServer, make_fleet: MakeFleet) -> None:
    """Only the chosen commands are shared: an excluded one gets nothing in Redis and no fleet view."""
    client = redis_server.client(decode_responses=True)
    for name in ("a", "b"):
        breaker.configure_command(name, CommandConfig(isolation="caller"))
    a, b = breaker.get_circuit("a")[0], breaker.get_circuit("b")[0]
    fleet = make_fleet(redis_server.client(), "opt", commands=["a", "b", "later"], exclude=["b"])
    for name in ("later", "other"):  # made after the fleet
        breaker.configure_command(name, CommandConfig(isolation="caller"))
    later, other = breaker.get_circuit("later")[0], breaker.get_circuit("other")[0]
    wait_for("the shared commands synced", lambda: joined(a) and joined(later))
    for name in ("a", "b", "later", "other"):
        assert call(name, lambda: "ok") == "ok"
    assert fleet.wait_synced(WAIT)
    assert (b.statistics().fleet, other.statistics().fleet) == (None, None)
    assert [fleet.shares(name) for name in ("a", "b", "later", "other")] == [True, False, True, False]
    assert fleet.statistics().commands == ("a", "later")
    assert shared_in_redis(client, "opt") == ["a", "later"]
    # exclude alone: every command but those
    fleet = make_fleet(redis_server.client(), "out", exclude=("b",))
    wait_for("the shared commands synced", lambda: all(joined(c) for c in (a, later, other)))
    for name in ("a", "b", "later", "other"):
        assert call(name, lambda: "ok") == "ok"
    assert fleet.wait_synced(WAIT)
    assert b.statistics().fleet is None
    assert shared_in_redis(client, "out") == ["a", "later", "other"]


@pytest.mark.parametrize(
    ("options", "error", "field"),
    [
        ({"client": None}, TypeError, "client"),
        ({"client": "redis://localhost"}, TypeError, "client"),
        ({"namespace": ""}, ValueError, "namespace"),
        ({"namespace": "{app}"}, ValueError, "namespace"),
        ({"namespace": "a}b"}, ValueError, "namespace"),
        ({"namespace": 7}, ValueError, "namespace"),
        ({"sync_interval": 0}, ValueError, "sync_interval"),
        ({"sync_interval": -1.0}, ValueError, "sync_interval"),
        ({"sync_interval": float("inf")}, ValueError, "sync_interval"),
        ({"sync_interval": float("nan")}, ValueError, "sync_interval"),
        ({"sync_interval": "0.25"}, TypeError, "sync_interval"),
        ({"sync_interval": True}, TypeError, "sync_interval"),
        ({"commands": "a"}, TypeError, "commands"),
        ({"commands": [1]}, TypeError, "commands"),
        ({"exclude": "a"}, TypeError, "exclude"),
        ({"quorum": 0}, ValueError, "quorum"),
        ({"quorum": True}, ValueError, "quorum"),
        ({"quorum": "2"}, ValueError, "quorum"),
        ({"quorum": 2.0}, ValueError, "quorum"),
    ],
    ids=lambda value: ",".join(f"{k}={v!r}" for k, v in value.items()) if isinstance(value, dict) else None,
)
def test_configure_fleet_rejects_a_bad_option_naming_it(
    fresh_registry: Registry, options: dict[str, Any], error: type[Exception], field: str
) -> None:
    """A bad client, namespace, sync_interval, commands or exclude raises naming the field, and starts nothing."""
    client = redis.Redis(port=1)  # never reached
    try:
        arguments: dict[str, Any] = {"client": client, "namespace": "app", "sync_interval": 0.25, **options}
        with pytest.raises(error, match=field):
            breaker.configure_fleet(**arguments)
    finally:
        accepted = breaker.fleet.current_fleet()
        if accepted is not None:  # it did not raise (the test fails): leave nothing running for the next tests
            accepted.close()
        client.close()
    assert breaker.fleet.current_fleet() is None
    assert not fleet_threads()
    assert fresh_registry.listeners == ()


def test_close_stops_the_thread_returns_circuits_to_local_state_and_is_idempotent(
    redis_server: RedisServer, make_fleet: MakeFleet
) -> None:
    """close(): no sync thread left, no fleet view, local trips again; a second close() does nothing."""
    breaker.configure_command("dep", CommandConfig(isolation="caller", request_volume_threshold=4))
    circuit = breaker.get_circuit("dep")[0]
    fleet = make_fleet(redis_server.client(), "close")
    wait_for("the first sync", lambda: joined(circuit))
    assert breaker.fleet.current_fleet() is fleet
    assert fleet_threads()
    fleet.close()
    assert not fleet_threads()
    assert circuit.statistics().fleet is None
    assert breaker.fleet.current_fleet() is None
    assert fleet.statistics().commands == ("dep",)
    syncs = fleet.statistics().syncs
    assert not fleet.wait_synced(0.2)
    for _ in range(4):
        assert call("dep", failing) == "boom"
    assert circuit.state is State.OPEN  # tripped by local health alone, at once
    fleet.close()
    assert (circuit.statistics().fleet, fleet.statistics().syncs, fleet_threads()) == (None, syncs, [])
    assert "closed" in repr(fleet)


def test_a_second_configure_fleet_closes_the_first(
    redis_server: RedisServer, make_fleet: MakeFleet, fresh_registry: Registry
) -> None:
    """configure_fleet replaces the fleet before it: the first stops (thread, listener), the second syncs."""
    circuit = breaker.get_circuit("dep")[0]
    first = make_fleet(redis_server.client(), "one")
    wait_for("the first fleet's sync", lambda: joined(circuit))
    second = make_fleet(redis_server.client(), "two")
    assert [thread.name for thread in fleet_threads()] == ["breaker-fleet-two"]
    assert breaker.fleet.current_fleet() is second
    assert not first.wait_synced(0.2)
    assert len(fresh_registry.listeners) == 1
    assert second.wait_synced(WAIT)
    wait_for("the second fleet's view", lambda: joined(circuit))
    assert keys_of(redis_server.client(decode_responses=True), "two")


def test_the_stream_message_carries_the_fleet_fields_in_fleet_mode_only(
    redis_server: RedisServer, make_fleet: MakeFleet
) -> None:
    """A fleet-mode circuit's Hystrix message has the fleet* fields, with its FleetView's values; a local one none."""
    breaker.configure_command("dep", CommandConfig(isolation="caller"))
    shared, local = breaker.get_circuit("dep")[0], breaker.get_circuit("local")[0]
    make_fleet(redis_server.client(), "stream", exclude=["local"])
    for _ in range(3):
        assert call("dep", failing) == "boom"
    wait_for("the fleet's counts", lambda: (view := shared.statistics().fleet) is not None and view.requests == 3)
    stats = shared.statistics()
    assert stats.fleet is not None
    message = breaker.stream.command_message(stats, 0)
    fleet = {field: message.get(field) for field in FLEET_FIELDS}
    assert fleet == {
        "fleetState": "closed",
        "fleetRequestCount": 3,
        "fleetErrorCount": 3,
        "fleetErrorPercentage": 100,
        "fleetGeneration": stats.fleet.generation,
        "fleetConnected": True,
        "fleetProbing": False,
    }
    encoded = json.loads(breaker.stream.encode(message).removeprefix(b"data: "))
    assert {field: encoded[field] for field in FLEET_FIELDS} == fleet
    assert not set(FLEET_FIELDS) & set(breaker.stream.command_message(local.statistics(), 0))
