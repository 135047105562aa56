"""What the HTTP client integrations (`breaker.httpx`, `breaker.requests`, `breaker.aiohttp`) share: which command
a request goes through, how an exchange is classified, and the life of one exchange through its command.

An exchange is one call of its command (`breaker.acquire`): admitted before the request leaves, or refused without
sending it (`CircuitOpenError` with ``retry_after``, or `MaxConcurrencyError`). Once the response's status is in,
it is classified; the call ends (its event counted, its ticket given back) when the response's body has been read
to its end or the response is closed, so that the bulkhead bounds the connections really in use. A body that
fails while it is read ends the call by that error's class instead.

The classification, unless the integration's ``classify`` says otherwise (it may return None: "as by default"):
a response with status 5xx or 429 is a failure, other 4xx a bad request, anything else a success; an error is a
bad request when it is one of the command's ``ignored_exceptions``, a timeout when it is the client's own timeout
error, ``cancelled`` when the task was cancelled, and a failure otherwise.

A failure or timeout with a ``fallback`` is answered by ``fallback(error, request)`` (a failed response is closed
first, and the error is a `FailedResultError` holding it); without one, a failed response is returned unchanged and
an error propagates unchanged. This module uses the public API only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Final, Generic, TypeVar

from ._api import configure_command, get_settings
from ._core.errors import CircuitOpenError, FailedResultError, MaxConcurrencyError
from ._core.events import Event
from ._core.settings import CommandConfig
from ._registry import check_name
from ._run.permit import Permit, acquire, acquire_async, fall_back, fall_back_async

__all__ = ["DEFAULT_PORTS", "Classify", "Ending", "Exchange", "Policy", "classify_status", "origin_name"]

Req = TypeVar("Req")
Resp = TypeVar("Resp")

#: ``classify(response, error)``: the event of an exchange that got ``response`` (None if it raised) or raised
#: ``error`` (None if it got a response); None leaves it to the default rule.
Classify = Callable[[Resp | None, BaseException | None], Event | None]
#: ``fallback(error, request)``: the response a failed, timed-out or refused exchange is answered with.
Fallback = Callable[[BaseException, Req], Resp]

DEFAULT_PORTS: Final = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_REFUSALS: Final = (CircuitOpenError, MaxConcurrencyError)
_ANSWERED_BY_FALLBACK: Final = frozenset({Event.FAILURE, Event.TIMEOUT})
#: The events an exchange can end with: a permit's (`breaker.Permit.end`).
_ENDINGS: Final = frozenset({Event.SUCCESS, Event.FAILURE, Event.TIMEOUT, Event.BAD_REQUEST, Event.CANCELLED})


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
        name: A command name, a callable ``request -> name``, or None: one command per origin.
        config: Applied to each command this policy meets first, unless that command has a config already.
        classify: ``(response, error) -> Event | None`` (see the module docstring).
        fallback: ``(error, request) -> response`` for failed, timed-out and refused exchanges.
        origin: ``request -> (scheme, host, port)``, the client's way to read a request's origin.
        status: ``response -> int``, the client's way to read a response's status.
        timeouts: The client's own timeout errors: the command's timeout event.
    """

    __slots__ = ("_classify", "_config", "_configured", "_name", "_origin", "_status", "fallback", "timeouts")

    def __init__(
        self,
        *,
        name: str | Callable[[Req], str] | None,
        config: CommandConfig | None,
        classify: Classify[Resp] | None,
        fallback: Fallback[Req, Resp] | None,
        origin: Callable[[Req], tuple[str, str, int | None]],
        status: Callable[[Resp], int],
        timeouts: tuple[type[BaseException], ...],
    ) -> None:
        if isinstance(name, str):
            check_name(name)
        elif name is not None and not callable(name):
            raise TypeError(f"name must be a str, a callable request -> str, or None; got {type(name).__name__}")
        if config is not None and not isinstance(config, CommandConfig):
            raise TypeError(f"config must be a breaker.CommandConfig or None, got {type(config).__name__}")
        for what, value in (("classify", classify), ("fallback", fallback)):
            if value is not None and not callable(value):
                raise TypeError(f"{what} must be callable or None, got {type(value).__name__}")
        self._name = name
        self._config = config
        self._classify = classify
        self.fallback = fallback
        self._origin = origin
        self._status = status
        self.timeouts = timeouts
        # Names this policy has offered its config to. A set: add and `in` are atomic (CPython); a name offered
        # twice by racing threads is harmless (`configure_command(..., replace=False)` decides under its lock).
        self._configured: set[str] = set()

    def __repr__(self) -> str:
        return f"<Policy name={self._name!r} config={self._config!r} fallback={self.fallback!r}>"

    def name_of(self, request: Req) -> str:
        """The command ``request`` goes through; on first sight of it, the policy's config is offered to it."""
        rule = self._name
        if rule is None:
            name = origin_name(*self._origin(request))
        elif isinstance(rule, str):
            name = rule
        else:
            name = check_name(rule(request))
        if self._config is not None and name not in self._configured:
            configure_command(name, self._config, replace=False)
            self._configured.add(name)
        return name

    def event_of(self, name: str, response: Resp | None, error: BaseException | None) -> Event:
        """The event of an exchange of command ``name`` that got ``response`` or raised ``error``."""
        if self._classify is not None:
            event = self._classify(response, error)
            if event is not None:
                if not isinstance(event, Event):
                    raise TypeError(f"classify must return a breaker.Event or None, got {event!r}")
                if event not in _ENDINGS:  # a permit cannot end with it: it would keep its ticket for good
                    raise ValueError(
                        f"classify must return SUCCESS, FAILURE, TIMEOUT, BAD_REQUEST, CANCELLED or None, got {event!r}"
                    )
                return event
        if error is None:
            assert response is not None
            return classify_status(self._status(response))
        if isinstance(error, asyncio.CancelledError):
            return Event.CANCELLED
        ignored = get_settings(name).ignored_exceptions
        if ignored and isinstance(error, ignored):
            return Event.BAD_REQUEST
        if isinstance(error, self.timeouts):
            return Event.TIMEOUT
        return Event.FAILURE


