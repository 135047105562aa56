"""`breaker.requests`: a requests session whose adapter sends every request through a command, against real HTTP
servers on 127.0.0.1 (`http_behaviours`), or a stub adapter where no server can play the part (a connect timeout).

What each test checks is what the command counted (``statistics()``), what the caller got, and what the server
received; the body's end is driven by the test (a `Paced` body waits for it), never by a sleep.
"""

from __future__ import annotations

import gzip
import http.server
import io
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import requests.adapters
import urllib3.exceptions
from http_behaviours import BOUND, Hang, Paced, Server, body, broken, refused_url, serve, status

import breaker
import breaker.requests
from breaker import CircuitOpenError, CommandConfig, Event, FailedResultError, MaxConcurrencyError
from breaker.testing import FakeClock

#: Seconds: a read timeout the test makes expire (the server holds the answer until the test ends).
EXPIRES = 0.05
#: Trips once two of at least two requests failed; probes after 5 s.
TRIP = CommandConfig(request_volume_threshold=2, error_percent_threshold=50, sleep_window=5.0)


def origin(url: str | Server) -> str:
    """The default command of a URL: its origin."""
    parts = urlsplit(str(url))
    return f"{parts.scheme}:{parts.hostname}:{parts.port}"


def stats(name: str) -> breaker.CircuitStatistics:
    return breaker.get_circuit(name)[0].statistics()


def events(name: str) -> dict[str, int]:
    """The command's events so far, zeros left out."""
    return {event: count for event, count in stats(name).counts.items() if count}


def canned(request: requests.PreparedRequest, content: bytes, code: int = 200) -> requests.Response:
    """A response made in the process (what a fallback or a stub adapter answers)."""
    response = requests.Response()
    response.status_code = code
    response.raw = io.BytesIO(content)
    response.request = request
    response.url = request.url or ""
    return response


class Stub(requests.adapters.BaseAdapter):
    """An adapter that answers (or raises) without a network, and records what it was sent."""

    def __init__(self, answer: Callable[[requests.PreparedRequest], requests.Response]) -> None:
        super().__init__()
        self.answer = answer
        self.sent: list[requests.PreparedRequest] = []
        self.closed = False

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float, float] | tuple[float, None] | None = None,
        verify: bool | str = True,
        cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        self.sent.append(request)
        return self.answer(request)

    def close(self) -> None:
        self.closed = True


def raising(error: Exception) -> Callable[[requests.PreparedRequest], requests.Response]:
    def answer(request: requests.PreparedRequest) -> requests.Response:
        raise error

    return answer


@pytest.fixture
def mount() -> Iterator[Callable[..., requests.Session]]:
    """Makes sessions with a `breaker.requests.Adapter` (made of the arguments) on http:// and https://; closes
    them after the test."""
    sessions: list[requests.Session] = []

    def make(*args: Any, **kwargs: Any) -> requests.Session:
        session = requests.Session()
        adapter = breaker.requests.Adapter(*args, **kwargs)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        sessions.append(session)
        return session

    yield make
    for session in sessions:
        session.close()


# Classification


def test_success_is_counted(mount: Callable[..., requests.Session]) -> None:
    """A 200 is a success of the origin's command, and its ticket is back once requests has read the body."""
    with serve(status(200, b"hello")) as server:
        response = mount().get(server.url)
    assert response.status_code == 200
    assert response.text == "hello"
    assert events(origin(server)) == {"success": 1}
    assert stats(origin(server)).active == 0
    assert server.requests == 1


@pytest.mark.parametrize("code", [500, 503, 429], ids=str)
def test_failure_status_is_counted_and_returned_unchanged(mount: Callable[..., requests.Session], code: int) -> None:
    """5xx and 429 are failures; without a fallback the caller gets the response as the server sent it."""
    with serve(status(code, b"down", [("Retry-After", "7")])) as server:
        response = mount().get(server.url)
    assert (response.status_code, response.text, response.headers["Retry-After"]) == (code, "down", "7")
    assert events(origin(server)) == {"failure": 1}
    assert stats(origin(server)).active == 0


