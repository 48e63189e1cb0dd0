"""The HTTP/1.1 protocol the API is served with: uvicorn's, with limits and JSON errors.

uvicorn answers a request it cannot parse before the app sees it, with a
plain-text 400, and sets no limit on the request line or the headers (httptools
buffers them whole). :class:`JsonErrorHttpProtocol` is uvicorn's httptools
protocol with:

* a request target (path and query) of at most :data:`MAX_REQUEST_TARGET`
  bytes, else ``414 uri_too_long``;
* at most :data:`MAX_HEADERS` headers of at most :data:`MAX_HEADER_BYTES`
  bytes in all (names and values), else ``431 headers_too_large``; a head
  still incomplete after :data:`MAX_HEAD_BYTES` bytes is refused the same way,
  so an endless header never fills the memory;
* every request it cannot parse (bad method, bad request line, bad header,
  a request target that is not ASCII) answered ``400 invalid_http_request``;
* a head that is not complete :data:`HEAD_TIMEOUT_SECONDS` after the
  connection opened or its first byte arrived answered ``408 request_timeout``
  (a connection that sent nothing is closed without an answer), so a slow
  client cannot hold a connection open forever;

each as the API's JSON error body (:mod:`clash_pipeline.serving.errors`) with
the security headers, then the connection is closed. :func:`uvicorn_options`
is what ``clash-pipeline api`` and :class:`~clash_pipeline.serving.server.BackgroundServer`
pass to uvicorn.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from clash_pipeline.serving.headers import API_HEADERS

__all__ = [
    "HEAD_TIMEOUT_SECONDS",
    "MAX_HEADERS",
    "MAX_HEADER_BYTES",
    "MAX_HEAD_BYTES",
    "MAX_REQUEST_TARGET",
    "JsonErrorHttpProtocol",
    "uvicorn_options",
]

#: Bytes of the request target (path and query string).
MAX_REQUEST_TARGET = 8 * 1024
#: Bytes of all header names and values of one request.
MAX_HEADER_BYTES = 16 * 1024
#: Headers of one request.
MAX_HEADERS = 100
#: Bytes read while a request's head is incomplete (the request line, the
#: headers and their separators): the bound on what one head may buffer.
MAX_HEAD_BYTES = MAX_REQUEST_TARGET + MAX_HEADER_BYTES + 8 * 1024
#: Seconds a request's head may take to arrive.
HEAD_TIMEOUT_SECONDS = 10.0


class RequestRefused(Exception):
    """A request refused before the app sees it: status, code, message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def target_too_long() -> RequestRefused:
    return RequestRefused(
        414,
        "uri_too_long",
        f"the request target (path and query) is longer than {MAX_REQUEST_TARGET} bytes; "
        "shorten it",
    )


def headers_too_large() -> RequestRefused:
    return RequestRefused(
        431,
        "headers_too_large",
        f"the request headers exceed {MAX_HEADERS} headers or {MAX_HEADER_BYTES} bytes; "
        "send fewer or shorter headers",
    )


def invalid_request(exc: httptools.HttpParserError) -> RequestRefused:
    """The 400 of a request httptools (or a parser callback) could not read."""
    cause = exc.__context__
    if isinstance(cause, RequestRefused):
        return cause
    if isinstance(cause, UnicodeError):
        reason = "the request target is not ASCII (percent-encode other bytes)"
    else:
        reason = (str(exc) or type(exc).__name__)[:120]
    return RequestRefused(
        400,
        "invalid_http_request",
        f"invalid HTTP/1.1 request: {reason}; send a well-formed GET (see /api/docs)",
    )


def error_bytes(refused: RequestRefused, default_headers: list[tuple[bytes, bytes]]) -> bytes:
    """The whole HTTP response of a refused request, JSON body included."""
    body = json.dumps({"error": {"code": refused.code, "message": refused.message}}).encode()
    headers = [
        *default_headers,
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode("ascii")),
        (b"cache-control", b"no-store"),
        *((name.encode("ascii"), value.encode("ascii")) for name, value in API_HEADERS),
        (b"connection", b"close"),
    ]
    lines = [STATUS_LINE[refused.status]]
    lines.extend(name + b": " + value + b"\r\n" for name, value in headers)
    lines.append(b"\r\n")
    return b"".join(lines) + body


class JsonErrorHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with head limits, a head timeout and JSON error bodies."""

    head_timeout = HEAD_TIMEOUT_SECONDS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # reading a request line or headers
        self._head_bytes = 0
        self._header_count = 0
        self._header_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or not self._in_head:
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self._arm_head_timer()  # a pipelined head waits for the response before it
        elif self._head_bytes:
            self.refuse(
                RequestRefused(
                    408,
                    "request_timeout",
                    f"the request's headers took over {self.head_timeout:g} s; send them at once",
                )
            )
        else:
            self.transport.close()  # nothing was asked: nothing to answer

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
            self._arm_head_timer()
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        except httptools.HttpParserError as exc:
            self.refuse(invalid_request(exc))
        else:
            if self._in_head and self._head_bytes > MAX_HEAD_BYTES:
                # on_url bounds the request target: this is a header still arriving
                self.refuse(headers_too_large())

    def refuse(self, refused: RequestRefused) -> None:
        """Answer ``refused`` as JSON and close the connection."""
        self.logger.warning("refused a request: %s %s", refused.status, refused.code)
        self.transport.write(error_bytes(refused, self.server_state.default_headers))
        self.transport.close()

    def send_400_response(self, msg: str) -> None:
        self.refuse(RequestRefused(400, "invalid_http_request", f"invalid HTTP/1.1 request: {msg}"))

    # parser callbacks (an exception here comes back from feed_data as its __context__)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._header_count = 0
        self._header_bytes = 0

    def on_url(self, url: bytes) -> None:
        super().on_url(url)  # called per chunk: the bound holds while the target arrives
        if len(self.url) > MAX_REQUEST_TARGET:
            raise target_too_long()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        self._header_bytes += len(name) + len(value)
        if self._header_count > MAX_HEADERS or self._header_bytes > MAX_HEADER_BYTES:
            raise headers_too_large()
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._cancel_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True
        self._head_bytes = 0


def uvicorn_options() -> dict[str, Any]:
    """The options every uvicorn serving the API gets (``uvicorn.Config(app, **options)``).

    No WebSocket protocol: the API has none, so an upgrade request is answered
    as the plain request it also is.
    """
    return {"http": JsonErrorHttpProtocol, "ws": "none"}
