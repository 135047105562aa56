"""`breaker.configure_from`: configuration as plain data (TOML, YAML, the environment), read by each field's rule,
with every problem reported at once by its path, and applied all or nothing."""

from __future__ import annotations

import json
import math
import pickle
import sys
from datetime import timedelta
from typing import Any

import pytest
from config_targets import BadRequest, Outer, is_error
from hypothesis import given, settings
from hypothesis import strategies as st

import breaker
from breaker import CommandConfig, ConfigError, _loading
from breaker._core.settings import FIELDS

TOML = """
[defaults]
timeout = "2s"
request_volume_threshold = 5

[commands.payments]
timeout = "250ms"
max_concurrent_requests = 20.0
ignored_exceptions = ["ValueError", "config_targets:BadRequest"]
result_is_failure = "config_targets:is_error"

[commands."geo-ip"]
isolation = "caller"
max_concurrent_requests = "inf"
force_closed = true
"""

#: What `tomllib.loads(TOML)` gives (for Python 3.10, which has no tomllib).
TOML_DATA: dict[str, Any] = {
    "defaults": {"timeout": "2s", "request_volume_threshold": 5},
    "commands": {
        "payments": {
            "timeout": "250ms",
            "max_concurrent_requests": 20.0,
            "ignored_exceptions": ["ValueError", "config_targets:BadRequest"],
            "result_is_failure": "config_targets:is_error",
        },
        "geo-ip": {"isolation": "caller", "max_concurrent_requests": "inf", "force_closed": True},
    },
}


def problems(data: object) -> dict[str, str]:
    """The problems `configure_from` reports for ``data``, by path."""
    with pytest.raises(ConfigError) as caught:
        breaker.configure_from(data)  # type: ignore[arg-type]
    return dict(caught.value.problems)


def one_field(field: str, value: object) -> object:
    """The resolved value of ``field`` after configuring command "x" with ``value`` for it."""
    breaker.configure_from({"commands": {"x": {field: value}}})
    return getattr(breaker.get_settings("x"), field)


# -- the three sources ---------------------------------------------------------------------------------------------


def test_toml_document() -> None:
    """A TOML document as tomllib parses it configures the defaults and each command."""
    if sys.version_info >= (3, 11):
        import tomllib

        data: dict[str, Any] = tomllib.loads(TOML)
        assert data == TOML_DATA
    else:
        data = TOML_DATA
    breaker.configure_from(data)
    payments, geo = breaker.get_settings("payments"), breaker.get_settings("geo-ip")
    assert (payments.timeout, payments.max_concurrent_requests, payments.request_volume_threshold) == (0.25, 20, 5)
    assert type(payments.max_concurrent_requests) is int
    assert payments.ignored_exceptions == (ValueError, BadRequest)
    assert payments.result_is_failure is is_error
    assert (geo.timeout, geo.isolation, geo.max_concurrent_requests, geo.force_closed) == (
        2.0,
        "caller",
        math.inf,
        True,
    )
    assert breaker.get_settings("other").timeout == 2.0


def test_yaml_like_data() -> None:
    """Native values as a YAML loader gives them (numbers, bools, lists, null) are taken as they are."""
    breaker.configure_from(
        {
            "defaults": {"sleep_window": 2.5, "force_open": False, "result_is_failure": "config_targets.is_error"},
            "commands": {
                "search": {
                    "timeout": 0.3,
                    "error_percent_threshold": 12.5,
                    "ignored_exceptions": ["KeyError", "json.JSONDecodeError"],
                    "result_is_failure": None,
                },
            },
        }
    )
    search = breaker.get_settings("search")
    assert (search.timeout, search.sleep_window, search.error_percent_threshold) == (0.3, 2.5, 12.5)
    assert search.ignored_exceptions == (KeyError, json.JSONDecodeError)
    assert search.result_is_failure is None  # null overrides the defaults' predicate
    assert breaker.get_settings("other").result_is_failure is is_error


