"""The Prefect pipeline: phases and checkpoints, differential writes, failures, locks, schedules.

Real Prefect (one temporary server for the session), real PostgreSQL, the real
simulator on loopback and real dbt. Every test gets a copy of one warehouse that
already had a good run at PIPELINE_T0 (see tests/plugins/prefect_fixtures.py),
so most tests pay one incremental dbt build per run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest

from clash_pipeline.simulator import SimulatedClashApi
from clash_pipeline.transform import restore
from clash_pipeline.warehouse.locks import AdvisoryLock, clan_lock_key
from tests.plugins.prefect_fixtures import (
    FAULT_ENV,
    FAULT_SECONDS_ENV,
    PIPELINE_CLAN,
    PIPELINE_SEED,
    PIPELINE_T0,
    PIPELINE_TOKEN,
    REPO,
    mart_checksums,
    run_pipeline,
)
from tests.plugins.prefect_fixtures import pipeline_options as change_driven_options


def pipeline_options(project, **overrides):
    """Every request in every run: these tests count requests, retries and profiles, and
    change one profile alone (the planner's flow runs: the change-driven test below)."""
    return change_driven_options(project, **{"full": True, **overrides})


pytestmark = pytest.mark.slow

STEPS = ["upsert_members", "write_snapshot", "write_stats", "metrics"]


@pytest.fixture
def sim():
    """The simulated API, frozen at the time of the warehouse's first run."""
    with SimulatedClashApi(seed=PIPELINE_SEED, token=PIPELINE_TOKEN, start_time=PIPELINE_T0) as api:
        yield api


def _rows(db_url, query, *params):
    with psycopg.connect(db_url, autocommit=True) as conn:
        return conn.execute(query, params).fetchall()


def _one(db_url, query, *params):
    return _rows(db_url, query, *params)[0][0]


def _logs(db_url, run_id):
    return _rows(
        db_url,
        """
        select phase, step, status, attempt, rows_written, rows_changed, requests, retries,
               error, details
        from ops.ingest_logs where run_id = %s order by log_id
        """,
        run_id,
    )


def _assert_restored(db_url, before):
    assert mart_checksums(db_url) == before
    assert _one(db_url, "select count(*) from ops.transform_undo") == 0
    assert _one(db_url, "select count(*) from ops.transform_builds where status = 'running'") == 0
    leftovers = _one(
        db_url,
        "select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace"
        " where n.nspname = 'ops_restore'",
    )
    assert leftovers == 0


# ------------------------------------------------------------------------ a good run


def test_good_run_writes_a_checkpoint_per_phase_and_step_and_is_differential(
    warehouse, sim, pipeline_project
):
    """Same data as the warehouse's first run: 0 members changed, updated_at untouched."""
    sim.clock.advance(timedelta(seconds=1))  # a new snapshot of identical responses
    updated_before = dict(
        _rows(
            warehouse,
            "select player_tag, updated_at from marts.members where clan_tag = %s",
            PIPELINE_CLAN,
        )
    )
    report = run_pipeline(sim, pipeline_options(pipeline_project, transform_mode="build"))

    [run] = report.runs
    assert run.status == "succeeded", run.error
    assert report.build is not None and report.build.scope == "incremental"
    assert report.build.nodes.get("pass", 0) > 50  # the marts' data tests ran

    logs = _logs(warehouse, run.run_id)
    assert [(phase, step) for phase, step, *_ in logs] == [
        ("fetch", None),
        ("land", None),
        ("transform", None),
        *[("transform", step) for step in STEPS],
        ("monitor", None),
    ]
    by_step = {(phase, step): row for phase, step, *row in logs}
    assert all(row[0] in ("succeeded", "skipped") for row in by_step.values())
    fetch = by_step[("fetch", None)]
    assert fetch[4] == run.requests > 40  # requests
    # nothing changed since the first run: no member row rewritten
    members_step = by_step[("transform", "upsert_members")]
    assert members_step[3] == 0  # rows_changed
    assert members_step[7]["rows_affected_batch"] == 0
    assert run.rows_changed == 0
    # a new snapshot and its member stats were written
    assert by_step[("transform", "write_snapshot")][2] == 1
    assert by_step[("transform", "write_stats")][2] == run.members
    updated_after = dict(
        _rows(
            warehouse,
            "select player_tag, updated_at from marts.members where clan_tag = %s",
            PIPELINE_CLAN,
        )
    )
    assert updated_after == updated_before

    ingest_run = _rows(
        warehouse,
        """
        select status, kind, trigger, clan_tags, flow_run_id, ingestion_version,
               schema_version, error, rows_changed, summary -> 'health' ->> 'status',
               (summary -> 'health' ->> 'members_in_snapshot')::int, finished_at >= started_at
        from ops.ingest_runs where run_id = %s
        """,
        run.run_id,
    )[0]
    assert ingest_run[:4] == ("succeeded", "ingest", "test", [PIPELINE_CLAN])
    assert ingest_run[4] == report.flow_run_id is not None
    assert ingest_run[5] and ingest_run[6]
    assert ingest_run[7] is None
    assert ingest_run[8:11] == (0, "ok", run.members)
    assert ingest_run[11] is True

    from prefect.artifacts import Artifact

    artifact = Artifact.get("clash-ingest-summary")
    assert artifact is not None and str(run.run_id) in str(artifact.data)

    # Re-running the transform on the same raw data changes no mart (idempotent).
    from clash_pipeline.orchestration.options import ApiSpec
    from clash_pipeline.orchestration.phases.context import resolve_context
    from clash_pipeline.orchestration.phases.transform import publish, transform

    before = mart_checksums(warehouse)
    api = ApiSpec(base_url=sim.base_url, token=PIPELINE_TOKEN, source="simulator")
    options = pipeline_options(pipeline_project, transform_mode="run")
    ctx, _ = resolve_context([PIPELINE_CLAN], api, options)
    outcome = transform(ctx, [])
    publish(ctx, outcome)
    assert outcome.scope == "incremental"
    assert mart_checksums(warehouse) == before


def test_a_change_driven_flow_run_skips_unchanged_members_and_says_so(
    warehouse, sim, pipeline_project
):
    """The flow's fetch plans from raw (options.full false): identical data, no profile."""
    sim.clock.advance(timedelta(seconds=1))
    report = run_pipeline(sim, pipeline_options(pipeline_project, full=False))

    [run] = report.runs
    assert run.status == "succeeded", run.error
    roster = _one(
        warehouse,
        "select jsonb_array_length(p.body -> 'memberList') from raw.fetch_log as f"
        " join raw.payloads as p using (payload_hash) where f.run_id = %s and endpoint = 'clan'",
        run.run_id,
    )
    assert run.members == 0 and run.skipped["player"] == roster
    [(details, skipped)] = _rows(
        warehouse,
        "select l.details, r.skipped_requests from ops.ingest_logs as l"
        " join raw.fetch_runs as r using (run_id) where l.run_id = %s and l.phase = 'fetch'",
        run.run_id,
    )
    assert details["plan"] == "changes" and details["skipped"] == run.skipped
    # the health mart's roster is the member list, not the profiles fetched (none here)
    assert (details["roster"], details["members"]) == (roster, 0)
    assert skipped == sum(run.skipped.values()) > roster


def test_one_changed_member_is_the_only_row_rewritten(warehouse, sim, pipeline_project):
    [member] = _rows(
        warehouse,
        "select player_tag, updated_at, war_stars from marts.members"
        " where clan_tag = %s and is_current order by player_tag limit 1",
        PIPELINE_CLAN,
    )
    others_before = dict(
        _rows(
            warehouse,
            "select player_tag, updated_at from marts.members"
            " where clan_tag = %s and player_tag <> %s",
            PIPELINE_CLAN,
            member[0],
        )
    )
    # one war star more in this member's profile; every other response stays identical
    # (a second later no simulated member has played). A profile that 404s would not do:
    # the marts carry the member's last profile forward (has_profile stays true).
    world_player = sim.world.player

    def one_more_star(tag: str, at: datetime) -> dict[str, Any] | None:
        body = world_player(tag, at)
        if tag == member[0] and body is not None:
            body = {**body, "warStars": body["warStars"] + 1}
        return body

    sim.clock.advance(timedelta(seconds=1))
    sim.world.player = one_more_star
    try:
        report = run_pipeline(sim, pipeline_options(pipeline_project, transform_mode="run"))
    finally:
        del sim.world.player  # the class's method again

    [run] = report.runs
    assert run.status == "succeeded", run.error
    assert run.rows_changed == 1
    members_step = [row for row in _logs(warehouse, run.run_id) if row[1] == "upsert_members"][0]
    assert members_step[5] == 1 and members_step[9]["rows_affected_batch"] == 1
    [(stars, updated_at)] = _rows(
        warehouse,
        "select war_stars, updated_at from marts.members where clan_tag = %s and player_tag = %s",
        PIPELINE_CLAN,
        member[0],
    )
    assert stars == member[2] + 1 and updated_at > member[1]
    others_after = dict(
        _rows(
            warehouse,
            "select player_tag, updated_at from marts.members"
            " where clan_tag = %s and player_tag <> %s",
            PIPELINE_CLAN,
            member[0],
        )
    )
    assert others_after == others_before


# --------------------------------------------------------------------------- faults


def test_transient_api_errors_are_retried_then_the_run_succeeds(warehouse, sim, pipeline_project):
    """Scripted 500s: the client retries them. Maintenance: the fetch phase is retried."""
    from clash_pipeline.simulator.faults import ScriptedFault

    sim.faults.update(
        script=[ScriptedFault(path_contains="/players/", status=500, count=3)],
        retry_after_seconds=0.1,
        maintenance=True,
    )

    def end_maintenance_after_first_attempt():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if _one(warehouse, "select count(*) from ops.ingest_logs where status = 'retrying'"):
                sim.faults.update(maintenance=False)
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=end_maintenance_after_first_attempt, daemon=True)
    watcher.start()
    report = run_pipeline(
        sim, pipeline_options(pipeline_project, retry_delay_seconds=1, transform_mode="run")
    )
    watcher.join(timeout=5)

    [run] = report.runs
    assert run.status == "succeeded", run.error
    fetch_rows = [row for row in _logs(warehouse, run.run_id) if row[0] == "fetch"]
    assert [(row[2], row[3]) for row in fetch_rows] == [("retrying", 1), ("succeeded", 2)]
    assert fetch_rows[0][8]["status"] == 503
    assert fetch_rows[1][7] >= 3  # request-level retries of the scripted 500s
    assert run.retries >= 3
    assert (
        _one(
            warehouse,
            "select count(*) from raw.fetch_log"
            " where run_id = %s and retries > 0 and http_status = 200",
            run.run_id,
        )
        >= 3
    )


