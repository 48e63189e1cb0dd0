"""The ``clash-pipeline`` command line: one module per command (group).

This module is its table of contents: it builds the Typer app from the
commands in the order ``--help`` lists them. Command bodies parse their
options, call the library and print; what several share is in
:mod:`~clash_pipeline.cli.common` and :mod:`~clash_pipeline.cli.output`.

Expected failures (bad tag, missing token, unreachable database, bad file) end
with ``error: ...`` and ``hint: ...`` on stderr and a non-zero exit code, never
with a stack trace; so does a stop by SIGTERM or SIGINT (exit 143 or 130).
"""

from __future__ import annotations

import gc
import sys

import typer

from clash_pipeline import shutdown
from clash_pipeline.cli import (
    api,
    backfill,
    build,
    db,
    dbt,
    demo,
    fetch,
    monitor,
    run,
    serve,
    simulate,
    version,
)
from clash_pipeline.cli.output import err
from clash_pipeline.errors import ClashPipelineError

__all__ = ["app", "main"]

app = typer.Typer(
    name="clash-pipeline",
    help="Clash of Clans clan data pipeline: fetch, land, transform, serve.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("simulate-api")(simulate.simulate_api)
app.command("fetch")(fetch.fetch)
app.command("backfill")(backfill.backfill)
app.command("build")(build.build)
# every argument (options and --help included) goes to dbt
app.command(
    "dbt",
    add_help_option=False,
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)(dbt.dbt)
app.command("run")(run.run)
app.command("demo")(demo.demo)
app.command("serve")(serve.serve)
app.command("api")(api.api)
app.command("monitor")(monitor.monitor)
app.command("alerts")(monitor.alerts)
app.command("version")(version.version)
app.add_typer(db.app, name="db")


def main() -> None:
    """The console script: run the app, expected failures as one ``error:`` line.

    SIGTERM and SIGINT stop any command cleanly (:mod:`clash_pipeline.shutdown`):
    one ``cancelled by SIG...`` line, exit status 143 or 130.
    """
    with shutdown.install():
        try:
            app()
        except ClashPipelineError as exc:
            err.print(f"[red]error:[/red] {exc.message}", highlight=False)
            if exc.hint:
                err.print(f"hint: {exc.hint}", highlight=False)
            sys.exit(exc.exit_code)
        except shutdown.Cancelled as exc:
            err.print(f"[yellow]{exc.message}[/yellow]", highlight=False, soft_wrap=True)
            # Exit promptly: the final garbage collection of dbt's and Prefect's objects
            # can take seconds; the exit handlers (Prefect's server) still run.
            gc.freeze()
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            err.print("interrupted")
            sys.exit(130)
