"""The trip rule: when a closed circuit's window is unhealthy enough to open it.

The circuit trips when its window holds at least ``request_volume_threshold`` requests and the error percentage,
rounded half up, is at least ``error_percent_threshold``, or the percentage of slow calls (those that ran at least
``slow_call_duration``), rounded the same way, is at least ``slow_call_percent_threshold``. Requests are success +
failure + timeout + rejected;
errors are failure + timeout + rejected (short-circuits and bad requests count in neither, as in Java Hystrix).
Pure arithmetic: no state of its own beyond the thresholds.
"""

from __future__ import annotations

import math
from collections.abc import Callable

__all__ = ["TripRule", "error_budget", "error_percentage"]


def error_percentage(errors: int, requests: int) -> int:
    """``100 * errors / requests`` rounded half up, in integers (no float rounding surprises); 0 with none."""
    if not requests:
        return 0
    return (errors * 200 + requests) // (requests * 2)


def error_budget(volume: int, threshold: float) -> int:
    """The most errors a window can hold without possibly tripping, however few its successes.

    A trip needs at least ``max(volume, errors)`` requests, and the percentage is highest with the fewest. With
    ``errors >= volume`` it is 100, so the budget is below ``volume``; below it, the rounded percentage over
    ``volume`` requests, ``(200 * errors + volume) // (2 * volume)``, stays under the threshold exactly when
    ``200 * errors < volume * (2 * ceil(threshold) - 1)``.
    """
    if volume < 1:
        return 0 if threshold > 100 else -1  # a single error is 100%: no budget
    return min((volume * (2 * math.ceil(threshold) - 1) - 1) // 200, volume - 1)


class TripRule:
    """The trip rule with one command's thresholds."""

    __slots__ = ("budget", "slow_threshold", "threshold", "volume")

    def __init__(self, volume: int, threshold: float, slow_threshold: float = 100) -> None:
        self.volume = volume
        self.threshold = threshold
        self.slow_threshold = slow_threshold
        self.budget = error_budget(volume, threshold)

    def __repr__(self) -> str:
        return f"<TripRule volume={self.volume} threshold={self.threshold:g}% slow={self.slow_threshold:g}%>"

    def assess_slow(self, slow: int, requests: int) -> tuple[bool, bool]:
        """The slow-call rule for a window holding ``slow`` slow calls among ``requests`` requests.

        Returns:
            ``(trip, watch)`` as `assess` does: whether it trips now; if not, whether more requests (successes,
            or failures) could still trip it by reaching the volume floor.
        """
        threshold = self.slow_threshold
        if requests >= self.volume and error_percentage(slow, requests) >= threshold:
            return True, False
        return False, error_percentage(slow, max(requests + 1, self.volume)) >= threshold

    def assess(self, errors: int, successes: Callable[[], int]) -> tuple[bool, bool]:
        """Apply the rule to a window holding ``errors`` errors and ``successes()`` successes (read only if the
        errors alone could trip).

        Returns:
            ``(trip, watch)``: whether the circuit trips now; if not, whether more successes alone could still
            trip it (the volume floor not reached yet), so that each new success must assess the window again.
        """
        if (
            not errors or errors <= self.budget
        ):  # not even with the fewest requests the rule allows: no success can change it
            return False, False
        requests = errors + successes()
        threshold = self.threshold
        if requests >= self.volume and error_percentage(errors, requests) >= threshold:
            return True, False
        # Successes only lower the error percentage: the highest it can be once the volume floor is reached is
        # with the fewest requests that reach it.
        fewest = max(requests + 1, self.volume)
        return False, error_percentage(errors, fewest) >= threshold
