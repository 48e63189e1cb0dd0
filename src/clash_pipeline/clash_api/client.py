"""The async Clash of Clans API client.

One :class:`ClashClient` per run: one pooled ``httpx.AsyncClient`` (HTTP/1.1, no redirects, the
usual proxy environment variables honoured) and one shared
:class:`~clash_pipeline.clash_api.keys.KeyPool`: the run's API keys, each paced by its own
:class:`~clash_pipeline.clash_api.ratelimit.RateLimiter`; every attempt goes out on the key that
can start it soonest.
Every logical request, successful or not, produces one
:class:`~clash_pipeline.clash_api.records.FetchRecord` for the fetch log.

Retry rules (see :class:`~clash_pipeline.clash_api.retry.RetryPolicy`), following the API's
community practice:

- 500/502/504 (and other 5xx except 503), timeouts, connection errors, and 2xx bodies that are not
  a JSON object (truncated, a proxy's HTML) are transient: exponential back-off with jitter;
- a 429 means "this key is too fast": wait ``Retry-After`` (or ``throttle_delay``) and pause that
  key's limiter, so every request on that key cools down (the other keys go on); it also lowers
  that key's rate, which then recovers gradually (adaptive pacing, see
  :class:`~clash_pipeline.clash_api.ratelimit.RateLimiter`). A 503 (maintenance) pauses every key;
- a 403 that rejects the key (``accessDenied.invalidIp``, or ``accessDenied`` anywhere but a
  private war log) leaves the key out of the run and the request goes again on another key,
  without counting as a retry; with no key left, the request fails;
- 400/403/404 (and any other status) are answers, never retried.

A token lives only in the ``Authorization`` header of each request (set from the key chosen for
that attempt, never in the client's default headers). Records, errors and logs are built from the
path, status and sanitised body fields, and body-derived text is scrubbed of every key's token in
case a gateway echoes it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx

from clash_pipeline.clash_api import sent
from clash_pipeline.clash_api.endpoints import ENDPOINTS, build_path, limit_params
from clash_pipeline.clash_api.errors import (
    AccessDeniedError,
    MalformedResponseError,
    TransportError,
)
from clash_pipeline.clash_api.failures import failure_hint, failure_message, request_target
from clash_pipeline.clash_api.keys import NO_KEY_LEFT_HINT, ApiKey, KeyPool, NoApiKeyLeftError
from clash_pipeline.clash_api.ratelimit import AdaptivePacing, RateLimiter
from clash_pipeline.clash_api.records import ApiResponse, FetchRecord, utc_now
from clash_pipeline.clash_api.responses import Attempt, classify, parse_max_age
from clash_pipeline.clash_api.retry import RetryPolicy
from clash_pipeline.errors import ConfigError

if TYPE_CHECKING:
    from clash_pipeline.settings import Settings

# ENDPOINTS, the records, RetryPolicy and parse_max_age live in their own modules; they are
# re-exported here because callers know them as part of the client.
__all__ = [
    "ENDPOINTS",
    "ApiResponse",
    "ClashClient",
    "FetchRecord",
    "KeyPool",
    "limiter_from_settings",
    "pacing_from_settings",
    "RetryPolicy",
    "parse_max_age",
    "utc_now",
]

logger = logging.getLogger("clash_pipeline.coc")


@dataclass
class _Tally:
    """The counts of one logical request across its attempts, for its record."""

    attempts: int = 0
    retries: int = 0
    throttled: int = 0
    requested_at: datetime | None = None  # when the first attempt got its slot
    started: float = 0.0  # the same instant on the monotonic clock
    sent_at: float = 0.0  # the start slot of the last attempt, on its key's limiter's clock
    key: ApiKey | None = None  # the key of the last attempt


class ClashClient:
    """Async client for the endpoints the pipeline uses, with retries, pacing and a fetch log.

    Use as ``async with ClashClient.from_settings(settings) as client:``; ``records`` lists every
    request made, in completion order (unless ``keep_records=False``: a client shared by the
    runs of thousands of clans must not keep every body it received). The keys are a
    :class:`KeyPool` (``keys=``, shared by every client of a run) or one ``token`` paced by
    its ``limiter``.
    """

    def __init__(  # noqa: PLR0913 - keyword-only settings of one client
        self,
        *,
        base_url: str,
        token: str | None = None,
        limiter: RateLimiter | None = None,
        keys: KeyPool | None = None,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        clock: Callable[[], datetime] = utc_now,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        keep_records: bool = True,
    ) -> None:
        self._base_url = _check_base_url(base_url)
        parts = urlsplit(self._base_url)
        default_port = 443 if parts.scheme == "https" else 80
        self._host_port = f"{parts.hostname}:{parts.port or default_port}"
        if keys is None:
            if limiter is None:
                raise ValueError("give a key pool (keys=), or a token and its limiter")
            keys = KeyPool.of_one(_check_token(token or ""), limiter)
        if not timeout > 0:
            raise ValueError("timeout must be > 0")
        self.keys = keys
        self.timeout = float(timeout)
        self.retry = retry or RetryPolicy()
        self._clock = clock
        self._sleep = sleep
        self._rng = random.Random()  # jitter only, not security
        self.records: list[FetchRecord] = []
        self._keep_records = keep_records
        # One connection pool per key, sized to the key's requests in flight: httpcore scans
        # its pool's connections pairwise on every request, so one pool of every key's
        # connections (32 with 8 keys) cost ~2.5 ms of CPU a request (bench/scale.py --profile).
        self._http: dict[int, httpx.AsyncClient] = {}

    @property
    def limiter(self) -> RateLimiter:
        """The first key's limiter (the only one with a single token)."""
        return self.keys.limiter(self.keys.keys[0])

    def __repr__(self) -> str:
        return f"ClashClient(base_url={self._base_url!r})"

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        keys: KeyPool | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> ClashClient:
        """Build a client from the settings (ConfigError if no token)."""
        if keys is None:
            if not settings.api_tokens():
                raise ConfigError(
                    "COC_API_TOKEN is not set",
                    hint="create a token for this machine's IP at "
                    "https://developer.clashofclans.com and put it in COC_API_TOKEN (or several "
                    "in COC_API_TOKENS, comma-separated; environment or .env), or run the demo",
                )
            keys = KeyPool.from_settings(settings)
        return cls(
            base_url=settings.coc_api_base_url,
            keys=keys,
            timeout=settings.coc_timeout_seconds,
            retry=RetryPolicy(max_retries=settings.coc_max_retries),
            clock=clock,
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
        """Close the connection pools."""
        pools, self._http = list(self._http.values()), {}
        for pool in pools:
            await pool.aclose()

    def _pool(self, key: ApiKey) -> httpx.AsyncClient:
        pool = self._http.get(key.position)
        if pool is None:
            size = self.keys.concurrency(key)
            pool = self._http[key.position] = _http_client(self.timeout, pool=size)
        return pool

    # -- endpoints ---------------------------------------------------------------------------

    async def get_clan(self, tag: str) -> ApiResponse:
        return await self.request("clan", tag)

    async def get_clan_members(self, tag: str) -> ApiResponse:
        return await self.request("clan_members", tag)

    async def get_player(self, tag: str) -> ApiResponse:
        return await self.request("player", tag)

    async def get_warlog(self, tag: str, limit: int | None = None) -> ApiResponse:
        return await self.request("warlog", tag, params=limit_params(limit))

    async def get_current_war(self, tag: str) -> ApiResponse:
        return await self.request("currentwar", tag)

    async def get_league_group(self, tag: str) -> ApiResponse:
        return await self.request("leaguegroup", tag)

    async def get_cwl_war(self, war_tag: str) -> ApiResponse:
        return await self.request("cwl_war", war_tag)

    async def get_capital_raid_seasons(self, tag: str, limit: int | None = None) -> ApiResponse:
        return await self.request("capitalraidseasons", tag, params=limit_params(limit))

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
        resource_tag, path = build_path(endpoint, tag, params)
        tally = _Tally()
        outcome = await self._attempt_with_retries(endpoint, resource_tag, path, tally)
        record = self._record(endpoint, resource_tag, path, outcome, tally)
        if self._keep_records:
            self.records.append(record)
        error_cls = outcome.error_cls
        if error_cls is None:
            assert outcome.data is not None
            return ApiResponse(record=record, data=outcome.data)
        if error_cls is NoApiKeyLeftError:
            message = f"{request_target(record)} failed: {self.keys.no_key_left_message()}"
            raise error_cls(message, NO_KEY_LEFT_HINT, record=record)
        message = failure_message(error_cls, record, outcome.transport_detail)
        raise error_cls(message, failure_hint(error_cls, record, self._host_port), record=record)

    async def _attempt_with_retries(
        self, endpoint: str, resource_tag: str | None, path: str, tally: _Tally
    ) -> Attempt:
        """Attempt until success, an answer that is not transient, or the retries run out."""
        while True:
            try:
                outcome = await self._paced_attempt(endpoint, resource_tag, path, tally)
            except NoApiKeyLeftError:
                return self._no_key_left(tally)
            if outcome.error_cls is None:
                return outcome
            if self._rejects_key(outcome, tally):
                if not self.keys.usable and self.keys.size > 1:
                    return self._no_key_left(tally, outcome)
                if self.keys.usable:
                    continue  # the same request on another key: not a retry
                return outcome  # the only key: the API's answer, as it is
            delay = self._cool_down(outcome, tally)
            if not outcome.error_cls.retryable or tally.retries >= self.retry.max_retries:
                return outcome
            tally.retries += 1
            logger.warning(
                "GET %s %s -> %s; retry %d/%d in %.2f s",
                endpoint,
                resource_tag or "-",
                outcome.status if outcome.status is not None else outcome.error_cls.__name__,
                tally.retries,
                self.retry.max_retries,
                delay,
            )
            await self._sleep(delay)

    async def _paced_attempt(
        self, endpoint: str, resource_tag: str | None, path: str, tally: _Tally
    ) -> Attempt:
        """One attempt inside a slot of the key that can start it soonest."""
        async with self.keys.slot() as (key, sent_at):
            tally.sent_at, tally.key = sent_at, key
            if tally.requested_at is None:
                tally.requested_at = self._clock()
                tally.started = time.perf_counter()
            tally.attempts += 1
            sent.attempt_started(first=tally.attempts == 1, key=key)
            attempt_started = time.perf_counter()
            outcome = await self._attempt(endpoint, self._base_url + path, key)
            sent.answered(outcome.status, key=key)
            if outcome.status is not None and outcome.status != 429:
                self.keys.accepted(key)
        logger.debug(
            "GET %s %s -> %s in %.0f ms (attempt %d)",
            endpoint,
            resource_tag or "-",
            outcome.status if outcome.status is not None else "no response",
            (time.perf_counter() - attempt_started) * 1000,
            tally.attempts,
        )
        return outcome

    def _cool_down(self, outcome: Attempt, tally: _Tally) -> float:
        """The wait before the next attempt; a 429 also pauses its key, a 503 every key."""
        if outcome.status in (429, 503):
            # The key (429) or the whole run (503) cools down, even when this request has no
            # retries left; a 429 also lowers its key's rate (the server's limit is below it).
            delay = self.retry.throttle(outcome.retry_after)
            if outcome.status == 429 and tally.key is not None:
                tally.throttled += 1
                self.keys.throttled(tally.key, delay, sent_at=tally.sent_at)
            else:
                for key in self.keys.keys:
                    self.keys.pause(key, delay)
            return delay
        return self.retry.backoff(tally.retries, self._rng)

    def _rejects_key(self, outcome: Attempt, tally: _Tally) -> bool:
        """A 403 that is about the key, not the resource (a private war log): leave it out."""
        if outcome.error_cls is not AccessDeniedError or tally.key is None:
            return False
        self.keys.reject(tally.key, outcome.reason)
        sent.key_rejected(tally.key)
        return True

    def _no_key_left(self, tally: _Tally, outcome: Attempt | None = None) -> Attempt:
        """The request's outcome when every key of the pool was rejected."""
        if tally.requested_at is None:  # nothing was sent
            tally.requested_at = self._clock()
            tally.started = time.perf_counter()
        return Attempt(
            status=outcome.status if outcome else None,
            reason=outcome.reason if outcome else "noApiKeyLeft",
            message=outcome.message if outcome else None,
            max_age=outcome.max_age if outcome else None,
            error_cls=NoApiKeyLeftError,
        )

    def _record(
        self,
        endpoint: str,
        resource_tag: str | None,
        path: str,
        outcome: Attempt,
        tally: _Tally,
    ) -> FetchRecord:
        assert tally.requested_at is not None
        failed = outcome.error_cls is not None
        return FetchRecord(
            endpoint=endpoint,
            resource_tag=resource_tag,
            path=path,
            status=outcome.status,
            reason=outcome.reason,
            message=outcome.message,
            requested_at=tally.requested_at,
            fetched_at=self._clock(),
            duration_ms=(time.perf_counter() - tally.started) * 1000,
            attempts=tally.attempts,
            retries=tally.retries,
            throttled=tally.throttled,
            max_age=outcome.max_age,
            body=None if failed else outcome.body,
            error=outcome.summary() if failed else None,
            # a transient failure that outlived its retries: data the run should have had
            gave_up=outcome.error_cls is not None and outcome.error_cls.retryable,
        )

    async def _attempt(self, endpoint: str, url: str, key: ApiKey) -> Attempt:
        """One HTTP attempt. Never raises for network/HTTP failures: it returns them as data,
        so the error raised later has no httpx exception (and its request) in its context."""
        status: int | None = None
        headers = httpx.Headers()
        try:
            # httpx's timeout is per phase (connect, each read…); this caps a server that trickles.
            async with asyncio.timeout(self.timeout * 3):
                headers_out = {"Authorization": f"Bearer {key.token}"}
                async with self._pool(key).stream("GET", url, headers=headers_out) as response:
                    status, headers = response.status_code, response.headers
                    body = await response.aread()
        except (httpx.TimeoutException, TimeoutError):
            return Attempt(
                status=status,
                error_cls=TransportError,
                reason="timeout",
                transport_detail=f"timed out after {self.timeout:g} s talking to {self._host_port}",
            )
        except httpx.DecodingError:
            return Attempt(
                status=status,
                error_cls=MalformedResponseError,
                reason="malformedBody",
                message="the response body could not be decoded",
            )
        except httpx.ConnectError as exc:
            return Attempt(
                error_cls=TransportError,
                reason="connectError",
                transport_detail=f"could not connect to {self._host_port} "
                f"({self._scrub(str(exc)) or 'connection refused'})",
            )
        except httpx.RequestError as exc:
            return self._interrupted(endpoint, status, headers, exc)
        return self._classify(endpoint, status, headers, body)

    def _interrupted(
        self,
        endpoint: str,
        status: int | None,
        headers: httpx.Headers,
        exc: httpx.RequestError,
    ) -> Attempt:
        """A connection that broke before, or while, the response arrived."""
        if status is not None and 200 <= status < 300:
            # The headers arrived, the body did not (all of it): a truncated answer.
            return Attempt(
                status=status,
                max_age=parse_max_age(headers.get("cache-control")),
                error_cls=MalformedResponseError,
                reason="truncatedBody",
                message=f"the connection closed before the whole body arrived "
                f"({type(exc).__name__})",
            )
        if status is not None:
            return self._classify(endpoint, status, headers, b"")
        return Attempt(
            error_cls=TransportError,
            reason=type(exc).__name__,
            transport_detail=f"connection to {self._host_port} failed "
            f"({type(exc).__name__}: {self._scrub(str(exc)) or 'no response'})",
        )

    def _classify(self, endpoint: str, status: int, headers: httpx.Headers, body: bytes) -> Attempt:
        return classify(endpoint, status, headers, body, scrub=self._scrub, clock=self._clock)

    def _scrub(self, text: str) -> str:
        """Remove every token from text that came from outside (a gateway could echo headers)."""
        return self.keys.scrub(text)


def limiter_from_settings(settings: Settings) -> RateLimiter:
    """The shared limiter of a run: COC_REQUESTS_PER_SECOND, COC_MAX_CONCURRENCY and the
    adaptive pacing settings (COC_THROTTLE_BACKOFF, COC_RATE_RECOVERY,
    COC_MIN_REQUESTS_PER_SECOND)."""
    return RateLimiter(
        settings.coc_requests_per_second,
        settings.coc_max_concurrency,
        pacing=pacing_from_settings(settings),
    )


def pacing_from_settings(settings: Settings) -> AdaptivePacing:
    return AdaptivePacing(
        backoff=settings.coc_throttle_backoff,
        recovery=settings.coc_rate_recovery,
        min_rate=settings.coc_min_requests_per_second,
    )


def _http_client(timeout: float, *, pool: int) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        headers={
            "Accept": "application/json",
            "User-Agent": "clash-pipeline (+httpx)",
        },
        timeout=httpx.Timeout(timeout),
        limits=httpx.Limits(max_connections=pool, max_keepalive_connections=pool),
        follow_redirects=False,  # a redirect must never carry the token elsewhere
        http1=True,
        http2=False,
        trust_env=True,
    )


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
