"""Every lock-free step, raced deterministically against what could come between it and its effect.

A thread is stopped inside a lock-free step (`interleave.Pause`), after it decided and before its count or ticket
took effect; the test then turns the window over, lets it go idle, closes the circuit with a probe, reshapes the
window, resizes the ticket pool or flushes the registry, and lets the thread go on. Each schedule is one that a
thread switch could produce; here it is certain. The counts must stay exact (since creation, and in the window
that is current when the count lands) and the tickets must all come back, with the limit in force.
"""

from __future__ import annotations

import threading

import pytest
from interleave import WAIT, Pause, Worker, needs_lock_free, pausing_counts, pausing_tickets

import breaker
from breaker import CircuitOpenError, CommandConfig, MaxConcurrencyError, State
from breaker._core.circuit import engine_of
from breaker._core.engine import Engine
from breaker.testing import FakeClock

pytestmark = needs_lock_free()

NAME = "dependency"
WIDTH = 1.0  # the rolling bucket, seconds: 10 s / 10 buckets


def configure(**fields: object) -> None:
    breaker.configure_command(
        NAME,
        CommandConfig(isolation="caller", timeout=1e6, request_volume_threshold=10**6, **fields),  # type: ignore[arg-type]
    )


def engine() -> Engine:
    return engine_of(breaker.get_circuit(NAME)[0])


def ok() -> str:
    return "ok"


def failing() -> str:
    raise ValueError("boom")


def counts() -> tuple[dict[str, int], dict[str, int]]:
    """(the window's counts, the counts since creation)."""
    stats = breaker.get_circuit(NAME)[0].statistics()
    return dict(stats.counts), dict(stats.cumulative)


def succeed_paused(pause: Pause) -> Worker:
    """A call whose success stops inside its lock-free count."""
    worker = pause.run(lambda: breaker.do(NAME, ok))
    pause.reached()
    return worker


# -- a success racing what moves the window -------------------------------------------------------------------------


def test_success_counted_across_a_bucket_turnover_lands_in_the_new_bucket(clock: FakeClock) -> None:
    """A success stopped while another call turns the window to the next bucket counts once, in the new bucket."""
    pause = Pause()
    with pausing_counts(pause):
        configure()
        worker = succeed_paused(pause)
        clock.advance(WIDTH)  # the next bucket: this call moves the window
        assert breaker.do(NAME, ok) == "ok"
        pause.release()
        assert worker.outcome() == "ok"
    assert (counts()[0]["success"], counts()[1]["success"]) == (2, 2)
    clock.advance(9 * WIDTH)  # the first bucket left the window; the second (both successes) is still in it
    assert (counts()[0]["success"], counts()[1]["success"]) == (2, 2)
    clock.advance(WIDTH)
    assert (counts()[0]["success"], counts()[1]["success"]) == (0, 2)


@pytest.mark.parametrize("buckets", [10, 11, 20, 30], ids=lambda n: f"{n}-buckets")
def test_success_counted_across_an_idle_reset(clock: FakeClock, buckets: int) -> None:
    """A success stopped while the window, idle for longer than itself, is reset by the next call counts once."""
    pause = Pause()
    with pausing_counts(pause):
        configure(rolling_window=10.0, rolling_buckets=buckets)
        for _ in range(3):
            breaker.do(NAME, ok)
        worker = succeed_paused(pause)
        clock.advance(25.0)  # idle: every bucket leaves the window
        assert breaker.do(NAME, ok) == "ok"
        pause.release()
        assert worker.outcome() == "ok"
    window, since = counts()
    assert (window["success"], since["success"]) == (2, 5)


@pytest.mark.parametrize("buckets", [10, 11, 20, 30], ids=lambda n: f"{n}-buckets")
def test_success_counted_across_a_probe_success_clear(clock: FakeClock, buckets: int) -> None:
    """A call admitted before the trip, its success stopped while a probe closes the circuit and clears the
    window: it counts once, in the cleared window, and the circuit stays closed."""
    pause = Pause()
    with pausing_counts(pause):
        breaker.configure_command(
            NAME,
            CommandConfig(
                isolation="caller",
                timeout=1e6,
                request_volume_threshold=2,
                sleep_window=5.0,
                rolling_window=10.0,
                rolling_buckets=buckets,
            ),
        )
        worker = succeed_paused(pause)
        for _ in range(2):
            assert breaker.do(NAME, failing, lambda e: "fallback") == "fallback"
        assert breaker.get_circuit(NAME)[0].state is State.OPEN
        clock.advance(5.0)
        assert breaker.do(NAME, ok) == "ok"  # the probe: closes the circuit, clears the window
        assert breaker.get_circuit(NAME)[0].state is State.CLOSED
        pause.release()
        assert worker.outcome() == "ok"
    window, since = counts()
    assert (window["success"], window["failure"]) == (1, 0)
    assert (since["success"], since["failure"], since["fallback-success"]) == (2, 2, 2)
    assert breaker.get_circuit(NAME)[0].state is State.CLOSED


