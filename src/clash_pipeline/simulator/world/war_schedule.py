"""Regular wars: when each clan is at war, its current war, war log and war record.

Each clan has a war slot every 60-78 h (preparation 23 h, battle day 24 h,
``warEnded`` for 12 h, then ``notInWar``); some slots are skipped and none overlap the
league (CWL) days. The two sides of a war are not symmetric: the opponent clan's own
``/currentwar`` follows its own schedule.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterator
from datetime import datetime

from clash_pipeline.simulator import timeline as tl
from clash_pipeline.simulator.codec import h64, random_tag, unit
from clash_pipeline.simulator.world.clans import Clans, ClanStatic
from clash_pipeline.simulator.world.common import (
    DAY_S,
    DEFAULT_BADGE,
    EPOCH,
    HOUR_S,
    WAR_MEMO_SIZE,
    Json,
    Memo,
    badge,
    to_dt,
    to_ts,
)
from clash_pipeline.simulator.world.cwl import ClanWarLeagues
from clash_pipeline.simulator.world.players import Players
from clash_pipeline.simulator.world.wars import War, generate_attacks, war_side

WARLOG_DEFAULT_COUNT = 50
_WAR_HISTORY_FROM = tl.utc(2019, 1, 1).timestamp()
_WAR_PREP_S = 23 * HOUR_S
_WAR_BATTLE_S = 24 * HOUR_S
_WAR_ENDED_HOLD_S = 12 * HOUR_S


class Wars:
    """A clan's regular wars, slot by slot; the war log adds the league seasons."""

    def __init__(self, seed: int, clans: Clans, players: Players, leagues: ClanWarLeagues) -> None:
        self.seed = seed
        self._clans = clans
        self._players = players
        self._leagues = leagues
        self._wars: Memo[tuple[str, int], War] = Memo(WAR_MEMO_SIZE)

    # -- the schedule ----------------------------------------------------------------------------
    def _slot(self, cs: ClanStatic, ts: float) -> int:
        return math.floor((ts - EPOCH - cs.war_phase_s) / cs.war_period_s)

    def _prep(self, cs: ClanStatic, k: int) -> float:
        return EPOCH + cs.war_phase_s + k * cs.war_period_s

    def _exists(self, cs: ClanStatic, k: int) -> bool:
        prep = self._prep(cs, k)
        if prep < max(cs.created, _WAR_HISTORY_FROM):
            return False
        if unit(self.seed, "war-skip", cs.number, k) < cs.war_skip:
            return False
        end = prep + _WAR_PREP_S + _WAR_BATTLE_S
        for month_start in (to_dt(prep), to_dt(end)):
            cwl = tl.cwl_start(month_start.year, month_start.month).timestamp()
            if prep < cwl + 10 * DAY_S and end + _WAR_ENDED_HOLD_S > cwl:
                return False
        return True

    # -- wars ------------------------------------------------------------------------------------
    def _war(self, clan_tag: str, k: int) -> War:
        return self._wars.get((clan_tag, k), lambda: self._make_war(clan_tag, k))

    def _make_war(self, clan_tag: str, k: int) -> War:
        cs = self._clans.clan_static(clan_tag)
        prep = self._prep(cs, k)
        rng = random.Random(h64(self.seed, "war", cs.number, k))
        opponent = random_tag(self.seed, "opponent", cs.number, k)
        roster = self._clans.roster
        size = min(
            rng.choice([5, 10, 10, 15, 15, 15, 20, 20, 25, 30]),
            len(roster(clan_tag, prep)),
            len(roster(opponent, prep)),
        )
        modifier = "hardMode" if rng.random() < 0.1 else "none"
        sides = [
            war_side(self._clans, self._players, clan_tag, prep, size, k),
            war_side(self._clans, self._players, opponent, prep, size, k),
        ]
        start = prep + _WAR_PREP_S
        return War(
            prep=prep,
            start=start,
            end=start + _WAR_BATTLE_S,
            team_size=size,
            attacks_per_member=2,
            modifier=modifier,
            sides=sides,
            attacks=generate_attacks(rng, sides, 2, start, hard=modifier == "hardMode"),
            cwl=False,
        )

    def ended_wars(self, cs: ClanStatic, ts: float) -> Iterator[War]:
        """The clan's regular wars that ended by ``ts``, newest first (generated lazily)."""
        k = self._slot(cs, ts)
        while self._prep(cs, k) >= max(cs.created, _WAR_HISTORY_FROM):
            if self._exists(cs, k):
                war = self._war(cs.tag, k)
                if war.end <= ts:
                    yield war
            k -= 1

    def current_war(self, clan_tag: str, t: datetime) -> Json:
        """Body of ``GET /clans/{tag}/currentwar``."""
        ts = to_ts(t)
        cs = self._clans.clan_static(clan_tag)
        k = self._slot(cs, ts)
        for slot in (k, k - 1):
            if not self._exists(cs, slot):
                continue
            prep = self._prep(cs, slot)
            end = prep + _WAR_PREP_S + _WAR_BATTLE_S
            if prep <= ts < end + _WAR_ENDED_HOLD_S:
                return self._war(clan_tag, slot).render(ts, t)
        empty = {
            "badgeUrls": badge(DEFAULT_BADGE),
            "clanLevel": 0,
            "attacks": 0,
            "stars": 0,
            "destructionPercentage": 0.0,
        }
        return {"state": "notInWar", "clan": dict(empty), "opponent": dict(empty)}

    def warlog(self, clan_tag: str, t: datetime, count: int = WARLOG_DEFAULT_COUNT) -> list[Json]:
        """Items of ``GET /clans/{tag}/warlog`` (newest first), at most ``count``: the
        regular wars and one entry per league season."""
        ts = to_ts(t)
        cs = self._clans.clan_static(clan_tag)
        wars = list(itertools.islice(self.ended_wars(cs, ts), count))
        items: list[tuple[float, Json]] = [(war.end, war.log_item(t)) for war in wars]
        oldest = wars[-1].end if len(wars) == count else max(cs.created, _WAR_HISTORY_FROM)
        month = to_dt(ts)
        year, mon = month.year, month.month
        while True:
            start = tl.cwl_start(year, mon).timestamp()
            end = start + (tl.CWL_ROUNDS + 1) * DAY_S
            if end < oldest:
                break
            if end <= ts:
                items.append((end, self._leagues.season_log_item(clan_tag, year, mon, t)))
            year, mon = (year - 1, 12) if mon == 1 else (year, mon - 1)
        items.sort(key=lambda pair: -pair[0])
        return [item for _, item in items[:count]]

    def war_record(self, cs: ClanStatic, ts: float) -> tuple[int, int, int, int]:
        """(wins, ties, losses, current win streak) of a clan at ``ts``."""
        slots = max(0, int((ts - max(cs.created, _WAR_HISTORY_FROM)) / cs.war_period_s))
        wars = int(slots * (1 - cs.war_skip) * 0.9)
        win_rate, tie_rate = cs.war_record_rate
        base = int(cs.strength * 150)
        wins = base + int(wars * win_rate)
        ties = int(base * 0.02) + int(wars * tie_rate)
        losses = int(base * 0.4) + wars - int(wars * win_rate) - int(wars * tie_rate)
        streak = 0
        for war in itertools.islice(self.ended_wars(cs, ts), 40):
            if war.result(0) != "win":
                break
            streak += 1
        return wins, ties, losses, streak
