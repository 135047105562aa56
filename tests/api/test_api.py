"""The public surface: exports, the error tree, argument checks, the decorator, get_circuit, flush and snapshots."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import inspect
import math
import pickle
import threading
from collections.abc import Callable, Iterator
from typing import Any, Literal, cast

import pytest
from contract import EVENTS

import breaker
from breaker import (
    CircuitError,
    CircuitOpenError,
    CommandConfig,
    CommandTimeoutError,
    FallbackError,
    MaxConcurrencyError,
    State,
)
from breaker._registry import Registry
from breaker.testing import FakeClock

NAME = "payments-api"
WAIT = 5.0  # the bound on every wait for something that should happen promptly
ISOLATIONS = ["thread", "caller"]
NOT_CALLABLE: Any = 42


class Boom(Exception):
    """The dependency's own failure."""


class FallbackBoom(Exception):
    """The fallback's own failure."""


def fail() -> str:
    """A run that fails."""
    raise Boom("down")


def counts(name: str = NAME) -> dict[str, int]:
    """The contract's event counts of ``name``'s circuit."""
    snapshot = breaker.get_circuit(name)[0].statistics().counts
    return {event: snapshot[event] for event in EVENTS}


ZERO = dict.fromkeys(EVENTS, 0)


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """An event that held runs wait on; set at teardown so that none outlives its test."""
    event = threading.Event()
    yield event
    event.set()


# -- exports --------------------------------------------------------------------------------------------------------

# fmt: off
EXPECTED_ALL = [  # sorted
    "BOUNDS", "CallResult", "Circuit", "CircuitError", "CircuitOpenError", "CircuitStatistics", "Collector",
    "CollectorFactory", "CommandConfig", "CommandTimeoutError", "ConfigError", "Event", "FailedResultError",
    "FallbackError", "FleetView", "Histogram", "LatencyStatistics", "MaxConcurrencyError", "PERCENTILES", "Permit",
    "Settings", "State", "UNSET", "acquire", "acquire_async", "circuits", "command", "configure", "configure_command",
    "configure_defaults", "configure_fleet", "configure_from", "do", "do_async", "fall_back", "fall_back_async",
    "flush", "get_circuit", "get_settings", "go", "on_state_change", "register_collector", "remove_state_listener",
    "reset_defaults", "retryable",
]
# fmt: on


def test_all_is_pinned() -> None:
    """breaker.__all__ holds exactly the public names, each once."""
    assert sorted(breaker.__all__) == EXPECTED_ALL
    assert len(set(breaker.__all__)) == len(breaker.__all__)


@pytest.mark.parametrize("name", EXPECTED_ALL, ids=EXPECTED_ALL)
def test_public_name_importable(name: str) -> None:
    """Every name of __all__ is importable from breaker, also through a star import."""
    namespace: dict[str, Any] = {}
    exec("from breaker import *", namespace)
    assert namespace[name] is getattr(breaker, name)


def test_event_names_match_contract() -> None:
    """breaker.Event carries the contract's exact event strings."""
    assert set(EVENTS) <= {event.value for event in breaker.Event}


# -- errors ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cls", [CircuitOpenError, MaxConcurrencyError, CommandTimeoutError, FallbackError], ids=lambda c: c.__name__
)
def test_error_subclasses_circuit_error(cls: type[Exception]) -> None:
    """Every breaker error is a CircuitError, itself an Exception."""
    assert issubclass(cls, CircuitError)
    assert issubclass(CircuitError, Exception)


def test_command_timeout_error_is_builtin_timeout_error() -> None:
    """CommandTimeoutError is also the builtin TimeoutError."""
    assert issubclass(CommandTimeoutError, TimeoutError)


def _open(clock: FakeClock, release: threading.Event) -> None:
    breaker.configure_command(NAME, CommandConfig(force_open=True))
    breaker.do(NAME, lambda: "never run")


def _rejected(clock: FakeClock, release: threading.Event) -> None:
    breaker.configure_command(NAME, CommandConfig(max_concurrent_requests=1, timeout=math.inf))
    held = breaker.go(NAME, lambda: release.wait(WAIT))
    try:
        breaker.do(NAME, lambda: "never run")
    finally:
        release.set()
        held.result(WAIT)


def _timed_out(clock: FakeClock, release: threading.Event) -> None:
    breaker.configure_command(NAME, CommandConfig(isolation="caller", timeout=0.5))

    def slow() -> str:
        clock.advance(2.0)
        return "late"

    breaker.do(NAME, slow)


