"""Issue 12, point 3: runs of a killed process are closed by the next run or monitor of any clan.

A process that opens a ``running`` row holds a lease (an advisory lock) for it;
a ``running`` row whose lease nobody holds belongs to a process that is gone
(:mod:`clash_pipeline.warehouse.leases`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from clash_pipeline.serving.app import create_app
from clash_pipeline.serving.server import BackgroundServer
from clash_pipeline.simulator import SimulatedClashApi
from clash_pipeline.warehouse.leases import ABANDONED_MESSAGE, LEASE_NAMESPACE, close_abandoned_runs
from clash_pipeline.warehouse.locks import clan_lock_key
from clash_pipeline.warehouse.runs import RunRecorder
from tests.plugins.prefect_fixtures import (
    PIPELINE_CLAN,
    PIPELINE_SEED,
    PIPELINE_T0,
    PIPELINE_TOKEN,
    pipeline_options,
    run_pipeline,
)

OTHER_CLAN = "#2PR8R8V8P"


def _runs(url: str, *where: str) -> list[dict]:
    query = "select * from ops.ingest_runs" + (f" where {' and '.join(where)}" if where else "")
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(query + " order by started_at").fetchall()


def _insert_run(url: str, kind: str, clans: list[str], owner_lock: int | None) -> uuid.UUID:
    run_id = uuid.uuid4()
    summary = (
        {"owner": {"lock": owner_lock, "host": "elsewhere", "pid": 4242}} if owner_lock else {}
    )
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "insert into ops.ingest_runs (run_id, kind, clan_tags, ingestion_version,"
            " schema_version, summary) values (%s, %s, %s, 'test', 'test', %s)",
            (run_id, kind, clans, Jsonb(summary)),
        )
    return run_id


def _status(url: str, run_id: uuid.UUID) -> str:
    [row] = _runs(url, f"run_id = '{run_id}'")
    return row["status"]


def test_only_runs_whose_process_is_gone_are_closed_of_any_kind(migrated_db_url):
    url = migrated_db_url
    # a live run of this process: its lease is held
    live = RunRecorder(db_url=url, kind="build", clan_tags=[]).start()
    # live runs of another process (another session holds the lease / the clan lock)
    other = psycopg.connect(url, autocommit=True)
    other.execute("select pg_advisory_lock(%s, 123456)", (LEASE_NAMESPACE,))
    other.execute("select pg_advisory_lock(%s, %s)", clan_lock_key("#9RCRVL8V"))
    leased = _insert_run(url, "backfill", [PIPELINE_CLAN], owner_lock=123456)
    legacy_live = _insert_run(url, "ingest", ["#9RCRVL8V"], owner_lock=None)
    # runs of processes that are gone, of every kind
    dead = {
        kind: _insert_run(url, kind, [OTHER_CLAN] if kind != "build" else [], owner_lock=777)
        for kind in ("ingest", "fetch", "backfill", "build", "monitor")
    }
    legacy_dead = _insert_run(url, "ingest", [OTHER_CLAN], owner_lock=None)
    try:
        closed = close_abandoned_runs(url)
        assert {r.run_id for r in closed} == {*dead.values(), legacy_dead}
        assert {r.kind for r in closed} == {"ingest", "fetch", "backfill", "build", "monitor"}
        for run_id in (live.run_id, leased, legacy_live):
            assert _status(url, run_id) == "running"
        for row in _runs(url, "status = 'failed'"):
            assert row["finished_at"] is not None and row["finished_at"] >= row["started_at"]
            assert row["duration_ms"] is not None and row["duration_ms"] >= 0
            assert row["error"]["type"] == "AbandonedRun"
            assert row["error"]["message"] == ABANDONED_MESSAGE
        [owned] = _runs(url, f"run_id = '{dead['monitor']}'")
        assert owned["error"]["owner"] == {"lock": 777, "host": "elsewhere", "pid": 4242}
        assert close_abandoned_runs(url) == []  # closed once
    finally:
        other.close()  # that process "dies": its runs are abandoned now
    assert {r.run_id for r in close_abandoned_runs(url)} == {leased, legacy_live}
    # a row from before leases of a clan whose lock the caller itself holds is not alive
    mine = psycopg.connect(url, autocommit=True)
    mine.execute("select pg_advisory_lock(%s, %s)", clan_lock_key(PIPELINE_CLAN))
    try:
        legacy_mine = _insert_run(url, "ingest", [PIPELINE_CLAN], owner_lock=None)
        assert close_abandoned_runs(url) == []
        closed = close_abandoned_runs(url, held_clans=[PIPELINE_CLAN])
    finally:
        mine.close()
    assert [r.run_id for r in closed] == [legacy_mine]
    assert _status(url, live.run_id) == "running"
    live.finish("succeeded")
    assert _status(url, live.run_id) == "succeeded"
    with psycopg.connect(url) as conn:  # the lease ended with the process's last run
        sessions = conn.execute(
            "select count(*) from pg_stat_activity"
            " where application_name = 'clash-pipeline run lease' and datname = current_database()"
        ).fetchone()
    assert sessions == (0,)


def _cli_env(url: str, home: Path, prefect_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COC_", "DATABASE_URL"))}
    env.update(
        DATABASE_URL=url,
        CLASH_PIPELINE_HOME=str(home),
        PREFECT_API_URL=prefect_url,
        COC_REQUESTS_PER_SECOND="3",  # the fetch takes a while: it is killed in it
    )
    return env


def _kill_two_clan_run(url: str, env: dict[str, str], project: Path) -> list[uuid.UUID]:
    """``clash-pipeline run --simulate`` for two clans, ``kill -9`` while it fetches."""
    before = {r["run_id"] for r in _runs(url)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "clash_pipeline.cli", "run", "--simulate"]
        + ["--clan", PIPELINE_CLAN, "--clan", OTHER_CLAN, "--dbt-project", str(project)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            fetching = _runs(url, "status = 'running'", "kind = 'ingest'")
            if len([r for r in fetching if r["run_id"] not in before]) == 2:
                break
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "the run never started fetching"
            time.sleep(0.2)
        time.sleep(1.0)  # well into the fetch (3 requests/s)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    orphans = [r for r in _runs(url, "kind = 'ingest'") if r["run_id"] not in before]
    assert [r["status"] for r in orphans] == ["running", "running"]
    assert sorted(r["clan_tags"][0] for r in orphans) == sorted([PIPELINE_CLAN, OTHER_CLAN])
    return [r["run_id"] for r in orphans]


def _assert_closed(url: str, run_ids: list[uuid.UUID]) -> None:
    for run_id in run_ids:
        [row] = _runs(url, f"run_id = '{run_id}'")
        assert row["status"] == "failed"
        assert row["finished_at"] is not None
        assert row["error"]["type"] == "AbandonedRun"
        assert row["error"]["message"] == ABANDONED_MESSAGE
        assert row["error"]["owner"]["pid"] > 0


def _assert_health_not_running(url: str) -> None:
    with BackgroundServer(create_app(url, pool_size=2)) as server:
        for clan in (PIPELINE_CLAN, OTHER_CLAN):
            response = httpx.get(
                f"{server.base_url}/api/v2/ingestion/health", params={"clan": clan}, timeout=30
            )
            assert response.status_code == 200, response.text
            last = response.json()["last_run"]
            assert last["status"] != "running"
            assert last["finished_at"] is not None


@pytest.mark.usefixtures("built_warehouse")
def test_killed_two_clan_run_is_closed_by_a_monitor(
    warehouse, pipeline_home, pipeline_project, prefect_harness
):
    env = _cli_env(warehouse, pipeline_home, prefect_harness)
    orphans = _kill_two_clan_run(warehouse, env, pipeline_project)
    monitor = subprocess.run(
        [sys.executable, "-m", "clash_pipeline.cli", "monitor", "--clan", PIPELINE_CLAN],
        env={**env, "CLASH_GX_DIR": str(pipeline_project / "gx")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "Traceback" not in monitor.stderr, monitor.stderr
    _assert_closed(warehouse, orphans)
    assert monitor.stderr.count("closed abandoned ingest run") == 2, monitor.stderr
    _assert_health_not_running(warehouse)


def test_killed_two_clan_run_is_closed_by_a_run_of_one_clan(
    warehouse, pipeline_home, pipeline_project, prefect_harness
):
    env = _cli_env(warehouse, pipeline_home, prefect_harness)
    orphans = _kill_two_clan_run(warehouse, env, pipeline_project)
    start = PIPELINE_T0 + timedelta(hours=6)
    with SimulatedClashApi(seed=PIPELINE_SEED, token=PIPELINE_TOKEN, start_time=start) as sim:
        # fetch, land, monitor; no dbt (not what this test is about, and slow)
        options = pipeline_options(pipeline_project, build_marts=False)
        report = run_pipeline(sim, options, [PIPELINE_CLAN])
    assert [r.status for r in report.runs] == ["succeeded"]
    _assert_closed(warehouse, orphans)
    assert _runs(warehouse, "status = 'running'") == []
    _assert_health_not_running(warehouse)
