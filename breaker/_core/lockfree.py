"""Every lock-free step of `breaker`, and the documented guarantee each one relies on.

The hot paths admit a call, count its success and hand its ticket back without taking a lock when they can.
This module is the only place where that happens: nothing else in the package depends on where the interpreter
switches threads. Each step below names the guarantee it relies on, out of four that CPython with its global
interpreter lock (GIL) documents. The Python FAQ, "What kinds of global value mutation are thread-safe?", says
that "each bytecode instruction and therefore all the C implementation code reached from each instruction is
therefore atomic from the point of view of a Python program", and lists examples:

- **A1.** ``L.append(x)`` and ``L.pop()`` on a list are atomic (listed).
- **A2.** ``next()`` on an ``itertools.count`` is atomic: one call of C code that neither releases the GIL nor
  runs Python code (while the count is below ``sys.maxsize``, where it is a machine integer).
- **A3.** Reading or writing one attribute or one dict item is atomic (``x.field = y`` and ``D[x] = y`` are
  listed); so is ``D.setdefault(k, v)``, one C call.
- **A4.** These operations happen one at a time, in one order that every thread sees (the GIL lets one thread
  run at a time).

What makes the steps exact is a rule about objects rather than about timing: every object a lock-free step
writes to is made once and never replaced. The success and short-circuit counters count since the circuit was
created and are never reset; the list of free tickets is never swapped; a latency counter, once in its
histogram, stays there. A thread descheduled for any length of time between looking such an object up and
writing to it therefore writes into the live object, and nothing it counts or returns can be lost. Windows are
differences of those counters, taken under the engine's lock (`breaker._core.rolling`).

Where two lock-free steps must agree with a locked one (a ticket taken while the limit is lowered, a success
counted while health is evaluated), each side writes before it reads, so that under A4 at least one of them sees
the other: the comments at each step say which write and which read.

Without the GIL (a free-threaded CPython, ``sys._is_gil_enabled()`` False) A2 and A4 are not documented, so
`LOCK_FREE` is False: the engine then publishes a fast surface on which every path here declines
(``admits_on_ticket`` False, ``window_end`` minus infinity), and takes its lock for every step. Setting the
environment variable ``BREAKER_LOCKED=1`` before the first import forces that mode; CI runs the concurrency tests
in it too.
"""

from __future__ import annotations

import itertools
import math
import os
import sys
from typing import TYPE_CHECKING, Final

from .buckets import duration_bucket
from .events import FALLBACK_SUCCESS
from .inline import inline
from .outcome import ADMITTED, SHORT_CIRCUITED, UNDECIDED, Admission

if TYPE_CHECKING:
    from .engine import Engine

__all__ = [
    "DONE",
    "LOCK_FREE",
    "NOT_DONE",
    "SETTLE",
    "Histogram",
    "Tally",
    "TicketPool",
    "claim",
    "count_duration",
    "try_count_fallback",
    "try_enter",
    "try_fail",
    "try_succeed",
]


def _gil_enabled() -> bool:
    is_enabled = getattr(sys, "_is_gil_enabled", None)  # Python 3.13+; earlier versions always have the GIL
    return True if is_enabled is None else bool(is_enabled())


#: Whether the fast paths below may run: the GIL is on, and ``BREAKER_LOCKED`` is unset (or "0").
LOCK_FREE: Final = _gil_enabled() and os.environ.get("BREAKER_LOCKED", "0") in ("", "0")

#: `try_succeed` results.
DONE: Final = 0  # counted, duration and ticket included: nothing more to do
SETTLE: Final = 1  # counted, ticket returned; the lock must now settle what the step saw (tickets owed, health)
NOT_DONE: Final = 2  # nothing done: the engine does it all under its lock


class Tally(itertools.count):  # type: ignore[type-arg]
    """An event counter: ``next(tally)`` counts one event, lock-free (A2); `read` tells how many were counted.

    Never reset: windows are differences of reads (see the module docstring).
    """

    __slots__ = ("_reads", "mark")

    def __init__(self) -> None:
        self._reads = 0
        #: What ``next()`` returned to the last `read` (itself): every ``next()`` after it returns more.
        self.mark = -1

    def __repr__(self) -> str:
        return f"<Tally {self.peek()}>"

    def read(self) -> int:
        """The events counted so far. Call under the owner's lock (a read is itself one ``next()``, accounted)."""
        self.mark = raw = next(self)
        value: int = raw - self._reads
        self._reads += 1
        return value

    def peek(self) -> int:
        """The events counted so far, from the counter's repr: for reprs and debugging only (no lock needed)."""
        text = super().__repr__()  # "Tally(n)"
        return int(text[text.index("(") + 1 : -1]) - self._reads


