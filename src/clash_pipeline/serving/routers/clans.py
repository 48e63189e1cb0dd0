"""``GET /api/v2/clans``: the clans the warehouse has a snapshot of (the dashboard's menu)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from clash_pipeline.serving.dependencies import Serving
from clash_pipeline.serving.encoding import json_response

router = APIRouter()


@router.get("/api/v2/clans", tags=["roster"], summary="The clans known to the warehouse")
def clans(state: Serving) -> Response:
    rows = state.warehouse.clans()
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
    # no ETag: a list of every clan has no single payload_version
    return json_response(body, cache_control="no-cache")
