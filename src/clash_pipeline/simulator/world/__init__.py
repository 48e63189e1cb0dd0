"""The simulated Clash of Clans world: deterministic data as a pure function of time.

Every response is computed from ``(seed, tag, simulated time)`` alone, never from
request history, so any order of requests sees one consistent world and the same
inputs always give the same bytes.

How the world moves (all times UTC), one module per domain:

* **Clans** (:mod:`.clans`, :mod:`.clan_profile`): every valid clan tag is a clan with a
  pool of players who join, leave and re-join; 30..50 members at a time.
* **Players** (:mod:`.players`, :mod:`.player_profile`, :mod:`.units`,
  :mod:`.achievements`): town halls step up with time, unit levels follow a lab
  progress that never decreases, counters only grow, donations reset each season;
  after the 2025 split most players get a league tier with weekly tournaments. Each
  member plays in a given hour with probability ``activity_per_hour`` and shows what
  they earned as of their last session, so most members do not change between hourly
  polls.
* **Wars** (:mod:`.wars`, :mod:`.war_schedule`): a war slot every 60-78 h, skipped now
  and then and never during league days; attacks appear as their time passes.
* **CWL** (:mod:`.cwl`): from the 1st 08:00 to the 11th 08:00 of every month each clan
  is in an 8-clan group with 7 rounds.
* **Capital raids** (:mod:`.raids`): every Friday 07:00 → Monday 07:00 from 2022-05.

:mod:`.common` holds what they share: time units, deterministic draws and a memo.
:class:`World` composes the domains behind the one interface the server uses.
"""

from __future__ import annotations

from datetime import datetime

from clash_pipeline.simulator import tables as T
from clash_pipeline.simulator import timeline as tl
from clash_pipeline.simulator.world.clan_profile import ClanProfiles
from clash_pipeline.simulator.world.clans import POOL_SIZE, Clans, ClanStatic
from clash_pipeline.simulator.world.common import Json, to_ts
from clash_pipeline.simulator.world.cwl import ClanWarLeagues
from clash_pipeline.simulator.world.player_profile import PlayerProfiles
from clash_pipeline.simulator.world.players import (
    DEFAULT_ACTIVITY_PER_HOUR,
    MemberState,
    Players,
    PlayerStatic,
)
from clash_pipeline.simulator.world.raids import RAIDS_DEFAULT_COUNT, Raids, RaidTarget, raid_target
from clash_pipeline.simulator.world.war_schedule import WARLOG_DEFAULT_COUNT, Wars

__all__ = [
    "DEFAULT_ACTIVITY_PER_HOUR",
    "POOL_SIZE",
    "RAIDS_DEFAULT_COUNT",
    "WARLOG_DEFAULT_COUNT",
    "ClanStatic",
    "PlayerStatic",
    "World",
]


