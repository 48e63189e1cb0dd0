"""The pipeline's phases as Prefect tasks: a name, retries with backoff, a timeout.

Retries and timeouts come from :class:`PipelineOptions` (see :func:`configured`);
a retry condition keeps Prefect from retrying what cannot succeed (a clan that
does not exist, a rejected token, a constraint violation). Nothing is cached:
every run must fetch and build afresh.

I/O and bookkeeping tasks are async (their database work runs in a thread). The
transform is synchronous: a timeout then interrupts dbt itself, instead of
leaving a build running in a thread behind the flow's back (and its lock).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from prefect import Task, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import task_run
from prefect.utilities.annotations import NotSet

from clash_pipeline.clash_api.keys import KeyPool
from clash_pipeline.ingest.bundle import ClanBundle
from clash_pipeline.ingest.land import LandResult
from clash_pipeline.ingest.run import fetch_retriable, land_retriable
from clash_pipeline.orchestration.model import BuildOutcome, ClanRun, RunContext
from clash_pipeline.orchestration.options import PipelineOptions
from clash_pipeline.orchestration.phases import ingest as ingest_phase
from clash_pipeline.orchestration.phases import monitor as monitor_phase
from clash_pipeline.orchestration.phases import runs as run_rows
from clash_pipeline.orchestration.phases import transform as transform_phase
from clash_pipeline.orchestration.phases.common import always_retriable


def _retry_when(retriable: Callable[[BaseException], bool]) -> Callable[..., bool]:
    def condition(_task: Any, _task_run: Any, state: Any) -> bool:
        exc = getattr(state, "data", None)
        return not isinstance(exc, BaseException) or retriable(exc)

    return condition


def _attempt() -> int:
    return max(1, int(task_run.get_run_count() or 1))


@task(name="open runs", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[1, 5])
async def open_runs(ctx: RunContext, clan_tags: list[str], busy: dict[str, str]) -> list[ClanRun]:
    """One ops.ingest_runs row per clan (skipped when another run holds the clan)."""
    return await asyncio.to_thread(run_rows.open_runs, ctx, clan_tags, busy)


@task(
    name="fetch",
    task_run_name="fetch {run.clan_tag}",
    cache_policy=NO_CACHE,
    retry_condition_fn=_retry_when(fetch_retriable),
)
async def fetch(ctx: RunContext, run: ClanRun, keys: KeyPool) -> ClanBundle:
    """Everything about one clan from the API, under the batch's shared key pool."""
    return await ingest_phase.fetch(ctx, run, keys, attempt=_attempt())


@task(
    name="land",
    task_run_name="land {run.clan_tag}",
    cache_policy=NO_CACHE,
    retry_condition_fn=_retry_when(land_retriable),
)
async def land(ctx: RunContext, run: ClanRun, bundle: ClanBundle) -> LandResult:
    """One clan's responses into raw, in one transaction."""
    attempt = _attempt()
    return await asyncio.to_thread(ingest_phase.land, ctx, run, bundle, attempt=attempt)


@task(
    name="transform",
    cache_policy=NO_CACHE,
    retry_condition_fn=_retry_when(always_retriable),
)
def transform(ctx: RunContext, runs: list[ClanRun]) -> BuildOutcome:
    """dbt once for the batch, inside a restore point (rolled back if it fails)."""
    return transform_phase.transform(ctx, runs, attempt=_attempt())


@task(name="defer transform", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[1, 5])
async def defer_transform(ctx: RunContext, runs: list[ClanRun]) -> None:
    """No dbt in this run: a later run builds the marts for these snapshots too."""
    await asyncio.to_thread(transform_phase.defer_transform, ctx, runs)


@task(
    name="monitor",
    cache_policy=NO_CACHE,
    retry_condition_fn=_retry_when(always_retriable),
)
async def monitor(ctx: RunContext, runs: list[ClanRun]) -> dict[str, dict[str, Any]]:
    """The health row of each run (the anomaly monitor plugs in here)."""
    attempt = _attempt()
    return await asyncio.to_thread(monitor_phase.monitor, ctx, runs, attempt=attempt)


@task(name="publish", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=[1, 5, 15])
async def publish(ctx: RunContext, build: BuildOutcome) -> None:
    """Keep what the build wrote (drop its restore point)."""
    await asyncio.to_thread(transform_phase.publish, ctx, build)


@task(name="roll back", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=[1, 5, 15])
async def roll_back(ctx: RunContext, build: BuildOutcome, error: dict[str, Any]) -> None:
    """Put every mart back as it was before the run."""
    await asyncio.to_thread(transform_phase.roll_back, ctx, build, error)


@task(name="close runs", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=[1, 5, 15])
async def close_runs(ctx: RunContext, runs: list[ClanRun]) -> None:
    """Each run's outcome, counters and health row into ops.ingest_runs."""
    await asyncio.to_thread(run_rows.close_runs, ctx, runs)


def configured(options: PipelineOptions) -> dict[str, Task[..., Any]]:
    """The phase tasks with this run's retries, backoff and timeouts."""

    # without delays there is nothing to jitter: keep the task's own (none)
    jitter: float | type[NotSet] = 0.2 if options.retry_delay_seconds else NotSet

    def tuned(phase_task: Task[..., Any], retries: int, timeout: float) -> Task[..., Any]:
        return phase_task.with_options(
            retries=retries,
            retry_delay_seconds=options.retry_delays(retries),
            retry_jitter_factor=jitter,
            timeout_seconds=timeout,
        )

    return {
        "fetch": tuned(fetch, options.fetch_retries, options.fetch_timeout_seconds),
        "land": tuned(land, options.land_retries, options.land_timeout_seconds),
        "transform": tuned(transform, options.transform_retries, options.transform_timeout_seconds),
        "monitor": tuned(monitor, options.monitor_retries, options.monitor_timeout_seconds),
    }
