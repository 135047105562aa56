"""The code generator (`tools/generate.py`): the generated drivers are current, and inlining keeps behaviour.

The generator copies `@inline` functions into the entry points; these tests run it on small packages made for
the purpose, import what it writes, and check that the copies behave as the sources do, that what cannot be
inlined safely is refused with a message naming it, and that the library's own generated module is the one the
generator makes today (CI runs ``python tools/generate.py --check`` too).
"""

from __future__ import annotations

import ast
import importlib
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import generate
import pytest

MARK = """
def inline(fn):
    return fn
"""

RULES = '''
from pkg.marks import inline

LIMIT = 10


@inline
def doubled(x):
    """An expression: inlined anywhere."""
    return 2 * x


@inline
def clamped(x):
    """A single exit: inlined where it is called as a statement."""
    value = x
    if value > LIMIT:
        value = LIMIT
    return value


@inline
def sign(x):
    """Several returns: inlined at a tail call only."""
    if x < 0:
        return -1
    if x == 0:
        return 0
    return 1


class Box:
    def __init__(self):
        self.value = 0

    @inline
    def bump(self, n):
        self.value += n
'''

ENTRIES = '''
from pkg.rules import Box, clamped, doubled, sign


def use(x, box):
    """A docstring that stays."""
    value = clamped(doubled(x))
    box.bump(value)
    other = clamped(x + 1)
    return sign(value - other)
'''