@pytest.mark.parametrize("code", [400, 404, 422], ids=str)
def test_other_4xx_is_a_bad_request(mount: Callable[..., requests.Session], code: int) -> None:
    """Another 4xx is the caller's fault: a bad request, neither a request nor an error of the circuit's health."""
    with serve(status(code, b"no")) as server:
        response = mount().get(server.url)
    assert (response.status_code, response.text) == (code, "no")
    assert events(origin(server)) == {"bad-request": 1}
    assert (stats(origin(server)).requests, stats(origin(server)).errors) == (0, 0)


def test_redirect_and_no_content_are_successes(mount: Callable[..., requests.Session]) -> None:
    """3xx (not followed) and 204 are successes."""
    session = mount()
    with serve(status(302, b"", [("Location", "/elsewhere")])) as server:
        assert session.get(server.url, allow_redirects=False).status_code == 302
    with serve(status(204)) as other:
        assert session.get(other.url).status_code == 204
    assert events(origin(server)) == {"success": 1}
    assert events(origin(other)) == {"success": 1}


def test_connection_refused_is_a_failure(mount: Callable[..., requests.Session]) -> None:
    """A refused connection raises requests' ConnectionError, counted as a failure."""
    url = refused_url()
    with pytest.raises(requests.ConnectionError):
        mount().get(url)
    assert events(origin(url)) == {"failure": 1}
    assert stats(origin(url)).active == 0


def test_read_timeout_is_the_command_timeout(mount: Callable[..., requests.Session]) -> None:
    """requests' ReadTimeout (the request's ``timeout=``) counts as the command's timeout event."""
    hang = Hang()
    with serve(hang) as server:
        with pytest.raises(requests.exceptions.ReadTimeout):
            mount().get(server.url, timeout=(BOUND, EXPIRES))
        assert hang.arrived.is_set()
    assert events(origin(server)) == {"timeout": 1}
    assert stats(origin(server)).active == 0


def test_connect_timeout_is_the_command_timeout(mount: Callable[..., requests.Session]) -> None:
    """requests' ConnectTimeout (also a ConnectionError) counts as a timeout, not a failure."""
    session = mount(Stub(raising(requests.exceptions.ConnectTimeout("no answer to SYN"))))
    with pytest.raises(requests.exceptions.ConnectTimeout):
        session.get("http://10.255.255.1:81/")
    assert events("http:10.255.255.1:81") == {"timeout": 1}


def test_ignored_exception_is_a_bad_request(mount: Callable[..., requests.Session]) -> None:
    """An error among the command's ignored_exceptions is a bad request, and breaker.retryable says False for it."""
    url = refused_url()
    breaker.configure_command(origin(url), CommandConfig(ignored_exceptions=(requests.ConnectionError,)))
    with pytest.raises(requests.ConnectionError) as raised:
        mount().get(url)
    assert events(origin(url)) == {"bad-request": 1}
    assert breaker.retryable(raised.value) is False


def test_classify_overrides_the_default_rule(mount: Callable[..., requests.Session]) -> None:
    """``classify`` decides where it returns an Event; where it returns None the default rule does."""
    seen: list[tuple[int | None, BaseException | None]] = []

    def classify(response: requests.Response | None, error: BaseException | None) -> Event | None:
        seen.append((None if response is None else response.status_code, error))
        if response is not None and response.status_code == 503:
            return Event.SUCCESS  # "under maintenance" is an expected answer here
        return None

    session = mount(classify=classify)
    with serve(status(503)) as maintenance, serve(status(500)) as failing:
        session.get(maintenance.url)
        session.get(failing.url)
    assert events(origin(maintenance)) == {"success": 1}
    assert events(origin(failing)) == {"failure": 1}
    assert seen == [(503, None), (500, None)]


def test_classify_that_raises_fails_the_call_and_closes_the_response(mount: Callable[..., requests.Session]) -> None:
    """A ``classify`` that raises makes the call a failure, its ticket back, and its error reaches the caller."""

    def classify(response: requests.Response | None, error: BaseException | None) -> Event | None:
        raise LookupError("no rule for this")

    with serve(status(200, b"fine")) as server, pytest.raises(LookupError):
        mount(classify=classify).get(server.url)
    assert events(origin(server)) == {"failure": 1}
    assert stats(origin(server)).active == 0


