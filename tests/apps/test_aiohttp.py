"""breaker.aiohttp: the client middleware against a real HTTP service on 127.0.0.1 (`aiohttp_servers.Service`).

Each scenario runs on a fresh event loop in debug mode, with every session closed and every response released
(warnings are errors). Waits are bounded waits for an event (the service got a request, a count landed), never
sleeps chosen to be long enough; the only durations are aiohttp's own timeouts, set short against a service that
holds its answer until the test releases it, so that the timeout is the only way the call can end.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, TypeVar

import aiohttp
import blockbuster
import pytest
from aiohttp.abc import AbstractResolver
from aiohttp_servers import WAIT, Service, closed_port, service

import breaker
import breaker.aiohttp
from breaker import CommandConfig, Event
from breaker._core.circuit import engine_of
from breaker.testing import FakeClock

__all__ = ["service"]  # the fixture, imported for the tests below

T = TypeVar("T")


def run(scenario: Coroutine[Any, Any, T]) -> T:
    """Run a scenario on a fresh event loop in debug mode (slow callbacks and unawaited coroutines get reported)."""
    return asyncio.run(scenario, debug=True)


def origin(service: Service) -> str:
    """The command a request to ``service`` goes through by default."""
    return f"http:127.0.0.1:{service.port}"


def counts(name: str) -> dict[str, int]:
    """The events ``name``'s circuit counted (those that are not zero)."""
    return {str(event): n for event, n in breaker.get_circuit(name)[0].statistics().counts.items() if n}


def active(name: str) -> int:
    """The tickets of ``name`` held now."""
    return breaker.get_circuit(name)[0].statistics().active


@contextlib.asynccontextmanager
async def session(**options: Any) -> AsyncIterator[aiohttp.ClientSession]:
    """A session whose requests go through ``breaker.aiohttp.middleware(**options)``; closed on leaving."""
    async with aiohttp.ClientSession(middlewares=[breaker.aiohttp.middleware(**options)]) as client:
        yield client


async def arrival(service: Service, path: str, count: int = 1) -> None:
    """Wait, without blocking the loop, until ``service`` received ``path`` ``count`` times."""
    await asyncio.to_thread(service.wait_for, path, count)


async def landed(name: str, expected: dict[str, int]) -> None:
    """Wait until ``name``'s counts are ``expected`` (a count ended by a worker thread lands moments later)."""
    deadline = asyncio.get_running_loop().time() + WAIT
    while counts(name) != expected:
        assert asyncio.get_running_loop().time() < deadline, counts(name)
        await asyncio.sleep(0.005)


def one_ticket(service: Service) -> None:
    """Give the service's command one ticket, so that a second call while the first holds it is rejected."""
    breaker.configure_command(origin(service), CommandConfig(max_concurrent_requests=1))


async def rejected(client: aiohttp.ClientSession, service: Service) -> None:
    """A call now is rejected: the one ticket is held. The service never sees it."""
    before = service.requests
    with pytest.raises(breaker.MaxConcurrencyError):
        await client.get(service.url("/status/200"))
    assert service.requests == before


async def admitted(client: aiohttp.ClientSession, service: Service) -> None:
    """A call now goes through: the ticket is back."""
    async with client.get(service.url("/status/200")) as response:
        assert await response.read() == b"status 200"


# -- classification ------------------------------------------------------------------------------------------------


def test_success(service: Service) -> None:
    """A 200 with a short body is one success, counted (ticket back) before session.get returns."""

    async def scenario() -> None:
        async with session() as client:
            response = await client.get(service.url("/status/200"))
            assert counts(origin(service)) == {"success": 1}
            assert active(origin(service)) == 0
            assert await response.text() == "status 200"
            response.release()
        assert counts(origin(service)) == {"success": 1}

    run(scenario())


