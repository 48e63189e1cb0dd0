"""Fetch one or many clans and land each as its own run (``clash-pipeline fetch``).

Every clan is one run: its own ``ops.ingest_runs`` row, its own landing
transaction. All clans of one call share one HTTP client and one key pool (each
key paced by its own rate limiter), so many clans together never exceed the
allowed request rate of any key; with shared pacing
(COC_SHARED_PACING, :mod:`clash_pipeline.clash_api.shared_pacing`) neither do
many processes using the same key.

No clan is fetched by two processes at once: each clan's run holds the clan's
advisory lock (:class:`~clash_pipeline.warehouse.locks.ClanLockSession`, one
session for all the clans of the call); a clan another process holds is not
waited for but skipped, as a ``skipped`` run (:data:`BUSY_MESSAGE`).
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from clash_pipeline import shutdown
from clash_pipeline.clash_api.client import ClashClient, RetryPolicy
from clash_pipeline.clash_api.keys import KeyPool
from clash_pipeline.clash_api.ratelimit import RateLimiter
from clash_pipeline.clash_api.shared_pacing import shared_limiter_factory
from clash_pipeline.errors import ClashPipelineError
from clash_pipeline.ingest.bundle import ClanBundle
from clash_pipeline.ingest.land import LandResult
from clash_pipeline.ingest.plan import PlanPolicy
from clash_pipeline.ingest.run import failed_requests, fetch_clan, land_clan, no_snapshot_error
from clash_pipeline.settings import Settings
from clash_pipeline.versions import schema_version
from clash_pipeline.warehouse.leases import close_abandoned_runs
from clash_pipeline.warehouse.locks import ClanLockSession
from clash_pipeline.warehouse.runs import RunRecorder, error_payload, utc_now
from clash_pipeline.warehouse.sessions import reuse_sessions

#: Why a clan was skipped: another process holds its lock (it is fetching it).
BUSY_MESSAGE = "being fetched by another process"


@dataclass
class ApiTarget:
    """Where requests go: the real API (or a proxy), or a simulator; ``tokens``: the whole key
    pool when there are several (``token`` is then one of them)."""

    base_url: str
    token: str = field(repr=False)
    source: str = "api"  # 'api' | 'simulator'
    clock: Callable[[], datetime] = utc_now
    tokens: tuple[str, ...] = field(default=(), repr=False)

    def pool_tokens(self) -> list[str]:
        """Every key's token, ``token`` included (first unless ``tokens`` orders it)."""
        tokens = list(self.tokens) or [self.token]
        return tokens if self.token in tokens or not self.token else [self.token, *tokens]


@dataclass
class FetchOutcome:
    """How one clan's run went, for the command's table and its exit code."""

    clan_tag: str
    run_id: uuid.UUID
    status: str
    land: LandResult | None = None
    error: dict[str, Any] | None = None
    failed_requests: list[dict[str, Any]] = field(default_factory=list)
    members: int = 0
    dropped_requests: int = 0
    dropped_players: int = 0
    #: Requests the planner skipped, by endpoint (clash_pipeline.ingest.plan).
    skipped: dict[str, int] = field(default_factory=dict)

    def note_fetched(self, bundle: ClanBundle) -> None:
        self.failed_requests = failed_requests(bundle)
        self.members = bundle.members
        self.dropped_requests = len(bundle.dropped)
        self.dropped_players = bundle.dropped_players
        self.skipped = dict(bundle.skipped)


def build_client(settings: Settings, target: ApiTarget, keys: KeyPool) -> ClashClient:
    return ClashClient(
        base_url=target.base_url,
        keys=keys,
        timeout=settings.coc_timeout_seconds,
        retry=RetryPolicy(max_retries=settings.coc_max_retries),
        clock=target.clock,
        keep_records=False,  # each clan's bundle keeps its own; the client serves them all
    )


@dataclass(frozen=True)
class _Call:
    """What every clan's run of one :func:`fetch_clans` call shares."""

    target: ApiTarget
    trigger: str
    version: str
    full: bool
    policy: PlanPolicy


async def _fetch_locked(
    locks: ClanLockSession, client: ClashClient, db_url: str, clan_tag: str, call: _Call
) -> FetchOutcome:
    """One clan's run under the clan's lock, or a ``skipped`` run if another process has it."""
    recorder = RunRecorder(
        db_url=db_url,
        kind="fetch",
        clan_tags=[clan_tag],
        schema_version=call.version,
        trigger=call.trigger,
    )
    if not await asyncio.to_thread(locks.try_lock, clan_tag):
        return await asyncio.to_thread(_skipped, recorder)
    try:
        return await _fetch_one(client, db_url, recorder, call)
    finally:
        await asyncio.to_thread(locks.unlock, clan_tag)


def _skipped(recorder: RunRecorder) -> FetchOutcome:
    """The ``skipped`` run of a clan another process is fetching (it is not waited for)."""
    error = {"type": "ClanBusy", "phase": "lock", "message": BUSY_MESSAGE}
    recorder.start(status="skipped")
    recorder.finish("skipped", error=error)
    return FetchOutcome(
        clan_tag=recorder.clan_tags[0], run_id=recorder.run_id, status="skipped", error=error
    )


