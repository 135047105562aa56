"""`Circuit`: the circuit breaker of one command as its users see it, queries only; and `FleetLink`, fleet mode's
narrow handle on the same circuit.

A circuit's state lives in its `Engine`, which only the drivers and the registry hold. Users get a `Circuit`
(from `breaker.get_circuit` or `breaker.circuits`): it can tell the state, whether a call would be admitted, and
a frozen snapshot, and it can change nothing. Fleet mode gets a `FleetLink` from `fleet_link`: the few steps its
sync thread takes on a circuit, and nothing else.
"""

from __future__ import annotations

from .engine import Engine, FleetTrip
from .events import State
from .settings import Settings
from .statistics import CircuitStatistics, FleetView

__all__ = ["Circuit", "FleetLink", "FleetTrip", "engine_of", "fleet_link"]


class Circuit:
    """The circuit breaker of one command. Get one with `breaker.get_circuit`; queries never change it."""

    __slots__ = ("__weakref__", "_engine")

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def __repr__(self) -> str:
        engine = self._engine
        return (
            f"<Circuit {engine.name!r} state={engine.machine.visible.value} active={engine.active}/"
            f"{engine.settings.max_concurrent_requests} abandoned={engine.abandoned}>"
        )

    @property
    def name(self) -> str:
        """The command's name."""
        return self._engine.name

    @property
    def settings(self) -> Settings:
        """The settings the circuit runs with now."""
        return self._engine.settings

    @property
    def state(self) -> State:
        """The current state. An open circuit whose sleep window is over stays OPEN until a call probes it."""
        return self._engine.machine.visible

    def is_open(self) -> bool:
        """Whether an ordinary call would be short-circuited: open, half-open or forced open. A pure query."""
        return self.state in (State.OPEN, State.HALF_OPEN, State.FORCED_OPEN)

    def allow_request(self) -> bool:
        """Whether a call arriving now would be admitted to run. A pure query: it never takes the probe."""
        return self._engine.allow_request()

    def statistics(self) -> CircuitStatistics:
        """A frozen snapshot of the circuit's state, counts, tickets and latency."""
        return self._engine.statistics()


def engine_of(circuit: Circuit) -> Engine:
    """The engine behind ``circuit`` (for the registry and the drivers)."""
    return circuit._engine


class FleetLink:
    """What fleet mode (`breaker.configure_fleet`) may do to one circuit, from its sync thread."""

    __slots__ = ("_engine",)

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def __repr__(self) -> str:
        return f"<FleetLink {self._engine.name!r}>"

    @property
    def name(self) -> str:
        return self._engine.name

    @property
    def settings(self) -> Settings:
        return self._engine.settings

    def now(self) -> float:
        """The circuit's clock."""
        return self._engine.clock()

    def health_counts(self) -> tuple[int, int]:
        """(requests, errors) since creation, as health counts them."""
        return self._engine.health_counts()

    def refusals(self) -> int:
        """Calls short-circuited since creation: a call waiting while the fleet is open."""
        return self._engine.refusal_count()

    def lead(self, led: bool, held: bool) -> None:
        """``led``: the fleet decides trips; ``held``: an open circuit waits for the fleet's probe lease."""
        self._engine.lead(led, held)

    def open(self, opened_at: float, trip: FleetTrip) -> None:
        """The fleet ``trip`` describes opened at ``opened_at`` (on the circuit's clock); if that opens the circuit,
        its log line names the fleet and quotes the fleet's figures."""
        self._engine.fleet_open(opened_at, trip)

    def close(self) -> None:
        """The fleet's probe succeeded: close and clear the window."""
        self._engine.fleet_close()

    @property
    def view(self) -> FleetView | None:
        """What the fleet shares, as of the last sync (shown in `Circuit.statistics`)."""
        return self._engine.fleet

    @view.setter
    def view(self, view: FleetView | None) -> None:
        self._engine.fleet = view


def fleet_link(circuit: Circuit) -> FleetLink:
    """Fleet mode's handle on ``circuit``."""
    return FleetLink(circuit._engine)
