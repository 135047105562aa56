"""Fleet mode's benchmark: per-call overhead against local mode, and Redis traffic against the call rate.

Run from the repository root (it starts its own redis-server on a free port on 127.0.0.1)::

    .venv/bin/python benchmarks/bench_fleet.py            # about a minute
    .venv/bin/python benchmarks/bench_fleet.py --quick    # a few seconds

- F1: the caller-isolation success row of bench_core, with fleet mode on: the overhead of a decorated call whose
  command is shared with the fleet (its sync thread running against Redis every 0.25 s), over the overhead of the
  same call in local mode, in the same process and the same interleaved rounds (target <= 1.1).
- F2: Redis traffic of one process, at a slow call rate (about 100 calls/s) and at the fastest a loop can call:
  round trips per second (the commands the process sent, from Redis's own ``INFO commandstats``) and bytes in and
  out. Bounded by the sync interval, not by the call rate: one script call per interval at both rates.
- F3: fleet scale, simulated faithfully: 500 process identities (each a `Fleet` with its own token, sync numbers,
  version and Redis connection, running the real sync code, ``Fleet._sync``) share one redis-server; every round
  calls each of 100 commands once, then every identity syncs, so each sync carries 100 commands with calls. Redis's
  CPU (``INFO cpu``: used_cpu_sys + used_cpu_user) per sync, times 500 x 4 syncs/s, is the share of one Redis core
  500 processes syncing every 0.25 s would take (target <= 50 %). The same for the script before issue 16
  (`fleet_legacy`), in the same run.
- F4: the time of each script call inside Redis (``SLOWLOG`` with ``slowlog-log-slower-than 0``, which records
  every command's execution time): p99 over the F3 run (target <= 1 ms), and the longest call of one process that
  shares 1,000 commands, all with calls (the sync splits them in calls of 100). Old and new.
- F5 (info): Redis time of one sync (all its script calls) of one process with 10, 100 and 1,000 commands with
  calls, old and new.

Pinned to one CPU like bench_core (see its ``pin_to_one_cpu``); ratios from one run.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence

import fleet_legacy
import redis
from bench_core import (
    Call,
    Round,
    Row,
    environment,
    f,
    logging_off,
    pin_to_one_cpu,
    progress,
    ratio_row,
    render,
    run_rounds,
    show_times,
    timed_calls,
)

import breaker
import breaker.fleet

SYNC_INTERVAL = 0.25


@contextlib.contextmanager
def redis_server() -> Iterator[int]:
    """A private redis-server on a free loopback port; yields the port."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("bench_fleet needs Debian's redis-server (apt-get install redis-server)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    with tempfile.TemporaryDirectory() as folder:
        args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        server = subprocess.Popen([*args, "--dir", folder], stdout=subprocess.DEVNULL)
        others = set(range(os.cpu_count() or 1)) - os.sched_getaffinity(0)
        if others:  # the server does not share the benchmark's pinned CPU: its script times are its own
            os.sched_setaffinity(server.pid, others)
        try:
            client = redis.Redis(port=port)
            deadline = time.monotonic() + 10
            while True:
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            yield port
        finally:
            server.terminate()
            server.wait(10)


def caller(**fields: object) -> breaker.CommandConfig:
    huge = 10**9  # never trips
    return breaker.CommandConfig(isolation="caller", request_volume_threshold=huge, **fields)  # type: ignore[arg-type]


def overhead_row(port: int, n: int, rounds: int, reps: int, rng: random.Random) -> Row:
    """F1: shared and local commands, timed in the same rounds while the fleet syncs."""
    breaker.configure_command("shared", caller())
    breaker.configure_command("local", caller())
    shared: Call = breaker.command("shared")(f)
    local: Call = breaker.command("local")(f)
    fleet = breaker.configure_fleet(
        redis.Redis(port=port, socket_timeout=1.0), namespace="bench", sync_interval=SYNC_INTERVAL, exclude=["local"]
    )
    try:
        shared()
        local()
        if not fleet.wait_synced(10):
            raise SystemExit("the fleet never synced with Redis")
        progress(f"F1: fleet vs local, caller isolation, success (N={n}, {rounds} rounds x {reps})")
        res = run_rounds(
            "fleet",
            {"bare": timed_calls(f, n), "local": timed_calls(local, n), "fleet": timed_calls(shared, n)},
            rounds,
            reps,
            rng,
        )
        show_times("fleet", res)
        stats = breaker.get_circuit("shared")[0].statistics()
        if stats.fleet is None or not stats.fleet.connected:
            raise SystemExit(f"the shared command was not synced with the fleet: {stats.fleet}, {fleet!r}")
    finally:
        fleet.close()

    def ratio(r: Round) -> float:
        return (r["fleet"] - r["bare"]) / (r["local"] - r["bare"])

    return ratio_row(
        "fleet.overhead",
        "F1 caller isolation, success: fleet-mode overhead / local-mode overhead",
        res,
        ratio,
        1.1,
        f"the fleet synced with Redis every {SYNC_INTERVAL:g} s throughout",
    )


