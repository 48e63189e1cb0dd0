"""Issue 14 point 2: many processes, one key's rate; no clan fetched by two processes.

* :class:`SharedRateLimiter` reserves every start slot of a key in ``ops.api_key_pacing``
  (real PostgreSQL): two limiters (two connections, as two processes) share one grid; a 429
  pauses and slows every user of the key, once per congestion event; database problems are one
  line naming the key's fingerprint, never the token;
* end to end: one simulator limiting the key to 10 requests/s (429 above it), two
  ``clash-pipeline fetch`` processes with the same token on different clans: zero 429s and
  at most the key's rate together; with COC_SHARED_PACING=off the same two processes collect
  429s (the test can fail);
* two processes given the same clan: it is fetched once, the other run is ``skipped: being
  fetched by another process``;
* a fetch killed with SIGKILL mid-run: its clans are fetched by the next process at once, its
  runs are closed as abandoned, and no pacing state holds the key back.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import psycopg
import pytest
from psycopg.rows import dict_row

from clash_pipeline.clash_api.ratelimit import AdaptivePacing, RateLimiter
from clash_pipeline.clash_api.shared_pacing import (
    SharedRateLimiter,
    key_fingerprint,
    limiter_for,
    shared_limiter_factory,
)
from clash_pipeline.errors import DatabaseError
from clash_pipeline.settings import load_settings
from clash_pipeline.simulator import FaultConfig, SimulatedClashApi
from clash_pipeline.warehouse.locks import clan_lock_key

TOKEN = "shared-pacing-test-token-0123456789"  # noqa: S105 - opens only the test simulator
FINGERPRINT = hashlib.sha256(TOKEN.encode()).hexdigest()[:12]
RATE = 10.0  # the key's rate: the simulator's limit and COC_REQUESTS_PER_SECOND
CLANS_A = ["#2PR8R8V8P"]
CLANS_B = ["#LQL9G2RU"]
PACING = AdaptivePacing(backoff=0.5, recovery=0.5, min_rate=0.5)


def _pacing_row(url: str) -> dict:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        row = conn.execute(
            "select *, clock_timestamp() as db_now from ops.api_key_pacing"
            " where key_fingerprint = %s",
            (FINGERPRINT,),
        ).fetchone()
    assert row is not None
    return row


# ------------------------------------------------------------------ the limiter on PostgreSQL


def test_two_limiters_of_one_key_share_one_grid(migrated_db_url):
    """Two limiters (two sessions, as two processes) at 20 req/s each: together 20 req/s."""
    rate = 20.0
    a = SharedRateLimiter(migrated_db_url, FINGERPRINT, rate, 4, pacing=PACING)
    b = SharedRateLimiter(migrated_db_url, FINGERPRINT, rate, 4, pacing=PACING)
    starts: list[float] = []

    async def one(limiter: SharedRateLimiter) -> None:
        async with limiter.slot():
            starts.append(time.monotonic())

    async def main() -> None:
        try:
            await asyncio.gather(*(one(lim) for lim in [a, b] * 10))
        finally:
            await a.aclose()
            await b.aclose()

    t0 = time.monotonic()
    asyncio.run(main())
    elapsed = time.monotonic() - t0
    # 20 starts on one grid of 50 ms: the last one 19 x 50 ms = 0.95 s after the first, less
    # how late the first one started (its answer's way back); two separate limiters would
    # take about 10 x 50 ms = 0.45 s
    starts.sort()
    assert starts[-1] - starts[0] >= 18 / rate
    assert _max_in_window(starts, 0.5) <= 0.5 * rate + 2
    assert elapsed < 5
    row = _pacing_row(migrated_db_url)
    assert row["requests"] == 20
    # never more than one interval ahead of the last slot, and the key is idle now
    assert (row["next_start"] - row["last_slot"]).total_seconds() == pytest.approx(1 / rate)
    assert row["next_start"] <= row["db_now"] + timedelta(seconds=1 / rate)
    assert (row["paused_until"], row["lowered_rate"], row["decreases"]) == (None, None, 0)
    assert a.acquired == b.acquired == 10


def test_a_429_pauses_every_user_of_the_key_and_lowers_its_rate_once(migrated_db_url):
    url = migrated_db_url
    a = SharedRateLimiter(url, FINGERPRINT, 10, 4, pacing=PACING)
    b = SharedRateLimiter(url, FINGERPRINT, 10, 4, pacing=PACING)

    async def main() -> tuple[float, float]:
        try:
            async with a.slot() as sent_at:
                pass
            a.throttled(1.0, sent_at=sent_at)  # 429, Retry-After 1: 10 -> 5 req/s
            await asyncio.gather(*a._pending)
            # a second 429 of a request sent before the decrease: same congestion event
            a.throttled(1.0, sent_at=sent_at)
            await asyncio.gather(*a._pending)
            t0 = time.monotonic()
            async with b.slot():  # the other "process" waits for the cool-down
                t1 = time.monotonic()
            async with b.slot():  # then starts at the lowered rate: 0.2 s apart
                t2 = time.monotonic()
            return t1 - t0, t2 - t1
        finally:
            await a.aclose()
            await b.aclose()

    waited, gap = asyncio.run(main())
    assert waited >= 0.9  # ~1 s minus the moments between the 429 and b's request
    assert 0.19 <= gap < 0.5
    row = _pacing_row(url)
    assert row["decreases"] == 1 and a.decreases == 1
    assert row["lowered_rate"] == pytest.approx(5.0)
    assert row["pauses"] == 2  # the second 429 extended the pause, without a decrease
    assert b.paused_until > 0  # b learned the pause from the row


def test_a_503_pauses_without_lowering_the_rate(migrated_db_url):
    limiter = SharedRateLimiter(migrated_db_url, FINGERPRINT, 10, 2, pacing=PACING)

    async def main() -> None:
        try:
            async with limiter.slot():
                pass
            limiter.pause(0.3)
            await asyncio.gather(*limiter._pending)
        finally:
            await limiter.aclose()

    asyncio.run(main())
    row = _pacing_row(migrated_db_url)
    assert (row["pauses"], row["decreases"], row["lowered_rate"]) == (1, 0, None)
    assert row["paused_until"] is not None


def test_a_late_wake_up_keeps_its_slot_within_half_an_interval(migrated_db_url):
    """A busy event loop wakes a request after its slot. Up to half an interval late it still
    starts (giving the slot up lost an interval of the key's grid each time: a quarter of an
    hourly cycle's slots on a loaded machine, bench/scale.py); later than that it takes a
    fresh slot, so no two starts are closer than half an interval."""

    def limiter_oversleeping(late: float) -> SharedRateLimiter:
        async def oversleep(seconds: float) -> None:
            await asyncio.sleep(seconds + late)

        return SharedRateLimiter(
            migrated_db_url, FINGERPRINT, 10, 8, pacing=PACING, sleep=oversleep
        )

    def run(limiter: SharedRateLimiter) -> None:
        async def one() -> None:
            async with limiter.slot():
                pass

        async def main() -> None:
            try:
                await asyncio.gather(*(one() for _ in range(10)))
            finally:
                await limiter.aclose()

        asyncio.run(main())

    a = limiter_oversleeping(0.03)  # 30 ms late: more than a quarter, less than half
    run(a)
    assert a.late_slots == 0
    assert _pacing_row(migrated_db_url)["requests"] == 10  # one reservation per request
    b = limiter_oversleeping(0.07)  # 70 ms late: each start takes a fresh slot
    run(b)
    assert b.late_slots >= 10
    assert _pacing_row(migrated_db_url)["requests"] == 20 + b.late_slots


def test_database_problems_are_one_line_naming_the_key_never_the_token(fresh_db_url):
    async def reserve(url: str) -> None:
        limiter = SharedRateLimiter(url, key_fingerprint(TOKEN), 10, 2)
        try:
            async with limiter.slot():
                pass
        finally:
            await limiter.aclose()

    # a warehouse without the migration
    with pytest.raises(DatabaseError) as unmigrated:
        asyncio.run(reserve(fresh_db_url))
    message = str(unmigrated.value)
    assert f"API key {FINGERPRINT}" in message and "ops.api_key_pacing" in message
    assert "clash-pipeline db migrate" in (unmigrated.value.hint or "")
    assert "COC_SHARED_PACING=off" in (unmigrated.value.hint or "")
    # a database that does not answer
    with pytest.raises(DatabaseError) as unreachable:
        asyncio.run(reserve("postgresql://clash:secret-pw@127.0.0.1:9/nowhere?connect_timeout=2"))
    text = str(unreachable.value)
    assert "\n" not in unreachable.value.message and FINGERPRINT in text
    for secret in (TOKEN, "secret-pw"):
        assert secret not in text


def test_the_setting_chooses_the_limiter(migrated_db_url):
    on = load_settings(coc_shared_pacing="on", coc_requests_per_second=7)
    off = load_settings(coc_shared_pacing="OFF")
    shared = limiter_for(on, migrated_db_url, TOKEN)
    assert isinstance(shared, SharedRateLimiter)
    assert (shared.fingerprint, shared.requests_per_second) == (FINGERPRINT, 7.0)
    assert TOKEN not in repr(shared) and TOKEN not in repr(vars(shared))
    assert type(limiter_for(off, migrated_db_url, TOKEN)) is RateLimiter
    assert type(limiter_for(on, None, TOKEN)) is RateLimiter  # no database: in-process
    key = SimpleNamespace(position=2, fingerprint=key_fingerprint("another-token"))
    from_factory = shared_limiter_factory(migrated_db_url, on)(key)
    assert isinstance(from_factory, SharedRateLimiter)
    assert from_factory.fingerprint == key.fingerprint
    assert type(shared_limiter_factory(migrated_db_url, off)(key)) is RateLimiter


# ------------------------------------------------------------------ processes and a simulator


@pytest.fixture
def limited_sim() -> Iterator[SimulatedClashApi]:
    """One simulator for every process of a test: the key is limited to RATE requests/s."""
    faults = FaultConfig(rate_limit_per_second=RATE, retry_after_seconds=1.0)
    with SimulatedClashApi(seed=14, token=TOKEN, faults=faults) as sim:
        yield sim


def _env(url: str, home: Path, sim: SimulatedClashApi, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COC_", "DATABASE_URL"))}
    env.update(
        DATABASE_URL=url,
        CLASH_PIPELINE_HOME=str(home),
        COC_API_BASE_URL=sim.base_url,
        COC_API_TOKEN=TOKEN,
        COC_REQUESTS_PER_SECOND=str(RATE),
        COC_SHARED_PACING="on",
        COLUMNS="200",
    )
    env.update(extra)
    return env


def _fetch(env: dict[str, str], clans: list[str]) -> subprocess.Popen[str]:
    args = [sys.executable, "-m", "clash_pipeline.cli", "fetch"]
    for clan in clans:
        args += ["--clan", clan]
    return subprocess.Popen(
        args,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _finish(proc: subprocess.Popen[str], timeout: float = 240) -> tuple[int, str]:
    try:
        output, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, output


def _runs(url: str) -> list[dict]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(
            "select run_id, clan_tags[1] as clan, status, error, started_at"
            " from ops.ingest_runs where kind = 'fetch' order by started_at"
        ).fetchall()


def _starts(url: str) -> list[tuple[float, str]]:
    """Every request's start (epoch seconds) and its clan, from raw.fetch_log."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "select extract(epoch from l.requested_at)::float8, l.clan_tag from raw.fetch_log l"
        ).fetchall()
    return sorted((float(t), c) for t, c in rows)