def test_missing_clan_fails_the_run_without_retry_and_leaves_the_marts(
    warehouse, sim, pipeline_project
):
    before = mart_checksums(warehouse)
    sim.faults.update(missing_clans={PIPELINE_CLAN})

    # the single-clan flow runs the same phases
    report = run_pipeline(
        sim, pipeline_options(pipeline_project, fetch_retries=2), single_clan_flow=True
    )

    [run] = report.runs
    assert run.status == "failed"
    assert run.error["phase"] == "fetch" and run.error["status"] == 404
    assert report.build is None
    logs = _logs(warehouse, run.run_id)
    assert [(row[0], row[2], row[3]) for row in logs] == [
        ("fetch", "failed", 1),  # a 404 is not retried
        ("monitor", "succeeded", 1),
    ]
    status, error = _rows(
        warehouse, "select status, error from ops.ingest_runs where run_id = %s", run.run_id
    )[0]
    assert status == "failed" and error["phase"] == "fetch" and "not" in error["message"]
    assert _one(warehouse, "select count(*) from raw.fetch_runs where run_id = %s", run.run_id) == 0
    _assert_restored(warehouse, before)

    # nothing was landed, so there is nothing to catch up: the next run is a normal one


def test_failing_dbt_build_restores_every_mart_and_the_next_run_catches_up(
    warehouse, sim, pipeline_project, monkeypatch
):
    snapshots_before = _one(warehouse, "select count(*) from marts.roster_snapshots")
    before = mart_checksums(warehouse)
    sim.clock.advance(timedelta(hours=6))  # new data: the marts would change
    monkeypatch.setenv(FAULT_ENV, "error")  # zz_pipeline_faults fails after the member marts

    failed = run_pipeline(sim, pipeline_options(pipeline_project, transform_mode="run"))

    [run] = failed.runs
    assert run.status == "failed"
    assert run.error["phase"] == "transform"
    assert "zz_pipeline_faults" in run.error["message"]
    transform = [row for row in _logs(warehouse, run.run_id) if row[0] == "transform"]
    assert [(row[2], row[3]) for row in transform] == [("failed", 1)]
    assert transform[0][9]["failed_nodes"][0]["node"] == "zz_pipeline_faults"
    # dbt had written the member marts before failing; all of it was put back
    _assert_restored(warehouse, before)
    assert _rows(
        warehouse,
        "select status, error ->> 'phase' from ops.transform_builds"
        " order by started_at desc limit 1",
    ) == [("rolled_back", "transform")]
    # the run's responses stay in raw for the next run
    assert _one(warehouse, "select count(*) from raw.fetch_runs where run_id = %s", run.run_id) == 1

    monkeypatch.setenv(FAULT_ENV, "none")
    sim.clock.advance(timedelta(hours=6))
    caught_up = run_pipeline(sim, pipeline_options(pipeline_project, transform_mode="run"))

    assert caught_up.runs[0].status == "succeeded", caught_up.runs[0].error
    snapshot_runs = {
        row[0] for row in _rows(warehouse, "select run_id from marts.roster_snapshots")
    }
    assert {run.run_id, caught_up.runs[0].run_id} <= snapshot_runs
    assert _one(warehouse, "select count(*) from marts.roster_snapshots") == snapshots_before + 2


