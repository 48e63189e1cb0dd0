"""Version-keyed answers: the ETag, the 304 before routing, the body cache.

Clan-scoped answers carry the clan's latest ``payload_version``
(``marts.roster_snapshots``) as a strong ``ETag``; ``If-None-Match`` with it
(strong, weak, in a list, or ``*``) gets a ``304`` after one indexed lookup and
before any body is built. Built bodies are kept in memory keyed by (path,
payload_version), so a version change is also a cache miss on the server.
``Cache-Control: no-cache`` makes clients revalidate.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple
from urllib.parse import parse_qsl

import psycopg
from fastapi import Request
from fastapi.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from clash_pipeline.clash_api.tags import normalize_tag
from clash_pipeline.errors import InvalidTagError
from clash_pipeline.serving.encoding import JSON_TYPE, dump_json
from clash_pipeline.serving.errors import ApiError

BODY_CACHE_ENTRIES = 256
CACHE_CONTROL = "no-cache"
# where the shortcut leaves the (clan tag, payload_version) it looked up
ROSTER_VERSION_SCOPE_KEY = "clash.roster_version"


class Built(NamedTuple):
    """What a versioned resource's builder returns."""

    data: dict[str, Any] | None  # None: there is no such resource (the 404)
    cacheable: bool  # False: answer it with no-store, keep nothing


def etag_for(version: str) -> str:
    return f'"{version}"'


def if_none_match_hits(header: str | None, version: str) -> bool:
    """Whether an ``If-None-Match`` value names ``version`` (weak comparison, RFC 9110)."""
    if not header:
        return False
    for part in header.split(","):
        candidate = part.strip()
        if candidate == "*":
            return True
        if candidate[:2] in ("W/", "w/"):
            candidate = candidate[2:]
        if candidate.strip('"') == version:
            return True
    return False


class BodyCache:
    """Built response bodies by (key, payload_version), least recently used out."""

    def __init__(self, entries: int = BODY_CACHE_ENTRIES) -> None:
        self._entries = entries
        self._data: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str, version: str) -> bytes | None:
        with self._lock:
            body = self._data.get((key, version))
            if body is None:
                self.misses += 1
                return None
            self._data.move_to_end((key, version))
            self.hits += 1
            return body

    def put(self, key: str, version: str, body: bytes) -> None:
        with self._lock:
            # a new version of a key makes the old ones useless: drop them now
            for stale in [k for k in self._data if k[0] == key and k[1] != version]:
                del self._data[stale]
            self._data[(key, version)] = body
            while len(self._data) > self._entries:
                self._data.popitem(last=False)


def versioned_response(
    request: Request,
    bodies: BodyCache,
    key: str,
    version: str | None,
    build: Callable[[], Built],
    missing: ApiError,
) -> Response:
    """Answer a version-keyed resource: 304, a cached body, or a fresh one.

    ``build`` runs only on a cache miss; a body it calls not cacheable (the
    marts are between two builds) is answered with ``no-store`` and no ETag.
    """
    if version is None:
        raise missing
    headers = {"ETag": etag_for(version), "Cache-Control": CACHE_CONTROL}
    if if_none_match_hits(request.headers.get("if-none-match"), version):
        return Response(status_code=304, headers=headers)
    body = bodies.get(key, version)
    if body is None:
        data, cacheable = build()
        if data is None:
            raise missing
        body = dump_json(data)
        if not cacheable:
            # the marts are between two builds: answer, but let nobody keep it
            return Response(body, media_type=JSON_TYPE, headers={"Cache-Control": "no-store"})
        bodies.put(key, version, body)
    return Response(body, media_type=JSON_TYPE, headers=headers)


def latest_roster_version(
    request: Request, tag: str, lookup: Callable[[str], str | None]
) -> str | None:
    """The clan's latest payload_version: the one the shortcut found, else ``lookup``'s."""
    known = request.scope.get(ROSTER_VERSION_SCOPE_KEY)
    if known and known[0] == tag:
        version: str | None = known[1]
        return version
    return lookup(tag)


def _conditional_roster_request(scope: Scope) -> tuple[str, str] | None:
    """(clan tag, If-None-Match) of a revalidation of one valid clan's roster, else None.

    Only a query of exactly one ``clan``: anything else (an unknown or repeated
    parameter) goes to the app, which refuses it.
    """
    condition = next((value for name, value in scope["headers"] if name == b"if-none-match"), None)
    if condition is None:
        return None
    query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    if len(query) != 1 or query[0][0] != "clan" or len(query[0][1]) > 40:
        return None
    try:
        tag = normalize_tag(query[0][1], kind="clan tag")
    except InvalidTagError:
        return None
    return tag, condition.decode("latin-1")


class ConditionalRosterShortcut:
    """ASGI middleware: answer a conditional roster GET with 304 before routing.

    A revalidation is the common request of a version-aware client: it needs
    one indexed lookup of the latest payload_version and nothing else, so it
    skips FastAPI's routing and validation. Anything else (no If-None-Match,
    a bad tag, a version that moved on) goes to the app, with the version
    found so far in ``scope["clash.roster_version"]`` so it is not looked up
    twice.
    """

    PATH = "/api/v2/roster"

    def __init__(self, app: ASGIApp, lookup: Callable[[str], Awaitable[str | None]]) -> None:
        self.app = app
        self.lookup = lookup

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.PATH or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        request = _conditional_roster_request(scope)
        if request is None:
            await self.app(scope, receive, send)
            return
        tag, condition = request
        try:
            version = await self.lookup(tag)
        except psycopg.Error:  # let the app answer it with its error handlers
            await self.app(scope, receive, send)
            return
        scope[ROSTER_VERSION_SCOPE_KEY] = (tag, version)
        if version is None or not if_none_match_hits(condition, version):
            await self.app(scope, receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 304,
                "headers": [
                    (b"etag", etag_for(version).encode()),
                    (b"cache-control", CACHE_CONTROL.encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b""})