@pytest.mark.parametrize("status", [500, 503, 429])
def test_5xx_and_429_are_failures_returned_unchanged(service: Service, status: int) -> None:
    """A 5xx or 429 without a fallback is a failure, and the caller gets the response as it came."""

    async def scenario() -> None:
        async with session() as client, client.get(service.url(f"/status/{status}")) as response:
            assert response.status == status
            assert await response.read() == f"status {status}".encode()
        assert counts(origin(service)) == {"failure": 1}
        assert active(origin(service)) == 0

    run(scenario())


def test_404_is_a_bad_request(service: Service) -> None:
    """A 4xx other than 429 is a bad request: the caller's fault, neither a request nor an error of the circuit."""

    async def scenario() -> None:
        async with session() as client, client.get(service.url("/status/404")) as response:
            assert response.status == 404
        assert counts(origin(service)) == {"bad-request": 1}
        stats = breaker.get_circuit(origin(service))[0].statistics()
        assert (stats.requests, stats.errors) == (0, 0)

    run(scenario())


def test_redirect_hops_are_calls_of_their_own(service: Service) -> None:
    """Each hop of a redirect goes through the middleware: a 302 and its target are two successes."""

    async def scenario() -> None:
        async with session() as client, client.get(service.url("/redirect/status/200")) as response:
            assert (response.status, len(response.history)) == (200, 1)
            assert await response.read() == b"status 200"
        assert counts(origin(service)) == {"success": 2}
        assert active(origin(service)) == 0

    run(scenario())


def test_connection_refused_is_a_failure() -> None:
    """A refused connection raises aiohttp's connector error unchanged, counted as one failure."""
    port = closed_port()

    async def scenario() -> None:
        async with session() as client:
            with pytest.raises(aiohttp.ClientConnectorError):
                await client.get(f"http://127.0.0.1:{port}/")
        assert counts(f"http:127.0.0.1:{port}") == {"failure": 1}
        assert active(f"http:127.0.0.1:{port}") == 0

    run(scenario())


@pytest.mark.parametrize(("method", "attempts"), [("GET", 2), ("POST", 1)])
def test_each_attempt_of_aiohttp_is_a_call(service: Service, method: str, attempts: int) -> None:
    """A hang-up: aiohttp resends an idempotent request once by itself; a GET counts two failures, a POST one."""

    async def scenario() -> None:
        async with session() as client:
            with pytest.raises(aiohttp.ServerDisconnectedError):
                await client.request(method, service.url("/hangup"), data=b"x" if method == "POST" else None)
        assert service.requests == ["/hangup"] * attempts
        assert counts(origin(service)) == {"failure": attempts}
        assert active(origin(service)) == 0

    run(scenario())


def test_sock_read_timeout_is_a_timeout(service: Service) -> None:
    """A service that sends no head within ClientTimeout(sock_read=...) is the command's timeout event."""

    async def scenario() -> None:
        async with session() as client:
            with pytest.raises(aiohttp.SocketTimeoutError):
                await client.get(service.url("/hang"), timeout=aiohttp.ClientTimeout(sock_read=0.1))
        assert counts(origin(service)) == {"timeout": 1}
        assert active(origin(service)) == 0

    run(scenario())


def test_total_timeout_waiting_for_the_head_is_a_timeout(service: Service) -> None:
    """ClientTimeout(total=...) passing while the service holds its head is a timeout (aiohttp's TimeoutError)."""

    async def scenario() -> None:
        async with session() as client:
            with pytest.raises(asyncio.TimeoutError):
                await client.get(service.url("/hang"), timeout=aiohttp.ClientTimeout(total=0.1))
        assert counts(origin(service)) == {"timeout": 1}

    run(scenario())


class HangingResolver(AbstractResolver):
    """A DNS resolver that never answers (until the bound): connecting hangs."""

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[Any]:
        await asyncio.wait_for(asyncio.Event().wait(), WAIT)
        raise AssertionError("the resolver was not cancelled")

    async def close(self) -> None:
        pass


