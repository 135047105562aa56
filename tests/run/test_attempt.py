"""The thread driver's `Attempt` against the engine: when the run's end and the timeout race, exactly one of them
decides the outcome (the `claim` once-guard), and the loser counts nothing but still settles its ticket."""

from __future__ import annotations

import breaker
from breaker._core.circuit import Circuit
from breaker._core.engine import Engine
from breaker._core.lockfree import claim
from breaker._core.outcome import ADMITTED, Admission
from breaker._core.settings import BUILTIN
from breaker._run.threaded import Attempt, run_attempt
from breaker.testing import FakeClock


def race(request_volume_threshold: int = 20) -> tuple[Engine, Circuit, FakeClock, Attempt[str], Admission]:
    """An engine (no transitions recorded) with one run admitted and handed to `Attempt`, which the test then runs
    on its own thread: the run, when called, takes 0.5 s on the clock and returns ``"value"``."""
    clock = FakeClock()
    config = breaker.CommandConfig(
        max_concurrent_requests=1, timeout=1.0, request_volume_threshold=request_volume_threshold
    )
    engine = Engine("cmd", config.over(BUILTIN), clock, lambda circuit, old, new: None)
    engine.circuit = circuit = Circuit(engine)

    def run() -> str:
        clock.advance(0.5)
        return "value"

    admission = engine.enter(clock())
    assert admission is ADMITTED
    return engine, circuit, clock, Attempt(engine, run, (), {}, admission, False), admission


def test_finish_before_time_out_decides_and_time_out_is_a_no_op() -> None:
    """A run that finished first decides the outcome; the timeout firing afterwards loses the claim, counts nothing."""
    _, circuit, _, attempt, _ = race()
    assert run_attempt(attempt) is not None  # the run settled it: the caller is to be woken
    assert not claim(attempt.once)  # the timeout fires afterwards: it lost, and the driver does nothing
    stats = circuit.statistics()
    assert (stats.active, stats.abandoned, stats.counts["success"], stats.counts["timeout"]) == (0, 0, 1, 0)
    assert attempt.answer((), {}, None) == "value"


def test_time_out_before_finish_decides_once() -> None:
    """A timeout firing first decides the outcome, once; the run returning afterwards just gives its ticket back."""
    engine, circuit, clock, attempt, admission = race(request_volume_threshold=100)
    assert claim(attempt.once)  # the timeout wins
    engine.time_out(admission, clock(), 1.0)
    assert not claim(attempt.once)  # decided once
    stats = circuit.statistics()
    assert (stats.active, stats.abandoned, stats.counts["timeout"]) == (1, 1, 1)
    assert run_attempt(attempt) is None  # the run returns: it was abandoned, nobody is woken
    stats = circuit.statistics()
    assert (stats.active, stats.abandoned, stats.counts["timeout"], stats.counts["success"]) == (0, 0, 1, 0)
    assert engine.enter(clock()) is ADMITTED
