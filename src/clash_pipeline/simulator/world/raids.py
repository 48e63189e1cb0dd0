"""Capital raids: every Friday 07:00 → Monday 07:00 from 2022-05.

A raid weekend draws who attacks and when, once; the attacks are then played in
order against successive clan capitals (and other clans' attacks against ours), so
the season at any time shows the attacks made so far.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from clash_pipeline.simulator import timeline as tl
from clash_pipeline.simulator.codec import h64, random_tag, tag_number
from clash_pipeline.simulator.world.clans import POOL_SIZE, Clans, ClanStatic
from clash_pipeline.simulator.world.common import (
    CAPITAL_FROM,
    DAY_S,
    HOUR_S,
    WAR_MEMO_SIZE,
    Json,
    Memo,
    api_time,
    badge,
    to_ts,
)
from clash_pipeline.simulator.world.players import Players

RAIDS_DEFAULT_COUNT = 20
_RAID_MEMBERS_KEPT_S = 7 * DAY_S  # older raid seasons come without "members" (as the real API)
_CAPITAL_PEAK = 70000000
#: Capital gold in a district by its hall level.
_DISTRICT_LOOT = {
    1: 1600,
    2: 3200,
    3: 4400,
    4: 5900,
    5: 7300,
    6: 8500,
    7: 9700,
    8: 10800,
    9: 11900,
    10: 13000,
}
_TINY_CAPITAL = {
    "capitalHallLevel": 1,
    "districts": [{"id": _CAPITAL_PEAK, "name": "Capital Peak", "districtHallLevel": 1}],
}

#: (time, player tag, player name) of one raid attack.
RaidHit = tuple[float, str, str]


@dataclass(slots=True)
class RaidTarget:
    number: int
    capital: Json
    header: Json


def raid_target(clans: Clans, tag: str, ts: float) -> RaidTarget:
    """A clan capital as a raid target, with the log header naming ``tag``'s clan."""
    cs = clans.clan_static(tag)
    header = {
        "tag": cs.tag,
        "name": cs.name,
        "level": clans.clan_level(cs, ts),
        "badgeUrls": badge(cs.badge),
    }
    return RaidTarget(cs.number, clans.clan_capital(cs, ts) or _TINY_CAPITAL, header)


def _only(target: RaidTarget) -> Callable[[int], RaidTarget | None]:
    """A raid order of one capital (for another clan's attacks on ours)."""

    def target_at(j: int) -> RaidTarget | None:
        return target if j == 0 else None

    return target_at


@dataclass(slots=True)
class Raid:
    clans: Clans
    clan: ClanStatic
    index: int  # raid weekend index (timeline.raid_weekend_index)
    start: float
    end: float
    participants: list[tuple[str, str, int, int]]  # (tag, name, attacks, bonus)
    timeline: list[RaidHit]
    defense: list[tuple[str, list[RaidHit]]]  # (attacking clan, its hits on our capital)
    seed: int
    _ended: Json | None = None

    def render(self, ts: float) -> Json:
        """The season as seen at ``ts`` (attacks so far; members only while recent)."""
        if ts >= self.end:
            if self._ended is None:
                self._ended = self._build(self.end)
            item = dict(self._ended)
        else:
            item = self._build(ts)
        if ts >= self.end + _RAID_MEMBERS_KEPT_S:
            item.pop("members", None)
        return item

    def _defender(self, j: int) -> RaidTarget:
        """The j-th clan our members raid (one after the other)."""
        tag = random_tag(self.clans.seed, "raid-def", self.clan.number, self.index, j)
        return raid_target(self.clans, tag, self.start)

    def _defense_logs(self, ts: float) -> list[Json]:
        own = raid_target(self.clans, self.clan.tag, self.start)
        logs = []
        for attacker_tag, hits in self.defense:
            seen = [(player, name) for at, player, name in hits if at <= ts]
            if not seen:
                continue
            header = raid_target(self.clans, attacker_tag, self.start).header
            target = RaidTarget(own.number, own.capital, header)
            logs.extend(
                simulate_raids(
                    self.seed ^ tag_number(attacker_tag),
                    seen,
                    _only(target),
                    "attacker",
                    {},
                )
            )
        return logs

    def _build(self, ts: float) -> Json:
        ongoing = ts < self.end
        attacks = [a for a in self.timeline if a[0] <= ts]
        looted: dict[str, int] = {}
        raids = simulate_raids(
            self.seed, [(tag, name) for _, tag, name in attacks], self._defender, "defender", looted
        )
        defense_logs = self._defense_logs(ts)
        loot = sum(looted.values())
        completed = sum(1 for r in raids if r["districtsDestroyed"] == r["districtCount"])
        spared = sum(d["districtCount"] - d["districtsDestroyed"] for d in defense_logs)
        item: Json = {
            "state": "ongoing" if ongoing else "ended",
            "startTime": api_time(self.start),
            "endTime": api_time(self.end),
            "capitalTotalLoot": loot,
            "raidsCompleted": completed,
            "totalAttacks": len(attacks),
            "enemyDistrictsDestroyed": sum(r["districtsDestroyed"] for r in raids),
            "offensiveReward": 0 if ongoing else loot // 950 + 12 * completed,
            "defensiveReward": 0 if ongoing else 120 + 15 * spared + self.seed % 80,
        }
        item["members"] = self._members(attacks, looted)
        item["attackLog"] = raids
        item["defenseLog"] = defense_logs
        return item

    def _members(self, attacks: list[RaidHit], looted: dict[str, int]) -> list[Json]:
        counts: dict[str, int] = {}
        for _, tag, _ in attacks:
            counts[tag] = counts.get(tag, 0) + 1
        return [
            {
                "tag": tag,
                "name": name,
                "attacks": counts[tag],
                "attackLimit": 5,
                "bonusAttackLimit": bonus,
                "capitalResourcesLooted": looted.get(tag, 0),
            }
            for tag, name, _, bonus in self.participants
            if tag in counts
        ]


