"""Run bookkeeping in ``ops``: one ``ingest_runs`` row per run, checkpoint rows per phase.

These writes are autocommitted on a short connection of their own, apart from
the data transaction, so that a failed run is still recorded as failed with its
error while its data is rolled back; a recorder survives a dropped connection
and can be rebuilt from plain values in another task or process.
:class:`PhaseAttempt` writes the checkpoint rows of one attempt at a phase, the
same way for every phase, the CLI's and the flow's.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TypedDict, Unpack

import psycopg
from psycopg.types.json import Jsonb

from clash_pipeline import shutdown
from clash_pipeline.errors import ClashPipelineError
from clash_pipeline.versions import ingestion_version
from clash_pipeline.warehouse import leases
from clash_pipeline.warehouse.sessions import session

_log = logging.getLogger("clash_pipeline.runs")


#: The counts of a checkpoint row, in the order of ``ops.ingest_logs``'s columns.
_COUNT_COLUMNS = (
    "rows_in",
    "rows_written",
    "rows_changed",
    "requests",
    "retries",
    "throttled",
    "db_time_ms",
)


class Measures(TypedDict, total=False):
    """What a checkpoint row says a phase did (every column may be left out)."""

    rows_in: int | None
    rows_written: int | None
    rows_changed: int | None
    requests: int | None
    retries: int | None
    throttled: int | None
    db_time_ms: int | None
    duration_ms: int | None  # a step's own time, when it is not now - started_at
    details: dict[str, Any]


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

    Each write opens a short autocommit session on ``db_url`` (reused inside a
    :func:`~clash_pipeline.warehouse.sessions.reuse_sessions` scope).
    """

    db_url: str = field(repr=False)
    kind: str = "ingest"
    clan_tags: list[str] = field(default_factory=list)
    schema_version: str = ""
    trigger: str = "cli"
    run_id: uuid.UUID = field(default_factory=uuid.uuid4)
    flow_run_id: uuid.UUID | None = None
    started_at: datetime = field(default_factory=utc_now)
    parent_run_id: uuid.UUID | None = None

    def _execute(self, query: str, params: tuple[Any, ...]) -> None:
        with session(self.db_url, autocommit=True) as conn:
            conn.execute(query, params)

    def start(self, *, status: str = "running") -> RunRecorder:
        """Insert the run's row; a ``running`` row is covered by this process's lease.

        The lease (:mod:`clash_pipeline.warehouse.leases`) tells other processes
        that this run is alive; :meth:`finish` lets it go.
        """
        summary: dict[str, Any] = {}
        if status == "running":
            summary["owner"] = leases.hold(self.db_url, self.run_id)
        try:
            self._insert(status, summary)
        except BaseException:
            if status == "running":
                leases.let_go(self.db_url, self.run_id)
            raise
        return self

    def _insert(self, status: str, summary: dict[str, Any]) -> None:
        self._execute(
            """
            insert into ops.ingest_runs (
                run_id, flow_run_id, parent_run_id, kind, trigger, clan_tags,
                status, started_at, ingestion_version, schema_version, summary
            ) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
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
                Jsonb(summary),
            ),
        )

    @property
    def clan_tag(self) -> str | None:
        """The clan of a one-clan run (every run but a backfill's), else ``None``."""
        return self.clan_tags[0] if len(self.clan_tags) == 1 else None

    def checkpoint(
        self,
        *,
        phase: str,
        status: str,
        started_at: datetime,
        clan_tag: str | None = None,
        step: str | None = None,
        attempt: int = 1,
        error: dict[str, Any] | None = None,
        **measures: Unpack[Measures],
    ) -> None:
        """One checkpoint row; the duration is now - ``started_at`` unless given."""
        finished_at = utc_now()
        duration_ms = measures.get("duration_ms")
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
                *(measures.get(column) for column in _COUNT_COLUMNS),
                Jsonb(error) if error is not None else None,
                Jsonb(measures.get("details") or {}),
            ),
        )

    def logged_counters(self) -> dict[str, int]:
        """Requests, retries and 429s of every fetch attempt so far, failed ones included.

        The counters of a run that never landed (its fetch failed or was
        cancelled): each fetch attempt's checkpoint row says what it sent.
        """
        with session(self.db_url, autocommit=True) as conn:
            row = conn.execute(
                """
                select coalesce(sum(requests), 0), coalesce(sum(retries), 0),
                    coalesce(sum(throttled), 0)
                from ops.ingest_logs
                where run_id = %s and phase = 'fetch' and step is null
                """,
                (self.run_id,),
            ).fetchone()
        requests, retries, throttled = row if row else (0, 0, 0)
        return {"requests": int(requests), "retries": int(retries), "throttled": int(throttled)}

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
        try:
            self._finish(status, snapshot_at, error, counters or {}, summary, rows_changed)
        finally:
            leases.let_go(self.db_url, self.run_id)

    def _finish(
        self,
        status: str,
        snapshot_at: datetime | None,
        error: dict[str, Any] | None,
        counters: dict[str, int],
        summary: dict[str, Any] | None,
        rows_changed: int | None,
    ) -> None:
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


