"""The engine of one circuit: its parts under one lock, and the narrow interface every driver calls.

Parts, each with one job:

- `TicketPool` (`lockfree`): the tickets, at most ``max_concurrent_requests`` runs in progress;
- `RollingWindow` (`rolling`): the event counts since creation and over the rolling window;
- `Latency` (`latency`): the duration histograms since creation and over the latency window;
- `StateMachine` (`machine`): the states, the probe and its sleep window, the force flags;
- `TripRule` (`health`): when the window's health trips the circuit;
- `TransitionQueue` (`notify`): state changes, delivered in order outside the lock.

``lock`` guards all of them. It is held for a few field updates only: never across user code, a wait, I/O or
the delivery of state changes. The drivers (`breaker._run`) call the methods below and nothing else; no driver
touches a part. Every method that takes the lock has a ``block`` argument: with ``block=False`` it does nothing
and returns None (or False) when the lock is held, so that the async driver can yield to the event loop and try
again instead of blocking it.

The hot paths try lock-free first (`enter` and `succeed` inline `breaker._core.lockfree.try_enter` and
``try_succeed``), and the lock decides whatever those decline. They read the *fast surface*: the flags
``admits_on_ticket``, ``open_until``, ``window_end`` and ``settle_successes`` (and ``next_probe_at``, which only
tells a short-circuited caller when to retry), which the engine writes only under its lock, and ``free``,
``successes``, ``short_circuits``, ``fallback_successes``, ``fallback_failures``, ``both_durations`` and
``total_durations``, objects it never replaces.
"""

from __future__ import annotations

import math
import sys
import threading
from collections.abc import Callable
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal, NamedTuple, Protocol, TypeVar, overload

from .events import (
    CANCELLED,
    EVENTS,
    FAILURE,
    FALLBACK_FAILURE,
    FALLBACK_SUCCESS,
    REJECTED,
    SHORT_CIRCUIT,
    SLOW,
    SUCCESS,
    TIMEOUT,
    State,
)
from .health import TripRule, error_percentage
from .inline import inline
from .latency import BOTH, RUN, TOTAL, Latency
from .lockfree import DONE, LOCK_FREE, NOT_DONE, TicketPool, try_count_fallback, try_enter, try_fail, try_succeed
from .machine import StateMachine, Transition
from .notify import TransitionQueue
from .outcome import UNDECIDED, Admission, is_slow
from .rolling import RollingWindow
from .settings import Settings
from .statistics import CircuitStatistics, FleetView, isolation_of

if TYPE_CHECKING:
    from .circuit import Circuit
    from .metrics import Collector

__all__ = ["NO_LATENCY", "Engine", "FleetTrip"]

#: `Engine.finish`'s ``kind`` for an outcome with no duration to record (a cancelled call).
NO_LATENCY = -1

A = TypeVar("A")

Emit = Callable[["Circuit", State, State], None]


class FleetTrip(NamedTuple):
    """Fleet mode: the fleet that opened a circuit, and its figures as it tripped (None: not known here)."""

    namespace: str
    errors: int | None
    requests: int | None


class Pool(Protocol):
    """Runs a function on a thread of its own (`breaker._run.workers.WorkerPool`); the engine only holds it."""

    def submit(self, work: Callable[[A], Callable[[None], object] | None], subject: A) -> None: ...


