"""Latency: the histograms over the latency window (`latency_execute`, `latency_total`) and since creation
(`run_durations`, `total_durations`), on every path.

Durations come from a `FakeClock` that the run (and the fallback) advance by known amounts, so the exact figures
are known: the test computes them from the same clock readings the library takes. Each percentile must then be
within the width of the histogram bucket that holds the exact value, and the mean within the mean half-width of
the durations' buckets. Thread isolation is also checked on the real clock, where only orderings that hold
whatever the timing are asserted.
"""

from __future__ import annotations

import bisect
import collections
import contextlib
import gc
import itertools
import math
import random
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from observability_support import (
    FALLBACK,
    NAME,
    VALUE,
    BadInput,
    Boom,
    Path,
    bucket_bounds,
    bucket_width,
    paths,
    settle,
    stats,
)

import breaker
from breaker import BOUNDS, PERCENTILES, CircuitOpenError, Histogram, LatencyStatistics, MaxConcurrencyError
from breaker.testing import FakeClock, isolated_registry

SLACK = 1e-12  # float noise in clock differences
NEVER = 10**9  # a request volume threshold out of reach: the circuit never trips


def advancing(
    clock: FakeClock, seconds: float, measured: list[float], *, error: Exception | None = None
) -> Callable[[], str]:
    """A run that takes ``seconds`` on ``clock`` (noting the duration as the clock measured it), then returns VALUE
    or raises ``error``."""

    def run() -> str:
        before = clock()
        clock.advance(seconds)
        measured.append(clock() - before)
        if error is not None:
            raise error
        return VALUE

    return run


def check_latency(latency: LatencyStatistics, exact: list[float], what: str) -> None:
    """``latency`` describes ``exact``: the count, each percentile within its bucket's width, the mean within the
    mean half-width."""
    assert latency.count == len(exact), what
    assert set(latency.percentiles) == set(PERCENTILES), what
    ordered = sorted(exact)
    n = len(ordered)
    for p in PERCENTILES:
        target = p / 100 * n  # the rank the library looks for, as it computes it
        value = ordered[max(1, math.ceil(target)) - 1]
        reported = latency.percentiles[p]
        assert abs(reported - value) <= bucket_width(value) + SLACK, (
            f"{what}: p{p:g} is {reported!r}, exact {value!r}: further apart than the bucket width "
            f"{bucket_width(value)!r}"
        )
    mean = sum(exact) / n
    half_widths = sum(bucket_width(x) for x in exact) / n / 2
    assert abs(latency.mean - mean) <= half_widths + SLACK, f"{what}: mean {latency.mean!r}, exact {mean!r}"


def check_histogram(histogram: Histogram, exact: list[float], what: str) -> None:
    """``histogram`` counts each of ``exact`` in the bucket (BOUNDS[i - 1], BOUNDS[i]]."""
    by_bucket = collections.Counter(bisect.bisect_left(BOUNDS, x) for x in exact)
    expected = tuple((BOUNDS[i] if i < len(BOUNDS) else math.inf, by_bucket[i]) for i in sorted(by_bucket))
    assert histogram.buckets == expected, what
    assert histogram.count == len(exact), what
    half_widths = sum(bucket_width(x) for x in exact if x <= BOUNDS[-1]) / 2
    assert abs(histogram.sum - sum(exact)) <= half_widths + sum(x - BOUNDS[-1] for x in exact if x > BOUNDS[-1]) + SLACK
    for bound in BOUNDS:
        assert histogram.count_at_most(bound) == sum(1 for x in exact if x <= bound), f"{what}: at most {bound}"


def durations(n: int, seed: int) -> list[float]:
    """``n`` durations spread log-uniformly from 0.1 ms to about 3 s."""
    rng = random.Random(seed)
    return [10 ** rng.uniform(-4.0, 0.5) for _ in range(n)]


# -- the bounds -----------------------------------------------------------------------------------------------------


