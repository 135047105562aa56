"""Core benchmark of `breaker` against bare calls, pybreaker and circuitbreaker.

Run from the repository root::

    .venv/bin/python benchmarks/bench_core.py            # full run (about two minutes)
    .venv/bin/python benchmarks/bench_core.py --quick    # a few seconds: few rounds, small N (for tests)
    .venv/bin/python benchmarks/bench_core.py --json out.json

Every figure is a ratio of times measured in this one process, in interleaved rounds: each round times every
contender of a group back to back in a shuffled order (each one ``--reps`` times, keeping its fastest), and the
ratio is computed within the round. The table reports the median of the per-round ratios and their spread (IQR and
min..max), so drift of the machine between rounds cancels out. Absolute per-call times go to stderr only, as
context. Progress goes to stderr; the table to stdout.

The process is pinned to one CPU (unless ``--no-pin``), except group 2 (thread isolation, one caller), which is
measured twice in every run: pinned (the caller, breaker's workers, the floor's worker and the executor's worker
all on one CPU) and unpinned (on every CPU the process could use at start). For each mode the main thread's
affinity is set, ``breaker.flush()`` retires breaker's idle workers so that new ones start under it, and the floor
and the executor are created afresh; a probe call through each checks the threads are new and where they may run.
The affinity is restored afterwards. Without ``os.sched_setaffinity`` the pinned rows are shown as skipped.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import datetime
import gc
import importlib.metadata
import json
import math
import os
import platform
import queue
import random
import statistics
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, cast

import circuitbreaker
import prometheus_client
import pybreaker

import breaker
import breaker._registry  # group 2 checks that breaker's pool really started new workers for each CPU mode
import breaker.prometheus
import breaker.statsd
import breaker.stream

perf_counter = time.perf_counter

HUGE = 10**9  # a threshold no run reaches: the circuit never trips
HUGE_WINDOW = 1e6  # seconds: an open circuit stays open for the whole run

Call = Callable[[], object]
Measure = Callable[[], float]  # one timed measurement: seconds per call (or wall seconds)
Round = dict[str, float]


# -- sizes ------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How long each group runs. ``rounds``: interleaved rounds; ``reps``: timings per contender per round."""

    single_n: int  # calls per timing, single-thread caller-isolation groups
    single_rounds: int
    single_reps: int
    thread_n: int  # calls per timing, thread-isolation hand-off group
    thread_rounds: int
    thread_reps: int
    sleep_calls: int  # calls per thread, 8 threads x 1 ms
    sleep_rounds: int
    trivial_calls: int  # calls per thread, 8 threads x trivial, caller isolation
    trivial_thread_calls: int  # the same, thread isolation (smaller: every call is a hand-off)
    trivial_rounds: int
    stampede_reps: int


FULL = Sizes(
    single_n=20_000,
    single_rounds=31,
    single_reps=3,
    thread_n=1_500,
    thread_rounds=31,
    thread_reps=3,
    sleep_calls=100,
    sleep_rounds=11,
    trivial_calls=20_000,
    trivial_thread_calls=1_000,
    trivial_rounds=7,
    stampede_reps=20,
)

QUICK = Sizes(
    single_n=2_000,
    single_rounds=3,
    single_reps=1,
    thread_n=200,
    thread_rounds=3,
    thread_reps=1,
    sleep_calls=10,
    sleep_rounds=2,
    trivial_calls=2_000,
    trivial_thread_calls=100,
    trivial_rounds=2,
    stampede_reps=3,
)

THREADS = 8


# -- results ----------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Row:
    """One line of the table."""

    key: str
    name: str
    median: float
    spread: dict[str, Any]
    target: str | None  # e.g. "<= 0.8"; None: informational
    passed: bool | None
    rounds: int
    note: str = ""
    skipped: str = ""  # why the row could not be measured here: the table says so instead of leaving it out

    def spread_text(self) -> str:
        if self.skipped:
            return f"not measured: {self.skipped}"
        if "distribution" in self.spread:
            dist = cast(Mapping[int, int], self.spread["distribution"])
            parts = ", ".join(
                f"{calls} call{'s' if calls != 1 else ''}: {times}x" for calls, times in sorted(dist.items())
            )
            return f"{self.spread['min']}..{self.spread['max']} ({parts})"
        return (
            f"IQR {self.spread['q1']:.2f}..{self.spread['q3']:.2f}; "
            f"min..max {self.spread['min']:.2f}..{self.spread['max']:.2f}"
        )

    def value_text(self) -> str:
        if self.skipped:
            return "-"
        if "distribution" in self.spread:
            return f"max {self.spread['max']}"
        return f"{self.median:.2f}"

    def result_text(self) -> str:
        if self.skipped:
            return "SKIPPED"
        if self.passed is None:
            return "info"
        return "PASS" if self.passed else "FAIL"


def summarize(ratios: Sequence[float]) -> tuple[float, dict[str, Any]]:
    """Median and spread (quartiles, min, max) of per-round ratios."""
    median = statistics.median(ratios)
    if len(ratios) >= 2:
        q1, _, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
    else:
        q1 = q3 = ratios[0]
    return median, {"q1": q1, "q3": q3, "min": min(ratios), "max": max(ratios)}


def skipped_row(key: str, name: str, target: float | None, reason: str) -> Row:
    """A row that cannot be measured on this machine: shown in the table as skipped, with the reason."""
    return Row(key, name, math.nan, {}, None if target is None else f"<= {target:g}", None, 0, skipped=reason)


