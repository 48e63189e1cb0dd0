"""How hard the client tries: back-off for transient failures, cool-downs for throttling.

Following the API's community practice, 5xx (but 503), timeouts, connection errors and broken 2xx
bodies back off exponentially with jitter; 429 and 503 wait for ``Retry-After`` (or a fixed
cool-down) because the server asked the whole client to slow down.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

__all__ = ["RetryPolicy", "parse_retry_after"]


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try. Frozen so one default instance can be shared safely.

    ``jitter`` is the fraction of a back-off delay that is randomised ("full jitter" at 1.0): the
    delay is drawn from ``[d·(1-jitter), d]`` so concurrent failures do not retry in lock-step.
    ``throttle_delay`` is the cool-down after a 429/503 that carries no ``Retry-After``.
    """

    max_retries: int = 4
    base_delay: float = 0.5
    max_delay: float = 20.0
    throttle_delay: float = 30.0
    max_retry_after: float = 120.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if min(self.base_delay, self.max_delay, self.throttle_delay, self.max_retry_after) < 0:
            raise ValueError("retry delays must be >= 0")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError("jitter must be within [0, 1]")

    def backoff(self, retry_number: int, rng: random.Random | None = None) -> float:
        """Delay before retry ``retry_number`` (0-based) of a transient failure."""
        delay = min(self.max_delay, self.base_delay * (2.0**retry_number))
        if self.jitter:
            delay *= 1.0 - self.jitter * (rng or random).random()
        return delay

    def throttle(self, retry_after: float | None) -> float:
        """Delay after a 429/503: the server's ``Retry-After`` (capped) or ``throttle_delay``."""
        if retry_after is None:
            return min(self.throttle_delay, self.max_retry_after)
        return min(max(0.0, retry_after), self.max_retry_after)


def parse_retry_after(value: str | None, clock: Callable[[], datetime]) -> float | None:
    """``Retry-After`` as seconds: a number (fractions accepted) or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - clock()).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)
