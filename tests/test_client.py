"""ClashClient against a real HTTP server on loopback that serves scripted faults.

The fault server is deliberately tiny and lives here (not in the simulator) so the client's
retry/no-retry matrix is tested on its own: each path gets a script of replies (the last one
repeats), and every request the server saw is recorded with its headers and arrival time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import pickle
import socket
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from clash_pipeline.clash_api import (
    ENDPOINTS,
    AccessDeniedError,
    ApiResponse,
    BadRequestError,
    ClashApiError,
    ClashClient,
    MaintenanceError,
    MalformedResponseError,
    NotFoundError,
    PrivateWarLogError,
    RateLimiter,
    RetryPolicy,
    ServerError,
    ThrottledError,
    TransportError,
    parse_max_age,
)
from clash_pipeline.errors import ClashPipelineError, ConfigError, InvalidTagError
from clash_pipeline.settings import Settings

TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzUxMiJ9.c2VjcmV0LXRva2VuLWZvci10ZXN0cw.Zm9v-SECRET-42"
CLAN = "#2PR8R8V8P"
CLAN_PATH = "/v1/clans/%232PR8R8V8P"
FAST_TIMEOUT = 0.25


# -- the fault server ----------------------------------------------------------------------------


@dataclass
class Reply:
    """One scripted answer. ``body`` may be bytes, text, or a JSON-able object."""

    status: int = 200
    body: object = field(default_factory=lambda: {"ok": True})
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # sleep before answering (longer than the client timeout = a timeout)
    truncate: int | None = None  # send only this many body bytes, then close the connection
    drop: bool = False  # close the connection without answering

    def encoded(self) -> tuple[bytes, str]:
        if isinstance(self.body, bytes):
            return self.body, "application/octet-stream"
        if isinstance(self.body, str):
            kind = "text/html" if self.body.lstrip().startswith("<") else "text/plain"
            return self.body.encode(), f"{kind}; charset=utf-8"
        return json.dumps(self.body).encode(), "application/json; charset=utf-8"


@dataclass
class SeenRequest:
    method: str
    path: str  # raw request target, query included
    version: str
    headers: dict[str, str]
    arrived: float  # time.monotonic()
    client_port: int


def json_error(status: int, reason: str, message: str | None = None, **headers: str) -> Reply:
    body = {"reason": reason} | ({"message": message} if message else {})
    return Reply(status, body, {"Cache-Control": "max-age=600", **headers})


HTML_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "<script>var secret = 1;</script></body>\r\n</html>\r\n"
)
HTML_504 = HTML_502.replace("502 Bad Gateway", "504 Gateway Time-out")
HTML_503 = "<!DOCTYPE html><html><body><h1>Maintenance</h1><p>We'll be back soon!</p></body></html>"


class FaultServer:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scripts: dict[str, list[Reply]] = {}
        self.requests: list[SeenRequest] = []
        fault = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are separate writes

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                fault._serve(self)

            def log_message(self, format: str, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address) -> None:
                pass  # the client hung up on a slow reply: expected in timeout tests

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self.origin = f"http://127.0.0.1:{self.port}"
        self.base_url = f"{self.origin}/v1"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    def script(self, path: str, *replies: Reply) -> None:
        """Replies for a raw path (query excluded), in order; the last one repeats."""
        with self._lock:
            self._scripts[path] = list(replies)

    def seen(self, path: str | None = None) -> list[SeenRequest]:
        with self._lock:
            return [r for r in self.requests if path is None or r.path.split("?")[0] == path]

    def _next_reply(self, path: str) -> Reply:
        with self._lock:
            script = self._scripts.get(path)
            if not script:
                return Reply(200, {"path": path})
            return script.pop(0) if len(script) > 1 else script[0]

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.requests.append(
                SeenRequest(
                    method=handler.command,
                    path=handler.path,
                    version=handler.request_version,
                    headers={k.lower(): v for k, v in handler.headers.items()},
                    arrived=time.monotonic(),
                    client_port=handler.client_address[1],
                )
            )
        reply = self._next_reply(handler.path.split("?")[0])
        if reply.delay:
            time.sleep(reply.delay)
        if reply.drop:
            handler.close_connection = True
            return
        body, content_type = reply.encoded()
        handler.send_response(reply.status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        for name, value in reply.headers.items():
            handler.send_header(name, value)
        if reply.truncate is not None:
            handler.send_header("Connection", "close")
        handler.end_headers()
        handler.wfile.write(body if reply.truncate is None else body[: reply.truncate])
        if reply.truncate is not None:
            handler.close_connection = True

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def server():
    fault = FaultServer()
    yield fault
    fault.close()


@pytest.fixture(autouse=True)
def no_proxy_env(monkeypatch):
    """Loopback must not go through a proxy someone set in the environment."""
    for name in (
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def token_never_logged(caplog):
    """All loggers (httpx and httpcore too) at DEBUG; none may ever log the token."""
    caplog.set_level(logging.DEBUG)
    yield
    assert TOKEN not in caplog.text
    for record in caplog.records:
        assert TOKEN not in record.getMessage()


# -- helpers -------------------------------------------------------------------------------------


class RecordingSleep:
    """The client's sleep: really sleeps (so the server sees the delays) and records them."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(delay)


