"""What the HTTP client integrations (`breaker.httpx`, `breaker.requests`, `breaker.aiohttp`) share: which command
a request goes through, how an exchange is classified, and the life of one exchange through its command.

An exchange is one call of its command (`breaker.acquire`): admitted before the request leaves, or refused without
sending it (`CircuitOpenError` with ``retry_after``, or `MaxConcurrencyError`). Once the response's headers are
in, it is classified; the call ends (its event counted, its ticket given back) when the response's body has been
read to its end or the response is closed, so that the bulkhead bounds the connections really in use. A response
dropped unclosed ends its call when it is garbage collected. A body that fails while it is read ends the call by
that error's class instead; a reader that stops early (a generator closed half-way) does not end it: closing the
response does.

The classification, unless the integration's ``classify`` says otherwise (it may return None: "as by default"):
a response with status 5xx or 429 is a failure, other 4xx a bad request, anything else a success; a success or
failure whose headers came after the command's ``timeout`` is a timeout (the caller still gets the response, as
``breaker.do`` in caller isolation counts a late return). An error is a bad request when it is one of the
command's ``ignored_exceptions``, ``cancelled`` when the task was cancelled or the error is the client's own local
trouble that never reached the dependency (httpx's pool timeout), a timeout when it is the client's own timeout
error, and a failure otherwise. A call's duration is the time to its response's headers.

A failure or timeout with a ``fallback`` is answered by ``fallback(error, request)`` (a failed or late response
is closed first, and the error is a `FailedResultError` holding it, or a `CommandTimeoutError`); without one, the
response is returned unchanged and an error propagates unchanged. A fallback must return the client's response
type: anything else is its failure (`FallbackError`, caused by a `TypeError`).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, Final, Generic, TypeVar, cast

from . import (
    Circuit,
    CircuitOpenError,
    CommandConfig,
    CommandTimeoutError,
    Event,
    FailedResultError,
    MaxConcurrencyError,
    Permit,
    acquire,
    acquire_async,
    configure_command,
    fall_back,
    fall_back_async,
    get_circuit,
    get_settings,
)
from ._core.outcome import is_ignored, mark_bad_request
from ._core.validation import command_name

__all__ = [
    "DEFAULT_PORTS",
    "AsyncFallback",
    "Classify",
    "Ending",
    "Exchange",
    "Policy",
    "classify_status",
    "origin_name",
]

Req = TypeVar("Req")
Resp = TypeVar("Resp")

#: ``classify(response, error)``: the event of an exchange that got ``response`` (None if it raised) or raised
#: ``error`` (None if it got a response); None leaves it to the default rule.
Classify = Callable[[Resp | None, BaseException | None], Event | None]
#: ``fallback(error, request)``: the response a failed, timed-out or refused exchange is answered with.
Fallback = Callable[[BaseException, Req], Resp]
#: The same for an async client, which may also return an awaitable of the response.
AsyncFallback = Callable[[BaseException, Req], Resp | Awaitable[Resp]]

logger = logging.getLogger("breaker")

DEFAULT_PORTS: Final = {"http": 80, "https": 443, "ws": 80, "wss": 443}
#: The events an exchange can end with (what `classify` may return).
ENDINGS: Final = frozenset({Event.SUCCESS, Event.FAILURE, Event.TIMEOUT, Event.BAD_REQUEST, Event.CANCELLED})
_REFUSALS: Final = (CircuitOpenError, MaxConcurrencyError)
_ANSWERED_BY_FALLBACK: Final = frozenset({Event.FAILURE, Event.TIMEOUT})
_MAY_BE_LATE: Final = frozenset({Event.SUCCESS, Event.FAILURE})


def origin_name(scheme: str, host: str, port: int | None) -> str:
    """The default command of a request: one per origin, ``"<scheme>:<host>:<port>"`` (``"http:api.example:80"``,
    ``"https:[::1]:8443"``), the host lowercased and the scheme's default port filled in."""
    scheme = scheme.lower()
    host = host.lower()
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    if port is None:
        port = DEFAULT_PORTS.get(scheme)
    return f"{scheme}:{host}:{port}" if port is not None else f"{scheme}:{host}"


def classify_status(status: int) -> Event:
    """The default event of a response with ``status``: 5xx and 429 fail, other 4xx are bad requests."""
    if status >= 500 or status == 429:
        return Event.FAILURE
    if status >= 400:
        return Event.BAD_REQUEST
    return Event.SUCCESS


