"""The demo's load generator (`breaker._demo.load`) and its flaky HTTP dependency (`breaker._demo.flaky`).

Load: options, request counts, concurrency, the per-worker rate limit, the duration, stop(), the report.
FlakyService: a real server on 127.0.0.1 asked with http.client; its schedule is read on an injected clock.
"""

from __future__ import annotations

import collections
import http.client
import itertools
import json
import math
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from breaker._demo.flaky import FlakyService, Outage
from breaker._demo.load import Load, LoadOptions, Report, Sample
from breaker.testing import FakeClock

WAIT = 5.0  # the bound on every wait for something that should happen promptly
TOLERANCE = 0.001  # slack on the spacing of rate-limited calls (the clock is read twice around a call's start)
NOT_CALLABLE: Any = 42


class Counter:
    """A thread-safe count of calls, with the most that were ever in flight at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls = 0
        self.in_flight = 0
        self.peak = 0

    def enter(self) -> int:
        with self._lock:
            self.calls += 1
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            return self.calls

    def leave(self) -> None:
        with self._lock:
            self.in_flight -= 1


class JumpClock:
    """Real time plus an offset a target can jump forward: a "slow call" without sleeping through it."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.perf_counter() + self.offset

    def jump(self, seconds: float) -> None:
        self.offset += seconds


def worker_name() -> str:
    """A target that labels each call with the worker thread that made it."""
    return threading.current_thread().name


def load_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("breaker-load")]


def by_worker(report: Report) -> dict[str, list[Sample]]:
    """The report's samples grouped by their outcome (a worker's name, see `worker_name`), in start order."""
    groups: dict[str, list[Sample]] = collections.defaultdict(list)
    for sample in report.samples:
        groups[sample.outcome].append(sample)
    return dict(groups)


def run(target: Callable[[], str], options: LoadOptions, **kwargs: Any) -> Report:
    """Start a load, wait (boundedly) for it to end, and return its report."""
    load = Load(target, options, **kwargs).start()
    if not load.wait(WAIT):
        load.stop()
        pytest.fail("the load did not end")
    return load.report()


# -- LoadOptions ----------------------------------------------------------------------------------------------

BAD_OPTIONS = [
    ("requests", 0, ValueError),
    ("requests", -5, ValueError),
    ("requests", True, TypeError),
    ("requests", 10.0, TypeError),
    ("requests", math.inf, TypeError),
    ("requests", "10", TypeError),
    ("concurrency", 0, ValueError),
    ("concurrency", -1, ValueError),
    ("concurrency", True, TypeError),
    ("concurrency", 2.5, TypeError),
    ("concurrency", math.nan, TypeError),
    ("rate", 0, ValueError),
    ("rate", -1.5, ValueError),
    ("rate", True, TypeError),
    ("rate", math.inf, ValueError),
    ("rate", math.nan, ValueError),
    ("rate", "5", TypeError),
    ("duration", 0.0, ValueError),
    ("duration", -1, ValueError),
    ("duration", False, TypeError),
    ("duration", math.inf, ValueError),
    ("duration", math.nan, ValueError),
]


@pytest.mark.parametrize(
    ("field", "value", "error"), BAD_OPTIONS, ids=[f"{field}={value!r}" for field, value, _ in BAD_OPTIONS]
)
def test_options_reject_a_bad_value_naming_the_field(field: str, value: object, error: type[Exception]) -> None:
    """Every bad option value raises TypeError/ValueError whose message names the field."""
    with pytest.raises(error, match=field):
        LoadOptions(**{field: value})  # type: ignore[arg-type]


def test_options_reject_fewer_requests_than_workers() -> None:
    """Without a duration, fewer requests than workers is refused, naming both options."""
    with pytest.raises(ValueError, match=r"requests.*concurrency"):
        LoadOptions(requests=3, concurrency=4)