def test_dropped_database_connections_mid_build_fail_the_run_and_restore_the_marts(
    warehouse, sim, pipeline_project, monkeypatch
):
    before = mart_checksums(warehouse)
    sim.clock.advance(timedelta(hours=6))
    monkeypatch.setenv(FAULT_ENV, "sleep")
    monkeypatch.setenv(FAULT_SECONDS_ENV, "20")
    dbname = psycopg.conninfo.conninfo_to_dict(warehouse)["dbname"]
    killed: list[int] = []

    def drop_connections_during_the_build():
        deadline = time.monotonic() + 120
        with psycopg.connect(warehouse, autocommit=True) as admin:
            while time.monotonic() < deadline and not killed:
                rows = admin.execute(
                    """
                    select pid from pg_stat_activity
                    where datname = %s and query like '%%pg_sleep%%' and pid <> pg_backend_pid()
                      and state = 'active'
                    """,
                    (dbname,),
                ).fetchall()
                if rows:
                    # every session of the run: dbt's, the clan and warehouse locks
                    killed.extend(
                        r[0]
                        for r in admin.execute(
                            "select pid, pg_terminate_backend(pid) from pg_stat_activity"
                            " where datname = %s and pid <> pg_backend_pid()",
                            (dbname,),
                        ).fetchall()
                    )
                    return
                time.sleep(0.1)

    killer = threading.Thread(target=drop_connections_during_the_build, daemon=True)
    killer.start()
    failed = run_pipeline(sim, pipeline_options(pipeline_project, transform_mode="run"))
    killer.join(timeout=5)

    assert len(killed) >= 2  # dbt's session and at least one lock
    [run] = failed.runs
    assert run.status == "failed"
    assert run.error["phase"] == "transform"
    assert "connection" in run.error["message"].lower() or "terminat" in run.error["message"]
    ops_error = _one(warehouse, "select error from ops.ingest_runs where run_id = %s", run.run_id)
    assert ops_error["phase"] == "transform"
    _assert_restored(warehouse, before)

    monkeypatch.setenv(FAULT_ENV, "none")
    sim.clock.advance(timedelta(hours=6))
    caught_up = run_pipeline(sim, pipeline_options(pipeline_project, transform_mode="run"))
    assert caught_up.runs[0].status == "succeeded", caught_up.runs[0].error
    snapshot_runs = {r[0] for r in _rows(warehouse, "select run_id from marts.roster_snapshots")}
    assert run.run_id in snapshot_runs


