"""The ``clash-pipeline`` command line.

Expected failures (bad tag, missing token, unreachable database, bad file) end
with ``error: ...`` and ``hint: ...`` on stderr and a non-zero exit code, never
with a stack trace.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
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
from clash_pipeline.errors import ClashPipelineError, ConfigError
from clash_pipeline.settings import Settings, load_settings

app = typer.Typer(
    name="clash-pipeline",
    help="Clash of Clans clan data pipeline: fetch, land, transform, serve.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(
    help="The database: embedded PostgreSQL or DATABASE_URL.", no_args_is_help=True
)
app.add_typer(db_app, name="db")

out = Console()
err = Console(stderr=True)

DEMO_CLAN_TAGS = ["#2QG2C08UP", "#9RCRVL8V"]


def _clan_tags(settings: Settings, given: list[str] | None) -> list[str]:
    tags = [normalize_tag(t, kind="clan tag") for t in given] if given else settings.coc_clan_tags
    if not tags:
        raise ConfigError(
            "no clan to fetch: COC_CLAN_TAGS is empty and no --clan was given",
            hint="pass --clan '#TAG' or set COC_CLAN_TAGS=#TAG1,#TAG2",
        )
    return list(dict.fromkeys(tags))


def _database(settings: Settings) -> str:
    """The database URL, the embedded server started if needed, migrations applied."""
    from clash_pipeline.warehouse.connect import resolve_database_url
    from clash_pipeline.warehouse.migrations import migrate

    if settings.uses_embedded_database:
        err.print(f"[dim]embedded PostgreSQL in {settings.home / 'pgdata'}[/dim]")
    url = resolve_database_url(settings)
    result = migrate(url)
    if result.applied:
        err.print(f"[dim]applied migrations: {', '.join(result.applied)}[/dim]")
    return url


# --------------------------------------------------------------------------- db


@db_app.command("start")
def db_start() -> None:
    """Start the embedded PostgreSQL (no-op if running) and apply migrations."""
    settings = load_settings()
    url = _database(settings)
    from clash_pipeline.warehouse.connect import redact_url

    out.print(f"database ready: {redact_url(url)}")


@db_app.command("stop")
def db_stop() -> None:
    """Stop the embedded PostgreSQL."""
    settings = load_settings()
    if not settings.uses_embedded_database:
        raise ConfigError(
            "DATABASE_URL is set: this database is not managed by clash-pipeline",
            hint="unset DATABASE_URL to manage the embedded database",
        )
    from clash_pipeline.warehouse.embedded import EmbeddedPostgres

    stopped = EmbeddedPostgres(settings.home).stop()
    out.print("embedded PostgreSQL stopped" if stopped else "embedded PostgreSQL was not running")


@db_app.command("status")
def db_status() -> None:
    """Show where the database is and whether it is running, with applied migrations."""
    settings = load_settings()
    from clash_pipeline.warehouse.connect import connect, redact_url
    from clash_pipeline.warehouse.migrations import applied_migrations

    if settings.uses_embedded_database:
        from clash_pipeline.warehouse.embedded import EmbeddedPostgres

        status = EmbeddedPostgres(settings.home).status()
        out.print(f"mode: embedded ({status.data_dir})")
        out.print(f"initialized: {status.initialized}  running: {status.running}")
        if status.running:
            out.print(f"pid: {status.pid}  port: {status.port}  server: {status.server_version}")
        url = status.url if status.running else None
    else:
        out.print("mode: DATABASE_URL")
        url = settings.database_url
    if url:
        out.print(f"url: {redact_url(url)}")
        with connect(url) as conn:
            try:
                rows = applied_migrations(conn)
            except Exception:  # noqa: BLE001 - a database without our bookkeeping yet
                rows = []
        out.print(
            f"migrations applied: {len(rows)}"
            + (f" (latest {rows[-1]['version']})" if rows else "")
        )


@db_app.command("url")
def db_url() -> None:
    """Print a URL for psql, dbt and BI tools (starts the embedded server if needed)."""
    settings = load_settings()
    from clash_pipeline.warehouse.connect import resolve_database_url

    print(resolve_database_url(settings))


@db_app.command("migrate")
def db_migrate() -> None:
    """Apply pending migrations from supabase/migrations (applying twice is a no-op)."""
    settings = load_settings()
    from clash_pipeline.warehouse.connect import resolve_database_url
    from clash_pipeline.warehouse.migrations import migrate

    result = migrate(resolve_database_url(settings))
    for version in result.applied:
        out.print(f"applied {version}")
    out.print(f"{len(result.applied)} applied, {len(result.already_applied)} already applied")


# ------------------------------------------------------------------ simulate-api


@app.command("simulate-api")
def simulate_api(
    host: Annotated[str, typer.Option(help="Interface to listen on (loopback).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0 picks a free one).")] = 8765,
    seed: Annotated[int, typer.Option(help="Seed of the simulated world.")] = 0,
    token: Annotated[
        str, typer.Option(help="Bearer token the server accepts.", envvar="SIM_API_TOKEN")
    ] = "sim-token",  # noqa: S107 - the simulator's own token, not a secret
    start_time: Annotated[
        str | None, typer.Option(help="Simulated start time, ISO 8601 UTC.")
    ] = None,
    frozen: Annotated[
        bool, typer.Option(help="Freeze the clock (advance it with POST /_sim/clock).")
    ] = False,
    missing_clan: Annotated[
        list[str] | None, typer.Option(help="A clan tag to answer with notFound.")
    ] = None,
) -> None:
    """Run the simulated Clash API on its own; point COC_API_BASE_URL at it."""
    from clash_pipeline.simulator.server import serve_forever

    start = _parse_time(start_time) if start_time else None
    missing = [normalize_tag(t, kind="clan tag") for t in missing_clan or []]
    serve_forever(
        host=host,
        port=port,
        seed=seed,
        token=token,
        start_time=start,
        frozen_clock=frozen,
        missing_clans=missing,
    )


def _parse_time(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"invalid time {value!r}", hint="use ISO 8601, e.g. 2026-11-02T08:00:00Z"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# -------------------------------------------------------------------------- fetch


@app.command("fetch")
def fetch(
    clan: Annotated[
        list[str] | None, typer.Option("--clan", "-c", help="Clan tag (repeatable).")
    ] = None,
    simulate: Annotated[
        bool, typer.Option(help="Fetch from an in-process simulated API instead.")
    ] = False,
    seed: Annotated[int, typer.Option(help="Simulator seed (with --simulate).")] = 0,
) -> None:
    """Fetch clans from the Clash API and land every response in raw (one run per clan)."""
    settings = load_settings()
    tags = _clan_tags(settings, clan)
    if not simulate and not settings.api_token():
        raise ConfigError(
            "COC_API_TOKEN is not set",
            hint="create a key at https://developer.clashofclans.com and set COC_API_TOKEN, "
            "or add --simulate to use the simulated API",
        )
    url = _database(settings)
    if simulate:
        from clash_pipeline.simulator.server import SimulatedClashApi

        token = secrets.token_urlsafe(24)
        with SimulatedClashApi(seed=seed, token=token, frozen_clock=False) as sim:
            outcomes = _run_fetch(
                settings, url, tags, sim.base_url, token, "simulator", sim.clock.now
            )
    else:
        outcomes = _run_fetch(
            settings, url, tags, settings.coc_api_base_url, settings.api_token() or "", "api", None
        )
    _print_outcomes(outcomes)
    if any(o.status != "succeeded" for o in outcomes):
        raise typer.Exit(1)


def _run_fetch(settings, url, tags, base_url, token, source, clock):
    from clash_pipeline.ingest.fetch import ApiTarget, fetch_clans
    from clash_pipeline.warehouse.runs import utc_now

    target = ApiTarget(base_url=base_url, token=token, source=source, clock=clock or utc_now)
    return asyncio.run(fetch_clans(settings, url, tags, target))


def _print_outcomes(outcomes) -> None:
    table = Table(title="fetch runs")
    for col in ("clan", "status", "requests", "failed", "new payloads", "stored", "received"):
        table.add_column(col)
    for o in outcomes:
        land = o.land
        table.add_row(
            o.clan_tag,
            o.status,
            str(land.requests) if land else "-",
            str(land.failed_requests) if land else "-",
            str(land.payloads_new) if land else "-",
            _bytes(land.bytes_new) if land else "-",
            _bytes(land.bytes_received) if land else "-",
        )
    out.print(table)
    for o in outcomes:
        if o.error:
            err.print(f"[red]error[/red] {o.clan_tag}: {o.error.get('message')}")
            if o.error.get("hint"):
                err.print(f"hint: {o.error['hint']}")
        for f in o.failed_requests[:5]:
            err.print(
                f"[yellow]warning[/yellow] {o.clan_tag}: {f['endpoint']} {f['tag'] or ''} "
                f"-> {f['status'] or f['error']} {f['reason'] or ''}"
            )


def _bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


# ----------------------------------------------------------------------- backfill


@app.command("backfill")
def backfill_command(
    path: Annotated[Path, typer.Argument(help="A saved API response (.json) or a folder of them.")],
    fetched_at: Annotated[
        str | None,
        typer.Option(
            "--fetched-at",
            help="Fetch time of every file, ISO 8601 (default: manifest, envelope, mtime).",
        ),
    ] = None,
    manifest: Annotated[
        Path | None,
        typer.Option(help="A manifest file (keys relative to PATH); overrides manifest.json."),
    ] = None,
    build_marts: Annotated[
        bool, typer.Option("--build/--no-build", help="Run dbt build after loading.")
    ] = True,
) -> None:
    """Load saved API responses (bodies or envelopes) into raw, then build the marts.

    The endpoint and tags are recognised from each body; a manifest.json in the
    folder overrides them. Unreadable or unrecognised files are copied to
    <home>/quarantine/<time>/ with reasons.json, and the exit status is 1.
    """
    from clash_pipeline.ingest.backfill import load_plan, plan_backfill

    settings = load_settings()
    when = _parse_time(fetched_at) if fetched_at else None
    plan = plan_backfill(path, fetched_at=when, manifest=manifest)
    url = _database(settings)
    with out.status("loading files into raw"):
        result = load_plan(url, plan, quarantine_root=settings.home / "quarantine")
    for warning in result.warnings:
        err.print(f"[yellow]warning[/yellow] {warning}", highlight=False)
    build_failed = False
    if build_marts:
        # Backfilled runs may be older than what the incremental marts hold, which
        # their watermarks would skip: rebuild from raw when anything was loaded.
        build_failed = not _run_build(
            url,
            settings.home,
            full_refresh=result.runs_created > 0,
            vars={"staging_test_days": 0},
        )
    _print_backfill(result)
    if result.quarantined:
        err.print(
            f"[red]error:[/red] {len(result.quarantined)} file(s) quarantined"
            + (f" in {result.quarantine_dir}" if result.quarantine_dir else ""),
            highlight=False,
        )
        err.print(
            "hint: see reasons.json there; fix the files or fill in its manifest.json, then run "
            f"clash-pipeline backfill {result.quarantine_dir or path}",
            highlight=False,
        )
    if result.quarantined or build_failed:
        raise typer.Exit(1)


def _print_backfill(result) -> None:
    table = Table(title=f"backfill of {result.root}")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("files read", str(result.files_read))
    table.add_row("loaded", str(result.loaded))
    table.add_row("  of which error responses", str(result.errors_loaded))
    table.add_row("skipped (already loaded)", str(result.skipped))
    table.add_row("quarantined", str(len(result.quarantined)))
    table.add_row("runs created", str(result.runs_created))
    table.add_row("payloads new", str(result.payloads_new))
    out.print(table)
    if result.quarantined:
        bad = Table(title="quarantined files")
        bad.add_column("file", overflow="fold")
        bad.add_column("reason", overflow="fold")
        for item in result.quarantined:
            bad.add_row(item.relpath, item.reason)
        out.print(bad)


# -------------------------------------------------------------------------- build


@app.command("build")
def build(
    full_refresh: Annotated[
        bool, typer.Option("--full-refresh", help="Rebuild incremental models from raw.")
    ] = False,
    select: Annotated[
        list[str] | None,
        typer.Option("--select", "-s", help="dbt node selection (repeatable)."),
    ] = None,
) -> None:
    """Run dbt build (models, seeds, snapshots, tests) against the configured database."""
    settings = load_settings()
    url = _database(settings)
    if not _run_build(url, settings.home, full_refresh=full_refresh, select=select):
        raise typer.Exit(1)


def _run_build(url, home, *, full_refresh=False, select=None, vars=None) -> bool:
    """dbt build with a per-node table; False (failing nodes on stderr) when anything failed."""
    from clash_pipeline.transform.dbt import run_dbt

    # dbt's own progress log is replaced by the table below (errors still print)
    args = ["build", "--quiet", *(["--select", *select] if select else [])]
    with out.status("dbt build"):
        result = run_dbt(args, db_url=url, home=home, full_refresh=full_refresh, vars=vars)
    _print_dbt(result)
    if result.failed:
        names = ", ".join(f"{n.resource_type} {n.name}" for n in result.failed)
        err.print(f"[red]error:[/red] dbt build failed: {names}", highlight=False)
        for node in result.failed[:10]:
            if node.message:
                err.print(f"  {node.name}: {node.message}", highlight=False)
        err.print("hint: see the dbt log under <home>/dbt/logs", highlight=False)
        return False
    if not result.success:
        err.print(f"[red]error:[/red] {result.error_summary}", highlight=False)
        return False
    return True


def _print_dbt(result) -> None:
    table = Table(title=f"dbt build ({result.elapsed_seconds:.1f} s)")
    for col in ("node", "type", "status", "time", "rows"):
        table.add_column(col, justify="right" if col in ("time", "rows") else "left")
    tests = [n for n in result.nodes if n.resource_type in ("test", "unit_test")]
    for n in result.nodes:
        if n in tests and not n.failed:
            continue
        rows = "" if n.rows_affected is None else str(n.rows_affected)
        status = f"[red]{n.status}[/red]" if n.failed else n.status
        table.add_row(n.name, n.resource_type, status, f"{n.execution_time:.2f} s", rows)
    out.print(table)
    if tests:
        counts: dict[str, int] = {}
        for n in tests:
            counts[n.status] = counts.get(n.status, 0) + 1
        out.print("tests: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))


# ----------------------------------------------------------------------- pipeline

ON_BUSY = ("wait", "skip")


def _prefect(settings: Settings, *, verbose: bool) -> None:
    """Prefect's local, offline, quiet environment (before Prefect is imported)."""
    from clash_pipeline.orchestration.runtime import configure_prefect

    configure_prefect(settings.home, quiet=not verbose)


