"""Each clan's ``ops.ingest_runs`` row: opened before the fetch, closed after the monitor."""

from __future__ import annotations

import uuid
from typing import Any

from clash_pipeline.orchestration.model import ClanRun, RunContext
from clash_pipeline.warehouse.leases import close_abandoned_runs
from clash_pipeline.warehouse.runs import utc_now


def open_runs(ctx: RunContext, clan_tags: list[str], busy: dict[str, str]) -> list[ClanRun]:
    """An ``ops.ingest_runs`` row per clan: ``running``, or ``skipped`` when its lock was busy.

    First, every ``running`` run of any clan and kind whose process is gone is
    closed as failed (:func:`~clash_pipeline.warehouse.leases.close_abandoned_runs`).
    """
    runs: list[ClanRun] = []
    close_abandoned_runs(ctx.db_url, held_clans=[t for t in clan_tags if t not in busy])
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


def close_runs(ctx: RunContext, runs: list[ClanRun]) -> None:
    """Write every run's outcome, counters and health row to ``ops.ingest_runs``.

    A run that never landed (failed or cancelled) gets the requests, retries
    and 429s its fetch attempts recorded in ``ops.ingest_logs``.
    """
    for run in runs:
        if run.status == "skipped":
            continue
        if run.status == "running":
            # landed and built, but without what was dropped after the retries or
            # quarantined at the door: partial
            run.status = "partial" if run.dropped_requests or run.quarantined else "succeeded"
        summary: dict[str, Any] = {"batch_id": str(ctx.batch_id)}
        if run.dropped_requests:
            summary["dropped_requests"] = run.dropped_requests
            summary["dropped_players"] = run.dropped_players
        if run.quarantined:
            summary["quarantined"] = run.quarantined
        if run.health is not None:
            summary["health"] = run.health
        error = run.error
        if error is None and run.failed_request_list:
            error = {"failed_requests": run.failed_request_list}
        recorder = ctx.recorder(run)
        counters = run.counters()
        if not run.landed:  # failed or cancelled before landing: what its fetches sent
            counters |= recorder.logged_counters()
        recorder.finish(
            run.status,
            snapshot_at=run.snapshot_at,
            error=error,
            counters=counters,
            summary=summary,
            rows_changed=run.rows_changed,
        )