# The circuit


def test_open_circuit_raises_without_sending(mount: Callable[..., requests.Session], clock: FakeClock) -> None:
    """Once the circuit trips, the session raises CircuitOpenError (with retry_after) and the server gets nothing;
    after the sleep window one probe goes through."""
    with serve(status(503)) as server:
        session = mount(config=TRIP)
        assert [session.get(server.url).status_code for _ in range(2)] == [503, 503]
        assert breaker.get_circuit(origin(server))[0].state is breaker.State.OPEN
        with pytest.raises(CircuitOpenError) as raised:
            session.get(server.url)
        assert server.requests == 2
        assert raised.value.name == origin(server)
        assert raised.value.retry_after == 5.0
        assert breaker.retryable(raised.value) is False
        clock.advance(4.0)
        with pytest.raises(CircuitOpenError) as again:
            session.get(server.url)
        assert again.value.retry_after == 1.0
        assert server.requests == 2
        clock.advance(1.0)
        assert session.get(server.url).status_code == 503  # the probe, which fails: open again
        assert server.requests == 3
    assert events(origin(server)) == {"failure": 3, "short-circuit": 2}


def test_no_free_ticket_is_rejected_without_sending(mount: Callable[..., requests.Session]) -> None:
    """With every ticket held by an open response, a request is rejected (MaxConcurrencyError), never sent."""
    paced = Paced([b"first", b"rest"])
    with serve(paced) as server:
        session = mount(config=CommandConfig(max_concurrent_requests=1))
        with session.get(server.url, stream=True):
            with pytest.raises(MaxConcurrencyError) as raised:
                session.get(server.url)
            assert server.requests == 1
    assert breaker.retryable(raised.value) is False
    assert events(origin(server)) == {"success": 1, "rejected": 1}


# Fallbacks


def fallback_to(calls: list[BaseException]) -> Callable[[BaseException, requests.PreparedRequest], requests.Response]:
    """A fallback that records its error and answers from the process."""

    def fallback(error: BaseException, request: requests.PreparedRequest) -> requests.Response:
        calls.append(error)
        return canned(request, b"from the fallback")

    return fallback


def test_fallback_answers_a_refused_connection(mount: Callable[..., requests.Session]) -> None:
    """The fallback gets requests' ConnectionError and the request, and its response is the caller's."""
    calls: list[BaseException] = []
    url = refused_url()
    response = mount(fallback=fallback_to(calls)).get(url + "/path")
    assert response.text == "from the fallback"
    assert [type(error) for error in calls] == [requests.ConnectionError]
    assert events(origin(url)) == {"failure": 1, "fallback-success": 1}


def test_fallback_answers_a_failed_response(mount: Callable[..., requests.Session]) -> None:
    """For a 5xx the fallback gets a FailedResultError holding the (closed) response."""
    calls: list[BaseException] = []
    with serve(status(503, b"busy")) as server:
        response = mount(fallback=fallback_to(calls)).get(server.url)
    assert response.text == "from the fallback"
    [error] = calls
    assert isinstance(error, FailedResultError)
    assert error.name == origin(server)
    assert isinstance(error.result, requests.Response)
    assert error.result.status_code == 503
    assert events(origin(server)) == {"failure": 1, "fallback-success": 1}
    assert stats(origin(server)).active == 0


def test_fallback_answers_a_timeout(mount: Callable[..., requests.Session]) -> None:
    """For a read timeout the fallback gets requests' ReadTimeout."""
    calls: list[BaseException] = []
    with serve(Hang()) as server:
        response = mount(fallback=fallback_to(calls)).get(server.url, timeout=(BOUND, EXPIRES))
    assert response.text == "from the fallback"
    assert [type(error) for error in calls] == [requests.exceptions.ReadTimeout]
    assert events(origin(server)) == {"timeout": 1, "fallback-success": 1}


def test_fallback_answers_an_open_circuit(mount: Callable[..., requests.Session]) -> None:
    """With the circuit open the fallback gets CircuitOpenError, and the server nothing."""
    calls: list[BaseException] = []
    with serve(status(200)) as server:
        breaker.configure_command(origin(server), CommandConfig(force_open=True))
        response = mount(fallback=fallback_to(calls)).get(server.url)
        assert server.requests == 0
    assert response.text == "from the fallback"
    assert [type(error) for error in calls] == [CircuitOpenError]
    assert events(origin(server)) == {"short-circuit": 1, "fallback-success": 1}


