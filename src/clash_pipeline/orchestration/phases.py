"""The pipeline's phases as plain functions (:mod:`.tasks` wraps them for Prefect).

Each phase takes the batch's :class:`RunContext` (settings and a DSN, never a
live client or connection), writes its checkpoint rows to ``ops.ingest_logs``
(one per attempt: ``retrying`` when another attempt follows, else ``failed`` or
``succeeded``) and returns plain values.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import psycopg

from clash_pipeline.clash_api.client import ClashClient, RetryPolicy
from clash_pipeline.clash_api.ratelimit import RateLimiter
from clash_pipeline.clash_api.tags import normalize_tag
from clash_pipeline.errors import ClashPipelineError, ConfigError, DatabaseError
from clash_pipeline.ingest.fetch import known_ended_cwl_wars
from clash_pipeline.ingest.land import (
    ClanBundle,
    LandResult,
    failed_records_json,
    fetch_clan_bundle,
    land_bundle,
)
from clash_pipeline.orchestration.model import (
    TRANSFORM_STEPS,
    BuildOutcome,
    ClanRun,
    IngestReport,
    RunContext,
    StepResult,
)
from clash_pipeline.orchestration.options import ApiSpec, PipelineOptions
from clash_pipeline.settings import Settings, load_settings
from clash_pipeline.transform import restore
from clash_pipeline.versions import schema_version
from clash_pipeline.warehouse.connect import connect
from clash_pipeline.warehouse.locks import WAREHOUSE_LOCK_KEY, AdvisoryLock, clan_lock_key
from clash_pipeline.warehouse.runs import error_payload, utc_now

#: Name of the Prefect Secret block holding the API token when COC_API_TOKEN is unset.
TOKEN_SECRET_BLOCK = "coc-api-token"  # noqa: S105 - a block name, not a secret

_fallback_log = logging.getLogger("clash_pipeline.orchestration")


def log() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """Prefect's run logger inside a flow or task run, else a module logger."""
    try:
        from prefect import get_run_logger
        from prefect.exceptions import MissingContextError

        try:
            return get_run_logger()
        except MissingContextError:
            return _fallback_log
    except ImportError:  # pragma: no cover - prefect is a dependency
        return _fallback_log


# ------------------------------------------------------------------------------ context


def resolve_context(
    clan_tags: Iterable[str] | None,
    api: ApiSpec | None,
    options: PipelineOptions,
    *,
    flow_run_id: uuid.UUID | None = None,
    settings: Settings | None = None,
) -> tuple[RunContext, list[str]]:
    """Settings from the environment, the database (started and migrated), the API."""
    from clash_pipeline.project import project_dir
    from clash_pipeline.warehouse.connect import resolve_database_url
    from clash_pipeline.warehouse.migrations import migrate

    settings = settings or load_settings()
    tags = [normalize_tag(t, kind="clan tag") for t in clan_tags] if clan_tags else []
    tags = list(dict.fromkeys(tags or settings.coc_clan_tags))
    if not tags:
        raise ConfigError(
            "no clan to ingest: COC_CLAN_TAGS is empty and no clan tag was given",
            hint="pass --clan '#TAG' (or the clan_tags parameter) or set COC_CLAN_TAGS",
        )
    db_url = resolve_database_url(settings)
    migrate(db_url)
    ctx = RunContext(
        db_url=db_url,
        home=settings.home,
        api=api or api_from_settings(settings),
        options=options,
        schema_version=schema_version(),
        project_dir=Path(options.dbt_project_dir) if options.dbt_project_dir else project_dir(),
        batch_id=uuid.uuid4(),
        flow_run_id=flow_run_id,
        requests_per_second=options.requests_per_second or settings.coc_requests_per_second,
        max_concurrency=options.max_concurrency or settings.coc_max_concurrency,
        request_timeout=settings.coc_timeout_seconds,
        request_retries=settings.coc_max_retries,
    )
    return ctx, tags


