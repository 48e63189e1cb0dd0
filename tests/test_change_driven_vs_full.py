"""Issue 14, point 4: change-driven runs build the same marts as ``--full`` runs.

One simulated clan at the simulator's default activity, hourly runs over a simulated
day: at each hour the same responses are fetched twice, into two warehouses, once as
the planner plans it (``changes``) and once with everything (``full``). Both are then
built by dbt and every relation of ``marts`` is compared row by row, with the ids that
name a run (``run_id``, ``snapshot_id``) replaced by what they stand for (the clan and the
snapshot's time) and the columns that say which request a value came from and when (fetch
ids, ``fetched_at``, ``last_fetched_at``, ``profile_fetched_at``, ``is_profile_carried``,
a snapshot's count of fresh profiles) left out: change-driven runs fetch less often.

The marts may differ only where the simulator changed a member's profile without
changing any field of the member list: then the change-driven run carried the previous
profile, and the full run has the new one. Those member-snapshots are found by hand from
``raw`` (the full run's profile body is not the body of the profile the change-driven
warehouse used), and the test reports how often that happened. Everything of every
other member must be equal.

``COC_PROFILE_MAX_AGE_HOURS`` is 6 here, so the day also refreshes stale profiles.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

from clash_pipeline.clash_api.ratelimit import RateLimiter
from clash_pipeline.ingest.fetch import ApiTarget, fetch_clans
from clash_pipeline.settings import load_settings
from clash_pipeline.simulator import DEFAULT_START, SimulatedClashApi
from clash_pipeline.simulator.world import DEFAULT_ACTIVITY_PER_HOUR
from clash_pipeline.transform.dbt import run_dbt
from clash_pipeline.transform.publish import publish_all
from clash_pipeline.warehouse.migrations import migrate
from tests.plugins.sim_fixtures import SIM_SEED, SIM_TOKEN

pytestmark = pytest.mark.slow

SIM_CLAN = "#2QG2C08UP"
HOURS = 25  # a simulated day and its next hour: every stale profile is refreshed once
VARS = {"staging_test_days": 0}
#: columns that name which profile (or which run's request) a row used, not its values
WHICH_PROFILE = {"profile_fetched_at", "is_profile_carried", "profile_count"}
#: relations whose rows count requests: they differ by design (the planner's point)
REQUEST_COUNTS = {"ingest_run_health"}


@dataclass
class Pair:
    changes: str
    full: str
    runs: dict[str, list[uuid.UUID]]  # plan -> run ids, hour by hour
    requests: dict[str, int]


def query(url: str, text: Any, *params: Any) -> list[dict[str, Any]]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(text, params).fetchall()


def fetch(url: str, home: Path, sim: SimulatedClashApi, *, full: bool) -> tuple[uuid.UUID, int]:
    settings = load_settings(
        clash_pipeline_home=home, coc_max_retries=1, coc_profile_max_age_hours=6
    )
    target = ApiTarget(sim.base_url, sim.token, "simulator", sim.clock.now)
    limiter = RateLimiter(requests_per_second=1000, max_concurrency=16)
    [outcome] = asyncio.run(
        fetch_clans(settings, url, [SIM_CLAN], target, limiter=limiter, full=full)
    )
    assert outcome.status == "succeeded", outcome.error
    [row] = query(url, "select requests from raw.fetch_runs where run_id = %s", outcome.run_id)
    return outcome.run_id, row["requests"]


def build(url: str, home: Path) -> None:
    result = run_dbt(
        ["build", "--exclude", "resource_type:test", "resource_type:unit_test"],
        db_url=url,
        home=home,
        vars=VARS,
    )
    result.raise_for_status()
    publish_all(url)  # marts_build -> marts


@pytest.fixture(scope="module")
def pair(pg_server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    names = {plan: f"t_plan_{plan}_{uuid.uuid4().hex[:6]}" for plan in ("changes", "full")}
    urls = {plan: pg_server.create_database(name) for plan, name in names.items()}
    home = tmp_path_factory.mktemp("plan-home")
    try:
        runs: dict[str, list[uuid.UUID]] = {plan: [] for plan in urls}
        requests: Counter[str] = Counter()
        for url in urls.values():
            migrate(url)
        with SimulatedClashApi(
            seed=SIM_SEED,
            token=SIM_TOKEN,
            start_time=DEFAULT_START,
            activity_per_hour=DEFAULT_ACTIVITY_PER_HOUR,
        ) as sim:
            for hour in range(HOURS):
                sim.clock.set(DEFAULT_START + timedelta(hours=hour))
                for plan, url in urls.items():  # the same simulated time: the same answers
                    run_id, n = fetch(url, home, sim, full=plan == "full")
                    runs[plan].append(run_id)
                    requests[plan] += n
        for url in urls.values():
            build(url, home)
        yield Pair(urls["changes"], urls["full"], runs, dict(requests))
    finally:
        for name in names.values():
            pg_server.drop_database(name)


# ------------------------------------------------------------------------- by hand


def profiles_used(pair: Pair) -> dict[tuple[datetime, str], tuple[str | None, str | None]]:
    """(snapshot time, player) -> (payload hash of the profile the change-driven marts used,
    payload hash of the profile the full run fetched at that snapshot)."""
    used = query(
        pair.changes,
        """
        select s.snapshot_at, s.player_tag, f.payload_hash
        from marts.member_snapshot_stats as s
        left join raw.fetch_log as f on f.fetch_id = s.profile_fetch_id
        """,
    )
    fetched = query(
        pair.full,
        """
        select r.snapshot_at, f.resource_tag as player_tag, f.payload_hash
        from raw.fetch_log as f join raw.fetch_runs as r using (run_id)
        where f.endpoint = 'player' and f.payload_hash is not null
        """,
    )
    full_by_key = {(r["snapshot_at"], r["player_tag"]): r["payload_hash"] for r in fetched}
    return {
        (r["snapshot_at"], r["player_tag"]): (
            r["payload_hash"],
            full_by_key.get((r["snapshot_at"], r["player_tag"])),
        )
        for r in used
    }


def profile_only_changes(pair: Pair) -> set[tuple[datetime, str]]:
    """Member-snapshots whose carried profile is not the profile a full run fetched."""
    return {key for key, (used, full) in profiles_used(pair).items() if used != full}


def normalised(url: str, relation: str) -> tuple[list[str], Counter[tuple[Any, ...]]]:
    """The relation's rows as a multiset, run-naming ids replaced by what they stand for."""
    snapshots = {
        r["snapshot_id"]: (r["clan_tag"], r["snapshot_at"])
        for r in query(url, "select snapshot_id, clan_tag, snapshot_at from marts.roster_snapshots")
    }
    run_times = {
        r["run_id"]: r["snapshot_at"]
        for r in query(url, "select run_id, snapshot_at from raw.fetch_runs")
    }
    rows = query(url, sql.SQL("select * from {}").format(sql.Identifier("marts", relation)))
    if not rows:
        return [], Counter()
    columns = [c for c in rows[0] if not which_request(c)]

    def value(column: str, v: Any) -> Any:
        if column == "run_id" or column.endswith("_run_id"):
            return ("run at", run_times.get(v))
        if column == "snapshot_id" or column.endswith("_snapshot_id"):
            return ("snapshot", snapshots.get(v))
        if isinstance(v, dict | list):  # jsonb
            return json.dumps(v, sort_keys=True, default=str)
        return v

    return columns, Counter(tuple(value(c, row[c]) for c in columns) for row in rows)


