"""A fleet member in its own process, for tests/test_fleet_topologies.py (run as a script, not collected).

It joins the fleet ``--namespace`` on the Redis Cluster reached through 127.0.0.1:``--port``, sends ``--successes``
calls of ``--healthy`` and ``--errors`` failing calls of ``--command`` once the fleet knows both circuits, waits
(at most ``--deadline`` seconds) until the fleet opens ``--command``, and prints one JSON line: what it saw. Exit
status 0 when the fleet opened, 1 when the deadline passed first.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import redis

import breaker
from breaker import CommandConfig
from breaker.fleet import FleetStatistics


class Boom(Exception):
    """The dependency's failure."""


def fail() -> str:
    """A call to a dependency that is down."""
    raise Boom("down")


def fallback(error: Exception) -> str:
    """The fallback: callers never see the failure."""
    return "fallback"


def main(argv: list[str] | None = None) -> int:
    """Run one fleet member; see the module's docstring."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--command", required=True)
    parser.add_argument("--healthy", required=True)
    parser.add_argument("--errors", type=int, required=True)
    parser.add_argument("--successes", type=int, required=True)
    parser.add_argument("--volume", type=int, required=True)
    parser.add_argument("--interval", type=float, required=True)
    parser.add_argument("--deadline", type=float, default=20.0)
    options = parser.parse_args(argv)
    deadline = time.monotonic() + options.deadline
    breaker.configure_command(
        options.command,
        CommandConfig(
            isolation="caller", request_volume_threshold=options.volume, sleep_window=60.0, rolling_window=30.0
        ),
    )
    breaker.configure_command(options.healthy, CommandConfig(isolation="caller", rolling_window=30.0))
    circuit, _ = breaker.get_circuit(options.command)
    healthy, _ = breaker.get_circuit(options.healthy)
    client = redis.RedisCluster(host="127.0.0.1", port=options.port, socket_timeout=0.5)
    fleet = breaker.configure_fleet(client, options.namespace, options.interval)
    opened = False
    try:
        # counts made before the fleet's first sync of a circuit are not sent: wait for it
        while (
            circuit.statistics().fleet is None or healthy.statistics().fleet is None
        ) and time.monotonic() < deadline:
            time.sleep(0.01)
        for _ in range(options.successes):
            breaker.do(options.healthy, lambda: "ok")
        for _ in range(options.errors):
            breaker.do(options.command, fail, fallback)
        local = circuit.statistics()
        while time.monotonic() < deadline:
            view = circuit.statistics().fleet
            if view is not None and view.state == "open" and circuit.state is breaker.State.OPEN:
                opened = True
                break
            time.sleep(0.01)
        view = circuit.statistics().fleet
        report = {
            "opened": opened,
            "local_requests_before": local.requests,
            "local_state_before": local.state.value,
            "state": circuit.state.value,
            "fleet_state": None if view is None else view.state,
            "generation": None if view is None else view.generation,
            "fleet": fleet_fields(fleet.statistics()),
        }
    finally:
        fleet.close()
        client.close()
    print(json.dumps(report), flush=True)
    return 0 if opened else 1


def fleet_fields(stats: FleetStatistics) -> dict[str, object]:
    """The fleet's statistics as JSON-ready fields."""
    return {
        "connected": stats.connected,
        "syncs": stats.syncs,
        "failures": stats.failures,
        "commands": list(stats.commands),
    }


if __name__ == "__main__":
    sys.exit(main())
