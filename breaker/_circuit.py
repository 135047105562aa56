"""The circuit: state machine, tickets and rolling health of one command. The decision core.

It does no I/O, never sleeps or waits, starts no threads and never calls user code. Drivers (`_execute`) call
`admit` before a run and one of `complete` / `finish` / `time_out` after it; each is one short section under the
circuit's lock. State changes are queued under the lock, in the order they happen, and handed to the ``emit``
callback after the lock is released, one at a time and in that order (`_deliver`).

The hot path. A call's ticket is a token popped from ``_tokens`` (``list.pop`` and ``list.append`` are atomic), so
an ordinary admission takes no lock: the driver reads ``_gate``, pops a token and reads ``_gate`` again (the call
is admitted at the pop if the circuit was closed then). A success in the current bucket is counted by the driver in
one short section under ``_lock`` (`count_success`); everything else goes through the methods below.

States (Netflix Hystrix's, with hystrix-go's defects fixed):

- CLOSED: calls are admitted while a ticket is free. Each recorded outcome re-evaluates health; the circuit trips
  OPEN when the window holds at least ``request_volume_threshold`` requests and the error percentage, rounded
  half up, is at least ``error_percent_threshold``.
- OPEN: calls are short-circuited. The first call after ``sleep_window`` becomes the probe: HALF_OPEN.
- HALF_OPEN: calls are short-circuited while the probe runs. Only the probe's own outcome moves the circuit:
  success closes it and clears the window; failure, timeout or rejection reopens it with a fresh sleep window; a
  bad request frees the probe slot for the next call. A probe that outlives its timeout without reporting (caller
  isolation) counts as failed when the next call arrives.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Final, Protocol

from ._events import (
    BAD_REQUEST,
    CANCELLED,
    EVENTS,
    FAILURE,
    REJECTED,
    SHORT_CIRCUIT,
    SUCCESS,
    TIMEOUT,
    State,
)
from ._latency import Histogram, LatencyStatistics, LatencyWindow
from ._metrics import Collector
from ._rolling import RollingCounter
from ._settings import Settings

__all__ = ["Circuit", "CircuitStatistics", "FleetView"]

#: `admit` results; a positive result is an admitted probe's id.
ADMITTED: Final = 0
SHORT_CIRCUITED: Final = -1
REJECTED_CALL: Final = -2

_CLOSED, _OPEN, _HALF_OPEN = State.CLOSED, State.OPEN, State.HALF_OPEN

Emit = Callable[["Circuit", State, State], None]


class Attempt(Protocol):
    """A run in progress on another thread, whose outcome the run and its timeout race to decide."""

    #: The once-guard: one item until the outcome is decided. Whichever side pops it (``list.pop`` is atomic)
    #: decides; the other finds it empty.
    guard: list[object]
    probe: int


@dataclasses.dataclass(frozen=True, slots=True)
class CircuitStatistics:
    """A frozen snapshot of one circuit.

    Attributes:
        name: The command name.
        state: The state, forced states included.
        requests: success + failure + timeout + rejected over the rolling window.
        errors: failure + timeout + rejected over the rolling window.
        error_percentage: ``errors / requests`` as a percentage rounded half up (0 with no requests).
        counts: Every event name mapped to its count over the rolling window, zeros included.
        active: Tickets held: runs in progress, abandoned ones included.
        abandoned: Runs that timed out and are still running (thread isolation); each still holds its ticket.
        max_concurrent_requests: The ticket count.
        peak_active: The most tickets seen held at once over the rolling window. Sampled, not exact: taken when
            an outcome is recorded under the lock, when a call finds no ticket, and at each `statistics()`.
        cumulative: Every event name mapped to its count since the circuit was created (monotonic).
        latency_execute: Run durations over the latency window (calls that ran).
        latency_total: Whole call durations over the latency window, fallback included (calls that ran; the
            microseconds of a thread hand-off are left out, as in hystrix-go).
        run_durations: Run durations since creation, by histogram bucket.
        total_durations: Whole call durations since creation, by histogram bucket.
        settings: The settings the circuit runs with.
    """

    name: str
    state: State
    requests: int
    errors: int
    error_percentage: int
    counts: Mapping[str, int]
    active: int
    abandoned: int
    max_concurrent_requests: float
    peak_active: int
    cumulative: Mapping[str, int]
    latency_execute: LatencyStatistics
    latency_total: LatencyStatistics
    run_durations: Histogram
    total_durations: Histogram
    settings: Settings
    fleet: FleetView | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class FleetView:
    """What the fleet (`breaker.configure_fleet`) shares of a circuit, as of the last sync with Redis.

    Attributes:
        state: The fleet's state: ``"closed"`` or ``"open"`` (an open fleet lets one process probe).
        requests: The fleet's requests over its rolling window (every process's successes and errors).
        errors: The fleet's errors over the window.
        error_percentage: ``errors / requests`` as a percentage rounded half up (0 with no requests).
        generation: Bumped at every fleet state change; counts sent for an older one are dropped.
        connected: Whether the last sync reached Redis. While it does not, the circuit runs on local state alone.
        probing: Whether this process holds the fleet's probe lease.
        synced_at: When the last sync that reached Redis ended, on the circuit's clock.
    """

    state: str
    requests: int
    errors: int
    error_percentage: int
    generation: int
    connected: bool
    probing: bool
    synced_at: float


def error_budget(volume: int, threshold: float) -> int:
    """The most errors a window can hold without possibly tripping, however few its successes.

    A trip needs at least ``max(volume, errors)`` requests, and the percentage is highest with the fewest. With
    ``errors >= volume`` it is 100, so the budget is below ``volume``; below it, the rounded percentage over
    ``volume`` requests, ``(200 * errors + volume) // (2 * volume)``, stays under the threshold exactly when
    ``200 * errors < volume * (2 * ceil(threshold) - 1)``.
    """
    if volume < 1:
        return 0 if threshold > 100 else -1  # a single error is 100%: no budget
    return min((volume * (2 * math.ceil(threshold) - 1) - 1) // 200, volume - 1)


def error_percentage(errors: int, requests: int) -> int:
    """``100 * errors / requests`` rounded half up, in integers (no float rounding surprises)."""
    if not requests:
        return 0
    return (errors * 200 + requests) // (requests * 2)


class Circuit:
    """The circuit breaker of one command. Get one with `breaker.get_circuit`."""

    __slots__ = (
        "__weakref__",
        "_courier",
        "_debt",
        "_emit",
        "_error_budget",
        "_force_closed",
        "_force_open",
        "_gate",
        "_held",
        "_issued",
        "_led",
        "_lock",
        "_opened_at",
        "_probe_deadline",
        "_probe_id",
        "_probe_in_flight",
        "_rolling",
        "_sleep",
        "_state",
        "_threshold",
        "_tokens",
        "_transitions",
        "_trip_errors",
        "_trip_requests",
        "_unlimited",
        "_volume",
        "_watch",
        "abandoned",
        "clock",
        "collectors",
        "detour",
        "fleet",
        "ignored",
        "inline",
        "inline_async",
        "isolation",
        "live",
        "name",
        "settings",
        "threaded",
        "timeout",
    )

    def __init__(self, name: str, settings: Settings, clock: Callable[[], float], emit: Emit) -> None:
        self.name = name
        self.clock = clock
        self._emit = emit
        #: True while this circuit is the one its name resolves to (in the current registry, not flushed);
        #: decorated functions cache their circuit and look it up again when this turns False (`set_live`).
        self.live = False
        self.inline = self.inline_async = False
        # Guards state, counts, the ticket bookkeeping other than the token list itself, and the probe. Held only
        # for a few field updates: never across user code, I/O, a wait or the emit callback.
        self._lock = threading.Lock()
        self._state = _CLOSED
        self._opened_at = -math.inf
        self._probe_in_flight = False
        self._probe_id = 0
        self._probe_deadline = math.inf
        #: Free tickets. Tickets held = ``_issued - len(_tokens)``.
        self._tokens: list[int] = []
        self._issued = 0
        self._debt = 0  # tickets to destroy as they come back, after max_concurrent_requests was lowered
        #: Runs that timed out and still hold their ticket.
        self.abandoned = 0
        now = clock()
        latency = LatencyWindow(settings.latency_window, settings.latency_buckets, now)
        self._rolling = RollingCounter(settings.rolling_window, settings.rolling_buckets, now, latency)
        #: State changes not yet delivered, oldest first (appended under the lock), and the delivery token: one
        #: item while nobody delivers (`_deliver`).
        self._transitions: collections.deque[tuple[State, State]] = collections.deque()
        self._courier: list[object] = [None]
        #: What observes each call (`breaker.register_collector`); replaced whole, never mutated.
        self.collectors: tuple[Collector, ...] = ()
        #: Could one more success trip the circuit (errors in the window, volume floor still ahead)? Only then
        #: does the lock-free success path take the lock to evaluate health.
        self._watch = False
        # The window's figures when it last opened, for the log line (read without the lock).
        self._trip_errors = self._trip_requests = 0
        #: Fleet mode (`breaker.configure_fleet`): ``_led`` while the fleet decides when the circuit trips (local
        #: health never trips it then); ``_held`` while an open circuit waits for the fleet's probe lease (its
        #: sleep window never ends then). Both False outside fleet mode and while Redis is unreachable.
        self._led = self._held = False
        #: The fleet's figures as of its last sync (None outside fleet mode); replaced whole by the sync thread.
        self.fleet: FleetView | None = None
        self._apply(settings)

    def __repr__(self) -> str:
        return (
            f"<Circuit {self.name!r} state={self.state.value} active={self.active}/"
            f"{self.settings.max_concurrent_requests} abandoned={self.abandoned}>"
        )

    def _apply(self, settings: Settings) -> None:
        self.settings = settings
        self.timeout = settings.timeout
        self.ignored = settings.ignored_exceptions
        self.isolation = settings.isolation
        self.threaded = settings.isolation == "thread"
        #: Whether a sync call leaves the inline caller path: thread isolation, or collectors to report to.
        self.detour = self.threaded or bool(self.collectors)
        #: live and not detour: the one flag a decorated sync function checks before its inline path (and
        #: ``inline_async``: live without collectors, for a decorated coroutine function).
        self.inline = self.live and not self.detour
        self._volume = settings.request_volume_threshold
        self._threshold = settings.error_percent_threshold
        self._sleep = math.inf if self._held else settings.sleep_window
        self._force_open = settings.force_open
        self._force_closed = settings.force_closed
        self._error_budget = error_budget(settings.request_volume_threshold, settings.error_percent_threshold)
        self._unlimited = settings.max_concurrent_requests == math.inf
        target = 0 if self._unlimited else int(settings.max_concurrent_requests)
        target_issued = self._issued - self._debt
        if target > target_issued:
            grow = target - target_issued
            repaid = min(grow, self._debt)
            self._debt -= repaid
            self._tokens.extend([1] * (grow - repaid))
            self._issued += grow - repaid
        elif target < target_issued and not self._unlimited:
            shrink = target_issued - target
            while shrink and self._tokens:
                self._tokens.pop()
                self._issued -= 1
                shrink -= 1
            self._debt += shrink
        self._set_gate()

    def _set_gate(self) -> None:
        # The one flag the hot path reads: may a call be admitted on a ticket alone?
        self._gate = not self._force_open and (self._force_closed or self._state is _CLOSED)

    def set_live(self, live: bool) -> None:
        """Mark this circuit as the one its name resolves to (True) or as dropped (False)."""
        self.live = live
        self.inline = live and not self.detour
        self.inline_async = live and not self.collectors

    # -- queries: pure, they never change the circuit --------------------------------------------------------

    @property
    def state(self) -> State:
        """The current state. An open circuit whose sleep window is over stays OPEN until a call probes it."""
        if self._force_open:
            return State.FORCED_OPEN
        if self._force_closed:
            return State.FORCED_CLOSED
        return self._state

    @property
    def active(self) -> int:
        """Tickets held: runs in progress, abandoned ones included."""
        return self._issued - len(self._tokens)

    def is_open(self) -> bool:
        """Whether an ordinary call would be short-circuited: open, half-open or forced open."""
        return self.state in (State.OPEN, State.HALF_OPEN, State.FORCED_OPEN)

    def allow_request(self) -> bool:
        """Whether a call arriving now would be admitted to run. A pure query: it never takes the probe."""
        now = self.clock()
        with self._lock:  # a consistent view of state and tickets
            if self._force_open:
                return False
            tickets = bool(self._tokens) or self._unlimited
            if self._gate:
                return tickets
            if self._state is _OPEN:
                return tickets and now - self._opened_at >= self._sleep
            return tickets and not self._probe_in_flight

    def statistics(self) -> CircuitStatistics:
        """A frozen snapshot of the circuit's state, counts and tickets."""
        now = self.clock()
        with self._lock:  # a consistent snapshot across the counters, tickets and histograms
            rolling = self._rolling
            active, abandoned = self.active, self.abandoned
            rolling.observe(active, now)
            totals = rolling.totals_at(now)
            cumulative = rolling.cumulative()
            peak = rolling.peak_at(now)
            execute, total, run_durations, total_durations = rolling.latency.snapshot(now)
            settings = self.settings
            state = self.state  # with the counts it goes with
            fleet = self.fleet
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
            fleet=fleet,
        )

    # -- admission ----------------------------------------------------------------------------------------------

    def try_enter(self) -> bool:
        """The lock-free admission of an ordinary call to a closed circuit: True if it now holds a ticket.

        False means: go through `admit`, which decides (and counts) everything else.
        """
        if self._gate:
            tokens = self._tokens
            try:
                tokens.pop()
            except IndexError:
                return False
            if self._gate:  # still closed after the pop: the call was admitted at the pop
                return True
            tokens.append(1)
        return False

    def enter(self, now: float) -> int:
        """`try_enter`, else `short_circuit`, else `admit`: the lock only when the lock-free paths cannot decide."""
        if self.try_enter():
            return ADMITTED
        if not self._gate and self.short_circuit(now):  # force_closed, or closed: never short-circuit
            return SHORT_CIRCUITED
        return self.admit(now)

    def admit(self, now: float) -> int:
        """Decide under the lock whether a call may run; on yes it holds a ticket.

        Returns:
            `ADMITTED`, a probe id (> 0), `SHORT_CIRCUITED` or `REJECTED_CALL`. Refusals are already counted.
        """
        with self._lock:  # the ticket, the state and the probe slot decide together
            code, transition = self._admit(now)
        if transition is not None:
            self._deliver()
        return code

    def _take_ticket(self) -> bool:
        try:
            self._tokens.pop()
        except IndexError:
            if not self._unlimited:
                return False
            self._issued += 1
        return True

    def _admit(self, now: float) -> tuple[int, tuple[State, State] | None]:
        add = self._add
        if self._force_open:
            add(SHORT_CIRCUIT, now)
            return SHORT_CIRCUITED, None
        if self._gate:
            if self._take_ticket():
                return ADMITTED, None
            add(REJECTED, now)
            self._rolling.observe(self.active, now)
            return REJECTED_CALL, self._check_health(now)
        if self._state is _OPEN:
            if now - self._opened_at < self._sleep:
                add(SHORT_CIRCUIT, now)
                return SHORT_CIRCUITED, None
            if not self._take_ticket():  # the would-be probe finds no ticket: a failed probe
                add(REJECTED, now)
                self._opened_at = now
                return REJECTED_CALL, None
            self._state = _HALF_OPEN
            self._note(_OPEN, _HALF_OPEN)
            return self._start_probe(now), (_OPEN, _HALF_OPEN)
        # HALF_OPEN
        if self._probe_in_flight:
            add(SHORT_CIRCUIT, now)
            if now <= self._probe_deadline:  # a run at exactly its timeout is still in time, as the drivers judge
                return SHORT_CIRCUITED, None
            # The probe outlived its timeout and has not reported (caller isolation): it failed.
            return SHORT_CIRCUITED, self._reopen(now)
        if not self._take_ticket():
            add(REJECTED, now)
            return REJECTED_CALL, self._reopen(now)
        return self._start_probe(now), None

    def _add(self, slot: int, now: float) -> None:
        """Count an event under the lock. A new bucket drops old counts, which can raise the error percentage:
        the next lock-free success must then evaluate health (`_watch`), whatever the event was."""
        rolling = self._rolling
        if now >= rolling.end:
            rolling.advance(now)
            self._watch = True  # conservative: the next success evaluates health exactly and resets it
        rolling.add(slot, now)

    def _note(self, old: State, new: State) -> None:
        """Queue a change of the state machine for delivery, unless a forced state hides it (the visible state does
        not change then; `configure` reports the change when the force is lifted)."""
        if not (self._force_open or self._force_closed):
            self._transitions.append((old, new))

    def _start_probe(self, now: float) -> int:
        self._probe_in_flight = True
        self._probe_id += 1
        self._probe_deadline = now + self.timeout
        self._set_gate()
        return self._probe_id

    def _reopen(self, now: float) -> tuple[State, State] | None:
        self._trip_errors = errors = self._rolling.error_total()
        self._trip_requests = errors + self._rolling.successes()
        old = self._state
        self._state = _OPEN
        self._opened_at = now
        self._probe_in_flight = False
        self._set_gate()
        if old is _OPEN:
            return None
        self._note(old, _OPEN)
        return (old, _OPEN)

    # -- outcomes -----------------------------------------------------------------------------------------------

    def give_back(self) -> None:
        """Return one ticket to the pool."""
        if self._debt:
            with self._lock:  # re-check: another returning ticket may have paid the debt
                if self._repay():
                    return
        self._tokens.append(1)

    def _repay(self) -> bool:
        """Under the lock: destroy a returning ticket if tickets are owed (max_concurrent_requests went down)."""
        if self._debt:
            self._debt -= 1
            self._issued -= 1
            return True
        return False

    @property
    def trip_figures(self) -> tuple[int, int]:
        """(errors, requests) in the window when the circuit last opened."""
        return self._trip_errors, self._trip_requests

    def count_success(self, now: float) -> None:
        """Count an ordinary (non-probe) success; the caller gives its ticket back itself.

        The drivers inline the lock-free case: ``now < _rolling.end``: ``next(_rolling.success)``, then
        `check_health` only if ``_watch``.
        """
        rolling = self._rolling
        if now < rolling.end:
            next(rolling.success)  # atomic: no lock
            if self._watch:
                self.check_health(now)
            return
        with self._lock:  # a new bucket: the ring advances, which changes the totals health reads
            self._add(SUCCESS, now)
            transition = self._check_health(now)
        if transition is not None:
            self._deliver()

    def fail(self, now: float) -> None:
        """Count an ordinary (non-probe) failure; the caller gives its ticket back itself.

        Lock-free unless the circuit might trip. ``next(failure)`` returns at least the bucket's earlier failures,
        so ``errors`` below is an upper bound on the window's errors; if even that, over the fewest requests a
        trip needs, is under the threshold, nothing can trip. Otherwise health is evaluated exactly, locked.
        """
        rolling = self._rolling
        if now < rolling.end:
            if rolling.errors + next(rolling.failure) >= self._error_budget:  # upper bound + 1 > budget
                self.check_health(now)
            return
        with self._lock:  # a new bucket: the ring advances
            self._add(FAILURE, now)
            transition = self._check_health(now)
        if transition is not None:
            self._deliver()

    def short_circuit(self, now: float) -> bool:
        """The lock-free refusal of a call to an open circuit: True if it was short-circuited (and counted).

        False means: go through `admit` (the sleep window is over, or the circuit is closed).
        """
        if not self._force_open:
            state = self._state
            if state is _OPEN:
                if now - self._opened_at >= self._sleep:
                    return False
            elif state is not _HALF_OPEN or not self._probe_in_flight or now > self._probe_deadline:
                return False
        rolling = self._rolling
        if now < rolling.end:
            next(rolling.short)  # atomic: no lock
        else:
            with self._lock:  # a new bucket: the ring advances
                self._add(SHORT_CIRCUIT, now)
        return True

    def check_health(self, now: float) -> None:
        """Evaluate health now (after a success counted lock-free while ``_watch`` was set)."""
        with self._lock:  # health reads the totals and may change the state
            transition = self._check_health(now)
        if transition is not None:
            self._deliver()

    def _check_health(self, now: float) -> tuple[State, State] | None:
        rolling = self._rolling
        errors = rolling.error_total()
        if not errors or self._state is not _CLOSED or self._force_closed or self._led:
            self._watch = False
            return None
        if errors <= self._error_budget:  # nothing can trip now, and no success can make it: skip reading them
            self._watch = False
            return None
        threshold = self._threshold
        requests = errors + rolling.successes()
        if requests >= self._volume and (errors * 200 + requests) // (requests * 2) >= threshold:
            self._watch = False
            return self._reopen(now)
        # Successes only lower the error percentage: the highest it can be once the volume floor is reached is
        # with the fewest requests that reach it.
        fewest = max(requests + 1, self._volume)
        self._watch = (errors * 200 + fewest) // (fewest * 2) >= threshold
        return None

    def _record(self, slot: int, probe: int, now: float) -> tuple[State, State] | None:
        """Count a run's primary outcome and apply it to the state machine. Call under the lock."""
        self._add(slot, now)
        self._rolling.observe(self.active, now)
        if not probe:
            return self._check_health(now) if slot != CANCELLED else None
        if probe != self._probe_id or not self._probe_in_flight:
            return self._check_health(now) if slot != CANCELLED else None  # a stale probe: counted, health checked
        self._probe_in_flight = False
        if slot == SUCCESS:
            self._state = _CLOSED
            self._rolling.clear()
            self._set_gate()
            self._note(_HALF_OPEN, _CLOSED)
            return (_HALF_OPEN, _CLOSED)
        if slot in (BAD_REQUEST, CANCELLED):
            return None  # neither good nor bad news: the next call probes
        return self._reopen(now)

    def complete(self, slot: int, probe: int, now: float, *, ticket: bool = True) -> None:
        """A run on the caller's thread ended with ``slot``: record the outcome and give back its ticket."""
        with self._lock:  # the outcome and any state change land together
            transition = self._record(slot, probe, now)
        if ticket:
            self.give_back()
        if transition is not None:
            self._deliver()

    def finish(self, attempt: Attempt, slot: int, now: float) -> bool:
        """A run on a worker ended with ``slot``: give back its ticket and, unless it timed out, record it.

        Returns:
            True if this decided the call's outcome; False if the timeout had already decided it.
        """
        try:
            attempt.guard.pop()
        except IndexError:  # the timeout decided first: the run was abandoned, and now it is over
            with self._lock:  # the abandoned count is shared
                self.abandoned -= 1
            self.give_back()
            return False
        if slot == SUCCESS and not attempt.probe:
            self.count_success(now)  # lock-free in the usual case
        else:
            with self._lock:  # the outcome and any state change land together
                transition = self._record(slot, attempt.probe, now)
            if transition is not None:
                self._deliver()
        self.give_back()
        return True

    def time_out(self, attempt: Attempt, now: float) -> bool:
        """The attempt's timeout fired: unless the run already finished, record a timeout.

        The run keeps its ticket until it really returns (see `finish`): that bounds the threads a hung
        dependency can hold to ``max_concurrent_requests``.

        Returns:
            True if this decided the call's outcome (a timeout); False if the run had already finished.
        """
        try:
            attempt.guard.pop()
        except IndexError:
            return False
        with self._lock:  # the outcome, the abandoned count and any state change land together
            self.abandoned += 1
            transition = self._record(TIMEOUT, attempt.probe, now)
        if transition is not None:
            self._deliver()
        return True

    def withdraw(self, attempt: Attempt) -> None:
        """An admitted call could not be started (no thread could be made): give back its ticket and probe."""
        try:
            attempt.guard.pop()
            timed_out = False
        except IndexError:
            timed_out = True  # its timer fired first and counted it abandoned
        with self._lock:  # the abandoned count and the probe slot
            if timed_out:
                self.abandoned -= 1
            if attempt.probe and attempt.probe == self._probe_id:
                self._probe_in_flight = False
        self.give_back()

    def count(self, slot: int, now: float) -> None:
        """Count a secondary event (a fallback's outcome)."""
        with self._lock:  # the counters are shared by every caller
            self._add(slot, now)

    # -- fleet mode: the sync thread of `breaker.configure_fleet` drives these; the hot path never sees them ----

    def health_counts(self) -> tuple[int, int]:
        """(requests, errors) since creation, as health counts them: what the fleet sync sends as deltas."""
        with self._lock:  # a consistent read of the counters
            totals = self._rolling.cumulative()
        errors = totals[FAILURE] + totals[TIMEOUT] + totals[REJECTED]
        return errors + totals[SUCCESS], errors

    def lead(self, led: bool, held: bool) -> None:
        """Fleet mode: ``led``: the fleet decides trips, local health never does; ``held``: an open circuit keeps
        short-circuiting past its sleep window, until the fleet grants this process the probe."""
        with self._lock:  # the flags and the sleep window they set change together
            self._led = led
            self._held = held
            self._sleep = math.inf if held else self.settings.sleep_window
            if not led:
                self._watch = True  # local health decides again: the next success evaluates it

    def fleet_open(self, opened_at: float) -> None:
        """Fleet mode: the fleet opened at ``opened_at`` (this circuit's clock): open, unless already open."""
        with self._lock:  # state and probe change together
            if self._state is _CLOSED:
                transition = self._reopen(opened_at)
            else:
                transition = None
                if self._state is _OPEN:
                    self._opened_at = opened_at  # the fleet's sleep window, not this process's
        if transition is not None:
            self._deliver()

    def fleet_close(self) -> None:
        """Fleet mode: the fleet's probe succeeded somewhere: close and clear the window, as a local probe would."""
        with self._lock:  # state, probe and counts change together
            if self._state is _CLOSED:
                return
            old = self._state
            self._state = _CLOSED
            self._probe_in_flight = False
            self._rolling.clear()
            self._set_gate()
            self._note(old, _CLOSED)
        self._deliver()

    def configure(self, settings: Settings) -> None:
        """Apply new settings at once, keeping the counts (re-bucketed if the window's shape changed)."""
        now = self.clock()
        with self._lock:  # settings, tickets, gate and counters change together
            before = self.state
            old = self.settings
            if (old.rolling_window, old.rolling_buckets) != (settings.rolling_window, settings.rolling_buckets):
                self._rolling = self._rolling.resized(settings.rolling_window, settings.rolling_buckets, now)
            if (old.latency_window, old.latency_buckets) != (settings.latency_window, settings.latency_buckets):
                latency = self._rolling.latency.resized(settings.latency_window, settings.latency_buckets, now)
                self._rolling.use_latency(latency)
            self._apply(settings)
            # New thresholds: let the next success evaluate health (a configuration change never trips).
            self._watch = True
            after = self.state
            if after is not before:
                self._transitions.append((before, after))
        self._deliver()

    def _deliver(self) -> None:
        """Hand queued state changes to ``emit`` in order, outside every lock; one thread at a time does it.

        Whoever pops the token delivers; a thread that finds it taken leaves its change to the holder, which looks
        at the queue again after putting the token back (so nothing is left behind).
        """
        transitions, courier = self._transitions, self._courier
        while transitions:
            try:
                courier.pop()  # atomic: the token
            except IndexError:
                return  # another thread is delivering: it will see ours
            try:
                while transitions:
                    old, new = transitions.popleft()
                    self._emit(self, old, new)
            finally:
                courier.append(None)

    def add_collectors(self, collectors: Sequence[Collector]) -> None:
        """Report every call from now on to ``collectors`` too."""
        with self._lock:  # collectors and the flags change together; concurrent additions are all kept
            self.collectors = (*self.collectors, *collectors)
            self.detour = self.threaded or bool(self.collectors)
            self.inline = self.live and not self.detour
            self.inline_async = self.live and not self.collectors
