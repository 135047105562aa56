"""Checks of values that come from users: a clear error naming the argument, the rule and the value, or the value in
its plain builtin form.

Every check here holds against hostile input. It decides on a value's exact type (``type(value)``, never
``isinstance``, which an object can fool through ``__class__``), reads an int or float subclass through the builtin's
own method (so no override of ``__eq__``, ``__lt__``, ``__float__`` or ``__index__`` runs), compares ints before
converting them (so a huge int is a ``ValueError``, never an ``OverflowError``), and shows the value in its message
through `show`, which survives a ``__repr__`` that raises and an int too long to print. What it returns is of the
exact builtin type: ``int``, ``float``, ``bool``, ``str`` or a tuple of exception types. It raises `TypeError` (not
that kind of value) or `ValueError` (that kind, out of range), and nothing else for any input.

The rules (`Seconds`, `Count`, `Number`, `Flag`, `OneOf`, `ExceptionTypes`, `Predicate`) are the building blocks of
`breaker._core.settings`' table of `CommandConfig` fields; `seconds`, `positive_int` and `command_name` check the
options of the applications (the stream, the dashboard, fleet mode) and command names.
"""

from __future__ import annotations

import dataclasses
import inspect
import itertools
import math
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Final

__all__ = [
    "MAX_SECONDS",
    "Count",
    "ExceptionTypes",
    "Flag",
    "Number",
    "OneOf",
    "Predicate",
    "Seconds",
    "command_name",
    "positive_int",
    "seconds",
    "show",
]

#: The longest duration any setting takes, in seconds: about 31.7 years. Beyond it a value is a mistake (or means
#: "never", which has its own spelling: ``math.inf`` where it is allowed), and refusing it keeps every later
#: computation on the clock (``now + seconds``) exact to well under a microsecond.
MAX_SECONDS: Final = 1e9

_SHOWN: Final = 120  # characters of a value's repr shown in an error message


def show(value: object) -> str:
    """``repr(value)`` for an error message: at most about 120 characters, and never an exception.

    An int too long to print (Python refuses over 4300 digits) is shown by its size; a ``__repr__`` that raises, by
    the value's type.
    """
    try:
        if type(value) is int and value.bit_length() > 200:
            return f"an int of about {int(value.bit_length() * math.log10(2))} digits"
        text = repr(value)
    except Exception:  # a hostile __repr__, whatever it raises: show the type instead
        return f"<a {_type_name(value)} whose repr() fails>"
    if len(text) > _SHOWN:
        text = f"{text[: _SHOWN - 20]}...{text[-16:]} ({len(text)} characters)"
    return text


def _type_name(value: object) -> str:
    name = type.__dict__["__name__"].__get__(type(value))  # the real name, whatever the metaclass says
    return name if type(name) is str else "value"


def _described(value: object) -> str:
    """The value for a TypeError's message: its type, then its repr."""
    return f"{_type_name(value)} {show(value)}"


def _plain_int(value: object) -> int | None:
    """``value`` as an exact int if it is an int (a subclass through int's own method; not a bool), else None."""
    kind = type(value)
    if kind is int:
        return value  # type: ignore[return-value]
    if kind is bool or not issubclass(kind, int):
        return None
    return int.__index__(value)  # type: ignore[arg-type]


def _plain_float(value: object) -> float | None:
    """``value`` as an exact float if it is a float (a subclass through float's own method), else None."""
    kind = type(value)
    if kind is float:
        return value  # type: ignore[return-value]
    if not issubclass(kind, float):
        return None
    return float.__float__(value)  # type: ignore[arg-type]


def _seconds_of(value: object) -> int | float | None:
    """A number of seconds from an int, a float or a timedelta (exact builtin types), or None for anything else."""
    number = _plain_int(value)
    if number is not None:
        return number
    real = _plain_float(value)
    if real is not None:
        return real
    if issubclass(type(value), timedelta):
        return timedelta.total_seconds(value)  # type: ignore[arg-type]
    return None


def _amount(seconds: float) -> str:
    years = seconds / (365.25 * 86400)
    return f"{seconds:g} s (about {years:.1f} years)" if years >= 1 else f"{seconds:g} s"


