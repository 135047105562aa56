"""The README's quickstart, runnable: a command with a timeout, a fallback, and its statistics."""

from __future__ import annotations

import breaker

breaker.configure_command("payments", breaker.CommandConfig(timeout=0.5, max_concurrent_requests=20))


def charge_offline(error: Exception, order_id: str) -> str:
    return f"queued {order_id} for later ({type(error).__name__})"


@breaker.command("payments", fallback=charge_offline)
def charge(order_id: str) -> str:
    if order_id.startswith("bad"):
        raise ConnectionError("payment gateway unreachable")
    return f"charged {order_id}"


print(charge("order-1"))  # charged order-1
print(charge("bad-order"))  # queued bad-order for later (ConnectionError)
print(breaker.do("payments", lambda: "a one-off call", fallback=lambda error: "its fallback"))
print(breaker.go("payments", lambda: "in the background").result())
stats = breaker.get_circuit("payments")[0].statistics()
print(stats.state, dict(stats.counts))
