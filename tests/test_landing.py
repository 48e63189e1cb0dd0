"""Landing: a run's responses reach raw atomically, deduplicated, with a fetch-log row each."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from datetime import UTC, datetime

import psycopg
import pytest

from clash_pipeline.clash_api.client import FetchRecord
from clash_pipeline.clash_api.ratelimit import RateLimiter
from clash_pipeline.ingest.fetch import ApiTarget, fetch_clans
from clash_pipeline.ingest.land import ClanBundle, canonical_body, land_bundle
from clash_pipeline.settings import load_settings

CLAN = "#2QG2C08UP"


def _settings(tmp_path):
    return load_settings(clash_pipeline_home=tmp_path, coc_max_retries=1, coc_timeout_seconds=3)


def _fetch(settings, db_url, sim, tags=(CLAN,), *, full=False):
    target = ApiTarget(
        base_url=sim.base_url, token=sim_token(sim), source="simulator", clock=sim.clock.now
    )
    limiter = RateLimiter(requests_per_second=1000, max_concurrency=16)
    return asyncio.run(
        fetch_clans(settings, db_url, list(tags), target, limiter=limiter, full=full)
    )


def sim_token(sim) -> str:
    return sim.token


def _count(db_url, sql, *params):
    with psycopg.connect(db_url) as conn:
        return conn.execute(sql, params).fetchone()[0]


def test_fetch_lands_clan_members_players_wars_and_raids(tmp_path, migrated_db_url, sim_api):
    [outcome] = _fetch(_settings(tmp_path), migrated_db_url, sim_api)
    assert outcome.status == "succeeded", outcome.error

    with psycopg.connect(migrated_db_url) as conn:
        clan = conn.execute(
            """
            select p.body from raw.fetch_log f join raw.payloads p using (payload_hash)
            where f.endpoint = 'clan' and f.resource_tag = %s
            """,
            (CLAN,),
        ).fetchone()[0]
        member_tags = {m["tag"] for m in clan["memberList"]}
        by_endpoint = dict(
            conn.execute(
                "select endpoint, count(*) from raw.fetch_log where run_id = %s group by endpoint",
                (outcome.run_id,),
            ).fetchall()
        )
        player_tags = {
            r[0]
            for r in conn.execute(
                "select resource_tag from raw.fetch_log where endpoint = 'player' and run_id = %s",
                (outcome.run_id,),
            )
        }
        run = conn.execute(
            "select status, requests, kind from ops.ingest_runs where run_id = %s",
            (outcome.run_id,),
        ).fetchone()
        phases = [
            r[0]
            for r in conn.execute(
                "select phase from ops.ingest_logs where run_id = %s order by log_id",
                (outcome.run_id,),
            )
        ]
        orphan_successes = conn.execute(
            "select count(*) from raw.fetch_log where http_status = 200 and payload_hash is null"
        ).fetchone()[0]

    assert 30 <= len(member_tags) <= 50
    assert player_tags == member_tags
    for endpoint in ("clan", "clan_members", "warlog", "currentwar", "leaguegroup"):
        assert by_endpoint[endpoint] == 1
    assert by_endpoint["capitalraidseasons"] == 1
    assert by_endpoint["player"] == len(member_tags)
    assert run == ("succeeded", sum(by_endpoint.values()), "fetch")
    assert phases == ["fetch", "land"]
    assert orphan_successes == 0


def test_unchanged_refetch_stores_no_new_payload(tmp_path, migrated_db_url, sim_api):
    settings = _settings(tmp_path)
    [first] = _fetch(settings, migrated_db_url, sim_api)
    payloads_after_first = _count(migrated_db_url, "select count(*) from raw.payloads")
    # frozen clock: same data; full, or the planner would not ask for the unchanged members
    [second] = _fetch(settings, migrated_db_url, sim_api, full=True)

    assert first.land.payloads_new == payloads_after_first
    assert first.land.bytes_new > 0
    assert second.land.payloads_new == 0
    assert second.land.bytes_new == 0
    assert second.land.requests == first.land.requests
    assert _count(migrated_db_url, "select count(*) from raw.payloads") == payloads_after_first
    assert _count(migrated_db_url, "select count(*) from raw.fetch_runs") == 2
    assert _count(migrated_db_url, "select count(*) from raw.fetch_log") == 2 * first.land.requests


def test_same_content_formatted_differently_is_one_payload():
    compact = b'{"b":1,"a":[1,2]}'
    pretty = b'{\n  "a": [1, 2],\n  "b": 1\n}'
    assert canonical_body(compact)[0] == canonical_body(pretty)[0]
    assert canonical_body(compact)[0] != canonical_body(b'{"a":[2,1],"b":1}')[0]


def _record(endpoint, body, tag=CLAN, status=200):
    now = datetime(2026, 11, 2, 8, tzinfo=UTC)
    return FetchRecord(
        endpoint=endpoint,
        resource_tag=tag,
        path=f"/x/{endpoint}",
        status=status,
        reason=None,
        message=None,
        requested_at=now,
        fetched_at=now,
        duration_ms=5.0,
        attempts=1,
        retries=0,
        throttled=0,
        max_age=60,
        body=body,
        error=None,
    )


def test_failed_landing_leaves_nothing(migrated_db_url):
    before = [
        _count(migrated_db_url, f"select count(*) from raw.{t}")
        for t in ("payloads", "fetch_runs", "fetch_log")
    ]
    bundle = ClanBundle(
        clan_tag=CLAN,
        snapshot_at=datetime(2026, 11, 2, 8, tzinfo=UTC),
        records=[
            _record("clan", json.dumps({"tag": CLAN, "memberList": []}).encode()),
            _record("player", b'{"tag": "#2PP"}', tag="#2PP"),
            # The last row breaks a constraint, after payloads and run were written.
            _record("not_an_endpoint", b'{"x": 1}'),
        ],
    )
    with psycopg.connect(migrated_db_url) as conn, pytest.raises(psycopg.errors.CheckViolation):
        land_bundle(
            conn, bundle, run_id=uuid.uuid4(), source="simulator", started_at=bundle.snapshot_at
        )
    after = [
        _count(migrated_db_url, f"select count(*) from raw.{t}")
        for t in ("payloads", "fetch_runs", "fetch_log")
    ]
    assert after == before


def test_failed_player_and_private_warlog_are_logged_and_run_succeeds(
    tmp_path, migrated_db_url, sim_api
):
    settings = _settings(tmp_path)
    missing_player = sim_api.world.roster_tags(CLAN, sim_api.clock.now())[0]
    sim_api.faults.missing_players.add(missing_player)
    sim_api.faults.private_warlog_clans.add(CLAN)

    [outcome] = _fetch(settings, migrated_db_url, sim_api)

    assert outcome.status == "succeeded"
    with psycopg.connect(migrated_db_url) as conn:
        rows = conn.execute(
            """
            select endpoint, resource_tag, http_status, error_reason, payload_hash
            from raw.fetch_log where run_id = %s and http_status <> 200
            order by endpoint
            """,
            (outcome.run_id,),
        ).fetchall()
        failed = conn.execute(
            "select failed_requests from ops.ingest_runs where run_id = %s", (outcome.run_id,)
        ).fetchone()[0]
    assert ("player", missing_player, 404, "notFound", None) in rows
    assert ("warlog", CLAN, 403, "accessDenied", None) in rows
    assert failed == len(rows)


def test_clan_not_found_fails_the_run_and_lands_nothing(tmp_path, migrated_db_url, sim_api):
    sim_api.faults.missing_clans.add(CLAN)
    [outcome] = _fetch(_settings(tmp_path), migrated_db_url, sim_api)

    assert outcome.status == "failed"
    assert CLAN in outcome.error["message"]
    assert _count(migrated_db_url, "select count(*) from raw.fetch_runs") == 0
    assert _count(migrated_db_url, "select count(*) from raw.fetch_log") == 0
    with psycopg.connect(migrated_db_url) as conn:
        status, error = conn.execute(
            "select status, error from ops.ingest_runs where run_id = %s", (outcome.run_id,)
        ).fetchone()
    assert status == "failed"
    assert "notFound" in json.dumps(error) or "not found" in json.dumps(error).lower()


def test_two_clans_are_two_runs_and_one_failure_does_not_stop_the_other(
    tmp_path, migrated_db_url, sim_api
):
    other = "#9RCRVL8V"
    sim_api.faults.missing_clans.add(other)
    outcomes = _fetch(_settings(tmp_path), migrated_db_url, sim_api, tags=(CLAN, other))
    assert {o.clan_tag: o.status for o in outcomes} == {CLAN: "succeeded", other: "failed"}
    assert _count(migrated_db_url, "select count(*) from raw.fetch_runs") == 1


def test_token_is_never_stored(tmp_path, migrated_db_url, sim_api):
    sim_api.faults.private_warlog_clans.add(CLAN)
    sim_api.faults.missing_clans.add("#9RCRVL8V")
    _fetch(_settings(tmp_path), migrated_db_url, sim_api, tags=(CLAN, "#9RCRVL8V"))
    token = sim_token(sim_api)
    with psycopg.connect(migrated_db_url) as conn:
        for table in ("raw.fetch_runs", "raw.fetch_log", "ops.ingest_runs", "ops.ingest_logs"):
            dump = conn.execute(f"select coalesce(string_agg(t::text, ''), '') from {table} t")
            assert token not in dump.fetchone()[0], table


def test_cli_fetch_writes_the_flows_checkpoint_rows(tmp_path, migrated_db_url, sim_api):
    """``clash-pipeline fetch`` runs the flow's fetch and land (clash_pipeline.ingest.run)."""
    [outcome] = _fetch(_settings(tmp_path), migrated_db_url, sim_api)
    with psycopg.connect(migrated_db_url) as conn:
        rows = conn.execute(
            "select phase, status, attempt, clan_tag, details from ops.ingest_logs"
            " where run_id = %s order by log_id",
            (outcome.run_id,),
        ).fetchall()
    [fetch, land] = rows
    assert fetch[:4] == ("fetch", "succeeded", 1, CLAN)
    details = fetch[4]
    assert {k: details.pop(k) for k in ("planned", "reasons")} == {
        "planned": {
            "clan": 1,
            "clan_members": 1,
            "player": outcome.members,
            "warlog": 1,
            "currentwar": 1,
            "leaguegroup": 1,
            "capitalraidseasons": 1,
            **({"cwl_war": n} if (n := _cwl_wars(migrated_db_url, outcome.run_id)) else {}),
        },
        "reasons": dict.fromkeys(
            ("warlog", "currentwar", "leaguegroup", "capitalraidseasons"), "first"
        ),
    }
    assert (
        details
        == {
            "failed_requests": 0,
            "failed_players": 0,
            "dropped_requests": 0,
            "dropped_players": 0,
            "members": outcome.members,
            "roster": outcome.members,  # the first run fetched every listed member
            "plan": "first",  # the clan's first run: everything
            "skipped": {},
            "skipped_requests": 0,
            "profiles": {"first": outcome.members},
            # one key: every request of the run (its fetch log rows), by fingerprint
            "keys": [
                {
                    "position": 1,
                    "fingerprint": hashlib.sha256(sim_token(sim_api).encode()).hexdigest()[:12],
                    "requests": _count(
                        migrated_db_url,
                        "select count(*) from raw.fetch_log where run_id = %s",
                        outcome.run_id,
                    ),
                    "throttled": 0,
                    "rejected": 0,
                }
            ],
        }
    )
    assert land[:4] == ("land", "succeeded", 1, CLAN)
    assert land[4]["bytes_new"] == outcome.land.bytes_new


