"""Typed errors of the Clash API client.

Each error is one line for the user (``.message``) plus what to do (``.hint``), like every
:class:`~clash_pipeline.errors.ClashPipelineError`, and carries the
:class:`~clash_pipeline.clash_api.records.FetchRecord`
of the failed request (``.record``) so the fetch log keeps the failure too.

The API's own ``message`` field is ``.api_message`` (``.message`` is the full line the CLI prints).
Nothing here ever holds the token or any request header: the record is built from the path, the
status and a sanitised snippet of the body only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from clash_pipeline.errors import ClashPipelineError

if TYPE_CHECKING:
    from clash_pipeline.clash_api.records import FetchRecord

__all__ = [
    "AccessDeniedError",
    "BadRequestError",
    "ClashApiError",
    "MaintenanceError",
    "MalformedResponseError",
    "NotFoundError",
    "PrivateWarLogError",
    "ServerError",
    "ThrottledError",
    "TransportError",
]


def _rebuild(
    cls: type[ClashApiError], message: str, hint: str | None, record: Any
) -> ClashApiError:
    return cls(message, hint, record=record)


class ClashApiError(ClashPipelineError):
    """A request to the Clash API failed (after the retries it deserved)."""

    #: Whether the client retries this kind of failure (documentation; the client decides).
    retryable: bool = False

    def __init__(self, message: str, hint: str | None = None, *, record: FetchRecord) -> None:
        super().__init__(message, hint)
        self.record = record

    # Prefect and multiprocessing pickle exceptions; the keyword-only record needs help.
    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.message, self.hint, self.record))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, status={self.status!r})"

    @property
    def status(self) -> int | None:
        """HTTP status of the last attempt (None when no response arrived)."""
        return self.record.status

    @property
    def reason(self) -> str | None:
        """The API's ``reason`` (``notFound``, ``accessDenied.invalidIp``…) or ``unknown``."""
        return self.record.reason

    @property
    def api_message(self) -> str | None:
        """The API's optional ``message`` field (or a short sanitised snippet of an HTML body)."""
        return self.record.message

    @property
    def endpoint(self) -> str:
        return self.record.endpoint

    @property
    def resource_tag(self) -> str | None:
        return self.record.resource_tag

    @property
    def attempts(self) -> int:
        return self.record.attempts


class BadRequestError(ClashApiError):
    """400 ``badRequest``: a wrong parameter. Never retried: it would fail the same way."""


class AccessDeniedError(ClashApiError):
    """403 ``accessDenied`` / ``accessDenied.invalidIp``: the token is wrong or not valid here."""


class PrivateWarLogError(AccessDeniedError):
    """403 on a war endpoint while the token is otherwise fine: the clan's war log is private."""


class NotFoundError(ClashApiError):
    """404 ``notFound``: no such clan/player/war, or the clan is not in a CWL."""


class ThrottledError(ClashApiError):
    """429 ``requestThrottled``: still throttled after the cool-downs."""

    retryable = True


class MaintenanceError(ClashApiError):
    """503 (``inMaintenance`` or a gateway's HTML): still unavailable after the cool-downs."""

    retryable = True


class ServerError(ClashApiError):
    """500/502/504 and other 5xx: still failing after the back-off retries."""

    retryable = True


class MalformedResponseError(ClashApiError):
    """A 2xx whose body is not a JSON object (truncated, HTML from a proxy, a list…)."""

    retryable = True


class TransportError(ClashApiError):
    """No HTTP response: timeout, connection refused or reset, broken protocol."""

    retryable = True
