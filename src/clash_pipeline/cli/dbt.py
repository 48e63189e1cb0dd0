"""``clash-pipeline dbt ARGS...``: dbt with the project's profile and the pipeline's database.

The arguments go to dbt as they are (``clash-pipeline dbt debug``, ``... dbt test
--select members``, ``... dbt docs generate``); dbt runs in-process, with the
profile the pipeline writes to ``<home>/dbt/profiles.yml``, as the login the
pipeline's transform uses, and prints its own output. The exit status is dbt's:
0 when everything passed, 1 when a node failed, 2 when dbt could not run.

The commands that write the warehouse (:data:`WRITING_COMMANDS`) run the way a
pipeline build does (:func:`clash_pipeline.cli.build.run_published`): under the
warehouse lock (waiting while a pipeline run builds), inside a restore point,
published to ``marts`` when every node passed and rolled back otherwise. A plain
``dbt build`` from a shell cannot do that (dbt closes the connection of its
on-run-start hook before the first model runs, so no session lock lasts), and
the project's on-run-start hook refuses it (``macros/warehouse_guard.sql``).

SIGTERM or SIGINT stops dbt: its queries are cancelled, its sessions ended, a
build rolled back; exit status 143 or 130.
"""

from __future__ import annotations

from pathlib import Path

import typer

from clash_pipeline.cli import build, common
from clash_pipeline.cli.output import err, out
from clash_pipeline.errors import ConfigError
from clash_pipeline.settings import load_settings

__all__ = ["WRITING_COMMANDS", "dbt", "dbt_command"]

#: dbt commands that change the warehouse: run like a pipeline build.
WRITING_COMMANDS = frozenset({"build", "run", "seed", "snapshot", "clone", "retry"})
#: Options that narrow a build to part of the project (then it is not a full build).
_SELECTION_OPTIONS = ("--select", "-s", "--models", "-m", "--exclude", "--selector")
#: dbt's exit status when it could not run at all (bad arguments, unparsable project).
_DBT_ERROR_EXIT = 2


def dbt(ctx: typer.Context) -> None:
    """dbt ARGS on the pipeline's database; build, run, seed, snapshot publish to marts."""
    args = list(ctx.args)
    command = dbt_command(args)
    if not args:
        raise ConfigError(
            "no dbt command given",
            hint="e.g. clash-pipeline dbt debug, clash-pipeline dbt build --select members",
        )
    if command is None:  # --help, --version: dbt answers without a database
        from dbt.cli.main import dbtRunner

        raise typer.Exit(0 if dbtRunner().invoke(args).success else 1)
    settings = load_settings()
    url = common.prepare_access(settings).transform
    from clash_pipeline.transform.dbt import DbtError

    try:
        if command in WRITING_COMMANDS:
            code = _run_published(url, settings.home, args, command)
        else:
            code = _run_plain(url, settings.home, args)
    except DbtError as exc:
        exc.exit_code = _DBT_ERROR_EXIT
        raise
    raise typer.Exit(code)


def dbt_command(args: list[str]) -> str | None:
    """The dbt sub-command of a command line: its first word that is not an option."""
    return next((a for a in args if not a.startswith("-")), None)


def _run_plain(url: str, home: Path, args: list[str]) -> int:
    from clash_pipeline.transform.dbt import run_dbt

    return 0 if run_dbt(args, db_url=url, home=home).success else 1


def _run_published(url: str, home: Path, args: list[str], command: str) -> int:
    def waiting(_elapsed: float) -> None:
        err.print(
            "a pipeline run is building the warehouse (it holds the warehouse lock); "
            f"waiting for it, up to {build.LOCK_WAIT_SECONDS:.0f} s",
            highlight=False,
            soft_wrap=True,
        )

    selects = any(a.split("=", 1)[0] in _SELECTION_OPTIONS for a in args)
    scope = "full" if command == "build" and not selects else "incremental"
    built, report = build.run_published(url, home, args, scope=scope, on_wait=waiting)
    result = built.result
    if built.held:
        build.print_held(built.held)
    if report is None:
        err.print(
            f"[red]error:[/red] dbt {command} failed: rolled back, the marts are as before",
            highlight=False,
            soft_wrap=True,
        )
        err.print(
            "hint: see dbt's output above (its log: <home>/dbt/logs)",
            highlight=False,
            soft_wrap=True,
        )
        return 1
    out.print(
        f"published to marts in {report.seconds:.2f} s ({report.rows_inserted} rows "
        f"written, {report.rows_deleted} replaced); {len(result.nodes)} node(s) ran"
    )
    return 1 if built.held else 0
