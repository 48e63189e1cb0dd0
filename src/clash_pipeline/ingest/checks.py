"""The door: what a response body must satisfy before the marts may see it.

A body that breaks what the marts rely on would fail the whole ``dbt build``
(and so every clan's marts), e.g. a clan body whose ``memberList`` merges two
recordings: 83 entries while ``members`` says 38. These pure functions find
such bodies; the callers keep them aside with the reason instead of building
them: a backfill quarantines the file (:mod:`.backfill.plan`), a scheduled run
lands the body marked ``raw.fetch_log.quarantine_reason`` (:mod:`.run`), which
the staging views ignore.

The checks (``code``: what it finds):

========================  ==============================================================
too_many_members          a clan body's ``memberList`` or a member list's ``items``
                          has more than 50 entries (a clan holds at most 50)
member_count_mismatch     a clan body's ``memberList`` length differs from its
                          ``members`` count
duplicate_members         the same player tag twice in one roster
member_without_tag        a roster entry without a valid player tag
member_out_of_range       a roster entry with negative ``donations`` /
                          ``donationsReceived`` or a ``townHallLevel`` below 1
members_differ_from_clan  a member list (``/members``) and the same run's clan body
                          (``memberList``, itself passing) differ by more than
                          :data:`MEMBER_LIST_DRIFT` players: the list is another clan's
wrong_clan                the body names another clan than the one it lands for (a
                          clan body's ``tag``; a war log entry's or current war's
                          ``clan.tag``; a league group without the clan). A CWL war
                          is not checked: a run lands every war of its group
wrong_player              a player body whose ``tag`` is not the player requested
time_in_future            a time that must be in the past is later than the fetch
                          time (+ :data:`FUTURE_TOLERANCE`): a war log entry's
                          ``endTime``; a raid season's ``startTime`` (its ``endTime``
                          once ``ended``); a war's ``preparationStartTime``, its
                          ``startTime`` once ``inWar`` and ``endTime`` once
                          ``warEnded`` (a war in preparation legitimately has future
                          start and end times, an ongoing raid a future end)
fetch_time_in_future      the fetch time itself is later than now (+ tolerance):
                          backfills only (a saved file's time; a scheduled run's fetch
                          time is its own clock, the simulator's may run ahead)
========================  ==============================================================

Error responses (not 200) carry no data and are never checked.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from clash_pipeline.clash_api import json_body
from clash_pipeline.clash_api.records import FetchRecord
from clash_pipeline.clash_api.tags import is_valid_tag, normalize_tag

__all__ = [
    "FUTURE_TOLERANCE",
    "MAX_MEMBERS",
    "MEMBER_LIST_DRIFT",
    "Problem",
    "check_body",
    "check_fetch_time",
    "check_records",
    "describe",
]

#: A clan holds at most 50 members (the marts test roster_snapshots.member_count <= 50).
MAX_MEMBERS = 50
#: Players who may join or leave between a run's clan and member-list requests (each
#: endpoint is cached for ~2 minutes on its own): a bigger difference is another clan's list.
MEMBER_LIST_DRIFT = 5
#: How far a time may be ahead of the fetch time (the API's clock and ours differ a little).
FUTURE_TOLERANCE = timedelta(minutes=10)

_API_TIME = re.compile(r"^(\d{8}T\d{6})(?:\.\d+)?Z$")
_ROSTERS = {"clan": "memberList", "clan_members": "items"}
_WAR_ENDPOINTS = ("currentwar", "cwl_war")
#: The lowest value a roster entry's field can have (the member marts test these).
_LOWEST = (("donations", 0), ("donationsReceived", 0), ("townHallLevel", 1))


@dataclass(frozen=True)
class Problem:
    """One thing a body breaks: a short code and a sentence saying what and what to do."""

    code: str
    reason: str

    def __str__(self) -> str:
        return f"{self.code}: {self.reason}"

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "reason": self.reason}


def describe(problems: Iterable[Problem]) -> str:
    """All problems of one body as one line (a fetch-log row's or a quarantined file's reason)."""
    return "; ".join(str(p) for p in problems)


def check_body(
    endpoint: str,
    body: Any,
    *,
    clan_tag: str | None,
    fetched_at: datetime,
    resource_tag: str | None = None,
    clan_body: Any = None,
) -> list[Problem]:
    """The problems of one 200 body of ``endpoint``, landed for ``clan_tag`` at ``fetched_at``.

    ``resource_tag`` is the requested player (``player``); ``clan_body`` is the same
    run's clan body, against which a member list is compared (only when that clan body
    passes its own checks: a broken clan body says nothing about the list).
    """
    if not isinstance(body, dict):
        return []
    problems: list[Problem] = []
    if endpoint in _ROSTERS:
        problems += _roster(endpoint, body)
    if endpoint == "clan":
        problems += _clan(body, clan_tag)
    elif endpoint == "clan_members":
        problems += _members_vs_clan(body, clan_tag, fetched_at, clan_body)
    elif endpoint == "player":
        problems += _player(body, resource_tag)
    elif endpoint == "warlog":
        problems += _warlog(body, clan_tag, fetched_at)
    elif endpoint in _WAR_ENDPOINTS:
        problems += _war(endpoint, body, clan_tag, fetched_at)
    elif endpoint == "capitalraidseasons":
        problems += _raid_seasons(body, fetched_at)
    elif endpoint == "leaguegroup":
        problems += _league_group(body, clan_tag)
    return problems


def check_fetch_time(fetched_at: datetime, now: datetime) -> list[Problem]:
    """A saved response's fetch time later than ``now``: it cannot have been fetched yet."""
    if fetched_at <= now + FUTURE_TOLERANCE:
        return []
    return [
        Problem(
            "fetch_time_in_future",
            f"fetched at {_iso(fetched_at)}, later than now ({_iso(now)}); give the file "
            "its real fetch time (a manifest's fetched_at or --fetched-at)",
        )
    ]