class Policy(Generic[Req, Resp]):
    """One integration's rules: the command of each request, the event of each exchange, the fallback.

    Args:
        client: The integration's name, for messages (``"breaker.httpx.Transport"``).
        name: A command name, a callable ``request -> name``, or None: one command per origin.
        config: Offered to each command this policy meets (`breaker.configure_command` with ``replace=False``:
            a command configured already keeps its config).
        classify: ``(response, error) -> Event | None`` (see the module docstring).
        fallback: ``(error, request) -> response`` for failed, timed-out and refused exchanges.
        origin: ``request -> (scheme, host, port)``, the client's way to read a request's origin.
        status: ``response -> int``, the client's way to read a response's status.
        response_type: What a fallback must return.
        timeouts: The client's own timeout errors: the command's timeout event.
        local: The client's errors that never reached the dependency (counted as ``cancelled``).
    """

    __slots__ = (
        "_classify",
        "_config",
        "_lock",
        "_name",
        "_offered",
        "_origin",
        "_status",
        "client",
        "fallback",
        "local",
        "response_type",
        "timeouts",
    )

    def __init__(
        self,
        *,
        client: str,
        name: str | Callable[[Req], str] | None,
        config: CommandConfig | None,
        classify: Classify[Resp] | None,
        fallback: AsyncFallback[Req, Resp] | None,
        origin: Callable[[Req], tuple[str, str, int | None]],
        status: Callable[[Resp], int],
        response_type: type[Resp],
        timeouts: tuple[type[BaseException], ...],
        local: tuple[type[BaseException], ...] = (),
    ) -> None:
        if isinstance(name, str):
            command_name(name)
        elif name is not None and not callable(name):
            raise TypeError(f"name must be a str, a callable request -> str, or None; got {type(name).__name__}")
        if config is not None and not isinstance(config, CommandConfig):
            raise TypeError(f"config must be a breaker.CommandConfig or None, got {type(config).__name__}")
        for what, value in (("classify", classify), ("fallback", fallback)):
            if value is not None and not callable(value):
                raise TypeError(f"{what} must be callable or None, got {type(value).__name__}")
        self.client = client
        self._name = name
        self._config = config
        self._classify = classify
        self.fallback = fallback
        self._origin = origin
        self._status = status
        self.response_type = response_type
        self.timeouts = timeouts
        self.local = local
        # The circuits this policy offered its config to: each registry (and each circuit after a flush) is offered
        # it once. Guards the WeakSet, which is not safe to change from several threads at once; held for a lookup.
        self._lock = threading.Lock()
        self._offered: weakref.WeakSet[Circuit] = weakref.WeakSet()

    def __repr__(self) -> str:
        return f"<Policy name={self._name!r} config={self._config!r} fallback={self.fallback!r}>"

    def name_of(self, request: Req) -> str:
        """The command ``request`` goes through (a callable's answer is checked as a command name)."""
        rule = self._name
        if rule is None:
            return origin_name(*self._origin(request))
        if isinstance(rule, str):
            return rule
        return command_name(rule(request))

    def needs_offer(self, name: str) -> Circuit | None:
        """The circuit of ``name`` if the policy's config has not been offered to it yet, else None."""
        if self._config is None:
            return None
        circuit = get_circuit(name)[0]
        with self._lock:  # see __init__
            return None if circuit in self._offered else circuit

    def offer(self, circuit: Circuit) -> None:
        """Offer the config to ``circuit``'s command (it keeps a config of its own)."""
        assert self._config is not None
        configure_command(circuit.name, self._config, replace=False)
        with self._lock:  # see __init__
            self._offered.add(circuit)

    def event_of(self, name: str, response: Resp | None, error: BaseException | None) -> Event:
        """The event of an exchange of command ``name`` that got ``response`` or raised ``error``; a bad request's
        error is marked as one for `breaker.retryable`.

        Raises:
            TypeError: ``classify`` returned something else than one of `ENDINGS` or None.
        """
        event = self._classify(response, error) if self._classify is not None else None
        if event is None:
            event = self._default_event(name, response, error)
        elif event not in ENDINGS or not isinstance(event, Event):
            raise TypeError(
                f"{self.client}: classify must return Event.SUCCESS, FAILURE, TIMEOUT, BAD_REQUEST, CANCELLED or "
                f"None, got {event!r}"
            )
        if event is Event.BAD_REQUEST and error is not None:
            mark_bad_request(error)
        return event

    def _default_event(self, name: str, response: Resp | None, error: BaseException | None) -> Event:
        if error is None:
            assert response is not None
            return classify_status(self._status(response))
        if isinstance(error, (asyncio.CancelledError, *self.local)):
            return Event.CANCELLED
        ignored = get_settings(name).ignored_exceptions
        if ignored and is_ignored(error, ignored):
            return Event.BAD_REQUEST
        if isinstance(error, self.timeouts):
            return Event.TIMEOUT
        return Event.FAILURE

    def judged(
        self, name: str, response: Resp | None, error: BaseException | None
    ) -> tuple[Event, BaseException | None]:
        """`event_of`, and what a ``classify`` that failed raised: the exchange is then a failure, ended before
        that error propagates."""
        try:
            return self.event_of(name, response, error), None
        except BaseException as broken:  # any of it, KeyboardInterrupt included: the call ends, then it is raised
            return Event.FAILURE, broken

    def checked(self, value: object) -> Resp:
        """A fallback's answer, if it is the client's response type."""
        if not isinstance(value, self.response_type):
            if inspect.iscoroutine(value):
                value.close()
            raise TypeError(
                f"{self.client}: the fallback must return a {self.response_type.__module__}."
                f"{self.response_type.__qualname__}, got {type(value).__name__} {value!r:.80}"
            )
        return value