@pytest.fixture
def package(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Write ``pkg`` (marks, rules, and entries given as text) under a fresh directory on sys.path."""

    def make(entries: str) -> Path:
        root = tmp_path / "pkg"
        root.mkdir(exist_ok=True)
        (root / "__init__.py").write_text("")
        (root / "marks.py").write_text(MARK)
        (root / "rules.py").write_text(textwrap.dedent(RULES))
        (root / "entries.py").write_text(textwrap.dedent(entries))
        return tmp_path

    sys.path.insert(0, str(tmp_path))
    yield make
    sys.path.remove(str(tmp_path))
    for name in [m for m in sys.modules if m == "pkg" or m.startswith("pkg.")]:
        del sys.modules[name]


def generated(root: Path, functions: tuple[str, ...] = ("use",)) -> tuple[str, ModuleType]:
    """The generator's text for ``pkg.entries``, and that text imported as ``pkg.generated``."""
    text = generate.generate("pkg.entries", functions, ("pkg.rules",), root=root, header='"""Generated."""\n')
    (root / "pkg" / "generated.py").write_text(text)
    return text, importlib.import_module("pkg.generated")


def test_inlined_copies_behave_as_their_sources(package: Callable[[str], Path]) -> None:
    """Expression, single-exit, method and tail inlining: the generated function answers as the source one."""
    root = package(ENTRIES)
    text, module = generated(root)
    entries = importlib.import_module("pkg.entries")
    rules = importlib.import_module("pkg.rules")
    for x in (-3, 0, 1, 4, 5, 6, 50):
        source_box, generated_box = rules.Box(), rules.Box()
        assert module.use(x, generated_box) == entries.use(x, source_box), x
        assert generated_box.value == source_box.value, x
    body = text.split('"""A docstring that stays."""', 1)[1]
    for name in ("doubled(", "clamped(", "sign(", ".bump("):
        assert name not in body, f"{name} was not inlined:\n{text}"
    assert "LIMIT" in body  # the rule's global, imported from its module
    assert "from pkg.rules import LIMIT" in text


def test_a_function_with_early_returns_is_refused_outside_a_tail(package: Callable[[str], Path]) -> None:
    """Copying a function with returns before its end anywhere but a tail call would change what it does."""
    root = package("""
        from pkg.rules import sign


        def use(x, box):
            value = sign(x)
            return value
    """)
    with pytest.raises(generate.GenerateError, match=r"sign\(\) has returns before its end"):
        generated(root)


def test_a_copied_global_shadowed_by_a_local_of_the_caller_is_refused(package: Callable[[str], Path]) -> None:
    """A copy reading a global the caller binds as a local would read the local: refused, naming the name."""
    root = package("""
        from pkg.rules import clamped


        def use(x, box):
            LIMIT = 3
            value = clamped(x)
            return value + LIMIT
    """)
    with pytest.raises(generate.GenerateError, match="LIMIT"):
        generated(root)


def test_an_argument_evaluated_twice_is_bound_once(package: Callable[[str], Path]) -> None:
    """An argument with a side effect goes to a local first: the copy evaluates it once, as the call did."""
    root = package("""
        from pkg.rules import clamped


        def use(x, box):
            value = clamped(box.take())
            return value
    """)
    _, module = generated(root)

    class Taker:
        def __init__(self) -> None:
            self.taken = 0

        def take(self) -> int:
            self.taken += 1
            return 42

    taker = Taker()
    assert module.use(0, taker) == 10
    assert taker.taken == 1


def test_the_library_generated_module_is_current() -> None:
    """breaker/_run/_generated.py is exactly what the generator makes from today's sources."""
    assert generate.OUTPUT.read_text() == generate.generate(), "stale: run python tools/generate.py"


SETTLING = '''
from pkg.events import FAILURE, SUCCESS, TIMEOUT, BOTH, RUN


def use(x, log):
    """Each test of ``event`` below is decided where ``event`` was last assigned a constant."""
    if x < 0:
        event = FAILURE
    elif x == 0:
        event = TIMEOUT if log is not None else SUCCESS
    else:
        event = SUCCESS
        if x > 5:
            log = None
    if event == SUCCESS:
        scope = RUN
    else:
        scope = BOTH if x > -10 else RUN
    if event == FAILURE and x > -5:
        return ("failed", scope)
    return (event, scope, log)
'''

EVENTS = """
FAILURE = "failure"
SUCCESS = "success"
TIMEOUT = "timeout"
BOTH = object()
RUN = object()
"""


def test_tests_on_constants_are_settled_where_the_value_is_known(package: Callable[[str], Path]) -> None:
    """Jump threading and folding: every ``if event ...`` is decided in the branch that assigned ``event``, the
    tests disappear from the copy, and the copy answers as the source for every path."""
    root = package(SETTLING)
    (root / "pkg" / "events.py").write_text(EVENTS)
    text, module = generated(root)
    entries = importlib.import_module("pkg.entries")
    for x in (-20, -7, -3, 0, 1, 9):
        for log in (None, "log"):
            assert module.use(x, log) == entries.use(x, log), (x, log)
    body = text.split('"""Each test', 1)[1]
    assert "if event" not in body, text
    assert "== SUCCESS" not in body, text
    assert "== FAILURE" not in body, text


def test_a_test_not_decided_on_every_path_is_left_in_place(package: Callable[[str], Path]) -> None:
    """Where one tail does not settle the test (the variable came from an argument), nothing is copied."""
    root = package("""
        from pkg.events import FAILURE, SUCCESS


        def use(x, event):
            if x > 0:
                event = SUCCESS
            else:
                x = -x
            if event == FAILURE:
                return -x
            return x
    """)
    (root / "pkg" / "events.py").write_text(EVENTS)
    text, module = generated(root)
    entries = importlib.import_module("pkg.entries")
    for x in (-2, 0, 3):
        for event in ("failure", "success", "other"):
            assert module.use(x, event) == entries.use(x, event), (x, event)
    assert text.count("if event == FAILURE") == 1, text


def test_dead_stores_of_constants_go_and_live_ones_stay(package: Callable[[str], Path]) -> None:
    """After settling, an assignment of a constant nothing reads is removed; one a closure reads is kept."""
    root = package("""
        from pkg.events import BOTH, FAILURE, RUN, SUCCESS


        def use(x, log):
            scope = BOTH
            if x > 0:
                event = SUCCESS
                later = RUN
            else:
                event = FAILURE
                later = BOTH
            if event == SUCCESS:
                return x

            def read():
                return later

            return read() is BOTH
    """)
    (root / "pkg" / "events.py").write_text(EVENTS)
    text, module = generated(root)
    entries = importlib.import_module("pkg.entries")
    for x in (-1, 0, 2):
        assert module.use(x, None) == entries.use(x, None), x
    assert "scope =" not in text, text
    assert "event =" not in text, text
    assert "later = RUN" in text, text
    assert "later = BOTH" in text, text


def test_identity_of_equal_values_is_never_assumed() -> None:
    """``a is b`` for two equal strings depends on interning: the folder leaves it to run time."""
    assert generate.compare_constants(ast.Is(), "failure", "failure") is None
    assert generate.compare_constants(ast.IsNot(), "failure", "success") is True
    assert generate.compare_constants(ast.Eq(), "failure", "failure") is True
    assert generate.compare_constants(ast.Eq(), 1, "1") is None
    one, other = generate.Unique("m.ONE"), generate.Unique("m.OTHER")
    assert generate.compare_constants(ast.Is(), one, one) is True
    assert generate.compare_constants(ast.Is(), one, other) is False
    assert generate.compare_constants(ast.Eq(), one, other) is None
