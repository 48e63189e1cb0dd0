"""The door checks: bodies the marts cannot take are kept aside, in backfills and scheduled runs.

Unit tests of each check on hand-made bodies, the real samples passing every
check, a backfill whose merged clan body is quarantined while the rest lands
and ``dbt build`` passes, and a scheduled run (Prefect, dbt, GX, the simulator
with its ``merged_member_lists`` fault) whose quarantined clan body is kept in
raw with its reason, ends the run ``partial`` and opens an alert, while another
clan of the same run is untouched.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from clash_pipeline.clash_api.records import FetchRecord
from clash_pipeline.ingest.backfill import backfill
from clash_pipeline.ingest.checks import (
    FUTURE_TOLERANCE,
    check_body,
    check_fetch_time,
    check_records,
)

SAMPLES_DIR = Path(__file__).resolve().parents[2] / "shared" / "samples"
CLAN = "#2QG2C08UP"
OTHER = "#8QU8J9LP"
WF = "#2PR8R8V8P"
AT = datetime(2025, 10, 8, 19, 0, 17, tzinfo=UTC)
_TAG_CHARS = "0289PYLQGRJCUV"


def _tag(i: int) -> str:
    """A valid player tag for number ``i`` (``#2P`` + its digits in the tag alphabet)."""
    digits = ""
    while True:
        i, rest = divmod(i, len(_TAG_CHARS))
        digits = _TAG_CHARS[rest] + digits
        if i == 0:
            return f"#2P{digits}"


def _member(i: int, **fields: Any) -> dict[str, Any]:
    return {"tag": _tag(i), "name": f"p{i}", "role": "member", "townHallLevel": 12} | fields


def _clan(members: list[dict[str, Any]], count: int | None = None, tag: str = CLAN) -> dict:
    return {
        "tag": tag,
        "name": "door",
        "members": len(members) if count is None else count,
        "memberList": members,
    }


def _codes(problems) -> list[str]:
    return [p.code for p in problems]


def _api_time(t: datetime) -> str:
    return t.strftime("%Y%m%dT%H%M%S.000Z")


# ------------------------------------------------------------------- roster checks


def test_a_sound_clan_body_passes():
    body = _clan([_member(i) for i in range(38)])
    assert check_body("clan", body, clan_tag=CLAN, fetched_at=AT) == []


def test_the_issue_body_83_entries_while_members_says_38():
    body = _clan([_member(i) for i in range(83)], count=38)
    problems = check_body("clan", body, clan_tag=CLAN, fetched_at=AT)
    assert _codes(problems) == ["too_many_members", "member_count_mismatch"]
    assert "83 entries, more than a clan can hold (50)" in problems[0].reason
    assert "memberList has 83 entries but its members field says 38" in problems[1].reason


def test_fifty_members_is_the_limit():
    assert (
        check_body("clan", _clan([_member(i) for i in range(50)]), clan_tag=CLAN, fetched_at=AT)
        == []
    )
    members = {"items": [_member(i) for i in range(51)]}
    problems = check_body("clan_members", members, clan_tag=CLAN, fetched_at=AT)
    assert _codes(problems) == ["too_many_members"]
    assert "member list's items has 51 entries" in problems[0].reason


def test_duplicate_member_tags_in_a_clan_body_and_a_member_list():
    twice = [_member(i) for i in range(10)] + [_member(3), _member(7)]
    problems = check_body("clan", _clan(twice), clan_tag=CLAN, fetched_at=AT)
    assert _codes(problems) == ["duplicate_members"]
    assert f"2 player(s) more than once ({_tag(3)}, {_tag(7)})" in problems[0].reason
    problems = check_body("clan_members", {"items": twice}, clan_tag=CLAN, fetched_at=AT)
    assert _codes(problems) == ["duplicate_members"]
    # a tag written in lower case or with O for 0 is the same player
    same = [_member(1), {**_member(1), "tag": _tag(1).lower()}]
    assert _codes(check_body("clan", _clan(same), clan_tag=CLAN, fetched_at=AT)) == [
        "duplicate_members"
    ]


def test_entries_without_a_tag_or_with_impossible_values():
    members = [
        _member(0),
        {"name": "no tag"},
        _member(2, donations=-1),
        _member(3, townHallLevel=0),
    ]
    problems = check_body("clan", _clan(members), clan_tag=CLAN, fetched_at=AT)
    assert _codes(problems) == ["member_without_tag", "member_out_of_range"]
    assert problems[0].reason.startswith("1 of the clan body's memberList entries")
    assert f"{_tag(2)} donations -1" in problems[1].reason
    assert f"{_tag(3)} townHallLevel 0" in problems[1].reason


def test_a_clan_body_of_another_clan():
    problems = check_body("clan", _clan([_member(0)], tag=OTHER), clan_tag=CLAN, fetched_at=AT)
    assert _codes(problems) == ["wrong_clan"]
    assert f"the clan body is clan {OTHER}, landed for clan {CLAN}" in problems[0].reason


def test_a_member_list_is_compared_with_a_sound_clan_body_of_its_run():
    clan = _clan([_member(i) for i in range(40)])

    def check(items, clan_body=clan):
        body = {"items": items}
        return check_body("clan_members", body, clan_tag=CLAN, fetched_at=AT, clan_body=clan_body)

    # 2 left and 3 joined between the two requests: 5 differences are tolerated
    assert check([_member(i) for i in range(2, 43)]) == []
    # 6 differences: not this clan's list
    [problem] = check([_member(i) for i in range(3, 43)])
    assert problem.code == "members_differ_from_clan"
    assert "differ by 6 players (3 only in the list, 3 only in the clan body" in problem.reason
    # another clan's list entirely
    assert _codes(check([_member(i) for i in range(100, 130)])) == ["members_differ_from_clan"]
    # a broken clan body is no reference; without one there is nothing to compare
    merged = _clan([_member(i) for i in range(83)], count=38)
    assert check([_member(i) for i in range(100, 130)], clan_body=merged) == []
    assert check([_member(i) for i in range(100, 130)], clan_body=None) == []


def test_a_player_body_of_another_player():
    body = {"tag": _tag(5), "name": "x", "townHallLevel": 12}
    assert check_body("player", body, clan_tag=CLAN, fetched_at=AT, resource_tag=_tag(5)) == []
    problems = check_body("player", body, clan_tag=CLAN, fetched_at=AT, resource_tag=_tag(6))
    assert _codes(problems) == ["wrong_player"]


# ---------------------------------------------------------------- wars and raids


def _war(state: str, *, prep: datetime, start: datetime, end: datetime, clan=CLAN, opp=OTHER):
    return {
        "state": state,
        "preparationStartTime": _api_time(prep),
        "startTime": _api_time(start),
        "endTime": _api_time(end),
        "clan": {"tag": clan},
        "opponent": {"tag": opp},
    }


def test_war_times_that_must_be_past():
    hour = timedelta(hours=1)
    # preparation: start and end are legitimately in the future
    prep = _war("preparation", prep=AT - hour, start=AT + 22 * hour, end=AT + 46 * hour)
    assert check_body("currentwar", prep, clan_tag=CLAN, fetched_at=AT) == []
    # in war: the end is in the future, the start is not
    in_war = _war("inWar", prep=AT - 30 * hour, start=AT - 7 * hour, end=AT + 17 * hour)
    assert check_body("currentwar", in_war, clan_tag=CLAN, fetched_at=AT) == []
    early = _war("inWar", prep=AT - 20 * hour, start=AT + 3 * hour, end=AT + 27 * hour)
    [problem] = check_body("currentwar", early, clan_tag=CLAN, fetched_at=AT)
    assert problem.code == "time_in_future"
    assert problem.reason.startswith(
        "the startTime of a war inWar is 2025-10-08T22:00:17Z, after the fetch time "
        "2025-10-08T19:00:17Z"
    )
    # ended: its end must be past (within the tolerance for clock differences)
    ended = _war("warEnded", prep=AT - 48 * hour, start=AT - 25 * hour, end=AT - hour)
    assert check_body("currentwar", ended, clan_tag=CLAN, fetched_at=AT) == []
    close = _war("warEnded", prep=AT - 48 * hour, start=AT - 25 * hour, end=AT + FUTURE_TOLERANCE)
    assert check_body("currentwar", close, clan_tag=CLAN, fetched_at=AT) == []
    late = _war("warEnded", prep=AT - 48 * hour, start=AT - 25 * hour, end=AT + 2 * hour)
    assert _codes(check_body("currentwar", late, clan_tag=CLAN, fetched_at=AT)) == [
        "time_in_future"
    ]
    # not in war: no times at all
    assert check_body("currentwar", {"state": "notInWar"}, clan_tag=CLAN, fetched_at=AT) == []


def test_war_sides():
    hour = timedelta(hours=1)
    times = {"prep": AT - 30 * hour, "start": AT - 7 * hour, "end": AT + 17 * hour}
    # the current war puts the requesting clan on the `clan` side
    swapped = _war("inWar", **times, clan=OTHER, opp=CLAN)
    [problem] = check_body("currentwar", swapped, clan_tag=CLAN, fetched_at=AT)
    assert (problem.code, problem.reason.split(",")[0]) == (
        "wrong_clan",
        f"the currentwar body is a war of {OTHER}",
    )
    # a run lands every war of its CWL group, most of them between two other clans
    neither = _war("inWar", **times, clan=OTHER, opp=_tag(9))
    assert check_body("cwl_war", neither, clan_tag=CLAN, fetched_at=AT) == []
    # but its times are checked like any war's
    early = _war("inWar", prep=AT, start=AT + 3 * hour, end=AT + 27 * hour, clan=OTHER)
    assert _codes(check_body("cwl_war", early, clan_tag=CLAN, fetched_at=AT)) == ["time_in_future"]


def test_war_log_entries_ended_and_of_the_clan():
    def log(*entries):
        return {"items": list(entries)}

    def entry(end: datetime, clan: str = CLAN):
        return {"result": "win", "endTime": _api_time(end), "clan": {"tag": clan}}

    day = timedelta(days=1)
    assert (
        check_body(
            "warlog", log(entry(AT - day), entry(AT - 4 * day)), clan_tag=CLAN, fetched_at=AT
        )
        == []
    )
    problems = check_body(
        "warlog", log(entry(AT + day), entry(AT + 2 * day)), clan_tag=CLAN, fetched_at=AT
    )
    assert _codes(problems) == ["time_in_future"]
    assert "2025-10-10T19:00:17Z" in problems[0].reason and "(2 such times)" in problems[0].reason
    problems = check_body("warlog", log(entry(AT - day, clan=OTHER)), clan_tag=CLAN, fetched_at=AT)
    assert _codes(problems) == ["wrong_clan"]
    assert f"war log entries of clan {OTHER} landed for clan {CLAN}" in problems[0].reason


def test_raid_seasons():
    day = timedelta(days=1)

    def season(state: str, start: datetime, end: datetime) -> dict:
        return {"state": state, "startTime": _api_time(start), "endTime": _api_time(end)}

    ongoing = season("ongoing", AT - day, AT + 2 * day)  # its end is still to come
    ended = season("ended", AT - 8 * day, AT - 5 * day)
    ok = {"items": [ongoing, ended]}
    assert check_body("capitalraidseasons", ok, clan_tag=CLAN, fetched_at=AT) == []
    not_started = {"items": [season("ongoing", AT + day, AT + 4 * day)]}
    assert _codes(check_body("capitalraidseasons", not_started, clan_tag=CLAN, fetched_at=AT)) == [
        "time_in_future"
    ]
    ended_later = {"items": [season("ended", AT - 2 * day, AT + day)]}
    [problem] = check_body("capitalraidseasons", ended_later, clan_tag=CLAN, fetched_at=AT)
    assert problem.reason.startswith("an ended raid season's endTime is 2025-10-09T19:00:17Z")


def test_a_league_group_without_the_clan():
    group = {"state": "inWar", "clans": [{"tag": OTHER}, {"tag": _tag(9)}]}
    assert _codes(check_body("leaguegroup", group, clan_tag=CLAN, fetched_at=AT)) == ["wrong_clan"]
    group["clans"].append({"tag": CLAN})
    assert check_body("leaguegroup", group, clan_tag=CLAN, fetched_at=AT) == []


def test_a_fetch_time_in_the_future():
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    assert check_fetch_time(now + FUTURE_TOLERANCE, now) == []
    [problem] = check_fetch_time(now + timedelta(days=1), now)
    assert problem.code == "fetch_time_in_future"
    assert (
        "fetched at 2026-12-08T12:00:00Z, later than now (2026-12-07T12:00:00Z)" in problem.reason
    )


def _record(endpoint: str, tag: str | None, body: Any, status: int = 200) -> FetchRecord:
    return FetchRecord(
        endpoint=endpoint,
        resource_tag=tag,
        path=f"/{endpoint}",
        status=status,
        reason=None,
        message=None,
        requested_at=AT,
        fetched_at=AT,
        duration_ms=1.0,
        attempts=1,
        retries=0,
        throttled=0,
        max_age=60,
        body=json.dumps(body).encode() if body is not None else None,
    )


def test_check_records_finds_the_bad_bodies_of_a_run_by_index():
    members = [_member(i) for i in range(30)]
    records = [
        _record("clan", CLAN, _clan(members)),
        _record("clan_members", CLAN, {"items": [_member(i) for i in range(200, 230)]}),
        _record("player", _tag(0), {"tag": _tag(0)}),
        _record("player", _tag(1), {"tag": _tag(2)}),
        _record("warlog", CLAN, None, status=403),  # an error has no body to check
    ]
    found = check_records(records, CLAN)
    assert {i: _codes(p) for i, p in found.items()} == {
        1: ["members_differ_from_clan"],
        3: ["wrong_player"],
    }


# ----------------------------------------------------------------- real samples


def _sample_body(path: Path) -> Any:
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, dict) and "body" in data and "response_code" in data:
        return data["body"] if data["response_code"] == 200 else None
    return data