class Ending:
    """How one admitted exchange ends: with its response's event once the body is done (`done`), or with the
    event of the error that broke the body. Only the first ending counts (see `breaker.Permit`)."""

    __slots__ = ("__weakref__", "_event", "_name", "_permit", "_policy", "_seconds")

    def __init__(self, policy: Policy[Any, Any], name: str, permit: Permit, event: Event, seconds: float) -> None:
        self._policy = policy
        self._name = name
        self._permit = permit
        self._event = event
        self._seconds = seconds  # the time to the response's headers: the call's duration

    def __repr__(self) -> str:
        return f"<Ending {self._name!r} {self._event} {self._permit!r}>"

    def _ending(self, error: BaseException | None) -> tuple[Event, float | None, BaseException | None]:
        """The call's event and duration, and the error of a ``classify`` that raised."""
        if error is None:
            return self._event, self._seconds, None
        event, broken = self._policy.judged(self._name, None, error)
        return event, None, broken

    def done(self, error: BaseException | None = None) -> None:
        """The body was read to its end or the response closed (``error``: what broke the body while read; a
        `GeneratorExit`, a reader that stopped early, is not an ending)."""
        if isinstance(error, GeneratorExit):
            return
        event, seconds, broken = self._ending(error)
        self._permit.end(event, seconds=seconds)
        if broken is not None:
            raise broken

    async def done_async(self, error: BaseException | None = None) -> None:
        """`done` for a task."""
        if isinstance(error, GeneratorExit):
            return
        event, seconds, broken = self._ending(error)
        await self._permit.end_async(event, seconds=seconds)
        if broken is not None:
            raise broken

    def done_nowait(self, error: BaseException | None = None) -> None:
        """`done` from a callback on an event loop or a finalizer: never waits (`breaker.Permit.end_nowait`)."""
        if isinstance(error, GeneratorExit):
            return
        event, seconds, broken = self._ending(error)
        self._permit.end_nowait(event, seconds=seconds)
        if broken is not None:
            raise broken

    def watch(self, body: object) -> None:
        """End the call, if nothing did, once ``body`` is garbage collected: the object whose life is the
        response's body as the caller holds it (``requests``' ``raw`` outlives its response)."""
        finalizer = weakref.finalize(body, self.dropped)
        finalizer.atexit = False  # at exit nothing counts any more

    def dropped(self) -> None:
        """The response was garbage collected: end the call if nothing did (run by a finalizer: never raises)."""
        if not self._permit.ended:
            try:
                self._permit.end_nowait(self._event, seconds=self._seconds)
            except Exception:  # a finalizer must not raise; ending cannot fail but for a broken clock
                logger.exception("command %r: ending a dropped response's call failed", self._name)


