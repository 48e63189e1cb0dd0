"""Issue 14, point 4: a run without a member's profile carries the last one forward.

A run may lack a member's ``player`` profile: the planner skips members whose
member-list entry did not change, and a profile dropped after its retries was
already missing. The warehouse must still be exact: every member of every snapshot
has its row in ``member_snapshot_stats``, its ``metrics`` and its ``roster`` row,
with the values of the member's latest profile fetched at or before the snapshot
and ``profile_fetched_at`` saying when that was.

One simulated clan, five runs 6 h apart (the simulator changes every player every
6 h, so a carried profile differs from a fresh one). Each run is fetched from the
simulator with the project's own fetch path (``fetch_clan_bundle``) and landed with
``land_bundle`` without the ``player`` records of chosen members, as a run of the
planner would be:

* ``carried``: no profile in runs 2 and 3 (the build of run 3 carries from the
  stored row of run 2, itself carried: the incremental path);
* ``late``: no profile in runs 0 and 1, so before run 2 it has none at all
  (a later profile is never used: point in time);
* ``last``: no profile in run 4, the newest: the roster shows run 3's profile.

Runs 0-2 are built together (a first, full build), then run 3, then run 4
(incremental builds); then every table of ``marts`` and ``intermediate`` must equal
a full refresh. Expected values are read from the raw JSON of the runs.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from clash_pipeline.clash_api.keys import KeyPool
from clash_pipeline.clash_api.ratelimit import RateLimiter
from clash_pipeline.ingest.bundle import ClanBundle, fetch_clan_bundle
from clash_pipeline.ingest.fetch import ApiTarget, build_client
from clash_pipeline.ingest.land import land_bundle
from clash_pipeline.serving.app import create_app
from clash_pipeline.serving.server import BackgroundServer
from clash_pipeline.settings import load_settings
from clash_pipeline.simulator import DEFAULT_START, SimulatedClashApi, World
from clash_pipeline.simulator.codec import random_tag
from clash_pipeline.transform.dbt import run_dbt
from clash_pipeline.transform.publish import publish_all
from clash_pipeline.warehouse.migrations import migrate
from tests.plugins.prefect_fixtures import mart_checksums
from tests.plugins.sim_fixtures import SIM_SEED, SIM_TOKEN

pytestmark = pytest.mark.slow

STEP = timedelta(hours=6)
RUNS = 5
BATCHES = [[0, 1, 2], [3], [4]]
VARS = {"staging_test_days": 0}
MODELS = ["path:models/intermediate", "path:models/marts"]
#: member -> the runs that land without its profile
SKIPPED = {"carried": {2, 3}, "late": {0, 1}, "last": {4}}
#: profile-only columns of member_snapshot_stats and the profile field behind each
PROFILE_FIELDS = {
    "best_trophies": "bestTrophies",
    "war_stars": "warStars",
    "capital_contributions": "clanCapitalContributions",
}
#: the roster item's fields behind member-list columns (always the snapshot's own)
ROSTER_FIELDS = {
    "trophies": "trophies",
    "donations": "donations",
    "donations_received": "donationsReceived",
    "exp_level": "expLevel",
    "role": "role",
}
HEROES = {"Barbarian King": "barbarian_king_level", "Archer Queen": "archer_queen_level"}
#: activity fields read from the profile alone (int_member_snapshots_diffed)
PROFILE_ACTIVITY = {
    "attack_wins": "attackWins",
    "defense_wins": "defenseWins",
    "war_stars": "warStars",
    "capital_contributions": "clanCapitalContributions",
}


@dataclass
class Carry:
    url: str
    clan_tag: str
    members: dict[str, str]  # role in the test -> player tag
    run_ids: list[uuid.UUID] = field(default_factory=list)
    incremental: dict[str, Any] = field(default_factory=dict)
    full_refresh: dict[str, Any] = field(default_factory=dict)


def query(url: str, text: str, *params: Any) -> list[dict]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(text, params).fetchall()


def plan(world: World) -> tuple[str, list[datetime], dict[str, str]]:
    """A simulated clan with three members in all five runs: the test's members."""
    times = [DEFAULT_START + k * STEP for k in range(RUNS)]
    for i in range(50):
        clan_tag = random_tag(SIM_SEED, "carry", i)
        rosters = [set(world.roster_tags(clan_tag, t)) for t in times]
        always = sorted(set.intersection(*rosters))
        if len(always) >= 3:
            return clan_tag, times, dict(zip(SKIPPED, always[:3], strict=True))
    raise AssertionError("no simulated clan keeps three members over five runs")


