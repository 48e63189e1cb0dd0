"""The async Clash of Clans API client.

One :class:`ClashClient` per run: one pooled ``httpx.AsyncClient`` (HTTP/1.1, no redirects, the
usual proxy environment variables honoured) and one shared
:class:`~clash_pipeline.clash_api.ratelimit.RateLimiter`.
Every logical request, successful or not, produces one :class:`FetchRecord` for the fetch log.

Retry rules (see :class:`RetryPolicy`), following the API's community practice:

- 500/502/504 (and other 5xx except 503), timeouts, connection errors, and 2xx bodies that are not
  a JSON object (truncated, a proxy's HTML) are transient: exponential back-off with jitter;
- 429 and 503 mean "slow down": wait ``Retry-After`` (or ``throttle_delay``) and pause the shared
  limiter so the whole run cools down, not just this request;
- 400/403/404 (and any other status) are answers, never retried.

The token lives only in the ``Authorization`` header of the httpx client. Records, errors and logs
are built from the path, status and sanitised body fields, and body-derived text is scrubbed of the
token in case a gateway echoes it.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import httpx

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
from clash_pipeline.clash_api.ratelimit import RateLimiter
from clash_pipeline.clash_api.tags import normalize_tag, tag_path
from clash_pipeline.errors import ConfigError, InvalidTagError

__all__ = [
    "ENDPOINTS",
    "ApiResponse",
    "ClashClient",
    "FetchRecord",
    "RetryPolicy",
    "parse_max_age",
    "utc_now",
]

logger = logging.getLogger("clash_pipeline.coc")

ENDPOINTS: dict[str, str] = {
    "clan": "/clans/{tag}",
    "clan_members": "/clans/{tag}/members",
    "player": "/players/{tag}",
    "warlog": "/clans/{tag}/warlog",
    "currentwar": "/clans/{tag}/currentwar",
    "leaguegroup": "/clans/{tag}/currentwar/leaguegroup",
    "cwl_war": "/clanwarleagues/wars/{tag}",
    "capitalraidseasons": "/clans/{tag}/capitalraidseasons",
    "leaguetiers": "/leaguetiers",
    "leagues": "/leagues",
}

# What kind of tag each endpoint takes (for error messages and the displayed path template).
_TAG_KINDS: dict[str, str] = {"player": "player", "cwl_war": "war"}
# Endpoints where a 403 ``accessDenied`` with an otherwise valid token means a private war log.
_WAR_ENDPOINTS = frozenset({"warlog", "currentwar", "leaguegroup", "cwl_war"})
# The API sends war tag "#0" for CWL wars that are not scheduled yet.
_PLACEHOLDER_WAR_TAGS = frozenset({"#0", "0", "%230"})

_MAX_AGE_RE = re.compile(r"(?<![\w-])max-age\s*=\s*\"?(\d+)", re.IGNORECASE)
_PARAM_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}$")
_SNIPPET_CHARS = 100


def utc_now() -> datetime:
    """The default clock of records: timezone-aware UTC."""
    return datetime.now(UTC)


@dataclass
class FetchRecord:
    """One logical request (after retries), as the fetch log stores it.

    ``path`` is relative to the base URL and includes the query string (never a token).
    ``duration_ms`` runs from the start of the first attempt to the end of the last one, so it
    includes back-off waits; ``requested_at``/``fetched_at`` are the same instants on the client's
    clock.
    """

    endpoint: str
    resource_tag: str | None
    path: str
    status: int | None
    reason: str | None
    message: str | None
    requested_at: datetime
    fetched_at: datetime
    duration_ms: float
    attempts: int
    retries: int
    throttled: int
    max_age: int | None
    body: bytes | None = field(default=None, repr=False)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class ApiResponse:
    """A successful response: its record (with the raw body) and the parsed JSON object."""

    record: FetchRecord
    data: dict[str, Any]


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try. Frozen so one default instance can be shared safely.

    ``jitter`` is the fraction of a back-off delay that is randomised ("full jitter" at 1.0): the
    delay is drawn from ``[d·(1-jitter), d]`` so concurrent failures do not retry in lock-step.
    ``throttle_delay`` is the cool-down after a 429/503 that carries no ``Retry-After``.
    """

    max_retries: int = 4
    base_delay: float = 0.5
    max_delay: float = 20.0
    throttle_delay: float = 30.0
    max_retry_after: float = 120.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if min(self.base_delay, self.max_delay, self.throttle_delay, self.max_retry_after) < 0:
            raise ValueError("retry delays must be >= 0")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError("jitter must be within [0, 1]")

    def backoff(self, retry_number: int, rng: random.Random | None = None) -> float:
        """Delay before retry ``retry_number`` (0-based) of a transient failure."""
        delay = min(self.max_delay, self.base_delay * (2.0**retry_number))
        if self.jitter:
            delay *= 1.0 - self.jitter * (rng or random).random()
        return delay

    def throttle(self, retry_after: float | None) -> float:
        """Delay after a 429/503: the server's ``Retry-After`` (capped) or ``throttle_delay``."""
        if retry_after is None:
            return min(self.throttle_delay, self.max_retry_after)
        return min(max(0.0, retry_after), self.max_retry_after)