# Each 200 sample: (endpoint, the clan it lands for, its fetch time). The warfroggy
# times are the sample README's; the coc.py war samples were recorded during the
# state they show (an in-war sample between its start and end, and so on).
W0910, W1008 = "2025-09-10T15:24:10", "2025-10-08T19:00:17"
SAMPLES: dict[str, tuple[str, str | None, str]] = {
    "capitalraidseasons/warfroggy_2025-09-10_2PR8R8V8P.json": ("capitalraidseasons", WF, W0910),
    "capitalraidseasons/warfroggy_2025-10-08_2PR8R8V8P.json": ("capitalraidseasons", WF, W1008),
    "clan/warfroggy_2025-09-10_2PR8R8V8P.json": ("clan", WF, W0910),
    "clan/warfroggy_2025-10-08_2PR8R8V8P.json": ("clan", WF, W1008),
    "clan_members/warfroggy_2025-09-10_2PR8R8V8P.json": ("clan_members", WF, W0910),
    "clan_members/warfroggy_2025-10-08_2PR8R8V8P.json": ("clan_members", WF, W1008),
    "currentwar/cocpy_2023-05_INWAR.envelope.json": (
        "currentwar",
        "#2GPVRU0C0",
        "2023-05-28T15:00:00",
    ),
    "currentwar/cocpy_2023-05_PREPARATION.envelope.json": (
        "currentwar",
        "#RY8GYCLY",
        "2023-05-28T20:00:00",
    ),
    "currentwar/cocpy_2023-05_WARENDED.envelope.json": (
        "currentwar",
        "#2GPVRU0C0",
        "2023-05-28T17:00:00",
    ),
    "currentwar/cocpy_2023-05_NOTINWAR.envelope.json": (
        "currentwar",
        "#2GPVRU0C0",
        "2023-05-28T12:00:00",
    ),
    "currentwar/warfroggy_2025-09-10_notinwar_2PR8R8V8P.json": ("currentwar", WF, W0910),
    "cwl/cocpy_2023-05_clanwarleagues-war_INWAR.envelope.json": (
        "cwl_war",
        "#2Y2VP2G0L",
        "2023-05-10T12:00:00",
    ),
    "cwl/cocpy_2023-05_leaguegroup_INWAR_WARSMISSING.envelope.json": (
        "leaguegroup",
        "#GYR89PJ9",
        "2023-05-10T12:00:00",
    ),
    "leagues/clashking_2026-03_leaguetiers.envelope.json": (
        "leaguetiers",
        None,
        "2026-03-01T00:00:00",
    ),
    "leagues/warfroggy_2025-09-10_leagues.json": ("leagues", None, W0910),
    "player/cocpy_2023-06_morgil_2PP.envelope.json": ("player", "#90PU0RRG", "2023-06-15T00:00:00"),
    "player/warfroggy_2025-10-13_andrew_UU9GJ9QQ.json": ("player", WF, "2025-10-13T00:00:00"),
    "warlog/warfroggy_2025-02_2PR8R8V8P.json": ("warlog", WF, W0910),
}