def ratio_row(
    key: str,
    name: str,
    rounds: Sequence[Round],
    ratio: Callable[[Round], float],
    target: float | None,
    note: str = "",
) -> Row:
    """A row from a per-round ratio; PASS when the median is at or below ``target``."""
    values = [ratio(r) for r in rounds]
    median, spread = summarize(values)
    passed = None if target is None else median <= target
    return Row(key, name, median, spread, None if target is None else f"<= {target:g}", passed, len(values), note)


def progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def show_times(label: str, rounds: Sequence[Round], unit: str = "ns/call", scale: float = 1e9) -> None:
    """Median absolute times, to stderr only: they drift between runs, so the table never shows them."""
    names = list(rounds[0])
    parts = ", ".join(f"{k}={statistics.median(r[k] for r in rounds) * scale:,.0f}" for k in names)
    progress(f"  {label} median {unit}: {parts}")


# -- the measuring loop -----------------------------------------------------------------------------------------


def run_rounds(
    label: str, contenders: Mapping[str, Measure], rounds: int, reps: int, rng: random.Random
) -> list[Round]:
    """Interleaved rounds: every contender ``reps`` times per round in a fresh shuffled order; keep its fastest."""
    for measure in contenders.values():  # warm-up: first-call costs (threads, caches) are not what we measure
        measure()
    results: list[Round] = []
    started = perf_counter()
    for index in range(rounds):
        gc.collect()
        best = dict.fromkeys(contenders, math.inf)
        for _ in range(reps):
            order = list(contenders)
            rng.shuffle(order)
            for key in order:
                best[key] = min(best[key], contenders[key]())
        results.append(best)
        if index == 0 or index + 1 == rounds or (index + 1) % 10 == 0:
            progress(f"  {label}: round {index + 1}/{rounds} ({perf_counter() - started:.1f} s)")
    return results


def timed_calls(fn: Call, n: int) -> Measure:
    """Seconds per call of ``fn()`` over a loop of ``n`` calls, gc disabled."""

    def measure() -> float:
        loop = range(n)
        gc.disable()
        try:
            start = perf_counter()
            for _ in loop:
                fn()
            elapsed = perf_counter() - start
        finally:
            gc.enable()
        return elapsed / n

    return measure


def timed_catching(fn: Call, error: type[BaseException], n: int) -> Measure:
    """Seconds per call of ``try: fn() except error: pass`` over ``n`` calls, gc disabled (same loop for all)."""

    def measure() -> float:
        loop = range(n)
        gc.disable()
        try:
            start = perf_counter()
            for _ in loop:
                try:  # noqa: SIM105 - the caller's own try/except is part of what is measured
                    fn()
                except error:  # noqa: PERF203 - (same)
                    pass
            elapsed = perf_counter() - start
        finally:
            gc.enable()
        return elapsed / n

    return measure


