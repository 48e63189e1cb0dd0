"""Issue 11's proof: the restructure changed no mart and no API body.

``scripts/compare_outputs.py`` runs the same simulated history through the last commit
before the restructure and through this checkout, and compares every relation of
``marts`` and ``reference`` and the API's JSON bodies. The quick tests below show that
the comparison does report a difference (so the slow one can fail).
"""

from __future__ import annotations

import copy
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "scripts" / "compare_outputs.py"
#: The last commit before issue 11 moved ``flows/`` to ``src/clash_pipeline/``.
BEFORE_RESTRUCTURE = "2bcd9ed"
#: Columns changed on purpose since then, each with its reason. A later change that alters
#: an output on purpose moves BEFORE_RESTRUCTURE forward or adds its column here.
CHANGED_ON_PURPOSE = {
    # Documentation text naming the intermediate models behind each metric; issue 11
    # renamed those models (int_<entity>s_<verb>), so the text names the new ones.
    "reference.metric_catalogue.inputs": "names the renamed intermediate models",
    "reference.metric_catalogue.definition": "ace_ova's names int_star_baselines_accumulated",
    # Issue 12 (point 4): requests dropped after the last retry are counted in the health
    # mart and the health endpoint's anomalies (new columns and keys).
    "marts.ingest_run_health.dropped_requests": "new column: requests dropped after retries",
    "marts.ingest_run_health.dropped_player_fetches": "new column: profiles dropped",
    "/api/v2/ingestion/health.dropped_requests": "new anomaly count",
    "/api/v2/ingestion/health.dropped_player_fetches": "new anomaly count",
    "/api/v2/ingestion/health.dropped_players": "new count in the run's health summary",
    # Issue 13: the roster by league tier. A new column (the tier's order from the
    # league_tiers seed), in the roster mart and in every member of the API's bodies, and
    # the roster's members ordered by tier, ranked trophies, battle-mode trophies
    # instead of raw trophies (compared in any order: the same members, the same values).
    "marts.roster.league_tier_rank": "new column: the ranked tier's order",
    "/api/v2/roster.league_tier_rank": "new member key (marts.roster.league_tier_rank)",
    "/api/v2/members/{tag}.league_tier_rank": "the member's roster row gains the column",
    "/api/v2/roster.members[]": "members ordered by league tier, then ranked trophies",
    # Issue 13: bodies quarantined at the door are counted in the health mart.
    "marts.ingest_run_health.quarantined_bodies": "new column: bodies quarantined at the door",
    # Issue 14 (point 4): a run without a member's profile carries the last one forward;
    # new columns naming the profile used and when it was fetched (additive).
    "marts.member_snapshot_stats.profile_fetch_id": "new column: the profile used",
    "marts.member_snapshot_stats.is_profile_carried": "new column: profile carried forward",
    "marts.member_snapshot_stats.profile_fetched_at": "new column: the profile's fetch time",
    "marts.metrics.profile_fetched_at": "new column: the profile's fetch time",
    "marts.roster.profile_fetched_at": "new column: the profile's fetch time",
    "/api/v2/roster.profile_fetched_at": "new member key (marts.roster.profile_fetched_at)",
    "/api/v2/members/{tag}.profile_fetched_at": "new key of the roster row and the history",
}


def _load_script():
    spec = importlib.util.spec_from_file_location("compare_outputs", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being created
    spec.loader.exec_module(module)
    return module


compare = _load_script()


def _missing_before_commit() -> str | None:
    """Why the comparison cannot run here, or None."""
    if shutil.which("git") is None or shutil.which("uv") is None:
        return "git and uv are needed to check out and install the commit before the restructure"
    found = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "cat-file", "-e", f"{BEFORE_RESTRUCTURE}^{{commit}}"],
        capture_output=True,
    )
    if found.returncode != 0:
        return (
            f"commit {BEFORE_RESTRUCTURE} (before the restructure) is not in this checkout "
            "(not a git clone, or a shallow one)"
        )
    return None


def _dump(run_ids=("u-1", "u-2"), finished_at="2026-12-07T01:00:00Z"):
    """A tiny dump in the script's format: two runs of one clan."""
    snapshots = [
        {"snapshot_id": f"s-{run_id}", "run_id": run_id, "clan_tag": "#C", "snapshot_at": at}
        for run_id, at in zip(run_ids, ("2026-11-02T08:00:00Z", "2026-11-02T20:00:00Z"))
    ]
    return {
        "relations": {
            "marts.roster_snapshots": {
                "kind": "r",
                "columns": ["snapshot_id text", "run_id uuid", "clan_tag text", "snapshot_at tz"],
                "rows": snapshots,
            },
            "marts.members": {
                "kind": "r",
                "columns": ["player_tag text", "trophies integer", "snapshot_id text"],
                "rows": [
                    {"player_tag": "#A", "trophies": 10, "snapshot_id": f"s-{run_ids[0]}"},
                    {"player_tag": "#B", "trophies": 20, "snapshot_id": f"s-{run_ids[1]}"},
                ],
            },
        },
        "api": {
            "/api/v2/clans": {"status": 200, "body": {"clans": [{"clan_tag": "#C"}]}},
            "/api/v2/ingestion/health?clan=%23C": {
                "status": 200,
                "body": {"last_run": {"run_id": run_ids[1], "finished_at": finished_at}},
            },
        },
    }