def _fallback_failed(clock: FakeClock, release: threading.Event) -> None:
    def bad_fallback(error: Exception) -> str:
        raise FallbackBoom("no fallback either")

    breaker.do(NAME, fail, bad_fallback)


REAL_ERRORS = [
    pytest.param(_open, CircuitOpenError, id="open"),
    pytest.param(_rejected, MaxConcurrencyError, id="rejected"),
    pytest.param(_timed_out, CommandTimeoutError, id="timeout"),
    pytest.param(_fallback_failed, FallbackError, id="fallback"),
]


def _raise(cause: Callable[[FakeClock, threading.Event], None], clock: FakeClock, release: threading.Event) -> Any:
    with pytest.raises(CircuitError) as info:
        cause(clock, release)
    return info.value


@pytest.mark.parametrize(("cause", "cls"), REAL_ERRORS)
def test_error_has_name_in_attribute_and_message(
    cause: Callable[[FakeClock, threading.Event], None],
    cls: type[CircuitError],
    clock: FakeClock,
    release: threading.Event,
) -> None:
    """A breaker error raised by a call has the command's .name, and the name appears in str()."""
    error = _raise(cause, clock, release)
    assert type(error) is cls
    assert error.name == NAME
    assert NAME in str(error)


@pytest.mark.parametrize(("cause", "cls"), REAL_ERRORS)
def test_error_pickles(
    cause: Callable[[FakeClock, threading.Event], None],
    cls: type[CircuitError],
    clock: FakeClock,
    release: threading.Event,
) -> None:
    """A breaker error survives a pickle round trip with its type, name, message and attributes."""
    error = _raise(cause, clock, release)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is cls
    assert copy.name == NAME
    assert str(copy) == str(error)
    for attribute in ("max_concurrent_requests", "timeout"):
        assert getattr(copy, attribute, None) == getattr(error, attribute, None)


def test_base_circuit_error_pickles() -> None:
    """A plain CircuitError pickles with its name."""
    copy = pickle.loads(pickle.dumps(CircuitError(NAME)))
    assert (type(copy), copy.name) == (CircuitError, NAME)
    assert NAME in str(copy)


def test_fallback_error_keeps_both_errors() -> None:
    """FallbackError keeps .run_error and .fallback_error, is raised from the latter, and pickles with both."""
    run_error = Boom("down")
    fallback_error = FallbackBoom("no fallback either")

    def run() -> str:
        raise run_error

    def fallback(error: Exception) -> str:
        assert error is run_error
        raise fallback_error

    with pytest.raises(FallbackError) as info:
        breaker.do(NAME, run, fallback)
    error = info.value
    assert error.run_error is run_error
    assert error.fallback_error is fallback_error
    assert error.__cause__ is fallback_error
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy.run_error), copy.run_error.args) == (Boom, ("down",))
    assert (type(copy.fallback_error), copy.fallback_error.args) == (FallbackBoom, ("no fallback either",))


# -- bad arguments --------------------------------------------------------------------------------------------------


def _go_result(name: Any, run: Any, fallback: Any = None) -> Any:
    return breaker.go(name, run, fallback).result(WAIT)


DRIVERS = [pytest.param(breaker.do, id="do"), pytest.param(_go_result, id="go")]
BAD_CALLABLES = [
    pytest.param(NOT_CALLABLE, None, "run", id="run"),
    pytest.param("not callable", None, "run", id="run-str"),
    pytest.param(lambda: "ok", NOT_CALLABLE, "fallback", id="fallback"),
]


@pytest.mark.parametrize(("run", "fallback", "what"), BAD_CALLABLES)
@pytest.mark.parametrize("call", DRIVERS)
def test_non_callable_creates_no_circuit(call: Callable[..., Any], run: Any, fallback: Any, what: str) -> None:
    """A non-callable run or fallback raises TypeError naming the command and the argument; no circuit is made."""
    with pytest.raises(TypeError) as info:
        call(NAME, run, fallback)
    assert NAME in str(info.value)
    assert what in str(info.value)
    assert breaker.get_circuit(NAME)[1] is True