def test_environ_style_strings() -> None:
    """Every value a str, as the environment gives them."""
    breaker.configure_from(
        {
            "commands": {
                "payments": {
                    "timeout": "1.5s",
                    "max_concurrent_requests": "10.0",
                    "request_volume_threshold": "0",
                    "error_percent_threshold": "25",
                    "sleep_window_multiplier": "2.5",
                    "force_open": "no",
                    "isolation": " caller ",
                    "ignored_exceptions": "config_targets.BadRequest, ValueError",
                    "result_is_failure": "none",
                    "slow_call_duration": "800 ms",
                    "max_sleep_window": "2m",
                }
            }
        }
    )
    settings = breaker.get_settings("payments")
    assert settings.timeout == 1.5
    assert settings.max_concurrent_requests == 10
    assert type(settings.max_concurrent_requests) is int
    assert (settings.request_volume_threshold, settings.error_percent_threshold) == (0, 25)
    assert (settings.sleep_window_multiplier, settings.force_open, settings.isolation) == (2.5, False, "caller")
    assert settings.ignored_exceptions == (BadRequest, ValueError)
    assert settings.result_is_failure is None
    assert (settings.slow_call_duration, settings.max_sleep_window) == (0.8, 120.0)


# -- each kind of field --------------------------------------------------------------------------------------------

ACCEPTED = [
    ("timeout", "250ms", 0.25),
    ("timeout", "1.5s", 1.5),
    ("timeout", "2m", 120.0),
    ("timeout", "0.5 s", 0.5),
    ("timeout", " 3 ", 3.0),
    ("timeout", "1e-3", 0.001),
    ("timeout", 3, 3.0),
    ("timeout", 0.25, 0.25),
    ("timeout", timedelta(milliseconds=300), 0.3),
    ("timeout", "inf", math.inf),
    ("timeout", "Infinity", math.inf),
    ("timeout", math.inf, math.inf),
    ("max_concurrent_requests", "10.0", 10),
    ("max_concurrent_requests", "10", 10),
    ("max_concurrent_requests", 10.0, 10),
    ("max_concurrent_requests", "1e2", 100),
    ("max_concurrent_requests", "inf", math.inf),
    ("max_concurrent_requests", "+INF", math.inf),
    ("max_concurrent_requests", math.inf, math.inf),
    ("request_volume_threshold", "0", 0),
    ("probes_to_close", 3.0, 3),
    ("error_percent_threshold", "12.5", 12.5),
    ("error_percent_threshold", "50", 50),
    ("error_percent_threshold", 50.0, 50.0),
    ("sleep_window_multiplier", "2", 2),
    ("force_open", True, True),
    ("force_open", "true", True),
    ("force_open", "YES", True),
    ("force_open", "On", True),
    ("force_open", "1", True),
    ("force_closed", "false", False),
    ("force_closed", "no", False),
    ("force_closed", "OFF", False),
    ("force_closed", "0", False),
    ("isolation", "caller", "caller"),
    ("ignored_exceptions", "ValueError", (ValueError,)),
    ("ignored_exceptions", "json.JSONDecodeError", (json.JSONDecodeError,)),
    ("ignored_exceptions", "json:JSONDecodeError", (json.JSONDecodeError,)),
    ("ignored_exceptions", "config_targets:Outer.NotFound", (Outer.NotFound,)),
    ("ignored_exceptions", "config_targets.Outer.NotFound", (Outer.NotFound,)),
    ("ignored_exceptions", "ValueError,KeyError", (ValueError, KeyError)),
    ("ignored_exceptions", ["ValueError", BadRequest], (ValueError, BadRequest)),
    ("ignored_exceptions", [], ()),
    ("ignored_exceptions", "", ()),
    ("ignored_exceptions", BadRequest, (BadRequest,)),
    ("result_is_failure", "config_targets:is_error", is_error),
    ("result_is_failure", "config_targets.is_error", is_error),
    ("result_is_failure", "config_targets:Outer.is_empty", Outer.is_empty),
    ("result_is_failure", "callable", callable),
    ("result_is_failure", is_error, is_error),
    ("result_is_failure", "None", None),
    ("result_is_failure", "", None),
    ("result_is_failure", None, None),
]


@pytest.mark.parametrize(("field", "value", "expected"), ACCEPTED, ids=[f"{f}={v!r}" for f, v, _ in ACCEPTED])
def test_field_read_from(field: str, value: object, expected: object) -> None:
    """Each field kind is read from its file forms and from native values, to what its rule makes of it."""
    resolved = one_field(field, value)
    assert resolved == expected
    assert type(resolved) is type(expected)


