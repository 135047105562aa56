"""Fleet mode: one breaker per dependency across processes and hosts, shared through Redis.

With a breaker per process, each of N processes must rediscover on its own that a dependency is down, and each
sends its own probe. `configure_fleet` shares the breakers of a namespace through Redis (redis-py; any client:
``redis.Redis``, ``redis.RedisCluster``, or a Sentinel's ``master_for(...)``)::

    import redis
    import breaker

    fleet = breaker.configure_fleet(redis.Redis(socket_timeout=0.5), namespace="shop", sync_interval=0.25)

How it works. The hot path never touches Redis: each process counts as before, and one thread per process
(the `Fleet`'s) syncs every ``sync_interval`` seconds with a Lua script (`SYNC_SCRIPT`; its arguments, answer and
costs in `breaker.fleet._script`), one call per 100 commands sent, that atomically

- adds the requests and errors this process counted since its last sync to the fleet's window: running totals
  per command and a hash per bucket, buckets by Redis's clock, a bucket that leaves the window subtracted once;
- trips the fleet when its window crosses the command's thresholds (``request_volume_threshold`` and
  ``error_percent_threshold``): the state, its opening time (Redis's clock, not the hosts') and a generation
  number live in a hash per command, and change only inside the script;
- once the sleep window has passed, grants the probe to one process: a lease (``SET NX PX``) that expires, so a
  process that dies holding it cannot block the fleet;
- applies the outcome of the lease holder's probe: success closes the fleet, failure reopens it, and either starts
  a new generation, which discards the counts sent for the old one;

and answers with the fleet's figures, which the process then applies to its circuits: an open fleet opens them
(within about two sync intervals of the trip, wherever it was seen), only the lease holder's circuit may probe,
and a closed fleet closes them. While the fleet leads, local health never trips a circuit on its own.

Cost. A sync sends only the commands that need it: calls since the last sync, a probe outcome, an open fleet past
its sleep window, a state the process does not know yet (and each idle command once every `REFRESH_SYNCS` syncs,
to refresh its figures). Every state change moves a namespace version; a process sends the version it knows, and
when it is current (read in O(1)) its counts go in without its commands' states being read; otherwise it learns
the states of the commands that changed, and only those. The window's reads and writes are one variadic HMGET
and HSET per call for all its commands, so Redis's work grows with the commands that had calls, by field work.

Every key of a namespace carries the hash tag ``{namespace}``, so that in a Redis Cluster they share one slot and
one script call covers them; every key has a TTL, so nothing outlives its use. Each script call is numbered, and a
per-process mark key (``{namespace}:breaker-sync:<process>``) makes Redis apply each number once: redis-py resends
a command after a socket timeout, and a resent sync must not add its counts twice.

Corrupt data. The script checks every value it reads: a key of the wrong type is deleted and rebuilt, and a
command's bad field (a state other than open or closed, a generation, opening time or count that is no
non-negative integer) restarts that command closed in a new generation, or its window empty. Each is logged once
(a warning naming the key or the command), and the other commands go on syncing.

Redis down or slow. Calls never wait on Redis and nothing raises into them. When a sync fails, the circuits run on
local state alone (local trips, local probes), one warning is logged per outage, and the thread retries with
exponential backoff (up to 5 s, with jitter); when Redis answers again, the process rejoins the fleet's view
(the counts made meanwhile are not sent) and an info line says so. Use a client with a ``socket_timeout``: a sync
waits for Redis as long as the client lets it.

Fork. A fleet configured before ``fork()`` (gunicorn ``--preload``, multiprocessing's fork start method) syncs in
the child too: an ``os.register_at_fork`` handler gives the child fresh locks, a token of its own (its own sync mark
and numbering; the parent's probe lease stays the parent's) and a new sync thread. The child starts with no
circuits (the registry drops the parent's at a fork), so the counts the parent made are sent by the parent only.

Statistics. ``circuit.statistics().fleet`` is a `breaker.FleetView` (the fleet's state, requests, errors, error
percentage, generation, whether Redis answered, whether this process holds the probe), beside the local figures;
the Hystrix stream sends them as ``fleet*`` fields, and the dashboard shows them.

Honest reporting. The trip clears the fleet's window, so the figures that tripped it would be lost: the process
whose sync tripped it writes them to ``{namespace}:breaker:<command>:trip`` (`TRIP_SCRIPT`, one more round trip,
only then; each lease holder writes them again, so that they live as long as the outage), and the others read them
there when they see the fleet open without them. A circuit
the fleet opens logs one warning, with those figures: "circuit 'x' opened by the fleet (namespace 'shop'): 60 errors
in 100 requests (60%) across the fleet" (or that they did not reach this process); a failed probe of the lease
holder logs at info level that the circuit stays open. While open, the view's ``trip_requests``, ``trip_errors`` and
``trip_error_percentage`` hold them (the stream's ``fleetTrip*`` fields, the dashboard's fleet line).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Iterable
from datetime import timedelta
from typing import Any, Final, Protocol

from breaker import Circuit, FleetView, State, circuits, on_state_change, remove_state_listener
from breaker._core.circuit import FleetLink, FleetTrip, fleet_link
from breaker._core.validation import seconds
from breaker.fleet._script import CHUNK, SCRIPT

__all__ = ["SYNC_SCRIPT", "TRIP_SCRIPT", "Fleet", "FleetStatistics", "RedisClient", "configure_fleet", "current_fleet"]

logger = logging.getLogger("breaker")

#: The longest wait between two attempts to reach Redis after a failed sync.
MAX_BACKOFF: Final = 5.0
#: The longest a probe lease may last, whatever the command's timeout.
MAX_LEASE: Final = 60.0

#: The sync script (Lua): see `breaker.fleet._script` for its arguments, answer and costs.
SYNC_SCRIPT: Final = SCRIPT
#: A command idle in this process is sent (to refresh its fleet figures) once every this many syncs.
REFRESH_SYNCS: Final = 40


#: The figures that tripped a fleet, for the processes whose sync did not trip it (the trip clears the window, so
#: their syncs answer none): ``KEYS`` are commands' trip keys; ``ARGV`` per key ``""`` (read it), or
#: ``"<generation> <requests> <errors>"`` and its TTL in ms (write it: this process's sync tripped the fleet, or it
#: holds the probe lease and keeps the figures alive). Answers each key's value (``""``: none).
TRIP_SCRIPT: Final = """
local out = {}
local a = 1
for i, key in ipairs(KEYS) do
  local value = ARGV[a]
  if value ~= '' then
    redis.call('SET', key, value, 'PX', tonumber(ARGV[a + 1]))
    a = a + 2
  else
    a = a + 1
  end
  out[i] = redis.call('GET', key) or ''
