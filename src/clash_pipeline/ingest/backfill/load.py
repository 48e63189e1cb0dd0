"""Landing a planned backfill: one run per (clan, fetch time), through ``land_bundle``.

Each run lands in its own transaction under an advisory lock, after checking
what ``raw.fetch_log`` already holds: a body already loaded is skipped (so a
backfill run twice adds nothing), and a different body for the same resource
at the same fetch time is a conflict, quarantined rather than guessed.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

import psycopg

from clash_pipeline.clash_api.client import FetchRecord
from clash_pipeline.errors import DatabaseError
from clash_pipeline.ingest.backfill.model import (
    BackfillFile,
    BackfillPlan,
    BackfillResult,
    FileProblem,
)
from clash_pipeline.ingest.backfill.plan import plan_backfill
from clash_pipeline.ingest.backfill.quarantine import write_quarantine
from clash_pipeline.ingest.backfill.read import parse_file
from clash_pipeline.ingest.land import ClanBundle, land_bundle
from clash_pipeline.warehouse.connect import connect, scrub

SOURCE = "backfill"

# Serialises backfills of one database: the "already loaded?" check and the
# landing of a run happen under it, so two backfills never load a file twice.
_LOCK_KEY = int.from_bytes(
    hashlib.sha256(b"clash-pipeline backfill").digest()[:8], "big", signed=True
)

_EXISTING_SQL = """
    select k.i, f.payload_hash, f.http_status, f.error_reason, f.clan_tag
    from unnest(%s::text[], %s::text[], %s::timestamptz[])
        with ordinality as k (endpoint, resource_tag, fetched_at, i)
    join raw.fetch_log as f
        on f.endpoint = k.endpoint
        and f.fetched_at = k.fetched_at
        and (
            f.resource_tag = k.resource_tag
            or (f.resource_tag is null and k.resource_tag is null)
        )
"""


# The clans whose responses are already in raw: the requesting clan of every
# clan-scoped row (a player's row names the clan in its profile: not counted).
_WAREHOUSE_CLANS_SQL = """
    select distinct clan_tag from raw.fetch_log
    where clan_tag is not null and endpoint <> all(%s::text[])
"""
_NOT_CLAN_SCOPED = ["player", "leagues", "leaguetiers"]


def warehouse_clans(db_url: str) -> frozenset[str]:
    """The clans already in the warehouse's raw data (read only), for :func:`plan_backfill`."""
    try:
        with connect(db_url, autocommit=True) as conn:
            rows = conn.execute(_WAREHOUSE_CLANS_SQL, (_NOT_CLAN_SCOPED,)).fetchall()
    except psycopg.Error as exc:
        detail = scrub(" ".join(str(exc).split()), db_url)
        raise DatabaseError(
            f"backfill cannot read which clans the warehouse holds: {detail[:300]}",
            hint="check that the database is reachable (DATABASE_URL) and run the backfill again",
        ) from None
    return frozenset(tag for (tag,) in rows)


class _Loaded(NamedTuple):
    """A fetch-log row already in raw for the same (endpoint, resource tag, fetch time)."""

    payload_hash: str | None
    status: int | None
    reason: str | None
    clan_tag: str | None


def backfill(
    db_url: str,
    path: Path | str,
    *,
    fetched_at: datetime | None = None,
    manifest: Path | str | None = None,
    quarantine_root: Path | None = None,
    now: datetime | None = None,
) -> BackfillResult:
    """Load every file under ``path`` into ``raw`` (one run per clan and fetch time).

    Bad files are quarantined (copied under ``quarantine_root`` when given, with
    ``reasons.json``) and everything readable is loaded; already loaded bodies
    are skipped, and responses of endpoints the pipeline does not store are
    listed and left in place. ``now`` (default: the wall clock) names the
    quarantine folder and is the time no fetch time may exceed. Raises
    :class:`BackfillError` when nothing can start.
    """
    plan = plan_backfill(
        path,
        fetched_at=fetched_at,
        manifest=manifest,
        known_clans=lambda: warehouse_clans(db_url),
        now=now,
    )
    return load_plan(db_url, plan, quarantine_root=quarantine_root, now=now)


def load_plan(
    db_url: str,
    plan: BackfillPlan,
    *,
    quarantine_root: Path | None = None,
    now: datetime | None = None,
) -> BackfillResult:
    """Land a :class:`BackfillPlan` (see :func:`backfill`)."""
    result = BackfillResult(
        root=plan.root,
        files_read=plan.files_read,
        loaded=0,
        errors_loaded=0,
        skipped=len(plan.duplicates),
        quarantined=list(plan.quarantined),
        runs=[],
        payloads_new=0,
        warnings=list(plan.warnings),
        not_stored=list(plan.not_stored),
    )
    try:
        with connect(db_url, autocommit=True) as conn:
            for (clan_tag, when), items in plan.runs().items():
                _land_run(conn, clan_tag, when, items, result)
    except psycopg.Error as exc:
        detail = scrub(" ".join(str(exc).split()), db_url)
        raise DatabaseError(
            f"backfill stopped: {detail[:300]}",
            hint=f"{len(result.runs)} run(s) were landed before this; fix the cause and run "
            "the backfill again (what is loaded is skipped)",
        ) from None
    finally:
        result.quarantined.sort(key=lambda q: q.relpath)
        if quarantine_root is not None and result.quarantined:
            result.quarantine_dir = write_quarantine(
                quarantine_root, plan.root, result.quarantined, now=now
            )
    return result


