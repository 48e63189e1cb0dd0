"""Backfill: the clan a body names, and real bodies of endpoints the pipeline does not store.

Every body whose clan is under test is saved under a neutral name (``a.json``:
no tag in the file or folder name, no manifest), so only the body, the rest of
the backfill or the warehouse can say which clan it is. Real sample bodies
come from ../shared/samples (copied to tmp, never into the project); the
bodies of endpoints the pipeline does not store are written here in the shape
of recorded responses (coc.py's tests/mockdata, ClashKing's mock API data).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

from clash_pipeline.ingest.backfill import (
    backfill,
    classify_body,
    parse_fetch_time,
    plan_backfill,
    unstored_kind,
)

SAMPLES_DIR = Path(__file__).resolve().parents[2] / "shared" / "samples"
DATA_DIR = Path(__file__).resolve().parent / "data" / "backfill_clan"
WF = "#2PR8R8V8P"
CLAN = "#2QG2C08UP"  # tests/data/backfill_clan
NEEDS_MANIFEST = 'it needs a manifest entry with "clan_tag"'

# The real samples used below and what their bodies say (read off the files).
WARLOG = "warlog/warfroggy_2025-02_2PR8R8V8P.json"  # 119 wars, every item's clan #2PR8R8V8P
CWL_WAR = "cwl/cocpy_2023-05_clanwarleagues-war_INWAR.envelope.json"  # #29Y8PRCJR v #2Y2VP2G0L
LEAGUE_GROUP = "cwl/cocpy_2023-05_leaguegroup_INWAR_WARSMISSING.envelope.json"  # 8 clans
CWL_SIDES = ("#29Y8PRCJR", "#2Y2VP2G0L")
GROUP_CLANS = ("#2QCJGPVVP", "#GYR89PJ9")  # two of the league group's eight


@pytest.fixture
def samples() -> Path:
    if not SAMPLES_DIR.is_dir():
        pytest.skip(f"real API samples not found at {SAMPLES_DIR} (../shared/samples)")
    return SAMPLES_DIR


def _at(text: str) -> float:
    return parse_fetch_time(text).timestamp()


def _put(path: Path, content: Any, mtime: str = "2025-09-10T15:24:10Z") -> Path:
    """Write ``content`` (JSON, or the bytes of a file to copy) at ``path`` with that mtime."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, Path):
        shutil.copyfile(content, path)
    else:
        path.write_text(json.dumps(content), encoding="utf-8")
    os.utime(path, (_at(mtime), _at(mtime)))
    return path


def _clan_body(tag: str, member_tags: tuple[str, ...] | None = None) -> dict[str, Any]:
    """tests/data's clan body as clan ``tag`` (with other member tags when given)."""
    body: dict[str, Any] = json.loads((DATA_DIR / "clan.json").read_text(encoding="utf-8"))
    body["tag"] = tag
    if member_tags is not None:
        body["memberList"] = [
            m | {"tag": t} for m, t in zip(body["memberList"], member_tags, strict=True)
        ]
    return body


def _members() -> dict[str, Any]:
    body: dict[str, Any] = json.loads((DATA_DIR / "members.json").read_text(encoding="utf-8"))
    return body


def _by_name(plan) -> dict[str, tuple[str | None, str | None]]:
    return {f.relpath: (f.clan_tag, f.clan_source) for f in plan.files}


def _reasons(plan) -> dict[str, str]:
    return {q.relpath: q.reason for q in plan.quarantined}


# ------------------------------------------------------------------ war log


def _war_log(*clans: str) -> dict[str, Any]:
    items = [
        {
            "result": "win",
            "endTime": f"2025090{i + 1}T120000.000Z",
            "teamSize": 5,
            "clan": {"tag": clan, "stars": 12},
            "opponent": {"tag": "#9RCRVL8V", "stars": 7},
        }
        for i, clan in enumerate(clans)
    ]
    return {"items": items, "paging": {"cursors": {}}}


