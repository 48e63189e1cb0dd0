"""Abandoned runs: a ``running`` row of ``ops.ingest_runs`` whose process is gone.

A process killed with ``kill -9`` (or whose machine died) cannot close its runs;
they would stay ``running`` for ever. The next run or monitor of *any* clan
closes them (:func:`close_abandoned_runs`), so the detection must tell a live
run of another process, maybe on another machine, from a dead one, using only
the shared PostgreSQL.

**The detector: a lease per process.** Every process that opens a ``running``
row holds, for as long as it has one open, a session advisory lock
``(LEASE_NAMESPACE, key)`` on a connection of its own (:func:`hold`), and writes
that key, its host and pid into the row (``summary -> 'owner'``). PostgreSQL
drops the lock as soon as that session ends, so *a ``running`` row whose owner
lock nobody holds* (``pg_locks``) *belongs to a process that is gone*: it is
closed as ``failed`` with the error ``AbandonedRun`` ("the process running it
stopped before the run finished") and ``finished_at``. Rows written before
leases existed (no owner) are judged by their clans' run locks
(:func:`~clash_pipeline.warehouse.locks.clan_lock_key`): abandoned when no
session holds any of them.

Why not the clan locks alone: ``clash-pipeline fetch`` holds none, nor would a
build, backfill or monitor row, and one rule for every kind of run is simpler.
Why not a heartbeat column: it needs a thread renewing it through long phases
(dbt) and a timeout that is either too short (a slow live run is closed) or too
long (an orphan shows as running for that long); the lock is exact, costs one
idle connection per process, and needs no migration.

**Bound.** The lock goes when the process's session ends: at once when the
process dies on a host that is up (its socket is closed by the kernel); when
the host or the network dies, within about 60 s (the lease session sets
server-side TCP keepalives: 30 s idle, then 3 probes 10 s apart). The orphan is
closed at the next run (any clan, ``run``/``fetch``/the deployments) or monitor
(``clash-pipeline monitor``, the ``clash-monitor`` flow every 30 minutes), so
at most ~31 minutes after the death with the default schedules. A process that
is alive keeps its runs: a run it never closed stays ``running`` until it exits.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from clash_pipeline.errors import ClashPipelineError
from clash_pipeline.warehouse.connect import connect
from clash_pipeline.warehouse.locks import LOCK_NAMESPACE, LockKey, clan_lock_key

__all__ = [
    "ABANDONED_MESSAGE",
    "LEASE_NAMESPACE",
    "AbandonedRun",
    "close_abandoned_runs",
    "hold",
    "let_go",
]

_log = logging.getLogger("clash_pipeline.runs")

#: Advisory-lock namespace of the process leases (apart from clans and the warehouse).
LEASE_NAMESPACE = LOCK_NAMESPACE + 2

ABANDONED_MESSAGE = "the process running it stopped before the run finished"
ABANDONED_HINT = (
    "nothing was lost that the next run cannot redo: the next run of the clan fetches, "
    "lands and builds again (ops.ingest_logs of the run shows how far it got)"
)

#: Server-side TCP keepalives of the lease session: a vanished client is noticed in ~60 s.
_KEEPALIVES = {"tcp_keepalives_idle": 30, "tcp_keepalives_interval": 10, "tcp_keepalives_count": 3}
_KEY_ATTEMPTS = 8


@dataclass
class _Lease:
    """This process's lease on one database: the lock's session and the runs it covers."""

    conn: psycopg.Connection[Any]
    key: int
    pid: int
    runs: set[uuid.UUID] = field(default_factory=set)

    def alive(self) -> bool:
        try:
            self.conn.execute("select 1")
            return True
        except psycopg.Error:
            return False

    def close(self) -> None:
        try:
            self.conn.close()
        except psycopg.Error:
            pass


_leases: dict[str, _Lease] = {}
_guard = threading.Lock()


def _take_lease(db_url: str) -> _Lease:
    """A new session holding a free, random lease key (keys of live processes never clash)."""
    conn = connect(db_url, autocommit=True, application_name="clash-pipeline run lease")
    try:
        for name, value in _KEEPALIVES.items():
            try:
                conn.execute(f"set {name} = {int(value)}")
            except psycopg.Error:  # a pooler may refuse it: the lease still works
                break
        for _ in range(_KEY_ATTEMPTS):
            key = secrets.randbelow(2**31 - 1) + 1
            row = conn.execute(
                "select pg_try_advisory_lock(%s, %s)", (LEASE_NAMESPACE, key)
            ).fetchone()
            if row is not None and row[0]:
                return _Lease(conn=conn, key=key, pid=os.getpid())
    except BaseException:
        conn.close()
        raise
    conn.close()
    raise ClashPipelineError(
        "could not take a run lease: every key tried was held",
        hint="retry the run; if it keeps failing, see pg_locks for advisory locks",
    )


def hold(db_url: str, run_id: uuid.UUID) -> dict[str, Any]:
    """Cover ``run_id`` by this process's lease on ``db_url``; the owner record for its row.

    Takes the lease (a new session) when the process holds none, or when its
    session died (e.g. the database restarted); the runs it covered carry over.
    """
    with _guard:
        lease = _leases.get(db_url)
        runs: set[uuid.UUID] = set()
        if lease is not None and (lease.pid != os.getpid() or not lease.alive()):
            if lease.pid == os.getpid():  # never touch a parent's session after a fork
                lease.close()
                runs = lease.runs
            lease = None
        if lease is None:
            lease = _take_lease(db_url)
            _leases[db_url] = lease
            if runs:
                _move_runs(lease, runs)
        lease.runs.add(run_id)
        return {"lock": lease.key, "host": socket.gethostname(), "pid": lease.pid}


def _move_runs(lease: _Lease, runs: set[uuid.UUID]) -> None:
    """The runs of a lost lease session are this one's now (their rows say so)."""
    lease.runs |= runs
    lease.conn.execute(
        """
        update ops.ingest_runs
        set summary = jsonb_set(summary, '{owner,lock}', to_jsonb(%s::int))
        where run_id = any(%s) and status = 'running' and summary ? 'owner'
        """,
        (lease.key, list(runs)),
    )