class Raids:
    """Each clan's raid weekends, drawn once per weekend."""

    def __init__(self, seed: int, clans: Clans, players: Players) -> None:
        self.seed = seed
        self._clans = clans
        self._players = players
        self._raids: Memo[tuple[str, int], Raid] = Memo(WAR_MEMO_SIZE)

    def capital_raid_seasons(
        self, clan_tag: str, t: datetime, count: int = RAIDS_DEFAULT_COUNT
    ) -> list[Json]:
        """Items of ``GET /clans/{tag}/capitalraidseasons`` (newest first), at most ``count``."""
        ts = to_ts(t)
        cs = self._clans.clan_static(clan_tag)
        items: list[Json] = []
        n = tl.raid_weekend_index(t)
        while len(items) < count:
            start = tl.raid_weekend_start(n).timestamp()
            if start < max(CAPITAL_FROM, cs.created):
                break
            items.append(self._raid(clan_tag, n).render(ts))
            n -= 1
        return items

    def _raid(self, clan_tag: str, n: int) -> Raid:
        return self._raids.get((clan_tag, n), lambda: self._make_raid(clan_tag, n))

    def _make_raid(self, clan_tag: str, n: int) -> Raid:
        cs = self._clans.clan_static(clan_tag)
        start = tl.raid_weekend_start(n).timestamp()
        end = start + tl.RAID_LENGTH.total_seconds()
        rng = random.Random(h64(self.seed, "raid", cs.number, n))
        participants = self._participants(rng, cs, start)
        # Our attackers' attacks, at random times of the weekend.
        timeline = []
        for tag, name, attacks, _ in participants:
            for _ in range(attacks):
                timeline.append((start + rng.random() * (end - start - HOUR_S), tag, name))
        timeline.sort()
        return Raid(
            clans=self._clans,
            clan=cs,
            index=n,
            start=start,
            end=end,
            participants=participants,
            timeline=timeline,
            defense=self._defense(rng, cs, n, start, end),
            seed=h64(self.seed, "raid-sim", cs.number, n),
        )

    def _participants(
        self, rng: random.Random, cs: ClanStatic, start: float
    ) -> list[tuple[str, str, int, int]]:
        """Our attackers: who attacks and how often (tag, name, attacks, bonus)."""
        participants = []
        for index in self._clans.roster(cs.tag, start):
            tag = self._clans.player_tag(cs.tag, index)
            if rng.random() > 0.3 + 0.3 * cs.activity:
                continue
            bonus = rng.random() < 0.4
            attacks = 6 if bonus else (5 if rng.random() < 0.7 else rng.randint(1, 4))
            participants.append((tag, self._players.display_name(tag, start), attacks, int(bonus)))
        return participants

    def _defense(
        self, rng: random.Random, cs: ClanStatic, n: int, start: float, end: float
    ) -> list[tuple[str, list[RaidHit]]]:
        """Other clans that raid our capital, each with its hits."""
        defense = []
        for j in range(rng.randint(3, 6)):
            attacker = random_tag(self.seed, "raid-att", cs.number, n, j)
            hits = []
            for _ in range(rng.randint(18, 34)):
                player = self._clans.player_tag(attacker, rng.randrange(POOL_SIZE))
                at = start + rng.random() * (end - start - HOUR_S)
                hits.append((at, player, self._players.player_name(player)))
            hits.sort()
            defense.append((attacker, hits))
        return defense


