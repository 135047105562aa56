"""`CommandConfig` validation, the resolution of `Settings` from its layers, and live reconfiguration."""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from datetime import timedelta
from typing import Any

import pytest

import breaker
from breaker import CircuitStatistics, CommandConfig, MaxConcurrencyError, Settings
from breaker.testing import FakeClock

NAME = "dependency"
WAIT = 5.0  # the bound on every wait for something that should happen promptly


class Boom(Exception):
    """The dependency's own failure."""


def fail() -> None:
    """A run that fails."""
    raise Boom("down")


def fallback(error: Exception) -> str:
    """A fallback that always succeeds."""
    return "fallback"


def stats(name: str = NAME) -> CircuitStatistics:
    """The statistics of ``name``'s circuit."""
    return breaker.get_circuit(name)[0].statistics()


# -- CommandConfig: valid forms -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (0.25, 0.25),
        (2, 2.0),
        (timedelta(milliseconds=500), 0.5),
        (timedelta(minutes=1), 60.0),
        (math.inf, math.inf),
    ],
    ids=["float", "int", "timedelta-ms", "timedelta-min", "inf"],
)
def test_timeout_forms_resolve_to_float_seconds(value: float | timedelta, seconds: float) -> None:
    """A timeout given as float, int, timedelta or math.inf resolves to float seconds."""
    config = CommandConfig(timeout=value)
    breaker.configure_command(NAME, config)
    resolved = breaker.get_settings(NAME).timeout
    assert type(resolved) is float
    assert resolved == seconds


@pytest.mark.parametrize("field", ["sleep_window", "rolling_window"])
def test_other_durations_resolve_to_float_seconds(field: str) -> None:
    """sleep_window and rolling_window given as int or timedelta resolve to float seconds."""
    as_timedelta: dict[str, Any] = {field: timedelta(seconds=3)}
    as_int: dict[str, Any] = {field: 4}
    breaker.configure_command(NAME, CommandConfig(**as_timedelta))
    assert getattr(breaker.get_settings(NAME), field) == 3.0
    breaker.configure_command(NAME, CommandConfig(**as_int))
    resolved = getattr(breaker.get_settings(NAME), field)
    assert type(resolved) is float
    assert resolved == 4.0


def test_builtin_defaults() -> None:
    """An unconfigured command resolves to the built-in defaults of the contract's table."""
    settings = breaker.get_settings(NAME)
    assert settings == Settings(
        timeout=1.0,
        max_concurrent_requests=10,
        request_volume_threshold=20,
        sleep_window=5.0,
        error_percent_threshold=50,
        rolling_window=10.0,
        rolling_buckets=10,
        latency_window=60.0,
        latency_buckets=6,
        ignored_exceptions=(),
        force_open=False,
        force_closed=False,
        isolation="thread",
        result_is_failure=None,
        slow_call_duration=math.inf,
        slow_call_percent_threshold=100,
        probes_to_close=1,
        sleep_window_multiplier=1.0,
        max_sleep_window=math.inf,
    )
    assert type(settings.timeout) is float
    assert type(settings.sleep_window) is float
    assert type(settings.rolling_window) is float


@pytest.mark.parametrize("tickets", [1, 25, math.inf], ids=["one", "int", "inf"])
def test_max_concurrent_requests_forms(tickets: float) -> None:
    """max_concurrent_requests accepts a positive int or math.inf, and the circuit reports it."""
    breaker.configure_command(NAME, CommandConfig(max_concurrent_requests=tickets))
    assert breaker.get_settings(NAME).max_concurrent_requests == tickets
    assert stats().max_concurrent_requests == tickets


def test_request_volume_threshold_zero_allowed() -> None:
    """request_volume_threshold=0 is valid."""
    breaker.configure_command(NAME, CommandConfig(request_volume_threshold=0))
    assert breaker.get_settings(NAME).request_volume_threshold == 0


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (KeyError, (KeyError,)),
        ((KeyError, ValueError), (KeyError, ValueError)),
        ([KeyError, ValueError], (KeyError, ValueError)),
        ([], ()),
    ],
    ids=["one-type", "tuple", "list", "empty-list"],
)
def test_ignored_exceptions_normalised_to_tuple(given: Any, expected: tuple[type[BaseException], ...]) -> None:
    """ignored_exceptions takes one type, a tuple or a list, and holds a tuple."""
    config = CommandConfig(ignored_exceptions=given)
    assert config.ignored_exceptions == expected
    assert type(config.ignored_exceptions) is tuple
    breaker.configure_command(NAME, config)
    assert breaker.get_settings(NAME).ignored_exceptions == expected


