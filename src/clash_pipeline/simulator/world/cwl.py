"""Clan War Leagues: from the 1st 08:00 to the 11th 08:00 of every month each clan is in
an 8-clan group with 7 rounds of 24 h preparation + 24 h battle.

A group is built around the clan that is asked for (the anchor); a league war's tag
encodes (anchor, season, round, pair), so ``/clanwarleagues/wars/{tag}`` needs no memory.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime

from clash_pipeline.simulator import timeline as tl
from clash_pipeline.simulator.codec import TagCodec, h64, random_tag, tag_from_number, tag_number
from clash_pipeline.simulator.world.clans import Clans
from clash_pipeline.simulator.world.common import (
    DAY_S,
    DEFAULT_BADGE,
    WAR_MEMO_SIZE,
    Json,
    Memo,
    api_time,
    badge,
    is_tag,
    to_dt,
    to_ts,
)
from clash_pipeline.simulator.world.players import Players
from clash_pipeline.simulator.world.wars import War, generate_attacks, war_side


@dataclass(slots=True)
class CwlGroup:
    anchor: str
    season_index: int
    start: float
    clans: list[str]
    team_size: int
    rounds: list[list[tuple[str, str]]]


class ClanWarLeagues:
    """League groups, their wars and the seasons' war log entries."""

    def __init__(self, seed: int, clans: Clans, players: Players) -> None:
        self.seed = seed
        self._clans = clans
        self._players = players
        self._war_codec = TagCodec(seed, "cwl-war", min_length=9)
        self._groups: Memo[tuple[str, int], CwlGroup] = Memo(WAR_MEMO_SIZE // 4)
        self._wars: Memo[tuple[str, int, int, int], War] = Memo(WAR_MEMO_SIZE)

    # -- groups --------------------------------------------------------------------------------
    def _group(self, anchor: str, season_index: int) -> CwlGroup:
        return self._groups.get(
            (anchor, season_index), lambda: self._make_group(anchor, season_index)
        )

    def _make_group(self, anchor: str, season_index: int) -> CwlGroup:
        year, month = tl.cwl_season_from_index(season_index)
        start = tl.cwl_start(year, month).timestamp()
        number = tag_number(anchor)
        rng = random.Random(h64(self.seed, "cwl", number, season_index))
        clans = [anchor] + [
            random_tag(self.seed, "cwl-clan", number, season_index, j)
            for j in range(1, tl.CWL_GROUP_SIZE)
        ]
        rng.shuffle(clans)
        team_size = rng.choice([15, 15, 15, 30])
        # Circle method: clan 0 stays, the others rotate.
        rounds = []
        ring = clans[1:]
        for _ in range(tl.CWL_ROUNDS):
            order = [clans[0], *ring]
            last = tl.CWL_GROUP_SIZE - 1
            rounds.append([(order[i], order[last - i]) for i in range(tl.CWL_GROUP_SIZE // 2)])
            ring = ring[-1:] + ring[:-1]
        return CwlGroup(
            anchor=anchor,
            season_index=season_index,
            start=start,
            clans=clans,
            team_size=team_size,
            rounds=rounds,
        )

    def league_group(self, clan_tag: str, t: datetime) -> Json | None:
        """Body of ``GET /clans/{tag}/currentwar/leaguegroup``; None outside the league days."""
        window = tl.cwl_window(t)
        if window is None:
            return None
        start, season = window
        ts = to_ts(t)
        group = self._group(clan_tag, tl.cwl_season_index(start.year, start.month))
        elapsed = ts - group.start
        if elapsed < DAY_S:
            state = "preparation"
        elif elapsed < (tl.CWL_ROUNDS + 1) * DAY_S:
            state = "inWar"
        else:
            state = "ended"
        clans = [self._group_clan(tag, group.start) for tag in group.clans]
        rounds = []
        for r in range(tl.CWL_ROUNDS):
            known = ts >= group.start + r * DAY_S
            rounds.append(
                {"warTags": [self._war_tag(group, r, i) if known else "#0" for i in range(4)]}
            )
        return {"state": state, "season": season, "clans": clans, "rounds": rounds}

    def _group_clan(self, tag: str, ts: float) -> Json:
        """A clan of a group with its roster at the start of the season."""
        cs = self._clans.clan_static(tag)
        members = []
        for player in self._clans.roster_tags(tag, ts):
            members.append(
                {
                    "tag": player,
                    "name": self._players.display_name(player, ts),
                    "townHallLevel": self._players.town_hall(player, ts),
                }
            )
        return {
            "tag": cs.tag,
            "name": cs.name,
            "clanLevel": self._clans.clan_level(cs, ts),
            "badgeUrls": badge(cs.badge),
            "members": members,
        }

    # -- wars ----------------------------------------------------------------------------------
    def _war_tag(self, group: CwlGroup, round_index: int, pair: int) -> str:
        number = ((tag_number(group.anchor) * 512 + group.season_index) * 7 + round_index) * 4
        tag = self._war_codec.encode(number + pair)
        return tag or "#0"

    def _war(self, group: CwlGroup, round_index: int, pair: int) -> War:
        key = (group.anchor, group.season_index, round_index, pair)
        return self._wars.get(key, lambda: self._make_war(group, round_index, pair))

    def _make_war(self, group: CwlGroup, round_index: int, pair: int) -> War:
        a, b = group.rounds[round_index][pair]
        prep = group.start + round_index * DAY_S
        salt = group.season_index * 10 + round_index
        seed = h64(self.seed, "cwl-war", tag_number(group.anchor), group.season_index, round_index)
        rng = random.Random(seed + pair)
        roster = self._clans.roster
        size = min(group.team_size, len(roster(a, group.start)), len(roster(b, group.start)))
        sides = [
            war_side(self._clans, self._players, a, group.start, size, salt),
            war_side(self._clans, self._players, b, group.start, size, salt),
        ]
        start = prep + DAY_S
        return War(
            prep=prep,
            start=start,
            end=start + DAY_S,
            team_size=size,
            attacks_per_member=1,
            modifier="none",
            sides=sides,
            attacks=generate_attacks(rng, sides, 1, start, hard=False),
            cwl=True,
        )

    def cwl_war(self, war_tag: str, t: datetime) -> Json | None:
        """Body of ``GET /clanwarleagues/wars/{warTag}``; None for unknown or future wars."""
        number = self._war_codec.decode(war_tag)
        if number is None:
            return None
        rest, pair = divmod(number, 4)
        rest, round_index = divmod(rest, 7)
        anchor_number, season_index = divmod(rest, 512)
        anchor = tag_from_number(anchor_number)
        if not is_tag(anchor):
            return None
        group = self._group(anchor, season_index)
        ts = to_ts(t)
        if ts < group.start + round_index * DAY_S:
            return None
        return self._war(group, round_index, pair).render(ts, t)

    # -- the war log ---------------------------------------------------------------------------
    def season_log_item(self, clan_tag: str, year: int, month: int, t: datetime) -> Json:
        """The war log's summary entry of a league season (opponent without tag or name).

        Synthesised from the season's hash (not summed from the seven league wars), which
        keeps the war log cheap; readers cannot link it to the wars anyway.
        """
        cs = self._clans.clan_static(clan_tag)
        season = tl.cwl_season_index(year, month)
        rng = random.Random(h64(self.seed, "cwl-log", cs.number, season))
        size = rng.choice([15, 15, 15, 30])
        attacks = sum(size - rng.randint(0, 3) for _ in range(tl.CWL_ROUNDS))
        stars = int(attacks * rng.uniform(1.6, 2.6))
        destruction = sum(rng.uniform(55, 98) for _ in range(tl.CWL_ROUNDS))
        end = tl.cwl_start(year, month).timestamp() + (tl.CWL_ROUNDS + 1) * DAY_S
        item: Json = {
            "result": rng.choice([None, "win", "tie", "lose"]),
            "endTime": api_time(end),
            "teamSize": size,
        }
        if to_dt(end) >= tl.ATTACKS_PER_MEMBER_FROM:
            item["attacksPerMember"] = 1
        if t >= tl.BATTLE_MODIFIER_FROM:
            item["battleModifier"] = "none"
        item["clan"] = {
            "tag": cs.tag,
            "name": cs.name,
            "badgeUrls": badge(cs.badge),
            "clanLevel": self._clans.clan_level(cs, end),
            "attacks": attacks,
            "stars": stars,
            "destructionPercentage": round(destruction, 5),
            "expEarned": 0,
        }
        item["opponent"] = {
            "badgeUrls": badge(DEFAULT_BADGE),
            "clanLevel": 0,
            "stars": int(attacks * rng.uniform(1.6, 2.6)),
            "destructionPercentage": 0.0,
        }
        return item