def which_request(column: str) -> bool:
    """Columns that say which request (or when) a value came from: they differ by design,
    since the change-driven runs fetch less often (a raid season's last ``fetched_at``)."""
    return (
        column in WHICH_PROFILE
        or column in ("fetch_id", "fetched_at")
        or column.endswith(("_fetch_id", "_fetched_at"))
    )


def relations(url: str) -> list[str]:
    rows = query(
        url,
        """
        select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = 'marts' and c.relkind in ('r', 'p', 'v', 'm') order by 1
        """,
    )
    return [r["relname"] for r in rows if r["relname"] not in REQUEST_COUNTS]


# -------------------------------------------------------------------------- tests


def test_the_change_driven_runs_skipped_most_requests(pair):
    # the point of the planner: far fewer requests for the same history, even with every
    # profile refreshed after 6 h here (a sixth of the members an hour; 24 h by default)
    assert pair.requests["changes"] * 2 <= pair.requests["full"], pair.requests
    rows = query(
        pair.changes,
        "select count(*) filter (where is_profile_carried) as carried, count(*) as n"
        " from marts.member_snapshot_stats",
    )
    assert rows[0]["carried"] > rows[0]["n"] // 2, rows  # most rows use a carried profile


def test_every_member_snapshot_uses_the_profile_a_full_run_fetched_or_an_equal_one(pair, capsys):
    used = profiles_used(pair)
    assert used and all(u is not None for u, _ in used.values())  # every row has a profile
    differing = profile_only_changes(pair)
    with capsys.disabled():
        print(
            f"\nprofile changed without a member-list change: {len(differing)} of"
            f" {len(used)} member-snapshots ({len(differing) / len(used):.2%})"
        )
    # rare at the default activity (docs/SCALING.md): a member who played changes a field
    # of the list (trophies, donations) nearly always
    assert len(differing) <= 0.02 * len(used), len(differing)


def test_the_marts_agree_except_where_only_a_profile_changed(pair):
    differing = profile_only_changes(pair)
    players = {player for _, player in differing}
    assert relations(pair.changes) == relations(pair.full)
    compared = 0
    for relation in relations(pair.changes):
        columns, changes = normalised(pair.changes, relation)
        _, full = normalised(pair.full, relation)
        if "player_tag" in columns and players:
            # a member whose profile changed alone: their rows may differ, from that
            # snapshot on (windowed metrics), no one else's
            at = columns.index("player_tag")
            changes = Counter({r: n for r, n in changes.items() if r[at] not in players})
            full = Counter({r: n for r, n in full.items() if r[at] not in players})
        elif "snapshot_id" in columns and differing:
            # a snapshot's totals over its members (roster_snapshots' war stars)
            at = columns.index("snapshot_id")
            times = {t for t, _ in differing}
            changes = Counter({r: n for r, n in changes.items() if r[at][1][1] not in times})
            full = Counter({r: n for r, n in full.items() if r[at][1][1] not in times})
        assert changes == full, (
            relation,
            sorted(changes - full, key=repr)[:3],
            sorted(full - changes, key=repr)[:3],
        )
        compared += sum(full.values())
    assert compared > HOURS * 30  # the comparison saw the history (every member-snapshot)
