"""Issue 12, point 10: the API's edges, against the real app served by uvicorn on loopback.

What the server refuses before the app (an over-long request target, too many
or too large headers, a request it cannot parse) is sent over raw sockets, the
rest with httpx. Every error must be the API's JSON body with the right status;
``HEAD`` must be ``GET`` without a body; a repeated or unknown query parameter a
400 naming it; Swagger UI served from local files; the security headers on every
kind of response.
"""

from __future__ import annotations

import json
import re
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql

from clash_pipeline.serving.app import create_app
from clash_pipeline.serving.protocol import (
    MAX_HEADER_BYTES,
    MAX_HEADERS,
    MAX_REQUEST_TARGET,
    JsonErrorHttpProtocol,
)
from clash_pipeline.serving.server import BackgroundServer
from tests import test_dashboard_browser as dashboard_browser
from tests.plugins.prefect_fixtures import PIPELINE_CLAN

pytestmark = pytest.mark.slow

CLAN = PIPELINE_CLAN.removeprefix("#")


@pytest.fixture(scope="module")
def edges_db(pg_server: Any, built_warehouse: Any) -> Iterator[str]:
    """A copy of the built warehouse for the module (every test only reads)."""
    name = f"t_api_edges_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server.url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("create database {} template {}").format(
                sql.Identifier(name), sql.Identifier(built_warehouse.name)
            )
        )
    try:
        yield pg_server.database_url(name)
    finally:
        pg_server.drop_database(name)


@pytest.fixture(scope="module")
def server(edges_db: str) -> Iterator[BackgroundServer]:
    with BackgroundServer(create_app(edges_db, pool_size=2)) as running:
        yield running


