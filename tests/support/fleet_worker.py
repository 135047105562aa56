"""One process of a fleet, for the multi-process tests of `test_fleet`: ``python fleet_worker.py CONFIG_JSON``.

It configures one command (caller isolation), joins the fleet (unless ``fleet`` is false), and talks to the test
in JSON lines: it prints ``{"event": "ready"}`` once its circuit has synced with Redis, then waits for ``go`` on
stdin. Every state change of its circuit is printed as it happens (``{"event": "state", "old", "new", "time"}``,
``time`` from `time.time`, comparable with Redis's TIME on the same machine).

Scenarios (``scenario``):

- ``trip``: on ``go``, ``calls`` calls in a row to a failing dependency, then ``{"event": "called", "state",
  "failed", "short_circuited", "unexpected"}`` (the state after them, and how the calls ended).
- ``probe``: on ``go``, ``threads`` threads call continuously (``pause`` seconds apart) a dependency that lives in
  Redis (`DEPENDENCY`): each call that reaches it is logged there, and fails unless the test set it healthy. On
  ``stop``, the threads stop and ``{"event": "done", "outcomes", "unexpected"}`` is printed.

``exit`` (or the end of stdin) closes the fleet and ends the process.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter
from typing import Any, Literal, TypedDict

import redis

import breaker
from breaker import CommandConfig, State

#: The dependency of the ``probe`` scenario: healthy while KEYS[1] is "1"; every call that reaches it appends
#: "<worker> <seconds> <microseconds> <healthy 1|0> <the caller's circuit state>" (Redis's TIME) to the list KEYS[2].
DEPENDENCY = """
local healthy = redis.call('GET', KEYS[1]) == '1'
local t = redis.call('TIME')
local mark = healthy and '1' or '0'
redis.call('RPUSH', KEYS[2], ARGV[1] .. ' ' .. t[1] .. ' ' .. t[2] .. ' ' .. mark .. ' ' .. ARGV[2])
if healthy then return 1 end
return 0
"""
HEALTH_KEY = "dependency:healthy"
CALLS_KEY = "dependency:calls"
WAIT = 10.0  # the bound on every wait of the worker


class Config(TypedDict):
    """The worker's one argument, as JSON."""

    port: int
    index: int
    namespace: str
    sync_interval: float
    fleet: bool
    scenario: Literal["trip", "probe"]
    command: str
    volume: int
    sleep_window: float
    calls: int
    threads: int
    pause: float
    quorum: int | None


class Boom(Exception):
    """The dependency's failure."""


_print_lock = threading.Lock()  # lines come from the main thread, the callers and the fleet's sync thread


def say(event: str, **fields: Any) -> None:
    """Print one JSON line for the test."""
    line = json.dumps({"event": event, **fields})
    with _print_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def expect(command: str) -> None:
    """Wait for ``command`` on stdin; exit on anything else (the end of stdin included)."""
    line = sys.stdin.readline().strip()
    if line != command:
        raise SystemExit(0 if line in ("", "exit") else f"expected {command!r} on stdin, got {line!r}")


def describe(error: BaseException) -> str:
    return f"{type(error).__module__}.{type(error).__qualname__}: {error}"


def main(config: Config) -> None:
    name = config["command"]
    breaker.configure_command(
        name,
        CommandConfig(
            isolation="caller",
            request_volume_threshold=config["volume"],
            error_percent_threshold=50,
            sleep_window=config["sleep_window"],
            rolling_window=10.0,
            timeout=2.0,
            max_concurrent_requests=config["threads"] + 2,
        ),
    )

    @breaker.on_state_change
    def report(command: str, old: State, new: State) -> None:
        say("state", old=old.value, new=new.value, time=time.time())

    client = redis.Redis(port=config["port"], socket_timeout=2.0, socket_connect_timeout=2.0)
    fleet = None
    if config["fleet"]:
        fleet = breaker.configure_fleet(
            client, config["namespace"], config["sync_interval"], quorum=config.get("quorum")
        )
    circuit = breaker.get_circuit(name)[0]
    deadline = time.monotonic() + WAIT
    while fleet is not None and not ((view := circuit.statistics().fleet) is not None and view.connected):
        if time.monotonic() >= deadline:
            raise SystemExit(f"worker {config['index']}: no sync with Redis within {WAIT} s")
        time.sleep(0.01)
    say("ready", token=None if fleet is None else fleet.token)
    try:
        expect("go")
        if config["scenario"] == "trip":
            trip(config, name)
        else:
            probe(config, name, circuit, client)
        expect("exit")
    finally:
        if fleet is not None:
            fleet.close()
        client.close()


def fail() -> None:
    raise Boom("the dependency is down")


def attempt(name: str) -> str:
    """One call to the failing dependency: "failed" (its own failure), "short_circuited", or what else happened."""
    try:
        breaker.do(name, fail)
    except Boom:
        return "failed"
    except breaker.CircuitOpenError:
        return "short_circuited"
    except Exception as error:
        return describe(error)
    return "it succeeded"


def trip(config: Config, name: str) -> None:
    outcomes = [attempt(name) for _ in range(config["calls"])]
    say(
        "called",
        state=breaker.get_circuit(name)[0].state.value,
        failed=outcomes.count("failed"),
        short_circuited=outcomes.count("short_circuited"),
        unexpected=[o for o in outcomes if o not in ("failed", "short_circuited")],
    )


def probe(config: Config, name: str, circuit: breaker.Circuit, client: redis.Redis) -> None:
    dependency = client.register_script(DEPENDENCY)
    index = config["index"]

    def run() -> None:
        if not dependency(keys=[HEALTH_KEY, CALLS_KEY], args=[index, circuit.state.value]):
            raise Boom("the dependency is down")

    stop = threading.Event()
    outcomes: Counter[str] = Counter()
    unexpected: list[str] = []
    lock = threading.Lock()  # the callers share the tallies

    def call() -> None:
        while not stop.is_set():
            try:
                breaker.do(name, run)
                outcome = "success"
            except (Boom, breaker.CircuitOpenError) as error:
                outcome = type(error).__name__
            except Exception as error:
                outcome = "unexpected"
                with lock:
                    unexpected.append(describe(error))
            with lock:
                outcomes[outcome] += 1
            stop.wait(config["pause"])

    callers = [threading.Thread(target=call, name=f"caller-{i}") for i in range(config["threads"])]
    for thread in callers:
        thread.start()
    try:
        expect("stop")
    finally:
        stop.set()
        for thread in callers:
            thread.join(WAIT)
    say("done", outcomes=dict(outcomes), unexpected=unexpected)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
