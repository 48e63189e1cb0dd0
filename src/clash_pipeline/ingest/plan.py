"""Change-driven polling: which requests one clan's run makes, from what changed since the last.

A run always fetches the clan (its body carries the member list) and the members
list. :func:`plan_fetch` decides everything else from that clan body, its fetch
time (the target's clock: simulated time against the simulator) and the clan's
:class:`PreviousState` in raw (:func:`read_previous_state`):

- a member's **profile** when the member is new (not in the previous clan body),
  when an entry field of :data:`MEMBER_FIELDS` changed (not ``clanRank``: it moves when
  others change), when the stored profile is older than ``COC_PROFILE_MAX_AGE_HOURS``
  or was never fetched, or when the last fetch of it failed;
- **currentwar** while the last known state was ``preparation`` or ``inWar``, else every
  ``COC_WAR_CHECK_HOURS`` (below a regular war's 23 h preparation day, so no war is missed);
- **warlog** when a war ended since its last fetch (the clan's warWins + warTies + warLosses
  changed, or currentwar went ``warEnded``), and at least daily;
- **leaguegroup** (and its CWL wars) on CWL days (the 1st to the 12th, UTC) or while the last
  group seen was on, unless this month's group was already seen ``ended``;
- **capitalraidseasons** during raid weekends (Friday 07:00 to Monday 07:00 UTC) and a few
  hours after, and at least weekly;
- a request whose last attempt failed (429, 5xx, timeout, broken or quarantined body) again.

The first run of a clan (no previous clan body in raw) and ``full`` fetch everything.
Every skipped request is counted by endpoint (:attr:`FetchPlan.skipped`), for the
fetch phase's ``ops.ingest_logs.details`` and ``raw.fetch_runs.skipped_requests``.
The state is read with index probes only (``fetch_log_endpoint_tag_idx``, then
payloads by key), so its cost does not grow with the history in raw.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, LiteralString

import psycopg

from clash_pipeline.clash_api.tags import is_valid_tag, normalize_tag

if TYPE_CHECKING:
    from clash_pipeline.settings import Settings

#: Member-list fields whose change means the member played: their profile is fetched again.
MEMBER_FIELDS = (
    "trophies",
    "donations",
    "donationsReceived",
    "expLevel",
    "townHallLevel",
    "builderBaseTrophies",
    "role",
)
#: Member-list objects compared by their ``id``.
MEMBER_ID_FIELDS = ("league", "leagueTier")
#: The clan-level requests the planner decides (clan and members are always fetched).
CLAN_LEVEL = ("warlog", "currentwar", "leaguegroup", "capitalraidseasons")
#: What a skipped request of each endpoint is, in words.
SKIPPED_WORDS = {
    "player": "unchanged member profiles",
    "warlog": "war log (no war ended)",
    "currentwar": "current war (not at war)",
    "leaguegroup": "CWL group (not CWL days)",
    "capitalraidseasons": "raid seasons (no raid weekend)",
    "cwl_war": "ended CWL wars",
}

Mode = Literal["full", "first", "changes"]


@dataclass(frozen=True)
class PlanPolicy:
    """How often what is fetched when nothing says it changed (see the module doc)."""

    profile_max_age: timedelta = timedelta(hours=24)
    war_check_every: timedelta = timedelta(hours=6)
    warlog_max_age: timedelta = timedelta(hours=24)
    raid_seasons_max_age: timedelta = timedelta(days=7)
    #: How long after a raid weekend its seasons are still fetched (final results).
    raid_after: timedelta = timedelta(hours=6)
    #: CWL days: the 1st to this day of the month (UTC), a margin around the game's 1st-11th.
    cwl_last_day: int = 12
    #: An hourly schedule's jitter: "24 h old" is due at 23 h 50 min.
    slack: timedelta = timedelta(minutes=10)
    #: COC_FETCH_PLAN=full: every run fetches everything, as ``--full``.
    always_full: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> PlanPolicy:
        return cls(
            profile_max_age=timedelta(hours=settings.coc_profile_max_age_hours),
            war_check_every=timedelta(hours=settings.coc_war_check_hours),
            always_full=settings.coc_fetch_plan == "full",
        )

    def due(self, last: datetime | None, every: timedelta, now: datetime) -> bool:
        return last is None or now - last + self.slack >= every


@dataclass(frozen=True)
class EndpointState:
    """The last requests of one clan-level endpoint before now."""

    #: The last answer: a usable body, or 400/403/404 (a private war log is an answer).
    answered_at: datetime | None = None
    #: The last attempt got no answer (429, 5xx, timeout, a broken or quarantined body).
    failed: bool = False
    #: ``state`` (and ``season``) of the last usable body.
    state: str | None = None
    season: str | None = None
    #: The run of the last answer (two fetches of one run are not "since" each other).
    run_id: uuid.UUID | None = None


@dataclass(frozen=True)
class PlayerState:
    """A member's last usable profile, and whether the last attempt at it failed."""

    fetched_at: datetime | None = None
    failed: bool = False