def _run_ingest(tags: list[str], api, options):
    """One ``clash-ingest`` flow run; its report, also when clan runs failed."""
    from clash_pipeline.orchestration.flows import ingest
    from clash_pipeline.orchestration.model import IngestReport, RunsFailedError
    from clash_pipeline.orchestration.runtime import quiet_console_tracebacks

    quiet_console_tracebacks()
    state = asyncio.run(ingest(clan_tags=tags, api=api, options=options, return_state=True))
    result = state.result(raise_on_failure=False)
    if isinstance(result, RunsFailedError):
        return result.report
    if isinstance(result, IngestReport):
        return result
    if isinstance(result, BaseException):
        raise result
    raise ClashPipelineError(
        f"the ingest flow ended {state.type.value.lower()}: {state.message}",
        hint="see the Prefect log lines above",
    )


def _require_token(settings: Settings) -> None:
    import os

    if settings.api_token() or os.environ.get("PREFECT_API_URL"):
        return  # with a Prefect server, the token may be its Secret block
    raise ConfigError(
        "COC_API_TOKEN is not set",
        hint="create a key at https://developer.clashofclans.com and set COC_API_TOKEN "
        "(or keep it in a Prefect Secret block 'coc-api-token' on your Prefect server), "
        "or add --simulate to use the simulated API",
    )


