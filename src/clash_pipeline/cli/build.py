"""``clash-pipeline build``: dbt build, with a table of what each node did.

:func:`run_build` is also how ``backfill`` rebuilds the marts after loading. Like a
pipeline run, it builds under the warehouse lock inside a restore point and publishes
the build to ``marts`` when every node passed; a failed build is rolled back and readers
keep the previous one (:mod:`clash_pipeline.transform.publish`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from clash_pipeline.cli import common
from clash_pipeline.cli.output import err, out
from clash_pipeline.settings import load_settings

if TYPE_CHECKING:
    from clash_pipeline.transform.dbt import DbtResult
    from clash_pipeline.transform.restore import PublishReport, RestorePoint

__all__ = ["build", "run_build", "run_published"]


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
    url = common.prepare_access(settings).transform
    if not run_build(url, settings.home, full_refresh=full_refresh, select=select):
        raise typer.Exit(1)


def run_build(
    url: str,
    home: Path,
    *,
    full_refresh: bool = False,
    select: list[str] | None = None,
    vars: Mapping[str, Any] | None = None,
) -> bool:
    """dbt build with a per-node table; False (failing nodes on stderr) when anything failed.

    The build is published to ``marts`` only when it succeeded; otherwise it is
    rolled back (``marts_build`` as before, ``marts`` unchanged).
    """
    # dbt's own progress log is replaced by the table below (errors still print)
    args = ["build", "--quiet", *(["--select", *select] if select else [])]
    with out.status("dbt build"):
        result, report = run_published(
            url,
            home,
            args,
            scope="incremental" if select else "full",
            full_refresh=full_refresh,
            vars=vars,
        )
    _print_dbt(result)
    if result.failed:
        names = ", ".join(f"{n.resource_type} {n.name}" for n in result.failed)
        err.print(f"[red]error:[/red] dbt build failed: {names}", highlight=False)
        for node in result.failed[:10]:
            if node.message:
                err.print(f"  {node.name}: {node.message}", highlight=False)
        err.print("hint: see the dbt log under <home>/dbt/logs", highlight=False)
        return False
    if not result.success or report is None:
        err.print(f"[red]error:[/red] {result.error_summary}", highlight=False)
        return False
    out.print(
        f"published to marts in {report.seconds:.2f} s "
        f"({report.rows_inserted} rows written, {report.rows_deleted} replaced)"
    )
    return True


def run_published(
    url: str,
    home: Path,
    args: list[str],
    *,
    scope: str,
    full_refresh: bool = False,
    vars: Mapping[str, Any] | None = None,
    on_wait: Callable[[float], None] | None = None,
) -> tuple[DbtResult, PublishReport | None]:
    """dbt ``args`` as a pipeline build: under the warehouse lock, inside a restore point.

    Published to ``marts`` when every node passed (the report), else rolled back
    (None: ``marts_build`` as before, ``marts`` unchanged); a stop or crash is
    rolled back too. ``scope`` ``full`` (no selection) also re-syncs every
    published table with the build. ``clash-pipeline build`` and ``clash-pipeline
    dbt build|run|seed|snapshot`` both write the warehouse this way.
    """
    from clash_pipeline.transform import restore
    from clash_pipeline.transform.dbt import run_dbt

    with _warehouse_lock(url, on_wait=on_wait):
        point = _open_restore_point(url, home, scope=scope)
        try:
            result = run_dbt(
                args,
                db_url=restore.build_database_url(url, point.build_id),
                home=home,
                full_refresh=full_refresh,
                vars=vars,
            )
        except BaseException as exc:
            restore.roll_back(url, point.build_id, error={"type": type(exc).__name__})
            raise
        if result.failed or not result.success:
            restore.roll_back(url, point.build_id, error={"type": "DbtBuildFailed"})
            return result, None
        return result, restore.publish(url, point.build_id)


#: How long a build waits for the warehouse lock (a pipeline run's build) before giving up.
LOCK_WAIT_SECONDS = 600.0


@contextmanager
def _warehouse_lock(url: str, *, on_wait: Callable[[float], None] | None = None) -> Iterator[None]:
    """One build per warehouse at a time (the pipeline's lock), waiting up to 10 minutes."""
    from clash_pipeline.errors import ClashPipelineError
    from clash_pipeline.warehouse.locks import WAREHOUSE_LOCK_KEY, AdvisoryLock

    lock = AdvisoryLock(
        url, WAREHOUSE_LOCK_KEY, name="warehouse", application_name="clash-pipeline build"
    )
    if not lock.acquire(wait=LOCK_WAIT_SECONDS, on_wait=on_wait):
        raise ClashPipelineError(
            f"another dbt build held the warehouse for more than {LOCK_WAIT_SECONDS:.0f} s",
            hint="see ops.transform_builds for the running build, then build again",
        )
    try:
        yield
    finally:
        lock.release()


def _open_restore_point(url: str, home: Path, *, scope: str) -> RestorePoint:
    """Roll back what a stopped build left, then open this build's restore point."""
    from clash_pipeline import project
    from clash_pipeline.transform import restore

    restore.roll_back_abandoned(url)
    return restore.open_restore_point(
        url,
        build_id=uuid.uuid4(),
        scope=scope,
        project_hash=restore.project_fingerprint(project.project_dir()),
        models=restore.dbt_models(home / "dbt" / "target" / "manifest.json"),
    )


def _print_dbt(result: DbtResult) -> None:
    """Every model, seed and snapshot; tests only when they failed, else counted."""
    table = Table(title=f"dbt build ({result.elapsed_seconds:.1f} s)")
    for col in ("node", "type", "status", "time", "rows"):
        table.add_column(col, justify="right" if col in ("time", "rows") else "left")
    tests = [n for n in result.nodes if n.resource_type in ("test", "unit_test")]
    for n in result.nodes:
        if (n in tests or n.resource_type == "operation") and not n.failed:
            continue  # the on-run-start hook (macros/warehouse_guard.sql) too
        rows = "" if n.rows_affected is None else str(n.rows_affected)
        status = f"[red]{n.status}[/red]" if n.failed else n.status
        table.add_row(n.name, n.resource_type, status, f"{n.execution_time:.2f} s", rows)
    out.print(table)
    if tests:
        counts: dict[str, int] = {}
        for n in tests:
            counts[n.status] = counts.get(n.status, 0) + 1
        out.print("tests: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
