"""Locks of a pipeline run: one run per clan at a time, one dbt build per warehouse."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from types import TracebackType

import psycopg

from clash_pipeline.errors import ClashPipelineError, DatabaseError
from clash_pipeline.orchestration.model import RunContext
from clash_pipeline.orchestration.options import PipelineOptions
from clash_pipeline.orchestration.phases.common import log
from clash_pipeline.warehouse.connect import connect
from clash_pipeline.warehouse.locks import WAREHOUSE_LOCK_KEY, AdvisoryLock, ClanLockSession


@dataclass
class ClanLocks(AbstractContextManager["ClanLocks"]):
    """One advisory lock per clan, taken in tag order (so two batches never deadlock), all
    on one session (a run of hundreds of clans holds one connection, not one per clan)."""

    db_url: str = field(repr=False)
    clan_tags: list[str]
    options: PipelineOptions
    held: list[str] = field(default_factory=list)
    busy: dict[str, str] = field(default_factory=dict)
    _session: ClanLockSession | None = field(default=None, repr=False)

    def acquire(self) -> ClanLocks:
        wait = self.options.lock_timeout_seconds if self.options.on_busy == "wait" else 0.0
        if self.clan_tags and self._session is None:
            self._session = ClanLockSession(self.db_url)
        for tag in sorted(self.clan_tags):
            assert self._session is not None

            def waiting(_elapsed: float, tag: str = tag) -> None:
                log().warning(
                    "clan %s: another run for this clan is in progress (%s); "
                    "waiting for it, up to %.0f s",
                    tag,
                    _running_run(self.db_url, tag),
                    wait,
                )

            taken, waited = self._session.wait_lock(tag, wait=wait, on_wait=waiting)
            if taken:
                self.held.append(tag)
                if waited > 0.5:
                    log().warning("clan %s: lock free after %.1f s; running", tag, waited)
            else:
                reason = (
                    f"another run for {tag} is in progress ({_running_run(self.db_url, tag)})"
                    + (f"; still busy after waiting {wait:.0f} s" if wait else "")
                )
                self.busy[tag] = reason
                log().warning("clan %s: skipped: %s", tag, reason)
        self.held = [t for t in self.clan_tags if t in self.held]
        return self

    def release(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def lost(self) -> list[str]:
        """Clans whose lock session died (a dropped connection): they may interleave now."""
        if self._session is None:
            return []
        lost = self._session.lost()
        return [tag for tag in self.held if tag in lost]

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _running_run(db_url: str, clan_tag: str) -> str:
    try:
        with connect(db_url, autocommit=True) as conn:
            row = conn.execute(
                """
                select run_id, started_at from ops.ingest_runs
                where status = 'running' and %s = any(clan_tags)
                order by started_at desc limit 1
                """,
                (clan_tag,),
            ).fetchone()
    except (psycopg.Error, DatabaseError):
        row = None
    if row is None:
        return "run unknown"
    return f"run {row[0]} started {row[1]:%Y-%m-%d %H:%M:%S} UTC"


def warehouse_lock(ctx: RunContext) -> AdvisoryLock:
    """The lock that serialises dbt builds on this warehouse (see :func:`take_warehouse_lock`)."""
    return AdvisoryLock(
        ctx.db_url, WAREHOUSE_LOCK_KEY, name="warehouse", application_name="clash-pipeline dbt lock"
    )


def take_warehouse_lock(lock: AdvisoryLock, ctx: RunContext) -> None:
    wait = ctx.options.warehouse_lock_timeout_seconds

    def waiting(_elapsed: float) -> None:
        log().warning("another dbt build is running on this warehouse; waiting up to %.0f s", wait)

    if not lock.acquire(wait=wait, on_wait=waiting):
        raise ClashPipelineError(
            f"another dbt build held the warehouse for more than {wait:.0f} s",
            hint="see ops.transform_builds for the running build; the next run catches up",
        )
