"""`configure` and `configure_defaults` are all or nothing, live circuits included.

Two ways a change can fail half-way. Settings that do not fit together are found when every new `Settings` is
resolved, before anything changes. Settings that pass can be applied to any live circuit, so what can still fail
while circuits apply them is what they read: here the registry's clock, a user's (`breaker.testing` takes any
callable), which raises at a chosen read. Either way every command must be left as it was: its resolved settings,
its circuit's settings, tickets and counts; a listener may see a change and its undoing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

import breaker
from breaker import CommandConfig, Settings, State
from breaker._registry import Registry
from breaker.testing import isolated_registry

NAMES = ("a", "b", "c")


class ClockBroke(RuntimeError):
    """What the clock raises when armed."""


class BreakableClock:
    """A manual clock that raises `ClockBroke` at its n-th read once armed (then works again)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.reads = 0
        self.fail_at: int | None = None

    def arm(self, nth: int) -> None:
        """Raise at the ``nth`` read from now on (1: the next one)."""
        self.reads = 0
        self.fail_at = nth

    def __call__(self) -> float:
        self.reads += 1
        if self.reads == self.fail_at:
            self.fail_at = None
            raise ClockBroke("the clock failed")
        return self.now


@pytest.fixture
def clock() -> Iterator[BreakableClock]:
    """A registry of its own reading a `BreakableClock`."""
    clock = BreakableClock()
    with isolated_registry(clock=clock):
        yield clock


Snapshot = dict[str, tuple[Settings, Settings, int | float, dict[str, int], State]]


def snapshot() -> Snapshot:
    """What each command is now: resolved settings, its circuit's settings, tickets, counts and state."""
    taken: Snapshot = {}
    for name in NAMES:
        circuit = breaker.get_circuit(name)[0]
        stats = circuit.statistics()
        taken[name] = (
            breaker.get_settings(name),
            circuit.settings,
            stats.max_concurrent_requests,
            dict(stats.cumulative),
            circuit.state,
        )
    return taken


def live_commands() -> None:
    """Three live circuits with their own configs and a few calls each."""
    for i, name in enumerate(NAMES):
        breaker.configure_command(name, CommandConfig(isolation="caller", sleep_window=2.0 + i))
        for _ in range(i + 1):
            breaker.do(name, lambda: "ok")


def new_configs() -> dict[str, CommandConfig]:
    """A change for every command: more tickets, another window shape, forced open."""
    return {
        name: CommandConfig(
            isolation="caller", max_concurrent_requests=20, rolling_window=30.0, rolling_buckets=30, force_open=True
        )
        for name in NAMES
    }


CHANGES: list[object] = [
    pytest.param(lambda: breaker.configure(new_configs()), id="configure"),
    pytest.param(
        lambda: breaker.configure_defaults(
            CommandConfig(max_concurrent_requests=20, rolling_window=30.0, rolling_buckets=30, force_open=True)
        ),
        id="configure_defaults",
    ),
    pytest.param(
        lambda: breaker.configure_from(
            {
                "defaults": {"sleep_window": "7s", "force_open": "true"},
                "commands": {
                    name: {
                        "isolation": "caller",
                        "max_concurrent_requests": "20.0",
                        "rolling_window": "30s",
                        "rolling_buckets": 30,
                    }
                    for name in NAMES
                },
            }
        ),
        id="configure_from",
    ),
]


@pytest.mark.parametrize("change", CHANGES)
@pytest.mark.parametrize("nth", [1, 2, 3], ids=["first", "middle", "last"])
def test_clock_failing_while_applying_leaves_every_command_unchanged(
    clock: BreakableClock, change: Callable[[], None], nth: int
) -> None:
    """The clock raises as the nth live circuit applies the change: it propagates, and every command is as before."""
    live_commands()
    before = snapshot()
    seen: list[tuple[str, State, State]] = []
    breaker.on_state_change(lambda name, old, new: seen.append((name, old, new)))
    clock.arm(nth)  # each circuit reads the clock once as it applies new settings
    with pytest.raises(ClockBroke):
        change()
    assert snapshot() == before
    for name in NAMES:
        assert breaker.do(name, lambda: "ok") == "ok"  # not forced open
    # Circuits before the failing one were forced open, then back in reverse order; none is left changed.
    assert [name for name, _, new in seen if new is State.FORCED_OPEN] == list(NAMES[: nth - 1])
    assert [name for name, old, _ in seen if old is State.FORCED_OPEN] == list(reversed(NAMES[: nth - 1]))


@pytest.mark.parametrize("change", CHANGES)
def test_change_applies_whole_when_nothing_fails(clock: BreakableClock, change: Callable[[], None]) -> None:
    """The same change with a working clock reaches every live circuit (the failing tests' control)."""
    live_commands()
    change()
    for name in NAMES:
        circuit = breaker.get_circuit(name)[0]
        assert circuit.settings is breaker.get_settings(name)
        assert circuit.statistics().max_concurrent_requests == 20
        assert circuit.state is State.FORCED_OPEN


def test_circuit_created_during_a_failed_change_goes_back_too(clock: BreakableClock, fresh_registry: Registry) -> None:
    """A circuit made by a listener while the change applies (so with the new defaults) is restored with the rest."""
    del fresh_registry  # the clock fixture's registry is the current one
    live_commands()
    before = snapshot()
    made: list[breaker.Circuit] = []

    def make_one_then_break(name: str, old: State, new: State) -> None:
        if not made:
            made.append(breaker.get_circuit("born")[0])  # resolves with the new defaults
            clock.arm(1)  # the next circuit to apply the change fails

    breaker.on_state_change(make_one_then_break)
    with pytest.raises(ClockBroke):
        breaker.configure_defaults(CommandConfig(force_open=True, max_concurrent_requests=20))
    assert snapshot() == before
    assert made[0].settings is breaker.get_settings("born")
    assert made[0].statistics().max_concurrent_requests == 10
    assert made[0].state is State.CLOSED


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(
            lambda: breaker.configure(
                {
                    "a": CommandConfig(force_open=True),
                    "b": CommandConfig(latency_window=1.0, latency_buckets=100),  # 10 ms < the 1 s rolling bucket
                    "c": CommandConfig(force_open=True),
                }
            ),
            id="configure-middle-item",
        ),
        pytest.param(
            lambda: breaker.configure_defaults(CommandConfig(force_open=True, rolling_buckets=1000)),  # b: 0.5 ms
            id="configure_defaults-one-command",
        ),
    ],
)
def test_settings_that_do_not_fit_change_nothing(clock: BreakableClock, change: Callable[[], None]) -> None:
    """A change whose settings do not fit for one command is refused before any circuit or setting changes."""
    live_commands()
    breaker.configure_command("b", CommandConfig(isolation="caller", max_concurrent_requests=3, rolling_window=0.5))
    before = snapshot()
    seen: list[tuple[str, State, State]] = []
    breaker.on_state_change(lambda name, old, new: seen.append((name, old, new)))
    clock.arm(1)  # any read of the clock by a circuit applying settings would fail: none must happen
    with pytest.raises(ValueError, match=r"rolling_buckets|latency_buckets"):
        change()
    assert clock.fail_at == 1  # the clock was not read
    clock.fail_at = None
    assert snapshot() == before
    assert seen == []
