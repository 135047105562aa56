"""Event names, and the integer slots the rolling counters keep them in."""

from __future__ import annotations

import enum

__all__ = ["EVENTS", "Event", "State"]


class State(str, enum.Enum):
    """The state of a circuit.

    ``FORCED_OPEN`` and ``FORCED_CLOSED`` report the ``force_open`` / ``force_closed`` settings, which override
    the state machine underneath while they are set.
    """

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    FORCED_OPEN = "forced_open"
    FORCED_CLOSED = "forced_closed"

    def __str__(self) -> str:
        return self.value


class Event(str, enum.Enum):
    """What happened to one call. A call records exactly one primary event, plus a fallback event if one ran."""

    SUCCESS = "success"
    FAILURE = "failure"
    TIMEOUT = "timeout"
    SHORT_CIRCUIT = "short-circuit"
    REJECTED = "rejected"
    BAD_REQUEST = "bad-request"
    FALLBACK_SUCCESS = "fallback-success"
    FALLBACK_FAILURE = "fallback-failure"
    #: The awaiting caller was cancelled (asyncio): neither a request nor an error.
    CANCELLED = "cancelled"
    #: Not a primary event: counted beside a success or a failure whose run took at least
    #: ``slow_call_duration``.
    SLOW = "slow"

    def __str__(self) -> str:
        return self.value


#: Every event, in the order of its slot in the counters (slot i holds ``EVENTS[i]``).
EVENTS: tuple[Event, ...] = tuple(Event)

# Slots, as plain ints: the hot path indexes lists with them.
SUCCESS = 0
FAILURE = 1
TIMEOUT = 2
SHORT_CIRCUIT = 3
REJECTED = 4
BAD_REQUEST = 5
FALLBACK_SUCCESS = 6
FALLBACK_FAILURE = 7
CANCELLED = 8
SLOW = 9
N_EVENTS = 10

assert [EVENTS.index(e) for e in (Event.SUCCESS, Event.FALLBACK_FAILURE, Event.CANCELLED, Event.SLOW)] == [
    SUCCESS,
    FALLBACK_FAILURE,
    CANCELLED,
    SLOW,
]
