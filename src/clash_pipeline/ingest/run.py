"""One clan's run: fetch its bundle, land it, each with its checkpoint row.

The one code path for ``clash-pipeline fetch`` (:mod:`clash_pipeline.ingest.fetch`),
the Prefect flow's fetch and land tasks (:mod:`clash_pipeline.orchestration.phases`),
the tests and the benchmarks. Each phase takes a database URL and a
:class:`~clash_pipeline.warehouse.runs.RunRecorder`, writes one
``ops.ingest_logs`` row per attempt (:class:`~clash_pipeline.warehouse.runs.PhaseAttempt`)
and raises what went wrong; what a failure means for the run (fail it, retry the
phase) is the caller's business.

Landing passes the door checks (:mod:`clash_pipeline.ingest.checks`): a body the
marts cannot take is landed with its ``quarantine_reason`` (the staging views
leave it out) and listed in :attr:`LandResult.quarantined`, which makes the run
``partial``; a quarantined clan body with no sound member list to take the roster
from leaves the run without a snapshot (:func:`no_snapshot_error`: it fails).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import psycopg

from clash_pipeline.clash_api import sent
from clash_pipeline.clash_api.client import ClashClient
from clash_pipeline.clash_api.keys import NoApiKeyLeftError
from clash_pipeline.errors import ClashPipelineError, ConfigError, DatabaseError
from clash_pipeline.ingest.bundle import ClanBundle, fetch_clan_bundle
from clash_pipeline.ingest.checks import Problem, check_records, describe
from clash_pipeline.ingest.land import LandResult, failed_records_json, land_bundle
from clash_pipeline.ingest.plan import Planner, PlanPolicy
from clash_pipeline.warehouse.runs import PhaseAttempt, RunRecorder
from clash_pipeline.warehouse.sessions import session

Logger = logging.Logger | logging.LoggerAdapter[logging.Logger]


def fetch_retriable(exc: BaseException) -> bool:
    """Whether another attempt at fetching can help (not for a 4xx: wrong tag or token)."""
    if isinstance(exc, ConfigError):
        return False
    for source in (exc, exc.__context__):
        if isinstance(source, NoApiKeyLeftError):  # the API rejected every key of the run
            return False
        status = getattr(source, "status", None)
        if isinstance(status, int) and 400 <= status < 500 and status != 429:
            return False
    return True


class ClanQuarantinedError(ClashPipelineError):
    """The clan body failed the door checks and nothing replaces it: the run makes no snapshot."""


def land_retriable(exc: BaseException) -> bool:
    """A dropped or refused connection is worth another attempt; a constraint is not."""
    return isinstance(exc, psycopg.OperationalError | DatabaseError)


def failed_requests(bundle: ClanBundle) -> list[dict[str, Any]]:
    """The bundle's failed requests, token-free, for the run's error and the CLI."""
    failed: list[dict[str, Any]] = failed_records_json(bundle.failed).obj["failed"]
    return failed


def dropped_message(
    dropped_requests: int, dropped_players: int, failed: list[dict[str, Any]]
) -> str | None:
    """``2 player profiles could not be fetched (429 after 5 tries)``, or None if nothing was
    dropped; ``failed`` is :func:`failed_requests`' list (for the causes)."""
    if not dropped_requests:
        return None
    parts = []
    if dropped_players:
        parts.append(
            f"{dropped_players} player profile{'s' if dropped_players > 1 else ''} "
            "could not be fetched"
        )
    others = dropped_requests - dropped_players
    if others:
        endpoints = sorted({f["endpoint"] for f in failed if f.get("gave_up")} - {"player"})
        parts.append(
            f"{others} other request{'s' if others > 1 else ''} "
            f"({', '.join(endpoints) or 'see ops.ingest_runs.error'}) could not be fetched"
        )
    causes = sorted(
        {
            f"{f.get('status') or f.get('reason') or 'error'} after {f.get('attempts')} tries"
            for f in failed
            if f.get("gave_up")
        }
    )
    return "; ".join(parts) + (f" ({', '.join(causes)})" if causes else "")


async def fetch_clan(
    open_client: Callable[[], AbstractAsyncContextManager[ClashClient]],
    db_url: str,
    recorder: RunRecorder,
    *,
    attempt: int = 1,
    retries: int = 0,
    log: Logger | None = None,
    full: bool = False,
    policy: PlanPolicy | None = None,
) -> ClanBundle:
    """The recorder's clan from the API, as planned; its ``fetch`` checkpoint row.

    ``open_client`` gives the client for this attempt (the CLI shares one between
    clans; a flow task builds its own, so opening it is part of the attempt).
    The planner (:mod:`clash_pipeline.ingest.plan`) skips what did not change
    since the clan's previous runs in raw; ``full`` fetches everything.
    """
    clan_tag = recorder.clan_tags[0]
    planner = Planner(db_url, clan_tag, policy=policy, full=full)
    async with PhaseAttempt(
        "fetch", [recorder], attempt=attempt, retries=retries, retriable=fetch_retriable, log=log
    ) as phase:
        with sent.counting() as counts:
            try:
                async with open_client() as client:
                    bundle = await fetch_clan_bundle(client, clan_tag, planner=planner)
            finally:  # a failed or cancelled attempt still says what it sent
                phase.failure_measures = {
                    "requests": counts.requests,
                    "retries": counts.retries,
                    "throttled": counts.throttled,
                }
                phase.failure_details = {"keys": counts.keys()}
        failed = bundle.failed
        await phase.arecord(
            recorder,
            rows_in=len(bundle.records),
            requests=len(bundle.records),
            retries=sum(r.retries for r in bundle.records),
            throttled=sum(r.throttled for r in bundle.records),
            details={
                "failed_requests": len(failed),
                "failed_players": sum(1 for r in failed if r.endpoint == "player"),
                "dropped_requests": len(bundle.dropped),
                "dropped_players": bundle.dropped_players,
                "members": bundle.members,  # profiles fetched
                "roster": bundle.roster,  # members listed (fetched or skipped by the planner)
                "keys": counts.keys(),  # per API key: position, fingerprint, counts
                **plan_details(bundle),
            },
        )
    return bundle


