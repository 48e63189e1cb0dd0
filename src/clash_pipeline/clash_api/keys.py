"""A pool of API keys, each paced on its own, shared by every request of a run.

The API throttles per key and binds each key to IP addresses; a developer account holds up to
10 keys. So a run may hold several keys (``COC_API_TOKENS``) and:

- gives each key its own :class:`~clash_pipeline.clash_api.ratelimit.RateLimiter` at
  ``COC_REQUESTS_PER_SECOND`` with ``COC_MAX_CONCURRENCY`` requests in flight *per key* (built by
  ``limiter_factory``, so a limiter shared across processes can be plugged in);
- spreads requests over the keys: each attempt takes the usable key whose next start slot is the
  earliest (a key paused by a 429 is passed over while others can start sooner);
- leaves a key the API rejects (403 ``accessDenied``/``accessDenied.invalidIp``) out of the rest
  of the run, with one warning naming it by position and fingerprint; with no key left every
  request fails at once with :class:`NoApiKeyLeftError`.

A key is named everywhere by its 1-based position and its fingerprint (the first 12 hex digits of
the SHA-256 of the token), never by the token.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from clash_pipeline.clash_api.errors import AccessDeniedError
from clash_pipeline.clash_api.ratelimit import AdaptivePacing, RateLimiter
from clash_pipeline.errors import ConfigError

if TYPE_CHECKING:
    from clash_pipeline.settings import Settings

__all__ = [
    "ApiKey",
    "KeyPool",
    "KeyUsage",
    "LimiterFactory",
    "NoApiKeyLeftError",
    "check_tokens",
    "key_fingerprint",
]

logger = logging.getLogger("clash_pipeline.coc")

KEYS_URL = "https://developer.clashofclans.com"


def key_fingerprint(token: str) -> str:
    """What names a key in logs and tables: ``sha256(token)[:12]`` in hex."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class ApiKey:
    """One key of the pool: its 1-based position, its fingerprint and (never shown) its token."""

    position: int
    token: str = field(repr=False, compare=False)
    fingerprint: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fingerprint", key_fingerprint(self.token))

    def __reduce__(self) -> tuple[Any, ...]:
        raise TypeError("an API key is not pickled: it holds a token")

    def label(self, of: int) -> str:
        """``API key 2 of 3 (fingerprint 1a2b3c4d5e6f)``."""
        return f"API key {self.position} of {of} (fingerprint {self.fingerprint})"


@dataclass
class KeyUsage:
    """What one key did: requests sent (attempts), 429s received, and whether it was rejected."""

    position: int
    fingerprint: str
    requests: int = 0
    throttled: int = 0
    rejected: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "fingerprint": self.fingerprint,
            "requests": self.requests,
            "throttled": self.throttled,
            "rejected": self.rejected,
        }


LimiterFactory = Callable[[ApiKey], RateLimiter]


class NoApiKeyLeftError(AccessDeniedError):
    """Every key of the pool was rejected by the API: nothing can be fetched in this run."""


def check_tokens(tokens: Iterable[str], *, source: str = "COC_API_TOKENS") -> list[str]:
    """The tokens stripped (and without a ``Bearer`` prefix), deduplicated in order.

    A token that cannot go in an Authorization header raises ConfigError naming its position
    in ``source``, never its value.
    """
    from clash_pipeline.settings import token_problem

    checked: list[str] = []
    for position, raw in enumerate(tokens, start=1):
        token = str(raw).strip()
        if token[:7].lower() == "bearer ":
            token = token[7:].strip()
        if not token:
            continue
        problem = token_problem(token)
        if problem:
            raise ConfigError(
                f"{source} is invalid: key {position} contains {problem}; an API token is "
                "one word of printable ASCII",
                hint=f"copy key {position} again from {KEYS_URL} (keys are separated by commas)",
            )
        if token not in checked:
            checked.append(token)
    return checked


