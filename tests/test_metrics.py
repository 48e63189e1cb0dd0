"""The derived metrics (marts.metrics, marts.roster) over a simulated clan, built by dbt.

One scenario for the module (``scenario``):

* a simulated clan whose roster, over 10 simulated days at 4 runs a day (40 runs, 6 h
  apart, 2026-10-21 08:00 to 2026-10-30 14:00 UTC), has a member who leaves and comes
  back; the days span the season end of Monday 2026-10-26 05:00 UTC (donation counters
  reset), three wars and a raid weekend;
* day 1 (4 runs) landed, the seeds and every model the metrics need built (a full
  build, without tests); days 2-10 (36 runs) landed, ``dbt run`` again (an incremental
  batch), then ``dbt build`` of the metric models (their unit tests, data tests and
  singular tests);
* checksums of the metric tables, ``dbt run --full-refresh`` of the metric models,
  checksums again.

Expected values are computed here from the raw JSON of the runs (``raw.payloads``),
with the hero caps of DOMAIN.md typed in below and the lab caps read from the seed
CSV, never from the models under test.
"""

from __future__ import annotations

import asyncio
import csv
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from clash_pipeline.clash_api.ratelimit import RateLimiter
from clash_pipeline.ingest.fetch import ApiTarget, fetch_clans
from clash_pipeline.project import project_dir
from clash_pipeline.settings import load_settings
from clash_pipeline.simulator import SimulatedClashApi, World
from clash_pipeline.simulator import tables as sim_tables
from clash_pipeline.simulator.codec import random_tag
from clash_pipeline.transform.dbt import DbtResult, run_dbt
from clash_pipeline.transform.publish import publish_all
from clash_pipeline.warehouse.migrations import migrate
from tests.plugins.sim_fixtures import SIM_SEED, SIM_TOKEN

START = datetime(2026, 10, 21, 8, tzinfo=UTC)
RUN_STEP = timedelta(hours=6)
DAYS, RUNS_PER_DAY = 10, 4
RUNS = DAYS * RUNS_PER_DAY
FIRST_BATCH = RUNS_PER_DAY  # day 1 goes into the first (full) build
SEASON_END = datetime(2026, 10, 26, 5, tzinfo=UTC)  # the last Monday of October, 05:00
VARS = {"staging_test_days": 0}

METRIC_MODELS = [
    "int_member_snapshots_diffed",
    "int_member_rush_computed",
    "int_member_flows_windowed",
    "int_star_baselines_accumulated",
    "int_member_ace_windows_listed",
    "int_member_ace_raids_counted",
    "int_member_ace_ova_scored",
    "int_member_ace_dva_scored",
    "int_member_ace_par_scored",
    "int_member_ace_cap_scored",
    "int_member_ace_don_scored",
    "int_member_ace_avail_scored",
    "int_member_ace_combined",
    "metrics",
    "roster",
]
# tables and the key that orders their checksum
CHECKED_TABLES = {
    "intermediate.int_member_snapshots_diffed": "snapshot_id, player_tag",
    "intermediate.int_member_rush_computed": "snapshot_id, player_tag",
    "intermediate.int_member_flows_windowed": "snapshot_id, player_tag",
    "intermediate.int_member_ace_windows_listed": "snapshot_id, player_tag, metric_window",
    "intermediate.int_member_ace_raids_counted": "snapshot_id, player_tag, metric_window",
    "intermediate.int_member_ace_ova_scored": "snapshot_id, player_tag, metric_window",
    "intermediate.int_member_ace_dva_scored": "snapshot_id, player_tag, metric_window",
    "intermediate.int_member_ace_par_scored": "snapshot_id, player_tag, metric_window",
    "intermediate.int_member_ace_cap_scored": "snapshot_id, player_tag, metric_window",
    "intermediate.int_member_ace_don_scored": "snapshot_id, player_tag, metric_window",
    "intermediate.int_member_ace_avail_scored": "snapshot_id, player_tag, metric_window",
    "intermediate.int_member_ace_combined": "snapshot_id, player_tag, metric_window",
    "marts.metrics": "clan_tag, player_tag, metric_name, metric_window, as_of",
    "marts.roster": "clan_tag, player_tag",
}
# DOMAIN.md's hero caps (King, Queen, Warden, Champion, Minion Prince); None: not yet
HERO_CAPS = {
    7: (10, None, None, None, None),
    8: (20, 10, None, None, None),
    9: (30, 30, None, None, 10),
    10: (40, 40, None, None, 20),
    11: (50, 50, 20, None, 30),
    12: (65, 65, 40, None, 40),
    13: (75, 75, 50, 25, 50),
    14: (85, 85, 60, 30, 60),
    15: (90, 90, 65, 40, 70),
    16: (95, 95, 70, 45, 80),
    17: (100, 100, 75, 50, 90),
    18: (105, 105, 80, 55, 95),
}
HERO_NAMES = ("Barbarian King", "Archer Queen", "Grand Warden", "Royal Champion", "Minion Prince")
# names repeat across villages ("Baby Dragon"): key by (name, village)
UNIT_KINDS = {(unit.name, unit.village): unit.kind for unit in sim_tables.ALL_UNITS}