REFUSED = [
    ("timeout", "250 parsecs", "'250 parsecs' is not a duration (a number of seconds, or a str like \"250ms\""),
    ("timeout", "5h", "is not a duration"),
    ("timeout", "5 S", "is not a duration"),
    ("timeout", "nan", "is not a duration"),
    ("timeout", "-inf", "is not a duration"),
    ("timeout", "", "is not a duration"),
    ("timeout", "1e400", "too long a duration"),
    ("timeout", "-5s", "must be a positive, finite number of seconds"),
    ("timeout", True, "must be seconds"),
    ("timeout", [1], "must be seconds"),
    ("sleep_window", "inf", "must be a positive, finite number of seconds"),
    ("max_concurrent_requests", "10.5", "'10.5' is not a whole number"),
    ("max_concurrent_requests", 10.5, "10.5 is not a whole number"),
    ("max_concurrent_requests", "ten", "is not a whole number"),
    ("max_concurrent_requests", "1e400", "is too large"),
    ("max_concurrent_requests", "0", "must be at least 1"),
    ("max_concurrent_requests", True, "must be an int"),
    ("max_concurrent_requests", math.nan, "must be an int"),
    ("max_concurrent_requests", "9" * 200, "is not a whole number"),
    ("request_volume_threshold", "inf", "must be an int"),
    ("error_percent_threshold", "nan", "'nan' is not a number"),
    ("error_percent_threshold", math.nan, "must be in (0, 100]"),
    ("error_percent_threshold", "150", "must be in (0, 100]"),
    ("error_percent_threshold", False, "must be a number"),
    ("force_open", "maybe", "is not a flag (true or false"),
    ("force_open", 1, "must be True or False"),
    ("isolation", "Thread", "must be 'thread' or 'caller'"),
    ("isolation", 3, "must be the str"),
    ("ignored_exceptions", "ValueErrr", "'ValueErrr' is not a builtin: did you mean ValueError?"),
    ("ignored_exceptions", "json", "'json' is not a builtin"),
    ("ignored_exceptions", "no_such_module.Error", "names no module that can be imported"),
    ("ignored_exceptions", "no_such_module:Error", "importing 'no_such_module'"),
    ("ignored_exceptions", "json.NoSuchError", "has no attribute 'NoSuchError'"),
    ("ignored_exceptions", "config_targets:NOT_AN_EXCEPTION", "classes deriving from BaseException"),
    ("ignored_exceptions", "os.path", "classes deriving from BaseException"),
    ("ignored_exceptions", "1bad.name", "is not an import path"),
    ("ignored_exceptions", "json:", "is not an import path"),
    ("ignored_exceptions", ["ValueError"] * 101, "more than 100"),
    ("ignored_exceptions", 3, "must be an exception type"),
    ("result_is_failure", "config_targets:two_args", "must be None or a callable taking one value"),
    ("result_is_failure", "config_targets:NOT_AN_EXCEPTION", "must be None or a callable"),
    ("result_is_failure", ".relative", "is not an import path"),
]


@pytest.mark.parametrize(("field", "value", "fragment"), REFUSED, ids=[f"{f}={v!r:.30}" for f, v, _ in REFUSED])
def test_field_refused(field: str, value: object, fragment: str) -> None:
    """A value a field's reader or rule refuses is one problem at its path, saying what is wrong."""
    found = problems({"commands": {"x": {field: value}}})
    assert list(found) == [f"commands.x.{field}"]
    assert fragment in found[f"commands.x.{field}"]


def test_every_rule_class_has_a_reader() -> None:
    """Every rule class FIELDS uses has a reader, so a new field of a known kind loads from files unchanged."""
    missing = {type(rule).__name__ for rule in FIELDS.values()} - {kind.__name__ for kind in _loading.READERS}
    assert not missing, f"add a reader to breaker._loading.READERS for {sorted(missing)}"


def test_import_failure_of_the_named_module_is_a_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    """A module whose own code fails on import is reported with the path that named it."""

    def broken(name: str) -> object:
        raise RuntimeError("the module is broken")

    monkeypatch.setattr(_loading, "import_module", broken)
    found = problems({"commands": {"x": {"ignored_exceptions": ["myapp.errors:Bad"]}}})
    assert (
        "importing 'myapp.errors' for 'myapp.errors:Bad' failed: RuntimeError: the module is broken"
        in (found["commands.x.ignored_exceptions"])
    )


