"""Fetch one or many clans and land each as its own run (``clash-pipeline fetch``).

Every clan is one run: its own ``ops.ingest_runs`` row, its own landing
transaction. All clans of one call share one HTTP client and one rate limiter,
so many clans together never exceed the allowed request rate.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import psycopg

from clash_pipeline.clash_api.client import ClashClient, RetryPolicy
from clash_pipeline.clash_api.ratelimit import RateLimiter
from clash_pipeline.errors import ClashPipelineError
from clash_pipeline.ingest.land import (
    ClanBundle,
    LandResult,
    failed_records_json,
    fetch_clan_bundle,
    land_bundle,
)
from clash_pipeline.settings import Settings
from clash_pipeline.versions import schema_version
from clash_pipeline.warehouse.connect import connect
from clash_pipeline.warehouse.runs import RunRecorder, error_payload, utc_now


@dataclass
class ApiTarget:
    """Where requests go: the real API (or a proxy), or a simulator."""

    base_url: str
    token: str = field(repr=False)
    source: str = "api"  # 'api' | 'simulator'
    clock: Callable[[], datetime] = utc_now


@dataclass
class FetchOutcome:
    clan_tag: str
    run_id: uuid.UUID
    status: str
    land: LandResult | None = None
    error: dict | None = None
    failed_requests: list[dict] = field(default_factory=list)
    members: int = 0


def known_ended_cwl_wars(conn: psycopg.Connection, clan_tag: str) -> set[str]:
    """War tags of CWL wars already landed in state ``warEnded`` for this clan.

    The clan's CWL fetches are found through fetch_log's index first, and each
    distinct body is then read by its key: a plain join lets the planner scan
    (and de-TOAST) every payload in raw, which grows with the whole history.
    """
    rows = conn.execute(
        """
        with cwl as materialized (
            select distinct resource_tag, payload_hash
            from raw.fetch_log
            where endpoint = 'cwl_war' and clan_tag = %s and payload_hash is not null
        )
        select distinct cwl.resource_tag
        from cwl
        where (
            select p.body ->> 'state' from raw.payloads as p
            where p.payload_hash = cwl.payload_hash
        ) = 'warEnded'
        """,
        (clan_tag,),
    ).fetchall()
    return {r[0] for r in rows}


def build_client(settings: Settings, target: ApiTarget, limiter: RateLimiter) -> ClashClient:
    return ClashClient(
        base_url=target.base_url,
        token=target.token,
        limiter=limiter,
        timeout=settings.coc_timeout_seconds,
        retry=RetryPolicy(max_retries=settings.coc_max_retries),
        clock=target.clock,
    )


async def _fetch_one(
    client: ClashClient,
    db_url: str,
    clan_tag: str,
    target: ApiTarget,
    *,
    trigger: str,
    version: str,
) -> FetchOutcome:
    ops_conn = await asyncio.to_thread(connect, db_url, autocommit=True)
    data_conn = await asyncio.to_thread(connect, db_url)
    try:
        recorder = RunRecorder(
            ops_conn, kind="fetch", clan_tags=[clan_tag], schema_version=version, trigger=trigger
        )
        await asyncio.to_thread(recorder.start)
        outcome = FetchOutcome(clan_tag=clan_tag, run_id=recorder.run_id, status="running")

        phase_start = utc_now()
        try:
            ended = await asyncio.to_thread(known_ended_cwl_wars, data_conn, clan_tag)
            data_conn.commit()
            bundle: ClanBundle = await fetch_clan_bundle(
                client, clan_tag, known_ended_cwl_wars=ended
            )
        except ClashPipelineError as exc:
            outcome.status, outcome.error = "failed", error_payload(exc)
            recorder.checkpoint(
                phase="fetch",
                status="failed",
                started_at=phase_start,
                clan_tag=clan_tag,
                error=outcome.error,
            )
            recorder.finish("failed", error=outcome.error)
            return outcome
        failed = [r for r in bundle.records if r.status != 200]
        outcome.failed_requests = failed_records_json(failed).obj["failed"]
        outcome.members = sum(1 for r in bundle.records if r.endpoint == "player")
        recorder.checkpoint(
            phase="fetch",
            status="succeeded",
            started_at=phase_start,
            clan_tag=clan_tag,
            rows_in=len(bundle.records),
            requests=len(bundle.records),
            retries=sum(r.retries for r in bundle.records),
            throttled=sum(r.throttled for r in bundle.records),
            details={"failed_requests": len(failed)},
        )

        phase_start = utc_now()
        try:
            result = await asyncio.to_thread(
                land_bundle,
                data_conn,
                bundle,
                run_id=recorder.run_id,
                source=target.source,
                started_at=recorder.started_at,
            )
        except (psycopg.Error, ClashPipelineError) as exc:
            outcome.status, outcome.error = "failed", error_payload(exc)
            recorder.checkpoint(
                phase="land",
                status="failed",
                started_at=phase_start,
                clan_tag=clan_tag,
                error=outcome.error,
            )
            recorder.finish("failed", snapshot_at=bundle.snapshot_at, error=outcome.error)
            return outcome
        outcome.land = result
        outcome.status = "succeeded"
        recorder.checkpoint(
            phase="land",
            status="succeeded",
            started_at=phase_start,
            clan_tag=clan_tag,
            rows_in=result.requests,
            rows_written=result.requests + result.payloads_new,
            rows_changed=result.payloads_new,
            db_time_ms=result.db_time_ms,
            details={"bytes_new": result.bytes_new, "bytes_received": result.bytes_received},
        )
        recorder.finish(
            "succeeded",
            snapshot_at=bundle.snapshot_at,
            error={"failed_requests": outcome.failed_requests} if failed else None,
            counters={
                "requests": result.requests,
                "failed_requests": result.failed_requests,
                "retries": result.retries,
                "throttled": result.throttled,
                "bytes_received": result.bytes_received,
                "payloads_new": result.payloads_new,
                "bytes_stored": result.bytes_new,
            },
        )
        return outcome
    finally:
        ops_conn.close()
        data_conn.close()


async def fetch_clans(
    settings: Settings,
    db_url: str,
    clan_tags: list[str],
    target: ApiTarget,
    *,
    trigger: str = "cli",
    limiter: RateLimiter | None = None,
) -> list[FetchOutcome]:
    """Fetch and land every clan concurrently under one shared rate limit."""
    limiter = limiter or RateLimiter(settings.coc_requests_per_second, settings.coc_max_concurrency)
    version = schema_version()
    async with build_client(settings, target, limiter) as client:
        return list(
            await asyncio.gather(
                *(
                    _fetch_one(client, db_url, tag, target, trigger=trigger, version=version)
                    for tag in clan_tags
                )
            )
        )