# -- CommandConfig: bad input ---------------------------------------------------------------------------------------

BAD_CONFIGS: list[Any] = [
    pytest.param({"timeout": -1.0}, ValueError, ("timeout", "-1.0"), id="negative-timeout"),
    pytest.param({"timeout": 0}, ValueError, ("timeout", "0"), id="zero-timeout"),
    pytest.param({"timeout": timedelta(seconds=-2)}, ValueError, ("timeout",), id="negative-timedelta"),
    pytest.param({"timeout": math.nan}, ValueError, ("timeout", "nan"), id="nan-timeout"),
    pytest.param({"sleep_window": math.inf}, ValueError, ("sleep_window", "inf"), id="inf-sleep-window"),
    pytest.param({"timeout": "1s"}, TypeError, ("timeout", "'1s'"), id="str-timeout"),
    pytest.param({"timeout": True}, TypeError, ("timeout", "True"), id="bool-timeout"),
    pytest.param({"sleep_window": "5"}, TypeError, ("sleep_window", "'5'"), id="str-sleep-window"),
    pytest.param({"max_concurrent_requests": 0}, ValueError, ("max_concurrent_requests", "0"), id="zero-tickets"),
    pytest.param({"max_concurrent_requests": -3}, ValueError, ("max_concurrent_requests", "-3"), id="neg-tickets"),
    pytest.param({"max_concurrent_requests": True}, TypeError, ("max_concurrent_requests", "True"), id="bool-tickets"),
    pytest.param({"max_concurrent_requests": 2.5}, TypeError, ("max_concurrent_requests", "2.5"), id="float-tickets"),
    pytest.param({"request_volume_threshold": -1}, ValueError, ("request_volume_threshold", "-1"), id="neg-volume"),
    pytest.param({"request_volume_threshold": False}, TypeError, ("request_volume_threshold",), id="bool-volume"),
    pytest.param({"error_percent_threshold": 0}, ValueError, ("error_percent_threshold", "0"), id="threshold-0"),
    pytest.param({"error_percent_threshold": 101}, ValueError, ("error_percent_threshold", "101"), id="threshold-101"),
    pytest.param({"error_percent_threshold": -5}, ValueError, ("error_percent_threshold", "-5"), id="threshold-neg5"),
    pytest.param({"error_percent_threshold": math.nan}, ValueError, ("error_percent_threshold",), id="threshold-nan"),
    pytest.param({"error_percent_threshold": True}, TypeError, ("error_percent_threshold",), id="bool-threshold"),
    pytest.param({"error_percent_threshold": "50"}, TypeError, ("error_percent_threshold",), id="str-threshold"),
    pytest.param({"rolling_buckets": 0}, ValueError, ("rolling_buckets", "0"), id="zero-buckets"),
    pytest.param({"rolling_buckets": 2.0}, TypeError, ("rolling_buckets",), id="float-buckets"),
    pytest.param({"bogus": 1}, TypeError, ("bogus",), id="unknown-field"),
    pytest.param({"ignored_exceptions": (KeyError, "x")}, TypeError, ("ignored_exceptions", "'x'"), id="ign-str"),
    pytest.param({"ignored_exceptions": int}, TypeError, ("ignored_exceptions", "int"), id="ign-non-exception"),
    pytest.param({"ignored_exceptions": 42}, TypeError, ("ignored_exceptions", "42"), id="ign-int"),
    pytest.param({"ignored_exceptions": "KeyError"}, TypeError, ("ignored_exceptions",), id="ign-str-alone"),
    pytest.param({"force_open": 1}, TypeError, ("force_open",), id="int-force-open"),
    pytest.param({"force_open": True, "force_closed": True}, ValueError, ("force_open", "force_closed"), id="forces"),
    pytest.param({"isolation": "process"}, ValueError, ("isolation", "'process'"), id="bad-isolation"),
]


