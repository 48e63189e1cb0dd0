"""RateLimiter: exact slot times on a virtual clock, plus a few tolerant real-clock checks."""

from __future__ import annotations

import asyncio
import heapq
import time

import pytest

from clash_pipeline.clash_api.ratelimit import LimiterStats, RateLimiter


class VirtualTime:
    """A virtual clock: ``sleep`` parks the caller until :meth:`run` advances time to its wake-up.

    Time only moves when every task is parked, so start times are exact and the tests never
    depend on the machine's speed.
    """

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = 0

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + max(0.0, delay), self._seq, future))
        self._seq += 1
        await future

    async def run(self, *coros):
        tasks = [asyncio.ensure_future(coro) for coro in coros]
        for _ in range(100_000):
            for _ in range(50):  # let every runnable task reach its next sleep
                await asyncio.sleep(0)
            if all(task.done() for task in tasks):
                return [task.result() for task in tasks]
            if not self._sleepers:
                raise AssertionError("deadlock: tasks are blocked but nobody sleeps")
            when, _, future = heapq.heappop(self._sleepers)
            self.now = max(self.now, when)
            if not future.done():
                future.set_result(None)
        raise AssertionError("virtual time did not converge")


def make(vt: VirtualTime, rps: float, concurrency: int) -> RateLimiter:
    return RateLimiter(rps, concurrency, clock=vt.clock, sleep=vt.sleep)


def test_sequential_starts_are_evenly_spaced():
    vt = VirtualTime()
    limiter = make(vt, 10, 4)
    starts: list[float] = []

    async def worker():
        for _ in range(5):
            async with limiter:
                starts.append(vt.now)

    asyncio.run(vt.run(worker()))
    assert starts == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    assert limiter.acquired == 5
    assert limiter.waited_seconds == pytest.approx(0.4)


def test_burst_is_one_after_idle_period():
    """After a long idle period only one request may start at once (no saved-up burst)."""
    vt = VirtualTime()
    limiter = make(vt, 10, 4)
    starts: list[float] = []

    async def worker():
        async with limiter:
            starts.append(vt.now)
        await vt.sleep(5.0)
        for _ in range(3):
            async with limiter:
                starts.append(vt.now)

    asyncio.run(vt.run(worker()))
    assert starts == pytest.approx([0.0, 5.0, 5.1, 5.2])


def test_concurrent_tasks_get_exact_slots_and_cap():
    """Concurrency slot first, then a start slot: freed slots do not cause a burst."""
    vt = VirtualTime()
    limiter = make(vt, 10, 2)
    starts: list[float] = []
    in_flight = 0
    peak = 0

    async def worker():
        nonlocal in_flight, peak
        async with limiter:
            in_flight += 1
            peak = max(peak, in_flight)
            starts.append(vt.now)
            await vt.sleep(0.25)
            in_flight -= 1

    asyncio.run(vt.run(*(worker() for _ in range(6))))
    # 0 and 0.1 start at once; then each start waits for a finished request (0.25 after its
    # start) and for the grid: max(release, previous start + 0.1).
    assert sorted(starts) == pytest.approx([0.0, 0.1, 0.25, 0.35, 0.5, 0.6])
    assert peak == 2
    assert limiter.max_in_flight == 2
    assert limiter.in_flight == 0


def test_start_gaps_never_below_interval():
    vt = VirtualTime()
    limiter = make(vt, 20, 5)
    starts: list[float] = []

    async def worker(hold: float):
        async with limiter.slot():
            starts.append(vt.now)
            await vt.sleep(hold)

    holds = [0.01, 0.3, 0.07, 0.0, 0.5, 0.02, 0.11, 0.2, 0.05, 0.4, 0.03, 0.09]
    asyncio.run(vt.run(*(worker(h) for h in holds)))
    starts.sort()
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert min(gaps) >= 0.05 - 1e-9
    assert limiter.max_in_flight <= 5


