"""``GET /api/v2/ingestion/health``: is a clan's data fresh, and how did its last run go.

Health changes with the clock (staleness) and with every run, not with the
clan's payload version, so it has no ETag and is never kept (``no-store``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from clash_pipeline.serving.dependencies import ClanQuery, Serving, clan_param
from clash_pipeline.serving.encoding import json_response
from clash_pipeline.serving.errors import ApiError

router = APIRouter()


def anomalies(last_run: dict[str, Any]) -> dict[str, Any]:
    """The last run's health summary (``ops.ingest_runs.summary -> 'health'``) and counters."""
    health = last_run.get("health") or {}
    return {
        "status": health.get("status"),
        "failed_phase": health.get("failed_phase"),
        "failed_requests": last_run.get("failed_requests"),
        "retries": last_run.get("retries"),
        "throttled": last_run.get("throttled"),
        # given up after the last retry (429, 5xx, timeouts): the run is 'partial'
        "dropped_requests": last_run.get("dropped_requests"),
        "dropped_player_fetches": last_run.get("dropped_players"),
        "members_fetched": health.get("members_fetched"),
        "members_in_snapshot": health.get("members_in_snapshot"),
        "hours_since_previous_success": health.get("hours_since_previous_success"),
    }


def health_body(tag: str, found: dict[str, Any], stale_hours: float) -> dict[str, Any]:
    """The answer from :meth:`Warehouse.ingestion_health`'s rows; 404 without any run."""
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
    return {
        "clan_tag": tag,
        "stale": hours_since is None or hours_since > stale_hours,
        "stale_after_hours": stale_hours,
        "hours_since_last_success": hours_since,
        "last_success": last_success,
        "last_run": last_run,
        "phases": found["phases"],
        "anomalies": anomalies(last_run),
        "open_alerts": found["alerts"],
        "checked_at": found["now"],
    }


@router.get(
    "/api/v2/ingestion/health",
    tags=["ingestion"],
    summary="Last success, last run's phases, open alerts, staleness",
)
def ingestion_health(state: Serving, clan: ClanQuery) -> Response:
    tag = clan_param(clan)
    body = health_body(tag, state.warehouse.ingestion_health(tag), state.stale_hours)
    return json_response(body, cache_control="no-store")
