"""The simulated Clash of Clans API: a real HTTP server on loopback.

``SimulatedClashApi`` serves the official API's paths under ``/v1`` with the real
shapes, headers and error bodies, from a deterministic :class:`World`, with a
simulated clock and run-time fault injection. Admin endpoints under ``/_sim/``
(no token) let another process drive a separately running server:

* ``GET  /_sim/state``: clock, faults and counters as JSON;
* ``POST /_sim/clock``: ``{"advance_seconds": N}`` or ``{"set": "2026-11-02T08:00:00Z"}``;
* ``POST /_sim/faults``: FaultConfig fields to change, ``{"reset": true}``, and/or
  ``{"push": {...}}`` / ``{"push": [{...}, ...]}`` to queue scripted faults;
* ``POST /_sim/missing``: ``{"clans": [...], "players": [...]}`` (replaces those sets);
* ``POST /_sim/stats/reset``: zero the counters.

Data bodies are computed at the start of their cache window (``now - now % max_age``),
so polling faster than ``Cache-Control: max-age`` returns the same bytes, as the
real API does.
"""

from __future__ import annotations

import base64
import json
import math
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from clash_pipeline.clash_api.tags import normalize_tag
from clash_pipeline.errors import InvalidTagError
from clash_pipeline.simulator.faults import FaultConfig, FaultDice, ScriptedFault, TokenBucket
from clash_pipeline.simulator.world import RAIDS_DEFAULT_COUNT, WARLOG_DEFAULT_COUNT, World

DEFAULT_START = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
#: The simulator's own default token: not a secret, it opens nothing but this fake API.
DEFAULT_TOKEN = "sim-token"  # noqa: S105
API_PREFIX = "/v1"
JSON_TYPE = "application/json; charset=utf-8"
ERROR_MAX_AGE = 600
MAX_LIMIT = 200

#: Path kind -> cache window in seconds (Cache-Control max-age counts down within it).
CACHE_SECONDS: dict[str, int] = {
    "clan": 120,
    "members": 120,
    "player": 60,
    "warlog": 120,
    "currentwar": 120,
    "leaguegroup": 600,
    "cwl_war": 600,
    "capitalraidseasons": 600,
    "leaguetiers": 600,
    "leagues": 600,
}

_MESSAGES = {
    400: ("badRequest", "Client provided incorrect parameters for the request."),
    403: ("accessDenied", "Invalid authorization"),
    404: ("notFound", "Resource was not found."),
    429: (
        "requestThrottled",
        "Request was throttled, because amount of requests was above the threshold defined "
        "for the used API token.",
    ),
    500: ("unknownException", "Unknown error happened when handling the request."),
    503: ("inMaintenance", "Service is temporarily unavailable because of maintenance."),
}


# --- clock and counters ------------------------------------------------------------------------
class SimClock:
    """Simulated UTC time. Frozen: moves only by ``advance``/``set``; else follows wall time."""

    def __init__(self, start: datetime | None = None, *, frozen: bool = True) -> None:
        start = start or DEFAULT_START
        if start.tzinfo is None:
            raise ValueError("start_time must be timezone-aware (UTC)")
        self._lock = threading.Lock()
        self._frozen = frozen
        self._base = start.astimezone(UTC)
        self._mono = time.monotonic()

    @property
    def frozen(self) -> bool:
        return self._frozen

    def now(self) -> datetime:
        with self._lock:
            if self._frozen:
                return self._base
            return self._base + timedelta(seconds=time.monotonic() - self._mono)

    def advance(self, delta: timedelta | float) -> datetime:
        if not isinstance(delta, timedelta):
            delta = timedelta(seconds=float(delta))
        with self._lock:
            self._base += delta
            return (
                self._base
                if self._frozen
                else self._base + timedelta(seconds=time.monotonic() - self._mono)
            )

    def set(self, when: datetime) -> datetime:
        if when.tzinfo is None:
            raise ValueError("the clock needs a timezone-aware time (UTC)")
        with self._lock:
            self._base = when.astimezone(UTC)
            self._mono = time.monotonic()
            return self._base


