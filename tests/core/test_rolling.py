"""The rolling window (`breaker._core.rolling.RollingWindow`) driven directly with fake-clock times."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from breaker._core.events import (
    BAD_REQUEST,
    EVENTS,
    FAILURE,
    N_EVENTS,
    REJECTED,
    SHORT_CIRCUIT,
    SUCCESS,
    TIMEOUT,
)
from breaker._core.rolling import RollingWindow
from breaker.testing import FakeClock

START = 1000.0
ALL_SLOTS = list(range(N_EVENTS))
SLOT_IDS = [event.value for event in EVENTS]
ZEROS = [0] * N_EVENTS


def add(window: RollingWindow, event: int, now: float) -> None:
    """Count ``event`` at ``now`` as the engine does: move the window first if ``now`` is past its current bucket."""
    if now >= window.end:
        window.advance(now)
    window.counts.add(event)


def live(window: RollingWindow, now: float) -> list[int]:
    """The current window's counts, as `totals` reads them at ``now`` (a time in the current bucket), checked
    against the figures health reads (`errors`, `successes`)."""
    assert now < window.end, "now is past the current bucket: advance first"
    totals = window.totals(now)
    assert totals[SUCCESS] == window.successes()
    assert window.errors() == totals[FAILURE] + totals[TIMEOUT] + totals[REJECTED]
    return totals


def check_errors(window: RollingWindow, now: float) -> None:
    assert window.errors() == sum(window.totals(now)[slot] for slot in (FAILURE, TIMEOUT, REJECTED))


def reference(events: list[tuple[float, int]], now: float, window: float, buckets: int) -> list[int]:
    """Counts of the (time, slot) events whose bucket is among the ``buckets`` latest as of ``now``."""
    width = window / buckets
    current = int(now // width)
    totals = [0] * N_EVENTS
    for t, slot in events:
        if int(t // width) > current - buckets:
            totals[slot] += 1
    return totals


def since_creation(events: list[tuple[float, int]]) -> list[int]:
    """Counts of every (time, slot) event."""
    totals = [0] * N_EVENTS
    for _, slot in events:
        totals[slot] += 1
    return totals


@pytest.mark.parametrize("slot", ALL_SLOTS, ids=SLOT_IDS)
def test_event_stays_until_the_bucket_n_buckets_later_starts(slot: int) -> None:
    """An event at t (10 s, 10 buckets) counts until the bucket 10 buckets after its own starts, then is gone."""
    clock = FakeClock(START)
    window = RollingWindow(10.0, 10, clock())
    clock.advance(3.5)
    add(window, slot, clock())  # bucket [1003, 1004)
    for t in (1003.5, 1008.0, 1012.999):
        assert window.totals(t)[slot] == 1
        window.advance(t)
        assert live(window, t)[slot] == 1
    assert window.totals(1013.0)[slot] == 0
    window.advance(1013.0)
    assert live(window, 1013.0)[slot] == 0
    assert live(window, 1013.0) == ZEROS
    check_errors(window, 1013.0)
    assert window.cumulative()[slot] == 1  # still counted since creation


def test_events_age_out_bucket_by_bucket() -> None:
    """One failure per bucket over ten buckets: each new bucket drops exactly the oldest one."""
    window = RollingWindow(10.0, 10, START)
    for k in range(10):
        add(window, FAILURE, START + k + 0.5)
        add(window, SUCCESS, START + k + 0.5)
    assert live(window, START + 9.5)[FAILURE] == 10
    assert window.successes() == 10
    for k in range(10):
        window.advance(START + 10 + k)
        assert window.errors() == 9 - k
        assert window.successes() == 9 - k
        check_errors(window, START + 10 + k)


@pytest.mark.parametrize("jump", [10.0, 10.75, 35.0, 1e6], ids=["window", "window-and-a-bit", "3.5-windows", "1e6"])
def test_a_jump_of_a_window_or_more_clears_everything(jump: float) -> None:
    """Advancing to a bucket a full window (or more) after the current one drops every event."""
    window = RollingWindow(10.0, 10, START)
    for k in range(10):
        for slot in ALL_SLOTS:
            add(window, slot, START + k + 0.25)
    now = START + 9.25 + jump
    assert window.totals(now) == ZEROS
    add(window, SHORT_CIRCUIT, now)
    expected = [0] * N_EVENTS
    expected[SHORT_CIRCUIT] = 1
    assert live(window, now) == expected
    assert window.errors() == 0
    add(window, FAILURE, now)  # the ring still works after the jump
    assert window.errors() == 1
    window.advance(now + 10.0)
    assert live(window, now + 10.0) == ZEROS


def test_a_jump_just_short_of_a_window_keeps_the_last_bucket() -> None:
    """Advancing nine buckets past the current one keeps the current bucket's events, drops the older ones."""
    window = RollingWindow(10.0, 10, START)
    add(window, FAILURE, START + 0.5)
    add(window, TIMEOUT, START + 1.5)
    add(window, SUCCESS, START + 1.5)
    window.advance(START + 10.5)
    assert (window.errors(), live(window, START + 10.5)[TIMEOUT], window.successes()) == (1, 1, 1)


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
    rolling = RollingWindow(window, buckets, clock())
    events: list[tuple[float, int]] = []
    for advance, slot in steps:
        clock.advance(advance)
        now = clock()
        expected = reference(events, now, window, buckets)
        assert rolling.totals(now) == expected  # before the ring moves to ``now``
        add(rolling, slot, now)
        events.append((now, slot))
        expected[slot] += 1
        assert rolling.totals(now) == expected
        assert live(rolling, now) == expected
        check_errors(rolling, now)
        assert rolling.cumulative() == since_creation(events)
    for later in (0.5 * window, window, 2 * window):
        now = clock() + later
        expected = reference(events, now, window, buckets)
        assert rolling.totals(now) == expected
        rolling.advance(now)
        assert live(rolling, now) == expected
        check_errors(rolling, now)
        assert rolling.cumulative() == since_creation(events)


