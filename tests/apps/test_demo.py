"""`python -m breaker demo`: the whole story end to end with small numbers, in-process and as a program."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from breaker import State
from breaker._demo import DemoOptions, DemoResult, run_demo
from breaker._demo.load import LoadOptions

#: A short story: inventory hangs from 1 s to 3 s of a 5 s run; circuits judge a 1 s window, probe after 0.4 s.
SHORT = DemoOptions(
    load=LoadOptions(concurrency=4, rate=40, duration=5.0),
    outage_start=1.0,
    outage_duration=2.0,
    timeout=0.1,
    sleep_window=0.7,  # an open spell with its probe lasts 0.8 s: out of step with the view's 0.5 s
    rolling_window=1.0,
    error_rate=0.0,
    port=None,
    live=False,
    view_interval=0.5,
    seed=1,
)


def outcome_lines(text: str) -> dict[str, int]:
    """The summary's "Results by outcome" section, as printed."""
    section = text.split("Results by outcome:\n", 1)[1].split("\n\n", 1)[0]
    found = (re.fullmatch(r"  (.+?)\s+(\d+)(?:  avg +[\d.]+ ms)?", line) for line in section.splitlines())
    return {m[1]: int(m[2]) for m in found if m is not None}


def check_totals(text: str) -> int:
    """The summary's outcomes add up to its request count and its total line; returns the count."""
    requests = int(re.findall(r"Requests:\t(\d+)", text)[-1])
    outcomes = outcome_lines(text)
    total = outcomes.pop("total")
    assert sum(outcomes.values()) == requests == total
    return requests


@pytest.fixture(scope="module")
def short_run() -> tuple[DemoResult, str]:
    out = io.StringIO()
    result = run_demo(out, SHORT)
    return result, out.getvalue()


@pytest.mark.timeout(60)
def test_summary_totals_add_up(short_run: tuple[DemoResult, str]) -> None:
    """The printed summary's outcomes add up to the requests made, which are every call the load made."""
    result, text = short_run
    requests = check_totals(text)
    assert requests == len(result.report.samples) == sum(result.report.outcomes().values())
    assert outcome_lines(text) == {**result.report.outcomes(), "total": requests}
    for heading in ("Summary:", "Requests/sec:", "Response time histogram:", "Latency distribution:"):
        assert heading in text


def test_the_circuit_trips_probes_and_closes(short_run: tuple[DemoResult, str]) -> None:
    """inventory opens during the outage, probes, and ends closed after recovery; pricing never opens."""
    result, text = short_run
    changes = [(name, old, new) for _, name, old, new in result.changes]
    assert changes[0] == ("inventory", State.CLOSED, State.OPEN)
    assert changes[-1] == ("inventory", State.HALF_OPEN, State.CLOSED)
    assert ("inventory", State.OPEN, State.HALF_OPEN) in changes
    assert all(name == "inventory" for name, _, _ in changes)
    opened_at = result.changes[0][0]
    closed_at = result.changes[-1][0]
    assert SHORT.outage_start <= opened_at < closed_at
    assert closed_at >= SHORT.outage_start + SHORT.outage_duration
    assert "Circuit state changes:" in text
    assert "circuit 'inventory' opened (was closed)" in text
    assert "circuit 'inventory' is closed (was half_open)" in text


def test_callers_fail_fast_instead_of_reaching_the_dead_service(short_run: tuple[DemoResult, str]) -> None:
    """While inventory is down most of its calls end as short-circuit fallbacks, which never reach the service."""
    result, _ = short_run
    outcomes = result.report.outcomes()
    short_circuited = outcomes["inventory fallback (short-circuit)"]
    assert short_circuited > 0
    assert outcomes["inventory fallback (timeout)"] > 0
    inventory_calls = sum(count for outcome, count in outcomes.items() if outcome.startswith("inventory "))
    reached = sum(result.served["inventory"].values())
    assert reached <= inventory_calls - short_circuited
    assert result.served["inventory"]["down"] < short_circuited
    assert result.served["pricing"].get("down", 0) == 0
    assert outcomes["pricing fallback (short-circuit)"] == 0