@pytest.mark.parametrize(
    ("window", "buckets"),
    [(10.0, 11), (10.0, 20), (10.0, 30), (20.0, 10), (5.0, 5), (3.0, 2)],
    ids=lambda v: f"{v:g}",
)
def test_success_counted_across_a_window_reshape(clock: FakeClock, window: float, buckets: int) -> None:
    """A success stopped while `configure_command` reshapes the window counts once, and shows in the new one."""
    pause = Pause()
    with pausing_counts(pause):
        configure()
        for _ in range(3):
            breaker.do(NAME, ok)
        clock.advance(0.5)
        worker = succeed_paused(pause)
        configure(rolling_window=window, rolling_buckets=buckets)
        pause.release()
        assert worker.outcome() == "ok"
    assert (counts()[0]["success"], counts()[1]["success"]) == (4, 4)
    clock.advance(window + WIDTH)  # all of it leaves the new window; none of it is lost since creation
    assert (counts()[0]["success"], counts()[1]["success"]) == (0, 4)


def test_short_circuit_counted_across_a_bucket_turnover(clock: FakeClock) -> None:
    """A short-circuit stopped while another one turns the window to the next bucket counts once."""
    pause = Pause()
    with pausing_counts(pause):
        configure(force_open=True)
        worker = pause.run(lambda: breaker.do(NAME, ok, lambda e: type(e).__name__))
        pause.reached()
        clock.advance(WIDTH)
        with pytest.raises(CircuitOpenError):
            breaker.do(NAME, ok)
        pause.release()
        assert worker.outcome() == "CircuitOpenError"
    window, since = counts()
    assert (window["short-circuit"], since["short-circuit"], since["fallback-success"]) == (2, 2, 1)


def test_duration_counted_across_a_latency_window_turnover(clock: FakeClock) -> None:
    """A duration stopped while another call moves the latency window on counts once, since creation and in the
    window."""
    pause = Pause()
    with pausing_counts(pause, durations=True):
        configure(latency_window=10.0, latency_buckets=1)
        breaker.do(NAME, ok)  # the duration bucket of a 0 s call now has its counter
        worker = pause.run(lambda: breaker.do(NAME, ok))
        pause.reached()
        clock.advance(10.0)  # the latency window's next bucket
        assert breaker.do(NAME, ok) == "ok"
        pause.release()
        assert worker.outcome() == "ok"
    stats = breaker.get_circuit(NAME)[0].statistics()
    assert stats.run_durations.count == 3
    assert stats.latency_execute.count == 2  # the stopped one landed in the new bucket, with the last call


def test_success_counted_across_flush_counts_on_its_old_circuit(clock: FakeClock) -> None:
    """A success stopped while `breaker.flush` drops its circuit counts on the old circuit, and nowhere else."""
    pause = Pause()
    with pausing_counts(pause):
        configure()
        old = breaker.get_circuit(NAME)[0]
        worker = succeed_paused(pause)
        breaker.flush()
        assert breaker.do(NAME, ok) == "ok"
        pause.release()
        assert worker.outcome() == "ok"
    stats = old.statistics()
    assert (stats.cumulative["success"], stats.active) == (1, 0)
    assert breaker.get_circuit(NAME)[0].statistics().cumulative["success"] == 1


def test_success_counted_while_a_failure_evaluates_health_trips_the_circuit(clock: FakeClock) -> None:
    """A success counted lock-free while another thread, under the lock, reads the window to evaluate health:
    whichever sees the other, the circuit trips exactly when the window calls for it."""
    evaluation = Pause()
    with pausing_counts(evaluation):
        breaker.configure_command(
            NAME, CommandConfig(isolation="caller", timeout=1e6, request_volume_threshold=4, error_percent_threshold=50)
        )
        breaker.do(NAME, ok)  # 1 request
        breaker.do(NAME, failing, lambda e: None)  # 2 requests, 1 error: a success could now reach the volume
        failure = evaluation.run(lambda: breaker.do(NAME, failing, lambda e: None))
        evaluation.reached()  # the failure holds the lock, reading the success counter to evaluate health
        success = Pause()
        pausing_tickets(engine(), success, on="append")
        late = success.run(lambda: breaker.do(NAME, ok))
        success.reached()  # counted, about to give its ticket back and look at the health watch
        success.release()
        evaluation.release()
        failure.outcome()
        late.outcome()
    window, _ = counts()
    assert (window["success"], window["failure"]) == (2, 2)  # 4 requests, 50%: the rule trips
    assert breaker.get_circuit(NAME)[0].state is State.OPEN