@pytest.mark.parametrize(("run", "fallback", "what"), BAD_CALLABLES)
@pytest.mark.parametrize("call", DRIVERS)
def test_non_callable_counts_nothing(call: Callable[..., Any], run: Any, fallback: Any, what: str) -> None:
    """A non-callable run or fallback on a live circuit counts nothing and holds no ticket."""
    circuit = breaker.get_circuit(NAME)[0]
    with pytest.raises(TypeError, match=what):
        call(NAME, run, fallback)
    assert counts() == ZERO
    assert circuit.statistics().active == 0


class PretendsToBeAStr:
    """``isinstance(x, str)`` is True through ``__class__``; its ``__eq__`` raises."""

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        return str

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("not a str")

    def __hash__(self) -> int:
        return hash(NAME)


class LyingStr(str):
    """A str equal to everything, hashing as another name."""

    def __eq__(self, other: object) -> bool:
        return True

    def __hash__(self) -> int:
        return hash("elsewhere")


class Dependency(str, enum.Enum):
    """Command names as an enum of strs."""

    PAYMENTS = NAME


async def _ok() -> str:
    return "ok"


BAD_NAMES: list[tuple[str, object, type[Exception]]] = [
    ("int", 5, TypeError),
    ("none", None, TypeError),
    ("bytes", b"payments", TypeError),
    ("list", ["payments"], TypeError),
    ("pretends-str", PretendsToBeAStr(), TypeError),
    ("empty", "", ValueError),
    ("surrogate", "pay\ud800ments", ValueError),
    ("lone-low-surrogate", "\udcff", ValueError),
]
NAME_TAKERS: list[tuple[str, Callable[[Any], object]]] = [
    ("do", lambda name: breaker.do(name, lambda: "ok")),
    ("do_async", lambda name: asyncio.run(breaker.do_async(name, _ok))),
    ("go", lambda name: breaker.go(name, lambda: "ok")),
    ("get_circuit", breaker.get_circuit),
    ("get_settings", breaker.get_settings),
    ("configure_command", lambda name: breaker.configure_command(name, CommandConfig())),
    ("configure", lambda name: breaker.configure({name: CommandConfig()})),
    ("command", breaker.command),
]


@pytest.mark.parametrize(
    ("take", "name", "error"),
    [
        pytest.param(take, name, error, id=f"{api}-{kind}")
        for api, take in NAME_TAKERS
        for kind, name, error in BAD_NAMES
        if not (api == "configure" and kind == "list")  # a list cannot be a mapping key to begin with
    ],
)
def test_bad_name_rejected(
    take: Callable[[Any], object], name: Any, error: type[Exception], fresh_registry: Registry
) -> None:
    """A non-str, unhashable, empty or not UTF-8 name raises TypeError/ValueError saying what a command name must
    be, before any circuit is made."""
    with pytest.raises(error) as info:
        take(name)
    assert type(info.value) is error
    assert "command name" in str(info.value)
    assert fresh_registry.circuits == {}


def test_surrogate_name_message_names_the_rule() -> None:
    """A name with a lone surrogate is refused naming the UTF-8 rule and where the surrogate is."""
    with pytest.raises(ValueError, match=r"encodable as UTF-8, got 'pay\\ud800ments' \(a lone surrogate at index 3\)"):
        breaker.do("pay\ud800ments", lambda: "ok")


@pytest.mark.parametrize(
    "name",
    [pytest.param(Dependency.PAYMENTS, id="str-enum"), pytest.param(LyingStr(NAME), id="lying-str-subclass")],
)
@pytest.mark.parametrize("take", [api for api, _ in NAME_TAKERS])
def test_str_subclass_name_is_its_plain_text(name: str, take: str, fresh_registry: Registry) -> None:
    """A str subclass (an enum of names, or one with lying overrides) names the command of its plain text."""
    dict(NAME_TAKERS)[take](name)
    if take in ("configure_command", "configure"):
        assert breaker.get_settings(NAME) is fresh_registry.get_settings(NAME)
    circuit, created = breaker.get_circuit(NAME)
    assert type(circuit.name) is str
    assert list(fresh_registry.engines) == [NAME]
    assert [type(key) for key in fresh_registry.engines] == [str]
    if take in ("do", "do_async", "go"):
        assert not created
        assert sum(circuit.statistics().cumulative.values()) == 1


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda: breaker.configure_command(NAME, cast(Any, {"timeout": 1.0})), id="configure_command"),
        pytest.param(lambda: breaker.configure({NAME: cast(Any, None)}), id="configure-item"),
        pytest.param(lambda: breaker.configure(cast(Any, [(NAME, CommandConfig())])), id="configure-not-mapping"),
        pytest.param(lambda: breaker.configure_defaults(cast(Any, "fast")), id="configure_defaults"),
    ],
)
def test_non_config_rejected(call: Callable[[], None]) -> None:
    """Configuring with something that is not a CommandConfig (or a mapping of them) raises TypeError."""
    with pytest.raises(TypeError, match="CommandConfig"):
        call()
    assert breaker.get_settings(NAME) == breaker.get_settings("untouched")


