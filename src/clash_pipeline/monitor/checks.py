"""The monitor's checks: what each one reads, expects and calls an anomaly.

Every check is one GX query asset that yields one row per clan (``clan_tag``)
or per member (``subject``), one expectation suite and one validation
definition. Bounds are expectation parameters (``{"$PARAMETER": name}``),
filled in at run time by :func:`expectation_parameters`: the settings, and the
history-dependent duration bounds computed in SQL (k × p95 of the last 20
successful runs, never below the floor).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from clash_pipeline.settings import Settings
from clash_pipeline.warehouse.connect import one_row

#: The marts the checks read, unqualified: the monitor's connection sets ``search_path`` to
#: ``marts`` (the published build) or, in a pipeline run, ``marts_build`` (the build it judges).
HEALTH = "ingest_run_health"
#: A run counts for the checks once it has landed and has not failed (a ``partial`` run
#: landed and built without what was dropped after the retries: it counts, and
#: failed_player_fetches says what it lacks).
_LIVE = "status in ('succeeded', 'partial', 'running') and is_landed"
#: Runs of history behind the duration bounds, and how few are too few to judge.
DURATION_HISTORY_RUNS = 20
DURATION_MIN_HISTORY = 3
#: A bound that no value reaches (no history yet: the duration check passes).
NO_BOUND = 1e15
MAX_MEMBERS = 50


@dataclass(frozen=True)
class Expect:
    """One expectation: column within [min, max] (bounds may be parameter names)."""

    column: str
    min_value: float | str | None = None
    max_value: float | str | None = None
    strict_max: bool = False
    #: what an alert says the observed value is
    label: str = ""


@dataclass(frozen=True)
class Check:
    name: str
    severity: str
    title: str
    sql: str
    expectations: tuple[Expect, ...]

    @property
    def query(self) -> str:
        """The asset's query (GX wants it to start with SELECT)."""
        return f"select * from ({self.sql.strip()}\n) as check_rows"

    @property
    def suite_name(self) -> str:
        return f"clash_{self.name}"

    @property
    def asset_name(self) -> str:
        return f"check_{self.name}"


CHECKS: tuple[Check, ...] = (
    Check(
        name="missing_members",
        severity="warning",
        title="roster dropped since the previous snapshot",
        sql=f"""
with ranked as (
    select clan_tag, roster_size,
        row_number() over (partition by clan_tag order by started_at desc) as recency
    from {HEALTH}
    where {_LIVE} and roster_size is not null
),
pairs as (
    select clan_tag,
        max(roster_size) filter (where recency = 2) as previous_roster_size,
        max(roster_size) filter (where recency = 1) as roster_size
    from ranked where recency <= 2
    group by clan_tag having count(*) = 2
)
select clan_tag, clan_tag as subject, previous_roster_size, roster_size,
    greatest(previous_roster_size - roster_size, 0) as members_lost,
    greatest(previous_roster_size - roster_size, 0)::float8
        / nullif(previous_roster_size, 0) as lost_share
from pairs
""",
        expectations=(
            Expect("members_lost", max_value="roster_drop_members", strict_max=True),
            Expect("lost_share", max_value="roster_drop_share", strict_max=True),
        ),
    ),
    Check(
        name="zero_deltas",
        severity="warning",
        title="no member stat changed over the last runs",
        sql=f"""
with ranked as (
    select clan_tag, members_changed,
        row_number() over (partition by clan_tag order by started_at desc) as recency
    from {HEALTH}
    where {_LIVE} and members_changed is not null
)
select clan_tag, clan_tag as subject,
    coalesce(min(recency) filter (where members_changed > 0) - 1, count(*))
        as unchanged_runs
from ranked
group by clan_tag
""",
        expectations=(Expect("unchanged_runs", max_value="zero_delta_runs", strict_max=True),),
    ),
    Check(
        name="long_duration",
        severity="warning",
        title="run or phase longer than k x p95 of recent runs",
        sql=f"""
select distinct on (clan_tag)
    clan_tag, clan_tag as subject, run_id::text as run_id,
    duration_ms, fetch_ms, land_ms, transform_ms
from {HEALTH}
where {_LIVE}
order by clan_tag, started_at desc
""",
        expectations=(
            Expect("duration_ms", max_value="max_duration_ms"),
            Expect("fetch_ms", max_value="max_fetch_ms"),
            Expect("land_ms", max_value="max_land_ms"),
            Expect("transform_ms", max_value="max_transform_ms"),
        ),
    ),
    Check(
        name="failed_player_fetches",
        severity="warning",
        title="member profiles that could not be fetched",
        sql=f"""
select distinct on (clan_tag)
    clan_tag, clan_tag as subject, run_id::text as run_id,
    failed_player_fetches, roster_size,
    coalesce(failed_player_fetches, 0)::float8 / nullif(roster_size, 0)
        as failed_share,
    coalesce(dropped_player_fetches, 0) as dropped_player_fetches
from {HEALTH}
where {_LIVE}
order by clan_tag, started_at desc
""",
        # any share of missing profiles (404s: players who left), and profiles given up
        # after the last retry (429, 5xx, timeouts: the run is partial) beyond a count
        expectations=(
            Expect("failed_share", max_value="max_failed_player_share"),
            Expect("dropped_player_fetches", max_value="max_dropped_players"),
        ),
    ),
    Check(
        name="freshness",
        severity="critical",
        title="no successful run for too long",
        # a run still going that has landed counts (its own monitor phase is running)
        sql=f"""
select clan_tag, clan_tag as subject,
    max(coalesce(finished_at, started_at)) filter (
        where status in ('succeeded', 'partial') or (status = 'running' and is_landed)
    ) as last_success_at,
    (extract(epoch from now() - coalesce(
        max(coalesce(finished_at, started_at)) filter (
            where status in ('succeeded', 'partial') or (status = 'running' and is_landed)
        ),
        min(started_at)
    )) / 3600.0)::float8 as hours_since_success
from {HEALTH}
group by clan_tag
""",
        expectations=(Expect("hours_since_success", max_value="freshness_hours"),),
    ),
    Check(
        name="out_of_range",
        severity="critical",
        title="values outside their possible range",
        sql="""
select clan_tag, player_tag as subject, donations, donations_received,
    trophies, builder_base_trophies, town_hall_level,
    count(*) over (partition by clan_tag) as member_count
from members
where is_current
""",
        expectations=(
            Expect("donations", min_value=0),
            Expect("donations_received", min_value=0),
            Expect("trophies", min_value=0),
            Expect("builder_base_trophies", min_value=0),
            Expect("town_hall_level", min_value=1, max_value="max_town_hall"),
            Expect("member_count", max_value=MAX_MEMBERS),
        ),
    ),
    Check(
        name="quarantined_bodies",
        severity="warning",
        title="responses kept out of the marts by the door checks",
        # the latest landed run, failed ones included (a quarantined clan body fails its run)
        sql=f"""
select distinct on (clan_tag)
    clan_tag, clan_tag as subject, run_id::text as run_id,
    coalesce(quarantined_bodies, 0) as quarantined_bodies
from {HEALTH}
where is_landed
order by clan_tag, started_at desc
""",
        expectations=(Expect("quarantined_bodies", max_value=0),),
    ),
)