# -- problems: all at once, each by its path -----------------------------------------------------------------------


def test_one_error_names_every_bad_path() -> None:
    """Several problems across the defaults and commands are raised as one ConfigError listing each path."""
    with pytest.raises(ConfigError) as caught:
        breaker.configure_from(
            {
                "defaults": {"timeout": "250 parsecs", "rolling_buckets": "ten"},
                "commands": {
                    "payments": {"max_concurrent_requests": "0", "force_open": "maybe"},
                    "search": {"isolation": "caller"},
                },
            }
        )
    error = caught.value
    assert isinstance(error, ValueError)
    assert [path for path, _ in error.problems] == [
        "defaults.timeout",
        "defaults.rolling_buckets",
        "commands.payments.max_concurrent_requests",
        "commands.payments.force_open",
    ]
    message = str(error)
    assert message.startswith("the configuration has 4 problems, so none of it was applied:\n")
    assert "\n  defaults.timeout: '250 parsecs' is not a duration" in message
    assert "\n  commands.payments.force_open: 'maybe' is not a flag" in message


def test_unknown_keys_suggest_the_closest() -> None:
    """An unknown field or section is a problem naming it, with the closest known name when there is one."""
    found = problems(
        {
            "command": {},
            "defaults": {"TIMEOUT": "1s", "colour": "red"},
            "commands": {"payments": {"timout": "250ms", "max-concurrent-requests": 5}},
        }
    )
    assert found == {
        "command": "unknown key; did you mean commands?",
        "defaults.TIMEOUT": "unknown field; did you mean timeout?",
        "defaults.colour": "unknown field (see breaker.CommandConfig)",
        "commands.payments.timout": "unknown field; did you mean timeout?",
        "commands.payments.max-concurrent-requests": "unknown field; did you mean max_concurrent_requests?",
    }


def test_structure_problems_are_named_by_path() -> None:
    """A section, command or key of the wrong kind is a problem at its path, with the others still checked."""
    found = problems({"defaults": ["timeout"], "commands": {"a": "fast", "": {}, 7: {}, "my.api": {3: 1}}, 1: 2})
    assert list(found) == ["[1]", "defaults", "commands.a", "commands['']", "commands[7]", "commands['my.api'][3]"]
    assert found["defaults"] == "must be a mapping of field names to values, got list ['timeout']"
    assert found["commands['']"].startswith("a command name must not be empty")
    assert found["commands[7]"] == "a command name must be a str, got int 7"
    assert found["commands['my.api'][3]"] == "a field must be a str, got int 3"
    assert problems({"commands": ["a"]}) == {
        "commands": "must be a mapping of command names to their fields, got list ['a']"
    }


def test_fields_that_do_not_fit_together_are_a_problem_of_their_command() -> None:
    """Settings that do not fit together over the defaults (new ones if given) are a problem at the command's path."""
    found = problems(
        {
            "defaults": {"latency_window": "10s", "latency_buckets": 10},
            "commands": {"fine": {"timeout": 1}, "a": {"latency_buckets": 1000}, "b": {"max_sleep_window": "1s"}},
        }
    )
    assert list(found) == ["commands.a", "commands.b"]
    assert "latency_window / latency_buckets must be at least rolling_window / rolling_buckets" in found["commands.a"]
    assert "max_sleep_window must be at least sleep_window" in found["commands.b"]
    assert problems({"commands": {"f": {"force_open": "on", "force_closed": "on"}}}) == {
        "commands.f": "CommandConfig.force_open and force_closed cannot both be True: choose one"
    }


def test_not_a_mapping_is_a_type_error() -> None:
    """A whole that is not a mapping is a TypeError, as configure() gives."""
    with pytest.raises(TypeError, match=r"configure_from\(\) takes a mapping .* got list"):
        breaker.configure_from([("defaults", {})])  # type: ignore[arg-type]


