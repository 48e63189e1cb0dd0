"""``GET /api/v2/members/{tag}``: one member's stats per snapshot and metrics over time.

A member's answer depends on every clan the player was seen in, so its
version joins those clans' latest payload versions.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from clash_pipeline.serving.caching import Built, versioned_response
from clash_pipeline.serving.dependencies import Serving, ServingState, clan_param
from clash_pipeline.serving.errors import ApiError
from clash_pipeline.serving.routers.roster import split_member

router = APIRouter()

# a longer joined version (a player of many clans) is hashed: the ETag stays short
MAX_VERSION_LENGTH = 200


def member_version(versions: list[str]) -> str | None:
    """The member's payload version: its clans' latest versions joined (None: never seen)."""
    version = "-".join(versions) if versions else None
    if version is not None and len(version) > MAX_VERSION_LENGTH:
        version = hashlib.md5(version.encode(), usedforsecurity=False).hexdigest()
    return version


def metric_series(rows: list[dict[str, Any]]) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """``marts.metrics`` rows as metric -> window -> [{as_of, value}, ...]."""
    series: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for row in rows:
        series.setdefault(row["metric_name"], {}).setdefault(row["metric_window"], []).append(
            {"as_of": row["as_of"], "value": row["value"]}
        )
    return series


def member_body(
    state: ServingState, player: str, clan_tag: str | None, version: str | None
) -> Built:
    """The member in ``clan_tag`` (default: the current or latest clan); None if never seen."""
    memberships = state.warehouse.member_clans(player)
    if not memberships:
        return Built(None, cacheable=False)
    chosen = clan_tag or memberships[0]["clan_tag"]
    if chosen not in {m["clan_tag"] for m in memberships}:
        raise ApiError(
            404,
            "member_not_found",
            f"player {player} was never in clan {chosen}; clans: "
            + ", ".join(m["clan_tag"] for m in memberships),
        )
    found = state.warehouse.member(player, chosen)
    data = {
        "player_tag": player,
        "clan_tag": chosen,
        "payload_version": version,
        "memberships": memberships,
        "member": split_member(found["roster"], state.metric_columns) if found["roster"] else None,
        "history": found["history"],
        "metrics": metric_series(found["metrics"]),
    }
    return Built(data, cacheable=True)


@router.get(
    "/api/v2/members/{tag}",
    tags=["members"],
    summary="One member's stats per snapshot and metrics over time",
)
def member(
    state: Serving,
    request: Request,
    tag: str,
    clan: Annotated[
        str | None,
        Query(max_length=40, description="Clan tag (default: the member's current clan)."),
    ] = None,
) -> Response:
    player = clan_param(tag, kind="player tag")
    clan_tag = clan_param(clan) if clan else None
    version = member_version(state.warehouse.member_versions(player))
    missing = ApiError(
        404,
        "member_not_found",
        f"player {player} was never seen in a clan of the warehouse; "
        "the roster (GET /api/v2/roster) lists the members",
    )
    return versioned_response(
        request,
        state.bodies,
        f"member|{player}|{clan_tag}",
        version,
        lambda: member_body(state, player, clan_tag, version),
        missing,
    )
