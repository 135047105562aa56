"""`breaker.httpx`: httpx clients whose requests go through one command per origin, against a real server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from http_servers import WAIT, Dependency, dependency, refused_url

import breaker
import breaker.httpx
from breaker import CircuitOpenError, CommandConfig, Event, FailedResultError, MaxConcurrencyError, State


@pytest.fixture
def server() -> Iterator[Dependency]:
    with dependency() as running:
        yield running


def origin(server: Dependency) -> str:
    return f"http:127.0.0.1:{server.port}"


def counted(name: str) -> dict[str, int]:
    """The events counted since creation that are not zero."""
    return {event: n for event, n in breaker.get_circuit(name)[0].statistics().cumulative.items() if n}


def active(name: str) -> int:
    return breaker.get_circuit(name)[0].statistics().active


def client(**options: Any) -> httpx.Client:
    return httpx.Client(transport=breaker.httpx.Transport(**options), timeout=WAIT)


def test_responses_are_counted_by_status(server: Dependency) -> None:
    """2xx success, 5xx and 429 failure (returned unchanged), other 4xx bad request; one command per origin."""
    with client(config=CommandConfig(force_closed=True)) as http:  # three failures must not trip it
        statuses = [http.get(f"{server.url}/status/{code}").status_code for code in (200, 204, 500, 503, 429, 404)]
    assert statuses == [200, 204, 500, 503, 429, 404]
    assert counted(origin(server)) == {"success": 2, "failure": 3, "bad-request": 1}
    assert active(origin(server)) == 0


def test_a_refused_connection_is_a_failure() -> None:
    """A connection error is counted as a failure and raised as httpx raises it."""
    url = refused_url()
    with client() as http, pytest.raises(httpx.ConnectError):
        http.get(url)
    assert counted(url.replace("http://", "http:")) == {"failure": 1}


def test_the_clients_timeout_is_the_commands_timeout(server: Dependency) -> None:
    """httpx's own read timeout is counted as the command's timeout event, and raised unchanged."""
    with (
        httpx.Client(transport=breaker.httpx.Transport(), timeout=httpx.Timeout(WAIT, read=0.05)) as http,
        pytest.raises(httpx.ReadTimeout),
    ):
        http.get(f"{server.url}/slow-headers")
    assert counted(origin(server)) == {"timeout": 1}


def test_an_open_circuit_keeps_requests_in_the_process(server: Dependency) -> None:
    """Once the circuit opens, requests raise CircuitOpenError (with retry_after) and never reach the server."""
    config = CommandConfig(request_volume_threshold=3, sleep_window=30.0)
    with client(config=config) as http:
        for _ in range(3):
            assert http.get(f"{server.url}/status/503").status_code == 503
        assert breaker.get_circuit(origin(server))[0].state is State.OPEN
        with pytest.raises(CircuitOpenError) as raised:
            http.get(f"{server.url}/status/200")
    assert 0 < raised.value.retry_after <= 30.0
    assert server.hits == {"/status/503": 3}


def test_a_fallback_answers_failures_and_refusals_but_not_bad_requests(server: Dependency) -> None:
    """The fallback gets (error, request): FailedResultError holding a 5xx response, the client's error, the
    refusal; a 404 is returned as it is."""
    seen: list[tuple[type[BaseException], str]] = []

    def fallback(error: BaseException, request: httpx.Request) -> httpx.Response:
        seen.append((type(error), request.url.path))
        if isinstance(error, FailedResultError):
            assert isinstance(error.result, httpx.Response)
            assert error.result.status_code == 503
            assert error.result.is_closed
        return httpx.Response(200, text="from the fallback")

    with (
        client(fallback=fallback, config=CommandConfig(max_concurrent_requests=1)) as http,
        httpx.Client(transport=breaker.httpx.Transport(fallback=fallback), timeout=0.05) as impatient,
    ):
        assert http.get(f"{server.url}/status/503").text == "from the fallback"
        assert http.get(f"{server.url}/status/404").status_code == 404
        assert impatient.get(f"{server.url}/slow-headers").text == "from the fallback"
        with http.stream("GET", f"{server.url}/status/200") as held:  # holds the only ticket
            assert http.get(f"{server.url}/status/200").text == "from the fallback"
            held.read()
    assert seen == [
        (FailedResultError, "/status/503"),
        (httpx.ReadTimeout, "/slow-headers"),
        (MaxConcurrencyError, "/status/200"),
    ]
    assert counted(origin(server)) == {
        "failure": 1,
        "bad-request": 1,
        "timeout": 1,
        "rejected": 1,
        "success": 1,
        "fallback-success": 3,
    }


def test_a_streamed_response_holds_its_ticket_until_closed(server: Dependency) -> None:
    """The ticket is held while a streamed body is open, and given back, once, when it is closed."""
    name = "streamed"
    with client(name=name, config=CommandConfig(max_concurrent_requests=1)) as http:
        with http.stream("GET", f"{server.url}/stream") as response:
            assert active(name) == 1
            with pytest.raises(MaxConcurrencyError):
                http.get(f"{server.url}/status/200")
            assert counted(name) == {"rejected": 1}  # the stream's call has not ended yet
        assert active(name) == 0
        assert response.is_closed
    assert counted(name) == {"rejected": 1, "success": 1}


def test_a_body_read_to_its_end_gives_the_ticket_back(server: Dependency) -> None:
    """Reading a streamed body to its end ends the call before the response is closed."""
    name = "read-through"
    server.release.set()
    with client(name=name) as http, http.stream("GET", f"{server.url}/stream") as response:
        assert list(response.iter_lines()) == ["chunk 0", "chunk 1", "chunk 2"]
        assert active(name) == 0
        assert counted(name) == {"success": 1}
    assert counted(name) == {"success": 1}


def test_a_body_that_breaks_is_a_failure_counted_once(server: Dependency) -> None:
    """A response whose body breaks mid-read is one failure, whatever its status said."""
    with client() as http, pytest.raises(httpx.RemoteProtocolError):
        http.get(f"{server.url}/broken")
    assert counted(origin(server)) == {"failure": 1}
    assert active(origin(server)) == 0


def test_name_and_config(server: Dependency) -> None:
    """``name`` as a str or a callable picks the command; ``config`` applies only where none was set."""
    breaker.configure_command("configured", CommandConfig(timeout=7.0))
    with (
        client(name="configured", config=CommandConfig(timeout=2.0)) as fixed,
        client(name=lambda request: f"path:{request.url.path}", config=CommandConfig(timeout=3.0)) as by_path,
    ):
        fixed.get(f"{server.url}/status/200")
        by_path.get(f"{server.url}/status/201")
    assert counted("configured") == {"success": 1}
    assert counted("path:/status/201") == {"success": 1}
    assert breaker.get_settings("configured").timeout == 7.0
    assert breaker.get_settings("path:/status/201").timeout == 3.0


def test_classify_overrides_the_default_rule(server: Dependency) -> None:
    """``classify`` decides an exchange's event; None leaves it to the default rule."""

    def classify(response: httpx.Response | None, error: BaseException | None) -> Event | None:
        if response is not None and response.status_code == 404:
            return Event.FAILURE
        return None

    with client(classify=classify) as http:
        http.get(f"{server.url}/status/404")
        http.get(f"{server.url}/status/200")
    assert counted(origin(server)) == {"failure": 1, "success": 1}


