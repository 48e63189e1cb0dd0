"""Land one clan's bundle in ``raw``: one transaction, content-addressed payloads.

:func:`land_bundle` writes one bundle (see :mod:`clash_pipeline.ingest.bundle`)
in **one transaction**: the run row, the new distinct payloads
(content-addressed by the sha256 of their canonical JSON, so an unchanged body
is stored once) and one fetch-log row per request. A failure rolls everything
back, so the models never see half a run. A body that failed the door checks
(:mod:`clash_pipeline.ingest.checks`) is landed like any other, with its
``quarantine_reason``: kept, but left out by the staging views.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from clash_pipeline.clash_api import json_body
from clash_pipeline.clash_api.client import FetchRecord
from clash_pipeline.ingest.bundle import ClanBundle
from clash_pipeline.versions import ingestion_version

__all__ = [
    "ClanBundle",
    "LandResult",
    "canonical_body",
    "failed_records_json",
    "land_bundle",
]

LANDING_ROLE = "clash_ingest"


@dataclass
class LandResult:
    run_id: uuid.UUID
    clan_tag: str
    requests: int
    failed_requests: int
    payloads_new: int
    bytes_received: int
    bytes_new: int
    retries: int
    throttled: int
    db_time_ms: int
    #: Requests the planner did not make (raw.fetch_runs.skipped_requests).
    skipped_requests: int = 0
    #: Bodies landed but kept out of the marts by the door checks: endpoint, tag, reason.
    quarantined: list[dict[str, Any]] = field(default_factory=list)
    #: The clan body was quarantined and no sound member list replaces it: no snapshot.
    no_snapshot: bool = False

    def counters(self) -> dict[str, int]:
        """The run's counters in ``ops.ingest_runs`` (see :meth:`RunRecorder.finish`)."""
        return {
            "requests": self.requests,
            "failed_requests": self.failed_requests,
            "retries": self.retries,
            "throttled": self.throttled,
            "bytes_received": self.bytes_received,
            "payloads_new": self.payloads_new,
            "bytes_stored": self.bytes_new,
        }


