"""The name-keyed registry of circuits, their settings, and the threads that serve them.

One `Registry` is current at a time (`current`); `breaker.testing` swaps in an isolated one. The entry points
read ``engines`` without a lock (a dict lookup is atomic, and a free-threaded dict is internally locked);
creation and configuration take the registry's lock.

Command names are checked (`check_name`) before anything is looked up or counted: a str (a str subclass is taken as
its plain text), not empty, encodable as UTF-8.

A configuration change (`Registry.configure`, `Registry.configure_defaults`, or both at once:
`Registry.configure_all`) is all or nothing, live circuits included. Every new `Settings` is resolved, so checked
whole, before anything changes; settings that pass can be applied to any live circuit (their bounds keep the tickets
and window buckets a circuit makes small, and its arithmetic exact), so `Engine.configure` refuses nothing. What can
still fail while the circuits apply them is what they read: the registry's clock (a user's, through
`breaker.testing`), or memory. Then the change is undone: the registry's configuration goes back to what it was and
the circuits that took the new settings take the old ones again, and the error propagates. Changes apply one at a
time, in the order they were made.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping

from ._core.circuit import Circuit, engine_of
from ._core.engine import Engine
from ._core.events import State
from ._core.health import error_percentage
from ._core.metrics import Collector, CollectorFactory
from ._core.settings import BUILTIN, CommandConfig, Settings
from ._core.validation import command_name, show
from ._run.observe import Guarded
from ._run.workers import Timer, WorkerPool

__all__ = ["Registry", "current"]

logger = logging.getLogger("breaker")

Clock = Callable[[], float]
Listener = Callable[[str, State, State], object]


def check_name(name: object) -> str:
    """``name`` as a command name (an exact str; see `breaker._core.validation.command_name`).

    Raises:
        TypeError: It is not a str.
        ValueError: It is empty, or UTF-8 cannot encode it (a lone surrogate).
    """
    return command_name(name)


def check_config(config: object, what: str) -> CommandConfig:
    """``config`` if it is a `CommandConfig` (by its real type: ``__class__`` can lie).

    Its fields are checked again whatever happened to it since it was built, when `resolve` makes `Settings` of it.
    """
    if not (isinstance(config, CommandConfig) and issubclass(type(config), CommandConfig)):  # the type checker's, ours
        raise TypeError(f"{what} must be a breaker.CommandConfig, got {type(config).__name__} {show(config)}")
    return config


def checked_configs(configs: object, what: str) -> dict[str, CommandConfig]:
    """``configs`` as a dict of checked command names to checked `CommandConfig` objects.

    Raises:
        TypeError, ValueError: It is not a mapping, or a name or config is bad (naming it).
    """
    if not isinstance(configs, Mapping):
        raise TypeError(f"{what} takes a mapping of command name to CommandConfig, got {type(configs).__name__}")
    checked: dict[str, CommandConfig] = {}
    for key, config in configs.items():
        name = check_name(key)
        checked[name] = check_config(config, f"the config of {name!r}")
    return checked


def resolve(config: CommandConfig, base: Settings) -> Settings:
    """``config`` over ``base``, by `CommandConfig.over` itself (not a subclass's override). The result is a
    `Settings`, so every field passed its rule and the fields fit together.

    Raises:
        TypeError, ValueError: They do not (naming the field).
    """
    return CommandConfig.over(config, base)


def check_callable(what: str, name: object, value: object, *, optional: bool = False) -> None:
    """Raise a TypeError naming the command and the argument unless ``value`` is callable."""
    if optional and value is None:
        return
    if not callable(value):
        raise TypeError(f"command {name!r}: {what} must be callable, got {type(value).__name__} {value!r}")


class Registry:
    """Circuits by name, the configuration they resolve from, the worker pool and the timer."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        #: Read on every call without the lock; written under it.
        self.engines: dict[str, Engine] = {}
        # Guards creation of circuits and every configuration change, so that a circuit is created once and
        # always with the settings current at that moment.
        self._lock = threading.Lock()
        # Held across a whole configuration change, applying to the circuits included (not under ``_lock``: that
        # runs listeners and logging), so that changes apply in the order made and an undone change restores
        # exactly what it replaced. Reentrant: a state-change listener may configure from inside a change (but must
        # not wait for another thread that configures).
        self._configuring = threading.RLock()
        self._defaults = CommandConfig()
        self._default_settings = BUILTIN
        self._configs: dict[str, CommandConfig] = {}
        self._settings: dict[str, Settings] = {}
        self.pool = WorkerPool()
        self.timer = Timer()
        #: State-change listeners and collector factories; each tuple is replaced whole under the lock, so that
        #: readers iterate a snapshot without it.
        self.listeners: tuple[Listener, ...] = ()
        self.collector_factories: tuple[CollectorFactory, ...] = ()

    def __repr__(self) -> str:
        return f"<Registry circuits={len(self.engines)} {self.pool!r} {self.timer!r}>"

    # -- circuits ---------------------------------------------------------------------------------------------

    def engine(self, name: str) -> Engine:
        """The engine of ``name``'s circuit, created on first use."""
        engine = self.engines.get(name) if name.__class__ is str else None
        return self.get_engine(name)[0] if engine is None else engine

    def get_circuit(self, name: str) -> tuple[Circuit, bool]:
        """The circuit of ``name``, created on first use, and whether this call created it."""
        engine, created = self.get_engine(name)
        assert engine.circuit is not None  # set before the engine is shared
        return engine.circuit, created

    @property
    def circuits(self) -> dict[str, Circuit]:
        """Every circuit by name, in the order they were created (a snapshot)."""
        return {name: engine.circuit for name, engine in list(self.engines.items()) if engine.circuit is not None}

    def get_engine(self, name: str) -> tuple[Engine, bool]:
        if type(name) is not str:  # a subclass, or no str at all: checked before a __hash__ or __eq__ of its own runs
            name = check_name(name)
        engine = self.engines.get(name)
        if engine is not None:
            return engine, False
        check_name(name)
        while True:
            factories = self.collector_factories
            # User code, so not under the lock: made ahead, and dropped if another thread creates the circuit.
            collectors = make_collectors(factories, name, self.clock)
            with self._lock:  # re-check: another thread may have created it since the lookup above
                engine = self.engines.get(name)
                if engine is not None:
                    return engine, False
                if factories is not self.collector_factories:
                    continue  # a collector was registered meanwhile: make them again
                engine = Engine(name, self.get_settings(name), self.clock, self.emit)
                engine.circuit = Circuit(engine)
                engine.pool = self.pool
                if collectors:
                    engine.add_collectors(collectors)
                engine.set_live(self is current)
                self.engines[name] = engine
                return engine, True

    def register_collector(self, factory: CollectorFactory) -> None:
        check_callable("factory", "register_collector", factory)
        with self._lock:  # circuits created from now on make this collector (see get_engine)
            self.collector_factories = (*self.collector_factories, factory)
            existing = list(self.engines.values())
        for engine in existing:  # user code: outside the lock
            made = make_collectors((factory,), engine.name, self.clock)
            if made:
                engine.add_collectors(made)

    def add_listener(self, listener: Listener) -> None:
        check_callable("listener", "on_state_change", listener)
        with self._lock:  # one writer at a time: no registration is lost
            self.listeners = (*self.listeners, listener)

    def remove_listener(self, listener: Listener) -> None:
        with self._lock:  # one writer at a time: no registration is lost
            listeners = list(self.listeners)
            try:
                listeners.remove(listener)
            except ValueError:
                raise ValueError(f"{listener!r} is not a registered state-change listener") from None
            self.listeners = tuple(listeners)

    def flush(self) -> None:
        """Drop every circuit and its metrics (settings stay) and stop idle threads."""
        with self._lock:  # no circuit is created half-way through
            dropped, self.engines = self.engines, {}
        for engine in dropped.values():
            engine.set_live(False)
        self.pool.stop_idle()
        self.timer.stop_idle()
        for engine in dropped.values():
            for collector in engine.collectors:
                collector.reset()  # a `Guarded`: logs what the collector raises, never raises

    # -- configuration ----------------------------------------------------------------------------------------

    def get_settings(self, name: str) -> Settings:
        name = check_name(name)
        settings = self._settings.get(name)
        if settings is None:
            config = self._configs.get(name)
            settings = self._default_settings if config is None else resolve(config, self._default_settings)
        return settings

    @property
    def default_settings(self) -> Settings:
        """The settings a command with no config of its own resolves to (the global defaults)."""
        return self._default_settings

    def configure(self, configs: Mapping[str, CommandConfig], *, replace: bool = True) -> list[str]:
        """Set the config of each command of ``configs``: all or nothing, live circuits included. With ``replace``
        False, a command that has a config of its own keeps it (decided under the lock: no race with another
        configure).

        Returns:
            The names whose config was set.

        Raises:
            TypeError, ValueError: A bad name or config, or settings that do not fit together (nothing changed).
            Exception: Whatever applying to a live circuit raised (the registry's clock): the change was undone.
        """
        return self._change(None, checked_configs(configs, "configure()"), replace=replace)

    def configure_defaults(self, config: CommandConfig) -> None:
        """Make ``config`` the global defaults: all or nothing, live circuits included (see `configure`)."""
        self._change(check_config(config, "configure_defaults() argument"), {})

    def configure_all(self, defaults: CommandConfig | None, configs: Mapping[str, CommandConfig]) -> None:
        """`configure_defaults` (unless ``defaults`` is None) and `configure` as one change: both or neither, live
        circuits included. The commands' configs resolve over the new defaults.

        Raises:
            TypeError, ValueError: A bad name or config, or settings that do not fit together (nothing changed).
            Exception: Whatever applying to a live circuit raised (the registry's clock): the change was undone.
        """
        if defaults is not None:
            check_config(defaults, "the defaults")
        self._change(defaults, checked_configs(configs, "configure_all()"))

    def _change(
        self, defaults: CommandConfig | None, configs: dict[str, CommandConfig], *, replace: bool = True
    ) -> list[str]:
        """Lay ``configs`` (checked) over the commands' configs (with ``replace`` False, only over commands that
        have none) and, unless None, make ``defaults`` the global defaults; resolve every `Settings` that changes,
        then apply them to the live circuits (undone if that fails). Returns the names whose config was set."""
        with self._configuring:  # one change at a time, in order (see __init__)
            with self._lock:  # settings and circuits change together; nothing changes unless all resolve
                if not replace:
                    configs = {name: config for name, config in configs.items() if name not in self._configs}
                before = self._snapshot()
                merged = {**self._configs, **configs}
                if defaults is None:  # the defaults stay: only the named commands resolve again
                    default_settings = self._default_settings
                    resolved = {name: resolve(config, default_settings) for name, config in configs.items()}
                    settings = {**self._settings, **resolved}
                    changed = [(engine, resolved[name]) for name, engine in self.engines.items() if name in resolved]
                else:  # new defaults: every configured command resolves again, and every circuit may change
                    default_settings = resolve(defaults, BUILTIN)
                    settings = {name: resolve(config, default_settings) for name, config in merged.items()}
                    changed = [(e, settings.get(e.name, default_settings)) for e in self.engines.values()]
                    self._defaults = defaults
                self._default_settings = default_settings
                self._configs = merged
                self._settings = settings
            self._apply(changed, before)
        return list(configs)

    def _snapshot(self) -> tuple[CommandConfig, Settings, dict[str, CommandConfig], dict[str, Settings]]:
        """The configuration as it is (under the lock): what an undone change restores. Its dicts are never
        changed in place, only replaced."""
        return self._defaults, self._default_settings, self._configs, self._settings

    def _apply(
        self,
        changed: list[tuple[Engine, Settings]],
        before: tuple[CommandConfig, Settings, dict[str, CommandConfig], dict[str, Settings]],
    ) -> None:
        """Give each engine its new settings (outside the lock: state changes are delivered to listeners); if one
        raises, restore ``before`` and the old settings of every engine that may have taken the new ones."""
        olds: list[tuple[Engine, Settings]] = []
        try:
            for engine, settings in changed:
                olds.append((engine, engine.settings))  # first: an engine that fails half-way is restored too
                engine.configure(settings)
        except BaseException:
            with self._lock:  # the configuration goes back as a whole
                self._defaults, self._default_settings, self._configs, self._settings = before
                touched = {id(engine) for engine, _ in olds}
                # A circuit created meanwhile took the new settings: it goes back to what it resolves to now.
                born = [
                    (e, self.get_settings(e.name))
                    for e in self.engines.values()
                    if id(e) not in touched and e.settings is not self.get_settings(e.name)
                ]
            for engine, settings in [*reversed(olds), *born]:
                try:
                    engine.configure(settings)
                except Exception:  # noqa: PERF203 - restore the others; the first error is the one raised
                    logger.exception("circuit %r could not go back to its settings after a failed change", engine.name)
            raise

    # -- state changes ----------------------------------------------------------------------------------------

    def emit(self, circuit: Circuit, old: State, new: State) -> None:
        """Report a state change. Called by circuits after their lock is released."""
        engine = engine_of(circuit)
        trip = engine.fleet_trip  # set under the engine's lock as the fleet opened it
        if new is State.OPEN and old is State.HALF_OPEN and engine.machine.led:
            logger.info("circuit %r stays open: its probe for the fleet failed", circuit.name)
        elif new is State.OPEN and old is State.CLOSED and trip is not None:  # a local trip resets it
            if trip.errors is None or trip.requests is None:
                logger.warning(
                    "circuit %r opened by the fleet (namespace %r); the fleet's figures at the trip did not reach "
                    "this process",
                    circuit.name,
                    trip.namespace,
                )
            else:
                logger.warning(
                    "circuit %r opened by the fleet (namespace %r): %d errors in %d requests (%d%%) across the fleet",
                    circuit.name,
                    trip.namespace,
                    trip.errors,
                    trip.requests,
                    error_percentage(trip.errors, trip.requests),
                )
        elif new is State.OPEN:
            errors, requests, slow = engine.trip_figures  # taken under the engine's lock as it opened
            logger.warning(
                "circuit %r opened (was %s): %d errors in %d requests (%d%%)%s over the window",
                circuit.name,
                old.value,
                errors,
                requests,
                error_percentage(errors, requests),
                f", {slow} slow ({error_percentage(slow, requests)}%)" if slow else "",
            )
        elif new is State.FORCED_OPEN:
            logger.warning("circuit %r forced open (was %s)", circuit.name, old.value)
        elif new is State.HALF_OPEN:
            logger.info("circuit %r half-open: one probe call goes through", circuit.name)
        else:
            logger.info("circuit %r is %s (was %s)", circuit.name, new.value, old.value)
        for listener in self.listeners:
            try:
                listener(circuit.name, old, new)
            except Exception:  # noqa: PERF203 - a listener's failure must not reach the call that changed the state
                logger.exception("state-change listener %r failed on %r (%s -> %s)", listener, circuit.name, old, new)

    # -- fork -------------------------------------------------------------------------------------------------

    def reinit_after_fork(self) -> None:
        """In a forked child: fresh locks and threads, and no circuit state inherited from the parent."""
        self._lock = threading.Lock()
        self._configuring = threading.RLock()  # a parent's thread may have held it at the fork: it never returns
        for engine in self.engines.values():
            engine.set_live(False)
        self.engines = {}
        self.pool.reinit_after_fork()
        self.timer.reinit_after_fork()


def make_collectors(
    factories: tuple[CollectorFactory, ...], name: str, clock: Clock = time.monotonic
) -> tuple[Collector, ...]:
    """``factory(name)`` for each factory, each in a `Guarded` reading ``clock``; one that raises is logged and
    skipped, None means none for ``name``."""
    collectors = []
    for factory in factories:
        try:
            collector = factory(name)
        except Exception:  # noqa: PERF203 - a failing factory must not stop the command from working
            logger.exception("collector factory %r failed for command %r; skipped", factory, name)
        else:
            if collector is not None:  # None: this factory does not collect this command
                collectors.append(Guarded(collector, name, clock))
    return tuple(collectors)


#: The registry the module-level API uses (`swap` replaces it).
current = Registry()


def swap(registry: Registry) -> Registry:
    """Make ``registry`` current; returns the one it replaces."""
    global current
    old, current = current, registry
    for engine in old.engines.values():
        engine.set_live(False)
    for engine in registry.engines.values():
        engine.set_live(True)
    return old


if hasattr(os, "register_at_fork"):
    # A lambda, not a bound method: it must reach whichever registry is current at fork time.
    os.register_at_fork(after_in_child=lambda: current.reinit_after_fork())  # noqa: PLW0108