def _max_in_window(times: list[float], window: float) -> int:
    most, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - window:
            j += 1
        most = max(most, i - j + 1)
    return most


def _two_processes(url: str, home: Path, sim: SimulatedClashApi, shared: str) -> list[str]:
    env = _env(url, home, sim, COC_SHARED_PACING=shared)
    procs = [_fetch(env, CLANS_A), _fetch(env, CLANS_B)]
    results = [_finish(p) for p in procs]
    for code, output in results:
        assert code == 0, output
    return [output for _, output in results]


def test_two_processes_sharing_a_key_stay_within_its_rate(migrated_db_url, tmp_path, limited_sim):
    _two_processes(migrated_db_url, tmp_path, limited_sim, "on")
    assert limited_sim.stats.by_status.get(429, 0) == 0
    starts = _starts(migrated_db_url)
    a = [t for t, clan in starts if clan in CLANS_A]
    b = [t for t, clan in starts if clan in CLANS_B]
    assert len(a) > 30 and len(b) > 30
    # the two fetches ran at the same time for a good while (else the test proves nothing)
    overlap = min(a[-1], b[-1]) - max(a[0], b[0])
    assert overlap > 2.0, (a[0], a[-1], b[0], b[-1])
    times = [t for t, _ in starts]
    # one grid at 10 req/s: at most 10 + 1 starts in any second, together
    assert _max_in_window(times, 1.0) <= RATE + 1
    during = [t for t in times if max(a[0], b[0]) <= t <= min(a[-1], b[-1])]
    assert len(during) / overlap <= RATE * 1.05
    row = _pacing_row(migrated_db_url)
    # every request took its slot from the row (a few answers that came back after their
    # slot, e.g. while connecting, took a second one)
    assert len(times) <= row["requests"] <= len(times) + 10


