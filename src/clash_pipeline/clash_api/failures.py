"""How a failed request is told to the user: one line saying what failed, one saying what to do.

The hints are a table by error class; only a 404 (which depends on the endpoint and tag) and a
transport failure (which names the host) are worked out per request.
"""

from __future__ import annotations

from clash_pipeline.clash_api.endpoints import display_template, tag_kind
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
from clash_pipeline.clash_api.records import FetchRecord

__all__ = ["failure_hint", "failure_message", "request_target"]

_ACCESS_DENIED_HINT = (
    "check COC_API_TOKEN (or COC_API_TOKENS) and that the token's allowed IP list includes this "
    "machine's public IP, or use a proxy via COC_API_BASE_URL"
)

_HINTS: dict[type[ClashApiError], str] = {
    PrivateWarLogError: (
        "the clan's war log is private: a leader can make it public in the clan settings "
        "(if every request fails, check COC_API_TOKEN)"
    ),
    AccessDeniedError: _ACCESS_DENIED_HINT,
    BadRequestError: (
        "the API rejected a parameter of this request; report it as a clash-pipeline bug"
    ),
    ThrottledError: (
        "the API keeps throttling this token: lower COC_REQUESTS_PER_SECOND or "
        "COC_MAX_CONCURRENCY, and make sure no other program uses the same token"
    ),
    MaintenanceError: "the API is in maintenance or unavailable: try again later",
    ServerError: "the API (or a gateway in front of it) keeps failing: try again later",
    MalformedResponseError: (
        "the API or a proxy at COC_API_BASE_URL sent a broken answer: try again later"
    ),
}
_UNEXPECTED_HINT = "unexpected answer from the API: check COC_API_BASE_URL"


def failure_message(
    error_cls: type[ClashApiError], record: FetchRecord, transport_detail: str | None
) -> str:
    """``GET /clans/{clanTag} #2PP failed after 3 attempts: 404 notFound - ...``."""
    target = request_target(record)
    after = f" after {record.attempts} attempts" if record.attempts > 1 else ""
    if error_cls is TransportError:
        what = transport_detail or "no response"
    else:
        what = f"{record.status} {record.reason}"
        if record.message:
            what += f" - {record.message}"
    return f"{target} failed{after}: {what}"


def request_target(record: FetchRecord) -> str:
    """``GET /clans/{clanTag} #2PP``: the request, for a message."""
    target = f"GET {display_template(record.endpoint)}"
    return f"{target} {record.resource_tag}" if record.resource_tag else target


def failure_hint(error_cls: type[ClashApiError], record: FetchRecord, host_port: str) -> str:
    """What the user can do about it."""
    if error_cls is NotFoundError:
        return _not_found_hint(record)
    if error_cls is TransportError:
        return (
            f"check the network and that {host_port} (COC_API_BASE_URL, or the proxy in "
            "HTTPS_PROXY) is reachable; raise COC_TIMEOUT_SECONDS if it is just slow"
        )
    return _HINTS.get(error_cls, _UNEXPECTED_HINT)


def _not_found_hint(record: FetchRecord) -> str:
    if record.endpoint == "leaguegroup":
        return "the clan is not in a Clan War League right now (or the tag is wrong)"
    if record.resource_tag:
        return f"no {tag_kind(record.endpoint)} has this tag: check it in the game"
    return "check COC_API_BASE_URL (a proxy usually needs the /v1 path prefix)"