@pytest.mark.parametrize(("kwargs", "error", "fragments"), BAD_CONFIGS)
def test_bad_config_rejected(kwargs: dict[str, Any], error: type[Exception], fragments: tuple[str, ...]) -> None:
    """A bad CommandConfig raises the exact exception type, naming the field and the value."""
    with pytest.raises(Exception) as info:  # noqa: PT011 - the exact type is asserted below
        CommandConfig(**kwargs)
    assert type(info.value) is error
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message


def test_too_fine_bucket_rejected_at_resolution() -> None:
    """A bucket under 1 ms is a ValueError naming rolling_window/rolling_buckets when configured; nothing applied."""
    config = CommandConfig(rolling_window=0.001, rolling_buckets=10)  # each field is valid alone
    with pytest.raises(ValueError, match="rolling_window") as info:
        breaker.configure_command(NAME, config)
    assert type(info.value) is ValueError
    assert "rolling_buckets" in str(info.value)
    assert breaker.get_settings(NAME).rolling_window == 10.0


def test_too_fine_bucket_via_defaults_rejected() -> None:
    """configure_defaults that would make a command's bucket too fine is refused and changes nothing."""
    breaker.configure_command(NAME, CommandConfig(rolling_window=0.01))
    with pytest.raises(ValueError, match="rolling_buckets"):
        breaker.configure_defaults(CommandConfig(rolling_buckets=100, timeout=3.0))
    assert breaker.get_settings(NAME).rolling_buckets == 10
    assert breaker.get_settings("other").timeout == 1.0


# -- resolution layering --------------------------------------------------------------------------------------------


def test_defaults_lay_over_builtin() -> None:
    """configure_defaults lays its set fields over the built-ins; the rest keep built-in values."""
    breaker.configure_defaults(CommandConfig(timeout=2.0, sleep_window=timedelta(seconds=7)))
    settings = breaker.get_settings(NAME)
    assert (settings.timeout, settings.sleep_window) == (2.0, 7.0)
    assert (settings.max_concurrent_requests, settings.request_volume_threshold) == (10, 20)


def test_configure_defaults_replaces_previous_call() -> None:
    """A second configure_defaults replaces the first: fields it leaves unset go back to the built-ins."""
    breaker.configure_defaults(CommandConfig(timeout=2.0))
    breaker.configure_defaults(CommandConfig(sleep_window=3.0))
    settings = breaker.get_settings(NAME)
    assert settings.timeout == 1.0
    assert settings.sleep_window == 3.0


def test_configure_command_replaces_earlier_config() -> None:
    """A second configure_command replaces the command's first config; unset fields come from the defaults."""
    breaker.configure_defaults(CommandConfig(sleep_window=9.0))
    breaker.configure_command(NAME, CommandConfig(timeout=2.0, max_concurrent_requests=3))
    breaker.configure_command(NAME, CommandConfig(sleep_window=3.0))
    settings = breaker.get_settings(NAME)
    assert (settings.timeout, settings.max_concurrent_requests, settings.sleep_window) == (1.0, 10, 3.0)


def test_command_fields_override_defaults_and_unset_inherit() -> None:
    """A command's set fields win over the defaults; its unset fields inherit them, set before or after."""
    breaker.configure_command(NAME, CommandConfig(timeout=2.0))
    breaker.configure_defaults(CommandConfig(timeout=5.0, sleep_window=8.0))
    settings = breaker.get_settings(NAME)
    assert (settings.timeout, settings.sleep_window) == (2.0, 8.0)


def test_live_circuit_follows_later_defaults() -> None:
    """Live circuits apply later defaults at once for the fields their config leaves unset."""
    breaker.configure_command(NAME, CommandConfig(timeout=2.0))
    configured = breaker.get_circuit(NAME)[0]
    plain = breaker.get_circuit("plain")[0]
    breaker.configure_defaults(CommandConfig(max_concurrent_requests=3, timeout=4.0))
    assert configured.statistics().max_concurrent_requests == 3
    assert plain.statistics().max_concurrent_requests == 3
    assert configured.settings == breaker.get_settings(NAME)
    assert configured.settings.timeout == 2.0
    assert plain.settings.timeout == 4.0


