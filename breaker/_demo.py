"""``python -m breaker demo``: a dependency fails, the circuit trips, calls fail fast, one probe, recovery.

A scripted story against an in-process fake dependency, printed as it happens.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import Counter
from typing import TextIO

from . import _api
from ._decorator import command
from ._errors import CircuitError
from ._settings import CommandConfig

__all__ = ["run_demo"]

NAME = "inventory"


class FlakyDependency:
    """A fake remote service: healthy, failing fast, or hanging, as the script says."""

    def __init__(self, speed: float = 1.0) -> None:
        self.speed = speed
        self.mode = "healthy"
        self.calls = 0
        self._lock = threading.Lock()  # calls come from worker threads

    def request(self, item: str) -> int:
        with self._lock:
            self.calls += 1
        if self.mode == "failing":
            raise ConnectionError(f"inventory service refused the connection for {item!r}")
        if self.mode == "hanging":
            time.sleep(0.4 / self.speed)
        else:
            time.sleep(0.005 / self.speed)
        return len(item)


def run_demo(out: TextIO = sys.stdout, speed: float = 1.0) -> Counter[str]:
    """Run the story; returns how the calls ended. ``speed`` > 1 shortens every wait (tests use it)."""
    dependency = FlakyDependency(speed)
    outcomes: Counter[str] = Counter()
    start = time.monotonic()

    def say(message: str) -> None:
        out.write(f"[{time.monotonic() - start:6.2f}s] {message}\n")
        out.flush()

    def stock_fallback(error: Exception, item: str) -> int:
        outcomes[f"fallback after {type(error).__name__}"] += 1
        return -1

    @command(NAME, fallback=stock_fallback)
    def stock(item: str) -> int:
        return dependency.request(item)

    class Transitions(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            say(f"  >> {record.getMessage()}")

    handler = Transitions(level=logging.INFO)
    logger = logging.getLogger("breaker")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    sleep_window = 1.0 / speed
    _api.configure_command(
        NAME,
        CommandConfig(
            timeout=0.2 / speed,
            max_concurrent_requests=4,
            request_volume_threshold=6,
            error_percent_threshold=50,
            sleep_window=sleep_window,
        ),
    )
    circuit = _api.get_circuit(NAME)[0]

    def burst(label: str, n: int, pause: float = 0.02) -> None:
        before = dependency.calls
        waited = 0.0
        answers: Counter[str] = Counter()
        for i in range(n):
            t0 = time.monotonic()
            value = stock(f"item-{i}")
            waited += time.monotonic() - t0
            answers["answer" if value >= 0 else "fallback"] += 1
            time.sleep(pause / speed)
        outcomes["answer"] += answers["answer"]
        stats = circuit.statistics()
        say(
            f"{label}: {n} calls -> {answers['answer']} answers, {answers['fallback']} fallbacks; "
            f"{dependency.calls - before} reached the service; {waited / n * 1000:.2f} ms per call; "
            f"circuit {stats.state.value}, {stats.errors}/{stats.requests} errors ({stats.error_percentage}%)"
        )

    try:
        say(f"command {NAME!r}: {_api.get_settings(NAME)}")
        burst("healthy service", 6)
        dependency.mode = "hanging"
        say("the inventory service hangs: every call now waits out its 0.2 s timeout")
        burst("outage", 6)
        say("the circuit is open: calls get the fallback at once, without touching the service")
        burst("still open", 10)
        dependency.mode = "failing"
        say("the service now refuses connections (fails fast)")
        say(f"waiting out the {sleep_window:.1f}s sleep window; the service is still down")
        time.sleep(sleep_window * 1.1)
        burst("probe while down", 3)
        dependency.mode = "healthy"
        say("the inventory service recovers")
        time.sleep(sleep_window * 1.1)
        burst("probe after recovery", 10)
        counts = circuit.statistics().counts
        say(f"final state: {circuit.state.value}; window counts: {dict(counts)}")
    except CircuitError as error:  # pragma: no cover - the fallback answers every failure
        say(f"unexpected: {error}")
        raise
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    return outcomes
