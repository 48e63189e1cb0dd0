"""The bodies of ``GET /clans/{tag}`` and ``GET /clans/{tag}/members``.

Members are ranked like the game does (league tier, then trophies); the previous rank
is the rank a day earlier. The key order is the real API's.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from clash_pipeline.simulator import tables as T
from clash_pipeline.simulator import timeline as tl
from clash_pipeline.simulator.world.clans import Clans, ClanStatic
from clash_pipeline.simulator.world.common import (
    DAY_S,
    SPLIT,
    WAR_MEMO_SIZE,
    Json,
    Memo,
    badge,
    to_dt,
    to_ts,
)
from clash_pipeline.simulator.world.players import MemberState, Players

#: (wins, ties, losses, win streak) of a clan at a time.
WarRecord = Callable[[ClanStatic, float], tuple[int, int, int, int]]

#: How much each member's trophies (best first) count in the clan's points.
_POINT_WEIGHTS = [0.5] * 10 + [0.25] * 10 + [0.12] * 10 + [0.1] * 10 + [0.03] * 10


class ClanProfiles:
    """Renders clan bodies and member lists from membership, players and war history."""

    def __init__(self, clans: Clans, players: Players, war_record: WarRecord) -> None:
        self._clans = clans
        self._players = players
        self._war_record = war_record
        # The clan body and the member list of one poll share the entries (one entry per clan
        # and poll time, sized like the wars' memos for 1,000s of clans; the caller gets
        # copies, since the server may add fields to a body).
        self._members: Memo[tuple[str, float], list[Json]] = Memo(WAR_MEMO_SIZE // 4)

    def members(self, clan_tag: str, ts: float) -> list[Json]:
        """Items of ``GET /clans/{tag}/members`` at ``ts``, ranked like the game does."""
        entries = self._members.get((clan_tag, ts), lambda: self._make_members(clan_tag, ts))
        return [dict(entry) for entry in entries]

    def _make_members(self, clan_tag: str, ts: float) -> list[Json]:
        cs = self._clans.clan_static(clan_tag)
        indices = self._clans.roster(clan_tag, ts)
        tags = [self._clans.player_tag(clan_tag, i) for i in indices]
        states = [self._players.member_state(tag, ts) for tag in tags]
        before = [self._players.member_state(tag, ts - DAY_S) for tag in tags]
        previous = {i: r + 1 for r, i in enumerate(_ranking(before, tags))}
        return [
            self._member_entry(cs, indices[i], states[i], ts, (rank, previous[i]))
            for rank, i in enumerate(_ranking(states, tags), start=1)
        ]

    def _member_entry(
        self, cs: ClanStatic, index: int, s: MemberState, ts: float, ranks: tuple[int, int]
    ) -> Json:
        t = to_dt(ts)
        tag = self._clans.player_tag(cs.tag, index)
        entry: Json = {"tag": tag, "name": s["name"], "role": self._clans.role(cs, index, ts)}
        if t >= tl.MEMBER_TOWNHALL_FROM:
            entry["townHallLevel"] = s["th"]
        entry["expLevel"] = s["exp"]
        entry.update(_member_leagues(s, t, post_split=ts >= SPLIT))
        entry["trophies"] = s["trophies"]
        if t >= tl.BUILDER_BASE_FIELDS_FROM:
            entry["builderBaseTrophies"] = s["bb"]
        if t < tl.VERSUS_FIELDS_UNTIL:
            entry["versusTrophies"] = s["bb"]
        entry["clanRank"], entry["previousClanRank"] = ranks
        entry["donations"] = s["donations"]
        entry["donationsReceived"] = s["received"]
        if t >= tl.PLAYER_HOUSE_FROM:
            entry["playerHouse"] = {"elements": self._players.static(tag).house}
        if t >= tl.BUILDER_BASE_2_RELEASE:
            entry["builderBaseLeague"] = T.builder_base_league(s["bb"])
        return entry

    def clan(self, clan_tag: str, t: datetime) -> Json:
        """Body of ``GET /clans/{tag}``."""
        ts = to_ts(t)
        cs = self._clans.clan_static(clan_tag)
        members = self.members(clan_tag, ts)
        body: Json = {
            "tag": cs.tag,
            "name": cs.name,
            "type": cs.type,
            "description": cs.description,
            "location": cs.location,
            "isFamilyFriendly": cs.family_friendly,
            "badgeUrls": badge(cs.badge),
            "clanLevel": self._clans.clan_level(cs, ts),
        }
        body.update(_points(members, t))
        capital = self._clans.clan_capital(cs, ts)
        if capital:
            hall = capital["capitalHallLevel"]
            body["clanCapitalPoints"] = int(hall * 180 + cs.strength * 600)
            body["capitalLeague"] = T.capital_league(int(hall * 1.4 + cs.strength * 5))
        body.update(self._requirements_and_wars(cs, ts))
        body.update({"members": len(members), "memberList": members, "labels": cs.labels})
        if t >= tl.BUILDER_BASE_FIELDS_FROM:
            body["requiredBuilderBaseTrophies"] = cs.required_bb_trophies
        if t < tl.VERSUS_FIELDS_UNTIL:
            body["requiredVersusTrophies"] = cs.required_bb_trophies
        body["requiredTownhallLevel"] = cs.required_th
        body["clanCapital"] = capital
        body["chatLanguage"] = cs.chat_language
        return body

    def _requirements_and_wars(self, cs: ClanStatic, ts: float) -> Json:
        wins, ties, losses, streak = self._war_record(cs, ts)
        return {
            "requiredTrophies": cs.required_trophies,
            "warFrequency": cs.war_frequency,
            "warWinStreak": streak,
            "warWins": wins,
            "warTies": ties,
            "warLosses": losses,
            "isWarLogPublic": True,
            "warLeague": T.war_league(self._clans.war_league_index(cs, ts)),
        }


def _ranking(states: list[MemberState], tags: list[str]) -> list[int]:
    """Member positions, best first: league tier, then trophies, then tag."""

    def key(i: int) -> tuple[int, int, str]:
        s = states[i]
        return (-(s["tier"] or 0), -s["trophies"], tags[i])

    return sorted(range(len(states)), key=key)


def _member_leagues(s: MemberState, t: datetime, *, post_split: bool) -> Json:
    """A member's league: by trophies before the split, Unranked after it."""
    if not post_split:
        league = T.legacy_league(T.legacy_league_index(s["trophies"]))
    elif t < tl.LEGACY_LEAGUE_UNRANKED_FROM:
        league = T.legacy_league(T.legacy_league_index(s["legacy"]))
    else:
        league = T.legacy_league(0)
    out: Json = {"league": league}
    if post_split:
        out["leagueTier"] = T.league_tier(s["tier"] or 0)
    return out


def _weighted_points(points: list[int]) -> int:
    return int(sum(p * w for p, w in zip(points, _POINT_WEIGHTS, strict=False)))


def _builder_trophies(member: Json) -> int:
    """Builder base trophies under either name (they were renamed with builder base 2.0)."""
    if "builderBaseTrophies" in member:
        return int(member["builderBaseTrophies"])
    return int(member.get("versusTrophies", 0))


def _points(members: list[Json], t: datetime) -> Json:
    """The clan's points: its members' trophies, best first, weighted."""
    trophies = sorted((m["trophies"] for m in members), reverse=True)
    bb_trophies = sorted((_builder_trophies(m) for m in members), reverse=True)
    out: Json = {"clanPoints": _weighted_points(trophies)}
    if t >= tl.BUILDER_BASE_FIELDS_FROM:
        out["clanBuilderBasePoints"] = _weighted_points(bb_trophies)
    if t < tl.VERSUS_FIELDS_UNTIL:
        out["clanVersusPoints"] = _weighted_points(bb_trophies)
    return out
