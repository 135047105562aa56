"""benchmarks/bench_outage.py end to end in its --quick mode: every contender gets its row, the plot is drawn.

The figures of a smoke run are not checked: its phases are a fraction of a second on a shared machine.
"""

from __future__ import annotations

import json
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "bench_outage.py"

#: The rows each service flavour's table must have, as the benchmark labels them.
EXPECTED = {
    "WSGI": ["no breaker", "breaker (thread)", "breaker (caller)", "pybreaker", "circuitbreaker", "interlock-cb"],
    "ASGI": ["no breaker", "breaker (async)", "circuitbreaker", "aiobreaker", "interlock-cb"],
}


def table_rows(text: str) -> dict[str, list[str]]:
    """Each table's contender column, by the flavour its heading names."""
    rows: dict[str, list[str]] = {}
    for section in text.split("\n### ")[1:]:
        flavour = section.split(" ", 1)[0]
        cells = (line.split("|")[1].strip() for line in section.splitlines() if line.startswith("| "))
        rows[flavour] = [cell.strip("*") for cell in cells if cell != "contender"]
    return rows


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_quick_run_has_every_contender_and_a_plot(tmp_path: pathlib.Path) -> None:
    plot = tmp_path / "outage.png"
    figures = tmp_path / "outage.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--seed", "7", "--plot", str(plot), "--json", str(figures)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert table_rows(done.stdout) == EXPECTED
    assert re.search(r"breaker rows meeting every target: \d+/3", done.stdout)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    runs = json.loads(figures.read_text())["runs"]
    assert sorted((run["flavour"], run["contender"]) for run in runs) == sorted(
        [("wsgi", c) for c in ("none", "breaker-thread", "breaker-caller", "pybreaker", "circuitbreaker", "interlock")]
        + [("asgi", c) for c in ("none", "breaker-async", "circuitbreaker", "aiobreaker", "interlock")]
    )
