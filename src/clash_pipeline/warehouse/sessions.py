"""Short database sessions, reused within a scope of many clan runs.

Every step of a clan's run (its run row, the planner's reads, the landing, the checkpoints)
opens a session, does one thing and closes it. For one clan that is fine; for a fetch of
hundreds of clans it is thousands of connections, each a server process forked and an
authentication (``bench/scale.py`` found connecting to be an eighth of a worker's CPU).

:func:`session` is the one way those steps connect. Outside a :func:`reuse_sessions` scope it is
:func:`~clash_pipeline.warehouse.connect.connect` and close; inside one (``fetch_clans`` and the
flow's fetch and land of many clans open it) a session given back idle and sound is kept for
the next step of any clan, in any thread, and every kept session is closed when the scope ends.
New sessions are opened by ``connect``, so a database that cannot be reached gives the same
one-line error either way. A session that failed, or is not idle, is closed, never reused.
Not for sessions that hold something for a long time (leases, advisory locks): those keep
their own connection.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

from clash_pipeline.warehouse.connect import connect

#: Idle sessions kept per scope at most (more in use at once are opened and closed).
MAX_IDLE = 16


class _Sessions:
    """The idle sessions of one scope, shared by its threads."""

    def __init__(self, url: str, max_idle: int) -> None:
        self.url = url
        self.max_idle = max_idle
        self.opened = 0  # for tests and benchmarks: connections made in this scope
        self._idle: list[psycopg.Connection[Any]] = []
        self._lock = threading.Lock()
        self._closed = False

    def take(self, autocommit: bool) -> psycopg.Connection[Any]:
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                break
            if _alive(conn):
                if conn.autocommit != autocommit:
                    conn.autocommit = autocommit  # allowed: the session is idle
                return conn
            conn.close()  # dropped while idle (a restart, a timeout): open another
        conn = connect(self.url, autocommit=autocommit)
        with self._lock:
            self.opened += 1
        return conn

    def give_back(self, conn: psycopg.Connection[Any]) -> None:
        sound = not conn.closed and conn.info.transaction_status == TransactionStatus.IDLE
        with self._lock:
            if sound and not self._closed and len(self._idle) < self.max_idle:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def _alive(conn: psycopg.Connection[Any]) -> bool:
    """Whether an idle session still answers (one empty round trip, as psycopg_pool checks)."""
    if conn.closed or conn.broken:
        return False
    try:
        autocommit = conn.autocommit
        conn.autocommit = True
        conn.execute("")
        conn.autocommit = autocommit
    except psycopg.Error:
        return False
    return True


_SCOPE: contextvars.ContextVar[_Sessions | None] = contextvars.ContextVar(
    "clash_pipeline_sessions", default=None
)


@contextmanager
def reuse_sessions(url: str, *, max_idle: int = MAX_IDLE) -> Iterator[_Sessions]:
    """Within this block (and the tasks and threads started in it), :func:`session` on ``url``
    reuses idle sessions; they are closed when the block ends."""
    scope = _Sessions(url, max_idle)
    token = _SCOPE.set(scope)
    try:
        yield scope
    finally:
        _SCOPE.reset(token)
        scope.close()


@contextmanager
def session(url: str, *, autocommit: bool = False) -> Iterator[psycopg.Connection[Any]]:
    """``with session(url) as conn:`` like ``with connect(url) as conn:``: committed at the end
    of the block, rolled back on an error; reused within a :func:`reuse_sessions` scope."""
    scope = _SCOPE.get()
    if scope is None or scope.url != url:
        with connect(url, autocommit=autocommit) as conn:
            yield conn
        return
    conn = scope.take(autocommit)
    try:
        yield conn
        if not conn.autocommit and not conn.closed:
            conn.commit()
    except BaseException:
        if not conn.closed and not conn.broken:
            try:
                conn.rollback()
            except psycopg.Error:
                conn.close()
        if not conn.closed:
            conn.close()  # a session that saw an error is not reused
        raise
    scope.give_back(conn)
