"""The read-only roster API and the dashboard it serves (FastAPI).

``create_app(database_url)`` builds the app. Clan-scoped answers carry the
clan's latest ``payload_version`` (``marts.roster_snapshots``) as a strong
``ETag``; ``If-None-Match`` with it (strong, weak, in a list, or ``*``) gets a
``304`` after one indexed lookup and before any body is built. Built bodies are
kept in memory keyed by (path, payload_version), so a version change is also a
cache miss on the server. ``Cache-Control: no-cache`` makes clients revalidate.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any
from urllib.parse import parse_qs
from uuid import UUID

import orjson
import psycopg
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from clash_pipeline.clash_api.tags import normalize_tag
from clash_pipeline.errors import InvalidTagError
from clash_pipeline.project import static_dir
from clash_pipeline.serving.queries import Warehouse, metric_catalogue, roster_metric_columns
from clash_pipeline.versions import ingestion_version

DEFAULT_STALE_HOURS = 25.0
BODY_CACHE_ENTRIES = 256
CACHE_CONTROL = "no-cache"
JSON_TYPE = "application/json"


ClanQuery = Annotated[
    str,
    Query(
        min_length=1,
        max_length=40,
        description="Clan tag, e.g. #2PR8R8V8P (URL-encode # as %23, or leave it out).",
    ),
]


class ApiError(Exception):
    """An expected error: HTTP status, a stable code and a message saying what to do."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def error_response(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}},
        status_code=status,
        headers={"Cache-Control": "no-store"},
    )


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    raise TypeError(f"cannot encode {type(value).__name__}")


def _orjson_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    raise TypeError(f"cannot encode {type(value).__name__}")


def dump_json(data: Any) -> bytes:
    """Compact JSON; timestamps in UTC with a ``Z``, numerics as numbers."""
    try:
        return orjson.dumps(
            data,
            default=_orjson_default,
            option=orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC | orjson.OPT_NON_STR_KEYS,
        )
    except TypeError:  # e.g. integers beyond 64 bits: the slower, general encoder
        return json.dumps(
            data, default=_json_default, ensure_ascii=False, separators=(",", ":")
        ).encode("utf-8")


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


def clan_param(value: str, *, kind: str = "clan tag") -> str:
    try:
        return normalize_tag(value, kind=kind)
    except InvalidTagError as exc:
        raise ApiError(400, "invalid_tag", f"{exc.message}; {exc.hint}") from None


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

    def __init__(self, app: Any, lookup: Callable[[str], Awaitable[str | None]]) -> None:
        self.app = app
        self.lookup = lookup

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["path"] != self.PATH or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        condition = next(
            (value for name, value in scope["headers"] if name == b"if-none-match"), None
        )
        clans = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("clan")
        if condition is None or not clans or len(clans) != 1 or len(clans[0]) > 40:
            await self.app(scope, receive, send)
            return
        try:
            tag = normalize_tag(clans[0], kind="clan tag")
        except InvalidTagError:
            await self.app(scope, receive, send)
            return
        try:
            version = await self.lookup(tag)
        except psycopg.Error:  # let the app answer it with its error handlers
            await self.app(scope, receive, send)
            return
        scope["clash.roster_version"] = (tag, version)
        if version is None or not if_none_match_hits(condition.decode("latin-1"), version):
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