@app.command("run")
def run(
    clan: Annotated[
        list[str] | None, typer.Option("--clan", "-c", help="Clan tag (repeatable).")
    ] = None,
    simulate: Annotated[
        bool, typer.Option(help="Fetch from an in-process simulated API instead.")
    ] = False,
    seed: Annotated[int, typer.Option(help="Simulator seed (with --simulate).")] = 0,
    on_busy: Annotated[
        str,
        typer.Option(help="When another run holds a clan: 'wait' for it, or 'skip' the clan."),
    ] = "wait",
    lock_timeout: Annotated[
        float, typer.Option(min=0, help="Seconds to wait for a busy clan before skipping it.")
    ] = 600.0,
    tests: Annotated[
        bool,
        typer.Option("--tests/--no-tests", help="Also run dbt's data tests of the marts."),
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show Prefect's and dbt's own log lines.")
    ] = False,
    dbt_project: Annotated[Path | None, typer.Option(hidden=True)] = None,
) -> None:
    """One pipeline run: fetch and land each clan, build the marts (dbt, once), check.

    Every clan is one run in ops.ingest_runs with a checkpoint per phase in
    ops.ingest_logs. A failed phase leaves the marts as they were; the next run
    catches up. Exits 1 when a clan's run failed.
    """
    from clash_pipeline.orchestration.options import ApiSpec, PipelineOptions

    settings = load_settings()
    tags = _clan_tags(settings, clan)
    if on_busy not in ON_BUSY:
        raise ConfigError(
            f"--on-busy must be one of {', '.join(ON_BUSY)}", hint="e.g. --on-busy skip"
        )
    if not simulate:
        _require_token(settings)
    _database(settings)
    _prefect(settings, verbose=verbose)
    options = PipelineOptions(
        trigger="cli",
        on_busy=on_busy,
        lock_timeout_seconds=lock_timeout,
        transform_mode="build" if tests else "run",
        dbt_verbose=verbose,
        dbt_project_dir=str(dbt_project) if dbt_project else None,
    )
    with contextlib.ExitStack() as stack:
        api = None
        if simulate:
            from clash_pipeline.simulator.server import SimulatedClashApi

            token = secrets.token_urlsafe(24)
            sim = stack.enter_context(SimulatedClashApi(seed=seed, token=token, frozen_clock=False))
            api = ApiSpec(base_url=sim.base_url, token=token, source="simulator", clock="simulator")
        with err.status(f"pipeline run for {len(tags)} clan(s): fetch, land, transform, monitor"):
            report = _run_ingest(tags, api, options)
    _print_report(report)
    if report.failed:
        raise typer.Exit(1)


