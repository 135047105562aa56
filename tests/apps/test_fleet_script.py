"""The fleet's sync script (`breaker.fleet.SYNC_SCRIPT`) against a real redis-server, called with hand-built KEYS
and ARGV (no threads), and what a `Fleet` does with data in Redis that its script did not write.

- The rules: counts add up per command over a window of buckets on Redis's clock, the fleet trips on its totals,
  one lease per sleep window, the holder's outcome moves the fleet, a new generation drops older counts.
- The costs: a process that knows the namespace's version sends its counts without its commands' states being
  read; what it does not know comes as a list of changes; the Redis commands one call runs do not grow with the
  commands in it.
- Corruption: each kind of bad data is repaired, reported once, and leaves the other commands syncing.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

import pytest
import redis
from fleet_support import call, failing, keys_of, redis_ms, wait_for

import breaker
from breaker import CommandConfig, State
from breaker.fleet import SYNC_SCRIPT
from breaker.testing import FakeClock

if TYPE_CHECKING:  # imported as a plugin, below: importing it here first would keep pytest from rewriting its asserts
    from redis_support import RedisServer

pytest_plugins = ["redis_support"]

WAIT = 10.0  # the bound on every wait for something that should happen promptly


@dataclasses.dataclass(frozen=True)
class Args:
    """One command of a sync (see `breaker.fleet._script`): ``mode`` "p" reads its state with a call waiting (it
    may take the probe lease), "s" reads it with none, "f" trusts ``seen``."""

    seen: int = 0
    requests: int = 0
    errors: int = 0
    window_ms: int = 10_000
    buckets: int = 10
    volume: int = 20
    threshold: float = 50
    sleep_ms: int = 5_000
    lease_ms: int = 10_000
    event: str = ""
    ttl_ms: int = 60_000
    mode: str = "p"
    quorum: int = 1
    over: bool = False


class Answer(NamedTuple):
    state: str
    age_ms: int
    generation: int
    requests: int
    errors: int
    granted: bool
    corrupt: bool = False


class Sync:
    """`SYNC_SCRIPT` registered with a test's client; `__call__` is one process's sync of some commands.

    Each token is a process: it numbers its syncs and remembers the version of its last answer (``versions``);
    ``header`` holds the last answer's version, resync flag, repaired keys and learnt changes."""

    def __init__(self, client: redis.Redis, namespace: str = "s") -> None:
        self.client = client
        self.namespace = namespace
        self.script = client.register_script(SYNC_SCRIPT)
        self.sequences: dict[str, int] = {}
        self.versions: dict[str, int] = {}
        self.header: tuple[int, int, list[str], dict[str, tuple[str, int, int]]] = (0, 0, [], {})

    def key(self, command: str, part: str) -> str:
        return f"{{{self.namespace}}}:breaker:{command}:{part}"

    def window(self, part: str, window_ms: int = 10_000, buckets: int = 10) -> str:
        return f"{{{self.namespace}}}:breaker-window:{window_ms}:{buckets}:{part}"

    def __call__(self, token: str, **commands: Args) -> dict[str, Answer]:
        prefix = f"{{{self.namespace}}}:breaker"
        sequence = self.sequences[token] = self.sequences.get(token, 0) + 1  # lower it to resend a sync
        profiles: dict[tuple[float, ...], int] = {}
        argv: list[str | int | float] = []
        for command, a in commands.items():
            profile = (a.window_ms, a.buckets, a.volume, a.threshold, a.sleep_ms, a.lease_ms, a.quorum, a.ttl_ms)
            index = profiles.setdefault(profile, len(profiles) + 1)
            argv += [command, index, a.event or a.mode, a.seen, a.requests, a.errors, int(a.over)]
        head: list[str | int | float] = [token, sequence, 60_000, 60_000, self.versions.get(token, -1), prefix]
        head.append(len(profiles))
        for settings in profiles:
            head += settings
        keys = [f"{prefix}-sync:{token}", f"{prefix}-version", f"{prefix}-changes"]
        flat = self.script(keys=keys, args=[*head, len(commands), *argv])
        version, resync, repaired = int(flat[0]), int(flat[1]), int(flat[2])
        at = 3 + repaired
        learnt = {
            str(flat[i]): (str(flat[i + 1]), int(flat[i + 2]), int(flat[i + 3]))
            for i in range(at + 1, at + 1 + 4 * int(flat[at]), 4)
        }
        at += 1 + 4 * len(learnt)
        self.header = (version, resync, [str(key) for key in flat[3 : 3 + repaired]], learnt)
        self.versions[token] = -1 if resync else version
        assert len(flat) == at + 7 * len(commands)
        answers = {}
        for i, command in enumerate(commands):
            state, age, gen, requests, errors, granted, corrupt = flat[at + 7 * i : at + 7 * i + 7]
            answers[command] = Answer(
                "open" if int(state) else "closed",
                int(age),
                int(gen),
                int(requests),
                int(errors),
                bool(granted),
                bool(corrupt),
            )
        return answers

    def one(self, token: str, args: Args, command: str = "c") -> Answer:
        return self(token, **{command: args})[command]

    def state(self, command: str = "c") -> dict[str, str]:
        return {str(k): str(v) for k, v in self.client.hgetall(self.key(command, "state")).items()}

    def trip(self, base: Args | None = None, command: str = "c") -> Answer:
        """Open the fleet of ``command`` (at generation 0: 2 requests, 2 errors, volume 2; the rest from ``base``)."""
        args = dataclasses.replace(base or Args(), seen=0, requests=2, errors=2, volume=2)
        answer = self.one("tripper", args, command)
        assert (answer.state, answer.generation) == ("open", 1)
        return answer

    def wait_sleep(self, sleep_ms: int, command: str = "c") -> None:
        """Wait on Redis's clock until the fleet of ``command`` has been open for ``sleep_ms`` (takes no lease)."""
        opened = int(self.state(command)["opened"])
        wait_for(f"{sleep_ms} ms of Redis time", lambda: redis_ms(self.client) - opened >= sleep_ms, 5.0, 0.01)