def _install_fault_trigger(db_url, table, condition):
    """A trigger that makes inserts into ``table`` fail when ``condition`` holds (a DB fault)."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            f"""
            create function public.test_fault() returns trigger language plpgsql as $f$
            begin
                if {condition} then
                    raise exception 'test fault: writes to {table} refused';
                end if;
                return new;
            end $f$;
            create trigger test_fault before insert on {table}
                for each row execute function public.test_fault();
            """
        )


def _remove_fault_trigger(db_url, table):
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(f"drop trigger test_fault on {table}; drop function public.test_fault()")


def test_failing_land_fails_the_run_lands_nothing_and_the_next_run_catches_up(
    warehouse, sim, pipeline_project
):
    before = mart_checksums(warehouse)
    runs_before = _one(warehouse, "select count(*) from raw.fetch_runs")
    sim.clock.advance(timedelta(hours=6))
    _install_fault_trigger(warehouse, "raw.fetch_runs", "true")

    failed = run_pipeline(sim, pipeline_options(pipeline_project, transform_mode="run"))

    [run] = failed.runs
    assert run.status == "failed"
    assert run.error["phase"] == "land" and "refused" in run.error["message"]
    assert failed.build is None
    phases = [(row[0], row[2]) for row in _logs(warehouse, run.run_id)]
    assert phases == [("fetch", "succeeded"), ("land", "failed"), ("monitor", "succeeded")]
    # the land transaction rolled back whole: no run, no request row, no payload of it
    assert _one(warehouse, "select count(*) from raw.fetch_runs") == runs_before
    assert _one(warehouse, "select count(*) from raw.fetch_log where run_id = %s", run.run_id) == 0
    assert _one(warehouse, "select status from ops.ingest_runs where run_id = %s", run.run_id) == (
        "failed"
    )
    _assert_restored(warehouse, before)

    _remove_fault_trigger(warehouse, "raw.fetch_runs")
    caught_up = run_pipeline(sim, pipeline_options(pipeline_project, transform_mode="run"))
    assert caught_up.runs[0].status == "succeeded", caught_up.runs[0].error
    assert mart_checksums(warehouse) != before


def test_failing_monitor_rolls_back_the_build_and_the_next_run_catches_up(
    warehouse, sim, pipeline_project
):
    snapshots_before = _one(warehouse, "select count(*) from marts.roster_snapshots")
    before = mart_checksums(warehouse)
    sim.clock.advance(timedelta(hours=6))  # new data: the build changes the marts
    _install_fault_trigger(warehouse, "ops.ingest_logs", "new.phase = 'monitor'")

    failed = run_pipeline(
        sim, pipeline_options(pipeline_project, transform_mode="run", monitor_retries=1)
    )

    [run] = failed.runs
    assert run.status == "failed"
    assert run.error["phase"] == "monitor" and "refused" in run.error["message"]
    # dbt built the new snapshot, then the monitor failed (twice): the build was rolled back
    phases = [(row[0], row[1], row[2]) for row in _logs(warehouse, run.run_id)]
    assert ("transform", None, "succeeded") in phases
    assert not any(phase == "monitor" for phase, _, _ in phases)  # its checkpoints were refused
    _assert_restored(warehouse, before)
    assert _rows(
        warehouse,
        "select status, error ->> 'phase' from ops.transform_builds"
        " order by started_at desc limit 1",
    ) == [("rolled_back", "monitor")]
    status, error = _rows(
        warehouse, "select status, error from ops.ingest_runs where run_id = %s", run.run_id
    )[0]
    assert status == "failed" and error["phase"] == "monitor"

    _remove_fault_trigger(warehouse, "ops.ingest_logs")
    sim.clock.advance(timedelta(hours=6))
    caught_up = run_pipeline(sim, pipeline_options(pipeline_project, transform_mode="run"))
    assert caught_up.runs[0].status == "succeeded", caught_up.runs[0].error
    snapshot_runs = {r[0] for r in _rows(warehouse, "select run_id from marts.roster_snapshots")}
    assert run.run_id in snapshot_runs  # the failed run's responses were built on catch-up
    assert _one(warehouse, "select count(*) from marts.roster_snapshots") == snapshots_before + 2


def test_freshness_monitor_flow_notices_a_stopped_ingestion(warehouse):
    import asyncio

    from clash_pipeline.orchestration.flows import monitor_ingestion

    state = asyncio.run(
        monitor_ingestion(clan_tags=[PIPELINE_CLAN, "#9RCRVL8V"], return_state=True)
    )
    rows = state.result(raise_on_failure=False)
    assert state.is_failed()  # the second clan never had a successful run
    by_clan = {row["clan"]: row for row in rows}
    assert by_clan[PIPELINE_CLAN]["stale"] is False
    assert by_clan[PIPELINE_CLAN]["last_status"] == "succeeded"
    assert by_clan["#9RCRVL8V"]["stale"] is True

    fresh = asyncio.run(monitor_ingestion(clan_tags=[PIPELINE_CLAN], return_state=True))
    assert fresh.is_completed()


# ---------------------------------------------------------------------------- locks


def test_a_busy_clan_is_skipped_with_a_clear_log_line(warehouse, sim, pipeline_project, caplog):
    other_run = AdvisoryLock(warehouse, clan_lock_key(PIPELINE_CLAN))
    assert other_run.acquire()
    try:
        with caplog.at_level("WARNING"):
            report = run_pipeline(sim, pipeline_options(pipeline_project, on_busy="skip"))
    finally:
        other_run.release()

    [run] = report.runs
    assert run.status == "skipped"
    assert "another run for #2QG2C08UP is in progress" in run.error["message"]
    assert any(
        "skipped" in r.getMessage() and PIPELINE_CLAN in r.getMessage() for r in caplog.records
    )
    assert _rows(
        warehouse,
        "select status, error ->> 'type' from ops.ingest_runs where run_id = %s",
        run.run_id,
    ) == [("skipped", "ClanBusy")]
    assert (
        _one(warehouse, "select count(*) from ops.ingest_logs where run_id = %s", run.run_id) == 0
    )


def test_two_runs_for_one_clan_never_interleave(warehouse, sim, pipeline_project):
    reports = {}

    def run(name):
        reports[name] = run_pipeline(
            sim,
            pipeline_options(
                pipeline_project, on_busy="wait", transform_mode="run", lock_timeout_seconds=240
            ),
        )

    first = threading.Thread(target=run, args=("a",))
    second = threading.Thread(target=run, args=("b",))
    first.start()
    time.sleep(0.5)
    second.start()
    first.join(timeout=300)
    second.join(timeout=300)

    runs = [reports[name].runs[0] for name in ("a", "b")]
    assert [r.status for r in runs] == ["succeeded", "succeeded"], [r.error for r in runs]
    spans = _rows(
        warehouse,
        """
        select r.run_id, min(l.started_at), max(l.finished_at)
        from ops.ingest_runs r join ops.ingest_logs l using (run_id)
        where r.run_id = any(%s) group by r.run_id order by 2
        """,
        [r.run_id for r in runs],
    )
    (_, _, first_end), (_, second_start, _) = spans
    assert second_start >= first_end  # the second run's fetch began after the first finished


# ------------------------------------------------------------------------ schedules


def test_prefect_yaml_deployments_parse_and_register(prefect_harness):
    import yaml
    from prefect.cli.deploy._models import PrefectYamlModel
    from prefect.client.orchestration import get_client

    from clash_pipeline.orchestration.deployments import (
        INGEST_FLOW,
        MONITOR_FLOW,
        load_deployment_specs,
    )

    config = yaml.safe_load((REPO / "prefect.yaml").read_text())
    model = PrefectYamlModel.model_validate(config)
    assert {d.name for d in model.deployments} == {"hourly", "clans", "fanout", "freshness"}

    specs = load_deployment_specs()
    by_flow = {spec.flow_name: spec for spec in specs if spec.schedules}
    by_name = {f"{spec.flow_name}/{spec.name}": spec for spec in specs}
    assert set(by_name) == {
        "clash-ingest/hourly",
        "clash-ingest/clans",
        "clash-fanout/fanout",
        "clash-monitor/freshness",
    }
    assert by_name["clash-ingest/hourly"].schedules[0]["cron"] == "5 * * * *"
    assert by_flow[MONITOR_FLOW].schedules[0]["cron"] == "*/30 * * * *"
    # the fan-out's schedule is off until turned on (instead of clash-ingest/hourly's)
    assert by_name["clash-fanout/fanout"].schedules[0]["active"] is False

    overridden = load_deployment_specs(crons={INGEST_FLOW: "*/15 * * * *"})
    over = {f"{spec.flow_name}/{spec.name}": spec for spec in overridden}
    assert over["clash-ingest/clans"].schedules == []  # the child deployment has none
    ids = [
        over["clash-ingest/hourly"].to_deployment().apply(),
        by_flow[MONITOR_FLOW].to_deployment().apply(),
    ]

    import asyncio

    async def read():
        async with get_client() as client:
            return [await client.read_deployment(i) for i in ids]

    ingest, monitor = asyncio.run(read())
    assert ingest.name == "hourly"
    assert [s.schedule.cron for s in ingest.schedules] == ["*/15 * * * *"]
    assert [s.schedule.timezone for s in ingest.schedules] == ["UTC"]
    assert [s.schedule.cron for s in monitor.schedules] == ["*/30 * * * *"]
    assert monitor.parameters == {}  # freshness hours from CLASH_MONITOR_FRESHNESS_HOURS
    assert ingest.parameters == {"full": False}  # change-driven unless told

    from clash_pipeline.errors import ConfigError

    with pytest.raises(ConfigError, match="invalid cron"):
        load_deployment_specs(crons={INGEST_FLOW: "every hour"})


# ------------------------------------------------------------------------------- CLI


def test_cli_run_simulate_is_one_pipeline_run(
    warehouse, prefect_harness, pipeline_project, monkeypatch
):
    from typer.testing import CliRunner

    from clash_pipeline.cli import app
    from clash_pipeline.errors import ConfigError

    monkeypatch.setenv("COC_REQUESTS_PER_SECOND", "200")
    saved_environ = dict(os.environ)  # the command sets Prefect's defaults in os.environ
    try:
        result = CliRunner().invoke(
            app,
            ["run", "--simulate", "--clan", PIPELINE_CLAN, "--dbt-project", str(pipeline_project)],
        )
        bad = CliRunner().invoke(
            app, ["run", "--simulate", "--clan", PIPELINE_CLAN, "--on-busy", "later"]
        )
    finally:
        os.environ.clear()
        os.environ.update(saved_environ)

    assert result.exit_code == 0, (result.output, result.exception)
    assert "succeeded" in result.output and PIPELINE_CLAN in result.output
    [(status, trigger)] = _rows(
        warehouse,
        "select status, trigger from ops.ingest_runs where trigger = 'cli'",
    )
    assert status == "succeeded"
    assert isinstance(bad.exception, ConfigError) and "--on-busy" in bad.exception.message


def test_cli_serve_check_lists_the_schedules(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COC_", "DATABASE_URL"))}
    env.update(CLASH_PIPELINE_HOME=str(tmp_path), CLASH_INGEST_CRON="0 */2 * * *")
    result = subprocess.run(
        [sys.executable, "-m", "clash_pipeline.cli", "serve", "--check"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "clash-ingest/hourly" in result.stdout and "0 */2 * * *" in result.stdout
    assert "clash-monitor/freshness" in result.stdout


# ------------------------------------------------------------------- restore points


def _restore_fixture(db_url):
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            """
            create schema if not exists marts;  -- the migrations create it
            create table marts.inc (k int primary key, clan_tag text, v text, j jsonb,
                                    t timestamptz, f double precision);
            insert into marts.inc values
                (1, '#A', 'one', '{"x": [1, 2]}', '2026-11-02 08:00:00.123456+00', 0.1),
                (2, '#A', 'two', null, null, 1e-7),
                (3, '#B', 'three', '[]', '2026-11-02 09:00+00', -2.5);
            create table marts.tbl as select 1 as x union all select 2;
            """
        )
    return {
        ("marts", "inc"): restore.ModelInfo("marts", "inc", "incremental", ["k"]),
        ("marts", "tbl"): restore.ModelInfo("marts", "tbl", "table", None),
    }


def _as_dbt(db_url, build_id, statements):
    with psycopg.connect(restore.build_database_url(db_url, build_id)) as conn:
        for statement in statements:
            conn.execute(statement)


def test_restore_point_undoes_merges_deletes_swaps_and_new_tables(migrated_db_url):
    models = _restore_fixture(migrated_db_url)
    before = mart_checksums(migrated_db_url, ("marts",))
    build_id = uuid.uuid4()
    point = restore.open_restore_point(
        migrated_db_url, build_id=build_id, scope="incremental", project_hash="h", models=models
    )
    assert {p.name: p.strategy for p in point.relations} == {"inc": "undo", "tbl": "copy"}

    _as_dbt(
        migrated_db_url,
        build_id,
        [
            # merge: one row changed, one unchanged, one new
            """merge into marts.inc as t using (values
               (1, '#A', 'uno', '{"x": [1, 2]}'::jsonb, now(), 0.1::float8),
               (3, '#B', 'three', '[]'::jsonb, '2026-11-02 09:00+00'::timestamptz, -2.5::float8),
               (4, '#B', 'four', null, null, null)) as s (k, clan_tag, v, j, t, f)
           on t.k = s.k
           when matched then update set v = s.v, j = s.j, t = s.t, f = s.f
           when not matched then insert values (s.k, s.clan_tag, s.v, s.j, s.t, s.f)""",
            "delete from marts.inc where k = 2",
            # a table model swapped in, as dbt does
            "create table marts.tbl__dbt_tmp as select 9 as x",
            "alter table marts.tbl rename to tbl__dbt_backup",
            "alter table marts.tbl__dbt_tmp rename to tbl",
            "drop table marts.tbl__dbt_backup",
            "create table marts.brand_new as select 1 as y",
        ],
    )
    counts = restore.count_changes(migrated_db_url, point, "marts", "inc")
    assert counts == {"#A": restore.StepCount(1, 1), "#B": restore.StepCount(2, 1)}
    assert restore.count_changes(migrated_db_url, point, "marts", "tbl") == {
        None: restore.StepCount(1, 1)
    }

    report = restore.roll_back(migrated_db_url, build_id, error={"message": "boom"})

    assert sorted(report.restored) == ["marts.inc", "marts.tbl"]
    assert report.dropped == ["marts.brand_new"]
    assert mart_checksums(migrated_db_url, ("marts",)) == before
    _assert_restored(migrated_db_url, mart_checksums(migrated_db_url))
    assert _rows(migrated_db_url, "select status, error from ops.transform_builds") == [
        ("rolled_back", {"message": "boom"})
    ]


def test_restore_point_publish_keeps_changes_and_abandoned_builds_are_rolled_back(
    migrated_db_url,
):
    models = _restore_fixture(migrated_db_url)
    kept = uuid.uuid4()
    restore.open_restore_point(
        migrated_db_url, build_id=kept, scope="full", project_hash="h", models=models
    )
    _as_dbt(migrated_db_url, kept, ["update marts.inc set v = 'kept' where k = 1"])
    restore.publish(migrated_db_url, kept)
    assert _one(migrated_db_url, "select v from marts.inc where k = 1") == "kept"
    assert restore.last_full_build(migrated_db_url, "h")

    # a manual dbt run (no build id on the session) is not recorded
    with psycopg.connect(migrated_db_url) as conn:
        conn.execute("update marts.inc set v = 'manual' where k = 2")
    assert _one(migrated_db_url, "select count(*) from ops.transform_undo") == 0

    before = mart_checksums(migrated_db_url, ("marts",))
    crashed = uuid.uuid4()
    restore.open_restore_point(
        migrated_db_url, build_id=crashed, scope="incremental", project_hash="h", models=models
    )
    _as_dbt(
        migrated_db_url,
        crashed,
        [
            "insert into marts.inc (k, clan_tag, v) values (7, '#C', 'seven')",
            "update marts.inc set v = 'changed' where k = 3",
        ],
    )
    [report] = restore.roll_back_abandoned(migrated_db_url)
    assert report.build_id == crashed
    assert mart_checksums(migrated_db_url, ("marts",)) == before
    assert _rows(
        migrated_db_url,
        "select status, error ->> 'type' from ops.transform_builds where build_id = %s",
        crashed,
    ) == [("rolled_back", "AbandonedBuild")]


def test_build_database_url_sets_the_session_variable(migrated_db_url):
    build_id = uuid.uuid4()
    for url in (migrated_db_url, migrated_db_url + "?application_name=x"):
        with psycopg.connect(restore.build_database_url(url, build_id)) as conn:
            value = conn.execute("show clash.transform_build").fetchone()[0]
        assert value == str(build_id)