def without_profiles(bundle: ClanBundle, tags: set[str]) -> ClanBundle:
    """The bundle as a run that did not fetch these members' profiles."""
    kept = [r for r in bundle.records if not (r.endpoint == "player" and r.resource_tag in tags)]
    assert len(bundle.records) - len(kept) == len(tags)  # each was fetched once
    return ClanBundle(clan_tag=bundle.clan_tag, snapshot_at=bundle.snapshot_at, records=kept)


def land_run(
    url: str, sim: SimulatedClashApi, home: Path, clan_tag: str, skip: set[str]
) -> uuid.UUID:
    settings = load_settings(clash_pipeline_home=home, coc_max_retries=1, coc_timeout_seconds=5)
    target = ApiTarget(sim.base_url, sim.token, "simulator", sim.clock.now)
    keys = KeyPool.of_one(sim.token, RateLimiter(requests_per_second=1000, max_concurrency=16))

    async def fetch() -> ClanBundle:
        async with build_client(settings, target, keys) as client:
            return await fetch_clan_bundle(client, clan_tag)

    bundle = without_profiles(asyncio.run(fetch()), skip)
    run_id = uuid.uuid4()
    with psycopg.connect(url) as conn:
        land_bundle(conn, bundle, run_id=run_id, source="simulator", started_at=bundle.snapshot_at)
    return run_id


def dbt(url: str, home: Path, *, full_refresh: bool = False) -> None:
    result = run_dbt(
        ["run", "--select", *MODELS], db_url=url, home=home, full_refresh=full_refresh, vars=VARS
    )
    result.raise_for_status()
    publish_all(url)


@pytest.fixture(scope="module")
def carry(pg_server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Carry]:
    clan_tag, times, members = plan(World(seed=SIM_SEED))
    name = f"t_carry_{uuid.uuid4().hex[:8]}"
    url = pg_server.create_database(name)
    home = tmp_path_factory.mktemp("carry-home")
    try:
        migrate(url)
        # seeds and staging once, with the data tests of the models built below
        first = run_dbt(
            ["build", "--exclude", "resource_type:test", "resource_type:unit_test"],
            db_url=url,
            home=home,
            vars=VARS,
        )
        first.raise_for_status()
        state = Carry(url=url, clan_tag=clan_tag, members=members)
        with SimulatedClashApi(seed=SIM_SEED, token=SIM_TOKEN, start_time=times[0]) as sim:
            for batch in BATCHES:
                for k in batch:
                    sim.clock.set(times[k])
                    skip = {members[who] for who, runs in SKIPPED.items() if k in runs}
                    state.run_ids.append(land_run(url, sim, home, clan_tag, skip))
                dbt(url, home)
        state.incremental = mart_checksums(url)
        dbt(url, home, full_refresh=True)
        state.full_refresh = mart_checksums(url)
        yield state
    finally:
        pg_server.drop_database(name)


def raw_run(url: str, run_id: uuid.UUID) -> tuple[dict[str, dict], dict[str, dict]]:
    """The run's roster items and profiles by player tag, with the profiles' fetch times."""
    rows = query(
        url,
        """
        select f.endpoint, f.resource_tag, f.fetched_at, p.body
        from raw.fetch_log as f join raw.payloads as p using (payload_hash)
        where f.run_id = %s and f.endpoint in ('clan_members', 'player')
        """,
        run_id,
    )
    [items] = [r["body"]["items"] for r in rows if r["endpoint"] == "clan_members"]
    profiles = {
        r["resource_tag"]: {**r["body"], "_fetched_at": r["fetched_at"]}
        for r in rows
        if r["endpoint"] == "player"
    }
    return {item["tag"]: item for item in items}, profiles


def latest_profile(carry: Carry, tag: str, k: int) -> dict | None:
    """By hand: the member's profile in the newest of runs 0..k that fetched it."""
    for j in range(k, -1, -1):
        profile = raw_run(carry.url, carry.run_ids[j])[1].get(tag)
        if profile is not None:
            return profile
    return None


