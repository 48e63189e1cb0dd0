"""Players: their statics and every number that moves with time.

Town hall upgrades are a step function of time (with the real town hall release dates
as a ceiling). Counters (war stars, achievements, capital gold, ...) only grow;
donations grow within a season and reset at its end (last Monday of the month, 05:00).
After the 2025 split (``SPLIT_INSTANT``, see :mod:`clash_pipeline.simulator.timeline`)
~70 % of players get placed in a league tier with weekly tournament trophies (reset
every Tuesday 05:00); the others stay Unranked with their frozen battle-mode trophies.

**Activity.** A member plays in a given UTC hour with probability ``activity_per_hour``
(a deterministic draw from ``(seed, tag, hour)``). What a member earns by playing
(town hall, unit levels, XP, trophies, donations, achievements, counters, name) is
the progression above evaluated at the start of the last hour they played in, at or
before the time asked (:meth:`Players.played_at`); the search looks back at most
:data:`ACTIVITY_SCAN_HOURS`, then that hour counts as played. Since that time never
goes back, counters stay monotonic. What does not wait for the member keeps its own
clock: donations reset at the season end and tournament trophies at the week's start
(to 0 for an idle member too, as the game does), the weekly tier follows its drift,
and clan membership and roles follow the clan.
"""

from __future__ import annotations

import math
import random
from array import array
from dataclasses import dataclass
from functools import lru_cache
from typing import TypedDict

from clash_pipeline.simulator import tables as T
from clash_pipeline.simulator import timeline as tl
from clash_pipeline.simulator.codec import h64, mix64, tag_number, unit
from clash_pipeline.simulator.world.clans import Clans
from clash_pipeline.simulator.world.common import (
    DAY_S,
    FIRST_TOURNAMENT,
    HOUR_S,
    SPLIT,
    TH_REF,
    WEEK_S,
    Json,
    Memo,
    counter,
    to_dt,
    weighted,
)

#: The default chance that a member plays in a given hour. Most members of real clans play
#: one to four sessions a day (~0.04..0.17 an hour); 0.12 (~2.9 sessions a day) leaves ~88 %
#: of the members unchanged between two hourly runs and ~46 % between runs 6 h apart.
DEFAULT_ACTIVITY_PER_HOUR = 0.12
#: How far back the search for a member's last session goes (then that hour counts as played).
ACTIVITY_SCAN_HOURS = 14 * 24
_ACTIVITY_SALT = 0x5E5510

#: Bound of the per-member memos: 1,000 clans of 50 members, now and a day earlier.
MEMO_SIZE = 131072

#: What a member's state takes from the clock rather than from their sessions:
#: (start of the season, tournament week, after the split).
ClockKey = tuple[float, int, bool]


@lru_cache(maxsize=4096)
def clock_key(hour: int) -> ClockKey:
    """The clock's part of the member state of ``hour`` (seasons, tournament weeks and the
    split all turn on whole hours)."""
    t = to_dt(hour * HOUR_S)
    return tl.season_bounds(t)[0].timestamp(), tl.tournament_week(t), t >= tl.SPLIT_INSTANT


#: Battle-mode trophies around which a player of each town hall sits.
_TROPHY_BASE = {
    3: 300, 4: 500, 5: 700, 6: 900, 7: 1150, 8: 1400, 9: 1700, 10: 2050, 11: 2400,
    12: 2800, 13: 3200, 14: 3600, 15: 4000, 16: 4400, 17: 4700, 18: 4900, 19: 5000,
}  # fmt: skip
_TH_RELEASE_BY_LEVEL = tuple(
    next((r.timestamp() for level, r in tl.TOWN_HALL_RELEASES if level == th), -math.inf)
    for th in range(20)
)
#: Town hall at 2024-01-01, drawn with these weights (a lookup table of 100 entries).
_TH_REF_WEIGHTS = {6: 2, 7: 3, 8: 5, 9: 7, 10: 9, 11: 10, 12: 12, 13: 14, 14: 14, 15: 12, 16: 8}
_TH_REF_TABLE = tuple(th for th, weight in _TH_REF_WEIGHTS.items() for _ in range(weight))


