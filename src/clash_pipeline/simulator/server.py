"""The simulated Clash of Clans API: a real HTTP server on loopback.

``SimulatedClashApi`` serves the official API's paths under ``/v1`` with the real
shapes, headers and error bodies, from a deterministic :class:`World`, with a
simulated clock and run-time fault injection. Admin endpoints under ``/_sim/``
(no token, :mod:`clash_pipeline.simulator.admin`) let another process drive a
separately running server:

* ``GET  /_sim/state``: clock, faults and counters as JSON;
* ``POST /_sim/clock``: ``{"advance_seconds": N}`` or ``{"set": "2026-11-02T08:00:00Z"}``;
* ``POST /_sim/faults``: FaultConfig fields to change, ``{"reset": true}``, and/or
  ``{"push": {...}}`` / ``{"push": [{...}, ...]}`` to queue scripted faults;
* ``POST /_sim/missing``: ``{"clans": [...], "players": [...]}`` (replaces those sets);
* ``POST /_sim/stats/reset``: zero the counters.

Data bodies are computed at the start of their cache window (``now - now % max_age``),
so polling faster than ``Cache-Control: max-age`` returns the same bytes, as the
real API does. A request goes through the faults first (latency, token, scripted
faults, maintenance, rate limit, random failures), then its route
(:mod:`clash_pipeline.simulator.routes`), then the body faults (malformed, truncated).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from clash_pipeline.simulator.clock import DEFAULT_START, SimClock
from clash_pipeline.simulator.faults import (
    FaultConfig,
    FaultDice,
    ScriptedFault,
    TokenBucket,
    token_fingerprint,
)
from clash_pipeline.simulator.http_server import API_PREFIX, HttpServer, api_parts
from clash_pipeline.simulator.responses import (
    ApiError,
    Response,
    add_extra_fields,
    corrupt,
    error,
    error_body,
    html_error,
    json_bytes,
    with_retry_after,
)
from clash_pipeline.simulator.routes import DataRequest, cache_window, path_kind, route
from clash_pipeline.simulator.stats import ServerStats
from clash_pipeline.simulator.world import DEFAULT_ACTIVITY_PER_HOUR, World

#: The simulator's own default token: not a secret, it opens nothing but this fake API.
DEFAULT_TOKEN = "sim-token"  # noqa: S105
#: What the real API says to a key created for another IP address.
INVALID_IP_MESSAGE = "Invalid authorization: API key does not allow access from IP 127.0.0.1"

__all__ = [
    "API_PREFIX",
    "DEFAULT_START",
    "DEFAULT_TOKEN",
    "FaultConfig",
    "ServerStats",
    "SimClock",
    "SimulatedClashApi",
    "error_body",
    "serve_forever",
]


class _HangUp(Exception):
    """The server stops while a request hangs: drop the connection without an answer."""


class SimulatedClashApi:
    """A simulated Clash of Clans API on loopback (see the module docstring)."""

    def __init__(  # noqa: PLR0913 - keyword-only settings of one server
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
        activity_per_hour: float = DEFAULT_ACTIVITY_PER_HOUR,
    ) -> None:
        """``token`` is always accepted, and FaultConfig's ``accepted_tokens`` too (a key
        pool); its ``invalid_ip_tokens`` get 403 ``accessDenied.invalidIp``."""
        self.seed = seed
        self.token = token
        self.host = host
        self.port = port
        self.clock = SimClock(start_time, frozen=frozen_clock)
        self.faults = faults if faults is not None else FaultConfig()
        if missing_clans:
            self.faults.update(missing_clans=set(self.faults.missing_clans) | set(missing_clans))
        self.stats = ServerStats()
        self.world = World(seed, activity_per_hour=activity_per_hour)
        self._dice = FaultDice(seed)
        self._buckets: dict[str, TokenBucket] = {}  # per token, as the real API limits keys
        self._bucket_lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: HttpServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> SimulatedClashApi:
        if self._server is not None:
            raise RuntimeError("the simulated API is already running")
        self._stopping.clear()
        self._server = HttpServer((self.host, self.port), self)
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
            "activity_per_hour": self.world.activity_per_hour,
            "base_url": self.base_url if self.running else None,
            "faults": self.faults.to_dict(),
            "stats": self.stats.snapshot(),
        }

    # -- request handling -----------------------------------------------------------------------
    def handle_api(self, method: str, raw_path: str, headers: Any) -> Response | None:
        """One /v1 request from start to answer; None means: drop the connection."""
        authorization = str(headers.get("Authorization", ""))
        token = authorization[7:] if authorization.startswith("Bearer ") else None
        response = self._answer(method, raw_path, token)
        if token is not None and response is not None:
            refused = response.status == 403 and self.faults.token_answer(token, self.token)
            self.stats.record_key(token_fingerprint(token), response.status, rejected=bool(refused))
        return response

    def _answer(self, method: str, raw_path: str, token: str | None) -> Response | None:
        try:
            delay = self._latency()
            if delay:
                self._sleep(delay)
            refused = (
                self.faults.token_answer(token, self.token) if token is not None else "accessDenied"
            )
            if refused == "accessDenied.invalidIp":
                raise ApiError(403, INVALID_IP_MESSAGE, reason=refused)
            if refused:
                raise ApiError(403, "Invalid authorization")
            assert token is not None
            scripted = self.faults.take_scripted(raw_path, unquote(raw_path))
            response = self._fault_answer(scripted, token)
            if response is not None:
                return response
            if method != "GET":
                raise ApiError(405, "Method not allowed", reason="badRequest")
            return self._data_answer(raw_path, scripted)
        except ApiError as exc:
            return error(exc.status, exc.message, reason=exc.reason)
        except _HangUp:
            return None

    def _latency(self) -> float:
        faults = self.faults
        jitter = self._dice.uniform(0, faults.latency_jitter_ms) if faults.latency_jitter_ms else 0
        return (faults.latency_ms + jitter) / 1000

    def _sleep(self, seconds: float) -> None:
        """Sleep unless the server stops first (then hang up)."""
        stopping = self._stopping.wait(seconds) if seconds > 0 else self._stopping.is_set()
        if stopping:
            raise _HangUp

    def _fault_answer(self, scripted: ScriptedFault | None, token: str) -> Response | None:
        """The answer of a fault that replaces the data, or None when the request goes on."""
        if scripted is not None:
            self.stats.record_fault(f"scripted_{scripted.kind}")
            response = self._scripted(scripted)
            if response is not None:
                return response
            if scripted.kind == "hang":
                self._sleep(self.faults.hang_seconds)
        return self._random_fault(token)

    def _random_fault(self, token: str) -> Response | None:
        """Maintenance, the rate limit and the random failures of FaultConfig, in order."""
        faults = self.faults
        if faults.maintenance:
            self.stats.record_fault("maintenance")
            return with_retry_after(error(503), faults.retry_after_seconds)
        if self._throttle(token):
            self.stats.record_fault("rate_limit")
            return with_retry_after(error(429), faults.retry_after_seconds)
        if self._dice.chance(faults.timeout_rate):
            self.stats.record_fault("hang")
            self._sleep(self.faults.hang_seconds)
        if self._dice.chance(faults.error_rate):
            self.stats.record_fault("error_500")
            return error(500)
        if self._dice.chance(faults.gateway_error_rate):
            self.stats.record_fault("gateway")
            return html_error(self._dice.choice((502, 504)))
        return None

    def _throttle(self, token: str) -> bool:
        """Whether this token is over ``rate_limit_per_second`` (each token has its bucket)."""
        rate = self.faults.rate_limit_per_second
        with self._bucket_lock:
            if rate is None:
                self._buckets.clear()
                return False
            bucket = self._buckets.get(token)
            if bucket is None or bucket.rate != rate:
                bucket = self._buckets[token] = TokenBucket(rate)
        return not bucket.try_take()

    def _scripted(self, fault: ScriptedFault) -> Response | None:
        """The answer of a scripted fault, or None when the request goes on (hang/corrupt)."""
        if fault.kind == "status":
            response = error(fault.status)
        elif fault.kind == "html":
            response = html_error(fault.status)
        else:
            return None
        retry_after = fault.retry_after
        if retry_after is None and fault.status in (429, 503):
            retry_after = self.faults.retry_after_seconds
        return with_retry_after(response, retry_after)

    def _data_answer(self, raw_path: str, scripted: ScriptedFault | None) -> Response:
        parts = api_parts(raw_path)
        kind = path_kind(parts)
        now = self.clock.now()
        cache_seconds = cache_window(kind, parts)
        # Bodies are computed at the start of their cache window (see the module docstring).
        at = now - timedelta(seconds=now.timestamp() % cache_seconds)
        query = parse_qs(urlsplit(raw_path).query)
        data = route(DataRequest(kind, parts, query, at, self.world, self.faults))
        if self.faults.extra_fields:
            data = add_extra_fields(data)
        max_age = max(1, math.ceil(cache_seconds - now.timestamp() % cache_seconds))
        response = Response(200, json_bytes(data), cache_control=f"max-age={max_age}")
        return self._body_fault(response, scripted)

    def _body_fault(self, response: Response, scripted: ScriptedFault | None) -> Response:
        """The response, malformed or truncated when a scripted or random fault says so."""
        if scripted is not None and scripted.kind in ("malformed", "truncated"):
            return corrupt(response, scripted.kind, scripted.status)
        if self._dice.chance(self.faults.malformed_rate):
            self.stats.record_fault("malformed")
            return corrupt(response, "malformed", 200)
        if self._dice.chance(self.faults.truncated_rate):
            self.stats.record_fault("truncated")
            return corrupt(response, "truncated", 200)
        return response


def serve_forever(  # noqa: PLR0913 - keyword-only settings of one server
    *,
    host: str,
    port: int,
    seed: int,
    token: str,
    start_time: datetime | None = None,
    frozen_clock: bool = False,
    missing_clans: Iterable[str] = (),
    faults: FaultConfig | None = None,
    activity_per_hour: float = DEFAULT_ACTIVITY_PER_HOUR,
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
        activity_per_hour=activity_per_hour,
    )
    api.start()
    print(
        f"Simulated Clash of Clans API at {api.base_url} (seed {seed}, activity "
        f"{activity_per_hour}/h, simulated time "
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
