"""The anomaly monitor: GX suites, the checkpoint per run and on schedule, alerts.

Real PostgreSQL, real dbt, real Great Expectations (the committed gx/ context,
copied per session) and the simulator on loopback. Each test starts from a
copy of a warehouse that had one good run (tests/plugins/prefect_fixtures.py),
drives one anomaly through the simulator or the database, and checks that
exactly the matching alert opens, stays single while it persists and resolves
when the condition clears.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import psycopg
import pytest

from clash_pipeline.monitor.run import run_monitor
from clash_pipeline.settings import load_settings
from clash_pipeline.simulator import SimulatedClashApi
from tests.plugins.prefect_fixtures import (
    PIPELINE_CLAN,
    PIPELINE_SEED,
    PIPELINE_T0,
    PIPELINE_TOKEN,
    pipeline_options,
    run_pipeline,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def sim():
    with SimulatedClashApi(seed=PIPELINE_SEED, token=PIPELINE_TOKEN, start_time=PIPELINE_T0) as api:
        yield api


def _rows(db_url, query, *params):
    with psycopg.connect(db_url, autocommit=True) as conn:
        return conn.execute(query, params).fetchall()


def _alerts(db_url):
    """(check, status, occurrences, observed, threshold) of every alert of the clan."""
    return _rows(
        db_url,
        """
        select check_name, status, occurrences, observed_value, threshold
        from ops.alerts where clan_tag = %s order by alert_id
        """,
        PIPELINE_CLAN,
    )


def _run(sim, project, **options):
    report = run_pipeline(sim, pipeline_options(project, transform_mode="run", **options))
    [run] = report.runs
    assert run.status == "succeeded", run.error
    return run


def _monitor(db_url, **overrides):
    return run_monitor(db_url, load_settings(), [PIPELINE_CLAN], overrides=overrides or None)


def _monitor_details(db_url, run_id):
    [(details,)] = _rows(
        db_url,
        "select details from ops.ingest_logs where run_id = %s and phase = 'monitor'",
        run_id,
    )
    return details


def _health(db_url, run_id):
    cur_rows = _rows(
        db_url,
        "select roster_size, failed_player_fetches, members_changed, fetch_ms"
        " from marts.ingest_run_health where run_id = %s",
        run_id,
    )
    return cur_rows[0]


# ------------------------------------------------------------------- a normal run


def test_a_normal_run_opens_no_alert_and_records_the_checks(warehouse, sim, pipeline_project):
    sim.clock.advance(timedelta(hours=6))
    run = _run(sim, pipeline_project)
    assert _alerts(warehouse) == []
    details = _monitor_details(warehouse, run.run_id)
    assert details["anomalies"]["failing"] == []
    assert details["anomalies"]["errors"] == {}
    assert details["anomalies"]["clans"] == [PIPELINE_CLAN]
    # the health mart has one row per run: the warehouse's first run and this one
    [(runs, landed)] = _rows(
        warehouse,
        "select count(*), count(*) filter (where is_landed) from marts.ingest_run_health",
    )
    assert (runs, landed) == (2, 2)


# ------------------------------------------------------------------ missing members


def test_members_leaving_en_masse_open_one_missing_members_alert(warehouse, sim, pipeline_project):
    members = [
        r[0]
        for r in _rows(
            warehouse,
            "select player_tag from marts.members where clan_tag = %s and is_current"
            " order by player_tag",
            PIPELINE_CLAN,
        )
    ]
    before = len(members)
    sim.faults.update(departed_players=set(members[:12]))  # 12 leave at once
    sim.clock.advance(timedelta(seconds=1))
    run = _run(sim, pipeline_project)
    assert _health(warehouse, run.run_id)[0] == before - 12
    # exactly this alert: 12 members lost, the bound is 5 (>= 5 members fires)
    assert _alerts(warehouse) == [("missing_members", "open", 1, 12.0, 5.0)]

    _monitor(warehouse)  # still the same two snapshots: the same alert, seen again
    assert _alerts(warehouse) == [("missing_members", "open", 2, 12.0, 5.0)]

    sim.clock.advance(timedelta(seconds=1))  # they stay gone: no further drop
    _run(sim, pipeline_project)
    assert [a[:2] for a in _alerts(warehouse)] == [("missing_members", "resolved")]


# ------------------------------------------------------------------------ zero deltas


def test_a_frozen_api_opens_a_zero_deltas_alert_until_members_change(
    warehouse, sim, pipeline_project, monkeypatch
):
    monkeypatch.setenv("CLASH_MONITOR_ZERO_DELTA_RUNS", "1")
    sim.clock.advance(timedelta(seconds=1))  # frozen: identical responses
    run = _run(sim, pipeline_project)
    assert _health(warehouse, run.run_id)[2] == 0  # no member changed
    assert _alerts(warehouse) == [("zero_deltas", "open", 1, 1.0, 1.0)]

    _monitor(warehouse)
    assert _alerts(warehouse) == [("zero_deltas", "open", 2, 1.0, 1.0)]

    sim.clock.advance(timedelta(hours=6))  # the clan moves again
    run = _run(sim, pipeline_project)
    assert _health(warehouse, run.run_id)[2] > 0
    assert [a[:2] for a in _alerts(warehouse)] == [("zero_deltas", "resolved")]


# ------------------------------------------------------------------- failed players


def test_players_returning_404_open_a_failed_player_fetches_alert(warehouse, sim, pipeline_project):
    members = [
        r[0]
        for r in _rows(
            warehouse,
            "select player_tag from marts.members where clan_tag = %s and is_current"
            " order by player_tag",
            PIPELINE_CLAN,
        )
    ]
    sim.faults.update(missing_players=set(members[:8]))
    sim.clock.advance(timedelta(seconds=1))
    run = _run(sim, pipeline_project, full=True)  # every profile: the 8 are asked for
    roster, failed, *_ = _health(warehouse, run.run_id)
    assert (roster, failed) == (len(members), 8)
    [alert] = _alerts(warehouse)
    assert alert[:3] == ("failed_player_fetches", "open", 1)
    assert alert[3] == pytest.approx(8 / len(members))  # above the 10 % default
    assert alert[4] == pytest.approx(0.1)

    _monitor(warehouse)
    assert [a[:3] for a in _alerts(warehouse)] == [("failed_player_fetches", "open", 2)]

    sim.faults.update(missing_players=set())
    sim.clock.advance(timedelta(seconds=1))
    _run(sim, pipeline_project)  # change-driven: the 8 failed fetches are retried
    assert [a[:2] for a in _alerts(warehouse)] == [("failed_player_fetches", "resolved")]


# ---------------------------------------------------------------------- long runs


def _copy_history(db_url, run_id, copies):
    """``copies`` succeeded runs of another clan with the phase times of ``run_id``."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        for i in range(copies):
            new_id = uuid.uuid4()
            conn.execute(
                """
                insert into ops.ingest_runs (run_id, kind, trigger, clan_tags, status,
                    started_at, finished_at, ingestion_version, schema_version)
                select %s, kind, trigger, array['#8YYYYYY'], status,
                    started_at - make_interval(hours => %s),
                    finished_at - make_interval(hours => %s), ingestion_version, schema_version
                from ops.ingest_runs where run_id = %s
                """,
                (new_id, i + 1, i + 1, run_id),
            )
            conn.execute(
                """
                insert into ops.ingest_logs (run_id, clan_tag, phase, step, status, attempt,
                    started_at, finished_at, duration_ms, requests, rows_changed, details)
                select %s, '#8YYYYYY', phase, step, status, attempt, started_at, finished_at,
                    duration_ms, requests, rows_changed, details
                from ops.ingest_logs where run_id = %s
                """,
                (new_id, run_id),
            )


