"""One clan's responses from the Clash API: the bundle that one run lands.

:func:`fetch_clan_bundle` asks the API for what the warehouse needs about one
clan: the clan and its members always, then what the planner
(:mod:`clash_pipeline.ingest.plan`) decides from the clan body: the members'
profiles, war log, current war, the CWL group and its wars, capital raid
seasons (without a planner: all of them). It returns every request's
:class:`~clash_pipeline.clash_api.client.FetchRecord`, failures included, and
the skipped requests by endpoint. Only a clan that cannot be fetched at all
raises; a failed player or optional endpoint is just a record with an error.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from clash_pipeline.clash_api.client import ApiResponse, ClashClient, FetchRecord
from clash_pipeline.clash_api.errors import ClashApiError
from clash_pipeline.clash_api.tags import is_valid_tag, normalize_tag
from clash_pipeline.errors import ClashPipelineError
from clash_pipeline.ingest.checks import check_body
from clash_pipeline.ingest.plan import FetchPlan, Planner, full_plan

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
    #: What the planner decided (None: a bundle not fetched by this module, e.g. a backfill).
    plan: FetchPlan | None = None
    #: Requests not made, by endpoint (unchanged profiles, wars not on, ended CWL wars...).
    skipped: Counter[str] = field(default_factory=Counter)
    #: Members on the clan's roster (their profiles fetched or not); None: not known here.
    roster: int | None = None

    @property
    def skipped_requests(self) -> int:
        return sum(self.skipped.values())

    def planned(self) -> dict[str, int]:
        """The requests made, by endpoint."""
        return dict(Counter(r.endpoint for r in self.records))

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
    planner: Planner | None = None,
) -> ClanBundle:
    """Fetch one clan; raise :class:`ClanUnavailableError` if the clan fails.

    The clan and its member list always; the rest as the ``planner`` decides from the clan
    body and the clan's state in raw (:mod:`clash_pipeline.ingest.plan`); without a planner,
    everything.
    """
    tag = normalize_tag(clan_tag, kind="clan tag")
    # The member list does not need the clan body: start it with it.
    members_task = asyncio.ensure_future(_call(client.get_clan_members(tag)))
    clan = await _fetch_clan(client, tag, [members_task])
    bundle = ClanBundle(clan_tag=tag, snapshot_at=clan.record.fetched_at, records=[clan.record])
    try:
        entries = await _roster_entries(clan, members_task)
        player_tags = [
            str(t) for t in dict.fromkeys(e.get("tag") for e in entries) if is_valid_tag(t)
        ]
        plan = (
            await planner.plan(clan.data, entries, clan.record.fetched_at)
            if planner is not None
            else full_plan([normalize_tag(t) for t in player_tags])
        )
    except BaseException:
        members_task.cancel()
        await asyncio.gather(members_task, return_exceptions=True)
        raise
    bundle.plan = plan
    bundle.skipped = Counter(plan.skipped)
    clan_level = {
        e: asyncio.ensure_future(_call(_CLAN_LEVEL_CALLS[e](client, tag))) for e in plan.endpoints
    }
    players = await asyncio.gather(*(_call(client.get_player(t)) for t in plan.players))
    members = await members_task
    by_endpoint = {k: await task for k, task in clan_level.items()}
    bundle.records.extend(_record(r) for r in [members, *by_endpoint.values(), *players])
    late = await _late_members(client, _data(members), player_tags)
    bundle.records.extend(late)
    bundle.roster = len(player_tags) + len(late)
    if "leaguegroup" in by_endpoint:
        bundle.records.extend(
            await _cwl_wars(client, _data(by_endpoint["leaguegroup"]), planner, bundle)
        )
    return bundle


_CLAN_LEVEL_CALLS: dict[str, Callable[[ClashClient, str], Coroutine[Any, Any, ApiResponse]]] = {
    "warlog": lambda client, tag: client.get_warlog(tag, limit=WARLOG_LIMIT),
    "currentwar": lambda client, tag: client.get_current_war(tag),
    "leaguegroup": lambda client, tag: client.get_league_group(tag),
    "capitalraidseasons": lambda client, tag: client.get_capital_raid_seasons(
        tag, limit=RAID_SEASONS_LIMIT
    ),
}


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


async def _roster_entries(
    clan: ApiResponse, members: asyncio.Future[ApiResponse | FetchRecord]
) -> list[dict[str, Any]]:
    """Whose profiles to consider: the clan body's memberList, unless the door checks turn that
    body away (e.g. two lists merged into one); then the member list's, when it is sound."""
    at, tag = clan.record.fetched_at, clan.record.resource_tag
    listed = [m for m in clan.data.get("memberList") or [] if isinstance(m, dict)]
    if not check_body("clan", clan.data, clan_tag=tag, fetched_at=at):
        return listed
    items = _data(await members)
    if items is None or check_body("clan_members", items, clan_tag=tag, fetched_at=at):
        return listed
    return [m for m in items.get("items") or [] if isinstance(m, dict)]


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
    client: ClashClient, group: dict[str, Any] | None, planner: Planner | None, bundle: ClanBundle
) -> list[FetchRecord]:
    """While CWL is on, the group's wars; ended wars never change, so those landed are skipped."""
    if group is None or group.get("state") in (None, "notInWar"):
        return []
    war_tags = list(
        dict.fromkeys(
            normalize_tag(t)
            for rnd in group.get("rounds") or []
            for t in rnd.get("warTags") or []
            if t != "#0" and is_valid_tag(t)
        )
    )
    ended = await planner.ended_cwl_wars(war_tags) if planner is not None and war_tags else set()
    if ended:
        bundle.skipped["cwl_war"] += len(ended)
    return [
        _record(r)
        for r in await asyncio.gather(
            *(_call(client.get_cwl_war(t)) for t in war_tags if t not in ended)
        )
    ]
