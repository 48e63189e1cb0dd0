"""The data paths under ``/v1``: which path is which, and one small handler per path.

A handler gets the request with the time at the start of its cache window and returns
the body (or raises :class:`ApiError`); it sees the test's run-time switches (missing
clans and players, private war logs, departed players) through the fault config.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import unquote

from clash_pipeline.clash_api.tags import normalize_tag
from clash_pipeline.errors import InvalidTagError
from clash_pipeline.simulator import paging
from clash_pipeline.simulator.faults import FaultConfig
from clash_pipeline.simulator.responses import ApiError
from clash_pipeline.simulator.world import RAIDS_DEFAULT_COUNT, WARLOG_DEFAULT_COUNT, World

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

#: The clans whose members a ``merged_member_lists`` fault appends to a clan's memberList.
MERGE_PARTNER = "#2LQ0PGRJ"
MERGE_PARTNER_ALT = "#2LQ0PGRU"

#: What follows /clans/{tag}, by kind.
_CLAN_PATHS: dict[tuple[str, ...], str] = {
    (): "clan",
    ("members",): "members",
    ("warlog",): "warlog",
    ("currentwar",): "currentwar",
    ("currentwar", "leaguegroup"): "leaguegroup",
    ("capitalraidseasons",): "capitalraidseasons",
}


def path_kind(parts: list[str]) -> str:
    """The kind of a data path (split on "/", after /v1); "unknown" when there is none."""
    if len(parts) >= 2 and parts[0] == "clans" and tuple(parts[2:]) in _CLAN_PATHS:
        return _CLAN_PATHS[tuple(parts[2:])]
    if len(parts) == 2 and parts[0] == "players":
        return "player"
    if len(parts) == 3 and parts[:2] == ["clanwarleagues", "wars"]:
        return "cwl_war"
    if parts and parts[0] in ("leagues", "leaguetiers") and len(parts) <= 2:
        return parts[0]
    return "unknown"


def parse_tag(segment: str, what: str) -> str:
    raw = unquote(segment)
    if not raw.startswith("#"):
        raise ApiError(400, f"Invalid value for parameter {what}: tags start with '#' (%23)")
    try:
        return normalize_tag(raw)
    except InvalidTagError:
        raise ApiError(404, f"Not found with tag {raw.lstrip('#')}") from None


@dataclass(frozen=True, slots=True)
class DataRequest:
    kind: str
    parts: list[str]
    query: paging.Query
    at: datetime  # the start of the path's cache window: the time the body shows
    world: World
    faults: FaultConfig


def cache_window(kind: str, parts: list[str]) -> int:
    """The cache window of a data path in seconds (404 for a path the API does not have)."""
    if kind == "unknown":
        raise ApiError(404, "Unknown path: " + "/".join(["", "v1", *parts]))
    return CACHE_SECONDS[kind]


def route(request: DataRequest) -> Any:
    """The body of a data path, or an :class:`ApiError`."""
    return _HANDLERS[request.kind](request)


def _not_found(tag: str) -> ApiError:
    return ApiError(404, f"Not found with tag {tag[1:]}")


def _leagues(request: DataRequest) -> Any:
    kind, world = request.kind, request.world
    items = world.leagues() if kind == "leagues" else world.league_tiers(request.at)
    if items is None:
        raise ApiError(404, "Resource was not found.")
    if len(request.parts) == 1:
        return paging.page(items, request.query, len(items))
    for item in items:
        if str(item["id"]) == request.parts[1]:
            return item
    parameter = "leagueId" if kind == "leagues" else "leagueTierId"
    raise ApiError(400, f"Unknown value for parameter {parameter}")


def _player(request: DataRequest) -> Any:
    tag = parse_tag(request.parts[1], "playerTag")
    missing = request.faults.is_missing_player(tag)
    body = None if missing else request.world.player(tag, request.at)
    if body is None:
        raise _not_found(tag)
    return body


def _cwl_war(request: DataRequest) -> Any:
    tag = parse_tag(request.parts[2], "warTag")
    body = request.world.cwl_war(tag, request.at)
    if body is None:
        raise _not_found(tag)
    return body


def _clan_tag(request: DataRequest) -> str:
    """The clan of a /clans/{tag}... path (404 when a test made it missing)."""
    tag = parse_tag(request.parts[1], "clanTag")
    if request.faults.is_missing_clan(tag):
        raise _not_found(tag)
    return tag


def _war_clan_tag(request: DataRequest) -> str:
    """The clan of a war path (403 when its war log is private)."""
    tag = _clan_tag(request)
    if request.faults.is_private_warlog(tag):
        raise ApiError(403, "")  # the real body has no message here
    return tag


def _staying(faults: FaultConfig, members: list[Any]) -> list[Any]:
    """The member list without the players a test made leave (``departed_players``)."""
    return [m for m in members if not faults.has_departed(m["tag"])]


def _clan(request: DataRequest) -> Any:
    tag = _clan_tag(request)
    faults = request.faults
    body = request.world.clan(tag, request.at)
    if faults.is_private_warlog(tag):
        body = {**body, "isWarLogPublic": False}
    if faults.departed_players:
        members = _staying(faults, body["memberList"])
        body = {**body, "memberList": members, "members": len(members)}
    if faults.has_merged_member_list(tag):
        other = request.world.clan(_merge_partner(tag), request.at)["memberList"]
        body = {**body, "memberList": [*body["memberList"], *other]}
    return body


def _merge_partner(tag: str) -> str:
    """The clan whose members a merged memberList adds (any other tag is a clan too)."""
    return MERGE_PARTNER if tag != MERGE_PARTNER else MERGE_PARTNER_ALT


def _members(request: DataRequest) -> Any:
    tag = _clan_tag(request)
    items = _staying(request.faults, request.world.members(tag, request.at))
    return paging.page(items, request.query, len(items))


def _current_war(request: DataRequest) -> Any:
    return request.world.current_war(_war_clan_tag(request), request.at)


def _league_group(request: DataRequest) -> Any:
    body = request.world.league_group(_clan_tag(request), request.at)
    if body is None:
        raise ApiError(404, "Resource was not found.")
    return body


def _warlog(request: DataRequest) -> Any:
    tag = _war_clan_tag(request)
    start, count = paging.window(request.query, WARLOG_DEFAULT_COUNT)
    items = request.world.warlog(tag, request.at, start + count + 1)
    return paging.page(items, request.query, WARLOG_DEFAULT_COUNT)


def _capital_raid_seasons(request: DataRequest) -> Any:
    tag = _clan_tag(request)
    start, count = paging.window(request.query, RAIDS_DEFAULT_COUNT)
    items = request.world.capital_raid_seasons(tag, request.at, start + count + 1)
    return paging.page(items, request.query, RAIDS_DEFAULT_COUNT)


_HANDLERS: dict[str, Callable[[DataRequest], Any]] = {
    "leagues": _leagues,
    "leaguetiers": _leagues,
    "player": _player,
    "cwl_war": _cwl_war,
    "clan": _clan,
    "members": _members,
    "currentwar": _current_war,
    "leaguegroup": _league_group,
    "warlog": _warlog,
    "capitalraidseasons": _capital_raid_seasons,
}
