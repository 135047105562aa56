"""The package without its extras: ``import breaker`` needs none of them, and each plug-in module that needs one
says which extra to install.

Each test runs a fresh interpreter (``sys.executable -c``) so that nothing the test session imported leaks in; a
``sys.meta_path`` finder makes the optional dependencies impossible to import, as on a machine without them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "breaker"
#: Top-level modules of every optional dependency: the extras' and the ones plug-ins may grow (redis).
OPTIONAL = ("prometheus_client", "statsd", "redis", "aiohttp")
#: Public plug-in modules, and the extra each names when its dependency is missing (None: it needs only the
#: standard library, so it must import with every optional dependency missing). A module not written yet is skipped.
PLUGINS = [
    pytest.param(
        module,
        extra,
        id=module.rpartition(".")[2],
        marks=pytest.mark.skipif(not (PACKAGE / f"{module.rpartition('.')[2]}.py").exists(), reason="not written"),
    )
    for module, extra in (
        ("breaker.prometheus", "breaker[prometheus]"),
        ("breaker.statsd", None),  # its own UDP client: the statsd package is not used
        ("breaker.aiohttp", "breaker[aiohttp]"),
    )
]


#: Installed first in the child: a finder that refuses the optional dependencies and notes every attempt.
BLOCKER = f"""
import importlib.abc, json, sys

BLOCKED = {OPTIONAL!r}
attempts = []

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            attempts.append(name)
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked by the test)", name=name)
        return None

assert not [m for m in sys.modules if m.partition(".")[0] in BLOCKED], "imported before the test began"
sys.meta_path.insert(0, Blocker())
"""


def run_child(code: str) -> Any:
    """Run ``code`` in a fresh interpreter and return the JSON it prints last."""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False, cwd=PACKAGE.parent
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_breaker_works_without_any_extra() -> None:
    """With every optional dependency unimportable, ``import breaker`` works and calls go through both isolations."""
    report = run_child(
        BLOCKER
        + """
import breaker
breaker.configure_command("caller", breaker.CommandConfig(isolation="caller"))
values = [
    breaker.do("caller", lambda: 42),
    breaker.do("thread", lambda: 1 / 0, fallback=lambda e: type(e).__name__),
    breaker.go("thread", lambda: "go").result(timeout=10),
]
breaker.flush()
print(json.dumps({"values": values, "attempts": attempts}))
"""
    )
    assert report == {"values": [42, "ZeroDivisionError", "go"], "attempts": []}


def test_import_breaker_imports_no_optional_dependency() -> None:
    """``import breaker`` (and a call) leaves every optional dependency out of sys.modules, installed or not."""
    report = run_child(
        f"""
import json, sys
import breaker
breaker.do("x", lambda: 1)
breaker.flush()
print(json.dumps(sorted(m for m in sys.modules if m.partition(".")[0] in {OPTIONAL!r})))
"""
    )
    assert report == []


@pytest.mark.parametrize(("module", "extra"), PLUGINS)
def test_plugin_without_optional_dependencies(module: str, extra: str | None) -> None:
    """Without the optional dependencies a plug-in names its extra in an ImportError, or imports if it needs none."""
    report = run_child(
        BLOCKER
        + f"""
import importlib
try:
    importlib.import_module({module!r})
except ImportError as error:
    outcome = {{"type": type(error).__name__, "message": str(error)}}
else:
    outcome = {{"type": None, "message": ""}}
import breaker
print(json.dumps({{**outcome, "attempts": attempts, "works": breaker.do("x", lambda: 1) == 1}}))
"""
    )
    if extra is None:
        assert report == {"type": None, "message": "", "attempts": [], "works": True}
    else:
        assert report["type"] in ("ImportError", "ModuleNotFoundError"), report
        assert extra in report["message"], report
        assert report["attempts"], "the plug-in never tried to import its dependency"
        assert report["works"]


@pytest.mark.parametrize(("module", "extra"), PLUGINS)
def test_plugin_imports_with_the_extras_installed(module: str, extra: str | None) -> None:
    """With the extras installed (the test environment has them all), each plug-in module imports cleanly."""
    report = run_child(f"import importlib, json\nimportlib.import_module({module!r})\nprint(json.dumps({extra!r}))")
    assert report == extra
