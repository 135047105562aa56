from __future__ import annotations

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


# The scenario table's fixtures (``held``, ``gate``), for every layer's tests.
pytest_plugins = ["drivers"]