@pytest.fixture
def sync(redis_server: RedisServer) -> Sync:
    """The sync script on the test's redis-server (a client decoding replies to str)."""
    return Sync(redis_server.client(decode_responses=True))


def test_script_adds_up_the_counts_of_every_caller_per_command(sync: Sync) -> None:
    """Deltas from several callers (and commands in one call) add up per command over the window."""
    first = sync("a", x=Args(requests=5, errors=1), y=Args(requests=2, errors=2))
    assert first["x"] == Answer("closed", 0, 0, 5, 1, False)
    assert (first["y"].requests, first["y"].errors) == (2, 2)
    second = sync.one("b", Args(requests=3, errors=2), "x")
    assert (second.state, second.requests, second.errors) == ("closed", 8, 3)
    third = sync("c", x=Args(), y=Args(requests=1, mode="f"))
    assert [(a.requests, a.errors) for a in third.values()] == [(8, 3), (3, 2)]
    assert sync.state("x") == {}  # a closed fleet needs no state key


def test_script_drops_buckets_older_than_the_window(sync: Sync) -> None:
    """A bucket that left the window is subtracted from the totals once and deleted; sent counts leave after it."""
    # 10 buckets of 1000 ms (Redis's clock): in the first half of one, the script runs in the same one.
    wait_for("the first half of a bucket", lambda: redis_ms(sync.client) % 1000 < 500, 1.0, 0.01)
    idx = redis_ms(sync.client) // 1000
    planted = {idx - 13: (50, 50), idx - 10: (40, 40), idx - 9: (7, 1), idx: (2, 0)}  # bucket: (requests, errors)
    for i, (requests, errors) in planted.items():
        sync.client.hset(sync.window(f"{i}:r"), "c", requests)
        sync.client.hset(sync.window(f"{i}:e"), "c", errors)
    sync.client.hset(sync.window("r"), "c", sum(r for r, _ in planted.values()))
    sync.client.hset(sync.window("e"), "c", sum(e for _, e in planted.values()))
    sync.client.set(sync.window("lo"), idx - 13)  # the oldest bucket counted
    answer = sync.one("a", Args())
    assert idx == redis_ms(sync.client) // 1000  # still the same bucket
    assert (answer.requests, answer.errors) == (9, 1)  # buckets idx - 9 .. idx: the window
    assert not any(sync.client.exists(sync.window(f"{i}:{kind}")) for i in (idx - 13, idx - 10) for kind in "re")
    assert sync.client.get(sync.window("lo")) == str(idx - 9)
    # In real time: 3 buckets of 100 ms; counts leave between 200 and 300 ms after they were sent.
    short = Args(window_ms=300, buckets=3, volume=1000)
    sent = redis_ms(sync.client)
    assert sync.one("a", dataclasses.replace(short, requests=4, errors=4), "d").requests == 4
    wait_for("the counts to leave the window", lambda: sync.one("a", short, "d").requests == 0, 2.0, 0.002)
    assert 200 - 5 <= redis_ms(sync.client) - sent <= 300 + 50  # the ms of TIME's rounding, the poll's pace


