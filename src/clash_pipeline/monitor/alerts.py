"""The alert lifecycle in ``ops.alerts`` and the optional webhook.

A failing check opens an alert for its clan, or, when one is open already,
updates it (``last_seen_at``, ``occurrences``, the latest values): the unique
index ``alerts_one_open_per_check`` keeps one open alert per clan and check. A
check that passes again resolves it. Opening and resolving post a
Slack-compatible message to ``CLASH_ALERT_WEBHOOK_URL`` when it is set; a
webhook that fails is logged and never fails the caller.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from clash_pipeline.warehouse.connect import one_row

_log = logging.getLogger("clash_pipeline.monitor")


@dataclass
class Finding:
    """The outcome of one check for one clan."""

    clan_tag: str
    check_name: str
    severity: str
    passed: bool
    summary: str = ""
    observed_value: float | None = None
    threshold: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    run_id: uuid.UUID | None = None


@dataclass
class AlertChange:
    alert_id: int
    clan_tag: str
    check_name: str
    severity: str
    change: str  # opened | still_open | resolved
    summary: str
    occurrences: int


def apply_findings(conn: psycopg.Connection[Any], findings: list[Finding]) -> list[AlertChange]:
    """Open, update or resolve one alert per finding (in one transaction)."""
    changes: list[AlertChange] = []
    with conn.transaction():
        for finding in findings:
            if finding.passed:
                changes += _resolve(conn, finding)
            else:
                changes.append(_open_or_update(conn, finding))
    return changes


def _resolve(conn: psycopg.Connection[Any], f: Finding) -> list[AlertChange]:
    """Resolve the open alert of a check that passes again (none if it was not open)."""
    rows = conn.execute(
        """
        update ops.alerts
        set status = 'resolved', resolved_at = clock_timestamp(),
            last_run_id = coalesce(%s, last_run_id)
        where coalesce(clan_tag, '') = %s and check_name = %s and status = 'open'
        returning alert_id, severity, summary, occurrences
        """,
        (f.run_id, f.clan_tag, f.check_name),
    ).fetchall()
    return [
        AlertChange(alert_id, f.clan_tag, f.check_name, severity, "resolved", summary, occurrences)
        for alert_id, severity, summary, occurrences in rows
    ]


def _open_or_update(conn: psycopg.Connection[Any], f: Finding) -> AlertChange:
    """Open an alert for a failing check, or bring its open alert up to date."""
    alert_id, occurrences, inserted = one_row(
        conn.execute(
            """
            insert into ops.alerts (
                clan_tag, check_name, severity, summary, details,
                observed_value, threshold, first_run_id, last_run_id
            )
            values (%s, %s, %s, %s, %s, %s, %s, %s, %s)
            on conflict ((coalesce(clan_tag, '')), check_name) where status = 'open'
            do update set
                last_seen_at = clock_timestamp(),
                occurrences = ops.alerts.occurrences + 1,
                severity = excluded.severity,
                summary = excluded.summary,
                details = excluded.details,
                observed_value = excluded.observed_value,
                threshold = excluded.threshold,
                last_run_id = coalesce(excluded.last_run_id, ops.alerts.last_run_id)
            returning alert_id, occurrences, (xmax = 0) as inserted
            """,
            (
                f.clan_tag,
                f.check_name,
                f.severity,
                f.summary,
                Jsonb(f.details),
                f.observed_value,
                f.threshold,
                f.run_id,
                f.run_id,
            ),
        )
    )
    change = "opened" if inserted else "still_open"
    return AlertChange(
        alert_id, f.clan_tag, f.check_name, f.severity, change, f.summary, occurrences
    )


def list_alerts(
    conn: psycopg.Connection[Any], *, include_resolved: bool = False
) -> list[dict[str, Any]]:
    """Open alerts (or every alert), newest first."""
    cur = conn.execute(
        """
        select alert_id, clan_tag, check_name, severity, status, summary,
            observed_value, threshold, occurrences, first_seen_at, last_seen_at,
            resolved_at, first_run_id, last_run_id, details
        from ops.alerts
        where %s or status = 'open'
        order by status, last_seen_at desc, alert_id desc
        """,
        (include_resolved,),
    )
    names = [c.name for c in cur.description or ()]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def post_webhook(url: str | None, changes: list[AlertChange], *, timeout: float = 5.0) -> int:
    """Post one Slack-compatible message per opened or resolved alert; returns how many went.

    Never raises: a webhook that is down must not fail a pipeline run.
    """
    if not url:
        return 0
    import httpx

    sent = 0
    for change in changes:
        if change.change not in ("opened", "resolved"):
            continue
        icon = ":rotating_light:" if change.change == "opened" else ":white_check_mark:"
        text = (
            f"{icon} clash-pipeline alert {change.change}: {change.check_name} "
            f"({change.severity}) for clan {change.clan_tag}: {change.summary}"
        )
        payload = {
            "text": text,
            "alert_id": change.alert_id,
            "clan_tag": change.clan_tag,
            "check": change.check_name,
            "severity": change.severity,
            "status": "open" if change.change == "opened" else "resolved",
        }
        try:
            response = httpx.post(url, json=payload, timeout=timeout)
            response.raise_for_status()
            sent += 1
        except Exception as exc:  # noqa: BLE001 - a webhook never fails the run
            _log.warning(
                "alert webhook failed for alert %s (%s): %s",
                change.alert_id,
                change.change,
                type(exc).__name__,
            )
    return sent
