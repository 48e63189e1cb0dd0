"""``clash-pipeline demo``: days of pipeline runs against the simulated API, then a summary.

Each simulated run is a real ``clash-ingest`` flow run; the simulator's frozen
clock advances between them, so the marts fill with simulated history.
"""

from __future__ import annotations

import os
import secrets
import statistics
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, LiteralString, TypedDict

import typer
from pydantic import SecretStr
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from clash_pipeline.clash_api.tags import normalize_tag
from clash_pipeline.cli import common
from clash_pipeline.cli.output import human_bytes, out
from clash_pipeline.settings import load_settings

if TYPE_CHECKING:
    import psycopg

    from clash_pipeline.orchestration.model import ClanRun, IngestReport
    from clash_pipeline.orchestration.options import PipelineOptions, Trigger
    from clash_pipeline.simulator.server import SimulatedClashApi

__all__ = ["DEMO_CLAN_TAGS", "DemoPlan", "demo"]

DEMO_CLAN_TAGS = ["#2QG2C08UP", "#9RCRVL8V"]


def demo(
    days: Annotated[int, typer.Option(min=1, max=120, help="Simulated days.")] = 14,
    runs_per_day: Annotated[int, typer.Option(min=1, max=24, help="Runs per simulated day.")] = 4,
    clan: Annotated[
        list[str] | None, typer.Option("--clan", "-c", help="Clan tag(s) to simulate.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the simulated world.")] = 42,
    build_every: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Build the marts (dbt) every N runs; the runs between only land, and the "
            "next build catches up on them. Default: every other simulated day.",
        ),
    ] = None,
    tests: Annotated[
        bool,
        typer.Option(
            "--tests/--no-tests",
            help="Run dbt's data tests in every build (slower); by default only the last does.",
        ),
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show Prefect's and dbt's own log lines.")
    ] = False,
    dbt_project: Annotated[Path | None, typer.Option(hidden=True)] = None,
) -> None:
    """The whole pipeline against the simulated API for a number of simulated days.

    Each simulated run is a real Prefect flow run (fetch, land, monitor; dbt
    and the anomaly checks every other simulated day and on the last run,
    which also runs dbt's data tests) against the embedded PostgreSQL (or
    DATABASE_URL); the simulated clock advances between runs.
    """
    from clash_pipeline.simulator.server import SimulatedClashApi

    settings = load_settings()
    tags = [normalize_tag(t, kind="clan tag") for t in clan] if clan else DEMO_CLAN_TAGS
    url = common.prepare_database(settings)
    common.use_prefect(settings, verbose=verbose)
    token = secrets.token_urlsafe(24)
    plan = DemoPlan.of(
        days,
        runs_per_day,
        build_every=build_every,
        tests=tests,
        verbose=verbose,
        dbt_project=dbt_project,
    )
    t0 = time.perf_counter()
    activity = common.sim_activity()
    with SimulatedClashApi(
        seed=seed, token=token, frozen_clock=True, activity_per_hour=activity
    ) as sim:
        reports = _run_days(sim, token, tags, plan)
    elapsed = time.perf_counter() - t0
    _print_demo_summary(url, tags, plan, reports, elapsed)
    if any(r.failed for r in reports):
        raise typer.Exit(1)


class _DemoOptions(TypedDict):
    """What every demo run shares (the options of PipelineOptions it sets)."""

    trigger: Trigger
    requests_per_second: float
    max_concurrency: int
    retry_delay_seconds: float
    dbt_verbose: bool
    dbt_project_dir: str | None


