"""Hostile and careless configuration: every `CommandConfig` field, fed anything, either gives a config that works
from the first call on, or a TypeError/ValueError naming the field; never anything else, never later.

The values come from hypothesis and from the cases issue 13 reproduced: huge ints, nan, infinities, -0.0, bools,
strings, timedeltas up to ``timedelta.max``, objects whose ``__eq__`` says yes to everything, int, float, str and
timedelta subclasses that lie through their overrides, objects that pretend to be an int through ``__class__``,
and iterables that never end or fail. A config that is accepted is configured on a fresh registry, its circuit
made, and called through `breaker.do` (caller isolation unless the field is ``isolation`` itself).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import breaker
from breaker import CommandConfig, Settings
from breaker._core.settings import (
    BUILTIN,
    FIELDS,
    MAX_BUCKETS,
    MAX_IGNORED_EXCEPTIONS,
    MAX_SECONDS,
    MAX_TICKETS,
    MAX_VOLUME,
)
from breaker.testing import FakeClock, isolated_registry

NAME = "dependency"
EXAMPLES = 120  # per field: the whole module stays within a few seconds


class Boom(Exception):
    """An exception type for ignored_exceptions."""


# -- hostile values -------------------------------------------------------------------------------------------------


class EqualsEverything:
    """Says yes to every comparison, and converts to a plausible number."""

    def __eq__(self, other: object) -> bool:
        return True

    def __ne__(self, other: object) -> bool:
        return False

    def __lt__(self, other: object) -> bool:
        return True

    def __le__(self, other: object) -> bool:
        return True

    def __gt__(self, other: object) -> bool:
        return True

    def __ge__(self, other: object) -> bool:
        return True

    def __hash__(self) -> int:
        return hash("thread")

    def __float__(self) -> float:
        return 1.0

    def __index__(self) -> int:
        return 1

    def __int__(self) -> int:
        return 1


class RaisesEverywhere:
    """Every special method it can be asked for raises something that is not a TypeError or ValueError."""

    def _fail(self, *args: object) -> Any:
        raise RuntimeError("hostile")

    __eq__ = __hash__ = __repr__ = __str__ = __float__ = __index__ = __int__ = __iter__ = __len__ = _fail
    __lt__ = __le__ = __gt__ = __ge__ = __bool__ = _fail


class PretendsToBeAnInt:
    """``isinstance(x, int)`` is True through ``__class__``; it is no int."""

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        return int

    def __lt__(self, other: object) -> bool:
        raise RuntimeError("not an int")


class LyingInt(int):
    """An int whose overrides all lie: equal to everything, huge as an index, nan as a float."""

    def __eq__(self, other: object) -> bool:
        return True

    __hash__ = int.__hash__

    def __lt__(self, other: object) -> bool:
        return False

    def __gt__(self, other: object) -> bool:
        return False

    def __index__(self) -> int:
        return 10**12

    def __float__(self) -> float:
        return math.nan

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class LyingFloat(float):
    """A float that claims to be infinite and equal to everything."""

    def __eq__(self, other: object) -> bool:
        return True

    __hash__ = float.__hash__

    def __float__(self) -> float:
        return math.inf


class LyingStr(str):
    """A str equal to everything, hashing as "thread"."""

    def __eq__(self, other: object) -> bool:
        return True

    def __hash__(self) -> int:
        return hash("thread")


class LyingTimedelta(timedelta):
    """A timedelta whose total_seconds() lies."""

    def total_seconds(self) -> float:
        return -1.0


def endless() -> Iterator[type[BaseException]]:
    """An iterable of exception types that never ends."""
    return itertools.repeat(KeyError)


def broken() -> Iterator[type[BaseException]]:
    """An iterable that fails half-way."""
    yield KeyError
    raise RuntimeError("broken iterator")


HOSTILE: list[Callable[[], object]] = [
    EqualsEverything,
    RaisesEverywhere,
    PretendsToBeAnInt,
    lambda: LyingInt(3),
    lambda: LyingInt(0),
    lambda: LyingFloat(2.5),
    lambda: LyingFloat(math.inf),
    lambda: LyingStr("caller"),
    lambda: LyingStr("process"),
    lambda: LyingTimedelta(seconds=2),
    endless,
    broken,
    lambda: [KeyError, "KeyError"],
    lambda: [KeyError] * (MAX_IGNORED_EXCEPTIONS + 1),
    lambda: (Boom, ValueError),
    lambda: Boom,
    lambda: int,
    lambda: "KeyError",
    lambda: b"thread",
    object,
    lambda: None,
    list,
    lambda: {"timeout": 1.0},
]

EDGES: list[object] = [
    0,
    1,
    -1,
    2**31 - 1,
    2**31,
    2**63,
    10**12,
    10**400,
    -(10**400),
    10**5000,  # too many digits for str(): its repr fails
    MAX_TICKETS,
    MAX_TICKETS + 1,
    MAX_BUCKETS,
    MAX_BUCKETS + 1,
    MAX_VOLUME,
    MAX_VOLUME + 1,
    MAX_SECONDS,
    math.nextafter(MAX_SECONDS, math.inf),
    0.0,
    -0.0,
    5e-324,
    0.001,
    1e-300,
    1e308,
    math.inf,
    -math.inf,
    math.nan,
    True,
    False,
    "",
    "thread",
    "caller",
    "Thread",
    "thread\x00",
    "1.5",
    timedelta(0),
    timedelta(microseconds=1),
    timedelta(seconds=-1),
    timedelta.max,
    timedelta.min,
    timedelta(days=20_000),
]

VALUES = st.one_of(
    st.sampled_from(EDGES),
    st.sampled_from(HOSTILE).map(lambda make: make()),
    st.integers(),
    st.integers(min_value=-(10**500), max_value=10**500),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=12),
    st.timedeltas(),
    st.lists(st.sampled_from([KeyError, ValueError, Boom, int, "x"]), max_size=4),
)


# -- what a working config means ------------------------------------------------------------------------------------


def refused(error: Exception, fields: tuple[str, ...]) -> None:
    """``error`` is a plain TypeError or ValueError (no subclass) that names one of ``fields``."""
    assert type(error) in (TypeError, ValueError), f"{type(error).__name__}: {error}"
    message = str(error)
    assert any(field in message for field in fields), f"{message!r} names none of {fields}"


def plain_types(settings: Settings) -> None:
    """Resolved settings hold plain builtin values: nothing the user gave can act on them later."""
    for field in ("timeout", "sleep_window", "rolling_window", "latency_window"):
        value = getattr(settings, field)
        assert (type(value) is float and 0 < value <= MAX_SECONDS) or (field == "timeout" and value == math.inf)
    tickets = settings.max_concurrent_requests
    assert (type(tickets) is int and 1 <= tickets <= MAX_TICKETS) or (type(tickets) is float and tickets == math.inf)
    for field, top in (("request_volume_threshold", MAX_VOLUME), ("rolling_buckets", MAX_BUCKETS)):
        value = getattr(settings, field)
        assert type(value) is int
        assert 0 <= value <= top
    assert type(settings.latency_buckets) is int
    assert 1 <= settings.latency_buckets <= MAX_BUCKETS
    threshold = settings.error_percent_threshold
    assert type(threshold) in (int, float)
    assert 0 < threshold <= 100
    assert type(settings.ignored_exceptions) is tuple
    assert all(type(t) is type and issubclass(t, BaseException) for t in settings.ignored_exceptions)
    assert type(settings.force_open) is bool
    assert type(settings.force_closed) is bool
    assert type(settings.isolation) is str
    assert settings.isolation in ("thread", "caller")


def exercise(given: dict[str, object]) -> None:
    """Build a config from ``given``; if it is accepted, it must configure and work from the first call on."""
    fields = tuple(given)
    try:
        config = CommandConfig(**given)  # type: ignore[arg-type]
    except Exception as error:  # asserted below: a TypeError or ValueError naming the field
        refused(error, fields)
        return
    assert repr(config).startswith("CommandConfig(")
    clock = FakeClock()
    with isolated_registry(clock=clock):
        breaker.configure_defaults(CommandConfig(isolation="caller"))
        try:
            breaker.configure_command(NAME, config)
        except Exception as error:  # fields that do not fit together (bucket lengths)
            refused(error, fields)
            assert breaker.get_settings(NAME) == breaker.get_settings("untouched")
            return
        resolved = breaker.get_settings(NAME)
        plain_types(resolved)
        circuit, created = breaker.get_circuit(NAME)
        assert created
        answers = set()
        for _ in range(2):
            answers.add(breaker.do(NAME, lambda: "ok", lambda error: "fallback"))
            clock.advance(0.5)
        assert answers <= {"ok", "fallback"}
        statistics = circuit.statistics()
        assert statistics.settings is resolved
        assert sum(statistics.cumulative.values()) >= 2
        for shown in (circuit, resolved, statistics):
            assert repr(shown)
        breaker.configure_command(NAME, CommandConfig())  # back to the defaults, live
        assert breaker.do(NAME, lambda: "ok") == "ok"


# -- the table ------------------------------------------------------------------------------------------------------


def test_every_field_has_a_rule() -> None:
    """FIELDS holds a rule for every field of CommandConfig and Settings, in their order."""
    assert list(FIELDS) == [f.name for f in dataclasses.fields(CommandConfig)]
    assert list(FIELDS) == [f.name for f in dataclasses.fields(Settings)]


# -- every field, anything ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("field", list(FIELDS))
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=VALUES)
def test_any_value_works_or_is_refused_naming_the_field(field: str, value: object) -> None:
    """Any value of any field: a config that works from the first call, or TypeError/ValueError naming the field."""
    exercise({field: value})


NUMERIC = [f for f in FIELDS if f not in ("ignored_exceptions", "force_open", "force_closed", "isolation")]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    given=st.dictionaries(
        st.sampled_from(NUMERIC),
        st.one_of(st.sampled_from(EDGES), st.integers(min_value=1, max_value=2000), st.floats(0.0005, 1e4)),
        min_size=2,
    )
)
def test_combinations_work_or_are_refused_naming_a_field(given: dict[str, object]) -> None:
    """Several fields at once (bucket lengths that must fit together): it works, or an error names a given field."""
    exercise(given)


# -- the cases of the issue -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        pytest.param("max_concurrent_requests", 10**12, ValueError, id="tickets-1e12"),
        pytest.param("max_concurrent_requests", MAX_TICKETS + 1, ValueError, id="tickets-above-cap"),
        pytest.param("rolling_buckets", 10**6, ValueError, id="rolling-buckets-1e6"),
        pytest.param("latency_buckets", 10**6, ValueError, id="latency-buckets-1e6"),
        pytest.param("timeout", 10**400, ValueError, id="timeout-huge-int"),
        pytest.param("sleep_window", 10**400, ValueError, id="sleep-window-huge-int"),
        pytest.param("rolling_window", 10**400, ValueError, id="rolling-window-huge-int"),
        pytest.param("latency_window", 10**400, ValueError, id="latency-window-huge-int"),
        pytest.param("error_percent_threshold", 10**400, ValueError, id="threshold-huge-int"),
        pytest.param("request_volume_threshold", 10**5000, ValueError, id="volume-unprintable-int"),
        pytest.param("timeout", timedelta.max, ValueError, id="timeout-timedelta-max"),
        pytest.param("timeout", 1e300, ValueError, id="timeout-1e300"),
        pytest.param("isolation", EqualsEverything(), TypeError, id="isolation-equals-everything"),
        pytest.param("isolation", LyingStr("thread"), TypeError, id="isolation-str-subclass"),
        pytest.param("max_concurrent_requests", EqualsEverything(), TypeError, id="tickets-equals-everything"),
        pytest.param("max_concurrent_requests", PretendsToBeAnInt(), TypeError, id="tickets-pretends-int"),
        pytest.param("ignored_exceptions", RaisesEverywhere(), TypeError, id="ignored-raises-everywhere"),
        pytest.param("ignored_exceptions", endless(), ValueError, id="ignored-endless"),
        pytest.param("force_open", EqualsEverything(), TypeError, id="force-open-equals-everything"),
    ],
)
def test_issue_cases_refused_when_built(field: str, value: object, error: type[Exception]) -> None:
    """Each value issue 13 found accepted (or overflowing) is refused when the config is built, naming the field."""
    with pytest.raises(Exception) as info:  # noqa: PT011 - the exact type is asserted below
        CommandConfig(**{field: value})  # type: ignore[arg-type]
    assert type(info.value) is error
    assert f"CommandConfig.{field}" in str(info.value)


def test_tickets_lying_float_is_read_as_its_real_value() -> None:
    """A float subclass is read through float itself: LyingFloat(2.5) is 2.5, not the inf its __float__ claims."""
    with pytest.raises(TypeError, match=r"max_concurrent_requests must be an int, or math.inf"):
        CommandConfig(max_concurrent_requests=LyingFloat(2.5))


def test_int_subclass_is_taken_as_its_plain_value() -> None:
    """An int subclass counts as the int it holds, whatever its overrides say, and is stored as a plain int."""
    config = CommandConfig(max_concurrent_requests=LyingInt(3), rolling_buckets=LyingInt(5))
    assert type(config.max_concurrent_requests) is int
    assert config.max_concurrent_requests == 3
    assert type(config.rolling_buckets) is int
    assert config.rolling_buckets == 5


def test_timedelta_subclass_is_read_through_timedelta() -> None:
    """A timedelta subclass is read through timedelta.total_seconds, not its own override."""
    assert CommandConfig(timeout=LyingTimedelta(seconds=2)).timeout == 2.0


def test_unprintable_value_is_described_by_its_size() -> None:
    """An int too long to print is described by its size in the message, not by a second error."""
    with pytest.raises(ValueError, match=r"timeout .* got an int of about 5000 digits"):
        CommandConfig(timeout=10**5000)


def test_value_with_failing_repr_is_described_by_its_type() -> None:
    """A value whose repr() raises is described by its type; the repr's own error does not escape."""
    with pytest.raises(TypeError, match=r"timeout .* got RaisesEverywhere <a RaisesEverywhere whose repr\(\) fails>"):
        CommandConfig(timeout=RaisesEverywhere())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("rolling_buckets", 10**400, id="rolling-buckets"),
        pytest.param("latency_window", 10**400, id="latency-window"),
        pytest.param("max_concurrent_requests", 10**12, id="tickets"),
        pytest.param("isolation", EqualsEverything(), id="isolation"),
    ],
)
def test_settings_built_directly_check_every_field(field: str, value: object) -> None:
    """Settings built by hand check each field too: a ValueError or TypeError naming it, never an OverflowError."""
    with pytest.raises((TypeError, ValueError), match=rf"Settings\.{field}"):
        dataclasses.replace(BUILTIN, **{field: value})  # type: ignore[arg-type]