def _any_error(_exc: BaseException) -> bool:
    return True


class PhaseAttempt:
    """One attempt at one phase of one or more runs, with a checkpoint row per run.

    The body records what it did with :meth:`record` (or :meth:`arecord` in async
    code). When the body raises, every run gets a row for the attempt saying
    ``retrying`` (when another attempt follows: ``attempt <= retries`` and the
    error is ``retriable``) or ``failed``, with the error and
    :attr:`failure_measures`, and the exception goes on; when a signal stopped
    it (:mod:`clash_pipeline.shutdown`), the row says ``cancelled``. Such a
    row that cannot be written is logged, never raised: the phase's own error
    is the one that matters. Use it as ``with`` or ``async with`` (the
    failure rows are then written in a thread, off the event loop).
    """

    def __init__(
        self,
        phase: str,
        recorders: Sequence[RunRecorder],
        *,
        attempt: int = 1,
        retries: int = 0,
        retriable: Callable[[BaseException], bool] = _any_error,
        log: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None,
    ) -> None:
        self.phase = phase
        self.recorders = list(recorders)
        self.attempt = attempt
        self.retries = retries
        self.retriable = retriable
        self.log = log or _log
        self.started_at = utc_now()
        #: Details for the failure rows, set by the body before it raises.
        self.failure_details: dict[str, Any] | None = None
        #: Counts for the failure rows (e.g. the requests sent before the fetch failed).
        self.failure_measures: Measures = {}

    def record(
        self,
        recorder: RunRecorder,
        *,
        status: str = "succeeded",
        step: str | None = None,
        **measures: Unpack[Measures],
    ) -> None:
        """The row of this attempt (or of one ``step`` of it) for one run."""
        recorder.checkpoint(
            phase=self.phase,
            status=status,
            started_at=self.started_at,
            clan_tag=recorder.clan_tag,
            step=step,
            attempt=self.attempt,
            **measures,
        )

    async def arecord(
        self,
        recorder: RunRecorder,
        *,
        status: str = "succeeded",
        step: str | None = None,
        **measures: Unpack[Measures],
    ) -> None:
        """:meth:`record` in a thread, for async code."""
        await asyncio.to_thread(
            functools.partial(self.record, recorder, status=status, step=step, **measures)
        )

    def failure_status(self, exc: BaseException) -> str:
        """``retrying`` when another attempt follows this failure, else ``failed``."""
        return "retrying" if self.attempt <= self.retries and self.retriable(exc) else "failed"

    def _record_failure(self, exc: BaseException) -> None:
        cancel = shutdown.stop_request(exc)
        if cancel is not None:
            status, exc = "cancelled", cancel
        else:
            status = self.failure_status(exc)
        error = error_payload(exc, phase=self.phase)
        measures = self.failure_measures.copy()
        measures["details"] = self.failure_details or {}
        clans = [r.clan_tag for r in self.recorders]
        who = f"clan {clans[0]}: " if len(clans) == 1 and clans[0] else ""
        level = logging.INFO if cancel is not None else logging.WARNING  # the CLI says it once
        self.log.log(level, "%s%s attempt %d %s: %s", who, self.phase, self.attempt, status, exc)
        for recorder in self.recorders:
            try:
                recorder.checkpoint(
                    phase=self.phase,
                    status=status,
                    started_at=self.started_at,
                    clan_tag=recorder.clan_tag,
                    attempt=self.attempt,
                    error=error,
                    **measures,
                )
            except (psycopg.Error, ClashPipelineError) as record_exc:
                self.log.error(
                    "could not record the %s failure of run %s: %s",
                    self.phase,
                    recorder.run_id,
                    record_exc,
                )

    def __enter__(self) -> PhaseAttempt:
        self.started_at = utc_now()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None and (isinstance(exc, Exception) or shutdown.stop_request(exc)):
            self._record_failure(exc)

    async def __aenter__(self) -> PhaseAttempt:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if isinstance(exc, Exception):
            await asyncio.to_thread(self._record_failure, exc)
        elif exc is not None and shutdown.stop_request(exc) is not None:
            self._record_failure(exc)  # the task is being cancelled: no more awaiting
