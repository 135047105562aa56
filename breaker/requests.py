"""A requests transport adapter that sends every request through a command: ``pip install 'breaker[requests]'``.

::

    import requests, breaker.requests

    session = requests.Session()
    session.mount("http://", breaker.requests.Adapter())     # wraps requests.adapters.HTTPAdapter()
    session.mount("https://", breaker.requests.Adapter())

Each origin (``"http:api.internal:8080"``) is a command of its own unless ``name`` says otherwise; an open circuit
raises `breaker.CircuitOpenError` from the session call, and the request never leaves the process. A response with
status 5xx or 429 is a failure (returned unchanged when there is no ``fallback``), other 4xx a bad request;
``requests.exceptions.Timeout`` (``ConnectTimeout``, ``ReadTimeout``) is the command's timeout event, other errors
failures. The call holds its ticket until the response's body is read to its end or the response is closed: with
``stream=True`` it holds it while the response is open. Each hop of a redirect is a call of its own (requests reads
and closes the intermediate responses). A response dropped unclosed gives its ticket back when it is garbage
collected. The rules are `breaker._http`'s: the command's ``timeout`` is the latency budget (a response whose
headers come after it counts as a timeout), and the request's ``timeout=`` raises.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from types import TracebackType
from typing import Any, cast

try:
    import requests
    import requests.adapters
    import urllib3
    import urllib3.exceptions
except ImportError as error:  # pragma: no cover - tests/api/test_extras.py runs this in a subprocess
    raise ImportError(
        "breaker.requests needs requests, which is not installed: install the extra with "
        "`pip install 'breaker[requests]'`",
        name=error.name,
    ) from error

from ._core.lockfree import claim
from ._core.settings import CommandConfig
from ._http import Classify, Ending, Exchange, Fallback, Policy

__all__ = ["Adapter"]


def _origin(request: requests.PreparedRequest) -> tuple[str, str, int | None]:
    url = urllib3.util.parse_url(request.url or "")  # as requests itself parsed it when the request was prepared
    return url.scheme or "", url.host or "", url.port


def _status(response: requests.Response) -> int:
    return response.status_code


def _policy(
    name: str | Callable[[requests.PreparedRequest], str] | None,
    config: CommandConfig | None,
    classify: Classify[requests.Response] | None,
    fallback: Fallback[requests.PreparedRequest, requests.Response] | None,
) -> Policy[requests.PreparedRequest, requests.Response]:
    return Policy(
        client="breaker.requests.Adapter",
        name=name,
        config=config,
        classify=classify,
        fallback=fallback,
        origin=_origin,
        status=_status,
        response_type=requests.Response,
        # requests' own timeouts, and urllib3's: what a body that stops arriving raises while it is read
        timeouts=(requests.exceptions.Timeout, urllib3.exceptions.TimeoutError),
    )


class _Body:
    """A response's ``raw`` (urllib3's ``HTTPResponse``, or any file-like body) that ends its call once: when the
    body has been read to its end (or the connection has delivered all of it), when a read breaks (by that error),
    or when it is closed or its connection released. Everything else is the wrapped object's, attribute writes
    (``raw.decode_content = True``) included.

    The reads end the call after the wrapped object answered, so its own internal reads (``stream`` calling
    ``read``) are not seen twice. A generator closed before its end (a loop left early) does not end the call:
    the body is not done until it is read to its end or closed.
    """

    __slots__ = ("__weakref__", "_ending", "_once", "_raw")

    def __init__(self, raw: Any, ending: Ending) -> None:
        object.__setattr__(self, "_raw", raw)
        object.__setattr__(self, "_ending", ending)
        object.__setattr__(self, "_once", [None])  # `claim`ed by the one ending that counts

    def __repr__(self) -> str:
        state = "ended" if not self._once else "open"
        return f"<breaker.requests body ({state}) of {self._raw!r}>"

    def __getattr__(self, name: str) -> Any:
        if name in _Body.__slots__:  # not set yet (a copy being made): never look it up on the wrapped object
            raise AttributeError(name)
        return getattr(self._raw, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._raw, name, value)

    def __delattr__(self, name: str) -> None:
        delattr(self._raw, name)

    def _end(self, error: BaseException | None = None) -> None:
        """End the call, if nothing ended it yet: done (``error`` None) or broken by ``error``."""
        if claim(self._once):
            self._ending.done(error)

    def _over(self) -> bool:
        """Whether the connection has delivered the whole body, by urllib3's account: no byte of it left to come
        (``length_remaining``, 0 from the start for HEAD, 204 and 304), or the connection's response closed
        (``isclosed``). Decoded bytes may still wait in memory: the dependency's part is over. False when the
        wrapped object cannot tell (its reads will)."""
        raw = self._raw
        try:
            remaining = getattr(raw, "length_remaining", None)
            if type(remaining) is int and remaining == 0:
                return True
            isclosed = getattr(raw, "isclosed", None)
            return callable(isclosed) and isclosed() is True
        except Exception:  # an object that cannot tell: its reads will
            return False

    def _read(
        self, read: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], at_end: Callable[[Any], bool]
    ) -> Any:
        """``read(*args, **kwargs)``, ending the call if ``at_end(what it returned)``, the body is over, or it raised.

        The caller looks ``read`` up on the wrapped object: one it lacks is an AttributeError, not a broken body."""
        try:
            data = read(*args, **kwargs)
        except BaseException as error:  # the body broke while read: the call ends by the error
            self._end(error)
            raise
        if self._once and (at_end(data) or self._over()):
            self._end()
        return data

    def _iterate(self, chunks: Iterator[Any]) -> Iterator[Any]:
        try:
            yield from chunks  # ended at the end of the loop, after the decoder's last word (a corrupt gzip tail)
        except GeneratorExit:  # the reader stopped early: the body is not done until read or closed
            raise
        except BaseException as error:
            self._end(error)
            raise
        self._end()

    def read(self, *args: Any, **kwargs: Any) -> Any:
        amount = _amount(args, kwargs)
        return self._read(
            self._raw.read, args, kwargs, lambda data: amount is None or amount < 0 or (amount != 0 and not data)
        )

    def read1(self, *args: Any, **kwargs: Any) -> Any:
        amount = _amount(args, kwargs)
        return self._read(self._raw.read1, args, kwargs, lambda data: amount != 0 and not data)

    def readinto(self, buffer: Any) -> Any:
        return self._read(self._raw.readinto, (buffer,), {}, lambda count: count == 0 and len(buffer) > 0)

    def readline(self, *args: Any, **kwargs: Any) -> Any:
        amount = _amount(args, kwargs)
        return self._read(self._raw.readline, args, kwargs, lambda line: amount != 0 and not line)

    def readlines(self, *args: Any, **kwargs: Any) -> Any:
        amount = _amount(args, kwargs)
        return self._read(self._raw.readlines, args, kwargs, lambda lines: amount is None or amount <= 0 or not lines)

    def read_chunked(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        return self._iterate(self._raw.read_chunked(*args, **kwargs))

    def __iter__(self) -> Iterator[Any]:
        return self._iterate(iter(self._raw))

    def drain_conn(self) -> None:
        drain = self._raw.drain_conn  # one it lacks is an AttributeError, and the call goes on
        try:
            drain()
        finally:
            self._end()

    def release_conn(self) -> None:
        try:
            release = getattr(self._raw, "release_conn", None)  # requests' `Response.close` asks for it the same way
            if release is not None:
                release()
        finally:
            self._end()

    def close(self) -> None:
        close = self._raw.close  # (as in drain_conn)
        try:
            close()
        finally:
            self._end()

    def __enter__(self) -> _Body:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class _StreamBody(_Body):
    """`_Body` for a ``raw`` with urllib3's ``stream``, which requests reads the body with (``iter_content``,
    ``content``); a ``raw`` without it keeps looking like one without it to requests (``hasattr``)."""

    __slots__ = ()

    def stream(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        return self._iterate(self._raw.stream(*args, **kwargs))

    @property
    def data(self) -> Any:
        """urllib3's whole body, read (and cached) on first use."""
        raw = self._raw
        if not hasattr(type(raw), "data"):  # not a property that reads: whatever the object holds
            return raw.data
        return self._read(lambda: raw.data, (), {}, lambda data: True)