end
return out
"""
#: Reads of the trip figures a process tries per fleet generation while it lacks them (the process that tripped
#: the fleet writes them one round trip after its sync).
TRIP_READS: Final = 3


class RedisClient(Protocol):
    """What the fleet needs of a redis-py client: ``register_script`` (``redis.Redis``, ``redis.RedisCluster``)."""

    def register_script(self, script: str) -> Any: ...


@dataclasses.dataclass(frozen=True, slots=True)
class FleetStatistics:
    """A snapshot of a process's fleet sync.

    Attributes:
        namespace: The namespace its keys live under.
        connected: Whether the last sync reached Redis.
        syncs: Syncs that reached Redis (each one round trip).
        failures: Syncs that did not.
        outages: Times Redis went from answering to not answering (one warning each).
        commands: The commands shared at the last sync.
    """

    namespace: str
    connected: bool
    syncs: int
    failures: int
    outages: int
    commands: tuple[str, ...]


@dataclasses.dataclass(slots=True)
class _Entry:
    """The sync's memory of one shared circuit (touched by the sync thread only, but for ``event``)."""

    circuit: Circuit  # to tell a circuit made anew after a flush()
    link: FleetLink
    requests: int = 0  # health counts at the last sync: the next delta starts here
    errors: int = 0
    seen: int = -1  # the fleet generation last seen; -1: unknown, send no counts
    trip: FleetTrip | None = None  # while the fleet is open: what tripped it, when known
    tripped: int = -1  # the generation the fleet's trip began (the trip's figures are this one's)
    closed: int = -1  # the fleet generation last seen closed: trip figures of that one or older are stale
    asked: tuple[int, int] = (-1, 0)  # (generation, reads) of the trip figures while they are not known
    kept: int = -1  # the generation this process last wrote the trip figures for
    event: str = ""  # the local probe's outcome not yet sent: "ok" or "fail" (set by the listener)
    state: str = ""  # the fleet state last seen ("open", "closed"; "": unknown)
    due: float = 0.0  # an open fleet: when (time.monotonic) its sleep window ends, and the lease may be asked for
    probing: bool = False  # this process held the probe lease at the last sync
    refusals: int = 0  # the circuit's short-circuited calls as of the last look: more since means a call waits
    wants: bool = False  # a call waits here for the fleet's probe: this sync may take the lease
    over: bool = False  # with a quorum: this process's own circuit was open (by local rules) at the last send
    idle: int = 0  # syncs since the command was last sent