def test_latency_makes_a_run_slow_and_opens_a_long_duration_alert(
    warehouse, sim, pipeline_project, monkeypatch
):
    monkeypatch.setenv("CLASH_MONITOR_DURATION_FACTOR", "2")
    monkeypatch.setenv("CLASH_MONITOR_DURATION_FLOOR_SECONDS", "1")
    [(first_run, fetch_ms)] = _rows(
        warehouse, "select run_id, fetch_ms from marts.ingest_run_health"
    )
    _copy_history(warehouse, first_run, 3)  # 4 runs of history, all with this fetch time
    bound = max(1000.0, 2 * fetch_ms)  # k x p95 of four equal values, or the floor

    sim.faults.update(latency_ms=2500)  # every request takes 2.5 s
    sim.clock.advance(timedelta(seconds=1))
    run = _run(sim, pipeline_project)
    slow_fetch = _health(warehouse, run.run_id)[3]
    assert slow_fetch > bound
    [alert] = _alerts(warehouse)
    assert alert[:2] == ("long_duration", "open")
    details = _rows(warehouse, "select details from ops.alerts where check_name = 'long_duration'")[
        0
    ][0]
    fetch_failure = [f for f in details["failures"] if f["column"] == "fetch_ms"]
    assert fetch_failure[0]["value"] == slow_fetch
    assert fetch_failure[0]["bound"] == pytest.approx(bound, abs=0.1)
    assert details["parameters"]["max_fetch_ms"] == pytest.approx(bound, abs=0.1)

    sim.faults.update(latency_ms=0)  # fast again: below the bound (now with the slow run)
    sim.clock.advance(timedelta(seconds=1))
    _run(sim, pipeline_project)
    assert [a[:2] for a in _alerts(warehouse)] == [("long_duration", "resolved")]