def _print_report(report) -> None:
    table = Table(title=f"pipeline run ({report.wall_seconds:.1f} s)")
    table.add_column("clan", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("requests", justify="right")
    table.add_column("members (changed)", justify="right")
    table.add_column("fetch / land / dbt / check", justify="right")
    for run in report.runs:
        style = {"failed": "red", "skipped": "yellow"}.get(run.status)
        seconds = " / ".join(
            f"{run.phase_ms[p] / 1000:.1f}" if p in run.phase_ms else "-"
            for p in ("fetch", "land", "transform", "monitor")
        )
        changed = "" if run.rows_changed is None else f" ({run.rows_changed})"
        failed = f", {run.failed_requests} failed" if run.failed_requests else ""
        table.add_row(
            run.clan_tag,
            f"[{style}]{run.status}[/{style}]" if style else run.status,
            f"{run.requests}{failed}",
            f"{run.members}{changed}",
            f"{seconds} s",
        )
    out.print(table)
    if report.build:
        out.print(
            f"dbt: {report.build.scope} build in {report.build.seconds:.1f} s "
            f"({', '.join(f'{n} {s}' for s, n in sorted(report.build.nodes.items()))})"
        )
    for run in report.runs:
        error = run.error or {}
        if run.status == "failed":
            err.print(
                f"[red]error[/red] {run.clan_tag}: {error.get('phase', '?')} failed: "
                f"{error.get('message')}",
                highlight=False,
            )
            if error.get("hint"):
                err.print(f"hint: {error['hint']}", highlight=False)
        elif run.status == "skipped":
            err.print(f"[yellow]skipped[/yellow] {run.clan_tag}: {error.get('message')}")
    if report.failed:
        err.print(
            "hint: the marts are as they were before the run; the next run catches up. "
            "Details: ops.ingest_runs.error and ops.ingest_logs of the run ids in the "
            "Prefect artifact 'clash-ingest-summary'",
            highlight=False,
        )


# --------------------------------------------------------------------------- demo


@app.command("demo")
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
    from clash_pipeline.orchestration.options import ApiSpec, PipelineOptions
    from clash_pipeline.simulator.server import SimulatedClashApi

    settings = load_settings()
    tags = [normalize_tag(t, kind="clan tag") for t in clan] if clan else DEMO_CLAN_TAGS
    url = _database(settings)
    _prefect(settings, verbose=verbose)
    token = secrets.token_urlsafe(24)
    step = timedelta(hours=24 / runs_per_day)
    total_runs = days * runs_per_day
    base = dict(
        trigger="demo",
        # the simulator enforces no rate limit, so the demo does not wait for one
        requests_per_second=500,
        max_concurrency=16,
        retry_delay_seconds=1,
        dbt_verbose=verbose,
        dbt_project_dir=str(dbt_project) if dbt_project else None,
    )
    build_every = build_every or 2 * runs_per_day
    land_only = PipelineOptions(**base, build_marts=False, anomaly_checks=False)
    build = PipelineOptions(**base, transform_mode="build" if tests else "run")
    last = PipelineOptions(**base, transform_mode="build")
    reports = []
    t0 = time.perf_counter()
    with SimulatedClashApi(seed=seed, token=token, frozen_clock=True) as sim:
        api = ApiSpec(base_url=sim.base_url, token=token, source="simulator", clock="simulator")
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
                "starting Prefect; the first run builds every model", total=total_runs
            )
            for i in range(total_runs):
                if i == total_runs - 1:
                    options = last
                else:
                    options = build if (i + 1) % build_every == 0 else land_only
                report = _run_ingest(tags, api, options)
                reports.append(report)
                changed = sum(r.rows_changed or 0 for r in report.runs)
                done = f"marts built, {changed} members changed" if report.build else "landed"
                progress.update(
                    bar,
                    advance=1,
                    description=(
                        f"{sim.clock.now():%Y-%m-%d %H:%M} simulated: "
                        f"{len(report.succeeded)}/{len(report.runs)} clans ok, {done}"
                    ),
                )
                sim.clock.advance(step)
    elapsed = time.perf_counter() - t0
    _print_demo_summary(url, tags, days, runs_per_day, reports, elapsed)
    if any(r.failed for r in reports):
        raise typer.Exit(1)


