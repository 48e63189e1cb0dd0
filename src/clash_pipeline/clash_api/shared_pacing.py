"""Pacing of one API key shared by every process, through the warehouse's PostgreSQL.

The Clash API throttles per key. :class:`~clash_pipeline.clash_api.ratelimit.RateLimiter` paces the
requests of one process; two processes with the same key (two Prefect workers, a cron job and a
manual ``clash-pipeline fetch``) would each pace at the key's rate and together exceed it.
:class:`SharedRateLimiter` keeps everything of the in-process limiter (the concurrency cap, the
start-slot grid, pauses, AIMD after a 429) but takes each start slot from one row per key in
``ops.api_key_pacing`` (migration ``202612071520__api_key_pacing.sql``), so every process of
every machine starts its requests on *one* evenly spaced grid at the key's rate.

**What was chosen, and why.** Three candidates were weighed:

- *pyrate-limiter's PostgresBucket*: a sliding-window log (one row per request, counted within
  the window on each acquire, old rows leaked). It admits bursts up to the window's limit (10
  requests in the same millisecond satisfy "10 per second", which a token bucket of capacity 1
  would refuse), it knows nothing of a 429's cool-down or of lowering the rate, its timestamps
  come from each client's clock (machines' clocks differ), and it is a new dependency whose
  table grows with every request;
- *Prefect's global concurrency limits used as a rate limit* (``rate_limit`` with
  ``slot_decay_per_second``): exact and hosted, but it lives in a Prefect server, and
  ``clash-pipeline run`` starts its own temporary Prefect server per run: two ``run`` processes
  would each have their own limit. Only the shared PostgreSQL is common to every worker;
- *a GCRA row per key in PostgreSQL* (chosen): the in-process algorithm, moved into one row.
  A reservation is one call, ``ops.reserve_api_slot(fingerprint, rate, recovery)``: it locks
  the key's row, takes ``slot = greatest(clock_timestamp(), next_start, paused_until)``, moves
  ``next_start`` one interval past it and returns the slot; the process sleeps until then. The
  grid is exact across processes (the row lock orders the reservations); times are the
  database's clock only: a slot becomes a local delay, ``slot - now`` of the same call counted
  from when its answer arrived, so it is late by at most the answer's way back, never early (a
  request woken more than half an interval after its slot, by a busy event loop, takes a fresh
  slot, so late wake-ups do not start together). The table holds one small row per key.

**Failures and bounds.** A 429 calls ``ops.throttle_api_key``: every process's requests pause
(``paused_until``, the server's ``Retry-After``, at most 600 s) and the key's shared rate is
lowered to rate x ``backoff`` once per congestion event (a 429 of a request that started before
the last decrease does not lower it again), then recovers by ``recovery`` req/s per whole second
as in-process. (Unlike in-process, the decrease does not use the accepted rate of the last
second: one process sees only its own share of it.) A reservation is never more than one
interval per reserved request ahead of now, so a process killed mid-run leaves at most its
in-flight reservations (``max_concurrency`` intervals, under a second at 10 req/s) behind, and
no lock: the row lock lasts one statement. Nothing needs cleaning when a worker dies.

**Cost** (``bench/shared_pacing.py``: embedded PostgreSQL on the same machine, 2 shared cores,
8 requests at a time): about 1 ms of reservation per request through PostgreSQL (0.9-1.5 ms
over runs on a machine shared with other jobs) against 0.015 ms in-process, i.e. 700-1,100
reservations a second per process and key (one connection), and 1-1.5 % of each 100 ms
interval at 10 req/s per key (the slot's wait overlaps it: the rate is not lowered). The
reservations commit without waiting for the WAL flush (``synchronous_commit = off`` on the
pacing session): a crash can lose only the last milliseconds of pacing state, which the grid's
next reservation re-creates.

**Identity.** A key is its fingerprint, ``sha256(token)[:12]``; the token never reaches the
database, a log or an error. A database error during a reservation fails the request's run with
one line (:class:`~clash_pipeline.errors.DatabaseError`) naming the key's fingerprint.

Turn it off with ``COC_SHARED_PACING=off`` (one process that owns its key, e.g. a benchmark of
in-process pacing); it is on by default for ``run``, ``fetch``, the demo and the deployments.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

import psycopg

from clash_pipeline.clash_api.ratelimit import AdaptivePacing, RateLimiter
from clash_pipeline.errors import DatabaseError
from clash_pipeline.warehouse.connect import CONNECT_TIMEOUT_SECONDS, connect_hint, describe_target
from clash_pipeline.warehouse.connect import scrub as scrub_url

if TYPE_CHECKING:
    from clash_pipeline.settings import Settings

__all__ = [
    "ApiKeyLike",
    "SharedRateLimiter",
    "key_fingerprint",
    "limiter_for",
    "shared_limiter_factory",
]

_log = logging.getLogger("clash_pipeline.coc")

#: Pauses are compared with slots within this (seconds): both come from the database's clock
#: through offsets measured on different round trips.
_CLOCK_TOLERANCE = 0.005

#: A request that would start more than this share of an interval after its slot (its wake-up
#: came late: a busy event loop) takes a fresh slot instead, at most _LATE_RETRIES times, so no
#: two starts of a key are closer than half an interval (at most rate + 1 in any second). A
#: quarter lost a quarter of the key's grid in an hourly cycle on a loaded machine
#: (bench/scale.py prints the slots given up); half an interval is rarely exceeded.
_LATE_SHARE = 0.5
_LATE_RETRIES = 3
_LATE_FLOOR = 0.002

_RESERVE_SQL = "select * from ops.reserve_api_slot(%s, %s, %s)"
_THROTTLE_SQL = "select * from ops.throttle_api_key(%s, %s, %s, %s, %s, %s, %s, %s)"


def key_fingerprint(token: str) -> str:
    """A key's identity everywhere (logs, tables): ``sha256(token)[:12]``, never the token."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


