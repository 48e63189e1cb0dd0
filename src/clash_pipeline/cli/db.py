"""``clash-pipeline db ...``: the embedded PostgreSQL, or the database of DATABASE_URL."""

from __future__ import annotations

import shlex
from typing import Annotated

import typer

from clash_pipeline.cli import common
from clash_pipeline.cli.output import out
from clash_pipeline.errors import ConfigError
from clash_pipeline.settings import Settings, load_settings

__all__ = ["app"]

app = typer.Typer(help="The database: embedded PostgreSQL or DATABASE_URL.", no_args_is_help=True)


@app.command("start")
def db_start() -> None:
    """Start the embedded PostgreSQL (no-op if running) and apply migrations."""
    settings = load_settings()
    url = common.prepare_database(settings)
    from clash_pipeline.warehouse.connect import redact_url

    out.print(f"database ready: {redact_url(url)}")


@app.command("stop")
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


@app.command("status")
def db_status() -> None:
    """Show where the database is and whether it is running, its logins, applied migrations."""
    settings = load_settings()
    if settings.uses_embedded_database:
        url = _print_embedded_status(settings)
    else:
        out.print("mode: DATABASE_URL")
        url = settings.database_url
        _print_url_logins(settings)
    if url:
        _print_migrations(url)


def _print_url_logins(settings: Settings) -> None:
    """Which login each job uses with DATABASE_URL (never a password)."""
    from clash_pipeline.warehouse.access import LOGINS
    from clash_pipeline.warehouse.connect import redact_url

    own = {
        "owner": settings.database_url,
        "ingest": settings.ingest_database_url,
        "transform": settings.transform_database_url,
        "readonly": settings.api_database_url,
    }
    variables = {"ingest": "INGEST", "transform": "TRANSFORM", "readonly": "API"}
    for job, role in LOGINS.items():
        url = own[job]
        if job == "owner":
            out.print(f"login owner: DATABASE_URL's user (migrations)  {redact_url(url or '')}")
        elif url:
            out.print(f"login {job}: {variables[job]}_DATABASE_URL  {redact_url(url)}")
        else:
            out.print(f"login {job}: DATABASE_URL's user, set role {role}")


def _print_embedded_status(settings: Settings) -> str | None:
    """Print the embedded server's state; its URL when it is running."""
    from clash_pipeline.warehouse.embedded import EmbeddedPostgres

    status = EmbeddedPostgres(settings.home).status()
    out.print(f"mode: embedded ({status.data_dir})")
    out.print(f"initialized: {status.initialized}  running: {status.running}")
    if not status.running:
        return None
    out.print(f"pid: {status.pid}  port: {status.port}  server: {status.server_version}")
    from clash_pipeline.warehouse.access import JOB_DESCRIPTIONS
    from clash_pipeline.warehouse.embedded import SUPERUSER

    for job, role in status.logins.items():
        out.print(f"login {job}: {role} ({JOB_DESCRIPTIONS[job]})")
    out.print(f"bootstrap superuser: {SUPERUSER} (initdb, creating the logins; no job uses it)")
    if not status.logins:
        return status.url
    from clash_pipeline.warehouse.access import resolve_access

    return resolve_access(settings, start=False).owner


def _print_migrations(url: str) -> None:
    from clash_pipeline.warehouse.connect import connect, redact_url
    from clash_pipeline.warehouse.migrations import applied_migrations

    out.print(f"url: {redact_url(url)}")
    with connect(url) as conn:
        try:
            rows = applied_migrations(conn)
        except Exception:  # noqa: BLE001 - a database without our bookkeeping yet
            rows = []
    out.print(
        f"migrations applied: {len(rows)}" + (f" (latest {rows[-1]['version']})" if rows else "")
    )


@app.command("url")
def db_url(
    login: Annotated[
        str,
        typer.Option(
            "--login",
            help="Whose URL: owner (migrations, the default), ingest, transform, readonly.",
        ),
    ] = "owner",
) -> None:
    """Print a URL for psql, dbt and BI tools (starts the embedded server if needed)."""
    settings = load_settings()
    from clash_pipeline.warehouse.access import LOGINS, resolve_access

    if login not in LOGINS:
        raise ConfigError(f"invalid --login {login!r}", hint=f"one of: {', '.join(LOGINS)}")
    print(resolve_access(settings).url(login))


SHELLS = ("sh", "fish")


@app.command("env")
def db_env(
    login: Annotated[
        str,
        typer.Option(
            "--login",
            help="Whose login: transform (dbt's, the default), readonly, ingest, owner.",
        ),
    ] = "transform",
    shell: Annotated[
        str, typer.Option("--shell", help="sh (bash, zsh: the default) or fish.")
    ] = "sh",
) -> None:
    """Print exports for plain dbt and psql: eval "$(uv run clash-pipeline db env)"."""
    settings = load_settings()
    from clash_pipeline.warehouse.access import LOGINS, resolve_access

    if login not in LOGINS:
        raise ConfigError(f"invalid --login {login!r}", hint=f"one of: {', '.join(LOGINS)}")
    if shell not in SHELLS:
        raise ConfigError(f"invalid --shell {shell!r}", hint=f"one of: {', '.join(SHELLS)}")
    from clash_pipeline.transform.dbt import analyst_env

    env = analyst_env(resolve_access(settings).url(login), settings.home)
    # unsets first: a shell that already has them shows the exports last
    lines = sorted(env.items(), key=lambda item: item[1] is not None)
    print("\n".join(export_line(name, value, shell) for name, value in lines))


def export_line(name: str, value: str | None, shell: str = "sh") -> str:
    """``export NAME='value'`` (sh) or ``set -gx NAME 'value'`` (fish), quoted for the
    shell; ``unset NAME`` (``set -e NAME``) when ``value`` is None."""
    if value is None:
        return f"set -e {name}" if shell == "fish" else f"unset {name}"
    if shell == "fish":
        quoted = "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
        return f"set -gx {name} {quoted}"
    return f"export {name}={shlex.quote(value)}"


@app.command("migrate")
def db_migrate() -> None:
    """Apply pending migrations from supabase/migrations (applying twice is a no-op)."""
    settings = load_settings()
    from clash_pipeline.warehouse.connect import resolve_database_url
    from clash_pipeline.warehouse.migrations import migrate

    result = migrate(resolve_database_url(settings))  # as the owner
    for version in result.applied:
        out.print(f"applied {version}")
    out.print(f"{len(result.applied)} applied, {len(result.already_applied)} already applied")