def test_total_timeout_while_connecting_is_a_timeout() -> None:
    """ClientTimeout(total=...) passing while connecting is a timeout, not cancelled (guards ClientRequest._timer)."""
    # aiohttp cancels the task and turns the cancellation into TimeoutError only where it entered the request's timer:
    # around the middlewares. The middleware enters the (private) timer again, so that it sees the TimeoutError too.

    async def scenario() -> None:
        connector = aiohttp.TCPConnector(resolver=HangingResolver())
        middleware = breaker.aiohttp.middleware()
        async with aiohttp.ClientSession(connector=connector, middlewares=[middleware]) as client:
            with pytest.raises(asyncio.TimeoutError):
                await client.get("http://never.invalid/", timeout=aiohttp.ClientTimeout(total=0.1))
        assert counts("http:never.invalid:80") == {"timeout": 1}
        assert active("http:never.invalid:80") == 0

    run(scenario())


# -- the circuit ---------------------------------------------------------------------------------------------------


def test_open_circuit_raises_without_sending(service: Service, clock: FakeClock) -> None:
    """An open circuit raises CircuitOpenError (retry_after), sends nothing; a probe after the window closes it."""
    breaker.configure_command(origin(service), CommandConfig(request_volume_threshold=2, sleep_window=30.0))

    async def scenario() -> None:
        async with session() as client:
            for _ in range(2):
                async with client.get(service.url("/status/503")) as response:
                    assert response.status == 503
            assert breaker.get_circuit(origin(service))[0].state is breaker.State.OPEN
            with pytest.raises(breaker.CircuitOpenError) as refused:
                await client.get(service.url("/status/200"))
            assert refused.value.retry_after == 30.0
            clock.advance(4.0)
            with pytest.raises(breaker.CircuitOpenError) as refused:
                await client.get(service.url("/status/200"))
            assert refused.value.retry_after == 26.0
            assert service.requests == ["/status/503", "/status/503"]
            assert counts(origin(service)) == {"failure": 2, "short-circuit": 2}
            clock.advance(26.0)
            await admitted(client, service)
            assert breaker.get_circuit(origin(service))[0].state is breaker.State.CLOSED  # (its window cleared)

    run(scenario())


# -- fallbacks -----------------------------------------------------------------------------------------------------


async def spare_response(client: aiohttp.ClientSession, service: Service) -> aiohttp.ClientResponse:
    """A response to answer with, got from the service without the middleware, its body read."""
    response = await client.get(service.url("/status/200"))
    await response.read()
    return response


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("case", ["refused", "open", "failed", "timeout"])
def test_fallback_answers_failures_and_timeouts(service: Service, case: str, kind: str) -> None:
    """A sync or async fallback answers refused, open, 503 (FailedResultError holding it, closed), timed out."""
    seen: list[tuple[BaseException, aiohttp.ClientRequest]] = []
    url = {
        "refused": f"http://127.0.0.1:{closed_port()}/",
        "open": service.url("/status/200"),
        "failed": service.url("/status/503"),
        "timeout": service.url("/hang"),
    }[case]
    name = "api"
    if case == "open":
        breaker.configure_command(name, CommandConfig(force_open=True))

    async def scenario() -> None:
        async with aiohttp.ClientSession() as plain:
            spare = await spare_response(plain, service)

            def sync_fallback(error: BaseException, request: aiohttp.ClientRequest) -> aiohttp.ClientResponse:
                seen.append((error, request))
                return spare

            async def async_fallback(error: BaseException, request: aiohttp.ClientRequest) -> aiohttp.ClientResponse:
                seen.append((error, request))
                return await plain.get(service.url("/status/200"))

            fallback = sync_fallback if kind == "sync" else async_fallback
            async with session(name=name, fallback=fallback) as client:
                timeout = aiohttp.ClientTimeout(sock_read=0.1)
                async with client.get(url, timeout=timeout) as response:
                    assert (response.status, await response.text()) == (200, "status 200")

        [(error, request)] = seen
        assert str(request.url) == url
        primary = {"refused": "failure", "open": "short-circuit", "failed": "failure", "timeout": "timeout"}[case]
        assert counts(name) == {primary: 1, "fallback-success": 1}
        assert active(name) == 0
        expected = {
            "refused": aiohttp.ClientConnectorError,
            "open": breaker.CircuitOpenError,
            "failed": breaker.FailedResultError,
            "timeout": aiohttp.SocketTimeoutError,
        }[case]
        assert isinstance(error, expected)
        if isinstance(error, breaker.FailedResultError):
            failed = error.result
            assert isinstance(failed, aiohttp.ClientResponse)
            assert (failed.status, failed.closed) == (503, True)

    run(scenario())