def test_bounds_are_the_e24_series_with_2_5_and_5_in_every_decade_from_1us_to_100s() -> None:
    """BOUNDS run from 1 us to 100 s, 26 per decade (the E24 series plus 2.5 and 5), with Prometheus's defaults."""
    assert BOUNDS[0] == 1e-6
    assert BOUNDS[-1] == 100.0
    assert len(BOUNDS) == 26 * 8 + 1
    assert all(a < b for a, b in itertools.pairwise(BOUNDS))
    e24: tuple[float, ...] = (1.0, 1.1, 1.2, 1.3, 1.5, 1.6, 1.8, 2.0, 2.2, 2.4, 2.7, 3.0, 3.3, 3.6, 3.9, 4.3, 4.7)
    e24 += (5.1, 5.6, 6.2, 6.8, 7.5, 8.2, 9.1)
    for decade in range(-6, 2):
        for m in (*e24, 2.5, 5.0):
            assert float(f"{m}e{decade}") in BOUNDS
    prometheus = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
    assert set(prometheus) <= set(BOUNDS)
    assert PERCENTILES == (0.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 100.0)


def test_neighbouring_bounds_are_at_most_16_percent_apart_as_documented() -> None:
    """The docs promise neighbouring bounds at most 16% apart (1.3 to 1.5), so the sum's estimate is within 8%."""
    ratios = {(a, b): b / a for a, b in itertools.pairwise(BOUNDS)}
    widest = max(ratios, key=ratios.__getitem__)
    assert ratios[widest] <= 1.16, f"{widest[0]!r} -> {widest[1]!r} differ by {ratios[widest] - 1:.1%}"


def test_histogram_sum_is_within_the_documented_8_percent(clock: FakeClock) -> None:
    """Histogram.sum, estimated from bucket midpoints, is within 8% of the exact sum (as its docstring says)."""
    breaker.configure_command(NAME, breaker.CommandConfig(isolation="caller", timeout=math.inf))
    measured: list[float] = []
    for _ in range(10):
        breaker.do(NAME, advancing(clock, 0.001301, measured))  # just above the bound 1.3 ms; the next is 1.5 ms
    histogram = stats().run_durations
    exact = sum(measured)
    assert abs(histogram.sum - exact) <= 0.08 * exact, f"sum {histogram.sum!r}, exact {exact!r}"


# -- accuracy -------------------------------------------------------------------------------------------------------


@paths()
def test_percentiles_and_mean_are_within_a_bucket_width_of_the_exact_values(path: Path, clock: FakeClock) -> None:
    """For a known spread of run durations, every percentile and the mean are within a bucket width of the exact."""
    path.configure(timeout=math.inf, latency_window=3600.0)  # every call stays in the window
    measured: list[float] = []
    for seconds in durations(300, seed=5):
        assert path.call(advancing(clock, seconds, measured)) == VALUE
    s = stats()
    check_latency(s.latency_execute, measured, f"{path.id}: execute")
    check_latency(s.latency_total, measured, f"{path.id}: total (no fallback ran: the run's duration)")
    check_histogram(s.run_durations, measured, f"{path.id}: run durations")
    check_histogram(s.total_durations, measured, f"{path.id}: total durations")


def test_a_single_duration_reads_as_its_bucket(clock: FakeClock) -> None:
    """One duration: every percentile lies in its bucket, rising with p, from the lower bound to the upper one."""
    breaker.configure_command(NAME, breaker.CommandConfig(isolation="caller", timeout=math.inf))
    breaker.do(NAME, lambda: clock.advance(0.0042))
    latency = stats().latency_execute
    lower, upper = bucket_bounds(0.0042)
    assert (lower, upper) == (0.0039, 0.0043)
    values = [latency.percentiles[p] for p in PERCENTILES]
    assert values == sorted(values)
    assert values[0] == pytest.approx(lower)
    assert values[-1] == pytest.approx(upper)
    assert lower <= latency.mean <= upper
    assert latency.percentiles[99] == latency.percentiles[99.0]  # indexable by int or float


