"""Fleet mode across ``fork()``: a fleet configured before a fork (gunicorn ``--preload``, multiprocessing's fork
start method) syncs in the child as a process of its own, against a real redis-server.

The parent syncs every 30 s: besides its first sync, it syncs only when `Fleet.wait_synced` asks, so the counts it
made before the fork are still unsent when it forks, whatever the machine's speed.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from fork_support import fork_and_run

import breaker
import breaker.fleet
from breaker import CommandConfig
from breaker._registry import Registry
from breaker.fleet import Fleet

if TYPE_CHECKING:  # imported as a plugin, below: importing it here first would keep pytest from rewriting its asserts
    from redis_support import RedisServer

pytest_plugins = ["redis_support"]

WAIT = 10.0  # the bound on every wait for something that should happen promptly
NAMESPACE = "forked"
SLOW_SYNC = 30.0  # seconds: no sync comes unasked within a test


def ok() -> str:
    return "ok"


def window_requests(server: RedisServer, command: str) -> int:
    """The fleet window's requests for ``command``, as Redis holds them: its field of the running totals of the
    windows of its length and bucket count (the defaults: ``{namespace}:breaker-window:10000:10:r``)."""
    client = server.client(decode_responses=True)
    return int(str(client.hget(f"{{{NAMESPACE}}}:breaker-window:10000:10:r", command) or 0))


@pytest.fixture
def fleet(redis_server: RedisServer, fresh_registry: Registry) -> Iterator[Fleet]:
    """A fleet on the test's redis-server, syncing only when asked (after its first sync); closed after the test."""
    made = breaker.configure_fleet(redis_server.client(), NAMESPACE, SLOW_SYNC)
    yield made
    made.close()


def test_a_fleet_configured_before_a_fork_syncs_in_the_child_as_a_process_of_its_own(
    redis_server: RedisServer, fleet: Fleet
) -> None:
    """The child syncs on a thread and token of its own; its calls count once; the parent's unsent ones stay its own."""
    breaker.configure_command("dep", CommandConfig(isolation="caller"))
    breaker.get_circuit("dep")
    assert fleet.wait_synced(WAIT)  # the circuit is shared: the calls from now on are counted
    for _ in range(5):
        assert breaker.do("dep", ok) == "ok"  # unsent at the fork: the next sync is the parent's wait_synced
    parent_thread = fleet._thread
    parent_syncs = fleet.statistics().syncs

    def child() -> dict[str, Any]:
        current = breaker.fleet.current_fleet()
        assert current is fleet
        breaker.get_circuit("dep")
        assert current.wait_synced(WAIT), "no sync in the child"
        for _ in range(3):
            breaker.do("dep", ok)
        assert current.wait_synced(WAIT)
        stats = current.statistics()
        view = breaker.get_circuit("dep")[0].statistics().fleet
        threads = [t.name for t in threading.enumerate() if t.name.startswith("breaker-fleet-")]
        answer = {
            "pid": os.getpid(),
            "token": current.token,
            "connected": stats.connected,
            "numbered": current._sequence,  # its syncs with circuits: numbered under its own mark
            "commands": list(stats.commands),
            "threads": threads,
            "thread_alive": current._thread.is_alive() and current._thread is not parent_thread,
            "view_connected": view is not None and view.connected,
            "requests": window_requests(redis_server, "dep"),
        }
        current.close()
        return answer

    seen = fork_and_run(child)
    assert seen["pid"] != os.getpid()
    assert seen["token"] != fleet.token
    assert str(seen["pid"]) in seen["token"].split(":")
    assert seen["thread_alive"]
    assert seen["threads"] == [f"breaker-fleet-{NAMESPACE}"]
    assert (seen["connected"], seen["view_connected"], seen["commands"]) == (True, True, ["dep"])
    assert seen["requests"] == 3  # the child's own calls; not the parent's 5, which the parent has not sent yet
    # Each process numbers its syncs from 1 under its own mark: the child's reached Redis under its token.
    marks = redis_server.client(decode_responses=True)
    # (It may be past the number read in the child: the child's thread synced again before it was closed.)
    assert int(str(marks.get(f"{{{NAMESPACE}}}:breaker-sync:{seen['token']}"))) >= seen["numbered"] >= 1
    # The parent syncs on: its thread, its token, and its 5 calls, sent once.
    assert fleet._thread is parent_thread
    assert parent_thread.is_alive()
    assert fleet.wait_synced(WAIT)
    assert fleet.statistics().syncs > parent_syncs
    assert fleet.statistics().connected
    assert window_requests(redis_server, "dep") == 5 + 3
    assert marks.exists(f"{{{NAMESPACE}}}:breaker-sync:{fleet.token}")


def test_a_fleet_closed_before_a_fork_stays_closed_in_the_child(redis_server: RedisServer, fleet: Fleet) -> None:
    """A closed fleet is not restarted by a fork: the child has no fleet and no sync thread."""
    assert fleet.wait_synced(WAIT)
    fleet.close()

    def child() -> dict[str, Any]:
        threads = [t.name for t in threading.enumerate() if t.name.startswith("breaker-fleet-")]
        return {"current": repr(breaker.fleet.current_fleet()), "threads": threads}

    assert fork_and_run(child) == {"current": "None", "threads": []}
