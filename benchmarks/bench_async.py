"""Async benchmark of `breaker` against bare awaits, ``asyncio.timeout``, circuitbreaker and aiobreaker.

Run from the repository root::

    .venv/bin/python benchmarks/bench_async.py            # full run (under a minute)
    .venv/bin/python benchmarks/bench_async.py --quick    # a few seconds: few rounds, small N (for tests)
    .venv/bin/python benchmarks/bench_async.py --json out.json

Everything runs in one event loop (one ``asyncio.run``, debug mode off). Each contender is a coroutine that awaits
a trivial ``async def f(): return 1`` N times in one loop, through the contender, timed with ``perf_counter`` (gc
disabled in the timed loop). As in ``bench_core.py``, every figure is a ratio of times measured in interleaved
rounds: each round times every contender back to back in a shuffled order (each one ``--reps`` times, keeping its
fastest), the ratio is computed within the round, and the table reports the median of the per-round ratios with
their spread (IQR and min..max). Between two timed loops the event loop turns once, so the timer handles that
``asyncio.timeout`` cancelled in one loop are dropped before the next is timed. Absolute per-call times and
overheads go to stderr only; progress goes to stderr; the table to stdout.

The floor of an enforced timeout is the stdlib's: ``async with asyncio.timeout(10): await f()``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import gc
import json
import math
import random
import statistics
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, cast

import aiobreaker
import circuitbreaker
from bench_core import (
    HUGE,
    Round,
    Row,
    environment,
    perf_counter,
    pin_to_one_cpu,
    progress,
    ratio_row,
    reset_breaker,
    show_times,
    version_of,
)

import breaker

if sys.version_info >= (3, 11):
    stdlib_timeout = asyncio.timeout
else:  # pragma: no cover - Python 3.10 has no asyncio.timeout: main() refuses to run

    def stdlib_timeout(delay: float | None) -> contextlib.AbstractAsyncContextManager[None]:
        raise RuntimeError("bench_async.py needs Python 3.11+ (asyncio.timeout)")


AsyncCall = Callable[[], Awaitable[object]]
AsyncMeasure = Callable[[], Awaitable[float]]  # one timed measurement: seconds per call

FLOOR_TIMEOUT = 10.0  # seconds: the floor's asyncio.timeout, never reached
SLOW_RUN = 0.05  # seconds the slow coroutine sleeps, in the timeout-enforcement group
SHORT_TIMEOUT = 0.01  # seconds: the breaker command's timeout in that group


# -- sizes ------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How long each group runs. ``rounds``: interleaved rounds; ``reps``: timings per contender per round."""

    n: int  # awaits per timing
    rounds: int
    reps: int
    timeout_tries: int  # tries of the timeout-enforcement group


FULL = Sizes(n=20_000, rounds=31, reps=3, timeout_tries=11)
QUICK = Sizes(n=2_000, rounds=3, reps=1, timeout_tries=3)


# -- the measuring loop -----------------------------------------------------------------------------------------


async def run_rounds_async(
    label: str, contenders: Mapping[str, AsyncMeasure], rounds: int, reps: int, rng: random.Random
) -> list[Round]:
    """`bench_core.run_rounds` for coroutines: every contender ``reps`` times per round, shuffled; keep its fastest.

    The loop turns once after each timed loop (``asyncio.sleep(0)``, not timed): the timed loops never yield, so
    the timer handles ``asyncio.timeout`` cancelled in one of them stay in the loop's heap until it turns.
    """
    for measure in contenders.values():  # warm-up: first-call costs (circuits, caches) are not what we measure
        await measure()
        await asyncio.sleep(0)
    results: list[Round] = []
    started = perf_counter()
    for index in range(rounds):
        gc.collect()
        best = dict.fromkeys(contenders, math.inf)
        for _ in range(reps):
            order = list(contenders)
            rng.shuffle(order)
            for key in order:
                best[key] = min(best[key], await contenders[key]())
                await asyncio.sleep(0)
        results.append(best)
        if index == 0 or index + 1 == rounds or (index + 1) % 10 == 0:
            progress(f"  {label}: round {index + 1}/{rounds} ({perf_counter() - started:.1f} s)")
    return results


def timed_awaits(fn: AsyncCall, n: int) -> AsyncMeasure:
    """Seconds per call of ``await fn()`` over a loop of ``n`` awaits, gc disabled."""

    async def measure() -> float:
        loop = range(n)
        gc.disable()
        try:
            start = perf_counter()
            for _ in loop:
                await fn()
            elapsed = perf_counter() - start
        finally:
            gc.enable()
        return elapsed / n

    return measure