def test_short_circuits_answer_faster_than_the_timeout(short_run: tuple[DemoResult, str]) -> None:
    """A short-circuited call returns before the timeout it would otherwise wait out."""
    result, _ = short_run
    fast = [s.latency for s in result.report.samples if s.outcome == "inventory fallback (short-circuit)"]
    waited = [s.latency for s in result.report.samples if s.outcome == "inventory fallback (timeout)"]
    assert max(fast) < SHORT.timeout <= min(waited)


def test_live_view_prints_a_line_per_circuit(short_run: tuple[DemoResult, str]) -> None:
    """The live view shows each circuit's state, rate, error %, p99 and fallbacks."""
    _, text = short_run
    pattern = r"  (inventory|pricing)\s+(closed|OPEN|half-open)\s+[\d.]+/s  err\s+\d+%  p99\s+[\d.]+ ms  fallbacks \d+"
    lines = re.findall(pattern, text)
    assert {name for name, _ in lines} == {"inventory", "pricing"}
    assert ("inventory", "OPEN") in lines


def test_live_view_redraws_in_place_on_a_terminal() -> None:
    """In live mode each refresh moves the cursor back over the previous block instead of scrolling."""
    out = io.StringIO()
    options = DemoOptions(
        load=LoadOptions(requests=8, concurrency=2, rate=10),
        outage_start=100.0,
        outage_duration=1.0,
        port=None,
        live=True,
        view_interval=0.2,
    )
    result = run_demo(out, options)
    assert len(result.report.samples) == 8
    assert "\x1b[3F\x1b[J" in out.getvalue()  # three lines: the progress line and one per circuit


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "breaker", "demo", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_command_line_runs_n_requests_and_ends() -> None:
    """`python -m breaker demo -n 40 -c 4` makes exactly 40 requests and ends by itself."""
    result = run_cli("-n", "40", "-c", "4", "-q", "0", "--no-dashboard", "--outage", "100:1")
    assert result.returncode == 0, result.stderr
    assert check_totals(result.stdout) == 40
    assert "dashboard:" not in result.stdout


def test_command_line_serves_the_dashboard() -> None:
    """The demo prints the URL of its dashboard (here on a free port)."""
    result = run_cli("-n", "8", "-c", "2", "--port", "0", "--outage", "100:1")
    assert result.returncode == 0, result.stderr
    assert re.search(r"dashboard: http://127\.0\.0\.1:\d+/", result.stdout)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-c", "0"], "concurrency (-c)"),
        (["-n", "2", "-c", "4"], "cannot be less than concurrency"),
        (["-z", "soon"], "not a duration"),
        (["--outage", "5"], "outage"),
        (["--error-rate", "2"], "error_rate"),
    ],
    ids=["no-workers", "n-below-c", "bad-duration", "bad-outage", "bad-error-rate"],
)
def test_command_line_rejects_bad_options(args: list[str], message: str) -> None:
    """A bad option ends the program with status 2 and a message naming it, before any load."""
    result = run_cli(*args, "--no-dashboard")
    assert result.returncode == 2
    assert message in result.stderr
    assert "Summary:" not in result.stdout


@pytest.mark.timeout(60)
def test_ctrl_c_stops_cleanly_with_a_summary() -> None:
    """SIGINT stops the load after the calls in progress, prints the summary (totals adding up) and exits 0."""
    with subprocess.Popen(
        [sys.executable, "-m", "breaker", "demo", "-z", "60", "-c", "4", "--no-dashboard"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    ) as process:
        lines: list[str] = []
        seen = threading.Event()

        def read() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                lines.append(line)
                if re.match(r"\[\s*[\d.]+s\] \d+ requests", line):
                    seen.set()

        reader = threading.Thread(target=read)
        reader.start()
        assert seen.wait(30), "".join(lines)
        sent = time.monotonic()
        process.send_signal(signal.SIGINT)
        assert process.wait(20) == 0, process.stderr.read() if process.stderr else ""
        reader.join()
        assert time.monotonic() - sent < 20
    text = "".join(lines)
    assert "stopping (Ctrl-C)" in text
    assert "Summary: (stopped early)" in text
    assert check_totals(text) > 0
