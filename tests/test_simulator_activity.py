"""The simulator's activity model: members play now and then, and show what they earned as
of their last session.

Each member plays in a given UTC hour with probability ``activity_per_hour`` (a draw from
seed, tag and hour); their member-list entry and profile show the progression at the
start of the last hour they played in, while seasons, tournament weeks, the split and clan
membership keep the clock's time. Everything here is computed from the world (no
database); the HTTP test goes through the real server.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from clash_pipeline.simulator import SimulatedClashApi, World
from clash_pipeline.simulator import tables as sim_tables
from clash_pipeline.simulator import timeline as tl
from clash_pipeline.simulator.codec import random_tag
from clash_pipeline.simulator.world import DEFAULT_ACTIVITY_PER_HOUR
from clash_pipeline.simulator.world.players import ACTIVITY_SCAN_HOURS
from tests.plugins.sim_fixtures import SIM_ACTIVITY, SIM_SEED

T0 = datetime(2026, 11, 4, 8, tzinfo=UTC)  # a Wednesday: no season or tournament week turns
HOUR = timedelta(hours=1)
UNRANKED_TIER = sim_tables.league_tier(0)["id"]
#: The member-list fields a change-driven planner compares.
ENTRY_FIELDS = (
    "trophies",
    "donations",
    "donationsReceived",
    "expLevel",
    "townHallLevel",
    "builderBaseTrophies",
    "role",
)


def entry_key(member: dict) -> tuple:
    return (*(member[k] for k in ENTRY_FIELDS), member["leagueTier"]["id"])


def clans(n: int) -> list[str]:
    return [random_tag(SIM_SEED, "activity-clan", i) for i in range(n)]


def hourly(world: World, clan: str, start: datetime, hours: int) -> list[dict[str, dict]]:
    """The member list by tag at ``start`` and each of the next ``hours`` hours."""
    return [{m["tag"]: m for m in world.members(clan, start + k * HOUR)} for k in range(hours + 1)]


def test_the_default_is_documented_and_used_by_the_fixture():
    assert DEFAULT_ACTIVITY_PER_HOUR == 0.12
    assert SIM_ACTIVITY == DEFAULT_ACTIVITY_PER_HOUR
    assert World(1).activity_per_hour == 0.12


def test_with_activity_one_every_member_moves_every_hour():
    world = World(SIM_SEED, activity_per_hour=1.0)
    [clan] = clans(1)
    lists = hourly(world, clan, T0, 6)
    for k in range(6):
        for tag in lists[k].keys() & lists[k + 1].keys():
            ts = (T0 + (k + 1) * HOUR).timestamp()
            assert world.played_at(tag, ts) == ts  # a session in every hour
    # and with it, most entries move: tournament trophies and donations grow by the hour
    changed = sum(
        entry_key(lists[0][t]) != entry_key(lists[1][t]) for t in lists[0].keys() & lists[1].keys()
    )
    assert changed > 0.8 * len(lists[0])


def test_at_one_in_ten_about_a_tenth_of_the_members_change_between_hourly_polls():
    world = World(SIM_SEED, activity_per_hour=0.1)
    member_hours = played = entry_changed = 0
    unexplained = []
    for clan in clans(2):
        lists = hourly(world, clan, T0, 12)
        for k in range(12):
            at = T0 + (k + 1) * HOUR
            for tag in lists[k].keys() & lists[k + 1].keys():
                member_hours += 1
                moved = world.played_at(tag, at.timestamp()) == at.timestamp()
                assert moved == world.players.plays(tag, int(at.timestamp() // 3600))
                played += moved
                changed = entry_key(lists[k][tag]) != entry_key(lists[k + 1][tag])
                entry_changed += changed
                if changed and not moved and lists[k][tag]["role"] == lists[k + 1][tag]["role"]:
                    unexplained.append((tag, k))
    assert 1000 <= member_hours <= 1300  # 2 clans x 40-50 members x 12 hours
    # a fixed seed, so the draws are exact; 3 sigma of Binomial(n, 0.1) as a sanity bound
    assert abs(played - 0.1 * member_hours) < 3 * (0.09 * member_hours) ** 0.5
    assert (played, member_hours) == (120, 1020)
    assert unexplained == []  # nothing but a session (or a new role) changes an entry mid-week
    assert entry_changed <= played + 5


def test_an_idle_member_shows_the_same_profile_until_they_play():
    world = World(SIM_SEED)
    [clan] = clans(1)
    tags = world.roster_tags(clan, T0)
    checked = 0
    for tag in tags:
        hour = int(T0.timestamp() // 3600)
        if world.players.plays(tag, hour + 1) or world.players.plays(tag, hour + 2):
            continue
        bodies = [json.dumps(world.player(tag, T0 + k * HOUR)) for k in range(3)]
        assert bodies[0] == bodies[1] == bodies[2], tag
        checked += 1
    assert checked > 0.5 * len(tags)  # idle two hours running: 0.88 ** 2 of them


def test_counters_never_go_down_over_a_week_of_hours():
    world = World(SIM_SEED)
    [clan] = clans(1)
    tags = world.roster_tags(clan, T0)[:6]
    last: dict[str, dict[str, int]] = {}
    for k in range(0, 7 * 24, 3):
        t = T0 + k * HOUR
        for tag in tags:
            body = world.player(tag, t)
            assert body is not None
            now = {
                "expLevel": body["expLevel"],
                "townHallLevel": body["townHallLevel"],
                "warStars": body["warStars"],
                "attackWins": body["attackWins"],
                "clanCapitalContributions": body["clanCapitalContributions"],
                **{f"a:{a['name']}": a["value"] for a in body["achievements"]},
                **{f"u:{u['name']}": u["level"] for u in body["troops"] + body["heroes"]},
                **{f"s:{s['name']}": s["level"] for s in body["spells"]},
            }
            before = last.get(tag, {})
            down = {key: (before[key], v) for key, v in now.items() if v < before.get(key, v)}
            assert down == {}, (tag, t)
            last[tag] = now


def test_donations_reset_at_the_season_end_for_an_idle_member_too():
    world = World(SIM_SEED)
    end = tl.season_bounds(T0)[1]  # the end of this season (Monday 05:00)
    before, after = end - HOUR, end
    hour = int(after.timestamp() // 3600)
    found = []
    for clan in clans(3):
        members_before = {m["tag"]: m for m in world.members(clan, before)}
        for m in world.members(clan, after):
            tag = m["tag"]
            previous = members_before.get(tag)
            if previous is None or world.players.plays(tag, hour) or not previous["donations"]:
                continue
            found.append(tag)
            assert world.played_at(tag, after.timestamp()) < after.timestamp()  # idle
            assert (m["donations"], m["donationsReceived"]) == (0, 0)
            profile = world.player(tag, after)
            assert profile is not None
            assert (profile["donations"], profile["donationsReceived"]) == (0, 0)
    assert len(found) > 20


def test_tournament_trophies_start_at_zero_each_week_until_the_member_plays():
    world = World(SIM_SEED)
    week_start = datetime(2026, 11, 10, 5, tzinfo=UTC)  # a Tuesday 05:00
    assert tl.tournament_week(week_start) == tl.tournament_week(week_start - HOUR) + 1
    later = week_start + 5 * HOUR
    seen = 0
    for clan in clans(2):
        for m in world.members(clan, later):
            if m["leagueTier"]["id"] == UNRANKED_TIER:
                continue
            played = world.played_at(m["tag"], later.timestamp())
            if played < week_start.timestamp():
                seen += 1
                assert m["trophies"] == 0, m["tag"]
    assert seen > 0


def test_the_member_list_entry_and_the_profile_agree():
    world = World(SIM_SEED)
    for clan in clans(2):
        for k in (0, 1, 7, 30):
            t = T0 + k * HOUR
            for m in world.members(clan, t):
                p = world.player(m["tag"], t)
                assert p is not None
                pairs = {
                    "name": (m["name"], p["name"]),
                    "townHallLevel": (m["townHallLevel"], p["townHallLevel"]),
                    "expLevel": (m["expLevel"], p["expLevel"]),
                    "trophies": (m["trophies"], p["trophies"]),
                    "builderBaseTrophies": (m["builderBaseTrophies"], p["builderBaseTrophies"]),
                    "donations": (m["donations"], p["donations"]),
                    "donationsReceived": (m["donationsReceived"], p["donationsReceived"]),
                    "role": (m["role"], p["role"]),
                    "leagueTier": (m["leagueTier"], p["leagueTier"]),
                }
                assert {k: v for k, v in pairs.items() if v[0] != v[1]} == {}, (m["tag"], t)


def test_same_seed_and_time_give_the_same_bytes_and_the_activity_matters():
    [clan] = clans(1)
    t = T0 + 3 * HOUR

    def dump(world: World) -> str:
        members = world.members(clan, t)
        return json.dumps([members, [world.player(m["tag"], t) for m in members[:5]]])

    assert dump(World(SIM_SEED)) == dump(World(SIM_SEED))
    assert dump(World(SIM_SEED)) != dump(World(SIM_SEED, activity_per_hour=0.5))


def test_a_member_who_never_plays_in_the_scan_window_counts_as_played_at_its_edge():
    world = World(SIM_SEED, activity_per_hour=1e-9)  # practically never
    [clan] = clans(1)
    tag = world.roster_tags(clan, T0)[0]
    ts = T0.timestamp()
    assert world.played_at(tag, ts) == ts - ACTIVITY_SCAN_HOURS * 3600
    later = ts + 5 * 3600
    assert world.played_at(tag, later) == later - ACTIVITY_SCAN_HOURS * 3600  # still moves on


@pytest.mark.parametrize("bad", [0, -0.1, 1.5])
def test_an_activity_outside_zero_to_one_is_refused_with_what_it_means(bad):
    with pytest.raises(ValueError, match=r"activity_per_hour must be in \(0, 1\]"):
        World(1, activity_per_hour=bad)


def test_the_server_serves_the_configured_activity():
    with SimulatedClashApi(seed=SIM_SEED, token="t", activity_per_hour=1.0, start_time=T0) as api:
        state = httpx.get(f"{api.origin}/_sim/state").json()
        assert state["activity_per_hour"] == 1.0
        clan = clans(1)[0].replace("#", "%23")
        headers = {"Authorization": "Bearer t"}
        first = httpx.get(f"{api.base_url}/clans/{clan}/members", headers=headers).json()
        api.clock.advance(HOUR)
        second = httpx.get(f"{api.base_url}/clans/{clan}/members", headers=headers).json()
    expected = World(SIM_SEED, activity_per_hour=1.0)
    assert first["items"] == expected.members(clans(1)[0], T0)
    assert second["items"] == expected.members(clans(1)[0], T0 + HOUR)


def test_a_profile_rarely_changes_while_its_member_list_entry_does_not():
    """The figure issue 14 asks for (bench/simulator_activity.py gives it for a week): what a
    change-driven planner misses by fetching a profile only when the entry changed."""
    from bench.simulator_activity import measure

    result = measure(World(SIM_SEED), clans(1), T0, 24)
    hours = result["member_hours"]
    assert hours > 24 * 35
    # about the activity's share of members play in an hour, and their entries move with it
    assert 0.08 < result["played_share"] < 0.16
    assert result["entry_changed"] >= 0.9 * result["played"]
    # a session that moves the profile almost always moves an entry field too
    assert result["profile_changed_entry_unchanged"] <= 0.01 * result["profile_changed"] + 2


def test_the_demo_reads_its_activity_from_the_environment(monkeypatch):
    from clash_pipeline.cli import common
    from clash_pipeline.errors import ConfigError

    monkeypatch.delenv("SIM_ACTIVITY_PER_HOUR", raising=False)
    assert common.sim_activity() == DEFAULT_ACTIVITY_PER_HOUR
    monkeypatch.setenv("SIM_ACTIVITY_PER_HOUR", "1")
    assert common.sim_activity() == 1.0
    for bad in ("0", "2", "often"):
        monkeypatch.setenv("SIM_ACTIVITY_PER_HOUR", bad)
        with pytest.raises(ConfigError, match="SIM_ACTIVITY_PER_HOUR") as caught:
            common.sim_activity()
        assert "(0, 1]" in str(caught.value.hint)