# ------------------------------------------------------------------------ freshness


def test_a_stopped_ingestion_is_noticed_by_the_scheduled_monitor_and_resolved_by_a_run(
    warehouse, sim, pipeline_project
):
    from clash_pipeline.orchestration.flows import monitor_ingestion

    # the clan's only run happened 30 hours ago (more: the fixture's run was a while back)
    [(since,)] = _rows(
        warehouse,
        "update ops.ingest_runs set started_at = started_at - interval '30 hours',"
        " finished_at = finished_at - interval '30 hours'"
        " returning extract(epoch from now() - coalesce(finished_at, started_at)) / 3600",
    )
    state = asyncio.run(monitor_ingestion(clan_tags=[PIPELINE_CLAN], return_state=True))
    assert state.is_failed()
    [alert] = _alerts(warehouse)
    assert alert[:3] == ("freshness", "open", 1)
    assert since >= 30.0
    assert since <= alert[3] < float(since) + 0.05  # hours since the last success (3 min slack)
    assert alert[4] == 25.0  # CLASH_MONITOR_FRESHNESS_HOURS

    asyncio.run(monitor_ingestion(clan_tags=[PIPELINE_CLAN], return_state=True))
    assert [a[:3] for a in _alerts(warehouse)] == [("freshness", "open", 2)]

    sim.clock.advance(timedelta(hours=6))
    _run(sim, pipeline_project)  # ingestion is back: its monitor phase resolves the alert
    assert [a[:2] for a in _alerts(warehouse)] == [("freshness", "resolved")]
    state = asyncio.run(monitor_ingestion(clan_tags=[PIPELINE_CLAN], return_state=True))
    assert state.is_completed()


# ---------------------------------------------------------------- out of range, webhook


class _Hook(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802 - the http.server name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


def test_out_of_range_values_alert_posts_the_webhook_and_resolve(warehouse, monkeypatch):
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Hook.received = []
    monkeypatch.setenv("CLASH_ALERT_WEBHOOK_URL", f"http://127.0.0.1:{server.server_port}/hook")
    try:
        [(player,)] = _rows(
            warehouse,
            "select player_tag from marts.members where clan_tag = %s and is_current"
            " order by player_tag limit 1",
            PIPELINE_CLAN,
        )
        _rows(
            warehouse,
            "update marts.members set donations = -3 where player_tag = %s returning 1",
            player,
        )
        report = _monitor(warehouse)
        assert [(f.check_name, f.passed) for f in report.findings if not f.passed] == [
            ("out_of_range", False)
        ]
        assert _alerts(warehouse) == [("out_of_range", "open", 1, -3.0, 0.0)]
        assert report.webhooks_sent == 1
        [message] = _Hook.received
        assert message["status"] == "open" and message["check"] == "out_of_range"
        assert PIPELINE_CLAN in message["text"] and player in message["text"]

        _monitor(warehouse)  # still open: no second message
        assert len(_Hook.received) == 1

        _rows(
            warehouse,
            "update marts.members set donations = 0 where player_tag = %s returning 1",
            player,
        )
        _monitor(warehouse)
        assert [a[:2] for a in _alerts(warehouse)] == [("out_of_range", "resolved")]
        assert [m["status"] for m in _Hook.received] == ["open", "resolved"]
    finally:
        server.shutdown()

    # a webhook that is down never fails the monitor
    monkeypatch.setenv("CLASH_ALERT_WEBHOOK_URL", f"http://127.0.0.1:{server.server_port}/x")
    _rows(
        warehouse,
        "update marts.members set trophies = -1 where player_tag = %s returning 1",
        player,
    )
    report = _monitor(warehouse)
    assert report.webhooks_sent == 0
    assert [a[:2] for a in _alerts(warehouse)][-1] == ("out_of_range", "open")


def test_cli_alerts_lists_open_alerts(warehouse):
    from typer.testing import CliRunner

    from clash_pipeline.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["alerts"])
    assert result.exit_code == 0, result.output
    assert "no open alerts" in result.output
    _rows(
        warehouse,
        "insert into ops.alerts (clan_tag, check_name, severity, summary)"
        " values (%s, 'freshness', 'critical', 'no successful run') returning 1",
        PIPELINE_CLAN,
    )
    result = runner.invoke(app, ["alerts"])
    assert result.exit_code == 0, result.output
    assert "freshness" in result.output and PIPELINE_CLAN in result.output