def test_durations_past_100_seconds_count_in_the_open_bucket(clock: FakeClock) -> None:
    """A run longer than BOUNDS[-1] counts in the last bucket, whose upper bound is infinity."""
    breaker.configure_command(NAME, breaker.CommandConfig(isolation="caller", timeout=math.inf, latency_window=3600.0))
    breaker.do(NAME, lambda: clock.advance(150.0))
    s = stats()
    assert s.run_durations.buckets == ((math.inf, 1),)
    assert s.run_durations.count_at_most(BOUNDS[-1]) == 0
    assert s.latency_execute.count == 1
    assert s.latency_execute.percentiles[100] >= BOUNDS[-1]


@paths()
def test_fallback_time_counts_in_total_latency_only(path: Path, clock: FakeClock) -> None:
    """A run of 10 ms that fails, then a fallback of 20 ms: execute latency is 10 ms, total latency 30 ms."""
    path.configure(timeout=math.inf, request_volume_threshold=NEVER)
    measured: list[float] = []

    def fallback(error: Exception) -> str:
        assert isinstance(error, Boom)
        clock.advance(0.020)
        return FALLBACK

    for _ in range(20):
        assert path.call(advancing(clock, 0.010, measured, error=Boom()), fallback) == FALLBACK
    s = stats()
    assert s.cumulative["failure"] == s.cumulative["fallback-success"] == 20
    check_latency(s.latency_execute, measured, f"{path.id}: execute")
    totals = [x + 0.020 for x in measured]
    check_latency(s.latency_total, totals, f"{path.id}: total")
    check_histogram(s.run_durations, measured, f"{path.id}: run durations")
    check_histogram(s.total_durations, totals, f"{path.id}: total durations")


@paths("do-caller", "do-thread", "do_async")
def test_bad_request_with_a_fallback_configured_counts_its_run_once(path: Path, clock: FakeClock) -> None:
    """A bad request runs no fallback: its run's duration is the call's, counted once in each."""
    path.configure(timeout=math.inf, ignored_exceptions=(BadInput,))
    measured: list[float] = []
    with pytest.raises(BadInput):
        path.call(advancing(clock, 0.010, measured, error=BadInput()), lambda error: FALLBACK)
    s = stats()
    check_latency(s.latency_execute, measured, "execute")
    check_latency(s.latency_total, measured, "total")


@paths("do-caller", "decorator-caller", "do_async", "decorator-async")
@pytest.mark.parametrize("with_fallback", [False, True], ids=["no-fallback", "fallback"])
@pytest.mark.parametrize("run_raises", [False, True], ids=["late-value", "late-error"])
def test_a_run_that_outlasts_its_timeout_counts_one_duration(
    path: Path, with_fallback: bool, run_raises: bool, clock: FakeClock
) -> None:
    """A run past its timeout (judged on the fake clock) is one call: one execute and one total duration."""
    path.configure(timeout=1.0)
    measured: list[float] = []
    run = advancing(clock, 1.5, measured, error=Boom() if run_raises else None)
    if with_fallback:
        assert path.call(run, lambda error: FALLBACK) == FALLBACK
    else:
        with pytest.raises(breaker.CommandTimeoutError):
            path.call(run)
    s = stats()
    assert s.cumulative["timeout"] == 1
    check_latency(s.latency_execute, measured, "execute")
    check_latency(s.latency_total, measured, "total")
    check_histogram(s.run_durations, measured, "run durations")


def test_thread_isolation_timeout_counts_one_duration_per_call_once_the_run_ends() -> None:
    """Timed-out thread-isolated runs (real clock): each call has one total duration, each run one execute one."""
    breaker.configure_command(NAME, breaker.CommandConfig(isolation="thread", timeout=0.02))
    gate = threading.Event()
    try:
        for _ in range(3):
            with pytest.raises(breaker.CommandTimeoutError):
                breaker.do(NAME, gate.wait)
    finally:
        gate.set()
    settle()
    s = stats()
    assert s.latency_total.count == 3
    assert s.latency_execute.count == 3
    assert s.total_durations.count == s.run_durations.count == 3
    assert s.latency_total.percentiles[0] >= 0.02 - 0.01  # the caller waited about its timeout, at least