def test_fallback_is_not_called_for_a_bad_request(service: Service) -> None:
    """A 404 is the caller's fault: no fallback, the response as it came."""

    def fallback(error: BaseException, request: aiohttp.ClientRequest) -> aiohttp.ClientResponse:
        raise AssertionError("the fallback ran")

    async def scenario() -> None:
        async with session(fallback=fallback) as client, client.get(service.url("/status/404")) as response:
            assert response.status == 404
        assert counts(origin(service)) == {"bad-request": 1}

    run(scenario())


def test_fallback_that_raises(service: Service) -> None:
    """A fallback that raises: FallbackError, counted as fallback-failure beside the failure."""

    def fallback(error: BaseException, request: aiohttp.ClientRequest) -> aiohttp.ClientResponse:
        raise RuntimeError("no spare")

    async def scenario() -> None:
        async with session(fallback=fallback) as client:
            with pytest.raises(breaker.FallbackError) as caught:
                await client.get(service.url("/status/500"))
        assert isinstance(caught.value.run_error, breaker.FailedResultError)
        assert counts(origin(service)) == {"failure": 1, "fallback-failure": 1}

    run(scenario())


# -- name, config, classify ----------------------------------------------------------------------------------------


def test_name_str(service: Service) -> None:
    """name="..." sends every request through that command."""

    async def scenario() -> None:
        async with session(name="inventory") as client:
            for path in ("/status/200", "/status/404"):
                async with client.get(service.url(path)):
                    pass
        assert counts("inventory") == {"success": 1, "bad-request": 1}
        assert breaker.get_circuit(origin(service))[1]  # the origin's command was never made: created only now

    run(scenario())


def test_name_callable_gets_the_request(service: Service) -> None:
    """name=callable is asked for each request's command, with aiohttp's ClientRequest."""
    asked: list[aiohttp.ClientRequest] = []

    def name(request: aiohttp.ClientRequest) -> str:
        asked.append(request)
        return "reads" if request.method == "GET" else "writes"

    async def scenario() -> None:
        async with session(name=name) as client:
            async with client.get(service.url("/status/200")):
                pass
            async with client.post(service.url("/status/503"), data=b"x"):
                pass
        assert [(r.method, r.url.path) for r in asked] == [("GET", "/status/200"), ("POST", "/status/503")]
        assert counts("reads") == {"success": 1}
        assert counts("writes") == {"failure": 1}

    run(scenario())


def test_name_is_checked() -> None:
    """A bad name or argument is refused when the middleware is made."""
    with pytest.raises(ValueError, match="name"):
        breaker.aiohttp.middleware(name="")
    with pytest.raises(TypeError):
        breaker.aiohttp.middleware(name=42)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        breaker.aiohttp.middleware(config={"timeout": 1})  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        breaker.aiohttp.middleware(fallback="spare")  # type: ignore[arg-type]
    assert "name='api'" in repr(breaker.aiohttp.middleware(name="api"))


