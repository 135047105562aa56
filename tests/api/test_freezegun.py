"""Users who test with freezegun can drive breaker's clock with it through breaker.testing."""

from __future__ import annotations

import time

from freezegun import freeze_time

import breaker
from breaker.testing import isolated_registry


def test_freezegun_drives_an_isolated_registry_made_inside_freeze_time() -> None:
    """An isolated registry reading time.monotonic under freeze_time sleeps through the window with tick()."""
    with freeze_time("2026-01-01") as frozen, isolated_registry(clock=time.monotonic):
        breaker.configure_command(
            "db", breaker.CommandConfig(request_volume_threshold=1, sleep_window=30.0, isolation="caller")
        )
        breaker.do("db", lambda: 1 / 0, fallback=lambda error: None)
        circuit = breaker.get_circuit("db")[0]
        assert circuit.state is breaker.State.OPEN
        frozen.tick(29.0)
        assert not circuit.allow_request()
        frozen.tick(1.0)
        assert circuit.allow_request()
        assert breaker.do("db", lambda: "probe") == "probe"
        assert breaker.get_circuit("db")[0].state is breaker.State.CLOSED
