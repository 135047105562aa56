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

Pinned to one CPU like bench_core (see its ``pin_to_one_cpu``); ratios from one run.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence

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
    started = time.perf_counter()
    with redis_server() as port:
        env["redis-server"] = redis.Redis(port=port).info("server")["redis_version"]
        rows = [overhead_row(port, n, rounds, reps, rng), *traffic_rows(port, seconds)]
    elapsed = time.perf_counter() - started
    print(render(env, rows, elapsed))
    return 0 if all(row.passed is not False for row in rows) and not math.isnan(elapsed) else 1


if __name__ == "__main__":
    sys.exit(main())