def timed_floor(fn: AsyncCall, n: int) -> AsyncMeasure:
    """Seconds per call of ``async with asyncio.timeout(10): await fn()`` over ``n`` awaits, gc disabled."""

    async def measure() -> float:
        loop = range(n)
        gc.disable()
        try:
            start = perf_counter()
            for _ in loop:
                async with stdlib_timeout(FLOOR_TIMEOUT):
                    await fn()
            elapsed = perf_counter() - start
        finally:
            gc.enable()
        return elapsed / n

    return measure


# -- the coroutines under test ----------------------------------------------------------------------------------


async def f() -> int:
    return 1


async def slow() -> int:
    await asyncio.sleep(SLOW_RUN)
    return 1


def breaker_config(timeout: float) -> breaker.CommandConfig:
    return breaker.CommandConfig(timeout=timeout, request_volume_threshold=HUGE)


def check_breaker(names: Sequence[str], allowed: Sequence[str] = ("success",)) -> None:
    """The figures compare successful calls only: fail the run if a command counted anything else."""
    for name in names:
        circuit = breaker.get_circuit(name)[0]
        stats = circuit.statistics()
        other = {event: count for event, count in stats.counts.items() if count and event not in allowed}
        if other or stats.state is not breaker.State.CLOSED:
            raise RuntimeError(f"breaker command {name!r} counted {other} (state {stats.state})")


# -- groups -----------------------------------------------------------------------------------------------------


async def group_overhead(sizes: Sizes, rng: random.Random) -> list[Row]:
    """Rows 1-4: the success path of one await, through each contender, in one loop."""
    n, rounds, reps = sizes.n, sizes.rounds, sizes.reps
    reset_breaker()
    breaker.configure_command("a", breaker_config(1.0))
    breaker.configure_command("b", breaker_config(1.0))
    breaker.configure_command("c", breaker_config(math.inf))
    b_dec = breaker.command("a")(f)
    b_inf = breaker.command("c")(f)

    def b_do() -> Awaitable[int]:
        return breaker.do_async("b", f)

    cb = circuitbreaker.CircuitBreaker(failure_threshold=HUGE, name="cb-async")
    cb_f = cast(AsyncCall, cb(f))
    aio = aiobreaker.CircuitBreaker(fail_max=HUGE, name="aio-async")
    aio_f = cast(AsyncCall, aio(f))

    progress(f"group 1-4: one await through each contender (N={n}, {rounds} rounds x {reps})")
    res = await run_rounds_async(
        "await",
        {
            "bare": timed_awaits(f, n),
            "floor": timed_floor(f, n),
            "breaker": timed_awaits(b_dec, n),
            "breaker_do": timed_awaits(b_do, n),
            "breaker_inf": timed_awaits(b_inf, n),
            "circuitbreaker": timed_awaits(cb_f, n),
            "aiobreaker": timed_awaits(aio_f, n),
        },
        rounds,
        reps,
        rng,
    )
    show_times("await", res)
    overheads = ", ".join(
        f"{key}={statistics.median((r[key] - r['bare']) for r in res) * 1e9:,.0f}" for key in res[0] if key != "bare"
    )
    progress(f"  await median overhead over bare, ns/call: {overheads}")
    check_breaker(["a", "b", "c"])
    if cb.opened or aio.current_state != aiobreaker.CircuitBreakerState.CLOSED:
        raise RuntimeError("a peer's circuit opened: the figures are not comparable")

    def over(key: str, peer: str) -> Callable[[Round], float]:
        return lambda r: (r[key] - r["bare"]) / (r[peer] - r["bare"])

    return [
        ratio_row(
            "async.command_vs_floor",
            "1 @command async, timeout 1 s: time / asyncio.timeout(10) around the bare await (floor)",
            res,
            lambda r: r["breaker"] / r["floor"],
            1.2,
        ),
        ratio_row(
            "async.do_vs_floor",
            "2 do_async, timeout 1 s: time / floor",
            res,
            lambda r: r["breaker_do"] / r["floor"],
            None,
        ),
        ratio_row(
            "async.inf_vs_circuitbreaker",
            "3 @command async, timeout=inf: overhead / circuitbreaker async overhead",
            res,
            over("breaker_inf", "circuitbreaker"),
            0.8,
        ),
        ratio_row(
            "async.aiobreaker_vs_circuitbreaker",
            "4a aiobreaker overhead / circuitbreaker async overhead",
            res,
            over("aiobreaker", "circuitbreaker"),
            None,
        ),
        ratio_row(
            "async.inf_vs_aiobreaker",
            "4b @command async, timeout=inf: overhead / aiobreaker overhead",
            res,
            over("breaker_inf", "aiobreaker"),
            None,
        ),
    ]


async def elapsed_of(call: AsyncCall) -> tuple[float, str]:
    """Wall seconds of ``await call()`` and its outcome: the value, or the breaker's timeout error."""
    start = perf_counter()
    try:
        value = await call()
    except breaker.CommandTimeoutError:
        return perf_counter() - start, "CommandTimeoutError"
    return perf_counter() - start, f"value {value!r}"


