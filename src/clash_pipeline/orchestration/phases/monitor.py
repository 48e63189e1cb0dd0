"""The monitor phase: each run's health row, and the anomaly checks of its clan."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from clash_pipeline.orchestration.model import ClanRun, RunContext
from clash_pipeline.orchestration.phases.common import always_retriable, log
from clash_pipeline.settings import load_settings
from clash_pipeline.transform.publish import BUILD_SCHEMA
from clash_pipeline.warehouse.connect import connect
from clash_pipeline.warehouse.runs import PhaseAttempt, error_payload

if TYPE_CHECKING:
    from clash_pipeline.monitor.run import MonitorReport


def monitor(ctx: RunContext, runs: list[ClanRun], *, attempt: int = 1) -> dict[str, dict[str, Any]]:
    """The per-run health row (where the anomaly monitor plugs in), by run id.

    The row says how the run went, from its checkpoints and the marts of the
    build (``marts_build``: it is not published before the monitor passes): status,
    phase durations, requests and failures, members in the snapshot, rows
    changed, and the time since the clan's previous successful run.
    """
    checked = [run for run in runs if run.status != "skipped"]
    with PhaseAttempt(
        "monitor",
        [ctx.recorder(run) for run in checked],
        attempt=attempt,
        retries=ctx.options.monitor_retries,
        retriable=always_retriable,
        log=log(),
    ) as phase:
        with connect(ctx.db_url, autocommit=True) as conn:
            row = conn.execute(
                "select to_regclass(%s) is not null", (f"{BUILD_SCHEMA}.roster_snapshots",)
            ).fetchone()
            has_snapshots = bool(row and row[0])
            health = {str(run.run_id): _health_row(conn, run, has_snapshots) for run in checked}
        # a run that failed already is judged by the scheduled monitor once it is closed
        # (its ops row still says running: here it would look like a fresh success)
        anomalies = _anomaly_checks(ctx, [run for run in checked if run.active])
        anomalies |= _held_alerts(ctx, [run for run in checked if run.status == "held"])
        for run, recorder in zip(checked, phase.recorders, strict=True):
            run_health = health[str(run.run_id)]
            phase.record(
                recorder,
                rows_in=run_health.get("members_in_snapshot"),
                details={"health": run_health, **anomalies},
            )
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
            marts_schema=BUILD_SCHEMA,  # the build this run judges, not yet published
        )
    except Exception as exc:  # noqa: BLE001 - recorded; the run is not failed by it
        from clash_pipeline.warehouse.connect import scrub

        payload = error_payload(exc, phase="monitor")
        payload["message"] = scrub(str(payload["message"]), ctx.db_url)[:2000]
        log().error("anomaly monitor failed (the run goes on): %s", payload["message"])
        return {"anomaly_error": payload}
    _log_alerts(report)
    return {"anomalies": report.summary()}


def _held_alerts(ctx: RunContext, runs: list[ClanRun]) -> dict[str, Any]:
    """The ``held_runs`` alert of each clan whose run was held back (data tests failed).

    Apart from the GX checkpoint: a held run built nothing for the checks to judge.
    """
    if not runs:
        return {}
    from clash_pipeline.monitor.alerts import post_webhook
    from clash_pipeline.monitor.held import check_held

    with connect(ctx.db_url) as conn:
        changes = check_held(conn, [r.clan_tag for r in runs], {r.clan_tag: r.run_id for r in runs})
    for change in changes:
        log().warning(
            "alert %s (%s) for clan %s: %s",
            change.change.replace("_", " "),
            change.check_name,
            change.clan_tag,
            change.summary,
        )
    url = load_settings().clash_alert_webhook_url
    post_webhook(url.get_secret_value() if url else None, changes)
    return {"held_alerts": [c.alert_id for c in changes]}


def _log_alerts(report: MonitorReport) -> None:
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
    previous_row = conn.execute(
        """
        select max(snapshot_at) from ops.ingest_runs
        where status in ('succeeded', 'partial') and %s = any(clan_tags) and run_id <> %s
        """,
        (run.clan_tag, run.run_id),
    ).fetchone()
    previous = previous_row[0] if previous_row else None
    members_in_snapshot = None
    if has_snapshots and run.landed:
        row = conn.execute(
            sql.SQL("select member_count from {} where run_id = %s").format(
                sql.Identifier(BUILD_SCHEMA, "roster_snapshots")
            ),
            (run.run_id,),
        ).fetchone()
        members_in_snapshot = row[0] if row else None
    gap = (
        round((run.snapshot_at - previous).total_seconds() / 3600, 3)
        if previous and run.snapshot_at
        else None
    )
    return {
        "status": _health_status(run),
        "failed_phase": (run.error or {}).get("phase"),
        "snapshot_at": run.snapshot_at.isoformat() if run.snapshot_at else None,
        "phase_ms": phases,
        "requests": run.requests,
        "failed_requests": run.failed_requests,
        "retries": run.retries,
        "throttled": run.throttled,
        "dropped_requests": run.dropped_requests,
        "dropped_players": run.dropped_players,
        "members_fetched": run.members,
        "members_in_snapshot": members_in_snapshot,
        "rows_changed": run.rows_changed,
        "hours_since_previous_success": gap,
    }


def _health_status(run: ClanRun) -> str:
    if run.status in ("failed", "held"):
        return run.status
    return "partial" if run.dropped_requests or run.quarantined else "ok"


def note_health(runs: list[ClanRun], health: dict[str, dict[str, Any]], seconds: float) -> None:
    for run in runs:
        if str(run.run_id) in health:
            run.health = health[str(run.run_id)]
            run.phase_ms["monitor"] = round(seconds * 1000)
