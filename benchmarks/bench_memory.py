"""Memory per circuit: `breaker` against pybreaker and circuitbreaker, measured with tracemalloc.

Run from the repository root::

    .venv/bin/python benchmarks/bench_memory.py            # full run: 10,000 circuits per measurement
    .venv/bin/python benchmarks/bench_memory.py --quick    # 1,000 circuits, fewer rounds (for tests)
    .venv/bin/python benchmarks/bench_memory.py --json out.json

One measurement of a contender: its N names are made first (and, for the peers, a list of N slots to hold their
breakers), then ``gc.collect()`` and a tracemalloc snapshot; then N circuits are created through the public API,
each with one successful call (breaker: ``breaker.do(name, f)`` with ``configure_defaults(CommandConfig(
isolation="caller"))``; pybreaker and circuitbreaker: one ``CircuitBreaker`` per dependency and one ``.call(f)``
through it); then ``gc.collect()`` and a second snapshot. The bytes allocated and still held between the two
snapshots (tracemalloc's own allocations filtered out), divided by N, are the bytes per circuit. Before the first
snapshot each contender makes one warm-up circuit, so that one-time costs (lazy imports, caches) are not counted.

The contenders are measured one after the other in a shuffled order in each round; the table shows the median over
rounds with the spread. Progress and the allocation counts go to stderr; the table to stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import random
import sys
import tracemalloc
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import circuitbreaker
import pybreaker
from bench_core import HUGE, Row, environment, f, logging_off, perf_counter, progress, reset_breaker, summarize

import breaker

TARGET_BYTES = 3072  # bytes per circuit after one call: breaker's target (3 KB)


@dataclasses.dataclass(frozen=True)
class Sizes:
    n: int  # circuits per measurement
    rounds: int


FULL = Sizes(n=10_000, rounds=5)
QUICK = Sizes(n=1_000, rounds=2)


@dataclasses.dataclass(frozen=True)
class Held:
    """What one measurement left allocated: bytes and blocks, over ``n`` circuits."""

    bytes: int
    blocks: int
    n: int

    @property
    def per_circuit(self) -> float:
        return self.bytes / self.n


# Makes N circuits with one call each; gets the names (and the slots to keep peer breakers in) made beforehand.
Maker = Callable[[Sequence[str], list[object]], None]


def snapshot() -> tracemalloc.Snapshot:
    """A snapshot of what is allocated now, after a full collection, without tracemalloc's own allocations."""
    gc.collect()
    return tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])


def held_by(make: Maker, prefix: str, n: int) -> Held:
    """Bytes allocated and still held by ``make`` creating ``n`` circuits; the names and slots are not counted."""
    names = [f"{prefix}-{i}" for i in range(n)]
    slots: list[object] = [None] * n
    make([f"{prefix}-warm-up"], [None])  # one-time costs out of the figure
    before = snapshot()
    make(names, slots)
    after = snapshot()
    diff = after.compare_to(before, "filename")
    held = Held(sum(stat.size_diff for stat in diff), sum(stat.count_diff for stat in diff), n)
    del slots, names
    return held


# -- the contenders ---------------------------------------------------------------------------------------------


def make_breaker(names: Sequence[str], slots: list[object]) -> None:
    """One circuit per name, created by its first call: ``breaker.do(name, f)`` in caller isolation."""
    for name in names:
        if breaker.do(name, f) != 1:
            raise RuntimeError(f"breaker command {name!r} did not return f's value")


def make_pybreaker(names: Sequence[str], slots: list[object]) -> None:
    """One ``pybreaker.CircuitBreaker`` per dependency, one successful call through each."""
    for index, name in enumerate(names):
        pb = pybreaker.CircuitBreaker(fail_max=HUGE, name=name)
        if pb.call(f) != 1:
            raise RuntimeError("pybreaker did not return f's value")
        slots[index] = pb


def make_circuitbreaker(names: Sequence[str], slots: list[object]) -> None:
    """One ``circuitbreaker.CircuitBreaker`` per dependency, one successful call through each."""
    for index, name in enumerate(names):
        cb = circuitbreaker.CircuitBreaker(failure_threshold=HUGE, name=name)
        if cb.call(f) != 1:
            raise RuntimeError("circuitbreaker did not return f's value")
        slots[index] = cb


def measure_breaker(n: int, round_index: int) -> Held:
    reset_breaker()
    breaker.configure_defaults(breaker.CommandConfig(isolation="caller"))
    held = held_by(make_breaker, f"mem-breaker-{round_index}", n)
    circuits = breaker.circuits()
    if len(circuits) != n + 1:  # the N circuits and the warm-up one
        raise RuntimeError(f"breaker: {len(circuits)} circuits, expected {n + 1}")
    if any(circuit.statistics().counts["success"] != 1 for circuit in circuits):
        raise RuntimeError("breaker: a circuit did not count exactly one success")
    reset_breaker()
    return held