def test_config_applies_unless_configured_already(service: Service) -> None:
    """config= is each new command's config; a command configured already keeps its own."""
    breaker.configure_command("mine", CommandConfig(max_concurrent_requests=7))
    config = CommandConfig(max_concurrent_requests=3)

    async def scenario() -> None:
        async with session(config=config) as client, client.get(service.url("/status/200")):
            pass
        async with session(name="mine", config=config) as client, client.get(service.url("/status/200")):
            pass

    run(scenario())
    assert breaker.get_settings(origin(service)).max_concurrent_requests == 3
    assert breaker.get_settings("mine").max_concurrent_requests == 7


def test_classify_overrides_the_default(service: Service) -> None:
    """classify's event wins; None leaves the default rule to decide; it sees errors too."""
    port = closed_port()

    def classify(response: aiohttp.ClientResponse | None, error: BaseException | None) -> Event | None:
        if response is not None and response.status == 404:
            return Event.FAILURE  # a missing item means the service lost it
        if isinstance(error, aiohttp.ClientConnectorError):
            return Event.BAD_REQUEST
        return None

    async def scenario() -> None:
        async with session(name="api", classify=classify) as client:
            for path in ("/status/404", "/status/503", "/status/200"):
                async with client.get(service.url(path)):
                    pass
            with pytest.raises(aiohttp.ClientConnectorError):
                await client.get(f"http://127.0.0.1:{port}/")
        assert counts("api") == {"failure": 2, "success": 1, "bad-request": 1}

    run(scenario())


@pytest.mark.parametrize("answer", ["raises", "short-circuit"])
def test_classify_that_fails_counts_a_failure_and_gives_the_ticket_back(service: Service, answer: str) -> None:
    """A classify that raises or returns an event no call ends with: one failure, its error, ticket back."""

    def classify(response: aiohttp.ClientResponse | None, error: BaseException | None) -> Event | None:
        if answer == "raises":
            raise LookupError("broken rule")
        return Event.SHORT_CIRCUIT

    async def scenario() -> None:
        async with session(name="api", classify=classify) as client:
            with pytest.raises(LookupError if answer == "raises" else TypeError):
                await client.get(service.url("/status/200"))
        assert counts("api") == {"failure": 1}
        assert active("api") == 0

    run(scenario())


# -- the ticket while the body is open -----------------------------------------------------------------------------


async def _read(response: aiohttp.ClientResponse, service: Service) -> None:
    service.release()
    assert await response.read() == b"partrest"


async def _text(response: aiohttp.ClientResponse, service: Service) -> None:
    service.release()
    assert await response.text() == "partrest"


async def _json(response: aiohttp.ClientResponse, service: Service) -> None:
    service.release()
    with pytest.raises(aiohttp.ContentTypeError):  # text/plain: json() reads the body, then refuses it
        await response.json()


async def _release(response: aiohttp.ClientResponse, service: Service) -> None:
    response.release()


async def _close(response: aiohttp.ClientResponse, service: Service) -> None:
    response.close()


async def _async_with(response: aiohttp.ClientResponse, service: Service) -> None:
    async with response:
        pass


async def _content_to_eof(response: aiohttp.ClientResponse, service: Service) -> None:
    service.release()
    assert b"".join([chunk async for chunk in response.content.iter_any()]) == b"partrest"


ENDINGS: dict[str, Callable[[aiohttp.ClientResponse, Service], Coroutine[Any, Any, None]]] = {
    "read": _read,
    "text": _text,
    "json": _json,
    "release": _release,
    "close": _close,
    "async-with": _async_with,
    "content-to-eof": _content_to_eof,
}