def api_from_settings(settings: Settings) -> ApiSpec:
    """The real API: the token from COC_API_TOKEN, else from the Prefect Secret block."""
    token = settings.api_token() or _token_from_secret_block()
    if not token:
        raise ConfigError(
            "COC_API_TOKEN is not set",
            hint="set COC_API_TOKEN (environment or .env), or store the token in a Prefect "
            f"Secret block named {TOKEN_SECRET_BLOCK!r}, or use --simulate",
        )
    return ApiSpec(base_url=settings.coc_api_base_url, token=token, source="api")


def _token_from_secret_block() -> str | None:
    try:
        from prefect.blocks.system import Secret

        value = Secret.load(TOKEN_SECRET_BLOCK).get()
    except Exception:  # noqa: BLE001 - no server, no block, or no access: no token
        return None
    return str(value) if value else None


# --------------------------------------------------------------------------------- locks


@dataclass
class ClanLocks(AbstractContextManager["ClanLocks"]):
    """One advisory lock per clan, taken in tag order (so two batches never deadlock)."""

    db_url: str = field(repr=False)
    clan_tags: list[str]
    options: PipelineOptions
    held: list[str] = field(default_factory=list)
    busy: dict[str, str] = field(default_factory=dict)
    _locks: list[AdvisoryLock] = field(default_factory=list, repr=False)

    def acquire(self) -> ClanLocks:
        wait = self.options.lock_timeout_seconds if self.options.on_busy == "wait" else 0.0
        for tag in sorted(self.clan_tags):
            lock = AdvisoryLock(
                self.db_url,
                clan_lock_key(tag),
                name=f"clan {tag}",
                application_name=f"clash-pipeline clan lock {tag}",
            )

            def waiting(_elapsed: float, tag: str = tag) -> None:
                log().warning(
                    "clan %s: another run for this clan is in progress (%s); "
                    "waiting for it, up to %.0f s",
                    tag,
                    _running_run(self.db_url, tag),
                    wait,
                )

            if lock.acquire(wait=wait, on_wait=waiting):
                self._locks.append(lock)
                self.held.append(tag)
                if lock.waited_seconds > 0.5:
                    log().warning(
                        "clan %s: lock free after %.1f s; running", tag, lock.waited_seconds
                    )
            else:
                reason = (
                    f"another run for {tag} is in progress ({_running_run(self.db_url, tag)})"
                    + (f"; still busy after waiting {wait:.0f} s" if wait else "")
                )
                self.busy[tag] = reason
                log().warning("clan %s: skipped: %s", tag, reason)
        self.held = [t for t in self.clan_tags if t in self.held]
        return self

    def release(self) -> None:
        for lock in self._locks:
            lock.release()
        self._locks.clear()

    def lost(self) -> list[str]:
        """Clans whose lock session died (a dropped connection): they may interleave now."""
        return [lock.name.removeprefix("clan ") for lock in self._locks if not lock.still_held()]

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _running_run(db_url: str, clan_tag: str) -> str:
    try:
        with connect(db_url, autocommit=True) as conn:
            row = conn.execute(
                """
                select run_id, started_at from ops.ingest_runs
                where status = 'running' and %s = any(clan_tags)
                order by started_at desc limit 1
                """,
                (clan_tag,),
            ).fetchone()
    except (psycopg.Error, DatabaseError):
        row = None
    if row is None:
        return "run unknown"
    return f"run {row[0]} started {row[1]:%Y-%m-%d %H:%M:%S} UTC"


def warehouse_lock(ctx: RunContext) -> AdvisoryLock:
    """The lock that serialises dbt builds on this warehouse (acquire with :func:`take`)."""
    return AdvisoryLock(
        ctx.db_url, WAREHOUSE_LOCK_KEY, name="warehouse", application_name="clash-pipeline dbt lock"
    )


