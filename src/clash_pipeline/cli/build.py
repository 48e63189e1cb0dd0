"""``clash-pipeline build``: dbt build, with a table of what each node did.

:func:`run_build` is also how ``backfill`` rebuilds the marts after loading. Like a
pipeline run, it builds under the warehouse lock inside a restore point and publishes
the build to ``marts`` when every node passed; a failed build is rolled back and readers
keep the previous one (:mod:`clash_pipeline.transform.publish`). Like a pipeline run
too, a data test that fails for some clans only holds their new runs back and
publishes the others (:mod:`clash_pipeline.transform.isolation`); ``--release`` and
``--drop-held`` decide what becomes of held runs.
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
    from clash_pipeline.transform.isolation import HeldRun, IsolatedBuild
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
    release: Annotated[
        list[str] | None,
        typer.Option(
            "--release",
            help="Build the runs of this clan held back after a failing data test "
            "(repeatable; implies --full-refresh).",
        ),
    ] = None,
    drop_held: Annotated[
        list[str] | None,
        typer.Option(
            "--drop-held",
            help="Leave the held runs of this clan out of the marts for good, without a "
            "build (repeatable).",
        ),
    ] = None,
) -> None:
    """Run dbt build (models, seeds, snapshots, tests) against the configured database.

    A data test that fails for some clans holds their new runs back (ops.held_runs)
    and publishes the others; the exit status is then 1.
    """
    settings = load_settings()
    url = common.prepare_access(settings).transform
    if release or drop_held:
        released = _decide_held(url, release or [], drop_held or [])
        if not (released or full_refresh or select):
            return  # dropped runs were out of the marts already: nothing to build
        full_refresh = full_refresh or released > 0  # held runs are older than the marts
    if not run_build(url, settings.home, full_refresh=full_refresh, select=select):
        raise typer.Exit(1)


def _decide_held(url: str, release: list[str], drop: list[str]) -> int:
    """Release or drop the clans' held runs; how many were released."""
    from clash_pipeline.clash_api.tags import normalize_tag
    from clash_pipeline.transform import isolation

    counts = {}
    for decision, tags in (("released", release), ("dropped", drop)):
        clans = [normalize_tag(t, kind="clan tag") for t in tags]
        if not clans:
            continue
        runs = isolation.decide(url, clans, decision)
        counts[decision] = len(runs)
        for clan in clans:
            n = sum(r.clan_tag == clan for r in runs)
            out.print(f"{clan}: {n} held run(s) {decision}", highlight=False)
    return counts.get("released", 0)


def run_build(
    url: str,
    home: Path,
    *,
    full_refresh: bool = False,
    select: list[str] | None = None,
    vars: Mapping[str, Any] | None = None,
) -> bool:
    """dbt build with a per-node table; False (failing nodes on stderr) when anything failed.

    The build is isolated per clan (:mod:`clash_pipeline.transform.isolation`):
    when data tests fail for some clans only, their new runs are held back and
    the build runs again without them. What passed is published to ``marts``;
    a build that still fails is rolled back (``marts_build`` as before,
    ``marts`` unchanged). False when anything failed or was held back.
    """
    # dbt's own progress log is replaced by the table below (errors still print)
    args = ["build", "--quiet", *(["--select", *select] if select else [])]
    with out.status("dbt build"):
        built, report = run_published(
            url,
            home,
            args,
            scope="incremental" if select else "full",
            full_refresh=full_refresh,
            vars=vars,
        )
    _print_dbt(built.result)
    if report is None:
        _print_failure(built)
        return False
    out.print(
        f"published to marts in {report.seconds:.2f} s "
        f"({report.rows_inserted} rows written, {report.rows_deleted} replaced)"
    )
    if built.held:
        print_held(built.held)
        return False
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
) -> tuple[IsolatedBuild, PublishReport | None]:
    """dbt ``args`` as a pipeline build: under the warehouse lock, inside a restore point.

    Isolated per clan (:func:`clash_pipeline.transform.isolation.build_isolated`):
    runs of clans whose data fails a test are held back and the build runs again
    without them. Published to ``marts`` when the last build passed (the report),
    else rolled back (None: ``marts_build`` as before, ``marts`` unchanged); a
    stop or crash is rolled back too. ``scope`` ``full`` (no selection) also
    re-syncs every published table with the build. ``clash-pipeline build`` and
    ``clash-pipeline dbt build|run|seed|snapshot`` both write the warehouse this way.
    """
    from clash_pipeline.transform import isolation, restore
    from clash_pipeline.transform.dbt import run_dbt

    with _warehouse_lock(url, on_wait=on_wait):
        built = isolation.build_isolated(
            url,
            open_point=lambda: _open_restore_point(url, home, scope=scope),
            run=lambda point: run_dbt(
                args,
                db_url=restore.build_database_url(url, point.build_id),
                home=home,
                full_refresh=full_refresh,
                vars=vars,
            ),
            manifest=home / "dbt" / "target" / "manifest.json",
            full_refresh=full_refresh,
        )
        if not built.ok:
            return built, None
        return built, restore.publish(url, built.point.build_id)


#: How long a build waits for the warehouse lock (a pipeline run's build) before giving up.
LOCK_WAIT_SECONDS = 600.0


def _print_failure(built: IsolatedBuild) -> None:
    result = built.result
    if not result.failed:
        err.print(f"[red]error:[/red] {result.error_summary}", highlight=False)
        return
    names = ", ".join(f"{n.resource_type} {n.name}" for n in result.failed)
    err.print(f"[red]error:[/red] dbt build failed: {names}", highlight=False)
    for node in result.failed[:10]:
        if node.message:
            err.print(f"  {node.name}: {node.message}", highlight=False)
    if built.data_tests_only and built.not_isolated:
        err.print(f"  not isolated to a clan: {built.not_isolated}", highlight=False)
    err.print("hint: see the dbt log under <home>/dbt/logs", highlight=False)


def print_held(held: list[HeldRun]) -> None:
    """The runs held back: their marts stay as they were; what the operator does."""
    clans: dict[str, list[HeldRun]] = {}
    for run in held:
        clans.setdefault(run.clan_tag, []).append(run)
    for clan, runs in clans.items():
        tests = sorted({name for run in runs for name in run.test_names})
        err.print(
            f"[yellow]held[/yellow] {clan}: {len(runs)} run(s) held back, its marts are as "
            f"they were; data test(s) failed: {', '.join(tests)}",
            highlight=False,
        )
    err.print(
        "hint: see ops.held_runs (tests, sample rows); fix, then clash-pipeline build "
        "--release CLAN, or --drop-held CLAN to leave them out",
        highlight=False,
    )


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
