"""One war, regular or league: its two sides, its attacks and how it looks at a time.

Attacks are generated once per war and appear as their time passes; the totals after
the end are computed once.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime

from clash_pipeline.simulator import timeline as tl
from clash_pipeline.simulator.codec import h64, mix64
from clash_pipeline.simulator.world.clans import Clans
from clash_pipeline.simulator.world.common import DAY_S, Json, api_time, badge, to_dt
from clash_pipeline.simulator.world.players import Players

#: (tag, name, town hall) of a war member.
WarMember = tuple[str, str, int]


@dataclass(slots=True)
class WarSide:
    tag: str
    name: str
    badge: str
    level: int
    members: list[WarMember]  # by map position


@dataclass(slots=True)
class Attack:
    side: int
    attacker: int  # map position - 1 on its side
    defender: int  # map position - 1 on the other side
    stars: int
    destruction: int
    duration: int
    at: float
    order: int = 0


@dataclass(slots=True)
class War:
    prep: float
    start: float
    end: float
    team_size: int
    attacks_per_member: int
    modifier: str
    sides: list[WarSide]
    attacks: list[Attack]
    cwl: bool
    _final: list[Json] | None = None

    def state(self, ts: float) -> str:
        if ts < self.start:
            return "preparation"
        if ts < self.end:
            return "inWar"
        return "warEnded"

    def visible(self, ts: float) -> list[Attack]:
        return [a for a in self.attacks if a.at <= ts]

    def totals(self, ts: float) -> list[Json]:
        """Per side: attacks used, stars (best per defender), destruction (mean of bests)."""
        if ts >= self.end:
            if self._final is None:
                self._final = self._totals(self.end)
            return self._final
        return self._totals(ts)

    def _totals(self, ts: float) -> list[Json]:
        out = []
        seen = self.visible(ts)
        for side in (0, 1):
            own = [a for a in seen if a.side == side]
            best: dict[int, tuple[int, int]] = {}
            for a in own:
                best[a.defender] = max(best.get(a.defender, (0, 0)), (a.stars, a.destruction))
            out.append(
                {
                    "attacks": len(own),
                    "stars": sum(s for s, _ in best.values()),
                    "destructionPercentage": sum(d for _, d in best.values()) / self.team_size,
                }
            )
        return out

    def result(self, side: int) -> str:
        totals = self.totals(self.end)
        mine, theirs = totals[side], totals[1 - side]
        a = (mine["stars"], mine["destructionPercentage"])
        b = (theirs["stars"], theirs["destructionPercentage"])
        return "win" if a > b else "lose" if a < b else "tie"

    def _attack_json(self, a: Attack, with_duration: bool) -> Json:
        out: Json = {
            "attackerTag": self.sides[a.side].members[a.attacker][0],
            "defenderTag": self.sides[1 - a.side].members[a.defender][0],
            "stars": a.stars,
            "destructionPercentage": a.destruction,
            "order": a.order,
        }
        if with_duration:
            out["duration"] = a.duration
        return out

    def render(self, ts: float, t: datetime) -> Json:
        """The ``/currentwar`` (or league war) body at ``ts``."""
        state = self.state(ts)
        seen = self.visible(ts) if state != "preparation" else []
        totals = self.totals(ts) if state != "preparation" else None
        modern = to_dt(self.prep) >= tl.ATTACKS_PER_MEMBER_FROM
        body: Json = {"state": state, "teamSize": self.team_size}
        if modern and not self.cwl:
            body["attacksPerMember"] = self.attacks_per_member
        if not self.cwl and t >= tl.BATTLE_MODIFIER_FROM:
            body["battleModifier"] = self.modifier
        body["preparationStartTime"] = api_time(self.prep)
        body["startTime"] = api_time(self.start)
        body["endTime"] = api_time(self.end)
        for side, key in ((0, "clan"), (1, "opponent")):
            body[key] = self._side_block(side, totals[side] if totals else None, seen, modern)
        if self.cwl:
            body["warStartTime"] = api_time(self.start)
        return body

    def _side_block(self, side: int, totals: Json | None, seen: list[Attack], modern: bool) -> Json:
        ws = self.sides[side]
        block: Json = {
            "tag": ws.tag,
            "name": ws.name,
            "badgeUrls": badge(ws.badge),
            "clanLevel": ws.level,
            "attacks": totals["attacks"] if totals else 0,
            "stars": totals["stars"] if totals else 0,
            "destructionPercentage": totals["destructionPercentage"] if totals else 0,
        }
        members = [self._member(side, pos, seen, modern) for pos in range(len(ws.members))]
        # The API lists war members in no particular order.
        members.sort(key=lambda m: h64(0, "order", m["tag"]))
        block["members"] = members
        return block

    def _member(self, side: int, pos: int, seen: list[Attack], modern: bool) -> Json:
        tag, name, th = self.sides[side].members[pos]
        member: Json = {"tag": tag, "name": name, "townhallLevel": th, "mapPosition": pos + 1}
        mine = [a for a in seen if a.side == side and a.attacker == pos]
        if mine:
            member["attacks"] = [self._attack_json(a, modern) for a in mine]
        against = [a for a in seen if a.side != side and a.defender == pos]
        member["opponentAttacks"] = len(against)
        if against:
            best = max(against, key=lambda a: (a.stars, a.destruction, -a.order))
            member["bestOpponentAttack"] = self._attack_json(best, modern)
        return member

    def log_item(self, t: datetime) -> Json:
        """The war's entry in ``/warlog``."""
        totals = self.totals(self.end)
        item: Json = {
            "result": self.result(0),
            "endTime": api_time(self.end),
            "teamSize": self.team_size,
        }
        if to_dt(self.prep) >= tl.ATTACKS_PER_MEMBER_FROM:
            item["attacksPerMember"] = self.attacks_per_member
        if t >= tl.BATTLE_MODIFIER_FROM:
            item["battleModifier"] = self.modifier
        for side, key in ((0, "clan"), (1, "opponent")):
            ws = self.sides[side]
            block: Json = {
                "tag": ws.tag,
                "name": ws.name,
                "badgeUrls": badge(ws.badge),
                "clanLevel": ws.level,
            }
            if side == 0:
                block["attacks"] = totals[0]["attacks"]
            block["stars"] = totals[side]["stars"]
            block["destructionPercentage"] = round(totals[side]["destructionPercentage"], 5)
            if side == 0:
                won = self.result(0)
                block["expEarned"] = {"win": 4, "tie": 2, "lose": 1}[won] * self.team_size * 3
            item[key] = block
        return item


