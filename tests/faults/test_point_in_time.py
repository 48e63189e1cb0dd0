"""Issue 12, point 7: point-in-time metrics, whatever the landing order or the clocks.

A snapshot's metrics may use only what was fetched by it (by the runs whose
``raw.fetch_runs.snapshot_at`` is at or before it). The same simulated history (one
clan, five runs 6 h apart: before a war, two runs during it, one after it ended) is
landed through the project's landing path (``fetch_clans``, which runs
``clash_pipeline.ingest.run.fetch_clan`` and ``land_clan``) in several ways, with an
incremental ``dbt run`` after each landing batch; then ``dbt run --full-refresh``
must leave every table of ``marts`` and ``intermediate`` identical (``mart_checksums``):

* in order: runs 0-3 (the war in progress at 2 and 3), a build, run 4 (ended), a build;
* out of order, with late wars: runs 1, 0, a build, then 4, 3, 2 (newest first), a
  build: the war's ended fetch is in ``raw`` before the in-war snapshots are built;
* clocks apart: the run's clock is the wall clock (as with the real API) while each of
  three clans comes from its own simulator, 20 days behind, years behind and years
  ahead of the wall clock; so a war's own end time is before every snapshot (or after
  every one) whatever state it is in.

And two direct tests: with the simulated clock behind, a war in progress at snapshot
S (its end time, on the simulated clock, before S) is not counted in S's ACE, and
counts from the first snapshot that saw it ended with the attacks of that fetch
(expected values from the raw JSON); a run landed older than the clan's newest built
snapshot is reported by the data test ``assert_every_landed_snapshot_is_built``.

Every database starts as a copy of one template built once with the whole project
and no data, so each build below is the routine incremental ``dbt run`` (one build of
the template and ten ``dbt run``: they take most of the module's time).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

from clash_pipeline.clash_api.ratelimit import RateLimiter
from clash_pipeline.ingest.fetch import ApiTarget, fetch_clans
from clash_pipeline.settings import load_settings
from clash_pipeline.simulator import SimulatedClashApi, World
from clash_pipeline.simulator.codec import random_tag
from clash_pipeline.transform.dbt import run_dbt
from clash_pipeline.transform.publish import publish_all
from clash_pipeline.warehouse.migrations import migrate
from clash_pipeline.warehouse.runs import utc_now
from tests.plugins.prefect_fixtures import mart_checksums
from tests.plugins.sim_fixtures import SIM_SEED, SIM_TOKEN

pytestmark = pytest.mark.slow

STEP = timedelta(hours=6)
RUNS = 5
#: Simulated history years before / after any plausible wall clock.
SIM_FAR_BEHIND = datetime(2025, 11, 3, 2, tzinfo=UTC)
#: ... and days behind it, so that its wars fall in the snapshots' 30-day windows.
SIM_BEHIND_DAYS = 20
SIM_AHEAD = datetime(2036, 11, 3, 2, tzinfo=UTC)
SIM_IN_STEP = datetime(2026, 11, 21, 2, tzinfo=UTC)
VARS = {"staging_test_days": 0}
MODELS = ["path:models/intermediate", "path:models/marts"]


@dataclass(frozen=True)
class History:
    """``RUNS`` run times on the simulated clock and the run at which the war is first ended."""

    clan_tag: str
    times: list[datetime]
    ended_run: int


def plan_history(world: World, around: datetime, salt: str, *, steps: int = 120) -> History:
    """A clan and five runs 6 h apart, the first within ``steps`` runs after ``around``:
    the war in progress at runs 2 and 3, ended at run 4."""
    for i in range(20):
        clan_tag = random_tag(SIM_SEED, salt, i)
        for k in range(steps):
            times = [around + (k + j) * STEP for j in range(RUNS)]
            states = [world.current_war(clan_tag, t).get("state") for t in times[2:5]]
            if states == ["inWar", "inWar", "warEnded"]:
                return History(clan_tag=clan_tag, times=times, ended_run=4)
    raise AssertionError(f"no simulated war ends in a six-run window after {around}")


@dataclass
class Landing:
    name: str
    url: str
    #: clan -> run index -> run id
    run_ids: dict[str, dict[int, uuid.UUID]] = field(default_factory=dict)
    incremental: dict[str, Any] = field(default_factory=dict)
    full_refresh: dict[str, Any] = field(default_factory=dict)


def dbt(url: str, home: Path, *args: str, full_refresh: bool = False) -> None:
    result = run_dbt(list(args), db_url=url, home=home, full_refresh=full_refresh, vars=VARS)
    result.raise_for_status()
    if args[0] in ("run", "build"):
        publish_all(url)  # dbt by hand: publish marts_build to marts, which readers read


def land_run(
    url: str, sim: SimulatedClashApi, home: Path, clan_tag: str, clock: Callable[[], datetime]
) -> uuid.UUID:
    """One clan's run through the project's fetch-and-land path; its run id."""
    settings = load_settings(clash_pipeline_home=home, coc_max_retries=1, coc_timeout_seconds=5)
    target = ApiTarget(sim.base_url, sim.token, "simulator", clock)
    limiter = RateLimiter(requests_per_second=2000, max_concurrency=32)
    [outcome] = asyncio.run(fetch_clans(settings, url, [clan_tag], target, limiter=limiter))
    if outcome.status == "partial" and clock is utc_now:
        # a wall-clocked run of a simulator ahead of the wall clock: bodies describing
        # times after their fetch time (an ended war, a war log) are kept out of the marts
        # at the door (ingest/checks.py); nothing else may make the run partial
        reasons = query(
            url,
            "select quarantine_reason from raw.fetch_log where run_id = %s"
            " and quarantine_reason is not null",
            outcome.run_id,
        )
        assert reasons and all("time_in_future" in r["quarantine_reason"] for r in reasons)
        return outcome.run_id
    assert outcome.status == "succeeded", outcome.error
    return outcome.run_id


@pytest.fixture(scope="module")
def template(pg_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    """A migrated database with every model built on no data, a dbt home, and the
    names of the copies made from it (dropped at the end)."""
    name = f"t_pit_template_{uuid.uuid4().hex[:8]}"
    url = pg_server.create_database(name)
    home = tmp_path_factory.mktemp("pit-home")
    copies: list[str] = []
    try:
        migrate(url)
        dbt(url, home, "build", "--exclude", "resource_type:test", "resource_type:unit_test")
        yield name, home, copies
    finally:
        for copy in [*copies, name]:
            pg_server.drop_database(copy)


def copy_of(pg_server: Any, template_name: str, name: str) -> str:
    with psycopg.connect(pg_server.url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("create database {} template {}").format(
                sql.Identifier(name), sql.Identifier(template_name)
            )
        )
    return pg_server.database_url(name)


@dataclass(frozen=True)
class Plan:
    """One clan's history, its landing batches (indexes into the history, in landing
    order) and the run's clock: the simulator's, or the wall clock (``utc_now``)."""

    history: History
    batches: list[list[int]]
    run_clock: str = "simulator"


def land_history(pg_server: Any, template: tuple, *plans: Plan) -> Landing:
    """Land the plans' batches into a copy of the template (batch j of every plan, then
    an incremental build); then checksums, a full refresh, checksums."""
    template_name, home, names = template
    name = f"t_pit_{uuid.uuid4().hex[:10]}"
    names.append(name)
    landing = Landing(name=name, url=copy_of(pg_server, template_name, name))
    with contextlib.ExitStack() as stack:
        sims = [
            stack.enter_context(
                SimulatedClashApi(seed=SIM_SEED, token=SIM_TOKEN, start_time=plan.history.times[0])
            )
            for plan in plans
        ]
        for j in range(max(len(plan.batches) for plan in plans)):
            for plan, sim in zip(plans, sims, strict=True):
                clock = sim.clock.now if plan.run_clock == "simulator" else utc_now
                for k in plan.batches[j] if j < len(plan.batches) else []:
                    sim.clock.set(plan.history.times[k])
                    run_id = land_run(landing.url, sim, home, plan.history.clan_tag, clock)
                    landing.run_ids.setdefault(plan.history.clan_tag, {})[k] = run_id
            dbt(landing.url, home, "run", "--select", *MODELS)
    landing.incremental = mart_checksums(landing.url)
    dbt(landing.url, home, "run", "--select", *MODELS, full_refresh=True)
    landing.full_refresh = mart_checksums(landing.url)
    return landing


def differences(landing: Landing) -> dict[str, tuple]:
    tables = landing.incremental.keys() | landing.full_refresh.keys()
    return {
        table: (landing.incremental.get(table), landing.full_refresh.get(table))
        for table in sorted(tables)
        if landing.incremental.get(table) != landing.full_refresh.get(table)
    }


def query(url: str, text: str, *params: Any) -> list[dict]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(text, params).fetchall()


@pytest.fixture(scope="module")
def in_step_history() -> History:
    return plan_history(World(seed=SIM_SEED), SIM_IN_STEP, "pit-in-step")


@pytest.fixture(scope="module")
def clocks_apart(pg_server: Any, template: tuple) -> tuple[Landing, dict[str, History]]:
    """Three clans landed together with the wall clock as the run's clock, each from its
    own simulator: days behind the wall clock, years behind it, years ahead of it."""
    world = World(seed=SIM_SEED)
    days_behind = utc_now().replace(minute=0, second=0, microsecond=0) - timedelta(
        days=SIM_BEHIND_DAYS
    )
    histories = {
        "behind": plan_history(world, days_behind, "pit-behind", steps=4 * (SIM_BEHIND_DAYS - 3)),
        "far_behind": plan_history(world, SIM_FAR_BEHIND, "pit-far-behind"),
        "ahead": plan_history(world, SIM_AHEAD, "pit-ahead"),
    }
    assert len({history.clan_tag for history in histories.values()}) == 3
    batches = [[0, 1, 2, 3], [4]]
    plans = [Plan(history, batches, run_clock="wall") for history in histories.values()]
    return land_history(pg_server, template, *plans), histories


def ova_samples(url: str, clan_tag: str) -> dict[uuid.UUID, dict[str, int]]:
    """ace_ova (30d) sample sizes: run id -> player -> n."""
    rows = query(
        url,
        """
        select r.run_id, m.player_tag, (m.components ->> 'n')::int as n
        from marts.metrics as m
        join marts.roster_snapshots as r
            on r.clan_tag = m.clan_tag and r.snapshot_at = m.as_of
        where m.clan_tag = %s and m.metric_name = 'ace_ova' and m.metric_window = '30d'
        """,
        clan_tag,
    )
    samples: dict[uuid.UUID, dict[str, int]] = {}
    for row in rows:
        samples.setdefault(row["run_id"], {})[row["player_tag"]] = row["n"]
    return samples


def current_war(url: str, run_id: uuid.UUID) -> dict:
    [row] = query(
        url,
        """
        select p.body from raw.fetch_log as f join raw.payloads as p using (payload_hash)
        where f.run_id = %s and f.endpoint = 'currentwar' and f.http_status = 200
        """,
        run_id,
    )
    body: dict = row["body"]
    return body


def test_in_order_incremental_equals_full_refresh(pg_server, template, in_step_history):
    landing = land_history(pg_server, template, Plan(in_step_history, [[0, 1, 2, 3], [4]]))
    assert landing.incremental["marts.metrics"][0] > 0
    assert differences(landing) == {}

    # a run older than the clan's newest built snapshot (a clock set back) is not built
    # incrementally: a data test warns about it, for `clash-pipeline build --full-refresh`
    home = template[1]
    late_at = in_step_history.times[0] - STEP
    with SimulatedClashApi(seed=SIM_SEED, token=SIM_TOKEN, start_time=late_at) as sim:
        late = land_run(landing.url, sim, home, in_step_history.clan_tag, sim.clock.now)
    check = run_dbt(
        ["test", "--select", "assert_every_landed_snapshot_is_built"],
        db_url=landing.url,
        home=home,
        vars=VARS,
    )
    # the project's on-run-start hook (macros/warehouse_guard.sql) is a node too
    [warned] = [n for n in check.nodes if n.resource_type == "test"]
    assert (warned.name, warned.status, warned.failures) == (
        "assert_every_landed_snapshot_is_built",
        "warn",
        1,
    )
    [built] = query(
        landing.url, "select count(*) as n from marts.roster_snapshots where run_id = %s", late
    )
    assert built["n"] == 0


def test_out_of_order_with_late_wars_equals_full_refresh(pg_server, template, in_step_history):
    # newest first: the ended war (run 4) lands before in-war snapshots 2 and 3
    # are built, and each snapshot is built after a later one landed
    landing = land_history(pg_server, template, Plan(in_step_history, [[1, 0], [4, 3, 2]]))
    assert landing.incremental["marts.metrics"][0] > 0
    assert differences(landing) == {}


def test_sim_clock_far_behind_and_far_ahead_of_the_wall_clock(clocks_apart):
    landing, histories = clocks_apart
    now = utc_now()
    assert histories["behind"].times[-1] < now - timedelta(days=1)
    assert histories["far_behind"].times[-1] < now - timedelta(days=300)
    assert histories["ahead"].times[0] > now + timedelta(days=300)
    assert differences(landing) == {}
    ahead = histories["ahead"]
    # ahead: the bodies of wars that describe times after their (wall-clock) fetch are
    # kept out at the door; the others land whole
    turned_away = query(
        landing.url,
        "select clan_tag, count(*) as n from raw.fetch_log"
        " where quarantine_reason like %s group by clan_tag",
        "%time_in_future%",
    )
    assert [(r["clan_tag"], r["n"] > 0) for r in turned_away] == [(ahead.clan_tag, True)]
    # ahead: every war ends after every (wall-clock) snapshot, so none counts
    samples = ova_samples(landing.url, ahead.clan_tag)
    assert len(samples) == RUNS
    assert {n for players in samples.values() for n in players.values()} == {0}


def test_a_war_seen_ended_after_a_snapshot_is_not_counted_in_it(clocks_apart):
    """With the simulated clock behind, runs 2 and 3 saw the war in progress (its end
    time, on the simulated clock, long before their wall-clock snapshots), run 4 saw it
    ended. Expected, from the raw JSON by hand: at runs 0-3 no member has a counted war
    attack (ace_ova n = 0 for everyone); from run 4 each member's n is the number of
    attacks they made in the ended war (the only war in the window)."""
    landing, histories = clocks_apart
    behind = histories["behind"]
    run_ids = landing.run_ids[behind.clan_tag]
    ended = behind.ended_run
    in_war = current_war(landing.url, run_ids[ended - 1])
    # the in-progress fetch already had attacks, and its end time is before the
    # snapshot: counting wars by end time alone would have counted them at run 3
    assert in_war["state"] == "inWar"
    assert any(member.get("attacks") for member in in_war["clan"]["members"])
    ended_war = current_war(landing.url, run_ids[ended])
    assert ended_war["state"] == "warEnded"
    attacks_by_hand = {
        member["tag"]: len(member.get("attacks", [])) for member in ended_war["clan"]["members"]
    }
    assert sum(attacks_by_hand.values()) > 0

    samples = ova_samples(landing.url, behind.clan_tag)
    for k in range(ended):
        assert samples[run_ids[k]] and set(samples[run_ids[k]].values()) == {0}, k
    for k in range(ended, RUNS):
        roster = samples[run_ids[k]]
        expected = {tag: attacks_by_hand.get(tag, 0) for tag in roster}
        assert roster == expected, k
        assert any(roster.values())