CHECKS_BY_NAME = {check.name: check for check in CHECKS}

#: How many past runs there are to judge by, and their phases' p95 durations.
_DURATION_P95S_SQL = """
select count(*),
    percentile_cont(0.95) within group (order by duration_ms),
    percentile_cont(0.95) within group (order by fetch_ms),
    percentile_cont(0.95) within group (order by land_ms),
    percentile_cont(0.95) within group (order by transform_ms)
from (
    select * from ingest_run_health
    where status = 'succeeded' and is_landed and not (run_id::text = any(%s))
    order by started_at desc
    limit %s
) history
"""


def expectation_parameters(
    conn: psycopg.Connection[Any], settings: Settings, checked_run_ids: list[str]
) -> dict[str, float]:
    """The values of every ``$PARAMETER``: settings, and bounds computed from history.

    A duration bound is max(floor, k × p95) over the last 20 successful runs
    that are not among ``checked_run_ids`` (the runs being judged); with
    fewer than 3 such runs there is no bound yet.
    """
    params: dict[str, float] = {
        "roster_drop_members": float(settings.clash_monitor_roster_drop_members),
        "roster_drop_share": settings.clash_monitor_roster_drop_share,
        "zero_delta_runs": float(settings.clash_monitor_zero_delta_runs),
        "max_failed_player_share": settings.clash_monitor_failed_player_share,
        "max_dropped_players": float(settings.clash_monitor_dropped_players),
        "freshness_hours": settings.clash_monitor_freshness_hours,
    }
    runs, *p95s = one_row(
        conn.execute(_DURATION_P95S_SQL, (checked_run_ids, DURATION_HISTORY_RUNS))
    )
    floor_ms = settings.clash_monitor_duration_floor_seconds * 1000
    k = settings.clash_monitor_duration_factor
    for name, p95 in zip(("duration", "fetch", "land", "transform"), p95s, strict=True):
        if runs < DURATION_MIN_HISTORY or p95 is None:
            params[f"max_{name}_ms"] = NO_BOUND
        else:
            params[f"max_{name}_ms"] = round(max(floor_ms, k * float(p95)), 1)
    params["duration_history_runs"] = float(runs)
    (top,) = one_row(
        conn.execute("select max(town_hall_level) from reference.unit_caps where village = 'home'")
    )
    params["max_town_hall"] = float(top or 18)
    return params