def test_fallback_is_not_called_for_a_bad_request(mount: Callable[..., requests.Session]) -> None:
    """A 404 is the caller's answer, fallback or not."""
    calls: list[BaseException] = []
    with serve(status(404, b"no such thing")) as server:
        response = mount(fallback=fallback_to(calls)).get(server.url)
    assert (response.status_code, response.text) == (404, "no such thing")
    assert calls == []
    assert events(origin(server)) == {"bad-request": 1}


def test_fallback_that_raises(mount: Callable[..., requests.Session]) -> None:
    """A fallback that raises gives the caller a FallbackError holding both errors."""

    def fallback(error: BaseException, request: requests.PreparedRequest) -> requests.Response:
        raise RuntimeError("no cache either")

    url = refused_url()
    with pytest.raises(breaker.FallbackError) as raised:
        mount(fallback=fallback).get(url)
    assert isinstance(raised.value.run_error, requests.ConnectionError)
    assert isinstance(raised.value.fallback_error, RuntimeError)
    assert breaker.retryable(raised.value) is True
    assert events(origin(url)) == {"failure": 1, "fallback-failure": 1}


# Naming and configuration


def test_default_name_is_the_origin(mount: Callable[..., requests.Session]) -> None:
    """One command per origin: scheme, lowercased host and port, the scheme's default port filled in."""
    stub = Stub(lambda request: canned(request, b"ok"))
    session = mount(stub)
    session.get("https://API.Example.com/a?x=1")
    session.get("https://api.example.com:443/b")
    session.get("http://api.example.com:8080/c")
    session.get("http://[::1]:8080/d")
    assert len(stub.sent) == 4
    assert {circuit.name: circuit.statistics().counts["success"] for circuit in breaker.circuits()} == {
        "https:api.example.com:443": 2,
        "http:api.example.com:8080": 1,
        "http:[::1]:8080": 1,
    }


def test_name_str_puts_every_origin_in_one_command(mount: Callable[..., requests.Session]) -> None:
    """``name="backend"``: requests to any origin share one command."""
    session = mount(name="backend")
    with serve(status(200)) as one, serve(status(500)) as other:
        session.get(one.url)
        session.get(other.url)
    assert [circuit.name for circuit in breaker.circuits()] == ["backend"]
    assert events("backend") == {"success": 1, "failure": 1}


def test_name_callable_gets_the_prepared_request(mount: Callable[..., requests.Session]) -> None:
    """``name=callable`` is asked for each request (a PreparedRequest) and names its command."""
    asked: list[str] = []

    def by_path(request: requests.PreparedRequest) -> str:
        assert isinstance(request, requests.PreparedRequest)
        asked.append(f"{request.method} {request.path_url}")
        return "api" + request.path_url.replace("/", ".")

    session = mount(name=by_path)
    with serve(status(200)) as server:
        session.get(server.url + "/users")
        session.post(server.url + "/orders", data=b"{}")
    assert asked == ["GET /users", "POST /orders"]
    assert events("api.users") == {"success": 1}
    assert events("api.orders") == {"success": 1}


def test_name_callable_that_returns_no_name(mount: Callable[..., requests.Session]) -> None:
    """A name callable that returns something other than a str raises TypeError; nothing is sent or counted."""
    with serve(status(200)) as server:
        with pytest.raises(TypeError):
            mount(name=lambda request: 42).get(server.url)
        assert server.requests == 0
    assert breaker.circuits() == ()


def test_config_applies_to_commands_not_configured_already(mount: Callable[..., requests.Session]) -> None:
    """``config=`` is the config of each command the adapter meets first, unless the application configured it."""
    breaker.configure_command("configured", CommandConfig(max_concurrent_requests=3))
    stub = Stub(lambda request: canned(request, b"ok"))
    names = iter(["configured", "fresh"])
    session = mount(stub, name=lambda request: next(names), config=CommandConfig(max_concurrent_requests=7))
    session.get("http://service.internal/")
    session.get("http://service.internal/")
    assert breaker.get_settings("configured").max_concurrent_requests == 3
    assert breaker.get_settings("fresh").max_concurrent_requests == 7


