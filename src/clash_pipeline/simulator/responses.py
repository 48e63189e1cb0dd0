"""What the simulated API answers with: JSON bodies, the real error bodies and headers,
the HTML pages of a failing gateway, and deliberately broken bodies."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

JSON_TYPE = "application/json; charset=utf-8"
ERROR_MAX_AGE = 600

#: Status -> (reason, message) of the real API's error bodies.
MESSAGES = {
    400: ("badRequest", "Client provided incorrect parameters for the request."),
    403: ("accessDenied", "Invalid authorization"),
    404: ("notFound", "Resource was not found."),
    429: (
        "requestThrottled",
        "Request was throttled, because amount of requests was above the threshold defined "
        "for the used API token.",
    ),
    500: ("unknownException", "Unknown error happened when handling the request."),
    503: ("inMaintenance", "Service is temporarily unavailable because of maintenance."),
}


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = JSON_TYPE
    cache_control: str = f"public max-age={ERROR_MAX_AGE}"
    headers: dict[str, str] = field(default_factory=dict)


class ApiError(Exception):
    """An error answer in the real API's shape, raised from anywhere in a request."""

    def __init__(self, status: int, message: str | None = None, *, reason: str | None = None):
        super().__init__(message or "")
        self.status = status
        self.reason = reason or MESSAGES.get(status, ("unknownException", None))[0]
        self.message = message


def json_bytes(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def error_body(status: int, message: str | None = None, reason: str | None = None) -> bytes:
    default_reason, default_message = MESSAGES.get(status, ("unknownException", None))
    body: dict[str, Any] = {"reason": reason or default_reason}
    text = message if message is not None else default_message
    if text:
        body["message"] = text
    return json_bytes(body)


def error(status: int, message: str | None = None, *, reason: str | None = None) -> Response:
    cache = f"max-age={ERROR_MAX_AGE}" if status == 403 else f"public max-age={ERROR_MAX_AGE}"
    return Response(status, error_body(status, message, reason), cache_control=cache)


def html_error(status: int) -> Response:
    """The page a gateway in front of the API serves when the API is down."""
    title = {
        502: "502 Bad Gateway",
        503: "503 Service Temporarily Unavailable",
        504: "504 Gateway Time-out",
    }.get(status, f"{status} Error")
    page = (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n</body>\r\n</html>\r\n"
    )
    return Response(status, page.encode(), content_type="text/html", cache_control="no-cache")


def with_retry_after(response: Response, seconds: float | None) -> Response:
    if seconds is not None:
        whole = float(seconds).is_integer()
        response.headers["Retry-After"] = str(int(seconds)) if whole else f"{seconds:g}"
    return response


def corrupt(response: Response, kind: str, status: int) -> Response:
    """A ``truncated`` (half the bytes) or ``malformed`` (not JSON) copy of a response."""
    if kind == "truncated":
        body = response.body[: len(response.body) // 2]
    else:
        body = b'{"reason": "<html>this is not JSON' + response.body[:20] + b",,}"
    return Response(status, body, cache_control=response.cache_control)


def add_extra_fields(data: Any, *, depth: int = 0, in_list: bool = False) -> Any:
    """A copy of ``data`` with unknown fields added at the top, in list items and in objects."""
    if isinstance(data, list):
        return [add_extra_fields(item, depth=depth + 1, in_list=True) for item in data]
    if not isinstance(data, dict):
        return data
    out = {key: add_extra_fields(value, depth=depth + 1) for key, value in data.items()}
    if depth == 0:
        out["simulatorExtraTopLevel"] = {"note": "unknown field: readers must ignore it"}
    elif in_list:
        out["simulatorExtraItemField"] = depth
    else:
        out["simulatorExtraNested"] = True
    return out
