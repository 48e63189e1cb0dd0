"""What the client hands back: one :class:`FetchRecord` per logical request, for the fetch log,
and an :class:`ApiResponse` (record + parsed JSON) for each success.

A record is built from the path, the status and sanitised body fields only, never from request
headers, so it can be stored, logged and pickled without leaking the token.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = ["ApiResponse", "FetchRecord", "utc_now"]


def utc_now() -> datetime:
    """The default clock of records: timezone-aware UTC."""
    return datetime.now(UTC)


@dataclass
class FetchRecord:
    """One logical request (after retries), as the fetch log stores it.

    ``path`` is relative to the base URL and includes the query string (never a token).
    ``duration_ms`` runs from the start of the first attempt to the end of the last one, so it
    includes back-off waits; ``requested_at``/``fetched_at`` are the same instants on the client's
    clock.
    """

    endpoint: str
    resource_tag: str | None
    path: str
    status: int | None
    reason: str | None
    message: str | None
    requested_at: datetime
    fetched_at: datetime
    duration_ms: float
    attempts: int
    retries: int
    throttled: int
    max_age: int | None
    body: bytes | None = field(default=None, repr=False)
    error: str | None = None
    #: A transient failure (429, 5xx, timeout, broken body) still failing after the last retry:
    #: the run lacks data it would normally have (a 404 or a private war log is an answer).
    gave_up: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class ApiResponse:
    """A successful response: its record (with the raw body) and the parsed JSON object."""

    record: FetchRecord
    data: dict[str, Any]