def test_settings_refuses_both_force_flags() -> None:
    """Settings built by hand with force_open and force_closed both True are refused."""
    with pytest.raises(ValueError, match="force_open and force_closed"):
        dataclasses.replace(BUILTIN, force_open=True, force_closed=True)


@pytest.mark.parametrize(
    "configure",
    [
        pytest.param(lambda c: breaker.configure_command(NAME, c), id="configure_command"),
        pytest.param(lambda c: breaker.configure({"other": CommandConfig(), NAME: c}), id="configure"),
        pytest.param(breaker.configure_defaults, id="configure_defaults"),
    ],
)
def test_fields_that_do_not_fit_are_refused_by_every_entry_point(configure: Callable[[CommandConfig], None]) -> None:
    """Latency buckets shorter than rolling ones: every entry point refuses them naming the fields; nothing changes."""
    before = breaker.get_settings(NAME)
    with pytest.raises(ValueError, match="latency_buckets") as info:
        configure(CommandConfig(latency_window=10.0, latency_buckets=MAX_BUCKETS))  # 10 ms < the 1 s rolling bucket
    assert type(info.value) is ValueError
    assert "rolling_buckets" in str(info.value)
    assert breaker.get_settings(NAME) is before
    assert breaker.get_settings("other") == BUILTIN