def test_options_accept_fewer_requests_than_workers_with_a_duration() -> None:
    """With a duration the request count is ignored, so it may be below the concurrency."""
    assert LoadOptions(requests=3, concurrency=4, duration=1.0).shares() == [None] * 4


@pytest.mark.parametrize(
    ("requests", "concurrency"),
    [(1, 1), (7, 7), (10, 3), (200, 50), (101, 10), (1000, 7), (99, 98)],
    ids=str,
)
def test_shares_add_up_to_requests_and_differ_by_at_most_one(requests: int, concurrency: int) -> None:
    """shares() has one entry per worker, adds up to requests exactly, and the shares differ by at most 1."""
    shares = LoadOptions(requests=requests, concurrency=concurrency).shares()
    counts = [share for share in shares if share is not None]
    assert len(counts) == len(shares) == concurrency
    assert sum(counts) == requests
    assert max(counts) - min(counts) <= 1


@pytest.mark.parametrize("concurrency", [1, 3, 50])
def test_shares_are_none_with_a_duration(concurrency: int) -> None:
    """With a duration every worker runs until it has passed: each share is None."""
    assert LoadOptions(requests=500, concurrency=concurrency, duration=2.5).shares() == [None] * concurrency


# -- Load: counts, concurrency, errors ----------------------------------------------------------------------


@pytest.mark.parametrize(("requests", "concurrency"), [(1, 1), (20, 1), (103, 7), (64, 64)], ids=str)
def test_load_calls_the_target_exactly_n_times(requests: int, concurrency: int) -> None:
    """With -n N and -c C the target runs exactly N times, the report has N samples, and outcomes add up to N."""
    counter = Counter()

    def target() -> str:
        counter.enter()
        counter.leave()
        return worker_name()

    report = run(target, LoadOptions(requests=requests, concurrency=concurrency))
    assert counter.calls == requests
    assert len(report.samples) == requests
    assert sum(report.outcomes().values()) == requests
    expected = LoadOptions(requests=requests, concurrency=concurrency).shares()
    assert sorted(report.outcomes().values()) == sorted(share for share in expected if share is not None)
    assert not report.stopped
    assert [sample.start for sample in report.samples] == sorted(sample.start for sample in report.samples)


@pytest.mark.parametrize("concurrency", [1, 4, 16])
def test_load_runs_exactly_c_calls_at_once(concurrency: int) -> None:
    """C calls run at once (a Barrier(C) in the target is passed every round) and never more than C."""
    counter = Counter()
    barrier = threading.Barrier(concurrency)

    def target() -> str:
        counter.enter()
        try:
            barrier.wait(timeout=WAIT)  # broken (recorded as an error) unless C calls are in flight together
        finally:
            counter.leave()
        return "ok"

    report = run(target, LoadOptions(requests=3 * concurrency, concurrency=concurrency))
    assert report.outcomes() == {"ok": 3 * concurrency}
    assert counter.peak == concurrency


def test_load_records_exceptions_by_type_name() -> None:
    """An exception from the target is recorded as "error: <TypeName>"; none are lost."""
    counter = Counter()

    def target() -> str:
        call = counter.enter()
        counter.leave()
        if call % 3 == 0:
            raise KeyError(call)
        if call % 3 == 1:
            raise ValueError(call)
        return "ok"

    report = run(target, LoadOptions(requests=30, concurrency=4))
    assert report.outcomes() == {"error: KeyError": 10, "error: ValueError": 10, "ok": 10}
    assert len(report.samples) == counter.calls == 30


# -- Load: the rate limit --------------------------------------------------------------------------------------


def test_rate_spaces_each_workers_calls_by_one_over_q() -> None:
    """With -q each worker's consecutive calls start at least 1/q apart (on the load's own clock)."""
    rate, concurrency, each = 50.0, 3, 4
    report = run(worker_name, LoadOptions(requests=concurrency * each, concurrency=concurrency, rate=rate))
    workers = by_worker(report)
    assert sorted(len(samples) for samples in workers.values()) == [each] * concurrency
    for samples in workers.values():
        gaps = [later.start - earlier.start for earlier, later in itertools.pairwise(samples)]
        assert min(gaps) >= 1 / rate - TOLERANCE, gaps