def test_a_war_log_alone_is_the_clan_of_its_items(samples, tmp_path):
    _put(tmp_path / "real" / "a.json", samples / WARLOG)
    (item,) = plan_backfill(tmp_path / "real").files
    assert (item.endpoint, item.clan_tag, item.resource_tag, item.clan_source) == (
        "warlog", WF, WF, "body",
    )  # fmt: skip
    assert item.request_path == "/clans/%232PR8R8V8P/warlog"

    # items that do not agree: no clan is guessed, the reason names them
    _put(tmp_path / "mixed" / "a.json", _war_log(CLAN, "#2PP"))
    plan = plan_backfill(tmp_path / "mixed")
    assert plan.files == []
    reason = _reasons(plan)["a.json"]
    assert "its items name several clans: #2QG2C08UP, #2PP" in reason
    assert NEEDS_MANIFEST in reason


def test_a_name_or_claim_that_disagrees_with_the_war_log_quarantines_it(tmp_path):
    _put(tmp_path / "warlog_2PP.json", _war_log(CLAN, CLAN), "2025-09-10T10:00:00Z")
    _put(tmp_path / "2PP" / "a.json", _war_log(CLAN), "2025-09-10T11:00:00Z")
    _put(tmp_path / "agrees" / "warlog_2QG2C08UP.json", _war_log(CLAN), "2025-09-10T12:00:00Z")
    plan = plan_backfill(tmp_path)
    reasons = _reasons(plan)
    assert (
        "the file name says clan #2PP but the war log's clan is #2QG2C08UP"
        in (reasons["warlog_2PP.json"])
    )
    assert "the folder name says clan #2PP but" in reasons["2PP/a.json"]
    assert _by_name(plan) == {"agrees/warlog_2QG2C08UP.json": (CLAN, "body")}

    # a manifest wins over the name, and must agree with the body
    (tmp_path / "manifest.json").write_text(json.dumps({"warlog_2PP.json": {"clan_tag": "#2PP"}}))
    assert (
        "the manifest or envelope says clan #2PP but the war log's clan is"
        in (_reasons(plan_backfill(tmp_path))["warlog_2PP.json"])
    )
    (tmp_path / "manifest.json").write_text(json.dumps({"warlog_2PP.json": {"clan_tag": CLAN}}))
    plan = plan_backfill(tmp_path)
    assert _by_name(plan)["warlog_2PP.json"] == (CLAN, "manifest")


# -------------------------------------------------------------- current war


def test_a_current_war_is_its_clan_side_and_not_in_war_needs_a_manifest(samples, tmp_path):
    wars = {
        "INWAR": ("2023-05-28T15:00:00Z", "#2GPVRU0C0"),
        "PREPARATION": ("2023-05-28T12:00:00Z", "#RY8GYCLY"),
        "WARENDED": ("2023-05-28T16:45:00Z", "#2GPVRU0C0"),
    }
    for i, (state, (when, _)) in enumerate(wars.items()):
        _put(
            tmp_path / f"w{i}.json",
            samples / f"currentwar/cocpy_2023-05_{state}.envelope.json",
            when,
        )
    notinwar = samples / "currentwar/cocpy_2023-05_NOTINWAR.envelope.json"
    _put(tmp_path / "n.json", notinwar, "2023-05-28T18:00:00Z")
    plan = plan_backfill(tmp_path)
    assert _by_name(plan) == {
        "w0.json": ("#2GPVRU0C0", "body"),
        "w1.json": ("#RY8GYCLY", "body"),
        "w2.json": ("#2GPVRU0C0", "body"),
    }
    (bad,) = plan.quarantined
    assert bad.relpath == "n.json" and bad.endpoint == "currentwar"
    assert "a notInWar current war names no clan" in bad.reason
    assert NEEDS_MANIFEST in bad.reason

    # a file name naming another clan than the war's side is refused
    _put(tmp_path / "currentwar_2PP.json", samples / "currentwar/cocpy_2023-05_INWAR.envelope.json")
    reason = _reasons(plan_backfill(tmp_path))["currentwar_2PP.json"]
    assert "the file name says clan #2PP but the war's clan side is #2GPVRU0C0" in reason


# ------------------------------------------------------ CWL war, league group


