"""Benchmark: does an incremental dbt build for one new snapshot stay flat as history grows?

One 50-member clan from the simulator, 4 snapshots a day (the clock advances six
hours between runs), landed in ``raw`` through the real fetch path. Measured in
this one run, side by side:

* ``dbt run`` (models only) and ``dbt build`` (models + tests) for one new
  snapshot after 1 day of history, and again after ``--days`` days (default 90);
* a full refresh (``dbt run --full-refresh``) at the end.

Printed: incremental(day N) / incremental(day 1) (target <= 1.5) and
full refresh / incremental (day N). Each figure is the median of ``--repeat``
new snapshots.

Run: ``uv run python bench/transform.py`` (embedded PostgreSQL in a temporary
folder; about 5 minutes for 90 days). ``--days 30`` for a quicker look.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg  # noqa: E402

from flows.coc.ratelimit import RateLimiter  # noqa: E402
from flows.config import load_settings  # noqa: E402
from flows.db.connect import resolve_database_url  # noqa: E402
from flows.db.migrations import migrate  # noqa: E402
from flows.fetch import ApiTarget, fetch_clans  # noqa: E402
from flows.simulator.server import SimulatedClashApi  # noqa: E402
from flows.transform import run_dbt  # noqa: E402

STEP = timedelta(hours=6)
VARS = {"staging_test_days": 3}


def fresh_database(admin_url: str, name: str) -> str:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')
        conn.execute(f'create database "{name}"')
    return psycopg.conninfo.make_conninfo(admin_url, dbname=name)


class Bench:
    def __init__(self, settings, db_url: str, sim: SimulatedClashApi, tag: str) -> None:
        self.settings, self.db_url, self.sim, self.tag = settings, db_url, sim, tag
        self.target = ApiTarget(sim.base_url, sim.token, "simulator", sim.clock.now)
        self.snapshots = 0

    def land(self, count: int) -> None:
        limiter = RateLimiter(2000, 32)
        for _ in range(count):
            [outcome] = asyncio.run(
                fetch_clans(self.settings, self.db_url, [self.tag], self.target, limiter=limiter)
            )
            assert outcome.status == "succeeded", outcome.error
            self.snapshots += 1
            self.sim.clock.advance(STEP)

    def dbt(self, *args: str, full_refresh: bool = False) -> float:
        t0 = time.perf_counter()
        result = run_dbt(
            list(args),
            db_url=self.db_url,
            home=self.settings.home,
            full_refresh=full_refresh,
            vars=VARS,
        )
        elapsed = time.perf_counter() - t0
        result.raise_for_status()
        return elapsed

    def one_new_snapshot(self, repeat: int) -> tuple[float, float]:
        """Median seconds of `dbt run` and `dbt build` for one new snapshot."""
        runs, builds = [], []
        for _ in range(repeat):
            self.land(1)
            runs.append(self.dbt("run"))
            self.land(1)
            builds.append(self.dbt("build"))
        return statistics.median(runs), statistics.median(builds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--per-day", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-transform-") as home:
        settings = load_settings(clash_pipeline_home=Path(home))
        db_url = fresh_database(resolve_database_url(settings), "bench_transform")
        migrate(db_url)
        with SimulatedClashApi(seed=args.seed, token=secrets.token_urlsafe(16)) as sim:
            sim.clock.set(sim.clock.now() - timedelta(days=args.days + 2))
            tag = sim.world.find_clan(50, sim.clock.now())
            bench = Bench(settings, db_url, sim, tag)
            bench.land(args.per_day)  # day 1
            bench.dbt("seed")
            bench.dbt("build")
            day1_run, day1_build = bench.one_new_snapshot(args.repeat)

            t0 = time.perf_counter()
            remaining = args.days * args.per_day - bench.snapshots
            bench.land(remaining)
            land_s = time.perf_counter() - t0
            catch_up = bench.dbt("build")
            dayn_run, dayn_build = bench.one_new_snapshot(args.repeat)
            full = bench.dbt("run", full_refresh=True)
            snapshots = bench.snapshots

        if settings.uses_embedded_database:
            from flows.db.embedded import EmbeddedPostgres

            EmbeddedPostgres(settings.home).stop()

    print(f"clan {tag}: {snapshots} snapshots ({args.days} days x {args.per_day}/day)")
    print(f"landing {remaining} snapshots took {land_s:.1f} s; catch-up build {catch_up:.1f} s")
    print(f"{'one new snapshot':<28}{'dbt run s':>10}{'dbt build s':>12}")
    print(f"{'after 1 day':<28}{day1_run:>10.2f}{day1_build:>12.2f}")
    print(f"{f'after {args.days} days':<28}{dayn_run:>10.2f}{dayn_build:>12.2f}")
    print(f"full refresh (dbt run) after {args.days} days: {full:.2f} s")
    print(
        f"incremental day {args.days} / day 1: run {dayn_run / day1_run:.2f}, "
        f"build {dayn_build / day1_build:.2f}  (target <= 1.5)"
    )
    print(f"full refresh / incremental (day {args.days}, dbt run): {full / dayn_run:.2f}")


if __name__ == "__main__":
    main()