#: A histogram of durations: bucket index (`breaker._core.buckets`) -> its counter. Counters are added, never
#: replaced or removed.
Histogram = dict[int, Tally]


@inline
def count_duration(histogram: Histogram, seconds: float) -> None:
    """Count one duration of ``seconds`` in ``histogram``: lock-free when `LOCK_FREE` (A3, then A2), else under
    the owner's lock. The counter is looked up, or added with ``setdefault``, and only ever bumped."""
    index = duration_bucket(seconds)
    try:
        tally = histogram[index]  # A3
    except KeyError:
        tally = histogram.setdefault(index, Tally())  # A3: one counter per bucket, whoever adds it first
    next(tally)  # A2


class TicketPool:
    """The tickets of one command: at most ``limit`` runs in progress. A call that finds none free is rejected.

    A free ticket is an item of ``free``: taking one is ``free.pop()`` and returning it ``free.append(1)``, which
    the hot paths do lock-free (`try_enter` and `try_succeed` below); every method here runs under the owner's
    lock. Lowering the limit while tickets are held leaves tickets ``owed``: returning tickets pay them instead
    of becoming free. Under the lock, ``issued - owed`` is the limit and ``issued - len(free)`` tickets are held.
    While tickets are owed, the engine admits nothing lock-free and settles every success under its lock.
    """

    __slots__ = ("free", "issued", "owed", "unlimited")

    def __init__(self, limit: float) -> None:
        #: Free tickets; never replaced (see the module docstring).
        self.free: list[int] = []
        self.issued = 0
        self.owed = 0
        self.unlimited = False
        self.resize(limit)

    def __repr__(self) -> str:
        limit = "inf" if self.unlimited else self.issued - self.owed
        return f"<TicketPool {self.in_use}/{limit} in use>"

    @property
    def in_use(self) -> int:
        """Tickets held now (exact under the owner's lock; a gauge outside it)."""
        return self.issued - len(self.free)

    def available(self) -> bool:
        """Under the owner's lock: whether `take` would succeed now."""
        return self.unlimited or len(self.free) > self.owed

    def take(self) -> bool:
        """Under the owner's lock: take a free ticket (unlimited: issue one). False: none is free."""
        self.settle()
        try:
            self.free.pop()
        except IndexError:
            if not self.unlimited:
                return False
            self.issued += 1
        return True

    def give_back(self) -> None:
        """Under the owner's lock: return a ticket; it pays for one owed, if any."""
        if self.owed:
            self.owed -= 1
            self.issued -= 1
        else:
            self.free.append(1)

    def settle(self) -> None:
        """Under the owner's lock: destroy free tickets while tickets are owed (a ticket returned lock-free while
        the limit was lowered went back to ``free``)."""
        free = self.free
        while self.owed and free:
            free.pop()
            self.owed -= 1
            self.issued -= 1

    def resize(self, limit: float) -> None:
        """Under the owner's lock: make ``limit`` (an int, or ``math.inf``) the number of tickets, at once. Held
        tickets stay held; lowering the limit below them leaves tickets owed, paid as they come back."""
        self.unlimited = limit == math.inf
        if self.unlimited:
            self.owed = 0  # nothing is owed without a limit: tickets beyond the old limit stay issued
            return
        target = int(limit)
        current = self.issued - self.owed
        if target > current:
            grow = target - current
            repaid = min(grow, self.owed)
            self.owed -= repaid
            self.free.extend([1] * (grow - repaid))
            self.issued += grow - repaid
        elif target < current:
            self.owed += current - target  # lock-free admission stopped first, by the engine: see `try_enter`
            self.settle()