def test_bad_arguments_are_refused_up_front() -> None:
    """A wrong transport, name, config, fallback or classify raises TypeError naming it."""
    with pytest.raises(TypeError, match="transport"):
        breaker.httpx.Transport(httpx.AsyncHTTPTransport())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="name"):
        breaker.httpx.Transport(name=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="config"):
        breaker.httpx.Transport(config={"timeout": 1})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="fallback"):
        breaker.httpx.AsyncTransport(fallback="no")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="name"):
        breaker.httpx.Transport(name="")


# -- async ----------------------------------------------------------------------------------------------------------


def test_async_client_counts_and_holds_tickets_like_the_sync_one(server: Dependency) -> None:
    """AsyncTransport: statuses counted, a stream holds its ticket until closed, an open circuit refuses."""
    name = origin(server)

    async def scenario() -> None:
        async with httpx.AsyncClient(
            transport=breaker.httpx.AsyncTransport(
                config=CommandConfig(request_volume_threshold=6, error_percent_threshold=60)  # trips at the 4th 500
            ),
            timeout=WAIT,
        ) as http:
            assert (await http.get(f"{server.url}/status/200")).status_code == 200
            assert (await http.get(f"{server.url}/status/404")).status_code == 404
            async with http.stream("GET", f"{server.url}/stream") as response:
                assert active(name) == 1
                server.release.set()
                assert [line async for line in response.aiter_lines()] == ["chunk 0", "chunk 1", "chunk 2"]
            assert active(name) == 0
            for _ in range(4):
                await http.get(f"{server.url}/status/500")
            with pytest.raises(CircuitOpenError):
                await http.get(f"{server.url}/status/200")

    asyncio.run(scenario())
    assert counted(name) == {"success": 2, "bad-request": 1, "failure": 4, "short-circuit": 1}
    assert server.hits["/status/200"] == 1