FAST_RETRY = RetryPolicy(
    max_retries=2,
    base_delay=0.01,
    max_delay=0.04,
    throttle_delay=0.05,
    max_retry_after=1.0,
    jitter=0,
)


def make_client(
    base_url: str,
    *,
    retry: RetryPolicy = FAST_RETRY,
    limiter: RateLimiter | None = None,
    sleep: RecordingSleep | None = None,
    timeout: float = FAST_TIMEOUT,
    **kwargs,
) -> ClashClient:
    return ClashClient(
        base_url=base_url,
        token=TOKEN,
        limiter=limiter or RateLimiter(1000, 4),
        timeout=timeout,
        retry=retry,
        sleep=sleep or RecordingSleep(),
        **kwargs,
    )


def run(coro):
    return asyncio.run(coro)


async def fetch_clan(client: ClashClient, tag: str = CLAN) -> ApiResponse:
    async with client:
        return await client.get_clan(tag)


async def fail(client: ClashClient, call) -> ClashApiError:
    """Run ``call(client)``, expecting a ClashApiError; return it."""
    async with client:
        try:
            await call(client)
        except ClashApiError as exc:
            return exc
    raise AssertionError("no ClashApiError raised")


def assert_token_absent(*objects: object) -> None:
    """The token is in none of str/repr/args/pickle/traceback of errors, nor in records."""
    for obj in objects:
        texts = [str(obj), repr(obj)]
        if isinstance(obj, BaseException):
            texts += [repr(obj.args), "".join(traceback.format_exception(obj))]
            texts.append(repr(vars(obj)))
            if isinstance(obj, ClashApiError):
                texts += [repr(obj.record), str(obj.record.body), obj.hint or ""]
            assert obj.__cause__ is None or TOKEN not in repr(vars(obj.__cause__))
        texts.append(repr(pickle.dumps(obj)))
        for text in texts:
            assert TOKEN not in text


# -- the happy path ------------------------------------------------------------------------------


def test_get_clan_sends_token_only_in_authorization_header(server):
    server.script(
        CLAN_PATH, Reply(200, {"tag": CLAN, "name": "x"}, {"Cache-Control": "max-age=60"})
    )
    client = make_client(server.base_url)
    response = run(fetch_clan(client))

    assert response.data == {"tag": CLAN, "name": "x"}
    (seen,) = server.seen()
    assert seen.path == CLAN_PATH
    assert seen.version == "HTTP/1.1"
    assert seen.headers["authorization"] == f"Bearer {TOKEN}"
    assert TOKEN not in seen.path
    record = response.record
    assert (record.endpoint, record.resource_tag, record.path) == (
        "clan",
        CLAN,
        "/clans/%232PR8R8V8P",
    )
    assert (record.status, record.reason, record.message, record.error) == (200, None, None, None)
    assert (record.attempts, record.retries, record.throttled) == (1, 0, 0)
    assert record.max_age == 60
    assert json.loads(record.body) == response.data
    assert record.requested_at.tzinfo is not None and record.fetched_at >= record.requested_at
    assert record.duration_ms > 0
    assert client.records == [record]
    assert_token_absent(record)
    assert TOKEN not in repr(client)