def test_pause_delays_everyone_including_queued_waiters():
    vt = VirtualTime()
    limiter = make(vt, 10, 4)
    starts: dict[str, float] = {}

    async def worker(name: str):
        async with limiter:
            starts[name] = vt.now

    async def pauser():
        await vt.sleep(0.05)  # after the first start, while the others wait for 0.1 and 0.2
        limiter.pause(1.0)

    asyncio.run(vt.run(worker("a"), worker("b"), worker("c"), pauser()))
    assert starts["a"] == pytest.approx(0.0)
    # b and c had reserved 0.1 and 0.2; the pause (until 1.05) pushes both past it, still paced.
    assert sorted([starts["b"], starts["c"]]) == pytest.approx([1.05, 1.15])
    assert limiter.pauses == 1


def test_pause_delays_later_requests_and_never_shortens():
    vt = VirtualTime()
    limiter = make(vt, 100, 4)
    starts: list[float] = []

    async def worker():
        limiter.pause(2.0)
        limiter.pause(0.5)  # shorter: ignored
        assert limiter.paused_until == pytest.approx(2.0)
        limiter.pause_until(1.0)  # earlier: ignored
        async with limiter:
            starts.append(vt.now)
        async with limiter:
            starts.append(vt.now)

    asyncio.run(vt.run(worker()))
    assert starts == pytest.approx([2.0, 2.01])
    assert limiter.pauses == 1


def test_cancelled_waiter_releases_nothing_it_did_not_hold():
    vt = VirtualTime()
    limiter = make(vt, 1000, 1)

    async def holder():
        async with limiter:
            await vt.sleep(1.0)

    async def scenario():
        hold = asyncio.ensure_future(holder())
        await asyncio.sleep(0)
        waiter = asyncio.ensure_future(limiter.acquire())
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        await hold
        assert limiter.in_flight == 0
        async with limiter:  # the slot is usable again
            assert limiter.in_flight == 1

    asyncio.run(vt.run(scenario()))
    assert limiter.in_flight == 0


def test_stats_snapshot():
    vt = VirtualTime()
    limiter = make(vt, 10, 3)

    async def worker():
        async with limiter:
            pass

    asyncio.run(vt.run(worker(), worker()))
    assert limiter.stats == LimiterStats(
        acquired=2, waited_seconds=pytest.approx(0.1), pauses=0, max_in_flight=1
    )


@pytest.mark.parametrize(("rps", "concurrency"), [(0, 1), (-1, 1), (1, 0), (1, 1.5)])
def test_rejects_bad_settings(rps, concurrency):
    with pytest.raises(ValueError):
        RateLimiter(rps, concurrency)


# -- real clock: tolerant lower bounds only ----------------------------------------------------


def test_real_clock_pacing_lower_bound():
    n, rate = 8, 40.0
    limiter = RateLimiter(rate, 8)

    async def main():
        async def one():
            async with limiter:
                pass

        started = time.monotonic()
        await asyncio.gather(*(one() for _ in range(n)))
        return time.monotonic() - started

    elapsed = asyncio.run(main())
    assert elapsed >= 0.9 * (n - 1) / rate


def test_real_clock_concurrency_cap_never_exceeded():
    limiter = RateLimiter(1000, 3)
    in_flight = 0
    peak = 0

    async def one():
        nonlocal in_flight, peak
        async with limiter:
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(0.01)
            in_flight -= 1

    async def main():
        await asyncio.gather(*(one() for _ in range(20)))

    asyncio.run(main())
    assert peak == 3
    assert limiter.in_flight == 0


def test_limiter_survives_a_new_event_loop():
    """A run may drive the same limiter from more than one event loop (one after the other)."""
    limiter = RateLimiter(1000, 1)

    async def main():
        async def one():
            async with limiter:
                await asyncio.sleep(0.001)

        await asyncio.gather(*(one() for _ in range(4)))

    asyncio.run(main())
    asyncio.run(main())
    assert limiter.acquired == 8