def test_config_error_keeps_its_problems_through_pickle() -> None:
    """ConfigError (a ValueError) keeps its problems through pickling (to a worker process and back)."""
    error = ConfigError([("commands.x.timeout", "bad")])
    copy = pickle.loads(pickle.dumps(error))
    assert isinstance(copy, ConfigError)
    assert copy.problems == (("commands.x.timeout", "bad"),)
    assert str(copy) == "the configuration has 1 problem, so none of it was applied:\n  commands.x.timeout: bad"


# -- all or nothing ------------------------------------------------------------------------------------------------


def test_a_bad_command_leaves_everything_unchanged() -> None:
    """One bad command: the defaults, every other command and the live circuits stay as they were."""
    breaker.configure_defaults(CommandConfig(timeout=3.0))
    breaker.configure({"a": CommandConfig(max_concurrent_requests=5), "b": CommandConfig(isolation="caller")})
    circuits = {name: breaker.get_circuit(name)[0] for name in ("a", "b", "c")}
    before = {name: (breaker.get_settings(name), circuit.settings) for name, circuit in circuits.items()}
    problems(
        {
            "defaults": {"timeout": "1s", "force_open": True},
            "commands": {"a": {"max_concurrent_requests": 50}, "b": {"timeout": "forever"}},
        }
    )
    assert {name: (breaker.get_settings(name), circuit.settings) for name, circuit in circuits.items()} == before
    assert circuits["a"].statistics().max_concurrent_requests == 5
    assert breaker.do("c", lambda: "ok") == "ok"  # not forced open


def test_defaults_and_commands_apply_together_to_live_circuits() -> None:
    """A good configuration replaces the defaults and the named commands' configs at once, live circuits included;
    commands it does not name keep their own config over the new defaults."""
    breaker.configure({"kept": CommandConfig(max_concurrent_requests=3), "named": CommandConfig(timeout=9.0)})
    kept, named = breaker.get_circuit("kept")[0], breaker.get_circuit("named")[0]
    breaker.configure_from({"defaults": {"timeout": "2s"}, "commands": {"named": {"max_concurrent_requests": "7"}}})
    assert (kept.settings.timeout, kept.settings.max_concurrent_requests) == (2.0, 3)
    assert (named.settings.timeout, named.settings.max_concurrent_requests) == (2.0, 7)  # its config was replaced
    assert kept.settings is breaker.get_settings("kept")
    assert named.statistics().max_concurrent_requests == 7


def test_empty_sections() -> None:
    """An empty mapping changes nothing; empty defaults go back to the built-in defaults."""
    breaker.configure_defaults(CommandConfig(timeout=3.0))
    breaker.configure_from({})
    assert breaker.get_settings("x").timeout == 3.0
    breaker.configure_from({"defaults": {}, "commands": {}})
    assert breaker.get_settings("x").timeout == 1.0


# -- arbitrary data ------------------------------------------------------------------------------------------------

_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(["250ms", "inf", "10.0", "yes", "caller", "ValueError", "a.b:C", "1e400", "-1s", ""]),
)
_JUNK = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8) | st.integers(), inner, max_size=4),
    max_leaves=12,
)
_FIELDS = st.dictionaries(st.sampled_from([*FIELDS, "timout"]) | st.text(max_size=8), _JUNK, max_size=5)


@settings(max_examples=300, deadline=None)
@given(
    data=st.one_of(
        _JUNK,
        st.fixed_dictionaries(
            {},
            optional={
                "defaults": _FIELDS | _JUNK,
                "commands": st.dictionaries(st.text(max_size=6) | st.integers(), _FIELDS | _JUNK, max_size=3),
            },
        ),
    )
)
def test_arbitrary_data_raises_only_config_error(data: object) -> None:
    """Whatever plain data is given, configure_from applies it or raises one ConfigError naming paths (a TypeError
    only when the whole is not a mapping)."""
    refused: ConfigError | None = None
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_loading, "import_module", _missing_module)
        try:
            breaker.configure_from(data)  # type: ignore[arg-type]
        except ConfigError as error:
            refused = error
        except TypeError:
            assert not isinstance(data, dict)
    if refused is not None:
        assert refused.problems
        assert all(type(path) is str and path and type(why) is str and why for path, why in refused.problems)
        assert str(refused).count("\n") == len(refused.problems)
    breaker.reset_defaults()


def _missing_module(name: str) -> object:
    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
