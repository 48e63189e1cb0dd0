"""What a saved body is, from its shape alone (the table in the package docstring).

Only ``warStartTime`` separates a CWL war from a current war: the CWL war
endpoint sends it and the current-war endpoint does not. ``attacksPerMember``
is no marker (its absence only dates a war before 2022, and a friendly war may
have one attack per member). Where the shape cannot tell (error bodies, empty
``items``), :class:`BodyShape` lists every endpoint it could be from and the
caller asks the manifest, the request path or the file name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Endpoints whose body belongs to a clan that must be known.
CLAN_SCOPED = frozenset(
    {"clan", "clan_members", "warlog", "currentwar", "leaguegroup", "capitalraidseasons"}
)
# Endpoints that identify one resource per (endpoint, tag): two different bodies
# at the same fetch time are a conflict. A CWL war without its war tag is not.
GLOBAL_ENDPOINTS = frozenset({"leagues", "leaguetiers"})

# Error reasons of the API and their HTTP status (DOMAIN.md), for plain error
# bodies saved without their status.
REASON_STATUS = {
    "badRequest": 400,
    "accessDenied": 403,
    "accessDenied.invalidIp": 403,
    "notFound": 404,
    "requestThrottled": 429,
    "unknownException": 500,
    "inMaintenance": 503,
}
_ERROR_KEYS = frozenset({"reason", "message", "type", "detail"})

_PLAYER_KEYS = ("troops", "heroes", "spells", "achievements", "warStars", "attackWins")
_RAID_KEYS = ("attackLog", "defenseLog", "capitalTotalLoot", "raidsCompleted", "members")
_WAR_LOG_KEYS = ("result", "opponent", "teamSize")
# An empty list could have come from any endpoint that answers with ``items``.
_LIST_ENDPOINTS = ("clan_members", "warlog", "capitalraidseasons", "leagues", "leaguetiers")
# League ids are allocated in blocks: 105xxxxxx are league tiers, 29xxxxxx leagues.
_LEAGUE_ID_BLOCKS = (
    (range(105_000_000, 106_000_000), "leaguetiers"),
    (range(29_000_000, 30_000_000), "leagues"),
)


@dataclass(frozen=True)
class BodyShape:
    """What a body's shape says: the endpoints it can be from (the first is the default).

    ``default`` is None when the shape fits several endpoints equally (an empty
    ``items`` list). ``tag`` is the body's own tag (clan, player), ``war_clan``
    the requesting side of a current war, ``clans`` the clans a league group or
    CWL war involves, or the distinct ``clan`` sides of a war log's items (the
    requesting clan: one when the log is whole). Tags are as the body has them,
    validated by the caller.
    """

    candidates: tuple[str, ...]
    default: str | None
    tag: object = None
    war_clan: object = None
    clans: tuple[str, ...] = ()
    member_tags: frozenset[str] = frozenset()  # a clan's memberList or a members list


def classify_body(body: Any) -> BodyShape | None:
    """Recognise a successful response body by its shape; None if it is not one."""
    if not isinstance(body, dict):
        return None
    if "memberList" in body and "tag" in body:
        roster = body["memberList"] if isinstance(body["memberList"], list) else []
        return BodyShape(("clan",), "clan", tag=body.get("tag"), member_tags=_tags_of(roster))
    if "season" in body and "rounds" in body:
        clans = tuple(
            c["tag"] for c in body.get("clans") or [] if isinstance(c, dict) and "tag" in c
        )
        return BodyShape(("leaguegroup",), "leaguegroup", clans=clans)
    if "tag" in body and "townHallLevel" in body and any(k in body for k in _PLAYER_KEYS):
        return BodyShape(("player",), "player", tag=body.get("tag"))
    return _war_shape(body) or _list_shape(body)


def is_error_body(body: Any) -> bool:
    """Whether ``body`` is the API's error object (``{reason, message?}``)."""
    return (
        isinstance(body, dict) and isinstance(body.get("reason"), str) and set(body) <= _ERROR_KEYS
    )


def _war_shape(body: dict[str, Any]) -> BodyShape | None:
    state = body.get("state")
    clan, opponent = body.get("clan"), body.get("opponent")
    if isinstance(state, str) and (isinstance(clan, dict) or isinstance(opponent, dict)):
        if state == "notInWar":
            return BodyShape(("currentwar",), "currentwar")
        sides = tuple(
            side["tag"]
            for side in (clan, opponent)
            if isinstance(side, dict) and isinstance(side.get("tag"), str)
        )
        war_clan = clan.get("tag") if isinstance(clan, dict) else None
        if "warStartTime" in body:
            return BodyShape(("cwl_war", "currentwar"), "cwl_war", war_clan=war_clan, clans=sides)
        return BodyShape(("currentwar", "cwl_war"), "currentwar", war_clan=war_clan, clans=sides)
    if state == "notInWar" and set(body) <= {"state", "reason"}:
        return BodyShape(("currentwar", "leaguegroup"), "currentwar")
    return None


def _list_shape(body: dict[str, Any]) -> BodyShape | None:
    """A list answer (``items``): the endpoint its items all come from."""
    items = body.get("items")
    if not isinstance(items, list) or not set(body) <= {"items", "paging"}:
        return None
    if not items:
        return BodyShape(_LIST_ENDPOINTS, None)
    kinds = {_item_kind(item) for item in items}
    kind = kinds.pop() if len(kinds) == 1 else None
    if kind == "warlog":
        return BodyShape((kind,), kind, clans=_war_log_clans(items))
    if kind == "clan_members":
        return BodyShape((kind,), kind, member_tags=_tags_of(items))
    return BodyShape((kind,), kind) if kind is not None else None


def _tags_of(members: list[Any]) -> frozenset[str]:
    return frozenset(m["tag"] for m in members if is_member(m))


def _war_log_clans(items: list[dict[str, Any]]) -> tuple[str, ...]:
    """The distinct ``clan.tag`` of a war log's items, in order (each item is one war)."""
    tags = (item["clan"].get("tag") if isinstance(item["clan"], dict) else None for item in items)
    return tuple(dict.fromkeys(tag for tag in tags if isinstance(tag, str)))


def _is_raid_season(item: dict[str, Any]) -> bool:
    return "startTime" in item and any(k in item for k in _RAID_KEYS)


def _is_war_log_entry(item: dict[str, Any]) -> bool:
    return "clan" in item and "endTime" in item and any(k in item for k in _WAR_LOG_KEYS)


def is_member(item: Any) -> bool:
    """Whether ``item`` is a clan member object (of a members list or a ``memberList``)."""
    return isinstance(item, dict) and (
        isinstance(item.get("tag"), str)
        and "name" in item
        and ("role" in item or "clanRank" in item)
    )


# Most specific first: a raid season also has ``members``.
_ITEM_KINDS: tuple[tuple[Callable[[dict[str, Any]], bool], str], ...] = (
    (_is_raid_season, "capitalraidseasons"),
    (_is_war_log_entry, "warlog"),
    (is_member, "clan_members"),
)


def _item_kind(item: Any) -> str | None:
    if not isinstance(item, dict):
        return None
    for matches, kind in _ITEM_KINDS:
        if matches(item):
            return kind
    league_id = item.get("id")
    if isinstance(league_id, int) and "name" in item and set(item) <= {"id", "name", "iconUrls"}:
        for ids, kind in _LEAGUE_ID_BLOCKS:
            if league_id in ids:
                return kind
    return None