def take_warehouse_lock(lock: AdvisoryLock, ctx: RunContext) -> None:
    wait = ctx.options.warehouse_lock_timeout_seconds

    def waiting(_elapsed: float) -> None:
        log().warning("another dbt build is running on this warehouse; waiting up to %.0f s", wait)

    if not lock.acquire(wait=wait, on_wait=waiting):
        raise ClashPipelineError(
            f"another dbt build held the warehouse for more than {wait:.0f} s",
            hint="see ops.transform_builds for the running build; the next run catches up",
        )


# ------------------------------------------------------------------------------ runs


def open_runs(ctx: RunContext, clan_tags: list[str], busy: dict[str, str]) -> list[ClanRun]:
    """An ``ops.ingest_runs`` row per clan: ``running``, or ``skipped`` when its lock was busy.

    A ``running`` row of a clan whose lock this batch holds belongs to a process
    that died: it is closed as failed first.
    """
    runs: list[ClanRun] = []
    held = [t for t in clan_tags if t not in busy]
    if held:
        _close_abandoned_runs(ctx.db_url, held)
    for tag in clan_tags:
        run = ClanRun(clan_tag=tag, run_id=uuid.uuid4(), started_at=utc_now())
        recorder = ctx.recorder(run)
        if tag in busy:
            run.status = "skipped"
            run.error = {"type": "ClanBusy", "phase": "lock", "message": busy[tag]}
            recorder.start(status="skipped")
            recorder.finish("skipped", error=run.error, summary={"batch_id": str(ctx.batch_id)})
        else:
            recorder.start()
        runs.append(run)
    return runs


def _close_abandoned_runs(db_url: str, clan_tags: list[str]) -> None:
    with connect(db_url, autocommit=True) as conn:
        conn.execute(
            """
            update ops.ingest_runs
            set status = 'failed',
                finished_at = greatest(clock_timestamp(), started_at),
                error = jsonb_build_object(
                    'type', 'AbandonedRun',
                    'message', 'the process running it stopped before the run finished'
                )
            where status = 'running' and clan_tags && %s
            """,
            (clan_tags,),
        )


def close_runs(ctx: RunContext, runs: list[ClanRun]) -> None:
    """Write every run's outcome, counters and health row to ``ops.ingest_runs``."""
    for run in runs:
        if run.status == "skipped":
            continue
        if run.status == "running":
            run.status = "succeeded"
        summary: dict[str, Any] = {"batch_id": str(ctx.batch_id)}
        if run.health is not None:
            summary["health"] = run.health
        error = run.error
        if error is None and run.failed_request_list:
            error = {"failed_requests": run.failed_request_list}
        ctx.recorder(run).finish(
            run.status,
            snapshot_at=run.snapshot_at,
            error=error,
            counters=run.counters(),
            summary=summary,
            rows_changed=run.rows_changed,
        )


# ------------------------------------------------------------------------ fetch, land


def fetch_retriable(exc: BaseException) -> bool:
    """Whether another attempt at fetching can help (not for a 4xx: wrong tag or token)."""
    if isinstance(exc, ConfigError):
        return False
    for source in (exc, exc.__context__):
        status = getattr(source, "status", None)
        if isinstance(status, int) and 400 <= status < 500 and status != 429:
            return False
    return True


def land_retriable(exc: BaseException) -> bool:
    """A dropped or refused connection is worth another attempt; a constraint is not."""
    return isinstance(exc, psycopg.OperationalError | DatabaseError)


def always_retriable(exc: BaseException) -> bool:
    return not isinstance(exc, ConfigError)


def attempt_status(exc: BaseException, attempt: int, retries: int, retriable: bool) -> str:
    return "retrying" if retriable and attempt <= retries else "failed"