@pytest.mark.parametrize(
    ("requests", "errors", "volume", "threshold", "trips"),
    [
        (19, 19, 20, 50, False),  # every call failed, below the volume
        (20, 10, 20, 50, True),  # the volume, exactly the threshold
        (20, 9, 20, 50, False),  # 45 %
        (200, 99, 20, 50, True),  # 49.5 % rounds half up to 50
        (1000, 494, 20, 50, False),  # 49.4 % rounds down
        (3, 1, 0, 33, True),  # 33.3 %: 33
        (3, 1, 0, 33.5, False),  # a fractional threshold: 33 < 33.5
        (0, 0, 0, 50, False),  # no requests never trip
        (1, 1, 0, 100, True),
    ],
)
def test_script_trips_at_the_volume_and_threshold_rounding_like_the_local_circuit(
    sync: Sync, clock: FakeClock, requests: int, errors: int, volume: int, threshold: float, trips: bool
) -> None:
    """The fleet trips only at volume AND threshold (percentage rounded half up), exactly as a local circuit does."""
    answer = sync.one("a", Args(requests=requests, errors=errors, volume=volume, threshold=threshold))
    assert (answer.state, answer.generation) == (("open", 1) if trips else ("closed", 0))
    expected = "open" if trips else "closed"
    assert sync.state().get("state", "closed") == expected
    # The local circuit, same figures: successes first, then failures (its error percentage only rises).
    config = CommandConfig(isolation="caller", request_volume_threshold=volume, error_percent_threshold=threshold)
    breaker.configure_command("local", config)
    for i in range(requests):
        call("local", (lambda: "ok") if i < requests - errors else failing)
    assert breaker.get_circuit("local")[0].state.value == expected


def test_script_drops_counts_sent_for_another_generation(sync: Sync) -> None:
    """Counts sent with an old (or unknown, -1) generation are dropped; the current generation's are counted."""
    sync.trip()  # generation 0 -> 1, its window cleared
    assert sync.one("b", Args(seen=0, requests=5, errors=5)).requests == 0
    assert sync.one("b", Args(seen=-1, requests=5, errors=5)).requests == 0
    assert sync.one("b", Args(seen=1, requests=5, errors=5))[3:5] == (5, 5)
    assert sync.one("b", Args(seen=2, requests=5, errors=5)).requests == 5  # a generation not reached yet either
    assert sync.state()["gen"] == "1"


def test_script_applies_only_the_lease_holders_outcome_for_its_generation(sync: Sync) -> None:
    """A probe outcome moves the fleet only from the lease holder, for the generation it was granted in."""
    sync.trip(Args(sleep_ms=50))
    sync.wait_sleep(50)
    assert sync.one("holder", Args(seen=1, sleep_ms=50)).granted
    for event in ("ok", "fail"):
        ignored = sync.one("other", Args(seen=1, sleep_ms=50, event=event))
        assert (ignored.state, ignored.generation, ignored.granted) == ("open", 1, False)
    stale = sync.one("holder", Args(seen=0, sleep_ms=50, event="ok"))
    assert (stale.state, stale.generation, stale.granted) == ("open", 1, True)
    closed = sync.one("holder", Args(seen=1, sleep_ms=50, event="ok"))
    assert (closed.state, closed.generation) == ("closed", 2)