def run_threads(threads: int, body: Callable[[threading.Barrier], tuple[float, float]]) -> float:
    """Start ``threads`` threads running ``body`` after one barrier; wall seconds from the first start to the last end.

    Each thread stamps its own start and end, so the main thread's scheduling does not enter the figure.
    """
    barrier = threading.Barrier(threads)
    stamps: list[tuple[float, float]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work() -> None:
        try:
            stamp = body(barrier)
        except BaseException as error:
            with lock:
                errors.append(error)
            barrier.abort()
            return
        with lock:
            stamps.append(stamp)

    pool = [threading.Thread(target=work, name=f"bench-{i}") for i in range(threads)]
    gc.disable()
    try:
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
    finally:
        gc.enable()
    if errors:
        raise errors[0]
    return max(end for _, end in stamps) - min(start for start, _ in stamps)


def timed_threads(fn: Call, threads: int, calls: int) -> Measure:
    """Wall seconds for ``threads`` threads released together, each making ``calls`` calls of ``fn()``."""

    def body(barrier: threading.Barrier) -> tuple[float, float]:
        loop = range(calls)
        barrier.wait()
        start = perf_counter()
        for _ in loop:
            fn()
        return start, perf_counter()

    return lambda: run_threads(threads, body)


# -- the functions under test -----------------------------------------------------------------------------------


def f() -> int:
    return 1


def fail() -> int:
    raise ValueError("boom")


def sleep_1ms() -> None:
    time.sleep(0.001)


def reset_breaker() -> None:
    """A clean slate between groups: no circuits, no metrics, built-in defaults."""
    breaker.flush()
    breaker.reset_defaults()


def caller_config(**fields: Any) -> breaker.CommandConfig:
    base: dict[str, Any] = {"isolation": "caller", "request_volume_threshold": HUGE}
    base.update(fields)
    return breaker.CommandConfig(**base)


def trip_breaker(name: str) -> None:
    with contextlib.suppress(ValueError):
        breaker.do(name, fail)
    state = breaker.get_circuit(name)[0].state
    if state is not breaker.State.OPEN:
        raise RuntimeError(f"breaker command {name!r} did not open: {state}")


# -- groups -----------------------------------------------------------------------------------------------------


def group_caller_single(sizes: Sizes, rng: random.Random) -> list[Row]:
    """Row group 1: caller isolation, one thread: success, failure and open-rejection overheads."""
    n, rounds, reps = sizes.single_n, sizes.single_rounds, sizes.single_reps
    rows: list[Row] = []

    # -- success --
    reset_breaker()
    breaker.configure_command("c-dec", caller_config())
    breaker.configure_command("c-do", caller_config())
    breaker.configure_command("c-inf", caller_config(timeout=math.inf))
    b_dec = breaker.command("c-dec")(f)
    b_inf = breaker.command("c-inf")(f)
    cb_f = cast(Call, circuitbreaker.CircuitBreaker(failure_threshold=HUGE, name="cb-success")(f))
    pb_f = cast(Call, pybreaker.CircuitBreaker(fail_max=HUGE, name="pb-success")(f))

    def b_do() -> int:
        return breaker.do("c-do", f)

    progress(f"group 1a: caller isolation, success path (N={n}, {rounds} rounds x {reps})")
    res = run_rounds(
        "success",
        {
            "bare": timed_calls(f, n),
            "breaker": timed_calls(b_dec, n),
            "breaker_inf": timed_calls(b_inf, n),
            "breaker_do": timed_calls(b_do, n),
            "circuitbreaker": timed_calls(cb_f, n),
            "pybreaker": timed_calls(pb_f, n),
        },
        rounds,
        reps,
        rng,
    )
    show_times("success", res)

    def over(key: str, peer: str) -> Callable[[Round], float]:
        return lambda r: (r[key] - r["bare"]) / (r[peer] - r["bare"])

    rows.append(
        ratio_row(
            "caller.success",
            "1a caller isolation, success: @command overhead / circuitbreaker overhead",
            res,
            over("breaker", "circuitbreaker"),
            0.8,
        )
    )
    rows.append(
        ratio_row(
            "caller.success.vs_pybreaker",
            "1a caller isolation, success: @command overhead / pybreaker overhead",
            res,
            over("breaker", "pybreaker"),
            None,
        )
    )
    rows.append(
        ratio_row(
            "caller.success.do_vs_bare",
            "1d caller isolation, success: breaker.do() time / bare call time",
            res,
            lambda r: r["breaker_do"] / r["bare"],
            None,
        )
    )
    rows.append(
        ratio_row(
            "caller.success.do_vs_circuitbreaker",
            "1d caller isolation, success: breaker.do() overhead / circuitbreaker overhead",
            res,
            over("breaker_do", "circuitbreaker"),
            0.9,
        )
    )
    rows.append(
        ratio_row(
            "caller.success.inf_vs_bare",
            "1e caller isolation, timeout=inf, success: @command time / bare call time",
            res,
            lambda r: r["breaker_inf"] / r["bare"],
            None,
        )
    )
    rows.append(
        ratio_row(
            "caller.success.inf_vs_circuitbreaker",
            "1e caller isolation, timeout=inf, success: @command overhead / circuitbreaker overhead",
            res,
            over("breaker_inf", "circuitbreaker"),
            None,
        )
    )

    # -- failure --
    reset_breaker()
    breaker.configure_command("c-fail", caller_config())
    b_fail = breaker.command("c-fail")(fail)
    cb_fail = cast(Call, circuitbreaker.CircuitBreaker(failure_threshold=HUGE, name="cb-fail")(fail))
    pb_fail = cast(Call, pybreaker.CircuitBreaker(fail_max=HUGE, name="pb-fail")(fail))
    progress(f"group 1b: caller isolation, failure path (N={n}, {rounds} rounds x {reps})")
    res = run_rounds(
        "failure",
        {
            "bare": timed_catching(fail, ValueError, n),
            "breaker": timed_catching(b_fail, ValueError, n),
            "circuitbreaker": timed_catching(cb_fail, ValueError, n),
            "pybreaker": timed_catching(pb_fail, ValueError, n),
        },
        rounds,
        reps,
        rng,
    )
    show_times("failure", res)
    state = breaker.get_circuit("c-fail")[0].state
    if state is not breaker.State.CLOSED:
        raise RuntimeError(f"failure group: the breaker circuit tripped ({state}); the figures are not comparable")

    def vs_faster_peer(r: Round) -> float:
        peer = min(r["circuitbreaker"], r["pybreaker"])
        return (r["breaker"] - r["bare"]) / (peer - r["bare"])

    rows.append(
        ratio_row(
            "caller.failure",
            "1b caller isolation, failure (ValueError caught): overhead / faster peer's overhead",
            res,
            vs_faster_peer,
            0.8,
        )
    )
    rows.append(
        ratio_row(
            "caller.failure.vs_bare",
            "1b caller isolation, failure: @command time / bare raise-and-catch time",
            res,
            lambda r: r["breaker"] / r["bare"],
            None,
        )
    )

    # -- open rejection: each contender tripped for real, with a sleep window longer than the run --
    reset_breaker()
    breaker.configure_command("c-open", caller_config(request_volume_threshold=1, sleep_window=HUGE_WINDOW))
    b_open = breaker.command("c-open")(f)
    trip_breaker("c-open")
    cb = circuitbreaker.CircuitBreaker(failure_threshold=1, recovery_timeout=HUGE_WINDOW, name="cb-open")
    cb_open = cast(Call, cb(f))
    with contextlib.suppress(ValueError):
        cb.call(fail)
    if not cb.opened:
        raise RuntimeError("circuitbreaker did not open")
    pb = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=HUGE_WINDOW, name="pb-open")
    pb_open = cast(Call, pb(f))
    with contextlib.suppress(ValueError, pybreaker.CircuitBreakerError):
        pb.call(fail)
    if pb.current_state != pybreaker.STATE_OPEN:
        raise RuntimeError("pybreaker did not open")
    progress(f"group 1c: caller isolation, open circuit rejection (N={n}, {rounds} rounds x {reps})")
    res = run_rounds(
        "open",
        {
            "bare": timed_catching(f, Exception, n),
            "breaker": timed_catching(b_open, breaker.CircuitOpenError, n),
            "circuitbreaker": timed_catching(cb_open, circuitbreaker.CircuitBreakerError, n),
            "pybreaker": timed_catching(pb_open, pybreaker.CircuitBreakerError, n),
        },
        rounds,
        reps,
        rng,
    )
    show_times("open", res)
    rows.append(
        ratio_row(
            "caller.open",
            "1c open circuit, rejection caught: overhead / faster peer's overhead",
            res,
            vs_faster_peer,
            0.6,
        )
    )
    return rows


