"""``clash-fanout``: many clans over a Prefect work pool, one dbt build per cycle.

::

    clash-fanout/fanout ─┬─ run_deployment(clash-ingest/clans, clans 1..50)   ─┐ (workers of
                         ├─ run_deployment(clash-ingest/clans, clans 51..100) ─┤  the pool, at most
                         └─ ...                                               ─┘  concurrency_limit)
                         └─ wait for every child ─ transform (dbt once) ─ monitor ─ publish

The parent splits the clan list (``clan_tags``, default COC_CLAN_TAGS) into chunks of
``clans_per_run`` and starts one flow run of the child deployment per chunk (the
``clash-ingest`` flow, land only: fetch and land, no dbt, no anomaly checks), linked to
it as subflows. Prefect places them on the work pool's workers; the child deployment's
``concurrency_limit`` bounds how many run at once. Each child takes its clans' advisory
locks, so a clan is never fetched by two processes.

When every child has ended, the parent builds the marts once for every clan that landed
(the ``clash-ingest`` flow's own transform, monitor, publish and roll-back steps, under the
warehouse lock, inside a restore point) and reports the clans that did not land, with
their child run and why (Failed, Crashed: a killed worker). A crashed child's clan locks
went with its database sessions: the next cycle takes those clans.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from typing import Annotated, Any

from prefect import State, flow
from prefect.artifacts import acreate_table_artifact
from prefect.states import Completed, Failed
from pydantic import Field, SecretStr

from clash_pipeline.errors import ConfigError
from clash_pipeline.orchestration.model import ClanRun, IngestReport, RunContext
from clash_pipeline.orchestration.options import ApiSpec, PipelineOptions

__all__ = [
    "CHILD_DEPLOYMENT",
    "ChildRun",
    "FanoutReport",
    "child_options",
    "chunked",
    "ingest_fanout",
]

#: The land-only deployment of ``clash-ingest`` that runs one chunk (prefect.yaml).
CHILD_DEPLOYMENT = "clash-ingest/clans"
FANOUT_ARTIFACT_KEY = "clash-fanout-summary"
#: Run statuses of a child's clan that landed its snapshot.
_LANDED = ("succeeded", "partial")


@dataclass
class ChildRun:
    """One child flow run: its clans and how it ended."""

    flow_run_id: uuid.UUID
    name: str
    clans: list[str]
    state_type: str = "UNKNOWN"
    state_name: str = "Unknown"
    message: str | None = None

    @property
    def ok(self) -> bool:
        return self.state_type == "COMPLETED"


@dataclass
class FanoutReport:
    """What one ``clash-fanout`` run did: its children, the clans that landed, the build."""

    clans: list[str]
    children: list[ChildRun] = field(default_factory=list)
    #: Clan tag -> why it did not land (its child run, its state, the error).
    not_built: dict[str, str] = field(default_factory=dict)
    #: The build of the landed clans (the ``clash-ingest`` report of the parent's build).
    build: IngestReport | None = None

    @property
    def landed(self) -> list[str]:
        return [c for c in self.clans if c not in self.not_built]

    @property
    def failed_children(self) -> list[ChildRun]:
        return [c for c in self.children if not c.ok]


def chunked(tags: list[str], size: int) -> list[list[str]]:
    """``tags`` in order, ``size`` at a time (the last chunk may be smaller)."""
    if size < 1:
        raise ConfigError(
            f"clans_per_run must be at least 1, not {size}", hint="pass clans_per_run >= 1"
        )
    return [tags[i : i + size] for i in range(0, len(tags), size)]


def child_options(options: PipelineOptions, *, full: bool = False) -> PipelineOptions:
    """The children's options: the parent's, land only (the parent builds once)."""
    update: dict[str, Any] = {"build_marts": False, "anomaly_checks": False}
    update["full"] = full or options.full  # fetch everything (change-driven polling off)
    return options.model_copy(update=update)


@flow(
    name="clash-fanout",
    description="Many clans over the work pool: one land-only child run per chunk of "
    "clans, then one dbt build and monitor for every clan that landed.",
    persist_result=False,
)
async def ingest_fanout(
    clan_tags: list[str] | None = None,
    clans_per_run: Annotated[int, Field(ge=1, le=10_000)] = 50,
    child_deployment: str = CHILD_DEPLOYMENT,
    options: PipelineOptions | None = None,
    full: bool = False,
    poll_seconds: Annotated[float, Field(gt=0, le=300)] = 5.0,
) -> FanoutReport | State[Any]:
    """Fan ``clan_tags`` (default: COC_CLAN_TAGS) out to ``child_deployment``, then build once.

    Ends Completed when every clan landed and the build was published; ``Partial``
    (a Failed state) when some clans did not land (named in the message) but the
    others were built; Failed when nothing landed or the build failed.
    """
    from clash_pipeline.orchestration.phases.common import log

    options = options or PipelineOptions()
    tags = _clan_tags(clan_tags)
    chunks = chunked(tags, clans_per_run)
    log().info("%d clan(s) in %d child run(s) of %s", len(tags), len(chunks), child_deployment)
    report = FanoutReport(clans=tags)
    report.children = await _run_children(
        child_deployment, chunks, child_options(options, full=full), poll_seconds
    )
    ctx = await asyncio.to_thread(_parent_context, tags, options)
    runs = await asyncio.to_thread(_child_runs, ctx, report)
    if runs:
        report.build = await _build_once(ctx, runs)
        await asyncio.to_thread(_settle_child_runs, ctx, report.build)
        for run in report.build.runs:
            if run.status in ("failed", "held", "cancelled"):
                report.not_built[run.clan_tag] = _run_reason(run)
    await _summary_artifact(report)
    return _final_state(report)


# ----------------------------------------------------------------------------- children


async def _run_children(
    deployment: str, chunks: list[list[str]], options: PipelineOptions, poll_seconds: float
) -> list[ChildRun]:
    """One flow run of ``deployment`` per chunk, as subflows; wait until every one ended."""
    from prefect.deployments import arun_deployment
    from prefect.exceptions import ObjectNotFound

    parameters = {"options": options.model_dump(mode="json")}

    async def one(index: int, clans: list[str]) -> ChildRun:
        name = f"clans {index + 1}/{len(chunks)} {clans[0]}" + ("…" if len(clans) > 1 else "")
        flow_run = await arun_deployment(
            deployment,
            parameters={"clan_tags": clans, **parameters},
            flow_run_name=name,
            as_subflow=True,
            timeout=None,
            poll_interval=poll_seconds,
        )
        state = flow_run.state
        return ChildRun(
            flow_run_id=flow_run.id,
            name=name,
            clans=clans,
            state_type=state.type.value if state else "UNKNOWN",
            state_name=(state.name if state else None) or "Unknown",
            message=state.message if state else None,
        )

    try:
        return list(await asyncio.gather(*(one(i, c) for i, c in enumerate(chunks))))
    except ObjectNotFound:
        raise ConfigError(
            f"the deployment {deployment!r} does not exist on this Prefect server",
            hint="deploy it from the repository root: prefect deploy --name "
            f"{deployment.rsplit('/', 1)[-1]} (its name in prefect.yaml)",
        ) from None


def _clan_tags(clan_tags: list[str] | None) -> list[str]:
    from clash_pipeline.clash_api.tags import normalize_tag
    from clash_pipeline.settings import load_settings

    tags = [normalize_tag(t, kind="clan tag") for t in clan_tags or []]
    tags = list(dict.fromkeys(tags or load_settings().coc_clan_tags))
    if not tags:
        raise ConfigError(
            "no clan to ingest: COC_CLAN_TAGS is empty and no clan tag was given",
            hint="set COC_CLAN_TAGS on the workers or pass the clan_tags parameter",
        )
    return tags


def _parent_context(tags: list[str], options: PipelineOptions) -> RunContext:
    """The build's context. The parent calls no API: it needs no token."""
    from clash_pipeline.orchestration.flows import _flow_run_id
    from clash_pipeline.orchestration.phases.context import resolve_context
    from clash_pipeline.settings import load_settings

    settings = load_settings()
    no_api = ApiSpec(base_url=settings.coc_api_base_url, token=SecretStr("unused"))
    build = options.model_copy(update={"build_marts": True})
    ctx, _ = resolve_context(tags, no_api, build, flow_run_id=_flow_run_id(), settings=settings)
    return ctx


