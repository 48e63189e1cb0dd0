"""War and capital raid marts (wars, war_attacks, war_members, capital_raid_*).

Two sources of data:

* the real API samples (/work/shared/samples) landed as in test_staging, with
  expected values read by hand from the sample files and typed in here;
* the simulated API over a few simulated days (a run every 6 h): a war fetched
  in preparation, in war and ended ends up as one row with its final state and
  its attacks counted once, across two dbt builds (the second incremental).
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from clash_pipeline.clash_api.ratelimit import RateLimiter
from clash_pipeline.ingest.fetch import ApiTarget, fetch_clans
from clash_pipeline.settings import load_settings
from clash_pipeline.transform.dbt import DbtResult, dbt_build, run_dbt
from clash_pipeline.transform.publish import publish_all
from clash_pipeline.warehouse.migrations import migrate
from tests.plugins.dbt_fixtures import land_samples

MART_MODELS = [
    "int_war_fetches_deduplicated",
    "int_war_log_entries_deduplicated",
    "wars",
    "war_attacks",
    "war_members",
    "capital_raid_seasons",
    "capital_raid_members",
]
SINGULAR_TESTS = {
    "assert_war_attacks_add_up_to_war_totals",
    "assert_raid_members_add_up_to_seasons",
}

WAR_INWAR = "currentwar/cocpy_2023-05_INWAR.envelope.json"
WAR_ENDED = "currentwar/cocpy_2023-05_WARENDED.envelope.json"
WAR_PREPARATION = "currentwar/cocpy_2023-05_PREPARATION.envelope.json"
CWL_WAR = "cwl/cocpy_2023-05_clanwarleagues-war_INWAR.envelope.json"
RAIDS_0910 = "capitalraidseasons/warfroggy_2025-09-10_2PR8R8V8P.json"
RAIDS_1008 = "capitalraidseasons/warfroggy_2025-10-08_2PR8R8V8P.json"
WARFROGGY = "#2PR8R8V8P"
SIM_CLAN = "#2QG2C08UP"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()  # noqa: S324 - an id, not security


def rows(url: str, query: str, *params) -> list[dict]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(query, params).fetchall()


def fetch_id_of(url: str, source_file: str) -> int:
    [row] = rows(
        url, "select fetch_id from staging.stg_coc__fetches where source_file = %s", source_file
    )
    return row["fetch_id"]


def build_war_marts(url: str, home: Path) -> DbtResult:
    """The war marts with their data tests, unit tests and singular tests."""
    result = dbt_build(url, home, select=MART_MODELS)
    if result.success:
        publish_all(url)  # dbt by hand: publish marts_build to marts, which the tests read
    return result


def create_staging_views(url: str, home: Path) -> None:
    run_dbt(["run", "--select", "staging"], db_url=url, home=home).raise_for_status()


def assert_build_passed(result: DbtResult) -> None:
    bad = [(n.resource_type, n.name, n.status, n.message) for n in result.nodes if n.failed]
    assert result.success and bad == [], result.error_summary or bad


@pytest.fixture(scope="module")
def dbt_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One dbt home for the module, so later invocations parse partially."""
    return tmp_path_factory.mktemp("dbt-home-wars")


@pytest.fixture(scope="module")
def samples_marts(pg_server, samples_dir: Path, dbt_home: Path) -> Iterator[tuple[str, DbtResult]]:
    """Every sample landed, staging views created, the war marts built."""
    name = f"t_marts_wars_{uuid.uuid4().hex[:8]}"
    url = pg_server.create_database(name)
    try:
        migrate(url)
        land_samples(url, samples_dir)
        create_staging_views(url, dbt_home)
        yield url, build_war_marts(url, dbt_home)
    finally:
        pg_server.drop_database(name)


@pytest.fixture(scope="module")
def db(samples_marts) -> str:
    url, result = samples_marts
    assert_build_passed(result)
    return url


