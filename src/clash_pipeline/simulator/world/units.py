"""A player's army at a time: troops, spells, heroes and hero equipment with their levels.

Unit levels follow the player's continuous "lab progress" (see
:meth:`PlayerStatic.lab_progress`), so they never decrease, capped by the town hall
(hero caps: DOMAIN.md's table). Each player's levels sit a little off the pace, one
draw per unit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from clash_pipeline.simulator import tables as T
from clash_pipeline.simulator import timeline as tl
from clash_pipeline.simulator.codec import h64
from clash_pipeline.simulator.world.common import DAY_S, Json, counter, to_dt
from clash_pipeline.simulator.world.players import PlayerDraws, PlayerStatic


@dataclass(frozen=True, slots=True)
class UnitInfo:
    unit: T.Unit
    index: int  # position in T.ALL_UNITS (the player's jitter for this unit)
    caps: tuple[int, ...]  # cap per hall level 0..20
    builder_base: bool
    fixed_max: bool  # maxLevel is the unit's own maximum, not the cap at the top hall
    released: float
    village: str


def _unit_infos(units: tuple[T.Unit, ...]) -> tuple[UnitInfo, ...]:
    return tuple(
        UnitInfo(
            unit=u,
            index=next(i for i, other in enumerate(T.ALL_UNITS) if other is u),
            caps=tuple(u.cap(hall) for hall in range(21)),
            builder_base=u.village == "builderBase",
            fixed_max=u.kind in ("equipment", "super"),
            released=u.released.timestamp() if u.released else -math.inf,
            village=u.village,
        )
        for u in units
    )


TROOP_INFO = _unit_infos(T.TROOPS)
SPELL_INFO = _unit_infos(T.SPELLS)
HERO_INFO = _unit_infos(T.HEROES)
EQUIPMENT_INFO = _unit_infos(T.EQUIPMENT)


@dataclass(slots=True)
class Army:
    troops: list[Json]
    heroes: list[Json]
    equipment: list[Json]
    spells: list[Json]


class UnitLevels:
    """The level of each unit of one player at one time, and its API entry."""

    def __init__(self, ps: PlayerStatic, draws: PlayerDraws, ts: float) -> None:
        self.ps = ps
        self.draws = draws
        self.ts = ts
        self.t = to_dt(ts)
        self.th, self.x = ps.lab_progress(ts)
        self.bh, self.bx = ps.builder_hall_at(ts)
        self.top_th = tl.max_town_hall(self.t)
        self.top_bh = tl.max_builder_hall(self.t)

    def level(self, info: UnitInfo) -> int:
        """0 when the player does not have the unit (yet)."""
        if info.released > self.ts:
            return 0
        caps = info.caps
        hall, progress = (self.bh, self.bx) if info.builder_base else (self.th, self.x)
        cap = caps[hall]
        if cap == 0:
            return 0
        y = progress + self.draws.jitters[info.index]
        if y < 1:
            return 1
        low = math.floor(y)
        below = caps[low] if low >= 1 else 0
        value = int(below + (caps[low + 1] - below) * (y - low))
        recent_cap = None if info.builder_base else self._recent_unlock_cap(info)
        if recent_cap is not None:
            value = min(value, recent_cap)
        return max(1, min(cap, value))

    def _recent_unlock_cap(self, info: UnitInfo) -> int | None:
        """A unit unlocked (or released) recently starts low and gains ~1 level / 4 days;
        equipment is upgraded at a pace of its own (some pieces never)."""
        unlocked = max(self.ps.reached_at(info.unit.unlock), info.released)
        pace = 0.25
        if info.unit.kind == "equipment":
            draw = self.draws.paces[info.index]
            pace = 0.0 if draw < 0.25 else 0.02 + 0.2 * draw * self.ps.activity
        if unlocked > -math.inf:
            return 1 + counter(pace, unlocked, self.ts)
        return None

    def entry(self, info: UnitInfo, level: int) -> Json:
        u = info.unit
        if info.fixed_max:
            max_level = u.max_level
        else:
            max_level = max(info.caps[self.top_bh if info.builder_base else self.top_th], level)
        return {"name": u.name, "level": level, "maxLevel": max_level, "village": info.village}


def boosted_super_troops(seed: int, ps: PlayerStatic, ts: float) -> set[str]:
    """The super troops a player has boosted: a new draw every three days."""
    window = math.floor(ts / (3 * DAY_S))
    h = h64(seed, "boost", ps.tag, window)
    names = list(T.SUPER_TROOP_BASE)
    count = h % 3 if ps.activity > 0.6 else 0
    return {names[(h >> (8 * (i + 1))) % len(names)] for i in range(count)}


def army(seed: int, ps: PlayerStatic, draws: PlayerDraws, ts: float) -> Army:
    levels = UnitLevels(ps, draws, ts)
    boosted = boosted_super_troops(seed, ps, ts) if levels.th >= 11 else set()
    troops = _troops(levels, boosted)
    spells = []
    for info in SPELL_INFO:
        level = levels.level(info)
        if level:
            spells.append(levels.entry(info, level))
    equipment, by_hero = _equipment(levels)
    heroes = _heroes(levels, by_hero, seed)
    return Army(troops=troops, heroes=heroes, equipment=equipment, spells=spells)


def _troops(levels: UnitLevels, boosted: set[str]) -> list[Json]:
    """Troops in the API's order; a super troop shows once its base troop is owned."""
    troops: list[Json] = []
    owned: set[str] = set()
    for info in TROOP_INFO:
        name = info.unit.name
        if info.unit.kind == "super":
            if info.released > levels.ts or T.SUPER_TROOP_BASE[name] not in owned:
                continue
            item = levels.entry(info, 1)
            if name in boosted:
                item["superTroopIsActive"] = True
            troops.append(item)
            continue
        level = levels.level(info)
        if level:
            if not info.builder_base:
                owned.add(name)
            troops.append(levels.entry(info, level))
    return troops


def _equipment(levels: UnitLevels) -> tuple[list[Json], dict[str, list[Json]]]:
    """(every piece the player owns, the pieces by hero)."""
    equipment: list[Json] = []
    by_hero: dict[str, list[Json]] = {}
    if levels.t < tl.HERO_EQUIPMENT_FROM:
        return equipment, by_hero
    for info in EQUIPMENT_INFO:
        hero = info.unit.hero or ""
        if levels.th < T.HEROES_BY_NAME[hero].unlock:
            continue
        level = levels.level(info)
        if level:
            item = levels.entry(info, level)
            equipment.append(item)
            by_hero.setdefault(hero, []).append(item)
    return equipment, by_hero


def _heroes(levels: UnitLevels, by_hero: dict[str, list[Json]], seed: int) -> list[Json]:
    """Heroes, each wearing its two best pieces of equipment (ties broken by a hash)."""
    heroes = []
    tag = levels.ps.tag
    for info in HERO_INFO:
        u = info.unit
        level = levels.level(info)
        if not level:
            continue
        item: Json = {
            "name": u.name,
            "level": level,
            "maxLevel": levels.entry(info, level)["maxLevel"],
        }
        if u.kind == "hero" and levels.t >= tl.HERO_EQUIPMENT_FROM:

            def best_first(e: Json) -> tuple[int, int]:
                return (-e["level"], h64(seed, "equip", tag, e["name"]))

            ranked = sorted(by_hero.get(u.name, []), key=best_first)
            item["equipment"] = [dict(e) for e in ranked[:2]]
        item["village"] = u.village
        heroes.append(item)
    return heroes
