"""An aiohttp client middleware that sends every request through a command: ``pip install 'breaker[aiohttp]'``.

::

    import aiohttp, breaker.aiohttp

    async with aiohttp.ClientSession(middlewares=[breaker.aiohttp.middleware()]) as session:
        async with session.get("http://api.internal:8080/items") as response:
            items = await response.json()

Each origin (``"http:api.internal:8080"``) is a command of its own unless ``name`` says otherwise; an open circuit
raises `breaker.CircuitOpenError` from ``session.get(...)``, and the request never leaves the process. A response
with status 5xx or 429 is a failure (returned unchanged when there is no ``fallback``), other 4xx a bad request;
aiohttp's timeouts (``ClientTimeout``'s ``total``, ``connect``, ``sock_connect`` and ``sock_read``) are the
command's timeout event, connection errors failures, a cancelled task ``cancelled``. The rules are
`breaker._http`'s: the command's ``timeout`` is the latency budget (a response whose head comes after it counts as a
timeout); and a probe, the one call a half-open circuit lets through, counts as failed if another call arrives
after the command's ``timeout`` (1 s by default) and it has not ended yet, body included. Give a command whose
responses take longer to read a ``timeout`` as long as they may take.

The call holds its ticket while the response holds its connection, that is until aiohttp gives the connection
back: once the body has arrived whole (aiohttp keeps it in memory, returns the connection to its pool and marks the
response ``closed``; a short body that came with the head has by the time ``session.get`` returns), or once the
response is released or closed: ``read()``, ``text()`` or ``json()`` read to its end, ``release()``, ``close()``,
leaving ``async with``, or aiohttp's own clean-ups (a redirect, ``raise_for_status``, an error). A response dropped
unclosed gives its ticket back when it is garbage collected. A WebSocket from ``ws_connect`` holds it until it is
closed. A body that breaks first ends the call by its error: a reset connection is a failure, a ``sock_read``
timeout a timeout; a response released while its task is being cancelled ends ``cancelled``, and one released while
aiohttp's ``total`` timeout propagates ends as a timeout.

Each hop of a redirect is a call of its own (through its origin's command), as aiohttp runs the middlewares once
per hop; so is each attempt aiohttp makes on its own: it sends an idempotent request (``GET``, ``PUT``, ...) once
more when the connection is closed or reset before the answer, and each attempt that fails counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Callable

try:
    import aiohttp
except ImportError as error:  # pragma: no cover - tests/api/test_extras.py runs this in a subprocess
    raise ImportError(
        "breaker.aiohttp needs aiohttp, which is not installed: "
        "install the extra with `pip install 'breaker[aiohttp]'`",
        name=error.name,
    ) from error

from ._core.settings import CommandConfig
from ._http import AsyncFallback, Classify, Ending, Exchange, Policy

__all__ = ["middleware"]

logger = logging.getLogger("breaker")


def _origin(request: aiohttp.ClientRequest) -> tuple[str, str, int | None]:
    url = request.url
    return url.scheme, url.host or "", url.port


def _status(response: aiohttp.ClientResponse) -> int:
    return response.status


def _attach(response: aiohttp.ClientResponse, ending: Ending) -> aiohttp.ClientResponse:
    """End ``ending`` when aiohttp gives the response's connection back (released to its pool, or closed).

    ``Connection.add_callback`` is aiohttp's own hook for this (its session cancels the ``total`` timeout with it):
    its callbacks run, once, whichever way the connection goes back: the body's end (``_response_eof``),
    ``release()`` / ``close()`` and every path through them (``read()``, ``async with``, ``raise_for_status()``,
    redirects, the session's clean-up after an error), and the response's ``__del__`` for one never closed.
    """
    connection = response.connection
    if connection is None:  # the body (if any) came whole with the head: aiohttp gave the connection back already
        ending.done_nowait()
        return response
    content = response.content
    timer = getattr(response, "_timer", None)  # the request's ``total`` timeout (private; see `_broken`)
    connection.add_callback(lambda: _release(content, timer, ending))
    ending.watch(response)
    return response


def _release(content: aiohttp.StreamReader, timer: object, ending: Ending) -> None:
    """The connection's callback: runs on the event loop, in aiohttp's code, so it must neither wait nor raise
    (aiohttp would swallow the error)."""
    try:
        ending.done_nowait(_broken(content, timer))
    except Exception:  # a `classify` that raised: the call is counted as a failure already
        logger.exception("breaker.aiohttp: classify raised while a response ended; counted as a failure")


def _broken(content: aiohttp.StreamReader, timer: object) -> BaseException | None:
    """Why a response's connection went back before its body arrived whole, if not by the holder's choice.

    - The body's own error (``content.exception()``): a reset connection (``ClientPayloadError``), a ``sock_read``
      timeout (``SocketTimeoutError``). ``release()`` and ``close()`` mark an unfinished body with a plain
      ``ClientConnectionError("Connection closed")``: that one means the holder let go of it.
    - Else the error propagating where it was released, when it is a cancellation (the task was cancelled while
      it read the body, or left ``async with`` on a cancellation), or a timeout when the request's own ``total``
      timer fired (it raises ``TimeoutError`` from the read, then closes the response): the caller's own
      timeouts (``asyncio.wait_for`` around the body) are not the dependency's. aiohttp's ``TimerContext`` marks
      a fired timer in its private ``_cancelled``; tests/apps/test_aiohttp.py fails if that changes.
    - Else None: released or closed by its holder, which ends the call with the response's own event.
    """
    if content.is_eof():  # the body arrived whole: nothing broke, whatever happens around the release
        return None
    error = content.exception()
    if error is not None and type(error) is not aiohttp.ClientConnectionError:
        return error
    handled = sys.exc_info()[1]
    if isinstance(handled, asyncio.CancelledError):
        return handled
    if isinstance(handled, asyncio.TimeoutError) and getattr(timer, "_cancelled", False) is True:
        return handled
    return None


def _timer(request: aiohttp.ClientRequest) -> contextlib.AbstractContextManager[object]:
    """The request's ``total`` timeout, to enter again around the rest of the chain.

    aiohttp raises its ``total`` timeout by cancelling the task and turning that cancellation into ``TimeoutError``
    where it entered the timer: in ``ClientSession._request`` (around the middlewares) and in
    ``ClientResponse.start`` (around the wait for the response's head). A timeout while connecting or sending
    would reach this middleware as a bare ``CancelledError``, counted as ``cancelled``: entered here too (as
    ``start`` does), the timer turns it into ``TimeoutError`` here. ``ClientRequest._timer`` is private: if an
    aiohttp release drops it, the middleware goes on without it (tests/apps/test_aiohttp.py then fails).
    """
    timer = getattr(request, "_timer", None)
    if isinstance(timer, contextlib.AbstractContextManager):
        return timer
    return contextlib.nullcontext()


def middleware(
    *,
    name: str | Callable[[aiohttp.ClientRequest], str] | None = None,
    config: CommandConfig | None = None,
    fallback: AsyncFallback[aiohttp.ClientRequest, aiohttp.ClientResponse] | None = None,
    classify: Classify[aiohttp.ClientResponse] | None = None,
) -> aiohttp.ClientMiddlewareType:
    """An aiohttp client middleware that sends each request through a command (see the module docstring).

    Args:
        name: The command: a name, a callable ``request -> name`` (the ``aiohttp.ClientRequest``), or None for one
            command per origin (``"http:<host>:<port>"``).
        config: A `breaker.CommandConfig` for each command this middleware meets first, unless that command is
            configured already (`breaker.configure_command` with ``replace=False``).
        fallback: ``fallback(error, request) -> aiohttp.ClientResponse`` (sync or async) answers failed, timed-out
            and refused requests; a failed response is closed first, and the error is a `breaker.FailedResultError`
            holding it.
        classify: ``classify(response, error) -> breaker.Event | None`` overrides the default classification
            (None: the default rule decides).

    Returns:
        The middleware, for ``aiohttp.ClientSession(middlewares=[...])`` or a request's ``middlewares=``.
    """
    policy: Policy[aiohttp.ClientRequest, aiohttp.ClientResponse] = Policy(
        client="breaker.aiohttp.middleware",
        name=name,
        config=config,
        classify=classify,
        fallback=fallback,  # an async fallback's awaitable is awaited
        origin=_origin,
        status=_status,
        response_type=aiohttp.ClientResponse,
        timeouts=(asyncio.TimeoutError, aiohttp.ServerTimeoutError),
    )
    return _Middleware(Exchange(policy, _attach, aiohttp.ClientResponse.close))


class _Middleware:
    """What `middleware` returns: ``await middleware(request, handler)`` sends ``request`` through its command."""

    __slots__ = ("_exchange",)

    def __init__(self, exchange: Exchange[aiohttp.ClientRequest, aiohttp.ClientResponse]) -> None:
        self._exchange = exchange

    def __repr__(self) -> str:
        return f"<breaker.aiohttp.middleware {self._exchange.policy!r}>"

    async def __call__(
        self, request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        async def send(request: aiohttp.ClientRequest) -> aiohttp.ClientResponse:
            with _timer(request):
                return await handler(request)

        return await self._exchange.send_async(request, send)