def test_adapter_checks_its_arguments() -> None:
    """Arguments of the wrong kind are refused when the adapter is made, naming what is wrong."""
    with pytest.raises(TypeError, match="adapter"):
        breaker.requests.Adapter(object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="name"):
        breaker.requests.Adapter(name=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="config"):
        breaker.requests.Adapter(config={"timeout": 1})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="fallback"):
        breaker.requests.Adapter(fallback="cached")  # type: ignore[arg-type]


def test_adapter_wraps_and_closes_the_adapter_it_is_given() -> None:
    """The wrapped adapter does the sending; closing the session closes it; repr shows both."""
    stub = Stub(lambda request: canned(request, b"ok"))
    adapter = breaker.requests.Adapter(stub, name="stubbed")
    assert "stubbed" in repr(adapter)
    assert "Stub" in repr(adapter)
    default = breaker.requests.Adapter()
    assert isinstance(default.adapter, requests.adapters.HTTPAdapter)
    default.close()
    with requests.Session() as session:
        session.mount("http://", adapter)
        assert session.get("http://service.internal/").text == "ok"
    assert stub.closed


# The body holds the ticket


def test_streamed_response_holds_its_ticket_until_read_to_the_end(mount: Callable[..., requests.Session]) -> None:
    """With ``stream=True`` the call is in progress until iter_content reaches the end, then counted once."""
    paced = Paced([b"head", b"er", b"tail"])
    with serve(paced) as server:
        response = mount().get(server.url, stream=True)
        assert stats(origin(server)).active == 1
        assert events(origin(server)) == {}
        chunks = response.iter_content(4)
        assert next(chunks) == b"head"
        assert stats(origin(server)).active == 1
        paced.release(2)
        assert b"".join(chunks) == b"ertail"
        assert stats(origin(server)).active == 0
        assert events(origin(server)) == {"success": 1}
        response.close()
    assert events(origin(server)) == {"success": 1}


def test_streamed_response_released_on_close(mount: Callable[..., requests.Session]) -> None:
    """Closing a streamed response before reading its body ends the call (a success), once however often."""
    with serve(Paced([b"never", b"read"])) as server:
        response = mount().get(server.url, stream=True)
        assert stats(origin(server)).active == 1
        response.close()
        assert stats(origin(server)).active == 0
        response.close()
    assert events(origin(server)) == {"success": 1}


def test_streamed_response_released_by_its_with_block(mount: Callable[..., requests.Session]) -> None:
    """Leaving ``with session.get(..., stream=True) as response:`` ends the call."""
    with serve(body([b"a" * 100] * 10)) as server:
        with mount().get(server.url, stream=True) as response:
            assert response.raw.read(10) == b"a" * 10
            assert stats(origin(server)).active == 1
        assert stats(origin(server)).active == 0
    assert events(origin(server)) == {"success": 1}


def test_loop_left_early_holds_the_ticket_until_close(mount: Callable[..., requests.Session]) -> None:
    """Leaving an iter_content loop early is not the body's end, nor a failure: the call ends at close."""
    with serve(body([b"x" * 100] * 20, chunked=False)) as server:
        response = mount().get(server.url, stream=True)
        for _ in response.iter_content(10):
            break
        assert stats(origin(server)).active == 1
        assert events(origin(server)) == {}
        response.close()
    assert events(origin(server)) == {"success": 1}
    assert stats(origin(server)).active == 0