def test_script_grants_the_lease_to_exactly_one_of_many_callers_after_the_sleep_window_and_it_expires(
    sync: Sync,
) -> None:
    """No lease during the sleep window; then one caller of many gets it, keeps it, and loses it when it expires."""
    timing = Args(seen=1, sleep_ms=300, lease_ms=300)
    sync.trip(timing)
    tokens = [f"process-{i}" for i in range(12)]
    early = [sync.one(token, timing) for token in tokens]
    assert not any(answer.granted for answer in early)
    assert all(answer.age_ms < 300 for answer in early)
    sync.wait_sleep(300)
    random.shuffle(tokens)
    granted = [token for token in tokens if sync.one(token, timing).granted]
    assert len(granted) == 1
    (holder,) = granted
    lease = sync.key("c", "probe")
    assert sync.client.get(lease) == holder
    assert 0 < sync.client.pttl(lease) <= 300
    assert [token for token in tokens if sync.one(token, timing).granted] == [holder]
    taken = redis_ms(sync.client)
    wait_for("the lease to expire", lambda: not sync.client.exists(lease), 2.0, 0.002)
    assert redis_ms(sync.client) - taken <= 300 + 50
    other = next(token for token in tokens if token != holder)
    assert sync.one(other, timing).granted  # an expired lease goes to the next caller
    assert not sync.one(holder, timing).granted


def test_script_ok_closes_and_fail_reopens_with_a_new_opening_time(sync: Sync) -> None:
    """The holder's 'fail' reopens (new generation, opened now, lease freed); its 'ok' closes and clears the window."""
    sync.trip(Args(sleep_ms=100))
    first = int(sync.state()["opened"])
    sync.wait_sleep(100)
    assert sync.one("a", Args(seen=1, sleep_ms=100)).granted
    failed = sync.one("a", Args(seen=1, sleep_ms=100, event="fail"))
    assert (failed.state, failed.generation, failed.granted) == ("open", 2, False)
    assert failed.age_ms < 100
    assert int(sync.state()["opened"]) >= first + 100
    assert not sync.client.exists(sync.key("c", "probe"))
    assert not sync.one("b", Args(seen=2, sleep_ms=100)).granted  # a new sleep window
    sync.wait_sleep(100)
    assert sync.one("b", Args(seen=2, sleep_ms=100)).granted
    closed = sync.one("b", Args(seen=2, sleep_ms=100, event="ok", requests=3, errors=3))
    assert (closed.state, closed.generation, closed.requests, closed.granted) == ("closed", 3, 0, False)
    assert not sync.client.exists(sync.key("c", "probe"))
    assert sync.one("c", Args(seen=3, requests=2, errors=1))[3:5] == (2, 1)


def test_script_puts_a_ttl_on_every_key_it_writes(sync: Sync) -> None:
    """State (ttl), window keys (two windows and a bucket), lease (lease), version and mark: every key has a TTL."""
    timing = Args(sleep_ms=50, lease_ms=5_000, ttl_ms=20_000)
    sync.one("a", dataclasses.replace(timing, requests=1), "closed")
    sync.trip(timing)
    sync.wait_sleep(50)
    assert sync.one("a", dataclasses.replace(timing, seen=1, requests=1)).granted
    ttls = keys_of(sync.client, "s")
    idx = redis_ms(sync.client) // 1000
    assert {sync.key("c", "state"), sync.key("c", "probe"), sync.window("r"), sync.window("lo")} <= set(ttls)
    assert {sync.window(f"{idx}:r"), sync.window(f"{idx - 1}:r")} & set(ttls)  # the bucket the counts went in
    assert not [key for key in ttls if key.startswith(sync.key("closed", ""))]  # a closed fleet needs no state
    assert 15_000 < ttls[sync.key("c", "state")] <= 20_000
    assert 4_000 < ttls[sync.key("c", "probe")] <= 5_000
    windows = [ttl for key, ttl in ttls.items() if key.startswith(sync.window(""))]
    assert windows
    assert all(0 < ttl <= 2 * 10_000 + 1_000 for ttl in windows)
    assert all(ttl > 0 for ttl in ttls.values()), ttls


