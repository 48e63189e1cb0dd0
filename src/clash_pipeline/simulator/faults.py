"""Fault injection for the simulated API: what can go wrong, and the rate limiter.

A :class:`FaultConfig` belongs to one server. Every field can be set at
construction and changed while the server runs (from the test's thread, or over
HTTP through ``POST /_sim/faults``); a lock keeps the scripted-fault queue and the
random draws consistent across the server's request threads.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from clash_pipeline.clash_api.tags import normalize_tag
from clash_pipeline.errors import InvalidTagError

FaultKind = Literal["status", "hang", "malformed", "truncated", "html"]
FAULT_KINDS: tuple[str, ...] = ("status", "hang", "malformed", "truncated", "html")


@dataclass
class ScriptedFault:
    """The next ``count`` requests whose path contains ``path_contains`` get this fault.

    ``kind``: ``status`` (an API error body with ``status``), ``html`` (a gateway-style
    HTML page with ``status``), ``hang`` (sleep ``FaultConfig.hang_seconds``, then
    answer normally), ``malformed`` / ``truncated`` (a ``status`` response, normally
    200, whose body is not JSON / is cut in half). ``retry_after`` adds a Retry-After
    header (seconds). ``path_contains`` is matched against the raw path and query and
    against their percent-decoded form, so ``"#2PP"`` and ``"%232PP"`` both work.
    """

    path_contains: str
    status: int
    count: int = 1
    retry_after: float | None = None
    kind: FaultKind = "status"

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; use one of {FAULT_KINDS}")
        if self.count < 1:
            raise ValueError("count must be at least 1")
        if not 100 <= int(self.status) <= 599:
            raise ValueError(f"invalid HTTP status {self.status}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "path_contains": self.path_contains,
            "status": self.status,
            "count": self.count,
            "retry_after": self.retry_after,
            "kind": self.kind,
        }


#: Fields that hold sets of tags (normalised when set).
_TAG_SETS = (
    "private_warlog_clans",
    "missing_players",
    "missing_clans",
    "departed_players",
    "merged_member_lists",
)
#: Fields that hold sets of API tokens (shown by fingerprint in to_dict).
_TOKEN_SETS = ("accepted_tokens", "invalid_ip_tokens")
_RATES = ("error_rate", "gateway_error_rate", "timeout_rate", "malformed_rate", "truncated_rate")


@dataclass
class FaultConfig:
    """What the server does wrong. All rates are probabilities per request (0..1)."""

    #: Token bucket per API token (capacity max(1, rate), refilled at ``rate`` per second), as
    #: the real API limits each key on its own; None: no limit.
    rate_limit_per_second: float | None = None
    #: Tokens accepted besides the server's own (a key pool); others get 403 accessDenied.
    accepted_tokens: set[str] = field(default_factory=set)
    #: Tokens answered 403 ``accessDenied.invalidIp``, as the real API answers a key created
    #: for another IP address.
    invalid_ip_tokens: set[str] = field(default_factory=set)
    #: Retry-After (seconds) sent with 429 and 503 answers.
    retry_after_seconds: float = 1.0
    #: Added to every API response (ms), plus a uniform random 0..jitter.
    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    #: 500 unknownException.
    error_rate: float = 0.0
    #: 502 / 504 with an HTML body, as a gateway would send.
    gateway_error_rate: float = 0.0
    #: The server sleeps ``hang_seconds`` before answering, so the client times out.
    timeout_rate: float = 0.0
    hang_seconds: float = 10.0
    #: 503 inMaintenance on every data path.
    maintenance: bool = False
    #: 200 with a body that is not JSON / is cut in half.
    malformed_rate: float = 0.0
    truncated_rate: float = 0.0
    #: Clans whose war log is private: 403 accessDenied on /warlog and /currentwar.
    private_warlog_clans: set[str] = field(default_factory=set)
    #: 404 notFound on /players/{tag} and on every /clans/{tag}... path.
    missing_players: set[str] = field(default_factory=set)
    missing_clans: set[str] = field(default_factory=set)
    #: Players who left their clan: gone from its member list and member count.
    departed_players: set[str] = field(default_factory=set)
    #: Clans whose GET /clans/{tag} body has a merged memberList, as a recorder that merged
    #: two lists writes it: the clan's own members followed by another clan's, while
    #: ``members`` still counts the clan's own (the door checks must quarantine it).
    merged_member_lists: set[str] = field(default_factory=set)
    #: Unknown extra fields at several levels of every JSON body.
    extra_fields: bool = False
    #: Deterministic faults, used up in order (see ScriptedFault).
    script: list[ScriptedFault] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.RLock()
        for name in _TAG_SETS:
            setattr(self, name, _tags(getattr(self, name)))
        for name in _TOKEN_SETS:
            setattr(self, name, _token_set(getattr(self, name)))
        self.script = [_scripted(item) for item in self.script]
        self._validate()

    # -- run-time changes ---------------------------------------------------------------------
    def update(self, **changes: Any) -> None:
        """Set several fields at once (validated); unknown names raise ValueError."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown fault fields: {', '.join(unknown)}")
        with self._lock:
            backup = {name: getattr(self, name) for name in changes}
            try:
                for name, value in changes.items():
                    if name in _TAG_SETS:
                        value = _tags(value)
                    elif name in _TOKEN_SETS:
                        value = _token_set(value)
                    elif name == "script":
                        value = [_scripted(item) for item in value]
                    setattr(self, name, value)
                self._validate()
            except (TypeError, ValueError):
                for name, value in backup.items():
                    setattr(self, name, value)
                raise

    def reset(self) -> None:
        """Back to no faults at all."""
        defaults = FaultConfig()
        with self._lock:
            for f in fields(self):
                setattr(self, f.name, getattr(defaults, f.name))

    def push(
        self,
        path_contains: str,
        status: int = 500,
        count: int = 1,
        retry_after: float | None = None,
        kind: FaultKind = "status",
    ) -> ScriptedFault:
        """Queue a scripted fault; returns it."""
        fault = ScriptedFault(path_contains, status, count, retry_after, kind)
        with self._lock:
            self.script.append(fault)
        return fault

    def push_hang(self, path_contains: str, count: int = 1) -> ScriptedFault:
        return self.push(path_contains, 200, count, None, "hang")

    def push_malformed(self, path_contains: str, count: int = 1) -> ScriptedFault:
        return self.push(path_contains, 200, count, None, "malformed")

    def push_truncated(self, path_contains: str, count: int = 1) -> ScriptedFault:
        return self.push(path_contains, 200, count, None, "truncated")

    def push_html(self, path_contains: str, status: int = 502, count: int = 1) -> ScriptedFault:
        return self.push(path_contains, status, count, None, "html")

    def take_scripted(self, *paths: str) -> ScriptedFault | None:
        """Use up one request of the first scripted fault matching any of ``paths``."""
        with self._lock:
            for fault in self.script:
                if any(fault.path_contains in path for path in paths):
                    fault.count -= 1
                    if fault.count <= 0:
                        self.script.remove(fault)
                    return ScriptedFault(
                        fault.path_contains, fault.status, 1, fault.retry_after, fault.kind
                    )
        return None

    # -- queries ------------------------------------------------------------------------------
    def is_missing_clan(self, tag: str) -> bool:
        with self._lock:
            return tag in self.missing_clans

    def is_missing_player(self, tag: str) -> bool:
        with self._lock:
            return tag in self.missing_players

    def has_departed(self, tag: str) -> bool:
        with self._lock:
            return tag in self.departed_players

    def has_merged_member_list(self, tag: str) -> bool:
        with self._lock:
            return tag in self.merged_member_lists

    def is_private_warlog(self, tag: str) -> bool:
        with self._lock:
            return tag in self.private_warlog_clans

    def token_answer(self, token: str, own_token: str) -> str | None:
        """None when ``token`` is accepted, else the 403 reason it gets."""
        with self._lock:
            if token in self.invalid_ip_tokens:
                return "accessDenied.invalidIp"
            if token == own_token or token in self.accepted_tokens:
                return None
            return "accessDenied"

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            out: dict[str, Any] = {}
            for f in fields(self):
                value = getattr(self, f.name)
                if f.name in _TOKEN_SETS:  # tokens are shown by their fingerprints only
                    value = sorted(token_fingerprint(t) for t in value)
                elif isinstance(value, set):
                    value = sorted(value)
                elif f.name == "script":
                    value = [item.to_dict() for item in value]
                out[f.name] = value
            return out

    def _validate(self) -> None:
        for name in _RATES:
            value = float(getattr(self, name))
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
            setattr(self, name, value)
        for name in ("latency_ms", "latency_jitter_ms", "hang_seconds", "retry_after_seconds"):
            value = float(getattr(self, name))
            if value < 0:
                raise ValueError(f"{name} must not be negative")
            setattr(self, name, value)
        rate = self.rate_limit_per_second
        if rate is not None:
            rate = float(rate)
            if rate <= 0:
                raise ValueError("rate_limit_per_second must be positive (or None for no limit)")
            self.rate_limit_per_second = rate
        self.maintenance = bool(self.maintenance)
        self.extra_fields = bool(self.extra_fields)


