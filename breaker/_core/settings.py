"""Command configuration (what users write) and resolved settings (what a circuit runs with).

A `CommandConfig` is a partial layer: each field is either set or `UNSET`. A command's `Settings` are its own
config laid over the global defaults config, laid over the built-in defaults. Durations are float seconds in
`Settings`, whatever form (float, int or timedelta) they were given in.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Iterable
from datetime import timedelta
from typing import Final, Literal, TypeAlias

__all__ = ["BUILTIN", "UNSET", "CommandConfig", "Isolation", "Settings", "UnsetType"]


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
ExceptionTypes: TypeAlias = type[BaseException] | Iterable[type[BaseException]]

_ISOLATIONS: Final = ("thread", "caller")
_MIN_BUCKET: Final = 0.001  # seconds; finer buckets cost more than they tell


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

    def __post_init__(self) -> None:
        if self.rolling_window / self.rolling_buckets < _MIN_BUCKET:
            raise ValueError(
                f"rolling_window / rolling_buckets must be at least {_MIN_BUCKET} s per bucket, got "
                f"{self.rolling_window!r} s / {self.rolling_buckets!r} buckets: use fewer buckets or a longer window"
            )
        if self.latency_window / self.latency_buckets < _MIN_BUCKET:
            raise ValueError(
                f"latency_window / latency_buckets must be at least {_MIN_BUCKET} s per bucket, got "
                f"{self.latency_window!r} s / {self.latency_buckets!r} buckets: use fewer buckets or a longer window"
            )
        if self.latency_window / self.latency_buckets < self.rolling_window / self.rolling_buckets:
            raise ValueError(
                "latency_window / latency_buckets must be at least rolling_window / rolling_buckets (latency buckets "
                f"turn over with the rolling ones), got {self.latency_window!r} s / {self.latency_buckets!r} against "
                f"{self.rolling_window!r} s / {self.rolling_buckets!r}: use fewer latency buckets or a longer window"
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
)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CommandConfig:
    """How a command behaves. Every field is optional; a field left unset inherits the global default.

    Args:
        timeout: Seconds (float or timedelta) a run may take; ``math.inf`` disables the timeout. Default 1.0.
        max_concurrent_requests: Tickets: runs of this command in progress at once; ``math.inf`` for no limit.
            Default 10.
        request_volume_threshold: Requests needed in the rolling window before the circuit may trip. Default 20.
        sleep_window: Seconds the circuit stays open before one probe is let through. Default 5.0.
        error_percent_threshold: Trip when the window's error percentage (rounded half up) is at or above
            this, in (0, 100]. Default 50.
        rolling_window: Seconds of history the health statistics cover. Default 10.0.
        rolling_buckets: How many buckets the rolling window is cut into. Default 10.
        latency_window: Seconds of history the latency percentiles cover. Default 60.0.
        latency_buckets: How many buckets the latency window is cut into (it moves on a bucket at a time). A
            latency bucket may not be shorter than a rolling bucket: they turn over together. Default 6.
        ignored_exceptions: Exception types that are the caller's fault (a bad request): re-raised, no fallback,
            never counted as a failure. Default ``()``.
        force_open: Short-circuit every call. Default False.
        force_closed: Never trip (tickets and statistics still apply). Default False.
        isolation: ``"thread"`` runs each call on a worker thread and enforces the timeout; ``"caller"`` runs it
            on the caller's thread with no hand-off, and a run that outlasts its timeout is treated as a
            timeout when it returns. Default ``"thread"``.

    Raises:
        TypeError: A field has the wrong type (a bool where a number belongs, a string for a duration).
        ValueError: A field is out of range.
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
    ignored_exceptions: ExceptionTypes | UnsetType = UNSET
    force_open: bool | UnsetType = UNSET
    force_closed: bool | UnsetType = UNSET
    isolation: Isolation | UnsetType = UNSET

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise through the back door, once, here
        for field in ("timeout", "sleep_window", "rolling_window", "latency_window"):
            value = getattr(self, field)
            if value is not UNSET:
                set_(self, field, _duration(field, value, allow_inf=field == "timeout"))
        if self.max_concurrent_requests is not UNSET:
            value = self.max_concurrent_requests
            if value != math.inf:
                _int("max_concurrent_requests", value, minimum=1, extra=" or math.inf for no limit")
        if self.request_volume_threshold is not UNSET:
            _int("request_volume_threshold", self.request_volume_threshold, minimum=0)
        if self.rolling_buckets is not UNSET:
            _int("rolling_buckets", self.rolling_buckets, minimum=1)
        if self.latency_buckets is not UNSET:
            _int("latency_buckets", self.latency_buckets, minimum=1)
        if self.error_percent_threshold is not UNSET:
            value = _number("error_percent_threshold", self.error_percent_threshold)
            if not 0 < value <= 100:
                raise ValueError(
                    f"CommandConfig.error_percent_threshold must be in (0, 100], got {value!r}: "
                    "it is a percentage, and a threshold above 100 could never trip"
                )
        if self.ignored_exceptions is not UNSET:
            set_(self, "ignored_exceptions", _exception_types(self.ignored_exceptions))
        for field in ("force_open", "force_closed"):
            value = getattr(self, field)
            if value is not UNSET and not isinstance(value, bool):
                raise TypeError(f"CommandConfig.{field} must be a bool, got {value!r}")
        if self.force_open is True and self.force_closed is True:
            raise ValueError("CommandConfig.force_open and force_closed cannot both be True: choose one")
        if self.isolation is not UNSET and self.isolation not in _ISOLATIONS:
            raise ValueError(f"CommandConfig.isolation must be 'thread' or 'caller', got {self.isolation!r}")

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
            ValueError: The combination is invalid (too fine a rolling bucket).
        """
        changes = {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) is not UNSET
        }
        if changes.get("force_open") is True:
            changes.setdefault("force_closed", False)
        elif changes.get("force_closed") is True:
            changes.setdefault("force_open", False)
        return dataclasses.replace(base, **changes)


def _number(field: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"CommandConfig.{field} must be a number, got {type(value).__name__} {value!r}")
    if math.isnan(value):
        raise ValueError(f"CommandConfig.{field} must be a number, got nan")
    return value


def _int(field: str, value: object, *, minimum: int, extra: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"CommandConfig.{field} must be an int{extra}, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"CommandConfig.{field} must be at least {minimum}{extra}, got {value!r}")
    return value


def _duration(field: str, value: object, *, allow_inf: bool) -> float:
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    else:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(
                f"CommandConfig.{field} must be seconds as a float or a timedelta, got {type(value).__name__} {value!r}"
            )
        seconds = float(value)
    inf_ok = " (or math.inf to disable it)" if allow_inf else ""
    if math.isnan(seconds) or seconds <= 0 or (seconds == math.inf and not allow_inf):
        raise ValueError(f"CommandConfig.{field} must be a positive, finite number of seconds{inf_ok}, got {value!r}")
    return seconds


def _exception_types(value: object) -> tuple[type[BaseException], ...]:
    items = (value,) if isinstance(value, type) else value
    if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
        raise TypeError(
            f"CommandConfig.ignored_exceptions must be an exception type or an iterable of them, got {value!r}"
        )
    result = tuple(items)
    for item in result:
        if not (isinstance(item, type) and issubclass(item, BaseException)):
            raise TypeError(
                f"CommandConfig.ignored_exceptions must hold exception types only, got {item!r} in {value!r}"
            )
    return result