# ------------------------------------------------------------------------------ rosters


def _members(body: dict[str, Any], key: str) -> list[Any]:
    items = body.get(key)
    return items if isinstance(items, list) else []


def _member_tags(items: list[Any]) -> list[str]:
    tags = [item.get("tag") for item in items if isinstance(item, dict)]
    return [normalize_tag(t) for t in tags if isinstance(t, str) and is_valid_tag(t)]


def _roster(endpoint: str, body: dict[str, Any]) -> list[Problem]:
    """What the roster marts need of a list of members (clan body or member list)."""
    key = _ROSTERS[endpoint]
    items = _members(body, key)
    where = f"the {'clan body' if endpoint == 'clan' else 'member list'}'s {key}"
    problems: list[Problem] = []
    if len(items) > MAX_MEMBERS:
        problems.append(
            Problem(
                "too_many_members",
                f"{where} has {len(items)} entries, more than a clan can hold ({MAX_MEMBERS}): "
                "two recordings merged? Keep the original response",
            )
        )
    tags = _member_tags(items)
    if len(tags) < len(items):
        problems.append(
            Problem(
                "member_without_tag",
                f"{len(items) - len(tags)} of {where} entries have no valid player tag; "
                "keep the response as the API sent it",
            )
        )
    twice = sorted(tag for tag, n in Counter(tags).items() if n > 1)
    if twice:
        problems.append(
            Problem(
                "duplicate_members",
                f"{where} lists {len(twice)} player(s) more than once "
                f"({_some(twice)}): two recordings merged? Keep the original response",
            )
        )
    problems += _out_of_range(items, where)
    return problems


def _out_of_range(items: list[Any], where: str) -> list[Problem]:
    bad: list[str] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        fields = [
            f"{name} {item[name]}"
            for name, low in _LOWEST
            for value in [_number(item.get(name))]
            if value is not None and value < low
        ]
        if fields:
            bad.append(f"{item.get('tag')} {', '.join(fields)}")
    if not bad:
        return []
    return [
        Problem(
            "member_out_of_range",
            f"{where} has values the game cannot produce ({_some(bad)}); "
            "keep the response as the API sent it",
        )
    ]