@inline
def try_enter(core: Engine, now: float) -> Admission:
    """Admit a call to a closed circuit, or short-circuit one to an open circuit, without the lock.

    Returns `ADMITTED` (it holds a ticket), `SHORT_CIRCUITED` (counted), or `UNDECIDED`: the engine's lock
    decides (no free ticket, a probe is due, the window must turn over, or `LOCK_FREE` is off: then
    ``admits_on_ticket`` is always False and ``window_end`` minus infinity).
    """
    admission = UNDECIDED
    if core.admits_on_ticket:  # A3: closed (or forced closed) and no ticket owed, as published under the lock
        free = core.free
        try:
            free.pop()  # A1
        except IndexError:
            pass  # none free: the lock decides (rejected, or unlimited tickets issue one)
        else:
            # A4: this reads the flag after the pop. The lock clears it before it opens the circuit or lowers the
            # limit (and takes tickets owed from ``free``): if this still sees it set, the call was admitted
            # before either, holding its ticket.
            if core.admits_on_ticket:
                admission = ADMITTED
            else:
                free.append(1)  # A1: back; the lock decides
    elif now < core.open_until and now < core.window_end:  # A3: open within its sleep window; same bucket
        next(core.short_circuits)  # A2, on a counter never replaced: it lands in the current window or a later one
        admission = SHORT_CIRCUITED
    return admission


@inline
def try_succeed(core: Engine, admission: Admission, now: float, seconds: float) -> int:
    """Count an ordinary call's success, record its duration as the run's and the call's, and return its ticket,
    without the lock.

    Returns `DONE`; `SETTLE` if it was all done but the engine must then, under its lock, pay tickets owed or
    evaluate health (`Engine.settle_success`); or `NOT_DONE` (a probe, a window turning over, or `LOCK_FREE`
    off): the engine does all of it under its lock.
    """
    result = NOT_DONE
    if admission is ADMITTED and now < core.window_end:  # A3 (minus infinity unless LOCK_FREE)
        next(core.successes)  # A2, on a counter never replaced: it lands in the current window or a later one
        count_duration(core.both_durations, seconds)
        core.free.append(1)  # A1
        # A4: the read below follows the writes above. The lock sets ``settle_successes`` before it reads the success
        # counter to evaluate health (`Engine._evaluate`), and before it takes tickets owed from ``free``: either it
        # saw this success and this ticket, or this sees the flag set and settles them under the lock.
        result = SETTLE if core.settle_successes else DONE
    return result


@inline
def try_fail(core: Engine, admission: Admission, now: float, seconds: float, histogram: Histogram) -> int:
    """Count an ordinary call's failure, record its run's duration in ``histogram`` (``both_durations`` when no
    fallback follows, ``run_durations`` when one does) and return its ticket, without the lock.

    A failure can trip the circuit, so it is left to the lock unless it provably cannot: the engine publishes
    ``failure_limit``, the highest value the failure counter's ``next()`` may return while the window's errors stay
    within the trip rule's budget (the most errors that cannot trip it, however few the requests). Returns `DONE`,
    `SETTLE` (done, but the lock must now evaluate health or settle tickets owed), or `NOT_DONE` (as
    `try_succeed`).
    """
    result = NOT_DONE
    if admission is ADMITTED and now < core.window_end:  # A3 (minus infinity unless LOCK_FREE)
        counted = next(core.failures)  # A2, on a counter never replaced
        count_duration(histogram, seconds)
        core.free.append(1)  # A1
        # A4: the reads below follow the writes above. The lock lowers ``failure_limit`` below any count before it
        # reads the failure counter to evaluate health (`Engine._evaluate`), then sets it from that read: either it
        # counted this failure, or this sees a limit that makes it evaluate health again. Each evaluation's read
        # also moves the counter on by one, so an error counted under the lock (a timeout, a rejection) uses up
        # a unit of the limit too.
        result = SETTLE if counted > core.failure_limit or core.settle_successes else DONE
    return result


def try_count_fallback(core: Engine, event: int, now: float, total: float | None) -> bool:
    """Count a fallback's outcome (``event``) and, if the call ran, its whole duration ``total``, without the
    lock. False: `LOCK_FREE` is off or the window must turn over first; the engine counts it under its lock."""
    if now < core.window_end:  # A3 (minus infinity unless LOCK_FREE)
        next(core.fallback_successes if event == FALLBACK_SUCCESS else core.fallback_failures)  # A2, never replaced
        if total is not None:
            count_duration(core.total_durations, total)  # A3, then A2
        return True
    return False


@inline
def claim(once: list[None]) -> bool:
    """Whether this caller is the first to claim ``once`` (a list made as ``[None]``): True for one caller only,
    whichever of several threads racing. A1, and documented for free-threaded builds as well, where each list
    operation takes the list's own lock: this step is sound in either mode."""
    first = True
    try:
        once.pop()  # A1
    except IndexError:
        first = False
    return first
