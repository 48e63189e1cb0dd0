"""The roster's order by league tier (issue 13): the API and the dashboard.

Since the October 2025 split a member's ``trophies`` are on one of two scales: an
Unranked member's frozen battle-mode count (5,455) must not sort above a placed
member's ranked trophies (89 in Valkyrie League 14). The roster is ordered by
``league_tier_rank`` (the ``league_tiers`` seed), then ranked trophies within the
tier, then battle-mode trophies, then player tag.

One warehouse for the module, built the way a user loads saved responses:
``clash-pipeline backfill`` (real PostgreSQL, real dbt build, published) of

* a hand-made post-split clan (:data:`TIERED_CLAN`) whose members were chosen for
  the order: a tier the seed does not list yet, Legend League, a higher tier with
  fewer trophies, three members of one tier (two tied), Unranked members with large
  battle-mode counts, and a member the roster sends without a tier; one member has a
  profile (a simulated player's body under that member's tag, tier and trophies: the
  build's metric tests expect rush metrics from some profile);
* a hand-made pre-split clan (:data:`PRE_SPLIT_CLAN`): legacy leagues, no tiers;
* when ``../shared/samples`` is there, the real post-split clan and member list of
  2025-10-08 (copied to a temporary folder at test time, not into the project),
  whose ``clanRank`` is the game's own order of the same members.

The expected orders below are written by hand from the members' tiers and trophies.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from clash_pipeline.serving.app import create_app
from clash_pipeline.serving.server import BackgroundServer
from clash_pipeline.simulator import DEFAULT_START, World
from clash_pipeline.warehouse.migrations import migrate
from tests.plugins.dbt_fixtures import DEFAULT_SAMPLES_DIR, SAMPLES_DIR_ENV, WARFROGGY_CLAN
from tests.test_dashboard_browser import Page, chromium_page

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
UNRANKED = 105000000
TIERED_CLAN = "#2QVUR8LJ"
PRE_SPLIT_CLAN = "#8PCVLYQ2"
REAL_SAMPLE = "warfroggy_2025-10-08_2PR8R8V8P.json"
REAL_FETCHED_AT = "2025-10-08T19:00:17Z"


def _tier(tier_id: int, name: str) -> dict[str, Any]:
    icon = f"https://api-assets.clashofclans.com/leaguetiers/125/{tier_id}.png"
    return {"id": tier_id, "name": name, "iconUrls": {"small": icon, "large": icon}}


def _member(tag: str, name: str, trophies: int, tier: dict | None, legacy: tuple[int, str]):
    member = {
        "tag": tag,
        "name": name,
        "role": "member",
        "townHallLevel": 15,
        "expLevel": 180,
        "league": {"id": legacy[0], "name": legacy[1]},
        "trophies": trophies,
        "builderBaseTrophies": 3000,
        "clanRank": 0,
        "previousClanRank": 0,
        "donations": 10,
        "donationsReceived": 5,
    }
    if tier is not None:
        member["leagueTier"] = tier
    return member


LEGACY_UNRANKED = (29000000, "Unranked")
# (tag, name, trophies, leagueTier or None), in the order the API must return them:
TIERED_MEMBERS = [
    # an id after Legend League that the seed does not list: ranks 35, above it
    ("#8LJQRU0C", "Next Legend", 40, _tier(105000035, "Legend League II")),
    ("#9CUVY2GP", "Legend Lee", 5, _tier(105000034, "Legend League")),
    # a higher tier with fewer ranked trophies than everyone below it
    ("#2Y0QLPJR", "Witch Wendy", 12, _tier(105000016, "Witch League 16")),
    ("#LR8Q9V2U", "Valk Vera", 120, _tier(105000014, "Valkyrie League 14")),
    # the member, tied with the next one: player tag decides (#G < #Q)
    ("#GQ2RP8Y0", "Valk Val", 89, _tier(105000014, "Valkyrie League 14")),
    ("#QJ8L2CU9", "Valk Tie", 89, _tier(105000014, "Valkyrie League 14")),
    # Unranked: frozen battle-mode counts, below every placed member
    ("#P2UY8CQL", "Frozen Fred", 5455, _tier(UNRANKED, "Unranked")),
    # sent without a tier: ranks as Unranked, by its battle-mode trophies
    ("#UC9PJQ2L", "No Tier Ned", 3000, None),
    ("#Y0LGV2RC", "Frozen Fay", 1200, _tier(UNRANKED, "Unranked")),
]
TIERED_ORDER = [tag for tag, *_ in TIERED_MEMBERS]
# the dashboard's League tier column ascending: lowest tier first (no tier = Unranked),
# then ranked trophies ascending, then battle-mode trophies ascending; ties keep the
# API's order
TIERED_ASCENDING = [
    "#Y0LGV2RC",  # Unranked, 1,200 battle-mode
    "#UC9PJQ2L",  # no tier, 3,000 battle-mode
    "#P2UY8CQL",  # Unranked, 5,455 battle-mode
    "#GQ2RP8Y0",  # Valkyrie 14, 89 (API order among the tie)
    "#QJ8L2CU9",  # Valkyrie 14, 89
    "#LR8Q9V2U",  # Valkyrie 14, 120
    "#2Y0QLPJR",  # Witch 16
    "#9CUVY2GP",  # Legend League (34)
    "#8LJQRU0C",  # 35
]
# before the split: legacy leagues, no tier; trophies are battle-mode trophies
PRE_SPLIT_MEMBERS = [
    ("#2RCV9UQ8", "Titan Tom", 4300, (29000021, "Titan League I")),
    ("#28QPYLJG", "Crystal Cas", 2400, (29000011, "Crystal League II")),
    ("#VU2P8RLJ", "Gold Gil", 1900, (29000009, "Gold League I")),
]


def _clan_body(tag: str, name: str, members: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "tag": tag,
        "name": name,
        "type": "open",
        "clanLevel": 10,
        "clanPoints": 40000,
        "warFrequency": "always",
        "isWarLogPublic": False,
        "members": len(members),
        "memberList": members,
    }


def _profile(member: dict[str, Any], clan: dict[str, Any]) -> dict[str, Any]:
    """A real-shaped /players body for ``member``: a simulated player's, re-tagged."""
    world = World(3)
    source = world.roster_tags(world.find_clan(10, DEFAULT_START), DEFAULT_START)[0]
    body = world.player(source, DEFAULT_START)
    assert body is not None
    body.update({k: member[k] for k in ("tag", "name", "trophies", "leagueTier", "role")})
    body["clan"] = {"tag": clan["tag"], "name": clan["name"], "clanLevel": clan["clanLevel"]}
    member["townHallLevel"] = body["townHallLevel"]
    return body