# -- costs: what a process knows is not read again ------------------------------------------------------------------


def script_commands(client: redis.Redis) -> int:
    """The commands Redis ran inside scripts so far (INFO commandstats, the client's own left out)."""
    stats = client.info("commandstats")
    own = ("cmdstat_evalsha", "cmdstat_eval", "cmdstat_info", "cmdstat_config|resetstat", "cmdstat_script|load")
    return sum(int(v["calls"]) for k, v in stats.items() if k not in own)


def test_the_commands_a_call_runs_do_not_grow_with_the_commands_in_it(sync: Sync) -> None:
    """A sync of 200 commands with calls runs as many Redis commands as one of 2 (variadic reads and writes)."""
    sync("p", **{f"c{i}": Args(requests=1) for i in range(200)})  # first sync: states read, version learnt
    costs = []
    for n in (2, 200):
        sync.client.config_resetstat()
        answers = sync("p", **{f"c{i}": Args(requests=1, mode="f") for i in range(n)})
        costs.append(script_commands(sync.client))
        assert all(a == Answer("closed", 0, 0, a.requests, 0, False) and a.requests >= 2 for a in answers.values())
    assert costs[0] == costs[1], costs


def test_a_process_learns_the_changes_of_commands_it_did_not_send_and_only_those(sync: Sync) -> None:
    """A trip bumps the version: a process that knew the version before learns that command's new state, once."""
    sync("p", a=Args(), b=Args())
    assert sync.header[3] == {}
    sync.trip(command="a")
    assert sync("p") == {}
    version, resync, repaired, learnt = sync.header
    assert (resync, repaired, list(learnt)) == (0, [], ["a"])
    assert learnt["a"][0::2] == ("open", 1)
    sync("p")
    assert sync.header[3] == {}  # learnt once
    assert sync.header[0] == version
    # counts sent "fast" (the state known current) go in; a stale generation sent that way after a change does not
    assert sync.one("p", Args(requests=3, mode="f"), "b").requests == 3
    sync.trip(command="e")
    stale = sync.one("p", Args(seen=0, requests=3, errors=3, mode="f"), "e")
    assert (stale.state, stale.generation, stale.requests) == ("open", 1, 0)


def test_a_resent_sync_adds_no_counts_and_a_lost_version_makes_every_process_relearn(sync: Sync) -> None:
    """The mark applies each sync number once; a version deleted (or corrupt) starts an epoch all processes see."""
    assert sync.one("p", Args(requests=2)).requests == 2
    sync.sequences["p"] -= 1  # the client sends the same sync again
    assert sync.one("p", Args(requests=2, mode="f")).requests == 2
    sync("q")
    sync.trip(command="t")  # a change: the version moves on (a new epoch may start in the same ms as the first)
    sync("p")
    sync("q")
    sync.client.delete("{s}:breaker-version")
    sync("p")
    assert sync.header[1] == 1  # p relearns every state
    sync("q")
    assert sync.header[1] == 1
    sync("q")
    assert sync.header[1] == 0


# -- corruption: repaired, reported once, the other commands unharmed --------------------------------------------


def test_a_bad_state_value_is_repaired_and_the_command_trips_on_its_failures(sync: Sync) -> None:
    """``state banana``: reported corrupt, restarted closed in a new generation, then trips; the other command syncs."""
    sync.client.hset(sync.key("c", "state"), mapping={"state": "banana", "gen": 3, "opened": 0})
    answers = sync("p", c=Args(seen=3, requests=5, errors=5, volume=5), d=Args(requests=4))
    assert answers["c"].corrupt
    assert (answers["c"].state, answers["c"].generation) == ("closed", 4)
    assert answers["d"] == Answer("closed", 0, 0, 4, 0, False)
    tripped = sync.one("p", Args(seen=4, requests=5, errors=5, volume=5))
    assert (tripped.state, tripped.generation, tripped.corrupt) == ("open", 5, False)
    assert sync.state()["state"] == "open"