class Observers:
    """Every observer at once, as a service runs them: a state-change listener, the Prometheus collector scraped and
    the Hystrix stream served and read, each every 0.5 s, by threads of this benchmark (they take their share of
    the one CPU the benchmark is pinned to, as they would in a service)."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.changes = 0
        self.scrapes = 0
        self.stream_bytes = 0
        self.first_bytes = b""

    def __enter__(self) -> Observers:
        breaker.on_state_change(self.listener)
        registry = prometheus_client.CollectorRegistry()
        breaker.prometheus.register(registry)
        self.server = breaker.stream.serve("127.0.0.1", 0, block=False, interval=0.5)
        self.threads = [
            threading.Thread(target=self.scrape, args=(registry,), name="bench-scrape", daemon=True),
            threading.Thread(target=self.read_stream, name="bench-stream-reader", daemon=True),
        ]
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.server.close()
        for thread in self.threads:
            thread.join(10)
        breaker.remove_state_listener(self.listener)

    def listener(self, name: str, old: breaker.State, new: breaker.State) -> None:
        self.changes += 1

    def wait_running(self) -> None:
        """Wait until a scrape was made and a stream message read (so that even a quick run measures them)."""
        deadline = perf_counter() + 10
        while not (self.scrapes and b'"HystrixCommand"' in self.first_bytes):
            if perf_counter() > deadline:
                raise RuntimeError("the observers did not start")
            time.sleep(0.05)

    def scrape(self, registry: prometheus_client.CollectorRegistry) -> None:
        while not self.stop.wait(0.5):
            prometheus_client.generate_latest(registry)
            self.scrapes += 1

    def read_stream(self) -> None:
        import http.client

        connection = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=10)
        try:
            connection.request("GET", "/hystrix.stream")
            response = connection.getresponse()
            while not self.stop.is_set():
                chunk = response.read1(65536)
                if not chunk:
                    break
                self.stream_bytes += len(chunk)
                if len(self.first_bytes) < 65536:
                    self.first_bytes += chunk
        except OSError:
            pass  # the server closed the stream at the end
        finally:
            connection.close()


def group_observed(sizes: Sizes, rng: random.Random) -> list[Row]:
    """Row group 1f/1g: the caller-isolation success path with every observer running, and with a collector."""
    n, rounds, reps = sizes.single_n, sizes.single_rounds, sizes.single_reps
    reset_breaker()
    breaker.configure_command("c-observed", caller_config())
    breaker.configure_command("c-collected", caller_config())
    b_observed = breaker.command("c-observed")(f)
    b_collected = breaker.command("c-collected")(f)
    cb_f = cast(Call, circuitbreaker.CircuitBreaker(failure_threshold=HUGE, name="cb-observed")(f))
    rows: list[Row] = []
    with Observers() as observers, breaker.statsd.StatsdCollector("127.0.0.1", 9, flush_interval=0.5) as statsd:
        breaker.register_collector(lambda name: statsd.factory(name) if name == "c-collected" else None)
        b_observed()  # the circuits exist: the stream and the scrapes now include them
        b_collected()
        observers.wait_running()
        progress(f"group 1f: caller isolation, success, every observer running (N={n}, {rounds} rounds x {reps})")
        res = run_rounds(
            "observed",
            {
                "bare": timed_calls(f, n),
                "breaker": timed_calls(b_observed, n),
                "breaker_collected": timed_calls(b_collected, n),
                "circuitbreaker": timed_calls(cb_f, n),
            },
            rounds,
            reps,
            rng,
        )
        show_times("observed", res)
        progress(
            f"  observers: {observers.scrapes} scrapes, {observers.stream_bytes} stream bytes, "
            f"{statsd.statistics().lines} statsd lines"
        )
        if not (observers.scrapes and observers.stream_bytes):
            raise RuntimeError("the observers did not run: the figures would not show their cost")

    def over(key: str) -> Callable[[Round], float]:
        return lambda r: (r[key] - r["bare"]) / (r["circuitbreaker"] - r["bare"])

    rows.append(
        ratio_row(
            "caller.success.observed",
            "1f caller isolation, success, with a listener, Prometheus scraped and the stream read every 0.5 s: "
            "@command overhead / circuitbreaker overhead",
            res,
            over("breaker"),
            0.8,
        )
    )
    rows.append(
        ratio_row(
            "caller.success.collector",
            "1g caller isolation, success, reported to a collector (StatsD): @command overhead / circuitbreaker "
            "overhead",
            res,
            over("breaker_collected"),
            None,
        )
    )
    return rows


class HandOff:
    """The floor of a cross-thread call: one persistent worker reading a SimpleQueue, a fresh Lock per call."""

    def __init__(self, name: str = "bench-floor") -> None:
        self.inbox: queue.SimpleQueue[tuple[Call, threading.Lock] | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._work, name=name, daemon=True)
        self.thread.start()

    def _work(self) -> None:
        inbox = self.inbox
        while True:
            item = inbox.get()
            if item is None:
                return
            fn, lock = item
            fn()
            lock.release()

    def call(self, fn: Call) -> None:
        lock = threading.Lock()
        lock.acquire()
        self.inbox.put((fn, lock))
        lock.acquire()

    def close(self) -> None:
        self.inbox.put(None)
        self.thread.join()


Affinity = frozenset[int]
ThreadMode = Literal["pinned", "unpinned"]
WORKER_PREFIX = "breaker-worker-"  # the names breaker's pool gives its worker threads


def current_affinity() -> Affinity | None:
    """The CPUs the calling thread may run on (on Linux ``sched_getaffinity(0)`` is per thread); None: unknown."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    return frozenset(os.sched_getaffinity(0))