def test_without_shared_pacing_two_processes_exceed_the_key(migrated_db_url, tmp_path, limited_sim):
    _two_processes(migrated_db_url, tmp_path, limited_sim, "off")
    assert limited_sim.stats.by_status.get(429, 0) > 0
    with psycopg.connect(migrated_db_url) as conn:
        assert conn.execute("select count(*) from ops.api_key_pacing").fetchone() == (0,)


def test_a_clan_given_to_two_processes_is_fetched_once(migrated_db_url, tmp_path, limited_sim):
    url = migrated_db_url
    env = _env(url, tmp_path, limited_sim, COC_REQUESTS_PER_SECOND="4")
    first = _fetch(env, CLANS_A)
    try:
        _wait_for(lambda: any(r["status"] == "running" for r in _runs(url)), first)
        second = _fetch(env, CLANS_A)
        code2, out2 = _finish(second)
    finally:
        code1, out1 = _finish(first)
    assert (code1, code2) == (0, 0), out1 + out2
    assert "skipped: being fetched by another process" in out2
    runs = _runs(url)
    assert sorted(r["status"] for r in runs) == ["skipped", "succeeded"]
    [skipped] = [r for r in runs if r["status"] == "skipped"]
    assert skipped["clan"] == CLANS_A[0]
    assert skipped["error"]["message"] == "being fetched by another process"
    with psycopg.connect(url) as conn:  # one landed run: fetched once
        assert conn.execute("select count(*) from raw.fetch_runs").fetchone() == (1,)
    # and a clan whose lock a session holds is skipped at once, not waited for
    holder = psycopg.connect(url, autocommit=True)
    holder.execute("select pg_advisory_lock(%s, %s)", clan_lock_key(CLANS_B[0]))
    try:
        t0 = time.monotonic()
        code, out = _finish(_fetch(env, CLANS_B))
        assert code == 0, out
        assert "skipped: being fetched by another process" in out
        assert time.monotonic() - t0 < 60
    finally:
        holder.close()