@dataclasses.dataclass(frozen=True, slots=True)
class Seconds:
    """A duration: an int, a float or a timedelta, more than 0 and at most ``maximum`` seconds; returns a float.

    Attributes:
        maximum: The longest duration accepted.
        infinite: What ``math.inf`` means for this field (e.g. ``"no timeout"``), or "" to refuse it.
    """

    maximum: float = MAX_SECONDS
    infinite: str = ""

    def __call__(self, where: str, value: object) -> float:
        seconds = _seconds_of(value)
        unlimited = f", or math.inf for {self.infinite}" if self.infinite else ""
        if seconds is None:
            raise TypeError(
                f"{where} must be seconds as an int, a float or a timedelta{unlimited}, got {_described(value)}: "
                f"e.g. {where.rpartition('.')[2]}=0.5 or timedelta(milliseconds=500)"
            )
        if seconds == math.inf and self.infinite:
            return math.inf
        if not 0 < seconds <= self.maximum:  # an int is compared as it is: no conversion, so no overflow
            raise ValueError(
                f"{where} must be a positive, finite number of seconds, at most {_amount(self.maximum)}{unlimited}, "
                f"got {show(value)}"
            )
        return float(seconds)


@dataclasses.dataclass(frozen=True, slots=True)
class Count:
    """A whole number from ``minimum`` to ``maximum`` (an int, not a bool); returns an int, or ``math.inf``.

    Attributes:
        minimum, maximum: The bounds, both included.
        infinite: What ``math.inf`` means for this field (e.g. ``"no limit"``), or "" to refuse it.
        beyond: How to get what a value above ``maximum`` asks for, for the message.
    """

    minimum: int
    maximum: int
    infinite: str = ""
    beyond: str = ""

    def __call__(self, where: str, value: object) -> int | float:
        number = _plain_int(value)
        unlimited = f", or math.inf for {self.infinite}" if self.infinite else ""
        if number is None:
            if self.infinite and _plain_float(value) == math.inf:
                return math.inf
            raise TypeError(f"{where} must be an int{unlimited}, got {_described(value)}")
        if number < self.minimum:
            raise ValueError(f"{where} must be at least {self.minimum}{unlimited}, got {show(value)}")
        if number > self.maximum:
            hint = f": {self.beyond}" if self.beyond else ""
            raise ValueError(f"{where} must be at most {self.maximum:,}{unlimited}, got {show(value)}{hint}")
        return number


@dataclasses.dataclass(frozen=True, slots=True)
class Number:
    """A finite int or float (not a bool) above ``low`` (or from it, with ``low_included``) and at most ``high``;
    returns it as an exact int or float.

    Attributes:
        low, high: The bounds; ``high`` is included.
        low_included: Whether ``low`` itself is accepted.
        meaning: Why the range is what it is, for the message.
    """

    low: float
    high: float
    low_included: bool = False
    meaning: str = ""

    def __call__(self, where: str, value: object) -> int | float:
        number: int | float | None = _plain_int(value)
        if number is None:
            number = _plain_float(value)
        if number is None:
            raise TypeError(f"{where} must be a number (an int or a float), got {_described(value)}")
        above = self.low <= number if self.low_included else self.low < number  # False for nan
        if not (above and number <= self.high):
            bracket = "[" if self.low_included else "("
            why = f": {self.meaning}" if self.meaning else ""
            raise ValueError(f"{where} must be in {bracket}{self.low:g}, {self.high:g}], got {show(value)}{why}")
        return number


@dataclasses.dataclass(frozen=True, slots=True)
class Flag:
    """True or False (exactly a bool: not 0 or 1, not an object that is truthy)."""

    def __call__(self, where: str, value: object) -> bool:
        if type(value) is not bool:
            raise TypeError(f"{where} must be True or False, got {_described(value)}")
        return value


@dataclasses.dataclass(frozen=True, slots=True)
class OneOf:
    """One of a few strs, exactly (a str subclass, or an object equal to everything, is refused)."""

    choices: tuple[str, ...]

    def __call__(self, where: str, value: object) -> str:
        options = " or ".join(repr(choice) for choice in self.choices)
        if type(value) is not str:
            raise TypeError(f"{where} must be the str {options}, got {_described(value)}")
        if value not in self.choices:  # a plain str: str.__eq__ decides
            raise ValueError(f"{where} must be {options}, got {show(value)}")
        return value