def _amount(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The size a read asked for (urllib3 calls it ``amt``, io ``size``), None for "everything"."""
    if args:
        return args[0]
    return kwargs.get("amt", kwargs.get("size", kwargs.get("hint")))


def _attach(response: requests.Response, ending: Ending) -> requests.Response:
    """Make ``response`` end ``ending`` once its body is read to its end or it is closed."""
    raw = response.raw
    if raw is None or getattr(response, "_content", False) is not False:  # the body is in memory, or there is none
        ending.done()
        return response
    body = (_StreamBody if hasattr(raw, "stream") else _Body)(raw, ending)
    response.raw = cast(Any, body)
    ending.watch(body)  # ``raw`` may outlive its response: ``session.get(url, stream=True).raw``
    if body._over():  # nothing left to read (HEAD, 204, 304, an empty body)
        body._end()
    return response


class Adapter(requests.adapters.BaseAdapter):
    """A requests transport adapter that sends each request through a command (see the module docstring).

    Mount it on a session for the URL prefixes it serves: ``session.mount("https://", Adapter())``.

    Args:
        adapter: The adapter that sends the requests; by default a new ``requests.adapters.HTTPAdapter()``.
        name: The command: a name, a callable ``request -> name`` (the ``requests.PreparedRequest``), or None for
            one command per origin.
        config: A `breaker.CommandConfig` for each command this adapter meets first, unless that command is
            configured already (`breaker.configure_command` with ``replace=False``).
        fallback: ``fallback(error, request) -> requests.Response`` answers failed, timed-out and refused
            requests; a failed response's error is a `breaker.FailedResultError` holding it (closed).
        classify: ``classify(response, error) -> breaker.Event | None`` overrides the default classification
            (None: the default rule decides). For a body that breaks while read, ``error`` is what the read
            raised (urllib3's error: ``ProtocolError``, ``ReadTimeoutError``).
    """

    def __init__(
        self,
        adapter: requests.adapters.BaseAdapter | None = None,
        *,
        name: str | Callable[[requests.PreparedRequest], str] | None = None,
        config: CommandConfig | None = None,
        fallback: Fallback[requests.PreparedRequest, requests.Response] | None = None,
        classify: Classify[requests.Response] | None = None,
    ) -> None:
        if adapter is not None and not isinstance(adapter, requests.adapters.BaseAdapter):
            raise TypeError(f"adapter must be a requests.adapters.BaseAdapter, got {type(adapter).__name__}")
        super().__init__()
        self.adapter = requests.adapters.HTTPAdapter() if adapter is None else adapter
        self._exchange = Exchange(_policy(name, config, classify, fallback), _attach, requests.Response.close)

    def __repr__(self) -> str:
        return f"<breaker.requests.Adapter {self._exchange.policy!r} over {self.adapter!r}>"

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float, float] | tuple[float, None] | None = None,
        verify: bool | str = True,
        cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """Send ``request`` through its command with the wrapped adapter (the arguments are passed on)."""

        def send(prepared: requests.PreparedRequest) -> requests.Response:
            response = self.adapter.send(
                prepared, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=proxies
            )
            # Response hooks that send again (HTTPDigestAuth's answer to a 401) do it through
            # ``response.connection``: the wrapped adapter set itself there, which would bypass the breaker.
            response.connection = cast(Any, self)
            return response

        return self._exchange.send(request, send)

    def close(self) -> None:
        """Close the wrapped adapter (its connection pools)."""
        self.adapter.close()