def _land_run(
    conn: psycopg.Connection,
    clan_tag: str | None,
    when: datetime,
    items: list[BackfillFile],
    result: BackfillResult,
) -> None:
    """Land the files of one run that are not loaded yet, in one transaction."""
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        new, records = _new_records(_existing(conn, items), items, when, result)
        if not records:
            return
        # A clanless player or a league list lands in a run without a clan, which
        # land_bundle stores as NULL; its annotation only names the fetch case.
        bundle = ClanBundle(clan_tag=clan_tag, snapshot_at=when, records=records)  # type: ignore[arg-type]
        landed = land_bundle(
            conn,
            bundle,
            run_id=uuid.uuid4(),
            source=SOURCE,
            started_at=when,
            source_files={i: item.relpath for i, item in enumerate(new)},
        )
    result.runs.append(landed)
    result.loaded += len(new)
    result.errors_loaded += sum(1 for item in new if item.is_error)
    result.payloads_new += landed.payloads_new


def _new_records(
    existing: dict[int, list[_Loaded]],
    items: list[BackfillFile],
    when: datetime,
    result: BackfillResult,
) -> tuple[list[BackfillFile], list[FetchRecord]]:
    """The files to land and their records; loaded ones counted as skipped, bad ones quarantined."""
    new: list[BackfillFile] = []
    records: list[FetchRecord] = []
    for index, item in enumerate(items):
        loaded = existing.get(index, [])
        if _is_loaded(item, loaded):
            result.skipped += 1
            continue
        try:
            _check_no_conflict(item, loaded, when)
            records.append(_record(item))
        except FileProblem as problem:
            result.quarantined.append(item.quarantined(problem.reason))
            continue
        new.append(item)
    return new, records


def _is_loaded(item: BackfillFile, loaded: list[_Loaded]) -> bool:
    if item.is_error:
        return any(
            row.payload_hash is None
            and row.status == item.status
            and row.reason == item.reason
            and row.clan_tag == item.clan_tag
            for row in loaded
        )
    return any(
        row.payload_hash == item.payload_hash for row in loaded if row.payload_hash is not None
    )


def _check_no_conflict(item: BackfillFile, loaded: list[_Loaded], when: datetime) -> None:
    """A different body already loaded for this resource and time: the file can't land."""
    if item.is_error or not item.identifies_resource:
        return
    if any(row.payload_hash is not None for row in loaded):
        raise FileProblem(
            f"conflict: a different {item.endpoint} body for "
            f"{item.resource_tag or 'the same list'} fetched at "
            f"{when:%Y-%m-%dT%H:%M:%SZ} is already loaded; give this file "
            "its own fetch time in a manifest"
        )


def _record(item: BackfillFile) -> FetchRecord:
    """Re-read the file and build its fetch record; the content must not have changed."""
    parsed = parse_file(item.path)
    if parsed.file_sha256 != item.file_sha256:
        raise FileProblem("the file changed while the backfill was running")
    body = None
    if not item.is_error:
        assert parsed.canonical is not None
        body = parsed.canonical[1].encode("utf-8")
    return FetchRecord(
        endpoint=item.endpoint,
        resource_tag=item.resource_tag,
        path=item.request_path,
        status=item.status,
        reason=item.reason,
        message=item.message,
        requested_at=item.fetched_at,
        fetched_at=item.fetched_at,
        duration_ms=None,  # type: ignore[arg-type]  # unknown for a saved response
        attempts=1,
        retries=0,
        throttled=0,
        max_age=item.max_age,
        body=body,
        error=f"HTTP {item.status} {item.reason or ''}".strip() if item.is_error else None,
    )


def _existing(conn: psycopg.Connection, items: list[BackfillFile]) -> dict[int, list[_Loaded]]:
    """Fetch-log rows already in raw for each item's (endpoint, resource tag, fetch time)."""
    rows = conn.execute(
        _EXISTING_SQL,
        (
            [i.endpoint for i in items],
            [i.resource_tag for i in items],
            [i.fetched_at for i in items],
        ),
    ).fetchall()
    found: dict[int, list[_Loaded]] = defaultdict(list)
    for index, *row in rows:
        found[int(index) - 1].append(_Loaded(*row))
    return found