def _wait_for(condition, proc: subprocess.Popen[str], timeout: float = 120) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"the fetch ended early: {proc.communicate()[0]}"
        assert time.monotonic() < deadline, "the fetch never started"
        time.sleep(0.1)


def test_a_killed_worker_frees_its_clans_and_the_key_at_once(
    migrated_db_url, tmp_path, limited_sim
):
    url = migrated_db_url
    env = _env(url, tmp_path, limited_sim)
    clans = CLANS_A + CLANS_B
    victim = _fetch(env, clans)
    try:
        _wait_for(lambda: limited_sim.stats.requests_total >= 20, victim)
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(timeout=30)
    finally:
        if victim.poll() is None:
            os.killpg(victim.pid, signal.SIGKILL)
            victim.wait()
    row = _pacing_row(url)
    # what the dead process left: at most its in-flight reservations, under a second
    assert (row["next_start"] - row["db_now"]).total_seconds() < 1.0
    assert row["paused_until"] is None
    served = limited_sim.stats.requests_total
    t0 = time.monotonic()
    code, output = _finish(_fetch(env, clans))
    assert code == 0, output
    assert "skipped" not in output  # the dead process's clan locks went with it
    runs = _runs(url)
    assert len(runs) == 4
    assert [r["status"] for r in runs[:2]] == ["failed", "failed"]  # closed as abandoned
    assert all(r["error"]["type"] == "AbandonedRun" for r in runs[:2])
    assert [r["status"] for r in runs[2:]] == ["succeeded", "succeeded"]
    # the next process ran at the key's rate from the start: no pause, no backlog
    requests = limited_sim.stats.requests_total - served
    assert requests / (time.monotonic() - t0) > 0.4 * RATE
    assert limited_sim.stats.by_status.get(429, 0) == 0