#: What a fleet sends Redis itself: its script (and a load of it), and a new connection's handshake. Commands a
#: script runs inside Redis (TIME, HGETALL...) are counted by Redis too, but cost no round trip.
CLIENT_COMMANDS = ("evalsha", "eval", "script|load", "hello", "client|setinfo", "ping")


def sent(stats: dict[str, dict[str, int]]) -> int:
    return sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in CLIENT_COMMANDS)


def traffic(port: int, seconds: float, rate: float | None) -> tuple[float, float, float, float]:
    """Calls/s made, and Redis round trips/s, bytes in/s and bytes out/s over ``seconds`` of calls at ``rate``."""
    breaker.configure_command("traffic", caller())
    call: Call = breaker.command("traffic")(f)
    watcher = redis.Redis(port=port)
    fleet = breaker.configure_fleet(redis.Redis(port=port, socket_timeout=1.0), "bench", SYNC_INTERVAL)
    try:
        call()
        fleet.wait_synced(10)
        before, before_net = watcher.info("commandstats"), watcher.info("stats")
        calls = 0
        start = time.perf_counter()
        end = start + seconds
        gap = 0.0 if rate is None else 1.0 / rate
        next_at = start
        while (now := time.perf_counter()) < end:
            if gap:
                if now < next_at:
                    time.sleep(next_at - now)
                next_at += gap
            call()
            calls += 1
        elapsed = time.perf_counter() - start
        after, after_net = watcher.info("commandstats"), watcher.info("stats")
    finally:
        fleet.close()
    # The byte counters include the watcher's two INFO requests (a few hundred bytes): they overstate, never hide.
    bytes_in = after_net["total_net_input_bytes"] - before_net["total_net_input_bytes"]
    bytes_out = after_net["total_net_output_bytes"] - before_net["total_net_output_bytes"]
    return calls / elapsed, (sent(after) - sent(before)) / elapsed, bytes_in / elapsed, bytes_out / elapsed


def traffic_rows(port: int, seconds: float) -> list[Row]:
    progress(f"F2: Redis traffic over {seconds:g} s at ~100 calls/s, then as fast as a loop calls")
    slow = traffic(port, seconds, 100.0)
    fast = traffic(port, seconds, None)
    for label, (calls, trips, bytes_in, bytes_out) in (("slow", slow), ("fast", fast)):
        progress(
            f"  {label}: {calls:,.0f} calls/s -> {trips:.2f} round trips/s, "
            f"{bytes_in:,.0f} B/s in, {bytes_out:,.0f} B/s out (INFO requests included)"
        )
    bound = 1 / SYNC_INTERVAL
    rows = []
    for label, (calls, trips, bytes_in, bytes_out) in (("~100 calls/s", slow), ("fastest loop", fast)):
        value = trips / bound
        rows.append(
            Row(
                f"fleet.traffic.{label.split()[0]}",
                f"F2 Redis round trips/s per process / (1 / sync_interval), at {calls:,.0f} calls/s ({label}); "
                f"{bytes_in + bytes_out:,.0f} B/s",
                value,
                {"q1": value, "q3": value, "min": value, "max": value},
                "<= 1.1",
                value <= 1.1,
                1,
            )
        )
    growth = fast[1] / slow[1]
    rows.append(
        Row(
            "fleet.traffic.growth",
            f"F2 Redis round trips/s at the fastest loop / at ~100 calls/s (call rate x{fast[0] / slow[0]:,.0f})",
            growth,
            {"q1": growth, "q3": growth, "min": growth, "max": growth},
            "<= 1.2",
            growth <= 1.2,
            1,
        )
    )
    return rows