def plan_details(bundle: ClanBundle) -> dict[str, Any]:
    """What the planner decided, for the fetch phase's ``ops.ingest_logs.details``."""
    plan = bundle.plan
    return {
        "plan": plan.mode if plan else "full",
        "planned": bundle.planned(),
        "skipped": dict(bundle.skipped),
        "skipped_requests": bundle.skipped_requests,
        "profiles": dict(plan.profiles) if plan else {},
        "reasons": dict(plan.reasons) if plan else {},
    }


def land_clan(
    db_url: str,
    recorder: RunRecorder,
    bundle: ClanBundle,
    *,
    source: str,
    attempt: int = 1,
    retries: int = 0,
    log: Logger | None = None,
) -> LandResult:
    """Land the bundle in ``raw`` in one transaction; its ``land`` checkpoint row.

    Idempotent across attempts: an attempt whose commit made it before its
    connection died is not landed twice.
    """
    found = check_records(bundle.records, bundle.clan_tag)  # the door: what the marts can take
    with PhaseAttempt(
        "land", [recorder], attempt=attempt, retries=retries, retriable=land_retriable, log=log
    ) as phase:
        with session(db_url) as conn:
            result = _already_landed(conn, recorder, bundle) if attempt > 1 else None
            if result is None:
                result = land_bundle(
                    conn,
                    bundle,
                    run_id=recorder.run_id,
                    source=source,
                    started_at=recorder.started_at,
                    quarantined={i: describe(p) for i, p in found.items()},
                )
        _note_quarantined(result, bundle, found)
        phase.record(
            recorder,
            rows_in=result.requests,
            rows_written=result.requests + result.payloads_new,
            rows_changed=result.payloads_new,
            db_time_ms=result.db_time_ms,
            details={
                "bytes_new": result.bytes_new,
                "bytes_received": result.bytes_received,
                "quarantined_bodies": len(result.quarantined),
                "quarantined": result.quarantined,
            },
        )
    return result


def _note_quarantined(
    result: LandResult, bundle: ClanBundle, found: dict[int, list[Problem]]
) -> None:
    """What the door kept out of the marts, and whether the run still has a roster."""
    result.quarantined = [
        {
            "endpoint": bundle.records[i].endpoint,
            "tag": bundle.records[i].resource_tag,
            "codes": [p.code for p in problems],
            "reason": describe(problems),
        }
        for i, problems in sorted(found.items())
    ]
    out = {q["endpoint"] for q in result.quarantined}
    sound_members = any(
        r.endpoint == "clan_members" and r.status == 200 and r.ok for r in bundle.records
    )
    result.no_snapshot = "clan" in out and (not sound_members or "clan_members" in out)


def no_snapshot_error(result: LandResult) -> ClanQuarantinedError | None:
    """The run's error when its clan body was quarantined and no member list replaces it."""
    if not result.no_snapshot:
        return None
    reason = next(q["reason"] for q in result.quarantined if q["endpoint"] == "clan")
    return ClanQuarantinedError(
        f"clan {result.clan_tag}: the clan body failed the door checks ({reason}) and the run "
        "has no sound member list, so it makes no snapshot; its responses are kept in raw",
        hint="see raw.fetch_log.quarantine_reason of the run; the next run fetches the clan again",
    )


def quarantined_message(quarantined: list[dict[str, Any]]) -> str | None:
    """``1 body kept out of the marts: clan #TAG (too_many_members, ...)``, or None."""
    if not quarantined:
        return None
    items = ", ".join(
        f"{q['endpoint']}{' ' + q['tag'] if q.get('tag') else ''} ({', '.join(q['codes'])})"
        for q in quarantined
    )
    n = len(quarantined)
    return (
        f"{n} bod{'ies' if n > 1 else 'y'} failed the door checks and {'were' if n > 1 else 'was'}"
        f" kept out of the marts: {items}; see raw.fetch_log.quarantine_reason"
    )


def _already_landed(
    conn: psycopg.Connection[Any], recorder: RunRecorder, bundle: ClanBundle
) -> LandResult | None:
    """The result of an earlier attempt whose commit made it before its connection died."""
    row = conn.execute(
        "select requests, failed_requests, payloads_new, bytes_received, bytes_new,"
        " skipped_requests from raw.fetch_runs where run_id = %s",
        (recorder.run_id,),
    ).fetchone()
    conn.rollback()
    if row is None:
        return None
    return LandResult(
        run_id=recorder.run_id,
        clan_tag=bundle.clan_tag,
        requests=row[0],
        failed_requests=row[1],
        payloads_new=row[2],
        bytes_received=row[3],
        bytes_new=row[4],
        retries=sum(r.retries for r in bundle.records),
        throttled=sum(r.throttled for r in bundle.records),
        db_time_ms=0,
        skipped_requests=row[5],
    )