def test_async_fallback_may_be_a_coroutine(server: Dependency) -> None:
    """An async fallback is awaited; its answer is the client's response."""

    async def fallback(error: BaseException, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text=f"fallback for {type(error).__name__}")

    async def scenario() -> str:
        async with httpx.AsyncClient(transport=breaker.httpx.AsyncTransport(fallback=fallback)) as http:
            return (await http.get(f"{server.url}/status/502")).text

    assert asyncio.run(scenario()) == "fallback for FailedResultError"
    assert counted(origin(server)) == {"failure": 1, "fallback-success": 1}


def test_a_cancelled_request_gives_its_ticket_back(server: Dependency) -> None:
    """A task cancelled while its request hangs ends the call as cancelled, its ticket back."""
    name = origin(server)

    async def scenario() -> None:
        async with httpx.AsyncClient(transport=breaker.httpx.AsyncTransport(), timeout=WAIT) as http:
            request = asyncio.ensure_future(http.get(f"{server.url}/hang"))
            for _ in range(1000):
                if server.hits["/hang"]:
                    break
                await asyncio.sleep(0.001)
            assert active(name) == 1
            request.cancel()
            with pytest.raises(asyncio.CancelledError):
                await request

    asyncio.run(scenario())
    assert counted(name) == {"cancelled": 1}
    assert active(name) == 0


def test_retryable_follows_the_status_of_raise_for_status(server: Dependency) -> None:
    """``breaker.retryable``: an HTTPStatusError with 503 or 429 is worth retrying, 404 is not."""
    with client() as http:
        for code, expected in ((503, True), (429, True), (404, False)):
            with pytest.raises(httpx.HTTPStatusError) as raised:
                http.get(f"{server.url}/status/{code}").raise_for_status()
            assert breaker.retryable(raised.value) is expected


class _AsyncBody(httpx.AsyncByteStream):
    async def __aiter__(self) -> Any:
        yield b"never read"


class _WrongStreamTransport(httpx.BaseTransport):
    """A sync transport that (wrongly) answers with an async body."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=_AsyncBody())


def test_a_response_that_cannot_be_followed_fails_and_gives_its_ticket_back() -> None:
    """A wrapped transport whose response body cannot be watched: TypeError, one failure, the ticket back."""
    with (
        httpx.Client(transport=breaker.httpx.Transport(_WrongStreamTransport(), name="wrong")) as http,
        pytest.raises(TypeError, match="async stream"),
    ):
        http.get("http://127.0.0.1:9/")
    assert counted("wrong") == {"failure": 1}
    assert active("wrong") == 0


# -- responses the transport has read already, readers that stop early, dropped responses ---------------------------


def test_a_response_read_by_the_transport_ends_its_call_at_once() -> None:
    """A transport that returns a response already read (httpx.MockTransport, a cache) gives the ticket back."""
    mock = httpx.MockTransport(lambda request: httpx.Response(200, json={"ok": True}))
    with httpx.Client(
        transport=breaker.httpx.Transport(mock, name="mocked", config=CommandConfig(max_concurrent_requests=1))
    ) as http:
        for _ in range(5):
            assert http.get("http://dependency.test/").json() == {"ok": True}
    assert counted("mocked") == {"success": 5}
    assert active("mocked") == 0


def test_an_async_response_read_by_the_transport_ends_its_call_at_once() -> None:
    """The same for AsyncTransport."""
    mock = httpx.MockTransport(lambda request: httpx.Response(503))

    async def scenario() -> None:
        transport = breaker.httpx.AsyncTransport(mock, name="mocked", config=CommandConfig(force_closed=True))
        async with httpx.AsyncClient(transport=transport) as http:
            for _ in range(5):
                assert (await http.get("http://dependency.test/")).status_code == 503

    asyncio.run(scenario())
    assert counted("mocked") == {"failure": 5}
    assert active("mocked") == 0


def test_a_reader_that_stops_early_is_not_a_failure(server: Dependency) -> None:
    """Breaking out of iter_lines, or sniffing one chunk, then closing: the response's own event, once."""
    server.release.set()
    with client(name="sniffer") as http:
        for _ in range(3):
            with http.stream("GET", f"{server.url}/stream") as response:
                for _line in response.iter_lines():
                    break
        with http.stream("GET", f"{server.url}/stream") as response:
            next(response.iter_bytes())
    assert counted("sniffer") == {"success": 4}
    assert active("sniffer") == 0