def _clan(body: dict[str, Any], clan_tag: str | None) -> list[Problem]:
    problems = _wrong_clan_tag(body.get("tag"), clan_tag, "the clan body is clan")
    items = _members(body, "memberList")
    count = _number(body.get("members"))
    if count is not None and count != len(items):
        problems.append(
            Problem(
                "member_count_mismatch",
                f"the clan body's memberList has {len(items)} entries but its members "
                f"field says {body['members']}: two recordings merged? Keep the original "
                "response",
            )
        )
    return problems


def _members_vs_clan(
    body: dict[str, Any], clan_tag: str | None, fetched_at: datetime, clan_body: Any
) -> list[Problem]:
    """A member list that is not the clan's: it differs from a sound clan body of the run."""
    if not isinstance(clan_body, dict):
        return []
    if check_body("clan", clan_body, clan_tag=clan_tag, fetched_at=fetched_at):
        return []  # a broken clan body is no reference
    listed = set(_member_tags(_members(body, "items")))
    in_clan = set(_member_tags(_members(clan_body, "memberList")))
    differ = listed ^ in_clan
    if len(differ) <= MEMBER_LIST_DRIFT:
        return []
    return [
        Problem(
            "members_differ_from_clan",
            f"the member list and the clan body of the same fetch differ by {len(differ)} "
            f"players ({len(listed - in_clan)} only in the list, {len(in_clan - listed)} "
            f"only in the clan body; at most {MEMBER_LIST_DRIFT} may join or leave "
            "between the two requests): it is another clan's list? Check which clan it "
            "was recorded for",
        )
    ]


def _player(body: dict[str, Any], resource_tag: str | None) -> list[Problem]:
    tag = body.get("tag")
    if resource_tag is None or not isinstance(tag, str) or not is_valid_tag(tag):
        return []
    if normalize_tag(tag) == normalize_tag(resource_tag):
        return []
    return [
        Problem(
            "wrong_player",
            f"the player body is player {normalize_tag(tag)}, but player "
            f"{normalize_tag(resource_tag)} was requested; check the recording",
        )
    ]


# ------------------------------------------------------------------------ wars and raids


def _warlog(body: dict[str, Any], clan_tag: str | None, fetched_at: datetime) -> list[Problem]:
    problems: list[Problem] = []
    others = sorted(
        {
            normalize_tag(t)
            for item in _members(body, "items")
            if isinstance(item, dict)
            for t in [(item.get("clan") or {}).get("tag")]
            if isinstance(t, str) and is_valid_tag(t)
        }
        - ({normalize_tag(clan_tag)} if clan_tag else set())
    )
    if clan_tag and others:
        problems.append(
            Problem(
                "wrong_clan",
                f"war log entries of clan {_some(others)} landed for clan {clan_tag}; "
                "check which clan the war log was recorded for",
            )
        )
    ends = [item.get("endTime") for item in _members(body, "items") if isinstance(item, dict)]
    problems += _future("a war log entry's endTime (an ended war)", ends, fetched_at)
    return problems


def _war(
    endpoint: str, body: dict[str, Any], clan_tag: str | None, fetched_at: datetime
) -> list[Problem]:
    state = body.get("state")
    if state not in ("preparation", "inWar", "warEnded"):
        return []
    sides = [
        normalize_tag(t)
        for side in ("clan", "opponent")
        for t in [(body.get(side) or {}).get("tag")]
        if isinstance(t, str) and is_valid_tag(t)
    ]
    problems: list[Problem] = []
    # The current war puts the requesting clan on the `clan` side. A run lands every war
    # of its CWL group (most of them between two other clans): no side to check there.
    if endpoint == "currentwar" and clan_tag and sides and normalize_tag(clan_tag) != sides[0]:
        problems.append(
            Problem(
                "wrong_clan",
                f"the currentwar body is a war of {sides[0]}, landed for clan {clan_tag}; "
                "check which clan it was recorded for",
            )
        )
    past = [("preparationStartTime", "a war's preparationStartTime")]
    if state in ("inWar", "warEnded"):
        past.append(("startTime", f"the startTime of a war {state}"))
    if state == "warEnded":
        past.append(("endTime", "the endTime of an ended war"))
    for key, what in past:
        problems += _future(what, [body.get(key)], fetched_at)
    return problems


