"""The rolling counters (`breaker._rolling.RollingCounter`) driven directly with fake-clock times."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from breaker._events import (
    BAD_REQUEST,
    EVENTS,
    FAILURE,
    N_EVENTS,
    REJECTED,
    SHORT_CIRCUIT,
    SUCCESS,
    TIMEOUT,
)
from breaker._rolling import LOCK_FREE, RollingCounter
from breaker.testing import FakeClock

START = 1000.0
ALL_SLOTS = list(range(N_EVENTS))
SLOT_IDS = [event.value for event in EVENTS]


def live(counter: RollingCounter) -> list[int]:
    """The window's counts as the circuit reads them: ``totals``, with the lock-free slots read off their counters."""
    totals = list(counter.totals)
    for slot in LOCK_FREE:
        totals[slot] = counter.lock_free_total(slot)
    assert totals[SUCCESS] == counter.successes()
    return totals


def check_errors(counter: RollingCounter) -> None:
    assert counter.errors == counter.totals[FAILURE] + counter.totals[TIMEOUT] + counter.totals[REJECTED]


def reference(events: list[tuple[float, int]], now: float, window: float, buckets: int) -> list[int]:
    """Counts of the (time, slot) events whose bucket is among the ``buckets`` latest as of ``now``."""
    width = window / buckets
    current = int(now // width)
    totals = [0] * N_EVENTS
    for t, slot in events:
        if int(t // width) > current - buckets:
            totals[slot] += 1
    return totals


@pytest.mark.parametrize("slot", ALL_SLOTS, ids=SLOT_IDS)
def test_event_stays_until_the_bucket_n_buckets_later_starts(slot: int) -> None:
    """An event at t (10 s, 10 buckets) counts until the bucket 10 buckets after its own starts, then is gone."""
    clock = FakeClock(START)
    counter = RollingCounter(10.0, 10, clock())
    clock.advance(3.5)
    counter.add(slot, clock())  # bucket [1003, 1004)
    for t in (1003.5, 1008.0, 1012.999):
        assert counter.totals_at(t)[slot] == 1
        counter.advance(t)
        assert live(counter)[slot] == 1
    assert counter.totals_at(1013.0)[slot] == 0
    counter.advance(1013.0)
    assert live(counter)[slot] == 0
    assert live(counter) == [0] * N_EVENTS
    check_errors(counter)


def test_events_age_out_bucket_by_bucket() -> None:
    """One failure per bucket over ten buckets: each new bucket drops exactly the oldest one."""
    counter = RollingCounter(10.0, 10, START)
    for k in range(10):
        counter.add(FAILURE, START + k + 0.5)
        counter.add(SUCCESS, START + k + 0.5)
    assert live(counter)[FAILURE] == 10
    assert counter.successes() == 10
    for k in range(10):
        counter.advance(START + 10 + k)
        assert counter.error_total() == 9 - k
        assert counter.successes() == 9 - k
        check_errors(counter)


@pytest.mark.parametrize("jump", [10.0, 10.75, 35.0, 1e6], ids=["window", "window-and-a-bit", "3.5-windows", "1e6"])
def test_a_jump_of_a_window_or_more_clears_everything(jump: float) -> None:
    """Advancing to a bucket a full window (or more) after the current one drops every event."""
    counter = RollingCounter(10.0, 10, START)
    for k in range(10):
        for slot in ALL_SLOTS:
            counter.add(slot, START + k + 0.25)
    now = START + 9.25 + jump
    assert counter.totals_at(now) == [0] * N_EVENTS
    counter.add(SHORT_CIRCUIT, now)
    expected = [0] * N_EVENTS
    expected[SHORT_CIRCUIT] = 1
    assert live(counter) == expected
    assert counter.error_total() == 0
    counter.add(FAILURE, now)  # the ring still works after the jump
    assert counter.error_total() == 1
    counter.advance(now + 10.0)
    assert live(counter) == [0] * N_EVENTS


def test_a_jump_just_short_of_a_window_keeps_the_last_bucket() -> None:
    """Advancing nine buckets past the current one keeps the current bucket's events, drops the older ones."""
    counter = RollingCounter(10.0, 10, START)
    counter.add(FAILURE, START + 0.5)
    counter.add(TIMEOUT, START + 1.5)
    counter.add(SUCCESS, START + 1.5)
    counter.advance(START + 10.5)
    assert (counter.error_total(), counter.totals[TIMEOUT], counter.successes()) == (1, 1, 1)


WINDOWS = [
    pytest.param(10.0, 10, id="10s-10"),
    pytest.param(1.0, 10, id="1s-10-inexact-width"),
    pytest.param(3.0, 7, id="3s-7"),
    pytest.param(5.0, 1, id="5s-1"),
]

STEPS = st.lists(
    st.tuples(
        st.one_of(st.just(0.0), st.floats(min_value=0.0, max_value=3.0), st.sampled_from([0.1, 0.5, 1.0, 7.0, 12.0])),
        st.sampled_from(ALL_SLOTS),
    ),
    max_size=60,
)


@pytest.mark.parametrize(("window", "buckets"), WINDOWS)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=STEPS)
def test_totals_match_a_reference_list(window: float, buckets: int, steps: list[tuple[float, int]]) -> None:
    """After any (advance, slot) sequence, totals are the events of the live buckets, as a plain list says."""
    clock = FakeClock(START)
    counter = RollingCounter(window, buckets, clock())
    events: list[tuple[float, int]] = []
    for advance, slot in steps:
        clock.advance(advance)
        now = clock()
        expected = reference(events, now, window, buckets)
        assert counter.totals_at(now) == expected  # before the ring moves to ``now``
        counter.add(slot, now)
        events.append((now, slot))
        expected[slot] += 1
        assert counter.totals_at(now) == expected
        assert live(counter) == expected
        check_errors(counter)
    for later in (0.5 * window, window, 2 * window):
        now = clock() + later
        expected = reference(events, now, window, buckets)
        assert counter.totals_at(now) == expected
        counter.advance(now)
        assert live(counter) == expected
        check_errors(counter)


def mixed() -> RollingCounter:
    """10 s / 10 buckets holding one event every 1.5 s from t=1000, then two successes at 1010.6."""
    counter = RollingCounter(10.0, 10, START)
    for k, slot in enumerate([SUCCESS, FAILURE, TIMEOUT, REJECTED, BAD_REQUEST, SUCCESS, SHORT_CIRCUIT, FAILURE]):
        counter.add(slot, START + 1.5 * k)
    counter.add(SUCCESS, 1010.6)  # the current bucket [1010, 1011): successes on its lock-free counter
    next(counter.success)
    return counter


def test_totals_at_is_pure_and_agrees_with_advance() -> None:
    """totals_at(now) changes neither totals nor the current bucket, and equals what advance(now) then gives."""
    counter = mixed()
    before = (list(counter.totals), counter.errors, counter.end, counter.success, counter.successes())
    for now in (1010.7, 1013.0, 1016.25, 1030.0):
        peeked = counter.totals_at(now)
        assert (list(counter.totals), counter.errors, counter.end, counter.success, counter.successes()) == before
        assert counter.totals_at(now) == peeked
        moved = mixed()
        moved.advance(now)
        assert live(moved) == peeked
    expected = [0] * N_EVENTS
    expected[SUCCESS], expected[FAILURE] = 3, 2  # the success at 1000.0 has left; 1007.5 + two at 1010.6
    expected[TIMEOUT] = expected[REJECTED] = expected[BAD_REQUEST] = expected[SHORT_CIRCUIT] = 1
    assert counter.totals_at(1010.7) == expected
    assert counter.totals_at(1016.25)[FAILURE] == 1  # the failure at 1001.5 has left


def test_clear_forgets_everything_and_keeps_counting() -> None:
    """clear() zeroes every count; events added afterwards count and age out as usual."""
    counter = RollingCounter(10.0, 10, START)
    for k in range(12):
        for slot in ALL_SLOTS:
            counter.add(slot, START + k)
    next(counter.success)
    counter.clear()
    assert live(counter) == [0] * N_EVENTS
    assert counter.error_total() == 0
    assert counter.totals_at(START + 11.5) == [0] * N_EVENTS
    counter.add(FAILURE, START + 11.5)
    counter.add(SUCCESS, START + 11.5)
    assert (counter.error_total(), counter.successes()) == (1, 1)
    counter.advance(START + 20.9)
    assert (counter.error_total(), counter.successes()) == (1, 1)
    counter.advance(START + 21.0)
    assert (counter.error_total(), counter.successes()) == (0, 0)


def history() -> RollingCounter:
    """10 s / 10 buckets at t=1009.7 holding: failure@1000.5, success@1004.5, timeout@1005.5, rejected and
    bad-request@1009.5, two successes@1009.6 (the current bucket's, on its lock-free counter)."""
    counter = RollingCounter(10.0, 10, START)
    counter.add(FAILURE, 1000.5)
    counter.add(SUCCESS, 1004.5)
    counter.add(TIMEOUT, 1005.5)
    counter.add(REJECTED, 1009.5)
    counter.add(BAD_REQUEST, 1009.5)
    counter.add(SUCCESS, 1009.6)
    next(counter.success)
    return counter


def test_resized_to_a_shorter_window_drops_older_events() -> None:
    """Resizing to 5 s keeps the events of the last 5 buckets, drops older ones, and ages the rest on time."""
    new = history().resized(5.0, 5, 1009.7)
    expected = [0] * N_EVENTS
    expected[TIMEOUT] = expected[REJECTED] = expected[BAD_REQUEST] = 1
    expected[SUCCESS] = 2
    assert live(new) == expected
    assert new.totals_at(1009.7) == expected
    assert new.error_total() == 2
    new.advance(1009.99)
    assert new.error_total() == 2
    new.advance(1010.0)  # the timeout's bucket [1005, 1006) left the 5 s window
    assert (new.error_total(), new.totals[TIMEOUT], new.successes()) == (1, 0, 2)
    new.advance(1014.0)
    assert live(new) == [0] * N_EVENTS


def test_resized_to_a_longer_window_keeps_everything() -> None:
    """Resizing to 20 s keeps every event in the 10 s window, and they age out after 20 s."""
    new = history().resized(20.0, 10, 1009.7)
    expected = [0] * N_EVENTS
    expected[FAILURE] = expected[TIMEOUT] = expected[REJECTED] = expected[BAD_REQUEST] = 1
    expected[SUCCESS] = 3
    assert live(new) == expected
    assert new.totals_at(1009.7) == expected
    check_errors(new)
    new.advance(1019.9)
    assert live(new) == expected
    new.advance(1020.0)  # the failure's 2 s bucket [1000, 1002) leaves the 20 s window
    assert (new.error_total(), new.totals[FAILURE]) == (2, 0)
    new.advance(1030.0)
    assert live(new) == [0] * N_EVENTS


def test_resized_keeps_counting_lock_free_successes() -> None:
    """The resized counter's current-bucket success counter carries on from the moved successes."""
    new = history().resized(10.0, 5, 1009.7)
    assert new.successes() == 3
    next(new.success)
    new.add(SUCCESS, 1009.8)
    assert new.successes() == 5
    assert new.totals_at(1009.8)[SUCCESS] == 5


@pytest.mark.parametrize("slot", ALL_SLOTS, ids=SLOT_IDS)
def test_errors_is_failure_timeout_rejected(slot: int) -> None:
    """errors == failure + timeout + rejected after adding, advancing, resizing and clearing."""
    counter = RollingCounter(10.0, 10, START)
    for k in range(15):
        counter.add(slot, START + k * 0.75)
        counter.add(FAILURE if k % 3 else slot, START + k * 0.75)
        check_errors(counter)
    counter.advance(START + 15.0)
    check_errors(counter)
    assert counter.error_total() == sum(counter.totals_at(START + 15.0)[s] for s in (FAILURE, TIMEOUT, REJECTED))
    resized = counter.resized(4.0, 4, START + 15.0)
    check_errors(resized)
    counter.clear()
    check_errors(counter)
    assert counter.error_total() == 0
