"""Fetch a clan's responses from the Clash API and land them in ``raw``.

Two halves, kept apart so each can be retried and tested on its own:

* :func:`fetch_clan_bundle` asks the API for everything the warehouse needs about
  one clan (clan, members, every member's profile, war log, current war, the CWL
  group and its wars while CWL is on, capital raid seasons) and returns every
  request's :class:`~clash_pipeline.clash_api.client.FetchRecord`, failures included. Only a
  clan that cannot be fetched at all raises; a failed player or optional endpoint
  is just a record with an error.
* :func:`land_bundle` writes one bundle in **one transaction**: the run row, the
  new distinct payloads (content-addressed by the sha256 of their canonical
  JSON, so an unchanged body is stored once) and one fetch-log row per request.
  A failure rolls everything back, so the models never see half a run.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

import psycopg
from psycopg.types.json import Jsonb

from clash_pipeline.clash_api.client import ApiResponse, ClashClient, FetchRecord
from clash_pipeline.clash_api.errors import ClashApiError
from clash_pipeline.clash_api.tags import is_valid_tag, normalize_tag
from clash_pipeline.errors import ClashPipelineError
from clash_pipeline.versions import ingestion_version

# How much history to ask for on each run. Raid seasons change weekly and the
# war log grows by one war every few days; these limits keep one run cheap while
# every value stays in raw across runs.
WARLOG_LIMIT = 20
RAID_SEASONS_LIMIT = 10

# Endpoints without which a run is pointless: a failure aborts the clan's run.
REQUIRED_ENDPOINTS = frozenset({"clan"})

LANDING_ROLE = "clash_ingest"


class ClanUnavailableError(ClashPipelineError):
    """The clan itself could not be fetched, so the run for it stops."""


@dataclass
class ClanBundle:
    """Everything one run fetched for one clan."""

    clan_tag: str
    snapshot_at: datetime
    records: list[FetchRecord] = field(default_factory=list)

    @property
    def failed(self) -> list[FetchRecord]:
        return [r for r in self.records if r.status != 200]


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


def canonical_body(body: bytes) -> tuple[str, str]:
    """Return ``(sha256 hex, canonical JSON text)`` of a response body.

    The hash is taken over the canonical form (sorted keys, no insignificant
    whitespace) so that the same content saved pretty-printed by a backfill file
    and compact by the API is stored once.
    """
    parsed = json.loads(body)
    text = json.dumps(parsed, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest(), text


async def _call(coro) -> tuple[ApiResponse | None, FetchRecord | None]:
    """Await one client call; return its response, or the record of its failure."""
    try:
        return await coro, None
    except ClashApiError as exc:
        return None, exc.record


async def fetch_clan_bundle(
    client: ClashClient,
    clan_tag: str,
    *,
    known_ended_cwl_wars: Iterable[str] = (),
) -> ClanBundle:
    """Fetch everything about one clan; raise :class:`ClanUnavailableError` if the clan fails."""
    tag = normalize_tag(clan_tag, kind="clan tag")
    # The clan-level calls do not need the clan body: start them with it, so the
    # rate limiter's slots are used while the clan request is in flight.
    clan_level = {
        "clan_members": client.get_clan_members(tag),
        "warlog": client.get_warlog(tag, limit=WARLOG_LIMIT),
        "currentwar": client.get_current_war(tag),
        "leaguegroup": client.get_league_group(tag),
        "capitalraidseasons": client.get_capital_raid_seasons(tag, limit=RAID_SEASONS_LIMIT),
    }
    clan_level_tasks = {k: asyncio.ensure_future(_call(c)) for k, c in clan_level.items()}
    try:
        clan = await client.get_clan(tag)
    except ClashApiError as exc:
        for task in clan_level_tasks.values():
            task.cancel()
        await asyncio.gather(*clan_level_tasks.values(), return_exceptions=True)
        raise ClanUnavailableError(
            f"clan {tag} could not be fetched: {exc.message}",
            hint=exc.hint or "check the clan tag, COC_API_TOKEN and COC_API_BASE_URL",
        ) from None
    except BaseException:
        for task in clan_level_tasks.values():
            task.cancel()
        raise
    bundle = ClanBundle(clan_tag=tag, snapshot_at=clan.record.fetched_at, records=[clan.record])

    member_tags = [m.get("tag") for m in clan.data.get("memberList") or []]
    player_tags = [t for t in dict.fromkeys(member_tags) if is_valid_tag(t)]
    player_results = await asyncio.gather(*(_call(client.get_player(t)) for t in player_tags))
    clan_level_results = [await task for task in clan_level_tasks.values()]
    results = clan_level_results + list(player_results)
    by_endpoint = dict(zip(clan_level_tasks, clan_level_results, strict=True))
    for response, failure in results:
        bundle.records.append(response.record if response else failure)

    # A member who joined between the clan call and the members call still gets a profile.
    members, _ = by_endpoint["clan_members"]
    if members is not None:
        late = [
            t
            for t in dict.fromkeys(m.get("tag") for m in members.data.get("items") or [])
            if is_valid_tag(t) and t not in player_tags
        ]
        for response, failure in await asyncio.gather(*(_call(client.get_player(t)) for t in late)):
            bundle.records.append(response.record if response else failure)

    # While CWL is on, fetch the group's wars; ended wars never change, so skip
    # those already landed.
    group, _ = by_endpoint["leaguegroup"]
    if group is not None and group.data.get("state") not in (None, "notInWar"):
        skip = {normalize_tag(t) for t in known_ended_cwl_wars if is_valid_tag(t)}
        war_tags = [
            t
            for rnd in group.data.get("rounds") or []
            for t in rnd.get("warTags") or []
            if t != "#0" and is_valid_tag(t) and normalize_tag(t) not in skip
        ]
        for response, failure in await asyncio.gather(
            *(_call(client.get_cwl_war(t)) for t in dict.fromkeys(war_tags))
        ):
            bundle.records.append(response.record if response else failure)
    return bundle


def known_ended_cwl_wars(conn: psycopg.Connection, clan_tag: str) -> set[str]:
    """War tags of CWL wars already landed in state ``warEnded`` for this clan."""
    rows = conn.execute(
        """
        select distinct f.resource_tag
        from raw.fetch_log as f
        join raw.payloads as p on p.payload_hash = f.payload_hash
        where f.endpoint = 'cwl_war'
          and f.clan_tag = %s
          and p.body ->> 'state' = 'warEnded'
        """,
        (clan_tag,),
    ).fetchall()
    return {r[0] for r in rows}


def _use_landing_role(cur: psycopg.Cursor) -> None:
    """Write as ``clash_ingest`` when this login may, so the grants are what allow it."""
    cur.execute(
        "select exists (select from pg_roles where rolname = %s)"
        " and pg_has_role(current_user, %s, 'member')",
        (LANDING_ROLE, LANDING_ROLE),
    )
    if cur.fetchone()[0]:
        cur.execute(f"set local role {LANDING_ROLE}")


def land_bundle(
    conn: psycopg.Connection,
    bundle: ClanBundle,
    *,
    run_id: uuid.UUID,
    source: str,
    started_at: datetime,
    source_files: dict[int, str] | None = None,
) -> LandResult:
    """Write one clan's bundle in a single transaction and return what was stored.

    ``source_files`` maps an index in ``bundle.records`` to the file it came from
    (backfill only).
    """
    t0 = time.perf_counter()
    hashed: list[tuple[str, str] | None] = []
    for record in bundle.records:
        if record.status == 200 and record.body is not None:
            hashed.append(canonical_body(record.body))
        else:
            hashed.append(None)
    distinct = {h: text for item in hashed if item for h, text in [item]}
    bytes_received = sum(len(r.body) for r in bundle.records if r.body)

    with conn.transaction(), conn.cursor() as cur:
        _use_landing_role(cur)
        cur.execute(
            "select payload_hash from raw.payloads where payload_hash = any(%s)",
            (list(distinct),),
        )
        existing = {row[0] for row in cur.fetchall()}
        new = {h: text for h, text in distinct.items() if h not in existing}
        inserted = 0
        bytes_new = 0
        if new:
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
        failed = [r for r in bundle.records if r.status != 200]
        cur.execute(
            """
            insert into raw.fetch_runs (
                run_id, source, clan_tags, started_at, snapshot_at, requests,
                failed_requests, payloads_new, bytes_received, bytes_new,
                ingestion_version
            ) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
            """,
            (
                run_id,
                source,
                [bundle.clan_tag] if bundle.clan_tag else [],
                started_at,
                bundle.snapshot_at,
                len(bundle.records),
                len(failed),
                inserted,
                bytes_received,
                bytes_new,
                ingestion_version(),
            ),
        )
        with cur.copy(
            """
            copy raw.fetch_log (
                run_id, clan_tag, endpoint, resource_tag, request_path,
                requested_at, fetched_at, http_status, error_reason,
                error_message, duration_ms, attempts, retries, throttled,
                max_age_seconds, payload_hash, source_file
            ) from stdin
            """
        ) as copy:
            for index, (record, item) in enumerate(zip(bundle.records, hashed, strict=True)):
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
                        item[0] if item else None,
                        (source_files or {}).get(index),
                    )
                )
    return LandResult(
        run_id=run_id,
        clan_tag=bundle.clan_tag,
        requests=len(bundle.records),
        failed_requests=len(failed),
        payloads_new=inserted,
        bytes_received=bytes_received,
        bytes_new=bytes_new,
        retries=sum(r.retries for r in bundle.records),
        throttled=sum(r.throttled for r in bundle.records),
        db_time_ms=round((time.perf_counter() - t0) * 1000),
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
        }
        for r in records
        if r.status != 200
    ]
    return Jsonb({"failed": items[:limit], "failed_total": len(items)})
