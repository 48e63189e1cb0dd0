"""Clans: who they are (statics), who plays in them (the pool and its membership cycles).

Every valid clan tag is a clan. It owns a pool of ``POOL_SIZE`` players whose tags
encode (clan, index), see :mod:`clash_pipeline.simulator.codec`. Index 0 is the leader
(always in the clan); each other player has membership cycles (weeks to months) with a
hash-chosen stint in each, so members join, leave and re-join. The roster is clamped
to 30..50 members.
"""

from __future__ import annotations

import math
import random
import threading
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from clash_pipeline.simulator import tables as T
from clash_pipeline.simulator import timeline as tl
from clash_pipeline.simulator.codec import (
    TagCodec,
    h64,
    mix64,
    random_tag,
    tag_from_number,
    tag_number,
    unit,
)
from clash_pipeline.simulator.world.common import (
    CAPITAL_FROM,
    DAY_S,
    EPOCH,
    HOUR_S,
    Json,
    Memo,
    counter,
    icon_code,
    is_tag,
    to_dt,
    to_ts,
    weighted,
)

POOL_SIZE = 70
CORE_SIZE = 26  # pool indices 0..25: the leader and long-staying members
MIN_MEMBERS = 30
MAX_MEMBERS = 50

#: (cycle days, phase days, min share, max share, promotable to elder) of a pool player.
Cycle = tuple[float, float, float, float, bool]


@dataclass(slots=True)
class ClanStatic:
    tag: str
    number: int
    name: str
    description: str
    type: str
    location: Json
    chat_language: Json
    labels: list[Json]
    badge: str
    family_friendly: bool
    war_frequency: str
    required_trophies: int
    required_bb_trophies: int
    required_th: int
    created: float
    level_base: int
    level_period_days: float
    war_period_s: float
    war_phase_s: float
    war_skip: float
    strength: float
    war_league_base: int
    capital_period_days: float
    war_record_rate: tuple[float, float]
    activity: float
    pool_tags: list[str | None]  # filled lazily by Clans.player_tag
    cycles: list[Cycle] | None = None  # per pool index, made on first use by Clans._cycles