def test_rate_does_not_burst_after_a_slow_call() -> None:
    """Ticker semantics: a call that overran its slot is not followed by back-to-back catch-up calls."""
    rate = 50.0
    gap = 1 / rate
    clock = JumpClock()
    counter = Counter()

    def target() -> str:
        if counter.enter() == 1:
            clock.jump(5 * gap)  # the first call takes five slots
        counter.leave()
        return "ok"

    report = run(target, LoadOptions(requests=4, concurrency=1, rate=rate), clock=clock)
    starts = [sample.start for sample in report.samples]
    assert len(starts) == 4
    assert starts[1] - starts[0] >= 5 * gap
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts[1:])]
    assert min(gaps) >= gap - TOLERANCE, gaps


@pytest.mark.timeout(20)
def test_stop_interrupts_a_rate_limit_wait() -> None:
    """stop() wakes workers waiting for their next slot at once, instead of after 1/q."""
    counter = Counter()
    first_calls = threading.Barrier(3)  # the test and both workers' first calls

    def target() -> str:
        counter.enter()
        counter.leave()
        first_calls.wait(timeout=WAIT)
        return "ok"

    load = Load(target, LoadOptions(requests=4, concurrency=2, rate=0.01)).start()
    try:
        first_calls.wait(timeout=WAIT)  # both workers are in their first call; next they wait 100 s for a slot
        assert not load.wait(0.05)  # a moment for them to reach that wait (if not, stop() is seen before it)
    finally:
        load.stop()
    assert load.wait(WAIT)
    report = load.report()
    assert report.stopped
    assert len(report.samples) == counter.calls == 2


# -- Load: the duration -----------------------------------------------------------------------------------------


def test_duration_stops_starting_calls_once_it_has_passed() -> None:
    """With -z, calls start only before the duration has passed; -n is ignored; elapsed ends at the last call."""
    clock = FakeClock(0.0)

    def target() -> str:
        clock.advance(0.25)
        return "ok"

    report = run(target, LoadOptions(requests=2, concurrency=1, duration=1.0), clock=clock)
    assert [sample.start for sample in report.samples] == [0.0, 0.25, 0.5, 0.75]
    assert [sample.latency for sample in report.samples] == [0.25] * 4
    assert report.elapsed == 1.0
    assert not report.stopped
    assert report.rate() == 4.0


def test_duration_with_many_workers_starts_nothing_late() -> None:
    """With -z and several workers sharing the clock, every call starts before the deadline; elapsed covers all."""
    clock = FakeClock(10.0)
    duration = 2.0

    def target() -> str:
        clock.advance(0.125)
        return "ok"

    report = run(target, LoadOptions(requests=1, concurrency=4, duration=duration), clock=clock)
    assert len(report.samples) >= duration / 0.125
    assert all(sample.start < duration for sample in report.samples)
    last_end = max(sample.start + sample.latency for sample in report.samples)
    assert report.elapsed == pytest.approx(last_end)
    assert report.elapsed >= duration


# -- Load: stop() ------------------------------------------------------------------------------------------------


@pytest.mark.timeout(20)
@pytest.mark.parametrize("concurrency", [1, 5])
def test_stop_lets_calls_in_progress_finish_and_starts_no_more(concurrency: int) -> None:
    """stop() from another thread: the calls in flight finish, no new call starts, every worker thread ends."""
    counter = Counter()
    entered = threading.Barrier(concurrency + 1)  # the test and the first call of every worker
    release = threading.Event()

    def target() -> str:
        if counter.enter() <= concurrency:
            entered.wait(timeout=WAIT)
        try:
            release.wait(timeout=WAIT)
        finally:
            counter.leave()
        return "ok"

    load = Load(target, LoadOptions(requests=1000, concurrency=concurrency))
    load.start()
    try:
        entered.wait(timeout=WAIT)  # every worker is inside its first call
        stopper = threading.Thread(target=load.stop)
        stopper.start()
        stopper.join(WAIT)
        assert not load.wait(0.01), "stop() must not abandon the calls in progress"
    finally:
        release.set()
    assert load.wait(WAIT)
    report = load.report()
    assert report.stopped
    assert report.outcomes() == {"ok": concurrency}
    assert counter.calls == concurrency
    assert counter.in_flight == 0
    assert load_threads() == []