class Exchange(Generic[Req, Resp]):
    """Sends one request through its command: `send` for a sync client, `send_async` for an async one. Both are
    the same sequence of decisions (`_answer_error`, `_answer_response`), differing only in their awaits.

    Args:
        policy: The integration's rules.
        attach: ``(response, ending) -> response``: makes the response end ``ending`` once its body is read to
            the end or it is closed (the client-specific part); a response already read ends it at once; the body
            as the caller holds it is watched (`Ending.watch`), for a response dropped unclosed.
        close: Closes a response that a fallback replaces (sync, or returning an awaitable).
    """

    __slots__ = ("attach", "close", "policy")

    def __init__(
        self,
        policy: Policy[Req, Resp],
        attach: Callable[[Resp, Ending], Resp],
        close: Callable[[Resp], object],
    ) -> None:
        self.policy = policy
        self.attach = attach
        self.close = close

    def send(self, request: Req, send: Callable[[Req], Resp]) -> Resp:
        """``send(request)`` through the request's command."""
        policy = self.policy
        name = policy.name_of(request)
        circuit = policy.needs_offer(name)
        if circuit is not None:
            policy.offer(circuit)
        fallback = policy.fallback
        try:
            permit = acquire(name)
        except _REFUSALS as refused:
            if fallback is None:
                raise
            return fall_back(name, refused, self._sync_fallback, request)
        try:
            response = send(request)
        except BaseException as error:
            event, broken = policy.judged(name, None, error)
            permit.end(event)
            if broken is not None:
                raise broken from error
            if _answered_by_fallback(fallback, event, error):
                return fall_back(name, error, self._sync_fallback, request)
            raise
        event, seconds, replaced = self._judge_response(name, permit, response)
        if replaced is not None:
            try:
                self.close(response)
            finally:
                permit.end(event, seconds=seconds)
            if isinstance(replaced, _Broken):
                raise replaced.error
            return fall_back(name, replaced, self._sync_fallback, request)
        return self._follow(name, permit, response, event, seconds)

    async def send_async(self, request: Req, send: Callable[[Req], Awaitable[Resp]]) -> Resp:
        """``await send(request)`` through the request's command; never blocks the event loop."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                f"{self.policy.client} runs under asyncio, and no asyncio event loop is running (trio and other "
                "event loops are not supported)"
            ) from None
        policy = self.policy
        name = policy.name_of(request)
        circuit = policy.needs_offer(name)
        if circuit is not None:
            await asyncio.to_thread(policy.offer, circuit)  # configuring may wait for locks: not on the loop
        fallback = policy.fallback
        try:
            permit = await acquire_async(name)
        except _REFUSALS as refused:
            if fallback is None:
                raise
            return await fall_back_async(name, refused, self._async_fallback, request)
        try:
            response = await send(request)
        except BaseException as error:
            event, broken = policy.judged(name, None, error)
            await permit.end_async(event)
            if broken is not None:
                raise broken from error
            if _answered_by_fallback(fallback, event, error):
                return await fall_back_async(name, error, self._async_fallback, request)
            raise
        event, seconds, replaced = self._judge_response(name, permit, response)
        if replaced is not None:
            try:
                await _maybe_await(self.close(response))
            finally:
                await permit.end_async(event, seconds=seconds)
            if isinstance(replaced, _Broken):
                raise replaced.error
            return await fall_back_async(name, replaced, self._async_fallback, request)
        return self._follow(name, permit, response, event, seconds)

    def _judge_response(
        self, name: str, permit: Permit, response: Resp
    ) -> tuple[Event, float, BaseException | _Broken | None]:
        """A response's event and duration, and what replaces it: the error a fallback answers (a failed or late
        response), a `_Broken` classify, or None: the response goes to the caller."""
        policy = self.policy
        seconds = permit.elapsed
        event, broken = policy.judged(name, response, None)
        if broken is not None:
            return event, seconds, _Broken(broken)
        timeout = get_settings(name).timeout
        late = event in _MAY_BE_LATE and seconds > timeout
        if late:
            event = Event.TIMEOUT
        if policy.fallback is None or event not in _ANSWERED_BY_FALLBACK:
            return event, seconds, None
        return event, seconds, CommandTimeoutError(name, timeout) if late else FailedResultError(name, response)

    def _follow(self, name: str, permit: Permit, response: Resp, event: Event, seconds: float) -> Resp:
        """Hand ``response`` to the caller, its call ended once its body is done (or it is dropped)."""
        ending = Ending(self.policy, name, permit, event, seconds)
        try:
            followed = self.attach(response, ending)
        except BaseException:
            try:
                _ = self.close(response)
            except Exception:  # the error raised is attach's; this one is logged
                logger.exception("closing a response that could not be followed failed")
            finally:
                permit.end_nowait(Event.FAILURE, seconds=seconds)  # a response that cannot be followed: it fails
            raise
        return followed

    def _sync_fallback(self, error: BaseException, request: Req) -> Resp:
        fallback = cast(Fallback[Req, Resp], self.policy.fallback)
        return self.policy.checked(fallback(error, request))

    async def _async_fallback(self, error: BaseException, request: Req) -> Resp:
        fallback = cast(AsyncFallback[Req, Resp], self.policy.fallback)
        value = fallback(error, request)
        if inspect.isawaitable(value):
            value = await value
        return self.policy.checked(value)


class _Broken:
    """A ``classify`` that raised ``error`` on a response (the response is closed, the call fails)."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


def _answered_by_fallback(fallback: object, event: Event, error: BaseException) -> bool:
    return fallback is not None and event in _ANSWERED_BY_FALLBACK and isinstance(error, Exception)


async def _maybe_await(value: object) -> None:
    if inspect.isawaitable(value):
        await value
