"""Short sessions reused within a scope of many clan runs (warehouse/sessions.py).

A fetch of hundreds of clans opened a connection for every step of every clan's run;
inside :func:`reuse_sessions` the steps share idle sessions. Real PostgreSQL: what is
committed, rolled back, reused or closed is read from the server (``pg_backend_pid``,
``pg_stat_activity``), not from the module's own bookkeeping alone.
"""

from __future__ import annotations

import asyncio
import os

import psycopg
import pytest

from clash_pipeline.errors import DatabaseError
from clash_pipeline.warehouse.runs import RunRecorder
from clash_pipeline.warehouse.sessions import reuse_sessions, session


def _backend(conn: psycopg.Connection) -> int:
    return conn.execute("select pg_backend_pid()").fetchone()[0]


def _table(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("create table if not exists t (v int)")


def _values(url: str) -> list[int]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("select v from t order by v")]


def test_outside_a_scope_each_session_is_its_own_connection(fresh_db_url):
    with session(fresh_db_url, autocommit=True) as a:
        first = _backend(a)
    assert a.closed
    with session(fresh_db_url, autocommit=True) as b:
        assert _backend(b) != first


def test_a_scope_reuses_one_idle_session_and_closes_it_at_the_end(fresh_db_url):
    _table(fresh_db_url)
    with reuse_sessions(fresh_db_url) as scope:
        pids = set()
        for n in range(20):
            with session(fresh_db_url, autocommit=n % 2 == 0) as conn:
                pids.add(_backend(conn))
                conn.execute("insert into t values (%s)", (n,))
        assert len(pids) == 1 and scope.opened == 1
        (pid,) = pids
    assert _values(fresh_db_url) == list(range(20))  # both kinds committed
    with psycopg.connect(fresh_db_url) as check:
        alive = check.execute(
            "select count(*) from pg_stat_activity where pid = %s", (pid,)
        ).fetchone()[0]
    assert alive == 0  # the scope closed its session


def test_an_error_rolls_back_and_the_session_is_not_reused(fresh_db_url):
    _table(fresh_db_url)
    with reuse_sessions(fresh_db_url) as scope:
        with pytest.raises(ZeroDivisionError), session(fresh_db_url) as conn:
            conn.execute("insert into t values (1)")
            first = _backend(conn)
            1 / 0  # noqa: B018 - the caller's error inside the block
        assert conn.closed
        with session(fresh_db_url) as conn:
            assert _backend(conn) != first
            conn.execute("insert into t values (2)")
        assert scope.opened == 2
    assert _values(fresh_db_url) == [2]


def test_a_session_dropped_while_idle_is_replaced(fresh_db_url):
    with reuse_sessions(fresh_db_url) as scope:
        with session(fresh_db_url, autocommit=True) as conn:
            first = _backend(conn)
        with psycopg.connect(fresh_db_url, autocommit=True) as admin:
            admin.execute("select pg_terminate_backend(%s)", (first,))
        with session(fresh_db_url, autocommit=True) as conn:  # no error: a new one
            assert _backend(conn) != first
        assert scope.opened == 2


def test_an_unreachable_database_is_the_same_one_line_error(fresh_db_url):
    url = "postgresql://clash:secret-pw@127.0.0.1:9/nowhere?connect_timeout=2"
    with reuse_sessions(url), pytest.raises(DatabaseError) as raised, session(url):
        pass
    assert "cannot connect to PostgreSQL" in str(raised.value)
    assert "secret-pw" not in str(raised.value)


def test_runs_of_many_clans_in_threads_share_a_few_sessions(migrated_db_url):
    """What fetch_clans does: 40 clans' run rows and checkpoints written from the default
    thread pool, concurrently; without the scope that is 40 x 3 connections."""

    async def one(n: int) -> RunRecorder:
        recorder = RunRecorder(db_url=migrated_db_url, kind="fetch", clan_tags=[f"#C{n}"])
        await asyncio.to_thread(recorder.start)
        await asyncio.to_thread(recorder.finish, "succeeded")
        return recorder

    async def main() -> list[RunRecorder]:
        return await asyncio.gather(*(one(n) for n in range(40)))

    with reuse_sessions(migrated_db_url) as scope:
        recorders = asyncio.run(main())
    threads = min(32, (os.cpu_count() or 1) + 4)  # the default thread pool
    assert scope.opened <= threads
    with psycopg.connect(migrated_db_url) as conn:
        done = conn.execute(
            "select count(*) from ops.ingest_runs where run_id = any(%s) and status = 'succeeded'",
            ([r.run_id for r in recorders],),
        ).fetchone()[0]
    assert done == 40