def war_side(
    clans: Clans, players: Players, clan_tag: str, ts: float, size: int, salt: int
) -> WarSide:
    cs = clans.clan_static(clan_tag)
    return WarSide(
        tag=cs.tag,
        name=cs.name,
        badge=cs.badge,
        level=clans.clan_level(cs, ts),
        members=_lineup(clans, players, clan_tag, ts, size, salt),
    )


def _lineup(
    clans: Clans, players: Players, clan_tag: str, ts: float, size: int, salt: int
) -> list[WarMember]:
    """``size`` members picked for a war, by map position.

    Leaders pick a hash-chosen subset of the roster, mostly the higher town halls;
    map positions go by town hall.
    """
    cs = clans.clan_static(clan_tag)
    chosen = list(clans.roster(clan_tag, ts))
    rng = random.Random(mix64(clans.seed, 11, cs.number, salt))
    rng.shuffle(chosen)
    scored = []
    for index in chosen[: size + size // 3]:
        tag = clans.player_tag(clan_tag, index)
        th = players.town_hall(tag, ts)
        scored.append((th + rng.random(), tag, th))
    scored.sort(reverse=True)
    return [(tag, players.display_name(tag, ts), th) for _, tag, th in scored[:size]]


def generate_attacks(
    rng: random.Random, sides: list[WarSide], per_member: int, start: float, *, hard: bool
) -> list[Attack]:
    """Every attack of a war, in time order (numbered by ``order``)."""
    attacks: list[Attack] = []
    for side in (0, 1):
        mine, theirs = sides[side].members, sides[1 - side].members
        for pos, (_, _, th) in enumerate(mine):
            if rng.random() < 0.82:
                count = per_member
            else:
                count = rng.randint(0, per_member - 1) if per_member > 1 else 0
            attacks.extend(_member_attacks(rng, side, pos, th, theirs, count, start, hard))
    attacks.sort(key=lambda a: a.at)
    for order, a in enumerate(attacks, start=1):
        a.order = order
    return attacks


def _member_attacks(
    rng: random.Random,
    side: int,
    pos: int,
    th: int,
    theirs: list[WarMember],
    count: int,
    start: float,
    hard: bool,
) -> list[Attack]:
    """A member's attacks: near their own map position, each on a different base."""
    size = len(theirs)
    used: set[int] = set()
    skill = rng.gauss(0, 0.6)
    attacks = []
    for n in range(count):
        spread = 2 if n == 0 else 5
        target = max(0, min(size - 1, pos + rng.randint(-spread, spread // 2)))
        while target in used and len(used) < size:
            target = (target + 1) % size
        used.add(target)
        diff = th - theirs[target][2]
        p3 = 1 / (1 + math.exp(-(0.2 + 1.3 * diff + skill - (0.8 if hard else 0))))
        stars, destruction = _outcome(rng, p3)
        duration = rng.randint(70, 180) if stars == 3 else rng.randint(120, 180)
        at = start + rng.uniform(300, DAY_S - 300)
        attacks.append(Attack(side, pos, target, stars, destruction, duration, at))
    return attacks


def _outcome(rng: random.Random, p3: float) -> tuple[int, int]:
    """(stars, destruction) of an attack that gets three stars with probability ``p3``."""
    roll = rng.random()
    if roll < p3:
        return 3, 100
    if roll < p3 + (1 - p3) * 0.65:
        return 2, rng.randint(50, 99)
    if roll < p3 + (1 - p3) * 0.9:
        return 1, rng.randint(30, 90)
    return 0, rng.randint(5, 49)