@pytest.mark.parametrize("field", ["gen", "opened"])
def test_a_non_numeric_generation_or_opening_time_is_repaired(sync: Sync, field: str) -> None:
    """A gen or opened that is no integer: the command restarts closed in a new generation, reported once."""
    sync.trip()
    sync.client.hset(sync.key("c", "state"), field, "x1")
    answers = sync("p", c=Args(seen=1), d=Args(requests=1))
    assert answers["c"].corrupt
    assert answers["c"].state == "closed"
    assert answers["d"] == Answer("closed", 0, 0, 1, 0, False)
    again = sync("p", c=Args(seen=answers["c"].generation, requests=1), d=Args(requests=1))
    assert not again["c"].corrupt
    assert (again["c"].requests, again["d"].requests) == (1, 2)


@pytest.mark.parametrize(
    ("key", "make"),
    [
        ("state", lambda c, k: c.set(k, "not a hash")),
        ("probe", lambda c, k: c.rpush(k, "a", "b")),
        ("window", lambda c, k: c.set(k, "not a hash")),
        ("bucket", lambda c, k: c.sadd(k, "x")),
        ("version", lambda c, k: c.hset(k, "x", 1)),
        ("changes", lambda c, k: c.set(k, "not a zset")),
    ],
)
def test_a_key_of_the_wrong_type_is_deleted_reported_and_rebuilt(
    sync: Sync, key: str, make: Callable[[redis.Redis, str], object]
) -> None:
    """A string, list, set or hash where the script expects another type: deleted, named, rebuilt; syncs go on."""
    sync.trip(Args(sleep_ms=1))
    sync.wait_sleep(1)
    sync("p", d=Args())  # p knows the version
    idx = redis_ms(sync.client) // 1000
    target = {
        "state": sync.key("c", "state"),
        "probe": sync.key("c", "probe"),
        "window": sync.window("r"),
        "bucket": sync.window(f"{idx}:r"),
        "version": "{s}:breaker-version",
        "changes": "{s}:breaker-changes",
    }[key]
    sync.client.delete(target)
    make(sync.client, target)
    wait_for("the same bucket", lambda: redis_ms(sync.client) // 1000 == idx or key != "bucket", 0.0)
    if key == "changes":  # read or written at the next change only
        sync.trip(command="x")
        assert sync.header[2] == [target]
    answers = sync("p", c=Args(seen=1, sleep_ms=1), d=Args(requests=3))
    assert sync.header[2] == ([] if key == "changes" else [target])
    assert answers["d"].requests == 3
    assert answers["c"].state == ("closed" if key == "state" else "open")
    assert answers["c"].granted == (key != "state")
    sync("p", c=Args(seen=answers["c"].generation, sleep_ms=1), d=Args(requests=1))
    assert sync.header[2] == []  # reported once: rebuilt


def test_a_malformed_window_field_restarts_that_commands_window_only(sync: Sync) -> None:
    """A count that is no integer (a total or a bucket's): that command's window restarts; the other's stays."""
    sync("p", c=Args(requests=5, errors=1), d=Args(requests=7, errors=2))
    sync.client.hset(sync.window("r"), "c", "banana")
    answers = sync("p", c=Args(requests=1, mode="f"), d=Args(requests=1, mode="f"))
    assert answers["c"].corrupt
    assert (answers["c"].requests, answers["c"].errors) == (1, 0)
    assert (answers["d"].requests, answers["d"].errors, answers["d"].corrupt) == (8, 2, False)
    idx = redis_ms(sync.client) // 1000
    sync.client.hset(sync.window(f"{idx}:e"), "d", "-3")
    answers = sync("p", c=Args(requests=1, mode="f"), d=Args(requests=1, errors=1, mode="f"))
    assert (answers["c"].requests, answers["c"].corrupt) == (2, False)
    if redis_ms(sync.client) // 1000 == idx:  # the bucket it wrote to is the one corrupted
        assert answers["d"].corrupt
        assert (answers["d"].requests, answers["d"].errors) == (1, 1)


def test_a_fleet_logs_a_corrupt_command_once_trips_it_and_keeps_syncing_the_others(
    redis_server: RedisServer, fresh_registry: object, caplog: pytest.LogCaptureFixture
) -> None:
    """`state banana` in Redis: the fleet still trips on 100 failures, one warning names the command, others sync."""
    for name in ("bad", "good"):
        breaker.configure_command(name, CommandConfig(isolation="caller", request_volume_threshold=10))
    bad, good = breaker.get_circuit("bad")[0], breaker.get_circuit("good")[0]
    client = redis_server.client(decode_responses=True)
    client.hset("{rot}:breaker:bad:state", mapping={"state": "banana", "gen": 0, "opened": 0})
    fleet = breaker.configure_fleet(redis_server.client(), "rot", 0.05)
    try:
        assert fleet.wait_synced(WAIT)
        for _ in range(100):
            call("bad", failing)
            assert call("good", lambda: "ok") == "ok"
        wait_for("the fleet to open bad", lambda: bad.state is State.OPEN)
        wait_for(
            "good's 100 calls counted", lambda: (view := good.statistics().fleet) is not None and view.requests == 100
        )
        assert fleet.wait_synced(WAIT)
        assert fleet.wait_synced(WAIT)
    finally:
        fleet.close()
    assert client.hget("{rot}:breaker:bad:state", "state") == "open"
    warnings = [r.getMessage() for r in caplog.records if r.name == "breaker" and r.levelno >= logging.WARNING]
    corrupt = [message for message in warnings if "corrupt" in message]
    assert len(corrupt) == 1, warnings
    assert "'bad'" in corrupt[0]
    assert fleet.statistics().failures == 0


def test_the_lease_goes_only_to_a_process_where_a_call_waits(sync: Sync) -> None:
    """Past the sleep window, a sync with no call waiting ("s") never takes the free lease; one with a call ("p")
    does, and keeps it while it holds it, whatever its mode; one holder at a time."""
    opened = sync.trip(Args(sleep_ms=1), "x")
    assert opened.state == "open"
    seen = opened.generation
    sync.wait_sleep(1, "x")
    idle = sync.one("idle", Args(seen=seen, sleep_ms=1, mode="s"), "x")
    assert (idle.state, idle.granted) == ("open", False)
    assert sync.one("busy", Args(seen=seen, sleep_ms=1, mode="p"), "x").granted
    assert sync.one("busy", Args(seen=seen, sleep_ms=1, mode="s"), "x").granted  # the holder keeps it
    assert not sync.one("idle", Args(seen=seen, sleep_ms=1, mode="p"), "x").granted  # one holder at a time


def test_a_quorum_opens_the_fleet_only_when_that_many_processes_vote(sync: Sync) -> None:
    """quorum=2: one process over its thresholds (whatever the totals) leaves the fleet closed; a second opens it."""
    quorum = Args(quorum=2, volume=2)
    one = sync.one("bad", dataclasses.replace(quorum, requests=50, errors=50, over=True))
    assert (one.state, one.requests, one.errors) == ("closed", 50, 50)  # over the totals' thresholds: no trip
    again = sync.one("bad", dataclasses.replace(quorum, over=True))
    assert again.state == "closed"  # the same process voting twice is one vote
    healthy = sync.one("good", dataclasses.replace(quorum, requests=10))
    assert healthy.state == "closed"
    second = sync.one("also-bad", dataclasses.replace(quorum, requests=4, errors=4, over=True))
    assert (second.state, second.generation) == ("open", 1)


def test_a_vote_withdrawn_no_longer_counts(sync: Sync) -> None:
    """A process whose circuit closed again withdraws its vote: a later vote of another is still one of one."""
    quorum = Args(quorum=2, volume=2)
    assert sync.one("a", dataclasses.replace(quorum, requests=4, errors=4, over=True)).state == "closed"
    assert sync.one("a", dataclasses.replace(quorum, requests=4, over=False)).state == "closed"
    assert sync.one("b", dataclasses.replace(quorum, requests=4, errors=4, over=True)).state == "closed"
    assert sync.one("c", dataclasses.replace(quorum, over=True)).state == "open"