@dataclass(slots=True)
class _District:
    """A district of a capital being raided: its state after the attacks so far."""

    id: int
    name: str
    hall_level: int
    one_star_at: int  # destruction that gives one star
    two_stars_at: int
    loot: int  # capital gold when fully destroyed
    destruction: int = 0
    stars: int = 0
    attack_count: int = 0
    looted: int = 0
    attacks: list[Json] = field(default_factory=list)  # newest first

    def hit(self, tag: str, name: str, step: int) -> int:
        """Raise the destruction by ``step``; the capital gold this attack looted."""
        before = self.destruction
        after = min(100, before + step)
        stars = sum(after >= bound for bound in (self.one_star_at, self.two_stars_at, 100))
        gain = self.loot * after // 100 - self.loot * before // 100
        self.looted += gain
        self.destruction = after
        self.stars = stars
        self.attack_count += 1
        self.attacks.insert(
            0,
            {"attacker": {"tag": tag, "name": name}, "destructionPercent": after, "stars": stars},
        )
        return gain

    def to_json(self) -> Json:
        item: Json = {
            "id": self.id,
            "name": self.name,
            "districtHallLevel": self.hall_level,
            "destructionPercent": self.destruction,
            "stars": self.stars,
            "attackCount": self.attack_count,
            "totalLooted": self.looted,
        }
        if self.attacks:
            item["attacks"] = self.attacks
        return item


def _districts(seed: int, target: RaidTarget, target_index: int) -> list[_District]:
    """The target's districts in raid order (Capital Peak last)."""
    districts = sorted(
        target.capital["districts"], key=lambda d: (d["id"] == _CAPITAL_PEAK, d["id"])
    )
    out = []
    for d in districts:
        h = h64(seed, "district", target.number, target_index, d["id"])
        out.append(
            _District(
                id=d["id"],
                name=d["name"],
                hall_level=d["districtHallLevel"],
                one_star_at=35 + h % 20,
                two_stars_at=55 + (h >> 8) % 25,
                loot=_DISTRICT_LOOT[min(10, d["districtHallLevel"])]
                + (h >> 16) % 900
                + (2000 if d["id"] == _CAPITAL_PEAK else 0),
            )
        )
    return out


def simulate_raids(
    seed: int,
    attackers: list[tuple[str, str]],
    target_at: Callable[[int], RaidTarget | None],
    header_key: str,
    looted: dict[str, int],
) -> list[Json]:
    """Play attacks in order against successive clan capitals; return the raid log entries.

    ``target_at(j)`` is the j-th capital raided (None: no more; left-over attacks drop).

    ``looted`` accumulates capital gold per attacker tag. Districts fall in order
    (Capital Peak last); each attack's ``destructionPercent`` is the district's
    destruction after it, and attacks are listed newest first, as in the API.
    """
    logs: list[Json] = []
    pending = list(attackers)
    target_index = 0
    while pending and (target := target_at(target_index)) is not None:
        districts = _districts(seed, target, target_index)
        rng = random.Random(h64(seed, "raid-rng", target.number, target_index))
        current = 0
        while pending and current < len(districts):
            tag, name = pending.pop(0)
            d = districts[current]
            step = max(8, int(rng.uniform(25, 80) * (1.3 - 0.06 * d.hall_level)))
            looted[tag] = looted.get(tag, 0) + d.hit(tag, name, step)
            if d.destruction >= 100:
                current += 1
        logs.append(
            {
                header_key: target.header,
                "attackCount": sum(d.attack_count for d in districts),
                "districtCount": len(districts),
                "districtsDestroyed": sum(1 for d in districts if d.destruction >= 100),
                "districts": [d.to_json() for d in sorted(districts, key=lambda d: d.id)],
            }
        )
        target_index += 1
    return logs