@dataclass
class PreviousState:
    """What raw knows about the clan before now."""

    clan_fetched_at: datetime
    #: The previous clan body's members, by tag.
    members: dict[str, dict[str, Any]]
    endpoints: dict[str, EndpointState] = field(default_factory=dict)
    players: dict[str, PlayerState] = field(default_factory=dict)
    #: warWins + warTies + warLosses of the clan body landed with the last war log answer.
    war_record_at_warlog: int | None = None


@dataclass
class FetchPlan:
    """The requests of one run beyond the clan and its members, and the skipped ones."""

    mode: Mode
    players: list[str]
    endpoints: tuple[str, ...]
    #: Why each clan-level endpoint is fetched or skipped.
    reasons: dict[str, str] = field(default_factory=dict)
    #: Member profiles by reason: new, changed, unfetched, retry, stale, unchanged (skipped),
    #: or first/full.
    profiles: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)


def full_plan(player_tags: list[str], mode: Mode = "full") -> FetchPlan:
    """Everything: the first run of a clan, ``--full``, or no planner."""
    return FetchPlan(
        mode=mode,
        players=list(player_tags),
        endpoints=CLAN_LEVEL,
        reasons=dict.fromkeys(CLAN_LEVEL, mode),
        profiles=Counter({mode: len(player_tags)}) if player_tags else Counter(),
    )


def plan_fetch(
    clan: Mapping[str, Any],
    entries: Iterable[Mapping[str, Any]],
    now: datetime,
    previous: PreviousState | None,
    policy: PlanPolicy | None = None,
    *,
    full: bool = False,
) -> FetchPlan:
    """The run's requests from the clan body and roster ``entries`` fetched at ``now``."""
    policy = policy or PlanPolicy()
    full = full or policy.always_full
    current = _entries_by_tag(entries)
    if full or previous is None:
        return full_plan(list(current), "full" if full else "first")
    plan = FetchPlan(mode="changes", players=[], endpoints=())
    for tag, entry in current.items():
        reason = _profile_reason(tag, entry, now, previous, policy)
        plan.profiles[reason] += 1
        if reason == "unchanged":
            plan.skipped["player"] += 1
        else:
            plan.players.append(tag)
    deciders = {
        "warlog": _warlog,
        "currentwar": _currentwar,
        "leaguegroup": _leaguegroup,
        "capitalraidseasons": _raid_seasons,
    }
    wanted = []
    for endpoint, decide in deciders.items():
        fetch, why = decide(clan, now, previous, policy)
        plan.reasons[endpoint] = why
        if fetch:
            wanted.append(endpoint)
        else:
            plan.skipped[endpoint] += 1
    plan.endpoints = tuple(wanted)
    return plan


def skipped_message(skipped: Mapping[str, int], requests: int) -> str | None:
    """``the planner skipped 41 of 52 requests: 38 unchanged member profiles, ...``."""
    total = sum(skipped.values())
    if not total:
        return None
    order = [*SKIPPED_WORDS, *sorted(set(skipped) - set(SKIPPED_WORDS))]
    parts = ", ".join(
        f"{skipped[e]} {SKIPPED_WORDS.get(e, e)}" for e in order if skipped.get(e, 0) > 0
    )
    return f"the planner skipped {total} of {total + requests} requests: {parts}"


