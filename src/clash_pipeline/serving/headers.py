"""Security headers on every response, and ``HEAD`` answered as ``GET``.

Every response carries ``X-Content-Type-Options: nosniff``,
``X-Frame-Options: DENY``, ``Referrer-Policy: no-referrer`` and a
``Content-Security-Policy`` chosen by path:

* the JSON API (and every error body): nothing may load (``default-src 'none'``);
* the dashboard and the docs page (Swagger UI, served from this app):
  scripts, styles, images and requests from the same origin only; neither
  has inline code (Swagger UI is started by a script file and styles
  through the CSSOM, which a CSP allows).

Each forbids framing (``frame-ancestors 'none'``). A header the app already
set is kept.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "API_CSP",
    "API_HEADERS",
    "DASHBOARD_CSP",
    "DOCS_CSP",
    "HeadAsGet",
    "SecurityHeaders",
    "content_security_policy",
]

_LOCKED = "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
API_CSP = f"default-src 'none'; {_LOCKED}"
DASHBOARD_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    f"connect-src 'self'; {_LOCKED}"
)
DOCS_CSP = DASHBOARD_CSP  # Swagger UI works within the dashboard's policy

COMMON_HEADERS: tuple[tuple[str, str], ...] = (
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
)
#: The headers of a JSON answer (the server's own error answers use them too).
API_HEADERS: tuple[tuple[str, str], ...] = (*COMMON_HEADERS, ("content-security-policy", API_CSP))

DOCS_PREFIX = "/api/docs"


def content_security_policy(path: str) -> str:
    """The CSP of a response to ``path``."""
    if path == DOCS_PREFIX or path.startswith(DOCS_PREFIX + "/"):
        return DOCS_CSP
    if path.startswith("/api/"):
        return API_CSP
    return DASHBOARD_CSP  # the dashboard, its redirect, anything else


class SecurityHeaders:
    """ASGI middleware: the security headers on every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = [
            (name.encode("ascii"), value.encode("ascii"))
            for name, value in (
                *COMMON_HEADERS,
                ("content-security-policy", content_security_policy(scope["path"])),
            )
        ]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers.extend(item for item in extra if item[0] not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class HeadAsGet:
    """ASGI middleware: a ``HEAD`` is routed as a ``GET`` and answered without its body.

    The status and every header (``ETag``, ``Content-Length``, ``Cache-Control``)
    are the ``GET``'s, so a ``304`` still answers a matching ``If-None-Match``.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def send_without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        # a copy: the server keeps its own scope, and so knows to send no body
        await self.app({**scope, "method": "GET"}, receive, send_without_body)
