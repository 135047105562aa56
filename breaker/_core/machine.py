"""The state machine of one circuit: CLOSED, OPEN and HALF_OPEN, the probe and its sleep window, the force flags.

Pure: it holds no lock (the engine holds its own around every call) and reads no clock (every time is given).
Netflix Hystrix's states, with hystrix-go's defects fixed:

- CLOSED: calls are admitted while a ticket is free; the trip rule (`breaker._core.health`) opens it.
- OPEN: calls are short-circuited until the sleep window ends; the next call after it becomes the probe.
- HALF_OPEN: calls are short-circuited while the probe runs. Only the probe's own outcome moves the circuit:
  ``probes_to_close`` successes in a row close it (and the engine clears the window), one probe at a time, the
  circuit staying half-open between them; failure, timeout or rejection reopens it with a fresh sleep window,
  ``sleep_window * sleep_window_multiplier ** k`` after the k-th failed probe in a row (at most
  ``max_sleep_window``; back to ``sleep_window`` once it closes); a bad request or a cancelled probe frees the
  slot for the next call. A probe that outlives its deadline (its start plus the timeout, the current one if it
  was reconfigured meanwhile) without reporting counts as failed when the next call arrives.
- ``force_open`` / ``force_closed`` override the states underneath while set (reported as FORCED_OPEN /
  FORCED_CLOSED); changes underneath are not reported then.

Fleet mode (`breaker.fleet`) adds two flags: ``led`` (the fleet decides trips: local health never does) and
``held`` (an open circuit waits for the fleet's probe lease: its sleep window never ends on its own).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypeAlias

from .events import BAD_REQUEST, CANCELLED, SUCCESS, State
from .outcome import ADMITTED, REJECTED_CALL, SHORT_CIRCUITED, Admission, Probe
from .settings import Settings

__all__ = ["StateMachine", "Transition"]

Transition: TypeAlias = "tuple[State, State] | None"

CLOSED, OPEN, HALF_OPEN = State.CLOSED, State.OPEN, State.HALF_OPEN


class StateMachine:
    """The state of one circuit, and the rules that move it.

    Attributes:
        state: The state underneath the force flags.
        opened_at: When it last opened (or a would-be probe last found no ticket).
        probe: The probe in flight, or None.
    """

    __slots__ = (
        "failed_probes",
        "force_closed",
        "force_open",
        "good_probes",
        "held",
        "led",
        "max_sleep_window",
        "multiplier",
        "opened_at",
        "probe",
        "probes_to_close",
        "sleep_window",
        "state",
    )

    def __init__(self, settings: Settings) -> None:
        self.state = CLOSED
        self.opened_at = -math.inf
        self.probe: Probe | None = None
        self.led = self.held = False
        #: Probes failed in a row since the circuit last closed (each grows the sleep window), and probes that
        #: succeeded in a row since the last failed one (``probes_to_close`` of them close the circuit).
        self.failed_probes = self.good_probes = 0
        self.configure(settings)

    def __repr__(self) -> str:
        return f"<StateMachine {self.visible.value}>"

    def configure(self, settings: Settings) -> None:
        """New settings, at once: the sleep window, the force flags, and the deadline of a probe in flight (its
        start plus the new timeout: a probe started with no timeout cannot keep the circuit half-open for good
        once one is set)."""
        self.sleep_window = settings.sleep_window
        self.multiplier = settings.sleep_window_multiplier
        self.max_sleep_window = settings.max_sleep_window
        self.probes_to_close = settings.probes_to_close
        self.force_open = settings.force_open
        self.force_closed = settings.force_closed
        if self.probe is not None:
            self.probe.deadline = self.probe.started + settings.timeout

    # -- what it says -------------------------------------------------------------------------------------------

    @property
    def visible(self) -> State:
        """The state reported to users: the force flags override the state underneath."""
        if self.force_open:
            return State.FORCED_OPEN
        if self.force_closed:
            return State.FORCED_CLOSED
        return self.state

    @property
    def grown_sleep_window(self) -> float:
        """The sleep window after ``failed_probes`` failed probes in a row: ``sleep_window * multiplier **
        failed_probes``, at most ``max_sleep_window``."""
        try:
            grown = self.sleep_window * self.multiplier**self.failed_probes
        except OverflowError:  # a float power past the largest float raises instead of giving inf
            grown = math.inf
        return min(grown, self.max_sleep_window)

    @property
    def sleep(self) -> float:
        """Seconds an open circuit short-circuits before a probe (never ends while held by the fleet)."""
        return math.inf if self.held else self.grown_sleep_window

    @property
    def needs_only_a_ticket(self) -> bool:
        """Whether a call needs nothing but a ticket: closed or forced closed, and not forced open."""
        return not self.force_open and (self.force_closed or self.state is CLOSED)

    @property
    def open_until(self) -> float:
        """Calls arriving before this time are short-circuited, whatever else happens (``-inf``: none are)."""
        if self.force_open:
            return math.inf
        if self.force_closed or self.state is CLOSED:
            return -math.inf
        if self.state is OPEN:
            return self.opened_at + self.sleep
        probe = self.probe
        return -math.inf if probe is None else probe.deadline

    @property
    def next_probe_at(self) -> float:
        """When the next probe may go: the sleep window's end while open (fleet mode: the local sleep window's, an
        estimate, since the fleet's lease decides); ``-inf`` when one may go now or is in flight; ``inf`` while
        forced open."""
        if self.force_open:
            return math.inf
        if self.force_closed or self.state is not OPEN:
            return -math.inf
        return self.opened_at + self.grown_sleep_window

    def may_trip(self) -> bool:
        """Whether the trip rule applies now: closed, not forced closed, not led by the fleet."""
        return self.state is CLOSED and not self.force_closed and not self.led

    def is_current_probe(self, admission: Admission) -> bool:
        """Whether ``admission`` is the probe in flight."""
        return admission is self.probe and admission is not None

    # -- what moves it ------------------------------------------------------------------------------------------

    def admit(self, now: float, take_ticket: Callable[[], bool], timeout: float) -> tuple[Admission, Transition]:
        """Decide a call arriving at ``now`` (``take_ticket()`` takes one if the call may run)."""
        if self.force_open:
            return SHORT_CIRCUITED, None
        if self.force_closed or self.state is CLOSED:
            return (ADMITTED if take_ticket() else REJECTED_CALL), None
        if self.state is OPEN:
            if now < self.open_until:
                return SHORT_CIRCUITED, None
            if not take_ticket():
                self.opened_at = now  # the would-be probe found no ticket: it failed, and a new sleep window starts
                return REJECTED_CALL, None
            return self._start_probe(now, timeout), self._move(HALF_OPEN)
        # HALF_OPEN
        probe = self.probe
        if probe is not None:
            if now <= probe.deadline:  # a run at exactly its timeout is still in time, as the drivers judge it
                return SHORT_CIRCUITED, None
            return SHORT_CIRCUITED, self._probe_failed(now)  # it outlived its deadline without reporting
        if not take_ticket():
            return REJECTED_CALL, self._probe_failed(now)
        return self._start_probe(now, timeout), None

    def _start_probe(self, now: float, timeout: float) -> Probe:
        self.probe = probe = Probe(now, timeout)
        return probe

    def end_probe(self, event: int, now: float) -> tuple[Transition, bool]:
        """The current probe ended with ``event``. Returns the transition and whether the circuit closed (its
        window must be cleared)."""
        self.probe = None
        if event == SUCCESS:
            self.good_probes += 1
            if self.good_probes < self.probes_to_close:
                return None, False  # half-open still: the next call probes
            return self.close(), True
        if event in (BAD_REQUEST, CANCELLED):
            return None, False  # neither good nor bad news: the next call probes
        return self._probe_failed(now), False

    def _probe_failed(self, now: float) -> Transition:
        """The probe failed (or could not run): reopen, with a sleep window grown by one more failed probe."""
        self.failed_probes += 1
        self.good_probes = 0
        return self.open(now)

    def withdraw(self, admission: Admission) -> None:
        """An admitted call never ran (no thread could be started, or its run was not awaitable): if it was the
        probe, free the slot for the next call."""
        if self.is_current_probe(admission):
            self.probe = None

    def open(self, now: float) -> Transition:
        """Open, with a fresh sleep window from ``now``; a probe in flight is forgotten."""
        self.opened_at = now
        self.probe = None
        return self._move(OPEN)

    def fleet_open(self, opened_at: float) -> Transition:
        """The fleet opened at ``opened_at``: open (unless already open; then take the fleet's sleep window)."""
        if self.state is CLOSED:
            return self.open(opened_at)
        if self.state is OPEN:
            self.opened_at = opened_at
        return None

    def close(self) -> Transition:
        """Close (the probes succeeded, here or, in fleet mode, somewhere); a probe in flight is forgotten, and the
        sleep window is back to ``sleep_window``."""
        self.probe = None
        self.failed_probes = self.good_probes = 0
        return self._move(CLOSED)

    def _move(self, new: State) -> Transition:
        """Change the state underneath; the change to report, unless it is none or a force flag hides it."""
        old, self.state = self.state, new
        if old is new or self.force_open or self.force_closed:
            return None
        return (old, new)
