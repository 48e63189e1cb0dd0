"""``clash-pipeline run``: one pipeline run (the ``clash-ingest`` Prefect flow) by hand."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, cast

import typer
from pydantic import SecretStr
from rich.table import Table

from clash_pipeline.cli import common
from clash_pipeline.cli.output import err, out
from clash_pipeline.errors import ConfigError
from clash_pipeline.settings import Settings, load_settings

if TYPE_CHECKING:
    from clash_pipeline.orchestration.model import ClanRun, IngestReport
    from clash_pipeline.orchestration.options import ApiSpec

__all__ = ["run"]

ON_BUSY = ("wait", "skip")
OnBusy = Literal["wait", "skip"]


def run(  # noqa: PLR0913, PLR0917 - a typer command: one parameter per option
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
    full: common.FullOption = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show Prefect's and dbt's own log lines.")
    ] = False,
    dbt_project: Annotated[Path | None, typer.Option(hidden=True)] = None,
) -> None:
    """One pipeline run: fetch and land each clan, build the marts (dbt, once), check.

    Requests are planned from what changed since each clan's last run, --full
    fetches everything (README "Change-driven polling"). Every clan is one run in
    ops.ingest_runs with a checkpoint per phase in ops.ingest_logs. A failed phase
    leaves the marts as they were; the next run catches up. Exits 1 when a clan's
    run failed.
    """
    from clash_pipeline.orchestration.options import PipelineOptions

    settings = load_settings()
    tags = common.clan_tags(settings, clan)
    if on_busy not in ON_BUSY:
        raise ConfigError(
            f"--on-busy must be one of {', '.join(ON_BUSY)}", hint="e.g. --on-busy skip"
        )
    if not simulate:
        _require_token(settings)
    common.prepare_database(settings)
    common.use_prefect(settings, verbose=verbose)
    options = PipelineOptions(
        trigger="cli",
        on_busy=cast(OnBusy, on_busy),
        lock_timeout_seconds=lock_timeout,
        transform_mode="build" if tests else "run",
        full=full,
        dbt_verbose=verbose,
        dbt_project_dir=str(dbt_project) if dbt_project else None,
    )
    with _api(simulate=simulate, seed=seed) as api:
        with err.status(f"pipeline run for {len(tags)} clan(s): fetch, land, transform, monitor"):
            report = common.run_ingest_flow(tags, api, options)
    _print_report(report)
    if report.failed:
        raise typer.Exit(1)


@contextlib.contextmanager
def _api(*, simulate: bool, seed: int) -> Iterator[ApiSpec | None]:
    """``None`` (the API of the settings), or a simulated API for as long as the block runs."""
    if not simulate:
        yield None
        return
    from clash_pipeline.orchestration.options import ApiSpec
    from clash_pipeline.simulator.server import SimulatedClashApi

    token = secrets.token_urlsafe(24)
    with SimulatedClashApi(seed=seed, token=token, frozen_clock=False) as sim:
        yield ApiSpec(
            base_url=sim.base_url, token=SecretStr(token), source="simulator", clock="simulator"
        )


def _require_token(settings: Settings) -> None:
    if settings.api_tokens() or os.environ.get("PREFECT_API_URL"):
        return  # with a Prefect server, the keys may be in its Secret blocks
    raise ConfigError(
        "COC_API_TOKEN is not set",
        hint="create a key at https://developer.clashofclans.com and set COC_API_TOKEN "
        "(or several in COC_API_TOKENS, or keep them in a Prefect Secret block "
        "'coc-api-tokens' on your Prefect server), or add --simulate to use the simulated API",
    )


def _print_report(report: IngestReport) -> None:
    """A row per clan run, the dbt build, then each failed or skipped clan on stderr.

    With a failed or skipped clan, one line says what happened to each clan's marts.
    """
    from clash_pipeline.orchestration.phases.report import marts_summary

    table = Table(title=f"pipeline run ({report.wall_seconds:.1f} s)")
    table.add_column("clan", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("requests", justify="right")
    table.add_column("profiles (changed)", justify="right")
    table.add_column("fetch / land / dbt / check", justify="right")
    for clan_run in report.runs:
        table.add_row(*_run_row(clan_run))
    out.print(table)
    if report.build:
        out.print(
            f"dbt: {report.build.scope} build in {report.build.seconds:.1f} s "
            f"({', '.join(f'{n} {s}' for s, n in sorted(report.build.nodes.items()))})"
        )
    from clash_pipeline.ingest.plan import skipped_message

    for clan_run in report.runs:
        skipped = skipped_message(clan_run.skipped, clan_run.requests)
        if skipped and clan_run.landed:
            out.print(f"{clan_run.clan_tag}: {skipped}", highlight=False, soft_wrap=True)
    for clan_run in report.runs:
        _print_run_problem(clan_run)
    if report.failed or report.skipped:
        err.print(f"marts: {marts_summary(report)}", highlight=False)
    if report.failed:
        err.print(
            "hint: the next run of a failed clan catches up. "
            "Details: ops.ingest_runs.error and ops.ingest_logs of the run ids in the "
            "Prefect artifact 'clash-ingest-summary'",
            highlight=False,
        )


def _run_row(clan_run: ClanRun) -> tuple[str, str, str, str, str]:
    style = {"failed": "red", "skipped": "yellow", "partial": "yellow", "held": "yellow"}.get(
        clan_run.status
    )
    seconds = " / ".join(
        f"{clan_run.phase_ms[p] / 1000:.1f}" if p in clan_run.phase_ms else "-"
        for p in ("fetch", "land", "transform", "monitor")
    )
    changed = "" if clan_run.rows_changed is None else f" ({clan_run.rows_changed})"
    failed = f", {clan_run.failed_requests} failed" if clan_run.failed_requests else ""
    return (
        clan_run.clan_tag,
        f"[{style}]{clan_run.status}[/{style}]" if style else clan_run.status,
        f"{clan_run.requests}{failed}",
        f"{clan_run.members}{changed}",
        f"{seconds} s",
    )


def _print_run_problem(clan_run: ClanRun) -> None:
    from clash_pipeline.ingest.run import dropped_message, quarantined_message

    error = clan_run.error or {}
    if clan_run.status == "failed":
        err.print(
            f"[red]error[/red] {clan_run.clan_tag}: {error.get('phase', '?')} failed: "
            f"{error.get('message')}",
            highlight=False,
        )
        if error.get("hint"):
            err.print(f"hint: {error['hint']}", highlight=False)
    elif clan_run.status == "skipped":
        err.print(f"[yellow]skipped[/yellow] {clan_run.clan_tag}: {error.get('message')}")
    dropped = dropped_message(
        clan_run.dropped_requests, clan_run.dropped_players, clan_run.failed_request_list
    )
    if dropped and clan_run.status != "skipped":
        label = "partial" if clan_run.status == "partial" else "dropped"
        err.print(f"[yellow]{label}[/yellow] {clan_run.clan_tag}: {dropped}", highlight=False)
        err.print(
            "hint: the API throttled or failed past the retries; the next run fetches them "
            "again. If it keeps happening, lower COC_REQUESTS_PER_SECOND or make sure no "
            "other program uses the same token",
            highlight=False,
        )
    quarantined = quarantined_message(clan_run.quarantined)
    if quarantined:
        err.print(
            f"[yellow]quarantined[/yellow] {clan_run.clan_tag}: {quarantined}", highlight=False
        )