async def fetch_clan(
    ctx: RunContext, run: ClanRun, limiter: RateLimiter, *, attempt: int = 1
) -> ClanBundle:
    """Everything about one clan from the API (one HTTP client, the batch's rate limiter)."""
    recorder = ctx.recorder(run)
    started = utc_now()
    try:
        clock = await _api_clock(ctx.api)
        ended = await asyncio.to_thread(_known_ended_cwl_wars, ctx.db_url, run.clan_tag)
        client = ClashClient(
            base_url=ctx.api.base_url,
            token=ctx.api.token.get_secret_value(),
            limiter=limiter,
            timeout=ctx.request_timeout,
            retry=RetryPolicy(max_retries=ctx.request_retries),
            clock=clock,
        )
        async with client:
            bundle = await fetch_clan_bundle(client, run.clan_tag, known_ended_cwl_wars=ended)
    except Exception as exc:
        status = attempt_status(exc, attempt, ctx.options.fetch_retries, fetch_retriable(exc))
        await asyncio.to_thread(
            recorder.checkpoint,
            phase="fetch",
            status=status,
            attempt=attempt,
            started_at=started,
            clan_tag=run.clan_tag,
            error=error_payload(exc, phase="fetch"),
        )
        log().warning("clan %s: fetch attempt %d %s: %s", run.clan_tag, attempt, status, exc)
        raise
    failed = bundle.failed
    await asyncio.to_thread(
        recorder.checkpoint,
        phase="fetch",
        status="succeeded",
        attempt=attempt,
        started_at=started,
        clan_tag=run.clan_tag,
        rows_in=len(bundle.records),
        requests=len(bundle.records),
        retries=sum(r.retries for r in bundle.records),
        throttled=sum(r.throttled for r in bundle.records),
        details={
            "failed_requests": len(failed),
            "failed_players": sum(1 for r in failed if r.endpoint == "player"),
            "members": sum(1 for r in bundle.records if r.endpoint == "player"),
        },
    )
    return bundle


def note_fetched(run: ClanRun, bundle: ClanBundle, seconds: float) -> None:
    run.snapshot_at = bundle.snapshot_at
    run.members = sum(1 for r in bundle.records if r.endpoint == "player")
    run.failed_request_list = failed_records_json(bundle.failed).obj["failed"]
    run.phase_ms["fetch"] = round(seconds * 1000)


def _known_ended_cwl_wars(db_url: str, clan_tag: str) -> set[str]:
    with connect(db_url, autocommit=True) as conn:
        return known_ended_cwl_wars(conn, clan_tag)


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


def land_clan(ctx: RunContext, run: ClanRun, bundle: ClanBundle, *, attempt: int = 1) -> LandResult:
    """Land one clan's bundle in ``raw`` in one transaction (idempotent across attempts)."""
    recorder = ctx.recorder(run)
    started = utc_now()
    try:
        with connect(ctx.db_url) as conn:
            result = _already_landed(conn, run, bundle) if attempt > 1 else None
            if result is None:
                result = land_bundle(
                    conn,
                    bundle,
                    run_id=run.run_id,
                    source=ctx.api.source,
                    started_at=run.started_at,
                )
    except Exception as exc:
        status = attempt_status(exc, attempt, ctx.options.land_retries, land_retriable(exc))
        recorder.checkpoint(
            phase="land",
            status=status,
            attempt=attempt,
            started_at=started,
            clan_tag=run.clan_tag,
            error=error_payload(exc, phase="land"),
        )
        log().warning("clan %s: land attempt %d %s: %s", run.clan_tag, attempt, status, exc)
        raise
    recorder.checkpoint(
        phase="land",
        status="succeeded",
        attempt=attempt,
        started_at=started,
        clan_tag=run.clan_tag,
        rows_in=result.requests,
        rows_written=result.requests + result.payloads_new,
        rows_changed=result.payloads_new,
        db_time_ms=result.db_time_ms,
        details={"bytes_new": result.bytes_new, "bytes_received": result.bytes_received},
    )
    return result


def _already_landed(
    conn: psycopg.Connection[Any], run: ClanRun, bundle: ClanBundle
) -> LandResult | None:
    """The result of an earlier attempt whose commit made it before its connection died."""
    row = conn.execute(
        "select requests, failed_requests, payloads_new, bytes_received, bytes_new"
        " from raw.fetch_runs where run_id = %s",
        (run.run_id,),
    ).fetchone()
    conn.rollback()
    if row is None:
        return None
    return LandResult(
        run_id=run.run_id,
        clan_tag=run.clan_tag,
        requests=row[0],
        failed_requests=row[1],
        payloads_new=row[2],
        bytes_received=row[3],
        bytes_new=row[4],
        retries=sum(r.retries for r in bundle.records),
        throttled=sum(r.throttled for r in bundle.records),
        db_time_ms=0,
    )