def _print_demo_summary(url, tags, days, runs_per_day, reports, elapsed) -> None:
    import statistics

    from clash_pipeline.warehouse.connect import connect, redact_url

    runs = [run for report in reports for run in report.runs]
    with connect(url) as conn:
        marts = conn.execute(
            """
            select
                to_regclass('marts.members') is not null,
                to_regclass('marts.roster_snapshots') is not null,
                to_regclass('marts.member_snapshot_stats') is not null
            """
        ).fetchone()
        members = snapshots = stats_rows = None
        if marts[0]:
            members = conn.execute(
                "select count(*) filter (where is_current), count(*) from marts.members"
                " where clan_tag = any(%s)",
                (tags,),
            ).fetchone()
        if marts[1]:
            snapshots = conn.execute(
                "select count(*) from marts.roster_snapshots where clan_tag = any(%s)", (tags,)
            ).fetchone()[0]
        if marts[2]:
            stats_rows = conn.execute(
                "select count(*) from marts.member_snapshot_stats where clan_tag = any(%s)",
                (tags,),
            ).fetchone()[0]
        raw_size = conn.execute(
            "select pg_size_pretty(pg_total_relation_size('raw.payloads'))"
        ).fetchone()[0]

    def median(values):
        values = [v for v in values if v is not None]
        return f"{statistics.median(values):.2f} s" if values else "-"

    ok = sum(r.status == "succeeded" for r in runs)
    failed = sum(r.status == "failed" for r in runs)
    table = Table(title=f"demo: {len(tags)} clan(s), {days} days x {runs_per_day} runs")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("clan runs (succeeded / failed)", f"{ok} / {failed}")
    table.add_row(
        "API requests (retries)",
        f"{sum(r.requests for r in runs)} ({sum(r.retries for r in runs)})",
    )
    if members:
        table.add_row("members now (ever seen)", f"{members[0]} ({members[1]})")
    table.add_row("member rows changed, all runs", str(sum(r.rows_changed or 0 for r in runs)))
    if snapshots is not None:
        table.add_row("roster snapshots", str(snapshots))
    if stats_rows is not None:
        table.add_row("member snapshot stats rows", str(stats_rows))
    received = _bytes(sum(r.bytes_received for r in runs))
    table.add_row(
        "bytes received / stored", f"{received} / {_bytes(sum(r.bytes_stored for r in runs))}"
    )
    table.add_row("raw.payloads on disk", raw_size)
    table.add_row(
        "median fetch+land per run", median(r.stage_seconds.get("fetch_land") for r in reports)
    )
    builds = [r.build.seconds for r in reports if r.build]
    table.add_row("dbt builds (median time)", f"{len(builds)} ({median(builds)})")
    table.add_row("median pipeline run (flow)", median(r.wall_seconds for r in reports))
    table.add_row("wall time", f"{elapsed:.1f} s")
    out.print(table)
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
        f"database; PREFECT_HOME={prefect_home} uv run prefect server start shows them"
    )
    out.print(
        "  the API and dashboard: clash-pipeline api --port 8080, then "
        "http://127.0.0.1:8080/dashboard/"
    )