def test_a_client_serving_many_clans_keeps_no_records(server):
    """keep_records=False (the fetch's client, shared by every clan): the response still
    carries its record, the client keeps none (its memory does not grow with the run)."""
    server.script(CLAN_PATH, Reply(200, {"tag": CLAN, "name": "x"}))
    client = make_client(server.base_url, keep_records=False)
    response = run(fetch_clan(client))
    assert response.record.status == 200 and response.data["name"] == "x"
    assert client.records == []


def test_every_endpoint_path(server):
    async def main():
        async with make_client(server.base_url) as client:
            await client.get_clan(CLAN)
            await client.get_clan_members(CLAN)
            await client.get_player("#2PP")
            await client.get_warlog(CLAN)
            await client.get_warlog(CLAN, limit=5)
            await client.get_current_war(CLAN)
            await client.get_league_group(CLAN)
            await client.get_cwl_war("#8QPG0VGGQ")
            await client.get_capital_raid_seasons(CLAN, limit=2)
            await client.get_league_tiers()
            await client.get_leagues()
            return client.records

    records = run(main())
    t = "%232PR8R8V8P"
    assert [r.path for r in records] == [
        f"/clans/{t}",
        f"/clans/{t}/members",
        "/players/%232PP",
        f"/clans/{t}/warlog",
        f"/clans/{t}/warlog?limit=5",
        f"/clans/{t}/currentwar",
        f"/clans/{t}/currentwar/leaguegroup",
        "/clanwarleagues/wars/%238QPG0VGGQ",
        f"/clans/{t}/capitalraidseasons?limit=2",
        "/leaguetiers",
        "/leagues",
    ]
    assert [r.path for r in server.seen()] == ["/v1" + r.path for r in records]
    assert {r.endpoint for r in records} == set(ENDPOINTS)
    assert records[-1].resource_tag is None


def test_connections_are_reused(server):
    async def main():
        async with make_client(server.base_url) as client:
            for _ in range(3):
                await client.get_clan(CLAN)

    run(main())
    assert len({r.client_port for r in server.seen()}) == 1


@pytest.mark.parametrize("suffix", ["/proxy/v1", "/proxy/v1/"])
def test_proxy_base_url_path_prefix(server, suffix):
    client = make_client(server.origin + suffix)
    run(fetch_clan(client, " 2pr8r8v8p"))
    assert [r.path for r in server.seen()] == ["/proxy/v1/clans/%232PR8R8V8P"]


def test_clock_stamps_every_record_failures_included(server):
    instants = iter([datetime(2025, 10, 8, 5, tzinfo=UTC) + timedelta(seconds=i) for i in range(9)])
    server.script("/v1/players/%232PP", json_error(404, "notFound"))

    async def main():
        async with make_client(server.base_url, clock=lambda: next(instants)) as client:
            await client.get_clan(CLAN)
            with pytest.raises(NotFoundError):
                await client.get_player("#2PP")
            return client.records

    records = run(main())
    assert [r.endpoint for r in records] == ["clan", "player"]
    assert records[0].requested_at == datetime(2025, 10, 8, 5, tzinfo=UTC)
    assert records[0].fetched_at == datetime(2025, 10, 8, 5, 0, 1, tzinfo=UTC)
    assert records[1].status == 404 and records[1].body is None


# -- tags: validated before anything is sent -----------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        (" 2pr8r8v8p", "/v1/clans/%232PR8R8V8P"),
        ("#2pr8r8v8p", "/v1/clans/%232PR8R8V8P"),
        ("%232PR8R8V8P", "/v1/clans/%232PR8R8V8P"),
        ("#2PR8 R8V8P ", "/v1/clans/%232PR8R8V8P"),
        ("#9QLOCOYR", "/v1/clans/%239QL0C0YR"),  # letter O read as zero
    ],
)
def test_good_tags_are_normalised(server, raw, path):
    response = run(fetch_clan(make_client(server.base_url), raw))
    assert [r.path for r in server.seen()] == [path]
    assert response.record.resource_tag == "#" + path.rsplit("%23", 1)[1]


BAD_TAGS = ["#2PP/../../x", "#2PP?x=1", "%2e%2e", "'; drop table", "", "#", "#2P", "#ABC", None, 42]


