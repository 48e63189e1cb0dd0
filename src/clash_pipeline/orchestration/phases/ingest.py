"""Fetch and land one clan: :mod:`clash_pipeline.ingest.run`, given the batch's context.

The work and its checkpoint rows are those of ``clash-pipeline fetch``; a flow
task adds what Prefect needs: a client of its own per attempt (tasks get plain
values, never a live client), the simulator's clock, and the attempt number and
retries that decide between ``retrying`` and ``failed``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

import httpx

from clash_pipeline.clash_api.client import ClashClient, RetryPolicy
from clash_pipeline.clash_api.keys import KeyPool, LimiterFactory
from clash_pipeline.ingest import run as clan_run
from clash_pipeline.ingest.bundle import ClanBundle
from clash_pipeline.ingest.land import LandResult
from clash_pipeline.orchestration.model import ClanRun, RunContext
from clash_pipeline.orchestration.options import ApiSpec
from clash_pipeline.orchestration.phases.common import log
from clash_pipeline.warehouse.runs import utc_now


def key_pool(ctx: RunContext, limiter_factory: LimiterFactory | None = None) -> KeyPool:
    """The batch's keys, each paced at the run's rate (one pool shared by every clan)."""
    return KeyPool(
        ctx.api.pool_tokens(),
        limiter_factory=limiter_factory,
        requests_per_second=ctx.requests_per_second,
        max_concurrency=ctx.max_concurrency,
        pacing=ctx.pacing,
    )


async def fetch(ctx: RunContext, run: ClanRun, keys: KeyPool, *, attempt: int = 1) -> ClanBundle:
    """Everything about one clan from the API (one HTTP client, the batch's key pool)."""
    return await clan_run.fetch_clan(
        lambda: _api_client(ctx, keys),
        ctx.db_url,
        ctx.recorder(run),
        attempt=attempt,
        retries=ctx.options.fetch_retries,
        log=log(),
        full=ctx.options.full,
        policy=ctx.plan_policy,
    )


@asynccontextmanager
async def _api_client(ctx: RunContext, keys: KeyPool) -> AsyncIterator[ClashClient]:
    client = ClashClient(
        base_url=ctx.api.base_url,
        keys=keys,
        timeout=ctx.request_timeout,
        retry=RetryPolicy(max_retries=ctx.request_retries),
        clock=await _api_clock(ctx.api),
        keep_records=False,  # the bundle keeps the clan's records
    )
    async with client:
        yield client


async def _api_clock(api: ApiSpec) -> Callable[[], datetime]:
    """The clock of fetch times: UTC now, or the simulator's clock."""
    if api.clock == "system":
        return utc_now
    origin = api.base_url.removesuffix("/").removesuffix("/v1")
    # the simulator is plain HTTP on loopback: no CA bundle to load (~40 ms a client)
    async with httpx.AsyncClient(timeout=10, verify=origin.startswith("https")) as http:
        state = (await http.get(f"{origin}/_sim/state")).raise_for_status().json()
    now = datetime.fromisoformat(str(state["now"]).replace("Z", "+00:00"))
    if state.get("frozen_clock"):
        return lambda: now
    started = time.monotonic()
    return lambda: now + timedelta(seconds=time.monotonic() - started)


def land(ctx: RunContext, run: ClanRun, bundle: ClanBundle, *, attempt: int = 1) -> LandResult:
    """Land one clan's bundle in ``raw`` in one transaction (idempotent across attempts)."""
    return clan_run.land_clan(
        ctx.db_url,
        ctx.recorder(run),
        bundle,
        source=ctx.api.source,
        attempt=attempt,
        retries=ctx.options.land_retries,
        log=log(),
    )


def note_fetched(run: ClanRun, bundle: ClanBundle, seconds: float) -> None:
    run.snapshot_at = bundle.snapshot_at
    run.members = bundle.members
    run.failed_request_list = clan_run.failed_requests(bundle)
    run.dropped_requests = len(bundle.dropped)
    run.dropped_players = bundle.dropped_players
    run.skipped = dict(bundle.skipped)
    run.phase_ms["fetch"] = round(seconds * 1000)


def note_landed(run: ClanRun, result: LandResult, seconds: float) -> None:
    """The run's landing counters; a quarantined clan body without a roster fails the run."""
    run.landed = True
    run.quarantined = result.quarantined
    lost = clan_run.no_snapshot_error(result)
    if lost is not None:  # kept in raw, but no snapshot: not built, other clans go on
        run.fail("land", lost)
    run.requests = result.requests
    run.failed_requests = result.failed_requests
    run.retries = result.retries
    run.throttled = result.throttled
    run.bytes_received = result.bytes_received
    run.payloads_new = result.payloads_new
    run.bytes_stored = result.bytes_new
    run.phase_ms["land"] = round(seconds * 1000)
