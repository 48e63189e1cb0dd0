"""Derive ``seeds/unit_caps.csv``: the maximum level of every unit at every town hall level.

Usage::

    uv run python scripts/derive_unit_caps.py           # rewrite seeds/unit_caps.csv
    uv run python scripts/derive_unit_caps.py --check   # exit 1 if the committed CSV is stale

Source and licence
------------------
The levels come from ``coc/static/static_data.json`` shipped in the PyPI package ``coc.py`` 4.x
(https://github.com/mathsman5133/coc.py, MIT licence, Copyright (c) 2019-present mathsman5133).
coc.py builds that file from Supercell's game CSVs (``coc/static/update_static.py``); it is a
dev dependency of this project, so the script reads the installed copy and never downloads
anything. Regenerate the seed whenever coc.py is upgraded; ``--check`` and
``tests/test_seeds.py`` fail until you do.

What the JSON holds
-------------------
``heroes``, ``troops``, ``spells``, ``pets`` and ``equipment`` are lists of units. Each unit has
``name`` (the name the API uses in ``/players``), ``village`` (``home``/``builderBase``; absent on
spells, pets and equipment, which are all home village), ``production_building`` +
``production_building_level`` (the building level that unlocks the unit; for heroes the Hero
Hall), and ``levels[]`` with ``level`` and ``required_townhall``. coc.py fills
``required_townhall`` from the building that gates the upgrade: the Laboratory level
(``required_lab_level``) for troops and spells, the Star Laboratory for builder-base troops, the
Pet House for pets, the Blacksmith for equipment, the Hero Hall / town hall for heroes (for the
builder base, "town hall" means the Builder Hall). ``buildings[]`` gives, for each building
level, the town hall it needs, which turns ``production_building_level`` into an unlock town hall.
Troops carry ``super_troop`` (super troops) and ``is_seasonal`` (event troops); spells carry
``is_seasonal`` (event spells).

The rule (DOMAIN.md, "Rush %")
------------------------------
The cap of a unit at town hall T is its highest level whose required town hall is <= T, and 0
when no level qualifies (the unit is not available yet). Every (unit, T) pair has a row, for
T = 1..18 (home village, the number of Town Hall levels in the data) and 1..10 (builder base,
Builder Hall levels), so a join on "the cap at TH-1" always finds a row from TH 2 upwards.

Heroes: the raw rule reproduces DOMAIN.md's hero cap table (TH7..18 x King, Queen, Warden,
Champion, Minion Prince) cell for cell; the heroes' ``required_townhall`` already equals the town
hall of the Hero Hall level they need (``required_hero_tavern_level``), so nothing is corrected.

Where the raw rule is wrong, and the correction
-----------------------------------------------
coc.py converts the Laboratory level of *every* level, including level 1, to a town hall, and
Supercell's CSVs give level 1 of every lab unit "Laboratory 1" (town hall 3) whether it is the
Barbarian or the Electro Titan. Taken literally, the raw rule therefore makes every home troop
and spell available at level 1 from town hall 3 (Electro Titan at TH3, Lightning Spell before the
Spell Factory exists) and hides the Barbarian and Archer below TH3. Level 1 is never researched:
it comes with unlocking the unit in its production building. So each level's effective
requirement is::

    level 1 (the unit's first level)  ->  unlock TH
    higher levels                     ->  max(required_townhall, unlock TH)

where the unlock TH is the town hall that the production building level needs (Barracks 9 ->
TH7 for the Dragon, Workshop 1 -> TH12 for the Wall Wrecker, Spell Factory 1 -> TH5 for the
Lightning Spell, Pet House 1 -> TH14). For hero equipment the unlock TH is also at least the
town hall that unlocks the equipment's hero (Royal Champion equipment is not upgradable before
TH13 even though the Blacksmith allows common level 9 from TH8). Builder-base troops, heroes and
pets are unchanged by this (their first level already carries the unlock hall).

Examples of the effect: Barbarian level 1 at TH1-2 (raw: not available), Dragon 0 at TH3-6 and
2 at TH7 (raw: 1 from TH3), Wall Wrecker 3 at TH12 and 0 at TH11 (raw: 1 at TH11).

Excluded (no rows)
------------------
* Event troops and spells (``is_seasonal``: Battle Ram, Royal Ghost, Giant Skeleton, Santa's
  Surprise, ...): DOMAIN.md excludes them from rush. Their names may reach the API; a join on
  this seed drops them.
* Super troops (``super_troop``: Super Barbarian, Inferno Dragon, ...): they are temporary boosts
  whose level mirrors the base troop's, so counting them would count the base troop twice.
* Guardians and helpers (Longshot, Lab Assistant, ...): not in ``/players`` unit lists.

Some names occur twice in the data (a retired event version and a permanent version, e.g.
Meteor Golem); after the exclusions (unit_name, village) must be unique, or the script fails.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPO_ROOT / "seeds" / "unit_caps.csv"

HOME = "home"
BUILDER_BASE = "builderBase"

#: static_data.json section -> (unit_type, /players array the unit appears in).
SECTIONS: dict[str, tuple[str, str]] = {
    "heroes": ("hero", "heroes"),
    "troops": ("troop", "troops"),
    "spells": ("spell", "spells"),
    "pets": ("pet", "troops"),
    "equipment": ("equipment", "heroEquipment"),
}
#: Troops built in this building are siege machines (the API lists them in ``troops[]``).
SIEGE_WORKSHOP = "Workshop"
#: The building whose level count is the highest hall level of each village.
HALL_BUILDINGS = {HOME: "Town Hall", BUILDER_BASE: "Builder Hall"}


@dataclass(frozen=True, order=True)
class UnitCap:
    """One row of ``seeds/unit_caps.csv`` (field order = column order)."""

    village: str
    unit_type: str
    unit_name: str
    town_hall_level: int
    api_section: str
    max_level: int
    unlock_town_hall_level: int
    game_max_level: int


#: Column order of the CSV: keys first, then properties, then numbers.
CSV_COLUMNS: tuple[str, ...] = (
    "unit_name",
    "village",
    "unit_type",
    "api_section",
    "town_hall_level",
    "max_level",
    "unlock_town_hall_level",
    "game_max_level",
)


@dataclass(frozen=True)
class ExcludedUnit:
    unit_name: str
    village: str
    section: str
    reason: str  # "event" or "super_troop"


def static_data_path() -> Path:
    """The static_data.json of the installed coc.py."""
    try:
        import coc
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise SystemExit(
            "coc.py is not installed; run `uv sync` (it is in the dev dependency group)."
        ) from exc
    return Path(coc.__file__).resolve().parent / "static" / "static_data.json"


def load_static_data(path: Path | None = None) -> dict[str, Any]:
    with open(path or static_data_path(), encoding="utf-8") as fp:
        return json.load(fp)


def _village(unit: dict[str, Any]) -> str:
    return unit.get("village") or HOME


def _exclusion_reason(section: str, unit: dict[str, Any]) -> str | None:
    if unit.get("is_seasonal"):
        return "event"
    if section == "troops" and unit.get("super_troop"):
        return "super_troop"
    return None


def excluded_units(static: dict[str, Any]) -> list[ExcludedUnit]:
    """Units left out of the seed, with the reason (sorted, duplicates kept once)."""
    found = {
        ExcludedUnit(unit["name"], _village(unit), section, reason)
        for section in SECTIONS
        for unit in static[section]
        if (reason := _exclusion_reason(section, unit))
    }
    return sorted(found, key=lambda u: (u.village, u.section, u.unit_name, u.reason))


def max_hall_levels(static: dict[str, Any]) -> dict[str, int]:
    """Highest town hall (home) and builder hall (builder base) level in the data."""
    halls = {}
    for village, building_name in HALL_BUILDINGS.items():
        building = _building(static, building_name, village)
        halls[village] = max(level["level"] for level in building["levels"])
    return halls


def _building(static: dict[str, Any], name: str, village: str) -> dict[str, Any]:
    matches = [b for b in static["buildings"] if b["name"] == name and b["village"] == village]
    if len(matches) != 1:
        raise ValueError(f"expected one {village} building named {name!r}, found {len(matches)}")
    return matches[0]


def _building_level_town_hall(static: dict[str, Any], name: str, village: str, level: int) -> int:
    """Town hall (builder hall on the builder base) needed to build ``name`` at ``level``."""
    building = _building(static, name, village)
    for row in building["levels"]:
        if row["level"] == level:
            required = row.get("required_townhall")
            if not isinstance(required, int):
                raise ValueError(f"{village} {name} level {level} has no required_townhall")
            return required
    raise ValueError(f"{village} {name} has no level {level}")


def _hero_unlock_town_halls(static: dict[str, Any]) -> dict[str, int]:
    return {hero["name"]: _levels(hero)[0][1] for hero in static["heroes"]}


def _levels(unit: dict[str, Any]) -> list[tuple[int, int]]:
    """(level, raw required_townhall) pairs, sorted by level, validated."""
    pairs = []
    for row in unit["levels"]:
        level, required = row.get("level"), row.get("required_townhall")
        if not isinstance(level, int) or not isinstance(required, int):
            raise ValueError(f"{unit['name']}: level row without integer level/required_townhall")
        pairs.append((level, required))
    pairs.sort()
    if not pairs:
        raise ValueError(f"{unit['name']}: no levels")
    return pairs


def _unlock_town_hall(
    static: dict[str, Any],
    section: str,
    unit: dict[str, Any],
    hero_unlocks: dict[str, int],
) -> int:
    """The town hall at which the unit's first level becomes available."""
    levels = _levels(unit)
    building = unit.get("production_building")
    building_level = unit.get("production_building_level")
    if building and building_level:
        unlock = _building_level_town_hall(static, building, _village(unit), building_level)
    else:
        # Builder-base heroes have no production building: their first level says it.
        unlock = levels[0][1]
    if section == "equipment":
        unlock = max(unlock, hero_unlocks[unit["hero"]])
    return unlock