@pytest.mark.parametrize("bad", BAD_TAGS)
def test_bad_tags_raise_before_any_request(server, bad):
    async def main():
        async with make_client(server.base_url) as client:
            with pytest.raises(InvalidTagError) as info:
                await client.get_clan(bad)
            with pytest.raises(InvalidTagError):
                await client.get_player(bad)
            with pytest.raises(InvalidTagError):
                await client.get_cwl_war(bad)
            return info.value, client.records

    error, records = run(main())
    assert server.seen() == []
    assert records == []
    assert isinstance(error, ClashPipelineError) and error.hint


def test_cwl_placeholder_war_tag_is_refused(server):
    async def main():
        async with make_client(server.base_url) as client:
            with pytest.raises(InvalidTagError, match="placeholder") as info:
                await client.get_cwl_war("#0")
            return info.value

    error = run(main())
    assert "#0" in str(error)
    assert server.seen() == []


def test_wrong_arguments_are_programming_errors(server):
    async def main():
        async with make_client(server.base_url) as client:
            with pytest.raises(ValueError, match="unknown endpoint"):
                await client.request("clans/../admin", CLAN)
            with pytest.raises(ValueError, match="takes no tag"):
                await client.request("leaguetiers", CLAN)
            with pytest.raises(ValueError, match="limit"):
                await client.get_warlog(CLAN, limit=0)
            with pytest.raises(ValueError, match="parameter"):
                await client.request("warlog", CLAN, params={"a&b": 1})

    run(main())
    assert server.seen() == []


def test_query_params_are_encoded(server):
    async def main():
        async with make_client(server.base_url) as client:
            return await client.request("warlog", CLAN, params={"after": "a b&c=d", "limit": 3})

    response = run(main())
    assert response.record.path == "/clans/%232PR8R8V8P/warlog?after=a+b%26c%3Dd&limit=3"
    assert server.seen()[0].path == "/v1" + response.record.path


# -- retried faults: recover, or exhaust ---------------------------------------------------------

TRANSIENT = {
    "500": (json_error(500, "unknownException", "Unknown error"), ServerError),
    "502-html": (Reply(502, HTML_502), ServerError),
    "504-html": (Reply(504, HTML_504), ServerError),
    "timeout": (Reply(200, {"late": True}, delay=FAST_TIMEOUT + 0.3), TransportError),
    "dropped": (Reply(drop=True), TransportError),
    "malformed-json": (Reply(200, b'{"tag": "#2PR8R8V8P", "name": '), MalformedResponseError),
    "json-list": (Reply(200, []), MalformedResponseError),
    "html-200": (Reply(200, "<html>proxy login</html>"), MalformedResponseError),
    "truncated": (
        Reply(200, {"tag": CLAN, "memberList": [1] * 50}, truncate=20),
        MalformedResponseError,
    ),
}


@pytest.mark.parametrize("fault", list(TRANSIENT))
def test_transient_fault_is_retried_then_succeeds(server, fault):
    reply, _ = TRANSIENT[fault]
    server.script(
        CLAN_PATH, reply, reply, Reply(200, {"tag": CLAN}, {"Cache-Control": "max-age=120"})
    )
    sleep = RecordingSleep()
    response = run(fetch_clan(make_client(server.base_url, sleep=sleep)))

    assert response.data == {"tag": CLAN}
    assert len(server.seen(CLAN_PATH)) == 3
    record = response.record
    assert (record.status, record.attempts, record.retries, record.throttled) == (200, 3, 2, 0)
    assert record.max_age == 120 and record.error is None
    assert sleep.delays == pytest.approx([0.01, 0.02])  # base·2^n, no jitter in this policy


@pytest.mark.parametrize("fault", list(TRANSIENT))
def test_transient_fault_exhausts_retries_into_typed_error(server, fault):
    reply, error_cls = TRANSIENT[fault]
    server.script(CLAN_PATH, reply)
    client = make_client(server.base_url)
    error = run(fail(client, lambda c: c.get_clan(CLAN)))

    assert type(error) is error_cls
    assert error.retryable
    assert len(server.seen(CLAN_PATH)) == FAST_RETRY.max_retries + 1
    record = error.record
    assert record.attempts == FAST_RETRY.max_retries + 1
    assert record.retries == FAST_RETRY.max_retries
    assert record.body is None and record.error and error_cls.__name__ in record.error
    assert client.records == [record]
    assert str(error).startswith("GET /clans/{clanTag} #2PR8R8V8P failed after 3 attempts: ")
    assert "\n" not in error.message
    assert "<" not in str(error) and "secret" not in str(error)  # no raw HTML
    assert error.hint
    assert_token_absent(error)


