"""One clan's responses from the Clash API: the bundle that one run lands.

:func:`fetch_clan_bundle` asks the API for everything the warehouse needs about
one clan (clan, members, every member's profile, war log, current war, the CWL
group and its wars while CWL is on, capital raid seasons) and returns every
request's :class:`~clash_pipeline.clash_api.client.FetchRecord`, failures
included. Only a clan that cannot be fetched at all raises; a failed player or
optional endpoint is just a record with an error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from clash_pipeline.clash_api.client import ApiResponse, ClashClient, FetchRecord
from clash_pipeline.clash_api.errors import ClashApiError
from clash_pipeline.clash_api.tags import is_valid_tag, normalize_tag
from clash_pipeline.errors import ClashPipelineError
from clash_pipeline.ingest.checks import check_body

# How much history to ask for on each run. Raid seasons change weekly and the
# war log grows by one war every few days; these limits keep one run cheap while
# every value stays in raw across runs.
WARLOG_LIMIT = 20
RAID_SEASONS_LIMIT = 10


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
        """Requests that failed (a 2xx whose body was broken included)."""
        return [r for r in self.records if not r.ok]

    @property
    def dropped(self) -> list[FetchRecord]:
        """Requests given up after the last retry of a transient failure (429, 5xx, timeout,
        broken body): data the run should have had. A 404 or a private war log is an answer."""
        return [r for r in self.records if r.gave_up]

    @property
    def dropped_players(self) -> int:
        """Member profiles given up after the last retry."""
        return sum(1 for r in self.dropped if r.endpoint == "player")

    @property
    def members(self) -> int:
        """Member profiles fetched (one ``player`` request per member)."""
        return sum(1 for r in self.records if r.endpoint == "player")


async def _call(coro: Coroutine[Any, Any, ApiResponse]) -> ApiResponse | FetchRecord:
    """Await one client call; return its response, or the record of its failure."""
    try:
        return await coro
    except ClashApiError as exc:
        return exc.record


def _record(result: ApiResponse | FetchRecord) -> FetchRecord:
    return result.record if isinstance(result, ApiResponse) else result


def _data(result: ApiResponse | FetchRecord) -> dict[str, Any] | None:
    return result.data if isinstance(result, ApiResponse) else None


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
    clan = await _fetch_clan(client, tag, list(clan_level_tasks.values()))
    bundle = ClanBundle(clan_tag=tag, snapshot_at=clan.record.fetched_at, records=[clan.record])

    member_tags = await _roster_tags(clan, clan_level_tasks["clan_members"])
    player_tags = [t for t in dict.fromkeys(member_tags) if is_valid_tag(t)]
    players = await asyncio.gather(*(_call(client.get_player(t)) for t in player_tags))
    by_endpoint = {k: await task for k, task in clan_level_tasks.items()}
    bundle.records.extend(_record(r) for r in [*by_endpoint.values(), *players])
    bundle.records.extend(
        await _late_members(client, _data(by_endpoint["clan_members"]), player_tags)
    )
    bundle.records.extend(
        await _cwl_wars(client, _data(by_endpoint["leaguegroup"]), known_ended_cwl_wars)
    )
    return bundle


async def _fetch_clan(
    client: ClashClient, tag: str, clan_level: list[asyncio.Future[ApiResponse | FetchRecord]]
) -> ApiResponse:
    """The clan itself; without it the run stops, and the clan-level calls are cancelled."""
    try:
        return await client.get_clan(tag)
    except ClashApiError as exc:
        for task in clan_level:
            task.cancel()
        await asyncio.gather(*clan_level, return_exceptions=True)
        raise ClanUnavailableError(
            f"clan {tag} could not be fetched: {exc.message}",
            hint=exc.hint or "check the clan tag, COC_API_TOKEN and COC_API_BASE_URL",
        ) from None
    except BaseException:
        for task in clan_level:
            task.cancel()
        raise


async def _roster_tags(
    clan: ApiResponse, members: asyncio.Future[ApiResponse | FetchRecord]
) -> list[Any]:
    """Whose profiles to fetch: the clan body's memberList, unless the door checks turn that
    body away (e.g. two lists merged into one); then the member list's, when it is sound."""
    at, tag = clan.record.fetched_at, clan.record.resource_tag
    listed = [m.get("tag") for m in clan.data.get("memberList") or [] if isinstance(m, dict)]
    if not check_body("clan", clan.data, clan_tag=tag, fetched_at=at):
        return listed
    items = _data(await members)
    if items is None or check_body("clan_members", items, clan_tag=tag, fetched_at=at):
        return listed
    return [m.get("tag") for m in items.get("items") or [] if isinstance(m, dict)]


async def _late_members(
    client: ClashClient, members: dict[str, Any] | None, player_tags: list[str]
) -> list[FetchRecord]:
    """A member who joined between the clan call and the members call still gets a profile."""
    if members is None:
        return []
    late = [
        t
        for t in dict.fromkeys(m.get("tag") for m in members.get("items") or [])
        if is_valid_tag(t) and t not in player_tags
    ]
    return [_record(r) for r in await asyncio.gather(*(_call(client.get_player(t)) for t in late))]


async def _cwl_wars(
    client: ClashClient, group: dict[str, Any] | None, known_ended: Iterable[str]
) -> list[FetchRecord]:
    """While CWL is on, the group's wars; ended wars never change, so those landed are skipped."""
    if group is None or group.get("state") in (None, "notInWar"):
        return []
    skip = {normalize_tag(t) for t in known_ended if is_valid_tag(t)}
    war_tags = [
        t
        for rnd in group.get("rounds") or []
        for t in rnd.get("warTags") or []
        if t != "#0" and is_valid_tag(t) and normalize_tag(t) not in skip
    ]
    return [
        _record(r)
        for r in await asyncio.gather(
            *(_call(client.get_cwl_war(t)) for t in dict.fromkeys(war_tags))
        )
    ]


def known_ended_cwl_wars(conn: psycopg.Connection[Any], clan_tag: str) -> set[str]:
    """War tags of CWL wars already landed in state ``warEnded`` for this clan.

    The clan's CWL fetches are found through fetch_log's index first, and each
    distinct body is then read by its key: a plain join lets the planner scan
    (and de-TOAST) every payload in raw, which grows with the whole history.
    """
    rows = conn.execute(
        """
        with cwl as materialized (
            select distinct resource_tag, payload_hash
            from raw.fetch_log
            where endpoint = 'cwl_war' and clan_tag = %s and payload_hash is not null
                and quarantine_reason is null
        )
        select distinct cwl.resource_tag
        from cwl
        where (
            select p.body ->> 'state' from raw.payloads as p
            where p.payload_hash = cwl.payload_hash
        ) = 'warEnded'
        """,
        (clan_tag,),
    ).fetchall()
    return {r[0] for r in rows}
