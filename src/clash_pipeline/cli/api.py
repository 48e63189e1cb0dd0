"""``clash-pipeline api``: the read-only roster API and the dashboard, with uvicorn."""

from __future__ import annotations

from typing import Annotated

import typer

from clash_pipeline.cli.output import err
from clash_pipeline.errors import ConfigError
from clash_pipeline.settings import load_settings

__all__ = ["api"]


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
    from clash_pipeline.serving.protocol import uvicorn_options
    from clash_pipeline.warehouse.access import resolve_access

    if not 0 < port < 65536:
        raise ConfigError(f"invalid --port {port}", hint="pick a port between 1 and 65535")
    if stale_hours <= 0:
        raise ConfigError("--stale-hours must be positive", hint="e.g. --stale-hours 25")
    settings = load_settings()
    access = resolve_access(settings)
    if not access.readonly_is_login:
        err.print(
            "[yellow]warning:[/yellow] API_DATABASE_URL is not set: the API connects as "
            "DATABASE_URL's user and switches to clash_readonly, which a bug could undo "
            "(RESET ROLE); set API_DATABASE_URL to a read-only login (README 'Least privilege')",
            highlight=False,
        )
    url = access.readonly
    _probe(url)
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
        **uvicorn_options(),
    )


def _probe(url: str) -> None:
    """A clear error now (no database, no marts) rather than on the first request."""
    from clash_pipeline.serving.queries import Warehouse

    probe = Warehouse(url, max_size=1)
    try:
        probe.open()
    finally:
        probe.close()
