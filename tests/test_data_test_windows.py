"""Data-test windows end at the newest data, per clan; freshness means "landed recently".

One warehouse for the module (``history``), built from simulated dates months
before the wall clock, the way a demo or a backfill leaves it:

* clan A ("active") fetched every 12 h for 6 simulated days (12 runs, the newest
  at START + 5.5 days);
* clan B ("stopped") fetched with it for the first 2 days only (4 runs, the
  newest at START + 1.5 days: 4 days before A's newest);
* ``dbt build`` of the whole project with the default ``staging_test_days`` (3).

With N = 3, A's window is its runs from START + 2.5 days (7 runs) and B's its
4 runs; a window on now() would be empty, and one anchored on the newest data of
all clans would leave B out.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from clash_pipeline.clash_api.ratelimit import RateLimiter
from clash_pipeline.ingest.fetch import ApiTarget, fetch_clans
from clash_pipeline.settings import load_settings
from clash_pipeline.simulator import SimulatedClashApi
from clash_pipeline.simulator.codec import random_tag
from clash_pipeline.transform.dbt import DbtResult, run_dbt
from clash_pipeline.warehouse.migrations import migrate
from tests.plugins.sim_fixtures import SIM_SEED, SIM_TOKEN
from tests.test_dbt_conventions import database_columns, undocumented_columns

START = datetime(2026, 3, 2, 8, tzinfo=UTC)
STEP = timedelta(hours=12)
ACTIVE_RUNS, STOPPED_RUNS = 12, 4
DAYS = 3  # staging_test_days, dbt_project.yml's default
ACTIVE = random_tag(SIM_SEED, "windows-active", 0)
STOPPED = random_tag(SIM_SEED, "windows-stopped", 0)


@dataclass
class History:
    url: str
    home: Path
    build: DbtResult
    run_ids: dict[str, list[uuid.UUID]]  # clan -> its runs, oldest first
    windows: dict[str, str]  # the build's windowed data tests -> their relation


def land(url: str, sim: SimulatedClashApi, home: Path, clans: list[str]) -> list[uuid.UUID]:
    settings = load_settings(clash_pipeline_home=home, coc_max_retries=1, coc_timeout_seconds=5)
    target = ApiTarget(sim.base_url, sim.token, "simulator", sim.clock.now)
    limiter = RateLimiter(requests_per_second=2000, max_concurrency=32)
    outcomes = asyncio.run(fetch_clans(settings, url, clans, target, limiter=limiter))
    assert [o.status for o in outcomes] == ["succeeded"] * len(clans), [o.error for o in outcomes]
    return [o.run_id for o in outcomes]


def dbt(history: History | tuple[str, Path], *args: str, **vars: Any) -> DbtResult:
    url, home = (history.url, history.home) if isinstance(history, History) else history
    return run_dbt(list(args), db_url=url, home=home, vars=vars or None)


@pytest.fixture(scope="module")
def history(pg_server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[History]:
    name = f"t_windows_{uuid.uuid4().hex[:8]}"
    url = pg_server.create_database(name)
    home = tmp_path_factory.mktemp("windows")
    try:
        migrate(url)
        run_ids: dict[str, list[uuid.UUID]] = {ACTIVE: [], STOPPED: []}
        with SimulatedClashApi(seed=SIM_SEED, token=SIM_TOKEN) as sim:
            sim.clock.set(START)
            for k in range(ACTIVE_RUNS):
                clans = [ACTIVE, STOPPED] if k < STOPPED_RUNS else [ACTIVE]
                for clan, run_id in zip(clans, land(url, sim, home, clans), strict=True):
                    run_ids[clan].append(run_id)
                sim.clock.advance(STEP)
        build = dbt((url, home), "build")
        assert build.success, build.error_summary
        yield History(url, home, build, run_ids, windowed_relations(home))
    finally:
        pg_server.drop_database(name)


def query(url: str, sql: str, *params: Any) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def opening_paren(sql: str, end: int) -> int:
    """The position of the "(" that the ")" at ``end`` closes."""
    depth = 0
    for i in range(end, -1, -1):
        depth += {")": 1, "(": -1}.get(sql[i], 0)
        if depth == 0:
            return i
    raise ValueError(f"unbalanced parentheses before {end}: {sql[:200]}")


def windowed_relations(home: Path) -> dict[str, str]:
    """Each data test of the last invocation with a `where` -> the filtered relation it read.

    The relation is the ``(select * from <model> as tested where ...)`` that
    get_where_subquery (macros/recent_window.sql) put in the test's compiled SQL.
    """
    results = json.loads((home / "dbt" / "target" / "run_results.json").read_text())
    found = {}
    for result in results["results"]:
        sql = result.get("compiled_code") or ""
        end = sql.find(") dbt_subquery")
        if not result["unique_id"].startswith("test.") or end < 0:
            continue
        found[result["unique_id"]] = sql[opening_paren(sql, end) : end + 1]
    return found


def count(url: str, relation: str) -> int:
    [(n,)] = query(url, f"select count(*) from {relation} as counted")
    return int(n)


# --- the windows ----------------------------------------------------------------------------


def test_the_history_is_in_the_past(history):
    [(newest, now)] = query(history.url, "select max(snapshot_at), now() from raw.fetch_runs")
    assert newest == START + (ACTIVE_RUNS - 1) * STEP
    assert newest < now - timedelta(days=DAYS)  # a window on now() would be empty


def test_every_windowed_data_test_reads_rows(history):
    """155 of 379 tests checked zero rows on past data: now none with a model that has rows."""
    assert len(history.windows) > 150  # staging, intermediate and mart tests
    empty = []
    for test, relation in history.windows.items():
        model = re.match(r"\(select \* from (\S+) as tested", relation)
        assert model, relation
        if count(history.url, relation) == 0 and count(history.url, model.group(1)) > 0:
            empty.append(test)
    assert empty == []


def test_each_clan_has_its_own_window(history):
    # staging: the window's runs, each clan's last 3 days: all 4 of B's, 7 of A's 12
    windows = history.windows
    [relation] = [
        r for t, r in windows.items() if t.split(".")[2] == "unique_stg_coc__clans_fetch_id"
    ]
    runs = query(history.url, f"select clan_tag, run_id from {relation} as w")
    per_clan = {clan: {run for c, run in runs if c == clan} for clan in (ACTIVE, STOPPED)}
    assert per_clan[STOPPED] == set(history.run_ids[STOPPED])
    assert per_clan[ACTIVE] == set(history.run_ids[ACTIVE][-7:])
    # a mart: each clan's snapshots of its own last 3 days
    snapshots = [
        r
        for t, r in windows.items()
        if t.split(".")[2].startswith("unique_combination_of_columns_member_snapshot_stats")
    ]
    assert len(snapshots) == 1, sorted(windows)
    rows = query(
        history.url,
        f"select clan_tag, min(snapshot_at), count(distinct snapshot_id)"
        f" from {snapshots[0]} as w group by clan_tag order by clan_tag",
    )
    assert {clan: (first, n) for clan, first, n in rows} == {
        ACTIVE: (START + (ACTIVE_RUNS - 7) * STEP, 7),
        STOPPED: (START, STOPPED_RUNS),
    }


def test_staging_test_days_0_tests_all_history(history):
    result = dbt(history, "test", "--select", "stg_coc__clans", staging_test_days=0)
    assert result.success, result.error_summary
    # every run of both clans, through the same tests
    compiled = windowed_relations(history.home)
    [relation] = [r for t, r in compiled.items() if "unique_stg_coc__clans_fetch_id" in t]
    assert count(history.url, relation) == ACTIVE_RUNS + STOPPED_RUNS


# --- bad rows -------------------------------------------------------------------------------


def _failed_tests(result: DbtResult) -> list[str]:
    return sorted(n.name for n in result.nodes if n.resource_type == "test" and n.failed)


@pytest.fixture
def bad_stats_row(history) -> Iterator[Any]:
    """Make one member_snapshot_stats row of a given run's snapshot impossible; undone after."""
    changed: list[tuple] = []

    def spoil(run_id: uuid.UUID) -> None:
        rows = query(
            history.url,
            """
            update marts_build.member_snapshot_stats as stats
            set updated_at = stats.snapshot_at + interval '1 day'
            from (
                select snapshot_id, player_tag, updated_at
                from marts_build.member_snapshot_stats
                where run_id = %s
                order by player_tag
                limit 1
            ) as one
            where stats.snapshot_id = one.snapshot_id and stats.player_tag = one.player_tag
            returning one.snapshot_id, one.player_tag, one.updated_at
            """,
            run_id,
        )
        assert len(rows) == 1
        changed.extend(rows)

    yield spoil
    for snapshot_id, player_tag, updated_at in changed:
        query(
            history.url,
            "update marts_build.member_snapshot_stats set updated_at = %s"
            " where snapshot_id = %s and player_tag = %s",
            updated_at,
            snapshot_id,
            player_tag,
        )


