"""``clash-pipeline backfill``: load saved API responses into raw, then build the marts."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from clash_pipeline.cli import common
from clash_pipeline.cli.build import run_build
from clash_pipeline.cli.output import err, out
from clash_pipeline.settings import load_settings

if TYPE_CHECKING:
    from clash_pipeline.ingest.backfill import BackfillResult

__all__ = ["backfill"]


def backfill(
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
    <home>/quarantine/<time>/ with reasons.json. Responses of endpoints the
    pipeline does not store (rankings, locations, labels, gold pass, league
    seasons, battle log, league history) are listed as "not stored" and left
    in place. Exit status: 0 when nothing was quarantined (files not stored do
    not count), 1 when any file was quarantined or the build failed.
    """
    from clash_pipeline.ingest.backfill import load_plan, plan_backfill, warehouse_clans

    settings = load_settings()
    when = common.parse_time(fetched_at) if fetched_at else None
    # the warehouse is only opened once the files are read (a bad PATH or manifest stops first)
    warehouse = functools.cache(lambda: common.prepare_access(settings))
    plan = plan_backfill(
        path,
        fetched_at=when,
        manifest=manifest,
        known_clans=lambda: warehouse_clans(warehouse().ingest),
    )
    access = warehouse()
    with out.status("loading files into raw"):
        result = load_plan(access.ingest, plan, quarantine_root=settings.home / "quarantine")
    for warning in result.warnings:
        err.print(f"[yellow]warning[/yellow] {warning}", highlight=False)
    build_failed = False
    if build_marts:
        # Backfilled runs may be older than what the incremental marts hold, which
        # their watermarks would skip: rebuild from raw when anything was loaded.
        build_failed = not run_build(
            access.transform,
            settings.home,
            full_refresh=result.runs_created > 0,
            vars={"staging_test_days": 0},
        )
    _print_backfill(result)
    if result.quarantined:
        _print_quarantine_hint(result, path)
    if result.quarantined or build_failed:
        raise typer.Exit(1)


def _print_backfill(result: BackfillResult) -> None:
    table = Table(title=f"backfill of {result.root}")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("files read", str(result.files_read))
    table.add_row("loaded", str(result.loaded))
    table.add_row("  of which error responses", str(result.errors_loaded))
    table.add_row("skipped (already loaded)", str(result.skipped))
    table.add_row("skipped: not stored", str(len(result.not_stored)))
    table.add_row("quarantined", str(len(result.quarantined)))
    table.add_row("runs created", str(result.runs_created))
    table.add_row("payloads new", str(result.payloads_new))
    out.print(table)
    if result.not_stored:
        skipped = Table(title="not stored by this pipeline (left in place)")
        skipped.add_column("file", overflow="fold")
        skipped.add_column("what it is", overflow="fold")
        for left in result.not_stored:
            skipped.add_row(left.relpath, left.what)
        out.print(skipped)
    if result.quarantined:
        bad = Table(title="quarantined files")
        bad.add_column("file", overflow="fold")
        bad.add_column("reason", overflow="fold")
        for item in result.quarantined:
            bad.add_row(item.relpath, item.reason)
        out.print(bad)


def _print_quarantine_hint(result: BackfillResult, path: Path) -> None:
    """How many files were set aside, where, and how to load them once fixed."""
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