def test_streamed_response_dropped_unclosed_gives_its_ticket_back_when_collected(
    mount: Callable[..., requests.Session],
) -> None:
    """A ``stream=True`` response dropped without being read or closed ends its call once it is collected."""
    import gc

    with serve(Paced([b"never", b"read"])) as server:
        response = mount().get(server.url, stream=True)
        assert stats(origin(server)).active == 1
        del response
        gc.collect()
        for _ in range(10_000):  # the call may be ended by a worker thread, moments later (Permit.end_nowait)
            if stats(origin(server)).active == 0:
                break
            threading.Event().wait(0.001)
        assert stats(origin(server)).active == 0
    assert events(origin(server)) == {"success": 1}


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
@pytest.mark.parametrize(
    "read",
    [
        pytest.param(lambda response: response.content, id="content"),
        pytest.param(lambda response: b"".join(response.iter_content(7)), id="iter_content"),
        pytest.param(lambda response: b"\n".join(response.iter_lines()) + b"\n", id="iter_lines"),
        pytest.param(lambda response: b"".join(iter(lambda: response.raw.read(7), b"")), id="raw.read-to-eof"),
        pytest.param(lambda response: response.raw.read(), id="raw.read-all"),
        pytest.param(lambda response: response.raw.data, id="raw.data"),
        pytest.param(lambda response: b"".join(response.raw.stream(5)), id="raw.stream"),
        pytest.param(lambda response: b"".join(response.raw), id="iter-raw"),
        pytest.param(lambda response: io.BufferedReader(response.raw).read(), id="io.BufferedReader"),
    ],
)
def test_every_way_of_reading_the_body_ends_the_call_once(
    mount: Callable[..., requests.Session], read: Callable[[requests.Response], bytes], chunked: bool
) -> None:
    """Whichever way a streamed body is read to its end, the call ends then, once, as a success."""
    lines = [b"line %d\n" % n for n in range(50)]
    with serve(body(lines, chunked=chunked)) as server:
        response = mount().get(server.url, stream=True)
        assert stats(origin(server)).active == 1
        assert read(response) == b"".join(lines)
        assert stats(origin(server)).active == 0
        response.close()
    assert events(origin(server)) == {"success": 1}


def test_raw_read_of_exactly_the_length_ends_the_call(mount: Callable[..., requests.Session]) -> None:
    """Reading exactly Content-Length bytes from ``raw`` ends the call without a read that returns nothing."""
    with serve(status(200, b"0123456789")) as server:
        response = mount().get(server.url, stream=True)
        assert response.raw.read(4) == b"0123"
        assert stats(origin(server)).active == 1
        assert response.raw.read(6) == b"456789"
        assert stats(origin(server)).active == 0
        response.close()
    assert events(origin(server)) == {"success": 1}


def test_raw_attributes_are_the_wrapped_responses(mount: Callable[..., requests.Session]) -> None:
    """``raw`` reads and writes its attributes on urllib3's response (``decode_content`` takes effect)."""
    content = b"compressed " * 20
    with serve(status(200, gzip.compress(content), [("Content-Encoding", "gzip")])) as server:
        response = mount().get(server.url, stream=True)
        assert response.raw.status == 200
        assert response.raw.headers["Content-Encoding"] == "gzip"
        response.raw.decode_content = True
        assert response.raw.decode_content is True
        assert response.raw.read() == content
        assert "breaker.requests body" in repr(response.raw)
    assert events(origin(server)) == {"success": 1}


def test_raw_closed_by_its_with_block(mount: Callable[..., requests.Session]) -> None:
    """Leaving ``with response.raw:`` closes urllib3's response and ends the call."""
    with serve(body([b"z" * 100] * 10)) as server:
        response = mount().get(server.url, stream=True)
        with response.raw as raw:
            assert raw.read(1) == b"z"
            assert stats(origin(server)).active == 1
        assert stats(origin(server)).active == 0
        assert response.raw.closed
    assert events(origin(server)) == {"success": 1}


def test_file_like_body_of_another_adapter(mount: Callable[..., requests.Session]) -> None:
    """A wrapped adapter whose ``raw`` is a plain file object (no urllib3 ``stream``) holds and ends alike."""
    stub = Stub(lambda request: canned(request, b"from a file"))
    session = mount(stub, name="files")
    response = session.get("http://files.internal/a", stream=True)
    assert not hasattr(response.raw, "stream")  # requests reads it with read(), as it would the file itself
    assert stats("files").active == 1
    assert response.text == "from a file"
    assert stats("files").active == 0
    assert session.get("http://files.internal/b").content == b"from a file"
    assert events("files") == {"success": 2}
    assert stats("files").active == 0