@pytest.mark.parametrize("ending", ENDINGS)
def test_ticket_is_held_until_the_response_is_done(service: Service, ending: str) -> None:
    """An open, unfinished response holds the ticket; each way of ending it gives it back, one success."""
    one_ticket(service)

    async def scenario() -> None:
        async with session() as client:
            response = await client.get(service.url("/slow"))
            assert (response.status, response.closed) == (200, False)
            assert active(origin(service)) == 1
            await rejected(client, service)
            await ENDINGS[ending](response, service)
            assert counts(origin(service)) == {"success": 1, "rejected": 1}
            assert active(origin(service)) == 0
            response.release()  # ending it again changes nothing
            response.close()
            await admitted(client, service)
        assert counts(origin(service)) == {"success": 2, "rejected": 1}

    run(scenario())


def test_streamed_body_holds_the_ticket_until_its_end(service: Service) -> None:
    """A chunked body iterated chunk by chunk: the ticket is held until the last chunk, then given back once."""
    one_ticket(service)

    async def scenario() -> None:
        async with session() as client, client.get(service.url("/stream")) as response:
            first = await response.content.readany()
            assert first == b"chunk"
            await rejected(client, service)
            service.release()
            chunks = [chunk async for chunk in response.content.iter_chunked(5)]
            assert chunks == [b"chunk"] * 3
            assert counts(origin(service)) == {"success": 1, "rejected": 1}
            assert active(origin(service)) == 0
        assert counts(origin(service)) == {"success": 1, "rejected": 1}

    run(scenario())


def test_failed_response_holds_its_ticket_too(service: Service) -> None:
    """A 503 returned unchanged (no fallback) is counted as a failure once its body is done, not before."""
    breaker.configure_command("api", CommandConfig(max_concurrent_requests=1))

    async def scenario() -> None:
        async with session(name="api", classify=lambda response, error: Event.FAILURE) as client:
            response = await client.get(service.url("/slow"))
            assert counts("api") == {}
            assert active("api") == 1
            response.release()
            assert counts("api") == {"failure": 1}

    run(scenario())


def test_session_raise_for_status_ends_the_call_once(service: Service) -> None:
    """ClientSession(raise_for_status=True): the session closes the failed response and raises; one failure."""

    async def scenario() -> None:
        middleware = breaker.aiohttp.middleware()
        async with aiohttp.ClientSession(middlewares=[middleware], raise_for_status=True) as client:
            with pytest.raises(aiohttp.ClientResponseError) as caught:
                await client.get(service.url("/status/503"))
        assert caught.value.status == 503
        assert counts(origin(service)) == {"failure": 1}
        assert active(origin(service)) == 0

    run(scenario())


def test_websocket_holds_its_ticket_until_closed() -> None:
    """A WebSocket from ws_connect holds its ticket until it is closed, then counts one success."""
    from aiohttp import web

    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            await ws.send_str(f"echo {message.data}")
        return ws

    async def scenario() -> None:
        app = web.Application()
        app.router.add_get("/ws", echo)
        runner = web.AppRunner(app)
        await runner.setup()
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
            await web.SockSite(runner, sock).start()
            try:
                async with session() as client:
                    async with client.ws_connect(f"http://127.0.0.1:{port}/ws") as ws:
                        await ws.send_str("hi")
                        assert await ws.receive_str() == "echo hi"
                        assert active(f"http:127.0.0.1:{port}") == 1
                        assert counts(f"http:127.0.0.1:{port}") == {}
                    assert counts(f"http:127.0.0.1:{port}") == {"success": 1}
                    assert active(f"http:127.0.0.1:{port}") == 0
            finally:
                await runner.cleanup()

    run(scenario())


# -- bodies that break ---------------------------------------------------------------------------------------------


async def _read_all(response: aiohttp.ClientResponse) -> None:
    await response.read()


async def _iterate_all(response: aiohttp.ClientResponse) -> None:
    async with response:
        async for _ in response.content.iter_any():
            pass


READERS = {"read": _read_all, "content": _iterate_all}


