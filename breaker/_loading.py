"""Configuration from plain data: what ``tomllib``, a YAML loader or ``os.environ`` give, as `CommandConfig` objects.

`load` reads ``{"defaults": {field: value}, "commands": {name: {field: value}}}`` (both keys optional) and returns
the defaults' config (None if the key is absent) and each command's; `breaker.configure_from` applies them. Each
field is read by the kind of its rule in `breaker._core.settings.FIELDS` (`READERS`: one reader per rule class), so
a new field with a known rule needs nothing here; then its rule checks it as it checks a `CommandConfig`'s:

- `Seconds`: a number of seconds, or a str: a number with an optional unit ``ms``, ``s`` or ``m`` (``"250ms"``,
  ``"1.5 s"``, ``"2m"``, ``"3"``), or ``"inf"``.
- `Count`: a whole number: an int, an integral float (``10.0``), or a str of one (``"10"``, ``"10.0"``), or
  ``"inf"``; the rule says whether infinity is allowed.
- `Number`: an int or a float, or a str of one (a whole one is read as an int).
- `Flag`: True or False, or a str: ``true``/``false``, ``yes``/``no``, ``on``/``off``, ``1``/``0`` (any case).
- `OneOf`: a str.
- `ExceptionTypes`: an import path of an exception class (``"ValueError"``, ``"json.JSONDecodeError"``,
  ``"myapp.errors:BadRequest"``), a list of them, or one str of them separated by commas ("" for none).
- `Predicate`: None, ``"none"`` or "" for none, or an import path of a callable (``"myapp.checks:is_error"``).

An import path is a builtin's name, ``module.attribute`` (the longest prefix that imports is the module) or
``module:attribute.attribute``. Resolving one imports that module: a configuration names code, so it must come from
where the code does. A value that is already of the rule's kind (a float, a class, a function) is taken as it is.

Every problem found (a structure that is not a mapping, an unknown key, a value a reader or a rule refuses, fields
that do not fit together over the defaults) is collected with its path (``commands.payments.timeout``), and one
`ConfigError` lists them all; nothing is returned unless there are none. `load` raises nothing else, for any plain
data, except a `TypeError` when the whole is not a mapping and what importing a named module raises beyond
``Exception`` (``SystemExit``).
"""

from __future__ import annotations

import builtins
import difflib
import importlib
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from ._core.settings import BUILTIN, FIELDS, CommandConfig, Settings
from ._core.validation import (
    Count,
    ExceptionTypes,
    Flag,
    Number,
    OneOf,
    Predicate,
    Seconds,
    command_name,
    show,
)
from ._registry import resolve

__all__ = ["READERS", "ConfigError", "load"]

import_module = importlib.import_module  # the seam tests replace to keep arbitrary paths from importing anything

Path = tuple[object, ...]
Problems = list[tuple[Path, str]]


class ConfigError(ValueError):
    """A configuration given as data (`breaker.configure_from`) has problems; nothing of it was applied.

    Created as ``ConfigError(problems)``. The message lists every problem, one per line.

    Attributes:
        problems: ``(path, what is wrong)`` pairs, in the order found; a path is dotted
            (``"commands.payments.timeout"``), with a key that is not a plain name in brackets
            (``"commands['my.api'].timeout"``).
    """

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        super().__init__(tuple(problems))

    @property
    def problems(self) -> tuple[tuple[str, str], ...]:
        problems: tuple[tuple[str, str], ...] = self.args[0]
        return problems

    def __str__(self) -> str:
        count = len(self.problems)
        lines = "".join(f"\n  {path}: {message}" for path, message in self.problems)
        return f"the configuration has {count} problem{'' if count == 1 else 's'}, so none of it was applied:{lines}"


class _Refused(Exception):
    """A reader's refusal of a value: what is wrong with it (the path is added by the caller)."""


# -- readers: a value from a file as the kind its rule checks --------------------------------------------------------

