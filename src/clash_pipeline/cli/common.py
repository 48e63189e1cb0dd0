"""What several commands share: the clans to work on, a ready database, Prefect.

Commands call these through the module (``common.prepare_database(settings)``),
so that a test can replace one of them in one place.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from clash_pipeline import shutdown
from clash_pipeline.clash_api.tags import normalize_tag
from clash_pipeline.cli.output import err
from clash_pipeline.errors import ClashPipelineError, ConfigError
from clash_pipeline.settings import Settings

if TYPE_CHECKING:
    from prefect.client.schemas.objects import State

    from clash_pipeline.orchestration.model import IngestReport
    from clash_pipeline.orchestration.options import ApiSpec, PipelineOptions
    from clash_pipeline.warehouse.access import DatabaseAccess

__all__ = [
    "FullOption",
    "clan_tags",
    "parse_time",
    "prepare_access",
    "prepare_database",
    "run_ingest_flow",
    "use_prefect",
]


#: ``--full`` of ``run`` and ``fetch``: no change-driven planning (README "Change-driven polling").
FullOption = Annotated[
    bool,
    typer.Option(
        "--full",
        help="Fetch everything: every member's profile and every war endpoint, "
        "not only what changed since the last run.",
    ),
]


def clan_tags(settings: Settings, given: list[str] | None) -> list[str]:
    """The ``--clan`` tags, else COC_CLAN_TAGS; normalised, deduplicated, never empty."""
    tags = [normalize_tag(t, kind="clan tag") for t in given] if given else settings.coc_clan_tags
    if not tags:
        raise ConfigError(
            "no clan to fetch: COC_CLAN_TAGS is empty and no --clan was given",
            hint="pass --clan '#TAG' or set COC_CLAN_TAGS=#TAG1,#TAG2",
        )
    return list(dict.fromkeys(tags))


def prepare_database(settings: Settings) -> str:
    """The owner's URL, the embedded server started if needed, migrations applied."""
    return prepare_access(settings).owner


def prepare_access(settings: Settings) -> DatabaseAccess:
    """Every job's URL, the embedded server started if needed, migrations applied (as
    the owner); warns once when DATABASE_URL's user is a superuser."""
    from clash_pipeline.warehouse.access import resolve_access, warn_if_superuser
    from clash_pipeline.warehouse.connect import connect
    from clash_pipeline.warehouse.migrations import migrate

    if settings.uses_embedded_database:
        err.print(f"[dim]embedded PostgreSQL in {settings.home / 'pgdata'}[/dim]")
    access = resolve_access(settings)
    with connect(access.owner, autocommit=True) as conn:
        result = migrate(conn)
        if not settings.uses_embedded_database:
            warn_if_superuser(conn, access.owner)
    if result.applied:
        err.print(f"[dim]applied migrations: {', '.join(result.applied)}[/dim]")
    return access


def parse_time(value: str) -> datetime:
    """An ISO 8601 time given on the command line; UTC when it names no zone."""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"invalid time {value!r}", hint="use ISO 8601, e.g. 2026-11-02T08:00:00Z"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def use_prefect(settings: Settings, *, verbose: bool, local_server: bool = True) -> None:
    """Prefect's local, offline, quiet environment (before Prefect is imported).

    With no Prefect API configured and ``local_server``, a temporary Prefect
    server is started for this command (it stops with it, even on ``kill -9``).
    """
    from clash_pipeline.orchestration.runtime import configure_prefect, start_local_server

    configure_prefect(settings.home, quiet=not verbose)
    if local_server and not _prefect_api_configured():
        with err.status("starting a temporary Prefect server"):
            start_local_server(Path(os.environ["PREFECT_HOME"]))


def _prefect_api_configured() -> bool:
    if os.environ.get("PREFECT_API_URL"):
        return True
    if "prefect.settings" not in sys.modules:
        return False  # not imported yet: nothing but the environment can name a server
    from prefect.settings import get_current_settings

    return bool(get_current_settings().api.url)  # e.g. a test harness


def run_ingest_flow(tags: list[str], api: ApiSpec | None, options: PipelineOptions) -> IngestReport:
    """One ``clash-ingest`` flow run; its report, also when clan runs failed."""
    from clash_pipeline.orchestration.flows import ingest
    from clash_pipeline.orchestration.model import IngestReport, RunsFailedError
    from clash_pipeline.orchestration.runtime import quiet_console_tracebacks

    quiet_console_tracebacks()
    # Prefect types an async flow's call as an Awaitable; it is a coroutine.
    flow_run = cast(
        "Coroutine[Any, Any, State[Any]]",
        ingest(clan_tags=tags, api=api, options=options, return_state=True),
    )
    state = asyncio.run(flow_run)
    result = state.result(raise_on_failure=False)
    if state.is_cancelled():
        raise _cancelled(result if isinstance(result, IngestReport) else None)
    if isinstance(result, RunsFailedError):
        return result.report
    if isinstance(result, IngestReport):
        return result
    if isinstance(result, BaseException):
        raise result
    raise ClashPipelineError(
        f"the ingest flow ended {state.type.value.lower()}: {state.message}",
        hint="see the Prefect log lines above",
    )


def _cancelled(report: IngestReport | None) -> shutdown.Cancelled:
    """The flow run stopped on a signal (or was cancelled in Prefect): what it left."""
    signum = shutdown.requested() or signal.SIGTERM
    if report is None:
        return shutdown.Cancelled(signum, detail="no clan run was started")
    marts = (
        "the build was published before the stop"
        if report.build is not None
        else "the marts are as they were before the run"
    )
    return shutdown.Cancelled(
        signum,
        detail=f"{len(report.cancelled)} clan run(s) recorded as cancelled in "
        f"ops.ingest_runs; {marts}; the next run catches up",
    )


def sim_activity() -> float:
    """The simulated members' chance to play in an hour: ``SIM_ACTIVITY_PER_HOUR`` or the
    simulator's default (see README "The simulated Clash API")."""
    from clash_pipeline.simulator.world import DEFAULT_ACTIVITY_PER_HOUR

    raw = os.environ.get("SIM_ACTIVITY_PER_HOUR", "").strip()
    if not raw:
        return DEFAULT_ACTIVITY_PER_HOUR
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value <= 1:
        raise ConfigError(
            f"invalid SIM_ACTIVITY_PER_HOUR {raw!r}",
            hint="a chance per hour in (0, 1], e.g. 0.12; unset it for the default",
        )
    return value
