"""Issue 12 point 8: readers only ever see a published build, even across a crash.

dbt builds into ``marts_build``; ``marts`` (what the API, the dashboard and
analysts read) changes only when a build is published, in one transaction
(src/clash_pipeline/transform/publish.py). Real PostgreSQL, real dbt, a real
``clash-pipeline run`` process killed with SIGKILL, the real API.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import httpx
import psycopg
import pytest

from clash_pipeline.serving.app import create_app
from clash_pipeline.serving.server import BackgroundServer
from clash_pipeline.simulator import SimulatedClashApi
from clash_pipeline.transform import restore
from tests.plugins.prefect_fixtures import (
    FAULT_ENV,
    FAULT_SECONDS_ENV,
    PIPELINE_CLAN,
    PIPELINE_SEED,
    PIPELINE_T0,
    PIPELINE_TOKEN,
    REPO,
    mart_checksums,
)


def _rows(url, query, *params):
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(query, params).fetchall()


def _execute(url, *statements, build_id=None):
    """Statements in one session; with ``build_id``, as that build's dbt session."""
    session_url = restore.build_database_url(url, build_id) if build_id else url
    with psycopg.connect(session_url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def _by_schema(url):
    """(published, build): the checksums of every table of marts and marts_build, by name."""
    sums = mart_checksums(url, ("marts", "marts_build"))
    split = {"marts": {}, "marts_build": {}}
    for qualified, value in sums.items():
        schema, name = qualified.split(".", 1)
        split[schema][name] = value
    return split["marts"], split["marts_build"]


# ----------------------------------------------------------------- publish, unit level

MODELS = {
    ("marts_build", "inc"): restore.ModelInfo("marts_build", "inc", "incremental", ["k"]),
    ("marts_build", "tbl"): restore.ModelInfo("marts_build", "tbl", "table", None),
}


def _open(url, scope="incremental"):
    return restore.open_restore_point(
        url, build_id=uuid.uuid4(), scope=scope, project_hash="test", models=MODELS
    )


def _as_reader(url, query):
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("set role clash_readonly")
        return conn.execute(query).fetchall()


def test_publish_copies_only_the_touched_keys_and_failed_builds_leave_marts(migrated_db_url):
    url = migrated_db_url
    _execute(
        url,
        # a warehouse from before publishing: dbt's table in marts, undo triggers, stale rows
        "create table marts.inc (k int primary key, v text)",
        "insert into marts.inc select g, 'stale' from generate_series(1, 5) g",
        "create table marts_build.inc (k int primary key, v text)",
        "insert into marts_build.inc select g, 'v' || g from generate_series(1, 1000) g",
        "create table marts_build.tbl (a int, b text)",
        "insert into marts_build.tbl values (1, 'x'), (2, 'y'), (3, 'z')",
        "create view marts_build.health as select count(*) as runs from ops.ingest_runs",
    )
    with psycopg.connect(url, autocommit=True) as conn:
        from clash_pipeline.transform.relations import RelationPlan, install_triggers

        install_triggers(conn, RelationPlan("marts", "inc", 0, "undo", ["k"]))

    # the first publish after the upgrade: a full build converts marts
    first = _open(url, scope="full")
    first_report = restore.publish(url, first.build_id)
    assert first_report.replaced == ["inc"] and first_report.recreated == ["tbl"]
    published, built = _by_schema(url)
    assert published == built and published["inc"][0] == 1000
    assert _rows(url, "select count(*) from pg_trigger where tgrelid = 'marts.inc'::regclass") == [
        (0,)
    ]
    assert _as_reader(url, "select runs from marts.health") == [(0,)]
    assert _as_reader(url, "select count(*) from marts.tbl") == [(3,)]
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        _as_reader(url, "select count(*) from marts_build.inc")

    # an incremental build: 3 keys deleted, 1 changed, 2 new; the table model swapped
    point = _open(url)
    _execute(
        url,
        "delete from marts_build.inc where k <= 3",
        "update marts_build.inc set v = 'changed' where k = 10",
        "insert into marts_build.inc values (1001, 'new'), (1002, 'new')",
        "create table marts_build.tbl__dbt_tmp as select 4 as a, 'w'::text as b",
        "drop table marts_build.tbl",
        "alter table marts_build.tbl__dbt_tmp rename to tbl",
        build_id=point.build_id,
    )
    assert _by_schema(url)[0] == published  # not published yet: readers see the last build
    report = restore.publish(url, point.build_id)
    assert report.incremental == ["inc"] and report.replaced == ["tbl"]
    # inc: keys 1, 2, 3, 10 deleted, 10, 1001, 1002 inserted; tbl: 3 rows out, 1 in
    assert (report.rows_deleted, report.rows_inserted) == (4 + 3, 3 + 1)
    published, built = _by_schema(url)
    assert published == built and published["inc"][0] == 999 and published["tbl"][0] == 1
    assert _as_reader(url, "select v from marts.inc where k in (10, 1002) order by k") == [
        ("changed",),
        ("new",),
    ]

    # a build that fails (rolled back) and one whose process died (abandoned): marts unchanged
    for abandoned in (False, True):
        point = _open(url)
        _execute(
            url,
            "delete from marts_build.inc where k between 100 and 199",
            "insert into marts_build.inc values (5000, 'half')",
            "create table marts_build.tbl__dbt_tmp as select 9 as a, 'q'::text as b",
            "drop table marts_build.tbl",
            "alter table marts_build.tbl__dbt_tmp rename to tbl",
            build_id=point.build_id,
        )
        assert _by_schema(url)[0] == published
        if abandoned:
            restore.roll_back_abandoned(url)
        else:
            restore.roll_back(url, point.build_id, error={"type": "DbtRunError"})
        assert _by_schema(url) == (published, published)

    # a changed shape (a new column) recreates the published table with its indexes
    point = _open(url)
    _execute(
        url,
        "alter table marts_build.inc add column w int",
        "update marts_build.inc set w = k where k > 995",
        build_id=point.build_id,
    )
    report = restore.publish(url, point.build_id)
    assert report.recreated == ["inc"]
    published, built = _by_schema(url)
    assert published == built
    assert _as_reader(url, "select count(w) from marts.inc") == [(7,)]  # 996..1002
    [(index,)] = _rows(
        url, "select indexdef from pg_indexes where schemaname = 'marts' and tablename = 'inc'"
    )
    assert index.startswith("CREATE UNIQUE INDEX") and index.endswith("USING btree (k)")


# ------------------------------------------------------------- kill -9 during dbt


def _api_bodies(url, member_tag=None):
    """The roster, one member and one metric, as the API answers them now."""
    with (
        BackgroundServer(create_app(url, pool_size=2)) as server,
        httpx.Client(base_url=server.base_url, timeout=30) as http,
    ):
        roster = http.get("/api/v2/roster", params={"clan": PIPELINE_CLAN})
        assert roster.status_code == 200, roster.text
        tag = member_tag or roster.json()["members"][0]["player_tag"]
        member = http.get(f"/api/v2/members/{quote(tag, safe='')}", params={"clan": PIPELINE_CLAN})
        metric = http.get(
            "/api/v2/metrics",
            params={"clan": PIPELINE_CLAN, "metric": "donations_given", "window": "7d"},
        )
        assert (member.status_code, metric.status_code) == (200, 200), (member.text, metric.text)
        return {"roster": roster.json(), "member": member.json(), "metric": metric.json()}, tag


def _cli_run(project: Path, env: dict[str, str]) -> subprocess.Popen:
    """``clash-pipeline run`` in its own process group (so the test can kill all of it)."""
    return subprocess.Popen(
        [
            str(Path(sys.executable).parent / "clash-pipeline"),
            "run",
            "--clan",
            PIPELINE_CLAN,
            "--dbt-project",
            str(project),
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _wait_for_half_built(url, proc, run_started, timeout=300.0):
    """Until the killed run's build wrote its new snapshot to marts_build and dbt still runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        (state,) = _rows(
            url,
            """
            select
                (select count(*) from marts_build.roster_snapshots r
                 join ops.ingest_runs i using (run_id) where i.started_at >= %s),
                (select count(*) from pg_stat_activity
                 where datname = current_database() and query like '%%pg_sleep%%'
                   and pid <> pg_backend_pid())
            """,
            run_started,
        )
        if state[0] > 0 and state[1] > 0:
            return
        time.sleep(0.5)
    raise AssertionError("the run never reached the middle of its dbt build")


def test_kill_9_during_dbt_leaves_marts_and_the_api_at_the_previous_build(
    warehouse, pipeline_project, pipeline_home, prefect_harness, tmp_path
):
    before_api, member_tag = _api_bodies(warehouse)
    before = mart_checksums(warehouse, ("marts",))
    home = tmp_path / "home"  # the killed dbt may leave its target half-written
    shutil.copytree(pipeline_home, home, ignore=shutil.ignore_patterns("logs"))
    with SimulatedClashApi(seed=PIPELINE_SEED, token=PIPELINE_TOKEN, start_time=PIPELINE_T0) as sim:
        sim.clock.advance(timedelta(hours=6))  # new data: the marts would change
        env = {
            **os.environ,
            "DATABASE_URL": warehouse,
            "CLASH_PIPELINE_HOME": str(home),
            "COC_API_BASE_URL": sim.base_url,
            "COC_API_TOKEN": sim.token,
            "COC_CLAN_TAGS": PIPELINE_CLAN,
            "COC_REQUESTS_PER_SECOND": "500",
            "PREFECT_API_URL": prefect_harness,
            FAULT_ENV: "sleep",  # the test model after the member marts sleeps: dbt mid-build
            FAULT_SECONDS_ENV: "600",
        }
        (run_started,) = _rows(warehouse, "select clock_timestamp()")[0]
        proc = _cli_run(pipeline_project, env)
        try:
            _wait_for_half_built(warehouse, proc, run_started)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        # the dead client's sessions (the sleeping model, its locks) end as PostgreSQL notices
        _rows(
            warehouse,
            "select pg_terminate_backend(pid) from pg_stat_activity"
            " where datname = current_database() and pid <> pg_backend_pid()",
        )

        # before any further run: the build is half-done in marts_build ...
        running = "select count(*) from ops.transform_builds where status = 'running'"
        assert _rows(warehouse, running) == [(1,)]
        half = mart_checksums(warehouse, ("marts_build",))
        assert half["marts_build.roster_snapshots"] != before["marts.roster_snapshots"]
        # ... and readers see exactly the previous build
        assert mart_checksums(warehouse, ("marts",)) == before
        assert _api_bodies(warehouse, member_tag)[0] == before_api

        # the next run rolls the half build back, builds again (both snapshots) and publishes
        del env[FAULT_ENV]
        proc = _cli_run(pipeline_project, env)
        output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output
    published, built = _by_schema(warehouse)
    assert published == built
    assert published["roster_snapshots"][0] == before["marts.roster_snapshots"][0] + 2
    after_api, _ = _api_bodies(warehouse, member_tag)
    assert (
        after_api["roster"]["snapshot"]["snapshot_id"]
        != (before_api["roster"]["snapshot"]["snapshot_id"])
    )
    assert _rows(warehouse, "select status from ops.transform_builds order by started_at")[-2:] == [
        ("rolled_back",),
        ("published",),
    ]