def test_a_league_group_is_its_one_clan_known_in_the_same_backfill(samples, tmp_path):
    # the clan body is in another folder, fetched at another time: only "known" links them
    _put(tmp_path / "group" / "a.json", samples / LEAGUE_GROUP, "2023-06-03T12:00:00Z")
    _put(tmp_path / "clans" / "b.json", _clan_body(GROUP_CLANS[0]), "2023-06-04T08:00:00Z")
    plan = plan_backfill(tmp_path)
    assert plan.quarantined == []
    got = {f.relpath: (f.endpoint, f.clan_tag, f.resource_tag, f.clan_source) for f in plan.files}
    assert got["group/a.json"] == (
        "leaguegroup", "#2QCJGPVVP", "#2QCJGPVVP", "its one clan known in this backfill",
    )  # fmt: skip

    # a second of its clans in the backfill: ambiguous, both named
    _put(tmp_path / "clans" / "c.json", _clan_body(GROUP_CLANS[1]), "2023-06-04T08:00:00Z")
    plan = plan_backfill(tmp_path)
    assert [f.relpath for f in plan.files] == ["clans/b.json", "clans/c.json"]
    reason = _reasons(plan)["group/a.json"]
    assert "several of its clans are known: #2QCJGPVVP, #GYR89PJ9" in reason
    assert NEEDS_MANIFEST in reason


def _fetch_log(url: str, endpoint: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "select clan_tag, source_file from raw.fetch_log where endpoint = %s order by 2",
            (endpoint,),
        ).fetchall()


def test_a_cwl_war_is_its_one_clan_known_in_the_warehouse(samples, migrated_db_url, tmp_path):
    # a clan of the warehouse: its body was loaded by an earlier backfill
    _put(tmp_path / "earlier" / "clan.json", _clan_body(CWL_SIDES[0]))
    assert backfill(migrated_db_url, tmp_path / "earlier").loaded == 1

    _put(tmp_path / "war" / "a.json", samples / CWL_WAR, "2023-05-10T12:00:00Z")
    plan = plan_backfill(tmp_path / "war")  # no warehouse asked: nothing known
    assert (
        "none of its 2 clans is in the warehouse or in this backfill" in (_reasons(plan)["a.json"])
    )
    result = backfill(migrated_db_url, tmp_path / "war")
    assert (result.loaded, result.quarantined) == (1, [])
    assert _fetch_log(migrated_db_url, "cwl_war") == [("#29Y8PRCJR", "a.json")]

    # the other side known too (in this backfill): ambiguous, nothing loaded
    _put(tmp_path / "both" / "a.json", samples / CWL_WAR, "2023-05-11T12:00:00Z")
    _put(tmp_path / "both" / "b.json", _clan_body(CWL_SIDES[1]), "2023-05-12T12:00:00Z")
    both = backfill(migrated_db_url, tmp_path / "both")
    assert both.loaded == 1  # the clan body
    (bad,) = both.quarantined
    assert bad.relpath == "a.json"
    assert "several of its clans are known: #29Y8PRCJR, #2Y2VP2G0L" in bad.reason
    assert _fetch_log(migrated_db_url, "cwl_war") == [("#29Y8PRCJR", "a.json")]


# ------------------------------------------------------------ members lists