def test_an_async_reader_that_stops_early_is_not_a_failure(server: Dependency) -> None:
    """An async reader that breaks out and awaits before closing (the loop finalizes the generator meanwhile)."""
    server.release.set()

    async def scenario() -> None:
        async with httpx.AsyncClient(transport=breaker.httpx.AsyncTransport(name="sniffer"), timeout=WAIT) as http:
            for _ in range(3):
                async with http.stream("GET", f"{server.url}/stream") as response:
                    async for _line in response.aiter_lines():
                        break
                    await asyncio.sleep(0.01)

    asyncio.run(scenario())
    assert counted("sniffer") == {"success": 3}
    assert active("sniffer") == 0


def test_a_dropped_response_gives_its_ticket_back_when_collected(server: Dependency) -> None:
    """A streamed response never closed holds its ticket until it is garbage collected, then gives it back."""
    import gc

    with client(name="dropped") as http:
        response = http.send(http.build_request("GET", f"{server.url}/status/200"), stream=True)
        assert active("dropped") == 1
        del response
        gc.collect()
    wait_until(lambda: active("dropped") == 0)
    assert counted("dropped") == {"success": 1}


def wait_until(condition: Any) -> None:
    """Wait for a worker thread's step (end_nowait hands a locked step to one)."""
    import threading

    for _ in range(10_000):
        if condition():
            return
        threading.Event().wait(0.001)
    raise AssertionError("never happened")


# -- what the policy refuses or counts differently ------------------------------------------------------------------


@pytest.mark.parametrize("event", [Event.SHORT_CIRCUIT, Event.SLOW, Event.FALLBACK_SUCCESS, "failure"], ids=repr)
def test_classify_must_return_an_ending_event(event: Any) -> None:
    """A classify returning anything but an ending event raises TypeError; the call fails, its ticket back."""
    mock = httpx.MockTransport(lambda request: httpx.Response(200))
    transport = breaker.httpx.Transport(mock, name="classified", classify=lambda response, error: event)
    with httpx.Client(transport=transport) as http, pytest.raises(TypeError, match="classify must return"):
        http.get("http://dependency.test/")
    assert counted("classified") == {"failure": 1}
    assert active("classified") == 0


def test_classify_raising_a_base_exception_still_ends_the_call() -> None:
    """Even a KeyboardInterrupt from classify ends the call (a failure) before it propagates."""

    def classify(response: httpx.Response | None, error: BaseException | None) -> Event | None:
        raise KeyboardInterrupt

    mock = httpx.MockTransport(lambda request: httpx.Response(200))
    with (
        httpx.Client(transport=breaker.httpx.Transport(mock, name="interrupted", classify=classify)) as http,
        pytest.raises(KeyboardInterrupt),
    ):
        http.get("http://dependency.test/")
    assert counted("interrupted") == {"failure": 1}
    assert active("interrupted") == 0


