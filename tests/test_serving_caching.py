"""The API's caching machinery without a database: ETags, the 304 shortcut, the body cache.

tests/test_api.py checks the same behaviour end to end on a built warehouse;
these pin the edge cases of each piece in milliseconds.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import psycopg
import pytest
from starlette.requests import Request

from clash_pipeline.serving.caching import (
    ROSTER_VERSION_SCOPE_KEY,
    BodyCache,
    ConditionalRosterShortcut,
    etag_for,
    if_none_match_hits,
    latest_roster_version,
    versioned_response,
)
from clash_pipeline.serving.encoding import dump_json
from clash_pipeline.serving.errors import ApiError


@pytest.mark.parametrize(
    ("header", "hit"),
    [
        ('"v1"', True),
        ('W/"v1"', True),
        ('w/"v1"', True),
        ('"v0", "v1"', True),
        ("*", True),
        ('"v2"', False),
        ("", False),
        (None, False),
    ],
)
def test_if_none_match_uses_the_weak_comparison(header, hit):
    assert if_none_match_hits(header, "v1") is hit
    assert etag_for("v1") == '"v1"'


def test_body_cache_drops_old_versions_and_the_least_recently_used():
    cache = BodyCache(entries=2)
    cache.put("a", "v1", b"a1")
    cache.put("a", "v2", b"a2")
    assert cache.get("a", "v1") is None and cache.get("a", "v2") == b"a2"
    cache.put("b", "v1", b"b1")
    cache.get("a", "v2")  # a is now the most recently used
    cache.put("c", "v1", b"c1")
    assert cache.get("b", "v1") is None
    assert cache.get("a", "v2") == b"a2" and cache.get("c", "v1") == b"c1"
    assert (cache.hits, cache.misses) == (4, 2)
    assert BodyCache(entries=0).get("a", "v1") is None


def test_dump_json_is_compact_utc_and_numeric():
    # the embedded warehouse runs in UTC: timestamps arrive as UTC datetimes
    moment = datetime(2026, 1, 2, 1, 4, 5, tzinfo=UTC)
    assert dump_json({"at": moment, "n": Decimal("2"), "x": Decimal("1.5")}) == (
        b'{"at":"2026-01-02T01:04:05Z","n":2,"x":1.5}'
    )
    assert dump_json({"d": timedelta(minutes=1)}) == b'{"d":60.0}'
    # beyond 64 bits: the general encoder, same shape (and it converts to UTC)
    local = moment.astimezone(timezone(timedelta(hours=2)))
    assert dump_json({"big": 2**70, "at": local, "n": Decimal("2")}) == (
        b'{"big":1180591620717411303424,"at":"2026-01-02T01:04:05Z","n":2}'
    )


def _request(headers: dict[str, str] | None = None, **scope: object) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return Request({"type": "http", "method": "GET", "path": "/", "headers": raw, **scope})


def test_versioned_response_304_cached_fresh_and_between_builds():
    cache = BodyCache()
    builds = []

    def build(cacheable: bool):
        def run():
            builds.append(cacheable)
            return {"v": 1}, cacheable

        return run

    missing = ApiError(404, "clan_not_found", "none")
    fresh = versioned_response(_request(), cache, "k", "v1", build(True), missing)
    assert (fresh.status_code, fresh.body) == (200, b'{"v":1}')
    assert fresh.headers["etag"] == '"v1"' and fresh.headers["cache-control"] == "no-cache"
    cached = versioned_response(_request(), cache, "k", "v1", build(True), missing)
    assert cached.body == b'{"v":1}' and builds == [True]
    hit = versioned_response(
        _request({"If-None-Match": '"v1"'}), cache, "k", "v1", build(True), missing
    )
    assert (hit.status_code, hit.body, hit.headers["etag"]) == (304, b"", '"v1"')
    between = versioned_response(_request(), cache, "k", "v2", build(False), missing)
    assert between.headers["cache-control"] == "no-store" and "etag" not in between.headers
    assert cache.get("k", "v2") is None
    with pytest.raises(ApiError):
        versioned_response(_request(), cache, "k", None, build(True), missing)
    with pytest.raises(ApiError):
        versioned_response(_request(), cache, "k", "v3", lambda: (None, False), missing)


def test_latest_roster_version_reuses_the_shortcuts_lookup():
    known = _request(**{ROSTER_VERSION_SCOPE_KEY: ("#2PP", "v1")})
    assert latest_roster_version(known, "#2PP", lambda tag: "looked up") == "v1"
    assert latest_roster_version(known, "#2QQ", lambda tag: "looked up") == "looked up"
    assert latest_roster_version(_request(), "#2PP", lambda tag: None) is None


def _shortcut(version: str | None | Exception):
    passed: list[dict] = []
    lookups: list[str] = []

    async def app(scope, receive, send):
        passed.append(scope)

    async def lookup(tag: str) -> str | None:
        lookups.append(tag)
        if isinstance(version, Exception):
            raise version
        return version

    return ConditionalRosterShortcut(app, lookup), passed, lookups


def _call(middleware, query: bytes, condition: bytes | None, path="/api/v2/roster", method="GET"):
    headers = [(b"if-none-match", condition)] if condition is not None else []
    scope = {"type": "http", "path": path, "method": method, "headers": headers}
    scope["query_string"] = query
    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    asyncio.run(middleware(scope, None, send))
    return scope, sent


def test_the_shortcut_answers_a_matching_revalidation_with_304_before_routing():
    middleware, passed, lookups = _shortcut("v1")
    _, sent = _call(middleware, b"clan=2pp", b'W/"v1"')
    assert lookups == ["#2PP"] and passed == []
    assert sent[0]["status"] == 304
    assert sent[0]["headers"] == [(b"etag", b'"v1"'), (b"cache-control", b"no-cache")]
    assert sent[1] == {"type": "http.response.body", "body": b""}


@pytest.mark.parametrize(
    ("query", "condition", "path", "method"),
    [
        (b"clan=2pp", None, "/api/v2/roster", "GET"),  # not conditional
        (b"clan=!!", b'"v1"', "/api/v2/roster", "GET"),  # a bad tag: the app's 400
        (b"clan=2pp&clan=2qq", b'"v1"', "/api/v2/roster", "GET"),
        (b"clan=" + b"2" * 41, b'"v1"', "/api/v2/roster", "GET"),
        (b"clan=2pp", b'"v1"', "/api/v2/clans", "GET"),
        (b"clan=2pp", b'"v1"', "/api/v2/roster", "HEAD"),
    ],
)
def test_the_shortcut_leaves_other_requests_to_the_app(query, condition, path, method):
    middleware, passed, lookups = _shortcut("v1")
    _call(middleware, query, condition, path, method)
    assert len(passed) == 1 and lookups == []


@pytest.mark.parametrize(
    ("version", "known"),
    [("v2", ("#2PP", "v2")), (None, ("#2PP", None)), (psycopg.OperationalError("down"), None)],
)
def test_the_shortcut_passes_a_miss_on_with_what_it_looked_up(version, known):
    middleware, passed, lookups = _shortcut(version)
    scope, sent = _call(middleware, b"clan=%232PP", b'"v1"')
    assert sent == [] and len(passed) == 1 and lookups == ["#2PP"]
    assert scope.get(ROSTER_VERSION_SCOPE_KEY) == known