def let_go(db_url: str, run_id: uuid.UUID) -> None:
    """``run_id`` is closed: the lease ends with the last run it covers."""
    with _guard:
        lease = _leases.get(db_url)
        if lease is None or lease.pid != os.getpid():
            return
        lease.runs.discard(run_id)
        if not lease.runs:
            del _leases[db_url]
            lease.close()


@dataclass(frozen=True)
class AbandonedRun:
    """A run closed by :func:`close_abandoned_runs`."""

    run_id: uuid.UUID
    kind: str
    clan_tags: list[str]
    started_at: datetime
    owner: dict[str, Any] | None

    def describe(self) -> str:
        clans = ", ".join(self.clan_tags) or "no clan"
        owner = self.owner or {}
        where = f", pid {owner['pid']} on {owner['host']}" if owner.get("pid") else ""
        started = f"{self.started_at:%Y-%m-%d %H:%M:%S} UTC"
        return f"{self.kind} run {self.run_id} ({clans}{where}, started {started})"


_RUNNING_SQL = """
select run_id, kind, clan_tags, started_at, summary -> 'owner' as owner
from ops.ingest_runs
where status = 'running'
"""

_HELD_SQL = """
select classid::bigint, objid::bigint
from pg_locks
where
    locktype = 'advisory' and granted and objsubid = 2
    and database = (select oid from pg_database where datname = current_database())
"""

_CLOSE_SQL = """
update ops.ingest_runs
set status = 'failed',
    finished_at = greatest(clock_timestamp(), started_at),
    duration_ms = round(
        extract(epoch from greatest(clock_timestamp(), started_at) - started_at) * 1000
    ),
    error = %(error)s || case
        when summary ? 'owner' then jsonb_build_object('owner', summary -> 'owner')
        else '{}'::jsonb
    end
where run_id = any(%(run_ids)s) and status = 'running'
returning run_id
"""


def _unsigned(key: LockKey) -> tuple[int, int]:
    """A two-int4 advisory key as ``pg_locks`` shows it (``classid``, ``objid`` are oids)."""
    return (key[0] & 0xFFFFFFFF, key[1] & 0xFFFFFFFF)


def _is_alive(owner: Any, clan_tags: list[str], held: set[tuple[int, int]], mine: set[str]) -> bool:
    if isinstance(owner, dict) and isinstance(owner.get("lock"), int):
        return _unsigned((LEASE_NAMESPACE, owner["lock"])) in held
    # a row from before leases: alive while another session holds one of its clans' locks
    return any(tag not in mine and _unsigned(clan_lock_key(tag)) in held for tag in clan_tags)


def close_abandoned_runs(db_url: str, held_clans: Iterable[str] = ()) -> list[AbandonedRun]:
    """Close every ``running`` run whose process is gone (any clan, any kind) as ``failed``.

    ``held_clans``: clans whose run lock the caller holds (a row from before
    leases, of such a clan, cannot be alive). Safe to call from any number of
    processes at once: a row is closed once.
    """
    mine = set(held_clans)
    with connect(db_url, autocommit=True) as conn:
        running = conn.execute(_RUNNING_SQL).fetchall()
        if not running:
            return []
        held = {(int(a), int(b)) for a, b in conn.execute(_HELD_SQL).fetchall()}
        candidates = {
            row[0]: AbandonedRun(
                run_id=row[0], kind=row[1], clan_tags=list(row[2]), started_at=row[3], owner=row[4]
            )
            for row in running
            if not _is_alive(row[4], list(row[2]), held, mine)
        }
        if not candidates:
            return []
        error = {"type": "AbandonedRun", "message": ABANDONED_MESSAGE, "hint": ABANDONED_HINT}
        closed = conn.execute(
            _CLOSE_SQL, {"error": Jsonb(error), "run_ids": list(candidates)}
        ).fetchall()
    runs = [candidates[row[0]] for row in closed]
    for run in runs:
        _log.warning("closed abandoned %s: %s", run.describe(), ABANDONED_MESSAGE)
    return runs
