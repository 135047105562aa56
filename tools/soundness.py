"""Run the concurrency tests many times in a row, under the harshest thread switching, and report each run.

Every test of every run runs under ``sys.setswitchinterval(1e-6)`` (CPython switches threads every microsecond
instead of every 5 ms) with a thread spinning on the CPU beside the test's own (tests/conftest.py does both when
``BREAKER_SWITCH_INTERVAL`` and ``BREAKER_CPU_HOG`` are set): the stress tests (slow ones included), the forced
interleavings, the cancellation tests and the concurrent cumulative-count tests. A count or a ticket lost under
any schedule these produce fails a run; so does a deadlock (every wait is bounded).

Usage (from the repository root, after ``bash .ci/run`` made the venv)::

    .venv/bin/python tools/soundness.py             # 20 runs
    .venv/bin/python tools/soundness.py --runs 3    # fewer
    BREAKER_LOCKED=1 .venv/bin/python tools/soundness.py   # the locked mode (as without the GIL)
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = [
    "tests/run/test_stress.py",
    "tests/run/test_interleaving.py",
    "tests/run/test_cancellation.py",
    "tests/run/test_permit.py",
    "tests/api/test_observability.py",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="how many runs (default 20)")
    parser.add_argument("--interval", type=float, default=1e-6, help="sys.setswitchinterval, seconds (default 1e-6)")
    options = parser.parse_args(argv)
    env = {**os.environ, "BREAKER_SWITCH_INTERVAL": repr(options.interval), "BREAKER_CPU_HOG": "1"}
    mode = "locked" if os.environ.get("BREAKER_LOCKED", "") not in ("", "0") else "lock-free"
    print(f"soundness: {options.runs} runs, switch interval {options.interval:g} s, a CPU hog thread, {mode} mode")
    print(f"tests: {' '.join(TESTS)}", flush=True)
    failed = 0
    for run in range(1, options.runs + 1):
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "slow or not slow", *TESTS],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        summary = next(
            (line for line in reversed(done.stdout.splitlines()) if re.search(r"\d+ (passed|failed)", line)), ""
        )
        verdict = "ok" if done.returncode == 0 else "FAILED"
        print(
            f"run {run:2}/{options.runs}: {verdict}  {summary.strip('= ')}  ({time.monotonic() - started:.0f} s)",
            flush=True,
        )
        if done.returncode:
            failed += 1
            print(done.stdout[-4000:], done.stderr[-2000:], sep="\n")
    print(f"soundness: {options.runs - failed} of {options.runs} runs passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