@pytest.mark.parametrize("way", ["do", "go", "do_async"])
@pytest.mark.parametrize("with_fallback", [False, True], ids=["no-fallback", "fallback"])
def test_on_the_real_clock_total_latency_dominates_execute_latency(way: str, with_fallback: bool) -> None:
    """Real time: every call has one execute and one total duration, and no total percentile is below execute's."""
    import asyncio

    breaker.configure_command(NAME, breaker.CommandConfig(isolation="thread", timeout=math.inf, force_closed=True))
    n = 60

    def run() -> str:
        if with_fallback:
            raise Boom
        return VALUE

    fallback = (lambda error: FALLBACK) if with_fallback else None
    for _ in range(n):
        if way == "do":
            breaker.do(NAME, run, fallback)
        elif way == "go":
            breaker.go(NAME, run, fallback).result(timeout=10)
        else:

            async def arun() -> str:
                await asyncio.sleep(0)
                return run()

            asyncio.run(breaker.do_async(NAME, arun, fallback))
    s = stats()
    execute, total = s.latency_execute, s.latency_total
    assert execute.count == total.count == n
    assert s.run_durations.count == s.total_durations.count == n
    for p in PERCENTILES:
        assert total.percentiles[p] >= execute.percentiles[p], f"p{p:g}: total {total!r} < execute {execute!r}"
    assert total.mean >= execute.mean
    for bound in BOUNDS:  # each call's total is at least its run: the totals' distribution lies to the right
        assert s.total_durations.count_at_most(bound) <= s.run_durations.count_at_most(bound)


# -- calls that never ran -------------------------------------------------------------------------------------------


@paths("do-caller", "do-thread", "go-thread", "do_async", "decorator-async")
@pytest.mark.parametrize("with_fallback", [False, True], ids=["no-fallback", "fallback"])
def test_short_circuited_calls_add_no_latency(path: Path, with_fallback: bool, clock: FakeClock) -> None:
    """Short-circuited calls have no latency, even when their fallback takes time."""
    path.configure(timeout=math.inf)
    measured: list[float] = []
    for _ in range(3):
        path.call(advancing(clock, 0.005, measured))
    path.configure(timeout=math.inf, force_open=True)

    def fallback(error: Exception) -> str:
        assert isinstance(error, CircuitOpenError)
        clock.advance(0.5)
        return FALLBACK

    for _ in range(5):
        if with_fallback:
            assert path.call(advancing(clock, 0.005, measured), fallback) == FALLBACK
        else:
            with pytest.raises(CircuitOpenError):
                path.call(advancing(clock, 0.005, measured))
    s = stats()
    assert s.cumulative["short-circuit"] == 5
    assert len(measured) == 3
    check_latency(s.latency_execute, measured, "execute")
    check_latency(s.latency_total, measured, "total")
    check_histogram(s.total_durations, measured, "total durations")


@paths("do-caller", "do-thread", "go-thread", "do_async")
def test_rejected_calls_add_no_latency(path: Path, clock: FakeClock) -> None:
    """A call that finds no free ticket has no latency, even when its fallback takes time."""
    path.configure(timeout=math.inf, max_concurrent_requests=1)
    gate, started = threading.Event(), threading.Event()
    measured: list[float] = []

    def held() -> str:
        started.set()
        assert gate.wait(10), "the held run was never released"
        return VALUE

    holder = threading.Thread(target=lambda: breaker.do(NAME, held))  # holds the one ticket
    holder.start()
    try:
        assert started.wait(10)

        def fallback(error: Exception) -> str:
            assert isinstance(error, MaxConcurrencyError)
            clock.advance(0.5)
            return FALLBACK

        for _ in range(4):
            assert path.call(advancing(clock, 0.005, measured), fallback) == FALLBACK
    finally:
        gate.set()
        holder.join(10)
    s = stats()
    assert s.cumulative["rejected"] == 4
    assert measured == []
    assert s.latency_execute.count == s.latency_total.count == 1  # the held call only
    assert s.run_durations.count == s.total_durations.count == 1


