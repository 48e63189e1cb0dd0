"""PostgreSQL advisory locks: one run per clan, one dbt build per warehouse.

The locks live in the warehouse itself, so they hold across processes and
machines (several Prefect workers, a cron job and a manual run) without any
other coordination service:

* :func:`clan_lock_key` - one key per clan tag: two runs for the same clan never
  interleave. The second run waits for the first (up to a timeout) or skips.
* :data:`WAREHOUSE_LOCK_KEY` - one key per database: dbt builds (and the restore
  point around each) are serialised.

:class:`ClanLockSession` holds the clan locks of many clans on *one* session
(``clash-pipeline fetch``: a process fetching hundreds of clans must not open a
connection per clan); a clan held by another process is skipped, not waited for.

A lock is a *session* lock held on its own autocommit connection for as long as
the holder needs it; closing that connection (or the process dying) releases
it, so a crashed run never leaves a clan locked.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import psycopg

from clash_pipeline import shutdown
from clash_pipeline.warehouse.connect import connect

__all__ = [
    "LOCK_NAMESPACE",
    "WAREHOUSE_LOCK_KEY",
    "AdvisoryLock",
    "ClanLockSession",
    "LockKey",
    "clan_lock_key",
]

# The two-integer form of advisory locks: (namespace, object). The namespace
# keeps these keys apart from other users of advisory locks in the same
# database (the migration runner uses the one-bigint form).
LOCK_NAMESPACE = int.from_bytes(b"CoCp", "big", signed=True)
_WAREHOUSE_NAMESPACE = LOCK_NAMESPACE + 1

LockKey = tuple[int, int]

#: Serialises dbt builds (and their restore points) on one warehouse.
WAREHOUSE_LOCK_KEY: LockKey = (_WAREHOUSE_NAMESPACE, 0)


def clan_lock_key(clan_tag: str) -> LockKey:
    """The advisory-lock key of one clan (a stable 32-bit hash of its tag)."""
    digest = hashlib.sha256(f"clan:{clan_tag}".encode()).digest()
    return (LOCK_NAMESPACE, int.from_bytes(digest[:4], "big", signed=True))


@dataclass
class AdvisoryLock:
    """A session advisory lock on its own connection.

    ``acquire(wait=...)`` polls ``pg_try_advisory_lock`` so that waiting can be
    bounded, logged and interrupted; it returns False when the lock is busy
    (``wait=0``) or stays busy for ``wait`` seconds.
    """

    db_url: str = field(repr=False)
    key: LockKey
    name: str = "lock"
    poll_seconds: float = 0.25
    application_name: str = "clash-pipeline lock"
    _conn: psycopg.Connection[Any] | None = field(default=None, init=False, repr=False)
    waited_seconds: float = field(default=0.0, init=False)

    @property
    def held(self) -> bool:
        return self._conn is not None

    def acquire(
        self,
        *,
        wait: float = 0.0,
        on_wait: Callable[[float], None] | None = None,
    ) -> bool:
        """Take the lock; wait up to ``wait`` seconds while another session holds it.

        ``on_wait(elapsed)`` is called once when the lock is found busy (to log
        that this run waits).
        """
        if self._conn is not None:
            return True
        conn = connect(self.db_url, autocommit=True, application_name=self.application_name)
        started = time.monotonic()
        told = False
        try:
            while True:
                row = conn.execute("select pg_try_advisory_lock(%s, %s)", self.key).fetchone()
                if row is not None and row[0]:
                    self._conn = conn
                    self.waited_seconds = time.monotonic() - started
                    return True
                elapsed = time.monotonic() - started
                if elapsed >= wait:
                    conn.close()
                    self.waited_seconds = elapsed
                    return False
                if not told and on_wait is not None:
                    on_wait(elapsed)
                    told = True
                shutdown.check()  # SIGTERM/SIGINT: stop waiting
                time.sleep(min(self.poll_seconds, max(0.0, wait - elapsed)))
        except BaseException:
            conn.close()
            raise

    def still_held(self) -> bool:
        """Whether the session holding the lock is alive (a dropped connection loses it)."""
        if self._conn is None:
            return False
        try:
            self._conn.execute("select 1")
            return True
        except psycopg.Error:
            self._discard()
            return False

    def release(self) -> None:
        """Release the lock by closing its session (errors ignored: the lock goes with it)."""
        self._discard()

    def _discard(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except psycopg.Error:
                pass

    def __enter__(self) -> AdvisoryLock:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


#: Server-side TCP keepalives of a lock session: a vanished client is noticed in ~60 s.
_KEEPALIVES = {"tcp_keepalives_idle": 30, "tcp_keepalives_interval": 10, "tcp_keepalives_count": 3}


class ClanLockSession:
    """The clan locks of one process on one session: ``try_lock`` (never waits) and ``unlock``.

    **Bound.** The locks go with the session: at once when the process dies on a
    host that is up (the kernel closes its socket), within about 60 s when the
    host or the network dies (server-side TCP keepalives: 30 s idle, then 3
    probes 10 s apart). Thread-safe (the fetch calls it from worker threads).
    """

    def __init__(self, db_url: str, *, application_name: str = "clash-pipeline clan locks"):
        self.db_url = db_url
        self.application_name = application_name
        self._conn: psycopg.Connection[Any] | None = None
        self._held: set[str] = set()
        self._guard = threading.Lock()

    @property
    def held(self) -> set[str]:
        return set(self._held)

    def try_lock(self, clan_tag: str) -> bool:
        """Take the clan's lock if no other session holds it; False at once if one does."""
        with self._guard:
            if clan_tag in self._held:
                return True
            row = (
                self._session()
                .execute("select pg_try_advisory_lock(%s, %s)", clan_lock_key(clan_tag))
                .fetchone()
            )
            if row is not None and row[0]:
                self._held.add(clan_tag)
                return True
            return False

    def unlock(self, clan_tag: str) -> None:
        """Let the clan go (errors ignored: a dead session has let it go already)."""
        with self._guard:
            if clan_tag not in self._held:
                return
            self._held.discard(clan_tag)
            if self._conn is None:
                return
            try:
                self._conn.execute("select pg_advisory_unlock(%s, %s)", clan_lock_key(clan_tag))
            except psycopg.Error:
                self._discard()

    def wait_lock(
        self,
        clan_tag: str,
        *,
        wait: float,
        on_wait: Callable[[float], None] | None = None,
        poll_seconds: float = 0.25,
    ) -> tuple[bool, float]:
        """Take the clan's lock, polling up to ``wait`` seconds while another session has it.

        ``on_wait(elapsed)`` is called once when the lock is found busy. Returns whether
        the lock was taken and the seconds waited.
        """
        started = time.monotonic()
        told = False
        while True:
            if self.try_lock(clan_tag):
                return True, time.monotonic() - started
            elapsed = time.monotonic() - started
            if elapsed >= wait:
                return False, elapsed
            if not told and on_wait is not None:
                on_wait(elapsed)
                told = True
            shutdown.check()  # SIGTERM/SIGINT: stop waiting
            time.sleep(min(poll_seconds, max(0.0, wait - elapsed)))

    def lost(self) -> set[str]:
        """The clans held when the session died (a dropped connection): none while it lives."""
        with self._guard:
            if not self._held:
                return set()
            try:
                if self._conn is not None and not self._conn.closed:
                    self._conn.execute("select 1")
                    return set()
            except psycopg.Error:
                pass
            lost = set(self._held)
            self._held.clear()
            self._discard()
            return lost

    def close(self) -> None:
        """Release every lock by closing the session."""
        with self._guard:
            self._held.clear()
            self._discard()

    def _session(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            if self._held:  # the session died with locks: they are lost, say so
                self._held.clear()
            conn = connect(self.db_url, autocommit=True, application_name=self.application_name)
            for name, value in _KEEPALIVES.items():
                try:
                    conn.execute(f"set {name} = {int(value)}")
                except psycopg.Error:  # a pooler may refuse it: the locks still work
                    break
            self._conn = conn
        return self._conn

    def _discard(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except psycopg.Error:
                pass

    def __enter__(self) -> ClanLockSession:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
