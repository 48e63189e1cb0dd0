"""Fetch times as people and the API write them, read as UTC."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

_API_TIME_RE = re.compile(r"^(\d{8}T\d{6})(?:\.(\d{1,6}))?Z$")


def parse_fetch_time(value: object, *, what: str = "fetch time") -> datetime:
    """ISO 8601 (``2025-09-10T15:24:10Z``) or the API's ``20250910T152410.000Z``, as UTC.

    A time without a zone is read as UTC. Raises ValueError with a readable message.
    """
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str) and value.strip():
        try:
            parsed = _parse_text(value.strip())
        except ValueError:
            raise ValueError(_invalid(what, value)) from None
    else:
        raise ValueError(_invalid(what, value))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def parse_http_date(value: str | None) -> datetime | None:
    """An HTTP ``Date`` header as UTC; None when absent or unreadable (not worth a quarantine)."""
    if not value:
        return None
    try:
        sent = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return sent.replace(tzinfo=UTC) if sent.tzinfo is None else sent.astimezone(UTC)


def _parse_text(text: str) -> datetime:
    match = _API_TIME_RE.match(text)
    if match:
        return datetime.strptime(match.group(1), "%Y%m%dT%H%M%S").replace(
            microsecond=int((match.group(2) or "0").ljust(6, "0")), tzinfo=UTC
        )
    return datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))


def _invalid(what: str, value: object) -> str:
    return f"invalid {what} {value!r}: use ISO 8601 such as 2025-09-10T15:24:10Z"