class ApiKeyLike(Protocol):
    """What :func:`shared_limiter_factory` needs of a key of the pool."""

    @property
    def fingerprint(self) -> str: ...


class SharedRateLimiter(RateLimiter):
    """A :class:`RateLimiter` whose start slots come from the key's row in ``ops.api_key_pacing``.

    ``db_url``: the warehouse (the ingest login); ``fingerprint``: the key's
    :func:`key_fingerprint`. Everything else is the in-process limiter's: use it the same way
    (``async with limiter.slot() as sent_at``, :meth:`throttled`, :meth:`pause`,
    :meth:`accepted`), and :meth:`aclose` it when the run is done.
    """

    def __init__(
        self,
        db_url: str,
        fingerprint: str,
        requests_per_second: float,
        max_concurrency: int,
        *,
        pacing: AdaptivePacing | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        super().__init__(requests_per_second, max_concurrency, pacing=pacing, sleep=sleep)
        if len(fingerprint) != 12 or any(c not in "0123456789abcdef" for c in fingerprint):
            raise ValueError("fingerprint must be 12 lowercase hex digits (sha256(token)[:12])")
        self.db_url = db_url
        self.fingerprint = fingerprint
        self.shared = True
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._conn_loop: asyncio.AbstractEventLoop | None = None
        self._connecting: asyncio.Lock | None = None
        self._connecting_loop: asyncio.AbstractEventLoop | None = None
        self._offset = 0.0  # database epoch seconds - this limiter's clock, last measured
        self._pending: set[asyncio.Task[None]] = set()
        #: Round trips of reservations (seconds) and slots given up for a late start, for the
        #: benchmark.
        self.reserve_seconds = 0.0
        self.late_slots = 0

    def __repr__(self) -> str:
        return f"SharedRateLimiter(key={self.fingerprint}, rate={self.requests_per_second:g})"

    # -- the in-process limiter's hooks --------------------------------------------------------

    def throttled(self, pause_seconds: float, *, sent_at: float | None = None) -> None:
        """A 429: pause here at once, and pause and slow the key for every process."""
        super().pause(pause_seconds)
        self._epoch += 1  # slots reserved before it are taken again
        sent_db = None if sent_at is None else sent_at + self._offset
        self._in_background(self._throttle(pause_seconds, lower=True, sent_at=sent_db))

    def pause(self, seconds: float) -> None:
        """A 503 (or any cool-down): every process's requests of this key wait ``seconds``."""
        super().pause(seconds)
        self._in_background(self._throttle(seconds, lower=False, sent_at=None))

    async def _wait_for_start_slot(self) -> float:
        slot, epoch = await self._reserve_shared()
        late_retries = 0
        while True:
            if self._paused_until > slot + _CLOCK_TOLERANCE or epoch != self._epoch:
                # a pause (this process's, or another's seen by a reservation) or a decrease
                # arrived while we waited: that slot is inside the cool-down or on the old grid
                slot, epoch = await self._reserve_shared()
                continue
            delay = slot - self._clock()
            if delay <= 0:
                if -delay > self._late_after() and late_retries < _LATE_RETRIES:
                    # woken after the slot (a busy loop): starting now could bunch up with the
                    # next slot, so take a fresh one (the answer itself is never late: the
                    # slot is converted with the offset measured on its own round trip)
                    late_retries += 1
                    self.late_slots += 1
                    slot, epoch = await self._reserve_shared()
                    continue
                return slot
            await self._sleep(delay)

    def _late_after(self) -> float:
        return max(_LATE_SHARE / self.requests_per_second, _LATE_FLOOR)

    # -- the database ------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Finish the pending throttle writes and close the connection."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            try:
                await conn.close()
            except (psycopg.Error, RuntimeError):  # RuntimeError: its loop is gone
                pass

    async def _reserve_shared(self) -> tuple[float, int]:
        """One start slot of the key's grid, on this limiter's clock, and the local epoch."""
        params = (
            self.fingerprint,
            self.requests_per_second,
            self.pacing.recovery,
        )
        before = self._clock()
        row = await self._call(_RESERVE_SQL, params, "reserve a request slot")
        after = self._clock()
        self.reserve_seconds += after - before
        slot_db, now_db, paused_db, rate, _decreases = row
        # The database read its clock at some point of the round trip (which may include
        # waiting for the connection or connecting): taking it as "now" makes every converted
        # time late by at most that, never early, so no request starts before its slot.
        self._offset = float(now_db) - after
        if paused_db is not None:
            paused = float(paused_db) - self._offset
            if paused > self._paused_until:
                self._paused_until = paused  # another process's cool-down
        if rate is not None and float(rate) < self.requests_per_second:
            self.min_rate = (
                float(rate) if self.min_rate is None else min(self.min_rate, float(rate))
            )
        self._last_slot = float(slot_db) - self._offset
        return self._last_slot, self._epoch

    async def _throttle(self, seconds: float, *, lower: bool, sent_at: float | None) -> None:
        pacing = self.pacing
        params = (
            self.fingerprint,
            float(seconds),
            lower,
            sent_at,
            self.requests_per_second,
            pacing.recovery,
            pacing.backoff,
            pacing.min_rate,
        )
        paused_db, lowered, decreased, _count = await self._call(
            _THROTTLE_SQL, params, "record a 429 for"
        )
        if paused_db is not None:
            self._paused_until = max(self._paused_until, float(paused_db) - self._offset)
        if decreased:
            self.decreases += 1
            if lowered is not None:
                low = float(lowered)
                self.min_rate = low if self.min_rate is None else min(self.min_rate, low)

    def _in_background(self, work: Awaitable[None]) -> None:
        """Run a write without blocking the caller (called from sync code inside the loop)."""

        async def guarded() -> None:
            try:
                await work
            except DatabaseError as exc:
                _log.warning("%s", exc)  # the local pause still holds in this process

        task = asyncio.get_running_loop().create_task(guarded())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _call(self, query: str, params: tuple[Any, ...], what: str) -> tuple[Any, ...]:
        """One statement on the limiter's connection; reconnect once if it was dropped."""
        for attempt in (1, 2):
            conn = await self._connection(what)
            try:
                cursor = await conn.execute(query, params)
                row = await cursor.fetchone()
            except psycopg.OperationalError as exc:
                self._conn = None
                if attempt == 2 or not conn.closed:
                    raise self._error(what, exc) from None
                continue  # the connection dropped (a restart, a pooler): once more
            except psycopg.Error as exc:
                raise self._error(what, exc) from None
            if row is None:
                raise self._error(what, RuntimeError("the pacing function returned no row"))
            return tuple(row)
        raise AssertionError("unreachable")

    async def _connection(self, what: str) -> psycopg.AsyncConnection[Any]:
        loop = asyncio.get_running_loop()
        if self._conn is not None and not self._conn.closed and self._conn_loop is loop:
            return self._conn
        if self._connecting is None or self._connecting_loop is not loop:
            self._connecting, self._connecting_loop = asyncio.Lock(), loop
        async with self._connecting:  # one connection, not one per waiting request
            if self._conn is not None and not self._conn.closed and self._conn_loop is loop:
                return self._conn
            return await self._connect(what, loop)

    async def _connect(
        self, what: str, loop: asyncio.AbstractEventLoop
    ) -> psycopg.AsyncConnection[Any]:
        try:
            self._conn = await psycopg.AsyncConnection.connect(
                self.db_url,
                autocommit=True,
                application_name=f"clash-pipeline pacing {self.fingerprint}",
                connect_timeout=CONNECT_TIMEOUT_SECONDS,
            )
            # A reservation is a commit: waiting for its WAL flush would cost a disk sync per
            # request. Losing the last milliseconds of pacing state in a crash is harmless.
            await self._conn.execute("set synchronous_commit = off")
        except psycopg.Error as exc:
            raise self._error(what, exc) from None
        self._conn_loop = loop
        return self._conn

    def _error(self, what: str, exc: BaseException) -> DatabaseError:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        reason = scrub_url(reason, self.db_url)
        hint = connect_hint(self.db_url)
        if any(name in reason for name in ("api_key_pacing", "reserve_api_slot", "throttle_api")):
            hint = (
                "the warehouse lacks the shared pacing table: run `clash-pipeline db migrate`, "
                "or set COC_SHARED_PACING=off when a single process uses this key"
            )
        return DatabaseError(
            f"shared pacing: could not {what} API key {self.fingerprint} in "
            f"ops.api_key_pacing at {describe_target(self.db_url)}: {reason}",
            hint=hint,
        )


def limiter_for(
    settings: Settings,
    db_url: str | None,
    token: str,
    *,
    requests_per_second: float | None = None,
    max_concurrency: int | None = None,
    pacing: AdaptivePacing | None = None,
) -> RateLimiter:
    """The limiter of one key for a run: shared through ``db_url`` when COC_SHARED_PACING is on
    (the default) and there is a database, the in-process one otherwise."""
    from clash_pipeline.clash_api.client import pacing_from_settings

    rate = requests_per_second or settings.coc_requests_per_second
    concurrency = max_concurrency or settings.coc_max_concurrency
    pacing = pacing or pacing_from_settings(settings)
    if db_url and settings.coc_shared_pacing == "on":
        return SharedRateLimiter(db_url, key_fingerprint(token), rate, concurrency, pacing=pacing)
    return RateLimiter(rate, concurrency, pacing=pacing)


def shared_limiter_factory(db_url: str, settings: Settings) -> Callable[[ApiKeyLike], RateLimiter]:
    """``limiter_factory(key) -> RateLimiter`` for a key pool: one limiter per key, shared
    through ``db_url`` when COC_SHARED_PACING is on, in-process otherwise."""
    from clash_pipeline.clash_api.client import pacing_from_settings

    pacing = pacing_from_settings(settings)

    def factory(key: ApiKeyLike) -> RateLimiter:
        if settings.coc_shared_pacing == "on":
            return SharedRateLimiter(
                db_url,
                key.fingerprint,
                settings.coc_requests_per_second,
                settings.coc_max_concurrency,
                pacing=pacing,
            )
        return RateLimiter(
            settings.coc_requests_per_second, settings.coc_max_concurrency, pacing=pacing
        )

    return factory


async def close_limiter(limiter: RateLimiter) -> None:
    """Close a limiter's database connection, if it has one (any limiter may be passed)."""
    if isinstance(limiter, SharedRateLimiter):
        await limiter.aclose()