def mixed() -> RollingWindow:
    """10 s / 10 buckets holding one event every 1.5 s from t=1000, then two successes at 1010.6 (the second one
    counted lock-free, as the hot path counts it)."""
    window = RollingWindow(10.0, 10, START)
    for k, slot in enumerate([SUCCESS, FAILURE, TIMEOUT, REJECTED, BAD_REQUEST, SUCCESS, SHORT_CIRCUIT, FAILURE]):
        add(window, slot, START + 1.5 * k)
    add(window, SUCCESS, 1010.6)  # the current bucket [1010, 1011)
    next(window.counts.tallies[SUCCESS])
    return window


def test_totals_is_pure_and_agrees_with_advance() -> None:
    """totals(now) changes neither the counts nor the current bucket, and equals what advance(now) then gives."""
    window = mixed()

    def observed() -> tuple[object, ...]:
        counts = window.counts
        return (
            counts,
            counts.tallies[SUCCESS],
            counts.tallies[SHORT_CIRCUIT],
            window.cumulative(),
            window.end,
            window.errors(),
        )

    before = (*observed(), window.successes())
    for now in (1010.7, 1013.0, 1016.25, 1030.0):
        peeked = window.totals(now)
        assert (*observed(), window.successes()) == before
        assert window.totals(now) == peeked
        moved = mixed()
        moved.advance(now)
        assert live(moved, now) == peeked
    expected = [0] * N_EVENTS
    expected[SUCCESS], expected[FAILURE] = 3, 2  # the success at 1000.0 has left; 1007.5 + two at 1010.6
    expected[TIMEOUT] = expected[REJECTED] = expected[BAD_REQUEST] = expected[SHORT_CIRCUIT] = 1
    assert window.totals(1010.7) == expected
    assert window.totals(1016.25)[FAILURE] == 1  # the failure at 1001.5 has left


def test_clear_forgets_everything_and_keeps_counting() -> None:
    """clear() zeroes every count; events added afterwards count and age out as usual."""
    window = RollingWindow(10.0, 10, START)
    for k in range(12):
        for slot in ALL_SLOTS:
            add(window, slot, START + k)
    next(window.counts.tallies[SUCCESS])
    window.clear()
    assert live(window, START + 11.5) == ZEROS
    assert window.errors() == 0
    assert window.totals(START + 11.5) == ZEROS
    add(window, FAILURE, START + 11.5)
    add(window, SUCCESS, START + 11.5)
    assert (window.errors(), window.successes()) == (1, 1)
    window.advance(START + 20.9)
    assert (window.errors(), window.successes()) == (1, 1)
    window.advance(START + 21.0)
    assert (window.errors(), window.successes()) == (0, 0)
    expected = [12] * N_EVENTS  # since creation nothing was forgotten: the lock-free success and those after clear()
    expected[SUCCESS], expected[FAILURE] = 14, 13
    assert window.cumulative() == expected


def history() -> RollingWindow:
    """10 s / 10 buckets at t=1009.7 holding: failure@1000.5, success@1004.5, timeout@1005.5, rejected and
    bad-request@1009.5, two successes@1009.6 (the second counted lock-free, as the hot path counts it)."""
    window = RollingWindow(10.0, 10, START)
    add(window, FAILURE, 1000.5)
    add(window, SUCCESS, 1004.5)
    add(window, TIMEOUT, 1005.5)
    add(window, REJECTED, 1009.5)
    add(window, BAD_REQUEST, 1009.5)
    add(window, SUCCESS, 1009.6)
    next(window.counts.tallies[SUCCESS])
    return window


