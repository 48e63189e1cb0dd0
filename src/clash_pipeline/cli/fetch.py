"""``clash-pipeline fetch``: fetch and land clans without Prefect or dbt (one run per clan)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from clash_pipeline.cli import common
from clash_pipeline.cli.output import err, human_bytes, out
from clash_pipeline.errors import ConfigError
from clash_pipeline.settings import Settings, load_settings

if TYPE_CHECKING:
    from clash_pipeline.ingest.fetch import FetchOutcome

__all__ = ["fetch"]


def fetch(
    clan: Annotated[
        list[str] | None, typer.Option("--clan", "-c", help="Clan tag (repeatable).")
    ] = None,
    simulate: Annotated[
        bool, typer.Option(help="Fetch from an in-process simulated API instead.")
    ] = False,
    seed: Annotated[int, typer.Option(help="Simulator seed (with --simulate).")] = 0,
    full: common.FullOption = False,
) -> None:
    """Fetch clans from the Clash API and land the responses in raw (one run per clan).

    Requests are planned from what changed since the clan's last run (README
    "Change-driven polling"); --full fetches everything.
    """
    settings = load_settings()
    tags = common.clan_tags(settings, clan)
    if not simulate and not settings.api_tokens():
        raise ConfigError(
            "COC_API_TOKEN is not set",
            hint="create a key at https://developer.clashofclans.com and set COC_API_TOKEN "
            "(or several in COC_API_TOKENS), or add --simulate to use the simulated API",
        )
    url = common.prepare_access(settings).ingest
    if simulate:
        from clash_pipeline.simulator.server import SimulatedClashApi

        token = secrets.token_urlsafe(24)
        with SimulatedClashApi(seed=seed, token=token, frozen_clock=False) as sim:
            outcomes = _fetch_clans(
                settings, url, tags, sim.base_url, [token], "simulator", sim.clock.now, full=full
            )
    else:
        outcomes = _fetch_clans(
            settings,
            url,
            tags,
            settings.coc_api_base_url,
            settings.api_tokens(),
            "api",
            None,
            full=full,
        )
    _print_outcomes(outcomes)
    # skipped: another process is fetching the clan right now, which is not a failure
    if any(o.status not in ("succeeded", "partial", "skipped") for o in outcomes):
        raise typer.Exit(1)


def _fetch_clans(
    settings: Settings,
    url: str,
    tags: list[str],
    base_url: str,
    tokens: list[str],
    source: str,
    clock: Callable[[], datetime] | None,
    *,
    full: bool,
) -> list[FetchOutcome]:
    from clash_pipeline.ingest.fetch import ApiTarget, fetch_clans
    from clash_pipeline.warehouse.runs import utc_now

    target = ApiTarget(
        base_url=base_url,
        token=tokens[0],
        source=source,
        clock=clock or utc_now,
        tokens=tuple(tokens),
    )
    return asyncio.run(fetch_clans(settings, url, tags, target, full=full))


def _print_outcomes(outcomes: list[FetchOutcome]) -> None:
    table = Table(title="fetch runs")
    for col in ("clan", "status", "requests", "failed", "new payloads", "stored", "received"):
        table.add_column(col)
    for o in outcomes:
        land = o.land
        table.add_row(
            o.clan_tag,
            _status(o),
            str(land.requests) if land else "-",
            str(land.failed_requests) if land else "-",
            str(land.payloads_new) if land else "-",
            human_bytes(land.bytes_new) if land else "-",
            human_bytes(land.bytes_received) if land else "-",
        )
    out.print(table)
    from clash_pipeline.ingest.plan import skipped_message

    for o in outcomes:
        skipped = skipped_message(o.skipped, o.land.requests) if o.land else None
        if skipped:
            out.print(f"{o.clan_tag}: {skipped}", highlight=False, soft_wrap=True)
    for o in outcomes:
        _print_problems(o)


def _status(outcome: FetchOutcome) -> str:
    """``skipped: being fetched by another process``, or the run's status."""
    if outcome.status == "skipped" and outcome.error:
        return f"skipped: {outcome.error.get('message')}"
    return outcome.status


def _print_problems(outcome: FetchOutcome) -> None:
    """The run's error with its hint, and its first failed requests."""
    if outcome.status == "skipped":
        return  # the table says why
    if outcome.error:
        err.print(f"[red]error[/red] {outcome.clan_tag}: {outcome.error.get('message')}")
        if outcome.error.get("hint"):
            err.print(f"hint: {outcome.error['hint']}")
    for f in outcome.failed_requests[:5]:
        err.print(
            f"[yellow]warning[/yellow] {outcome.clan_tag}: {f['endpoint']} {f['tag'] or ''} "
            f"-> {f['status'] or f['error']} {f['reason'] or ''}"
        )
    from clash_pipeline.ingest.run import dropped_message, quarantined_message

    dropped = dropped_message(
        outcome.dropped_requests, outcome.dropped_players, outcome.failed_requests
    )
    if dropped:
        err.print(f"[yellow]partial[/yellow] {outcome.clan_tag}: {dropped}", highlight=False)
    quarantined = quarantined_message(outcome.land.quarantined if outcome.land else [])
    if quarantined:
        err.print(
            f"[yellow]quarantined[/yellow] {outcome.clan_tag}: {quarantined}", highlight=False
        )