def measure_pybreaker(n: int, round_index: int) -> Held:
    return held_by(make_pybreaker, f"mem-pybreaker-{round_index}", n)


def measure_circuitbreaker(n: int, round_index: int) -> Held:
    return held_by(make_circuitbreaker, f"mem-circuitbreaker-{round_index}", n)


CONTENDERS: Mapping[str, Callable[[int, int], Held]] = {
    "breaker": measure_breaker,
    "pybreaker": measure_pybreaker,
    "circuitbreaker": measure_circuitbreaker,
}


# -- the run ----------------------------------------------------------------------------------------------------


def run(sizes: Sizes, rng: random.Random) -> list[Row]:
    n, rounds = sizes.n, sizes.rounds
    results: dict[str, list[Held]] = {key: [] for key in CONTENDERS}
    progress(f"memory: {n:,} circuits per measurement, {rounds} rounds")
    tracemalloc.start(1)
    try:
        for index in range(rounds):
            order = list(CONTENDERS)
            rng.shuffle(order)
            for key in order:
                results[key].append(CONTENDERS[key](n, index))
            progress(
                f"  round {index + 1}/{rounds}: "
                + ", ".join(
                    f"{key}={results[key][-1].per_circuit:,.0f} B/circuit "
                    f"({results[key][-1].blocks / n:.1f} blocks/circuit)"
                    for key in CONTENDERS
                )
            )
    finally:
        tracemalloc.stop()
    names = {
        "breaker": "M1 breaker, caller isolation, one breaker.do() call per command: bytes held per circuit",
        "pybreaker": "M2 pybreaker, one CircuitBreaker per dependency, one call through each: bytes held per circuit",
        "circuitbreaker": (
            "M3 circuitbreaker, one CircuitBreaker per dependency, one call through each: bytes held per circuit"
        ),
    }
    rows: list[Row] = []
    for key, name in names.items():
        values = [held.per_circuit for held in results[key]]
        median, spread = summarize(values)
        target = TARGET_BYTES if key == "breaker" else None
        rows.append(
            Row(
                f"memory.{key}",
                f"{name} (N={n:,})",
                median,
                spread,
                None if target is None else f"<= {target:,} B",
                None if target is None else median <= target,
                len(values),
            )
        )
    return rows


# -- report -----------------------------------------------------------------------------------------------------


def render(env: Mapping[str, str], rows: Sequence[Row], seconds: float) -> str:
    lines = [f"# breaker memory benchmark ({env['mode']} run)", ""]
    lines += [f"- {key}: {value}" for key, value in env.items() if key != "mode"]
    lines.append(f"- run time: {seconds:.1f} s")
    lines.append(
        "- bytes allocated and still held between two tracemalloc snapshots (after gc.collect()), divided by N; "
        "the value is the median over rounds"
    )
    lines.append("")
    lines.append("| Measurement | Median bytes per circuit | Spread over rounds | Rounds | Target | Result |")
    lines.append("|---|---:|---|---:|---|---|")
    for row in rows:
        spread = (
            f"IQR {row.spread['q1']:,.0f}..{row.spread['q3']:,.0f}; "
            f"min..max {row.spread['min']:,.0f}..{row.spread['max']:,.0f}"
        )
        lines.append(
            f"| {row.name} | {row.median:,.0f} | {spread} | {row.rounds} | {row.target or '-'} | {row.result_text()} |"
        )
    failed = [row.key for row in rows if row.passed is False]
    lines.append("")
    lines.append(f"Targets met: {sum(1 for r in rows if r.passed)}/{sum(1 for r in rows if r.passed is not None)}")
    if failed:
        lines.append(f"Failed: {', '.join(failed)}")
    return "\n".join(lines)


def write_json(path: str, env: Mapping[str, str], rows: Sequence[Row], seconds: float) -> None:
    payload: dict[str, Any] = {
        "environment": env,
        "run_seconds": seconds,
        "rows": [
            {
                "key": row.key,
                "name": row.name,
                "median": row.median,
                "unit": "bytes per circuit",
                "spread": row.spread,
                "rounds": row.rounds,
                "target": row.target,
                "pass": row.passed,
            }
            for row in rows
        ],
    }
    with open(path, "w", encoding="utf-8") as out:
        json.dump(payload, out, indent=2, default=str)
        out.write("\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1,000 circuits, 2 rounds: a smoke run of a few seconds")
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON to PATH")
    parser.add_argument("--seed", type=int, default=None, help="seed of the shuffled orders (default: random)")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    rng = random.Random(seed)
    env = {key: value for key, value in environment(args).items() if key != "switch interval"}
    env["seed"] = str(seed)
    env["N"] = f"{sizes.n:,} circuits per measurement, {sizes.rounds} rounds"
    logging_off()
    started = perf_counter()
    rows = run(sizes, rng)
    seconds = perf_counter() - started
    progress(f"done in {seconds:.1f} s")
    print(render(env, rows, seconds))
    if args.json:
        write_json(args.json, env, rows, seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