# -- Load: misuse -----------------------------------------------------------------------------------------------


def test_start_twice_raises() -> None:
    """start() on a started load raises RuntimeError."""
    load = Load(worker_name, LoadOptions(requests=2, concurrency=2)).start()
    with pytest.raises(RuntimeError, match="started already"):
        load.start()
    assert len(load.report().samples) == 2


def test_report_before_start_raises() -> None:
    """report() before start() raises RuntimeError."""
    with pytest.raises(RuntimeError, match="not started"):
        Load(worker_name, LoadOptions(requests=1, concurrency=1)).report()


def test_a_non_callable_target_raises() -> None:
    """A target that is not callable raises TypeError naming the target."""
    with pytest.raises(TypeError, match="target"):
        Load(NOT_CALLABLE, LoadOptions(requests=1, concurrency=1))


# -- Report ---------------------------------------------------------------------------------------------------

LATENCIES = [0.9, 0.1, 0.5, 0.3, 1.0, 0.2, 0.8, 0.4, 0.6, 0.7]  # 0.1 .. 1.0, shuffled


def report_of(latencies: list[float], outcomes: list[str] | None = None, elapsed: float = 2.0) -> Report:
    labels = outcomes or ["ok"] * len(latencies)
    pairs = enumerate(zip(latencies, labels, strict=True))
    samples = [Sample(i * 0.1, latency, label) for i, (latency, label) in pairs]
    return Report(tuple(samples), elapsed, False)


@pytest.mark.parametrize(
    ("p", "expected"),
    [
        (0, 0.1),
        (1, 0.1),
        (10, 0.1),
        (11, 0.2),
        (25, 0.3),
        (50, 0.5),
        (51, 0.6),
        (70, 0.7),
        (90, 0.9),
        (99, 1.0),
        (100, 1.0),
    ],
    ids=str,
)
def test_percentile_is_nearest_rank(p: float, expected: float) -> None:
    """percentile(p) is the latency at rank ceil(p% of n) (at least 1) of the sorted latencies."""
    assert report_of(LATENCIES).percentile(p) == expected


def test_percentile_of_no_calls_is_zero() -> None:
    """With no calls every percentile is 0."""
    assert report_of([]).percentile(50) == 0.0


@pytest.mark.parametrize(
    "latencies",
    [LATENCIES, [0.5] * 4, [0.01, 0.01, 0.02, 3.0], [0.0, 1.0], [0.7], [i / 37 for i in range(1, 200)]],
    ids=["tenths", "all-equal", "skewed", "two", "one", "many"],
)
def test_histogram_places_each_call_in_the_first_mark_at_or_above_it(latencies: list[float]) -> None:
    """histogram(): 11 marks from fastest to slowest, counts add up, each call in the first mark >= its latency."""
    histogram = report_of(latencies).histogram()
    marks = [mark for mark, _ in histogram]
    assert len(histogram) == 11
    assert marks[0] == min(latencies)
    assert marks[-1] == max(latencies)
    assert marks == sorted(marks)
    expected = collections.Counter(next(i for i, mark in enumerate(marks) if mark >= latency) for latency in latencies)
    assert [count for _, count in histogram] == [expected[i] for i in range(11)]
    assert sum(count for _, count in histogram) == len(latencies)