def test_a_members_list_is_the_clan_body_with_the_same_members(tmp_path):
    # two clans fetched with it in its folder: the member tags tell which
    _put(tmp_path / "t" / "a.json", _clan_body(CLAN))
    _put(tmp_path / "t" / "b.json", _clan_body("#9RCRVL8V", ("#2PP", "#2QQ")))
    _put(tmp_path / "t" / "m.json", _members())
    # the same fetch time, another folder
    _put(tmp_path / "u" / "clans" / "a.json", _clan_body(CLAN), "2025-09-09T08:00:00Z")
    _put(tmp_path / "u" / "lists" / "m.json", _members(), "2025-09-09T08:00:00Z")
    # the same folder, another fetch time
    _put(tmp_path / "f" / "a.json", _clan_body(CLAN), "2025-09-10T15:00:00Z")
    _put(tmp_path / "f" / "m.json", _members(), "2025-09-10T16:00:00Z")
    plan = plan_backfill(tmp_path)
    assert plan.quarantined == []
    members = {f.relpath: f.clan_tag for f in plan.files if f.endpoint == "clan_members"}
    assert members == {"t/m.json": CLAN, "u/lists/m.json": CLAN, "f/m.json": CLAN}
    assert {f.clan_source for f in plan.files if f.endpoint == "clan_members"} == {
        "clan body with the same members"
    }

    # other members, in a folder and at a time of no clan body: nothing links them
    lone = _members()
    lone["items"] = lone["items"][:1]
    _put(tmp_path / "u" / "lists" / "lone.json", lone, "2025-09-11T00:00:00Z")
    reason = _reasons(plan_backfill(tmp_path))["u/lists/lone.json"]
    assert (
        "cannot tell which clan this clan_members response" in reason and NEEDS_MANIFEST in reason
    )

    # without the member tags, two clans at that time in that folder: not guessed
    _put(tmp_path / "t" / "m.json", lone)
    reason = _reasons(plan_backfill(tmp_path))["t/m.json"]
    assert "several clans (#2QG2C08UP, #9RCRVL8V) were fetched at that time" in reason


def test_a_bare_array_of_members_is_a_members_list(migrated_db_url, tmp_path):
    items = _members()["items"]
    _put(tmp_path / "a.json", _clan_body(CLAN))
    _put(tmp_path / "b.json", items, "2025-09-10T15:30:00Z")
    plan = plan_backfill(tmp_path)
    assert plan.quarantined == []
    got = {f.relpath: (f.endpoint, f.clan_tag, f.clan_source) for f in plan.files}
    assert got["b.json"] == ("clan_members", CLAN, "clan body with the same members")
    (warning,) = plan.warnings
    assert warning.startswith("b.json: a bare JSON array of 2 clan members")

    result = backfill(migrated_db_url, tmp_path)
    assert (result.loaded, result.quarantined) == (2, [])
    with psycopg.connect(migrated_db_url) as conn:
        stored = conn.execute(
            "select p.body from raw.fetch_log f join raw.payloads p using (payload_hash)"
            " where f.source_file = 'b.json'"
        ).fetchone()[0]
    assert stored == {"items": items}  # the API's form; the items as received
    assert json.loads((tmp_path / "b.json").read_text()) == items  # the file is left as it was


# ---------------------------------------------------- endpoints not stored

_LOCATION = {"id": 32000007, "name": "Afghanistan", "isCountry": True, "countryCode": "AF"}
_CLAN_REF = {"tag": "#2U2PYLQJ", "name": "A", "badgeUrls": {}}
_RANKED_CLAN = {
    "tag": "#GV98V9CC", "name": "A", "location": _LOCATION, "badgeUrls": {},
    "clanLevel": 21, "members": 46, "rank": 1, "previousRank": 1,
}  # fmt: skip
_RANKED_PLAYER = {
    "tag": "#2UUQCV8JG", "name": "P", "expLevel": 247, "trophies": 5683, "attackWins": 69,
    "defenseWins": 1, "rank": 1, "clan": _CLAN_REF,
}  # fmt: skip


def _items(*items: dict[str, Any], cursor: bool = True) -> dict[str, Any]:
    return {
        "items": list(items),
        "paging": {"cursors": {"after": "eyJwb3MiOjIwfQ"} if cursor else {}},
    }


