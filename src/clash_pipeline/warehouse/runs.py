"""Run bookkeeping in ``ops``: one ``ingest_runs`` row per run, checkpoint rows per phase.

These writes are autocommitted on their own connection, apart from the data
transaction, so that a failed run is still recorded as failed with its error
while its data is rolled back. A recorder built with a database URL instead of
a connection opens a short connection per write, so it survives a dropped
connection (and can be rebuilt from plain values in another task or process).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from clash_pipeline.versions import ingestion_version
from clash_pipeline.warehouse.connect import connect


def utc_now() -> datetime:
    return datetime.now(UTC)


def error_payload(exc: BaseException, *, phase: str | None = None) -> dict[str, Any]:
    """A JSON-able error description: type, message and hint, never a traceback or token.

    HTTP details (status, reason, endpoint, tag) come from the exception or, when
    it was raised while handling an API error (``raise ... from None`` keeps it
    as ``__context__``), from that error.
    """
    payload: dict[str, Any] = {"type": type(exc).__name__}
    if phase:
        payload["phase"] = phase
    message = getattr(exc, "message", None)
    payload["message"] = message if isinstance(message, str) else str(exc)
    hint = getattr(exc, "hint", None)
    if hint:
        payload["hint"] = hint
    sources = [exc, exc.__context__] if exc.__context__ is not None else [exc]
    for attr in ("status", "reason", "endpoint", "resource_tag"):
        for source in sources:
            value = getattr(source, attr, None)
            if value is not None and not callable(value):
                payload[attr] = value
                break
    return payload


@dataclass
class RunRecorder:
    """Writes one run's ``ops.ingest_runs`` row and its ``ops.ingest_logs`` checkpoints.

    Give it an autocommit connection (``conn``), or a database URL (``db_url``)
    to open a connection per write.
    """

    conn: psycopg.Connection | None = field(default=None, repr=False)
    kind: str = "ingest"
    clan_tags: list[str] = field(default_factory=list)
    schema_version: str = ""
    trigger: str = "cli"
    run_id: uuid.UUID = field(default_factory=uuid.uuid4)
    flow_run_id: uuid.UUID | None = None
    started_at: datetime = field(default_factory=utc_now)
    db_url: str | None = field(default=None, repr=False)
    parent_run_id: uuid.UUID | None = None

    def __post_init__(self) -> None:
        if self.conn is None and self.db_url is None:
            raise ValueError("RunRecorder needs a connection or a database URL")

    def _execute(self, query: str, params: tuple[Any, ...]) -> None:
        if self.conn is not None:
            self.conn.execute(query, params)
            return
        assert self.db_url is not None
        with connect(self.db_url, autocommit=True) as conn:
            conn.execute(query, params)

    def start(self, *, status: str = "running") -> RunRecorder:
        self._execute(
            """
            insert into ops.ingest_runs (
                run_id, flow_run_id, parent_run_id, kind, trigger, clan_tags,
                status, started_at, ingestion_version, schema_version
            ) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
            """,
            (
                self.run_id,
                self.flow_run_id,
                self.parent_run_id,
                self.kind,
                self.trigger,
                self.clan_tags,
                status,
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
        finished_at: datetime | None = None,
        duration_ms: int | None = None,
    ) -> None:
        """One checkpoint row; the duration is ``finished_at - started_at`` unless given."""
        finished_at = finished_at or utc_now()
        if duration_ms is None:
            duration_ms = round((finished_at - started_at).total_seconds() * 1000)
        self._execute(
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
                duration_ms,
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
        rows_changed: int | None = None,
    ) -> None:
        counters = counters or {}
        finished_at = utc_now()
        self._execute(
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
                rows_changed = %s,
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
                rows_changed,
                Jsonb(error) if error is not None else None,
                Jsonb(summary or {}),
                self.run_id,
            ),
        )