def can_pin() -> bool:
    return hasattr(os, "sched_setaffinity") and hasattr(os, "sched_getaffinity")


def worker_threads() -> list[threading.Thread]:
    """breaker's worker threads alive now."""
    return [thread for thread in threading.enumerate() if thread.name.startswith(WORKER_PREFIX)]


def retire_workers(old: set[str]) -> None:
    """After `breaker.flush`: wait until the pool has no thread left and none of the ``old`` workers is alive."""
    pool = breaker._registry.current.pool
    deadline = perf_counter() + 10
    while pool.threads or old & {thread.name for thread in worker_threads()}:
        if perf_counter() > deadline:
            raise RuntimeError(f"group 2: breaker's idle workers did not exit after flush() ({pool!r})")
        time.sleep(0.01)


def where() -> tuple[str, Affinity | None]:
    """Run on a thread: its name and the CPUs it may run on."""
    return threading.current_thread().name, current_affinity()


def check_placement(
    mode: ThreadMode, cpus: Affinity | None, old: set[str], floor: HandOff, executor: ThreadPoolExecutor
) -> str:
    """Every thread of the group is new for this mode and (when affinity is supported) runs on ``cpus``.

    One probe call through each contender reports the thread that ran it: breaker's worker must be one the pool
    started after this mode's `flush` (a name it never had before), and its affinity, the floor's and the executor's
    worker's and the caller's must all be ``cpus``.
    """
    seen: list[tuple[str, Affinity | None]] = []
    placed = {
        "caller": where(),
        "breaker worker": breaker.do("t", where),
        "executor worker": executor.submit(where).result(),
    }
    floor.call(lambda: seen.append(where()))
    placed["floor worker"] = seen[0]
    worker = placed["breaker worker"][0]
    if not worker.startswith(WORKER_PREFIX) or worker in old:
        raise RuntimeError(f"group 2 {mode}: breaker ran the call on {worker!r}, not a new worker (old: {old})")
    if cpus is not None:
        wrong = {who: affinity for who, (_, affinity) in placed.items() if affinity != cpus}
        if wrong:
            raise RuntimeError(f"group 2 {mode}: threads not on CPUs {sorted(cpus)}: {wrong}")
    return ", ".join(f"{who} {name}" for who, (name, _) in placed.items())


def check_workers_after(mode: ThreadMode, cpus: Affinity | None, old: set[str]) -> int:
    """After the rounds: every breaker worker alive is new and on ``cpus``; how many there are."""
    workers = worker_threads()
    for thread in workers:
        if thread.name in old:
            raise RuntimeError(f"group 2 {mode}: an old worker ({thread.name}) ran calls")
        if cpus is not None and thread.native_id is not None:
            try:
                affinity = frozenset(os.sched_getaffinity(thread.native_id))
            except ProcessLookupError:
                continue  # it exited meanwhile
            if affinity != cpus:
                raise RuntimeError(f"group 2 {mode}: worker {thread.name} on CPUs {sorted(affinity)}")
    return len(workers)


def thread_single_mode(sizes: Sizes, rng: random.Random, mode: ThreadMode, cpus: Affinity | None) -> list[Round]:
    """Group 2 in one mode: the caller set to ``cpus`` (None: left as it is), then breaker's workers (after a flush),
    the floor's worker and the executor's worker all started afresh from it, so that they inherit its affinity."""
    n, rounds, reps = sizes.thread_n, sizes.thread_rounds, sizes.thread_reps
    old = {thread.name for thread in worker_threads()}
    if cpus is not None:
        os.sched_setaffinity(0, cpus)
    reset_breaker()  # flush(): the idle workers exit; the next call starts a new one, which inherits the affinity
    retire_workers(old)
    breaker.configure_command("t", breaker.CommandConfig())  # the built-in defaults: isolation="thread"
    floor = HandOff(f"bench-floor-{mode}")
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"bench-executor-{mode}")

    def b_do() -> int:
        return breaker.do("t", f)

    def floor_call() -> None:
        floor.call(f)

    def executor_call() -> int:
        return executor.submit(f).result()

    cpu_text = "CPUs as the OS places them" if cpus is None else f"CPUs {sorted(cpus)}"
    progress(f"group 2 {mode}: thread isolation, one caller, {cpu_text} (N={n}, {rounds} rounds x {reps})")
    try:
        progress(f"  {mode}: threads {check_placement(mode, cpus, old, floor, executor)}")
        res = run_rounds(
            f"thread {mode}",
            {
                "breaker_do": timed_calls(b_do, n),
                "handoff_floor": timed_calls(floor_call, n),
                "executor": timed_calls(executor_call, n),
            },
            rounds,
            reps,
            rng,
        )
        workers = check_workers_after(mode, cpus, old)
    finally:
        floor.close()
        executor.shutdown()
    progress(f"  {mode}: {workers} breaker worker(s) ran the calls")
    show_times(f"thread {mode}", res)
    return res