def note_landed(run: ClanRun, result: LandResult, seconds: float) -> None:
    run.landed = True
    run.requests = result.requests
    run.failed_requests = result.failed_requests
    run.retries = result.retries
    run.throttled = result.throttled
    run.bytes_received = result.bytes_received
    run.payloads_new = result.payloads_new
    run.bytes_stored = result.bytes_new
    run.phase_ms["land"] = round(seconds * 1000)


# --------------------------------------------------------------------------- transform


def dbt_arguments(scope: str, mode: str) -> list[str]:
    """What dbt runs: everything once per project version, then the derived layers.

    A ``full`` build (first build, or staging models, seeds or macros changed
    since the last full one) builds every model and seed. An ``incremental``
    build selects the layers that change with new raw data: intermediate,
    marts and snapshots. ``run`` mode builds without data tests, ``build`` mode
    with them. Unit tests check SQL logic, not data: they belong to CI
    (``dbt build``), never to a pipeline run.
    """
    exclude = ["resource_type:unit_test"] + (["resource_type:test"] if mode == "run" else [])
    select = ["intermediate", "marts", "resource_type:snapshot"] if scope != "full" else []
    return ["build", *(["--select", *select] if select else []), "--exclude", *exclude]


def transform(ctx: RunContext, runs: list[ClanRun], *, attempt: int = 1) -> BuildOutcome:
    """Run dbt once for the batch inside a restore point; roll back if it fails.

    Writes, per clan run, a ``transform`` checkpoint and one row per mart step
    (``upsert_members``, ``write_snapshot``, ``write_stats``, ``metrics``) with
    dbt's time for the model and the rows this build wrote and changed for that
    clan (from the restore point's undo log).
    """
    from clash_pipeline.transform.dbt import run_dbt

    started = utc_now()
    t0 = time.perf_counter()
    build_id = uuid.uuid4()
    manifest = ctx.home / "dbt" / "target" / "manifest.json"
    try:
        for report in restore.roll_back_abandoned(ctx.db_url):
            log().warning(
                "rolled back dbt build %s left running by a stopped process (%d relation(s))",
                report.build_id,
                len(report.restored),
            )
        project_hash = restore.project_fingerprint(ctx.project_dir)
        scope = "incremental" if restore.last_full_build(ctx.db_url, project_hash) else "full"
        point = restore.open_restore_point(
            ctx.db_url,
            build_id=build_id,
            scope=scope,
            project_hash=project_hash,
            models=restore.dbt_models(manifest),
            run_ids=[r.run_id for r in runs],
            clan_tags=[r.clan_tag for r in runs],
        )
    except Exception as exc:
        _record_transform_failure(ctx, runs, exc, attempt, started)
        raise
    try:
        args = dbt_arguments(scope, ctx.options.transform_mode)
        if not ctx.options.dbt_verbose:
            args.append("--quiet")
        result = run_dbt(
            args,
            db_url=restore.build_database_url(ctx.db_url, build_id),
            home=ctx.home,
            vars=ctx.options.dbt_vars or None,
            project_dir=ctx.project_dir,
        )
        result.raise_for_status()
        models = restore.dbt_models(manifest) or {}
        steps = _step_results(ctx, point, result, models, runs)
    except BaseException as exc:
        try:
            rolled = restore.roll_back(
                ctx.db_url, build_id, error=error_payload(exc, phase="transform")
            )
            log().warning(
                "dbt build failed; restored %d relation(s) as they were before the run",
                len(rolled.restored),
            )
        except (psycopg.Error, ClashPipelineError) as restore_exc:
            log().error(
                "dbt build failed and the restore point could not be applied now (%s); "
                "the next build rolls it back first",
                restore_exc,
            )
        if isinstance(exc, Exception):
            _record_transform_failure(
                ctx, runs, exc, attempt, started, result=getattr(exc, "result", None)
            )
        raise
    seconds = time.perf_counter() - t0
    nodes: dict[str, int] = {}
    for node in result.nodes:
        nodes[node.status] = nodes.get(node.status, 0) + 1
    outcome = BuildOutcome(
        build_id=build_id, scope=scope, seconds=round(seconds, 3), nodes=nodes, steps=steps
    )
    _record_transform_success(ctx, runs, outcome, attempt, started, result)
    return outcome