class World:
    """Deterministic generator of every API body, for one seed."""

    def __init__(
        self, seed: int = 0, *, activity_per_hour: float = DEFAULT_ACTIVITY_PER_HOUR
    ) -> None:
        self.seed = seed
        self.activity_per_hour = activity_per_hour
        self.clans = Clans(seed)
        self.players = Players(seed, self.clans, activity_per_hour)
        self.cwl = ClanWarLeagues(seed, self.clans, self.players)
        self.wars = Wars(seed, self.clans, self.players, self.cwl)
        self.raids = Raids(seed, self.clans, self.players)
        self._clan_profiles = ClanProfiles(self.clans, self.players, self.wars.war_record)
        self._player_profiles = PlayerProfiles(seed, self.clans, self.players)
        # The statics, for callers that plan scenarios (tests, benchmarks).
        self.clan_static = self.clans.clan_static
        self.player_static = self.players.player_static

    # -- who is where ------------------------------------------------------------------------------
    def player_tag(self, clan_tag: str, index: int) -> str:
        """The tag of the ``index``-th player of a clan's pool."""
        return self.clans.player_tag(clan_tag, index)

    def player_ref(self, tag: str) -> tuple[str, int] | None:
        """(clan tag, pool index) of a player tag, or None when no such player exists."""
        return self.clans.player_ref(tag)

    def roster(self, clan_tag: str, t: datetime | float) -> list[int]:
        """Pool indices of the members at ``t`` (the leader first), 30..50 of them."""
        return self.clans.roster(clan_tag, t)

    def roster_tags(self, clan_tag: str, t: datetime) -> list[str]:
        return self.clans.roster_tags(clan_tag, t)

    def find_clan(self, members: int, t: datetime, *, tries: int = 5000) -> str:
        """A clan tag with ``members`` members at ``t`` (see :meth:`Clans.find_clan`)."""
        return self.clans.find_clan(members, t, tries=tries)

    def clan_of_player(self, tag: str, ts: float) -> tuple[str, int] | None:
        return self.clans.clan_of_player(tag, ts)

    def town_hall(self, tag: str, ts: float) -> int:
        return self.players.town_hall(tag, ts)

    def player_name(self, tag: str) -> str:
        return self.players.player_name(tag)

    def played_at(self, tag: str, ts: float) -> float:
        """The start of the player's last session hour at or before ``ts``."""
        return self.players.played_at(tag, ts)

    def member_state(self, tag: str, ts: float) -> MemberState:
        """The small, per-member numbers the clan and member list need (cached)."""
        return self.players.member_state(tag, ts)

    def clan_level(self, cs: ClanStatic, ts: float) -> int:
        return self.clans.clan_level(cs, ts)

    def clan_capital(self, cs: ClanStatic, ts: float) -> Json:
        return self.clans.clan_capital(cs, ts)

    def raid_target(self, tag: str, ts: float) -> RaidTarget:
        """A clan capital as a raid target, with the log header naming ``tag``'s clan."""
        return raid_target(self.clans, tag, ts)

    # -- API bodies --------------------------------------------------------------------------------
    def clan(self, clan_tag: str, t: datetime) -> Json:
        """Body of ``GET /clans/{tag}``."""
        return self._clan_profiles.clan(clan_tag, t)

    def members(self, clan_tag: str, t: datetime) -> list[Json]:
        """Items of ``GET /clans/{tag}/members`` (ranked like the game does)."""
        return self._clan_profiles.members(clan_tag, to_ts(t))

    clan_members = members  # the name the landing tests and benchmarks use

    def player(self, tag: str, t: datetime) -> Json | None:
        """Body of ``GET /players/{tag}``, or None when no such player exists."""
        return self._player_profiles.player(tag, t)

    def current_war(self, clan_tag: str, t: datetime) -> Json:
        """Body of ``GET /clans/{tag}/currentwar``."""
        return self.wars.current_war(clan_tag, t)

    def warlog(self, clan_tag: str, t: datetime, count: int = WARLOG_DEFAULT_COUNT) -> list[Json]:
        """Items of ``GET /clans/{tag}/warlog`` (newest first), at most ``count``."""
        return self.wars.warlog(clan_tag, t, count)

    def league_group(self, clan_tag: str, t: datetime) -> Json | None:
        """Body of ``GET /clans/{tag}/currentwar/leaguegroup``; None outside the league days."""
        return self.cwl.league_group(clan_tag, t)

    def cwl_war(self, war_tag: str, t: datetime) -> Json | None:
        """Body of ``GET /clanwarleagues/wars/{warTag}``; None for unknown or future wars."""
        return self.cwl.cwl_war(war_tag, t)

    def capital_raid_seasons(
        self, clan_tag: str, t: datetime, count: int = RAIDS_DEFAULT_COUNT
    ) -> list[Json]:
        """Items of ``GET /clans/{tag}/capitalraidseasons`` (newest first), at most ``count``."""
        return self.raids.capital_raid_seasons(clan_tag, t, count)

    @staticmethod
    def leagues() -> list[Json]:
        """Items of ``GET /leagues`` (the battle-mode leagues before the split)."""
        return [T.legacy_league(i) for i in range(len(T.LEGACY_LEAGUES))]

    @staticmethod
    def league_tiers(t: datetime) -> list[Json] | None:
        """Items of ``GET /leaguetiers``; None before the split (the path did not exist)."""
        if t < tl.SPLIT_INSTANT:
            return None
        return [T.league_tier(i) for i in range(len(T.LEAGUE_TIERS))]