def test_histogram_of_tenths() -> None:
    """Latencies 0.1..1.0 against marks 0.1, 0.19, ..., 0.91, 1.0: one per mark, except none at 0.19."""
    histogram = report_of(LATENCIES).histogram()
    assert [mark for mark, _ in histogram] == pytest.approx([0.1 + 0.09 * i for i in range(10)] + [1.0])
    assert [count for _, count in histogram] == [1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1]


def test_histogram_of_no_calls_is_empty() -> None:
    """With no calls the histogram is empty."""
    assert report_of([]).histogram() == []


@pytest.mark.parametrize(
    ("calls", "elapsed", "expected"), [(10, 2.0, 5.0), (3, 0.5, 6.0), (0, 1.0, 0.0), (4, 0.0, 0.0)], ids=str
)
def test_rate_is_calls_per_second(calls: int, elapsed: float, expected: float) -> None:
    """rate() is calls over elapsed seconds, 0 when nothing elapsed."""
    assert report_of([0.1] * calls, elapsed=elapsed).rate() == expected


def test_format_has_every_section_and_the_outcome_counts() -> None:
    """format() prints hey's sections and each outcome's count."""
    outcomes = ["ok"] * 6 + ["error: ValueError"] * 3 + ["fallback: timeout"]
    text = Report(
        tuple(Sample(0.0, latency, outcome) for latency, outcome in zip(LATENCIES, outcomes, strict=True)), 2.0, True
    ).format()
    for heading in ("Summary:", "Requests/sec:", "Response time histogram:", "Latency distribution:"):
        assert heading in text
    assert "Results by outcome:" in text
    assert "stopped early" in text
    results = text.split("Results by outcome:")[1].strip().splitlines()
    assert len(results) == 3
    expected = [("error: ValueError", 3), ("fallback: timeout", 1), ("ok", 6)]
    for line, (outcome, count) in zip(results, expected, strict=True):
        assert re.match(rf"\s*{re.escape(outcome)}\s+{count}\b", line), line
    assert "Requests/sec:\t5.0000" in text
    for p in (10, 50, 99):
        assert f"{p}% in" in text


def test_format_of_an_empty_report() -> None:
    """An empty report formats without error: totals, no histogram, no outcomes."""
    text = Report((), 0.0, False).format()
    assert "Summary:" in text
    assert "Requests/sec:\t0.0000" in text
    assert "Requests:\t0" in text
    assert "histogram" not in text
    assert text.rstrip().endswith("Results by outcome:")


# -- FlakyService ---------------------------------------------------------------------------------------------


@pytest.fixture
def services() -> Iterator[Callable[..., FlakyService]]:
    """Make started services (no latency, no jitter unless given); every one is closed afterwards."""
    made: list[FlakyService] = []

    def make(**kwargs: Any) -> FlakyService:
        options: dict[str, Any] = {"latency": 0.0, "jitter": 0.0, **kwargs}
        service = FlakyService(**options)
        made.append(service)
        return service.start()

    yield make
    for service in made:
        service.close()


def get(service: FlakyService, path: str = "/") -> tuple[int, dict[str, Any], float]:
    """GET path: the status, the JSON body, and the seconds the answer took (on time.monotonic)."""
    url = urllib.parse.urlsplit(service.url)
    assert url.hostname is not None
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=WAIT)
    try:
        began = time.monotonic()
        connection.request("GET", path)
        response = connection.getresponse()
        body = json.loads(response.read())
        took = time.monotonic() - began
        assert response.getheader("Content-Type") == "application/json"
        return response.status, body, took
    finally:
        connection.close()


def statuses(service: FlakyService, n: int) -> list[int]:
    return [get(service)[0] for _ in range(n)]


def flaky_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("breaker-flaky")]


def test_service_answers_200_json_when_healthy(services: Callable[..., FlakyService]) -> None:
    """A healthy service answers 200 with a JSON body naming the path and status, on 127.0.0.1."""
    service = services()
    assert service.url.startswith("http://127.0.0.1:")
    status, body, _ = get(service, "/orders/7")
    assert (status, body) == (200, {"path": "/orders/7", "status": 200})
    assert service.counts() == {"ok": 1}


