"""The body of ``GET /players/{tag}``: a player's profile at a time.

Fields appear and disappear with the game's history (builder base 2.0, the 2025
split, hero equipment, ...), at the dates :mod:`clash_pipeline.simulator.timeline`
names; the order of the keys is the real API's. Everything the player earns by playing
is shown as of their last session (``state["eff"]``, see :mod:`.players`); clan, role,
season and tournament week follow the clock. The member-list entry and the profile come
from the same :class:`MemberState`, so they agree.
"""

from __future__ import annotations

import math
from datetime import datetime

from clash_pipeline.simulator import tables as T
from clash_pipeline.simulator import timeline as tl
from clash_pipeline.simulator.codec import h64, random_tag, unit
from clash_pipeline.simulator.world.achievements import achievements
from clash_pipeline.simulator.world.clans import Clans
from clash_pipeline.simulator.world.common import (
    CAPITAL_FROM,
    DAY_S,
    FIRST_TOURNAMENT,
    SPLIT,
    WEEK_S,
    Json,
    badge,
    counter,
    to_dt,
    to_ts,
)
from clash_pipeline.simulator.world.players import MemberState, Players, PlayerStatic
from clash_pipeline.simulator.world.units import army


class PlayerProfiles:
    """Renders player bodies from the clans' membership and the players' numbers."""

    def __init__(self, seed: int, clans: Clans, players: Players) -> None:
        self.seed = seed
        self._clans = clans
        self._players = players

    def player(self, tag: str, t: datetime) -> Json | None:
        """Body of ``GET /players/{tag}``, or None when no such player exists."""
        ps = self._players.player_static(tag)
        if ps is None:
            return None
        ts = to_ts(t)
        state = self._players.member_state(tag, ts)
        eff = state["eff"]  # the player's last session: what they earned shows as of then
        body: Json = {"tag": tag, "name": state["name"], "townHallLevel": state["th"]}
        body.update(self._home_numbers(ps, state, eff))
        body.update(self._builder_numbers(ps, state, t))
        body.update(self._clan_numbers(ps, state, ts))
        body.update(self._leagues(ps, state, t))
        metrics = self._metrics(ps, state, eff)
        body["achievements"] = achievements(self._players, ps, ts, metrics, progress_ts=eff)
        if t >= tl.PLAYER_HOUSE_FROM:
            body["playerHouse"] = {"elements": ps.house}
        body["labels"] = ps.labels
        units = army(self.seed, ps, self._players.draws(tag), eff)
        body["troops"] = units.troops
        body["heroes"] = units.heroes
        if t >= tl.HERO_EQUIPMENT_FROM:
            body["heroEquipment"] = units.equipment
        body["spells"] = units.spells
        body.update(self._league_groups(ps, state, t))
        return body

    def _home_numbers(self, ps: PlayerStatic, state: MemberState, ts: float) -> Json:
        """Home village numbers; ``ts`` is the player's last session."""
        th = state["th"]
        out: Json = {}
        if th >= 12:
            _, reached, nxt = ps.town_hall_at(ts)
            span = (nxt - reached) if nxt else ps.th_period_s
            out["townHallWeaponLevel"] = max(1, min(5, 1 + int(5 * (ts - reached) / span)))
        out["expLevel"] = state["exp"]
        out["trophies"] = state["trophies"]
        out["bestTrophies"] = state["best"]
        out["warStars"] = counter(ps.war_rate, ps.created, ts)
        out["attackWins"] = counter(0.3 * ps.activity, ps.created, ts)
        out["defenseWins"] = counter(0.1 * ps.activity, ps.created, ts)
        return out

    @staticmethod
    def _builder_numbers(ps: PlayerStatic, state: MemberState, t: datetime) -> Json:
        """Builder base numbers, under their names before and after builder base 2.0."""
        eff = state["eff"]
        bh, _ = ps.builder_hall_at(eff)
        out: Json = {}
        if bh:
            out["builderHallLevel"] = bh
        if t >= tl.BUILDER_BASE_FIELDS_FROM:
            out["builderBaseTrophies"] = state["bb"]
        if t < tl.VERSUS_FIELDS_UNTIL:
            out["versusTrophies"] = state["bb"]
        if t >= tl.BUILDER_BASE_FIELDS_FROM:
            out["bestBuilderBaseTrophies"] = state["bb_best"]
        if t < tl.VERSUS_FIELDS_UNTIL:
            out["bestVersusTrophies"] = state["bb_best"]
            out["versusBattleWins"] = counter(0.5 * ps.activity, ps.created, eff)
        return out

    def _clan_numbers(self, ps: PlayerStatic, state: MemberState, ts: float) -> Json:
        membership = self._clans.clan_of_player(ps.tag, ts)
        cs = self._clans.clan_static(membership[0]) if membership is not None else None
        out: Json = {}
        if membership is not None and cs is not None:
            out["role"] = self._clans.role(cs, membership[1], ts)
        eff = state["eff"]  # war preference and capital gold move at the player's sessions
        war_pref_phase = math.floor(eff / DAY_S / ps.war_pref_period_days)
        out["warPreference"] = (
            "in" if unit(self.seed, "pref", ps.tag, war_pref_phase) < 0.8 else "out"
        )
        out["donations"] = state["donations"]
        out["donationsReceived"] = state["received"]
        out["clanCapitalContributions"] = _capital_contributions(ps, eff)
        if cs is not None:
            out["clan"] = {
                "tag": cs.tag,
                "name": cs.name,
                "clanLevel": self._clans.clan_level(cs, ts),
                "badgeUrls": badge(cs.badge),
            }
        return out

    def _leagues(self, ps: PlayerStatic, state: MemberState, t: datetime) -> Json:
        ts = to_ts(t)
        bh, _ = ps.builder_hall_at(state["eff"])
        out: Json = {}
        if ts < SPLIT:
            league = T.legacy_league_index(state["trophies"])
            if league:
                out["league"] = T.legacy_league(league)
        else:
            out["leagueTier"] = T.league_tier(state["tier"] or 0)
        if bh and t >= tl.BUILDER_BASE_2_RELEASE:
            out["builderBaseLeague"] = T.builder_base_league(state["bb"])
        if state["best"] >= T.LEGEND_TROPHIES:
            out["legendStatistics"] = self._legend_statistics(ps, state, ts)
        return out

    def _legend_statistics(self, ps: PlayerStatic, state: MemberState, ts: float) -> Json:
        best = state["best"]
        # The best season: a fixed one before the split (the current one until then).
        best_at = SPLIT - (30 + h64(self.seed, "legend-best", ps.tag) % 900) * DAY_S
        best_season = tl.season_bounds(to_dt(min(ts, best_at)))[2]
        stats: Json = {
            "legendTrophies": max(0, (best - T.LEGEND_TROPHIES) * 3)
            + counter(2 * ps.activity, ps.created, min(state["eff"], SPLIT)),
            "bestSeason": {
                "id": best_season,
                "rank": 1000 + int(h64(self.seed, "legend", ps.tag) % 200000),
                "trophies": best,
            },
        }
        if ts < SPLIT:
            previous = tl.season_bounds(to_dt(ts))[0] - tl.DAY
            stats["previousSeason"] = {
                "id": previous.strftime("%Y-%m"),
                "rank": 5000 + int(h64(self.seed, "legend-prev", ps.tag, previous.month) % 400000),
                "trophies": max(T.LEGEND_TROPHIES, best - 150),
            }
            if state["trophies"] >= T.LEGEND_TROPHIES:
                stats["currentSeason"] = {
                    "rank": 9000 + int(h64(self.seed, "legend-cur", ps.tag) % 400000),
                    "trophies": state["trophies"],
                }
        return stats

    def _metrics(self, ps: PlayerStatic, state: MemberState, ts: float) -> dict[str, int]:
        """The quantities that achievements share with the rest of the body (``ts``: the
        player's last session)."""
        return {
            "town_hall": state["th"],
            "builder_hall": ps.builder_hall_at(ts)[0],
            "best_trophies": state["best"],
            "best_bb_trophies": state["bb_best"],
            "war_stars": counter(ps.war_rate, ps.created, ts),
            "lifetime_donations": self._players.lifetime_donations(ps, ts),
            "capital_contributions": _capital_contributions(ps, ts),
            "capital_looted": counter(ps.capital_loot_rate, max(ps.created, CAPITAL_FROM), ts),
        }

    def _league_groups(self, ps: PlayerStatic, state: MemberState, t: datetime) -> Json:
        """The tournament groups of this week and last week (for a placed player)."""
        ranked = state["ranked"]
        out: Json = {}
        if ranked is None or t < tl.LEAGUE_GROUP_FIELDS_FROM:
            return out
        week = ranked[2]
        out["currentLeagueGroupTag"] = random_tag(self.seed, "lg", ps.tag, week)
        out["currentLeagueSeasonId"] = int(FIRST_TOURNAMENT + week * WEEK_S)
        if week > ps.placed_week:
            out["previousLeagueGroupTag"] = random_tag(self.seed, "lg", ps.tag, week - 1)
            out["previousLeagueSeasonId"] = int(FIRST_TOURNAMENT + (week - 1) * WEEK_S)
        return out


def _capital_contributions(ps: PlayerStatic, ts: float) -> int:
    return counter(ps.capital_rate, max(ps.created, CAPITAL_FROM), ts)
