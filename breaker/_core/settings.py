"""Command configuration (what users write) and resolved settings (what a circuit runs with).

A `CommandConfig` is a partial layer: each field is either set or `UNSET`. A command's `Settings` are its own
config laid over the global defaults config, laid over the built-in defaults. Durations are float seconds in
`Settings`, whatever form (float, int or timedelta) they were given in.

Every field is checked by its rule in `FIELDS` when a `CommandConfig` or a `Settings` is built, and the rules that
tie fields together (`Settings.__post_init__`, the force flags) then: a value that passes can be used as it is by
every part of the library, at the first call and ever after, so nothing is checked per call. The bounds keep what a
circuit allocates small (its tickets, its window buckets) and its arithmetic exact; every refusal is a `TypeError`
or `ValueError` naming the field, the rule and the value (`breaker._core.validation`). A new field is a field of
both dataclasses and a line of `FIELDS` (and, if it depends on another field, a check in `_check_together`).
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from types import MappingProxyType
from typing import Any, Final, Literal, TypeAlias

from .validation import MAX_SECONDS, Count, ExceptionTypes, Flag, Number, OneOf, Predicate, Seconds, show

__all__ = [
    "BUILTIN",
    "FIELDS",
    "MAX_BUCKETS",
    "MAX_IGNORED_EXCEPTIONS",
    "MAX_SECONDS",
    "MAX_TICKETS",
    "MAX_VOLUME",
    "UNSET",
    "CommandConfig",
    "Isolation",
    "Settings",
    "UnsetType",
]


class UnsetType(enum.Enum):
    """The type of `UNSET`: a field left unset inherits the default (distinct from ``None`` and ``0``)."""

    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


UNSET: Final = UnsetType.UNSET

Isolation: TypeAlias = Literal["thread", "caller"]
Duration: TypeAlias = float | timedelta
IgnoredExceptions: TypeAlias = type[BaseException] | Iterable[type[BaseException]]
#: ``result_is_failure``: called with what a run returned; True makes the call a failure.
ResultPredicate: TypeAlias = Callable[[Any], object]

_MIN_BUCKET: Final = 0.001  # seconds; finer buckets cost more than they tell

#: The most tickets a command can have: they are made when its circuit is (a list of that many items), so a limit
#: beyond any real bulkhead would cost memory for nothing. ``math.inf`` means no limit and costs nothing.
MAX_TICKETS: Final = 100_000
#: The most buckets a rolling or latency window can have: each bucket is a slot the window keeps and walks as it
#: turns over, and a finer grain than a thousandth of the window tells nothing more.
MAX_BUCKETS: Final = 1_000
#: The largest request volume threshold: Java's ``Integer.MAX_VALUE``, the most the Hystrix dashboard can show;
#: far above any window's traffic ("never trip" is ``force_closed=True``).
MAX_VOLUME: Final = 2**31 - 1
#: The most ignored exception types: each failing call is checked against all of them.
MAX_IGNORED_EXCEPTIONS: Final = 100
#: The most successful probes in a row a circuit can need to close (each takes a call's time, one at a time).
MAX_PROBES: Final = 1_000
#: The largest factor the sleep window may grow by after each failed probe (`max_sleep_window` caps the growth).
MAX_MULTIPLIER: Final = 1_000

#: A field's check: ``rule(where, value)`` returns the value in the form `Settings` holds, or raises TypeError or
#: ValueError naming ``where`` (``"CommandConfig.timeout"``), the rule and the value.
Rule: TypeAlias = Callable[[str, object], object]

#: The rule of every field of `CommandConfig` and `Settings` (the two have the same fields, in this order).
FIELDS: Final[Mapping[str, Rule]] = MappingProxyType(
    {
        "timeout": Seconds(infinite="no timeout"),
        "max_concurrent_requests": Count(
            1,
            MAX_TICKETS,
            infinite="no limit",
            beyond="tickets are made up front; use math.inf for no limit",
        ),
        "request_volume_threshold": Count(0, MAX_VOLUME, beyond="to never trip on health, set force_closed=True"),
        "sleep_window": Seconds(),
        "error_percent_threshold": Number(
            0, 100, meaning="it is a percentage, and a threshold above 100 could never trip"
        ),
        "rolling_window": Seconds(),
        "rolling_buckets": Count(1, MAX_BUCKETS, beyond="a bucket of a thousandth of the window is fine enough"),
        "latency_window": Seconds(),
        "latency_buckets": Count(1, MAX_BUCKETS, beyond="a bucket of a thousandth of the window is fine enough"),
        "ignored_exceptions": ExceptionTypes(MAX_IGNORED_EXCEPTIONS),
        "force_open": Flag(),
        "force_closed": Flag(),
        "isolation": OneOf(("thread", "caller")),
        "result_is_failure": Predicate(),
        "slow_call_duration": Seconds(infinite="no call is slow"),
        "slow_call_percent_threshold": Number(
            0, 100, meaning="it is a percentage of the window's requests, and above 100 could never trip"
        ),
        "probes_to_close": Count(1, MAX_PROBES, beyond="a few successful probes in a row tell enough"),
        "sleep_window_multiplier": Number(
            1, MAX_MULTIPLIER, low_included=True, meaning="the sleep window never shrinks after a failed probe"
        ),
        "max_sleep_window": Seconds(infinite="no cap"),
    }
)


def _check_fields(owner: object) -> None:
    """Check and normalise every set field of ``owner`` (a `CommandConfig` or `Settings`) by its rule, in place."""
    kind = type(owner).__name__
    for field, rule in FIELDS.items():
        value = getattr(owner, field)
        if value is not UNSET:
            object.__setattr__(owner, field, rule(f"{kind}.{field}", value))  # frozen: normalised once, here


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """The resolved, immutable settings of a command. Durations are float seconds.

    See `CommandConfig` for what each field means.
    """

    timeout: float
    max_concurrent_requests: float
    request_volume_threshold: int
    sleep_window: float
    error_percent_threshold: float
    rolling_window: float
    rolling_buckets: int
    latency_window: float
    latency_buckets: int
    ignored_exceptions: tuple[type[BaseException], ...]
    force_open: bool
    force_closed: bool
    isolation: Isolation
    result_is_failure: ResultPredicate | None
    slow_call_duration: float
    slow_call_percent_threshold: float
    probes_to_close: int
    sleep_window_multiplier: float
    max_sleep_window: float

    def __post_init__(self) -> None:
        for field in FIELDS:
            if getattr(self, field) is UNSET:
                raise TypeError(
                    f"Settings.{field} must be given: Settings holds every field (UNSET is for CommandConfig)"
                )
        _check_fields(self)
        _check_together(self)


def _check_together(settings: Settings) -> None:
    """The rules between fields of resolved settings (each field already passed its own rule: no overflow here)."""
    if settings.force_open and settings.force_closed:
        raise ValueError("Settings.force_open and force_closed cannot both be True: choose one")
    if settings.max_sleep_window < settings.sleep_window:
        raise ValueError(
            f"max_sleep_window must be at least sleep_window (it caps the window's growth), got "
            f"{show(settings.max_sleep_window)} s against {show(settings.sleep_window)} s: raise it, or lower "
            "sleep_window"
        )
    rolling = settings.rolling_window / settings.rolling_buckets
    latency = settings.latency_window / settings.latency_buckets
    if rolling < _MIN_BUCKET:
        raise ValueError(
            f"rolling_window / rolling_buckets must be at least {_MIN_BUCKET} s per bucket, got "
            f"{show(settings.rolling_window)} s / {show(settings.rolling_buckets)} buckets: use fewer buckets or a "
            "longer window"
        )
    if latency < _MIN_BUCKET:
        raise ValueError(
            f"latency_window / latency_buckets must be at least {_MIN_BUCKET} s per bucket, got "
            f"{show(settings.latency_window)} s / {show(settings.latency_buckets)} buckets: use fewer buckets or a "
            "longer window"
        )
    if latency < rolling:
        raise ValueError(
            "latency_window / latency_buckets must be at least rolling_window / rolling_buckets (latency buckets "
            f"turn over with the rolling ones), got {show(settings.latency_window)} s / "
            f"{show(settings.latency_buckets)} against {show(settings.rolling_window)} s / "
            f"{show(settings.rolling_buckets)}: use fewer latency buckets or a longer window"
        )


BUILTIN: Final = Settings(
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


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CommandConfig:
    """How a command behaves. Every field is optional; a field left unset inherits the global default.

    Args:
        timeout: Seconds (float, int or timedelta) a run may take, more than 0 and at most `MAX_SECONDS` (about
            31.7 years); ``math.inf`` disables the timeout. Default 1.0.
        max_concurrent_requests: Tickets: runs of this command in progress at once, an int from 1 to
            `MAX_TICKETS` (100,000; the tickets are made with the circuit), or ``math.inf`` for no limit.
            Default 10.
        request_volume_threshold: Requests needed in the rolling window before the circuit may trip, an int from 0
            to `MAX_VOLUME` (2**31 - 1). Default 20.
        sleep_window: Seconds the circuit stays open before one probe is let through, more than 0 and at most
            `MAX_SECONDS`. Default 5.0.
        error_percent_threshold: Trip when the window's error percentage (rounded half up) is at or above
            this, in (0, 100]. Default 50.
        rolling_window: Seconds of history the health statistics cover, more than 0 and at most `MAX_SECONDS`.
            Default 10.0.
        rolling_buckets: How many buckets the rolling window is cut into, from 1 to `MAX_BUCKETS` (1,000), each at
            least 1 ms long. Default 10.
        latency_window: Seconds of history the latency percentiles cover, more than 0 and at most `MAX_SECONDS`.
            Default 60.0.
        latency_buckets: How many buckets the latency window is cut into (it moves on a bucket at a time), from 1
            to `MAX_BUCKETS`. A latency bucket may not be shorter than a rolling bucket: they turn over together.
            Default 6.
        ignored_exceptions: Exception types that are the caller's fault (a bad request): re-raised, no fallback,
            never counted as a failure. One type or an iterable of at most `MAX_IGNORED_EXCEPTIONS` (100).
            Default ``()``.
        force_open: Short-circuit every call. Default False.
        force_closed: Never trip (tickets and statistics still apply). Default False.
        isolation: ``"thread"`` runs each call on a worker thread and enforces the timeout; ``"caller"`` runs it
            on the caller's thread with no hand-off, and a run that outlasts its timeout is treated as a
            timeout when it returns. Exactly one of these two strs. Default ``"thread"``.
        result_is_failure: None, or a predicate called with what ``run()`` returned: True makes the call a
            failure (counted as one; the fallback, if any, gets a `FailedResultError` and answers; without one
            the caller gets the result unchanged). Default None.
        slow_call_duration: Seconds (as ``timeout``) from which a call that ran, succeeding or failing, is also
            counted as ``slow``; ``math.inf``: no call is slow. Default ``math.inf``.
        slow_call_percent_threshold: Trip when slow calls are at least this percentage of the window's requests
            (with ``request_volume_threshold``), in (0, 100]. Default 100.
        probes_to_close: Successful probes in a row needed to close an open circuit, from 1 to `MAX_PROBES`;
            probes still go one at a time, and a failed one reopens it. Default 1.
        sleep_window_multiplier: Each failed probe in a row multiplies the sleep window by this, in [1,
            `MAX_MULTIPLIER`]; it is back to ``sleep_window`` once the circuit closes. Default 1.0.
        max_sleep_window: The longest the sleep window grows to (seconds, as ``sleep_window``); ``math.inf``: no
            cap. Default ``math.inf``.

    A number field takes an int or a float (a subclass is read as the plain number), never a bool; a flag takes
    exactly True or False. Whether each field is valid alone is checked here; whether the fields fit together
    (bucket lengths) is checked when the config is laid over the defaults (`configure_command`, `configure`,
    `configure_defaults`), before anything is applied.

    Raises:
        TypeError: A field has the wrong type (a bool where a number belongs, a string for a duration), naming
            the field, the rule and the value.
        ValueError: A field is out of range, naming the field, the rule and the value.
    """

    timeout: Duration | UnsetType = UNSET
    max_concurrent_requests: float | UnsetType = UNSET
    request_volume_threshold: int | UnsetType = UNSET
    sleep_window: Duration | UnsetType = UNSET
    error_percent_threshold: float | UnsetType = UNSET
    rolling_window: Duration | UnsetType = UNSET
    rolling_buckets: int | UnsetType = UNSET
    latency_window: Duration | UnsetType = UNSET
    latency_buckets: int | UnsetType = UNSET
    ignored_exceptions: IgnoredExceptions | UnsetType = UNSET
    force_open: bool | UnsetType = UNSET
    force_closed: bool | UnsetType = UNSET
    isolation: Isolation | UnsetType = UNSET
    result_is_failure: ResultPredicate | UnsetType | None = UNSET
    slow_call_duration: Duration | UnsetType = UNSET
    slow_call_percent_threshold: float | UnsetType = UNSET
    probes_to_close: int | UnsetType = UNSET
    sleep_window_multiplier: float | UnsetType = UNSET
    max_sleep_window: Duration | UnsetType = UNSET

    def __post_init__(self) -> None:
        _check_fields(self)
        if self.force_open is True and self.force_closed is True:
            raise ValueError("CommandConfig.force_open and force_closed cannot both be True: choose one")

    def __repr__(self) -> str:
        given = ", ".join(
            f"{f.name}={getattr(self, f.name)!r}"
            for f in dataclasses.fields(self)
            if getattr(self, f.name) is not UNSET
        )
        return f"CommandConfig({given})"

    def over(self, base: Settings) -> Settings:
        """Lay this config's set fields over ``base``.

        Raises:
            ValueError: The combination is invalid (too fine a bucket, or latency buckets shorter than the rolling
                ones).
        """
        changes = {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) is not UNSET
        }
        if changes.get("force_open") is True:
            changes.setdefault("force_closed", False)
        elif changes.get("force_closed") is True:
            changes.setdefault("force_open", False)
        return dataclasses.replace(base, **changes)