def test_html_error_body_becomes_short_snippet(server):
    server.script(CLAN_PATH, Reply(502, HTML_502))
    error = run(fail(make_client(server.base_url), lambda c: c.get_clan(CLAN)))
    assert error.reason == "unknown"
    assert error.api_message == "502 Bad Gateway"
    assert error.status == 502


def test_connection_refused_is_transport_error_naming_host_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sleep = RecordingSleep()
    client = make_client(f"http://127.0.0.1:{port}/v1", sleep=sleep)
    error = run(fail(client, lambda c: c.get_clan(CLAN)))

    assert type(error) is TransportError
    assert error.status is None and error.reason == "connectError"
    assert error.record.error.startswith(f"TransportError: could not connect to 127.0.0.1:{port}")
    assert error.attempts == FAST_RETRY.max_retries + 1
    assert f"127.0.0.1:{port}" in error.message
    assert "COC_API_BASE_URL" in error.hint
    assert sleep.delays == pytest.approx([0.01, 0.02])
    assert_token_absent(error)


def test_timeout_error_message(server):
    server.script(CLAN_PATH, Reply(200, delay=FAST_TIMEOUT + 0.3))
    error = run(fail(make_client(server.base_url), lambda c: c.get_clan(CLAN)))
    assert error.reason == "timeout"
    assert f"timed out after {FAST_TIMEOUT:g} s" in error.message
    assert f"127.0.0.1:{server.port}" in error.message
    assert "COC_TIMEOUT_SECONDS" in error.hint


def test_backoff_is_capped_and_jittered():
    policy = RetryPolicy(base_delay=0.5, max_delay=20.0, jitter=0.5)
    for n in range(10):
        full = min(20.0, 0.5 * 2**n)
        for _ in range(20):
            assert 0.5 * full <= policy.backoff(n) <= full
    assert RetryPolicy(jitter=0).backoff(10) == 20.0
    assert RetryPolicy(jitter=0).backoff(0) == 0.5
    assert RetryPolicy().throttle(None) == 30.0
    assert RetryPolicy().throttle(45) == 45
    assert RetryPolicy().throttle(3600) == 120.0
    with pytest.raises(ValueError):
        RetryPolicy(jitter=2)


# -- 429 / 503: cool down the whole run ----------------------------------------------------------


def test_429_with_retry_after_waits_and_pauses_limiter(server):
    throttled = json_error(
        429, "requestThrottled", "Request was throttled", **{"Retry-After": "0.2"}
    )
    server.script(CLAN_PATH, throttled, Reply(200, {"tag": CLAN}))
    other = "/v1/clans/%239QL0C0YR"
    limiter = RateLimiter(1000, 4)
    sleep = RecordingSleep()

    async def main():
        async with make_client(server.base_url, limiter=limiter, sleep=sleep) as client:

            async def later():
                while limiter.pauses == 0:  # start while the first request cools down
                    await asyncio.sleep(0.005)
                return await client.get_clan("#9QL0C0YR")

            started = time.monotonic()
            first, second = await asyncio.gather(client.get_clan(CLAN), later())
            return first, second, time.monotonic() - started

    first, second, elapsed = run(main())
    assert sleep.delays == [0.2]
    assert elapsed >= 0.19
    assert limiter.pauses == 1
    record = first.record
    assert (record.status, record.attempts, record.retries, record.throttled) == (200, 2, 1, 1)
    throttled_at = server.seen(CLAN_PATH)[0].arrived
    # The other request was not throttled itself, yet waited for the run-wide cool-down.
    assert server.seen(other)[0].arrived >= throttled_at + 0.19
    assert second.record.throttled == 0


def test_429_without_retry_after_uses_throttle_delay(server):
    server.script(CLAN_PATH, json_error(429, "requestThrottled"), Reply(200, {"tag": CLAN}))
    sleep = RecordingSleep()
    response = run(fetch_clan(make_client(server.base_url, sleep=sleep)))
    assert sleep.delays == [FAST_RETRY.throttle_delay]
    assert response.record.throttled == 1