def test_cli_monitor_runs_the_checkpoint_for_a_clan(warehouse):
    from typer.testing import CliRunner

    from clash_pipeline.cli import app

    result = CliRunner().invoke(app, ["monitor", "--clan", PIPELINE_CLAN])
    assert result.exit_code == 0, result.output
    assert "missing_members" in result.output and "freshness" in result.output
    assert "monitor run took" in result.output

    bad = CliRunner().invoke(app, ["monitor", "--clan", "not a tag!"])
    assert bad.exit_code != 0


# ------------------------------------------------------------------- the monitor itself


def test_an_error_inside_the_monitor_is_recorded_and_does_not_fail_the_run(
    warehouse, sim, pipeline_project, monkeypatch, tmp_path
):
    monkeypatch.setenv("CLASH_GX_DIR", str(tmp_path / "no-gx-here"))
    sim.clock.advance(timedelta(hours=6))
    run = _run(sim, pipeline_project)  # succeeded (asserted in _run)
    details = _monitor_details(warehouse, run.run_id)
    assert details["anomaly_error"]["type"] == "ClashPipelineError"
    assert "no Great Expectations checkpoint" in details["anomaly_error"]["message"]
    assert "health" in details
    assert _alerts(warehouse) == []


def test_the_committed_gx_context_is_what_the_code_writes():
    """gx/ holds one suite and validation definition per check, bounds as parameters."""
    from clash_pipeline.monitor.checks import CHECKS
    from clash_pipeline.monitor.context import CHECKPOINT
    from clash_pipeline.project import project_dir

    REPO_GX_DIR = project_dir() / "gx"  # the committed context

    checkpoint = json.loads((REPO_GX_DIR / "checkpoints" / f"{CHECKPOINT}.json").read_text())
    assert [v["name"] for v in checkpoint["validation_definitions"]] == [c.name for c in CHECKS]
    assert [a["type"] for a in checkpoint["actions"]] == ["update_data_docs"]
    for check in CHECKS:
        suite = json.loads((REPO_GX_DIR / "expectations" / f"{check.suite_name}.json").read_text())
        kwargs = [e["kwargs"] for e in suite["expectations"]]
        assert [k["column"] for k in kwargs] == [e.column for e in check.expectations]
        for expect, given in zip(check.expectations, kwargs, strict=True):
            if isinstance(expect.max_value, str):
                assert given["max_value"] == {"$PARAMETER": expect.max_value}
        assert suite["meta"]["severity"] == check.severity
    config = (REPO_GX_DIR / "great_expectations.yml").read_text()
    assert "connection_string: ${CLASH_GX_DATABASE_URL}" in config
    assert "postgresql://" not in config  # no credentials committed


def test_old_validation_results_are_pruned(tmp_path):
    from clash_pipeline.monitor.run import prune_results

    old = tmp_path / "uncommitted/validations/clash_freshness/__none__/20200101T000000.000000Z"
    page = tmp_path / (
        "uncommitted/data_docs/local_site/validations/clash_freshness/__none__/"
        "20200101T000000.000000Z"
    )
    new = tmp_path / "uncommitted/validations/clash_freshness/__none__/29990101T000000.000000Z"
    for folder in (old, page, new):
        folder.mkdir(parents=True)
        (folder / "result.json").write_text("{}")
    assert prune_results(tmp_path) == 2
    assert not old.exists() and not page.exists() and new.exists()
