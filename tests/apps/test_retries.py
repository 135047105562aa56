"""Retries that respect the circuit: stamina and tenacity, told by `breaker.retryable`, stop retrying as soon as
the circuit opens, so a dependency in trouble gets no more than the requests that tripped it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
import stamina
import tenacity
from http_servers import WAIT, Dependency, dependency

import breaker
import breaker.httpx
from breaker import CircuitOpenError, CommandConfig, State

#: Trips after this many requests in the window, all failed.
VOLUME = 4
CONFIG = CommandConfig(request_volume_threshold=VOLUME, sleep_window=60.0)


@pytest.fixture
def server() -> Iterator[Dependency]:
    with dependency() as running:
        yield running


def state(server: Dependency) -> State:
    return breaker.get_circuit(f"http:127.0.0.1:{server.port}")[0].state


def test_tenacity_stops_retrying_when_the_circuit_opens(server: Dependency) -> None:
    """retry_if_exception(breaker.retryable): 503s are retried until the circuit opens, then the refusal ends it."""
    attempts = 0

    @tenacity.retry(
        retry=tenacity.retry_if_exception(breaker.retryable),
        stop=tenacity.stop_after_attempt(50),
        wait=tenacity.wait_none(),
        reraise=True,
    )
    def fetch(http: httpx.Client) -> str:
        nonlocal attempts
        attempts += 1
        response = http.get(f"{server.url}/status/503")
        response.raise_for_status()
        return response.text

    with httpx.Client(transport=breaker.httpx.Transport(config=CONFIG), timeout=WAIT) as http:
        with pytest.raises(CircuitOpenError):
            fetch(http)
        assert attempts == VOLUME + 1  # the attempts that tripped it, and the one the open circuit refused
    assert server.hits == {"/status/503": VOLUME}
    assert state(server) is State.OPEN


def test_tenacity_does_not_retry_a_bad_request(server: Dependency) -> None:
    """A 404 (a bad request: neither success nor failure) is not retried."""
    attempts = 0

    @tenacity.retry(retry=tenacity.retry_if_exception(breaker.retryable), stop=tenacity.stop_after_attempt(5))
    def fetch(http: httpx.Client) -> None:
        nonlocal attempts
        attempts += 1
        http.get(f"{server.url}/status/404").raise_for_status()

    with httpx.Client(transport=breaker.httpx.Transport(), timeout=WAIT) as http, pytest.raises(httpx.HTTPStatusError):
        fetch(http)
    assert attempts == 1


def test_stamina_stops_retrying_when_the_circuit_opens(server: Dependency) -> None:
    """stamina's ``on=breaker.retryable``: retried until the circuit opens; the refusal is raised, not retried."""
    attempts = 0

    @stamina.retry(on=breaker.retryable, attempts=50, wait_initial=0.0, wait_max=0.0, wait_jitter=0.0)
    def fetch(http: httpx.Client) -> str:
        nonlocal attempts
        attempts += 1
        response = http.get(f"{server.url}/status/503")
        response.raise_for_status()
        return response.text

    with httpx.Client(transport=breaker.httpx.Transport(config=CONFIG), timeout=WAIT) as http:
        with pytest.raises(CircuitOpenError):
            fetch(http)
        assert attempts == VOLUME + 1
    assert server.hits == {"/status/503": VOLUME}


def test_stamina_async_stops_retrying_when_the_circuit_opens(server: Dependency) -> None:
    """The same with an async client and an async function: stamina stops at the first refusal."""
    attempts = 0

    @stamina.retry(on=breaker.retryable, attempts=50, wait_initial=0.0, wait_max=0.0, wait_jitter=0.0)
    async def fetch(http: httpx.AsyncClient) -> str:
        nonlocal attempts
        attempts += 1
        response = await http.get(f"{server.url}/status/502")
        response.raise_for_status()
        return response.text

    async def scenario() -> None:
        async with httpx.AsyncClient(transport=breaker.httpx.AsyncTransport(config=CONFIG), timeout=WAIT) as http:
            with pytest.raises(CircuitOpenError):
                await fetch(http)

    asyncio.run(scenario())
    assert attempts == VOLUME + 1
    assert server.hits == {"/status/502": VOLUME}


def test_retries_through_do_stop_when_the_circuit_opens() -> None:
    """Without HTTP: a failing run through breaker.do, retried by tenacity, stops once its circuit opens."""
    breaker.configure_command("db", CONFIG)
    runs = 0

    def query() -> str:
        nonlocal runs
        runs += 1
        raise ConnectionError("database down")

    @tenacity.retry(retry=tenacity.retry_if_exception(breaker.retryable), stop=tenacity.stop_after_attempt(50))
    def fetch() -> str:
        return breaker.do("db", query)

    with pytest.raises(CircuitOpenError):
        fetch()
    assert runs == VOLUME