@dataclasses.dataclass(frozen=True, slots=True)
class ExceptionTypes:
    """An exception type, or an iterable of at most ``maximum`` of them; returns a tuple of them, in order."""

    maximum: int

    def __call__(self, where: str, value: object) -> tuple[type[BaseException], ...]:
        rule = f"{where} must be an exception type or an iterable of at most {self.maximum} of them"
        if issubclass(type(value), type):
            items: tuple[object, ...] = (value,)
        elif issubclass(type(value), (str, bytes)):
            raise TypeError(f"{rule}, got {_described(value)}: a name is not a type; give the class itself")
        else:
            try:
                items = tuple(itertools.islice(iter(value), self.maximum + 1))  # type: ignore[call-overload]
            except Exception as error:  # not iterable, or its iteration failed: the value is at fault
                raise TypeError(f"{rule}, got {_described(value)} ({_type_name(error)} on iterating it)") from error
        if len(items) > self.maximum:
            raise ValueError(f"{rule}, got more than {self.maximum} in {show(value)}: list their common base class")
        for item in items:
            if not (issubclass(type(item), type) and issubclass(item, BaseException)):  # type: ignore[arg-type]
                raise TypeError(f"{rule} (classes deriving from BaseException), got {show(item)} in {show(value)}")
        return items  # type: ignore[return-value]


@dataclasses.dataclass(frozen=True, slots=True)
class Predicate:
    """None, or a callable taking one argument (checked by its signature when it can be read); returns it."""

    def __call__(self, where: str, value: object) -> Callable[[Any], object] | None:
        if value is None:
            return None
        if not callable(value):
            raise TypeError(f"{where} must be None or a callable taking one value, got {_described(value)}")
        try:
            signature = inspect.signature(value)
        except (TypeError, ValueError):  # a builtin without a readable signature: taken as it is
            return value
        try:
            signature.bind(None)
        except TypeError as mismatch:
            raise TypeError(
                f"{where} must be None or a callable taking one value, got {show(value)}{signature} ({mismatch})"
            ) from None
        return value


# -- the applications' options, and command names ----------------------------------------------------------------


def seconds(field: str, value: object) -> float:
    """``value`` as a positive number of seconds (an int, a float or a timedelta), at most `MAX_SECONDS`.

    Raises:
        TypeError: It is not a number of seconds (a bool is not).
        ValueError: It is not positive, or it is above `MAX_SECONDS` (infinity included).
    """
    return Seconds()(field, value)


def positive_int(field: str, value: object) -> int:
    """``value`` as an int of at least 1.

    Raises:
        TypeError: It is not an int (a bool is not).
        ValueError: It is below 1.
    """
    number = _plain_int(value)
    if number is None:
        raise TypeError(f"{field} must be an int, got {_described(value)}")
    if number < 1:
        raise ValueError(f"{field} must be at least 1, got {show(value)}")
    return number


def command_name(value: object) -> str:
    """``value`` as a command name: a non-empty str that UTF-8 can encode, as an exact str.

    A str subclass (a ``StrEnum`` member) gives its plain text, so that no override of its ``__eq__`` or
    ``__hash__`` reaches the registry. A lone surrogate (``"a\\ud800b"``, what ``os.fsdecode`` makes of bytes that
    are not UTF-8) is refused: the exporters, the stream and the dashboard send names as UTF-8.

    Raises:
        TypeError: It is not a str.
        ValueError: It is empty, or not encodable as UTF-8.
    """
    if type(value) is str:
        name = value
    elif isinstance(value, str) and issubclass(type(value), str):  # isinstance alone can be fooled by __class__
        name = str.__str__(value)
    else:
        raise TypeError(f"a command name must be a str, got {_described(value)}")
    if not name:
        raise ValueError("a command name must not be empty: give the dependency's name, e.g. 'payments'")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError(
            f"a command name must be encodable as UTF-8, got {show(name)} (a lone surrogate at index {error.start}): "
            "exporters and the dashboard send names as UTF-8; decode the bytes it came from with errors='replace'"
        ) from None
    return name