def test_command_on_non_callable() -> None:
    """@breaker.command on a non-callable raises TypeError naming the command."""
    with pytest.raises(TypeError, match=NAME):
        breaker.command(NAME)(NOT_CALLABLE)


def test_command_with_non_callable_fallback() -> None:
    """breaker.command with a non-callable fallback raises TypeError when the decorator is made."""
    with pytest.raises(TypeError, match="fallback"):
        breaker.command(NAME, fallback=NOT_CALLABLE)


# -- the decorator --------------------------------------------------------------------------------------------------


def _charge(order_id: str, amount: int = 1, *, currency: str = "EUR") -> tuple[str, int, str]:
    """Charge an order."""
    return order_id, amount, currency


def test_decorator_keeps_metadata() -> None:
    """The decorated function keeps __name__, __qualname__, __doc__, __module__, __wrapped__ and its signature."""
    wrapped = breaker.command(NAME)(_charge)
    assert wrapped.__name__ == "_charge"
    assert wrapped.__qualname__ == _charge.__qualname__
    assert wrapped.__doc__ == "Charge an order."
    assert wrapped.__module__ == __name__
    assert getattr(wrapped, "__wrapped__", None) is _charge
    assert inspect.signature(wrapped) == inspect.signature(_charge)
    assert wrapped is not _charge


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_decorator_passes_args_and_counts(isolation: Literal["thread", "caller"]) -> None:
    """Calls through the decorator get their args and kwargs, return the value, and are counted."""
    breaker.configure_command(NAME, CommandConfig(isolation=isolation))
    charge = breaker.command(NAME)(_charge)
    assert charge("o-1") == ("o-1", 1, "EUR")
    assert charge("o-2", 5, currency="USD") == ("o-2", 5, "USD")
    assert charge(order_id="o-3", amount=7) == ("o-3", 7, "EUR")
    assert counts() == {**ZERO, "success": 3}


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_decorator_fallback_gets_error_and_args(isolation: Literal["thread", "caller"]) -> None:
    """The fallback is called as fallback(exc, *args, **kwargs) with the failed call's own error and arguments."""
    breaker.configure_command(NAME, CommandConfig(isolation=isolation))
    raised: list[BaseException] = []
    seen: list[tuple[BaseException, str, int, str]] = []

    def charge_offline(error: Exception, order_id: str, amount: int = 1, *, currency: str = "EUR") -> str:
        seen.append((error, order_id, amount, currency))
        return "queued"

    @breaker.command(NAME, fallback=charge_offline)
    def charge(order_id: str, amount: int = 1, *, currency: str = "EUR") -> str:
        error = Boom(order_id)
        raised.append(error)
        raise error

    assert charge("o-1", 9, currency="USD") == "queued"
    assert charge("o-2") == "queued"
    assert seen == [(raised[0], "o-1", 9, "USD"), (raised[1], "o-2", 1, "EUR")]
    assert counts() == {**ZERO, "failure": 2, "fallback-success": 2}


# -- get_circuit ----------------------------------------------------------------------------------------------------


def test_get_circuit_creates_once() -> None:
    """get_circuit returns (circuit, True) the first time and the same circuit with False afterwards."""
    circuit, created = breaker.get_circuit(NAME)
    assert created is True
    assert (circuit.name, circuit.state) == (NAME, State.CLOSED)
    assert breaker.get_circuit(NAME) == (circuit, False)
    breaker.do(NAME, lambda: "ok")
    again, created_again = breaker.get_circuit(NAME)
    assert again is circuit
    assert created_again is False