def effective_requirements(
    static: dict[str, Any], section: str, unit: dict[str, Any], hero_unlocks: dict[str, int]
) -> list[tuple[int, int]]:
    """(level, town hall needed) pairs after the level-1 / unlock correction."""
    unlock = _unlock_town_hall(static, section, unit, hero_unlocks)
    levels = _levels(unit)
    first_level = levels[0][0]
    return [
        (level, unlock if level == first_level else max(required, unlock))
        for level, required in levels
    ]


def cap_at(requirements: Iterable[tuple[int, int]], town_hall: int) -> int:
    """Highest level whose requirement is <= town_hall; 0 when none is."""
    return max((level for level, required in requirements if required <= town_hall), default=0)


def derive_unit_caps(static: dict[str, Any]) -> list[UnitCap]:
    """Every (unit, hall level) row, sorted by village, unit type, unit name, hall level."""
    halls = max_hall_levels(static)
    hero_unlocks = _hero_unlock_town_halls(static)
    rows: list[UnitCap] = []
    seen: set[tuple[str, str]] = set()
    for section, (default_type, api_section) in SECTIONS.items():
        for unit in static[section]:
            if _exclusion_reason(section, unit):
                continue
            name, village = unit["name"], _village(unit)
            if (name, village) in seen:
                raise ValueError(f"duplicate unit after exclusions: {name!r} ({village})")
            seen.add((name, village))
            unit_type = default_type
            if section == "troops" and unit.get("production_building") == SIEGE_WORKSHOP:
                unit_type = "siege_machine"
            requirements = effective_requirements(static, section, unit, hero_unlocks)
            top_hall = halls[village]
            if max(required for _, required in requirements) > top_hall:
                raise ValueError(f"{name!r} needs a hall above {top_hall}, the highest in the data")
            unlock = min(required for _, required in requirements)
            game_max = max(level for level, _ in requirements)
            for town_hall in range(1, top_hall + 1):
                rows.append(
                    UnitCap(
                        village=village,
                        unit_type=unit_type,
                        unit_name=name,
                        town_hall_level=town_hall,
                        api_section=api_section,
                        max_level=cap_at(requirements, town_hall),
                        unlock_town_hall_level=unlock,
                        game_max_level=game_max,
                    )
                )
    rows.sort()
    return rows


