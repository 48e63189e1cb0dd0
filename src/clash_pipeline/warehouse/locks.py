"""PostgreSQL advisory locks: one run per clan, one dbt build per warehouse.

The locks live in the warehouse itself, so they hold across processes and
machines (several Prefect workers, a cron job and a manual run) without any
other coordination service:

* :func:`clan_lock_key` - one key per clan tag: two runs for the same clan never
  interleave. The second run waits for the first (up to a timeout) or skips.
* :data:`WAREHOUSE_LOCK_KEY` - one key per database: dbt builds (and the restore
  point around each) are serialised.

A lock is a *session* lock held on its own autocommit connection for as long as
the holder needs it; closing that connection (or the process dying) releases
it, so a crashed run never leaves a clan locked.
"""

from __future__ import annotations

import hashlib
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