def in_process_limiters(
    requests_per_second: float, max_concurrency: int, pacing: AdaptivePacing | None = None
) -> LimiterFactory:
    """The default ``limiter_factory``: a limiter in this process for each key."""

    def build(key: ApiKey) -> RateLimiter:
        return RateLimiter(requests_per_second, max_concurrency, pacing=pacing)

    return build


class KeyPool:
    """The keys of a run with their limiters and counters (see the module docstring).

    Share one pool between every client of a run (every clan, every task attempt): a key
    rejected by one request is then left out for all of them.
    """

    def __init__(
        self,
        tokens: Iterable[str],
        *,
        limiter_factory: LimiterFactory | None = None,
        requests_per_second: float = 10.0,
        max_concurrency: int = 8,
        pacing: AdaptivePacing | None = None,
    ) -> None:
        checked = check_tokens(tokens)
        if not checked:
            raise ConfigError(
                "no API key: COC_API_TOKENS and COC_API_TOKEN are not set",
                hint=f"create a key for this machine's IP at {KEYS_URL} and put it in "
                "COC_API_TOKENS (environment or .env), or run the demo",
            )
        factory = limiter_factory or in_process_limiters(
            requests_per_second, max_concurrency, pacing
        )
        self.keys: tuple[ApiKey, ...] = tuple(
            ApiKey(position, token) for position, token in enumerate(checked, start=1)
        )
        self._limiters = {key.position: factory(key) for key in self.keys}
        self._usage = {key.position: KeyUsage(key.position, key.fingerprint) for key in self.keys}
        self._rejected: dict[int, str] = {}  # position -> reason

    @classmethod
    def of_one(cls, token: str, limiter: RateLimiter) -> KeyPool:
        """A pool of one key paced by ``limiter`` (a single token, as before pools)."""
        return cls([token], limiter_factory=lambda key: limiter)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        tokens: Iterable[str] | None = None,
        *,
        limiter_factory: LimiterFactory | None = None,
    ) -> KeyPool:
        """The settings' keys (or ``tokens``), paced by COC_REQUESTS_PER_SECOND and friends."""
        from clash_pipeline.clash_api.client import pacing_from_settings

        return cls(
            settings.api_tokens() if tokens is None else tokens,
            limiter_factory=limiter_factory,
            requests_per_second=settings.coc_requests_per_second,
            max_concurrency=settings.coc_max_concurrency,
            pacing=pacing_from_settings(settings),
        )

    def __repr__(self) -> str:
        active = len(self.keys) - len(self._rejected)
        return f"KeyPool({len(self.keys)} keys, {active} usable)"

    def __reduce__(self) -> tuple[Any, ...]:
        raise TypeError("a key pool is not pickled: it holds tokens")

    # -- the keys ---------------------------------------------------------------------------

    @property
    def size(self) -> int:
        return len(self.keys)

    @property
    def usable(self) -> list[ApiKey]:
        """Keys not rejected in this run, in pool order."""
        return [key for key in self.keys if key.position not in self._rejected]

    def limiter(self, key: ApiKey) -> RateLimiter:
        return self._limiters[key.position]

    async def aclose(self) -> None:
        """Close the limiters' database connections (shared pacing), if they have any."""
        from clash_pipeline.clash_api.shared_pacing import close_limiter

        for limiter in self._limiters.values():
            await close_limiter(limiter)

    def label(self, key: ApiKey) -> str:
        return key.label(len(self.keys))

    @property
    def max_concurrency(self) -> int:
        """Requests in flight at most, all keys together (the HTTP connection pool's size)."""
        return sum(limiter.max_concurrency for limiter in self._limiters.values())

    def concurrency(self, key: ApiKey) -> int:
        """Requests in flight at most on ``key`` (its HTTP connection pool's size)."""
        return self._limiters[key.position].max_concurrency

    def choose(self) -> ApiKey:
        """The usable key that can start a request soonest (NoApiKeyLeftError: none left)."""
        usable = self.usable
        if not usable:
            raise self._no_key_left()

        def readiness(key: ApiKey) -> tuple[float, int, int]:
            limiter = self._limiters[key.position]
            return (limiter.next_start(), limiter.in_flight, key.position)

        return min(usable, key=readiness)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[tuple[ApiKey, float]]:
        """``async with pool.slot() as (key, sent_at):`` one attempt, paced by its key."""
        while True:
            key = self.choose()
            limiter = self._limiters[key.position]
            sent_at = await limiter.acquire()
            if key.position not in self._rejected:
                break
            limiter.release()  # rejected while we waited for its slot: take another key
        self._usage[key.position].requests += 1
        try:
            yield key, sent_at
        finally:
            limiter.release()

    # -- what the API said about a key --------------------------------------------------------

    def throttled(self, key: ApiKey, pause_seconds: float, *, sent_at: float | None) -> None:
        """A 429 on ``key``: only its limiter pauses and slows down."""
        self._usage[key.position].throttled += 1
        self._limiters[key.position].throttled(pause_seconds, sent_at=sent_at)

    def accepted(self, key: ApiKey) -> None:
        self._limiters[key.position].accepted()

    def pause(self, key: ApiKey, seconds: float) -> None:
        self._limiters[key.position].pause(seconds)

    def reject(self, key: ApiKey, reason: str | None) -> None:
        """The API refused ``key``: leave it out of the run (one warning, the first time)."""
        self._usage[key.position].rejected += 1
        if key.position in self._rejected:
            return
        self._rejected[key.position] = reason or "accessDenied"
        left = len(self.usable)
        logger.warning(
            "%s was rejected: %s — it is left out of this run (%d of %d keys left); %s",
            self.label(key),
            reason or "accessDenied",
            left,
            len(self.keys),
            _rejected_hint(reason),
        )

    @property
    def rejected(self) -> dict[int, str]:
        """Position -> the API's reason, for each key rejected in this run."""
        return dict(self._rejected)

    def usage(self) -> list[dict[str, Any]]:
        """What each key did in this run (never the token)."""
        return [self._usage[key.position].as_dict() for key in self.keys]

    def scrub(self, text: str) -> str:
        """``text`` without any of the pool's tokens (a gateway could echo a header)."""
        for key in self.keys:
            if key.token in text:
                text = text.replace(key.token, "***")
        return text

    def no_key_left_message(self) -> str:
        """``no API key left: the API rejected all 3 keys (key 1 (fingerprint …): …; …)``."""
        rejected = "; ".join(
            f"key {position} (fingerprint {self.keys[position - 1].fingerprint}): {reason}"
            for position, reason in sorted(self._rejected.items())
        )
        if len(self.keys) == 1:
            return f"no API key left: the API rejected the only key ({rejected})"
        return f"no API key left: the API rejected all {len(self.keys)} keys ({rejected})"

    def _no_key_left(self) -> NoApiKeyLeftError:
        from clash_pipeline.clash_api.records import FetchRecord, utc_now

        now = utc_now()
        record = FetchRecord(
            endpoint="-",
            resource_tag=None,
            path="",
            status=None,
            reason="noApiKeyLeft",
            message=None,
            requested_at=now,
            fetched_at=now,
            duration_ms=0.0,
            attempts=0,
            retries=0,
            throttled=0,
            max_age=None,
            error="NoApiKeyLeftError: every key was rejected",
        )
        return NoApiKeyLeftError(self.no_key_left_message(), NO_KEY_LEFT_HINT, record=record)


NO_KEY_LEFT_HINT = (
    f"create keys for this machine's public IP at {KEYS_URL} and put them in COC_API_TOKENS "
    "(or COC_API_TOKEN), or use a proxy via COC_API_BASE_URL"
)


def _rejected_hint(reason: str | None) -> str:
    if reason == "accessDenied.invalidIp":
        return f"create a key for this machine's IP at {KEYS_URL} and replace it in COC_API_TOKENS"
    return f"the key is wrong, revoked or expired: create a new one at {KEYS_URL}"