# -- the window -----------------------------------------------------------------------------------------------------


@paths("do-caller", "do-thread", "do_async")
def test_latency_window_expires_while_since_creation_histograms_keep_their_counts(path: Path, clock: FakeClock) -> None:
    """Past latency_window the window's latency is empty (zeros); run and total durations keep every count."""
    path.configure(timeout=math.inf)
    measured: list[float] = []
    for seconds in durations(10, seed=9):
        path.call(advancing(clock, seconds, measured))
    clock.advance(breaker.get_settings(NAME).latency_window + 10.1)
    s = stats()
    for latency in (s.latency_execute, s.latency_total):
        assert latency.count == 0
        assert latency.mean == 0.0
        assert set(latency.percentiles.values()) == {0.0}
    check_histogram(s.run_durations, measured, "run durations")
    check_histogram(s.total_durations, measured, "total durations")


@paths("do-caller", "do-thread", "go-thread", "do_async")
def test_first_call_after_an_idle_spell_longer_than_the_latency_window_shows_in_it(
    path: Path, clock: FakeClock
) -> None:
    """A call made after the latency window emptied is in the window's latency (execute and total) at once."""
    path.configure(timeout=math.inf)
    measured: list[float] = []
    path.call(advancing(clock, 0.010, measured))
    clock.advance(120.0)  # two latency windows with no call
    fresh: list[float] = []
    path.call(advancing(clock, 0.020, fresh))
    s = stats()
    check_latency(s.latency_execute, fresh, f"{path.id}: execute, right after the call")
    check_latency(s.latency_total, fresh, f"{path.id}: total, right after the call")
    check_histogram(s.run_durations, measured + fresh, "run durations")


def test_a_call_at_the_start_of_a_latency_bucket_stays_in_the_window_for_the_window(clock: FakeClock) -> None:
    """A call made just after a latency-bucket boundary is still in the window 50 s later (window 60 s of 10 s)."""
    breaker.configure_command(NAME, breaker.CommandConfig(isolation="caller", timeout=math.inf))
    start = clock()
    assert start % 10.0 == 0.0  # the fake clock starts on a bucket boundary: 1000.0
    breaker.do(NAME, lambda: clock.advance(0.001))  # in the latency bucket [1000, 1010)
    clock.advance(10.5 - 0.001)
    late: list[float] = []
    breaker.do(NAME, advancing(clock, 0.002, late))  # at 1010.5: in the latency bucket [1010, 1020)
    clock.advance(50.0)  # 1060.5: the window covers [1010, 1070) on 10 s buckets, so the second call is in it
    s = stats()
    check_latency(s.latency_execute, late, "execute at 1060.5")