@pytest.fixture(scope="module")
def http(server: BackgroundServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        yield client


class RawResponse:
    def __init__(self, raw: bytes) -> None:
        head, _, self.body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()

    def error(self) -> dict[str, str]:
        assert self.headers["content-type"] == "application/json", self.headers
        assert int(self.headers["content-length"]) == len(self.body)
        error: dict[str, str] = json.loads(self.body)["error"]
        return error


def raw_request(server: BackgroundServer, *chunks: bytes) -> RawResponse:
    """Send ``chunks`` (stop early if the server has closed) and read until it closes."""
    with socket.create_connection((server.host, server.port), timeout=20) as conn:
        for chunk in chunks:
            try:
                conn.sendall(chunk)
            except OSError:  # refused mid-way: its answer is already on its way
                break
        received = b""
        while True:
            try:
                data = conn.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            received += data
    assert received, "the server closed without an answer"
    return RawResponse(received)


def get_head(target: str, extra: str = "") -> bytes:
    return f"GET {target} HTTP/1.1\r\nHost: t\r\n{extra}\r\n".encode()


def assert_security_headers(headers: Any, csp_start: str) -> None:
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "no-referrer"
    csp = headers["content-security-policy"]
    assert csp.startswith(csp_start), csp
    assert "frame-ancestors 'none'" in csp
    assert "http:" not in csp and "https:" not in csp and "*" not in csp


# ---------------------------------------------------------------- refused by the server


def test_request_target_over_the_limit_is_a_json_414_and_at_the_limit_is_read(server):
    prefix = "/api/v2/members/"
    at_limit = prefix + "A" * (MAX_REQUEST_TARGET - len(prefix))
    assert len(at_limit) == MAX_REQUEST_TARGET
    read = raw_request(server, get_head(at_limit, "Connection: close\r\n"))
    assert read.status == 400  # the app read it: a tag of 8,176 characters is invalid
    assert read.error()["code"] == "invalid_tag"

    refused = raw_request(server, get_head(at_limit + "A"))
    assert refused.status == 414
    error = refused.error()
    assert error["code"] == "uri_too_long"
    assert str(MAX_REQUEST_TARGET) in error["message"]
    assert refused.headers["connection"] == "close"
    assert_security_headers(refused.headers, "default-src 'none'")


def test_endless_request_line_is_refused_before_it_ends(server):
    # 1 MiB of request target with no end of line: refused after the first 8 KiB
    chunks = [b"GET /api/v2/clans?" + b"a" * 16384] + [b"a" * 16384] * 64
    refused = raw_request(server, *chunks)
    assert refused.status == 414
    assert refused.error()["code"] == "uri_too_long"


def test_too_many_query_parameters_is_a_json_400(http):
    query = "&".join(f"p{i}=1" for i in range(21))
    response = http.get(f"/api/v2/roster?{query}")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "too_many_parameters"
    assert error["message"] == "21 query parameters; this API takes at most 20"


def test_too_many_headers_is_a_json_431(server):
    many = "".join(f"X-H{i}: v\r\n" for i in range(MAX_HEADERS))  # + Host: one too many
    refused = raw_request(server, get_head("/api/v2/clans", many))
    assert refused.status == 431
    assert refused.error()["code"] == "headers_too_large"

    within = "".join(f"X-H{i}: v\r\n" for i in range(MAX_HEADERS - 2)) + "Connection: close\r\n"
    assert raw_request(server, get_head("/api/v2/clans", within)).status == 200


def test_over_large_headers_are_a_json_431_even_when_never_finished(server):
    big = f"X-Big: {'v' * MAX_HEADER_BYTES}\r\n"
    refused = raw_request(server, get_head("/api/v2/clans", big))
    assert refused.status == 431
    assert refused.error()["code"] == "headers_too_large"
    assert_security_headers(refused.headers, "default-src 'none'")

    # one header of 1 MiB that never ends: refused once the head passes its bound
    endless = [b"GET /api/v2/clans HTTP/1.1\r\nHost: t\r\nX-Endless: "] + [b"v" * 16384] * 64
    refused = raw_request(server, *endless)
    assert refused.status == 431
    assert refused.error()["code"] == "headers_too_large"


class QuickHeadTimeout(JsonErrorHttpProtocol):
    head_timeout = 0.5


def test_slow_head_is_a_json_408_and_a_silent_connection_is_closed(edges_db):
    with BackgroundServer(create_app(edges_db, pool_size=1), http=QuickHeadTimeout) as quick:
        with socket.create_connection((quick.host, quick.port), timeout=10) as conn:
            started = time.monotonic()
            conn.sendall(b"GET /api/v2/clans HTTP/1.1\r\nHost: t\r\n")  # and no end
            received = b""
            while data := conn.recv(65536):
                received += data
            assert 0.4 < time.monotonic() - started < 5
        slow = RawResponse(received)
        assert slow.status == 408
        assert slow.error()["code"] == "request_timeout"
        with socket.create_connection((quick.host, quick.port), timeout=10) as conn:
            assert conn.recv(65536) == b""  # closed, nothing said
        # a request within the time is answered, and the connection kept alive after it
        with socket.create_connection((quick.host, quick.port), timeout=10) as conn:
            conn.sendall(get_head("/api/v2/clans"))
            assert conn.recv(65536).startswith(b"HTTP/1.1 200 ")
            time.sleep(0.8)  # longer than the head timeout: it does not run between requests
            conn.sendall(get_head("/api/v2/clans"))
            assert conn.recv(65536).startswith(b"HTTP/1.1 200 ")


@pytest.mark.parametrize(
    ("request_bytes", "reason"),
    [
        (b"GARBAGE\r\n\r\n", "Invalid method"),
        (b"GET /api/v2/clans HTTP/1.1\r\nHost: t\r\nno colon here\r\n\r\n", "header"),
        (b"GET /api/v2/\xff\xfe HTTP/1.1\r\nHost: t\r\n\r\n", "invalid char in url"),
        (b"GET /api/v2/clans HTTP/7.3\r\nHost: t\r\n\r\n", "HTTP"),
        (
            b"GET /api/v2/clans HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n",
            "Content-Length",
        ),
    ],
    ids=["bad-method", "bad-header", "non-ascii-target", "bad-version", "length-and-chunked"],
)
def test_unparseable_request_is_a_json_400(server, request_bytes, reason):
    refused = raw_request(server, request_bytes)
    assert refused.status == 400
    error = refused.error()
    assert error["code"] == "invalid_http_request"
    assert reason.lower() in error["message"].lower(), error["message"]
    assert refused.headers["cache-control"] == "no-store"
    assert_security_headers(refused.headers, "default-src 'none'")


def test_malformed_percent_encoding_is_a_json_error(http):
    bad_tag = http.get("/api/v2/roster?clan=%ZZ")
    assert bad_tag.status_code == 400
    assert bad_tag.json()["error"]["code"] == "invalid_tag"
    assert http.get("/api/v2/roster?clan=%FF%FE").json()["error"]["code"] == "invalid_tag"
    bad_path = http.get("/api/v2/%ZZ")
    assert bad_path.status_code == 404
    assert bad_path.json()["error"]["code"] == "not_found"
    bad_name = http.get("/api/v2/roster?cl%ZZan=1")
    assert bad_name.status_code == 400
    assert bad_name.json()["error"]["code"] == "unknown_parameter"


def test_websocket_upgrade_is_answered_as_a_plain_get(server):
    upgrade = (
        "Connection: Upgrade, close\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    )
    answer = raw_request(server, get_head("/api/v2/clans", upgrade))
    assert answer.status == 200
    assert "clans" in json.loads(answer.body)
    missing = raw_request(server, get_head("/api/v2/socket", upgrade))
    assert missing.status == 404
    assert missing.error()["code"] == "not_found"


# ---------------------------------------------------------------- query parameters


def test_repeated_parameter_is_a_400_naming_it_even_when_revalidating(http):
    one = http.get("/api/v2/roster", params={"clan": CLAN})
    assert one.status_code == 200
    etag = one.headers["etag"]
    for headers in ({}, {"If-None-Match": etag}):  # the 304 shortcut must not answer it either
        twice = http.get(f"/api/v2/roster?clan={CLAN}&clan=%23OTHER", headers=headers)
        assert twice.status_code == 400
        error = twice.json()["error"]
        assert error["code"] == "repeated_parameter"
        assert error["message"] == "query parameter 'clan' given more than once; give it once"
    metric = http.get(f"/api/v2/metrics?clan={CLAN}&metric=ace&window=30d&window=7d")
    assert metric.status_code == 400
    assert "'window'" in metric.json()["error"]["message"]


def test_unknown_parameter_is_a_400_listing_the_allowed_ones(http):
    response = http.get(f"/api/v2/roster?clan={CLAN}&page=2", headers={"If-None-Match": "*"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "unknown_parameter"
    assert error["message"] == "unknown query parameter 'page'; /api/v2/roster takes clan"
    metrics = http.get(f"/api/v2/metrics?clan={CLAN}&metric=ace&windw=30d")
    assert metrics.json()["error"]["message"].endswith("takes clan, metric, window")
    clans = http.get("/api/v2/clans?x=1")
    assert clans.status_code == 400
    assert clans.json()["error"]["message"].endswith("/api/v2/clans takes no query parameters")
    # the dashboard's own page parameters are not the API's
    assert http.get("/dashboard/?poll=0").status_code == 200


# ---------------------------------------------------------------- HEAD


def _head_targets(http: httpx.Client) -> list[str]:
    member = http.get("/api/v2/roster", params={"clan": CLAN}).json()["members"][0]["player_tag"]
    return [
        f"/api/v2/roster?clan={CLAN}",
        "/api/v2/clans",
        f"/api/v2/members/{member.removeprefix('#')}",
        f"/api/v2/metrics?clan={CLAN}&metric=ace&window=30d",
        f"/api/v2/ingestion/health?clan={CLAN}",
        "/api/v2/roster?clan=NOTATAG!",
        "/dashboard/",
        "/dashboard/app.js",
        "/api/docs",
        "/api/docs/static/swagger-ui.css",
        "/api/openapi.json",
        "/",
    ]


def _varying(target: str) -> set[str]:
    """Headers that may differ between two requests (health's body has the time it was built)."""
    return {"date", "content-length"} if "health" in target else {"date"}


def test_head_is_get_without_a_body_on_every_get_route(server, http):
    for target in _head_targets(http):
        got = raw_request(server, get_head(target, "Connection: close\r\n"))
        head_bytes = get_head(target, "Connection: close\r\n").replace(b"GET", b"HEAD", 1)
        head = raw_request(server, head_bytes)
        assert head.status == got.status, target
        assert head.body == b"", target  # nothing after the headers
        varying = _varying(target)
        assert {k: v for k, v in head.headers.items() if k not in varying} == {
            k: v for k, v in got.headers.items() if k not in varying
        }, target
        if "health" not in target:
            assert int(head.headers["content-length"]) == len(got.body), target


def test_head_revalidation_still_gets_304(server, http):
    etag = http.get("/api/v2/roster", params={"clan": CLAN}).headers["etag"]
    target = f"/api/v2/roster?clan={CLAN}"
    head = (
        f"HEAD {target} HTTP/1.1\r\nHost: t\r\nIf-None-Match: {etag}\r\nConnection: close\r\n\r\n"
    )
    answer = raw_request(server, head.encode())
    assert answer.status == 304
    assert answer.headers["etag"] == etag
    assert answer.body == b""
    stale = raw_request(server, head.replace(etag, '"older"').encode())
    assert stale.status == 200
    assert stale.headers["etag"] == etag
    assert stale.body == b""


def test_other_methods_are_a_json_405_naming_get_and_head(http):
    response = http.post(f"/api/v2/roster?clan={CLAN}")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert http.delete("/api/docs").json()["error"]["code"] == "method_not_allowed"


# ---------------------------------------------------------------- docs and headers


def test_swagger_ui_is_served_from_the_app_with_no_external_url(http):
    page = http.get("/api/docs")
    assert page.status_code == 200
    html = page.text
    assert not re.search(r"(https?:)?//[a-z]", html, re.IGNORECASE), html
    assert "<script>" not in html and "<style" not in html and " style=" not in html
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sorted(assets) == [
        "/api/docs/static/favicon-32x32.png",
        "/api/docs/static/swagger-ui-bundle.js",
        "/api/docs/static/swagger-ui.css",
        "/api/docs/swagger-init.js",
    ]
    types = {}
    for asset in assets:
        response = http.get(asset)
        assert response.status_code == 200, asset
        types[asset.rsplit(".", 1)[1]] = response.headers["content-type"].split(";")[0]
    assert types == {"png": "image/png", "js": "text/javascript", "css": "text/css"}
    assert "SwaggerUIBundle" in http.get("/api/docs/static/swagger-ui-bundle.js").text
    init = http.get("/api/docs/swagger-init.js").text
    assert "validatorUrl: null" in init
    assert re.search(r'data-openapi-url="/api/openapi.json"', html)
    assert http.get("/api/openapi.json").json()["info"]["title"] == "clash-pipeline roster API"
    # only the files the page needs
    other = http.get("/api/docs/static/swagger-editor-bundle.js")
    assert other.status_code == 404
    assert other.json()["error"]["code"] == "not_found"


def test_security_headers_on_api_dashboard_docs_and_errors(http):
    assert_security_headers(http.get("/api/v2/clans").headers, "default-src 'none'; base-uri")
    assert_security_headers(http.get("/api/v2/nothing").headers, "default-src 'none'; base-uri")
    dashboard = http.get("/dashboard/")
    csp = dashboard.headers["content-security-policy"]
    assert_security_headers(dashboard.headers, "default-src 'none'; script-src 'self';")
    assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp
    # the CSP allows no inline code: the dashboard's HTML has none
    assert re.findall(r"<script[^>]*>", dashboard.text) == ['<script type="module" src="app.js">']
    assert "<style" not in dashboard.text and " style=" not in dashboard.text
    assert_security_headers(http.get("/dashboard/app.js").headers, "default-src 'none'; script")
    docs = http.get("/api/docs").headers
    assert_security_headers(docs, "default-src 'none'; script-src 'self'; style-src 'self'")
    assert "script-src 'self';" in docs["content-security-policy"]
    redirect = http.get("/", follow_redirects=False)
    assert redirect.status_code == 307
    assert_security_headers(redirect.headers, "default-src 'none'; script-src 'self';")


# chromium, as the dashboard's browser test drives it (skipped where there is none)
browser = dashboard_browser.browser

WATCH_CSP = """
window.__csp = [];
document.addEventListener("securitypolicyviolation",
  (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`));
"""
RESOURCES = "performance.getEntriesByType('resource').map((e) => e.name)"


def test_dashboard_and_swagger_ui_work_in_chromium_under_their_csp(server, http, browser):
    browser.call("Page.addScriptToEvaluateOnNewDocument", source=WATCH_CSP)
    browser.call("Page.navigate", url=f"{server.base_url}/dashboard/?poll=0#/clan/{CLAN}")
    browser.wait_for("document.querySelectorAll('#roster tbody tr').length > 0")
    assert browser.evaluate("window.__csp") == []

    operations = sum(len(item) for item in http.get("/api/openapi.json").json()["paths"].values())
    browser.call("Page.navigate", url=f"{server.base_url}/api/docs")
    browser.wait_for(f"document.querySelectorAll('.opblock').length === {operations}")
    assert browser.evaluate("document.querySelector('.title').textContent").startswith(
        "clash-pipeline roster API"
    )
    # open GET /api/v2/clans, "Try it out", "Execute": the answer is shown
    block = "document.querySelector('[data-path=\"/api/v2/clans\"]').closest('.opblock')"
    browser.evaluate(f"{block}.querySelector('.opblock-summary-control').click()")
    browser.wait_for(f"{block}.querySelector('.try-out__btn') !== null")
    browser.evaluate(f"{block}.querySelector('.try-out__btn').click()")
    browser.wait_for(f"{block}.querySelector('.execute') !== null")
    browser.evaluate(f"{block}.querySelector('.execute').click()")
    status = (
        f"{block}.querySelector('.live-responses-table tbody .response-col_status')?.textContent"
    )
    assert browser.wait_for(status).strip() == "200"
    assert browser.evaluate("window.__csp") == []
    loaded = browser.evaluate(RESOURCES)
    assert f"{server.base_url}/api/openapi.json" in loaded
    assert f"{server.base_url}/api/v2/clans" in loaded
    assert [url for url in loaded if not url.startswith(server.base_url + "/")] == []
    # the watcher sees a violation when there is one: an inline style is refused
    browser.evaluate(
        "document.head.append(Object.assign(document.createElement('style'), {textContent: 'p{}'}))"
    )
    assert browser.wait_for("window.__csp.length && window.__csp") == ["style-src-elem inline"]