class Ending:
    """How one admitted exchange ends: with its response's event once the body is done (`done`), or with the
    event of the error that broke the body. Only the first ending counts (see `breaker.Permit`)."""

    __slots__ = ("_event", "_name", "_permit", "_policy")

    def __init__(self, policy: Policy[Req, Resp], name: str, permit: Permit, event: Event) -> None:
        self._policy: Policy[object, object] = policy  # type: ignore[assignment]
        self._name = name
        self._permit = permit
        self._event = event

    def __repr__(self) -> str:
        return f"<Ending {self._name!r} {self._event} {self._permit!r}>"

    def _event_of(self, error: BaseException | None) -> tuple[Event, BaseException | None]:
        """The call's event, and the error of a ``classify`` that raised (the call is then a failure)."""
        if error is None:
            return self._event, None
        return _judged(self._policy, self._name, None, error)

    def done(self, error: BaseException | None = None) -> None:
        """The body was read to its end or the response closed (``error``: what broke the body while read)."""
        event, broken = self._event_of(error)
        self._permit.end(event)
        if broken is not None:
            raise broken

    async def done_async(self, error: BaseException | None = None) -> None:
        """`done` for a task."""
        event, broken = self._event_of(error)
        await self._permit.end_async(event)
        if broken is not None:
            raise broken

    def done_nowait(self, error: BaseException | None = None) -> None:
        """`done` from a callback on an event loop: never waits (see `breaker.Permit.end_nowait`)."""
        event, broken = self._event_of(error)
        self._permit.end_nowait(event)
        if broken is not None:
            raise broken