@dataclass
class Scenario:
    url: str
    clan_tag: str
    rejoiner: str
    run_ids: list[uuid.UUID] = field(default_factory=list)
    builds: dict[str, DbtResult] = field(default_factory=dict)
    checksums_incremental: dict[str, tuple] = field(default_factory=dict)
    checksums_full_refresh: dict[str, tuple] = field(default_factory=dict)


def plan_clan(world: World) -> tuple[str, str]:
    """A simulated clan of 40+ members with a member who leaves and comes back for good."""
    times = [START + k * RUN_STEP for k in range(RUNS)]
    for i in range(500):
        clan_tag = random_tag(SIM_SEED, "metrics-clan", i)
        rosters = [set(world.roster_tags(clan_tag, t)) for t in times]
        if len(rosters[-1]) < 40:
            continue
        rejoiners = sorted(
            tag
            for tag in rosters[-1]
            if tag in rosters[0] and any(tag not in roster for roster in rosters[1:-1])
        )
        if rejoiners:
            return clan_tag, rejoiners[0]
    raise AssertionError("no simulated clan has a member who leaves and comes back")


def land_run(url: str, sim: SimulatedClashApi, home: Path, clan_tag: str) -> uuid.UUID:
    settings = load_settings(clash_pipeline_home=home, coc_max_retries=1, coc_timeout_seconds=5)
    target = ApiTarget(sim.base_url, sim.token, "simulator", sim.clock.now)
    limiter = RateLimiter(requests_per_second=2000, max_concurrency=32)
    # full: every request in every run: the expected values are read by hand from each
    # run's own profiles (change-driven runs: test_change_driven_vs_full, test_profile_carry)
    [outcome] = asyncio.run(
        fetch_clans(settings, url, [clan_tag], target, limiter=limiter, full=True)
    )
    assert outcome.status == "succeeded", outcome.error
    return outcome.run_id


def dbt(url: str, home: Path, *args: str, full_refresh: bool = False) -> DbtResult:
    result = run_dbt(list(args), db_url=url, home=home, full_refresh=full_refresh, vars=VARS)
    result.raise_for_status()
    publish_all(url)  # dbt by hand: publish marts_build to marts, which the tests read
    return result


def query(url: str, sql: str, *params: Any) -> list[dict]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(sql, params).fetchall()


def checksums(url: str) -> dict[str, tuple]:
    sums = {}
    for table, key in CHECKED_TABLES.items():
        [row] = query(
            url,
            f"select count(*) as n, md5(coalesce(string_agg(t::text, E'\\n' order by {key}), ''))"
            f" as checksum from {table} as t",
        )
        sums[table] = (row["n"], row["checksum"])
    return sums