# (body, what the backfill calls it): one per kind, shaped as the recorded responses
NOT_STORED_BODIES: dict[str, tuple[Any, str]] = {
    "ranking_clans": (
        _items(_RANKED_CLAN | {"clanPoints": 51162}),
        "a /locations/{locationId}/rankings/clans ranking",
    ),
    "ranking_capitals": (
        _items(_RANKED_CLAN | {"previousRank": -1, "clanCapitalPoints": 5273}),
        "a /locations/{locationId}/rankings/capitals ranking",
    ),
    "ranking_clans_builder": (
        _items(_RANKED_CLAN | {"clanBuilderBasePoints": 4100, "clanVersusPoints": 4100}),
        "a /locations/{locationId}/rankings/clans-builder-base ranking",
    ),
    "ranking_players": (
        _items(_RANKED_PLAYER | {"previousRank": 1, "league": {"id": 29000022, "name": "L"}}),
        "a /locations/{locationId}/rankings/players ranking",
    ),
    "ranking_players_builder": (
        _items(
            {
                "tag": "#8JQU98PL9",
                "name": "P",
                "expLevel": 230,
                "rank": 1,
                "previousRank": 1,
                "builderBaseTrophies": 5750,
                "versusTrophies": 5750,
                "versusBattleWins": 9,
                "clan": _CLAN_REF,
                "builderBaseLeague": {"id": 44000036, "name": "B"},
            }  # fmt: skip
        ),
        "a /locations/{locationId}/rankings/players-builder-base ranking",
    ),
    "league_season_ranking": (
        _items(_RANKED_PLAYER | {"leagueTier": {"id": 105000034, "name": "Legend League"}}),
        "a /leagues/{leagueId}/seasons/{seasonId} league season ranking",
    ),
    "league_seasons": (
        _items({"id": "2015-07"}, {"id": "2025-10-06"}, cursor=False),
        "a /leagues/{leagueId}/seasons list",
    ),
    "locations": (
        _items({"id": 32000000, "name": "Europe", "isCountry": False}, _LOCATION, cursor=False),
        "a /locations list",
    ),
    "location": (_LOCATION, "a /locations/{locationId} location"),
    "labels_clans": (
        _items({"id": 56000000, "name": "Clan Wars", "iconUrls": {}}, cursor=False),
        "a /labels/clans list",
    ),
    "labels_players": (
        _items({"id": 57000000, "name": "Clan Wars", "iconUrls": {}}, cursor=False),
        "a /labels/players list",
    ),
    "war_leagues": (_items({"id": 48000000, "name": "Unranked"}), "a /warleagues list"),
    "builder_leagues": (
        _items({"id": 44000000, "name": "Wood League V"}),
        "a /builderbaseleagues list",
    ),
    "capital_leagues": (_items({"id": 85000000, "name": "Unranked"}), "a /capitalleagues list"),
    "gold_pass": (
        {"startTime": "20230601T080100.000Z", "endTime": "20230701T080000.000Z"},
        "a /goldpass/seasons/current season",
    ),
    "battle_log": (
        {
            "items": [
                {
                    "battleType": "homeVillage",
                    "attack": False,
                    "armyShareCode": "u4x9-11x8",
                    "opponentPlayerTag": "#PRC2CVYYP",
                    "stars": 3,
                    "destructionPercentage": 100,
                    "lootedResources": [],
                    "extraLootedResources": [],
                    "availableLoot": [],
                }  # fmt: skip
            ]
        },
        "a /players/{playerTag}/battlelog",
    ),
    "league_history": (
        {
            "items": [
                {
                    "leagueSeasonId": 1770613200,
                    "leagueTrophies": 1174,
                    "leagueTierId": 105000030,
                    "placement": 11,
                    "attackWins": 24,
                    "attackLosses": 0,
                    "attackStars": 0,
                    "defenseWins": 0,
                    "defenseLosses": 21,
                    "defenseStars": 42,
                    "maxBattles": 24,
                }  # fmt: skip
            ]
        },
        "a /players/{playerTag}/leaguehistory",
    ),
    "ranked_league_group": (
        {
            "members": [{"playerTag": "#9VR02U9GC", "playerName": "P", "clanTag": "#2PCC09VU2"}],
            "attackLogs": [],
            "defenseLogs": [],
        },
        "a /leaguegroup/{groupTag}/{seasonId} league group",
    ),
    "clan_search": (
        _items({"tag": "#2LYQCJJ2U", "name": "test", "type": "closed", "clanLevel": 2}),
        "a /clans search result",
    ),
}