PROCESSES = 500  # F3: process identities
ACTIVE = 100  # F3: commands with calls in each sync of each
SYNCS_PER_SECOND = 1 / SYNC_INTERVAL


def redis_cpu(watcher: redis.Redis) -> float:
    info = watcher.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def script_durations(watcher: redis.Redis) -> list[int]:
    """The execution times (µs) of the script calls SLOWLOG recorded since it was reset (it records every one)."""
    entries = watcher.slowlog_get(1_000_000)
    return [int(e["duration"]) for e in entries if str(e["command"]).lower().lstrip("b'\"").startswith("evalsha")]


def record_every_command(watcher: redis.Redis) -> None:
    watcher.config_set("slowlog-log-slower-than", 0)
    watcher.config_set("slowlog-max-len", 1_000_000)
    watcher.slowlog_reset()


def p99(values: list[int]) -> float:
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)])


class Identities:
    """``processes`` process identities syncing ``commands`` commands, each with calls at every sync: the new code
    (a `Fleet` per identity, its real sync) or the old script with the arguments the old code built."""

    def __init__(self, port: int, namespace: str, processes: int, commands: int, *, old: bool) -> None:
        self.old = old
        self.namespace = namespace
        self.names = [f"{namespace}-{i}" for i in range(commands)]
        for name in self.names:
            breaker.configure_command(name, caller())
        self.calls: list[Call] = [breaker.command(name)(f) for name in self.names]
        self.clients = [redis.Redis(port=port, socket_timeout=10.0) for _ in range(processes)]
        self.fleets = [
            breaker.fleet.Fleet(client, namespace, SYNC_INTERVAL, commands=self.names, start=False)
            for client in ([] if old else self.clients)
        ]
        self.scripts = [client.register_script(fleet_legacy.SCRIPT) for client in (self.clients if old else [])]
        self.sequence = 0

    def round(self) -> int:
        """Each command called once, then every identity syncs; the syncs made."""
        for call in self.calls:
            call()
        self.sequence += 1
        if self.old:
            for i, script in enumerate(self.scripts):
                keys, args = fleet_legacy.arguments(self.namespace, f"p{i}", self.sequence, self.names, 1)
                script(keys=keys, args=args)
            return len(self.scripts)
        for fleet in self.fleets:
            fleet._sync()  # the real sync, driven without its thread
        return len(self.fleets)

    def close(self) -> None:
        for fleet in self.fleets:
            fleet.close()
        for client in self.clients:
            client.close()


def scale_run(port: int, processes: int, rounds: int, *, old: bool) -> tuple[float, float, list[int], float]:
    """F3/F4: (Redis CPU s per sync, share of one core at ``PROCESSES`` x 4 syncs/s, script times, syncs/s)."""
    watcher = redis.Redis(port=port)
    watcher.flushall()
    identities = Identities(port, "old" if old else "new", processes, ACTIVE, old=old)
    try:
        identities.round()  # first syncs: states read, versions learnt
        identities.round()
        record_every_command(watcher)
        cpu = redis_cpu(watcher)
        started = time.perf_counter()
        syncs = sum(identities.round() for _ in range(rounds))
        elapsed = time.perf_counter() - started
        per_sync = (redis_cpu(watcher) - cpu) / syncs
        durations = script_durations(watcher)
    finally:
        identities.close()
    return per_sync, per_sync * PROCESSES * SYNCS_PER_SECOND, durations, syncs / elapsed


def one_process(port: int, commands: int, syncs: int, *, old: bool) -> tuple[float, int]:
    """F4/F5: one process syncing ``commands`` commands with calls: (mean Redis µs per sync, longest call µs)."""
    watcher = redis.Redis(port=port)
    watcher.flushall()
    identities = Identities(port, f"{'old' if old else 'new'}{commands}", 1, commands, old=old)
    try:
        identities.round()
        identities.round()
        record_every_command(watcher)
        for _ in range(syncs):
            identities.round()
        durations = script_durations(watcher)
    finally:
        identities.close()
    return sum(durations) / syncs, max(durations)