def _names(field: str, names: Iterable[str] | None) -> frozenset[str] | None:
    if names is None:
        return None
    if isinstance(names, str):
        raise TypeError(f"{field} must be an iterable of command names, not a single str {names!r}")
    chosen = frozenset(names)
    if not all(isinstance(name, str) for name in chosen):
        raise TypeError(f"{field} must hold command names (str), got {sorted(map(repr, chosen))}")
    return chosen


class Fleet:
    """The fleet sync of this process: its thread, its view of Redis, its shared commands. Made by
    `configure_fleet`; `close` stops it and returns every circuit to local state.

    Args:
        client, namespace, sync_interval, commands, exclude: See `configure_fleet`.
        start: Start syncing now (else call `start`).

    The fleet listens to the registry current when it starts (for its probes' outcomes) and syncs the circuits
    of whichever registry is current at each sync: start it after swapping registries, not before.

    Raises:
        TypeError, ValueError: A bad option, named in the message.
    """

    def __init__(
        self,
        client: RedisClient,
        namespace: str = "app",
        sync_interval: float | timedelta = 0.25,
        *,
        commands: Iterable[str] | None = None,
        exclude: Iterable[str] = (),
        quorum: int | None = None,
        start: bool = True,
    ) -> None:
        if not callable(getattr(client, "register_script", None)):
            raise TypeError(f"client must be a redis-py client (redis.Redis, RedisCluster), got {client!r}")
        if not isinstance(namespace, str) or not namespace or "{" in namespace or "}" in namespace:
            raise ValueError(f"namespace must be a non-empty str without braces, got {namespace!r}")
        self.namespace = namespace
        self.sync_interval = seconds("sync_interval", sync_interval)
        self._commands = _names("commands", commands)
        self._exclude = _names("exclude", exclude) or frozenset()
        if quorum is not None and (isinstance(quorum, bool) or not isinstance(quorum, int) or quorum < 1):
            raise ValueError(f"quorum must be None or an int >= 1 (processes), got {quorum!r}")
        #: With a quorum k > 1, the fleet opens only when k processes each see their own window over the thresholds.
        self.quorum = quorum
        self._script = client.register_script(SYNC_SCRIPT)
        self._trip_script = client.register_script(TRIP_SCRIPT)
        #: This process's token: the probe lease's value, and its sync mark's name (a forked child makes its own).
        self.token = _token()
        # Guards the entries' pending probe outcomes: the listener runs on callers' threads. Re-created (never
        # acquired) in a forked child: a parent's thread may have held it at the fork.
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._stop = threading.Event()
        self._wake = threading.Event()  # a probe ended, or close(): sync now
        self._connected = False
        self._syncs = self._failures = self._outages = 0
        self._sequence = 0  # numbers the syncs: Redis applies each once, however often the client sends it
        self._version = -1  # the namespace's version as of the last sync (-1: unknown; every state is read)
        self._begun = 0  # syncs started; _synced: the last started one that reached Redis (for wait_synced)
        self._synced = 0
        self._thread = self._new_thread()
        if start:
            self.start()

    def start(self) -> None:
        """Start syncing (done at once unless made with ``start=False``): listen to the current registry's state
        changes and run the sync thread, which `close` stops.

        Raises:
            RuntimeError: Already started, or closed.
        """
        if self._thread.ident is not None or self._stop.is_set():
            raise RuntimeError(f"{self!r} was started or closed already")
        on_state_change(self._on_change)
        with _started_lock:  # see _started_lock
            _started.add(self)
        self._thread.start()

    def __repr__(self) -> str:
        stats = self.statistics()
        state = "closed" if self._stop.is_set() else "connected" if stats.connected else "disconnected"
        return f"<Fleet {self.namespace!r} every {self.sync_interval:g}s {state}, {stats.syncs} syncs>"

    def shares(self, name: str) -> bool:
        """Whether the command ``name`` is shared with the fleet (``commands`` and ``exclude``)."""
        return (self._commands is None or name in self._commands) and name not in self._exclude

    def statistics(self) -> FleetStatistics:
        """A snapshot of the sync (see `FleetStatistics`)."""
        return FleetStatistics(
            self.namespace, self._connected, self._syncs, self._failures, self._outages, tuple(self._entries)
        )

    def wait_synced(self, timeout: float | None = None) -> bool:
        """Sync now and wait until a sync started after this call has reached Redis (for tests and startup
        code: the circuits present now are then shared); returns whether one did within ``timeout`` seconds."""
        target = self._begun + 1
        self._wake.set()
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._synced < target:
            if self._stop.is_set() or (deadline is not None and time.monotonic() >= deadline):
                return False
            time.sleep(min(0.01, self.sync_interval))
        return True

    def close(self) -> None:
        """Stop syncing, wait for the thread, and return every shared circuit to local state. Idempotent."""
        with _started_lock:  # see _started_lock; first: a fork from now on does not restart this fleet
            _started.discard(self)
        self._stop.set()
        self._wake.set()
        if self._thread.ident is not None and self._thread is not threading.current_thread():
            self._thread.join()
        with contextlib.suppress(ValueError):  # already removed by an earlier close
            remove_state_listener(self._on_change)
        for entry in self._entries.values():
            entry.link.lead(False, False)
            entry.link.view = None

    # -- the thread ---------------------------------------------------------------------------------------------

    def _new_thread(self) -> threading.Thread:
        return threading.Thread(target=self._run, name=f"breaker-fleet-{self.namespace}", daemon=True)

    def _restart_after_fork(self) -> None:
        """In a forked child, where only the forking thread runs: the parent's sync thread is not here. Sync anew as
        a process of its own: fresh lock and events (a parent's thread may have held them), a token of its own
        (its own sync mark and numbering, and no claim on the parent's probe lease), no entries (the registry
        dropped the parent's circuits, so the parent's counts stay the parent's to send), figures from zero, and
        a new thread, owned by this fleet as before (`close` stops it)."""
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.token = _token()
        self._entries = {}
        self._connected = False
        self._syncs = self._failures = self._outages = 0
        self._sequence = self._begun = self._synced = 0
        self._version = -1  # the namespace version as this process knows it: none yet, every state is read
        self._thread = self._new_thread()
        self._thread.start()

    def _on_change(self, name: str, old: State, new: State) -> None:
        """A state change of some circuit (on the caller's thread): note the end of a local probe, wake the sync."""
        if old is not State.HALF_OPEN or new not in (State.CLOSED, State.OPEN):
            return
        entry = self._entries.get(name)
        if entry is None:
            return
        with self._lock:  # see __init__
            entry.event = "ok" if new is State.CLOSED else "fail"
        self._wake.set()

    def _run(self) -> None:
        backoff = self.sync_interval
        while not self._stop.is_set():
            self._begun += 1
            begun = self._begun
            try:
                self._sync()
            except Exception as error:  # Redis down, slow or refusing: run on local state
                self._failures += 1
                self._disconnected(error)
                delay = backoff * random.uniform(0.5, 1.0)  # jitter: a fleet does not come back in step
                backoff = min(backoff * 2, MAX_BACKOFF)
            else:
                self._syncs += 1
                self._synced = begun
                if not self._connected:
                    self._connected = True
                    if self._outages:
                        logger.info("fleet %r: Redis answers again; rejoined the fleet's view", self.namespace)
                backoff = self.sync_interval
                delay = self.sync_interval
            self._wake.wait(delay)
            self._wake.clear()

    def _disconnected(self, error: Exception) -> None:
        if self._connected or not self._outages:
            self._outages += 1
            logger.warning(
                "fleet %r: cannot sync with Redis (%r); circuits run on local state until it answers",
                self.namespace,
                error,
            )
        self._connected = False
        self._version = -1
        for entry in self._entries.values():
            entry.seen = -1  # on rejoining, the counts made meanwhile are not sent
            entry.link.lead(False, False)
            view = entry.link.view
            if view is not None and view.connected:
                entry.link.view = dataclasses.replace(view, connected=False, probing=False)

    def _sync(self) -> None:
        """One sync: send the commands that need it (calls since the last sync, a probe outcome, an open fleet past
        its sleep window, a state not known yet, or a refresh due), in script calls of at most `CHUNK` commands."""
        entries = self._current_entries()
        with self._lock:  # take the pending probe outcomes
            events = [entry.event for entry in entries]
            for entry in entries:
                entry.event = ""
        now = time.monotonic()
        ttl = round(1000 * 20 * self.sync_interval) + 1000  # the namespace's keys: outlive every sync gap
        chosen: list[tuple[_Entry, tuple[float, ...], str]] = []
        for entry, event in zip(entries, events, strict=True):
            profile = self._profile(entry.link)
            ttl = max(ttl, int(profile[-1]))
            entry.idle += 1
            entry.wants = False
            if not event and entry.seen >= 0:
                if entry.state == "open" and not entry.probing:
                    if now < entry.due:
                        continue  # the fleet is open, its sleep window not over: a change would come as a version
                    refusals = entry.link.refusals()
                    entry.wants, entry.refusals = refusals > entry.refusals, refusals
                    if not entry.wants:
                        continue  # no call waits here: the probe lease is for a process where one does
                if entry.state == "closed" and entry.idle < REFRESH_SYNCS:
                    requests, errors = entry.link.health_counts()
                    if (requests, errors) == (entry.requests, entry.errors) and self._over(entry) == entry.over:
                        continue  # idle: nothing to add, and a change of its state would come as a version
            chosen.append((entry, profile, event))
        for start in range(0, max(1, len(chosen)), CHUNK):
            self._call(chosen[start : start + CHUNK], ttl)

    def _profile(self, circuit: FleetLink) -> tuple[float, ...]:
        """The settings the script needs of a command: window (ms), buckets, volume, error threshold (%), sleep
        window (ms), lease (ms), the fleet's quorum (1: none) and its state's TTL (ms, last)."""
        settings = circuit.settings
        lease = min(settings.timeout, MAX_LEASE) + 4 * self.sync_interval + 1.0
        longest = max(settings.rolling_window, settings.sleep_window, lease)
        return (
            max(1, round(settings.rolling_window * 1000)),
            settings.rolling_buckets,
            settings.request_volume_threshold,
            settings.error_percent_threshold,
            max(1, round(settings.sleep_window * 1000)),
            round(lease * 1000),
            self.quorum or 1,
            round(1000 * (2 * longest + 10 * self.sync_interval)),  # outlives every sync gap but outages
        )

    def _over(self, entry: _Entry) -> bool:
        """With a quorum: whether this process's own circuit is open by its local rules (its window was over the
        thresholds) while the fleet is closed: its vote for opening the fleet."""
        if self.quorum is None or entry.state != "closed":
            return False
        return entry.circuit.state in (State.OPEN, State.HALF_OPEN)

    def _call(self, chosen: list[tuple[_Entry, tuple[float, ...], str]], ttl: int) -> None:
        """One script call: ``chosen`` commands (entry, profile, probe outcome), their answers applied."""
        profiles: dict[tuple[float, ...], int] = {}
        commands: list[object] = []
        counts = []
        for entry, profile, event in chosen:
            requests, errors = entry.link.health_counts()
            counts.append((requests, errors))
            if event:
                mode = event
            elif self._version < 0 or entry.seen < 0 or entry.state != "closed":
                mode = "p" if entry.wants else "s"  # read its state (the process may not know it); "p": a call waits
            else:
                mode = "f"
            index = profiles.setdefault(profile, len(profiles) + 1)
            entry.over = self._over(entry)
            vote = int(entry.over)
            commands += [
                entry.link.name,
                index,
                mode,
                entry.seen,
                requests - entry.requests,
                errors - entry.errors,
                vote,
            ]
        self._sequence += 1
        prefix = f"{{{self.namespace}}}:breaker"
        args: list[object] = [self.token, self._sequence, ttl, ttl, self._version, prefix, len(profiles)]
        for profile in profiles:
            args += profile
        args += [len(chosen), *commands]
        keys = [f"{prefix}-sync:{self.token}", f"{prefix}-version", f"{prefix}-changes"]
        answer = self._script(keys=keys, args=args)
        version, resync, repaired = int(answer[0]), int(answer[1]), int(answer[2])
        for key in answer[3 : 3 + repaired]:
            logger.warning(
                "fleet %r: Redis key %r held the wrong type; deleted and rebuilt", self.namespace, _text(key)
            )
        at = 3 + repaired
        learnt = int(answer[at])
        sent = {entry.link.name for entry, _, _ in chosen}
        answers: list[tuple[_Entry, tuple[str, int, int, int, int], bool, bool]] = []
        for i in range(at + 1, at + 1 + 4 * learnt, 4):
            name, state, age_ms, generation = _text(answer[i]), _text(answer[i + 1]), answer[i + 2], answer[i + 3]
            changed = self._entries.get(name)
            if changed is not None and name not in sent and changed.seen >= 0:
                # counts made under the old generation are not sent with the new one
                changed.requests, changed.errors = changed.link.health_counts()
                answers.append((changed, (state, int(age_ms), int(generation), 0, 0), False, False))
        at += 1 + 4 * learnt
        for i, ((entry, _, _), (requests, errors)) in enumerate(zip(chosen, counts, strict=True)):
            state, age_ms, generation, fleet_requests, fleet_errors, granted, corrupt = answer[
                at + 7 * i : at + 7 * i + 7
            ]
            if int(corrupt):
                logger.warning(
                    "fleet %r: command %r had corrupt data in Redis; repaired (its fleet state or window restarts)",
                    self.namespace,
                    entry.link.name,
                )
            entry.requests, entry.errors = requests, errors
            entry.idle = 0
            view = (
                "open" if int(state) else "closed",
                int(age_ms),
                int(generation),
                int(fleet_requests),
                int(fleet_errors),
            )
            answers.append((entry, view, bool(int(granted)), self._tripped_here(entry, *view)))  # before ``seen`` moves
        self._learn_trips(answers)
        for entry, view, probing, _ in answers:
            self._learn(entry, *view, probing=probing)
        if resync:  # the version's history was lost: relearn every state
            self._version = -1
            for entry in self._entries.values():
                entry.seen = -1
        else:
            self._version = version

    def _learn(
        self, entry: _Entry, state: str, age_ms: int, generation: int, requests: int, errors: int, *, probing: bool
    ) -> None:
        if state == "open" and (entry.state != "open" or generation != entry.seen):
            entry.refusals = entry.link.refusals()  # a new open generation: calls refused from now on are waiting
        reopened = entry.state == "open" and state == "closed"  # the fleet's probe closed it
        entry.seen, entry.state, entry.probing = generation, state, probing
        if state == "open":
            entry.due = time.monotonic() - age_ms / 1000 + entry.link.settings.sleep_window
        self._apply(entry, state, age_ms, generation, requests, errors, probing=probing, closing=reopened)

    @staticmethod
    def _tripped_here(entry: _Entry, state: str, age_ms: int, generation: int, requests: int, errors: int) -> bool:
        """Whether this sync tripped the fleet: it answers open, in a generation new to this process, with figures
        past the thresholds (the trip clears the window: every later answer has next to none)."""
        settings = entry.link.settings
        return (
            state == "open"
            and generation != entry.seen
            and requests > 0
            and requests >= settings.request_volume_threshold
            and (errors * 200 + requests) // (requests * 2) >= settings.error_percent_threshold
        )

    def _learn_trips(self, answers: list[tuple[_Entry, tuple[str, int, int, int, int], bool, bool]]) -> None:
        """Keep what tripped each open fleet, for the log line and the view: the process whose sync tripped it
        writes its figures to Redis, and so does each lease holder (once per generation: the key outlives the
        outage), the others read them there; one round trip for every command, and none unless one of these
        happened or a process lacks its figures (`TRIP_READS` tries per generation). Never raises: the sync itself
        reached Redis."""
        writes: list[tuple[_Entry, list[object]]] = []
        reads: list[tuple[_Entry, int]] = []
        for entry, (state, _, generation, requests, errors), probing, tripped in answers:
            trip = entry.trip
            if state != "open":
                entry.trip, entry.closed = None, generation
            elif tripped or (probing and trip is not None and entry.kept != generation):
                if tripped or trip is None:
                    entry.trip = trip = FleetTrip(self.namespace, errors, requests)
                    entry.tripped = generation
                settings = entry.link.settings  # a TTL below the state's: nothing outlives the state
                ttl = 2 * max(settings.rolling_window, settings.sleep_window) + 10 * self.sync_interval
                writes.append((entry, [f"{entry.tripped} {trip.requests} {trip.errors}", round(ttl * 1000)]))
                entry.kept = generation
            elif trip is None:
                asked, tries = entry.asked
                tries = tries if asked == generation else 0
                if tries < TRIP_READS:
                    entry.asked = (generation, tries + 1)
                    reads.append((entry, generation))
        if not writes and not reads:
            return
        keys = [f"{{{self.namespace}}}:breaker:{entry.link.name}:trip" for entry, _ in [*writes, *reads]]
        args = [*(arg for _, value in writes for arg in value), *([""] * len(reads))]
        try:
            values = self._trip_script(keys=keys, args=args)
        except Exception as error:  # only the figures are missing; a failing Redis fails the next sync
            logger.debug("fleet %r: could not exchange trip figures with Redis (%r)", self.namespace, error)
            return
        for (entry, generation), value in zip(reads, values[len(writes) :], strict=True):
            fields = _text(value).split()
            if len(fields) == 3 and entry.closed < int(fields[0]) <= generation:  # this outage's trip
                entry.trip = FleetTrip(self.namespace, int(fields[2]), int(fields[1]))
                entry.tripped = int(fields[0])

    def _apply(
        self,
        entry: _Entry,
        state: str,
        age_ms: int,
        generation: int,
        requests: int,
        errors: int,
        *,
        probing: bool,
        closing: bool = False,
    ) -> None:
        circuit = entry.link
        now = circuit.now()
        with self._lock:  # a probe that ended during the round trip: its outcome goes first, at once
            pending = bool(entry.event)
        if pending:
            self._wake.set()
        elif state == "open":
            circuit.open(now - age_ms / 1000, entry.trip or FleetTrip(self.namespace, None, None))
            circuit.lead(True, held=not probing)
        elif self.quorum is None:
            circuit.close()
            circuit.lead(True, held=False)
        else:  # a quorum: while the fleet is closed, local rules trip this process's own circuit (one bad node)
            if closing:
                circuit.close()  # the fleet's probe succeeded: every process closes
            circuit.lead(False, held=False)
        percentage = _percentage(errors, requests)
        trip = entry.trip if state == "open" else None
        trip_errors, trip_requests = (None, None) if trip is None else (trip.errors, trip.requests)
        trip_percentage = (
            None if trip_errors is None or trip_requests is None else _percentage(trip_errors, trip_requests)
        )
        circuit.view = FleetView(
            state,
            requests,
            errors,
            percentage,
            generation,
            True,
            probing,
            now,
            trip_requests,
            trip_errors,
            trip_percentage,
        )

    def _current_entries(self) -> list[_Entry]:
        entries = []
        for circuit in circuits():
            if not self.shares(circuit.name):
                continue
            entry = self._entries.get(circuit.name)
            if entry is None or entry.circuit is not circuit:  # new, or made anew after a flush()
                entry = _Entry(circuit, fleet_link(circuit))
                self._entries[circuit.name] = entry
            entries.append(entry)
        return entries


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _percentage(errors: int, requests: int) -> int:
    """``100 * errors / requests`` rounded half up (as the script and the local circuits round); 0 with none."""
    return (errors * 200 + requests) // (requests * 2) if requests else 0