@pytest.mark.parametrize("kind", sorted(NOT_STORED_BODIES))
def test_a_body_of_an_endpoint_not_stored_is_named(kind):
    body, what = NOT_STORED_BODIES[kind]
    assert classify_body(body) is None  # none of the stored endpoints
    assert unstored_kind(body) == what


def test_bodies_not_stored_are_skipped_apart_from_broken_files(tmp_path):
    for kind, (body, _) in NOT_STORED_BODIES.items():
        _put(tmp_path / f"{kind}.json", body)
    _put(tmp_path / "clan.json", _clan_body(CLAN))
    (tmp_path / "broken.json").write_text('{"items": [', encoding="utf-8")
    # a manifest that calls a gold pass a war log contradicts the body
    _put(tmp_path / "claimed.json", NOT_STORED_BODIES["gold_pass"][0])
    (tmp_path / "manifest.json").write_text(json.dumps({"claimed.json": {"endpoint": "warlog"}}))
    # an envelope says what it answered, even an error
    envelope = {
        "url": "https://api.clashofclans.com/v1/locations/32000007/rankings/players?limit=5",
        "body": {"reason": "badRequest", "message": "Invalid location"},
        "headers": {},
        "response_code": 400,
    }
    _put(tmp_path / "rankings_400.json", envelope)
    plan = plan_backfill(tmp_path)
    assert [f.relpath for f in plan.files] == ["clan.json"]
    assert sorted(_reasons(plan)) == ["broken.json", "claimed.json"]
    assert (
        "the manifest or envelope says endpoint 'warlog' but the body is a /goldpass"
        in (_reasons(plan)["claimed.json"])
    )
    skipped = {s.relpath: s.reason for s in plan.not_stored}
    expected = {f"{kind}.json": f"{what}: not stored by this pipeline" for kind, (_, what) in (
        NOT_STORED_BODIES.items()
    )}  # fmt: skip
    expected["rankings_400.json"] = (
        "a /locations/{locationId}/rankings/players ranking: not stored by this pipeline"
    )
    assert skipped == expected
    assert plan.files_read == len(NOT_STORED_BODIES) + 4


def _run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("COC_", "DATABASE_URL"))}
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "clash_pipeline.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=120,
    )


def test_cli_lists_not_stored_files_and_exits_0_unless_one_is_quarantined(
    migrated_db_url, tmp_path
):
    folder = tmp_path / "saved"
    _put(folder / "clan.json", _clan_body(CLAN))
    _put(folder / "rank.json", NOT_STORED_BODIES["ranking_clans"][0])
    _put(folder / "pass.json", NOT_STORED_BODIES["gold_pass"][0])
    home = tmp_path / "home"
    env = {"DATABASE_URL": migrated_db_url, "CLASH_PIPELINE_HOME": str(home)}
    ok = _run_cli("backfill", str(folder), "--no-build", env=env)
    assert ok.returncode == 0, ok.stderr
    assert "skipped: not stored" in ok.stdout
    assert "a /locations/{locationId}/rankings/clans ranking" in ok.stdout
    assert "a /goldpass/seasons/current season" in ok.stdout
    assert "quarantined" in ok.stdout and "file(s) quarantined" not in ok.stderr
    assert not (home / "quarantine").exists()  # left in place, nothing copied
    assert (folder / "rank.json").is_file()

    (folder / "broken.json").write_text("{", encoding="utf-8")
    bad = _run_cli("backfill", str(folder), "--no-build", env=env)
    assert bad.returncode == 1
    assert "1 file(s) quarantined" in bad.stderr
    (qdir,) = (home / "quarantine").iterdir()
    assert sorted(p.name for p in qdir.iterdir()) == ["broken.json", "reasons.json"]


# ---------------------------------------------------- every sample, renamed