def test_a_bad_row_in_a_stopped_clans_newest_days_fails_its_test(history, bad_stats_row):
    # B's newest run is 4 days before A's and months before now(): outside both
    # a now() window and an all-clans one, inside B's own
    bad_stats_row(history.run_ids[STOPPED][-1])
    result = dbt(history, "test", "--select", "member_snapshot_stats")
    [failed] = _failed_tests(result)
    assert failed.startswith("expression_is_true_member_snapshot_stats")


def test_a_bad_row_before_the_window_fails_only_over_all_history(history, bad_stats_row):
    bad_stats_row(history.run_ids[ACTIVE][0])  # 5.5 days before A's newest run
    assert dbt(history, "test", "--select", "member_snapshot_stats").success
    result = dbt(history, "test", "--select", "member_snapshot_stats", staging_test_days=0)
    [failed] = _failed_tests(result)
    assert failed.startswith("expression_is_true_member_snapshot_stats")


def test_a_bad_staged_value_in_a_stopped_clans_newest_run_fails_its_test(history):
    # the clan body of B's newest run says a clan type the API never sends
    [(payload_hash, body)] = query(
        history.url,
        "select p.payload_hash, p.body from raw.fetch_log as l"
        " join raw.payloads as p using (payload_hash)"
        " where l.run_id = %s and l.endpoint = 'clan'",
        history.run_ids[STOPPED][-1],
    )
    bad = dict(body, type="bogus")
    query(
        history.url,
        "update raw.payloads set body = %s::jsonb where payload_hash = %s",
        json.dumps(bad),
        payload_hash,
    )
    try:
        result = dbt(history, "test", "--select", "stg_coc__clans")
    finally:
        query(
            history.url,
            "update raw.payloads set body = %s::jsonb where payload_hash = %s",
            json.dumps(body),
            payload_hash,
        )
    # an unknown enum value is a warning (severity warn), on the one bad row
    outcomes = {n.name: (n.status, n.failures) for n in result.nodes if n.resource_type == "test"}
    assert outcomes["accepted_values_stg_coc__clans_clan_type__open__inviteOnly__closed"] == (
        "warn",
        1,
    )
    assert {status for status, _ in outcomes.values()} == {"pass", "warn"}