_NUMBER: Final = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_WHOLE: Final = re.compile(r"[+-]?\d+", re.ASCII)
_DECIMAL: Final = re.compile(_NUMBER, re.ASCII)
_DURATION: Final = re.compile(rf"({_NUMBER})\s*(ms|s|m)?", re.ASCII)
_INFINITY: Final = frozenset({"inf", "+inf", "infinity", "+infinity"})
_TRUE: Final = frozenset({"true", "yes", "on", "1"})
_FALSE: Final = frozenset({"false", "no", "off", "0"})
_LONGEST: Final = 100  # characters of a number or duration str: longer is not one (and int() of it costs)
_DURATION_FORMS: Final = 'a number of seconds, or a str like "250ms", "1.5s", "2m"'


def _text(value: object) -> str | None:
    """``value`` stripped of surrounding whitespace if it is a str (a subclass read as its plain text), else None."""
    if not issubclass(type(value), str):
        return None
    return str.__str__(value).strip()


def _number(text: str) -> int | float | None:
    """The number ``text`` spells (an int when it is whole), ``math.inf`` for "inf", or None if it spells none."""
    if len(text) > _LONGEST:
        return None
    if text.lower() in _INFINITY:
        return math.inf
    if _WHOLE.fullmatch(text):
        return int(text)
    if not _DECIMAL.fullmatch(text):
        return None
    number = float(text)
    if not math.isfinite(number):  # an overflowing literal is not "inf"
        raise _Refused(f"{show(text)} is too large")
    return int(number) if number.is_integer() else number


def read_seconds(rule: Seconds, value: object) -> object:
    """A duration: a str with a unit as seconds; anything else is left to the rule."""
    text = _text(value)
    if text is None:
        return value
    infinite = f', or "inf" for {rule.infinite}' if rule.infinite else ""
    if text.lower() in _INFINITY:
        return math.inf
    match = _DURATION.fullmatch(text) if len(text) <= _LONGEST else None
    if match is None:
        raise _Refused(f"{show(value)} is not a duration ({_DURATION_FORMS}{infinite})")
    number, unit = float(match[1]), match[2]
    seconds = number / 1000 if unit == "ms" else number * 60 if unit == "m" else number
    if not math.isfinite(seconds):
        raise _Refused(f"{show(value)} is too long a duration")
    return seconds


def read_count(rule: Count, value: object) -> object:
    """A whole number: an integral float or a str of a whole number as an int; anything else is left to the rule."""
    if type(value) is float and math.isfinite(value):  # inf and nan: the rule decides
        if not value.is_integer():
            raise _Refused(f"{show(value)} is not a whole number")
        return int(value)
    text = _text(value)
    if text is None:
        return value
    number = _number(text)
    if number is None or (number != math.inf and type(number) is not int):
        infinite = f', or "inf" for {rule.infinite}' if rule.infinite else ""
        raise _Refused(f'{show(value)} is not a whole number (e.g. 10 or "10"{infinite})')
    return number


def read_number(rule: Number, value: object) -> object:
    """A number: a str of one as an int or float; anything else is left to the rule."""
    text = _text(value)
    if text is None:
        return value
    number = _number(text)
    if number is None:
        raise _Refused(f'{show(value)} is not a number (e.g. 50, 12.5 or "12.5")')
    return number


def read_flag(rule: Flag, value: object) -> object:
    """A flag: the strs of true and false as bools; anything else is left to the rule."""
    text = _text(value)
    if text is None:
        return value
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise _Refused(f"{show(value)} is not a flag (true or false; also yes/no, on/off, 1/0)")


def read_choice(rule: OneOf, value: object) -> object:
    """One of a few strs: stripped; the rule checks it."""
    text = _text(value)
    return value if text is None else text


def read_exception_types(rule: ExceptionTypes, value: object) -> object:
    """Exception types: each import path (in a list, or a str separated by commas) as the object it names."""
    text = _text(value)
    if text is not None:
        items: list[object] = [part.strip() for part in text.split(",") if part.strip()]
    elif type(value) in (list, tuple):
        items = list(value)  # type: ignore[call-overload]
    else:
        return value
    if len(items) > rule.maximum:
        return items  # the rule refuses so many, before anything is imported
    refusals = []
    for index, item in enumerate(items):
        path = _text(item)
        if path is None:
            continue
        try:
            items[index] = _import(path)
        except _Refused as refusal:  # every bad path is reported, not only the first
            refusals.append(str(refusal))
    if refusals:
        raise _Refused("; ".join(refusals))
    return items