def test_retry_after_is_capped(server):
    server.script(
        CLAN_PATH, json_error(429, "requestThrottled", **{"Retry-After": "3600"}), Reply()
    )
    sleep = RecordingSleep()
    policy = RetryPolicy(max_retries=1, max_retry_after=0.05, jitter=0)
    run(fetch_clan(make_client(server.base_url, sleep=sleep, retry=policy)))
    assert sleep.delays == [0.05]


def test_429_exhausted_is_throttled_error(server):
    server.script(CLAN_PATH, json_error(429, "requestThrottled", **{"Retry-After": "0.01"}))
    limiter = RateLimiter(1000, 4)
    error = run(fail(make_client(server.base_url, limiter=limiter), lambda c: c.get_clan(CLAN)))
    assert type(error) is ThrottledError
    assert error.reason == "requestThrottled"
    assert error.record.throttled == error.record.attempts == 3
    assert error.record.max_age == 600
    assert limiter.pauses == 3  # the last 429 too: the rest of the run still cools down
    assert "COC_REQUESTS_PER_SECOND" in error.hint
    assert_token_absent(error)


def test_503_maintenance_with_retry_after_then_success(server):
    maintenance = json_error(503, "inMaintenance", "Maintenance break", **{"Retry-After": "0.1"})
    server.script(CLAN_PATH, maintenance, Reply(200, {"tag": CLAN}))
    limiter = RateLimiter(1000, 4)
    sleep = RecordingSleep()
    response = run(fetch_clan(make_client(server.base_url, limiter=limiter, sleep=sleep)))
    assert sleep.delays == [0.1]
    assert limiter.pauses == 1
    assert (response.record.attempts, response.record.retries, response.record.throttled) == (
        2,
        1,
        0,
    )


def test_503_html_exhausted_is_maintenance_error(server):
    server.script(CLAN_PATH, Reply(503, HTML_503, {"Retry-After": "0"}))
    error = run(fail(make_client(server.base_url), lambda c: c.get_clan(CLAN)))
    assert type(error) is MaintenanceError
    assert error.attempts == 3
    assert error.reason == "unknown"
    assert error.api_message == "Maintenance We'll be back soon!"
    assert_token_absent(error)


# -- answers: never retried ----------------------------------------------------------------------

NOT_RETRIED = [
    # (endpoint call, path, reply, error class, reason)
    (
        lambda c: c.get_leagues(),
        "/v1/leagues",
        json_error(400, "badRequest", "Unknown value for parameter leagueId"),
        BadRequestError,
        "badRequest",
    ),
    (
        lambda c: c.get_clan(CLAN),
        CLAN_PATH,
        json_error(403, "accessDenied", "Invalid authorization"),
        AccessDeniedError,
        "accessDenied",
    ),
    (
        lambda c: c.get_warlog(CLAN),
        CLAN_PATH + "/warlog",
        json_error(403, "accessDenied"),
        PrivateWarLogError,
        "accessDenied",
    ),
    (
        lambda c: c.get_current_war(CLAN),
        CLAN_PATH + "/currentwar",
        json_error(403, "accessDenied"),
        PrivateWarLogError,
        "accessDenied",
    ),
    (
        lambda c: c.get_warlog(CLAN),
        CLAN_PATH + "/warlog",
        json_error(403, "accessDenied.invalidIp", "Invalid authorization: API key does not allow"),
        AccessDeniedError,
        "accessDenied.invalidIp",
    ),
    (
        lambda c: c.get_player("#2PP"),
        "/v1/players/%232PP",
        Reply(
            404,
            {"reason": "notFound", "message": "Not found with tag 2PP"},
            {"Cache-Control": "public max-age=600"},
        ),
        NotFoundError,
        "notFound",
    ),
    (
        lambda c: c.get_clan(CLAN),
        CLAN_PATH,
        Reply(302, b"", {"Location": "http://evil.example/steal"}),
        ClashApiError,
        "unknown",
    ),
]


@pytest.mark.parametrize(
    ("call", "path", "reply", "error_cls", "reason"),
    NOT_RETRIED,
    ids=["400", "403-clan", "403-warlog", "403-currentwar", "403-invalidIp", "404", "302"],
)
def test_answers_are_not_retried(server, call, path, reply, error_cls, reason):
    server.script(path, reply)
    sleep = RecordingSleep()
    client = make_client(server.base_url, sleep=sleep)
    error = run(fail(client, call))

    assert type(error) is error_cls
    assert not error.retryable
    assert error.reason == reason and error.status == reply.status
    assert len(server.seen()) == 1 and sleep.delays == []
    assert (error.attempts, error.record.retries) == (1, 0)
    assert error.record.max_age == (600 if reply.status != 302 else None)
    assert client.records == [error.record]
    assert_token_absent(error)