def test_reset_defaults() -> None:
    """reset_defaults goes back to the built-ins for defaults while a command's own config stays."""
    breaker.configure_command(NAME, CommandConfig(sleep_window=3.0))
    circuit = breaker.get_circuit(NAME)[0]
    breaker.configure_defaults(CommandConfig(timeout=2.0, max_concurrent_requests=4))
    breaker.reset_defaults()
    settings = breaker.get_settings(NAME)
    assert (settings.timeout, settings.max_concurrent_requests, settings.sleep_window) == (1.0, 10, 3.0)
    assert circuit.statistics().max_concurrent_requests == 10
    assert breaker.get_settings("other") == breaker.get_settings("another")


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        pytest.param({"b": "not a config"}, TypeError, id="not-a-config"),
        pytest.param({"": CommandConfig()}, ValueError, id="empty-name"),
        pytest.param({"b": CommandConfig(rolling_window=0.001, rolling_buckets=10)}, ValueError, id="too-fine"),
    ],
)
def test_configure_all_or_nothing(bad: dict[str, Any], error: type[Exception]) -> None:
    """configure() validates every item before applying any: one bad item, nothing applied."""
    circuit = breaker.get_circuit("a")[0]
    with pytest.raises(error):
        breaker.configure({"a": CommandConfig(timeout=2.0, max_concurrent_requests=2), **bad})
    assert breaker.get_settings("a").timeout == 1.0
    assert circuit.statistics().max_concurrent_requests == 10


def test_configure_applies_every_item() -> None:
    """configure() applies each item as configure_command would."""
    breaker.configure({"a": CommandConfig(timeout=2.0), "b": CommandConfig(sleep_window=3.0)})
    assert breaker.get_settings("a").timeout == 2.0
    assert breaker.get_settings("b").sleep_window == 3.0


# -- live reconfiguration -------------------------------------------------------------------------------------------


def _hold(name: str, count: int) -> tuple[threading.Event, list[Future[str]]]:
    """Start ``count`` runs of ``name`` that hold their ticket until the returned event is set."""
    release = threading.Event()

    def run() -> str:
        release.wait(WAIT)
        return "done"

    return release, [breaker.go(name, run) for _ in range(count)]


@pytest.fixture
def release_all() -> Iterator[list[threading.Event]]:
    """Events set at teardown, so that no held run outlives its test."""
    events: list[threading.Event] = []
    yield events
    for event in events:
        event.set()


@pytest.mark.parametrize(("before", "after"), [(1, 3), (5, 2)], ids=["raise", "lower"])
def test_live_max_concurrent_requests_applies_at_once(
    before: int, after: int, release_all: list[threading.Event]
) -> None:
    """configure_command on a live circuit changes its ticket count at once: exactly `after` runs are admitted."""
    breaker.configure_command(NAME, CommandConfig(max_concurrent_requests=before, timeout=math.inf))
    circuit = breaker.get_circuit(NAME)[0]
    breaker.configure_command(NAME, CommandConfig(max_concurrent_requests=after, timeout=math.inf))
    assert circuit.statistics().max_concurrent_requests == after
    release, futures = _hold(NAME, after)
    release_all.append(release)
    assert circuit.statistics().active == after
    with pytest.raises(MaxConcurrencyError):
        breaker.do(NAME, lambda: "extra")
    release.set()
    assert [f.result(WAIT) for f in futures] == ["done"] * after
    assert circuit.statistics().counts["rejected"] == 1
    assert circuit.statistics().active == 0


def test_lowering_tickets_while_held(release_all: list[threading.Event]) -> None:
    """Lowering max_concurrent_requests below the tickets in use admits nothing until enough come back."""
    breaker.configure_command(NAME, CommandConfig(max_concurrent_requests=3, timeout=math.inf))
    release, futures = _hold(NAME, 3)
    release_all.append(release)
    breaker.configure_command(NAME, CommandConfig(max_concurrent_requests=1, timeout=math.inf))
    assert not breaker.get_circuit(NAME)[0].allow_request()
    release.set()
    for future in futures:
        future.result(WAIT)
    circuit = breaker.get_circuit(NAME)[0]
    assert circuit.statistics().active == 0
    release2, held = _hold(NAME, 1)
    release_all.append(release2)
    with pytest.raises(MaxConcurrencyError):
        breaker.do(NAME, lambda: "extra")
    release2.set()
    assert held[0].result(WAIT) == "done"