@pytest.fixture(scope="module")
def scenario(pg_server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    clan_tag, rejoiner = plan_clan(World(seed=SIM_SEED))
    name = f"t_metrics_{uuid.uuid4().hex[:8]}"
    url = pg_server.create_database(name)
    home = tmp_path_factory.mktemp("metrics")
    try:
        migrate(url)
        s = Scenario(url=url, clan_tag=clan_tag, rejoiner=rejoiner)
        with SimulatedClashApi(seed=SIM_SEED, token=SIM_TOKEN) as sim:
            sim.clock.set(START)
            for k in range(RUNS):
                if k == FIRST_BATCH:
                    # seeds and models only: the tests run once, below
                    s.builds["first"] = dbt(
                        url,
                        home,
                        "build",
                        "--select",
                        "+roster",
                        "metric_catalogue",
                        "--exclude",
                        "resource_type:test",
                        "resource_type:unit_test",
                    )
                s.run_ids.append(land_run(url, sim, home, clan_tag))
                sim.clock.advance(RUN_STEP)
        s.builds["batch"] = dbt(url, home, "run", "--select", "+roster")
        # the metric models' unit tests, data tests and singular tests
        s.builds["tests"] = dbt(url, home, "build", "--select", *METRIC_MODELS, "metric_catalogue")
        s.checksums_incremental = checksums(url)
        s.builds["full_refresh"] = dbt(
            url, home, "run", "--select", *METRIC_MODELS, full_refresh=True
        )
        s.checksums_full_refresh = checksums(url)
        yield s
    finally:
        pg_server.drop_database(name)


# --- raw JSON -------------------------------------------------------------------------------


@dataclass
class RawRun:
    snapshot_at: datetime
    roster: dict[str, dict]  # tag -> roster item
    profiles: dict[str, dict]  # tag -> player body
    war: dict | None  # the currentwar body


@pytest.fixture(scope="module")
def raw_runs(scenario) -> list[RawRun]:
    rows = query(
        scenario.url,
        """
        select r.run_id, r.snapshot_at, f.endpoint, f.resource_tag, p.body
        from raw.fetch_runs as r
        join raw.fetch_log as f using (run_id)
        join raw.payloads as p using (payload_hash)
        where f.endpoint in ('clan_members', 'player', 'currentwar') and f.http_status = 200
        order by r.snapshot_at, f.fetch_id
        """,
    )
    runs: dict[uuid.UUID, RawRun] = {}
    for row in rows:
        run = runs.setdefault(row["run_id"], RawRun(row["snapshot_at"], {}, {}, None))
        if row["endpoint"] == "clan_members":
            run.roster = {item["tag"]: item for item in row["body"]["items"]}
        elif row["endpoint"] == "player":
            run.profiles.setdefault(row["resource_tag"], row["body"])
        elif run.war is None:
            run.war = row["body"]
    ordered = sorted(runs.values(), key=lambda r: r.snapshot_at)
    assert len(ordered) == RUNS
    return ordered


def metric(url: str, player: str, name: str, window: str, as_of: datetime) -> dict:
    [row] = query(
        url,
        "select * from marts.metrics where player_tag = %s and metric_name = %s"
        " and metric_window = %s and as_of = %s",
        player,
        name,
        window,
        as_of,
    )
    return row


def donation_sums(
    runs: list[RawRun], player: str, field_name: str, since: datetime
) -> tuple[int, int]:
    """Reset-aware deltas of a season counter summed over the runs after ``since``.

    A delta needs the member in the clan's previous run too (the same stint); it is
    cur - prev, or cur when the counter went down. Returns (sum, resets seen).
    """
    total, resets = 0, 0
    for previous, current in zip(runs, runs[1:], strict=False):
        if player not in current.roster or player not in previous.roster:
            continue
        cur = current.roster[player][field_name]
        prev = previous.roster[player][field_name]
        if current.snapshot_at > since:
            total += cur - prev if cur >= prev else cur
        resets += cur < prev
    return total, resets


def hero_rush(profile: dict, town_hall: int) -> Decimal:
    caps = HERO_CAPS.get(town_hall)
    if caps is None:
        return Decimal(0)
    levels = {h["name"]: h["level"] for h in profile.get("heroes", []) if h["village"] == "home"}
    shares = [
        max(0, cap - levels.get(name, 0)) / cap
        for name, cap in zip(HERO_NAMES, caps, strict=True)
        if cap
    ]
    return round(Decimal(100 * sum(shares) / len(shares)), 6)


def lab_caps() -> dict[tuple[str, int], int]:
    with (project_dir() / "seeds" / "unit_caps.csv").open(encoding="utf-8") as fp:
        return {
            (row["unit_name"], int(row["town_hall_level"])): int(row["max_level"])
            for row in csv.DictReader(fp)
            if row["village"] == "home" and row["unit_type"] in ("troop", "spell")
        }


def lab_rush(profile: dict, town_hall: int, caps: dict[tuple[str, int], int]) -> Decimal:
    levels, capped = 0, 0
    units = profile.get("troops", []) + profile.get("spells", [])
    for unit in units:
        kind = UNIT_KINDS.get((unit["name"], unit["village"]))
        if unit["village"] != "home" or kind not in ("troop", "spell"):
            continue
        cap = caps.get((unit["name"], town_hall - 1))
        if cap is None:
            continue
        levels += min(unit["level"], cap)
        capped += cap
    if capped == 0:
        return Decimal(0)
    return round(Decimal(100) - Decimal(100 * levels) / Decimal(capped), 6)


# --- the builds -------------------------------------------------------------------------------


def test_builds_pass_with_unit_tests_and_singular_tests(scenario):
    tests = scenario.builds["tests"]
    assert [(n.name, n.status) for n in tests.nodes if n.status not in ("success", "pass")] == []
    unit_tests = {n.name for n in tests.nodes if n.resource_type == "unit_test"}
    assert {
        "int_member_snapshots_diffed_season_reset_rejoin_and_activity",
        "int_member_snapshots_diffed_incremental_pairs_with_stored_rows",
        "int_member_rush_computed_town_hall_without_warden_and_lab_caps",
        "int_member_flows_windowed_windows_season_and_tenure",
        "int_member_flows_windowed_incremental_adds_only_new_snapshots",
        "int_star_baselines_accumulated_cumulative_buckets",
        "int_member_ace_windows_listed_donations_per_window",
        "int_member_ace_raids_counted_raiders_and_stint_members",
        "int_member_ace_ova_scored_by_hand",
        "int_member_ace_dva_scored_by_hand",
        "int_member_ace_par_scored_by_hand",
        "int_member_ace_cap_scored_by_hand",
        "int_member_ace_don_scored_by_hand",
        "int_member_ace_avail_scored_by_hand",
        "int_member_ace_combined_by_hand",
        "int_member_ace_combined_equal_clan_has_mad_zero",
        "int_member_ace_combined_incremental_adds_only_new_snapshots",
        "metrics_unpivots_donations_activity_and_tenure",
        "metrics_incremental_adds_only_new_snapshots",
        "roster_pivots_each_members_latest_metrics",
    } <= unit_tests
    singular = {n.name for n in tests.nodes if n.resource_type == "test"}
    assert {
        "assert_metrics_windows_in_catalogue",
        "assert_metrics_cover_every_member_snapshot",
    } <= singular


def test_the_incremental_batch_computes_only_the_new_snapshots(scenario, raw_runs):
    batch = scenario.builds["batch"]
    new_members = sum(len(run.roster) for run in raw_runs[FIRST_BATCH:])
    assert batch.node("int_member_snapshots_diffed").rows_affected == new_members
    assert batch.node("int_member_flows_windowed").rows_affected == new_members
    assert batch.node("int_member_ace_combined").rows_affected == 2 * new_members
    [row] = query(
        scenario.url,
        "select count(*) as n from marts.metrics where as_of > %s",
        raw_runs[FIRST_BATCH - 1].snapshot_at,
    )
    assert batch.node("metrics").rows_affected == row["n"]
    # the build of the tests found nothing new to add
    assert scenario.builds["tests"].node("metrics").rows_affected == 0


def test_full_refresh_equals_the_incremental_history(scenario):
    assert scenario.checksums_full_refresh == scenario.checksums_incremental
    assert scenario.checksums_incremental["marts.metrics"][0] > 0


# --- donations --------------------------------------------------------------------------------


def test_donations_are_reset_aware_sums_of_the_payload_counters(scenario, raw_runs):
    url, as_of = scenario.url, raw_runs[-1].snapshot_at
    always = [tag for tag in raw_runs[-1].roster if all(tag in run.roster for run in raw_runs)]
    # members whose counter went down at the season end, busiest donor first
    reset = sorted(
        (t for t in always if donation_sums(raw_runs, t, "donations", START)[1] > 0),
        key=lambda t: -raw_runs[-1].roster[t]["donations"],
    )
    assert reset, "no donation counter was reset at the season end"
    for tag in reset[:3]:
        for window, since in (
            ("7d", as_of - timedelta(days=7)),
            ("30d", as_of - timedelta(days=30)),
            ("season", SEASON_END),
        ):
            given, _ = donation_sums(raw_runs, tag, "donations", since)
            received, _ = donation_sums(raw_runs, tag, "donationsReceived", since)
            row = metric(url, tag, "donations_given", window, as_of)
            assert row["value"] == given, (tag, window)
            assert row["components"]["given"] == given
            assert metric(url, tag, "donations_received", window, as_of)["value"] == received
            balance = metric(url, tag, "donation_balance", window, as_of)
            assert balance["value"] == given - received
            assert (balance["components"]["given"], balance["components"]["received"]) == (
                given,
                received,
            )
            ratio = metric(url, tag, "donation_ratio", window, as_of)["value"]
            assert ratio == round(Decimal(given) / max(1, received), 6)
    # the season window starts at the reset: the counter itself is the season's total,
    # less what was donated before the member's first snapshot of the season
    tag = reset[0]
    season = metric(url, tag, "donations_given", "season", as_of)["value"]
    assert season <= raw_runs[-1].roster[tag]["donations"]


# --- rush -------------------------------------------------------------------------------------


def test_hero_and_lab_rush_follow_the_caps(scenario, raw_runs):
    url, last = scenario.url, raw_runs[-1]
    caps = lab_caps()
    checked, without_warden = 0, 0
    for tag, item in last.roster.items():
        profile = last.profiles.get(tag)
        if profile is None:
            continue
        town_hall = item["townHallLevel"]
        hero = metric(url, tag, "hero_rush_pct", "latest", last.snapshot_at)
        assert hero["value"] == hero_rush(profile, town_hall), tag
        assert hero["components"]["town_hall_level"] == town_hall
        lab = metric(url, tag, "lab_rush_pct", "latest", last.snapshot_at)
        assert lab["value"] == lab_rush(profile, town_hall, caps), tag
        without_warden += town_hall in HERO_CAPS and HERO_CAPS[town_hall][2] is None
        checked += 1
    assert checked >= 30
    assert without_warden >= 0  # recorded for the report; the unit test pins TH 10


# --- tenure -----------------------------------------------------------------------------------


def test_tenure_counts_the_current_stint_and_all_stints(scenario, raw_runs):
    url, tag = scenario.url, scenario.rejoiner
    as_of = raw_runs[-1].snapshot_at
    stints: list[list[datetime]] = []
    for previous, run in zip([None, *raw_runs], raw_runs, strict=False):
        if tag not in run.roster:
            continue
        if previous is None or tag not in previous.roster:
            stints.append([run.snapshot_at, run.snapshot_at])
        else:
            stints[-1][1] = run.snapshot_at
    assert len(stints) >= 2, "the member should have left and come back"
    days = lambda delta: round(Decimal(delta.total_seconds()) / 86400, 6)  # noqa: E731
    tenure = metric(url, tag, "tenure_days", "latest", as_of)
    assert tenure["value"] == days(as_of - stints[-1][0])
    assert tenure["components"]["stint_number"] == len(stints)
    total = metric(url, tag, "total_tenure_days", "latest", as_of)
    assert total["value"] == sum(days(end - start) for start, end in stints)
    assert total["components"]["stint_count"] == len(stints)


# --- ACE --------------------------------------------------------------------------------------


def our_side(war: dict, clan_tag: str) -> dict:
    return war["clan"] if war["clan"]["tag"] == clan_tag else war["opponent"]


def test_ace_counts_the_attacks_of_ended_wars_in_the_window(scenario, raw_runs):
    url, as_of = scenario.url, raw_runs[-1].snapshot_at
    # the last body seen of each war, kept when the war ended in the 30 days
    wars: dict[str, dict] = {}
    for run in raw_runs:
        if run.war and run.war.get("state") in ("preparation", "inWar", "warEnded"):
            wars[run.war["preparationStartTime"]] = run.war
    ended = [
        war
        for war in wars.values()
        if as_of - timedelta(days=30)
        < datetime.strptime(war["endTime"], "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=UTC)
        <= as_of
    ]
    assert ended, "the simulated clan should have ended wars in the window"
    attacks: dict[str, int] = {}
    for war in ended:
        for member in our_side(war, scenario.clan_tag)["members"]:
            attacks[member["tag"]] = attacks.get(member["tag"], 0) + len(member.get("attacks", []))
    for tag in raw_runs[-1].roster:
        ova = metric(url, tag, "ace_ova", "30d", as_of)
        assert ova["components"]["n"] == attacks.get(tag, 0), tag
        # wars known only from the war log count as wars ago too (no attacks)
        assert ova["components"]["clan_wars"] >= len(ended)
        if attacks.get(tag, 0) == 0:  # no wars, no invented input
            assert ova["value"] == 0 and ova["components"]["value"] is None
        ace = metric(url, tag, "ace", "30d", as_of)
        assert 0 <= ace["value"] <= 100
        assert Decimal(str(ace["components"]["ova"])) == ova["value"]
    # some members were in no war line-up: they got 0 from a sample of 0
    assert any(attacks.get(tag, 0) == 0 for tag in raw_runs[-1].roster)


# --- roster -----------------------------------------------------------------------------------


def test_roster_carries_each_members_latest_metrics(scenario, raw_runs):
    url, last = scenario.url, raw_runs[-1]
    rows = {
        r["player_tag"]: r
        for r in query(url, "select * from marts.roster where clan_tag = %s", scenario.clan_tag)
    }
    current = {tag for tag, r in rows.items() if r["is_current"]}
    assert current == set(last.roster)
    for tag in list(last.roster)[:5]:
        row = rows[tag]
        assert row["metrics_as_of"] == last.snapshot_at
        for column, name, window in (
            ("donations_given_7d", "donations_given", "7d"),
            ("ace_30d", "ace", "30d"),
            ("tenure_days", "tenure_days", "latest"),
        ):
            assert row[column] == metric(url, tag, name, window, last.snapshot_at)["value"]