class ServerStats:
    """Thread-safe request counters of one server (admin requests are not counted)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._total = 0
            self._by_status: dict[int, int] = {}
            self._by_kind: dict[str, int] = {}
            self._faults: dict[str, int] = {}

    def record(self, kind: str, status: int) -> None:
        with self._lock:
            self._total += 1
            self._by_status[status] = self._by_status.get(status, 0) + 1
            self._by_kind[kind] = self._by_kind.get(kind, 0) + 1

    def record_fault(self, name: str) -> None:
        with self._lock:
            self._faults[name] = self._faults.get(name, 0) + 1

    @property
    def requests_total(self) -> int:
        with self._lock:
            return self._total

    @property
    def by_status(self) -> dict[int, int]:
        with self._lock:
            return dict(self._by_status)

    @property
    def by_kind(self) -> dict[str, int]:
        with self._lock:
            return dict(self._by_kind)

    @property
    def throttled(self) -> int:
        """429 answers served (rate limiter and scripted)."""
        with self._lock:
            return self._by_status.get(429, 0)

    @property
    def faults_injected(self) -> dict[str, int]:
        with self._lock:
            return dict(self._faults)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests_total": self._total,
                "by_status": {str(k): v for k, v in sorted(self._by_status.items())},
                "throttled": self._by_status.get(429, 0),
                "by_kind": dict(sorted(self._by_kind.items())),
                "faults_injected": dict(sorted(self._faults.items())),
            }


# --- responses ---------------------------------------------------------------------------------
@dataclass
class _Response:
    status: int
    body: bytes
    content_type: str = JSON_TYPE
    cache_control: str = f"public max-age={ERROR_MAX_AGE}"
    headers: dict[str, str] = field(default_factory=dict)


class _ApiError(Exception):
    def __init__(self, status: int, message: str | None = None, *, reason: str | None = None):
        super().__init__(message or "")
        self.status = status
        self.reason = reason or _MESSAGES.get(status, ("unknownException", None))[0]
        self.message = message


def _json(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def error_body(status: int, message: str | None = None, reason: str | None = None) -> bytes:
    default_reason, default_message = _MESSAGES.get(status, ("unknownException", None))
    body: dict[str, Any] = {"reason": reason or default_reason}
    text = message if message is not None else default_message
    if text:
        body["message"] = text
    return _json(body)


def _error(status: int, message: str | None = None, *, reason: str | None = None) -> _Response:
    cache = f"max-age={ERROR_MAX_AGE}" if status == 403 else f"public max-age={ERROR_MAX_AGE}"
    return _Response(status, error_body(status, message, reason), cache_control=cache)


def _html(status: int) -> _Response:
    title = {
        502: "502 Bad Gateway",
        503: "503 Service Temporarily Unavailable",
        504: "504 Gateway Time-out",
    }.get(status, f"{status} Error")
    page = (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n</body>\r\n</html>\r\n"
    )
    return _Response(status, page.encode(), content_type="text/html", cache_control="no-cache")


def _retry_after(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"


def _cursor(position: int) -> str:
    return base64.b64encode(_json({"pos": position})).decode().rstrip("=")


def _decode_cursor(text: str) -> int:
    try:
        padded = text + "=" * (-len(text) % 4)
        position = json.loads(base64.b64decode(padded, validate=True))["pos"]
    except (ValueError, KeyError, TypeError):
        raise _ApiError(400, "Invalid value for parameter after/before") from None
    if not isinstance(position, int) or position < 0:
        raise _ApiError(400, "Invalid value for parameter after/before")
    return position


def _add_extra_fields(data: Any, *, depth: int = 0, in_list: bool = False) -> Any:
    """A copy of ``data`` with unknown fields added at the top, in list items and in objects."""
    if isinstance(data, list):
        return [_add_extra_fields(item, depth=depth + 1, in_list=True) for item in data]
    if not isinstance(data, dict):
        return data
    out = {key: _add_extra_fields(value, depth=depth + 1) for key, value in data.items()}
    if depth == 0:
        out["simulatorExtraTopLevel"] = {"note": "unknown field: readers must ignore it"}
    elif in_list:
        out["simulatorExtraItemField"] = depth
    else:
        out["simulatorExtraNested"] = True
    return out


def _parse_tag(segment: str, what: str) -> str:
    raw = unquote(segment)
    if not raw.startswith("#"):
        raise _ApiError(400, f"Invalid value for parameter {what}: tags start with '#' (%23)")
    try:
        return normalize_tag(raw)
    except InvalidTagError:
        raise _ApiError(404, f"Not found with tag {raw.lstrip('#')}") from None


def _path_kind(parts: list[str]) -> str:
    if len(parts) >= 2 and parts[0] == "clans":
        rest = parts[2:]
        if not rest:
            return "clan"
        if rest == ["currentwar", "leaguegroup"]:
            return "leaguegroup"
        if len(rest) == 1 and rest[0] in ("members", "warlog", "currentwar", "capitalraidseasons"):
            return rest[0]
    if len(parts) == 2 and parts[0] == "players":
        return "player"
    if len(parts) == 3 and parts[:2] == ["clanwarleagues", "wars"]:
        return "cwl_war"
    if parts and parts[0] in ("leagues", "leaguetiers") and len(parts) <= 2:
        return parts[0]
    return "unknown"


# --- the server ----------------------------------------------------------------------------------
class SimulatedClashApi:
    """A simulated Clash of Clans API on loopback (see the module docstring)."""

    def __init__(
        self,
        *,
        seed: int = 0,
        token: str = DEFAULT_TOKEN,
        host: str = "127.0.0.1",
        port: int = 0,
        start_time: datetime | None = None,
        frozen_clock: bool = True,
        missing_clans: Iterable[str] = (),
        faults: FaultConfig | None = None,
    ) -> None:
        self.seed = seed
        self.token = token
        self.host = host
        self.port = port
        self.clock = SimClock(start_time, frozen=frozen_clock)
        self.faults = faults if faults is not None else FaultConfig()
        if missing_clans:
            self.faults.update(missing_clans=set(self.faults.missing_clans) | set(missing_clans))
        self.stats = ServerStats()
        self.world = World(seed)
        self._dice = FaultDice(seed)
        self._bucket: TokenBucket | None = None
        self._bucket_lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _HttpServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> SimulatedClashApi:
        if self._server is not None:
            raise RuntimeError("the simulated API is already running")
        self._stopping.clear()
        self._server = _HttpServer((self.host, self.port), _Handler, self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"sim-clash-api-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()  # wakes hanging requests
        server.shutdown()
        server.close_all_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> SimulatedClashApi:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def origin(self) -> str:
        if self._server is None:
            raise RuntimeError("the simulated API is not running: call start() first")
        host = self.host if ":" not in self.host else f"[{self.host}]"
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The API base URL, e.g. ``http://127.0.0.1:54321/v1``."""
        return self.origin + API_PREFIX

    def state(self) -> dict[str, Any]:
        return {
            "now": self.clock.now().isoformat().replace("+00:00", "Z"),
            "frozen_clock": self.clock.frozen,
            "seed": self.seed,
            "base_url": self.base_url if self.running else None,
            "faults": self.faults.to_dict(),
            "stats": self.stats.snapshot(),
        }

    # -- request handling -----------------------------------------------------------------------
    def _sleep(self, seconds: float) -> bool:
        """Sleep unless the server stops first; False when it is stopping."""
        return not self._stopping.wait(seconds) if seconds > 0 else not self._stopping.is_set()

    def _throttle(self) -> bool:
        rate = self.faults.rate_limit_per_second
        with self._bucket_lock:
            if rate is None:
                self._bucket = None
                return False
            if self._bucket is None or self._bucket.rate != rate:
                self._bucket = TokenBucket(rate)
            return not self._bucket.try_take()

    def handle_api(self, method: str, raw_path: str, headers: Any) -> _Response | None:
        """One /v1 request from start to answer; None means: drop the connection."""
        split = urlsplit(raw_path)
        parts = [p for p in split.path[len(API_PREFIX) :].split("/") if p]
        kind = _path_kind(parts)
        faults = self.faults
        try:
            delay = faults.latency_ms + (
                self._dice.uniform(0, faults.latency_jitter_ms) if faults.latency_jitter_ms else 0
            )
            if delay and not self._sleep(delay / 1000):
                return None
            if headers.get("Authorization", "") != f"Bearer {self.token}":
                raise _ApiError(403, "Invalid authorization")
            scripted = faults.take_scripted(raw_path, unquote(raw_path))
            if scripted is not None:
                self.stats.record_fault(f"scripted_{scripted.kind}")
                response = self._scripted(scripted)
                if response is not None:
                    return response
                if scripted.kind == "hang" and not self._sleep(faults.hang_seconds):
                    return None
            if faults.maintenance:
                self.stats.record_fault("maintenance")
                return self._with_retry_after(_error(503), faults.retry_after_seconds)
            if self._throttle():
                self.stats.record_fault("rate_limit")
                return self._with_retry_after(_error(429), faults.retry_after_seconds)
            if self._dice.chance(faults.timeout_rate):
                self.stats.record_fault("hang")
                if not self._sleep(faults.hang_seconds):
                    return None
            if self._dice.chance(faults.error_rate):
                self.stats.record_fault("error_500")
                return _error(500)
            if self._dice.chance(faults.gateway_error_rate):
                self.stats.record_fault("gateway")
                return _html(self._dice.choice((502, 504)))
            if method != "GET":
                raise _ApiError(405, "Method not allowed", reason="badRequest")
            now = self.clock.now()
            data, cache_seconds = self._route(kind, parts, parse_qs(split.query), now)
            if faults.extra_fields:
                data = _add_extra_fields(data)
            max_age = max(1, math.ceil(cache_seconds - now.timestamp() % cache_seconds))
            response = _Response(200, _json(data), cache_control=f"max-age={max_age}")
            if scripted is not None and scripted.kind in ("malformed", "truncated"):
                response = self._corrupt(response, scripted.kind, scripted.status)
            elif self._dice.chance(faults.malformed_rate):
                self.stats.record_fault("malformed")
                response = self._corrupt(response, "malformed", 200)
            elif self._dice.chance(faults.truncated_rate):
                self.stats.record_fault("truncated")
                response = self._corrupt(response, "truncated", 200)
            return response
        except _ApiError as exc:
            return _error(exc.status, exc.message, reason=exc.reason)

    def _scripted(self, fault: ScriptedFault) -> _Response | None:
        """The answer of a scripted fault, or None when the request goes on (hang/corrupt)."""
        if fault.kind == "status":
            response = _error(fault.status)
        elif fault.kind == "html":
            response = _html(fault.status)
        else:
            return None
        retry_after = fault.retry_after
        if retry_after is None and fault.status in (429, 503):
            retry_after = self.faults.retry_after_seconds
        return self._with_retry_after(response, retry_after)

    @staticmethod
    def _with_retry_after(response: _Response, seconds: float | None) -> _Response:
        if seconds is not None:
            response.headers["Retry-After"] = _retry_after(seconds)
        return response

    @staticmethod
    def _corrupt(response: _Response, kind: str, status: int) -> _Response:
        if kind == "truncated":
            body = response.body[: len(response.body) // 2]
        else:
            body = b'{"reason": "<html>this is not JSON' + response.body[:20] + b",,}"
        return _Response(status, body, cache_control=response.cache_control)

    # -- routing --------------------------------------------------------------------------------
    def _route(
        self, kind: str, parts: list[str], query: dict[str, list[str]], now: datetime
    ) -> tuple[Any, int]:
        """(body, cache window in seconds) of a data path, or an _ApiError."""
        if kind == "unknown":
            raise _ApiError(404, "Unknown path: " + "/".join(["", "v1", *parts]))
        cache = CACHE_SECONDS[kind]
        # Bodies are computed at the start of their cache window (see the module docstring).
        at = now - timedelta(seconds=now.timestamp() % cache)
        world = self.world
        if kind in ("leagues", "leaguetiers"):
            items = world.leagues() if kind == "leagues" else world.league_tiers(at)
            if items is None:
                raise _ApiError(404, "Resource was not found.")
            if len(parts) == 2:
                parameter = "leagueId" if kind == "leagues" else "leagueTierId"
                for item in items:
                    if str(item["id"]) == parts[1]:
                        return item, cache
                raise _ApiError(400, f"Unknown value for parameter {parameter}")
            return self._page(items, query, len(items)), cache
        if kind == "player":
            tag = _parse_tag(parts[1], "playerTag")
            body = None if self.faults.is_missing_player(tag) else world.player(tag, at)
            if body is None:
                raise _ApiError(404, f"Not found with tag {tag[1:]}")
            return body, cache
        if kind == "cwl_war":
            tag = _parse_tag(parts[2], "warTag")
            body = world.cwl_war(tag, at)
            if body is None:
                raise _ApiError(404, f"Not found with tag {tag[1:]}")
            return body, cache
        # /clans/{tag}...
        tag = _parse_tag(parts[1], "clanTag")
        if self.faults.is_missing_clan(tag):
            raise _ApiError(404, f"Not found with tag {tag[1:]}")
        if kind == "clan":
            body = world.clan(tag, at)
            if self.faults.is_private_warlog(tag):
                body = {**body, "isWarLogPublic": False}
            if self.faults.departed_players:
                members = self._staying(body["memberList"])
                body = {**body, "memberList": members, "members": len(members)}
            return body, cache
        if kind == "members":
            items = self._staying(world.members(tag, at))
            return self._page(items, query, len(items)), cache
        if kind in ("warlog", "currentwar") and self.faults.is_private_warlog(tag):
            raise _ApiError(403, "")  # the real body has no message here
        if kind == "currentwar":
            return world.current_war(tag, at), cache
        if kind == "leaguegroup":
            body = world.league_group(tag, at)
            if body is None:
                raise _ApiError(404, "Resource was not found.")
            return body, cache
        if kind == "warlog":
            start, limit = self._window(query, WARLOG_DEFAULT_COUNT)
            items = world.warlog(tag, at, start + limit + 1)
            return self._page(items, query, WARLOG_DEFAULT_COUNT), cache
        start, limit = self._window(query, RAIDS_DEFAULT_COUNT)
        items = world.capital_raid_seasons(tag, at, start + limit + 1)
        return self._page(items, query, RAIDS_DEFAULT_COUNT), cache

    def _staying(self, members: list[Any]) -> list[Any]:
        """The member list without the players a test made leave (``departed_players``)."""
        return [m for m in members if not self.faults.has_departed(m["tag"])]

    @staticmethod
    def _limit(query: dict[str, list[str]], default: int) -> int:
        if "limit" not in query:
            return default
        text = query["limit"][-1]
        if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
            raise _ApiError(400, "Invalid value for parameter limit")
        return int(text)

    def _window(self, query: dict[str, list[str]], default: int) -> tuple[int, int]:
        """(first position, count) asked for by limit/after/before."""
        limit = self._limit(query, default)
        if "after" in query:
            return _decode_cursor(query["after"][-1]), limit
        if "before" in query:
            end = _decode_cursor(query["before"][-1])
            return max(0, end - limit), min(limit, end)
        return 0, limit

    def _page(self, items: list[Any], query: dict[str, list[str]], default: int) -> dict:
        start, limit = self._window(query, default)
        page = items[start : start + limit]
        cursors: dict[str, str] = {}
        if start > 0:
            cursors["before"] = _cursor(start)
        if start + limit < len(items):
            cursors["after"] = _cursor(start + limit)
        return {"items": page, "paging": {"cursors": cursors}}

    # -- admin ----------------------------------------------------------------------------------
    def handle_admin(self, method: str, raw_path: str, payload: bytes) -> _Response:
        path = urlsplit(raw_path).path.rstrip("/")
        try:
            data = json.loads(payload or b"{}") if method == "POST" else {}
            if not isinstance(data, dict):
                raise ValueError("the request body must be a JSON object")
            if method == "GET" and path == "/_sim/state":
                return self._admin_ok(self.state())
            if method != "POST":
                return _error(404, f"Unknown admin path {path}")
            if path == "/_sim/clock":
                if "advance_seconds" in data:
                    self.clock.advance(float(data["advance_seconds"]))
                elif "set" in data:
                    when = datetime.fromisoformat(str(data["set"]).replace("Z", "+00:00"))
                    if when.tzinfo is None:
                        when = when.replace(tzinfo=UTC)
                    self.clock.set(when)
                else:
                    raise ValueError('send {"advance_seconds": N} or {"set": "ISO-8601"}')
                return self._admin_ok({"now": self.state()["now"]})
            if path == "/_sim/faults":
                changes = dict(data)
                if changes.pop("reset", False):
                    self.faults.reset()
                pushes = changes.pop("push", [])
                if changes:
                    self.faults.update(**changes)
                for item in pushes if isinstance(pushes, list) else [pushes]:
                    if not isinstance(item, dict):
                        raise ValueError("push takes a scripted fault object or a list of them")
                    self.faults.push(**item)
                return self._admin_ok(self.faults.to_dict())
            if path == "/_sim/missing":
                changes = {}
                if "clans" in data:
                    changes["missing_clans"] = data["clans"]
                if "players" in data:
                    changes["missing_players"] = data["players"]
                self.faults.update(**changes)
                faults = self.faults.to_dict()
                return self._admin_ok(
                    {"clans": faults["missing_clans"], "players": faults["missing_players"]}
                )
            if path == "/_sim/stats/reset":
                self.stats.reset()
                return self._admin_ok(self.stats.snapshot())
            return _error(404, f"Unknown admin path {path}")
        except (ValueError, TypeError) as exc:
            return _error(400, str(exc))

    @staticmethod
    def _admin_ok(data: Any) -> _Response:
        return _Response(200, _json(data), cache_control="no-store")


# --- HTTP plumbing -------------------------------------------------------------------------------
class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type, api: SimulatedClashApi) -> None:
        self.api = api
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def track(self, connection: socket.socket, *, add: bool) -> None:
        with self._connections_lock:
            (self._connections.add if add else self._connections.discard)(connection)

    def close_all_connections(self) -> None:
        with self._connections_lock:
            connections, self._connections = list(self._connections), set()
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet: a client that hangs up mid-answer is a normal event here."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "SimulatedClashApi/1.0"
    sys_version = ""
    timeout = 120  # idle keep-alive connections are closed after this
    wbufsize = 1 << 16  # headers and body leave in one write (no Nagle/delayed-ACK stall)
    server: _HttpServer

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection, add=True)

    def finish(self) -> None:
        self.server.track(self.connection, add=False)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """No per-request logging."""

    def do_GET(self) -> None:  # noqa: N802
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        payload = self.rfile.read(length) if length else b""
        api = self.server.api
        if self.path.startswith("/_sim/") or self.path == "/_sim":
            self._write(api.handle_admin(method, self.path, payload))
            return
        if (
            self.path == API_PREFIX
            or self.path.startswith(API_PREFIX + "/")
            or (self.path.startswith(API_PREFIX + "?"))
        ):
            response = api.handle_api(method, self.path, self.headers)
        else:
            response = _error(404, f"Unknown path {urlsplit(self.path).path}")
        kind = _path_kind([p for p in urlsplit(self.path).path[len(API_PREFIX) :].split("/") if p])
        if response is None:  # the server is stopping during a hang: hang up
            self.close_connection = True
            return
        api.stats.record(kind, response.status)
        self._write(response)

    def _write(self, response: _Response) -> None:
        try:
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            self.send_header("Cache-Control", response.cache_control)
            self.send_header(
                "X-Sim-Time", self.server.api.clock.now().strftime("%Y%m%dT%H%M%S.000Z")
            )
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(response.body)
            self.wfile.flush()
        except OSError:  # the client went away (e.g. it timed out during a hang)
            self.close_connection = True


def serve_forever(
    *,
    host: str,
    port: int,
    seed: int,
    token: str,
    start_time: datetime | None = None,
    frozen_clock: bool = False,
    missing_clans: Iterable[str] = (),
    faults: FaultConfig | None = None,
) -> None:
    """Serve in the foreground until Ctrl-C (for ``clash-pipeline simulate-api``).

    Prints one line with the base URL; the clock follows wall time unless frozen.
    """
    api = SimulatedClashApi(
        seed=seed,
        token=token,
        host=host,
        port=port,
        start_time=start_time,
        frozen_clock=frozen_clock,
        missing_clans=missing_clans,
        faults=faults,
    )
    api.start()
    print(
        f"Simulated Clash of Clans API at {api.base_url} (seed {seed}, simulated time "
        f"{api.clock.now():%Y-%m-%d %H:%M} UTC); admin at {api.origin}/_sim/state; Ctrl-C to stop",
        flush=True,
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        api.stop()
