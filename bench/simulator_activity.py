"""How often a simulated profile changes while its member-list entry does not.

A change-driven planner fetches a member's ``/players/{tag}`` only when their entry in
``/clans/{tag}/members`` changed (trophies, donations given or received, XP level, town
hall, builder base trophies, league or tier, role). What it misses is a profile that
changed without any of those: this counts such member-hours in the simulated world
(in process, no HTTP), polling a few clans every hour for a simulated week at the
default activity (or ``--activity``).

Per member present in two consecutive hours it records whether the member played
(their last session moved), whether the entry's planner fields changed, whether the
profile's bytes changed, and, for profiles that changed with an unchanged entry, which
top-level fields did. The last line is one JSON object.

Run: ``uv run python bench/simulator_activity.py`` (about a minute).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clash_pipeline.simulator.codec import random_tag  # noqa: E402
from clash_pipeline.simulator.responses import json_bytes  # noqa: E402
from clash_pipeline.simulator.world import DEFAULT_ACTIVITY_PER_HOUR, World  # noqa: E402

START = datetime(2026, 11, 2, 8, tzinfo=UTC)
#: The member-list fields whose change makes a planner fetch the profile.
PLANNER_FIELDS = (
    "trophies",
    "donations",
    "donationsReceived",
    "expLevel",
    "townHallLevel",
    "builderBaseTrophies",
    "role",
)


def entry_key(member: dict[str, Any]) -> tuple[Any, ...]:
    league = (member.get("leagueTier") or member.get("league") or {}).get("id")
    return (*(member.get(name) for name in PLANNER_FIELDS), league)


def measure(world: World, clans: list[str], start: datetime, hours: int) -> dict[str, Any]:
    """Counts over every (member, hour) pair in which the member is in the clan both hours."""
    names = ("member_hours", "played", "entry_changed", "profile_changed")
    counts: Counter[str] = Counter(
        dict.fromkeys((*names, "profile_changed_entry_unchanged", "of_which_played"), 0)
    )
    fields: Counter[str] = Counter()
    previous: dict[str, tuple[tuple[Any, ...], bytes, dict[str, Any], float]] = {}
    for hour in range(hours + 1):
        t = start + timedelta(hours=hour)
        current = {}
        for clan in clans:
            for member in world.members(clan, t):
                tag = member["tag"]
                body = world.player(tag, t) or {}
                state = (
                    entry_key(member),
                    json_bytes(body),
                    body,
                    world.played_at(tag, t.timestamp()),
                )
                current[tag] = state
                if tag not in previous:
                    continue
                before = previous[tag]
                played = state[3] != before[3]
                entry_changed = state[0] != before[0]
                profile_changed = state[1] != before[1]
                counts["member_hours"] += 1
                counts["played"] += played
                counts["entry_changed"] += entry_changed
                counts["profile_changed"] += profile_changed
                if profile_changed and not entry_changed:
                    counts["profile_changed_entry_unchanged"] += 1
                    counts["of_which_played"] += played
                    fields.update(k for k in body if body.get(k) != before[2].get(k))
        previous = current
    n = max(1, counts["member_hours"])
    return {
        **counts,
        "played_share": round(counts["played"] / n, 4),
        "entry_changed_share": round(counts["entry_changed"] / n, 4),
        "profile_changed_share": round(counts["profile_changed"] / n, 4),
        "profile_changed_entry_unchanged_share": round(
            counts["profile_changed_entry_unchanged"] / n, 4
        ),
        "missed_share_of_profile_changes": round(
            counts["profile_changed_entry_unchanged"] / max(1, counts["profile_changed"]), 4
        ),
        "fields_changed_when_entry_unchanged": dict(fields.most_common(8)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clans", type=int, default=4)
    parser.add_argument("--hours", type=int, default=7 * 24)
    parser.add_argument("--activity", type=float, default=DEFAULT_ACTIVITY_PER_HOUR)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    world = World(args.seed, activity_per_hour=args.activity)
    clans = [random_tag(args.seed, "bench-clan", i) for i in range(args.clans)]
    result = measure(world, clans, START, args.hours)
    print(
        json.dumps({"clans": args.clans, "hours": args.hours, "activity": args.activity, **result})
    )


if __name__ == "__main__":
    main()
