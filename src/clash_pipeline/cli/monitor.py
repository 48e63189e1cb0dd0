"""``clash-pipeline monitor`` and ``alerts``: the anomaly checks by hand, and what they raised."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from clash_pipeline.clash_api.tags import normalize_tag
from clash_pipeline.cli import common
from clash_pipeline.cli.output import err, out
from clash_pipeline.settings import load_settings

if TYPE_CHECKING:
    from clash_pipeline.monitor.run import MonitorReport

__all__ = ["alerts", "monitor"]


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
    url = common.prepare_access(settings).ingest
    t0 = time.perf_counter()
    if write_gx:
        with out.status("writing the Great Expectations context"):
            write_context(gx_dir(settings.clash_gx_dir, settings.home), url)
        out.print(f"wrote the GX context in {gx_dir(settings.clash_gx_dir, settings.home)}")
    with out.status("running the monitor checkpoint"):
        report = run_monitor(url, settings, tags)
    _print_monitor_report(report)
    out.print(f"monitor run took {time.perf_counter() - t0:.1f} s (GX {report.gx_seconds:.1f} s)")
    if report.errors:
        err.print("hint: see the GX context in gx/ (`clash-pipeline monitor --write-gx`)")
        raise typer.Exit(1)


def _print_monitor_report(report: MonitorReport) -> None:
    """A row per finding with the alert it opened or resolved; checks that could not run."""
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


def alerts(
    all_alerts: Annotated[
        bool, typer.Option("--all", help="Resolved alerts too, not only open ones.")
    ] = False,
) -> None:
    """List open alerts (ops.alerts), newest first."""
    from clash_pipeline.monitor.alerts import list_alerts
    from clash_pipeline.warehouse.connect import connect

    settings = load_settings()
    url = common.prepare_access(settings).readonly
    with connect(url, autocommit=True) as conn:
        rows = list_alerts(conn, include_resolved=all_alerts)
    if not rows:
        out.print("no open alerts" if not all_alerts else "no alerts")
        return
    out.print(_alerts_table(rows, all_alerts=all_alerts))


def _alerts_table(rows: list[dict[str, Any]], *, all_alerts: bool) -> Table:
    """Status and resolution time only with ``--all`` (open alerts have neither)."""
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
    return table