def read_predicate(rule: Predicate, value: object) -> object:
    """A predicate: "none" or "" as None, an import path as the object it names; anything else is left to the rule."""
    text = _text(value)
    if text is None:
        return value
    if text.lower() in ("", "none", "null"):
        return None
    return _import(text)


#: How a value from a file is read for each rule class of `FIELDS`, before the rule checks it.
READERS: Final[Mapping[type, Callable[[Any, object], object]]] = {
    Seconds: read_seconds,
    Count: read_count,
    Number: read_number,
    Flag: read_flag,
    OneOf: read_choice,
    ExceptionTypes: read_exception_types,
    Predicate: read_predicate,
}


def _import(path: str) -> object:
    """The object an import path names: a builtin's name, ``module.attribute`` or ``module:attribute``."""
    module_name, colon, attributes = path.partition(":")
    names = module_name.split(".")
    trail = attributes.split(".") if colon else []
    if not all(name.isidentifier() for name in [*names, *trail]):
        raise _Refused(
            f'{show(path)} is not an import path (e.g. "ValueError", "json.JSONDecodeError" or "myapp.errors:Bad")'
        )
    if colon:
        return _attribute(_module(module_name, path), trail, path)
    if len(names) == 1:
        if not hasattr(builtins, path):
            close = difflib.get_close_matches(path, dir(builtins), n=1)
            hint = f"did you mean {close[0]}? Else give" if close else "give"
            raise _Refused(f"{show(path)} is not a builtin: {hint} its module too (module.Name)")
        return getattr(builtins, path)
    for cut in range(len(names) - 1, 0, -1):  # the longest prefix that is a module
        prefix = ".".join(names[:cut])
        try:
            module = import_module(prefix)
        except ModuleNotFoundError as missing:
            if missing.name is not None and (prefix == missing.name or prefix.startswith(f"{missing.name}.")):
                continue  # that prefix is not a module: try a shorter one
            raise _Refused(f"importing {prefix!r} for {show(path)} failed: {_error(missing)}") from None
        except Exception as error:  # the module's own code failed: reported with the path
            raise _Refused(f"importing {prefix!r} for {show(path)} failed: {_error(error)}") from None
        return _attribute(module, names[cut:], path)
    raise _Refused(f"{show(path)} names no module that can be imported (no module named {names[0]!r})")


def _module(name: str, path: str) -> object:
    try:
        return import_module(name)
    except Exception as error:  # not found, or the module's own code failed: reported with the path
        raise _Refused(f"importing {name!r} for {show(path)} failed: {_error(error)}") from None


def _attribute(owner: object, names: list[str], path: str) -> object:
    for name in names:
        try:
            owner = getattr(owner, name)
        except Exception:  # noqa: PERF203 - AttributeError, or whatever a module's __getattr__ raises
            raise _Refused(f"{show(path)}: {show(owner)} has no attribute {name!r}") from None
    return owner


def _error(error: BaseException) -> str:
    try:
        return f"{type(error).__name__}: {error}"
    except Exception:  # a hostile __str__
        return type(error).__name__


# -- the structure -------------------------------------------------------------------------------------------------

_PLAIN_KEY: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*", re.ASCII)
_SECTIONS: Final = ("defaults", "commands")


def dotted(path: Path) -> str:
    """``("commands", "my.api", "timeout")`` as ``commands['my.api'].timeout``."""
    text = ""
    for key in path:
        if type(key) is str and _PLAIN_KEY.fullmatch(key):
            text = f"{text}.{key}" if text else key
        else:
            text = f"{text}[{show(key)}]"
    return text or "(the whole)"


def _unknown(key: object, known: Sequence[str], what: str, otherwise: str) -> str:
    """Why ``key`` is refused, with the known key it is closest to, if any."""
    if type(key) is not str:
        return f"a {what} must be a str, got {type(key).__name__} {show(key)}"
    close = difflib.get_close_matches(key.lower(), known, n=1) if len(key) <= _LONGEST else []
    return f"unknown {what}; did you mean {close[0]}?" if close else f"unknown {what} ({otherwise})"