def test_body_in_memory_ends_at_once(mount: Callable[..., requests.Session]) -> None:
    """A wrapped adapter's response with no ``raw`` (its content set already) ends its call when it arrives."""

    def in_memory(request: requests.PreparedRequest) -> requests.Response:
        response = canned(request, b"")
        response.raw = None
        response._content = b"already here"
        return response

    response = mount(Stub(in_memory), name="memory").get("http://memory.internal/", stream=True)
    assert stats("memory").active == 0
    assert response.content == b"already here"
    assert events("memory") == {"success": 1}


@pytest.mark.parametrize(("method", "code"), [("HEAD", 200), ("GET", 204), ("GET", 304)])
def test_response_without_body_ends_at_once(mount: Callable[..., requests.Session], method: str, code: int) -> None:
    """A response that has no body (HEAD, 204, 304) ends its call when it arrives, even streamed."""
    with serve(status(code)) as server:
        response = mount().request(method, server.url, stream=True)
        assert response.status_code == code
        assert stats(origin(server)).active == 0
    assert events(origin(server)) == {"success": 1}


def test_redirect_hops_are_calls_of_their_own(mount: Callable[..., requests.Session]) -> None:
    """Each hop of a followed redirect is a call, ended when requests reads and closes it."""

    def moved(handler: http.server.BaseHTTPRequestHandler) -> None:
        if handler.path == "/old":
            status(301, b"see /new", [("Location", "/new")])(handler)
        else:
            status(200, b"here")(handler)

    with serve(moved) as server:
        session = mount()
        response = session.get(server.url + "/old")
        assert (response.text, [hop.status_code for hop in response.history]) == ("here", [301])
        assert stats(origin(server)).active == 0
        streamed = session.get(server.url + "/old", stream=True)
        assert stats(origin(server)).active == 1  # the last hop, open
        streamed.close()
    assert events(origin(server)) == {"success": 4}
    assert stats(origin(server)).active == 0


# A body that breaks


def read_all_of(response: requests.Response, how: str) -> None:
    """Read a streamed response's body to its end: ``how`` names the way."""
    if how == "iter_content":
        for _ in response.iter_content(3):
            pass
    else:
        while response.raw.read(3):
            pass


#: How a body is read to its end, and what a body that breaks then raises: requests reads it in the session call
#: (``stream=False``) or in ``iter_content``, and maps urllib3's errors; ``raw.read`` raises urllib3's own.
READS = [
    pytest.param("content", requests.exceptions.ChunkedEncodingError, requests.ConnectionError, id="content"),
    pytest.param("iter_content", requests.exceptions.ChunkedEncodingError, requests.ConnectionError, id="iter_content"),
    pytest.param("raw.read", urllib3.exceptions.ProtocolError, urllib3.exceptions.ReadTimeoutError, id="raw.read"),
]


@pytest.mark.parametrize("reset", [False, True], ids=["closed", "reset"])
@pytest.mark.parametrize(("how", "broke", "stopped"), READS)
def test_body_that_breaks_is_a_failure_once(
    mount: Callable[..., requests.Session], how: str, broke: type[Exception], stopped: type[Exception], reset: bool
) -> None:
    """A connection closed or reset mid-body ends the call as one failure; the caller gets the reader's error."""
    with serve(broken(b"partial", 1000, reset=reset)) as server:
        session = mount()
        with pytest.raises(broke):
            read_all_of(session.get(server.url, stream=how != "content"), how)
        assert stats(origin(server)).active == 0
    assert events(origin(server)) == {"failure": 1}


@pytest.mark.parametrize(("how", "broke", "stopped"), READS)
def test_body_that_stops_arriving_is_a_timeout(
    mount: Callable[..., requests.Session], how: str, broke: type[Exception], stopped: type[Exception]
) -> None:
    """A read timeout mid-body ends the call as a timeout (requests raises its ConnectionError there)."""
    paced = Paced([b"first", b"held back"])
    with serve(paced) as server:
        with pytest.raises(stopped):
            read_all_of(mount().get(server.url, stream=how != "content", timeout=(BOUND, EXPIRES)), how)
        assert stats(origin(server)).active == 0
    assert events(origin(server)) == {"timeout": 1}