def create_app(
    database_url: str,
    *,
    stale_hours: float = DEFAULT_STALE_HOURS,
    pool_size: int = 8,
    body_cache: bool = True,
) -> FastAPI:
    """The API and dashboard on ``database_url`` (read as ``clash_readonly``).

    ``body_cache=False`` builds every 200 from the marts (the benchmark's
    reference point); otherwise built bodies are kept by payload version.
    """
    warehouse = Warehouse(database_url, max_size=pool_size)
    bodies = BodyCache(BODY_CACHE_ENTRIES if body_cache else 0)
    catalogue = metric_catalogue()
    metric_columns = roster_metric_columns(catalogue)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        warehouse.open()
        try:
            await warehouse.open_async()
            yield
        finally:
            await warehouse.close_async()
            warehouse.close()

    app = FastAPI(
        title="clash-pipeline roster API",
        version=ingestion_version(),
        description=(
            "Read-only API over the clash-pipeline warehouse. Clan-scoped answers carry the "
            "clan's latest `payload_version` as a strong `ETag`; send it back in "
            "`If-None-Match` to get `304 Not Modified` until a new snapshot lands."
        ),
        lifespan=lifespan,
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.warehouse = warehouse
    app.state.bodies = bodies

    # ------------------------------------------------------------ errors

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for item in exc.errors():
            where = ".".join(str(part) for part in item.get("loc", ()) if part != "query")
            problems.append(f"{where}: {item.get('msg', 'invalid')}")
        return error_response(400, "invalid_parameter", "; ".join(problems) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return error_response(
                404, "not_found", f"no such path {request.url.path}; see /api/docs"
            )
        if exc.status_code == 405:
            return error_response(405, "method_not_allowed", "this API is read-only: use GET")
        return error_response(exc.status_code, "http_error", str(exc.detail))

    @app.exception_handler(psycopg.OperationalError)
    async def _db_down(request: Request, exc: psycopg.OperationalError) -> JSONResponse:
        return error_response(
            503, "database_unavailable", "the warehouse database is unavailable; retry later"
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return error_response(500, "internal_error", "internal error; see the server log")

    # ------------------------------------------------------------ helpers

    def versioned(
        request: Request,
        key: str,
        version: str | None,
        build: Callable[[], tuple[Any, bool]],
        missing: ApiError,
    ) -> Response:
        """Answer a version-keyed resource: 304, a cached body, or a fresh one.

        ``build`` returns (data, cacheable); data None means 404.
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

    def no_clan(clan: str) -> ApiError:
        return ApiError(
            404,
            "clan_not_found",
            f"no snapshot of clan {clan} in the warehouse; GET /api/v2/clans lists the clans "
            "(add it to COC_CLAN_TAGS and run the pipeline)",
        )

    def split_member(row: dict[str, Any]) -> dict[str, Any]:
        member: dict[str, Any] = {}
        metrics: dict[str, Any] = {}
        for column, value in row.items():
            if column in metric_columns:
                metrics[column] = value
            elif column not in ("clan_tag", "row_hash"):
                member[column] = value
        member["metrics"] = metrics
        return member

    # ------------------------------------------------------------ API

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/dashboard/")

    @app.get("/api/v2/clans", tags=["roster"], summary="The clans known to the warehouse")
    def clans() -> Response:
        rows = warehouse.clans()
        body = {
            "clans": [
                {
                    "clan_tag": row["clan_tag"],
                    "clan_name": row["clan_name"],
                    "member_count": row["member_count"],
                    "payload_version": row["payload_version"],
                    "snapshot_at": row["snapshot_at"],
                }
                for row in rows
            ]
        }
        return Response(
            dump_json(body), media_type=JSON_TYPE, headers={"Cache-Control": "no-cache"}
        )

    @app.get(
        "/api/v2/roster",
        tags=["roster"],
        summary="The latest roster of a clan",
        responses={304: {"description": "Not modified: If-None-Match names the payload_version"}},
    )
    def roster(request: Request, clan: ClanQuery) -> Response:
        tag = clan_param(clan)
        known = request.scope.get("clash.roster_version")
        version = known[1] if known and known[0] == tag else warehouse.latest_version(tag)

        def build() -> tuple[Any, bool]:
            snapshot, members = warehouse.roster(tag)
            if snapshot is None:
                return None, False
            as_of = [m["metrics_as_of"] for m in members if m.get("metrics_as_of")]
            # the roster table is rebuilt after roster_snapshots in a dbt run:
            # keep the body only when both describe the same snapshot
            consistent = snapshot["payload_version"] == version and (
                not as_of or max(as_of) == snapshot["snapshot_at"]
            )
            data = {
                "clan_tag": tag,
                "clan_name": snapshot["clan_name"],
                "payload_version": snapshot["payload_version"],
                "snapshot": snapshot,
                "members": [split_member(m) for m in members],
            }
            return data, consistent

        return versioned(request, f"roster|{tag}", version, build, no_clan(tag))

    @app.get(
        "/api/v2/members/{tag}",
        tags=["members"],
        summary="One member's stats per snapshot and metrics over time",
    )
    def member(
        request: Request,
        tag: str,
        clan: Annotated[
            str | None,
            Query(max_length=40, description="Clan tag (default: the member's current clan)."),
        ] = None,
    ) -> Response:
        player = clan_param(tag, kind="player tag")
        clan_tag = clan_param(clan) if clan else None
        versions = warehouse.member_versions(player)
        version = "-".join(versions) if versions else None
        missing = ApiError(
            404,
            "member_not_found",
            f"player {player} was never seen in a clan of the warehouse; "
            "the roster (GET /api/v2/roster) lists the members",
        )

        def build() -> tuple[Any, bool]:
            memberships = warehouse.member_clans(player)
            if not memberships:
                return None, False
            chosen = clan_tag or memberships[0]["clan_tag"]
            if chosen not in {m["clan_tag"] for m in memberships}:
                raise ApiError(
                    404,
                    "member_not_found",
                    f"player {player} was never in clan {chosen}; clans: "
                    + ", ".join(m["clan_tag"] for m in memberships),
                )
            found = warehouse.member(player, chosen)
            series: dict[str, dict[str, list[dict[str, Any]]]] = {}
            for row in found["metrics"]:
                series.setdefault(row["metric_name"], {}).setdefault(
                    row["metric_window"], []
                ).append({"as_of": row["as_of"], "value": row["value"]})
            return {
                "player_tag": player,
                "clan_tag": chosen,
                "payload_version": version,
                "memberships": memberships,
                "member": split_member(found["roster"]) if found["roster"] else None,
                "history": found["history"],
                "metrics": series,
            }, True

        if version is not None and len(version) > 200:  # many clans: keep the ETag short
            version = hashlib.md5(version.encode(), usedforsecurity=False).hexdigest()
        return versioned(request, f"member|{player}|{clan_tag}", version, build, missing)

    @app.get("/api/v2/metrics", tags=["metrics"], summary="One metric of a clan over time")
    def metrics(
        request: Request,
        clan: ClanQuery,
        metric: Annotated[
            str, Query(min_length=1, max_length=40, description="Metric name, e.g. ace.")
        ],
        window: Annotated[
            str,
            Query(min_length=1, max_length=20, description="Window: latest, 7d, 30d or season."),
        ],
    ) -> Response:
        tag = clan_param(clan)
        if catalogue:
            if metric not in catalogue:
                raise ApiError(
                    400,
                    "unknown_metric",
                    f"unknown metric {metric[:40]!r}; known: {', '.join(sorted(catalogue))}",
                )
            if window not in catalogue[metric]:
                raise ApiError(
                    400,
                    "unknown_window",
                    f"metric {metric} has the windows {', '.join(catalogue[metric])}, "
                    f"not {window[:20]!r}",
                )
        version = warehouse.latest_version(tag)

        def build() -> tuple[Any, bool]:
            rows = warehouse.clan_metric(tag, metric, window)
            return {
                "clan_tag": tag,
                "metric_name": metric,
                "metric_window": window,
                "payload_version": version,
                "values": rows,
            }, True

        return versioned(request, f"metrics|{tag}|{metric}|{window}", version, build, no_clan(tag))

    @app.get(
        "/api/v2/ingestion/health",
        tags=["ingestion"],
        summary="Last success, last run's phases, open alerts, staleness",
    )
    def ingestion_health(clan: ClanQuery) -> Response:
        tag = clan_param(clan)
        found = warehouse.ingestion_health(tag)
        last_success, last_run = found["last_success"], found["last_run"]
        if last_run is None:
            raise ApiError(
                404,
                "clan_not_found",
                f"no ingestion run of clan {tag}; run the pipeline for it "
                "(clash-pipeline run --clan TAG)",
            )
        success_at = (last_success or {}).get("finished_at")
        hours_since = (
            round((found["now"] - success_at).total_seconds() / 3600, 3) if success_at else None
        )
        health = last_run.get("health") or {}
        body = {
            "clan_tag": tag,
            "stale": hours_since is None or hours_since > stale_hours,
            "stale_after_hours": stale_hours,
            "hours_since_last_success": hours_since,
            "last_success": last_success,
            "last_run": last_run,
            "phases": found["phases"],
            "anomalies": {
                "status": health.get("status"),
                "failed_phase": health.get("failed_phase"),
                "failed_requests": last_run.get("failed_requests"),
                "retries": last_run.get("retries"),
                "throttled": last_run.get("throttled"),
                "members_fetched": health.get("members_fetched"),
                "members_in_snapshot": health.get("members_in_snapshot"),
                "hours_since_previous_success": health.get("hours_since_previous_success"),
            },
            "open_alerts": found["alerts"],
            "checked_at": found["now"],
        }
        return Response(
            dump_json(body), media_type=JSON_TYPE, headers={"Cache-Control": "no-store"}
        )

    app.mount("/dashboard", StaticFiles(directory=static_dir(), html=True), name="dashboard")
    app.add_middleware(ConditionalRosterShortcut, lookup=warehouse.latest_version_async)
    return app