def test_reshaped_to_a_shorter_window_drops_older_events() -> None:
    """Reshaping to 5 s keeps the events of the last 5 buckets, drops older ones, and ages the rest on time."""
    new = history().reshaped(5.0, 5, 1009.7)
    expected = [0] * N_EVENTS
    expected[TIMEOUT] = expected[REJECTED] = expected[BAD_REQUEST] = 1
    expected[SUCCESS] = 2
    assert live(new, 1009.7) == expected
    assert new.totals(1009.7) == expected
    assert new.errors() == 2
    new.advance(1009.99)
    assert new.errors() == 2
    new.advance(1010.0)  # the timeout's bucket [1005, 1006) left the 5 s window
    assert (new.errors(), live(new, 1010.0)[TIMEOUT], new.successes()) == (1, 0, 2)
    new.advance(1014.0)
    assert live(new, 1014.0) == ZEROS


def test_reshaped_to_a_longer_window_keeps_everything() -> None:
    """Reshaping to 20 s keeps every event in the 10 s window, and they age out after 20 s."""
    new = history().reshaped(20.0, 10, 1009.7)
    expected = [0] * N_EVENTS
    expected[FAILURE] = expected[TIMEOUT] = expected[REJECTED] = expected[BAD_REQUEST] = 1
    expected[SUCCESS] = 3
    assert live(new, 1009.7) == expected
    assert new.totals(1009.7) == expected
    check_errors(new, 1009.7)
    new.advance(1019.9)
    assert live(new, 1019.9) == expected
    new.advance(1020.0)  # the failure's 2 s bucket [1000, 1002) leaves the 20 s window
    assert (new.errors(), live(new, 1020.0)[FAILURE]) == (2, 0)
    new.advance(1030.0)
    assert live(new, 1030.0) == ZEROS


def test_reshaped_keeps_counting_lock_free_successes() -> None:
    """The reshaped window's success counter carries on from the successes counted before (it is the same one)."""
    old = history()
    new = old.reshaped(10.0, 5, 1009.7)
    assert new.counts is old.counts
    assert new.successes() == 3
    next(new.counts.tallies[SUCCESS])
    add(new, SUCCESS, 1009.8)
    assert new.successes() == 5
    assert new.totals(1009.8)[SUCCESS] == 5
    assert new.cumulative()[SUCCESS] == 5


LATE = [
    pytest.param("turned-over", 1010.2, 10.0, id="turned-over"),
    pytest.param("cleared", 1009.7, 10.0, id="cleared"),
    pytest.param("reshaped", 1010.2, 5.0, id="reshaped"),
]


@pytest.mark.parametrize(("change", "now", "span"), LATE)
def test_a_late_lock_free_success_is_never_lost(change: str, now: float, span: float) -> None:
    """A lock-free success counted late (after a turn-over, clear or reshape) is counted, in the current bucket."""
    window = history()
    successes = window.counts.tallies[SUCCESS]  # a hot-path thread looks the counter up here, then is descheduled
    since = window.cumulative()[SUCCESS]
    if change == "turned-over":
        window.advance(now)
        current = window
    elif change == "cleared":
        window.clear()
        current = window
    else:
        current = window.reshaped(span, 5, now)
    assert current.counts.tallies[SUCCESS] is successes  # never replaced
    in_window = current.successes()
    next(successes)  # the descheduled thread counts at last
    assert current.cumulative()[SUCCESS] == since + 1
    assert current.successes() == in_window + 1
    assert live(current, now)[SUCCESS] == in_window + 1
    bucket = now // 1.0  # both shapes have 1 s buckets
    current.advance(bucket + span - 0.001)
    assert current.successes() == 1  # its bucket is the oldest left in the window, and holds it alone
    current.advance(bucket + span)
    assert current.successes() == 0
    assert current.cumulative()[SUCCESS] == since + 1


@pytest.mark.parametrize("slot", ALL_SLOTS, ids=SLOT_IDS)
def test_errors_is_failure_timeout_rejected(slot: int) -> None:
    """errors == failure + timeout + rejected after adding, advancing, reshaping and clearing."""
    window = RollingWindow(10.0, 10, START)
    for k in range(15):
        now = START + k * 0.75
        add(window, slot, now)
        add(window, FAILURE if k % 3 else slot, now)
        check_errors(window, now)
    window.advance(START + 15.0)
    check_errors(window, START + 15.0)
    assert window.errors() == sum(window.totals(START + 15.0)[s] for s in (FAILURE, TIMEOUT, REJECTED))
    reshaped = window.reshaped(4.0, 4, START + 15.0)
    check_errors(reshaped, START + 15.0)
    window.clear()
    check_errors(window, START + 15.0)
    assert window.errors() == 0
