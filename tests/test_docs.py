"""The README's code, the examples and the demo run as documented."""

from __future__ import annotations

import io
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from breaker._demo import run_demo

ROOT = Path(__file__).resolve().parent.parent
README_BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.DOTALL)
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


@pytest.mark.parametrize("source", README_BLOCKS, ids=[f"readme-block-{i}" for i in range(len(README_BLOCKS))])
def test_readme_python_blocks_run(source: str) -> None:
    """Every python block of the README runs as written, against a fresh registry."""
    exec(compile(source, "README.md", "exec"), {"__name__": "__readme__"})


def test_readme_has_blocks() -> None:
    """The README blocks test above found the quickstart (guards against a broken regex)."""
    assert any("@breaker.command" in block for block in README_BLOCKS)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_examples_run(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every script in examples/ runs to completion."""
    runpy.run_path(str(path), run_name="__main__")
    assert capsys.readouterr().out


def test_quickstart_example_output(capsys: pytest.CaptureFixture[str]) -> None:
    """The quickstart example prints what its comments promise."""
    runpy.run_path(str(ROOT / "examples" / "quickstart.py"), run_name="__main__")
    lines = capsys.readouterr().out.splitlines()
    assert lines[:4] == [
        "charged order-1",
        "queued bad-order for later (ConnectionError)",
        "a one-off call",
        "in the background",
    ]


def test_demo_tells_the_whole_story() -> None:
    """The demo trips the circuit, fails fast while open, probes, and closes after recovery."""
    out = io.StringIO()
    outcomes = run_demo(out, speed=4.0)
    text = out.getvalue()
    assert "circuit 'inventory' opened (was closed)" in text
    assert "circuit 'inventory' half-open" in text
    assert "circuit 'inventory' opened (was half_open)" in text
    assert "circuit 'inventory' is closed (was half_open)" in text
    assert "still open: 10 calls -> 0 answers, 10 fallbacks; 0 reached the service" in text
    assert "probe while down: 3 calls -> 0 answers, 3 fallbacks; 1 reached the service" in text
    assert outcomes["answer"] == 6 + 10
    assert outcomes["fallback after CommandTimeoutError"] == 6
    assert outcomes["fallback after ConnectionError"] == 1
    assert outcomes["fallback after CircuitOpenError"] == 10 + 2


def test_demo_command_line() -> None:
    """`python -m breaker demo` runs as a program and ends by itself."""
    result = subprocess.run(
        [sys.executable, "-m", "breaker", "demo", "--speed", "4"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "final state: closed" in result.stdout