def scale_rows(port: int, processes: int, rounds: int) -> list[Row]:
    progress(f"F3/F4: {processes} process identities x {ACTIVE} commands with calls, {rounds} rounds, old then new")
    runs = {}
    for label, old in (("old", True), ("new", False)):
        per_sync, share, durations, rate = scale_run(port, processes, rounds, old=old)
        runs[label] = (per_sync, share, durations)
        progress(
            f"  {label}: {per_sync * 1e6:,.0f} µs of Redis CPU per sync -> {100 * share:.1f} % of a core at "
            f"{PROCESSES} x {SYNCS_PER_SECOND:g} syncs/s; script p99 {p99(durations):,.0f} µs, max "
            f"{max(durations):,} µs over {len(durations):,} calls; driven at {rate:,.0f} syncs/s"
        )
    progress("F4/F5: one process with 10, 100, 1,000 commands with calls, old and new")
    single = {}
    for commands in (10, 100, 1000):
        for label, old in (("old", True), ("new", False)):
            single[label, commands] = one_process(port, commands, 20, old=old)
            mean, longest = single[label, commands]
            progress(f"  {label}, {commands:,} commands: {mean:,.0f} µs of Redis per sync, longest call {longest:,} µs")

    def row(key: str, name: str, value: float, target: str | None, passed: bool | None) -> Row:
        return Row(key, name, value, {"q1": value, "q3": value, "min": value, "max": value}, target, passed, 1)

    new_share, old_share = runs["new"][1], runs["old"][1]
    new_p99, old_p99 = p99(runs["new"][2]) / 1000, p99(runs["old"][2]) / 1000
    wide_new, wide_old = single["new", 1000][1] / 1000, single["old", 1000][1] / 1000
    rows = [
        row(
            "fleet.scale.cpu",
            f"F3 share of one Redis core, {PROCESSES} processes x {ACTIVE} commands with calls x "
            f"{SYNCS_PER_SECOND:g} syncs/s (old: {100 * old_share:.0f} %)",
            100 * new_share,
            "<= 50 %",
            new_share <= 0.5,
        ),
        row(
            "fleet.scale.p99",
            f"F4 p99 script call, ms, in F3 ({len(runs['new'][2]):,} calls; old: {old_p99:.2f} ms)",
            new_p99,
            "<= 1 ms",
            new_p99 <= 1.0,
        ),
        row(
            "fleet.scale.wide",
            f"F4 longest script call, ms, of one process syncing 1,000 commands with calls (old: {wide_old:.2f} ms)",
            wide_new,
            "<= 1 ms",
            wide_new <= 1.0,
        ),
    ]
    for commands in (10, 100, 1000):
        new_ms, old_ms = single["new", commands][0] / 1000, single["old", commands][0] / 1000
        rows.append(
            row(
                f"fleet.sync.{commands}",
                f"F5 Redis ms per sync, one process, {commands:,} commands with calls (old: {old_ms:.2f} ms)",
                new_ms,
                None,
                None,
            )
        )
    rows.append(
        Row(
            "fleet.cluster",
            "Redis Cluster, commands sharded across nodes",
            math.nan,
            {},
            None,
            None,
            0,
            skipped="not built: every key of a namespace carries the tag {namespace}, so one node serves it; "
            "sharding would take a tag per shard ({namespace:shard}) and one script call per shard",
        )
    )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    args.no_pin = False
    pinned = pin_to_one_cpu()
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    rng = random.Random(seed)
    env = environment(args)
    env.update({"seed": str(seed), "pinned to one CPU": pinned, "redis-py": redis.__version__})
    logging_off()
    n, rounds, reps, seconds = (2_000, 3, 1, 1.0) if args.quick else (20_000, 31, 3, 5.0)
    processes, scale_rounds = (50, 2) if args.quick else (PROCESSES, 6)
    started = time.perf_counter()
    with redis_server() as port:
        env["redis-server"] = redis.Redis(port=port).info("server")["redis_version"]
        rows = [
            overhead_row(port, n, rounds, reps, rng),
            *traffic_rows(port, seconds),
            *scale_rows(port, processes, scale_rounds),
        ]
    elapsed = time.perf_counter() - started
    print(render(env, rows, elapsed))
    return 0 if all(row.passed is not False for row in rows) and not math.isnan(elapsed) else 1


if __name__ == "__main__":
    sys.exit(main())
