"""Honest reporting in fleet mode, against a real redis-server: a circuit the fleet opens says so, quoting the
fleet's figures at the trip (which the trip clears from the fleet's window), in its log line and its view.

Two processes: the test's, and a child made by ``fork()`` (see `test_fleet_fork`) that trips the fleet. Both sync
only when asked (after a first sync), so which process trips the fleet, and when the other learns of it, is fixed.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from fork_support import fork_and_run

import breaker
import breaker.stream
from breaker import CommandConfig, State
from breaker._registry import Registry
from breaker.fleet import Fleet

if TYPE_CHECKING:  # imported as a plugin, below: importing it here first would keep pytest from rewriting its asserts
    from redis_support import RedisServer

pytest_plugins = ["redis_support"]

WAIT = 10.0  # the bound on every wait for something that should happen promptly
NAMESPACE = "shop"
SLOW_SYNC = 30.0  # seconds: no sync comes unasked within a test
VOLUME = 10
FAILURES = 12
OPENED = "circuit 'dep' opened by the fleet (namespace 'shop'): 12 errors in 12 requests (100%) across the fleet"


class Boom(Exception):
    """The dependency's own failure."""


def failing() -> str:
    raise Boom("the dependency is down")


def attempt(name: str) -> None:
    """One call to the failing dependency; its failure and a short-circuit are both expected."""
    with contextlib.suppress(Boom, breaker.CircuitOpenError):
        breaker.do(name, failing)


def messages(caplog: pytest.LogCaptureFixture, level: int = logging.WARNING) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "breaker" and r.levelno >= level]


def wait_until(what: str, predicate: Callable[[], object], fleet: Fleet) -> None:
    """Sync until ``predicate`` holds, within ``WAIT`` seconds of syncs; else fail naming ``what``."""
    for _ in range(int(WAIT / 0.01)):
        if predicate():
            return
        assert fleet.wait_synced(WAIT)
    raise AssertionError(f"not within {WAIT:g} s: {what}")


@pytest.fixture
def fleet(redis_server: RedisServer, fresh_registry: Registry) -> Iterator[Fleet]:
    """A fleet on the test's redis-server, syncing only when asked (after its first sync); closed after the test."""
    made = breaker.configure_fleet(redis_server.client(), NAMESPACE, SLOW_SYNC)
    yield made
    made.close()


def test_a_circuit_the_fleet_opens_logs_the_fleets_figures_once_per_trip_in_every_process(
    redis_server: RedisServer, fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    """The tripping process and another both log the fleet's figures, once, and failed probes add no warning."""
    caplog.set_level(logging.INFO, logger="breaker")
    config = CommandConfig(isolation="caller", request_volume_threshold=VOLUME, sleep_window=0.05, timeout=1.0)
    breaker.configure_command("dep", config)
    circuit = breaker.get_circuit("dep")[0]
    assert fleet.wait_synced(WAIT)

    def trip() -> dict[str, Any]:  # in the child: 12 failures, past the volume (10): its sync trips the fleet
        caplog.clear()
        breaker.get_circuit("dep")
        assert fleet.wait_synced(WAIT)  # the circuit is shared: its calls from now on are counted
        for _ in range(FAILURES):
            attempt("dep")
        assert fleet.wait_synced(WAIT)  # this sync trips the fleet
        view = breaker.get_circuit("dep")[0].statistics().fleet
        assert view is not None
        return {"warnings": messages(caplog), "view": [view.state, view.trip_requests, view.trip_errors]}

    tripper = fork_and_run(trip)
    assert tripper == {"warnings": [OPENED], "view": ["open", FAILURES, FAILURES]}
    # This process learns of the trip at its next sync: the window it gets back is empty, the figures are kept.
    assert fleet.wait_synced(WAIT)
    assert circuit.state is State.OPEN
    assert messages(caplog) == [OPENED]
    stats = circuit.statistics()
    assert stats.fleet is not None
    assert (stats.fleet.requests, stats.fleet.errors) == (0, 0)
    assert (stats.fleet.trip_requests, stats.fleet.trip_errors, stats.fleet.trip_error_percentage) == (12, 12, 100)
    message = breaker.stream.command_message(stats, 0)
    assert (message["fleetRequestCount"], message["fleetErrorPercentage"]) == (0, 0)
    trip_fields = ("fleetTripRequestCount", "fleetTripErrorCount", "fleetTripErrorPercentage")
    assert [message.get(field) for field in trip_fields] == [12, 12, 100]
    # The child is gone: this process gets the probe lease; three of its probes fail, each reopening the fleet.
    generation = stats.fleet.generation

    def reopened_thrice() -> bool:
        attempt("dep")
        view = circuit.statistics().fleet
        return view is not None and view.generation >= generation + 3

    wait_until("three failed probes", reopened_thrice, fleet)
    assert messages(caplog) == [OPENED]  # no warning for a failed probe: the fleet stays open
    assert messages(caplog, logging.INFO).count("circuit 'dep' stays open: its probe for the fleet failed") >= 3
    view = circuit.statistics().fleet
    assert view is not None
    assert (view.state, view.trip_requests, view.trip_errors) == ("open", 12, 12)  # kept while open