@dataclass(slots=True)
class TownHallSchedule:
    """When a player reached each town hall: a step function of time."""

    ref: int  # town hall at TH_REF
    period: float  # seconds between upgrades
    times: list[tuple[int, float]]  # (town hall, time reached); the first one at -inf
    reached: tuple[float, ...] = ()  # time reached by town hall level 0..20 (a lookup table)

    def town_hall_at(self, ts: float) -> tuple[int, float, float | None]:
        """(town hall, time reached, time of the next upgrade or None) at ``ts``."""
        times = self.times
        current, reached, nxt = times[0][0], times[0][1], None
        for i, (level, when) in enumerate(times):
            if when <= ts:
                current, reached = level, when
                nxt = times[i + 1][1] if i + 1 < len(times) else None
            else:
                break
        return current, reached, nxt

    def reached_at(self, level: int) -> float:
        if 0 <= level < len(self.reached):
            return self.reached[level]
        return self._reached_at(level)

    def _reached_at(self, level: int) -> float:
        for th, when in self.times:
            if th >= level:
                return when
        return math.inf


@dataclass(slots=True)
class PlayerStatic:
    tag: str
    clan_tag: str
    index: int
    created: float
    schedule: TownHallSchedule
    rush: float
    bh_ref: int
    bh_period_s: float
    bh_phase_s: float
    bb_rush: float
    skill: float
    trophy_amp: float
    trophy_period_h: float
    trophy_phase: float
    best_extra: int
    bb_skill: float
    exp_base: int
    exp_period_days: float
    activity: float
    donate_rate: float
    receive_rate: float
    war_rate: float
    capital_rate: float
    capital_loot_rate: float
    labels: list[Json]
    house: list[Json]
    war_pref_period_days: float
    placed: bool
    placed_week: int
    tier_trend: float
    ranked_skill: float
    first_tier: int | None = None  # memo of Players.tier
    tiers: list[int] | None = None  # memo of Players.tier by week, from placed_week on

    @property
    def th_period_s(self) -> float:
        return self.schedule.period

    def town_hall_at(self, ts: float) -> tuple[int, float, float | None]:
        return self.schedule.town_hall_at(ts)

    def reached_at(self, level: int) -> float:
        return self.schedule.reached_at(level)

    def lab_progress(self, ts: float) -> tuple[int, float]:
        """(town hall, x): x is a continuous, non-decreasing "lab progress" in town halls."""
        th, reached, nxt = self.town_hall_at(ts)
        if reached == -math.inf:
            frac = 1.0
        elif nxt is not None:
            frac = (ts - reached) / (nxt - reached)
        else:
            frac = min(1.0, (ts - reached) / self.th_period_s)
        return th, th - 1 + frac - self.rush

    def builder_hall_at(self, ts: float) -> tuple[int, float]:
        """(builder hall, continuous progress); builder hall 0 means no builder base yet."""
        th, _, _ = self.town_hall_at(ts)
        if th < 4:
            return 0, 0.0
        raw = self.bh_ref + (ts - TH_REF + self.bh_phase_s) / self.bh_period_s
        top = tl.max_builder_hall(to_dt(ts))
        bh = max(1, min(top, math.floor(raw)))
        x = min(float(top), max(1.0, raw)) - self.bb_rush
        return bh, x


@dataclass(frozen=True, slots=True)
class PlayerDraws:
    """Per-player constants only the full /players body needs."""

    jitters: array[float]  # per unit of T.ALL_UNITS: offset of its level from the lab pace
    counter_rates: dict[str, float]  # per counter achievement: multiplier of its mean rate
    paces: array[float]  # per unit of T.ALL_UNITS: upgrade pace draw (equipment)


#: (tier index, tournament trophies, week) of a placed player.
Ranked = tuple[int, int, int]


class MemberState(TypedDict):
    """The small, per-member numbers the clan body and the member list need."""

    name: str
    th: int
    exp: int
    trophies: int
    legacy: int
    best: int
    tier: int | None  # None before the split, 0 for Unranked
    ranked: Ranked | None
    bb: int
    bb_best: int
    donations: int
    received: int
    eff: float  # the start of the member's last session hour: the time their progress shows


