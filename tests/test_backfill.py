"""Backfill: saved API responses (bodies or envelopes) into raw, bad files quarantined.

Real PostgreSQL (``migrated_db_url``); no dbt here (the staging tests build over
the same samples). The CLI is exercised once as a subprocess with ``--no-build``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from clash_pipeline.ingest.backfill import (
    BackfillError,
    backfill,
    classify_body,
    parse_fetch_time,
    plan_backfill,
)

SAMPLES_DIR = Path(__file__).resolve().parents[2] / "shared" / "samples"
DATA_DIR = Path(__file__).resolve().parent / "data" / "backfill_clan"
CLAN = "#2QG2C08UP"
WF = "#2PR8R8V8P"


def _utc(text: str) -> datetime:
    return parse_fetch_time(text)


@pytest.fixture
def samples() -> Path:
    if not SAMPLES_DIR.is_dir():
        pytest.skip(f"real API samples not found at {SAMPLES_DIR} (../shared/samples)")
    return SAMPLES_DIR


def _counts(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return {
            table: conn.execute(f"select count(*) from raw.{table}").fetchone()[0]
            for table in ("fetch_runs", "fetch_log", "payloads")
        }


# --------------------------------------------------------------- recognition

# Each sample on its own (no manifest): (endpoint, status, clan, resource tag,
# quarantine reason or None). The clan of a body that does not name it and has
# no tag in its file name cannot be known: those are quarantined.
CANNOT_TELL = "cannot tell which clan"
EXPECTED_SAMPLES: dict[str, tuple[str, int, str | None, str | None, str | None]] = {
    "capitalraidseasons/warfroggy_2025-09-10_2PR8R8V8P.json": (
        "capitalraidseasons", 200, WF, WF, None,
    ),
    "capitalraidseasons/warfroggy_2025-10-08_2PR8R8V8P.json": (
        "capitalraidseasons", 200, WF, WF, None,
    ),
    "clan/warfroggy_2025-09-10_2PR8R8V8P.json": ("clan", 200, WF, WF, None),
    "clan/warfroggy_2025-10-08_2PR8R8V8P.json": ("clan", 200, WF, WF, None),
    "clan_members/warfroggy_2025-09-10_2PR8R8V8P.json": ("clan_members", 200, WF, WF, None),
    "clan_members/warfroggy_2025-10-08_2PR8R8V8P.json": ("clan_members", 200, WF, WF, None),
    # the requesting clan is the war's `clan` side
    "currentwar/cocpy_2023-05_INWAR.envelope.json": (
        "currentwar", 200, "#2GPVRU0C0", "#2GPVRU0C0", None,
    ),
    "currentwar/cocpy_2023-05_PREPARATION.envelope.json": (
        "currentwar", 200, "#RY8GYCLY", "#RY8GYCLY", None,
    ),
    "currentwar/cocpy_2023-05_WARENDED.envelope.json": (
        "currentwar", 200, "#2GPVRU0C0", "#2GPVRU0C0", None,
    ),
    "currentwar/cocpy_2023-05_NOTINWAR.envelope.json": (
        "currentwar", 200, None, None, CANNOT_TELL,
    ),
    "currentwar/warfroggy_2025-09-10_notinwar_2PR8R8V8P.json": ("currentwar", 200, WF, WF, None),
    # warStartTime: the CWL war endpoint; its sides are unordered, so no clan
    "cwl/cocpy_2023-05_clanwarleagues-war_INWAR.envelope.json": (
        "cwl_war", 200, None, None, CANNOT_TELL,
    ),
    "cwl/cocpy_2023-05_leaguegroup_INWAR_WARSMISSING.envelope.json": (
        "leaguegroup", 200, None, None, CANNOT_TELL,
    ),
    # error bodies: the endpoint from the file name, the status from the envelope
    # or the name (…_400_…)
    "errors/cocpy_player_404_notFound.envelope.json": ("player", 404, None, None, None),
    "errors/cocpy_warlog_403_accessDenied.envelope.json": ("warlog", 403, None, None, CANNOT_TELL),
    "errors/warfroggy_league_400_badRequest.json": ("leagues", 400, None, None, None),
    "leagues/clashking_2026-03_leaguetiers.envelope.json": ("leaguetiers", 200, None, None, None),
    "leagues/warfroggy_2025-09-10_leagues.json": ("leagues", 200, None, None, None),
    # a player's clan is the one in its profile
    "player/cocpy_2023-06_morgil_2PP.envelope.json": ("player", 200, "#90PU0RRG", "#2PP", None),
    "player/warfroggy_2025-10-13_andrew_UU9GJ9QQ.json": ("player", 200, WF, "#UU9GJ9QQ", None),
    "warlog/warfroggy_2025-02_2PR8R8V8P.json": ("warlog", 200, WF, WF, None),
}  # fmt: skip


def test_every_sample_is_recognised(samples: Path):
    found = sorted(p.relative_to(samples).as_posix() for p in samples.rglob("*.json"))
    assert found == sorted(EXPECTED_SAMPLES), "a sample was added or removed: update the test"
    for relpath, (endpoint, status, clan, resource, problem) in EXPECTED_SAMPLES.items():
        plan = plan_backfill(samples / relpath)
        assert plan.files_read == 1
        if problem:
            assert not plan.files, relpath
            (bad,) = plan.quarantined
            assert problem in bad.reason, (relpath, bad.reason)
            assert bad.endpoint == endpoint, relpath
            continue
        assert not plan.quarantined, (relpath, plan.quarantined)
        (item,) = plan.files
        got = (item.endpoint, item.status, item.clan_tag, item.resource_tag)
        assert got == (endpoint, status, clan, resource), relpath
        assert (item.payload_hash is None) == (status != 200), relpath


def _samples_manifest(path: Path) -> Path:
    """Fetch times of the samples (their README) and the clans their bodies do not name."""
    wf_0910, wf_1008 = "2025-09-10T15:24:10Z", "2025-10-08T19:00:17Z"
    files = {
        "capitalraidseasons/warfroggy_2025-09-10_2PR8R8V8P.json": {"fetched_at": wf_0910},
        "capitalraidseasons/warfroggy_2025-10-08_2PR8R8V8P.json": {"fetched_at": wf_1008},
        "clan/warfroggy_2025-09-10_2PR8R8V8P.json": {"fetched_at": wf_0910},
        "clan/warfroggy_2025-10-08_2PR8R8V8P.json": {"fetched_at": wf_1008},
        "clan_members/warfroggy_2025-09-10_2PR8R8V8P.json": {"fetched_at": wf_0910},
        "clan_members/warfroggy_2025-10-08_2PR8R8V8P.json": {"fetched_at": wf_1008},
        "currentwar/warfroggy_2025-09-10_notinwar_2PR8R8V8P.json": {"fetched_at": wf_0910},
        "warlog/warfroggy_2025-02_2PR8R8V8P.json": {"fetched_at": wf_0910},
        "leagues/warfroggy_2025-09-10_leagues.json": {"fetched_at": wf_0910},
        "errors/warfroggy_league_400_badRequest.json": {"fetched_at": wf_0910},
        "player/warfroggy_2025-10-13_andrew_UU9GJ9QQ.json": {"fetched_at": "2025-10-13T12:00:00Z"},
        "currentwar/cocpy_2023-05_PREPARATION.envelope.json": {"fetched_at": "2023-05-28T12:00Z"},
        "currentwar/cocpy_2023-05_INWAR.envelope.json": {"fetched_at": "2023-05-28T15:00:00Z"},
        "currentwar/cocpy_2023-05_WARENDED.envelope.json": {"fetched_at": "2023-05-28T16:45Z"},
        "currentwar/cocpy_2023-05_NOTINWAR.envelope.json": {
            "fetched_at": "2023-05-28T18:00:00Z",
            "clan_tag": "#2GPVRU0C0",
        },
        "cwl/cocpy_2023-05_clanwarleagues-war_INWAR.envelope.json": {
            "fetched_at": "2023-05-10T12:00:00Z",
            "clan_tag": "#29Y8PRCJR",
        },
        "cwl/cocpy_2023-05_leaguegroup_INWAR_WARSMISSING.envelope.json": {
            "fetched_at": "2023-06-03T12:00:00Z",
            "clan_tag": "#2QCJGPVVP",
        },
        "errors/cocpy_player_404_notFound.envelope.json": {
            "fetched_at": "2023-05-28T12:00:00Z",
            "resource_tag": "#2PP",
        },
        "errors/cocpy_warlog_403_accessDenied.envelope.json": {
            "fetched_at": "2023-05-28T12:00:00Z",
            "clan_tag": "#2GPVRU0C0",
        },
        "player/cocpy_2023-06_morgil_2PP.envelope.json": {"fetched_at": "2023-06-15T12:00:00Z"},
        "leagues/clashking_2026-03_leaguetiers.envelope.json": {
            "fetched_at": "20260301T120000.000Z"
        },
    }
    path.write_text(json.dumps({"files": files}), encoding="utf-8")
    return path


def test_loading_all_samples_twice_changes_nothing(samples, migrated_db_url, tmp_path):
    manifest = _samples_manifest(tmp_path / "samples-manifest.json")
    first = backfill(migrated_db_url, samples, manifest=manifest)
    assert first.quarantined == []
    assert first.files_read == len(EXPECTED_SAMPLES)
    assert first.loaded == len(EXPECTED_SAMPLES)
    assert first.errors_loaded == 3
    after_first = _counts(migrated_db_url)
    assert after_first["fetch_log"] == len(EXPECTED_SAMPLES)
    assert after_first["fetch_runs"] == first.runs_created

    with psycopg.connect(migrated_db_url) as conn:
        runs = conn.execute(
            "select r.source, r.snapshot_at, f.clan_tag, f.endpoint, f.fetched_at"
            " from raw.fetch_log f join raw.fetch_runs r using (run_id)"
            " where f.source_file = 'clan/warfroggy_2025-09-10_2PR8R8V8P.json'"
        ).fetchall()
        assert runs == [
            ("backfill", _utc("2025-09-10T15:24:10Z"), WF, "clan", _utc("2025-09-10T15:24:10Z"))
        ]
        # one run per clan and fetch time: the 2025-09-10 recording of the clan
        together = conn.execute(
            "select array_agg(endpoint order by endpoint) from raw.fetch_log"
            " where clan_tag = %s and fetched_at = %s group by run_id",
            (WF, _utc("2025-09-10T15:24:10Z")),
        ).fetchall()
        assert together == [
            (["capitalraidseasons", "clan", "clan_members", "currentwar", "warlog"],)
        ]
        cwl = conn.execute(
            "select clan_tag, resource_tag, request_path from raw.fetch_log"
            " where endpoint = 'cwl_war'"
        ).fetchone()
        assert cwl == ("#29Y8PRCJR", None, "/clanwarleagues/wars/{tag}")

    second = backfill(migrated_db_url, samples, manifest=manifest)
    assert (second.loaded, second.runs_created, second.payloads_new) == (0, 0, 0)
    assert second.skipped == len(EXPECTED_SAMPLES)
    assert second.quarantined == []
    assert _counts(migrated_db_url) == after_first


def test_error_envelopes_become_fetch_log_rows_without_payload(migrated_db_url, samples):
    result = backfill(migrated_db_url, DATA_DIR)
    assert (result.loaded, result.errors_loaded, result.runs_created) == (3, 1, 1)
    one_error = backfill(
        migrated_db_url, samples / "errors" / "cocpy_player_404_notFound.envelope.json"
    )
    assert one_error.errors_loaded == 1
    with psycopg.connect(migrated_db_url) as conn:
        rows = conn.execute(
            "select endpoint, clan_tag, resource_tag, http_status, error_reason, error_message,"
            " payload_hash, max_age_seconds, source_file from raw.fetch_log"
            " where http_status <> 200 order by endpoint"
        ).fetchall()
        assert rows == [
            (
                "player", None, None, 404, "notFound",
                "Not found with tag 2PP", None, 600, "cocpy_player_404_notFound.envelope.json",
            ),
            (
                "warlog", CLAN, CLAN, 403, "accessDenied",
                "Access denied, clan war log is private.", None, 600,
                "warlog_private.envelope.json",
            ),
        ]  # fmt: skip
        failed = conn.execute(
            "select requests, failed_requests from raw.fetch_runs where %s = any(clan_tags)",
            (CLAN,),
        ).fetchone()
        assert failed == (3, 1)
        payload_count = conn.execute("select count(*) from raw.payloads").fetchone()[0]
        assert payload_count == 2  # clan and members; errors never become payloads


# -------------------------------------------------------------- quarantine


def _mixed_folder(root: Path) -> Path:
    """Two good files, one truncated, one unrecognised JSON, one with an invalid tag."""
    root.mkdir(parents=True)
    clan_text = (DATA_DIR / "clan.json").read_text(encoding="utf-8")
    (root / "clan.json").write_text(clan_text, encoding="utf-8")
    shutil.copy(DATA_DIR / "members.json", root / "members_2QG2C08UP.json")
    (root / "broken").mkdir()
    (root / "broken" / "corrupt.json").write_text(clan_text[:150], encoding="utf-8")
    (root / "unrecognised.json").write_text('{"hello": "world", "items": 3}', encoding="utf-8")
    bad = json.loads(clan_text) | {"tag": "#NOT-A-TAG"}
    (root / "bad_tag.json").write_text(json.dumps(bad), encoding="utf-8")
    return root


BAD_REASONS = {
    "bad_tag.json": "invalid clan tag '#NOT-A-TAG'",
    "broken/corrupt.json": "not valid JSON",
    "unrecognised.json": "unrecognised JSON",
}


def test_bad_files_are_quarantined_and_good_ones_load(migrated_db_url, tmp_path):
    folder = _mixed_folder(tmp_path / "mixed")
    now = datetime(2026, 11, 29, 20, 0, tzinfo=UTC)
    result = backfill(
        migrated_db_url,
        folder,
        fetched_at=_utc("2025-09-10T15:24:10Z"),
        quarantine_root=tmp_path / "home" / "quarantine",
        now=now,
    )
    assert (result.files_read, result.loaded, result.runs_created) == (5, 2, 1)
    assert {q.relpath: q.reason for q in result.quarantined}.keys() == BAD_REASONS.keys()
    for item in result.quarantined:
        assert BAD_REASONS[item.relpath] in item.reason
    assert not result.ok

    qdir = result.quarantine_dir
    assert qdir == tmp_path / "home" / "quarantine" / "20261129T200000Z"
    copied = sorted(p.relative_to(qdir).as_posix() for p in qdir.rglob("*") if p.is_file())
    # no manifest template: none of them lacks only a clan, an endpoint or a time
    assert copied == sorted([*BAD_REASONS, "reasons.json"])
    assert (qdir / "broken" / "corrupt.json").read_bytes() == (
        folder / "broken" / "corrupt.json"
    ).read_bytes()
    reasons = json.loads((qdir / "reasons.json").read_text(encoding="utf-8"))
    assert {f["file"] for f in reasons["files"]} == set(BAD_REASONS)
    assert all(f["reason"] and f["sha256"] for f in reasons["files"])

    with psycopg.connect(migrated_db_url) as conn:
        rows = conn.execute(
            "select endpoint, clan_tag, source_file from raw.fetch_log order by endpoint"
        ).fetchall()
    assert rows == [("clan", CLAN, "clan.json"), ("clan_members", CLAN, "members_2QG2C08UP.json")]


def test_a_file_whose_clan_is_unknown_is_quarantined_and_loads_once_told(migrated_db_url, tmp_path):
    folder = tmp_path / "rec"
    (folder / "clan").mkdir(parents=True)
    shutil.copy(DATA_DIR / "clan.json", folder / "clan" / "clan.json")
    shutil.copy(DATA_DIR / "members.json", folder / "members.json")
    # another folder and another modification time: the clan body does not vouch
    # for the members, though it has the same ones (tests/test_backfill_identity.py)
    os.utime(folder / "clan" / "clan.json", (1_757_517_850, 1_757_517_850))
    os.utime(folder / "members.json", (1_757_517_900, 1_757_517_900))
    result = backfill(migrated_db_url, folder, quarantine_root=tmp_path / "q")
    assert result.loaded == 1
    (bad,) = result.quarantined
    assert bad.relpath == "members.json"
    assert "cannot tell which clan this clan_members response" in bad.reason
    assert "manifest" in bad.reason

    # the quarantine folder has a manifest template: fill in the clan, backfill it
    template_file = result.quarantine_dir / "manifest.json"
    template = json.loads(template_file.read_text(encoding="utf-8"))
    entry = template["files"]["members.json"]
    assert entry == {
        "endpoint": "clan_members",
        "clan_tag": None,
        "fetched_at": "2025-09-10T15:25:00Z",
    }
    entry["clan_tag"] = CLAN
    template_file.write_text(json.dumps(template), encoding="utf-8")
    retry = backfill(migrated_db_url, result.quarantine_dir, quarantine_root=tmp_path / "q")
    assert (retry.files_read, retry.loaded, retry.quarantined) == (1, 1, [])
    with psycopg.connect(migrated_db_url) as conn:
        row = conn.execute(
            "select clan_tag, resource_tag, fetched_at, request_path from raw.fetch_log"
            " where endpoint = 'clan_members'"
        ).fetchone()
    assert row == (CLAN, CLAN, _utc("2025-09-10T15:25:00Z"), "/clans/%232QG2C08UP/members")


def test_a_different_body_for_a_loaded_fetch_is_a_conflict(migrated_db_url, tmp_path):
    backfill(migrated_db_url, DATA_DIR)
    before = _counts(migrated_db_url)
    copy = tmp_path / "copy"
    shutil.copytree(DATA_DIR, copy)
    changed = json.loads((copy / "clan.json").read_text(encoding="utf-8"))
    changed["clanPoints"] += 1
    (copy / "clan.json").write_text(json.dumps(changed), encoding="utf-8")
    result = backfill(migrated_db_url, copy)
    assert (result.loaded, result.skipped) == (0, 2)
    (bad,) = result.quarantined
    assert bad.relpath == "clan.json" and "already loaded" in bad.reason
    assert _counts(migrated_db_url) == before


def test_two_bodies_for_one_fetch_in_the_files_are_a_conflict(tmp_path):
    folder = tmp_path / "two"
    folder.mkdir()
    body = json.loads((DATA_DIR / "clan.json").read_text(encoding="utf-8"))
    (folder / "a.json").write_text(json.dumps(body), encoding="utf-8")
    (folder / "b.json").write_text(json.dumps(body | {"clanPoints": 1}), encoding="utf-8")
    (folder / "same_as_a.json").write_text(json.dumps(body, indent=4), encoding="utf-8")
    plan = plan_backfill(folder, fetched_at=_utc("2025-01-01T00:00:00Z"))
    assert plan.files == []
    assert sorted(q.relpath for q in plan.quarantined) == ["a.json", "b.json", "same_as_a.json"]
    assert all("conflict" in q.reason for q in plan.quarantined)


def test_identical_bodies_for_one_fetch_load_once(tmp_path):
    folder = tmp_path / "dup"
    folder.mkdir()
    body = (DATA_DIR / "clan.json").read_text(encoding="utf-8")
    (folder / "a.json").write_text(body, encoding="utf-8")
    (folder / "b.json").write_text(json.dumps(json.loads(body)), encoding="utf-8")
    plan = plan_backfill(folder, fetched_at=_utc("2025-01-01T00:00:00Z"))
    assert [f.relpath for f in plan.files] == ["a.json"]
    assert [f.relpath for f in plan.duplicates] == ["b.json"]


# ---------------------------------------------------------------- fetch time


def test_fetch_time_precedence(tmp_path):
    folder = tmp_path / "t"
    folder.mkdir()
    shutil.copy(DATA_DIR / "clan.json", folder / "clan.json")
    envelope = {
        "body": json.loads((DATA_DIR / "members.json").read_text(encoding="utf-8")),
        "headers": {"date": "Wed, 10 Sep 2025 15:30:00 GMT"},
        "response_code": 200,
    }
    (folder / "members_2QG2C08UP.envelope.json").write_text(json.dumps(envelope))
    mtime = 1_700_000_000.75
    for name in ("clan.json", "members_2QG2C08UP.envelope.json"):
        os.utime(folder / name, (mtime, mtime))

    def times(**kwargs):
        plan = plan_backfill(folder, **kwargs)
        assert plan.quarantined == []
        return {f.relpath: (f.fetched_at, f.time_source) for f in plan.files}

    # nothing given: the modification time (whole seconds); an envelope's Date header
    got = times()
    assert got["clan.json"] == (datetime.fromtimestamp(1_700_000_000, UTC), "mtime")
    assert got["members_2QG2C08UP.envelope.json"] == (
        _utc("2025-09-10T15:30:00Z"),
        "envelope Date header",
    )

    # a manifest beats the envelope and the modification time
    manifest = {
        "defaults": {"fetched_at": "2025-09-10T15:24:10Z"},
        "files": {"clan.json": {"fetched_at": "20250909T080000.000Z"}},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    got = times()
    assert got["clan.json"] == (_utc("2025-09-09T08:00:00Z"), "manifest")
    assert got["members_2QG2C08UP.envelope.json"] == (_utc("2025-09-10T15:24:10Z"), "manifest")

    # --fetched-at beats everything
    got = times(fetched_at=_utc("2024-01-02T03:04:05Z"))
    assert set(got.values()) == {(_utc("2024-01-02T03:04:05Z"), "--fetched-at")}


def test_fetch_time_precedence_lands_in_raw(migrated_db_url, tmp_path):
    folder = tmp_path / "p"
    shutil.copytree(DATA_DIR, folder)
    backfill(migrated_db_url, folder, fetched_at=_utc("2024-01-02T03:04:05Z"))
    with psycopg.connect(migrated_db_url) as conn:
        rows = conn.execute(
            "select distinct f.fetched_at, r.snapshot_at, r.started_at"
            " from raw.fetch_log f join raw.fetch_runs r using (run_id)"
        ).fetchall()
    at = _utc("2024-01-02T03:04:05Z")
    assert rows == [(at, at, at)]


# ------------------------------------------------------------------ manifest


def test_manifest_overrides_recognition_within_reason(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    war = {
        "state": "inWar",
        "teamSize": 5,
        "preparationStartTime": "20250101T000000.000Z",
        "startTime": "20250102T000000.000Z",
        "endTime": "20250103T000000.000Z",
        "clan": {"tag": "#2QG2C08UP", "name": "A", "members": []},
        "opponent": {"tag": "#9RCRVL8V", "name": "B", "members": []},
    }
    (folder / "war.json").write_text(json.dumps(war))
    (folder / "empty.json").write_text('{"items": [], "paging": {"cursors": {}}}')
    manifest = {
        "defaults": {"fetched_at": "2025-01-02T12:00:00Z"},
        "files": {
            "war.json": {"endpoint": "cwl_war", "clan_tag": "#9RCRVL8V", "tag": "#8QJ2LPV0Y"},
            "empty.json": {"endpoint": "capitalraidseasons", "clan_tag": "#2QG2C08UP"},
            "gone.json": {"endpoint": "clan"},
        },
    }
    (folder / "_manifest.json").write_text(json.dumps(manifest))
    plan = plan_backfill(folder)
    assert plan.quarantined == []
    got = {f.relpath: (f.endpoint, f.clan_tag, f.resource_tag, f.request_path) for f in plan.files}
    assert got == {
        "war.json": ("cwl_war", "#9RCRVL8V", "#8QJ2LPV0Y", "/clanwarleagues/wars/%238QJ2LPV0Y"),
        "empty.json": (
            "capitalraidseasons", "#2QG2C08UP", "#2QG2C08UP",
            "/clans/%232QG2C08UP/capitalraidseasons",
        ),
    }  # fmt: skip
    assert plan.warnings == [
        f"manifest {folder / '_manifest.json'}: entry 'gone.json' matches no file"
    ]

    # an endpoint the body cannot be is refused; a clan that is not a side too
    manifest["files"] = {"war.json": {"endpoint": "warlog"}, "empty.json": {"endpoint": "leagues"}}
    (folder / "_manifest.json").write_text(json.dumps(manifest))
    plan = plan_backfill(folder)
    assert [f.relpath for f in plan.files] == ["empty.json"]
    (bad,) = plan.quarantined
    assert "says endpoint 'warlog'" in bad.reason
    manifest["files"] = {"war.json": {"endpoint": "cwl_war", "clan_tag": "#2PP"}}
    (folder / "_manifest.json").write_text(json.dumps(manifest))
    (bad,) = [q for q in plan_backfill(folder).quarantined if q.relpath == "war.json"]
    assert "#2PP" in bad.reason and "not one of" in bad.reason


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        ('{"clan.json": {"endpoint": "clans"}}', "unknown endpoint 'clans'"),
        ('{"clan.json": {"clan": "#2PP"}}', "unknown field(s) clan"),
        ('{"clan.json": {"clan_tag": "#NOPE!"}}', "invalid clan_tag"),
        ('{"clan.json": {"fetched_at": "yesterday"}}', "invalid fetch time"),
        ('{"../clan.json": {}}', "not a relative file path"),
        ('{"defaults": {"endpoint": "clan"}}', "defaults may only give clan_tag and fetched_at"),
        ("{not json", "not valid JSON"),
    ],
)
def test_an_invalid_manifest_stops_before_anything_is_loaded(tmp_path, manifest, message):
    folder = tmp_path / "bad-manifest"
    folder.mkdir()
    shutil.copy(DATA_DIR / "clan.json", folder / "clan.json")
    (folder / "manifest.json").write_text(manifest)
    with pytest.raises(BackfillError) as caught:
        plan_backfill(folder)
    assert message in caught.value.message
    assert caught.value.hint


def test_nothing_to_backfill_is_a_clear_error(tmp_path):
    with pytest.raises(BackfillError, match="does not exist"):
        plan_backfill(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BackfillError, match="no \\*.json response files"):
        plan_backfill(tmp_path / "empty")


# -------------------------------------------------------------------- shapes


def test_shapes_that_need_care():
    war = {"state": "inWar", "clan": {"tag": "#2PP"}, "opponent": {"tag": "#2QQ"}}
    assert classify_body(war).default == "currentwar"
    assert classify_body(war | {"warStartTime": "20250101T000000.000Z"}).default == "cwl_war"
    # attacksPerMember is no marker of either
    assert classify_body(war | {"attacksPerMember": 1}).default == "currentwar"
    assert classify_body({"state": "notInWar", "clan": {}, "opponent": {}}).default == "currentwar"
    tiers = {"items": [{"id": 105000001, "name": "Skeleton League 1", "iconUrls": {}}]}
    legacy = {"items": [{"id": 29000000, "name": "Unranked", "iconUrls": {}}]}
    assert classify_body(tiers).default == "leaguetiers"
    assert classify_body(legacy).default == "leagues"
    # war leagues, builder base leagues, labels: not landed
    assert classify_body({"items": [{"id": 48000000, "name": "Unranked"}]}) is None
    assert classify_body({"items": [{"id": 105000001, "name": "a"}, legacy["items"][0]]}) is None
    # an empty list could be any list endpoint: no default
    empty = classify_body({"items": [], "paging": {}})
    assert empty.default is None and "warlog" in empty.candidates
    assert classify_body({"reason": "notFound"}) is None
    assert classify_body([1, 2]) is None


# ----------------------------------------------------------------------- CLI


def _run_cli(*args, env):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("COC_", "DATABASE_URL"))}
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "clash_pipeline.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=120,
    )


def test_cli_backfill_loads_quarantines_and_exits_1(migrated_db_url, tmp_path):
    folder = _mixed_folder(tmp_path / "mixed")
    home = tmp_path / "home"
    env = {"DATABASE_URL": migrated_db_url, "CLASH_PIPELINE_HOME": str(home)}
    args = ("backfill", str(folder), "--no-build", "--fetched-at", "2025-09-10T15:24:10Z")
    result = _run_cli(*args, env=env)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    for label in ("files read", "loaded", "skipped (already loaded)", "quarantined",
                  "runs created", "payloads new"):  # fmt: skip
        assert label in result.stdout
    for name in BAD_REASONS:
        assert name in result.stdout
    assert "3 file(s) quarantined" in result.stderr
    (qdir,) = (home / "quarantine").iterdir()
    assert (qdir / "reasons.json").is_file()
    assert _counts(migrated_db_url)["fetch_log"] == 2

    # again: the good files are skipped, nothing new lands, still exit 1
    again = _run_cli(*args, env=env)
    assert again.returncode == 1
    assert _counts(migrated_db_url)["fetch_log"] == 2

    # a good folder alone exits 0; a bad --fetched-at is a usage error
    ok = _run_cli("backfill", str(DATA_DIR), "--no-build", env=env)
    assert ok.returncode == 0, ok.stderr
    bad = _run_cli("backfill", str(DATA_DIR), "--no-build", "--fetched-at", "soon", env=env)
    assert bad.returncode == 2
    assert "invalid time" in bad.stderr and "hint:" in bad.stderr


def test_build_prints_nodes_and_exits_1_naming_the_failures(monkeypatch, tmp_path, migrated_db_url):
    from typer.testing import CliRunner

    import clash_pipeline.cli as cli
    import clash_pipeline.transform.dbt as transform
    from clash_pipeline.transform.dbt import DbtNodeResult, DbtResult

    calls = []

    def fake_run_dbt(args, **kwargs):
        calls.append((args, kwargs))
        nodes = [
            DbtNodeResult("model.x.members", "members", "model", "success", 0.5, 12),
            DbtNodeResult("model.x.wars", "wars", "model", "error", 0.1, message="boom"),
            DbtNodeResult("test.x.not_null", "not_null_members_tag", "test", "pass", 0.01),
        ]
        return DbtResult(args=list(args), success=False, nodes=nodes, error_summary="failed")

    monkeypatch.setattr(transform, "run_dbt", fake_run_dbt)
    from clash_pipeline.warehouse.access import access_from_url

    monkeypatch.setattr(
        cli.common, "prepare_access", lambda settings: access_from_url(migrated_db_url)
    )
    monkeypatch.setenv("CLASH_PIPELINE_HOME", str(tmp_path / "home"))
    runner = CliRunner()
    result = runner.invoke(cli.app, ["build", "--full-refresh", "--select", "marts"])
    assert result.exit_code == 1
    assert "members" in result.output and "12" in result.output
    assert "dbt build failed: model wars" in result.output
    assert "tests: 1 pass" in result.output
    ((args, kwargs),) = calls
    assert args[0] == "build" and args[-2:] == ["--select", "marts"]
    assert kwargs["full_refresh"] is True

    # backfill builds with all history tested (the files are old)
    calls.clear()
    result = runner.invoke(cli.app, ["backfill", str(DATA_DIR)])
    assert result.exit_code == 1, result.output  # the build failed
    assert "loaded" in result.output and "dbt build failed" in result.output
    ((args, kwargs),) = calls
    assert kwargs["vars"] == {"staging_test_days": 0}


def test_an_envelope_with_its_request_url_names_the_clan(tmp_path):
    folder = tmp_path / "env"
    folder.mkdir()
    envelope = {
        "url": "https://user:secret@proxy.example/v1/clans/%232QG2C08UP/members?limit=50",
        "body": json.loads((DATA_DIR / "members.json").read_text(encoding="utf-8")),
        "headers": {"Cache-Control": "public, max-age=120"},
        "response_code": 200,
    }
    (folder / "members.json").write_text(json.dumps(envelope))
    (item,) = plan_backfill(folder, fetched_at=_utc("2025-01-01T00:00:00Z")).files
    assert (item.endpoint, item.clan_tag, item.resource_tag, item.clan_source) == (
        "clan_members",
        CLAN,
        CLAN,
        "envelope",
    )
    assert item.request_path == "/clans/%232QG2C08UP/members?limit=50"
    assert item.max_age == 120

    # a manifest that contradicts the request is refused
    (folder / "manifest.json").write_text('{"members.json": {"endpoint": "warlog"}}')
    (bad,) = plan_backfill(folder).quarantined
    assert "request path" in bad.reason


def test_the_clan_from_a_folder_named_by_its_tag(tmp_path):
    folder = tmp_path / "clans" / "2QG2C08UP" / "2025-09-10"
    folder.mkdir(parents=True)
    warlog = {
        "items": [
            {
                "result": "win",
                "endTime": "20250909T120000.000Z",
                "teamSize": 5,
                "clan": {"tag": CLAN, "stars": 12},
                "opponent": {"tag": "#9RCRVL8V", "stars": 7},
            }
        ],
        "paging": {"cursors": {}},
    }
    (folder / "warlog.json").write_text(json.dumps(warlog))
    # digits only in a name look like a date, not a tag: the folder wins
    (folder / "members_20220920.json").write_text((DATA_DIR / "members.json").read_text())
    plan = plan_backfill(tmp_path / "clans", fetched_at=_utc("2025-09-10T00:00:00Z"))
    assert plan.quarantined == []
    got = {f.relpath: (f.endpoint, f.clan_tag, f.clan_source) for f in plan.files}
    assert got == {
        # a war log names its clan in its items (the folder agrees)
        "2QG2C08UP/2025-09-10/warlog.json": ("warlog", CLAN, "body"),
        "2QG2C08UP/2025-09-10/members_20220920.json": ("clan_members", CLAN, "folder name"),
    }
