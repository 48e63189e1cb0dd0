"""``GET /api/v2/roster``: a clan's latest roster, members with their metrics.

The conditional request (``If-None-Match``) of this path is usually answered
before it gets here, by :class:`clash_pipeline.serving.caching.ConditionalRosterShortcut`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from clash_pipeline.serving.caching import Built, latest_roster_version, versioned_response
from clash_pipeline.serving.dependencies import ClanQuery, Serving, ServingState, clan_param
from clash_pipeline.serving.errors import clan_not_found

router = APIRouter()

ROSTER_DESCRIPTION = (
    "The clan's latest snapshot and its current members, each with its latest metrics "
    "under `metrics`.\n\n"
    "**Order of `members`**, the order a clan leader compares members by since the "
    "October 2025 split (trophies of different scales are never compared):\n\n"
    "1. `league_tier_rank` descending: the ranked league tier's order from the "
    "`league_tiers` seed (34 Legend League ... 1 Skeleton League 1, 0 Unranked; a member "
    "with no tier, e.g. before the split, ranks as Unranked);\n"
    "2. `ranked_trophies` descending: this tournament's trophies, within the tier;\n"
    "3. `battle_mode_trophies` descending: the frozen battle-mode count of Unranked "
    "members (before the split: everyone's trophies, so a pre-split roster is in "
    "trophy order);\n"
    "4. `player_tag`.\n\n"
    "`trophies` is the raw API value, whose meaning depends on the member's tier: use "
    "`ranked_trophies` and `battle_mode_trophies`.\n\n"
    "**`profile_fetched_at`**: when the member's profile (`GET /players`) behind the "
    "profile fields (heroes, units, war stars, capital contributions, rush) was fetched. "
    "A run fetches a profile only when the member changed (or it is too old); otherwise "
    "the last profile is carried forward, so this can be earlier than the snapshot. "
    "`null` when no profile of the member was fetched yet (profile fields `null`)."
)


def split_member(row: dict[str, Any], metric_columns: dict[str, tuple[str, str]]) -> dict[str, Any]:
    """A ``marts.roster`` row as the API shows a member: its metric columns under ``metrics``."""
    member: dict[str, Any] = {}
    metrics: dict[str, Any] = {}
    for column, value in row.items():
        if column in metric_columns:
            metrics[column] = value
        elif column not in ("clan_tag", "row_hash"):
            member[column] = value
    member["metrics"] = metrics
    return member


def roster_body(state: ServingState, tag: str, version: str | None) -> Built:
    """The roster of ``tag``, cacheable when it describes the snapshot ``version`` names."""
    snapshot, members = state.warehouse.roster(tag)
    if snapshot is None:
        return Built(None, cacheable=False)
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
        "members": [split_member(m, state.metric_columns) for m in members],
    }
    return Built(data, cacheable=consistent)


@router.get(
    "/api/v2/roster",
    tags=["roster"],
    summary="The latest roster of a clan",
    description=ROSTER_DESCRIPTION,
    responses={304: {"description": "Not modified: If-None-Match names the payload_version"}},
)
def roster(state: Serving, request: Request, clan: ClanQuery) -> Response:
    tag = clan_param(clan)
    version = latest_roster_version(request, tag, state.warehouse.latest_version)
    return versioned_response(
        request,
        state.bodies,
        f"roster|{tag}",
        version,
        lambda: roster_body(state, tag, version),
        clan_not_found(tag),
    )
