"""A rate limiter shared by every request of a run.

The Clash API does not document its limit; community practice is about 10 requests/s per token,
and bursts earn a 429 plus a cool-down of 30-60 s (abuse risks an IP ban). So the limiter:

- paces request *starts* on an evenly spaced grid (GCRA with a burst of 1): start ``n`` is never
  earlier than ``1 / requests_per_second`` after start ``n - 1``. A server enforcing a token bucket
  at the same rate therefore never sees us ahead of it, even right after an idle period;
- caps the requests in flight at ``max_concurrency`` (a start slot is taken only *after* a
  concurrency slot, so requests released together by a finished one do not start in a burst);
- supports a global pause: after a 429 or 503 the client calls :meth:`RateLimiter.pause` and every
  request of the run, queued or yet to come, waits until the cool-down is over;
- adapts its rate to the server (AIMD, :class:`AdaptivePacing`): a 429 also lowers the rate
  (:meth:`RateLimiter.throttled`) to rate × ``backoff``, or to what the server accepted in the
  last second (:meth:`RateLimiter.accepted`) when that is lower and not zero, never below
  ``min_rate``; once per congestion event (a 429 of a request that started before the last
  decrease was sent at the old rate and does not lower it again). From the end of the pause the
  rate climbs back by ``recovery`` req/s per whole second, up to ``requests_per_second``.

Clock and sleep are injectable so tests can check exact slot times with a virtual clock.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import TracebackType

__all__ = ["AdaptivePacing", "LimiterStats", "RateLimiter"]

#: The rate climbs back in steps, one per this many seconds without a 429.
RECOVERY_STEP_SECONDS = 1.0
#: After a 429 the rate is at most what the server accepted over this many seconds.
ACCEPTED_WINDOW_SECONDS = 1.0


@dataclass(frozen=True)
class AdaptivePacing:
    """How the limiter reacts to 429s (settings COC_THROTTLE_BACKOFF, COC_RATE_RECOVERY,
    COC_MIN_REQUESTS_PER_SECOND).

    ``backoff``: the rate is multiplied by it after a 429 (1.0: fixed pacing, pause only);
    ``recovery``: req/s added back per second without a 429; ``min_rate``: the floor.
    """

    backoff: float = 0.5
    recovery: float = 0.2
    min_rate: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 < self.backoff <= 1.0:
            raise ValueError(f"backoff must be within (0, 1], got {self.backoff!r}")
        if not self.recovery > 0:
            raise ValueError(f"recovery must be > 0, got {self.recovery!r}")
        if not self.min_rate > 0:
            raise ValueError(f"min_rate must be > 0, got {self.min_rate!r}")


@dataclass(frozen=True)
class LimiterStats:
    """A snapshot of what the limiter did, for the run's checkpoint row."""

    acquired: int
    waited_seconds: float
    pauses: int
    max_in_flight: int
    decreases: int = 0
    min_rate: float | None = None


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
        pacing: AdaptivePacing | None = None,
    ) -> None:
        if not requests_per_second > 0:
            raise ValueError(f"requests_per_second must be > 0, got {requests_per_second!r}")
        if isinstance(max_concurrency, bool) or int(max_concurrency) != max_concurrency:
            raise ValueError(f"max_concurrency must be an integer, got {max_concurrency!r}")
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency!r}")
        self.requests_per_second = float(requests_per_second)
        self.max_concurrency = int(max_concurrency)
        self.pacing = pacing or AdaptivePacing()
        self._clock = clock
        self._sleep = sleep
        # GCRA "theoretical arrival time": the earliest instant the next request may start.
        self._next_start = float("-inf")
        self._last_slot = float("-inf")
        self._paused_until = float("-inf")
        # Adaptive pacing: the rate set by the last decrease, from when it recovers, and when
        # it was lowered (None: never throttled, the configured rate).
        self._lowered_rate: float | None = None
        self._recover_from = float("-inf")
        self._last_decrease = float("-inf")
        self._epoch = 0  # bumped by a decrease: slots reserved before it are taken again
        self._accepted: deque[float] = deque()  # clock values of recent accepted answers
        # A FIFO semaphore of our own: futures are created in whichever loop is running, so a
        # limiter is not bound to the event loop it was first used in (asyncio.Semaphore is).
        self._in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        # Stats
        self.acquired = 0
        self.waited_seconds = 0.0
        self.pauses = 0
        self.max_in_flight = 0
        self.decreases = 0
        self.min_rate: float | None = None

    # -- public API --------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Requests currently holding a slot."""
        return self._in_flight

    @property
    def interval(self) -> float:
        """Seconds between request starts at the current rate."""
        return 1.0 / self.rate_at(self._clock())

    @property
    def rate(self) -> float:
        """The current rate (req/s): the configured one, or lower after 429s."""
        return self.rate_at(self._clock())

    def rate_at(self, when: float) -> float:
        """The rate at clock value ``when``: after a decrease, + ``recovery`` per whole second
        since the pause ended, capped at ``requests_per_second``."""
        if self._lowered_rate is None:
            return self.requests_per_second
        steps = max(0, math.floor((when - self._recover_from) / RECOVERY_STEP_SECONDS))
        return min(self.requests_per_second, self._lowered_rate + steps * self.pacing.recovery)

    def next_start(self) -> float:
        """When a request asked for now would start: the next free slot on the grid, after the
        requests already queued for a concurrency slot (a key pool sends the next request on
        the key that can start it soonest)."""
        now = self._clock()
        return max(now, self._next_start, self._paused_until) + len(self._waiters) / self.rate_at(
            now
        )

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
            decreases=self.decreases,
            min_rate=self.min_rate,
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

    def accepted(self) -> None:
        """An answer that was not a 429 (the server took the request), for :meth:`throttled`."""
        now = self._clock()
        self._accepted.append(now)
        while self._accepted and self._accepted[0] <= now - ACCEPTED_WINDOW_SECONDS:
            self._accepted.popleft()

    def accepted_rate(self) -> float:
        """Answers the server accepted over the last second, per second."""
        now = self._clock()
        recent = sum(1 for t in self._accepted if t > now - ACCEPTED_WINDOW_SECONDS)
        return recent / ACCEPTED_WINDOW_SECONDS

    def throttled(self, pause_seconds: float, *, sent_at: float | None = None) -> None:
        """A 429: pause every request ``pause_seconds`` and lower the rate (see the module doc).

        ``sent_at`` is the start slot (this limiter's clock) of the throttled attempt: one that
        started before the last decrease was paced at the old rate, so the rate is not lowered
        again for it (a burst of 429s from requests already in flight is one congestion event).
        """
        self.pause(pause_seconds)
        if self.pacing.backoff >= 1.0 or (sent_at is not None and sent_at < self._last_decrease):
            return
        now = self._clock()
        lowered = self.rate_at(now) * self.pacing.backoff
        accepted = self.accepted_rate()
        if accepted > 0:
            lowered = min(lowered, accepted)
        lowered = min(max(self.pacing.min_rate, lowered), self.requests_per_second)
        self._lowered_rate = lowered
        self._last_decrease = now
        self._recover_from = max(now, self._paused_until)
        self._next_start = max(self._paused_until, self._last_slot + 1.0 / lowered)
        self._epoch += 1
        self.decreases += 1
        self.min_rate = lowered if self.min_rate is None else min(self.min_rate, lowered)

    async def acquire(self) -> float:
        """Wait for a concurrency slot, then for a start slot. Pair with :meth:`release`.

        Returns the start slot (this limiter's clock), for :meth:`throttled`'s ``sent_at``.
        """
        entered = self._clock()
        await self._acquire_concurrency()
        try:
            slot = await self._wait_for_start_slot()
        except BaseException:
            self._release_concurrency()
            raise
        self.acquired += 1
        self.waited_seconds += max(0.0, self._clock() - entered)
        return slot

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
    async def slot(self) -> AsyncIterator[float]:
        """``async with limiter.slot() as sent_at:`` — ``async with limiter:`` that also gives
        the start slot (for :meth:`throttled`)."""
        sent_at = await self.acquire()
        try:
            yield sent_at
        finally:
            self.release()

    # -- internals ---------------------------------------------------------------------------

    def _reserve(self) -> tuple[float, int]:
        """Take the next start slot on the grid (no await: atomic within the event loop)."""
        slot = max(self._clock(), self._next_start, self._paused_until)
        self._next_start = slot + 1.0 / self.rate_at(slot)
        self._last_slot = slot
        return slot, self._epoch

    async def _wait_for_start_slot(self) -> float:
        slot, epoch = self._reserve()
        while True:
            if self._paused_until > slot or epoch != self._epoch:
                # A pause (or a lower rate) arrived while we waited for our slot: that slot is
                # inside the cool-down or on the old grid, so take a fresh one.
                slot, epoch = self._reserve()
                continue
            delay = slot - self._clock()
            if delay <= 0:
                return slot
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