def _child_runs(ctx: RunContext, report: FanoutReport) -> list[ClanRun]:
    """The clan runs the children opened (ops.ingest_runs by flow run); those that landed.

    Fills ``report.not_built`` for every clan without a landed run.
    """
    from clash_pipeline.warehouse.connect import connect

    by_child = {child.flow_run_id: child for child in report.children}
    with connect(ctx.ops_url or ctx.db_url, autocommit=True) as conn:
        rows = conn.execute(
            """
            select run_id, clan_tags[1], status, started_at, snapshot_at, flow_run_id,
                   requests, failed_requests, retries, throttled, bytes_received,
                   payloads_new, bytes_stored, error, summary
            from ops.ingest_runs
            where kind = 'ingest' and flow_run_id = any(%s)
            order by started_at
            """,
            (list(by_child),),
        ).fetchall()
    runs: list[ClanRun] = []
    seen: dict[str, str] = {}
    for row in rows:
        run_id, tag, status, started, snapshot, child_id = row[:6]
        if status in _LANDED and snapshot is not None:
            runs.append(_landed_run(row))
        else:
            error = row[13] or {}
            seen[tag] = f"run {status}: {error.get('message', 'no message')}"
    for child in report.children:
        for tag in child.clans:
            if tag in {r.clan_tag for r in runs}:
                continue
            why = seen.get(tag) or "no run recorded"
            report.not_built[tag] = (
                f"child {child.name!r} ({child.flow_run_id}) {child.state_name}: {why}"
            )
    return runs