def _write_clan(folder: Path, body: dict[str, Any], fetched_at: str) -> None:
    folder.mkdir(parents=True)
    (folder / "clan.json").write_text(json.dumps(body), encoding="utf-8")
    manifest = {"defaults": {"fetched_at": fetched_at}}
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")


def _samples_dir() -> Path | None:
    configured = os.environ.get(SAMPLES_DIR_ENV, "").strip()
    path = Path(configured) if configured else DEFAULT_SAMPLES_DIR
    return path if (path / "clan" / REAL_SAMPLE).is_file() else None


def saved_responses(root: Path) -> Path | None:
    """The backfill folder: the two hand-made clans and, when present, the real one.

    Returns the samples folder the real clan came from (None without samples).
    """
    tiered = [
        _member(tag, name, trophies, tier, LEGACY_UNRANKED)
        for tag, name, trophies, tier in TIERED_MEMBERS
    ]
    clan = _clan_body(TIERED_CLAN, "Tiered", tiered)
    profile = _profile(tiered[4], clan)  # Valk Val, Valkyrie League 14, 89
    # the roster lists members in no particular order here: the API must sort them
    tiered.reverse()
    _write_clan(root / "tiered", clan, "2026-01-14T08:00:00Z")
    (root / "tiered" / "player.json").write_text(json.dumps(profile), encoding="utf-8")
    old = [_member(t, n, trophies, None, legacy) for t, n, trophies, legacy in PRE_SPLIT_MEMBERS]
    old.reverse()
    _write_clan(
        root / "pre-split", _clan_body(PRE_SPLIT_CLAN, "Before", old), "2025-09-01T10:00:00Z"
    )
    samples = _samples_dir()
    if samples is not None:
        real = root / "real"
        real.mkdir()
        shutil.copy(samples / "clan" / REAL_SAMPLE, real / "clan.json")
        shutil.copy(samples / "clan_members" / REAL_SAMPLE, real / "members.json")
        manifest = {"defaults": {"fetched_at": REAL_FETCHED_AT}}
        (real / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return samples


@dataclass
class TierWarehouse:
    url: str
    samples: Path | None


@pytest.fixture(scope="module")
def tier_warehouse(pg_server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TierWarehouse]:
    root = tmp_path_factory.mktemp("tier-order")
    samples = saved_responses(root / "responses")
    name = f"t_tier_{uuid.uuid4().hex[:8]}"
    url = pg_server.create_database(name)
    try:
        migrate(url)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("COC_", "DATABASE_URL"))}
        env.update({"DATABASE_URL": url, "CLASH_PIPELINE_HOME": str(root / "home")})
        result = subprocess.run(
            [sys.executable, "-m", "clash_pipeline.cli", "backfill", str(root / "responses")],
            capture_output=True,
            text=True,
            env=env,
            timeout=1500,
        )
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
        yield TierWarehouse(url=url, samples=samples)
    finally:
        pg_server.drop_database(name)