@pytest.fixture
def samples() -> Path:
    if not SAMPLES_DIR.is_dir():
        pytest.skip(f"real API samples not found at {SAMPLES_DIR} (../shared/samples)")
    return SAMPLES_DIR


def test_every_real_sample_passes_every_check(samples: Path):
    bodies = {  # error responses carry no data: the door never checks them
        p.relative_to(samples).as_posix(): _sample_body(p)
        for p in samples.rglob("*.json")
        if p.parent.name != "errors"
    }
    assert sorted(rel for rel, body in bodies.items() if body is not None) == sorted(SAMPLES)
    for relpath, (endpoint, clan, when) in SAMPLES.items():
        body = bodies[relpath]
        fetched_at = datetime.fromisoformat(when).replace(tzinfo=UTC)
        clan_body = bodies.get(relpath.replace("clan_members/", "clan/"))
        problems = check_body(
            endpoint,
            body,
            clan_tag=clan,
            fetched_at=fetched_at,
            resource_tag=body.get("tag") if endpoint == "player" else clan,
            clan_body=clan_body if endpoint == "clan_members" else None,
        )
        assert problems == [], relpath
    # the samples' member lists were compared with their clan bodies (not skipped)
    clan_0910 = bodies["clan/warfroggy_2025-09-10_2PR8R8V8P.json"]
    list_1008 = bodies["clan_members/warfroggy_2025-10-08_2PR8R8V8P.json"]
    assert {m["tag"] for m in clan_0910["memberList"]} != {m["tag"] for m in list_1008["items"]}