async def _fetch_one(
    client: ClashClient,
    db_url: str,
    recorder: RunRecorder,
    call: _Call,
) -> FetchOutcome:
    """One clan's run: open it, fetch, land, close it with its counters or its error."""
    clan_tag = recorder.clan_tags[0]
    await asyncio.to_thread(recorder.start)
    outcome = FetchOutcome(clan_tag=clan_tag, run_id=recorder.run_id, status="running")
    try:
        bundle = await fetch_clan(
            lambda: nullcontext(client), db_url, recorder, full=call.full, policy=call.policy
        )
    except ClashPipelineError as exc:
        return await _failed(outcome, recorder, exc, snapshot_at=None)
    except BaseException as exc:
        _stopped(recorder, exc, "fetch")
        raise
    outcome.note_fetched(bundle)
    try:
        result = await asyncio.to_thread(
            land_clan, db_url, recorder, bundle, source=call.target.source
        )
    except (psycopg.Error, ClashPipelineError) as exc:
        return await _failed(outcome, recorder, exc, snapshot_at=bundle.snapshot_at)
    except BaseException as exc:
        _stopped(recorder, exc, "land")
        raise
    outcome.land = result
    lost = no_snapshot_error(result)  # the clan body was quarantined: kept, but no snapshot
    if lost is not None:
        return await _failed(outcome, recorder, lost, snapshot_at=bundle.snapshot_at)
    # landed without what was dropped after the retries, or quarantined at the door: partial
    outcome.status = "partial" if bundle.dropped or result.quarantined else "succeeded"
    summary: dict[str, Any] = {}
    if bundle.dropped:
        summary["dropped_requests"] = len(bundle.dropped)
        summary["dropped_players"] = bundle.dropped_players
    if result.quarantined:
        summary["quarantined"] = result.quarantined
    await asyncio.to_thread(
        functools.partial(
            recorder.finish,
            outcome.status,
            snapshot_at=bundle.snapshot_at,
            error={"failed_requests": outcome.failed_requests} if bundle.failed else None,
            counters=result.counters(),
            summary=summary or None,
        )
    )
    return outcome


async def _failed(
    outcome: FetchOutcome,
    recorder: RunRecorder,
    exc: Exception,
    *,
    snapshot_at: datetime | None,
) -> FetchOutcome:
    outcome.status, outcome.error = "failed", error_payload(exc)
    counters = await asyncio.to_thread(recorder.logged_counters)
    await asyncio.to_thread(
        functools.partial(
            recorder.finish,
            "failed",
            snapshot_at=snapshot_at,
            error=outcome.error,
            counters=counters,
        )
    )
    return outcome


def _stopped(recorder: RunRecorder, exc: BaseException, phase: str) -> None:
    """A signal stopped the fetch: the run is ``cancelled``, with what it sent so far."""
    stop = shutdown.stop_request(exc)
    if stop is None:
        return
    try:  # synchronous: the task is being cancelled
        recorder.finish(
            "cancelled",
            error=error_payload(stop, phase=phase) | {"signal": stop.signal_name},
            counters=recorder.logged_counters(),
        )
    except (psycopg.Error, ClashPipelineError):
        pass  # the next run closes it as abandoned


async def fetch_clans(
    settings: Settings,
    db_url: str,
    clan_tags: list[str],
    target: ApiTarget,
    *,
    trigger: str = "cli",
    limiter: RateLimiter | None = None,
    keys: KeyPool | None = None,
    full: bool = False,
) -> list[FetchOutcome]:
    """Fetch and land every clan concurrently under one key pool (each key paced with every
    process using it when COC_SHARED_PACING is on); a clan another process is fetching
    is skipped. Each clan's requests are planned from what changed since its previous runs
    (:mod:`clash_pipeline.ingest.plan`); ``full`` fetches everything.

    ``keys`` defaults to the target's tokens paced by the settings; ``limiter`` paces a
    single token instead (benchmarks and tests that watch one limiter).
    """
    call = _Call(target, trigger, schema_version(), full, PlanPolicy.from_settings(settings))
    own_keys = keys is None
    keys = keys or _key_pool(settings, db_url, target, limiter)
    await asyncio.to_thread(close_abandoned_runs, db_url)  # runs of processes that died
    locks = ClanLockSession(db_url)
    # a signal cancels the fetches (each run says cancelled); the clans' runs share sessions
    with shutdown.cancel_scope(), reuse_sessions(db_url):
        try:
            async with build_client(settings, target, keys) as client:
                in_flight = asyncio.Semaphore(settings.coc_clans_in_flight)

                async def one(tag: str) -> FetchOutcome:
                    async with in_flight:  # a bounded number of bundles in memory
                        return await _fetch_locked(locks, client, db_url, tag, call)

                return list(await asyncio.gather(*(one(tag) for tag in clan_tags)))
        except asyncio.CancelledError:
            stop = shutdown.cancelled()
            if stop is None:
                raise
            raise stop from None
        finally:
            locks.close()  # synchronous: the fetches may be being cancelled
            if own_keys:
                await keys.aclose()


def _key_pool(
    settings: Settings, db_url: str, target: ApiTarget, limiter: RateLimiter | None
) -> KeyPool:
    tokens = target.pool_tokens()
    if limiter is None:
        factory = shared_limiter_factory(db_url, settings)
        return KeyPool.from_settings(settings, tokens, limiter_factory=factory)
    if len(tokens) != 1:
        raise ValueError("a limiter paces a single token: pass keys= for a pool of several")
    return KeyPool.of_one(tokens[0], limiter)