def stats_row(carry: Carry, tag: str, k: int) -> dict:
    [row] = query(
        carry.url,
        "select * from marts.member_snapshot_stats where run_id = %s and player_tag = %s",
        carry.run_ids[k],
        tag,
    )
    return row


def hero_level(profile: dict, hero: str) -> int:
    levels = [h["level"] for h in profile.get("heroes", []) if h["name"] == hero]
    return levels[0] if levels else 0


def test_every_member_of_every_snapshot_has_stats_and_metrics(carry):
    for k, run_id in enumerate(carry.run_ids):
        roster, profiles = raw_run(carry.url, run_id)
        rows = query(
            carry.url,
            "select player_tag, is_profile_carried from marts.member_snapshot_stats"
            " where run_id = %s",
            run_id,
        )
        assert {r["player_tag"] for r in rows} == set(roster), k
        skipped = {carry.members[who] for who, runs in SKIPPED.items() if k in runs}
        assert not skipped & set(profiles)  # the run really lacks them
        metrics = query(
            carry.url,
            """
            select m.player_tag, count(*) as n from marts.metrics as m
            join marts.roster_snapshots as s using (snapshot_id)
            where s.run_id = %s group by m.player_tag
            """,
            run_id,
        )
        assert {m["player_tag"] for m in metrics} == set(roster), k


def test_a_skipped_member_keeps_the_previous_profile(carry):
    tag = carry.members["carried"]
    for k in (2, 3):
        row = stats_row(carry, tag, k)
        fetched = raw_run(carry.url, carry.run_ids[1])[1][tag]  # run 1's profile, by hand
        assert row["has_profile"] and row["is_profile_carried"], k
        assert row["profile_fetched_at"] == fetched["_fetched_at"], k
        for column, key in PROFILE_FIELDS.items():
            assert row[column] == fetched.get(key), (k, column)
        for hero, column in HEROES.items():
            assert row[column] == hero_level(fetched, hero), (k, hero)
        # the member-list fields are the snapshot's own roster item
        item = raw_run(carry.url, carry.run_ids[k])[0][tag]
        for column, key in ROSTER_FIELDS.items():
            assert row[column] == item[key], (k, column)
    # fetched again in run 4: its own profile, not carried
    row = stats_row(carry, tag, 4)
    own = raw_run(carry.url, carry.run_ids[4])[1][tag]
    assert (row["is_profile_carried"], row["profile_fetched_at"]) == (False, own["_fetched_at"])
    assert row["war_stars"] == own["warStars"]


def test_the_carried_values_differ_from_what_a_fetch_would_have_given(carry):
    """The simulator changes players every 6 h: carrying is visible, not a no-op."""
    tag = carry.members["carried"]
    run1 = latest_profile(carry, tag, 1)
    run4 = raw_run(carry.url, carry.run_ids[4])[1][tag]
    assert run1 is not None
    assert any(run1.get(key) != run4.get(key) for key in PROFILE_ACTIVITY.values())


def test_a_profile_fetched_only_later_is_not_used(carry):
    tag = carry.members["late"]
    for k in (0, 1):
        row = stats_row(carry, tag, k)
        assert latest_profile(carry, tag, k) is None
        assert (row["has_profile"], row["is_profile_carried"]) == (False, False), k
        assert row["profile_fetch_id"] is None and row["profile_fetched_at"] is None
        assert row["war_stars"] is None and row["barbarian_king_level"] is None
        item = raw_run(carry.url, carry.run_ids[k])[0][tag]
        assert row["trophies"] == item["trophies"]
        rush = query(
            carry.url,
            "select count(*) as n from marts.metrics where snapshot_id = %s and player_tag = %s"
            " and metric_name like '%%rush%%'",
            row["snapshot_id"],
            tag,
        )
        assert rush[0]["n"] == 0
    row = stats_row(carry, tag, 2)
    own = raw_run(carry.url, carry.run_ids[2])[1][tag]
    assert (row["has_profile"], row["profile_fetched_at"]) == (True, own["_fetched_at"])