# When the samples were recorded (their README), as the files' modification times.
_SAMPLE_TIMES = {
    "warfroggy_2025-09-10": "2025-09-10T15:24:10Z",
    "warfroggy_2025-02": "2025-09-10T15:24:10Z",  # recorded with the 2025-09-10 files
    "warfroggy_2025-10-08": "2025-10-08T19:00:17Z",
    "warfroggy_2025-10-13": "2025-10-13T12:00:00Z",
    "cocpy_2023-05_INWAR": "2023-05-28T15:00:00Z",
    "cocpy_2023-05_PREPARATION": "2023-05-28T12:00:00Z",
    "cocpy_2023-05_WARENDED": "2023-05-28T16:45:00Z",
    "cocpy_2023-05_NOTINWAR": "2023-05-28T18:00:00Z",
    "cocpy_2023-05_clanwarleagues": "2023-05-10T12:00:00Z",
    "cocpy_2023-05_leaguegroup": "2023-06-03T12:00:00Z",
    "cocpy": "2023-05-28T12:00:00Z",
    "clashking": "2026-03-01T12:00:00Z",
    "warfroggy": "2025-09-10T15:24:10Z",
}

# The only samples still quarantined under neutral names, and why: truly ambiguous.
STILL_QUARANTINED = {
    "currentwar/cocpy_2023-05_NOTINWAR.envelope.json": "a notInWar current war names no clan",
    CWL_WAR: "none of its 2 clans is in the warehouse or in this backfill",
    LEAGUE_GROUP: "none of its 8 clans is in the warehouse or in this backfill",
    # an error body says nothing of its endpoint: only its name did
    "errors/cocpy_player_404_notFound.envelope.json": "cannot tell which endpoint",
    "errors/cocpy_warlog_403_accessDenied.envelope.json": "cannot tell which endpoint",
    "errors/warfroggy_league_400_badRequest.json": "cannot tell which endpoint",
}


def test_every_sample_under_a_neutral_name(samples, tmp_path):
    folder = tmp_path / "flat"
    originals = {}
    for i, sample in enumerate(sorted(samples.rglob("*.json"))):
        when = next(t for prefix, t in _SAMPLE_TIMES.items() if sample.name.startswith(prefix))
        _put(folder / f"{i:02d}.json", sample, when)
        originals[f"{i:02d}.json"] = sample.relative_to(samples).as_posix()
    plan = plan_backfill(folder)
    assert plan.not_stored == [] and plan.duplicates == []
    quarantined = {originals[q.relpath]: q.reason for q in plan.quarantined}
    assert sorted(quarantined) == sorted(STILL_QUARANTINED)
    for name, why in STILL_QUARANTINED.items():
        assert why in quarantined[name], name
    assert len(plan.files) + len(plan.quarantined) == len(originals) == 21

    got = {originals[f.relpath]: (f.endpoint, f.clan_tag) for f in plan.files}
    war = "currentwar/cocpy_2023-05_"
    assert got == {
        "capitalraidseasons/warfroggy_2025-09-10_2PR8R8V8P.json": ("capitalraidseasons", WF),
        "capitalraidseasons/warfroggy_2025-10-08_2PR8R8V8P.json": ("capitalraidseasons", WF),
        "clan/warfroggy_2025-09-10_2PR8R8V8P.json": ("clan", WF),
        "clan/warfroggy_2025-10-08_2PR8R8V8P.json": ("clan", WF),
        "clan_members/warfroggy_2025-09-10_2PR8R8V8P.json": ("clan_members", WF),
        "clan_members/warfroggy_2025-10-08_2PR8R8V8P.json": ("clan_members", WF),
        f"{war}INWAR.envelope.json": ("currentwar", "#2GPVRU0C0"),
        f"{war}PREPARATION.envelope.json": ("currentwar", "#RY8GYCLY"),
        f"{war}WARENDED.envelope.json": ("currentwar", "#2GPVRU0C0"),
        "currentwar/warfroggy_2025-09-10_notinwar_2PR8R8V8P.json": ("currentwar", WF),
        "leagues/clashking_2026-03_leaguetiers.envelope.json": ("leaguetiers", None),
        "leagues/warfroggy_2025-09-10_leagues.json": ("leagues", None),
        "player/cocpy_2023-06_morgil_2PP.envelope.json": ("player", "#90PU0RRG"),
        "player/warfroggy_2025-10-13_andrew_UU9GJ9QQ.json": ("player", WF),
        WARLOG: ("warlog", WF),
    }
