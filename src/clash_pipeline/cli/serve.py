"""``clash-pipeline serve``: the deployments of prefect.yaml, served from this machine."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from clash_pipeline.cli import common
from clash_pipeline.cli.output import err, out
from clash_pipeline.errors import ClashPipelineError
from clash_pipeline.settings import Settings, load_settings

if TYPE_CHECKING:
    from clash_pipeline.orchestration.deployments import DeploymentSpec

__all__ = ["serve"]

#: How long a local Prefect server may take to answer its health check.
SERVER_START_SECONDS = 180


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
    common.use_prefect(settings, verbose=True, local_server=False)  # its own server below
    specs = load_deployment_specs(crons={INGEST_FLOW: ingest_cron, MONITOR_FLOW: monitor_cron})
    _print_deployments(specs)
    if check:
        return
    if not settings.coc_clan_tags:
        err.print(
            "[yellow]warning[/yellow] COC_CLAN_TAGS is empty: scheduled ingest runs will fail",
            highlight=False,
        )
    common.prepare_database(settings)
    with _prefect_server(settings, port) as api_url:
        from prefect import serve as prefect_serve

        out.print(f"serving; Prefect UI at {api_url.removesuffix('/api')} (Ctrl-C stops)")
        prefect_serve(*(spec.to_deployment() for spec in specs))


def _print_deployments(specs: list[DeploymentSpec]) -> None:
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


@contextlib.contextmanager
def _prefect_server(settings: Settings, port: int) -> Iterator[str]:
    """PREFECT_API_URL, or a local ``prefect server start`` for as long as the block runs."""
    existing = os.environ.get("PREFECT_API_URL")
    if existing:
        yield existing
        return
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from clash_pipeline.orchestration.runtime import child_preexec

    api_url = f"http://127.0.0.1:{port}/api"
    log_path = settings.home / "prefect" / "server.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    prefect_cli = Path(sys.executable).with_name("prefect")
    command = [str(prefect_cli), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    with open(log_path, "ab") as log_file:
        server = subprocess.Popen(  # noqa: S603 - our own prefect, fixed arguments
            command,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            preexec_fn=child_preexec,  # noqa: PLW1509 - dies with this command, even on kill -9
            start_new_session=True,  # Ctrl-C reaches serve, which stops the server
        )
    try:
        with err.status(f"starting a local Prefect server on 127.0.0.1:{port}"):
            _wait_until_healthy(server, api_url, log_path, port)
        with temporary_settings(updates={PREFECT_API_URL: api_url}):
            os.environ["PREFECT_API_URL"] = api_url  # for the flow-run subprocesses
            yield api_url
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


def _wait_until_healthy(
    server: subprocess.Popen[bytes], api_url: str, log_path: Path, port: int
) -> None:
    """Poll the server's health check; a clear error if it exits or never answers."""
    import httpx

    deadline = time.monotonic() + SERVER_START_SECONDS
    while True:
        if server.poll() is not None:
            raise ClashPipelineError(
                f"the local Prefect server stopped (exit {server.returncode})",
                hint=f"see {log_path}; is port {port} free? (--port)",
            )
        try:
            if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise ClashPipelineError(
                f"the local Prefect server did not start within {SERVER_START_SECONDS} s",
                hint=f"see {log_path}",
            )
        time.sleep(1)