def _cwl_wars(db_url, run_id):
    return _count(
        db_url,
        "select count(*) from raw.fetch_log where run_id = %s and endpoint = 'cwl_war'",
        run_id,
    )


def test_phase_attempt_records_retrying_then_failed_and_raises(migrated_db_url):
    from clash_pipeline.warehouse.runs import PhaseAttempt, RunRecorder

    recorder = RunRecorder(db_url=migrated_db_url, kind="fetch", clan_tags=[CLAN]).start()
    for attempt in (1, 2):
        with (
            pytest.raises(RuntimeError),
            PhaseAttempt("fetch", [recorder], attempt=attempt, retries=1),
        ):
            raise RuntimeError("boom")
    with (
        pytest.raises(ValueError),
        PhaseAttempt("land", [recorder], retries=3, retriable=lambda exc: False),
    ):
        raise ValueError("constraint")
    with psycopg.connect(migrated_db_url) as conn:
        rows = conn.execute(
            "select phase, status, attempt, clan_tag, error ->> 'phase', error ->> 'message'"
            " from ops.ingest_logs where run_id = %s order by log_id",
            (recorder.run_id,),
        ).fetchall()
    assert rows == [
        ("fetch", "retrying", 1, CLAN, "fetch", "boom"),
        ("fetch", "failed", 2, CLAN, "fetch", "boom"),
        ("land", "failed", 1, CLAN, "land", "constraint"),
    ]


def test_phase_attempt_keeps_the_phase_error_when_its_row_cannot_be_written(migrated_db_url):
    from clash_pipeline.warehouse.runs import PhaseAttempt, RunRecorder

    recorder = RunRecorder(db_url=migrated_db_url, kind="fetch", clan_tags=[CLAN])  # no run row
    with pytest.raises(RuntimeError, match="the phase's own"), PhaseAttempt("fetch", [recorder]):
        raise RuntimeError("the phase's own error")