# -------------------------------------------------------------------------- serve


@app.command("serve")
def serve(
    ingest_cron: Annotated[
        str | None,
        typer.Option(envvar="CLASH_INGEST_CRON", help="Cron of the ingest runs (prefect.yaml)."),
    ] = None,
    monitor_cron: Annotated[
        str | None,
        typer.Option(
            envvar="CLASH_MONITOR_CRON", help="Cron of the freshness monitor (prefect.yaml)."
        ),
    ] = None,
    check: Annotated[
        bool, typer.Option("--check", help="Print the deployments and their schedules, then exit.")
    ] = False,
    port: Annotated[int, typer.Option(help="Port of the local Prefect server.")] = 4200,
) -> None:
    """Serve the deployments of prefect.yaml from this machine, on their schedules.

    With PREFECT_API_URL unset, a local Prefect server (UI included) is started on
    127.0.0.1:PORT, keeping its state under .clash-pipeline/prefect. Ctrl-C stops both.
    """
    from clash_pipeline.orchestration.deployments import (
        INGEST_FLOW,
        MONITOR_FLOW,
        load_deployment_specs,
    )

    settings = load_settings()
    _prefect(settings, verbose=True)
    specs = load_deployment_specs(crons={INGEST_FLOW: ingest_cron, MONITOR_FLOW: monitor_cron})
    table = Table(title="deployments (prefect.yaml)")
    table.add_column("deployment", no_wrap=True)
    table.add_column("schedule", no_wrap=True)
    table.add_column("flow", overflow="fold")
    table.add_column("parameters", overflow="fold")
    for spec in specs:
        schedule = ", ".join(f"{s['cron']} ({s.get('timezone', 'UTC')})" for s in spec.schedules)
        table.add_row(
            f"{spec.flow_name}/{spec.name}", schedule or "-", spec.entrypoint, str(spec.parameters)
        )
    out.print(table)
    if check:
        return
    if not settings.coc_clan_tags:
        err.print(
            "[yellow]warning[/yellow] COC_CLAN_TAGS is empty: scheduled ingest runs will fail",
            highlight=False,
        )
    _database(settings)
    with _prefect_server(settings, port) as api_url:
        from prefect import serve as prefect_serve

        out.print(f"serving; Prefect UI at {api_url.removesuffix('/api')} (Ctrl-C stops)")
        prefect_serve(*(spec.to_deployment() for spec in specs))


