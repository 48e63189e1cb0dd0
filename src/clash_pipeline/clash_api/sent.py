"""What was sent to the API so far, per fetch: counted as it happens, kept when the fetch fails.

A fetch that fails or is cancelled has no complete records, yet its requests
were sent (and count against the API's limits). :func:`counting` opens a
:class:`SentCounts` for the current task and the tasks it starts (a context
variable); the client adds every attempt to it before sending and every 429
when it arrives. A client shared by several clans' fetches counts each one
apart. Each attempt, 429 and rejection is also counted per API key (position and
fingerprint, never the token) for the fetch checkpoint's ``details.keys``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clash_pipeline.clash_api.keys import ApiKey

__all__ = ["SentCounts", "answered", "attempt_started", "counting", "key_rejected"]


@dataclass
class SentCounts:
    """Requests (logical, first attempts), retries (further attempts) and 429s received."""

    requests: int = 0
    retries: int = 0
    throttled: int = 0
    #: position -> {position, fingerprint, requests (attempts), throttled, rejected}
    by_key: dict[int, dict[str, Any]] = field(default_factory=dict)

    def measures(self) -> dict[str, int]:
        return {"requests": self.requests, "retries": self.retries, "throttled": self.throttled}

    def keys(self) -> list[dict[str, Any]]:
        """What each key that was used did, in pool order (``details.keys``)."""
        return [dict(self.by_key[position]) for position in sorted(self.by_key)]

    def _key(self, key: ApiKey) -> dict[str, Any]:
        counts = self.by_key.get(key.position)
        if counts is None:
            counts = self.by_key[key.position] = {
                "position": key.position,
                "fingerprint": key.fingerprint,
                "requests": 0,
                "throttled": 0,
                "rejected": 0,
            }
        return counts


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


def attempt_started(*, first: bool, key: ApiKey | None = None) -> None:
    counts = _current.get()
    if counts is not None:
        if first:
            counts.requests += 1
        else:
            counts.retries += 1
        if key is not None:
            counts._key(key)["requests"] += 1


def answered(status: int | None, *, key: ApiKey | None = None) -> None:
    counts = _current.get()
    if counts is not None and status == 429:
        counts.throttled += 1
        if key is not None:
            counts._key(key)["throttled"] += 1


def key_rejected(key: ApiKey) -> None:
    """The API refused ``key`` (403 accessDenied): the attempt is not a retry of the request."""
    counts = _current.get()
    if counts is not None:
        counts._key(key)["rejected"] += 1