@pytest.mark.parametrize(
    "configure",
    [
        pytest.param(lambda c: breaker.configure_command(NAME, c), id="configure_command"),
        pytest.param(lambda c: breaker.configure({"other": CommandConfig(), NAME: c}), id="configure"),
        pytest.param(breaker.configure_defaults, id="configure_defaults"),
    ],
)
@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        pytest.param("max_concurrent_requests", 10**12, ValueError, id="tickets"),
        pytest.param("timeout", 10**400, ValueError, id="timeout"),
        pytest.param("isolation", EqualsEverything(), TypeError, id="isolation"),
    ],
)
def test_config_changed_after_it_was_built_is_refused_by_every_entry_point(
    configure: Callable[[CommandConfig], None], field: str, value: object, error: type[Exception]
) -> None:
    """A config whose frozen field was forced afterwards is checked again when resolved: refused, nothing changes."""
    config = CommandConfig()
    object.__setattr__(config, field, value)  # what a careless user can still do to a frozen dataclass
    circuit = breaker.get_circuit(NAME)[0]
    with pytest.raises(error, match=rf"Settings\.{field}"):
        configure(config)
    assert breaker.get_settings(NAME) is BUILTIN
    assert circuit.settings is BUILTIN


class Sneaky(CommandConfig):
    """A CommandConfig subclass whose over() would hand back whatever it likes."""

    def over(self, base: Settings) -> Settings:
        raise RuntimeError("a subclass's over() must not be trusted")


def test_config_subclass_is_resolved_by_command_config_itself() -> None:
    """The registry resolves a CommandConfig subclass with CommandConfig.over, never the subclass's override."""
    breaker.configure_command(NAME, Sneaky(timeout=2.0))
    assert breaker.get_settings(NAME).timeout == 2.0


def test_largest_config_costs_little_at_the_first_call() -> None:
    """The largest ticket count and bucket counts allowed make a circuit that answers its first call at once."""
    config = CommandConfig(
        isolation="caller",
        max_concurrent_requests=MAX_TICKETS,
        rolling_window=MAX_SECONDS,
        rolling_buckets=MAX_BUCKETS,
        latency_window=MAX_SECONDS,
        latency_buckets=MAX_BUCKETS,
        timeout=MAX_SECONDS,
        sleep_window=MAX_SECONDS,
        request_volume_threshold=MAX_VOLUME,
    )
    breaker.configure_command(NAME, config)
    assert breaker.do(NAME, lambda: "ok") == "ok"
    statistics = breaker.get_circuit(NAME)[0].statistics()
    assert statistics.max_concurrent_requests == MAX_TICKETS
    assert statistics.cumulative["success"] == 1
