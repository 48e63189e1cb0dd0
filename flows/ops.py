"""Run bookkeeping in ``ops``: one ``ingest_runs`` row per run, checkpoint rows per phase.

These writes are autocommitted on their own connection, apart from the data
transaction, so that a failed run is still recorded as failed with its error
while its data is rolled back.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from flows.versions import ingestion_version


def utc_now() -> datetime:
    return datetime.now(UTC)


def error_payload(exc: BaseException) -> dict[str, Any]:
    """A JSON-able error description: type, message and hint, never a traceback or token."""
    payload: dict[str, Any] = {"type": type(exc).__name__, "message": getattr(exc, "message", None)}
    if payload["message"] is None:
        payload["message"] = str(exc)
    hint = getattr(exc, "hint", None)
    if hint:
        payload["hint"] = hint
    for attr in ("status", "reason", "endpoint", "resource_tag"):
        value = getattr(exc, attr, None)
        if value is not None:
            payload[attr] = value
    return payload


@dataclass
class RunRecorder:
    """Writes one run's ``ops.ingest_runs`` row and its ``ops.ingest_logs`` checkpoints."""

    conn: psycopg.Connection
    kind: str
    clan_tags: list[str]
    schema_version: str
    trigger: str = "cli"
    run_id: uuid.UUID = field(default_factory=uuid.uuid4)
    flow_run_id: uuid.UUID | None = None
    started_at: datetime = field(default_factory=utc_now)

    def start(self) -> RunRecorder:
        self.conn.execute(
            """
            insert into ops.ingest_runs (
                run_id, flow_run_id, kind, trigger, clan_tags, status,
                started_at, ingestion_version, schema_version
            ) values (%s, %s, %s, %s, %s, 'running', %s, %s, %s)
            """,
            (
                self.run_id,
                self.flow_run_id,
                self.kind,
                self.trigger,
                self.clan_tags,
                self.started_at,
                ingestion_version(),
                self.schema_version,
            ),
        )
        return self

    def checkpoint(
        self,
        *,
        phase: str,
        status: str,
        started_at: datetime,
        clan_tag: str | None = None,
        step: str | None = None,
        attempt: int = 1,
        rows_in: int | None = None,
        rows_written: int | None = None,
        rows_changed: int | None = None,
        requests: int | None = None,
        retries: int | None = None,
        throttled: int | None = None,
        db_time_ms: int | None = None,
        error: dict[str, Any] | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        finished_at = utc_now()
        self.conn.execute(
            """
            insert into ops.ingest_logs (
                run_id, clan_tag, phase, step, status, attempt, started_at,
                finished_at, duration_ms, rows_in, rows_written, rows_changed,
                requests, retries, throttled, db_time_ms, error, details
            ) values (
                %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,
                %s, %s
            )
            """,
            (
                self.run_id,
                clan_tag,
                phase,
                step,
                status,
                attempt,
                started_at,
                finished_at,
                round((finished_at - started_at).total_seconds() * 1000),
                rows_in,
                rows_written,
                rows_changed,
                requests,
                retries,
                throttled,
                db_time_ms,
                Jsonb(error) if error is not None else None,
                Jsonb(details or {}),
            ),
        )

    def finish(
        self,
        status: str,
        *,
        snapshot_at: datetime | None = None,
        error: dict[str, Any] | None = None,
        counters: dict[str, int] | None = None,
        summary: dict[str, Any] | None = None,
    ) -> None:
        counters = counters or {}
        finished_at = utc_now()
        self.conn.execute(
            """
            update ops.ingest_runs set
                status = %s,
                finished_at = %s,
                duration_ms = %s,
                snapshot_at = coalesce(%s, snapshot_at),
                requests = %s,
                failed_requests = %s,
                retries = %s,
                throttled = %s,
                bytes_received = %s,
                payloads_new = %s,
                bytes_stored = %s,
                error = %s,
                summary = %s
            where run_id = %s
            """,
            (
                status,
                finished_at,
                round((finished_at - self.started_at).total_seconds() * 1000),
                snapshot_at,
                counters.get("requests", 0),
                counters.get("failed_requests", 0),
                counters.get("retries", 0),
                counters.get("throttled", 0),
                counters.get("bytes_received", 0),
                counters.get("payloads_new", 0),
                counters.get("bytes_stored", 0),
                Jsonb(error) if error is not None else None,
                Jsonb(summary or {}),
                self.run_id,
            ),
        )