async def group_timeout(sizes: Sizes, rng: random.Random) -> list[Row]:
    """Row 5: a run outlasting its timeout. breaker cancels it at the timeout; the peers do not enforce one."""
    tries = sizes.timeout_tries
    reset_breaker()
    breaker.configure_command("t", breaker_config(SHORT_TIMEOUT))
    calls: dict[str, AsyncCall] = {
        "breaker": breaker.command("t")(slow),
        "circuitbreaker": cast(AsyncCall, circuitbreaker.CircuitBreaker(failure_threshold=HUGE, name="cb-slow")(slow)),
        "aiobreaker": cast(AsyncCall, aiobreaker.CircuitBreaker(fail_max=HUGE, name="aio-slow")(slow)),
    }
    expected = {"breaker": "CommandTimeoutError", "circuitbreaker": "value 1", "aiobreaker": "value 1"}
    progress(
        f"group 5: a {SLOW_RUN * 1e3:g} ms run, breaker timeout {SHORT_TIMEOUT * 1e3:g} ms "
        f"({tries} tries per contender)"
    )
    res: list[Round] = []
    for _ in range(tries):
        order = list(calls)
        rng.shuffle(order)
        elapsed: Round = {}
        for key in order:
            elapsed[key], outcome = await elapsed_of(calls[key])
            if outcome != expected[key]:
                raise RuntimeError(f"timeout group: {key} gave {outcome}, expected {expected[key]}")
        res.append(elapsed)
    show_times("timeout", res, unit="ms wall", scale=1e3)
    check_breaker(["t"], allowed=("timeout",))

    def vs(peer: str) -> Callable[[Round], float]:
        return lambda r: r["breaker"] / r[peer]

    return [
        ratio_row(
            f"async.timeout_enforced.vs_{peer}",
            f"5 {SLOW_RUN * 1e3:g} ms run, breaker timeout {SHORT_TIMEOUT * 1e3:g} ms (CommandTimeoutError): "
            f"breaker elapsed / {peer} elapsed (which waits the full run)",
            res,
            vs(peer),
            None,
        )
        for peer in ("circuitbreaker", "aiobreaker")
    ]


# -- report -----------------------------------------------------------------------------------------------------


def render(env: Mapping[str, str], rows: Sequence[Row], seconds: float) -> str:
    lines = [f"# breaker async benchmark ({env['mode']} run)", ""]
    lines += [f"- {key}: {value}" for key, value in env.items() if key != "mode"]
    lines.append(f"- run time: {seconds:.1f} s")
    lines.append("- every figure is a ratio measured within one round (row 5: one try); the value is the median")
    lines.append("")
    lines.append("| Measurement | Median ratio | Spread over rounds | Rounds | Target | Result |")
    lines.append("|---|---:|---|---:|---|---|")
    for row in rows:
        lines.append(
            f"| {row.name} | {row.value_text()} | {row.spread_text()} | {row.rounds} | "
            f"{row.target or '-'} | {row.result_text()} |"
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


async def run_all(sizes: Sizes, rng: random.Random, env: dict[str, str]) -> list[Row]:
    loop = asyncio.get_running_loop()
    env["event loop"] = f"{type(loop).__module__}.{type(loop).__name__}, debug {'on' if loop.get_debug() else 'off'}"
    rows = await group_overhead(sizes, rng)
    rows += await group_timeout(sizes, rng)
    reset_breaker()
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="few rounds, small N: a smoke run of a few seconds")
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON to PATH")
    parser.add_argument("--seed", type=int, default=None, help="seed of the shuffled orders (default: random)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin the process to one CPU")
    args = parser.parse_args(argv)
    if sys.version_info < (3, 11):
        parser.error("needs Python 3.11+: the floor is asyncio.timeout")
    pinned = "no (--no-pin)" if args.no_pin else pin_to_one_cpu()
    sizes = QUICK if args.quick else FULL
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    rng = random.Random(seed)
    base = environment(args)
    env = {key: value for key, value in base.items() if key not in ("pybreaker", "switch interval")}
    env["aiobreaker"] = version_of("aiobreaker")
    env["seed"] = str(seed)
    env["pinned to one CPU"] = pinned
    env["N"] = f"{sizes.n:,} awaits per timing, {sizes.rounds} rounds x {sizes.reps} reps"
    started = perf_counter()
    rows = asyncio.run(run_all(sizes, rng, env), debug=False)
    seconds = perf_counter() - started
    progress(f"done in {seconds:.1f} s")
    print(render(env, rows, seconds))
    if args.json:
        write_json(args.json, env, rows, seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
