"""Every query the roster API runs, in one place, on a read-only connection pool.

The API reads the marts and the ops tables, nothing else, and computes nothing
beyond what they hold: ``marts.roster`` has each member's latest metrics,
``marts.roster_snapshots`` each snapshot's versions. Every connection of the
pool switches to the ``clash_readonly`` role (``set role``) and to read-only
transactions before it is handed out, so a bug (or a crafted query) in the API
cannot write: PostgreSQL refuses with a permission error.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from clash_pipeline.errors import DatabaseError
from clash_pipeline.project import metric_catalogue_csv
from clash_pipeline.warehouse.connect import (
    CONNECT_TIMEOUT_SECONDS,
    connect_hint,
    describe_target,
    scrub,
)

READONLY_ROLE = "clash_readonly"
STATEMENT_TIMEOUT_MS = 10_000
NO_MARTS_HINT = (
    "build the warehouse first: uv run clash-pipeline demo (simulated) or clash-pipeline run"
)


def metric_catalogue(path: Path | None = None) -> dict[str, list[str]]:
    """Metric name -> its windows, from the dbt seed (empty when the file is absent)."""
    path = path or metric_catalogue_csv()
    if not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8") as handle:
        return {
            row["metric_name"]: row["metric_windows"].split("|") for row in csv.DictReader(handle)
        }


def roster_metric_columns(catalogue: dict[str, list[str]]) -> dict[str, tuple[str, str]]:
    """The roster mart's metric columns: column -> (metric, window).

    The same naming as the macro ``metrics_roster_columns``: a ``latest`` metric
    by its name, a windowed one as ``<metric>_<window>``.
    """
    columns: dict[str, tuple[str, str]] = {}
    for name, windows in catalogue.items():
        for window in windows:
            columns[name if window == "latest" else f"{name}_{window}"] = (name, window)
    return columns


# Columns of member_snapshot_stats a member's history shows (the JSON flag
# columns are left out: they are large and the roster has the latest ones).
HISTORY_COLUMNS = (
    "snapshot_id",
    "snapshot_at",
    "name",
    "role",
    "has_profile",
    "league_id",
    "league_name",
    "league_tier_id",
    "league_tier_name",
    "town_hall_level",
    "exp_level",
    "trophies",
    "best_trophies",
    "battle_mode_trophies",
    "ranked_trophies",
    "builder_base_trophies",
    "donations",
    "donations_received",
    "war_stars",
    "capital_contributions",
    "barbarian_king_level",
    "archer_queen_level",
    "grand_warden_level",
    "royal_champion_level",
    "minion_prince_level",
    "troops_owned",
    "spells_owned",
    "siege_machines_owned",
    "pets_owned",
    "equipment_owned",
    "profile_fetched_at",
)

SNAPSHOT_COLUMNS = (
    "snapshot_id",
    "clan_tag",
    "clan_name",
    "run_id",
    "payload_version",
    "snapshot_version",
    "ingestion_version",
    "schema_version",
    "clan_level",
    "clan_points",
    "member_count",
    "profile_count",
    "total_donations",
    "total_donations_received",
    "total_trophies",
    "fetched_at",
    "snapshot_at",
)


# The roster's order (documented in the roster route and README): league tier
# first (no tier ranks as Unranked), ranked trophies within the tier, then the
# battle-mode trophies of Unranked members (and of everyone before the 2025
# split); trophies of two scales are never compared with each other.
ROSTER_MEMBERS_SQL = """
    select * from marts.roster
    where clan_tag = %s and is_current
    order by
        coalesce(league_tier_rank, 0) desc,
        ranked_trophies desc nulls last,
        battle_mode_trophies desc nulls last,
        player_tag
"""

LATEST_VERSION_SQL = """
    select payload_version from marts.roster_snapshots
    where clan_tag = %s order by snapshot_at desc limit 1