def _landed_run(row: tuple[Any, ...]) -> ClanRun:
    (run_id, tag, _status, started, snapshot, _child) = row[:6]
    requests, failed, retries, throttled, received, new, stored = row[6:13]
    summary = row[14] or {}
    return ClanRun(
        clan_tag=tag,
        run_id=run_id,
        started_at=started,
        landed=True,
        snapshot_at=snapshot,
        requests=requests or 0,
        failed_requests=failed or 0,
        retries=retries or 0,
        throttled=throttled or 0,
        bytes_received=received or 0,
        payloads_new=new or 0,
        bytes_stored=stored or 0,
        dropped_requests=int(summary.get("dropped_requests") or 0),
        dropped_players=int(summary.get("dropped_players") or 0),
        quarantined=list(summary.get("quarantined") or []),
    )


# ------------------------------------------------------------------------------- build


async def _build_once(ctx: RunContext, runs: list[ClanRun]) -> IngestReport:
    """The ``clash-ingest`` flow's transform, monitor, publish or roll back, once for ``runs``."""
    from clash_pipeline.orchestration import tasks
    from clash_pipeline.orchestration.flows import _StageClock, _transform_check_publish
    from clash_pipeline.orchestration.phases.locks import ClanLocks

    report = IngestReport(batch_id=ctx.batch_id, flow_run_id=ctx.flow_run_id, runs=runs)
    clock = _StageClock()
    # the children held (and released) the clan locks; the build takes the warehouse lock
    no_locks = ClanLocks(ctx.db_url, [], ctx.options)
    await _transform_check_publish(ctx, tasks.configured(ctx.options), report, no_locks, clock)
    report.stage_seconds, report.wall_seconds = clock.laps, clock.total
    return report


def _settle_child_runs(ctx: RunContext, build: IngestReport) -> None:
    """Each landed run's row: the build's outcome (held or failed), the build and health.

    The children closed their runs as landed; counters stay as they recorded them.
    """
    from psycopg.types.json import Jsonb

    from clash_pipeline.warehouse.connect import connect

    build_id = str(build.build.build_id) if build.build else None
    with connect(ctx.ops_url or ctx.db_url, autocommit=True) as conn:
        for run in build.runs:
            extra: dict[str, Any] = {"fanout_batch_id": str(ctx.batch_id), "build_id": build_id}
            if run.health is not None:
                extra["health"] = run.health
            changed = run.status in ("failed", "held", "cancelled")
            conn.execute(
                """
                update ops.ingest_runs set
                    status = case when %s then %s else status end,
                    error = case when %s then %s else error end,
                    rows_changed = coalesce(%s, rows_changed),
                    summary = coalesce(summary, '{}'::jsonb) || %s
                where run_id = %s
                """,
                (
                    changed,
                    run.status,
                    changed,
                    Jsonb(run.error) if run.error else None,
                    run.rows_changed,
                    Jsonb(extra),
                    run.run_id,
                ),
            )


def _run_reason(run: ClanRun) -> str:
    error = run.error or {}
    return f"{run.status} in {error.get('phase', '?')}: {error.get('message', 'no message')}"


# ------------------------------------------------------------------------------ outcome


async def _summary_artifact(report: FanoutReport) -> None:
    from clash_pipeline.orchestration.phases.common import log

    rows = [
        {
            "child": child.name,
            "flow_run_id": str(child.flow_run_id),
            "state": child.state_name,
            "clans": len(child.clans),
            "not_built": json.dumps([t for t in child.clans if t in report.not_built]),
        }
        for child in report.children
    ]
    build = report.build.build if report.build else None
    description = (
        f"clash-fanout: {len(report.landed)} of {len(report.clans)} clan(s) built in "
        f"{len(report.children)} child run(s)"
        + (f"; dbt {build.scope} build {build.seconds:.1f} s" if build else "; no build")
    )
    try:
        await acreate_table_artifact(table=rows, key=FANOUT_ARTIFACT_KEY, description=description)
    except Exception as exc:  # noqa: BLE001 - a missing artifact must not fail the run
        log().warning("could not create the fan-out artifact: %s", exc)


def _final_state(report: FanoutReport) -> FanoutReport | State[Any]:
    """Completed; ``Partial`` (Failed) when some clans did not land; Failed when none built."""
    from clash_pipeline.orchestration.phases.common import log

    if not report.not_built:
        log().info("all %d clan(s) landed and built", len(report.clans))
        return Completed(message=f"{len(report.clans)} clan(s) built", data=report)
    missing = "; ".join(f"{tag}: {why}" for tag, why in report.not_built.items())
    message = (
        f"{len(report.not_built)} of {len(report.clans)} clan(s) not built "
        f"({len(report.failed_children)} child run(s) failed or crashed): {missing}"
    )
    log().error("%s", message)
    name = "Partial" if report.landed else "Failed"
    return Failed(name=name, message=message[:4000], data=report)