def canonical_body(body: bytes) -> tuple[str, str]:
    """Return ``(sha256 hex, canonical JSON text)`` of a response body.

    The hash is taken over the canonical form (sorted keys, no insignificant
    whitespace) so that the same content saved pretty-printed by a backfill file
    and compact by the API is stored once.
    """
    parsed = json_body.loads(body)
    text = json.dumps(parsed, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest(), text


def _use_landing_role(cur: psycopg.Cursor[Any]) -> None:
    """Write as ``clash_ingest`` when this login may, so the grants are what allow it."""
    cur.execute(
        "select exists (select from pg_roles where rolname = %s)"
        " and pg_has_role(current_user, %s, 'member')",
        (LANDING_ROLE, LANDING_ROLE),
    )
    row = cur.fetchone()
    if row is not None and row[0]:
        cur.execute(f"set local role {LANDING_ROLE}")


def land_bundle(
    conn: psycopg.Connection[Any],
    bundle: ClanBundle,
    *,
    run_id: uuid.UUID,
    source: str,
    started_at: datetime,
    source_files: dict[int, str] | None = None,
    quarantined: dict[int, str] | None = None,
) -> LandResult:
    """Write one clan's bundle in a single transaction and return what was stored.

    ``source_files`` maps an index in ``bundle.records`` to the file it came from
    (backfill only); ``quarantined`` an index to why its body failed the door
    checks (:mod:`clash_pipeline.ingest.checks`): it is landed, marked, and the
    marts leave it out.
    """
    t0 = time.perf_counter()
    hashed = [
        canonical_body(r.body) if r.status == 200 and r.body is not None else None
        for r in bundle.records
    ]
    distinct = {h: text for item in hashed if item for h, text in [item]}
    with conn.transaction(), conn.cursor() as cur:
        _use_landing_role(cur)
        inserted, bytes_new = _insert_new_payloads(cur, distinct)
        result = LandResult(
            run_id=run_id,
            clan_tag=bundle.clan_tag,
            requests=len(bundle.records),
            failed_requests=len(bundle.failed),
            payloads_new=inserted,
            bytes_received=sum(len(r.body) for r in bundle.records if r.body),
            bytes_new=bytes_new,
            retries=sum(r.retries for r in bundle.records),
            throttled=sum(r.throttled for r in bundle.records),
            db_time_ms=0,
            skipped_requests=bundle.skipped_requests,
        )
        _insert_fetch_run(cur, result, bundle, source=source, started_at=started_at)
        _copy_fetch_log(
            cur,
            bundle,
            run_id,
            [h[0] if h else None for h in hashed],
            _Annotations(source_files or {}, quarantined or {}),
        )
    result.db_time_ms = round((time.perf_counter() - t0) * 1000)
    return result


def _insert_new_payloads(cur: psycopg.Cursor[Any], distinct: dict[str, str]) -> tuple[int, int]:
    """Store the bodies raw does not have yet; return how many and their bytes."""
    cur.execute(
        "select payload_hash from raw.payloads where payload_hash = any(%s)",
        (list(distinct),),
    )
    existing = {row[0] for row in cur.fetchall()}
    new = {h: text for h, text in distinct.items() if h not in existing}
    inserted = bytes_new = 0
    if not new:
        return inserted, bytes_new
    cur.executemany(
        "insert into raw.payloads (payload_hash, body, byte_size)"
        " values (%s, %s::jsonb, %s) on conflict (payload_hash) do nothing"
        " returning byte_size",
        [(h, text, len(text.encode("utf-8"))) for h, text in new.items()],
        returning=True,
    )
    while True:
        row = cur.fetchone()
        if row is not None:
            inserted += 1
            bytes_new += row[0]
        if not cur.nextset():
            break
    return inserted, bytes_new


def _insert_fetch_run(
    cur: psycopg.Cursor[Any],
    result: LandResult,
    bundle: ClanBundle,
    *,
    source: str,
    started_at: datetime,
) -> None:
    cur.execute(
        """
        insert into raw.fetch_runs (
            run_id, source, clan_tags, started_at, snapshot_at, requests,
            failed_requests, payloads_new, bytes_received, bytes_new,
            ingestion_version, skipped_requests
        ) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
        """,
        (
            result.run_id,
            source,
            [bundle.clan_tag] if bundle.clan_tag else [],
            started_at,
            bundle.snapshot_at,
            result.requests,
            result.failed_requests,
            result.payloads_new,
            result.bytes_received,
            result.bytes_new,
            ingestion_version(),
            result.skipped_requests,
        ),
    )


@dataclass(frozen=True)
class _Annotations:
    """What a fetch-log row says beyond its request: its file, why it is quarantined."""

    source_files: dict[int, str]
    quarantined: dict[int, str]


def _copy_fetch_log(
    cur: psycopg.Cursor[Any],
    bundle: ClanBundle,
    run_id: uuid.UUID,
    payload_hashes: list[str | None],
    notes: _Annotations,
) -> None:
    """One fetch-log row per request, failures included (their payload hash is null)."""
    with cur.copy(
        """
        copy raw.fetch_log (
            run_id, clan_tag, endpoint, resource_tag, request_path,
            requested_at, fetched_at, http_status, error_reason,
            error_message, duration_ms, attempts, retries, throttled,
            max_age_seconds, payload_hash, source_file, quarantine_reason
        ) from stdin
        """
    ) as copy:
        for index, (record, payload_hash) in enumerate(
            zip(bundle.records, payload_hashes, strict=True)
        ):
            copy.write_row(
                (
                    run_id,
                    bundle.clan_tag,
                    record.endpoint,
                    record.resource_tag,
                    record.path,
                    record.requested_at,
                    record.fetched_at,
                    record.status,
                    record.reason,
                    record.message,
                    round(record.duration_ms) if record.duration_ms is not None else None,
                    record.attempts,
                    record.retries,
                    record.throttled,
                    record.max_age,
                    payload_hash,
                    notes.source_files.get(index),
                    notes.quarantined.get(index) if payload_hash else None,
                )
            )


def failed_records_json(records: Iterable[FetchRecord], limit: int = 20) -> Jsonb:
    """A compact, token-free summary of failed requests for ops error payloads."""
    items = [
        {
            "endpoint": r.endpoint,
            "tag": r.resource_tag,
            "status": r.status,
            "reason": r.reason,
            "error": r.error,
            "attempts": r.attempts,
            "gave_up": r.gave_up,
        }
        for r in records
        if not r.ok
    ]
    return Jsonb({"failed": items[:limit], "failed_total": len(items)})