"""


class Warehouse:
    """A small pool of read-only connections and the API's queries."""

    def __init__(self, url: str, *, max_size: int = 8, role: str = READONLY_ROLE) -> None:
        self.url = url
        self.role = role
        self.pool = ConnectionPool(
            url,
            min_size=1,
            max_size=max_size,
            open=False,
            configure=self._configure,
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_SECONDS},
            timeout=15,
            name="clash-api",
        )
        # the revalidation path (one lookup per conditional request) runs on
        # the event loop, without a thread hop
        self.async_pool = AsyncConnectionPool(
            url,
            min_size=1,
            max_size=max(2, max_size // 2),
            open=False,
            configure=self._configure_async,
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_SECONDS},
            timeout=15,
            name="clash-api-async",
        )

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(f"set role {self.role}")
        conn.execute("set default_transaction_read_only = on")
        conn.execute(f"set statement_timeout = {STATEMENT_TIMEOUT_MS}")

    async def _configure_async(self, conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.execute(f"set role {self.role}")
        await conn.execute("set default_transaction_read_only = on")
        await conn.execute(f"set statement_timeout = {STATEMENT_TIMEOUT_MS}")

    async def open_async(self) -> None:
        """Open the event loop's pool (call from the running loop, after :meth:`open`)."""
        try:
            await self.async_pool.open(wait=True, timeout=CONNECT_TIMEOUT_SECONDS + 5)
        except PoolTimeout:
            raise self._connect_problem() or DatabaseError(
                f"cannot open connections to PostgreSQL at {describe_target(self.url)}",
                hint=connect_hint(self.url),
            ) from None

    async def close_async(self) -> None:
        await self.async_pool.close()

    async def latest_version_async(self, clan_tag: str) -> str | None:
        """:meth:`latest_version` on the event loop's pool."""
        async with self.async_pool.connection() as conn:
            cursor = await conn.execute(LATEST_VERSION_SQL, (clan_tag,))
            row = await cursor.fetchone()
        return row[0] if row else None

    def open(self) -> None:
        """Open the pool and check that the marts are there and readable."""
        problem = self._connect_problem()  # one direct attempt: a clear error, fast
        if problem is not None:
            raise problem
        try:
            self.pool.open(wait=True, timeout=CONNECT_TIMEOUT_SECONDS + 5)
        except PoolTimeout:
            self.pool.close()
            raise self._connect_problem() or DatabaseError(
                f"cannot open connections to PostgreSQL at {describe_target(self.url)}",
                hint=connect_hint(self.url),
            ) from None
        self.check()

    def _connect_problem(self) -> DatabaseError | None:
        try:
            with psycopg.connect(self.url, connect_timeout=CONNECT_TIMEOUT_SECONDS) as conn:
                conn.execute(f"set role {self.role}")
        except psycopg.errors.InsufficientPrivilege:
            return DatabaseError(
                f"the user of DATABASE_URL may not act as {self.role}",
                hint=f"grant {self.role} to that user, or apply the migrations "
                "(uv run clash-pipeline db migrate)",
            )
        except psycopg.errors.InvalidParameterValue:
            return DatabaseError(
                f"the role {self.role} does not exist in this database server",
                hint="apply the migrations: uv run clash-pipeline db migrate",
            )
        except psycopg.Error as exc:
            reason = scrub(" ".join(str(exc).split()), self.url)
            return DatabaseError(
                f"cannot connect to PostgreSQL at {describe_target(self.url)}: {reason}",
                hint=connect_hint(self.url),
            )
        return None

    def check(self) -> None:
        """Raise DatabaseError unless the marts the API reads exist and are readable."""
        with self.connection() as conn:
            missing = conn.execute(
                """
                select name from unnest(array[
                    'marts.roster', 'marts.roster_snapshots', 'marts.member_snapshot_stats',
                    'marts.metrics', 'marts.members']) as name
                where to_regclass(name) is null
                """
            ).fetchall()
            if missing:
                raise DatabaseError(
                    "the warehouse has no marts yet (missing "
                    + ", ".join(row["name"] for row in missing)
                    + ")",
                    hint=NO_MARTS_HINT,
                )
            try:
                conn.execute("select 1 from marts.roster_snapshots limit 1")
                conn.execute("select 1 from ops.ingest_runs limit 1")
            except psycopg.errors.InsufficientPrivilege as exc:
                raise DatabaseError(
                    f"{self.role} cannot read the marts: {exc.diag.message_primary}",
                    hint="apply the migrations (uv run clash-pipeline db migrate) and rebuild "
                    "(uv run clash-pipeline build)",
                ) from None

    def close(self) -> None:
        self.pool.close()

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        with self.pool.connection() as conn:
            conn.row_factory = dict_row
            yield conn

    # ------------------------------------------------------------------ queries

    def latest_snapshot(self, clan_tag: str) -> dict[str, Any] | None:
        """The clan's latest roster snapshot (one probe of (clan_tag, snapshot_at))."""
        with self.connection() as conn:
            return conn.execute(
                f"""
                select {", ".join(SNAPSHOT_COLUMNS)} from marts.roster_snapshots
                where clan_tag = %s order by snapshot_at desc limit 1
                """,
                (clan_tag,),
            ).fetchone()

    def latest_version(self, clan_tag: str) -> str | None:
        """Only the latest payload_version: what a conditional request needs."""
        with self.connection() as conn:
            row = conn.execute(LATEST_VERSION_SQL, (clan_tag,)).fetchone()
        return row["payload_version"] if row else None

    def roster(self, clan_tag: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """The latest snapshot and the current members with their latest metrics.

        Read in one repeatable-read transaction, so the two agree as far as the
        warehouse does.
        """
        with self.connection() as conn:
            with conn.transaction():
                conn.execute("set transaction isolation level repeatable read")
                snapshot = conn.execute(
                    f"""
                    select {", ".join(SNAPSHOT_COLUMNS)} from marts.roster_snapshots
                    where clan_tag = %s order by snapshot_at desc limit 1
                    """,
                    (clan_tag,),
                ).fetchone()
                members = conn.execute(ROSTER_MEMBERS_SQL, (clan_tag,)).fetchall()
        return snapshot, members

    def clans(self) -> list[dict[str, Any]]:
        with self.connection() as conn:
            return conn.execute(
                """
                select distinct on (clan_tag)
                    clan_tag, clan_name, member_count, payload_version, snapshot_at
                from marts.roster_snapshots
                order by clan_tag, snapshot_at desc
                """
            ).fetchall()

    def member_clans(self, player_tag: str) -> list[dict[str, Any]]:
        """The clans the player is or was in, current first (members' player_tag index)."""
        with self.connection() as conn:
            return conn.execute(
                """
                select clan_tag, name, is_current, joined_at, left_at, updated_at
                from marts.members where player_tag = %s
                order by is_current desc, updated_at desc
                """,
                (player_tag,),
            ).fetchall()

    def member_versions(self, player_tag: str) -> list[str]:
        """The latest payload_version of each clan the player was seen in."""
        with self.connection() as conn:
            rows = conn.execute(
                """
                select latest.payload_version
                from marts.members as member
                cross join lateral (
                    select snapshots.payload_version from marts.roster_snapshots as snapshots
                    where snapshots.clan_tag = member.clan_tag
                    order by snapshots.snapshot_at desc limit 1
                ) as latest
                where member.player_tag = %s
                order by member.clan_tag
                """,
                (player_tag,),
            ).fetchall()
        return [row["payload_version"] for row in rows]

    def member(self, player_tag: str, clan_tag: str) -> dict[str, Any]:
        """One member in one clan: roster row, stats per snapshot, metrics over time."""
        with self.connection() as conn:
            with conn.transaction():
                conn.execute("set transaction isolation level repeatable read")
                roster = conn.execute(
                    "select * from marts.roster where clan_tag = %s and player_tag = %s",
                    (clan_tag, player_tag),
                ).fetchone()
                history = conn.execute(
                    f"""
                    select {", ".join(HISTORY_COLUMNS)} from marts.member_snapshot_stats
                    where clan_tag = %s and player_tag = %s order by snapshot_at
                    """,
                    (clan_tag, player_tag),
                ).fetchall()
                metrics = conn.execute(
                    """
                    select metric_name, metric_window, as_of, value
                    from marts.metrics
                    where clan_tag = %s and player_tag = %s
                    order by metric_name, metric_window, as_of
                    """,
                    (clan_tag, player_tag),
                ).fetchall()
        return {"roster": roster, "history": history, "metrics": metrics}

    def clan_metric(self, clan_tag: str, metric: str, window: str) -> list[dict[str, Any]]:
        """One metric of one clan: every member's value at every snapshot."""
        with self.connection() as conn:
            return conn.execute(
                """
                select metrics.player_tag, members.name, metrics.as_of, metrics.value
                from marts.metrics as metrics
                left join marts.members as members
                    on
                        metrics.clan_tag = members.clan_tag
                        and metrics.player_tag = members.player_tag
                where
                    metrics.clan_tag = %s
                    and metrics.metric_name = %s
                    and metrics.metric_window = %s
                order by metrics.as_of, metrics.player_tag
                """,
                (clan_tag, metric, window),
            ).fetchall()

    def ingestion_health(self, clan_tag: str) -> dict[str, Any]:
        """Last successful run, last finished run with its phases, open alerts."""
        with self.connection() as conn:
            run_columns = """
                run_id, status, trigger, started_at, finished_at, duration_ms, snapshot_at,
                requests, failed_requests, retries, throttled, rows_changed, error,
                summary -> 'health' as health,
                coalesce((summary ->> 'dropped_requests')::int, 0) as dropped_requests,
                coalesce((summary ->> 'dropped_players')::int, 0) as dropped_players
            """
            last_success = conn.execute(
                f"""
                select {run_columns} from ops.ingest_runs
                where clan_tags @> array[%s]::text[] and status in ('succeeded', 'partial')
                    and kind = 'ingest'
                order by started_at desc limit 1
                """,
                (clan_tag,),
            ).fetchone()
            last_run = conn.execute(
                f"""
                select {run_columns} from ops.ingest_runs
                where clan_tags @> array[%s]::text[] and kind = 'ingest'
                order by started_at desc limit 1
                """,
                (clan_tag,),
            ).fetchone()
            phases: list[dict[str, Any]] = []
            if last_run:
                phases = conn.execute(
                    """
                    select phase, step, status, attempt, started_at, finished_at, duration_ms,
                           rows_written, rows_changed, requests, retries
                    from ops.ingest_logs where run_id = %s order by log_id
                    """,
                    (last_run["run_id"],),
                ).fetchall()
            alerts = conn.execute(
                """
                select alert_id, clan_tag, check_name, severity, summary, details,
                       observed_value, threshold, first_seen_at, last_seen_at, occurrences
                from ops.alerts
                where status = 'open' and (clan_tag = %s or clan_tag is null)
                order by severity = 'critical' desc, last_seen_at desc
                """,
                (clan_tag,),
            ).fetchall()
            clock = conn.execute("select now() as now").fetchone()
            assert clock is not None  # select now() always returns one row
            now: datetime = clock["now"]
        return {
            "last_success": last_success,
            "last_run": last_run,
            "phases": phases,
            "alerts": alerts,
            "now": now,
        }