@contextlib.contextmanager
def _prefect_server(settings: Settings, port: int):
    """PREFECT_API_URL, or a local ``prefect server start`` for as long as the block runs."""
    import os
    import subprocess

    import httpx

    existing = os.environ.get("PREFECT_API_URL")
    if existing:
        yield existing
        return
    from prefect.settings import PREFECT_API_URL, temporary_settings

    api_url = f"http://127.0.0.1:{port}/api"
    log_path = settings.home / "prefect" / "server.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    prefect_cli = Path(sys.executable).with_name("prefect")
    command = [str(prefect_cli), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    with open(log_path, "ab") as log_file:
        server = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        with err.status(f"starting a local Prefect server on 127.0.0.1:{port}"):
            deadline = time.monotonic() + 180
            while True:
                if server.poll() is not None:
                    raise ClashPipelineError(
                        f"the local Prefect server stopped (exit {server.returncode})",
                        hint=f"see {log_path}; is port {port} free? (--port)",
                    )
                try:
                    if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise ClashPipelineError(
                        "the local Prefect server did not start within 180 s",
                        hint=f"see {log_path}",
                    )
                time.sleep(1)
        with temporary_settings(updates={PREFECT_API_URL: api_url}):
            os.environ["PREFECT_API_URL"] = api_url  # for the flow-run subprocesses
            yield api_url
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


@app.command("api")
def api(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8080,
    stale_hours: Annotated[
        float,
        typer.Option(help="Hours without a successful run after which a clan is stale."),
    ] = 25.0,
    open_browser: Annotated[
        bool, typer.Option("--open", help="Open the dashboard in a browser.")
    ] = False,
    body_cache: Annotated[
        bool, typer.Option(help="Keep built bodies by payload version.", hidden=True)
    ] = True,
) -> None:
    """Serve the read-only roster API and the dashboard (as clash_readonly)."""
    import uvicorn

    from clash_pipeline.serving.app import create_app
    from clash_pipeline.serving.queries import Warehouse
    from clash_pipeline.warehouse.connect import resolve_database_url

    if not 0 < port < 65536:
        raise ConfigError(f"invalid --port {port}", hint="pick a port between 1 and 65535")
    if stale_hours <= 0:
        raise ConfigError("--stale-hours must be positive", hint="e.g. --stale-hours 25")
    settings = load_settings()
    url = resolve_database_url(settings)
    probe = Warehouse(url, max_size=1)
    try:
        probe.open()  # a clear error now rather than on the first request
    finally:
        probe.close()
    address = f"http://{host}:{port}"
    err.print(f"API:       {address}/api/v2/clans", soft_wrap=True)
    err.print(f"docs:      {address}/api/docs", soft_wrap=True)
    err.print(f"dashboard: {address}/dashboard/", soft_wrap=True)
    if open_browser:
        import threading
        import webbrowser

        threading.Timer(1.0, webbrowser.open, args=(f"{address}/dashboard/",)).start()
    uvicorn.run(
        create_app(url, stale_hours=stale_hours, body_cache=body_cache),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
    )


@app.command("monitor")
def monitor(
    clans: Annotated[
        list[str] | None,
        typer.Option("--clan", help="Clan tag (repeatable); default COC_CLAN_TAGS, else all."),
    ] = None,
    write_gx: Annotated[
        bool,
        typer.Option("--write-gx", help="(Re)write the GX context in gx/ from the code first."),
    ] = False,
) -> None:
    """Run the anomaly monitor (GX checkpoint) by hand and update ops.alerts."""
    from clash_pipeline.monitor.context import gx_dir, write_context
    from clash_pipeline.monitor.run import run_monitor

    settings = load_settings()
    tags = [normalize_tag(t, kind="clan tag") for t in clans] if clans else None
    url = _database(settings)
    t0 = time.perf_counter()
    if write_gx:
        with out.status("writing the Great Expectations context"):
            write_context(gx_dir(settings.clash_gx_dir, settings.home), url)
        out.print(f"wrote the GX context in {gx_dir(settings.clash_gx_dir, settings.home)}")
    with out.status("running the monitor checkpoint"):
        report = run_monitor(url, settings, tags)
    table = Table(title=f"monitor: {len(report.clans)} clan(s), {report.seconds:.1f} s")
    for col in ("clan", "check", "result", "alert", "detail"):
        table.add_column(col)
    changes = {(c.clan_tag, c.check_name): c for c in report.changes}
    for f in report.findings:
        change = changes.get((f.clan_tag, f.check_name))
        alert = f"#{change.alert_id} {change.change.replace('_', ' ')}" if change else ""
        result = "[green]pass[/green]" if f.passed else f"[red]{f.severity}[/red]"
        table.add_row(f.clan_tag, f.check_name, result, alert, f.summary)
    out.print(table)
    for name, message in report.errors.items():
        err.print(f"[red]error:[/red] check {name} could not run: {message}", highlight=False)
    if report.data_docs:
        out.print(f"Data Docs: {report.data_docs}")
    out.print(f"monitor run took {time.perf_counter() - t0:.1f} s (GX {report.gx_seconds:.1f} s)")
    if report.errors:
        err.print("hint: see the GX context in gx/ (`clash-pipeline monitor --write-gx`)")
        raise typer.Exit(1)


@app.command("alerts")
def alerts(
    all_alerts: Annotated[
        bool, typer.Option("--all", help="Resolved alerts too, not only open ones.")
    ] = False,
) -> None:
    """List open alerts (ops.alerts), newest first."""
    from clash_pipeline.monitor.alerts import list_alerts
    from clash_pipeline.warehouse.connect import connect

    settings = load_settings()
    url = _database(settings)
    with connect(url, autocommit=True) as conn:
        rows = list_alerts(conn, include_resolved=all_alerts)
    if not rows:
        out.print("no open alerts" if not all_alerts else "no alerts")
        return
    table = Table(title=f"{'alerts' if all_alerts else 'open alerts'}: {len(rows)}")
    table.add_column("id", justify="right")
    table.add_column("clan", no_wrap=True)
    table.add_column("check", no_wrap=True)
    table.add_column("severity")
    if all_alerts:
        table.add_column("status")
    table.add_column("seen", justify="right")
    table.add_column("first / last seen (UTC)")
    if all_alerts:
        table.add_column("resolved")
    table.add_column("summary", ratio=3, overflow="fold")
    for r in rows:
        seen = f"{r['first_seen_at']:%m-%d %H:%M} / {r['last_seen_at']:%m-%d %H:%M}"
        resolved = f"{r['resolved_at']:%m-%d %H:%M}" if r["resolved_at"] else ""
        table.add_row(
            str(r["alert_id"]),
            r["clan_tag"] or "",
            r["check_name"],
            r["severity"],
            *([r["status"]] if all_alerts else []),
            f"{r['occurrences']}x",
            seen,
            *([resolved] if all_alerts else []),
            r["summary"],
        )
    out.print(table)


@app.command("version")
def version() -> None:
    """Print the pipeline version and the warehouse schema version."""
    from clash_pipeline.versions import ingestion_version, schema_version

    out.print(f"clash-pipeline {ingestion_version()} (schema {schema_version()})")


def main() -> None:
    try:
        app()
    except ClashPipelineError as exc:
        err.print(f"[red]error:[/red] {exc.message}", highlight=False)
        if exc.hint:
            err.print(f"hint: {exc.hint}", highlight=False)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
