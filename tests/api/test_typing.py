"""The decorator keeps signatures for type checkers: mypy checks this file (``.ci/run`` runs mypy on tests/).

Each ``assert_type`` is a static assertion: mypy fails the build if the decorated function's type differs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from typing_extensions import assert_type

import breaker


def offline(error: Exception, order_id: str, *, amount: int = 0) -> str:
    return "offline"


@breaker.command("typing-sync", fallback=offline)
def charge(order_id: str, *, amount: int = 0) -> str:
    return f"charged {order_id} {amount}"


@breaker.command("typing-async")
async def fetch(key: str, retries: int = 1) -> bytes:
    return key.encode() * retries


def test_sync_decorator_keeps_the_signature() -> None:
    """mypy sees charge as (str, *, amount: int) -> str; at run time it behaves so."""
    if TYPE_CHECKING:  # static only: each ignore is needed, or mypy (warn_unused_ignores) fails the build
        charge(123)  # type: ignore[arg-type]
        charge("o-1", amount="3")  # type: ignore[arg-type]
        charge("o-1", 3)  # type: ignore[call-arg]
    result = charge("o-1", amount=3)
    assert_type(result, str)
    assert result == "charged o-1 3"


def test_async_decorator_keeps_the_signature() -> None:
    """mypy sees fetch as an async function of (str, int) returning bytes."""
    if TYPE_CHECKING:  # static only, as above
        fetch(1)  # type: ignore[arg-type, unused-coroutine]
    coroutine = fetch("k", 2)
    assert asyncio.run(assert_type(coroutine, Coroutine[Any, Any, bytes])) == b"kk"


def test_do_and_do_async_return_the_runs_type() -> None:
    """do() and do_async() are typed by the run's return type."""
    value = breaker.do("typing-do", lambda: 41 + 1)
    assert_type(value, int)

    async def answer() -> int:
        return 42

    async def call() -> int:
        awaited = await breaker.do_async("typing-do-async", answer)
        assert_type(awaited, int)
        return awaited

    assert value == asyncio.run(call()) == 42