def test_404_message_and_record(server):
    sample = {"reason": "notFound", "message": "Not found with tag 2PP"}
    server.script("/v1/players/%232PP", Reply(404, sample, {"Cache-Control": "public max-age=600"}))
    error = run(fail(make_client(server.base_url), lambda c: c.get_player("#2pp")))
    assert (
        error.message
        == "GET /players/{playerTag} #2PP failed: 404 notFound - Not found with tag 2PP"
    )
    assert "check it in the game" in error.hint
    assert (error.endpoint, error.resource_tag) == ("player", "#2PP")
    assert (error.record.reason, error.record.message) == ("notFound", "Not found with tag 2PP")
    assert error.record.error == "NotFoundError: 404 notFound"
    assert error.record.path == "/players/%232PP"


def test_403_hints(server):
    server.script(CLAN_PATH + "/warlog", json_error(403, "accessDenied"))
    server.script(CLAN_PATH, json_error(403, "accessDenied.invalidIp", "Invalid authorization"))
    private = run(fail(make_client(server.base_url), lambda c: c.get_warlog(CLAN)))
    invalid_ip = run(fail(make_client(server.base_url), lambda c: c.get_clan(CLAN)))
    assert isinstance(private, AccessDeniedError)
    assert "war log is private" in private.hint
    assert not isinstance(invalid_ip, PrivateWarLogError)
    assert "COC_API_TOKEN" in invalid_ip.hint
    assert "IP" in invalid_ip.hint and "COC_API_BASE_URL" in invalid_ip.hint


def test_league_group_404_means_not_in_cwl(server):
    server.script(CLAN_PATH + "/currentwar/leaguegroup", json_error(404, "notFound"))
    error = run(fail(make_client(server.base_url), lambda c: c.get_league_group(CLAN)))
    assert type(error) is NotFoundError
    assert "not in a Clan War League" in error.hint


def test_redirect_is_not_followed(server):
    server.script(CLAN_PATH, Reply(301, b"", {"Location": f"{server.origin}/elsewhere"}))
    error = run(fail(make_client(server.base_url), lambda c: c.get_clan(CLAN)))
    assert error.status == 301
    assert [r.path for r in server.seen()] == [CLAN_PATH]


# -- the token never leaks -----------------------------------------------------------------------


def test_token_echoed_by_a_gateway_is_scrubbed(server):
    echo = f"<html><body>Bad header Authorization: Bearer {TOKEN}</body></html>"
    server.script(CLAN_PATH, Reply(502, echo))
    server.script("/v1/players/%232PP", json_error(404, "notFound", f"bad token {TOKEN}"))
    error = run(fail(make_client(server.base_url), lambda c: c.get_clan(CLAN)))
    error_404 = run(fail(make_client(server.base_url), lambda c: c.get_player("#2PP")))
    assert "***" in error.api_message and "***" in error_404.api_message
    assert_token_absent(error, error_404)


def test_errors_pickle_without_losing_details(server):
    server.script(CLAN_PATH, json_error(404, "notFound"))
    error = run(fail(make_client(server.base_url), lambda c: c.get_clan(CLAN)))
    clone = pickle.loads(pickle.dumps(error))
    assert type(clone) is NotFoundError
    assert (clone.message, clone.hint, clone.record) == (error.message, error.hint, error.record)


def test_malformed_token_is_refused_without_echo():
    with pytest.raises(ConfigError) as info:
        ClashClient(
            base_url="https://api.clashofclans.com/v1", token="abc\ndef", limiter=RateLimiter(1, 1)
        )
    assert "abc" not in str(info.value)


def test_bearer_prefix_is_tolerated(server):
    client = ClashClient(
        base_url=server.base_url, token=f"Bearer {TOKEN}", limiter=RateLimiter(1000, 1)
    )
    run(fetch_clan(client))
    assert server.seen()[0].headers["authorization"] == f"Bearer {TOKEN}"


# -- settings ------------------------------------------------------------------------------------