def group_thread_single(sizes: Sizes, rng: random.Random, usable: Affinity | None) -> list[Row]:
    """Row group 2: thread isolation, one caller: breaker.do() vs the raw hand-off floor and a 1-worker executor.

    Measured twice in the run, whatever ``--no-pin`` says: pinned (the caller and every worker on one CPU), then
    unpinned (all of ``usable``, the CPUs the process could use at start). The affinity the rest of the script runs
    with is restored afterwards. Without ``sched_setaffinity`` the pinned rows are skipped, with a note.
    """
    targets = {"vs_floor": 1.15, "vs_executor": 0.8}
    unpinned_targets = {"vs_floor": 1.3, "vs_executor": 0.8}
    names = {
        "vs_floor": "thread isolation, success: breaker.do() / raw hand-off floor (SimpleQueue + Lock)",
        "vs_executor": "thread isolation, success: breaker.do() / ThreadPoolExecutor(1).submit().result()",
    }
    labels = {"vs_floor": "2a", "vs_executor": "2b"}
    peers = {"vs_floor": "handoff_floor", "vs_executor": "executor"}
    restore = current_affinity() if can_pin() else None
    results: dict[ThreadMode, list[Round]] = {}
    try:
        if can_pin() and usable is not None:
            results["pinned"] = thread_single_mode(sizes, rng, "pinned", frozenset({min(usable)}))
            results["unpinned"] = thread_single_mode(sizes, rng, "unpinned", usable)
        else:
            progress("group 2 pinned: skipped, this platform cannot set a thread's CPU affinity")
            results["unpinned"] = thread_single_mode(sizes, rng, "unpinned", None)
    finally:
        if restore is not None:
            os.sched_setaffinity(0, restore)
        breaker.flush()  # the mode's workers leave: the next group's start afresh from the restored affinity

    def per_round(peer: str) -> Callable[[Round], float]:
        return lambda r: r["breaker_do"] / r[peer]

    modes: tuple[ThreadMode, ...] = ("pinned", "unpinned")
    where_text = {"pinned": "every thread on one CPU", "unpinned": "all usable CPUs"}
    rows: list[Row] = []
    for key in ("vs_floor", "vs_executor"):
        for mode in modes:
            target = (targets if mode == "pinned" else unpinned_targets)[key]
            name = f"{labels[key]} {mode} ({where_text[mode]}): {names[key]}"
            res = results.get(mode)
            if res is None:
                rows.append(
                    skipped_row(f"thread.{mode}.{key}", name, target, "os.sched_setaffinity is not available here")
                )
                continue
            rows.append(ratio_row(f"thread.{mode}.{key}", name, res, per_round(peers[key]), target))
    return rows


def group_sleep_load(sizes: Sizes, rng: random.Random) -> list[Row]:
    """Row group 3: 8 threads x 1 ms blocking calls through one command, wall time vs the same threads bare."""
    calls, rounds = sizes.sleep_calls, sizes.sleep_rounds
    reset_breaker()
    breaker.configure_command("s-caller", caller_config(max_concurrent_requests=2 * THREADS))
    breaker.configure_command(
        "s-thread", breaker.CommandConfig(request_volume_threshold=HUGE, max_concurrent_requests=2 * THREADS)
    )
    pb_sleep = cast(Call, pybreaker.CircuitBreaker(fail_max=HUGE, name="pb-sleep")(sleep_1ms))

    def b_caller() -> None:
        breaker.do("s-caller", sleep_1ms)

    def b_thread() -> None:
        breaker.do("s-thread", sleep_1ms)

    progress(f"group 3: {THREADS} threads x {calls} calls of sleep(1 ms) ({rounds} rounds)")
    res = run_rounds(
        "sleep",
        {
            "bare": timed_threads(sleep_1ms, THREADS, calls),
            "breaker_caller": timed_threads(b_caller, THREADS, calls),
            "breaker_thread": timed_threads(b_thread, THREADS, calls),
            "pybreaker": timed_threads(pb_sleep, THREADS, calls),
        },
        rounds,
        1,
        rng,
    )
    show_times("sleep", res, unit="ms wall", scale=1e3)
    for name in ("s-caller", "s-thread"):
        stats = breaker.get_circuit(name)[0].statistics()
        if stats.counts["rejected"] or stats.counts["timeout"]:
            raise RuntimeError(f"group 3: {name} rejected or timed out calls: {dict(stats.counts)}")
    return [
        ratio_row(
            "load.sleep.caller",
            f"3 {THREADS} threads x 1 ms calls, caller isolation (headline): wall / bare wall",
            res,
            lambda r: r["breaker_caller"] / r["bare"],
            1.1,
        ),
        ratio_row(
            "load.sleep.thread",
            f"3 {THREADS} threads x 1 ms calls, thread isolation (headline): wall / bare wall",
            res,
            lambda r: r["breaker_thread"] / r["bare"],
            1.1,
        ),
        ratio_row(
            "load.sleep.pybreaker",
            f"3 {THREADS} threads x 1 ms calls, pybreaker (serialises calls): wall / bare wall",
            res,
            lambda r: r["pybreaker"] / r["bare"],
            None,
        ),
    ]