@dataclass
class _Attempt:
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


class ClashClient:
    """Async client for the endpoints the pipeline uses, with retries, pacing and a fetch log.

    Use as ``async with ClashClient.from_settings(settings) as client:``; ``records`` lists every
    request made, in completion order, and ``on_record`` (if given) is called with each one as it
    completes, before a failure is raised.
    """

    def __init__(
        self,
        *,
        base_url: str,
        token: str,
        limiter: RateLimiter,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        clock: Callable[[], datetime] = utc_now,
        on_record: Callable[[FetchRecord], None] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self._base_url = _check_base_url(base_url)
        parts = urlsplit(self._base_url)
        default_port = 443 if parts.scheme == "https" else 80
        self._host_port = f"{parts.hostname}:{parts.port or default_port}"
        token = _check_token(token)
        self._token = token
        if not timeout > 0:
            raise ValueError("timeout must be > 0")
        self.limiter = limiter
        self.timeout = float(timeout)
        self.retry = retry or RetryPolicy()
        self._clock = clock
        self._on_record = on_record
        self._sleep = sleep
        self._rng = random.Random()  # jitter only, not security
        self.records: list[FetchRecord] = []
        pool = limiter.max_concurrency
        self._http = httpx.AsyncClient(
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/json",
                "User-Agent": "clash-pipeline (+httpx)",
            },
            timeout=httpx.Timeout(self.timeout),
            limits=httpx.Limits(max_connections=pool, max_keepalive_connections=pool),
            follow_redirects=False,  # a redirect must never carry the token elsewhere
            http1=True,
            http2=False,
            trust_env=True,
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"ClashClient(base_url={self._base_url!r})"

    @classmethod
    def from_settings(
        cls,
        settings: Any,
        *,
        limiter: RateLimiter | None = None,
        clock: Callable[[], datetime] = utc_now,
        on_record: Callable[[FetchRecord], None] | None = None,
    ) -> ClashClient:
        """Build a client from the settings (ConfigError if no token)."""
        token = settings.api_token()
        if not token:
            raise ConfigError(
                "COC_API_TOKEN is not set",
                hint="create a token for this machine's IP at https://developer.clashofclans.com "
                "and put it in COC_API_TOKEN (environment or .env), or run the demo",
            )
        if limiter is None:
            limiter = RateLimiter(settings.coc_requests_per_second, settings.coc_max_concurrency)
        return cls(
            base_url=settings.coc_api_base_url,
            token=token,
            limiter=limiter,
            timeout=settings.coc_timeout_seconds,
            retry=RetryPolicy(max_retries=settings.coc_max_retries),
            clock=clock,
            on_record=on_record,
        )

    async def __aenter__(self) -> ClashClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    # -- endpoints ---------------------------------------------------------------------------

    async def get_clan(self, tag: str) -> ApiResponse:
        return await self.request("clan", tag)

    async def get_clan_members(self, tag: str) -> ApiResponse:
        return await self.request("clan_members", tag)

    async def get_player(self, tag: str) -> ApiResponse:
        return await self.request("player", tag)

    async def get_warlog(self, tag: str, limit: int | None = None) -> ApiResponse:
        return await self.request("warlog", tag, params=_limit_params(limit))

    async def get_current_war(self, tag: str) -> ApiResponse:
        return await self.request("currentwar", tag)

    async def get_league_group(self, tag: str) -> ApiResponse:
        return await self.request("leaguegroup", tag)

    async def get_cwl_war(self, war_tag: str) -> ApiResponse:
        return await self.request("cwl_war", war_tag)

    async def get_capital_raid_seasons(self, tag: str, limit: int | None = None) -> ApiResponse:
        return await self.request("capitalraidseasons", tag, params=_limit_params(limit))

    async def get_league_tiers(self) -> ApiResponse:
        return await self.request("leaguetiers")

    async def get_leagues(self) -> ApiResponse:
        return await self.request("leagues")

    # -- the request loop --------------------------------------------------------------------

    async def request(
        self,
        endpoint: str,
        tag: str | None = None,
        *,
        params: dict[str, str | int] | None = None,
    ) -> ApiResponse:
        """GET one endpoint, retrying what is transient; raise a ClashApiError subclass otherwise.

        The tag is validated before anything is sent (InvalidTagError, no request made).
        """
        resource_tag, path = self._build_path(endpoint, tag, params)
        url = self._base_url + path
        policy = self.retry
        attempts = retries = throttled = 0
        requested_at: datetime | None = None
        started = 0.0
        while True:
            async with self.limiter:
                if requested_at is None:
                    requested_at = self._clock()
                    started = time.perf_counter()
                attempts += 1
                attempt_started = time.perf_counter()
                outcome = await self._attempt(endpoint, url)
            logger.debug(
                "GET %s %s -> %s in %.0f ms (attempt %d)",
                endpoint,
                resource_tag or "-",
                outcome.status if outcome.status is not None else "no response",
                (time.perf_counter() - attempt_started) * 1000,
                attempts,
            )
            if outcome.error_cls is None:
                break
            if outcome.status == 429:
                throttled += 1
            if outcome.status in (429, 503):
                # The whole run cools down, even when this request has no retries left.
                delay = policy.throttle(outcome.retry_after)
                self.limiter.pause(delay)
            else:
                delay = policy.backoff(retries, self._rng)
            if not outcome.error_cls.retryable or retries >= policy.max_retries:
                break
            retries += 1
            logger.warning(
                "GET %s %s -> %s; retry %d/%d in %.2f s",
                endpoint,
                resource_tag or "-",
                outcome.status if outcome.status is not None else outcome.error_cls.__name__,
                retries,
                policy.max_retries,
                delay,
            )
            await self._sleep(delay)

        assert requested_at is not None
        error_cls = outcome.error_cls
        record = FetchRecord(
            endpoint=endpoint,
            resource_tag=resource_tag,
            path=path,
            status=outcome.status,
            reason=outcome.reason,
            message=outcome.message,
            requested_at=requested_at,
            fetched_at=self._clock(),
            duration_ms=(time.perf_counter() - started) * 1000,
            attempts=attempts,
            retries=retries,
            throttled=throttled,
            max_age=outcome.max_age,
            body=outcome.body if error_cls is None else None,
            error=None if error_cls is None else _error_summary(error_cls, outcome),
        )
        self.records.append(record)
        if self._on_record is not None:
            self._on_record(record)
        if error_cls is None:
            assert outcome.data is not None
            return ApiResponse(record=record, data=outcome.data)
        message, hint = self._describe_failure(error_cls, record, outcome)
        raise error_cls(message, hint, record=record)

    def _build_path(
        self, endpoint: str, tag: str | None, params: dict[str, str | int] | None
    ) -> tuple[str | None, str]:
        try:
            template = ENDPOINTS[endpoint]
        except KeyError:
            raise ValueError(
                f"unknown endpoint {endpoint!r}; known: {', '.join(ENDPOINTS)}"
            ) from None
        resource_tag: str | None = None
        if "{tag}" in template:
            kind = f"{_TAG_KINDS.get(endpoint, 'clan')} tag"
            if tag is None:
                raise InvalidTagError(f"{endpoint} needs a {kind}", hint="e.g. #2PR8R8V8P")
            if (
                endpoint == "cwl_war"
                and isinstance(tag, str)
                and "".join(tag.split()).upper() in _PLACEHOLDER_WAR_TAGS
            ):
                raise InvalidTagError(
                    "war tag #0 is the placeholder for a CWL war that is not scheduled yet",
                    hint="skip wars tagged #0 in the league group; fetch them once they get a tag",
                )
            resource_tag = normalize_tag(tag, kind=kind)
            path = template.format(tag=tag_path(resource_tag))
        else:
            if tag is not None:
                raise ValueError(f"endpoint {endpoint!r} takes no tag")
            path = template
        query = _encode_params(params)
        return resource_tag, f"{path}?{query}" if query else path

    async def _attempt(self, endpoint: str, url: str) -> _Attempt:
        """One HTTP attempt. Never raises for network/HTTP failures: it returns them as data,
        so the error raised later has no httpx exception (and its request) in its context."""
        status: int | None = None
        headers = httpx.Headers()
        try:
            # httpx's timeout is per phase (connect, each read…); this caps a server that trickles.
            async with asyncio.timeout(self.timeout * 3):
                async with self._http.stream("GET", url) as response:
                    status, headers = response.status_code, response.headers
                    body = await response.aread()
        except (httpx.TimeoutException, TimeoutError):
            return _Attempt(
                status=status,
                error_cls=TransportError,
                reason="timeout",
                transport_detail=f"timed out after {self.timeout:g} s talking to {self._host_port}",
            )
        except httpx.DecodingError:
            return _Attempt(
                status=status,
                error_cls=MalformedResponseError,
                reason="malformedBody",
                message="the response body could not be decoded",
            )
        except httpx.ConnectError as exc:
            return _Attempt(
                error_cls=TransportError,
                reason="connectError",
                transport_detail=f"could not connect to {self._host_port} "
                f"({self._scrub(str(exc)) or 'connection refused'})",
            )
        except httpx.RequestError as exc:
            if status is not None and 200 <= status < 300:
                # The headers arrived, the body did not (all of it): a truncated answer.
                return _Attempt(
                    status=status,
                    max_age=parse_max_age(headers.get("cache-control")),
                    error_cls=MalformedResponseError,
                    reason="truncatedBody",
                    message=f"the connection closed before the whole body arrived "
                    f"({type(exc).__name__})",
                )
            if status is not None:
                return self._classify(endpoint, status, headers, b"")
            return _Attempt(
                error_cls=TransportError,
                reason=type(exc).__name__,
                transport_detail=f"connection to {self._host_port} failed "
                f"({type(exc).__name__}: {self._scrub(str(exc)) or 'no response'})",
            )
        return self._classify(endpoint, status, headers, body)

    def _classify(
        self, endpoint: str, status: int, headers: httpx.Headers, body: bytes
    ) -> _Attempt:
        outcome = _Attempt(
            status=status,
            max_age=parse_max_age(headers.get("cache-control")),
            retry_after=_parse_retry_after(headers.get("retry-after"), self._clock),
        )
        if 200 <= status < 300:
            try:
                data = json.loads(body)
            except (ValueError, UnicodeDecodeError):
                data = None
            if isinstance(data, dict):
                outcome.body = body
                outcome.data = data
                return outcome
            outcome.error_cls = MalformedResponseError
            outcome.reason = "malformedBody"
            outcome.message = f"expected a JSON object, got {_describe_body(body, self._scrub)}"
            return outcome
        outcome.reason, outcome.message = _error_fields(body, self._scrub)
        outcome.error_cls = _error_class(endpoint, status, outcome.reason, outcome.message)
        return outcome

    def _scrub(self, text: str) -> str:
        """Remove the token from text that came from outside (a gateway could echo headers)."""
        if self._token and self._token in text:
            text = text.replace(self._token, "***")
        return text

    def _describe_failure(
        self, error_cls: type[ClashApiError], record: FetchRecord, outcome: _Attempt
    ) -> tuple[str, str]:
        display = ENDPOINTS[record.endpoint].replace(
            "{tag}", "{" + _TAG_KINDS.get(record.endpoint, "clan") + "Tag}"
        )
        target = f"GET {display}" + (f" {record.resource_tag}" if record.resource_tag else "")
        after = f" after {record.attempts} attempts" if record.attempts > 1 else ""
        if error_cls is TransportError:
            what = outcome.transport_detail or "no response"
        else:
            what = f"{record.status} {record.reason}"
            if record.message:
                what += f" - {record.message}"
        message = f"{target} failed{after}: {what}"
        return message, _hint(error_cls, record, self._host_port)


# -- helpers ---------------------------------------------------------------------------------


def parse_max_age(cache_control: str | None) -> int | None:
    """``max-age`` from a Cache-Control header, however it is spelled around it."""
    if not cache_control:
        return None
    match = _MAX_AGE_RE.search(cache_control)
    return int(match.group(1)) if match else None


def _parse_retry_after(value: str | None, clock: Callable[[], datetime]) -> float | None:
    """``Retry-After`` as seconds: a number (fractions accepted) or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - clock()).total_seconds()
    if seconds != seconds or seconds in (float("inf"), float("-inf")):  # NaN / inf
        return None
    return max(0.0, seconds)


def _check_base_url(base_url: str) -> str:
    parts = urlsplit(str(base_url).strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ConfigError(
            "COC_API_BASE_URL is invalid: it must be an http(s) URL without query or fragment",
            hint="e.g. https://api.clashofclans.com/v1 or https://cocproxy.royaleapi.dev/v1",
        )
    return str(base_url).strip().rstrip("/")


def _check_token(token: str) -> str:
    token = (token or "").strip()
    if token[:7].lower() == "bearer ":
        token = token[7:].strip()
    if not token:
        raise ConfigError(
            "COC_API_TOKEN is not set",
            hint="create a token at https://developer.clashofclans.com and set COC_API_TOKEN",
        )
    if not token.isascii() or not token.isprintable() or any(c.isspace() for c in token):
        # Never echo the value: it is a secret even when it is wrong.
        raise ConfigError(
            "COC_API_TOKEN is malformed: it contains spaces or non-ASCII characters",
            hint="paste the token again from https://developer.clashofclans.com",
        )
    return token


def _limit_params(limit: int | None) -> dict[str, str | int] | None:
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be a positive integer, got {limit!r}")
    return {"limit": limit}


def _encode_params(params: dict[str, str | int] | None) -> str:
    if not params:
        return ""
    clean: dict[str, str] = {}
    for name, value in params.items():
        if value is None:
            continue
        if not isinstance(name, str) or not _PARAM_NAME_RE.fullmatch(name):
            raise ValueError(f"invalid query parameter name {name!r}")
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ValueError(f"query parameter {name} must be text or an integer")
        clean[name] = str(value)
    return str(httpx.QueryParams(clean))


def _sanitise(text: str, scrub: Callable[[str], str], limit: int = _SNIPPET_CHARS) -> str:
    """A short, single-line, printable version of text from a response body."""
    text = re.sub(r"(?is)<(script|style)\b.*?</\1\s*>", " ", text)
    text = re.sub(r"(?s)<[^>]*>", " ", text)
    text = html.unescape(text)
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    text = scrub(" ".join(text.split()))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe_body(body: bytes, scrub: Callable[[str], str]) -> str:
    if not body.strip():
        return "an empty body"
    snippet = _sanitise(body[:2000].decode("utf-8", "replace"), scrub, 60)
    return f"{len(body)} bytes starting {snippet!r}"


def _error_fields(body: bytes, scrub: Callable[[str], str]) -> tuple[str, str | None]:
    """(reason, message) from an error body: the API's JSON, or a gateway's HTML/text."""
    text = body[:20000].decode("utf-8", "replace")
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if isinstance(data, dict):
            reason = data.get("reason")
            message = data.get("message")
            return (
                _sanitise(reason, scrub, 60) if isinstance(reason, str) and reason else "unknown",
                _sanitise(message, scrub) if isinstance(message, str) and message else None,
            )
    # A gateway's HTML page: its <title> says it best ("502 Bad Gateway"), else its text.
    title = re.search(r"(?is)<title[^>]*>(.*?)</title\s*>", text)
    snippet = _sanitise(title.group(1) if title else text, scrub)
    if not snippet and title:
        snippet = _sanitise(text, scrub)
    return "unknown", snippet or None


def _error_class(
    endpoint: str, status: int, reason: str | None, message: str | None
) -> type[ClashApiError]:
    if status == 400:
        return BadRequestError
    if status == 403:
        # Both a bad token and a private war log answer "accessDenied"; a bad token says
        # "Invalid authorization", a private war log says nothing.
        if (
            endpoint in _WAR_ENDPOINTS
            and reason == "accessDenied"
            and "authoriz" not in (message or "").lower()
        ):
            return PrivateWarLogError
        return AccessDeniedError
    if status == 404:
        return NotFoundError
    if status == 429:
        return ThrottledError
    if status == 503:
        return MaintenanceError
    if 500 <= status < 600:
        return ServerError
    return ClashApiError


def _error_summary(error_cls: type[ClashApiError], outcome: _Attempt) -> str:
    if error_cls is TransportError:
        return f"TransportError: {outcome.transport_detail or outcome.reason}"
    return f"{error_cls.__name__}: {outcome.status} {outcome.reason}"


_ACCESS_DENIED_HINT = (
    "check COC_API_TOKEN and that the token's allowed IP list includes this machine's public IP, "
    "or use a proxy via COC_API_BASE_URL"
)


def _hint(error_cls: type[ClashApiError], record: FetchRecord, host_port: str) -> str:
    kind = _TAG_KINDS.get(record.endpoint, "clan")
    if error_cls is PrivateWarLogError:
        return (
            "the clan's war log is private: a leader can make it public in the clan settings "
            "(if every request fails, check COC_API_TOKEN)"
        )
    if error_cls is AccessDeniedError:
        return _ACCESS_DENIED_HINT
    if error_cls is NotFoundError:
        if record.endpoint == "leaguegroup":
            return "the clan is not in a Clan War League right now (or the tag is wrong)"
        if record.resource_tag:
            return f"no {kind} has this tag: check it in the game"
        return "check COC_API_BASE_URL (a proxy usually needs the /v1 path prefix)"
    if error_cls is BadRequestError:
        return "the API rejected a parameter of this request; report it as a clash-pipeline bug"
    if error_cls is ThrottledError:
        return (
            "the API keeps throttling this token: lower COC_REQUESTS_PER_SECOND or "
            "COC_MAX_CONCURRENCY, and make sure no other program uses the same token"
        )
    if error_cls is MaintenanceError:
        return "the API is in maintenance or unavailable: try again later"
    if error_cls is ServerError:
        return "the API (or a gateway in front of it) keeps failing: try again later"
    if error_cls is MalformedResponseError:
        return "the API or a proxy at COC_API_BASE_URL sent a broken answer: try again later"
    if error_cls is TransportError:
        return (
            f"check the network and that {host_port} (COC_API_BASE_URL, or the proxy in "
            "HTTPS_PROXY) is reachable; raise COC_TIMEOUT_SECONDS if it is just slow"
        )
    return "unexpected answer from the API: check COC_API_BASE_URL"