class Engine:
    """The decision core of one circuit. Its users' view of it is a `breaker.Circuit`."""

    __slots__ = (
        "__weakref__",
        "_emit",
        "abandoned",
        "admits_on_ticket",
        "both_durations",
        "called_async",
        "called_sync",
        "circuit",
        "clock",
        "collectors",
        "failure_limit",
        "failures",
        "fallback_failures",
        "fallback_successes",
        "fleet",
        "fleet_trip",
        "free",
        "ignored",
        "latency",
        "live",
        "lock",
        "machine",
        "name",
        "next_probe_at",
        "open_until",
        "plain_until",
        "pool",
        "result_is_failure",
        "rule",
        "run_durations",
        "runs_elsewhere",
        "runs_inline",
        "runs_inline_async",
        "settings",
        "settle_successes",
        "short_circuits",
        "slow_call_duration",
        "successes",
        "threaded",
        "tickets",
        "timeout",
        "total_durations",
        "transitions",
        "trip_figures",
        "window",
        "window_end",
    )

    def __init__(self, name: str, settings: Settings, clock: Callable[[], float], emit: Emit) -> None:
        self.name = name
        self.clock = clock
        self._emit = emit
        now = clock()
        # Guards every part and field below that the fast surface does not name. Held for a few field updates:
        # never across user code, a wait, I/O or `TransitionQueue.deliver`.
        self.lock = threading.Lock()
        self.window = RollingWindow(settings.rolling_window, settings.rolling_buckets, now)
        self.latency = Latency(settings.latency_window, settings.latency_buckets, now)
        self.tickets = TicketPool(settings.max_concurrent_requests)
        self.machine = StateMachine(settings)
        self.transitions = TransitionQueue(self._deliver_one)
        #: Runs that timed out (thread isolation) and still hold their ticket.
        self.abandoned = 0
        #: (errors, requests, slow calls) in the window as it tripped, for the log line.
        self.trip_figures = (0, 0, 0)
        #: Fleet mode: the fleet that opened the circuit last, for the log line; None when health opened it.
        self.fleet_trip: FleetTrip | None = None
        #: What the fleet shares of this circuit, as of its last sync (None outside fleet mode).
        self.fleet: FleetView | None = None
        # The fast surface's never-replaced objects.
        self.free = self.tickets.free
        tallies = self.window.counts.tallies
        self.successes = tallies[SUCCESS]
        self.failures = tallies[FAILURE]
        self.short_circuits = tallies[SHORT_CIRCUIT]
        self.fallback_successes = tallies[FALLBACK_SUCCESS]
        self.fallback_failures = tallies[FALLBACK_FAILURE]
        self.both_durations = self.latency.both
        self.run_durations = self.latency.run
        self.total_durations = self.latency.total
        #: Set by the registry: the users' view of this engine, whether it is the one its name resolves to, and the
        #: threads the drivers may hand work to (thread isolation; the async driver's waits for this lock).
        self.circuit: Circuit | None = None
        self.live = False
        self.pool: Pool | None = None
        #: What observes each call (`breaker.register_collector`); replaced whole, never mutated.
        self.collectors: tuple[Collector, ...] = ()
        #: Whether a sync / an async call has come through this circuit (`statistics().isolation`). Set by the entry
        #: points, once, from False to True: a plain attribute write (A3), which nothing else is derived from.
        self.called_sync = False
        self.called_async = False
        self._apply(settings)
        self.settle_successes = False  # a new circuit has nothing to settle: no error, no ticket owed
        self.failure_limit = -1  # until health is first evaluated, every failure evaluates it
        #: Lock-free counting stops at the first bucket's end of either window; without `LOCK_FREE`, never starts.
        self.window_end = min(self.window.end, self.latency.end) if LOCK_FREE else -math.inf

    def __repr__(self) -> str:
        return f"<Engine {self.name!r} {self.machine.visible.value} tickets={self.tickets!r}>"

    # -- settings and flags (under the lock, or before the engine is shared) ---------------------------------------

    def _apply(self, settings: Settings) -> None:
        self.settings = settings
        self.timeout = settings.timeout
        self.ignored = settings.ignored_exceptions
        self.result_is_failure = settings.result_is_failure
        #: A run that returned within this many seconds is a plain success: in time, not slow, and with no result
        #: predicate to ask (with one, no run is: -1). Past it, the drivers judge the returned value in full.
        self.plain_until = (
            -1.0
            if settings.result_is_failure is not None
            else min(settings.timeout, math.nextafter(settings.slow_call_duration, -math.inf))
        )
        self.threaded = settings.isolation == "thread"
        self.rule = TripRule(
            settings.request_volume_threshold, settings.error_percent_threshold, settings.slow_call_percent_threshold
        )
        self.slow_call_duration = settings.slow_call_duration
        # A4 (`lockfree.try_enter`, `try_succeed`): lock-free admission stopped and settling asked for before a lower
        # limit takes tickets from ``free``; `_publish` allows them again once nothing is owed.
        self.admits_on_ticket = False
        self.settle_successes = True
        self.tickets.resize(settings.max_concurrent_requests)
        self.machine.configure(settings)
        self._route()
        self._publish()

    def _route(self) -> None:
        #: Whether a sync call leaves the inline caller path: thread isolation, or collectors to report to.
        self.runs_elsewhere = self.threaded or bool(self.collectors)
        #: live and not detour: the one flag a decorated sync function checks before its inline path (and
        #: ``inline_async``: live without collectors, for a decorated coroutine function).
        self.runs_inline = self.live and not self.runs_elsewhere
        self.runs_inline_async = self.live and not self.collectors

    def _publish(self) -> None:
        """Write the fast surface's flags from the parts (under the lock). While tickets are owed (a lowered limit),
        ``admits_on_ticket`` stays False and ``settle_successes`` True: the lock-free paths leave tickets to the
        lock."""
        machine = self.machine
        owed = self.tickets.owed > 0
        self.admits_on_ticket = LOCK_FREE and machine.needs_only_a_ticket and not owed
        self.open_until = machine.open_until
        self.next_probe_at = machine.next_probe_at  # read, without the lock, only to tell refused callers
        if owed:
            self.settle_successes = True

    def set_live(self, live: bool) -> None:
        """Mark this circuit as the one its name resolves to (True) or as dropped (False)."""
        self.live = live
        self._route()

    def add_collectors(self, collectors: tuple[Collector, ...]) -> None:
        """Report every call from now on to ``collectors`` too."""
        with self.lock:  # concurrent additions are all kept
            self.collectors = (*self.collectors, *collectors)
            self._route()

    def configure(self, settings: Settings) -> None:
        """Apply new settings at once, keeping the counts (the windows are reshaped if their shape changed)."""
        now = self.clock()
        with self.lock:  # settings, tickets, windows and flags change together
            before = self.machine.visible
            old = self.settings
            if (old.rolling_window, old.rolling_buckets) != (settings.rolling_window, settings.rolling_buckets):
                self.window = self.window.reshaped(settings.rolling_window, settings.rolling_buckets, now)
            if (old.latency_window, old.latency_buckets) != (settings.latency_window, settings.latency_buckets):
                self.latency = self.latency.reshaped(settings.latency_window, settings.latency_buckets, now)
            self._apply(settings)
            self.window_end = min(self.window.end, self.latency.end) if LOCK_FREE else -math.inf
            self._rearm()  # new thresholds: the next outcome evaluates health (none trips here)
            after = self.machine.visible
            if after is not before:
                self.transitions.push(before, after)
        self.transitions.deliver()

    # -- queries: pure, they never change the circuit ----------------------------------------------------------

    @property
    def active(self) -> int:
        """Tickets held: runs in progress, abandoned ones included (a gauge when read without the lock)."""
        return self.tickets.in_use

    def allow_request(self) -> bool:
        """Whether a call arriving now would be admitted to run. A pure query: it never takes the probe."""
        now = self.clock()
        with self.lock:  # a consistent view of state and tickets
            machine = self.machine
            free = self.tickets.available()
            if machine.force_open:
                return False
            if machine.needs_only_a_ticket:
                return free
            if machine.state is State.OPEN:
                return free and now >= machine.open_until
            return free and machine.probe is None

    def statistics(self) -> CircuitStatistics:
        """A frozen snapshot of the circuit's state, counts, tickets and latency."""
        now = self.clock()
        with self.lock:  # one consistent snapshot across the parts
            window = self.window
            active, abandoned = self.tickets.in_use, self.abandoned
            window.observe(active, now)
            totals = window.totals(now)
            cumulative = window.cumulative()
            peak = window.peak(now)
            execute, total, run_durations, total_durations = self.latency.snapshot(now)
            settings = self.settings
            state = self.machine.visible
            fleet = self.fleet
        isolation = isolation_of(settings.isolation, self.called_sync, self.called_async)
        errors = totals[FAILURE] + totals[TIMEOUT] + totals[REJECTED]
        requests = errors + totals[SUCCESS]
        return CircuitStatistics(
            name=self.name,
            state=state,
            requests=requests,
            errors=errors,
            error_percentage=error_percentage(errors, requests),
            counts=MappingProxyType({event.value: totals[i] for i, event in enumerate(EVENTS)}),
            active=active,
            abandoned=abandoned,
            max_concurrent_requests=settings.max_concurrent_requests,
            peak_active=peak,
            cumulative=MappingProxyType({event.value: cumulative[i] for i, event in enumerate(EVENTS)}),
            latency_execute=execute,
            latency_total=total,
            run_durations=run_durations,
            total_durations=total_durations,
            settings=settings,
            isolation=isolation,
            fleet=fleet,
        )

    # -- the drivers' interface ---------------------------------------------------------------------------------

    @inline
    def enter(self, now: float) -> Admission:
        """Admit a call arriving at ``now``, or refuse it (a refusal is counted). Lock-free in the usual cases."""
        admission = try_enter(self, now)
        if admission is UNDECIDED:
            admission = self.admit(now)
        return admission

    @inline
    def enter_nowait(self, now: float) -> Admission | None:
        """`enter` that never blocks: None when the lock must decide and a thread holds it (nothing was done)."""
        admission: Admission | None = try_enter(self, now)
        if admission is UNDECIDED:
            admission = self.admit(now, False)
        return admission

    @inline
    def succeed(self, admission: Admission, now: float, seconds: float) -> None:
        """An admitted run returned in time after ``seconds`` and no fallback runs: count the success and the
        duration (as the run's and the call's), and give back the ticket. Lock-free in the usual case."""
        stage = try_succeed(self, admission, now, seconds)
        if stage != DONE:
            self.settle_success(stage, admission, now, seconds)

    @overload
    def admit(self, now: float, block: Literal[True] = ...) -> Admission: ...
    @overload
    def admit(self, now: float, block: bool) -> Admission | None: ...

    def admit(self, now: float, block: bool = True) -> Admission | None:
        """`enter` under the lock: what the lock-free path declined. None: ``block`` is False and the lock is held
        (nothing was done)."""
        if not self.lock.acquire(block):
            return None
        try:
            self._due(now)
            machine = self.machine
            admission, transition = machine.admit(now, self.tickets.take, self.timeout)
            self._publish()
            if admission.refused:
                self.window.counts.add(admission.event)
                if admission.event == REJECTED:
                    self.window.observe(self.tickets.in_use, now)
                    if transition is None:
                        transition = self._evaluate(now)
            self._report(transition)
        finally:
            self.lock.release()
        self.transitions.deliver()
        return admission

    @inline
    def fail(self, admission: Admission, now: float, seconds: float, kind: int) -> None:
        """An admitted run failed after ``seconds``: count the failure and its duration in histogram ``kind``
        (`BOTH` if no fallback runs, `RUN` if one does), give back the ticket, and evaluate health unless the
        failure provably cannot trip the circuit. Lock-free in the usual case; a slow failure (its run took at least
        ``slow_call_duration``) takes the lock, as `finish_slow`."""
        if not is_slow(seconds, self.slow_call_duration):
            stage = try_fail(self, admission, now, seconds, self.both_durations if kind == BOTH else self.run_durations)
            if stage != DONE:
                self.settle(stage, FAILURE, admission, now, seconds, kind)
        else:
            self.finish_slow(FAILURE, admission, now, seconds, kind)

    def settle_success(self, stage: int, admission: Admission, now: float, seconds: float, block: bool = True) -> bool:
        """`settle` for a success, counted as the run's and the call's duration."""
        return self.settle(stage, SUCCESS, admission, now, seconds, BOTH, block)

    def settle(
        self, stage: int, event: int, admission: Admission, now: float, seconds: float, kind: int, block: bool = True
    ) -> bool:
        """Under the lock, what a lock-free step (`try_succeed`, `try_fail`) left: all of the outcome (``stage``
        `NOT_DONE`), or settling tickets owed and evaluating health after it (`SETTLE`). False: ``block`` is False
        and the lock is held (nothing was done)."""
        if not self.lock.acquire(block):
            return False
        try:
            if stage == NOT_DONE:
                self._report(self._finish(event, admission, now))
                self.latency.count(kind, seconds)
            else:
                self.tickets.settle()
                self._report(self._evaluate(now))
                self._publish()
        finally:
            self.lock.release()
        self.transitions.deliver()
        return True

    def finish(
        self, event: int, admission: Admission, now: float, seconds: float, kind: int = BOTH, block: bool = True
    ) -> bool:
        """An admitted call ended with ``event`` after a run of ``seconds``: count it, record the duration in
        histogram ``kind`` (`BOTH` if no fallback runs, `RUN` if one does, `NO_LATENCY`), give back the ticket and
        apply the outcome. False: ``block`` is False and the lock is held (nothing was done)."""
        if not self.lock.acquire(block):
            return False
        try:
            self._report(self._finish(event, admission, now))
            if kind != NO_LATENCY:
                self.latency.count(kind, seconds)
        finally:
            self.lock.release()
        self.transitions.deliver()
        return True

    def finish_slow(
        self, event: int, admission: Admission, now: float, seconds: float, kind: int = BOTH, block: bool = True
    ) -> bool:
        """`finish` for a run that took at least ``slow_call_duration``: ``slow`` is counted beside ``event`` (a
        success or a failure), and a slow probe fails. False: ``block`` is False and the lock is held (nothing was
        done)."""
        if not self.lock.acquire(block):
            return False
        try:
            self._report(self._finish(event, admission, now, slow=True))
            self.latency.count(kind, seconds)
        finally:
            self.lock.release()
        self.transitions.deliver()
        return True

    def count_fallback(self, event: int, now: float, total: float | None, block: bool = True) -> bool:
        """A fallback ended with ``event``; ``total``: the whole call's seconds (None for a call that never ran).
        Lock-free in the usual case. False: ``block`` is False and the lock is held (nothing was done)."""
        if try_count_fallback(self, event, now, total):
            return True
        if not self.lock.acquire(block):
            return False
        try:
            self._due(now)
            self.window.counts.add(event)
            if total is not None:
                self.latency.count(TOTAL, total)
        finally:
            self.lock.release()
        return True

    def record_total(self, seconds: float) -> None:
        """Record a whole call's duration (a `go()` future's, once it is resolved)."""
        now = self.clock()
        with self.lock:  # the latency window may turn over
            self._due(now)
            self.latency.count(TOTAL, seconds)

    def time_out(self, admission: Admission, now: float, total: float | None) -> None:
        """Thread isolation: the run outlived its timeout. Count a timeout and apply it (``total``: the call's
        whole duration, when no fallback runs). The run keeps its ticket until it really returns
        (`finish_abandoned`): that bounds the threads a hung dependency can hold."""
        with self.lock:  # the outcome, the abandoned count and any state change land together
            self.abandoned += 1
            self._report(self._record(TIMEOUT, admission, now))
            if total is not None:
                self.latency.count(TOTAL, total)
        self.transitions.deliver()

    def finish_abandoned(self, seconds: float) -> None:
        """Thread isolation: a run that timed out has now returned after ``seconds``: its ticket comes back."""
        now = self.clock()
        with self.lock:  # the abandoned count and the tickets
            self.abandoned -= 1
            self.tickets.give_back()
            self._publish()
            self._due(now)
            self.latency.count(RUN, seconds)

    def withdraw(self, admission: Admission, block: bool = True) -> bool:
        """An admitted call never ran (no thread could be started, or its run was not awaitable): give back its
        ticket and its probe slot; nothing is counted. False: ``block`` is False and the lock is held."""
        if not self.lock.acquire(block):
            return False
        try:
            self.tickets.give_back()
            self.machine.withdraw(admission)
            self._publish()
        finally:
            self.lock.release()
        return True

    # -- under the lock -----------------------------------------------------------------------------------------

    def _due(self, now: float) -> None:
        """Move the windows to ``now``'s bucket if it is past the current one."""
        if now >= self.window_end:
            window, latency = self.window, self.latency
            if now >= window.end:
                window.advance(now)
                self.settle_successes = True  # buckets left the window, which can raise the error percentage
            if now >= latency.end:
                latency.advance(now)
            self.window_end = min(window.end, latency.end) if LOCK_FREE else -math.inf

    def _record(self, event: int, admission: Admission, now: float, slow: bool = False) -> Transition:
        """Count an admitted call's primary ``event`` (and ``slow`` beside it) and apply it to the state machine
        (a slow probe failed, whatever its event)."""
        self._due(now)
        self.window.counts.add(event)
        if slow:
            self.window.counts.add(SLOW)
        self.window.observe(self.tickets.in_use, now)
        machine = self.machine
        if machine.is_current_probe(admission):
            transition, closed = machine.end_probe(FAILURE if slow and event == SUCCESS else event, now)
            if closed:
                self.window.clear()
                self._rearm()
            self._publish()
            return transition
        return None if event == CANCELLED else self._evaluate(now)

    def _finish(self, event: int, admission: Admission, now: float, slow: bool = False) -> Transition:
        transition = self._record(event, admission, now, slow)
        self.tickets.give_back()
        if self.tickets.owed or not self.admits_on_ticket:  # a ticket owed paid, maybe: admit lock-free again
            self._publish()
        return transition

    def _evaluate(self, now: float) -> Transition:
        """Apply the trip rule to the window (after an outcome, or a success counted lock-free while watched)."""
        owed = self.tickets.owed > 0  # tickets owed keep ``settle_successes`` True too (see `_publish`)
        if not self.machine.may_trip():
            self.settle_successes = owed
            self.failure_limit = sys.maxsize  # nothing trips now; whatever lets it trip again lowers it (`_rearm`)
            return None
        # A4 (`breaker._core.lockfree.try_succeed`, `try_fail`): the flag set and the limit lowered before the
        # counters are read, so an outcome counted after a read sees them, and comes back here.
        self.settle_successes = True
        self.failure_limit = -1
        window = self.window
        errors = window.errors()
        trip, watch = self.rule.assess(errors, window.successes)
        allowance = self.rule.budget - errors  # errors that can still come without any chance of a trip
        slow = window.slow() if not trip else 0
        if slow:  # slow calls in the window: the slow-call rule too; while it watches, every outcome evaluates
            trip, watch_slow = self.rule.assess_slow(slow, errors + window.successes())
            if watch_slow:
                watch, allowance = True, 0
        self.settle_successes = watch or owed
        self.failure_limit = self.failures.mark + allowance if allowance > 0 else -1
        if not trip:
            return None
        self.trip_figures = (errors, errors + window.successes(), slow)
        self.fleet_trip = None
        transition = self.machine.open(now)
        self._publish()
        return transition

    def _rearm(self) -> None:
        """Health may trip the circuit again, or by new rules: the next success and failure evaluate it."""
        self.settle_successes = True
        self.failure_limit = -1

    def _report(self, transition: Transition) -> None:
        if transition is not None:
            self.transitions.push(*transition)

    def _deliver_one(self, old: State, new: State) -> None:
        circuit = self.circuit
        if circuit is not None:
            self._emit(circuit, old, new)

    # -- fleet mode: the sync thread of `breaker.configure_fleet` drives these, through `breaker._core.circuit` --

    def health_counts(self) -> tuple[int, int]:
        """(requests, errors) since creation, as health counts them: what the fleet sync sends as deltas."""
        with self.lock:  # a consistent read of the counters
            totals = self.window.cumulative()
        errors = totals[FAILURE] + totals[TIMEOUT] + totals[REJECTED]
        return errors + totals[SUCCESS], errors

    def refusal_count(self) -> int:
        """Short-circuited calls since creation (fleet mode: whether a call is waiting for the fleet's probe)."""
        with self.lock:  # a consistent read of the counters
            return self.window.cumulative()[SHORT_CIRCUIT]

    def lead(self, led: bool, held: bool) -> None:
        """Fleet mode: ``led``: the fleet decides trips; ``held``: an open circuit waits for the fleet's probe."""
        with self.lock:  # the flags, the sleep window they set and the published flags change together
            machine = self.machine
            machine.led = led
            machine.held = held
            if not led:
                self._rearm()  # local health decides again: the next outcome evaluates it
            self._publish()

    def fleet_open(self, opened_at: float, trip: FleetTrip) -> None:
        """Fleet mode: the fleet ``trip`` describes opened at ``opened_at`` (this circuit's clock)."""
        with self.lock:  # state and flags change together
            transition = self.machine.fleet_open(opened_at)
            if transition is not None:
                self.fleet_trip = trip
            self._report(transition)
            self._publish()
        self.transitions.deliver()

    def fleet_close(self) -> None:
        """Fleet mode: the fleet's probe succeeded somewhere: close and clear the window, as a local probe would."""
        with self.lock:  # state, window and flags change together
            if self.machine.state is State.CLOSED:
                return
            self._report(self.machine.close())
            self.window.clear()
            self._rearm()
            self._publish()
        self.transitions.deliver()