def _step_results(
    ctx: RunContext,
    point: restore.RestorePoint,
    result: Any,
    models: dict[tuple[str, str], restore.ModelInfo],
    runs: list[ClanRun],
) -> dict[str, list[StepResult]]:
    by_name = {name: (schema, name) for (schema, name) in models}
    steps: dict[str, list[StepResult]] = {run.clan_tag: [] for run in runs}
    for step, model in TRANSFORM_STEPS:
        try:
            node = result.node(model)
        except KeyError:
            node = None
        location = by_name.get(model)
        counts = (
            restore.count_changes(ctx.db_url, point, *location)
            if node is not None and node.status == "success" and location
            else {}
        )
        for run in runs:
            if node is None:
                steps[run.clan_tag].append(StepResult(step, model, "skipped"))
                continue
            count = counts.get(run.clan_tag)
            steps[run.clan_tag].append(
                StepResult(
                    step=step,
                    model=model,
                    status="succeeded" if node.status == "success" else node.status,
                    seconds=node.execution_time,
                    rows_written=count.written if count else 0,
                    rows_changed=count.changed if count else 0,
                    rows_affected=node.rows_affected,
                )
            )
    return steps


def _record_transform_success(
    ctx: RunContext,
    runs: list[ClanRun],
    outcome: BuildOutcome,
    attempt: int,
    started: datetime,
    result: Any,
) -> None:
    db_ms = round(sum(n.execution_time for n in result.nodes) * 1000)
    for run in runs:
        recorder = ctx.recorder(run)
        steps = outcome.steps.get(run.clan_tag, [])
        recorder.checkpoint(
            phase="transform",
            status="succeeded",
            attempt=attempt,
            started_at=started,
            clan_tag=run.clan_tag,
            rows_written=sum(s.rows_written or 0 for s in steps),
            rows_changed=sum(s.rows_changed or 0 for s in steps),
            db_time_ms=db_ms,
            details={
                "build_id": str(outcome.build_id),
                "scope": outcome.scope,
                "nodes": outcome.nodes,
                "batch_clans": len(runs),
            },
        )
        for step in steps:
            recorder.checkpoint(
                phase="transform",
                step=step.step,
                status=step.status if step.status in ("succeeded", "skipped") else "failed",
                attempt=attempt,
                started_at=started,
                duration_ms=round(step.seconds * 1000),
                clan_tag=run.clan_tag,
                rows_written=step.rows_written,
                rows_changed=step.rows_changed,
                db_time_ms=round(step.seconds * 1000),
                details={"model": step.model, "rows_affected_batch": step.rows_affected}
                if step.status != "skipped"
                else {"model": step.model, "reason": f"no dbt model named {step.model} (yet)"},
            )


def _record_transform_failure(
    ctx: RunContext,
    runs: list[ClanRun],
    exc: Exception,
    attempt: int,
    started: datetime,
    *,
    result: Any = None,
) -> None:
    status = attempt_status(exc, attempt, ctx.options.transform_retries, always_retriable(exc))
    details: dict[str, Any] = {"restored": True}
    if result is not None:
        details["failed_nodes"] = [
            {"node": n.name, "type": n.resource_type, "status": n.status} for n in result.failed
        ][:20]
    for run in runs:
        try:
            ctx.recorder(run).checkpoint(
                phase="transform",
                status=status,
                attempt=attempt,
                started_at=started,
                clan_tag=run.clan_tag,
                error=error_payload(exc, phase="transform"),
                details=details,
            )
        except (psycopg.Error, ClashPipelineError) as record_exc:
            log().error("could not record the transform failure of %s: %s", run.run_id, record_exc)


