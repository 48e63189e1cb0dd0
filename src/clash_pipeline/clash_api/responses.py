"""Reading what one HTTP attempt got back: a JSON object, or which error it is and why.

Body-derived text (the API's ``reason``/``message``, a gateway's HTML) is sanitised to one short
printable line and scrubbed of the token, because it ends up in records, errors and logs.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from clash_pipeline.clash_api import json_body
from clash_pipeline.clash_api.errors import (
    AccessDeniedError,
    BadRequestError,
    ClashApiError,
    MaintenanceError,
    MalformedResponseError,
    NotFoundError,
    PrivateWarLogError,
    ServerError,
    ThrottledError,
    TransportError,
)
from clash_pipeline.clash_api.retry import parse_retry_after

__all__ = ["Attempt", "classify", "error_class", "parse_max_age", "sanitise"]

Scrub = Callable[[str], str]

_MAX_AGE_RE = re.compile(r"(?<![\w-])max-age\s*=\s*\"?(\d+)", re.IGNORECASE)
_SNIPPET_CHARS = 100

# The API's answers by status; 403 and the other 5xx are decided in error_class.
_ERRORS_BY_STATUS: dict[int, type[ClashApiError]] = {
    400: BadRequestError,
    403: AccessDeniedError,
    404: NotFoundError,
    429: ThrottledError,
    503: MaintenanceError,
}
# Endpoints where a 403 ``accessDenied`` with an otherwise valid token means a private war log.
_WAR_ENDPOINTS = frozenset({"warlog", "currentwar", "leaguegroup", "cwl_war"})


@dataclass
class Attempt:
    """What one HTTP attempt produced; exceptions are turned into data, raised later."""

    status: int | None = None
    reason: str | None = None
    message: str | None = None
    max_age: int | None = None
    retry_after: float | None = None
    body: bytes | None = None
    data: dict[str, Any] | None = None
    error_cls: type[ClashApiError] | None = None
    transport_detail: str | None = None  # for TransportError: what happened, sanitised

    def summary(self) -> str:
        """One line for the fetch log's ``error`` column (the error class and what it saw)."""
        if self.error_cls is TransportError:
            return f"TransportError: {self.transport_detail or self.reason}"
        name = self.error_cls.__name__ if self.error_cls else "ok"
        return f"{name}: {self.status} {self.reason}"


def parse_max_age(cache_control: str | None) -> int | None:
    """``max-age`` from a Cache-Control header, however it is spelled around it."""
    if not cache_control:
        return None
    match = _MAX_AGE_RE.search(cache_control)
    return int(match.group(1)) if match else None


def classify(
    endpoint: str,
    status: int,
    headers: httpx.Headers,
    body: bytes,
    *,
    scrub: Scrub,
    clock: Callable[[], datetime],
) -> Attempt:
    """The outcome of a complete response: its JSON object, or the error it stands for."""
    outcome = Attempt(
        status=status,
        max_age=parse_max_age(headers.get("cache-control")),
        retry_after=parse_retry_after(headers.get("retry-after"), clock),
    )
    if 200 <= status < 300:
        data = _json_object(body)
        if data is not None:
            outcome.body = body
            outcome.data = data
            return outcome
        outcome.error_cls = MalformedResponseError
        outcome.reason = "malformedBody"
        outcome.message = f"expected a JSON object, got {_describe_body(body, scrub)}"
        return outcome
    outcome.reason, outcome.message = _error_fields(body, scrub)
    outcome.error_cls = error_class(endpoint, status, outcome.reason, outcome.message)
    return outcome


def error_class(
    endpoint: str, status: int, reason: str | None, message: str | None
) -> type[ClashApiError]:
    """Which error a non-2xx answer is."""
    error_cls = _ERRORS_BY_STATUS.get(status)
    if error_cls is AccessDeniedError and _is_private_war_log(endpoint, reason, message):
        return PrivateWarLogError
    if error_cls is None and 500 <= status < 600:
        return ServerError
    return error_cls or ClashApiError


def _is_private_war_log(endpoint: str, reason: str | None, message: str | None) -> bool:
    # Both a bad token and a private war log answer "accessDenied"; a bad token says
    # "Invalid authorization", a private war log says nothing.
    return (
        endpoint in _WAR_ENDPOINTS
        and reason == "accessDenied"
        and "authoriz" not in (message or "").lower()
    )


def _json_object(body: str | bytes) -> dict[str, Any] | None:
    try:
        data = json_body.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def sanitise(text: str, scrub: Scrub, limit: int = _SNIPPET_CHARS) -> str:
    """A short, single-line, printable version of text from a response body."""
    text = re.sub(r"(?is)<(script|style)\b.*?</\1\s*>", " ", text)
    text = re.sub(r"(?s)<[^>]*>", " ", text)
    text = html.unescape(text)
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    text = scrub(" ".join(text.split()))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe_body(body: bytes, scrub: Scrub) -> str:
    if not body.strip():
        return "an empty body"
    snippet = sanitise(body[:2000].decode("utf-8", "replace"), scrub, 60)
    return f"{len(body)} bytes starting {snippet!r}"


def _error_fields(body: bytes, scrub: Scrub) -> tuple[str, str | None]:
    """(reason, message) from an error body: the API's JSON, or a gateway's HTML/text."""
    text = body[:20000].decode("utf-8", "replace")
    if text.lstrip().startswith("{"):
        data = _json_object(text)
        if data is not None:
            reason = data.get("reason")
            message = data.get("message")
            return (
                sanitise(reason, scrub, 60) if isinstance(reason, str) and reason else "unknown",
                sanitise(message, scrub) if isinstance(message, str) and message else None,
            )
    # A gateway's HTML page: its <title> says it best ("502 Bad Gateway"), else its text.
    title = re.search(r"(?is)<title[^>]*>(.*?)</title\s*>", text)
    snippet = sanitise(title.group(1) if title else text, scrub)
    if not snippet and title:
        snippet = sanitise(text, scrub)
    return "unknown", snippet or None