def test_get_circuit_thread_safe() -> None:
    """100 threads asking for one new name at once all get the same circuit; exactly one created it."""
    parties = 100
    barrier = threading.Barrier(parties)
    results: list[tuple[breaker.Circuit, bool]] = []
    errors: list[BaseException] = []

    def ask() -> None:
        try:
            barrier.wait(WAIT)
            results.append(breaker.get_circuit(NAME))
        except BaseException as error:  # reported below, not lost in the thread
            errors.append(error)

    threads = [threading.Thread(target=ask) for _ in range(parties)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert errors == []
    assert len(results) == parties
    assert len({id(circuit) for circuit, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert results[0][0] is breaker.get_circuit(NAME)[0]


# -- flush ----------------------------------------------------------------------------------------------------------


def test_flush_drops_circuits_and_metrics_keeps_settings() -> None:
    """flush() drops circuits and their counts; configured settings and defaults stay."""
    breaker.configure_defaults(CommandConfig(sleep_window=7.0))
    breaker.configure_command(NAME, CommandConfig(isolation="caller", max_concurrent_requests=3))
    breaker.do(NAME, lambda: "ok")
    breaker.do(NAME, fail, lambda error: "fallback")
    old = breaker.get_circuit(NAME)[0]
    assert counts()["failure"] == 1
    breaker.flush()
    new, created = breaker.get_circuit(NAME)
    assert created is True
    assert new is not old
    assert counts() == ZERO
    assert new.statistics().max_concurrent_requests == 3
    settings = breaker.get_settings(NAME)
    assert (settings.isolation, settings.max_concurrent_requests, settings.sleep_window) == ("caller", 3, 7.0)
    assert new.settings == settings


def test_decorated_function_uses_circuit_after_flush() -> None:
    """A decorated function counts on the new circuit after flush(), not on the dropped one."""
    charge = breaker.command(NAME)(_charge)
    charge("o-1")
    old = breaker.get_circuit(NAME)[0]
    breaker.flush()
    charge("o-2")
    new = breaker.get_circuit(NAME)[0]
    assert new is not old
    assert new.statistics().counts["success"] == 1
    assert old.statistics().counts["success"] == 1


# -- repr and snapshots ---------------------------------------------------------------------------------------------


def test_circuit_repr() -> None:
    """repr(Circuit) shows the name, the state and the tickets."""
    breaker.configure_command(NAME, CommandConfig(max_concurrent_requests=4))
    circuit = breaker.get_circuit(NAME)[0]
    text = repr(circuit)
    assert repr(NAME) in text
    assert "closed" in text
    assert "0/4" in text
    breaker.configure_command(NAME, CommandConfig(force_open=True))
    assert "forced_open" in repr(circuit)


def test_registry_repr(fresh_registry: Registry) -> None:
    """repr(Registry) shows how many circuits it holds."""
    assert "circuits=0" in repr(fresh_registry)
    breaker.get_circuit(NAME)
    breaker.get_circuit("other")
    assert "circuits=2" in repr(fresh_registry)


def test_statistics_frozen() -> None:
    """CircuitStatistics is a frozen snapshot: fields cannot be assigned and later calls do not change it."""
    circuit = breaker.get_circuit(NAME)[0]
    snapshot = circuit.statistics()
    with pytest.raises(dataclasses.FrozenInstanceError):
        snapshot.requests = 5  # type: ignore[misc]
    breaker.do(NAME, lambda: "ok")
    assert snapshot.requests == 0
    assert snapshot.counts["success"] == 0
    assert circuit.statistics().counts["success"] == 1


def test_statistics_counts_every_event_read_only() -> None:
    """statistics().counts maps every event name to its count, zeros included, and cannot be changed."""
    snapshot = breaker.get_circuit(NAME)[0].statistics()
    assert {event: snapshot.counts[event] for event in EVENTS} == ZERO
    with pytest.raises(TypeError):
        cast(dict[str, int], snapshot.counts)["success"] = 1
    assert snapshot.counts["success"] == 0
    breaker.do(NAME, fail, lambda error: "fallback")
    assert counts() == {**ZERO, "failure": 1, "fallback-success": 1}


def test_statistics_fields() -> None:
    """statistics() reports name, state, requests, errors, error_percentage, active, abandoned and tickets."""
    breaker.configure_command(NAME, CommandConfig(isolation="caller"))
    breaker.do(NAME, lambda: "ok")
    breaker.do(NAME, fail, lambda error: "fallback")
    breaker.do(NAME, fail, lambda error: "fallback")
    snapshot = breaker.get_circuit(NAME)[0].statistics()
    assert (snapshot.name, snapshot.state) == (NAME, State.CLOSED)
    assert (snapshot.requests, snapshot.errors, snapshot.error_percentage) == (3, 2, 67)
    assert (snapshot.active, snapshot.abandoned, snapshot.max_concurrent_requests) == (0, 0, 10)