@pytest.fixture(scope="module")
def api(tier_warehouse: TierWarehouse) -> Iterator[BackgroundServer]:
    with BackgroundServer(create_app(tier_warehouse.url, pool_size=2)) as running:
        yield running


def _roster(api: BackgroundServer, clan: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{api.base_url}/api/v2/roster", params={"clan": clan}, timeout=30)
    assert response.status_code == 200, response.text
    members: list[dict[str, Any]] = response.json()["members"]
    return members


def _seed_ranks() -> dict[int, int]:
    with (REPO / "seeds" / "league_tiers.csv").open(newline="", encoding="utf-8") as handle:
        return {int(row["league_tier_id"]): int(row["tier_rank"]) for row in csv.DictReader(handle)}


# ------------------------------------------------------------------------------- API


def test_api_orders_by_tier_then_ranked_then_battle_mode_trophies(api):
    members = _roster(api, TIERED_CLAN)
    assert [m["player_tag"] for m in members] == TIERED_ORDER
    by_tag = {m["player_tag"]: m for m in members}
    # the two scales, in their own fields
    fred, val = by_tag["#P2UY8CQL"], by_tag["#GQ2RP8Y0"]
    assert (fred["battle_mode_trophies"], fred["ranked_trophies"]) == (5455, None)
    assert (val["ranked_trophies"], val["battle_mode_trophies"]) == (89, None)
    assert (val["league_tier_rank"], val["league_tier_name"]) == (14, "Valkyrie League 14")
    ned = by_tag["#UC9PJQ2L"]
    assert (ned["league_tier_rank"], ned["battle_mode_trophies"]) == (None, 3000)


def test_league_tier_rank_is_the_seeds_tier_rank(api, tier_warehouse):
    ranks = _seed_ranks()
    assert ranks[UNRANKED] == 0 and ranks[105000014] == 14 and ranks[105000034] == 34
    expected = {
        "#8LJQRU0C": 35,  # not in the seed: its offset from Unranked's id
        "#9CUVY2GP": 34,
        "#2Y0QLPJR": 16,
        "#LR8Q9V2U": 14,
        "#GQ2RP8Y0": 14,
        "#QJ8L2CU9": 14,
        "#P2UY8CQL": 0,
        "#UC9PJQ2L": None,
        "#Y0LGV2RC": 0,
    }
    members = _roster(api, TIERED_CLAN)
    assert {m["player_tag"]: m["league_tier_rank"] for m in members} == expected
    # every tier the seed lists gets exactly its tier_rank, in the mart too
    with psycopg.connect(tier_warehouse.url, row_factory=dict_row) as conn:
        rows = conn.execute(
            "select league_tier_id, league_tier_rank from marts.roster"
            " where league_tier_id is not null"
        ).fetchall()
    known = [r for r in rows if r["league_tier_id"] in ranks]
    assert len(known) >= 8
    for row in known:
        assert row["league_tier_rank"] == ranks[row["league_tier_id"]], row


def test_a_pre_split_roster_is_in_battle_mode_trophy_order(api):
    members = _roster(api, PRE_SPLIT_CLAN)
    assert [m["player_tag"] for m in members] == ["#2RCV9UQ8", "#28QPYLJG", "#VU2P8RLJ"]
    assert [m["battle_mode_trophies"] for m in members] == [4300, 2400, 1900]
    assert {m["league_tier_rank"] for m in members} == {None}
    assert {m["ranked_trophies"] for m in members} == {None}
    assert [m["legacy_league_name"] for m in members] == [
        "Titan League I",
        "Crystal League II",
        "Gold League I",
    ]


def test_the_real_post_split_roster_comes_in_the_games_clan_rank_order(api, tier_warehouse):
    if tier_warehouse.samples is None:
        pytest.skip(f"real API samples not found at {DEFAULT_SAMPLES_DIR} (set {SAMPLES_DIR_ENV})")
    body = json.loads((tier_warehouse.samples / "clan_members" / REAL_SAMPLE).read_text())
    by_rank = [item["tag"] for item in sorted(body["items"], key=lambda item: item["clanRank"])]
    members = _roster(api, WARFROGGY_CLAN)
    assert [m["player_tag"] for m in members] == by_rank
    # the sample's own mix: an Unranked member with 3,876 battle-mode trophies comes after
    # Archer League 9 with 72 ranked trophies
    by_tag = {m["player_tag"]: m for m in members}
    archer, unranked = by_tag["#YUGUL9JJ0"], by_tag["#GY0CCL9UC"]
    assert (archer["league_tier_rank"], archer["ranked_trophies"]) == (9, 72)
    assert (unranked["league_tier_rank"], unranked["battle_mode_trophies"]) == (0, 3876)
    assert by_rank.index("#YUGUL9JJ0") < by_rank.index("#GY0CCL9UC")


def test_the_openapi_description_documents_the_order(api):
    spec = httpx.get(f"{api.base_url}/api/openapi.json", timeout=30).json()
    text = spec["paths"]["/api/v2/roster"]["get"]["description"]
    steps = ["`league_tier_rank` descending", "`ranked_trophies` descending"]
    steps += ["`battle_mode_trophies` descending", "`player_tag`"]
    positions = [text.index(step) for step in steps]
    assert positions == sorted(positions)
    assert "league_tiers" in text and "Unranked" in text


# ------------------------------------------------------------------------- dashboard


@pytest.fixture
def page() -> Iterator[Page]:
    with chromium_page() as opened:
        yield opened


ROW_TAGS = "[...document.querySelectorAll('#roster tbody tr')].map(tr => tr.dataset.player)"


def _cells(page: Page, key: str) -> dict[str, str]:
    """The roster column ``key``'s text per player tag."""
    index = page.evaluate(
        f"[...document.querySelectorAll('#roster th')].findIndex(th => th.dataset.key === '{key}')"
    )
    assert index >= 0, key
    cells = page.evaluate(
        "[...document.querySelectorAll('#roster tbody tr')]"
        f".map(tr => [tr.dataset.player, tr.children[{index}].innerText])"
    )
    return dict(cells)


def _open_clan(page: Page, api: BackgroundServer, clan: str, rows: int) -> None:
    url = f"{api.base_url}/dashboard/?poll=0#/clan/{clan.removeprefix('#')}"
    page.call("Page.navigate", url=url)
    page.wait_for(f"document.querySelectorAll('#roster tbody tr').length === {rows}")


def test_dashboard_sorts_by_tier_then_ranked_trophies_by_default_and_on_click(api, page):
    _open_clan(page, api, TIERED_CLAN, len(TIERED_ORDER))
    assert page.evaluate(ROW_TAGS) == TIERED_ORDER
    league = "document.querySelector('th[data-key=league]')"
    assert page.evaluate(f"{league}.getAttribute('aria-sort')") == "descending"
    headers = page.evaluate(
        "[...document.querySelectorAll('#roster th')].map(th => th.dataset.key)"
    )
    assert "trophies" not in headers
    assert {"league", "ranked_trophies", "battle_mode_trophies"} <= set(headers)

    # two columns, two scales: – where a member has none
    ranked, battle = _cells(page, "ranked_trophies"), _cells(page, "battle_mode_trophies")
    assert (ranked["#GQ2RP8Y0"], battle["#GQ2RP8Y0"]) == ("89", "–")
    assert (ranked["#P2UY8CQL"], battle["#P2UY8CQL"]) == ("–", "5,455")
    assert _cells(page, "league")["#GQ2RP8Y0"] == "Valkyrie League 14"

    # another column, then the tier header: tier first again, highest first
    page.evaluate("document.querySelector('th[data-key=battle_mode_trophies]').click()")
    assert page.evaluate(ROW_TAGS)[:3] == ["#P2UY8CQL", "#UC9PJQ2L", "#Y0LGV2RC"]
    page.evaluate(f"{league}.click()")
    assert page.evaluate(ROW_TAGS) == TIERED_ORDER
    assert page.evaluate(f"{league}.getAttribute('aria-sort')") == "descending"
    # again: the same keys, lowest first
    page.evaluate(f"{league}.click()")
    assert page.evaluate(ROW_TAGS) == TIERED_ASCENDING
    assert page.evaluate(f"{league}.getAttribute('aria-sort')") == "ascending"
    # ranked trophies on their own: 120, 89, 89, 40, 12, 5, then the members without
    page.evaluate("document.querySelector('th[data-key=ranked_trophies]').click()")
    assert page.evaluate(ROW_TAGS)[:6] == [
        "#LR8Q9V2U",
        "#GQ2RP8Y0",
        "#QJ8L2CU9",
        "#8LJQRU0C",
        "#2Y0QLPJR",
        "#9CUVY2GP",
    ]


def test_dashboard_shows_a_pre_split_roster_with_legacy_leagues(api, page):
    _open_clan(page, api, PRE_SPLIT_CLAN, len(PRE_SPLIT_MEMBERS))
    assert page.evaluate(ROW_TAGS) == ["#2RCV9UQ8", "#28QPYLJG", "#VU2P8RLJ"]
    assert _cells(page, "league") == {
        "#2RCV9UQ8": "Titan League I (legacy)",
        "#28QPYLJG": "Crystal League II (legacy)",
        "#VU2P8RLJ": "Gold League I (legacy)",
    }
    assert _cells(page, "battle_mode_trophies")["#2RCV9UQ8"] == "4,300"
    assert set(_cells(page, "ranked_trophies").values()) == {"–"}