# --- the build ----------------------------------------------------------------


def test_build_runs_models_tests_unit_tests_and_singular_tests(samples_marts):
    url, result = samples_marts
    assert_build_passed(result)
    built = {n.name for n in result.nodes if n.resource_type == "model"}
    assert built == set(MART_MODELS)
    assert sum(n.resource_type == "unit_test" for n in result.nodes) >= 7
    assert SINGULAR_TESTS <= {n.name for n in result.nodes if n.resource_type == "test"}
    # contracts and primary keys are in the database
    keys = rows(
        url,
        """
        select tc.table_name, string_agg(kcu.column_name, ',' order by kcu.ordinal_position)
            as columns
        from information_schema.table_constraints as tc
        join information_schema.key_column_usage as kcu using (constraint_name, table_schema)
        where tc.table_schema = 'marts' and tc.constraint_type = 'PRIMARY KEY'
        group by tc.table_name
        """,
    )
    assert {r["table_name"]: r["columns"] for r in keys} == {
        "wars": "war_id",
        "war_attacks": "war_id,attack_order",
        "war_members": "war_id,player_tag",
        "capital_raid_seasons": "raid_season_id",
        "capital_raid_members": "raid_season_id,player_tag",
    }


# --- wars from the samples ------------------------------------------------------


def test_in_war_sample_is_one_friendly_war_in_progress(db):
    [war] = rows(db, "select * from marts.wars where fetch_id = %s", fetch_id_of(db, WAR_INWAR))
    # preparation 14:42:40, battle 14:47:40-15:32:40: not the 23 h + 24 h of a regular war
    assert war["war_id"] == md5("#2GPVRU0C0|2023-05-28T14:42:40Z")
    assert (war["clan_tag"], war["opponent_tag"], war["opponent_name"]) == (
        "#2GPVRU0C0",
        "#2QCVRQCQR",
        "™ Galaxy",
    )
    assert (war["war_type"], war["state"], war["result"], war["source"]) == (
        "friendly",
        "inWar",
        None,
        "currentwar",
    )
    assert (war["team_size"], war["attacks_per_member"], war["clan_attacks_allowed"]) == (5, 1, 5)
    assert (war["clan_attacks"], war["clan_stars"], war["clan_destruction_pct"]) == (
        5,
        10,
        Decimal("90.2"),
    )
    assert (war["opponent_attacks"], war["opponent_stars"]) == (5, 13)
    assert war["end_at"] == utc(2023, 5, 28, 15, 32, 40)
    assert war["last_fetched_at"] == utc(2023, 5, 28, 15, 0)


def test_in_war_sample_attacks(db):
    war_id = md5("#2GPVRU0C0|2023-05-28T14:42:40Z")
    attacks = rows(db, "select * from marts.war_attacks where war_id = %s", war_id)
    assert len(attacks) == 10
    assert sorted(a["attack_order"] for a in attacks) == list(range(1, 11))
    ours = [a for a in attacks if a["is_our_clan_attack"]]
    assert len(ours) == 5 and {a["attacker_clan_tag"] for a in ours} == {"#2GPVRU0C0"}
    # every base was attacked once: each attack's stars are all new
    assert sum(a["new_stars"] for a in ours) == 10
    assert sum(a["new_stars"] for a in attacks if not a["is_our_clan_attack"]) == 13

    [a] = [a for a in attacks if a["attacker_tag"] == "#2PRU8RPCP"]
    assert (a["defender_tag"], a["stars"], a["destruction_pct"], a["attack_order"]) == (
        "#28R9YGPLP",
        2,
        Decimal("94"),
        7,
    )
    assert (a["previous_best_stars"], a["new_stars"], a["duration_seconds"]) == (0, 2, 179)
    assert (a["attacker_town_hall_level"], a["attacker_map_position"]) == (12, 1)
    assert (a["defender_town_hall_level"], a["defender_map_position"]) == (12, 4)
    assert a["town_hall_difference"] == 0

    [d] = [a for a in attacks if a["attacker_tag"] == "#9R08QRUU2"]  # a defence
    assert (d["is_our_clan_attack"], d["defender_tag"], d["defender_clan_tag"]) == (
        False,
        "#PCQ992GYV",
        "#2GPVRU0C0",
    )
    assert (d["stars"], d["destruction_pct"], d["attack_order"], d["new_stars"]) == (
        3,
        Decimal("100"),
        2,
        3,
    )