def group_trivial_load(sizes: Sizes, rng: random.Random) -> list[Row]:
    """Row group 4: 8 threads x trivial calls through one command vs the same threads bare (informational)."""
    calls, thread_calls, rounds = sizes.trivial_calls, sizes.trivial_thread_calls, sizes.trivial_rounds
    reset_breaker()
    breaker.configure_command("v-caller", caller_config(max_concurrent_requests=2 * THREADS))
    breaker.configure_command(
        "v-thread", breaker.CommandConfig(request_volume_threshold=HUGE, max_concurrent_requests=2 * THREADS)
    )

    def b_caller() -> int:
        return breaker.do("v-caller", f)

    def b_thread() -> int:
        return breaker.do("v-thread", f)

    progress(
        f"group 4: {THREADS} threads x trivial calls (caller N={calls}, thread N={thread_calls} per thread, "
        f"{rounds} rounds)"
    )
    res = run_rounds(
        "trivial",
        {
            "bare": timed_threads(f, THREADS, calls),
            "breaker_caller": timed_threads(b_caller, THREADS, calls),
            "bare_small": timed_threads(f, THREADS, thread_calls),
            "breaker_thread": timed_threads(b_thread, THREADS, thread_calls),
        },
        rounds,
        1,
        rng,
    )
    show_times("trivial", res, unit="ms wall", scale=1e3)
    for name in ("v-caller", "v-thread"):
        stats = breaker.get_circuit(name)[0].statistics()
        if stats.counts["rejected"] or stats.counts["timeout"]:
            raise RuntimeError(f"group 4: {name} rejected or timed out calls: {dict(stats.counts)}")
    return [
        ratio_row(
            "load.trivial.caller",
            f"4 {THREADS} threads x {calls:,} trivial calls, caller isolation: wall / bare wall",
            res,
            lambda r: r["breaker_caller"] / r["bare"],
            None,
        ),
        ratio_row(
            "load.trivial.thread",
            f"4 {THREADS} threads x {thread_calls:,} trivial calls, thread isolation: wall / bare wall",
            res,
            lambda r: r["breaker_thread"] / r["bare_small"],
            None,
        ),
    ]


# -- half-open stampede -----------------------------------------------------------------------------------------

STAMPEDE_WINDOW = 0.05  # seconds of sleep window
STAMPEDE_WAIT = 0.08  # seconds slept after tripping: past the window
DEPENDENCY_TIME = 0.005  # the failing dependency takes this long, so the other threads arrive while it runs


class Dependency:
    """A failing dependency that counts the calls reaching it."""

    def __init__(self) -> None:
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self) -> int:
        with self._lock:
            self.calls += 1
        time.sleep(DEPENDENCY_TIME)
        raise ValueError("dependency down")


def stampede(wrap: Callable[[Dependency], Call], errors: tuple[type[BaseException], ...]) -> int:
    """Release THREADS threads by one barrier into ``wrap(dependency)()``; how many reached the dependency."""
    dependency = Dependency()
    call = wrap(dependency)

    def body(barrier: threading.Barrier) -> tuple[float, float]:
        barrier.wait()
        start = perf_counter()
        with contextlib.suppress(*errors):
            call()
        return start, perf_counter()

    run_threads(THREADS, body)
    return dependency.calls


def stampede_breaker(isolation: Literal["thread", "caller"], rep: int) -> int:
    name = f"stampede-{isolation}-{rep}"
    breaker.flush()
    breaker.configure_command(
        name,
        breaker.CommandConfig(
            isolation=isolation,
            request_volume_threshold=1,
            sleep_window=STAMPEDE_WINDOW,
            max_concurrent_requests=2 * THREADS,
        ),
    )
    trip_breaker(name)
    time.sleep(STAMPEDE_WAIT)

    def wrap(dependency: Dependency) -> Call:
        return lambda: breaker.do(name, dependency)

    return stampede(wrap, (ValueError, breaker.CircuitError))


def stampede_circuitbreaker(rep: int) -> int:
    cb = circuitbreaker.CircuitBreaker(failure_threshold=1, recovery_timeout=STAMPEDE_WINDOW, name=f"cb-stampede-{rep}")
    with contextlib.suppress(ValueError):
        cb.call(fail)
    if not cb.opened:
        raise RuntimeError("circuitbreaker did not open")
    time.sleep(STAMPEDE_WAIT)
    return stampede(lambda dep: cast(Call, cb(dep)), (ValueError, circuitbreaker.CircuitBreakerError))


def stampede_pybreaker(rep: int) -> int:
    pb = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=STAMPEDE_WINDOW, name=f"pb-stampede-{rep}")
    with contextlib.suppress(ValueError, pybreaker.CircuitBreakerError):
        pb.call(fail)
    if pb.current_state != pybreaker.STATE_OPEN:
        raise RuntimeError("pybreaker did not open")
    time.sleep(STAMPEDE_WAIT)

    def wrap(dependency: Dependency) -> Call:
        return lambda: pb.call(dependency)

    return stampede(wrap, (ValueError, pybreaker.CircuitBreakerError))


def group_stampede(sizes: Sizes, rng: random.Random) -> list[Row]:
    """Row group 5: how many of 8 simultaneous calls reach a failing dependency once the sleep window is over."""
    reps = sizes.stampede_reps
    runs: dict[str, Callable[[int], int]] = {
        "breaker_thread": lambda rep: stampede_breaker("thread", rep),
        "breaker_caller": lambda rep: stampede_breaker("caller", rep),
        "pybreaker": stampede_pybreaker,
        "circuitbreaker": stampede_circuitbreaker,
    }
    counts: dict[str, list[int]] = {key: [] for key in runs}
    progress(f"group 5: half-open stampede, {THREADS} threads, {reps} repetitions")
    for rep in range(reps):
        order = list(runs)
        rng.shuffle(order)
        for key in order:
            counts[key].append(runs[key](rep))
    breaker.flush()
    progress("  stampede calls per repetition: " + "; ".join(f"{k}={v}" for k, v in counts.items()))
    labels = {
        "breaker_thread": ("5 half-open stampede, breaker thread isolation: calls reaching dependency", 1),
        "breaker_caller": ("5 half-open stampede, breaker caller isolation: calls reaching dependency", 1),
        "pybreaker": ("5 half-open stampede, pybreaker: calls reaching dependency", None),
        "circuitbreaker": ("5 half-open stampede, circuitbreaker: calls reaching dependency", None),
    }
    rows = []
    for key, (name, want) in labels.items():
        values = counts[key]
        spread: dict[str, Any] = {
            "min": min(values),
            "max": max(values),
            "distribution": dict(collections.Counter(values)),
        }
        rows.append(
            Row(
                f"stampede.{key}",
                name,
                statistics.median(values),
                spread,
                None if want is None else f"max == {want}",
                None if want is None else (max(values) == want and min(values) == want),
                len(values),
            )
        )
    return rows


