"""``clash-pipeline simulate-api``: the simulated Clash API as a server of its own."""

from __future__ import annotations

from typing import Annotated

import typer

from clash_pipeline.clash_api.tags import normalize_tag
from clash_pipeline.cli import common

__all__ = ["simulate_api"]


def simulate_api(  # noqa: PLR0913, PLR0917 - one typer option per parameter
    host: Annotated[str, typer.Option(help="Interface to listen on (loopback).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0 picks a free one).")] = 8765,
    seed: Annotated[int, typer.Option(help="Seed of the simulated world.")] = 0,
    token: Annotated[
        list[str] | None,
        typer.Option(
            help="Bearer token the server accepts (repeat it for a key pool; default sim-token).",
            envvar="SIM_API_TOKEN",
        ),
    ] = None,
    start_time: Annotated[
        str | None, typer.Option(help="Simulated start time, ISO 8601 UTC.")
    ] = None,
    frozen: Annotated[
        bool, typer.Option(help="Freeze the clock (advance it with POST /_sim/clock).")
    ] = False,
    invalid_ip_token: Annotated[
        list[str] | None,
        typer.Option(help="A token answered 403 accessDenied.invalidIp (repeatable)."),
    ] = None,
    missing_clan: Annotated[
        list[str] | None, typer.Option(help="A clan tag to answer with notFound.")
    ] = None,
    activity: Annotated[
        float | None,
        typer.Option(
            min=0.001,
            max=1.0,
            envvar="SIM_ACTIVITY_PER_HOUR",
            help="Chance that a member plays in a given hour, so changes between polls "
            "(1: everyone changes every hour). [default: 0.12, about 3 sessions a day]",
        ),
    ] = None,
) -> None:
    """Run the simulated Clash API on its own; point COC_API_BASE_URL at it.

    Each token has its own rate limit when one is set (POST /_sim/faults
    ``{"rate_limit_per_second": 10}``); GET /_sim/state counts requests per token fingerprint.
    """
    from clash_pipeline.simulator.faults import FaultConfig
    from clash_pipeline.simulator.server import DEFAULT_TOKEN, serve_forever
    from clash_pipeline.simulator.world import DEFAULT_ACTIVITY_PER_HOUR

    tokens = token or [DEFAULT_TOKEN]
    start = common.parse_time(start_time) if start_time else None
    missing = [normalize_tag(t, kind="clan tag") for t in missing_clan or []]
    serve_forever(
        host=host,
        port=port,
        seed=seed,
        token=tokens[0],
        start_time=start,
        frozen_clock=frozen,
        missing_clans=missing,
        faults=FaultConfig(
            accepted_tokens=set(tokens[1:]), invalid_ip_tokens=set(invalid_ip_token or [])
        ),
        activity_per_hour=DEFAULT_ACTIVITY_PER_HOUR if activity is None else activity,
    )