class Clans:
    """Clan statics, the player tags of each clan's pool and who is in the clan when."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._player_codec = TagCodec(seed, "player", min_length=8)
        self._registry: dict[str, tuple[str, int]] = {}
        self._registry_lock = threading.Lock()
        self.clan_static = lru_cache(maxsize=8192)(self._make_clan_static)
        self._rosters: Memo[tuple[str, float], list[int]] = Memo(8192)

    # -- tags ---------------------------------------------------------------------------------
    def player_tag(self, clan_tag: str, index: int) -> str:
        """The tag of the ``index``-th player of a clan's pool."""
        cs = self.clan_static(clan_tag)
        tag = cs.pool_tags[index]
        if tag is None:
            tag = self._player_codec.encode(cs.number * POOL_SIZE + index)
            if tag is None:  # a clan tag too long to encode into a player tag: remember it
                tag = random_tag(self.seed, "long-pool", cs.number, index, length=10)
                with self._registry_lock:
                    self._registry[tag] = (clan_tag, index)
            cs.pool_tags[index] = tag
        return tag

    def player_ref(self, tag: str) -> tuple[str, int] | None:
        """(clan tag, pool index) of a player tag, or None when no such player exists."""
        number = self._player_codec.decode(tag)
        if number is not None:
            clan_number, index = divmod(number, POOL_SIZE)
            clan_tag = tag_from_number(clan_number)
            if is_tag(clan_tag):
                return clan_tag, index
        with self._registry_lock:
            return self._registry.get(tag)

    # -- statics -------------------------------------------------------------------------------
    def _make_clan_static(self, tag: str) -> ClanStatic:
        number = tag_number(tag)
        rng = random.Random(h64(self.seed, "clan", number))
        name = f"{rng.choice(T.CLAN_WORDS_A)} {rng.choice(T.CLAN_WORDS_B)}"
        if rng.random() < 0.25:
            name = name.upper()
        if rng.random() < 0.15:
            name = f"{name} {rng.randint(2, 9)}"
        location = rng.choice(T.LOCATIONS)
        language = rng.choice(T.CHAT_LANGUAGES)
        labels = [T.label(entry) for entry in sorted(rng.sample(T.CLAN_LABELS, 3))]
        created = tl.utc(2014, 6, 1).timestamp() + rng.random() * 7 * 365 * DAY_S
        activity = rng.uniform(0.8, 1.15)
        strength = rng.random()
        return ClanStatic(
            tag=tag,
            number=number,
            name=name,
            description=rng.choice(T.CLAN_DESCRIPTIONS),
            type=weighted(rng, {"inviteOnly": 5, "open": 4, "closed": 1}),
            location={
                "id": location[0],
                "name": location[1],
                "isCountry": location[2],
                **({"countryCode": location[3]} if location[3] else {}),
            },
            chat_language={"id": language[0], "name": language[1], "languageCode": language[2]},
            labels=labels,
            badge=icon_code(self.seed, "badge", number),
            family_friendly=rng.random() < 0.3,
            war_frequency=weighted(
                rng,
                {"always": 4, "moreThanOncePerWeek": 3, "oncePerWeek": 2, "lessThanOncePerWeek": 1},
            ),
            required_trophies=rng.choice([0, 400, 800, 1000, 1200, 1500, 2000]),
            required_bb_trophies=rng.choice([0, 0, 500, 1000]),
            required_th=rng.choice([1, 6, 8, 9, 10, 11, 12]),
            created=created,
            level_base=rng.randint(1, 5),
            level_period_days=rng.uniform(160, 340),
            war_period_s=rng.uniform(60, 78) * HOUR_S,
            war_phase_s=rng.uniform(0, 78) * HOUR_S,
            war_skip=rng.uniform(0.05, 0.25),
            strength=strength,
            war_league_base=4 + int(strength * 11),
            capital_period_days=rng.uniform(35, 90),
            war_record_rate=(0.45 + 0.3 * strength, 0.03),
            activity=activity,
            pool_tags=[None] * POOL_SIZE,
        )

    # -- membership ----------------------------------------------------------------------------
    def _cycles(self, cs: ClanStatic) -> list[Cycle]:
        if cs.cycles is None:
            rng = random.Random(h64(self.seed, "cycles", cs.number))
            cycles = []
            for index in range(POOL_SIZE):
                if index < CORE_SIZE:
                    length = rng.uniform(150, 420)
                    low, high = 0.86, 1.0
                else:
                    length = rng.uniform(20, 120)
                    low, high = 0.1 * cs.activity, min(0.8, 0.66 * cs.activity)
                cycles.append((length, rng.uniform(0, length), low, high, rng.random() < 0.35))
            cs.cycles = cycles
        return cs.cycles

    def _stint(self, cs: ClanStatic, index: int, ts: float) -> float | None:
        """Start of the current stint of a pool player in the clan (seconds), or None if out."""
        if index == 0:
            return cs.created
        length, phase, low, high, _ = self._cycles(cs)[index]
        days = (ts - EPOCH) / DAY_S + phase
        cycle = math.floor(days / length)
        pos = days / length - cycle
        h = mix64(self.seed, cs.number, index, cycle)
        share = low + (high - low) * ((h & 0xFFFFFFFF) / 4294967296.0)
        start = (1.0 - share) * ((h >> 32) / 4294967296.0)
        if start <= pos < start + share:
            return EPOCH + ((cycle + start) * length - phase) * DAY_S
        return None

    def roster(self, clan_tag: str, t: datetime | float) -> list[int]:
        """Pool indices of the members at ``t`` (the leader first), 30..50 of them."""
        ts = t if isinstance(t, float) else to_ts(t)
        return self._rosters.get((clan_tag, ts), lambda: self._make_roster(clan_tag, ts))

    def _make_roster(self, clan_tag: str, ts: float) -> list[int]:
        cs = self.clan_static(clan_tag)
        inside = [i for i in range(POOL_SIZE) if self._stint(cs, i, ts) is not None]
        if len(inside) > MAX_MEMBERS:
            inside = inside[:MAX_MEMBERS]
        elif len(inside) < MIN_MEMBERS:
            outside = [i for i in range(POOL_SIZE) if i not in inside]
            inside = sorted(inside + outside[: MIN_MEMBERS - len(inside)])
        return inside

    def find_clan(self, members: int, t: datetime, *, tries: int = 5000) -> str:
        """A clan tag whose roster has exactly ``members`` members at ``t`` (the closest
        size found otherwise); deterministic for a seed. Full 50-member rosters are rare
        (about 1 clan in 150), so benchmarks that need one should ask here."""
        best, best_gap = "", MAX_MEMBERS
        for i in range(tries):
            tag = random_tag(self.seed, "find-clan", i)
            gap = abs(len(self.roster(tag, t)) - members)
            if gap < best_gap:
                best, best_gap = tag, gap
                if gap == 0:
                    break
        return best

    def roster_tags(self, clan_tag: str, t: datetime | float) -> list[str]:
        return [self.player_tag(clan_tag, i) for i in self.roster(clan_tag, t)]

    def clan_of_player(self, tag: str, ts: float) -> tuple[str, int] | None:
        ref = self.player_ref(tag)
        if ref is None:
            return None
        clan_tag, index = ref
        return ref if index in self.roster(clan_tag, ts) else None

    def role(self, cs: ClanStatic, index: int, ts: float) -> str:
        if index == 0:
            return "leader"
        if index <= 3:
            return "coLeader"
        if index <= 10:
            return "admin"
        stint = self._stint(cs, index, ts)
        if self._cycles(cs)[index][4] and stint is not None and ts - stint > 21 * DAY_S:
            return "admin"
        return "member"

    # -- clan quantities -------------------------------------------------------------------------
    def clan_level(self, cs: ClanStatic, ts: float) -> int:
        return min(35, cs.level_base + counter(1 / cs.level_period_days, cs.created, ts))

    def clan_capital(self, cs: ClanStatic, ts: float) -> Json:
        if ts < CAPITAL_FROM:
            return {}
        since = max(cs.created, CAPITAL_FROM)
        hall = min(10, 1 + counter(1 / cs.capital_period_days, since, ts))
        districts = []
        for (district_id, name), unlock in zip(
            T.DISTRICTS, T.DISTRICT_UNLOCK_CAPITAL_HALL, strict=True
        ):
            if hall < unlock:
                continue
            if district_id == 70000000:
                level = hall
            else:
                level = max(1, min(5, hall - unlock + 1 - int(unit(self.seed, cs.tag, name) * 2)))
            districts.append({"id": district_id, "name": name, "districtHallLevel": level})
        return {"capitalHallLevel": hall, "districts": districts}

    def war_league_index(self, cs: ClanStatic, ts: float) -> int:
        t = to_dt(ts)
        drift = int(h64(self.seed, "cwl-league", cs.number, t.year, (t.month - 1) // 3) % 5) - 2
        return max(1, min(len(T.WAR_LEAGUES) - 1, cs.war_league_base + drift))