# ----------------------------------------------------------------------- backfill

WF_0910, WF_1008 = "2025-09-10T15:24:10Z", "2025-10-08T19:00:17Z"


def _merged_clan_body(samples: Path) -> dict[str, Any]:
    """The 2025-10-08 clan body with the 2025-09-10 memberList appended (as a recorder that
    merged two lists writes it): 39 entries, 17 players twice over, while members says 19."""
    newer = json.loads((samples / "clan/warfroggy_2025-10-08_2PR8R8V8P.json").read_text())
    older = json.loads((samples / "clan/warfroggy_2025-09-10_2PR8R8V8P.json").read_text())
    return {**newer, "memberList": newer["memberList"] + older["memberList"]}


def _backfill_folder(samples: Path, root: Path) -> Path:
    """The 2025-09-10 recording (clan, members, a profile, war log, raids, current war) and
    a 2025-10-08 recording whose only roster is the merged clan body (so it would be the
    snapshot's)."""
    root.mkdir(parents=True)
    files = {
        "0910/clan.json": "clan/warfroggy_2025-09-10_2PR8R8V8P.json",
        "0910/members.json": "clan_members/warfroggy_2025-09-10_2PR8R8V8P.json",
        "0910/warlog.json": "warlog/warfroggy_2025-02_2PR8R8V8P.json",
        "0910/raids.json": "capitalraidseasons/warfroggy_2025-09-10_2PR8R8V8P.json",
        "0910/currentwar.json": "currentwar/warfroggy_2025-09-10_notinwar_2PR8R8V8P.json",
        # a member's profile (recorded a month later), so that every metric has its inputs
        "0910/player.json": "player/warfroggy_2025-10-13_andrew_UU9GJ9QQ.json",
        "1008/raids.json": "capitalraidseasons/warfroggy_2025-10-08_2PR8R8V8P.json",
    }
    for target, source in files.items():
        (root / target).parent.mkdir(exist_ok=True)
        shutil.copy(samples / source, root / target)
    (root / "1008" / "clan.json").write_text(json.dumps(_merged_clan_body(samples)))
    manifest = {
        "files": {
            name: {"clan_tag": WF, "fetched_at": WF_0910 if name.startswith("0910") else WF_1008}
            for name in [*files, "1008/clan.json"]
        }
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


@pytest.mark.slow
def test_a_backfilled_merged_clan_body_is_quarantined_and_the_build_passes(
    samples, migrated_db_url, tmp_path
):
    from clash_pipeline.transform.dbt import dbt_build
    from clash_pipeline.transform.publish import publish_all

    folder = _backfill_folder(samples, tmp_path / "recordings")
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    result = backfill(migrated_db_url, folder, quarantine_root=tmp_path / "quarantine", now=now)

    [bad] = result.quarantined
    assert bad.relpath == "1008/clan.json"
    # 17 members of 2025-10-08 were already members on 2025-09-10
    assert bad.reason.startswith(
        "failed the door checks: duplicate_members: the clan body's memberList lists 17 "
        "player(s) more than once"
    )
    assert (
        "; member_count_mismatch: the clan body's memberList has 39 entries but its members "
        "field says 19: two recordings merged?"
    ) in bad.reason
    assert (result.loaded, result.runs_created) == (7, 2)
    reasons = json.loads((result.quarantine_dir / "reasons.json").read_text())
    assert [(f["file"], f["reason"]) for f in reasons["files"]] == [(bad.relpath, bad.reason)]
    # a manifest cannot fix a body: no template entry for it
    assert not (result.quarantine_dir / "manifest.json").exists()

    build = dbt_build(
        migrated_db_url, tmp_path / "home", full_refresh=True, vars={"staging_test_days": 0}
    )
    assert build.success, [(n.name, n.message) for n in build.failed]
    publish_all(migrated_db_url)  # dbt by hand: publish marts_build to marts
    with psycopg.connect(migrated_db_url) as conn:
        snapshots = conn.execute(
            "select clan_tag, snapshot_at, member_count, roster_endpoint"
            " from marts.roster_snapshots order by snapshot_at"
        ).fetchall()
        loaded = conn.execute(
            "select count(*) from raw.fetch_log where source_file = '1008/clan.json'"
        ).fetchone()
    # the 2025-10-08 run kept its raid seasons but has no roster, so no snapshot
    assert snapshots == [(WF, datetime(2025, 9, 10, 15, 24, 10, tzinfo=UTC), 20, "clan_members")]
    assert loaded == (0,)


# ------------------------------------------------------------------ scheduled run


@pytest.mark.slow
def test_a_scheduled_run_keeps_a_merged_clan_body_out_of_the_marts(warehouse, pipeline_project):
    """Three clans in one run: the merged one ends partial (its roster comes from /members),
    one whose member list fails too ends failed (no snapshot), the other is untouched."""
    from clash_pipeline.monitor.run import run_monitor
    from clash_pipeline.settings import load_settings
    from clash_pipeline.simulator import SimulatedClashApi
    from clash_pipeline.simulator.routes import MERGE_PARTNER
    from tests.plugins.prefect_fixtures import (
        PIPELINE_CLAN,
        PIPELINE_SEED,
        PIPELINE_T0,
        PIPELINE_TOKEN,
        pipeline_options,
        run_pipeline,
    )

    lost = "#PYLQGRJC"
    when = PIPELINE_T0 + timedelta(hours=6)
    with SimulatedClashApi(seed=PIPELINE_SEED, token=PIPELINE_TOKEN, start_time=when) as sim:
        sim.faults.update(merged_member_lists={PIPELINE_CLAN, lost})
        sim.faults.push(f"{lost}/members", status=503, count=10)
        own = sim.world.members(PIPELINE_CLAN, when)
        partner = sim.world.clan(MERGE_PARTNER, when)["memberList"]
        # full: every listed member's profile, so the run's profile count is its roster
        options = pipeline_options(pipeline_project, transform_mode="build", full=True)
        report = run_pipeline(sim, options, [PIPELINE_CLAN, OTHER, lost])

    merged, other, failed = (report.run_for(t) for t in (PIPELINE_CLAN, OTHER, lost))
    assert (merged.status, other.status, failed.status) == ("partial", "succeeded", "failed")
    assert report.build is not None  # the marts were built and published
    # the merged clan's profiles came from its member list, not from the merged memberList
    assert merged.members == len(own) <= 50
    [item] = merged.quarantined
    assert (item["endpoint"], item["tag"], item["codes"]) == (
        "clan",
        PIPELINE_CLAN,
        ["too_many_members", "member_count_mismatch"],
    )
    assert failed.error["phase"] == "land"
    assert "failed the door checks" in failed.error["message"]
    assert "no sound member list, so it makes no snapshot" in failed.error["message"]

    with psycopg.connect(warehouse, autocommit=True) as conn:
        # kept in raw with its reason: the whole merged body
        [(reason, body)] = conn.execute(
            "select f.quarantine_reason, p.body from raw.fetch_log f"
            " join raw.payloads p using (payload_hash) where f.run_id = %s and f.endpoint = 'clan'",
            (merged.run_id,),
        ).fetchall()
        assert reason.startswith(
            f"too_many_members: the clan body's memberList has {len(own) + len(partner)} entries"
        )
        assert len(body["memberList"]) == len(own) + len(partner) and body["members"] == len(own)
        # the reason in ops: the land checkpoint and the run's summary
        [(details,)] = conn.execute(
            "select details from ops.ingest_logs where run_id = %s and phase = 'land'",
            (merged.run_id,),
        ).fetchall()
        assert details["quarantined_bodies"] == 1
        assert details["quarantined"][0]["reason"] == reason
        [(status, summary)] = conn.execute(
            "select status, summary from ops.ingest_runs where run_id = %s", (merged.run_id,)
        ).fetchall()
        assert status == "partial" and summary["quarantined"] == merged.quarantined
        # the snapshot: the member list's roster, no clan attributes (its body is out)
        snapshots = dict(
            (row[0], row[1:])
            for row in conn.execute(
                "select run_id, member_count, roster_endpoint, clan_name"
                " from marts.roster_snapshots where run_id = any(%s)",
                ([merged.run_id, other.run_id, failed.run_id],),
            ).fetchall()
        )
        assert snapshots[merged.run_id] == (len(own), "clan_members", None)
        assert snapshots[other.run_id][1:] == ("clan_members", sim.world.clan(OTHER, when)["name"])
        assert failed.run_id not in snapshots
        kept = conn.execute(
            "select count(*) from raw.fetch_log where run_id = %s and endpoint = 'clan'"
            " and quarantine_reason is not null",
            (failed.run_id,),
        ).fetchone()
        assert kept == (1,)
    # the run's monitor phase alerts for the partial clan, not for the untouched one
    assert _door_alerts(warehouse) == [(PIPELINE_CLAN, "open", 1.0)]
    assert merged.health["status"] == "partial"
    # a failed run is judged by the scheduled monitor once closed: it alerts too
    run_monitor(warehouse, load_settings(), [lost])
    assert _door_alerts(warehouse) == [(PIPELINE_CLAN, "open", 1.0), (lost, "open", 1.0)]


def _door_alerts(db_url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        return conn.execute(
            "select clan_tag, status, observed_value from ops.alerts"
            " where check_name = 'quarantined_bodies' order by clan_tag"
        ).fetchall()


def test_clash_pipeline_fetch_lands_a_merged_clan_body_quarantined(
    tmp_path, migrated_db_url, sim_api
):
    """``clash-pipeline fetch`` (no dbt): the same door, the same partial run, its summary."""
    import asyncio

    from clash_pipeline.clash_api.ratelimit import RateLimiter
    from clash_pipeline.ingest.fetch import ApiTarget, fetch_clans
    from clash_pipeline.settings import load_settings

    sim_api.faults.update(merged_member_lists={CLAN})
    own = sim_api.world.members(CLAN, sim_api.clock.now())
    settings = load_settings(clash_pipeline_home=tmp_path, coc_max_retries=1)
    target = ApiTarget(
        base_url=sim_api.base_url, token=sim_api.token, source="simulator", clock=sim_api.clock.now
    )
    limiter = RateLimiter(requests_per_second=1000, max_concurrency=16)
    [outcome] = asyncio.run(fetch_clans(settings, migrated_db_url, [CLAN], target, limiter=limiter))

    assert outcome.status == "partial", outcome.error
    assert outcome.members == len(own)  # profiles of the member list's players only
    with psycopg.connect(migrated_db_url) as conn:
        rows = conn.execute(
            "select endpoint, quarantine_reason from raw.fetch_log"
            " where run_id = %s and quarantine_reason is not null",
            (outcome.run_id,),
        ).fetchall()
        [(status, summary)] = conn.execute(
            "select status, summary from ops.ingest_runs where run_id = %s", (outcome.run_id,)
        ).fetchall()
    [(endpoint, reason)] = rows
    assert endpoint == "clan" and "member_count_mismatch" in reason
    assert status == "partial"
    assert [q["codes"] for q in summary["quarantined"]] == [
        ["too_many_members", "member_count_mismatch"]
    ]