# -- report -----------------------------------------------------------------------------------------------------


def version_of(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def environment(args: argparse.Namespace) -> dict[str, str]:
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "n/a"
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "cpus": f"{os.cpu_count()} (usable: {affinity})",
        "load average at start": load,
        "breaker": getattr(breaker, "__version__", version_of("breaker")),
        "pybreaker": version_of("pybreaker"),
        "circuitbreaker": version_of("circuitbreaker"),
        "mode": "quick" if args.quick else "full",
        "switch interval": f"{sys.getswitchinterval() * 1e3:g} ms",
    }


def render(env: Mapping[str, str], rows: Sequence[Row], seconds: float) -> str:
    lines = [f"# breaker core benchmark ({env['mode']} run)", ""]
    lines += [f"- {key}: {value}" for key, value in env.items() if key != "mode"]
    lines.append(f"- run time: {seconds:.1f} s")
    lines.append(
        "- every figure is a ratio measured within one round; the value is the median over rounds "
        "(stampede rows: the worst of the repetitions)"
    )
    lines.append("")
    lines.append("| Measurement | Median ratio | Spread over rounds | Rounds | Target | Result |")
    lines.append("|---|---:|---|---:|---|---|")
    for row in rows:
        lines.append(
            f"| {row.name} | {row.value_text()} | {row.spread_text()} | {row.rounds} | "
            f"{row.target or '-'} | {row.result_text()} |"
        )
    failed = [row.key for row in rows if row.passed is False]
    skipped = [row.key for row in rows if row.skipped]
    lines.append("")
    lines.append(f"Targets met: {sum(1 for r in rows if r.passed)}/{sum(1 for r in rows if r.passed is not None)}")
    if failed:
        lines.append(f"Failed: {', '.join(failed)}")
    if skipped:
        lines.append(f"Skipped (not measured here, see the rows): {', '.join(skipped)}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="few rounds, small N: a smoke run of a few seconds")
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON to PATH")
    parser.add_argument("--seed", type=int, default=None, help="seed of the shuffled orders (default: random)")
    parser.add_argument(
        "--no-pin",
        action="store_true",
        help="do not pin the process to one CPU (thread hand-offs then vary with where the OS places threads); "
        "group 2 is measured both pinned and unpinned either way",
    )
    args = parser.parse_args(argv)
    usable = current_affinity() if can_pin() else None  # before pinning: group 2's unpinned mode runs on all of them
    pinned = "no (--no-pin)" if args.no_pin else pin_to_one_cpu()
    sizes = QUICK if args.quick else FULL
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    rng = random.Random(seed)
    env = environment(args)
    env["seed"] = str(seed)
    env["pinned to one CPU"] = f"{pinned}; group 2 is measured both ways, see the next line"
    env["group 2 (thread isolation) CPUs"] = (
        "pinned rows skipped (no sched_setaffinity here); unpinned rows where the OS places the threads"
        if usable is None
        else f"pinned rows: CPU {min(usable)} for every thread; unpinned rows: CPUs {sorted(usable)}"
    )
    logging_off()
    started = perf_counter()
    rows: list[Row] = []
    groups: list[Callable[[Sizes, random.Random], list[Row]]] = [
        group_caller_single,
        group_observed,
        lambda group_sizes, group_rng: group_thread_single(group_sizes, group_rng, usable),
        group_sleep_load,
        group_trivial_load,
        group_stampede,
    ]
    for group in groups:
        rows += group(sizes, rng)
    reset_breaker()
    seconds = perf_counter() - started
    progress(f"done in {seconds:.1f} s")
    print(render(env, rows, seconds))
    if args.json:
        payload = {
            "environment": env,
            "run_seconds": seconds,
            "rows": [
                {
                    "key": row.key,
                    "name": row.name,
                    "median": None if row.skipped else row.median,
                    "spread": row.spread,
                    "rounds": row.rounds,
                    "target": row.target,
                    "pass": row.passed,
                    "skipped": row.skipped or None,
                }
                for row in rows
            ],
        }
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(payload, out, indent=2, default=str)
            out.write("\n")
    return 0


def pin_to_one_cpu() -> str:
    """Pin this process, and the threads it will start, to one CPU.

    On a shared 2-core machine a thread hand-off costs 13 us or 40 us depending on which cores the OS happened to
    give the two threads when they started, and that stays so for the threads' life: in one run the raw hand-off
    floor and `breaker.do()` compared anywhere from 0.3x to 3.4x. On one CPU every contender's threads are placed
    alike, so the ratios compare code, not placement luck. (Group 2 also measures the unpinned case on purpose, in
    both modes whatever this does: see `group_thread_single`.)
    """
    if not hasattr(os, "sched_setaffinity"):
        return "no (not supported here)"
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return f"yes, CPU {cpu} (threads started from here inherit it)"


def logging_off() -> None:
    """The breaker logs each trip (a warning): the stampede group trips dozens of circuits on purpose."""
    import logging

    logging.getLogger("breaker").setLevel(logging.ERROR)
    logging.getLogger("pybreaker").setLevel(logging.ERROR)


if __name__ == "__main__":
    sys.exit(main())