def _token() -> str:
    """A process's token: host, pid, and a random part (a pid can be reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


_current: Fleet | None = None
# Guards _current: configure_fleet may be called from several threads at startup. Re-created in a forked child.
_current_lock = threading.Lock()

#: The fleets started and not closed: a forked child restarts their syncs.
_started: set[Fleet] = set()
# Guards _started: fleets start and close on any thread. Re-created (never acquired) in a forked child.
_started_lock = threading.Lock()


def _after_fork_in_child() -> None:
    """A fleet configured before a fork (gunicorn ``--preload``, multiprocessing) syncs in the child too, as a
    process of its own. Runs after the registry's own fork handler (registered first), which drops the parent's
    circuits."""
    global _current_lock, _started_lock
    _current_lock = threading.Lock()
    _started_lock = threading.Lock()
    for fleet in list(_started):
        if fleet._stop.is_set():  # closing at the fork
            continue
        try:
            fleet._restart_after_fork()
        except Exception:  # a fork handler must not raise: the child runs on local state
            logger.exception("fleet %r: could not restart its sync after a fork; circuits run locally", fleet.namespace)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def configure_fleet(
    client: RedisClient,
    namespace: str = "app",
    sync_interval: float | timedelta = 0.25,
    *,
    commands: Iterable[str] | None = None,
    exclude: Iterable[str] = (),
    quorum: int | None = None,
) -> Fleet:
    """Share this process's circuits with every process configured with the same Redis and namespace.

    Replaces (and closes) the fleet configured before, if any.

    Args:
        client: A redis-py client (``redis.Redis``, ``redis.RedisCluster``, a Sentinel's ``master_for(...)``).
            Give it a ``socket_timeout``: a sync waits as long as the client does.
        namespace: Keys live under ``{namespace}:breaker:<command>:...``. Default "app".
        sync_interval: Seconds (float or timedelta) between two syncs. Default 0.25.
        commands: Opt-in: share only these commands (default: every command, present and future).
        exclude: Opt-out: never share these commands.
        quorum: None (default): the fleet opens when its shared window (every process's calls) is over a command's
            thresholds. An int k > 1: only when k processes each see their own window over them, so one bad
            process trips its own circuit (by local rules, while the fleet is closed), not the fleet's.

    Returns:
        The `Fleet` (``close()`` stops it).

    Raises:
        TypeError, ValueError: A bad option, named in the message.
    """
    global _current
    fleet = Fleet(
        client, namespace, sync_interval, commands=commands, exclude=exclude, quorum=quorum, start=False
    )  # checks
    with _current_lock:  # see _current_lock
        previous, _current = _current, fleet
    if previous is not None:
        previous.close()  # first: its close() returns circuits to local state, which the new one's sync then leads
    fleet.start()
    return fleet


def current_fleet() -> Fleet | None:
    """The fleet `configure_fleet` set up last, unless it was closed."""
    fleet = _current
    return None if fleet is None or fleet._stop.is_set() else fleet
