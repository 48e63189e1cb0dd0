"""The core member marts over a simulated clan, built by dbt on real PostgreSQL.

One scenario for the module (``scenario``), then one assertion theme per test:

* a simulated clan whose roster, within 13 runs 6 h apart, loses a member for
  good and loses then gets back another one (found with the simulator's own
  ``world.roster_tags``, not with the models);
* runs 0-2 landed, ``dbt build`` of the member marts and everything upstream
  (seeds, staging, their data and unit tests): a full build;
* runs 3-12 landed, ``dbt build`` of the member marts: an incremental batch of
  ten snapshots, with the re-join in it;
* ``dbt build`` again with no new run;
* one more run one simulated hour later (the members who played in that hour
  change, most do not: the simulator's activity model), ``dbt build``;
* checksums of every public mart, ``dbt build --full-refresh``, checksums again.

The later builds select the member marts only and leave out the unit tests
(they do not depend on the data and ran in the first build).

Expected values are read from the raw JSON of the runs (``raw.payloads``) or
from the simulator, never from the models under test.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from clash_pipeline.clash_api.ratelimit import RateLimiter
from clash_pipeline.ingest.fetch import ApiTarget, fetch_clans
from clash_pipeline.settings import load_settings
from clash_pipeline.simulator import DEFAULT_START, SimulatedClashApi, World
from clash_pipeline.simulator import tables as sim_tables
from clash_pipeline.simulator.codec import random_tag
from clash_pipeline.transform.dbt import DbtResult, run_dbt
from clash_pipeline.transform.publish import publish_all
from clash_pipeline.warehouse.migrations import migrate
from tests.plugins.sim_fixtures import SIM_SEED, SIM_TOKEN

RUN_STEP = timedelta(hours=6)
RUNS = 13  # runs 0..12, 6 h apart; then one more, an hour after run 12
FIRST_BATCH = 3  # runs 0..2 go into the first (full) build
LAST_STEP = timedelta(hours=1)  # members change only at hours they play in
VARS = {"staging_test_days": 0}

MEMBER_MARTS = [
    "int_clan_snapshots_listed",
    "int_player_units_pivoted",
    "member_snapshot_stats",
    "roster_snapshots",
    "membership_stints",
    "membership_events",
    "members",
]
# public marts and the key that orders their checksum
PUBLIC_MARTS = {
    "roster_snapshots": "snapshot_id",
    "member_snapshot_stats": "snapshot_id, player_tag",
    "members": "clan_tag, player_tag",
    "membership_stints": "clan_tag, player_tag, stint_number",
    "membership_events": "event_id",
}
HEROES = {
    "Barbarian King": "barbarian_king_level",
    "Archer Queen": "archer_queen_level",
    "Grand Warden": "grand_warden_level",
    "Royal Champion": "royal_champion_level",
    "Minion Prince": "minion_prince_level",
}
UNIT_KINDS = {unit.name: unit.kind for unit in sim_tables.ALL_UNITS}
PET_NAMES = {name for name, kind in UNIT_KINDS.items() if kind == "pet"}
UNRANKED_TIER = 105000000
# roster item fields that members does not carry (they change with others' trophies)
RANK_FIELDS = {"clanRank", "previousClanRank"}
# profile scalars behind members columns (the roster item has the others)
PROFILE_SCALARS = (
    "bestTrophies",
    "warStars",
    "clanCapitalContributions",
    "currentLeagueSeasonId",
    "currentLeagueGroupTag",
)


@dataclass
class ClanPlan:
    """A clan and what its roster does over the planned runs (from the simulator)."""

    clan_tag: str
    times: list[datetime]
    rosters: list[set[str]]
    leaver: str  # in the first run, gone for good before the last
    rejoiner: str  # leaves in the first batch or later, back in the second batch


@dataclass
class Scenario:
    url: str
    plan: ClanPlan
    run_ids: list[uuid.UUID] = field(default_factory=list)
    builds: dict[str, DbtResult] = field(default_factory=dict)
    members_before_noop: dict[tuple, dict] = field(default_factory=dict)
    members_after_noop: dict[tuple, dict] = field(default_factory=dict)
    members_after_last: dict[tuple, dict] = field(default_factory=dict)
    checksums_incremental: dict[str, tuple] = field(default_factory=dict)
    checksums_full_refresh: dict[str, tuple] = field(default_factory=dict)


def plan_clan(world: World) -> ClanPlan:
    """The first simulated clan whose planned runs show a departure and a re-join."""
    times = [DEFAULT_START + k * RUN_STEP for k in range(RUNS)]
    times.append(times[-1] + LAST_STEP)
    for i in range(500):
        clan_tag = random_tag(SIM_SEED, "find-clan", i)
        rosters = [set(world.roster_tags(clan_tag, t)) for t in times]
        everyone = set().union(*rosters)
        leavers = sorted(t for t in rosters[0] if t not in rosters[-1] and t not in rosters[-2])
        rejoiners = sorted(
            tag
            for tag in everyone
            if tag in rosters[-1]
            and any(
                tag in rosters[a] and tag not in rosters[b] and tag in rosters[c]
                for a in range(RUNS)
                for b in range(a + 1, RUNS)
                for c in range(max(b + 1, FIRST_BATCH), RUNS)
            )
        )
        if leavers and rejoiners:
            return ClanPlan(clan_tag, times, rosters, leavers[0], rejoiners[0])
    raise AssertionError("no simulated clan leaves and re-joins within the planned runs")


def land_run(url: str, sim: SimulatedClashApi, home: Path, clan_tag: str) -> uuid.UUID:
    settings = load_settings(clash_pipeline_home=home, coc_max_retries=1, coc_timeout_seconds=5)
    target = ApiTarget(sim.base_url, sim.token, "simulator", sim.clock.now)
    limiter = RateLimiter(requests_per_second=1000, max_concurrency=16)
    # full: every request in every run: the expected values are read by hand from each
    # run's own profiles (change-driven runs: test_change_driven_vs_full, test_profile_carry)
    [outcome] = asyncio.run(
        fetch_clans(settings, url, [clan_tag], target, limiter=limiter, full=True)
    )
    assert outcome.status == "succeeded", outcome.error
    return outcome.run_id


def build(
    url: str,
    home: Path,
    *,
    select: list[str],
    full_refresh: bool = False,
    unit_tests: bool = False,
) -> DbtResult:
    """``dbt build`` of ``select``; unit tests (data-independent) only when asked.

    Cautious indirect selection: data tests of models downstream of the member
    marts (e.g. metrics' relationships to roster_snapshots) are not built here.
    """
    args = ["build", "--select", *select, "--indirect-selection", "cautious"]
    if not unit_tests:
        args += ["--exclude", "resource_type:unit_test"]
    result = run_dbt(args, db_url=url, home=home, full_refresh=full_refresh, vars=VARS)
    result.raise_for_status()
    publish_all(url)  # dbt by hand: publish marts_build to marts, which the tests read
    return result


def query(url: str, sql: str, *params: Any) -> list[dict]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(sql, params).fetchall()


def members_rows(url: str) -> dict[tuple, dict]:
    return {
        (r["clan_tag"], r["player_tag"]): r
        for r in query(url, "select * from marts.members order by clan_tag, player_tag")
    }


def checksums(url: str) -> dict[str, tuple]:
    """(row count, md5 of every column of every row in key order) per public mart."""
    sums = {}
    for mart, key in PUBLIC_MARTS.items():
        [row] = query(
            url,
            f"select count(*) as n, md5(coalesce(string_agg(t::text, E'\\n' order by {key}), ''))"
            f" as checksum from marts.{mart} as t",
        )
        sums[mart] = (row["n"], row["checksum"])
    return sums


@pytest.fixture(scope="module")
def scenario(pg_server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    plan = plan_clan(World(seed=SIM_SEED))
    name = f"t_marts_members_{uuid.uuid4().hex[:8]}"
    url = pg_server.create_database(name)
    home = tmp_path_factory.mktemp("marts-members")
    try:
        migrate(url)
        s = Scenario(url=url, plan=plan)
        with SimulatedClashApi(seed=SIM_SEED, token=SIM_TOKEN) as sim:
            for k in range(RUNS):
                if k == FIRST_BATCH:
                    # seeds, staging and the member marts, with all their tests
                    s.builds["first"] = build(
                        url,
                        home,
                        select=["staging", "+members", "+membership_events"],
                        unit_tests=True,
                    )
                assert sim.clock.now() == plan.times[k]
                s.run_ids.append(land_run(url, sim, home, plan.clan_tag))
                sim.clock.advance(RUN_STEP if k < RUNS - 1 else LAST_STEP)
            s.builds["batch"] = build(url, home, select=MEMBER_MARTS)
            s.members_before_noop = members_rows(url)
            s.builds["noop"] = build(url, home, select=MEMBER_MARTS)
            s.members_after_noop = members_rows(url)
            assert sim.clock.now() == plan.times[RUNS]
            s.run_ids.append(land_run(url, sim, home, plan.clan_tag))
            s.builds["last"] = build(url, home, select=MEMBER_MARTS)
            s.members_after_last = members_rows(url)
        s.checksums_incremental = checksums(url)
        s.builds["full_refresh"] = build(url, home, select=MEMBER_MARTS, full_refresh=True)
        s.checksums_full_refresh = checksums(url)
        yield s
    finally:
        pg_server.drop_database(name)


def raw_bodies(url: str, run_id: uuid.UUID) -> tuple[list[dict], dict[str, dict], dict | None]:
    """The run's roster items, player profiles by tag and current war, from raw JSON."""
    rows = query(
        url,
        """
        select f.endpoint, f.resource_tag, p.body
        from raw.fetch_log as f
        join raw.payloads as p using (payload_hash)
        where f.run_id = %s and f.endpoint in ('clan_members', 'player', 'currentwar')
        """,
        run_id,
    )
    [roster] = [r["body"]["items"] for r in rows if r["endpoint"] == "clan_members"]
    profiles = {r["resource_tag"]: r["body"] for r in rows if r["endpoint"] == "player"}
    wars = [r["body"] for r in rows if r["endpoint"] == "currentwar"]
    return roster, profiles, wars[0] if wars else None


def snapshot_at(url: str, run_id: uuid.UUID) -> datetime:
    [row] = query(url, "select snapshot_at from raw.fetch_runs where run_id = %s", run_id)
    return row["snapshot_at"]


# --- builds ---------------------------------------------------------------------------------


def test_builds_run_the_models_their_data_tests_and_unit_tests(scenario):
    first = scenario.builds["first"]
    models = {n.name for n in first.nodes if n.resource_type == "model"}
    assert set(MEMBER_MARTS) <= models
    unit_tests = {n.name for n in first.nodes if n.resource_type == "unit_test"}
    assert {
        "member_snapshot_stats_splits_trophies_at_the_2025_split",
        "member_snapshot_stats_incremental_adds_only_new_snapshots",
        "int_player_units_pivoted_builds_equipment_json",
        "membership_stints_join_leave_rejoin",
        "membership_stints_incremental_continues_closes_and_adds",
        "members_differential_emits_only_changed_rows",
        "roster_snapshots_versions_by_era",
    } <= unit_tests
    for result in scenario.builds.values():
        # warnings would be API enum surprises: the simulator sends known values
        assert [
            (n.name, n.status) for n in result.nodes if n.status not in ("success", "pass")
        ] == []
        singular = {n.name for n in result.nodes if n.resource_type == "test"}
        assert {
            "assert_current_members_match_latest_roster",
            "assert_membership_stints_are_consecutive",
            "assert_roster_snapshots_count_their_members",
        } <= singular


def test_incremental_builds_process_only_new_snapshots(scenario):
    plan = scenario.plan
    batch = scenario.builds["batch"]
    assert batch.node("roster_snapshots").rows_affected == RUNS - FIRST_BATCH
    expected_rows = sum(len(r) for r in plan.rosters[FIRST_BATCH:RUNS])
    assert batch.node("member_snapshot_stats").rows_affected == expected_rows
    last = scenario.builds["last"]
    assert last.node("roster_snapshots").rows_affected == 1
    assert last.node("member_snapshot_stats").rows_affected == len(plan.rosters[RUNS])


# --- roster_snapshots -----------------------------------------------------------------------


def test_one_roster_snapshot_per_run_with_versions(scenario):
    snapshots = query(
        scenario.url, "select * from marts.roster_snapshots order by snapshot_at, snapshot_id"
    )
    assert [r["run_id"] for r in snapshots] == scenario.run_ids
    assert [r["snapshot_at"] for r in snapshots] == scenario.plan.times
    assert [r["member_count"] for r in snapshots] == [len(r) for r in scenario.plan.rosters]
    # 2026 data: leagueTier on the rosters, the ranked era
    assert {r["snapshot_version"] for r in snapshots} == {4}
    assert {r["schema_version"] for r in snapshots} == {"1"}
    [runs] = query(
        scenario.url, "select array_agg(distinct ingestion_version) as v from raw.fetch_runs"
    )
    assert {r["ingestion_version"] for r in snapshots} == set(runs["v"])
    versions = [r["payload_version"] for r in snapshots]
    assert len(set(versions)) == len(versions)  # a new snapshot, a new version
    last_roster, _, _ = raw_bodies(scenario.url, scenario.run_ids[-1])
    last = snapshots[-1]
    assert last["total_donations"] == sum(m["donations"] for m in last_roster)
    assert last["total_donations_received"] == sum(m["donationsReceived"] for m in last_roster)
    assert last["total_trophies"] == sum(m["trophies"] for m in last_roster)


def test_ids_and_versions_survive_the_full_refresh(scenario):
    # the full refresh rebuilt the table: same snapshot ids and payload versions
    assert (
        scenario.checksums_incremental["roster_snapshots"]
        == scenario.checksums_full_refresh["roster_snapshots"]
    )


# --- members --------------------------------------------------------------------------------


def test_members_has_one_current_row_per_member_of_the_last_run(scenario):
    plan = scenario.plan
    current = {
        player for (clan, player), r in scenario.members_after_last.items() if r["is_current"]
    }
    assert current == plan.rosters[-1]
    assert {clan for clan, _ in scenario.members_after_last} == {plan.clan_tag}
    everyone = set().union(*plan.rosters)
    assert {player for _, player in scenario.members_after_last} == everyone


def test_members_equal_the_latest_payloads(scenario):
    url = scenario.url
    roster, profiles, war = raw_bodies(url, scenario.run_ids[-1])
    members = scenario.members_after_last
    # the leader (first by role) and the last member of the list
    chosen = [next(m for m in roster if m["role"] == "leader"), roster[-1]]
    for item in chosen:
        row = members[(scenario.plan.clan_tag, item["tag"])]
        profile = profiles[item["tag"]]
        assert row["is_current"] is True and row["has_profile"] is True
        assert (row["name"], row["role"]) == (item["name"], item["role"])
        assert row["town_hall_level"] == item["townHallLevel"]
        assert (row["exp_level"], row["trophies"]) == (item["expLevel"], item["trophies"])
        assert row["builder_base_trophies"] == item["builderBaseTrophies"]
        assert (row["donations"], row["donations_received"]) == (
            item["donations"],
            item["donationsReceived"],
        )
        assert (row["legacy_league_id"], row["legacy_league_name"]) == (
            item["league"]["id"],
            item["league"]["name"],
        )
        tier = item["leagueTier"]
        assert (row["league_tier_id"], row["league_tier_name"]) == (tier["id"], tier["name"])
        assert (row["league_id"], row["league_name"]) == (tier["id"], tier["name"])
        if tier["id"] == UNRANKED_TIER:
            assert (row["battle_mode_trophies"], row["ranked_trophies"]) == (item["trophies"], None)
        else:
            assert (row["battle_mode_trophies"], row["ranked_trophies"]) == (None, item["trophies"])
        assert row["best_trophies"] == profile["bestTrophies"]
        assert row["war_stars"] == profile["warStars"]
        assert row["capital_contributions"] == profile["clanCapitalContributions"]
        assert row["league_season_id"] == profile.get("currentLeagueSeasonId")
        assert row["league_group_tag"] == profile.get("currentLeagueGroupTag")
        heroes = {h["name"]: h for h in profile.get("heroes", [])}
        for hero, column in HEROES.items():
            assert row[column] == heroes.get(hero, {}).get("level", 0), column
        assert row["equipment_flags"] == {
            "owned": {e["name"]: e["level"] for e in profile.get("heroEquipment", [])},
            "equipped": {
                h["name"]: [e["name"] for e in h["equipment"]]
                for h in profile.get("heroes", [])
                if h.get("equipment")
            },
        }
        troops = profile.get("troops", [])
        assert row["pet_levels"] == {
            t["name"]: t["level"] for t in troops if t["name"] in PET_NAMES
        }
        assert row["pets_owned"] == len(row["pet_levels"])
        assert row["equipment_owned"] == len(profile.get("heroEquipment", []))
        assert row["spells_owned"] == sum(s["village"] == "home" for s in profile["spells"])
        in_war = war is not None and war.get("state") != "notInWar"
        assert row["modifier_flags"] == {
            "active_super_troops": sorted(t["name"] for t in troops if t.get("superTroopIsActive")),
            "war_battle_modifier": war.get("battleModifier") if in_war else None,
        }
        assert row["left_at"] is None


def test_a_departed_member_is_kept_with_a_closed_stint(scenario):
    plan, url = scenario.plan, scenario.url
    leaver = plan.leaver
    last_seen = max(k for k, roster in enumerate(plan.rosters) if leaver in roster)
    row = scenario.members_after_last[(plan.clan_tag, leaver)]
    assert row["is_current"] is False
    assert row["left_at"] == plan.times[last_seen + 1]
    assert row["updated_at"] == row["left_at"]
    stints = query(
        url,
        "select * from marts.membership_stints where player_tag = %s order by stint_number",
        leaver,
    )
    assert stints[-1]["is_current"] is False
    assert stints[-1]["last_seen_at"] == plan.times[last_seen]
    assert stints[-1]["left_at"] == plan.times[last_seen + 1]
    events = query(
        url,
        "select event_type, event_at from marts.membership_events"
        " where player_tag = %s order by event_at, event_type",
        leaver,
    )
    assert ("leave", plan.times[last_seen + 1]) in [
        (e["event_type"], e["event_at"]) for e in events
    ]


def test_a_rejoin_opens_stint_two(scenario):
    plan, url = scenario.plan, scenario.url
    presence = [plan.rejoiner in roster for roster in plan.rosters]
    # islands of presence, from the simulator's rosters
    islands: list[list[int]] = []
    for k, present in enumerate(presence):
        if present and (k == 0 or not presence[k - 1]):
            islands.append([k, k])
        elif present:
            islands[-1][1] = k
    assert len(islands) >= 2
    stints = query(
        url,
        "select * from marts.membership_stints where player_tag = %s order by stint_number",
        plan.rejoiner,
    )
    assert [s["stint_number"] for s in stints] == list(range(1, len(islands) + 1))
    for stint, (first, last) in zip(stints, islands, strict=True):
        assert stint["joined_at"] == plan.times[first]
        assert stint["last_seen_at"] == plan.times[last]
        assert stint["snapshot_count"] == last - first + 1
        expected_left = plan.times[last + 1] if last + 1 < len(plan.times) else None
        assert stint["left_at"] == expected_left
    assert stints[-1]["is_current"] is True
    row = scenario.members_after_last[(plan.clan_tag, plan.rejoiner)]
    assert (row["is_current"], row["stint_count"]) == (True, len(islands))
    assert row["joined_at"] == plan.times[islands[-1][0]]
    assert row["first_seen_at"] == plan.times[islands[0][0]]
    events = query(
        url,
        "select event_type from marts.membership_events where player_tag = %s"
        " order by event_at, event_type",
        plan.rejoiner,
    )
    assert [e["event_type"] for e in events][:3] == ["join", "leave", "rejoin"]


# --- differential updates -------------------------------------------------------------------


def test_a_build_without_new_runs_changes_nothing(scenario):
    noop = scenario.builds["noop"]
    assert noop.node("members").rows_affected == 0
    assert noop.node("member_snapshot_stats").rows_affected == 0
    assert noop.node("roster_snapshots").rows_affected == 0
    assert noop.node("membership_stints").rows_affected == 0
    assert scenario.members_after_noop == scenario.members_before_noop


def test_one_new_run_rewrites_only_the_changed_members(scenario):
    url, plan = scenario.url, scenario.plan
    before, after = scenario.members_after_noop, scenario.members_after_last
    new_snapshot_at = snapshot_at(url, scenario.run_ids[-1])
    assert new_snapshot_at == plan.times[-1]
    rewritten = {key for key in after if after[key] != before.get(key)}
    assert scenario.builds["last"].node("members").rows_affected == len(rewritten)
    for key in after:
        if key in rewritten:
            assert after[key]["updated_at"] == new_snapshot_at, key
        else:
            assert after[key]["updated_at"] == before[key]["updated_at"], key

    # which members changed, from the raw JSON of the last two runs alone
    old_roster, old_profiles, old_war = raw_bodies(url, scenario.run_ids[-2])
    new_roster, new_profiles, new_war = raw_bodies(url, scenario.run_ids[-1])

    def state(item: dict, profiles: dict[str, dict], war: dict | None) -> tuple:
        """What the members columns are made of, read from the JSON."""
        profile = profiles.get(item["tag"], {})
        troops = profile.get("troops", [])
        in_war = war is not None and war.get("state") != "notInWar"
        return (
            {k: v for k, v in item.items() if k not in RANK_FIELDS},
            {k: profile.get(k) for k in PROFILE_SCALARS},
            {
                h["name"]: (h["level"], [e["name"] for e in h.get("equipment", [])])
                for h in profile.get("heroes", [])
                if h.get("village") == "home"
            },
            {e["name"]: e["level"] for e in profile.get("heroEquipment", [])},
            {t["name"]: t["level"] for t in troops if t["name"] in PET_NAMES},
            sorted(t["name"] for t in troops if t.get("superTroopIsActive")),
            sorted(UNIT_KINDS.get(t["name"], "troop") for t in troops if t["village"] == "home"),
            sum(s["village"] == "home" for s in profile.get("spells", [])),
            war.get("battleModifier") if in_war else None,
        )

    old = {m["tag"]: state(m, old_profiles, old_war) for m in old_roster}
    new = {m["tag"]: state(m, new_profiles, new_war) for m in new_roster}
    changed = {tag for tag in new if old.get(tag) != new[tag]} | (set(old) - set(new))
    assert {player for _, player in rewritten} == changed
    # an hour of simulated time: the members who played changed, not all of them
    assert 0 < len(changed) < len(new)
    departed = {key for key, r in after.items() if not r["is_current"]}
    assert departed and not departed & rewritten


# --- full refresh ---------------------------------------------------------------------------


def test_full_refresh_gives_the_incremental_history(scenario):
    assert set(scenario.checksums_incremental) == set(PUBLIC_MARTS)
    assert scenario.checksums_full_refresh == scenario.checksums_incremental
    full = scenario.builds["full_refresh"]
    assert full.node("member_snapshot_stats").rows_affected == sum(
        len(r) for r in scenario.plan.rosters
    )