# ------------------------------------------------------------------------------ decisions


def _entries_by_tag(entries: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    by_tag: dict[str, Mapping[str, Any]] = {}
    for entry in entries:
        tag = entry.get("tag")
        if is_valid_tag(tag):
            by_tag.setdefault(normalize_tag(tag), entry)
    return by_tag


def _member_key(entry: Mapping[str, Any]) -> tuple[Any, ...]:
    ids = [
        obj.get("id") if isinstance(obj := entry.get(name), Mapping) else None
        for name in MEMBER_ID_FIELDS
    ]
    return (*(entry.get(name) for name in MEMBER_FIELDS), *ids)


def _profile_reason(
    tag: str,
    entry: Mapping[str, Any],
    now: datetime,
    previous: PreviousState,
    policy: PlanPolicy,
) -> str:
    before = previous.members.get(tag)
    if before is None:
        return "new"
    if _member_key(entry) != _member_key(before):
        return "changed"
    state = previous.players.get(tag, PlayerState())
    if state.failed:
        return "retry"
    if state.fetched_at is None:
        return "unfetched"
    if policy.due(state.fetched_at, policy.profile_max_age, now):
        return "stale"
    return "unchanged"


Decision = tuple[bool, str]


def _unanswered(state: EndpointState) -> str | None:
    if state.answered_at is None:
        return "never answered"
    if state.failed:
        return "the last attempt failed"
    return None


def _currentwar(
    clan: Mapping[str, Any], now: datetime, previous: PreviousState, policy: PlanPolicy
) -> Decision:
    state = previous.endpoints.get("currentwar", EndpointState())
    if why := _unanswered(state):
        return True, why
    if state.state in ("preparation", "inWar"):
        return True, f"last state {state.state}"
    if policy.due(state.answered_at, policy.war_check_every, now):
        return True, f"checked every {_hours(policy.war_check_every)}"
    return False, f"last state {state.state or 'unknown'}"


def war_record(clan: Mapping[str, Any]) -> int | None:
    """warWins + warTies + warLosses (ties and losses are absent when the war log is private)."""
    values = [clan.get(k) for k in ("warWins", "warTies", "warLosses")]
    numbers = [v for v in values if isinstance(v, int) and not isinstance(v, bool)]
    return sum(numbers) if numbers else None


def _warlog(
    clan: Mapping[str, Any], now: datetime, previous: PreviousState, policy: PlanPolicy
) -> Decision:
    state = previous.endpoints.get("warlog", EndpointState())
    if why := _unanswered(state):
        return True, why
    if war_record(clan) != previous.war_record_at_warlog:
        return True, "the war record changed"
    war = previous.endpoints.get("currentwar", EndpointState())
    if (
        war.state == "warEnded"
        and war.answered_at is not None
        and state.answered_at is not None
        and war.answered_at > state.answered_at
        and war.run_id != state.run_id
    ):
        return True, "a war ended"
    if policy.due(state.answered_at, policy.warlog_max_age, now):
        return True, f"fetched every {_hours(policy.warlog_max_age)}"
    return False, "no war ended"


def _leaguegroup(
    clan: Mapping[str, Any], now: datetime, previous: PreviousState, policy: PlanPolicy
) -> Decision:
    state = previous.endpoints.get("leaguegroup", EndpointState())
    if state.state in ("preparation", "inWar"):
        return True, f"CWL {state.state}"
    if now.astimezone(UTC).day > policy.cwl_last_day:
        return False, "not CWL days"
    if why := _unanswered(state):
        return True, why
    if state.state == "ended" and state.season == f"{now.astimezone(UTC):%Y-%m}":
        return False, "this season's group ended"
    return True, "CWL days"


def in_raid_weekend(now: datetime, after: timedelta = timedelta(0)) -> bool:
    """Whether ``now`` is in a raid weekend (Friday 07:00 to Monday 07:00 UTC) or ``after`` it."""
    t = now.astimezone(UTC) - timedelta(hours=7)
    friday = (t - timedelta(days=(t.weekday() - 4) % 7)).date()
    start = datetime(friday.year, friday.month, friday.day, 7, tzinfo=UTC)
    return start <= now < start + timedelta(days=3) + after


def _raid_seasons(
    clan: Mapping[str, Any], now: datetime, previous: PreviousState, policy: PlanPolicy
) -> Decision:
    state = previous.endpoints.get("capitalraidseasons", EndpointState())
    if why := _unanswered(state):
        return True, why
    if in_raid_weekend(now, policy.raid_after):
        return True, "raid weekend"
    if policy.due(state.answered_at, policy.raid_seasons_max_age, now):
        return True, f"fetched every {_hours(policy.raid_seasons_max_age)}"
    return False, "no raid weekend"


def _hours(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 3600:g} h"


# ----------------------------------------------------------------------------- the state

#: How far after now a row still counts as previous: the clocks of workers on several machines
#: (and two simulator processes started at the same simulated time) disagree a little.
CLOCK_SKEW = timedelta(minutes=5)

#: A fetch-log row whose body the marts use.
_USABLE = "f.payload_hash is not null and f.quarantine_reason is null"
#: A fetch-log row that is an answer: a usable body, or 400/403/404.
_ANSWER = f"(({_USABLE}) or f.http_status in (400, 403, 404))"

#: The previous clan body: one backward probe of fetch_log_endpoint_tag_idx, then its payload.
CLAN_QUERY: LiteralString = f"""
    with last as materialized (
        select f.fetched_at, f.payload_hash from raw.fetch_log as f
        where f.endpoint = 'clan' and f.resource_tag = %(clan)s and f.fetched_at <= %(now)s
            and {_USABLE}
        order by f.fetched_at desc
        limit 1
    )
    select last.fetched_at, (
        select p.body -> 'memberList' from raw.payloads as p
        where p.payload_hash = last.payload_hash
    )
    from last
"""

#: Each clan-level endpoint's last attempt and last answer (two probes each).
ENDPOINTS_QUERY: LiteralString = f"""
    select e.endpoint, a.failed, ok.fetched_at, ok.run_id,
        (select p.body ->> 'state' from raw.payloads as p where p.payload_hash = ok.payload_hash),
        (select p.body ->> 'season' from raw.payloads as p where p.payload_hash = ok.payload_hash)
    from unnest(%(endpoints)s::text[]) as e (endpoint)
    left join lateral (
        select not {_ANSWER} as failed from raw.fetch_log as f
        where f.endpoint = e.endpoint and f.resource_tag = %(clan)s and f.fetched_at <= %(now)s
        order by f.fetched_at desc
        limit 1
    ) as a on true
    left join lateral (
        select f.fetched_at, f.run_id, f.payload_hash from raw.fetch_log as f
        where f.endpoint = e.endpoint and f.resource_tag = %(clan)s and f.fetched_at <= %(now)s
            and {_ANSWER}
        order by f.fetched_at desc
        limit 1
    ) as ok on true
"""

#: The clan body landed by one run (fetch_log_run_idx), for its war record.
RUN_CLAN_QUERY: LiteralString = """
    select (
        select jsonb_build_object(
            'warWins', p.body -> 'warWins', 'warTies', p.body -> 'warTies',
            'warLosses', p.body -> 'warLosses'
        )
        from raw.payloads as p where p.payload_hash = f.payload_hash
    )
    from raw.fetch_log as f
    where f.run_id = %(run_id)s and f.endpoint = 'clan' and f.payload_hash is not null
    limit 1
"""

#: Each member's last attempt and last usable profile (two probes per member).
PLAYERS_QUERY: LiteralString = f"""
    select t.tag, a.failed, ok.fetched_at
    from unnest(%(tags)s::text[]) as t (tag)
    left join lateral (
        select not ({_USABLE}) as failed from raw.fetch_log as f
        where f.endpoint = 'player' and f.resource_tag = t.tag and f.fetched_at <= %(now)s
        order by f.fetched_at desc
        limit 1
    ) as a on true
    left join lateral (
        select f.fetched_at from raw.fetch_log as f
        where f.endpoint = 'player' and f.resource_tag = t.tag and f.fetched_at <= %(now)s
            and {_USABLE}
        order by f.fetched_at desc
        limit 1
    ) as ok on true
"""

#: Which of a league group's war tags this clan already landed ended (a probe per tag).
ENDED_CWL_WARS_QUERY: LiteralString = f"""
    select t.tag
    from unnest(%(tags)s::text[]) as t (tag)
    where exists (
        select from raw.fetch_log as f
        where f.endpoint = 'cwl_war' and f.resource_tag = t.tag and f.clan_tag = %(clan)s
            and {_USABLE}
            and (
                select p.body ->> 'state' from raw.payloads as p
                where p.payload_hash = f.payload_hash
            ) = 'warEnded'
    )
"""


def read_previous_state(
    conn: psycopg.Connection[Any], clan_tag: str, now: datetime, member_tags: list[str]
) -> PreviousState | None:
    """The clan's state in raw before ``now`` (give or take :data:`CLOCK_SKEW`: rows of a
    later time, e.g. a backfill of newer files, are not "previous"); None when raw has no
    usable clan body yet (the clan's first run)."""
    params: dict[str, Any] = {"clan": clan_tag, "now": now + CLOCK_SKEW}
    row = conn.execute(CLAN_QUERY, params).fetchone()
    if row is None:
        return None
    members = {
        normalize_tag(m["tag"]): m
        for m in row[1] or []
        if isinstance(m, dict) and is_valid_tag(m.get("tag"))
    }
    state = PreviousState(clan_fetched_at=row[0], members=members)
    for endpoint, failed, answered_at, run_id, body_state, season in conn.execute(
        ENDPOINTS_QUERY, params | {"endpoints": list(CLAN_LEVEL)}
    ):
        state.endpoints[endpoint] = EndpointState(
            answered_at=answered_at,
            failed=bool(failed),
            state=body_state,
            season=season,
            run_id=run_id,
        )
    warlog_run = state.endpoints["warlog"].run_id
    if warlog_run is not None:
        record = conn.execute(RUN_CLAN_QUERY, {"run_id": warlog_run}).fetchone()
        state.war_record_at_warlog = war_record(record[0]) if record and record[0] else None
    for tag, failed, fetched_at in conn.execute(PLAYERS_QUERY, params | {"tags": member_tags}):
        state.players[tag] = PlayerState(fetched_at=fetched_at, failed=bool(failed))
    return state


def ended_cwl_wars(conn: psycopg.Connection[Any], clan_tag: str, war_tags: list[str]) -> set[str]:
    """Those of ``war_tags`` this clan already landed in state ``warEnded`` (they never change)."""
    if not war_tags:
        return set()
    rows = conn.execute(ENDED_CWL_WARS_QUERY, {"clan": clan_tag, "tags": war_tags}).fetchall()
    return {r[0] for r in rows}


class Planner:
    """The plan of one clan's runs against a warehouse (its state read in a thread)."""

    def __init__(
        self, db_url: str, clan_tag: str, *, policy: PlanPolicy | None = None, full: bool = False
    ) -> None:
        self.db_url = db_url
        self.clan_tag = normalize_tag(clan_tag, kind="clan tag")
        self.policy = policy or PlanPolicy()
        self.full = full or self.policy.always_full

    async def plan(
        self, clan: Mapping[str, Any], entries: Sequence[Mapping[str, Any]], now: datetime
    ) -> FetchPlan:
        if self.full:
            return plan_fetch(clan, entries, now, None, self.policy, full=True)
        tags = list(_entries_by_tag(entries))
        previous = await asyncio.to_thread(self._read, now, tags)
        return plan_fetch(clan, entries, now, previous, self.policy)

    async def ended_cwl_wars(self, war_tags: list[str]) -> set[str]:
        return await asyncio.to_thread(self._ended, war_tags)

    def _read(self, now: datetime, tags: list[str]) -> PreviousState | None:
        from clash_pipeline.warehouse.sessions import session

        with session(self.db_url, autocommit=True) as conn:
            return read_previous_state(conn, self.clan_tag, now, tags)

    def _ended(self, war_tags: list[str]) -> set[str]:
        from clash_pipeline.warehouse.sessions import session

        with session(self.db_url, autocommit=True) as conn:
            return ended_cwl_wars(conn, self.clan_tag, war_tags)
