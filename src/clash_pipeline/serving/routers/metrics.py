"""``GET /api/v2/metrics``: one metric of a clan, every member's value at every snapshot."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from clash_pipeline.serving.caching import Built, versioned_response
from clash_pipeline.serving.dependencies import ClanQuery, Serving, ServingState, clan_param
from clash_pipeline.serving.errors import ApiError, clan_not_found

router = APIRouter()


def check_metric(catalogue: dict[str, list[str]], metric: str, window: str) -> None:
    """A 400 naming the known metrics (or windows) unless the catalogue has this pair.

    Without a catalogue (the seed is absent) every pair is asked of the marts.
    """
    if not catalogue:
        return
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
            f"metric {metric} has the windows {', '.join(catalogue[metric])}, not {window[:20]!r}",
        )


def metric_body(
    state: ServingState, tag: str, metric: str, window: str, version: str | None
) -> Built:
    rows = state.warehouse.clan_metric(tag, metric, window)
    data = {
        "clan_tag": tag,
        "metric_name": metric,
        "metric_window": window,
        "payload_version": version,
        "values": rows,
    }
    return Built(data, cacheable=True)


@router.get("/api/v2/metrics", tags=["metrics"], summary="One metric of a clan over time")
def metrics(
    state: Serving,
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
    check_metric(state.catalogue, metric, window)
    version = state.warehouse.latest_version(tag)
    return versioned_response(
        request,
        state.bodies,
        f"metrics|{tag}|{metric}|{window}",
        version,
        lambda: metric_body(state, tag, metric, window, version),
        clan_not_found(tag),
    )
