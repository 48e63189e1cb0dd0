"""What was sent to the API so far, per fetch: counted as it happens, kept when the fetch fails.

A fetch that fails or is cancelled has no complete records, yet its requests
were sent (and count against the API's limits). :func:`counting` opens a
:class:`SentCounts` for the current task and the tasks it starts (a context
variable); the client adds every attempt to it before sending and every 429
when it arrives. A client shared by several clans' fetches counts each one
apart.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

__all__ = ["SentCounts", "answered", "attempt_started", "counting"]


@dataclass
class SentCounts:
    """Requests (logical, first attempts), retries (further attempts) and 429s received."""

    requests: int = 0
    retries: int = 0
    throttled: int = 0

    def measures(self) -> dict[str, int]:
        return {"requests": self.requests, "retries": self.retries, "throttled": self.throttled}


_current: ContextVar[SentCounts | None] = ContextVar("clash_sent_counts", default=None)


@contextlib.contextmanager
def counting() -> Iterator[SentCounts]:
    """Count what the client sends inside the block (and the tasks started in it)."""
    counts = SentCounts()
    token = _current.set(counts)
    try:
        yield counts
    finally:
        _current.reset(token)


def attempt_started(*, first: bool) -> None:
    counts = _current.get()
    if counts is not None:
        if first:
            counts.requests += 1
        else:
            counts.retries += 1


def answered(status: int | None) -> None:
    counts = _current.get()
    if counts is not None and status == 429:
        counts.throttled += 1