def _mapping(value: object, path: Path, what: str, problems: Problems) -> Mapping[object, object] | None:
    if isinstance(value, Mapping):
        return value
    problems.append((path, f"must be a mapping of {what}, got {type(value).__name__} {show(value)}"))
    return None


def _config(value: object, path: Path, problems: Problems) -> CommandConfig | None:
    """A `CommandConfig` from a mapping of field names to values, or None after adding its problems."""
    fields = _mapping(value, path, "field names to values", problems)
    if fields is None:
        return None
    found = len(problems)
    read: dict[str, object] = {}
    for key, raw in fields.items():
        where = (*path, key)
        rule = FIELDS.get(key) if type(key) is str else None
        if rule is None or not isinstance(key, str):  # (isinstance: for the type checker)
            problems.append((where, _unknown(key, list(FIELDS), "field", "see breaker.CommandConfig")))
            continue
        try:
            reader = READERS.get(type(rule))
            read[key] = rule(dotted(where), raw if reader is None else reader(rule, raw))
        except (_Refused, TypeError, ValueError) as refusal:
            problems.append((where, _without(dotted(where), str(refusal))))
    if len(problems) > found:
        return None
    try:
        return CommandConfig(**read)  # type: ignore[arg-type]
    except (TypeError, ValueError) as refusal:  # fields of this config that exclude each other (force_*)
        problems.append((path, str(refusal)))
        return None


def _without(where: str, message: str) -> str:
    """A rule's message without the field's name it starts with (the problem's path says it)."""
    return message[len(where) + 1 :] if message.startswith(f"{where} ") else message


def _fit(config: CommandConfig, base: Settings, path: Path, problems: Problems) -> Settings | None:
    """``config`` resolved over ``base``, or None after adding why its fields do not fit together."""
    try:
        return resolve(config, base)
    except (TypeError, ValueError) as refusal:
        problems.append((path, str(refusal)))
        return None


def load(source: object, defaults_now: Settings) -> tuple[CommandConfig | None, dict[str, CommandConfig]]:
    """Read a configuration given as data (see the module's docstring).

    Args:
        source: ``{"defaults": {...}, "commands": {name: {...}}}``, each key optional.
        defaults_now: The global defaults' settings now: what the commands resolve over if ``source`` gives no
            defaults (to check that their fields fit together).

    Returns:
        The defaults' config (None if ``source`` has none) and each command's config, by name.

    Raises:
        TypeError: ``source`` is not a mapping.
        ConfigError: Anything in it is wrong: every problem, each with its path.
    """
    if not isinstance(source, Mapping):
        raise TypeError(
            f"configure_from() takes a mapping (what tomllib or a YAML loader gives), got {type(source).__name__} "
            f"{show(source)}"
        )
    problems: Problems = []
    defaults: CommandConfig | None = None
    commands: dict[str, CommandConfig] = {}
    sections: dict[str, object] = {}
    for key, value in source.items():
        if type(key) is str and key in _SECTIONS:
            sections[key] = value
        else:
            problems.append(((key,), _unknown(key, _SECTIONS, "key", "expected defaults or commands")))
    if "defaults" in sections:
        defaults = _config(sections["defaults"], ("defaults",), problems)
        if defaults is not None:
            fitted = _fit(defaults, BUILTIN, ("defaults",), problems)
            defaults_now = defaults_now if fitted is None else fitted
    if "commands" in sections:
        table = _mapping(sections["commands"], ("commands",), "command names to their fields", problems)
        for key, value in (table or {}).items():
            path: Path = ("commands", key)
            try:
                name = command_name(key)
            except (TypeError, ValueError) as refusal:
                problems.append((path, str(refusal)))
                continue
            config = _config(value, path, problems)
            if config is not None and _fit(config, defaults_now, path, problems) is not None:
                commands[name] = config
    if problems:
        raise ConfigError([(dotted(path), message) for path, message in problems])
    return defaults, commands
