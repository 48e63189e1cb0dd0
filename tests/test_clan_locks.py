"""The clan locks of a flow run: every clan's lock on one session, waited for or skipped.

A run of hundreds of clans must not open a connection per clan (the server's
``max_connections`` is about 100); a second run finds the clans busy; a dropped
session loses every lock at once and says which.
"""

from __future__ import annotations

import threading
import time

import psycopg

from clash_pipeline.orchestration.options import PipelineOptions
from clash_pipeline.orchestration.phases.locks import ClanLocks

TAGS = [f"#2PQ{n:03d}" for n in range(150)]  # more clans than the server has connections


def sessions(url: str) -> tuple[int, int]:
    """(sessions named as clan-lock sessions, advisory locks held)."""
    with psycopg.connect(url, autocommit=True) as conn:
        named = conn.execute(
            "select count(*) from pg_stat_activity"
            " where application_name = %s and datname = current_database()",
            ("clash-pipeline clan locks",),
        ).fetchone()[0]
        held = conn.execute(
            "select count(*) from pg_locks where locktype = 'advisory' and granted and database"
            " = (select oid from pg_database where datname = current_database())"
        ).fetchone()[0]
    return named, held


def test_a_run_of_many_clans_holds_their_locks_on_one_session(migrated_db_url):
    options = PipelineOptions(on_busy="skip")
    with ClanLocks(migrated_db_url, TAGS, options) as first:
        first.acquire()
        assert first.held == TAGS and not first.busy
        assert sessions(migrated_db_url) == (1, len(TAGS))
        with ClanLocks(migrated_db_url, [TAGS[0], "#2PQ999"], options) as second:
            second.acquire()
            assert second.held == ["#2PQ999"]
            assert list(second.busy) == [TAGS[0]]
            assert "another run for #2PQ000 is in progress" in second.busy[TAGS[0]]
    assert sessions(migrated_db_url) == (0, 0)  # released with the session


def test_a_waiting_run_takes_the_clan_once_it_is_free(migrated_db_url):
    holder = ClanLocks(migrated_db_url, [TAGS[0]], PipelineOptions(on_busy="skip")).acquire()
    threading.Timer(1.0, holder.release).start()
    waiting = PipelineOptions(on_busy="wait", lock_timeout_seconds=30)
    started = time.monotonic()
    with ClanLocks(migrated_db_url, [TAGS[0]], waiting) as locks:
        locks.acquire()
        waited = time.monotonic() - started
        assert locks.held == [TAGS[0]] and not locks.busy
    assert 0.9 <= waited < 10


def test_a_dropped_session_loses_every_lock_and_says_which(migrated_db_url):
    options = PipelineOptions(on_busy="skip")
    with ClanLocks(migrated_db_url, TAGS[:3], options) as locks:
        locks.acquire()
        assert locks.lost() == []
        with psycopg.connect(migrated_db_url, autocommit=True) as conn:
            conn.execute(
                "select pg_terminate_backend(pid) from pg_stat_activity"
                " where application_name = 'clash-pipeline clan locks'"
                " and datname = current_database()"
            )
        assert locks.lost() == TAGS[:3]
        assert locks.lost() == []  # said once
    assert sessions(migrated_db_url) == (0, 0)


def test_no_clan_opens_no_session(migrated_db_url):
    with ClanLocks(migrated_db_url, [], PipelineOptions()) as locks:
        locks.acquire()
        assert sessions(migrated_db_url) == (0, 0) and locks.lost() == []