@pytest.mark.parametrize(("error_rate", "expected"), [(0.0, 200), (1.0, 500)], ids=["never", "always"])
def test_error_rate_zero_and_one(services: Callable[..., FlakyService], error_rate: float, expected: int) -> None:
    """error_rate=1.0 answers every request 500, 0.0 none."""
    service = services(error_rate=error_rate)
    assert statuses(service, 10) == [expected] * 10
    assert service.counts() == {"ok" if expected == 200 else "error": 10}


def test_seeded_error_rate_is_repeatable(services: Callable[..., FlakyService]) -> None:
    """Two services with the same seed and error_rate=0.5 fail the same requests; the errors are counted."""
    first = statuses(services(error_rate=0.5, jitter=0.001, seed=1234), 30)
    second_service = services(error_rate=0.5, jitter=0.001, seed=1234)
    second = statuses(second_service, 30)
    assert first == second
    assert set(first) == {200, 500}
    assert second_service.counts() == {"ok": first.count(200), "error": first.count(500)}


def test_error_outage_answers_503_at_once_while_it_covers_the_elapsed_time(
    services: Callable[..., FlakyService],
) -> None:
    """An "error" outage answers 503 (without waiting) from its start (inclusive) to its end (exclusive)."""
    clock = FakeClock(100.0)
    service = services(outages=[Outage(start=1.0, duration=2.0, mode="error", hang=30.0)], clock=clock)
    seen: list[int] = []
    for step in (0.5, 0.5, 1.5, 0.5, 2.0):  # elapsed 0.5, 1.0, 2.5, 3.0, 5.0
        clock.advance(step)
        status, body, took = get(service)
        seen.append(status)
        assert body["status"] == status
        assert took < WAIT
    assert seen == [200, 503, 503, 200, 200]
    assert service.counts() == {"ok": 3, "down": 2}


def test_hang_outage_delays_by_hang_then_answers_503(services: Callable[..., FlakyService]) -> None:
    """A "hang" outage holds each request `hang` seconds, then answers 503."""
    service = services(outages=[Outage(start=0.0, duration=1000.0, mode="hang", hang=0.2)])
    status, body, took = get(service)
    assert (status, body["status"]) == (503, 503)
    assert took >= 0.2
    assert service.counts() == {"down": 1}


def test_counts_report_ok_error_and_down(services: Callable[..., FlakyService]) -> None:
    """counts() tells ok, error (500) and down (503) answers apart, exactly."""
    clock = FakeClock(0.0)
    ok = services(clock=clock, outages=[Outage(start=10.0, duration=5.0, mode="error")])
    failing = services(error_rate=1.0, clock=clock)
    assert statuses(ok, 3) + statuses(failing, 2) == [200] * 3 + [500] * 2
    clock.advance(10.0)
    assert statuses(ok, 4) == [503] * 4
    assert ok.counts() == {"ok": 3, "down": 4}
    assert failing.counts() == {"error": 2}


@pytest.mark.timeout(20)
def test_close_answers_a_hanging_request_at_once_and_leaves_no_thread() -> None:
    """close() while a request hangs (hang=30) answers it 503 at once, returns promptly, and ends every thread."""
    asked = threading.Event()
    reads = Counter()

    def clock() -> float:
        if reads.enter() > 1:  # read once by start(), then by each request deciding whether the service is down
            asked.set()
        return 0.0

    service = FlakyService(
        latency=0.0, jitter=0.0, outages=[Outage(start=0.0, duration=1000.0, hang=30.0)], clock=clock
    ).start()
    answers: list[tuple[int, float]] = []
    errors: list[OSError] = []

    def client() -> None:
        try:
            status, _, took = get(service)
        except OSError as error:  # e.g. the client's timeout, when close() did not answer
            errors.append(error)
        else:
            answers.append((status, took))

    caller = threading.Thread(target=client, daemon=True)
    closer = threading.Thread(target=service.close, daemon=True)
    caller.start()
    try:
        assert asked.wait(WAIT)
    finally:
        closer.start()  # in a thread of its own: the test waits for it only so long
    closer.join(WAIT)
    assert not closer.is_alive(), "close() did not return promptly"
    caller.join(WAIT)
    assert not caller.is_alive()
    assert errors == []
    assert len(answers) == 1
    assert answers[0][0] == 503
    assert answers[0][1] < WAIT
    assert service.counts() == {"down": 1}
    assert flaky_threads() == []