# -- tickets racing a resize of the pool ------------------------------------------------------------------------------


class Holder:
    """A call holding its ticket until released."""

    def __init__(self) -> None:
        self.running = threading.Event()
        self.go = threading.Event()
        self.thread = threading.Thread(target=lambda: breaker.do(NAME, self.run), daemon=True)
        self.thread.start()
        assert self.running.wait(WAIT)

    def run(self) -> str:
        self.running.set()
        assert self.go.wait(WAIT)
        return "ok"

    def release(self) -> None:
        self.go.set()
        self.thread.join(WAIT)


def admitted_now() -> bool:
    """Whether one more call is admitted now (it returns at once)."""
    try:
        breaker.do(NAME, ok)
    except MaxConcurrencyError:
        return False
    return True


@pytest.mark.parametrize("step", ["before-take", "after-take"])
def test_ticket_taken_while_the_limit_is_lowered_keeps_the_new_limit(clock: FakeClock, step: str) -> None:
    """A call taking a ticket lock-free while `max_concurrent_requests` goes from 3 to 1, another call holding one:
    stopped before its pop, it finds the last free ticket gone to pay for the lower limit; stopped just after it
    (the limit lowered before it looked), it gives the ticket back to pay for it. Rejected either way, and from
    then on one call runs at a time."""
    configure(max_concurrent_requests=3)
    pause = Pause()
    pausing_tickets(engine(), pause, on="pop" if step == "before-take" else "popped")
    holder = Holder()
    worker = pause.run(lambda: breaker.do(NAME, ok, lambda e: type(e).__name__))
    pause.reached()
    configure(max_concurrent_requests=1)
    pause.release()
    assert worker.outcome() == "MaxConcurrencyError"
    assert engine().active == 1  # the holder's
    assert not admitted_now()
    holder.release()
    assert engine().active == 0
    assert admitted_now()
    stats = breaker.get_circuit(NAME)[0].statistics()
    assert (stats.active, stats.max_concurrent_requests, stats.cumulative["rejected"]) == (0, 1, 2)


def test_ticket_given_back_while_the_limit_is_lowered_pays_for_it(clock: FakeClock) -> None:
    """A ticket given back lock-free while `max_concurrent_requests` goes from 3 to 1, another call holding one,
    pays the debt the lower limit left instead of becoming free: the holder alone runs until it is done."""
    configure(max_concurrent_requests=3)
    pause = Pause()
    pausing_tickets(engine(), pause, on="append")
    holder = Holder()
    worker = pause.run(lambda: breaker.do(NAME, ok))
    pause.reached()  # it ran; its ticket is not back yet
    configure(max_concurrent_requests=1)
    # Rejected (two held, limit 1). This also settles health, so that what the returning ticket does next is the
    # ticket's doing alone, not that of a pending health evaluation.
    assert not admitted_now()
    pause.release()
    assert worker.outcome() == "ok"
    assert not engine().tickets.owed  # paid by the ticket that came back, not left for the next taker
    assert engine().active == 1  # the holder's
    assert not breaker.get_circuit(NAME)[0].allow_request()
    assert not admitted_now()
    holder.release()
    assert engine().active == 0
    assert admitted_now()


def test_ticket_given_back_while_the_limit_rises_is_kept(clock: FakeClock) -> None:
    """A ticket given back lock-free while the limit rises from 1 to 3 stays a ticket: three calls fit at once."""
    configure(max_concurrent_requests=1)
    pause = Pause()
    pausing_tickets(engine(), pause, on="append")
    worker = pause.run(lambda: breaker.do(NAME, ok))
    pause.reached()
    configure(max_concurrent_requests=3)
    pause.release()
    assert worker.outcome() == "ok"
    holders = [Holder() for _ in range(3)]
    assert engine().active == 3
    assert not admitted_now()
    for holder in holders:
        holder.release()
    assert engine().active == 0