def test_reconfigure_keeps_counts() -> None:
    """configure_command on a live circuit keeps its counts and applies the new settings."""
    breaker.configure_command(NAME, CommandConfig(isolation="caller"))
    circuit = breaker.get_circuit(NAME)[0]
    assert breaker.do(NAME, fail, fallback) == "fallback"
    assert breaker.do(NAME, lambda: "ok") == "ok"
    breaker.configure_command(NAME, CommandConfig(isolation="caller", timeout=2.0, error_percent_threshold=90))
    after = circuit.statistics()
    assert (after.counts["failure"], after.counts["success"], after.counts["fallback-success"]) == (1, 1, 1)
    assert circuit.settings.timeout == 2.0
    assert breaker.get_circuit(NAME) == (circuit, False)


def _record_at(clock: FakeClock) -> Callable[[float, Callable[[], None]], None]:
    """A helper that moves the fake clock by ``step`` seconds, then makes one call through NAME."""

    def record(step: float, run: Callable[[], None]) -> None:
        clock.advance(step)
        breaker.do(NAME, run, lambda error: None)

    return record


def test_shrinking_window_keeps_counts_inside_it(clock: FakeClock) -> None:
    """A shorter rolling window keeps the counts that fall inside it and drops older ones."""
    breaker.configure_command(NAME, CommandConfig(isolation="caller", rolling_window=10.0, rolling_buckets=10))
    circuit = breaker.get_circuit(NAME)[0]
    record = _record_at(clock)
    record(0.0, fail)  # t = 0: outside the new 2 s window
    record(4.0, fail)  # t = 4: inside
    record(1.0, lambda: None)  # t = 5: inside
    assert circuit.statistics().counts["failure"] == 2
    breaker.configure_command(NAME, CommandConfig(isolation="caller", rolling_window=2.0, rolling_buckets=2))
    counts = circuit.statistics().counts
    assert (counts["failure"], counts["success"], counts["fallback-success"]) == (1, 1, 1)


def test_growing_window_keeps_all_counts(clock: FakeClock) -> None:
    """A longer rolling window, or more buckets, keeps every count already in the window."""
    breaker.configure_command(NAME, CommandConfig(isolation="caller", rolling_window=10.0, rolling_buckets=10))
    circuit = breaker.get_circuit(NAME)[0]
    record = _record_at(clock)
    record(0.0, fail)
    record(6.0, lambda: None)
    breaker.configure_command(NAME, CommandConfig(isolation="caller", rolling_window=30.0, rolling_buckets=30))
    counts = circuit.statistics().counts
    assert (counts["failure"], counts["success"]) == (1, 1)
    clock.advance(20.0)  # t = 26: still inside the 30 s window
    counts = circuit.statistics().counts
    assert (counts["failure"], counts["success"]) == (1, 1)
    clock.advance(9.0)  # t = 35: the call at t = 0 has left it, the one at t = 6 has not
    counts = circuit.statistics().counts
    assert (counts["failure"], counts["success"]) == (0, 1)


# -- immutability and repr ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: CommandConfig(timeout=1.0), id="CommandConfig"),
        pytest.param(lambda: breaker.get_settings(NAME), id="Settings"),
    ],
)
def test_frozen(make: Callable[[], CommandConfig | Settings]) -> None:
    """CommandConfig and Settings are frozen: assigning a field raises FrozenInstanceError."""
    target = make()
    with pytest.raises(dataclasses.FrozenInstanceError):
        target.timeout = 3.0  # type: ignore[misc]
    assert target.timeout == 1.0


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (CommandConfig(), "CommandConfig()"),
        (CommandConfig(timeout=0.5), "CommandConfig(timeout=0.5)"),
        (
            CommandConfig(max_concurrent_requests=3, isolation="caller"),
            "CommandConfig(max_concurrent_requests=3, isolation='caller')",
        ),
    ],
    ids=["empty", "one", "two"],
)
def test_command_config_repr_shows_set_fields_only(config: CommandConfig, expected: str) -> None:
    """repr(CommandConfig) shows only the fields that were set."""
    assert repr(config) == expected