def _tags(values: Any) -> set[str]:
    if isinstance(values, str):
        values = [values]
    out = set()
    for value in values or ():
        try:
            out.add(normalize_tag(value))
        except InvalidTagError as exc:
            raise ValueError(str(exc)) from None
    return out


def token_fingerprint(token: str) -> str:
    """How the simulator names a token in its state and stats: ``sha256(token)[:12]``."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def _token_set(values: Any) -> set[str]:
    if isinstance(values, str):
        values = [values]
    tokens = {str(value).strip() for value in values or ()}
    if "" in tokens:
        raise ValueError("an API token must not be empty")
    return tokens


def _scripted(item: ScriptedFault | dict[str, Any]) -> ScriptedFault:
    if isinstance(item, ScriptedFault):
        return item
    if isinstance(item, dict):
        return ScriptedFault(**item)
    raise ValueError(f"a scripted fault is an object, got {type(item).__name__}")


class TokenBucket:
    """Capacity ``max(1, rate)`` tokens, refilled at ``rate`` per second; starts full.

    A request that arrives early by a few milliseconds against a client's own
    pacing at exactly ``rate`` is still let through (``slack`` of a token), so a
    client that paces at or under the rate is never throttled.
    """

    def __init__(
        self, rate: float, *, slack: float = 0.05, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.slack = slack
        self._clock = clock
        self._tokens = self.capacity
        self._last = clock()
        self._lock = threading.Lock()

    def try_take(self) -> bool:
        with self._lock:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
            self._last = now
            if self._tokens >= 1.0 - self.slack:
                self._tokens -= 1.0
                return True
            return False


class FaultDice:
    """The server's random draws, from a generator seeded by the server seed."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(f"faults-{seed}")
        self._lock = threading.Lock()

    def chance(self, probability: float) -> bool:
        if probability <= 0:
            return False
        with self._lock:
            return self._rng.random() < probability

    def uniform(self, low: float, high: float) -> float:
        with self._lock:
            return self._rng.uniform(low, high)

    def choice(self, options: tuple[Any, ...]) -> Any:
        with self._lock:
            return self._rng.choice(options)