class Exchange(Generic[Req, Resp]):
    """Sends one request through its command: `send` for a sync client, `send_async` for an async one.

    Args:
        policy: The integration's rules.
        attach: ``(response, ending) -> response``: makes the response end ``ending`` once its body is read to
            the end or it is closed (the client-specific part).
        close: Closes a failed response that a fallback replaces (sync, or returning an awaitable).
        finished: ``response -> bool``: whether the exchange is over as its response arrives (a client that has
            read the whole body and given the connection back by then, as aiohttp does with a short body): the
            call then ends at once, with the response's event, and ``attach`` is not called. None: never.
    """

    __slots__ = ("attach", "close", "finished", "policy")

    def __init__(
        self,
        policy: Policy[Req, Resp],
        attach: Callable[[Resp, Ending], Resp],
        close: Callable[[Resp], object],
        finished: Callable[[Resp], bool] | None = None,
    ) -> None:
        self.policy = policy
        self.attach = attach
        self.close = close
        self.finished = finished

    def send(self, request: Req, send: Callable[[Req], Resp]) -> Resp:
        """``send(request)`` through the request's command."""
        policy = self.policy
        name = policy.name_of(request)
        try:
            permit = acquire(name)
        except _REFUSALS as refused:
            if policy.fallback is None:
                raise
            return fall_back(name, refused, policy.fallback, request)
        try:
            response = send(request)
        except BaseException as error:
            event, broken = _judged(policy, name, None, error)
            permit.end(event)
            if broken is not None:
                raise broken from error
            if policy.fallback is None or event not in _ANSWERED_BY_FALLBACK or not isinstance(error, Exception):
                raise
            return fall_back(name, error, policy.fallback, request)
        event, broken = _judged(policy, name, response, None)
        if broken is not None:
            try:
                self.close(response)
            finally:
                permit.end(event)
            raise broken
        if policy.fallback is not None and event in _ANSWERED_BY_FALLBACK:
            try:
                self.close(response)
            finally:
                permit.end(event)
            return fall_back(name, FailedResultError(name, response), policy.fallback, request)
        if self.finished is not None and self.finished(response):
            permit.end(event)
            return response
        return self.attach(response, Ending(policy, name, permit, event))

    async def send_async(self, request: Req, send: Callable[[Req], Awaitable[Resp]]) -> Resp:
        """``await send(request)`` through the request's command; never blocks the event loop."""
        policy = self.policy
        name = policy.name_of(request)
        try:
            permit = await acquire_async(name)
        except _REFUSALS as refused:
            if policy.fallback is None:
                raise
            return await fall_back_async(name, refused, policy.fallback, request)
        try:
            response = await send(request)
        except BaseException as error:
            event, broken = _judged(policy, name, None, error)
            await permit.end_async(event)
            if broken is not None:
                raise broken from error
            if policy.fallback is None or event not in _ANSWERED_BY_FALLBACK or not isinstance(error, Exception):
                raise
            return await fall_back_async(name, error, policy.fallback, request)
        event, broken = _judged(policy, name, response, None)
        if broken is not None:
            try:
                await _maybe_await(self.close(response))
            finally:
                await permit.end_async(event)
            raise broken
        if policy.fallback is not None and event in _ANSWERED_BY_FALLBACK:
            try:
                await _maybe_await(self.close(response))
            finally:
                await permit.end_async(event)
            return await fall_back_async(name, FailedResultError(name, response), policy.fallback, request)
        if self.finished is not None and self.finished(response):
            await permit.end_async(event)
            return response
        return self.attach(response, Ending(policy, name, permit, event))


def _judged(
    policy: Policy[Req, Resp], name: str, response: Resp | None, error: BaseException | None
) -> tuple[Event, BaseException | None]:
    """`Policy.event_of`, and the error of a ``classify`` that raised: the exchange is then a failure, whose
    permit is ended before that error propagates."""
    try:
        return policy.event_of(name, response, error), None
    except Exception as broken:
        return Event.FAILURE, broken


async def _maybe_await(value: object) -> None:
    if isinstance(value, Awaitable):
        await value