@dataclass(frozen=True)
class DemoPlan:
    """How many runs, how far apart in simulated time, and which of them build the marts."""

    days: int
    runs_per_day: int
    build_every: int
    land_only: PipelineOptions
    build: PipelineOptions
    last: PipelineOptions

    @classmethod
    def of(
        cls,
        days: int,
        runs_per_day: int,
        *,
        build_every: int | None,
        tests: bool,
        verbose: bool,
        dbt_project: Path | None,
    ) -> DemoPlan:
        from clash_pipeline.orchestration.options import PipelineOptions

        base = _DemoOptions(
            trigger="demo",
            # the simulator enforces no rate limit, so the demo does not wait for one
            requests_per_second=500,
            max_concurrency=16,
            retry_delay_seconds=1,
            dbt_verbose=verbose,
            dbt_project_dir=str(dbt_project) if dbt_project else None,
        )
        return cls(
            days=days,
            runs_per_day=runs_per_day,
            build_every=build_every or 2 * runs_per_day,
            land_only=PipelineOptions(**base, build_marts=False, anomaly_checks=False),
            build=PipelineOptions(**base, transform_mode="build" if tests else "run"),
            last=PipelineOptions(**base, transform_mode="build"),
        )

    @property
    def total_runs(self) -> int:
        return self.days * self.runs_per_day

    @property
    def step(self) -> timedelta:
        """Simulated time between two runs."""
        return timedelta(hours=24 / self.runs_per_day)

    def options(self) -> Iterator[PipelineOptions]:
        """Each run's options: land only, a build every ``build_every`` runs, tests last."""
        for i in range(self.total_runs):
            if i == self.total_runs - 1:
                yield self.last
            else:
                yield self.build if (i + 1) % self.build_every == 0 else self.land_only


def _run_days(
    sim: SimulatedClashApi, token: str, tags: list[str], plan: DemoPlan
) -> list[IngestReport]:
    """Every run of the plan, the simulated clock advanced after each; with a progress bar."""
    from clash_pipeline.orchestration.options import ApiSpec

    api = ApiSpec(
        base_url=sim.base_url, token=SecretStr(token), source="simulator", clock="simulator"
    )
    reports = []
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=out,
        transient=False,
    ) as progress:
        bar = progress.add_task(
            "starting Prefect; the first run builds every model", total=plan.total_runs
        )
        for options in plan.options():
            report = common.run_ingest_flow(tags, api, options)
            reports.append(report)
            progress.update(bar, advance=1, description=_progress_line(sim, report))
            sim.clock.advance(plan.step)
    return reports


def _progress_line(sim: SimulatedClashApi, report: IngestReport) -> str:
    changed = sum(r.rows_changed or 0 for r in report.runs)
    done = f"marts built, {changed} members changed" if report.build else "landed"
    return (
        f"{sim.clock.now():%Y-%m-%d %H:%M} simulated: "
        f"{len(report.succeeded)}/{len(report.runs)} clans ok, {done}"
    )


# ------------------------------------------------------------------------- summary


@dataclass(frozen=True)
class _WarehouseCounts:
    """What the demo left in the warehouse; ``None`` where a mart was not built."""

    members: tuple[int, int] | None  # (current, ever seen)
    snapshots: int | None
    stats_rows: int | None
    raw_size: str


def _one(
    conn: psycopg.Connection[Any], query: LiteralString, params: tuple[Any, ...] | None = None
) -> tuple[Any, ...]:
    """The single row of an aggregate query (which always returns one)."""
    row: tuple[Any, ...] | None = conn.execute(query, params).fetchone()
    if row is None:
        raise RuntimeError(f"no row from {query!r}")
    return row


def _warehouse_counts(url: str, tags: list[str]) -> _WarehouseCounts:
    from clash_pipeline.warehouse.connect import connect

    members = snapshots = stats_rows = None
    with connect(url) as conn:
        marts = _one(
            conn,
            """
            select
                to_regclass('marts.members') is not null,
                to_regclass('marts.roster_snapshots') is not null,
                to_regclass('marts.member_snapshot_stats') is not null
            """,
        )
        if marts[0]:
            current, ever = _one(
                conn,
                "select count(*) filter (where is_current), count(*) from marts.members"
                " where clan_tag = any(%s)",
                (tags,),
            )
            members = (current, ever)
        if marts[1]:
            snapshots = _one(
                conn,
                "select count(*) from marts.roster_snapshots where clan_tag = any(%s)",
                (tags,),
            )[0]
        if marts[2]:
            stats_rows = _one(
                conn,
                "select count(*) from marts.member_snapshot_stats where clan_tag = any(%s)",
                (tags,),
            )[0]
        raw_size = _one(conn, "select pg_size_pretty(pg_total_relation_size('raw.payloads'))")[0]
    return _WarehouseCounts(members, snapshots, stats_rows, raw_size)