def test_a_latency_window_finer_than_the_rolling_buckets_is_refused_or_holds_the_calls_just_made(
    clock: FakeClock,
) -> None:
    """Latency buckets narrower than rolling buckets: refused with a message, or a call made now is in the window."""
    refused: str | None = None
    try:
        breaker.configure_command(
            NAME,
            breaker.CommandConfig(
                isolation="caller",
                timeout=math.inf,
                rolling_window=10.0,
                rolling_buckets=1,
                latency_window=2.0,
                latency_buckets=2,
            ),
        )
    except ValueError as error:
        refused = str(error)
    if refused is not None:  # refused: the message names the rule
        assert "latency_window" in refused
        assert "rolling_window" in refused
        return
    breaker.do(NAME, lambda: None)
    clock.advance(4.0)  # a latency window later, inside the same 10 s rolling bucket
    fresh: list[float] = []
    breaker.do(NAME, advancing(clock, 0.003, fresh))
    check_latency(stats().latency_execute, fresh, "execute, right after the call")


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"latency_window": 30.0, "latency_buckets": 3}, id="latency-window"),
        pytest.param({"rolling_window": 3.0, "rolling_buckets": 30}, id="rolling-window"),
        pytest.param(
            {"latency_window": 30.0, "latency_buckets": 1, "rolling_window": 20.0, "rolling_buckets": 4}, id="both"
        ),
    ],
)
def test_reconfiguring_the_windows_keeps_the_since_creation_histograms(
    change: dict[str, Any], clock: FakeClock
) -> None:
    """Changing latency_window/latency_buckets (or the rolling window) keeps every since-creation duration."""
    breaker.configure_command(NAME, breaker.CommandConfig(isolation="caller", timeout=math.inf))
    measured: list[float] = []
    for seconds in durations(20, seed=11):
        breaker.do(NAME, advancing(clock, seconds, measured))
    breaker.configure_command(NAME, breaker.CommandConfig(isolation="caller", timeout=math.inf, **change))
    s = stats()
    check_histogram(s.run_durations, measured, "run durations after the change")
    check_histogram(s.total_durations, measured, "total durations after the change")
    after: list[float] = []
    for seconds in durations(5, seed=12):
        breaker.do(NAME, advancing(clock, seconds / 10, after))
    s = stats()
    check_histogram(s.run_durations, measured + after, "run durations, calls after the change included")
    assert s.latency_execute.count >= len(after)
    breaker.configure_command(NAME, breaker.CommandConfig(isolation="caller", timeout=math.inf))  # and back
    check_histogram(stats().run_durations, measured + after, "run durations after changing back")


# -- memory ---------------------------------------------------------------------------------------------------------

_NOT_TRACEMALLOC = (tracemalloc.Filter(False, tracemalloc.__file__),)


@contextlib.contextmanager
def tracing() -> Iterator[None]:
    """Trace allocations for the block (unless something traces already: then leave it on)."""
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    try:
        yield
    finally:
        if started:
            tracemalloc.stop()


def held_bytes(before: tracemalloc.Snapshot) -> tuple[int, str]:
    """Bytes allocated since ``before`` and still held, and the top three files, for the message."""
    gc.collect()
    after = tracemalloc.take_snapshot().filter_traces(_NOT_TRACEMALLOC)
    diff = after.compare_to(before, "filename")
    top = "; ".join(f"{stat.traceback[0].filename}: {stat.size_diff:+d} B" for stat in diff[:3])
    return sum(stat.size_diff for stat in diff), top