def test_metrics_read_the_carried_profile(carry):
    tag = carry.members["carried"]
    rush = {
        (r["as_of"], r["metric_name"]): r
        for r in query(
            carry.url,
            "select * from marts.metrics where player_tag = %s and metric_name like '%%rush_pct'",
            tag,
        )
    }
    snapshots = {k: stats_row(carry, tag, k) for k in range(RUNS)}
    for k, row in snapshots.items():
        for metric in ("hero_rush_pct", "lab_rush_pct"):
            value = rush[(row["snapshot_at"], metric)]
            assert value["profile_fetched_at"] == row["profile_fetched_at"], (k, metric)
    for k in (2, 3):  # the same profile and town hall as run 1: the same rush
        if snapshots[k]["town_hall_level"] == snapshots[1]["town_hall_level"]:
            for metric in ("hero_rush_pct", "lab_rush_pct"):
                same = rush[(snapshots[k]["snapshot_at"], metric)]
                assert same["value"] == rush[(snapshots[1]["snapshot_at"], metric)]["value"]
    # every metric row of a snapshot names the profile the snapshot used
    stale = query(
        carry.url,
        """
        select count(*) as n from marts.metrics as m
        join marts.member_snapshot_stats as s using (snapshot_id, player_tag)
        where m.profile_fetched_at is distinct from s.profile_fetched_at
        """,
    )
    assert stale[0]["n"] == 0


def test_a_carried_profile_is_not_new_activity(carry):
    """Activity from profile fields counts once: at the fetch that shows the change
    (run 4, compared with run 1's profile by hand), never at the carried copies."""
    tag = carry.members["carried"]
    rows = {
        r["snapshot_at"]: r
        for r in query(
            carry.url,
            "select snapshot_at, changed_fields from intermediate.int_member_snapshots_diffed"
            " where player_tag = %s",
            tag,
        )
    }
    changed = [
        set(rows[stats_row(carry, tag, k)["snapshot_at"]]["changed_fields"]) for k in range(RUNS)
    ]
    for k in (2, 3):
        assert not changed[k] & set(PROFILE_ACTIVITY), (k, changed[k])
    run1 = raw_run(carry.url, carry.run_ids[1])[1][tag]
    run4 = raw_run(carry.url, carry.run_ids[4])[1][tag]
    by_hand = {field for field, key in PROFILE_ACTIVITY.items() if run1.get(key) != run4.get(key)}
    assert by_hand
    assert changed[4] & set(PROFILE_ACTIVITY) == by_hand


def test_the_roster_shows_the_profile_of_the_last_fetch(carry):
    tag = carry.members["last"]
    [row] = query(
        carry.url,
        "select * from marts.roster where clan_tag = %s and player_tag = %s",
        carry.clan_tag,
        tag,
    )
    run3 = raw_run(carry.url, carry.run_ids[3])[1][tag]
    assert row["profile_fetched_at"] == run3["_fetched_at"]
    assert row["war_stars"] == run3["warStars"]
    item = raw_run(carry.url, carry.run_ids[4])[0][tag]
    assert row["trophies"] == item["trophies"]
    assert row["hero_rush_pct"] is not None
    # the API's roster payload: every current member with its profile_fetched_at
    fetched = {
        r["player_tag"]: r["profile_fetched_at"]
        for r in query(
            carry.url,
            "select player_tag, profile_fetched_at from marts.roster"
            " where clan_tag = %s and is_current",
            carry.clan_tag,
        )
    }
    with (
        BackgroundServer(create_app(carry.url, pool_size=2)) as server,
        httpx.Client(base_url=server.base_url, timeout=30) as http,
    ):
        body = http.get("/api/v2/roster", params={"clan": carry.clan_tag}).json()
    served = {m["player_tag"]: m["profile_fetched_at"] for m in body["members"]}
    assert served.keys() == fetched.keys()
    assert served[tag] is not None
    for player, at in fetched.items():
        text = served[player]
        assert (datetime.fromisoformat(text) if text else None) == at, player


def test_profile_counts_tell_fetched_from_carried(carry):
    for k, run_id in enumerate(carry.run_ids):
        _, profiles = raw_run(carry.url, run_id)
        [snapshot] = query(
            carry.url, "select profile_count from marts.roster_snapshots where run_id = %s", run_id
        )
        assert snapshot["profile_count"] == len(profiles), k


def test_incremental_builds_equal_a_full_refresh(carry):
    assert carry.incremental["marts.member_snapshot_stats"][0] > 0
    tables = carry.incremental.keys() | carry.full_refresh.keys()
    differing = sorted(t for t in tables if carry.incremental.get(t) != carry.full_refresh.get(t))
    assert differing == []
