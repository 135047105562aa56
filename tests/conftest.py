from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator

import pytest

from breaker import _registry
from breaker.testing import FakeClock, isolated_registry


@pytest.fixture(autouse=True)
def fresh_registry() -> Iterator[_registry.Registry]:
    """Every test starts with an empty registry and built-in defaults, reading the real clock."""
    with isolated_registry() as registry:
        yield registry


@pytest.fixture
def clock(fresh_registry: _registry.Registry) -> FakeClock:
    """A fake clock that the test's registry (and every circuit it creates from now on) reads."""
    fake = FakeClock()
    fresh_registry.clock = fake
    return fake


@pytest.fixture(autouse=True)
def harsh_scheduling() -> Iterator[None]:
    """Under ``tools/soundness.py``: threads switch every ``BREAKER_SWITCH_INTERVAL`` seconds, and with
    ``BREAKER_CPU_HOG=1`` a thread spins on the CPU beside the test's own, for the whole test. Off otherwise."""
    interval = os.environ.get("BREAKER_SWITCH_INTERVAL")
    hog = os.environ.get("BREAKER_CPU_HOG", "") not in ("", "0")
    if not interval and not hog:
        yield
        return
    before = sys.getswitchinterval()
    if interval:
        sys.setswitchinterval(float(interval))
    stop = threading.Event()
    spinner = threading.Thread(target=_spin, args=(stop,), name="cpu-hog", daemon=True)
    if hog:
        spinner.start()
    try:
        yield
    finally:
        stop.set()
        if spinner.ident is not None:
            spinner.join()
        sys.setswitchinterval(before)


def _spin(stop: threading.Event) -> None:
    """Burn CPU, competing with the test's threads for the interpreter, until ``stop`` is set."""
    n = 0
    while not stop.is_set():
        for _ in range(1000):
            n += 1


# The scenario table's fixtures (``held``, ``gate``), for every layer's tests.
pytest_plugins = ["drivers"]
