"""The module-level API: configure commands, and call through them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, TypeVar

from . import _loading, _registry
from ._core.circuit import Circuit
from ._core.metrics import CollectorFactory
from ._core.settings import CommandConfig, Settings
from ._registry import Listener, check_name
from ._run._generated import do, do_async
from ._run.entries import go

if TYPE_CHECKING:
    from .fleet import Fleet, RedisClient

__all__ = [
    "circuits",
    "configure",
    "configure_command",
    "configure_defaults",
    "configure_fleet",
    "configure_from",
    "do",
    "do_async",
    "flush",
    "get_circuit",
    "get_settings",
    "go",
    "on_state_change",
    "register_collector",
    "remove_state_listener",
    "reset_defaults",
]

T = TypeVar("T")
L = TypeVar("L", bound=Listener)
F = TypeVar("F", bound=CollectorFactory)


def configure_command(name: str, config: CommandConfig, *, replace: bool = True) -> bool:
    """Set the config of command ``name``, replacing any earlier one; unset fields inherit the defaults.

    A live circuit applies it at once (tickets included) and keeps its counts.

    Args:
        name: The command.
        config: Its config.
        replace: False: a command that has a config of its own keeps it (a library's default that the
            application's own configuration wins over, whichever runs first).

    Returns:
        Whether ``config`` was set (False only with ``replace`` False).

    Raises:
        TypeError, ValueError: A bad name or config (nothing is applied).
    """
    return bool(_registry.current.configure({check_name(name): config}, replace=replace))


def configure(configs: Mapping[str, CommandConfig]) -> None:
    """`configure_command` for each item of ``configs``; nothing is applied unless every item is valid."""
    _registry.current.configure(configs)


def configure_defaults(config: CommandConfig) -> None:
    """Set the global defaults: ``config``'s set fields over the built-in defaults, replacing earlier calls.

    Commands inherit them for every field their own config leaves unset; live circuits apply them at once.
    """
    _registry.current.configure_defaults(config)


def configure_from(source: Mapping[str, object]) -> None:
    """Configure from plain data, as ``tomllib``, a YAML loader or ``os.environ`` give it: all or nothing.

    ``source`` is ``{"defaults": {field: value}, "commands": {name: {field: value}}}``, each key optional.
    ``"defaults"`` replaces the global defaults as `configure_defaults` does; each command's table replaces that
    command's config as `configure` does (other commands keep theirs). Both apply as one change, live circuits
    included: either everything is applied or nothing is.

    Values may be strs, as a file or the environment gives them: durations as seconds or with a unit
    (``"250ms"``, ``"1.5s"``, ``"2m"``), whole numbers as ``10``, ``10.0``, ``"10"`` or ``"10.0"``, ``"inf"``
    where a field allows ``math.inf``, flags as ``true``/``false``, ``yes``/``no``, ``on``/``off``, ``1``/``0``,
    ``ignored_exceptions`` and ``result_is_failure`` as import paths (``"ValueError"``, ``"json.JSONDecodeError"``,
    ``"myapp.checks:is_error"``), which are imported.

    Args:
        source: The configuration, a mapping of plain values.

    Raises:
        TypeError: ``source`` is not a mapping.
        ConfigError: Anything in it is wrong (a ValueError): every problem is listed with its path
            (``commands.payments.timeout``); nothing was applied.
        Exception: Whatever applying to a live circuit raised (the registry's clock): the change was undone.
    """
    registry = _registry.current
    defaults, commands = _loading.load(source, registry.default_settings)
    if defaults is not None or commands:
        registry.configure_all(defaults, commands)


def reset_defaults() -> None:
    """Go back to the built-in defaults (`configure_defaults` with an empty config)."""
    _registry.current.configure_defaults(CommandConfig())


def get_settings(name: str) -> Settings:
    """The resolved, immutable settings command ``name`` runs (or would run) with."""
    return _registry.current.get_settings(name)


def get_circuit(name: str) -> tuple[Circuit, bool]:
    """Get or create the circuit of ``name``. Thread-safe: concurrent callers get the same circuit.

    Returns:
        The circuit, and whether this call created it.
    """
    return _registry.current.get_circuit(name)


def flush() -> None:
    """Drop every circuit and its metrics (settings stay), and stop idle worker threads.

    Calls in flight finish on their old circuit; once they end, no thread of the library remains.
    """
    _registry.current.flush()


def circuits() -> tuple[Circuit, ...]:
    """Every circuit of the current registry, in the order they were created (a snapshot)."""
    return tuple(_registry.current.circuits.values())


def on_state_change(listener: L) -> L:
    """Call ``listener(name, old_state, new_state)`` on every state change of every circuit.

    Listeners run on the thread (or task) whose call changed the state, after the change and outside every lock
    of the library, one change at a time and in the order the changes happened. An exception in a listener is
    logged (logger ``breaker``) and never reaches the call. Usable as a decorator; returns ``listener``.

    Raises:
        TypeError: ``listener`` is not callable.
    """
    _registry.current.add_listener(listener)
    return listener


def remove_state_listener(listener: Listener) -> None:
    """Stop calling ``listener`` (registered with `on_state_change`).

    Raises:
        ValueError: It is not registered.
    """
    _registry.current.remove_listener(listener)


def register_collector(factory: F) -> F:
    """Report every call to a collector: ``factory(name)`` is called once per command (for the commands that
    exist now, and for each new one) and returns an object with ``update(result)`` and ``reset()``, or None to
    leave that command uncollected.

    ``update`` gets a `CallResult` for each call, on the caller's thread (or task), after the outcome is fixed and
    outside every lock; ``reset`` is called when `flush` drops the command's circuit. An exception in either (or
    in the factory) is logged and skipped, never reaching the call. A collector's first failing ``update`` is
    logged with its traceback; later ones are counted and logged as one line with the count at most once a minute
    (on the registry's clock), and what is left of the count when ``reset`` is called. Commands with collectors
    leave the inline fast path: a call costs a few microseconds more. Returns ``factory``.

    Raises:
        TypeError: ``factory`` is not callable.
    """
    _registry.current.register_collector(factory)
    return factory


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

    Replaces (and closes) the fleet configured before, if any. Loads `breaker.fleet` on first use.

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
        The `breaker.fleet.Fleet` (``close()`` stops it).

    Raises:
        TypeError, ValueError: A bad option, named in the message.
    """
    from .fleet import configure_fleet as configure  # noqa: PLC0415 - an application: loaded when asked for

    return configure(client, namespace, sync_interval, commands=commands, exclude=exclude, quorum=quorum)