def test_close_is_idempotent() -> None:
    """close() twice (and close() of a service never started) is harmless; a closed service cannot restart."""
    service = FlakyService(latency=0.0, jitter=0.0).start()
    service.close()
    service.close()
    assert flaky_threads() == []
    with pytest.raises(RuntimeError):
        service.start()
    unstarted = FlakyService()
    unstarted.close()
    unstarted.close()


def test_context_manager_starts_and_closes() -> None:
    """`with FlakyService()` serves inside the block and is closed after it: no thread, no listener."""
    with FlakyService(latency=0.0, jitter=0.0) as service:
        assert [thread.name for thread in flaky_threads()] == ["breaker-flaky"]
        assert get(service)[0] == 200
        url = service.url
    assert flaky_threads() == []
    assert "closed" in repr(service)
    parts = urllib.parse.urlsplit(url)
    assert parts.hostname is not None
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=WAIT)
    with pytest.raises(ConnectionError):
        connection.request("GET", "/")
    connection.close()


BAD_SERVICE_OPTIONS = [
    ("latency", -0.1),
    ("latency", math.inf),
    ("latency", math.nan),
    ("latency", True),
    ("latency", "0.1"),
    ("jitter", -1),
    ("jitter", math.inf),
    ("jitter", False),
    ("error_rate", -0.01),
    ("error_rate", 1.01),
    ("error_rate", math.nan),
    ("error_rate", True),
    ("error_rate", "0.5"),
    ("outages", [(0.0, 1.0)]),
    ("outages", [Outage(start=0.0, duration=1.0), "later"]),
]


@pytest.mark.parametrize(
    ("field", "value"), BAD_SERVICE_OPTIONS, ids=[f"{field}={value!r}" for field, value in BAD_SERVICE_OPTIONS]
)
def test_service_rejects_a_bad_option_naming_it(field: str, value: object) -> None:
    """A bad latency, jitter, error_rate or outages raises ValueError naming the option."""
    with pytest.raises(ValueError, match=field):
        FlakyService(**{field: value})  # type: ignore[arg-type]


BAD_OUTAGES = [
    ("start", -1.0),
    ("start", math.inf),
    ("start", math.nan),
    ("start", True),
    ("duration", -0.5),
    ("duration", math.nan),
    ("duration", "1"),
    ("hang", -2.0),
    ("hang", math.inf),
    ("mode", "down"),
]


@pytest.mark.parametrize(("field", "value"), BAD_OUTAGES, ids=[f"{field}={value!r}" for field, value in BAD_OUTAGES])
def test_outage_rejects_a_bad_field_naming_it(field: str, value: object) -> None:
    """A negative or non-finite time, or an unknown mode, raises ValueError naming Outage's field."""
    fields: dict[str, Any] = {"start": 1.0, "duration": 1.0, field: value}
    with pytest.raises(ValueError, match=rf"Outage\.{field}"):
        Outage(**fields)


@pytest.mark.parametrize(
    ("elapsed", "covered"),
    [(0.0, False), (0.999, False), (1.0, True), (2.0, True), (2.999, True), (3.0, False), (10.0, False)],
    ids=str,
)
def test_outage_covers_from_its_start_inclusive_to_its_end_exclusive(elapsed: float, covered: bool) -> None:
    """Outage.covers: the start is inside the outage, the end is not."""
    assert Outage(start=1.0, duration=2.0).covers(elapsed) is covered
