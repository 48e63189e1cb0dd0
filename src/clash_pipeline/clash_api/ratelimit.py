"""A rate limiter shared by every request of a run.

The Clash API does not document its limit; community practice is about 10 requests/s per token,
and bursts earn a 429 plus a cool-down of 30-60 s (abuse risks an IP ban). So the limiter:

- paces request *starts* on an evenly spaced grid (GCRA with a burst of 1): start ``n`` is never
  earlier than ``1 / requests_per_second`` after start ``n - 1``. A server enforcing a token bucket
  at the same rate therefore never sees us ahead of it, even right after an idle period;
- caps the requests in flight at ``max_concurrency`` (a start slot is taken only *after* a
  concurrency slot, so requests released together by a finished one do not start in a burst);
- supports a global pause: after a 429 or 503 the client calls :meth:`RateLimiter.pause` and every
  request of the run, queued or yet to come, waits until the cool-down is over.

Clock and sleep are injectable so tests can check exact slot times with a virtual clock.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import TracebackType

__all__ = ["LimiterStats", "RateLimiter"]


@dataclass(frozen=True)
class LimiterStats:
    """A snapshot of what the limiter did, for the run's checkpoint row."""

    acquired: int
    waited_seconds: float
    pauses: int
    max_in_flight: int


class RateLimiter:
    """Paces request starts at <= ``requests_per_second`` and caps in-flight requests.

    Use one instance per run, shared by every client and task of that run::

        async with limiter:          # or: async with limiter.slot():
            response = await http.get(...)

    Hold the slot for one HTTP attempt only; back-off sleeps between retries belong outside it so
    a sleeping request does not hold a concurrency slot.
    """

    def __init__(
        self,
        requests_per_second: float,
        max_concurrency: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        if not requests_per_second > 0:
            raise ValueError(f"requests_per_second must be > 0, got {requests_per_second!r}")
        if isinstance(max_concurrency, bool) or int(max_concurrency) != max_concurrency:
            raise ValueError(f"max_concurrency must be an integer, got {max_concurrency!r}")
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency!r}")
        self.requests_per_second = float(requests_per_second)
        self.max_concurrency = int(max_concurrency)
        self.interval = 1.0 / self.requests_per_second
        self._clock = clock
        self._sleep = sleep
        # GCRA "theoretical arrival time": the earliest instant the next request may start.
        self._next_start = float("-inf")
        self._paused_until = float("-inf")
        # A FIFO semaphore of our own: futures are created in whichever loop is running, so a
        # limiter is not bound to the event loop it was first used in (asyncio.Semaphore is).
        self._in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        # Stats
        self.acquired = 0
        self.waited_seconds = 0.0
        self.pauses = 0
        self.max_in_flight = 0

    # -- public API --------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Requests currently holding a slot."""
        return self._in_flight

    @property
    def paused_until(self) -> float:
        """The clock value until which no request starts (``-inf`` when never paused)."""
        return self._paused_until

    @property
    def stats(self) -> LimiterStats:
        return LimiterStats(
            acquired=self.acquired,
            waited_seconds=self.waited_seconds,
            pauses=self.pauses,
            max_in_flight=self.max_in_flight,
        )

    def pause(self, seconds: float) -> None:
        """Make every request wait ``seconds`` from now (429 cool-down / ``Retry-After``).

        Pauses never shorten one already in force.
        """
        self.pause_until(self._clock() + max(0.0, float(seconds)))

    def pause_until(self, until: float) -> None:
        """Make every request wait until the clock reads ``until``."""
        if until > self._paused_until:
            self._paused_until = until
            self.pauses += 1

    async def acquire(self) -> None:
        """Wait for a concurrency slot, then for a start slot. Pair with :meth:`release`."""
        entered = self._clock()
        await self._acquire_concurrency()
        try:
            await self._wait_for_start_slot()
        except BaseException:
            self._release_concurrency()
            raise
        self.acquired += 1
        self.waited_seconds += max(0.0, self._clock() - entered)

    def release(self) -> None:
        """Give back the concurrency slot taken by :meth:`acquire`."""
        self._release_concurrency()

    async def __aenter__(self) -> RateLimiter:
        await self.acquire()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """``async with limiter.slot():`` — the same as ``async with limiter:``."""
        await self.acquire()
        try:
            yield
        finally:
            self.release()

    # -- internals ---------------------------------------------------------------------------

    def _reserve(self) -> float:
        """Take the next start slot on the grid (no await: atomic within the event loop)."""
        slot = max(self._clock(), self._next_start, self._paused_until)
        self._next_start = slot + self.interval
        return slot

    async def _wait_for_start_slot(self) -> None:
        slot = self._reserve()
        while True:
            if self._paused_until > slot:
                # A pause arrived while we waited for our slot: that slot is inside the
                # cool-down, so take a fresh one after it.
                slot = self._reserve()
                continue
            delay = slot - self._clock()
            if delay <= 0:
                return
            await self._sleep(delay)

    async def _acquire_concurrency(self) -> None:
        if self._in_flight < self.max_concurrency and not self._waiters:
            self._take_concurrency()
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        try:
            await future  # _release_concurrency hands its slot over: in_flight is unchanged
        except BaseException:
            if future.done() and not future.cancelled():
                # We were handed a slot but got cancelled before running: pass it on.
                self._release_concurrency()
            else:
                try:
                    self._waiters.remove(future)
                except ValueError:
                    pass
            raise

    def _take_concurrency(self) -> None:
        self._in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self._in_flight)

    def _release_concurrency(self) -> None:
        while self._waiters:
            future = self._waiters.popleft()
            if not future.done():
                future.set_result(None)
                return
        self._in_flight -= 1
