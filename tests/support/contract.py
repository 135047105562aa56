"""The contract's names, pinned once for every test that checks them."""

from __future__ import annotations

#: The event names of the contract (README, Semantics item 1), without the async-only ``cancelled``.
EVENTS = (
    "success",
    "failure",
    "timeout",
    "short-circuit",
    "rejected",
    "bad-request",
    "fallback-success",
    "fallback-failure",
)