# --- freshness ------------------------------------------------------------------------------


def _freshness(history: History) -> dict[str, str]:
    result = dbt(history, "source", "freshness")
    return {
        n.unique_id.removeprefix("source.clash_pipeline."): n.status
        for n in result.nodes
        if n.resource_type == "source"  # not the on-run-start hook
    }


def test_freshness_is_the_landing_time_not_the_time_the_data_describes(history):
    # landed minutes ago, describing March: fresh
    assert _freshness(history) == {
        "coc.fetch_runs": "pass",
        "coc.fetch_log": "pass",
        "ops.ingest_runs": "pass",
        "ops.ingest_logs": "pass",
    }
    # nothing landed for 7 hours: warn (6 h); for 30 hours: error (24 h raw, 25 h ops)
    landed = {
        "raw.fetch_runs": "landed_at",
        "raw.fetch_log": "landed_at",
        "ops.ingest_runs": "started_at",
        "ops.ingest_logs": "started_at",
    }
    moved = dict.fromkeys(landed, 0)
    try:
        for hours, expected in ((7, "warn"), (23, "error")):
            for table, column in landed.items():
                query(
                    history.url,
                    f"update {table} set {column} = {column} - make_interval(hours => %s)",
                    hours,
                )
                moved[table] += hours
            statuses = _freshness(history)
            assert statuses == dict.fromkeys(statuses, expected), (hours, statuses)
    finally:
        for table, column in landed.items():
            query(
                history.url,
                f"update {table} set {column} = {column} + make_interval(hours => %s)",
                moved[table],
            )


# --- documentation --------------------------------------------------------------------------


def test_every_column_of_every_built_model_and_source_is_described(history):
    manifest = json.loads((history.home / "dbt" / "target" / "manifest.json").read_text())
    db_columns = database_columns(
        history.url, ["raw", "ops", "staging", "intermediate", "marts_build", "reference"]
    )
    assert ("marts_build", "member_snapshot_stats") in db_columns
    assert undocumented_columns(manifest, db_columns) == []