class Players:
    """Player statics (drawn once per tag) and their quantities at a time."""

    def __init__(
        self, seed: int, clans: Clans, activity_per_hour: float = DEFAULT_ACTIVITY_PER_HOUR
    ) -> None:
        if not 0 < activity_per_hour <= 1:
            raise ValueError(
                f"activity_per_hour must be in (0, 1], got {activity_per_hour}: it is the chance "
                "that a member plays in a given hour (1 = every member plays every hour)"
            )
        self.seed = seed
        self.activity_per_hour = activity_per_hour
        self._activity_threshold = int(activity_per_hour * 2.0**64)
        self._clans = clans
        self.player_static = lru_cache(maxsize=65536)(self._make_player_static)
        self.draws = lru_cache(maxsize=8192)(self._make_draws)
        self._names = lru_cache(maxsize=65536)(self._make_names)
        self._schedule = lru_cache(maxsize=65536)(self._make_schedule)
        # Sized for 1,000 clans of 50 (members now and a day earlier, for the previous rank);
        # an idle member's state is shared by all the hours until they play again.
        self._member_states: Memo[tuple[str, int, ClockKey], MemberState] = Memo(MEMO_SIZE)
        self._last_played: Memo[tuple[str, int], int] = Memo(MEMO_SIZE)

    # -- statics -------------------------------------------------------------------------------
    def _make_player_static(self, tag: str) -> PlayerStatic | None:
        ref = self._clans.player_ref(tag)
        if ref is None:
            return None
        clan_tag, index = ref
        rng = random.Random(h64(self.seed, "player", tag))
        cs_created = self._clans.clan_static(clan_tag).created
        schedule = self._schedule(tag)
        activity = rng.betavariate(2.0, 2.0) * 1.6 + 0.1
        labels = [
            T.label(entry) for entry in sorted(rng.sample(T.PLAYER_LABELS, rng.randint(0, 3)))
        ]
        house = [{"type": part, "id": 82000000 + rng.randint(0, 140)} for part in T.HOUSE_PARTS]
        created = min(cs_created, tl.utc(2013, 1, 1).timestamp() + rng.random() * 9 * 365 * DAY_S)
        return PlayerStatic(
            tag=tag,
            clan_tag=clan_tag,
            index=index,
            created=created,
            schedule=schedule,
            rush=max(0.0, rng.gauss(0.15, 0.35)),
            bh_ref=max(1, min(9, schedule.ref - rng.randint(2, 6))),
            bh_period_s=rng.uniform(120, 400) * DAY_S,
            bh_phase_s=rng.uniform(0, 400) * DAY_S,
            bb_rush=max(0.0, rng.gauss(0.2, 0.3)),
            skill=rng.gauss(-250, 450),
            trophy_amp=rng.uniform(40, 220),
            trophy_period_h=rng.uniform(60, 300),
            trophy_phase=rng.uniform(0, 2 * math.pi),
            best_extra=rng.randint(0, 400),
            bb_skill=rng.gauss(0, 250),
            exp_base=rng.randint(8, 40),
            exp_period_days=rng.uniform(15, 45),
            activity=activity,
            donate_rate=max(0.0, rng.gauss(40, 45)) * activity,
            receive_rate=max(0.0, rng.gauss(35, 25)) * activity,
            war_rate=rng.uniform(0.02, 0.25) * activity,
            capital_rate=rng.uniform(100, 1200) * activity,
            capital_loot_rate=rng.uniform(150, 1100) * activity,
            labels=labels,
            house=house,
            war_pref_period_days=rng.uniform(20, 120),
            placed=rng.random() < 0.72,
            placed_week=weighted(rng, {0: 5, 1: 2, 2: 1, 3: 1}),
            tier_trend=rng.uniform(-0.03, 0.12),
            ranked_skill=rng.uniform(0.3, 1.0) * min(1.5, activity),
        )

    def _make_schedule(self, tag: str) -> TownHallSchedule:
        """Town hall upgrades: every ``period`` from ``ref`` (at 2024-01-01) up to ``top``,
        never before the town hall's release."""
        h = h64(self.seed, "town-hall", tag)
        ref = _TH_REF_TABLE[(h & 0xFFFF) * len(_TH_REF_TABLE) >> 16]
        step = ((h >> 16) & 0xFFFF) * 9 / 65536.0
        top = min(18, ref + (1, 1, 2, 2, 3, 3, 4, 5, 7)[int(step)])
        if top == 18 and step % 1 < 0.6:
            top = 17  # most players had not reached the newest town hall by late 2026
        period = (170 + 330 * ((h >> 32) & 0xFFFF) / 65536.0) * DAY_S
        base = TH_REF - ((h >> 48) / 65536.0) * period - ref * period
        times: list[tuple[int, float]] = [(tl.MIN_TOWN_HALL, -math.inf)]
        previous = -math.inf
        for level in range(tl.MIN_TOWN_HALL + 1, top + 1):
            when = base + level * period
            released = _TH_RELEASE_BY_LEVEL[level]
            if released > when:
                when = released
            if previous > when:
                when = previous
            times.append((level, when))
            previous = when
        schedule = TownHallSchedule(ref, period, times)
        schedule.reached = tuple(schedule._reached_at(level) for level in range(21))
        return schedule

    def town_hall(self, tag: str, ts: float) -> int:
        """The town hall at ``ts``, as of the player's last session."""
        return self._schedule(tag).town_hall_at(self.played_at(tag, ts))[0]

    def _make_names(self, tag: str) -> tuple[str, str | None]:
        """(name, alternative name or None): a cheap hash-derived name for any player tag."""
        h = h64(self.seed, "name", tag)

        def pick(options: tuple[str, ...]) -> str:
            nonlocal h
            h, i = divmod(h, len(options))
            return options[i]

        base = "".join(pick(T.NAME_SYLLABLES) for _ in range(2 + h % 2)).capitalize()
        h //= 2
        style = h % 20
        h //= 20
        if style < 6:
            name = f"{pick(T.NAME_WORDS)}{base}"
        elif style < 9:
            name = f"{base}{1 + h % 99}"
        elif style < 11:
            name = base.upper()
        else:
            name = base
        decoration = pick(T.NAME_DECORATIONS)
        if decoration:
            name = f"{decoration}{name}{decoration}" if h % 2 else f"{name}{decoration}"
        h = h64(self.seed, "alt-name", tag)
        alt_name = f"{T.NAME_WORDS[h % len(T.NAME_WORDS)]} {base}" if h % 100 < 8 else None
        return name, alt_name

    def player_name(self, tag: str) -> str:
        return self._names(tag)[0]

    def _make_draws(self, tag: str) -> PlayerDraws:
        rng = random.Random(h64(self.seed, "draws", tag))
        return PlayerDraws(
            # arrays of doubles: the same values as floats, a third of the memory
            jitters=array("d", (rng.uniform(-0.45, 0.35) for _ in T.ALL_UNITS)),
            counter_rates={name: 0.5 + rng.random() for name in T.COUNTER_RATES},
            paces=array("d", (rng.random() for _ in T.ALL_UNITS)),
        )

    def static(self, tag: str) -> PlayerStatic:
        """The statics of a tag known to exist (a pool member)."""
        ps = self.player_static(tag)
        if ps is None:
            raise KeyError(tag)
        return ps

    # -- activity ------------------------------------------------------------------------------
    def plays(self, tag: str, hour: int) -> bool:
        """Whether the player plays in the UTC hour ``hour`` (hours since the epoch)."""
        draw = mix64(self.seed, tag_number(tag), hour, _ACTIVITY_SALT)
        return draw < self._activity_threshold

    def last_played_hour(self, tag: str, hour: int) -> int:
        """The last hour at or before ``hour`` in which the player played (memoised)."""
        if self._activity_threshold >= 1 << 64:
            return hour
        return self._last_played.get((tag, hour), lambda: self._scan_back(tag, hour))

    def _scan_back(self, tag: str, hour: int) -> int:
        number = tag_number(tag)
        seed, threshold = self.seed, self._activity_threshold
        if mix64(seed, number, hour, _ACTIVITY_SALT) < threshold:
            return hour
        before = self._last_played.peek((tag, hour - 1))  # the previous hour's answer
        if before is not None and before > hour - ACTIVITY_SCAN_HOURS:
            return before
        for h in range(hour - 1, hour - ACTIVITY_SCAN_HOURS, -1):
            if mix64(seed, number, h, _ACTIVITY_SALT) < threshold:
                return h
        return hour - ACTIVITY_SCAN_HOURS

    def played_at(self, tag: str, ts: float) -> float:
        """The time a player's earned state shows at ``ts``: the start of their last session
        hour at or before ``ts``; it never goes back as ``ts`` grows."""
        return self.last_played_hour(tag, math.floor(ts / HOUR_S)) * HOUR_S

    # -- quantities ------------------------------------------------------------------------------
    def display_name(self, tag: str, ts: float) -> str:
        """The name at ``ts`` (as of the player's last session): a few players switch between
        two names every few months."""
        return self._name_at(tag, self.played_at(tag, ts))

    def _name_at(self, tag: str, eff: float) -> str:
        name, alt_name = self._names(tag)
        if alt_name and math.floor(eff / (150 * DAY_S) + unit(self.seed, "rename", tag)) % 2:
            return alt_name
        return name

    def legacy_trophies(self, ps: PlayerStatic, ts: float) -> tuple[int, int]:
        """(battle-mode trophies, best trophies), frozen at the split."""
        ts = min(ts, SPLIT)
        th, reached, nxt = ps.town_hall_at(ts)
        if nxt is not None and reached != -math.inf:
            frac = (ts - reached) / (nxt - reached)
        else:
            frac = 1.0 if reached == -math.inf else min(1.0, (ts - reached) / ps.th_period_s)
        low, high = _TROPHY_BASE[min(th, 18)], _TROPHY_BASE[min(th + 1, 19)]
        center = max(150.0, low + (high - low) * frac + ps.skill)
        hour = math.floor(ts / HOUR_S)
        wave = math.sin(2 * math.pi * hour / ps.trophy_period_h + ps.trophy_phase)
        trophies = max(0, int(center + ps.trophy_amp * wave))
        best = int(center + ps.trophy_amp) + ps.best_extra
        return trophies, best

    def builder_trophies(self, ps: PlayerStatic, ts: float) -> tuple[int, int]:
        bh, x = ps.builder_hall_at(ts)
        if bh == 0:
            return 0, 0
        center = max(0.0, 300 + 310 * x + ps.bb_skill)
        hour = math.floor(ts / HOUR_S)
        wave = math.sin(2 * math.pi * hour / (ps.trophy_period_h * 1.7) + ps.trophy_phase + 1)
        return max(0, int(center + 0.6 * ps.trophy_amp * wave)), int(center + 0.6 * ps.trophy_amp)

    def ranked(self, ps: PlayerStatic, ts: float, eff: float | None = None) -> Ranked | None:
        """(tier index, tournament trophies, week) of a placed player, None when Unranked.

        The week and its tier follow the clock; the trophies are those of the player's
        last session ``eff`` (default ``ts``), 0 when they have not played this week."""
        week = tl.tournament_week(to_dt(ts))
        if week < 0 or not ps.placed or week < ps.placed_week:
            return None
        tier = self.tiers_until(ps, week)[week - ps.placed_week]
        start = FIRST_TOURNAMENT + week * WEEK_S
        eff = ts if eff is None else eff
        if eff < start:
            return tier, 0, week
        # Trophies of this week's tournament: 0 on Tuesday 05:00, growing hour by hour
        # (each player at their own pace) to a final count under 400 by Monday 05:00.
        elapsed = min(1.0, math.floor((eff - start) / HOUR_S) / 144)
        h = h64(self.seed, "week", ps.tag, week)
        final = 40 + 300 * min(1.0, ps.ranked_skill) * (0.4 + 0.6 * (h & 0xFFFF) / 65536.0)
        pace = 0.4 + 1.4 * (h >> 48) / 65536.0
        return tier, int(final * elapsed**pace), week

    def tiers_until(self, ps: PlayerStatic, week: int) -> list[int]:
        """Tiers of the weeks placed_week..week: placed from the frozen trophies, then
        drifting (memoised; a copy per thread, then swapped)."""
        if ps.first_tier is None:
            frozen, _ = self.legacy_trophies(ps, SPLIT)
            ps.first_tier = max(1, min(T.TOP_TIER - 4, round(frozen / 260)))
        tiers = list(ps.tiers or ())
        while len(tiers) <= week - ps.placed_week:
            w = ps.placed_week + len(tiers)
            noise = int(h64(self.seed, "tier", ps.tag, w) % 3) - 1
            drift = math.floor((w - ps.placed_week) * ps.tier_trend)
            tiers.append(max(1, min(T.TOP_TIER, ps.first_tier + drift + noise)))
        if ps.tiers is None or len(tiers) > len(ps.tiers):
            ps.tiers = tiers
        return tiers

    def best_tier(self, ps: PlayerStatic, ts: float) -> int:
        week = tl.tournament_week(to_dt(ts))
        if not ps.placed or week < ps.placed_week:
            return 0
        return max(self.tiers_until(ps, week)[: week - ps.placed_week + 1])

    def season_counter(
        self, ps: PlayerStatic, ts: float, rate: float, kind: str, eff: float | None = None
    ) -> int:
        """A counter of the current season (donations): it resets when the season ends, for
        an idle player too; it grows at the player's sessions (``eff``, default ``ts``)."""
        start, end, season = tl.season_bounds(to_dt(ts))
        start_ts, end_ts = start.timestamp(), end.timestamp()
        eff = ts if eff is None else eff
        if eff < start_ts:
            return 0
        days = (end_ts - start_ts) / DAY_S
        total = math.floor(rate * days * (0.2 + 0.75 * unit(self.seed, kind, ps.tag, season)))
        hours_total = (end_ts - start_ts) / HOUR_S
        done = math.floor((eff - start_ts) / HOUR_S)
        return total * done // int(hours_total)

    def lifetime_donations(self, ps: PlayerStatic, ts: float) -> int:
        start, _, _ = tl.season_bounds(to_dt(ts))
        before = max(0.0, (start.timestamp() - ps.created) / DAY_S)
        return math.floor(ps.donate_rate * before) + self.season_counter(
            ps, ts, ps.donate_rate, "don"
        )

    def exp_level(self, ps: PlayerStatic, ts: float) -> int:
        return min(500, ps.exp_base + counter(1 / ps.exp_period_days, ps.created, ts))

    def member_state(self, tag: str, ts: float) -> MemberState:
        """The small, per-member numbers the clan and member list need (cached by hour: they
        change only at hour boundaries)."""
        hour = math.floor(ts / HOUR_S)
        eff_hour = self.last_played_hour(tag, hour)
        key = (tag, eff_hour, clock_key(hour))
        return self._member_states.get(key, lambda: self._make_member_state(tag, hour, eff_hour))

    def _make_member_state(self, tag: str, hour: int, eff_hour: int) -> MemberState:
        """The state of hour ``hour``: a function of the last session ``eff_hour`` and of
        the clock's season, tournament week and split only (see :func:`clock_key`)."""
        ps = self.static(tag)
        ts = hour * HOUR_S
        eff = eff_hour * HOUR_S
        th, _, _ = ps.town_hall_at(eff)
        # Battle-mode trophies froze for everyone at the split, played or not.
        legacy, best = self.legacy_trophies(ps, SPLIT if ts >= SPLIT else eff)
        ranked = self.ranked(ps, ts, eff) if ts >= SPLIT else None
        tier: int | None
        if ts < SPLIT:
            trophies, tier = legacy, None
        elif ranked is None:
            trophies, tier = legacy, 0
        else:
            tier, trophies = ranked[0], ranked[1]
        bb, bb_best = self.builder_trophies(ps, eff)
        return {
            "name": self._name_at(ps.tag, eff),
            "th": th,
            "exp": self.exp_level(ps, eff),
            "trophies": trophies,
            "legacy": legacy,
            "best": best,
            "tier": tier,
            "ranked": ranked,
            "bb": bb,
            "bb_best": bb_best,
            "donations": self.season_counter(ps, ts, ps.donate_rate, "don", eff),
            "received": self.season_counter(ps, ts, ps.receive_rate, "rec", eff),
            "eff": eff,
        }