def test_ended_sample_gets_a_computed_result(db):
    [war] = rows(db, "select * from marts.wars where fetch_id = %s", fetch_id_of(db, WAR_ENDED))
    # 11 stars to 13: lost; the war log was not fetched, so computed
    assert (war["state"], war["result"], war["is_result_computed"]) == ("warEnded", "lose", True)
    assert (war["clan_stars"], war["opponent_stars"]) == (11, 13)
    assert war["preparation_start_at"] == utc(2023, 5, 28, 15, 48, 14)


def test_preparation_sample_has_a_line_up_and_no_attacks(db):
    [war] = rows(
        db, "select * from marts.wars where fetch_id = %s", fetch_id_of(db, WAR_PREPARATION)
    )
    assert (war["war_type"], war["state"], war["team_size"], war["attacks_per_member"]) == (
        "regular",
        "preparation",
        50,
        2,
    )
    assert (war["clan_tag"], war["opponent_tag"]) == ("#RY8GYCLY", "#29GQ9PRUV")
    members = rows(db, "select * from marts.war_members where war_id = %s", war["war_id"])
    assert len(members) == 100
    assert sum(m["is_our_clan_member"] for m in members) == 50
    assert {(m["attacks_allowed"], m["attacks_used"]) for m in members} == {(2, 0)}
    [m] = [m for m in members if m["player_tag"] == "#2Y9G09CY8"]
    assert (m["town_hall_level"], m["map_position"], m["is_our_clan_member"]) == (15, 1, True)
    assert rows(db, "select * from marts.war_attacks where war_id = %s", war["war_id"]) == []


def test_cwl_war_sample(db):
    [war] = rows(db, "select * from marts.wars where fetch_id = %s", fetch_id_of(db, CWL_WAR))
    assert war["war_id"] == md5("#29Y8PRCJR|2023-05-09T08:57:31Z")
    assert (war["war_type"], war["state"], war["source"], war["clan_tag"]) == (
        "cwl",
        "inWar",
        "cwl_war",
        "#29Y8PRCJR",
    )
    # CWL war bodies send no attacksPerMember: one attack each
    assert (war["team_size"], war["attacks_per_member"], war["clan_attacks_allowed"]) == (15, 1, 15)
    assert (war["clan_stars"], war["opponent_stars"], war["result"]) == (28, 29, None)
    attacks = rows(db, "select * from marts.war_attacks where war_id = %s", war["war_id"])
    assert len(attacks) == 30
    [a] = [a for a in attacks if a["attack_order"] == 1]
    assert (a["attacker_tag"], a["defender_tag"], a["stars"], a["is_our_clan_attack"]) == (
        "#J9C0JC88",
        "#PUY8LLU8J",
        3,
        True,
    )
    assert (a["defender_map_position"], a["new_stars"]) == (16, 3)
    members = rows(db, "select * from marts.war_members where war_id = %s", war["war_id"])
    assert len(members) == 30
    assert {(m["attacks_allowed"], m["attacks_used"]) for m in members} == {(1, 1)}