def test_body_that_cannot_be_decoded_is_a_failure(mount: Callable[..., requests.Session]) -> None:
    """A body that is not the encoding it says (gzip) ends the call as a failure."""
    with serve(status(200, b"this is not gzip", [("Content-Encoding", "gzip")])) as server:
        with pytest.raises(requests.exceptions.ContentDecodingError):
            mount().get(server.url)
        assert stats(origin(server)).active == 0
    assert events(origin(server)) == {"failure": 1}


def test_classify_sees_the_error_that_broke_the_body(mount: Callable[..., requests.Session]) -> None:
    """For a body broken mid-read ``classify`` gets urllib3's error (no response), and decides the event."""
    seen: list[tuple[bool, type[BaseException] | None]] = []

    def classify(response: requests.Response | None, error: BaseException | None) -> Event | None:
        seen.append((response is not None, None if error is None else type(error)))
        return Event.BAD_REQUEST if error is not None else None

    with serve(broken(b"partial", 1000)) as server, pytest.raises(requests.exceptions.ChunkedEncodingError):
        mount(classify=classify).get(server.url)
    assert seen == [(True, None), (False, urllib3.exceptions.ProtocolError)]
    assert events(origin(server)) == {"bad-request": 1}


# retryable


@pytest.mark.parametrize(("code", "retryable"), [(503, True), (500, True), (429, True), (404, False), (400, False)])
def test_raise_for_status_errors_are_retryable_by_status(
    mount: Callable[..., requests.Session], code: int, retryable: bool
) -> None:
    """``response.raise_for_status()``'s HTTPError is retryable for 5xx and 429, not for another 4xx."""
    with serve(status(code)) as server:
        response = mount().get(server.url)
    with pytest.raises(requests.HTTPError) as raised:
        response.raise_for_status()
    assert breaker.retryable(raised.value) is retryable


def test_connection_errors_are_retryable(mount: Callable[..., requests.Session]) -> None:
    """A refused connection is worth retrying (elsewhere, or later)."""
    with pytest.raises(requests.ConnectionError) as raised:
        mount().get(refused_url())
    assert breaker.retryable(raised.value) is True


def test_body_with_a_corrupt_gzip_tail_is_a_failure(mount: Callable[..., requests.Session]) -> None:
    """A gzip body whose last bytes are corrupt (all of it arrived) is a failure: the decoder's last word counts."""
    import gzip

    packed = gzip.compress(b"z" * 100_000)
    packed = packed[: len(packed) // 2] + b"\x00garbage" * 10  # the first half is good: the tail breaks
    with serve(status(200, packed, [("Content-Encoding", "gzip")])) as server:
        with pytest.raises(requests.exceptions.ContentDecodingError):
            mount().get(server.url)
        assert stats(origin(server)).active == 0
    assert events(origin(server)) == {"failure": 1}


def _digest(handler: Any) -> None:
    """401 with a digest challenge until the request carries an answer to it, then 503."""
    if "Authorization" in handler.headers:
        status(503, b"down")(handler)
    else:
        challenge = 'Digest realm="test", nonce="abc", qop="auth"'
        status(401, b"who are you", [("WWW-Authenticate", challenge)])(handler)


def test_a_request_sent_again_by_digest_auth_goes_through_the_breaker(mount: Callable[..., requests.Session]) -> None:
    """HTTPDigestAuth sends again through ``response.connection``: the adapter, so the second request counts."""
    with serve(_digest) as server:
        response = mount().get(server.url, auth=requests.auth.HTTPDigestAuth("user", "pass"))
        assert response.status_code == 503
        assert isinstance(response.connection, breaker.requests.Adapter)
        assert server.requests == 2
    assert events(origin(server)) == {"bad-request": 1, "failure": 1}


def test_raw_taken_from_a_dropped_response_holds_the_ticket(mount: Callable[..., requests.Session]) -> None:
    """``session.get(url, stream=True).raw``: the response is gone at once, the body's call lasts until it ends."""
    with serve(body([b"a" * 100] * 10)) as server:
        raw = mount().get(server.url, stream=True).raw
        assert stats(origin(server)).active == 1
        assert len(raw.read()) == 1000
        assert stats(origin(server)).active == 0
    assert events(origin(server)) == {"success": 1}
