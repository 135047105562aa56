"""breaker.testing: the fake clock and the isolated registry users test their own code with."""

from __future__ import annotations

import threading

import pytest

import breaker
from breaker import _registry
from breaker.testing import FakeClock, isolated_registry


def test_fake_clock_moves_only_when_told() -> None:
    """FakeClock returns its start until advanced, then start plus the advances."""
    clock = FakeClock(start=10.0)
    assert clock() == clock() == 10.0
    clock.advance(2.5)
    clock.advance(0.0)
    assert clock() == 12.5


def test_fake_clock_refuses_to_go_back() -> None:
    """A monotonic clock cannot move backwards: a negative advance is a ValueError naming the value."""
    with pytest.raises(ValueError, match="-1"):
        FakeClock().advance(-1)


def test_fake_clock_advances_from_many_threads_add_up() -> None:
    """Concurrent advances are not lost."""
    clock = FakeClock(start=0.0)
    barrier = threading.Barrier(8)

    def advance() -> None:
        barrier.wait(5)
        for _ in range(1000):
            clock.advance(1.0)

    threads = [threading.Thread(target=advance) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert clock() == 8000.0


def test_isolated_registry_hides_and_restores_the_global_state() -> None:
    """Inside, circuits, configs and defaults start empty; outside, the previous registry is back untouched."""
    breaker.configure_defaults(breaker.CommandConfig(timeout=3.0))
    breaker.configure_command("outer", breaker.CommandConfig(max_concurrent_requests=3))
    outer_circuit = breaker.get_circuit("outer")[0]
    before = _registry.current
    with isolated_registry() as inner:
        assert _registry.current is inner
        assert breaker.get_settings("outer").max_concurrent_requests == 10
        assert breaker.get_settings("x").timeout == 1.0
        assert breaker.get_circuit("outer")[0] is not outer_circuit
        breaker.configure_defaults(breaker.CommandConfig(timeout=9.0))
    assert _registry.current is before
    assert breaker.get_circuit("outer") == (outer_circuit, False)
    assert breaker.get_settings("x").timeout == 3.0
    assert breaker.get_settings("outer").max_concurrent_requests == 3


def test_isolated_registries_nest() -> None:
    """An isolated registry inside another restores the outer one when it ends."""
    with isolated_registry() as outer:
        with isolated_registry() as inner:
            assert _registry.current is inner
        assert _registry.current is outer


def test_isolated_registry_restores_even_when_the_block_raises() -> None:
    """The global registry comes back after an exception in the block."""
    before = _registry.current
    with pytest.raises(RuntimeError, match="boom"), isolated_registry():
        raise RuntimeError("boom")
    assert _registry.current is before


def test_isolated_registry_with_a_fake_clock_controls_the_sleep_window() -> None:
    """A circuit tripped inside an isolated registry on a FakeClock probes exactly when the clock says so."""
    clock = FakeClock()
    with isolated_registry(clock=clock):
        breaker.configure_command(
            "db", breaker.CommandConfig(request_volume_threshold=1, sleep_window=5.0, isolation="caller")
        )
        breaker.do("db", lambda: 1 / 0, fallback=lambda error: None)
        circuit = breaker.get_circuit("db")[0]
        clock.advance(4.75)  # binary fractions: the sum lands exactly on the window
        assert not circuit.allow_request()
        clock.advance(0.25)
        assert circuit.allow_request()
