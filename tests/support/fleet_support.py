"""What the fleet-mode tests share: waiting on a condition, and reading Redis as the fleet writes it."""

from __future__ import annotations

import time
from collections.abc import Callable

import redis

import breaker

__all__ = ["WAIT", "Boom", "call", "failing", "hash_of", "keys_of", "redis_ms", "wait_for"]

WAIT = 10.0


def wait_for(what: str, predicate: Callable[[], object], timeout: float = WAIT, interval: float = 0.005) -> None:
    """Poll ``predicate`` until it is true, within ``timeout`` seconds; else fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(interval)


def redis_ms(client: redis.Redis) -> int:
    """Redis's clock (TIME), in ms: the clock the fleet's opening times are stamped with."""
    seconds, micros = client.time()
    return seconds * 1000 + micros // 1000


def keys_of(client: redis.Redis, namespace: str) -> dict[str, int]:
    """Every key of ``namespace`` (``SCAN MATCH {namespace}*``) and its PTTL (ms; -1: none, -2: gone)."""
    return {str(key): client.pttl(key) for key in client.scan_iter(match=f"{{{namespace}}}*")}


def hash_of(client: redis.Redis, key: str) -> dict[str, str]:
    """HGETALL, as str."""
    return {str(field): str(value) for field, value in client.hgetall(key).items()}


class Boom(Exception):
    """The dependency's own failure."""


def failing() -> str:
    raise Boom("the dependency is down")


def call(name: str, run: Callable[[], str]) -> str:
    """Call through ``name``; the dependency's own failure and a short-circuit are answered with their names."""
    try:
        return breaker.do(name, run)
    except Boom:
        return "boom"
    except breaker.CircuitOpenError:
        return "short-circuit"