def defer_transform(ctx: RunContext, runs: list[ClanRun]) -> None:
    """Record that this run leaves the marts to a later run (``build_marts=False``)."""
    started = utc_now()
    for run in runs:
        ctx.recorder(run).checkpoint(
            phase="transform",
            status="skipped",
            started_at=started,
            clan_tag=run.clan_tag,
            details={"reason": "build_marts is off: the next run that builds catches up"},
        )


def note_built(runs: list[ClanRun], outcome: BuildOutcome) -> None:
    for run in runs:
        for step in outcome.steps.get(run.clan_tag, []):
            if step.step == "upsert_members":
                run.rows_changed = step.rows_changed
        run.phase_ms["transform"] = round(outcome.seconds * 1000)


# ----------------------------------------------------------------------------- monitor


def monitor(ctx: RunContext, runs: list[ClanRun], *, attempt: int = 1) -> dict[str, dict[str, Any]]:
    """The per-run health row (where the anomaly monitor plugs in), by run id.

    The row says how the run went, from its checkpoints and the marts: status,
    phase durations, requests and failures, members in the snapshot, rows
    changed, and the time since the clan's previous successful run.
    """
    started = utc_now()
    health: dict[str, dict[str, Any]] = {}
    try:
        with connect(ctx.db_url, autocommit=True) as conn:
            has_snapshots = conn.execute(
                "select to_regclass('marts.roster_snapshots') is not null"
            ).fetchone()[0]
            for run in runs:
                if run.status == "skipped":
                    continue
                health[str(run.run_id)] = _health_row(conn, run, has_snapshots)
        # a run that failed already is judged by the scheduled monitor once it is closed
        # (its ops row still says running: here it would look like a fresh success)
        anomalies = _anomaly_checks(ctx, [r for r in runs if r.active and str(r.run_id) in health])
        for run in runs:
            row = health.get(str(run.run_id))
            if row is None:
                continue
            ctx.recorder(run).checkpoint(
                phase="monitor",
                status="succeeded",
                attempt=attempt,
                started_at=started,
                clan_tag=run.clan_tag,
                rows_in=row.get("members_in_snapshot"),
                details={"health": row, **anomalies},
            )
    except Exception as exc:
        status = attempt_status(exc, attempt, ctx.options.monitor_retries, always_retriable(exc))
        for run in runs:
            if run.status != "skipped":
                try:
                    ctx.recorder(run).checkpoint(
                        phase="monitor",
                        status=status,
                        attempt=attempt,
                        started_at=started,
                        clan_tag=run.clan_tag,
                        error=error_payload(exc, phase="monitor"),
                    )
                except (psycopg.Error, ClashPipelineError):
                    pass
        raise
    return health


def _anomaly_checks(ctx: RunContext, runs: list[ClanRun]) -> dict[str, Any]:
    """The GX checkpoint for the clans of these runs, and their alerts (clash_pipeline.monitor).

    An anomaly is not a failure: alerts never fail the run. Neither does an
    error of the monitor itself (GX, the context, the webhook): the marts the
    run built are sound, so it is logged and recorded in the monitor
    checkpoint's details (``anomaly_error``) and the run goes on.
    """
    if not ctx.options.anomaly_checks or not runs:
        return {}
    from clash_pipeline.monitor.run import run_monitor

    try:
        report = run_monitor(
            ctx.db_url,
            load_settings(),
            [run.clan_tag for run in runs],
            run_ids={run.clan_tag: run.run_id for run in runs},
        )
    except Exception as exc:  # noqa: BLE001 - recorded; the run is not failed by it
        from clash_pipeline.warehouse.connect import scrub

        payload = error_payload(exc, phase="monitor")
        payload["message"] = scrub(str(payload["message"]), ctx.db_url)[:2000]
        log().error("anomaly monitor failed (the run goes on): %s", payload["message"])
        return {"anomaly_error": payload}
    for change in report.changes:
        if change.change in ("opened", "still_open"):
            log().warning(
                "alert %s (%s) for clan %s: %s",
                change.change.replace("_", " "),
                change.check_name,
                change.clan_tag,
                change.summary,
            )
        else:
            log().info("alert resolved (%s) for clan %s", change.check_name, change.clan_tag)
    for name, message in report.errors.items():
        log().error("anomaly check %s could not run: %s", name, message)
    return {"anomalies": report.summary()}


