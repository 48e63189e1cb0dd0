"""The Prefect flows: ``clash-ingest`` (many clans), ``clash-ingest-clan``, ``clash-monitor``.

One ingest run, for each clan::

    lock clan ─ open run ─ fetch ─ land ─┐
    lock clan ─ open run ─ fetch ─ land ─┼─ transform (dbt once) ─ monitor ─┐
    lock clan ─ open run ─ fetch ─ land ─┘                                  │
                                  publish (or roll back) ─ close runs ─ summary artifact

Fetches of all clans run concurrently under one shared key pool; each clan
lands as soon as its fetch is done. dbt then runs once for the clans that
landed, inside a restore point (:mod:`clash_pipeline.transform.restore`): if dbt or the
monitor fails, every mart is put back as it was and the clans' runs fail with
the error; their responses stay in ``raw`` and the next run catches up.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

from prefect import State, flow, task
from prefect.artifacts import acreate_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect.states import Cancelled, Failed

from clash_pipeline import shutdown
from clash_pipeline.clash_api.keys import ApiKey
from clash_pipeline.clash_api.ratelimit import RateLimiter
from clash_pipeline.clash_api.shared_pacing import SharedRateLimiter
from clash_pipeline.orchestration import tasks
from clash_pipeline.orchestration.model import (
    BuildOutcome,
    ClanRun,
    IngestReport,
    RunContext,
    RunsFailedError,
)
from clash_pipeline.orchestration.options import ApiSpec, PipelineOptions
from clash_pipeline.orchestration.phases import runs as run_rows
from clash_pipeline.orchestration.phases import transform as transform_phase
from clash_pipeline.orchestration.phases.common import log
from clash_pipeline.orchestration.phases.context import resolve_context
from clash_pipeline.orchestration.phases.ingest import key_pool, note_fetched, note_landed
from clash_pipeline.orchestration.phases.locks import ClanLocks, take_warehouse_lock, warehouse_lock
from clash_pipeline.orchestration.phases.monitor import note_health
from clash_pipeline.orchestration.phases.report import report_rows
from clash_pipeline.orchestration.phases.transform import note_built
from clash_pipeline.warehouse.runs import error_payload
from clash_pipeline.warehouse.sessions import reuse_sessions

__all__ = ["ingest", "ingest_clan", "monitor_ingestion"]

SUMMARY_ARTIFACT_KEY = "clash-ingest-summary"


@flow(
    name="clash-ingest",
    description="Fetch clans from the Clash API, land them in raw, build the marts, check.",
    persist_result=False,
)
async def ingest(
    clan_tags: list[str] | None = None,
    api: ApiSpec | None = None,
    options: PipelineOptions | None = None,
    full: bool = False,
) -> IngestReport | State[Any]:
    """One pipeline run for ``clan_tags`` (default: COC_CLAN_TAGS) against ``api``.

    ``full`` (or ``options.full``) fetches everything, not only what changed since
    each clan's last run (:mod:`clash_pipeline.ingest.plan`).

    Returns the :class:`IngestReport`; when a clan's run failed, the flow run
    ends ``Failed`` and carries :class:`RunsFailedError` (with the report).
    SIGTERM or SIGINT (how Prefect cancels a flow run's process) at any phase
    stops it (:mod:`clash_pipeline.shutdown`): an unpublished build is rolled
    back, the clans' runs are recorded ``cancelled`` with their counters, and
    the flow run ends ``Cancelled`` (with the report).
    """
    options = options or PipelineOptions()
    if full and not options.full:
        options = options.model_copy(update={"full": True})
    # SIGTERM/SIGINT (a Prefect cancellation too) stop the run here, whatever its phase
    with shutdown.install(), shutdown.cancel_scope():
        try:
            return await _ingest(clan_tags, api, options)
        except BaseException as exc:
            stop = shutdown.stop_request(exc)
            if stop is None:
                raise
            _uncancel()
            return Cancelled(message=stop.message)


async def _ingest(
    clan_tags: list[str] | None, api: ApiSpec | None, options: PipelineOptions
) -> IngestReport | State[Any]:
    phase = tasks.configured(options)
    clock = _StageClock()
    ctx, tags = await asyncio.to_thread(
        resolve_context, clan_tags, api, options, flow_run_id=_flow_run_id()
    )
    report = IngestReport(batch_id=ctx.batch_id, flow_run_id=ctx.flow_run_id)
    with ClanLocks(ctx.db_url, tags, options) as locks:  # one run per clan
        try:
            await asyncio.to_thread(locks.acquire)
            report.runs = await tasks.open_runs(ctx, tags, locks.busy)
            clock.lap("start")
            report.stage = "fetch"
            await _fetch_and_land(ctx, phase, report.runs)  # per clan, concurrently
            clock.lap("fetch_land")
            await _transform_check_publish(ctx, phase, report, locks, clock)  # dbt once
            report.stage = "close"
            await tasks.close_runs(ctx, report.runs)
            clock.lap("close")
        except BaseException as exc:
            stop = shutdown.stop_request(exc)
            if stop is None:
                raise
            _uncancel()
            _stop_runs(ctx, report, stop)
            return Cancelled(
                message=f"{stop.message}: {len(report.cancelled)} clan run(s) cancelled",
                data=report,
            )
    report.stage_seconds, report.wall_seconds = clock.laps, clock.total
    await _summary_artifact(report)
    return _final_state(report)


def _stop_runs(ctx: RunContext, report: IngestReport, stop: shutdown.Cancelled) -> None:
    """A signal stopped the batch: roll back its unpublished build, record the runs cancelled.

    Synchronous on purpose: the flow's task is being cancelled, nothing more is awaited.
    """
    log().info("%s during %s: stopping the run", stop.message, report.stage)
    build = report.pending_build
    if build is not None:
        try:
            transform_phase.roll_back(ctx, build, error_payload(stop, phase=report.stage))
            report.pending_build = None
        except Exception as exc:  # noqa: BLE001 - the next build rolls it back first
            log().error("could not roll back build %s now: %s", build.build_id, exc)
    for run in report.runs:
        if run.landed:
            run.cancel(report.stage, stop)
        else:
            run.cancel("land" if run.snapshot_at is not None else "fetch", stop)
    try:
        run_rows.close_runs(ctx, report.runs)
    except Exception as exc:  # noqa: BLE001 - the next run closes them as abandoned
        log().error("could not record the cancelled runs: %s", exc)


def _uncancel() -> None:
    """The flow's task was cancelled to stop it; it finishes its own cleanup normally."""
    task = asyncio.current_task()
    while task is not None and task.cancelling():
        task.uncancel()


@flow(
    name="clash-ingest-clan",
    description="One clan through fetch, land, transform and monitor.",
    persist_result=False,
)
async def ingest_clan(
    clan_tag: str,
    api: ApiSpec | None = None,
    options: PipelineOptions | None = None,
    full: bool = False,
) -> IngestReport | State[Any]:
    """The pipeline for one clan (the same phases as ``clash-ingest``)."""
    return await ingest.fn([clan_tag], api, options, full)


@flow(
    name="clash-monitor",
    description="The anomaly monitor on its own schedule: GX checks, alerts, freshness.",
    persist_result=False,
)
async def monitor_ingestion(
    clan_tags: list[str] | None = None, max_age_hours: float | None = None
) -> list[dict[str, Any]] | State[Any]:
    """Every clan (default: COC_CLAN_TAGS, else every clan seen) through the GX checkpoint.

    Notices a stopped ingestion: the freshness check opens an alert for a clan
    with no successful run for ``max_age_hours`` (default
    CLASH_MONITOR_FRESHNESS_HOURS). Fails when a clan is stale or when a check
    could not run; other anomalies are alerts, not failures.
    """
    rows = check_freshness(clan_tags, max_age_hours)
    stale = [r for r in rows if r["stale"]]
    anomalies = anomaly_checks(clan_tags, max_age_hours)
    try:
        await acreate_table_artifact(
            table=rows,
            key="clash-ingest-freshness",
            description=f"Clans without a recent successful run: {len(stale)}; "
            f"failing checks: {', '.join(anomalies['failing']) or 'none'}",
        )
    except Exception as exc:  # noqa: BLE001 - a missing artifact must not hide the result
        log().warning("could not create the freshness artifact: %s", exc)
    if stale or anomalies["errors"]:
        clans = ", ".join(r["clan"] for r in stale)
        message = (
            f"no successful run for {rows[0]['max_age_hours']} h: {clans}"
            if stale
            else f"monitor checks could not run: {anomalies['errors']}"
        )
        log().error(message)
        return Failed(message=message, data=rows)
    return rows


@task(name="anomaly checks", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=[10])
def anomaly_checks(clan_tags: list[str] | None, max_age_hours: float | None) -> dict[str, Any]:
    """The GX checkpoint for every clan and the alert lifecycle (clash_pipeline.monitor)."""
    from clash_pipeline.clash_api.tags import normalize_tag
    from clash_pipeline.monitor.run import run_monitor
    from clash_pipeline.settings import load_settings
    from clash_pipeline.warehouse.access import resolve_access

    settings = load_settings()
    tags = [normalize_tag(t, kind="clan tag") for t in clan_tags or []] or None
    overrides = {"freshness_hours": float(max_age_hours)} if max_age_hours else None
    report = run_monitor(resolve_access(settings).ingest, settings, tags, overrides=overrides)
    for change in report.changes:
        if change.change != "still_open":
            log().warning(
                "alert %s (%s) for clan %s: %s",
                change.change,
                change.check_name,
                change.clan_tag,
                change.summary,
            )
    return report.summary()


@task(name="check freshness", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[5, 30])
def check_freshness(
    clan_tags: list[str] | None, max_age_hours: float | None
) -> list[dict[str, Any]]:
    """Per clan: the last successful run, hours since, and the last run's status."""
    from clash_pipeline.clash_api.tags import normalize_tag
    from clash_pipeline.settings import load_settings
    from clash_pipeline.warehouse.access import resolve_access
    from clash_pipeline.warehouse.connect import connect
    from clash_pipeline.warehouse.leases import close_abandoned_runs

    settings = load_settings()
    max_age_hours = max_age_hours or settings.clash_monitor_freshness_hours
    tags = [normalize_tag(t, kind="clan tag") for t in clan_tags or settings.coc_clan_tags]
    access = resolve_access(settings)
    close_abandoned_runs(access.ingest)  # a dead process's run is failed, not the last "running"
    with connect(access.ingest, autocommit=True) as conn:
        if not tags:
            tags = [
                row[0]
                for row in conn.execute(
                    "select distinct unnest(clan_tags) from ops.ingest_runs where kind = 'ingest'"
                    " order by 1"
                )
            ]
        rows = []
        for tag in tags:
            row = conn.execute(
                """
                select
                    max(finished_at) filter (where status in ('succeeded', 'partial')),
                    extract(epoch from now() - max(finished_at)
                        filter (where status in ('succeeded', 'partial'))) / 3600,
                    (array_agg(status order by started_at desc))[1]
                from ops.ingest_runs
                where kind = 'ingest' and %s = any(clan_tags)
                """,
                (tag,),
            ).fetchone()
            last_ok, hours, last_status = row if row else (None, None, None)
            rows.append(
                {
                    "clan": tag,
                    "last_success_at": last_ok.isoformat() if last_ok else None,
                    "hours_since_success": round(float(hours), 2) if hours is not None else None,
                    "last_status": last_status,
                    "stale": hours is None or float(hours) > max_age_hours,
                    "max_age_hours": max_age_hours,
                }
            )
    return rows


# ----------------------------------------------------------------------------- stages


async def _fetch_and_land(ctx: RunContext, phase: dict[str, Any], runs: list[ClanRun]) -> None:
    """Fetch the clans concurrently, ctx.clans_in_flight at a time (one key pool, each key
    paced with every process using it when ctx.shared_pacing); land each when fetched."""
    keys = key_pool(ctx, limiter_factory=_limiter_factory(ctx))
    in_flight = asyncio.Semaphore(ctx.clans_in_flight)

    async def one(run: ClanRun) -> None:
        async with in_flight:
            await fetch_and_land(run)

    async def fetch_and_land(run: ClanRun) -> None:
        t0 = time.perf_counter()
        try:
            bundle = await phase["fetch"](ctx, run, keys)
        except Exception as exc:  # noqa: BLE001 - recorded as the run's failure
            run.fail("fetch", exc)
            return
        note_fetched(run, bundle, time.perf_counter() - t0)
        t1 = time.perf_counter()
        try:
            result = await phase["land"](ctx, run, bundle)
        except Exception as exc:  # noqa: BLE001 - recorded as the run's failure
            run.fail("land", exc)
            return
        note_landed(run, result, time.perf_counter() - t1)

    try:
        with reuse_sessions(ctx.db_url):  # the clans' run rows, planner reads and landings
            await asyncio.gather(*(one(run) for run in runs if run.active))
    finally:
        await keys.aclose()


def _limiter_factory(ctx: RunContext) -> Callable[[ApiKey], RateLimiter] | None:
    """Each key's limiter: shared through the warehouse when ctx.shared_pacing, else the
    pool's default (in this process)."""
    if not ctx.shared_pacing:
        return None

    def shared(key: ApiKey) -> RateLimiter:
        return SharedRateLimiter(
            ctx.db_url,
            key.fingerprint,
            ctx.requests_per_second,
            ctx.max_concurrency,
            pacing=ctx.pacing,
        )

    return shared


async def _transform_check_publish(
    ctx: RunContext,
    phase: dict[str, Any],
    report: IngestReport,
    locks: ClanLocks,
    clock: _StageClock,
) -> None:
    """dbt once for the landed clans, the health rows, then publish or roll back."""
    for tag in locks.lost():
        run = report.run_for(tag)
        if run.active:
            run.fail("lock", RuntimeError(f"the lock of clan {tag} was lost (connection dropped)"))
    landed = [r for r in report.runs if r.active and r.landed]
    checked = [r for r in report.runs if r.status != "skipped"]
    if landed and not ctx.options.build_marts:
        await tasks.defer_transform(ctx, landed)
        landed = []
    if not landed:
        report.stage = "monitor"
        await _check_and_settle(ctx, phase, report, landed, checked, None)
        clock.lap("monitor")
        return
    warehouse = warehouse_lock(ctx)  # one dbt build per warehouse at a time
    try:
        report.stage = "transform"
        build: BuildOutcome | None = None
        try:
            await asyncio.to_thread(take_warehouse_lock, warehouse, ctx)
            build = report.pending_build = phase["transform"](ctx, landed)
            note_built(landed, build)
        except Exception as exc:  # noqa: BLE001 - every landed run fails with it
            for run in landed:
                run.fail("transform", exc)
            warehouse.release()
        clock.lap("transform")
        report.stage = "monitor"
        await _check_and_settle(ctx, phase, report, landed, checked, build)
        report.pending_build = None
    finally:
        warehouse.release()
    clock.lap("monitor")


async def _check_and_settle(
    ctx: RunContext,
    phase: dict[str, Any],
    report: IngestReport,
    landed: list[ClanRun],
    checked: list[ClanRun],
    build: BuildOutcome | None,
) -> None:
    t0 = time.perf_counter()
    monitor_error: Exception | None = None
    try:
        health = await phase["monitor"](ctx, checked)
        note_health(checked, health, time.perf_counter() - t0)
    except Exception as exc:  # noqa: BLE001 - handled below: the run fails
        monitor_error = exc
    if build is None:
        for run in checked:
            if monitor_error is not None and run.active:
                run.fail("monitor", monitor_error)
        return
    if monitor_error is None:
        try:
            await tasks.publish(ctx, build)
            report.build = build
            return
        except Exception as exc:  # noqa: BLE001 - the build cannot be kept: roll back
            await _roll_back(ctx, build, landed, "publish", exc)
            return
    await _roll_back(ctx, build, landed, "monitor", monitor_error)


async def _roll_back(
    ctx: RunContext, build: BuildOutcome, landed: list[ClanRun], phase: str, error: Exception
) -> None:
    """The build is not kept: its runs fail with ``error``, the marts go back as they were."""
    for run in landed:
        run.fail(phase, error)
        run.rows_changed = None
    try:
        await tasks.roll_back(ctx, build, error_payload(error, phase=phase))
    except Exception as exc:  # noqa: BLE001 - the next build rolls it back first
        log().error("could not roll back build %s now: %s", build.build_id, exc)


# ---------------------------------------------------------------------------- helpers


async def _summary_artifact(report: IngestReport) -> None:
    rows = report_rows(report)
    ok, failed, skipped = len(report.succeeded), len(report.failed), len(report.skipped)
    description = (
        f"clash-ingest: {ok} succeeded, {len(report.partial)} partial, {failed} failed, "
        f"{skipped} skipped; "
        f"wall {report.wall_seconds:.1f} s"
        + (f"; dbt {report.build.scope} build {report.build.seconds:.1f} s" if report.build else "")
    )
    try:
        await acreate_table_artifact(table=rows, key=SUMMARY_ARTIFACT_KEY, description=description)
    except Exception as exc:  # noqa: BLE001 - a missing artifact must not fail the run
        log().warning("could not create the summary artifact: %s", exc)


def _final_state(report: IngestReport) -> IngestReport | State[Any]:
    if report.failed:
        error = RunsFailedError(report)
        log().error("%s", error.message)
        return Failed(message=error.message, data=error)
    return report


def _flow_run_id() -> uuid.UUID | None:
    value = flow_run.get_id()
    return uuid.UUID(str(value)) if value else None


class _StageClock:
    """Wall time of each stage of a flow run (for the report and the benchmark)."""

    def __init__(self) -> None:
        self._start = self._last = time.perf_counter()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = round(self.laps.get(name, 0.0) + now - self._last, 3)
        self._last = now

    @property
    def total(self) -> float:
        return round(time.perf_counter() - self._start, 3)