def test_war_log_wars_are_keyed_by_end_time_and_summaries_are_left_out(db):
    wars = rows(db, "select * from marts.wars where clan_tag = %s", WARFROGGY)
    # 119 war log entries, 18 of them CWL season summaries
    assert len(wars) == 101
    assert {(w["source"], w["state"], w["war_type"]) for w in wars} == {
        ("warlog", "warEnded", "regular")
    }
    [war] = [w for w in wars if w["opponent_tag"] == "#8P9Q9Y89"]
    assert war["war_id"] == md5(f"{WARFROGGY}|end 2024-11-29T19:56:21Z")
    assert (war["result"], war["is_result_computed"], war["opponent_name"]) == (
        "lose",
        False,
        "АкадемияRU",
    )
    assert (war["team_size"], war["attacks_per_member"], war["clan_attacks_allowed"]) == (20, 2, 40)
    assert (war["clan_stars"], war["opponent_stars"], war["clan_exp_earned"]) == (54, 58, 214)
    assert (war["preparation_start_at"], war["opponent_attacks"]) == (None, None)


# --- capital raids from the samples ---------------------------------------------


def test_capital_raid_seasons_latest_fetch_wins(db):
    seasons = rows(db, "select * from marts.capital_raid_seasons where clan_tag = %s", WARFROGGY)
    # weekends 2025-04-25 .. 2025-10-03 across two fetches of 20 each
    assert len(seasons) == 24
    [s] = [s for s in seasons if s["start_at"] == utc(2025, 9, 5, 7)]
    assert s["raid_season_id"] == md5(f"{WARFROGGY}|2025-09-05T07:00:00Z")
    assert s["fetch_id"] == fetch_id_of(db, RAIDS_1008)  # listed again on 2025-10-08
    assert (s["state"], s["end_at"]) == ("ended", utc(2025, 9, 8, 7))
    assert (s["capital_total_loot"], s["total_attacks"], s["raids_completed"]) == (168289, 42, 5)
    assert (s["enemy_districts_destroyed"], s["offensive_reward"], s["defensive_reward"]) == (
        16,
        193,
        202,
    )


def test_capital_raid_members_of_2025_09_05(db):
    members = rows(
        db,
        "select * from marts.capital_raid_members where raid_season_id = %s",
        md5(f"{WARFROGGY}|2025-09-05T07:00:00Z"),
    )
    by_tag = {m["player_tag"]: m for m in members}
    assert len(by_tag) == 7
    # the 2025-10-08 fetch lists this weekend without members: they come from 2025-09-10
    assert {m["fetch_id"] for m in members} == {fetch_id_of(db, RAIDS_0910)}
    frog = by_tag["#UL0LRJ02"]
    assert (frog["player_name"], frog["attacks"], frog["attack_limit"]) == ("War.Frog", 6, 5)
    assert (frog["bonus_attack_limit"], frog["attacks_allowed"]) == (1, 6)
    assert frog["capital_resources_looted"] == 21263
    # five hits on Capital Peak of raid 1 (31, 54, 60, 64, 100 %) and 79 % on
    # Balloon Lagoon of raid 2: one district finished, none in one hit
    assert (frog["logged_attacks"], frog["finisher_count"], frog["one_hit_count"]) == (6, 1, 0)
    # raid 2: finished Balloon Lagoon (after 79 %), Dragon Cliffs (after 34 %),
    # Golem Quarry (after 52 %) and Goblin Mines in its only attack
    cosmic = by_tag["#YYVUCPQ90"]
    assert (cosmic["logged_attacks"], cosmic["finisher_count"], cosmic["one_hit_count"]) == (
        6,
        4,
        1,
    )
    assert cosmic["capital_resources_looted"] == 24996
    # raid 1: 37 % on Barbarian Camp, Builder's Workshop 30-89-100, Skeleton Park 36-99
    froggy = by_tag["#G9QVRYC2Y"]
    assert (froggy["logged_attacks"], froggy["finisher_count"], froggy["one_hit_count"]) == (
        6,
        1,
        0,
    )
    assert sum(m["finisher_count"] for m in members) == 16  # enemyDistrictsDestroyed