def _health_row(conn: psycopg.Connection[Any], run: ClanRun, has_snapshots: bool) -> dict[str, Any]:
    phases = {
        phase: ms
        for phase, ms in conn.execute(
            """
            select phase, sum(duration_ms)::int from ops.ingest_logs
            where run_id = %s and step is null group by phase
            """,
            (run.run_id,),
        )
    }
    previous = conn.execute(
        """
        select max(snapshot_at) from ops.ingest_runs
        where status = 'succeeded' and %s = any(clan_tags) and run_id <> %s
        """,
        (run.clan_tag, run.run_id),
    ).fetchone()[0]
    members_in_snapshot = None
    if has_snapshots and run.landed:
        row = conn.execute(
            "select member_count from marts.roster_snapshots where run_id = %s", (run.run_id,)
        ).fetchone()
        members_in_snapshot = row[0] if row else None
    gap = (
        round((run.snapshot_at - previous).total_seconds() / 3600, 3)
        if previous and run.snapshot_at
        else None
    )
    return {
        "status": "failed" if run.status == "failed" else "ok",
        "failed_phase": (run.error or {}).get("phase"),
        "snapshot_at": run.snapshot_at.isoformat() if run.snapshot_at else None,
        "phase_ms": phases,
        "requests": run.requests,
        "failed_requests": run.failed_requests,
        "retries": run.retries,
        "throttled": run.throttled,
        "members_fetched": run.members,
        "members_in_snapshot": members_in_snapshot,
        "rows_changed": run.rows_changed,
        "hours_since_previous_success": gap,
    }


def note_health(runs: list[ClanRun], health: dict[str, dict[str, Any]], seconds: float) -> None:
    for run in runs:
        if str(run.run_id) in health:
            run.health = health[str(run.run_id)]
            run.phase_ms["monitor"] = round(seconds * 1000)


# ------------------------------------------------------------------------------ settle


def publish(ctx: RunContext, outcome: BuildOutcome) -> None:
    restore.publish(ctx.db_url, outcome.build_id)


def roll_back(ctx: RunContext, outcome: BuildOutcome, error: dict[str, Any]) -> None:
    report = restore.roll_back(ctx.db_url, outcome.build_id, error=error)
    log().warning(
        "run failed after dbt: restored %d relation(s) as they were before the run",
        len(report.restored),
    )


# ------------------------------------------------------------------------------ report


def report_rows(report: IngestReport) -> list[dict[str, Any]]:
    """The summary table (one row per clan run) for the artifact and the terminal."""
    rows = []
    for run in report.runs:
        error = run.error or {}
        rows.append(
            {
                "clan": run.clan_tag,
                "status": run.status,
                "requests": run.requests,
                "failed requests": run.failed_requests,
                "retries": run.retries,
                "members": run.members,
                "members changed": run.rows_changed if run.rows_changed is not None else "",
                "fetch s": _seconds(run.phase_ms.get("fetch")),
                "land s": _seconds(run.phase_ms.get("land")),
                "transform s": _seconds(run.phase_ms.get("transform")),
                "monitor s": _seconds(run.phase_ms.get("monitor")),
                "error": f"{error.get('phase', '')}: {error.get('message', '')}" if error else "",
                "run id": str(run.run_id),
            }
        )
    return rows


def _seconds(ms: int | None) -> str:
    return "" if ms is None else f"{ms / 1000:.2f}"