@pytest.mark.parametrize(
    "calls", [pytest.param(200_000, marks=pytest.mark.slow, id="200k"), pytest.param(40_000, id="40k")]
)
@pytest.mark.timeout(300)  # most calls here cross time buckets (the clock jumps by up to 300 s), under tracemalloc
def test_latency_memory_does_not_grow_with_the_number_of_calls(calls: int, clock: FakeClock) -> None:
    """Calls of widely varying durations (1 us to 300 s): memory held after N/4 calls and after N differs little."""
    breaker.configure_command(
        NAME, breaker.CommandConfig(isolation="caller", timeout=math.inf, request_volume_threshold=NEVER)
    )
    rng = random.Random(3)
    uniform, advance = rng.uniform, clock.advance

    def ok() -> None:
        advance(10 ** uniform(-6.5, 2.5))

    def failing() -> None:
        advance(10 ** uniform(-6.5, 2.5))
        raise Boom

    def fallback(error: Exception) -> None:
        advance(10 ** uniform(-6.5, 0.0))

    def make(n: int) -> None:
        for i in range(n):
            if i % 4:
                breaker.do(NAME, ok)
            else:
                breaker.do(NAME, failing, fallback)
            if i % 10_000 == 0:
                stats()

    make(5_000)  # every histogram bucket in use, the windows turned over many times
    with tracing():
        gc.collect()
        before = tracemalloc.take_snapshot().filter_traces(_NOT_TRACEMALLOC)
        make(calls // 4)
        quarter, _ = held_bytes(before)
        make(calls - calls // 4)
        full, top = held_bytes(before)
    s = stats()
    assert s.run_durations.count == 5_000 + calls
    assert len(s.run_durations.buckets) > 150  # the durations really were spread over the buckets
    assert full - quarter < 16 * 1024, f"{calls // 4} calls held {quarter} B, {calls} held {full} B: {top}"
    assert full < 64 * 1024, f"{calls} calls held {full} B: {top}"


@pytest.mark.parametrize("with_fallback", [False, True], ids=["no-fallback", "fallback"])
def test_an_async_run_cancelled_at_its_timeout_counts_one_duration(with_fallback: bool) -> None:
    """A run that asyncio.timeout cancels (real clock, 20 ms) is one call: one execute and one total duration."""
    import asyncio

    breaker.configure_command(NAME, breaker.CommandConfig(timeout=0.02))

    async def scenario() -> None:
        never = asyncio.Event()
        fallback = (lambda error: FALLBACK) if with_fallback else None
        for _ in range(3):
            if with_fallback:
                assert await breaker.do_async(NAME, never.wait, fallback) == FALLBACK
            else:
                with pytest.raises(breaker.CommandTimeoutError):
                    await breaker.do_async(NAME, never.wait)

    asyncio.run(scenario())
    s = stats()
    assert s.cumulative["timeout"] == 3
    assert s.latency_execute.count == s.latency_total.count == 3
    assert s.run_durations.count == s.total_durations.count == 3


@paths("do-caller", "decorator-caller", "do-thread", "go-thread", "do_async", "decorator-async")
def test_a_fallback_that_reconfigures_the_latency_window_keeps_the_calls_total_duration(
    path: Path, clock: FakeClock
) -> None:
    """A fallback that changes latency_window (user code may): the call still has its run and its total duration."""
    path.configure(timeout=math.inf)
    measured: list[float] = []

    def fallback(error: Exception) -> str:
        path.configure(timeout=math.inf, latency_window=30.0, latency_buckets=3)
        clock.advance(0.020)
        return FALLBACK

    assert path.call(advancing(clock, 0.010, measured, error=Boom()), fallback) == FALLBACK
    s = stats()
    check_histogram(s.run_durations, measured, "run durations")
    check_histogram(s.total_durations, [x + 0.020 for x in measured], "total durations")


@paths("do-caller", "do-thread", "do_async")
@pytest.mark.parametrize("with_fallback", [False, True], ids=["no-fallback", "fallback"])
def test_a_duration_on_or_next_to_a_bound_lands_in_the_bucket_the_bounds_define(
    path: Path, with_fallback: bool
) -> None:
    """A run of exactly BOUNDS[i] seconds counts in (BOUNDS[i - 1], BOUNDS[i]]; one a femtosecond above, in the next.

    (Placement is documented exact except within 1e-16 s above a bound: far below any clock's resolution.)"""
    misplaced: list[tuple[float, float, tuple[tuple[float, int], ...]]] = []
    for bound in BOUNDS:
        for seconds in (bound - 1e-15, bound, bound + 1e-15):
            clock = FakeClock(0.0)  # from 0, the clock measures the duration exactly
            with isolated_registry(clock=clock):
                path.configure(timeout=math.inf)
                measured: list[float] = []
                run = advancing(clock, seconds, measured, error=Boom() if with_fallback else None)
                path.call(run, (lambda error: FALLBACK) if with_fallback else None)
                assert measured == [seconds]
                got = stats().run_durations.buckets
            upper = bucket_bounds(seconds)[1]
            if got != ((upper, 1),):
                misplaced.append((seconds, upper, got))
    assert not misplaced, (
        f"{len(misplaced)} durations in the wrong bucket, e.g. (duration, upper bound, got): {misplaced[:4]}"
    )