@pytest.mark.parametrize("reader", READERS)
def test_body_broken_by_a_reset_is_one_failure(service: Service, reader: str) -> None:
    """A connection reset mid-body: the read raises ClientPayloadError and the call is one failure, not a success."""

    async def scenario() -> None:
        async with session() as client:
            response = await client.get(service.url("/broken"))
            assert active(origin(service)) == 1
            service.release()
            with pytest.raises(aiohttp.ClientPayloadError):
                await READERS[reader](response)
            response.release()
        assert counts(origin(service)) == {"failure": 1}
        assert active(origin(service)) == 0

    run(scenario())


def test_classify_raising_on_a_broken_body_is_logged(service: Service, caplog: pytest.LogCaptureFixture) -> None:
    """A classify that raises on a body's error (in aiohttp's callback, where it cannot propagate) is logged."""

    def classify(response: aiohttp.ClientResponse | None, error: BaseException | None) -> Event | None:
        if error is not None:
            raise LookupError("broken rule")
        return None

    async def scenario() -> None:
        async with session(classify=classify) as client:
            response = await client.get(service.url("/broken"))
            service.release()
            with pytest.raises(aiohttp.ClientPayloadError):
                await response.read()
        assert counts(origin(service)) == {"failure": 1}
        assert active(origin(service)) == 0

    run(scenario())
    [record] = [r for r in caplog.records if r.name == "breaker" and "classify raised" in r.getMessage()]
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], LookupError)


def test_body_stalled_past_sock_read_is_a_timeout(service: Service) -> None:
    """A body that stops coming for longer than ClientTimeout(sock_read=...) is one timeout, not a success."""

    async def scenario() -> None:
        async with session() as client:
            response = await client.get(service.url("/slow"), timeout=aiohttp.ClientTimeout(sock_read=0.1))
            with pytest.raises(aiohttp.SocketTimeoutError):
                await response.read()
        assert counts(origin(service)) == {"timeout": 1}
        assert active(origin(service)) == 0

    run(scenario())


def test_body_outlasting_the_total_timeout_is_a_timeout(service: Service) -> None:
    """ClientTimeout(total=...) passing while the body is read: aiohttp raises TimeoutError; one timeout."""

    async def scenario() -> None:
        timeout = aiohttp.ClientTimeout(total=0.2)
        async with session() as client, client.get(service.url("/slow"), timeout=timeout) as response:
            with pytest.raises(asyncio.TimeoutError):
                await response.read()
        assert counts(origin(service)) == {"timeout": 1}
        assert active(origin(service)) == 0

    run(scenario())


def test_released_while_handling_an_unrelated_error_is_the_responses_event(service: Service) -> None:
    """A response left by ``async with`` on the caller's own error (not the client's) ends with its status's event."""

    async def scenario() -> None:
        async with session() as client:
            with pytest.raises(KeyError):
                async with client.get(service.url("/slow")):
                    raise KeyError("the caller's own bug")
        assert counts(origin(service)) == {"success": 1}

    run(scenario())


# -- cancellation --------------------------------------------------------------------------------------------------


def test_cancelled_while_waiting_for_the_head(service: Service) -> None:
    """A task cancelled while the service holds its answer: CancelledError, one ``cancelled``, ticket back."""
    one_ticket(service)

    async def scenario() -> None:
        async with session() as client:
            task = asyncio.create_task(client.get(service.url("/hang")))
            await arrival(service, "/hang")
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert counts(origin(service)) == {"cancelled": 1}
            assert active(origin(service)) == 0
            service.release()
            await admitted(client, service)

    run(scenario())


@pytest.mark.parametrize("reader", ["read", "async-with"])
def test_cancelled_while_reading_the_body(service: Service, reader: str) -> None:
    """A task cancelled while it reads a body still coming: one ``cancelled``, ticket back."""
    one_ticket(service)

    async def scenario() -> None:
        async with session() as client:
            response = await client.get(service.url("/slow"))
            started = asyncio.Event()

            async def consume() -> None:
                if reader == "read":
                    started.set()
                    await response.read()
                else:
                    async with response:
                        started.set()
                        async for _ in response.content.iter_any():
                            pass

            task = asyncio.create_task(consume())
            await started.wait()  # the task set it, then went on until it waited for the rest of the body
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert counts(origin(service)) == {"cancelled": 1}
            assert active(origin(service)) == 0
            response.release()
            await admitted(client, service)

    run(scenario())