def test_identical_dumps_compare_equal(capsys):
    assert compare.compare_dumps(_dump(), _dump()) == 0
    assert "DIFFERENT" not in capsys.readouterr().out


def test_a_changed_value_is_reported(capsys):
    after = _dump()
    after["relations"]["marts.members"]["rows"][1]["trophies"] = 21
    after["api"]["/api/v2/clans"]["body"]["clans"][0]["clan_tag"] = "#D"
    assert compare.compare_dumps(_dump(), after) == 2
    out = capsys.readouterr().out
    assert "relation marts.members: DIFFERENT" in out
    assert "row.trophies: 20 -> 21" in out
    assert "endpoint /api/v2/clans: DIFFERENT" in out
    assert '$.clans[0].clan_tag: "#C" -> "#D"' in out


def test_a_changed_column_or_missing_relation_is_reported(capsys):
    after = copy.deepcopy(_dump())
    after["relations"]["marts.members"]["columns"][1] = "trophies bigint"
    after["api"]["/api/v2/roster?clan=%23C"] = {"status": 200, "body": {}}
    assert compare.compare_dumps(_dump(), after) == 2
    out = capsys.readouterr().out
    assert "trophies bigint" in out
    assert "endpoint /api/v2/roster?clan=%23C: DIFFERENT" in out


def test_run_ids_and_wall_clock_times_are_normalised():
    after = _dump(run_ids=("u-7", "u-8"), finished_at="2026-12-08T05:00:00Z")
    assert compare.compare_dumps(_dump(), after) == 0
    assert compare.compare_dumps(_dump(), after, normalise=False) == 3


def test_a_row_pointing_at_another_snapshot_is_still_reported():
    after = _dump(run_ids=("u-7", "u-8"))
    rows = after["relations"]["marts.members"]["rows"]
    rows[0]["snapshot_id"], rows[1]["snapshot_id"] = rows[1]["snapshot_id"], rows[0]["snapshot_id"]
    assert compare.compare_dumps(_dump(), after) == 1


def test_an_ignored_column_is_masked_on_both_sides_and_only_there(capsys):
    before, after = _dump(), _dump()
    after["relations"]["marts.members"]["rows"][0]["trophies"] = 11
    ignored = compare.ignored_columns(["marts.members.trophies"])
    assert compare.compare_dumps(before, after, ignored=ignored) == 0
    assert "ignored on purpose: marts.members.trophies" in capsys.readouterr().out
    other = compare.ignored_columns(["marts.roster_snapshots.snapshot_at"])
    assert compare.compare_dumps(before, after, ignored=other) == 1


def test_a_list_ignored_for_its_order_still_compares_its_items(capsys):
    def dump(members, extra=None):
        body = {"clan_tag": "#C", "members": members}
        member_body = {"roster": {"player_tag": "#A", **(extra or {})}}
        return {
            "relations": {},
            "api": {
                "/api/v2/roster?clan=%23C": {"status": 200, "body": body},
                "/api/v2/members/%23A": {"status": 200, "body": member_body},
            },
        }

    a, b = {"player_tag": "#A", "trophies": 5}, {"player_tag": "#B", "trophies": 9}
    ignored = compare.ignored_columns(
        ["/api/v2/roster.members[]", "/api/v2/members/{tag}.league_tier_rank"]
    )
    # another order, and a new key on a member page: equal once told
    swapped = dump([b, a], {"league_tier_rank": 14})
    assert compare.compare_dumps(dump([a, b]), swapped, ignored=ignored) == 0
    assert compare.compare_dumps(dump([a, b]), swapped) == 2
    # a changed value in the reordered list is still a difference
    changed = dump([{**b, "trophies": 10}, a], {"league_tier_rank": 14})
    assert compare.compare_dumps(dump([a, b]), changed, ignored=ignored) == 1
    assert "endpoint /api/v2/roster?clan=%23C: DIFFERENT" in capsys.readouterr().out


def test_fetch_ids_compare_by_the_request_they_stand_for():
    def dump(first, second):
        wars = [{"war_id": "w1", "fetch_id": first}, {"war_id": "w2", "fetch_id": second}]
        labels = {str(first): "<fetch /clans/%23C/warlog>", str(second): "<fetch /wars/1>"}
        relation = {"kind": "r", "columns": ["war_id text", "fetch_id bigint"], "rows": wars}
        return {"relations": {"marts.wars": relation}, "api": {}, "fetch_ids": labels}

    # the same requests, landed in another order: equal
    assert compare.compare_dumps(dump(7, 9), dump(12, 4)) == 0
    # a war that now points at the other fetch: different
    swapped = dump(12, 4)
    swapped["fetch_ids"] = {"12": "<fetch /wars/1>", "4": "<fetch /clans/%23C/warlog>"}
    assert compare.compare_dumps(dump(7, 9), swapped) == 1


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_marts_and_api_bodies_are_unchanged_since_before_the_restructure(tmp_path):
    reason = _missing_before_commit()
    if reason:
        pytest.skip(reason)
    result = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--before",
            BEFORE_RESTRUCTURE,
            "--after",
            str(REPO_ROOT),
            "--keep",
            str(tmp_path),
            *(arg for column in CHANGED_ON_PURPOSE for arg in ("--ignore", column)),
        ],
        capture_output=True,
        text=True,
        timeout=2300,
    )
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-4000:]