def test_capital_raid_members_of_2025_10_03(db):
    members = rows(
        db,
        "select * from marts.capital_raid_members where raid_season_id = %s",
        md5(f"{WARFROGGY}|2025-10-03T07:00:00Z"),
    )
    by_tag = {m["player_tag"]: m for m in members}
    assert len(by_tag) == 8
    assert by_tag["#G9QVRYC2Y"]["capital_resources_looted"] == 33001
    assert by_tag["#UL0LRJ02"]["capital_resources_looted"] == 32147
    sirojiddin = by_tag["#QULRCQ02G"]
    assert (sirojiddin["attacks"], sirojiddin["attacks_allowed"]) == (3, 6)
    assert sum(m["attacks"] for m in members) == 45
    assert sum(m["capital_resources_looted"] for m in members) == 189620


# --- the simulator ----------------------------------------------------------------


def _fetch_every_6_hours(settings, db_url: str, sim, runs: int) -> None:
    target = ApiTarget(
        base_url=sim.base_url, token=sim.token, source="simulator", clock=sim.clock.now
    )
    for _ in range(runs):
        limiter = RateLimiter(requests_per_second=1000, max_concurrency=16)
        # full: every war endpoint in every run, as the expected fetch times assume (the
        # planner's war decisions: test_planner)
        [outcome] = asyncio.run(
            fetch_clans(settings, db_url, [SIM_CLAN], target, limiter=limiter, full=True)
        )
        assert outcome.status == "succeeded", outcome.error
        sim.clock.advance(timedelta(hours=6))


def _final_war_bodies(db_url: str) -> dict[str, dict]:
    """The latest landed currentwar body of each war, by preparation start."""
    bodies = rows(
        db_url,
        """
        select distinct on (p.body ->> 'preparationStartTime') p.body
        from raw.fetch_log as f
        join raw.payloads as p using (payload_hash)
        where f.endpoint = 'currentwar' and p.body ->> 'state' <> 'notInWar'
        order by p.body ->> 'preparationStartTime', f.fetched_at desc
        """,
    )
    return {b["body"]["preparationStartTime"]: b["body"] for b in bodies}


def _attacks_in(body: dict) -> int:
    return sum(
        len(m.get("attacks") or []) for side in ("clan", "opponent") for m in body[side]["members"]
    )