# -- retryable, the loop, the internals -----------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "retry"), [(503, True), (429, True), (404, False)])
def test_retryable_on_raise_for_status(service: Service, status: int, retry: bool) -> None:
    """breaker.retryable on resp.raise_for_status()'s error: 5xx and 429 are worth retrying, other 4xx not."""

    async def scenario() -> None:
        async with session() as client:
            response = await client.get(service.url(f"/status/{status}"))
            with pytest.raises(aiohttp.ClientResponseError) as caught:
                response.raise_for_status()
        assert breaker.retryable(caught.value) is retry
        assert sum(counts(origin(service)).values()) == 1

    run(scenario())


def test_endings_never_block_the_loop(service: Service) -> None:
    """Responses ending while a thread holds the circuit's lock never block the loop; the count lands."""
    holding, free = threading.Event(), threading.Event()

    def hold_the_lock() -> None:
        with engine_of(breaker.get_circuit(origin(service))[0]).lock:
            holding.set()
            free.wait(WAIT)

    async def scenario() -> None:
        async with session() as client:
            response = await client.get(service.url("/slow"))
            holder = threading.Thread(target=hold_the_lock)
            holder.start()
            try:
                await asyncio.to_thread(holding.wait, WAIT)
                service.release()
                assert await response.read() == b"partrest"
                response.release()
                free.set()
                await landed(origin(service), {"success": 1})
            finally:
                free.set()
                await asyncio.to_thread(holder.join, WAIT)
            assert active(origin(service)) == 0

    breaker.get_circuit(origin(service))
    with blockbuster.blockbuster_ctx(scanned_modules=["breaker"]):
        run(scenario())


def test_aiohttp_hooks_the_middleware_relies_on(service: Service) -> None:
    """The aiohttp internals the middleware relies on are there: add_callback, _timer, the release mark."""
    # Beyond aiohttp's documented API: Connection.add_callback (public name), ClientRequest._timer (private) and the
    # plain ClientConnectionError release() leaves on an unfinished body. The scenarios above fail too if one changes.
    timers: list[object] = []

    async def spy(request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType) -> aiohttp.ClientResponse:
        timers.append(getattr(request, "_timer", None))
        response = await handler(request)
        assert response.connection is not None
        assert callable(response.connection.add_callback)
        return response

    async def scenario() -> None:
        async with aiohttp.ClientSession(middlewares=[spy]) as client:
            response = await client.get(service.url("/slow"), timeout=aiohttp.ClientTimeout(total=WAIT))
            response.release()
            assert type(response.content.exception()) is aiohttp.ClientConnectionError

    run(scenario())
    [timer] = timers
    assert isinstance(timer, contextlib.AbstractContextManager)


def test_the_callers_own_timeout_mid_body_is_not_the_dependencys(service: Service) -> None:
    """The caller's own work timing out inside ``async with session.get(...)`` (the body not read to its end):
    the response is released while a TimeoutError that is not aiohttp's propagates; not the dependency's timeout."""

    async def read_then_time_out(client: aiohttp.ClientSession) -> None:
        async with client.get(service.url("/slow")) as response:
            await response.content.read(1)
            await asyncio.wait_for(asyncio.sleep(WAIT), 0.01)  # the caller's own work, timing out

    async def scenario() -> None:
        async with session(name="api") as client:
            with pytest.raises(asyncio.TimeoutError):
                await read_then_time_out(client)
            assert active("api") == 0
        assert counts("api") == {"success": 1}

    run(scenario())