def test_a_response_after_the_commands_timeout_is_a_timeout(clock: Any) -> None:
    """Headers that come after the command's timeout count as a timeout; the caller still gets the response,
    unless a fallback answers it (with CommandTimeoutError)."""

    def slow(request: httpx.Request) -> httpx.Response:
        clock.advance(2.0)
        return httpx.Response(200, text="late")

    config = CommandConfig(timeout=1.0)
    mock = httpx.MockTransport(slow)
    seen: list[BaseException] = []

    def fallback(error: BaseException, request: httpx.Request) -> httpx.Response:
        seen.append(error)
        return httpx.Response(200, text="fallback")

    with (
        httpx.Client(transport=breaker.httpx.Transport(mock, name="late", config=config)) as http,
        httpx.Client(transport=breaker.httpx.Transport(mock, name="late", fallback=fallback)) as answered,
    ):
        assert http.get("http://dependency.test/").text == "late"
        assert answered.get("http://dependency.test/").text == "fallback"
    assert counted("late") == {"timeout": 2, "fallback-success": 1}
    assert [type(error) for error in seen] == [breaker.CommandTimeoutError]


def test_a_pool_timeout_is_not_the_dependencys_fault(server: Dependency) -> None:
    """httpx's PoolTimeout (no free connection in the client) is counted as cancelled, never trips the circuit."""
    inner = httpx.HTTPTransport(limits=httpx.Limits(max_connections=1))
    transport = breaker.httpx.Transport(inner, name="pooled")
    with httpx.Client(transport=transport, timeout=httpx.Timeout(WAIT, pool=0.01)) as http:
        with http.stream("GET", f"{server.url}/stream"), pytest.raises(httpx.PoolTimeout):
            http.get(f"{server.url}/status/200")
        server.release.set()
    assert counted("pooled") == {"cancelled": 1, "success": 1}


def test_a_fallback_must_return_a_response(server: Dependency) -> None:
    """A fallback returning something else than an httpx.Response is its failure: FallbackError from TypeError."""
    with (
        client(fallback=lambda error, request: "not a response") as http,
        pytest.raises(breaker.FallbackError) as raised,
    ):
        http.get(f"{server.url}/status/503")
    assert isinstance(raised.value.fallback_error, TypeError)
    assert "must return a httpx.Response" in str(raised.value.fallback_error)
    assert counted(origin(server)) == {"failure": 1, "fallback-failure": 1}


def test_config_is_offered_again_in_a_new_registry() -> None:
    """A module-level client's config reaches each registry it is used with (tests using isolated_registry)."""
    from breaker.testing import isolated_registry

    mock = httpx.MockTransport(lambda request: httpx.Response(200))
    transport = breaker.httpx.Transport(mock, name="shared", config=CommandConfig(max_concurrent_requests=2))
    with httpx.Client(transport=transport) as http:
        for _ in range(2):
            with isolated_registry():
                http.get("http://dependency.test/")
                assert breaker.get_settings("shared").max_concurrent_requests == 2


def test_an_ignored_error_is_a_bad_request_and_not_retryable() -> None:
    """An error in the command's ignored_exceptions is a bad request, marked so that retryable says False."""

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.UnsupportedProtocol("no such scheme")

    breaker.configure_command("ignoring", CommandConfig(ignored_exceptions=(httpx.UnsupportedProtocol,)))
    transport = breaker.httpx.Transport(httpx.MockTransport(refuse), name="ignoring")
    with httpx.Client(transport=transport) as http, pytest.raises(httpx.UnsupportedProtocol) as raised:
        http.get("http://dependency.test/")
    assert counted("ignoring") == {"bad-request": 1}
    assert breaker.retryable(raised.value) is False


def test_the_async_transport_needs_asyncio() -> None:
    """Driven by another event loop (trio), AsyncTransport says it needs asyncio, before anything is counted."""
    transport = breaker.httpx.AsyncTransport(httpx.MockTransport(lambda request: httpx.Response(200)), name="trio")
    coroutine = transport.handle_async_request(httpx.Request("GET", "http://dependency.test/"))
    with pytest.raises(RuntimeError, match="runs under asyncio"):
        coroutine.send(None)
    assert counted("trio") == {}
