"""httpx transports that send every request through a command: ``pip install 'breaker[httpx]'``.

::

    import httpx, breaker.httpx

    client = httpx.Client(transport=breaker.httpx.Transport())            # wraps httpx.HTTPTransport()
    aclient = httpx.AsyncClient(transport=breaker.httpx.AsyncTransport())  # wraps httpx.AsyncHTTPTransport()

Each origin (``"http:api.internal:8080"``) is a command of its own unless ``name`` says otherwise; an open circuit
raises `breaker.CircuitOpenError` from the client call, and the request never leaves the process. A response with
status 5xx or 429 is a failure (returned unchanged when there is no ``fallback``), other 4xx a bad request;
``httpx.TimeoutException`` is the command's timeout event, other errors failures. The call holds its ticket until
the response's body is read to its end or the response is closed: a streamed response (``client.stream(...)``)
holds it while it is open. The rules are `breaker._http`'s; the command's own ``timeout`` is not applied (the
client's timeouts are the ones that count).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from types import TracebackType

try:
    import httpx
except ImportError as error:  # pragma: no cover - tests/api/test_extras.py runs this in a subprocess
    raise ImportError(
        "breaker.httpx needs httpx, which is not installed: install the extra with `pip install 'breaker[httpx]'`",
        name=error.name,
    ) from error

from ._core.settings import CommandConfig
from ._http import AsyncFallback, Classify, Ending, Exchange, Fallback, Policy

__all__ = ["AsyncTransport", "Transport"]


def _origin(request: httpx.Request) -> tuple[str, str, int | None]:
    url = request.url
    return url.scheme, url.host, url.port


def _status(response: httpx.Response) -> int:
    return response.status_code


def _policy(
    client: str,
    name: str | Callable[[httpx.Request], str] | None,
    config: CommandConfig | None,
    classify: Classify[httpx.Response] | None,
    fallback: AsyncFallback[httpx.Request, httpx.Response] | None,
) -> Policy[httpx.Request, httpx.Response]:
    return Policy(
        client=client,
        name=name,
        config=config,
        classify=classify,
        fallback=fallback,
        origin=_origin,
        status=_status,
        response_type=httpx.Response,
        timeouts=(httpx.TimeoutException,),
        local=(httpx.PoolTimeout,),  # no connection of the client's pool was free: the request never left
    )


class _Stream(httpx.SyncByteStream):
    """A response body that ends its call once read to its end, broken, or closed."""

    def __init__(self, body: httpx.SyncByteStream, ending: Ending) -> None:
        self._body = body
        self._ending = ending

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._body
        except BaseException as error:
            self._ending.done(error)
            raise

    def close(self) -> None:
        try:
            self._body.close()
        finally:
            self._ending.done()


class _AsyncStream(httpx.AsyncByteStream):
    """`_Stream` for an async client."""

    def __init__(self, body: httpx.AsyncByteStream, ending: Ending) -> None:
        self._body = body
        self._ending = ending

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._body:
                yield chunk
        except BaseException as error:
            await self._ending.done_async(error)
            raise

    async def aclose(self) -> None:
        try:
            await self._body.aclose()
        finally:
            await self._ending.done_async()


def _attach(response: httpx.Response, ending: Ending) -> httpx.Response:
    stream = response.stream
    if not isinstance(stream, httpx.SyncByteStream):
        raise TypeError(f"the wrapped transport returned a response with an async stream: {stream!r}")
    if response.is_closed:  # read already (a mock or caching transport): httpx will not close it again
        ending.done()
    else:
        response.stream = _Stream(stream, ending)
        ending.watch(response.stream)
    return response


def _attach_async(response: httpx.Response, ending: Ending) -> httpx.Response:
    stream = response.stream
    if not isinstance(stream, httpx.AsyncByteStream):
        raise TypeError(f"the wrapped transport returned a response with a sync stream: {stream!r}")
    if response.is_closed:  # read already (a mock or caching transport): httpx will not close it again
        ending.done_nowait()
    else:
        response.stream = _AsyncStream(stream, ending)
        ending.watch(response.stream)
    return response


class Transport(httpx.BaseTransport):
    """An httpx transport that sends each request through a command (see the module docstring).

    Args:
        transport: The transport that sends the requests; by default a new ``httpx.HTTPTransport()``.
        name: The command: a name, a callable ``request -> name``, or None for one command per origin.
        config: A `breaker.CommandConfig` for each command this transport meets first, unless that command is
            configured already (`breaker.configure_command` with ``replace=False``).
        fallback: ``fallback(error, request) -> httpx.Response`` answers failed, timed-out and refused requests.
        classify: ``classify(response, error) -> breaker.Event | None`` overrides the default classification
            (None: the default rule decides).
    """

    def __init__(
        self,
        transport: httpx.BaseTransport | None = None,
        *,
        name: str | Callable[[httpx.Request], str] | None = None,
        config: CommandConfig | None = None,
        fallback: Fallback[httpx.Request, httpx.Response] | None = None,
        classify: Classify[httpx.Response] | None = None,
    ) -> None:
        if transport is not None and not isinstance(transport, httpx.BaseTransport):
            raise TypeError(f"transport must be an httpx.BaseTransport, got {type(transport).__name__}")
        self.transport = httpx.HTTPTransport() if transport is None else transport
        self._exchange = Exchange(
            _policy("breaker.httpx.Transport", name, config, classify, fallback), _attach, httpx.Response.close
        )

    def __repr__(self) -> str:
        return f"<breaker.httpx.Transport {self._exchange.policy!r} over {self.transport!r}>"

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._exchange.send(request, self.transport.handle_request)

    def close(self) -> None:
        self.transport.close()

    def __exit__(
        self,
        kind: type[BaseException] | None = None,
        error: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> None:
        self.transport.__exit__(kind, error, tb)


class AsyncTransport(httpx.AsyncBaseTransport):
    """`Transport` for ``httpx.AsyncClient``: wraps an ``httpx.AsyncHTTPTransport()`` by default; never blocks the
    event loop; ``fallback`` may be async."""

    def __init__(
        self,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        name: str | Callable[[httpx.Request], str] | None = None,
        config: CommandConfig | None = None,
        fallback: AsyncFallback[httpx.Request, httpx.Response] | None = None,
        classify: Classify[httpx.Response] | None = None,
    ) -> None:
        if transport is not None and not isinstance(transport, httpx.AsyncBaseTransport):
            raise TypeError(f"transport must be an httpx.AsyncBaseTransport, got {type(transport).__name__}")
        self.transport = httpx.AsyncHTTPTransport() if transport is None else transport
        self._exchange = Exchange(
            _policy("breaker.httpx.AsyncTransport", name, config, classify, fallback),
            _attach_async,
            httpx.Response.aclose,
        )

    def __repr__(self) -> str:
        return f"<breaker.httpx.AsyncTransport {self._exchange.policy!r} over {self.transport!r}>"

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._exchange.send_async(request, self.transport.handle_async_request)

    async def aclose(self) -> None:
        await self.transport.aclose()

    async def __aexit__(
        self,
        kind: type[BaseException] | None = None,
        error: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> None:
        await self.transport.__aexit__(kind, error, tb)