def test_from_settings_requires_token(monkeypatch):
    monkeypatch.delenv("COC_API_TOKEN", raising=False)
    settings = Settings(_env_file=None)
    with pytest.raises(ConfigError, match="COC_API_TOKEN"):
        ClashClient.from_settings(settings)


def test_from_settings_uses_every_setting(server, monkeypatch):
    monkeypatch.delenv("COC_API_TOKEN", raising=False)
    settings = Settings(
        _env_file=None,
        coc_api_token=TOKEN,
        coc_api_base_url=server.origin + "/proxy/v1",
        coc_requests_per_second=50,
        coc_max_concurrency=3,
        coc_timeout_seconds=2,
        coc_max_retries=1,
    )
    client = ClashClient.from_settings(settings)
    assert client.limiter.requests_per_second == 50 and client.limiter.max_concurrency == 3
    assert client.timeout == 2 and client.retry.max_retries == 1
    assert TOKEN not in repr(client)
    run(fetch_clan(client))
    assert server.seen()[0].path == "/proxy/v1/clans/%232PR8R8V8P"
    assert server.seen()[0].headers["authorization"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize("bad", ["ftp://x/v1", "not a url", "https://api.example/v1?key=1"])
def test_bad_base_url_is_config_error(bad):
    with pytest.raises(ConfigError, match="COC_API_BASE_URL"):
        ClashClient(base_url=bad, token=TOKEN, limiter=RateLimiter(1, 1))


# -- Cache-Control -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("max-age=600", 600),
        ("public max-age=60", 60),
        ("public, max-age=120", 120),
        ("Max-Age = 30, must-revalidate", 30),
        ('max-age="90"', 90),
        ("s-maxage=10, max-age=20", 20),
        ("s-maxage=10", None),
        ("no-cache", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_max_age(header, expected):
    assert parse_max_age(header) == expected


def test_max_age_recorded_end_to_end(server):
    server.script(CLAN_PATH, Reply(200, {"tag": CLAN}, {"Cache-Control": "public max-age=60"}))
    response = run(fetch_clan(make_client(server.base_url)))
    assert response.record.max_age == 60


def test_client_logs_endpoint_and_status(server, caplog):
    run(fetch_clan(make_client(server.base_url)))
    lines = [r.getMessage() for r in caplog.records if r.name == "clash_pipeline.coc"]
    assert any("clan #2PR8R8V8P -> 200" in line for line in lines)


# ------------------------------------------------------------------ parsing bodies (orjson)


@pytest.mark.parametrize(
    "body",
    [
        b'{"a": 1, "b": [1.5, -0.0, 1e-07], "name": "\\u00e9\\ud83d\\ude00 \xe2\x80\xa8"}',
        b'{"big": 123456789012345678901234567890}',  # beyond 64 bits: orjson refuses
        b'{"x": NaN, "y": Infinity}',  # not JSON, but json.loads takes it
        b'\xef\xbb\xbf{"bom": true}',  # a UTF-8 byte-order mark
        '{"utf16": 1}'.encode("utf-16"),
        b'{"dup": 1, "dup": 2}',
    ],
)
def test_a_body_parses_to_what_json_loads_gives(body):
    from clash_pipeline.clash_api import json_body

    assert json_body.loads(body) == json.loads(body)


@pytest.mark.parametrize("body", [b"", b"{", b"<html>", b'{"a": "\xff"}'])
def test_a_broken_body_is_refused_as_json_loads_refuses_it(body):
    from clash_pipeline.clash_api import json_body

    with pytest.raises(ValueError) as ours:
        json_body.loads(body)
    with pytest.raises(ValueError) as theirs:
        json.loads(body)
    assert type(ours.value) is type(theirs.value)


def test_every_sample_parses_as_json_loads_parses_it(samples_dir):
    from clash_pipeline.clash_api import json_body

    files = sorted(samples_dir.rglob("*.json"))
    assert files
    for path in files:
        raw = path.read_bytes()
        assert json_body.loads(raw) == json.loads(raw), path


def test_integers_beyond_64_bits_stay_integers():
    from clash_pipeline.clash_api import json_body

    for digits in ("9223372036854775808", "-9223372036854775809", "18446744073709551616"):
        assert json_body.loads(f'{{"n": {digits}}}'.encode()) == {"n": int(digits)}
        assert json_body.loads(f'{{"n": {digits}}}') == {"n": int(digits)}
