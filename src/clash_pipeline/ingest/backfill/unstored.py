"""Real API bodies of endpoints the pipeline does not store: named, skipped, left in place.

People who record the API save more than the pipeline reads: location
rankings, the locations and labels lists, the gold pass season, league seasons
and their rankings, a player's battle log and league history. Such a file is
no broken file: the backfill says what it is ("a /locations/{locationId}/rankings/clans
ranking: not stored by this pipeline"), counts it apart from quarantined files
and leaves it where it is. The recognisers follow real responses (coc.py's
recorded ``tests/mockdata`` and ClashKing's ``ClashOfClansMockAPI`` ``data/``).

A body is only asked here once :func:`.shapes.classify_body` found no stored
endpoint in it; an envelope whose request path is one of these endpoints is
recognised by its path (:func:`unstored_request`), whatever its status.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from clash_pipeline.ingest.backfill.shapes import is_error_body

_RANKINGS = "/locations/{locationId}/rankings"
_LEAGUE_SEASON_RANKING = "a /leagues/{leagueId}/seasons/{seasonId} league season ranking"
_MAX_URL_CHARS = 2000

# Request paths (after /v1) of endpoints the pipeline does not store.
_PATHS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^/locations/[^/]+/rankings/([a-z-]+)$"), "a " + _RANKINGS + r"/\1 ranking"),
    (re.compile(r"^/locations/[^/]+$"), "a /locations/{locationId} location"),
    (re.compile(r"^/locations$"), "a /locations list"),
    (re.compile(r"^/labels/(clans|players)$"), r"a /labels/\1 list"),
    (re.compile(r"^/goldpass/seasons/current$"), "a /goldpass/seasons/current season"),
    (re.compile(r"^/leagues/[^/]+/seasons/[^/]+$"), _LEAGUE_SEASON_RANKING),
    (re.compile(r"^/leagues/[^/]+/seasons$"), "a /leagues/{leagueId}/seasons list"),
    (re.compile(r"^/(warleagues|builderbaseleagues|capitalleagues)$"), r"a /\1 list"),
    (
        re.compile(r"^/(warleagues|builderbaseleagues|capitalleagues)/[^/]+$"),
        r"a /\1/{leagueId} league",
    ),
    (re.compile(r"^/players/[^/]+/(battlelog|leaguehistory)$"), r"a /players/{playerTag}/\1"),
    (re.compile(r"^/players/[^/]+/verifytoken$"), "a /players/{playerTag}/verifytoken answer"),
    (
        re.compile(r"^/leaguegroup/[^/]+/[^/]+$"),
        "a /leaguegroup/{groupTag}/{seasonId} league group",
    ),
    (re.compile(r"^/clans$"), "a /clans search result"),
)

# Ids are allocated in blocks per kind (29xxxxxx leagues and 105xxxxxx league
# tiers are stored: see .shapes).
_ID_LISTS = {
    32: "a /locations list",
    44: "a /builderbaseleagues list",
    48: "a /warleagues list",
    56: "a /labels/clans list",
    57: "a /labels/players list",
    85: "a /capitalleagues list",
}
_ID_SINGLES = {
    32: "a /locations/{locationId} location",
    44: "a /builderbaseleagues/{leagueId} league",
    48: "a /warleagues/{leagueId} league",
    85: "a /capitalleagues/{leagueId} league",
}
_ID_ITEM_KEYS = frozenset({"id", "name", "iconUrls", "isCountry", "countryCode", "localizedName"})
_SEASON_ID_RE = re.compile(r"^\d{4}-\d{2}(?:-\d{2})?$")  # 2015-07; weekly 2025-10-06
_CLAN_RANKING_POINTS = (
    ("clanCapitalPoints", "capitals"),
    ("clanBuilderBasePoints", "clans-builder-base"),
    ("clanVersusPoints", "clans-builder-base"),
    ("clanPoints", "clans"),
)


def unstored_request(value: object) -> str | None:
    """What a request URL or path of a not-stored endpoint answers; None otherwise."""
    if not isinstance(value, str) or len(value) > _MAX_URL_CHARS:
        return None
    path = urlsplit(value.strip()).path
    if "/v1/" in path:
        path = path[path.index("/v1/") + 3 :]
    path = path.rstrip("/")
    for pattern, what in _PATHS:
        match = pattern.match(path)
        if match:
            return match.expand(what)
    return None


def unstored_kind(body: Any) -> str | None:
    """What a successful body of a not-stored endpoint is ("a /locations list"); None if not one."""
    if not isinstance(body, dict) or is_error_body(body):
        return None
    if isinstance(body.get("items"), list) and set(body) <= {"items", "paging"}:
        return _list_kind(body["items"])
    for matches, what in _SINGLE_KINDS:
        if matches(body):
            return what
    return _id_kind(body, _ID_SINGLES)


def _list_kind(items: list[Any]) -> str | None:
    """The one kind all items are (an empty list says nothing)."""
    if not items or not all(isinstance(item, dict) for item in items):
        return None
    kinds = {_item_kind(item) for item in items}
    if len(kinds) != 1:
        return None
    kind = kinds.pop()
    if kind == "player ranking":  # a location's ranking has previousRank, a season's not
        if any("previousRank" in item for item in items):
            return "a " + _RANKINGS + "/players ranking"
        return _LEAGUE_SEASON_RANKING
    return kind


def _item_kind(item: dict[str, Any]) -> str | None:
    for test in _ITEM_TESTS:
        what = test(item)
        if what:
            return what
    return _id_kind(item, _ID_LISTS)


def _id_kind(body: dict[str, Any], blocks: dict[int, str]) -> str | None:
    """A ``{id, name, …}`` object named by its id block (32000007 → locations)."""
    ident = body.get("id")
    if isinstance(ident, bool) or not isinstance(ident, int) or "name" not in body:
        return None
    if not set(body) <= _ID_ITEM_KEYS:
        return None
    return blocks.get(ident // 1_000_000)


def _clan_ranking(item: dict[str, Any]) -> str | None:
    if not ("tag" in item and "rank" in item and "clanLevel" in item):
        return None
    for key, ranking in _CLAN_RANKING_POINTS:
        if key in item:
            return f"a {_RANKINGS}/{ranking} ranking"
    return None


def _is_player_ranking(item: dict[str, Any]) -> bool:
    return "tag" in item and "rank" in item and "expLevel" in item and "trophies" in item


def _is_builder_player_ranking(item: dict[str, Any]) -> bool:
    return (
        "tag" in item
        and "rank" in item
        and "expLevel" in item
        and ("builderBaseTrophies" in item or "versusTrophies" in item)
        and "trophies" not in item
    )


def _is_battle(item: dict[str, Any]) -> bool:
    return "battleType" in item and ("opponentPlayerTag" in item or "attack" in item)


def _is_league_history(item: dict[str, Any]) -> bool:
    return "leagueSeasonId" in item and "leagueTierId" in item


def _is_season_id(item: dict[str, Any]) -> bool:
    return (
        set(item) == {"id"}
        and isinstance(item["id"], str)
        and bool(_SEASON_ID_RE.match(item["id"]))
    )


def _is_clan_search_hit(item: dict[str, Any]) -> bool:
    return "tag" in item and "clanLevel" in item and "type" in item and "rank" not in item


def _named(
    test: Callable[[dict[str, Any]], bool], what: str
) -> Callable[[dict[str, Any]], str | None]:
    return lambda item: what if test(item) else None


# Most specific first: a clan ranking item also has ``members`` and ``clanLevel``.
_ITEM_TESTS: tuple[Callable[[dict[str, Any]], str | None], ...] = (
    _clan_ranking,
    _named(_is_builder_player_ranking, "a " + _RANKINGS + "/players-builder-base ranking"),
    _named(_is_player_ranking, "player ranking"),
    _named(_is_battle, "a /players/{playerTag}/battlelog"),
    _named(_is_league_history, "a /players/{playerTag}/leaguehistory"),
    _named(_is_season_id, "a /leagues/{leagueId}/seasons list"),
    _named(_is_clan_search_hit, "a /clans search result"),
)


def _is_gold_pass(body: dict[str, Any]) -> bool:
    return set(body) == {"startTime", "endTime"}


def _is_ranked_league_group(body: dict[str, Any]) -> bool:
    members = body.get("members")
    return (
        "attackLogs" in body
        and isinstance(members, list)
        and all(isinstance(m, dict) and "playerTag" in m for m in members)
    )


def _is_token_check(body: dict[str, Any]) -> bool:
    return set(body) == {"tag", "token", "status"}


_SINGLE_KINDS: tuple[tuple[Callable[[dict[str, Any]], bool], str], ...] = (
    (_is_gold_pass, "a /goldpass/seasons/current season"),
    (_is_ranked_league_group, "a /leaguegroup/{groupTag}/{seasonId} league group"),
    (_is_token_check, "a /players/{playerTag}/verifytoken answer"),
)