def render_csv(rows: Sequence[UnitCap]) -> str:
    """The CSV text: header + rows, ``\\n`` line endings, minimal quoting."""
    names = [f.name for f in fields(UnitCap)]
    order = [names.index(column) for column in CSV_COLUMNS]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        values = astuple(row)
        writer.writerow([values[i] for i in order])
    return buffer.getvalue()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="do not write; exit 1 if the CSV differs from a fresh derivation",
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="CSV to write/check")
    parser.add_argument(
        "--static-data", type=Path, default=None, help="static_data.json (default: coc.py's)"
    )
    args = parser.parse_args(argv)

    static = load_static_data(args.static_data)
    rows = derive_unit_caps(static)
    text = render_csv(rows)
    units = len({(r.unit_name, r.village) for r in rows})

    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else None
        if current != text:
            print(
                f"{args.output} is out of date with coc.py's static data; "
                "run `uv run python scripts/derive_unit_caps.py` and commit the result.",
                file=sys.stderr,
            )
            return 1
        print(f"{args.output} is up to date ({units} units, {len(rows)} rows).")
        return 0

    args.output.parent.mkdir(parents=True, exist_ok=True)
    with open(args.output, "w", encoding="utf-8", newline="") as fp:
        fp.write(text)
    excluded = excluded_units(static)
    print(
        f"wrote {args.output} ({units} units, {len(rows)} rows); "
        f"excluded {len(excluded)} event/super units."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
