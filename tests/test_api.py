"""The roster API on a real warehouse (one pipeline run, built by dbt).

Values are compared with what the marts and ops tables hold, read directly
with the admin connection; a new snapshot is landed by one more pipeline run
on the simulator, the way tests/test_pipeline.py does.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from clash_pipeline.serving.app import create_app
from clash_pipeline.serving.client import RosterApiError, RosterClient
from clash_pipeline.serving.server import BackgroundServer
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

CLAN_Q = {"clan": PIPELINE_CLAN}


def _rows(url, query, *params):
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        return conn.execute(query, params).fetchall()


def _latest_snapshot(url):
    return _rows(
        url,
        "select * from marts.roster_snapshots where clan_tag = %s order by snapshot_at desc"
        " limit 1",
        PIPELINE_CLAN,
    )[0]


@pytest.fixture
def server(warehouse) -> Iterator[BackgroundServer]:
    with BackgroundServer(create_app(warehouse, pool_size=4)) as running:
        yield running


@pytest.fixture
def http(server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        yield client


def test_roster_200_is_the_latest_snapshot_with_typed_members_and_metrics(warehouse, http):
    response = http.get("/api/v2/roster", params=CLAN_Q)
    assert response.status_code == 200
    snapshot = _latest_snapshot(warehouse)
    version = snapshot["payload_version"]
    assert response.headers["etag"] == f'"{version}"'
    assert response.headers["cache-control"] == "no-cache"
    body = response.json()
    assert body["payload_version"] == version
    meta = body["snapshot"]
    for key in ("snapshot_id", "snapshot_version", "ingestion_version", "schema_version"):
        assert meta[key] == snapshot[key], key
    assert meta["fetched_at"] == snapshot["fetched_at"].isoformat().replace("+00:00", "Z")

    expected = {
        row["player_tag"]: row
        for row in _rows(
            warehouse,
            "select * from marts.roster where clan_tag = %s and is_current",
            PIPELINE_CLAN,
        )
    }
    members = {m["player_tag"]: m for m in body["members"]}
    assert members.keys() == expected.keys()
    assert len(members) == snapshot["member_count"] > 0
    for tag, row in expected.items():
        member = members[tag]
        assert member["name"] == row["name"]
        assert member["trophies"] == row["trophies"]
        assert member["league_tier_name"] == row["league_tier_name"]
        assert member["donations"] == row["donations"]
        # when the profile behind the profile fields was fetched (carried forward or not)
        served_at = member["profile_fetched_at"]
        assert (datetime.fromisoformat(served_at) if served_at else None) == row[
            "profile_fetched_at"
        ]
        for metric in ("hero_rush_pct", "lab_rush_pct", "ace_30d", "tenure_days"):
            value = row[metric]
            assert member["metrics"][metric] == (None if value is None else float(value)), metric
    # typed: numbers are JSON numbers, not strings
    some = next(iter(members.values()))
    assert isinstance(some["trophies"], int)
    assert isinstance(some["metrics"]["hero_rush_pct"], int | float)


@pytest.mark.parametrize(
    "header",
    [
        '"{v}"',
        'W/"{v}"',
        '"other", W/"{v}"',
        "*",
    ],
    ids=["strong", "weak", "list", "star"],
)
def test_roster_304_for_a_matching_etag(warehouse, http, header):
    version = _latest_snapshot(warehouse)["payload_version"]
    response = http.get(
        "/api/v2/roster", params=CLAN_Q, headers={"If-None-Match": header.format(v=version)}
    )
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == f'"{version}"'
    assert response.headers["cache-control"] == "no-cache"


def test_conditional_requests_still_validate_and_404(http):
    bad = http.get("/api/v2/roster", params={"clan": "#BAD!"}, headers={"If-None-Match": "*"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_tag"
    unknown = http.get("/api/v2/roster", params={"clan": "#2PP"}, headers={"If-None-Match": "*"})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "clan_not_found"


def test_roster_200_for_another_etag(http):
    response = http.get("/api/v2/roster", params=CLAN_Q, headers={"If-None-Match": '"stale"'})
    assert response.status_code == 200 and response.json()["members"]


@pytest.mark.parametrize(
    ("path", "params", "code"),
    [
        ("/api/v2/roster", {"clan": "#NOT-A-TAG"}, "invalid_tag"),
        ("/api/v2/roster", {}, "invalid_parameter"),
        ("/api/v2/roster", {"clan": "x" * 41}, "invalid_parameter"),
        ("/api/v2/members/ABC!", {}, "invalid_tag"),
        ("/api/v2/metrics", {"clan": PIPELINE_CLAN, "metric": "nope", "window": "7d"}, None),
        ("/api/v2/metrics", {"clan": PIPELINE_CLAN, "metric": "ace", "window": "7d"}, None),
        ("/api/v2/ingestion/health", {"clan": "hello world"}, "invalid_tag"),
    ],
)
def test_bad_input_is_a_400_with_a_json_error(http, path, params, code):
    response = http.get(path, params=params)
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"code", "message"}
    if code:
        assert error["code"] == code
    assert "Traceback" not in response.text and len(error["message"]) > 10


def test_unknown_things_are_404s(http):
    for path, params, code in [
        ("/api/v2/roster", {"clan": "#2PP"}, "clan_not_found"),
        ("/api/v2/metrics", {"clan": "#2PP", "metric": "ace", "window": "30d"}, "clan_not_found"),
        ("/api/v2/members/%23222", {}, "member_not_found"),
        ("/api/v2/ingestion/health", {"clan": "#2PP"}, "clan_not_found"),
        ("/api/v2/nothing", {}, "not_found"),
    ]:
        response = http.get(path, params=params)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == code
    assert http.post("/api/v2/roster", params=CLAN_Q).status_code == 405


def test_openapi_docs_and_the_dashboard_are_served(http):
    spec = http.get("/api/openapi.json").json()
    assert {
        "/api/v2/roster",
        "/api/v2/members/{tag}",
        "/api/v2/metrics",
        "/api/v2/ingestion/health",
        "/api/v2/clans",
    } <= set(spec["paths"])
    assert "If-None-Match" in spec["info"]["description"]
    assert http.get("/api/docs").status_code == 200
    root = http.get("/", follow_redirects=True)
    assert root.status_code == 200 and '<script type="module" src="app.js">' in root.text
    assert http.get("/dashboard/store.js").headers["content-type"].startswith("text/javascript")


def test_clans_members_and_metrics_read_the_marts(warehouse, http):
    clans = http.get("/api/v2/clans").json()["clans"]
    snapshot = _latest_snapshot(warehouse)
    assert [c["clan_tag"] for c in clans] == [PIPELINE_CLAN]
    assert clans[0]["payload_version"] == snapshot["payload_version"]

    player = _rows(
        warehouse,
        "select player_tag from marts.roster where clan_tag = %s and is_current"
        " order by player_tag limit 1",
        PIPELINE_CLAN,
    )[0]["player_tag"]
    response = http.get(f"/api/v2/members/{player.removeprefix('#')}")
    assert response.status_code == 200
    member = response.json()
    stats = _rows(
        warehouse,
        "select snapshot_id, trophies from marts.member_snapshot_stats"
        " where clan_tag = %s and player_tag = %s order by snapshot_at",
        PIPELINE_CLAN,
        player,
    )
    assert [(h["snapshot_id"], h["trophies"]) for h in member["history"]] == [
        (s["snapshot_id"], s["trophies"]) for s in stats
    ]
    metric_rows = _rows(
        warehouse,
        "select metric_name, metric_window, value from marts.metrics"
        " where clan_tag = %s and player_tag = %s",
        PIPELINE_CLAN,
        player,
    )
    assert sum(len(points) for w in member["metrics"].values() for points in w.values()) == len(
        metric_rows
    )
    ace = next(r for r in metric_rows if (r["metric_name"], r["metric_window"]) == ("ace", "30d"))
    assert member["metrics"]["ace"]["30d"][-1]["value"] == float(ace["value"])
    # the member's ETag is its clan's version: revalidation works the same way
    assert response.headers["etag"] == f'"{snapshot["payload_version"]}"'
    again = http.get(
        f"/api/v2/members/{player.removeprefix('#')}",
        headers={"If-None-Match": response.headers["etag"]},
    )
    assert again.status_code == 304

    metric = http.get(
        "/api/v2/metrics", params={**CLAN_Q, "metric": "donation_balance", "window": "7d"}
    ).json()
    expected = _rows(
        warehouse,
        "select player_tag, value from marts.metrics where clan_tag = %s"
        " and metric_name = 'donation_balance' and metric_window = '7d'",
        PIPELINE_CLAN,
    )
    assert sorted((v["player_tag"], v["value"]) for v in metric["values"]) == sorted(
        (r["player_tag"], float(r["value"])) for r in expected
    )


def test_ingestion_health_reads_ops(warehouse, http):
    [run] = _rows(
        warehouse,
        "select * from ops.ingest_runs where %s = any(clan_tags) and status = 'succeeded'",
        PIPELINE_CLAN,
    )
    logs = _rows(warehouse, "select * from ops.ingest_logs where run_id = %s", run["run_id"])
    with psycopg.connect(warehouse, autocommit=True) as conn:
        conn.execute(
            "insert into ops.alerts (clan_tag, check_name, severity, summary, observed_value,"
            " threshold) values (%s, 'member_count_drop', 'critical', 'members fell', 30, 45)",
            (PIPELINE_CLAN,),
        )
        conn.execute(
            "insert into ops.alerts (clan_tag, check_name, status, resolved_at, summary)"
            " values (%s, 'old', 'resolved', now(), 'resolved one')",
            (PIPELINE_CLAN,),
        )
    health = http.get("/api/v2/ingestion/health", params=CLAN_Q).json()
    assert health["last_success"]["run_id"] == str(run["run_id"])
    assert health["last_run"]["status"] == "succeeded"
    assert health["last_success"]["duration_ms"] == run["duration_ms"]
    assert [(p["phase"], p["step"]) for p in health["phases"]] == [
        (row["phase"], row["step"]) for row in sorted(logs, key=lambda r: r["log_id"])
    ]
    assert {p["phase"] for p in health["phases"]} >= {"fetch", "land", "transform", "monitor"}
    assert health["stale"] is False and health["stale_after_hours"] == 25
    assert [a["check_name"] for a in health["open_alerts"]] == ["member_count_drop"]
    assert health["open_alerts"][0]["observed_value"] == 30
    assert (
        health["anomalies"]["members_in_snapshot"]
        == run["summary"]["health"]["members_in_snapshot"]
    )

    # stale: no success within the configured hours
    with BackgroundServer(create_app(warehouse, stale_hours=1e-6)) as strict:
        stale = httpx.get(f"{strict.base_url}/api/v2/ingestion/health", params=CLAN_Q).json()
    assert stale["stale"] is True


def test_payload_version_changes_when_a_new_snapshot_lands_and_only_then(
    warehouse, http, server, pipeline_project, tmp_path
):
    first = http.get("/api/v2/roster", params=CLAN_Q)
    version = first.json()["payload_version"]
    # the same snapshot always gives the same version, from any app instance
    assert http.get("/api/v2/roster", params=CLAN_Q).headers["etag"] == f'"{version}"'
    with BackgroundServer(create_app(warehouse)) as other:
        assert httpx.get(f"{other.base_url}/api/v2/roster", params=CLAN_Q).headers["etag"] == (
            f'"{version}"'
        )
    client = RosterClient(server.base_url, tmp_path / "cache")
    assert client.roster(PIPELINE_CLAN)["payload_version"] == version
    assert client.last_status == 200
    assert client.roster(PIPELINE_CLAN)["payload_version"] == version
    assert client.last_status == 304  # answered from the disk cache

    with SimulatedClashApi(seed=PIPELINE_SEED, token=PIPELINE_TOKEN, start_time=PIPELINE_T0) as sim:
        sim.clock.advance(timedelta(hours=6))
        report = run_pipeline(sim, pipeline_options(pipeline_project, transform_mode="run"))
    assert not report.failed, [r.error for r in report.failed]

    snapshot = _latest_snapshot(warehouse)
    assert snapshot["payload_version"] != version
    stale = http.get("/api/v2/roster", params=CLAN_Q, headers={"If-None-Match": f'"{version}"'})
    assert stale.status_code == 200
    assert stale.json()["payload_version"] == snapshot["payload_version"]
    assert stale.json()["snapshot"]["snapshot_id"] == snapshot["snapshot_id"]
    assert stale.headers["etag"] == f'"{snapshot["payload_version"]}"'
    fresh = http.get(
        "/api/v2/roster", params=CLAN_Q, headers={"If-None-Match": stale.headers["etag"]}
    )
    assert fresh.status_code == 304
    # the client sees the new version and replaces its cached copy
    assert client.roster(PIPELINE_CLAN)["payload_version"] == snapshot["payload_version"]
    assert client.last_status == 200
    assert len(list((tmp_path / "cache").glob("*.json"))) == 1
    with pytest.raises(RosterApiError) as excinfo:
        client.roster("#2PP")
    assert excinfo.value.status == 404
    client.close()


def test_the_api_connection_is_read_only(warehouse, server):
    from clash_pipeline.serving.queries import Warehouse

    readonly = Warehouse(warehouse, max_size=1)
    readonly.open()
    try:
        with readonly.connection() as conn:
            assert conn.execute("select current_user as u").fetchone()["u"] == "clash_readonly"
            conn.execute("select count(*) from marts.roster")
            conn.execute("select count(*) from ops.alerts")
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                conn.execute("delete from marts.roster")
            # even in a read-write transaction the role may not write
            conn.execute("set default_transaction_read_only = off")
            for statement in (
                "delete from marts.roster",
                "insert into ops.alerts (check_name, summary) values ('x', 'y')",
                "update marts.roster_snapshots set clan_name = 'x'",
                "create table marts.sneaky (x int)",
                "select count(*) from raw.payloads",
            ):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(statement)
    finally:
        readonly.close()


def _api_cli(*args, env):
    import os
    import subprocess
    import sys

    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("COC_", "DATABASE_URL"))}
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "clash_pipeline.cli", "api", "--port", "9", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=120,
    )


def test_cli_api_without_marts_says_to_build_first(migrated_db_url, tmp_path):
    result = _api_cli(env={"DATABASE_URL": migrated_db_url, "CLASH_PIPELINE_HOME": str(tmp_path)})
    assert result.returncode == 1
    assert "no marts yet" in result.stderr
    assert "clash-pipeline demo" in result.stderr and "hint:" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_api_with_an_unreachable_database_is_one_clear_line(tmp_path):
    url = "postgresql://someone:s3cret-pw@127.0.0.1:9/clash"
    result = _api_cli(env={"DATABASE_URL": url, "CLASH_PIPELINE_HOME": str(tmp_path)})
    assert result.returncode == 1
    assert "cannot connect to PostgreSQL" in result.stderr and "DATABASE_URL" in result.stderr
    assert "s3cret-pw" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_a_roster_between_two_builds_is_served_but_not_kept(warehouse, server, http):
    """roster_snapshots is written before the roster mart in a dbt run: until the
    roster catches up, the answer says no-store and the server keeps no body."""
    with psycopg.connect(warehouse, autocommit=True) as conn:
        conn.execute("update marts.roster set metrics_as_of = metrics_as_of - interval '6 hours'")
    between = http.get("/api/v2/roster", params=CLAN_Q)
    assert between.status_code == 200
    assert between.headers["cache-control"] == "no-store" and "etag" not in between.headers
    with psycopg.connect(warehouse, autocommit=True) as conn:
        conn.execute("update marts.roster set metrics_as_of = metrics_as_of + interval '6 hours'")
    caught_up = http.get("/api/v2/roster", params=CLAN_Q)
    assert caught_up.headers["cache-control"] == "no-cache" and caught_up.headers["etag"]
    assert [m["player_tag"] for m in caught_up.json()["members"]] == [
        m["player_tag"] for m in between.json()["members"]
    ]