def _median_seconds(values: Iterable[float | None]) -> str:
    present = [v for v in values if v is not None]
    return f"{statistics.median(present):.2f} s" if present else "-"


def _print_demo_summary(
    url: str, tags: list[str], plan: DemoPlan, reports: list[IngestReport], elapsed: float
) -> None:
    runs = [run for report in reports for run in report.runs]
    counts = _warehouse_counts(url, tags)
    ok = sum(r.status == "succeeded" for r in runs)
    partial = sum(r.status == "partial" for r in runs)
    failed = sum(r.status == "failed" for r in runs)
    table = Table(title=f"demo: {len(tags)} clan(s), {plan.days} days x {plan.runs_per_day} runs")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("clan runs (succeeded / partial / failed)", f"{ok} / {partial} / {failed}")
    table.add_row(
        "API requests (retries)",
        f"{sum(r.requests for r in runs)} ({sum(r.retries for r in runs)})",
    )
    skipped = _skipped(runs)
    table.add_row("API requests skipped by the planner", str(sum(skipped.values())))
    if counts.members:
        table.add_row("members now (ever seen)", f"{counts.members[0]} ({counts.members[1]})")
    table.add_row("member rows changed, all runs", str(sum(r.rows_changed or 0 for r in runs)))
    if counts.snapshots is not None:
        table.add_row("roster snapshots", str(counts.snapshots))
    if counts.stats_rows is not None:
        table.add_row("member snapshot stats rows", str(counts.stats_rows))
    received = human_bytes(sum(r.bytes_received for r in runs))
    stored = human_bytes(sum(r.bytes_stored for r in runs))
    table.add_row("bytes received / stored", f"{received} / {stored}")
    table.add_row("raw.payloads on disk", counts.raw_size)
    table.add_row(
        "median fetch+land per run",
        _median_seconds(r.stage_seconds.get("fetch_land") for r in reports),
    )
    builds = [r.build.seconds for r in reports if r.build]
    table.add_row("dbt builds (median time)", f"{len(builds)} ({_median_seconds(builds)})")
    table.add_row("median pipeline run (flow)", _median_seconds(r.wall_seconds for r in reports))
    table.add_row("wall time", f"{elapsed:.1f} s")
    out.print(table)
    from clash_pipeline.ingest.plan import skipped_message

    message = skipped_message(skipped, sum(r.requests for r in runs))
    out.print(
        f'{message} (README "Change-driven polling")' if message else _NOTHING_SKIPPED,
        highlight=False,
    )
    _print_next_steps(url)


_NOTHING_SKIPPED = "the planner skipped no request: every run fetched everything"


def _skipped(runs: Iterable[ClanRun]) -> Counter[str]:
    """The requests the planner skipped over all runs, by endpoint."""
    total: Counter[str] = Counter()
    for run in runs:
        total.update(run.skipped)
    return total


def _print_next_steps(url: str) -> None:
    """Where to look at what the demo built."""
    from clash_pipeline.warehouse.connect import redact_url

    prefect_home = os.environ.get("PREFECT_HOME", ".clash-pipeline/prefect")
    out.print("Next:")
    out.print(f"  database: {redact_url(url)}  (full URL: clash-pipeline db url)")
    out.print(
        '  psql "$(clash-pipeline db url)" -c "select clan_tag, player_tag, name, role, '
        'town_hall_level, trophies, updated_at from marts.members where is_current limit 10"'
    )
    out.print(
        "  marts: marts.roster (each member's latest metrics), marts.metrics, marts.members, "
        "marts.roster_snapshots, marts.member_snapshot_stats, marts.membership_events, "
        "marts.wars, marts.capital_raid_seasons"
    )
    out.print(
        "  runs: ops.ingest_runs (one row per clan run, health in summary), "
        "ops.ingest_logs (a checkpoint per phase and step)"
    )
    out.print(
        "  Prefect: the flow runs and their summary artifacts are in Prefect's local "
        f"database; PREFECT_HOME={prefect_home} prefect server start shows them "
        "(from a checkout: uv run prefect server start)"
    )
    out.print(
        "  the API and dashboard: clash-pipeline api --port 8080, then "
        "http://127.0.0.1:8080/dashboard/"
    )