def test_simulated_wars_fetched_in_every_state_are_one_row_each(
    tmp_path, migrated_db_url, sim_api, dbt_home
):
    url = migrated_db_url
    settings = load_settings(clash_pipeline_home=tmp_path, coc_max_retries=1, coc_timeout_seconds=5)
    create_staging_views(url, dbt_home)

    # The league's last round (battle 11-08 08:00 -> 11-09 08:00), then, after the
    # league, a regular war: preparation 11-12 14:18, battle 11-13 13:18 -> 11-14 13:18.
    sim_api.clock.set(utc(2026, 11, 8, 14))
    _fetch_every_6_hours(settings, url, sim_api, runs=4)
    sim_api.clock.set(utc(2026, 11, 12, 14))
    _fetch_every_6_hours(settings, url, sim_api, runs=6)  # to 11-13 20:00: in war
    first = build_war_marts(url, dbt_home)
    assert_build_passed(first)

    war_id = md5(f"{SIM_CLAN}|2026-11-12T14:18:53Z")
    [during] = rows(url, "select * from marts.wars where war_id = %s", war_id)
    assert (during["state"], during["result"]) == ("inWar", None)
    attacks_during = rows(
        url, "select count(*) as n from marts.war_attacks where war_id = %s", war_id
    )
    assert attacks_during[0]["n"] == during["clan_attacks"] + during["opponent_attacks"]

    _fetch_every_6_hours(settings, url, sim_api, runs=5)  # to 11-15 02:00: ended, in the war log
    second = build_war_marts(url, dbt_home)
    assert_build_passed(second)

    # the regular war was fetched in all three states, and is one row
    states = rows(
        url,
        """
        select array_agg(distinct state order by state) as states, count(*) as fetches
        from staging.stg_coc__wars
        where source_endpoint = 'currentwar' and preparation_start_at = %s
        """,
        utc(2026, 11, 12, 14, 18, 53),
    )
    assert states[0]["states"] == ["inWar", "preparation", "warEnded"]
    assert states[0]["fetches"] == 9
    [war] = rows(url, "select * from marts.wars where war_id = %s", war_id)
    final = _final_war_bodies(url)["20261112T141853.000Z"]
    assert final["state"] == "warEnded"
    assert (war["state"], war["source"], war["has_war_log_entry"]) == (
        "warEnded",
        "currentwar",
        True,
    )
    assert war["result"] in ("win", "lose", "tie") and not war["is_result_computed"]
    assert (war["clan_attacks"], war["clan_stars"]) == (
        final["clan"]["attacks"],
        final["clan"]["stars"],
    )
    assert war["last_fetched_at"] == utc(2026, 11, 15, 2)

    # its attacks are counted once: as many rows as attacks in the final body
    attacks = rows(url, "select * from marts.war_attacks where war_id = %s", war_id)
    assert len(attacks) == _attacks_in(final) > attacks_during[0]["n"]
    # the incremental build rewrote this war's attacks only (the league's are unchanged)
    assert second.node("war_attacks").rows_affected == len(attacks)
    assert len({a["attack_order"] for a in attacks}) == len(attacks)
    assert {a["fetch_id"] for a in attacks} == {war["fetch_id"]}
    assert sum(a["new_stars"] for a in attacks if a["is_our_clan_attack"]) == war["clan_stars"]
    assert sum(not a["is_our_clan_attack"] for a in attacks) == war["opponent_attacks"]
    members = rows(url, "select * from marts.war_members where war_id = %s", war_id)
    assert len(members) == 2 * war["team_size"]
    assert sum(m["attacks_used"] for m in members if m["is_our_clan_member"]) == war["clan_attacks"]

    # the league: one row per round for our clan (the group's other wars are not ours)
    cwl = rows(url, "select * from marts.wars where war_type = 'cwl' order by preparation_start_at")
    assert len(cwl) == 7
    assert {w["clan_tag"] for w in cwl} == {SIM_CLAN}
    assert len({w["war_tag"] for w in cwl}) == 7
    assert {(w["state"], w["source"]) for w in cwl} == {("warEnded", "cwl_war")}
    assert all(w["result"] in ("win", "lose", "tie") and w["is_result_computed"] for w in cwl)
    assert [w["preparation_start_at"] for w in cwl] == [
        utc(2026, 11, day, 8) for day in range(1, 8)
    ]
    # the last round was fetched in war, then ended: one row, its final attacks
    last = cwl[-1]
    cwl_fetches = rows(
        url,
        "select count(*) as n from staging.stg_coc__wars where war_tag = %s",
        last["war_tag"],
    )
    assert cwl_fetches[0]["n"] >= 2
    [count] = rows(
        url, "select count(*) as n from marts.war_attacks where war_id = %s", last["war_id"]
    )
    assert count["n"] == last["clan_attacks"] + last["opponent_attacks"]

    # the raid weekend under way (Friday 11-13 07:00): one row, the latest fetch
    [season] = rows(
        url,
        "select * from marts.capital_raid_seasons where start_at = %s",
        utc(2026, 11, 13, 7),
    )
    assert (season["state"], season["fetched_at"]) == ("ongoing", utc(2026, 11, 15, 2))
    [totals] = rows(
        url,
        """
        select sum(attacks) as attacks, sum(capital_resources_looted) as loot
        from marts.capital_raid_members where raid_season_id = %s
        """,
        season["raid_season_id"],
    )
    assert (totals["attacks"], totals["loot"]) == (
        season["total_attacks"],
        season["capital_total_loot"],
    )