def _raid_seasons(body: dict[str, Any], fetched_at: datetime) -> list[Problem]:
    items = [item for item in _members(body, "items") if isinstance(item, dict)]
    problems = _future(
        "a raid season's startTime", [item.get("startTime") for item in items], fetched_at
    )
    ended = [item.get("endTime") for item in items if item.get("state") == "ended"]
    return problems + _future("an ended raid season's endTime", ended, fetched_at)


def _league_group(body: dict[str, Any], clan_tag: str | None) -> list[Problem]:
    if body.get("state") in (None, "notInWar") or not clan_tag:
        return []
    clans = {
        normalize_tag(t)
        for clan in _members(body, "clans")
        if isinstance(clan, dict)
        for t in [clan.get("tag")]
        if isinstance(t, str) and is_valid_tag(t)
    }
    if not clans or normalize_tag(clan_tag) in clans:
        return []
    return [
        Problem(
            "wrong_clan",
            f"the league group's {len(clans)} clans do not include clan {clan_tag}; "
            "check which clan it was recorded for",
        )
    ]


# ------------------------------------------------------------------------------ helpers


def _wrong_clan_tag(tag: Any, clan_tag: str | None, what: str) -> list[Problem]:
    if not clan_tag or not isinstance(tag, str) or not is_valid_tag(tag):
        return []
    if normalize_tag(tag) == normalize_tag(clan_tag):
        return []
    return [
        Problem(
            "wrong_clan",
            f"{what} {normalize_tag(tag)}, landed for clan {clan_tag}; "
            "check which clan it was recorded for",
        )
    ]


def _future(what: str, values: Iterable[Any], fetched_at: datetime) -> list[Problem]:
    """``time_in_future`` when any of ``values`` (API times) is after the fetch time."""
    limit = fetched_at + FUTURE_TOLERANCE
    late = [t for t in (_api_time(v) for v in values) if t is not None and t > limit]
    if not late:
        return []
    return [
        Problem(
            "time_in_future",
            f"{what} is {_iso(max(late))}, after the fetch time {_iso(fetched_at)}"
            f"{f' ({len(late)} such times)' if len(late) > 1 else ''}: the fetch time is "
            "wrong (give the real one) or the body was altered",
        )
    ]


def _api_time(value: Any) -> datetime | None:
    """``20251003T070000.000Z`` (or ISO 8601) as UTC; None when absent or unreadable."""
    if not isinstance(value, str):
        return None
    match = _API_TIME.match(value)
    try:
        if match:
            return datetime.strptime(match.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _some(values: list[str], limit: int = 5) -> str:
    shown = ", ".join(values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_records(records: Sequence[FetchRecord], clan_tag: str) -> dict[int, list[Problem]]:
    """The problems of a run's responses, by index in ``records`` (only those with any).

    Each 200 body is checked as landed for ``clan_tag`` at its own fetch time; a member
    list is compared with the run's first clan body.
    """
    bodies = [_json(r.body) if r.status == 200 and r.ok else None for r in records]
    clan_body = next(
        (b for r, b in zip(records, bodies, strict=True) if r.endpoint == "clan" and b), None
    )
    found: dict[int, list[Problem]] = {}
    for index, (record, body) in enumerate(zip(records, bodies, strict=True)):
        if body is None:
            continue
        problems = check_body(
            record.endpoint,
            body,
            clan_tag=clan_tag,
            fetched_at=record.fetched_at,
            resource_tag=record.resource_tag,
            clan_body=clan_body,
        )
        if problems:
            found[index] = problems
    return found


def _json(body: bytes | None) -> Any:
    """A response body's JSON (None when there is none or it is not JSON)."""
    if body is None:
        return None
    try:
        return json_body.loads(body)
    except ValueError:
        return None
