"""Benchmark: does an incremental dbt build for one new snapshot stay flat as history grows?

One 50-member clan from the simulator, 4 snapshots a day (the clock advances six
hours between runs), landed in ``raw`` through the real fetch path. Measured in
this one run, side by side:

* ``dbt run`` (models only) and ``dbt build`` (models + tests) for one new
  snapshot after 1 day of history, and again after ``--days`` days (default 90);
* the derived metrics alone: the summed execution time of the metric models
  (int_member_snapshots_diffed, int_member_rush_computed, int_member_flows_windowed,
  int_star_baselines_accumulated, int_member_ace_*, metrics, roster) and of the
  ``metrics`` model by itself, read from the per-node timings of the same
  ``dbt run`` for one new snapshot;
* a full refresh (``dbt run --full-refresh``) at the end.

Printed: incremental(day N) / incremental(day 1) (target <= 1.5) for dbt run,
dbt build and the metric models, and full refresh / incremental (day N). Each
figure is the median of ``--repeat`` new snapshots.

Snapshots are landed as the pipeline lands them (change-driven polling, README
"Change-driven polling": a member's profile when it changed or is a day old), as
the ingest login; dbt runs as the transform login.

Run: ``uv run python bench/transform.py`` (a fresh embedded PostgreSQL in a
temporary folder, never the configured warehouse, stopped at the end; about 5
minutes for 90 days). ``--days 30`` for a quicker look.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from bench._common import Warehouse, temporary_warehouse  # noqa: E402
from clash_pipeline.clash_api.ratelimit import RateLimiter  # noqa: E402
from clash_pipeline.ingest.fetch import ApiTarget, fetch_clans  # noqa: E402
from clash_pipeline.simulator.server import SimulatedClashApi  # noqa: E402
from clash_pipeline.transform.dbt import DbtResult, run_dbt  # noqa: E402

STEP = timedelta(hours=6)
VARS = {"staging_test_days": 3}
# the models that compute the derived metrics (models/marts/metrics and their
# int_member_* / int_member_snapshots_diffed inputs)
METRIC_MODELS = (
    "int_member_snapshots_diffed",
    "int_member_rush_computed",
    "int_member_flows_windowed",
    "int_star_baselines_accumulated",
    "int_member_ace_windows_listed",
    "int_member_ace_raids_counted",
    "int_member_ace_ova_scored",
    "int_member_ace_dva_scored",
    "int_member_ace_par_scored",
    "int_member_ace_cap_scored",
    "int_member_ace_don_scored",
    "int_member_ace_avail_scored",
    "int_member_ace_combined",
    "metrics",
    "roster",
)


class Bench:
    """Lands snapshots as the ingest login; ``db_url`` is the transform login's (dbt)."""

    def __init__(self, warehouse: Warehouse, sim: SimulatedClashApi, tag: str) -> None:
        self.settings, self.sim, self.tag = warehouse.settings, sim, tag
        self.ingest_url, self.db_url = warehouse.access.ingest, warehouse.access.transform
        self.target = ApiTarget(sim.base_url, sim.token, "simulator", sim.clock.now)
        self.snapshots = 0

    def land(self, count: int) -> None:
        limiter = RateLimiter(2000, 32)
        for _ in range(count):
            fetch = fetch_clans(
                self.settings, self.ingest_url, [self.tag], self.target, limiter=limiter
            )
            [outcome] = asyncio.run(fetch)
            assert outcome.status == "succeeded", outcome.error
            self.snapshots += 1
            self.sim.clock.advance(STEP)

    def dbt(self, *args: str, full_refresh: bool = False) -> float:
        return self.dbt_result(*args, full_refresh=full_refresh)[0]

    def dbt_result(self, *args: str, full_refresh: bool = False) -> tuple[float, DbtResult]:
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
        return elapsed, result

    def one_new_snapshot(self, repeat: int) -> dict[str, float]:
        """Median seconds for one new snapshot: `dbt run`, `dbt build`, and within
        the `dbt run` the metric models together and the `metrics` model alone."""
        runs, builds, metric_models, metrics = [], [], [], []
        for _ in range(repeat):
            self.land(1)
            elapsed, result = self.dbt_result("run")
            runs.append(elapsed)
            metric_models.append(
                sum(n.execution_time for n in result.nodes if n.name in METRIC_MODELS)
            )
            metrics.append(result.node("metrics").execution_time)
            self.land(1)
            builds.append(self.dbt("build"))
        return {
            "run": statistics.median(runs),
            "build": statistics.median(builds),
            "metric_models": statistics.median(metric_models),
            "metrics": statistics.median(metrics),
        }


@dataclass
class Results:
    """What one benchmark run measured (seconds)."""

    tag: str
    snapshots: int
    landed: int  # snapshots landed after day 1
    land_s: float
    catch_up: float
    day1: dict[str, float]
    daymid: dict[str, float] | None
    dayn: dict[str, float]
    full: float


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--per-day", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--full-window-days",
        type=int,
        default=35,
        help="also measure after this many days, when every metric window (30d, season) is full",
    )
    args = parser.parse_args()
    args.mid_days = args.full_window_days if 1 < args.full_window_days < args.days else None
    return args


def main() -> None:
    args = _arguments()
    with temporary_warehouse("bench-transform-") as warehouse:
        with SimulatedClashApi(seed=args.seed, token=secrets.token_urlsafe(16)) as sim:
            sim.clock.set(sim.clock.now() - timedelta(days=args.days + 2))
            tag = sim.world.find_clan(50, sim.clock.now())
            results = _measure(args, Bench(warehouse, sim, tag))
    _print_results(args, results)


def _measure(args: argparse.Namespace, bench: Bench) -> Results:
    """Day 1, then (optionally) the day every window is full, then the last day."""
    bench.land(args.per_day)  # day 1
    bench.dbt("seed")
    bench.dbt("build")
    day1 = bench.one_new_snapshot(args.repeat)

    t0 = time.perf_counter()
    landed = args.days * args.per_day - bench.snapshots
    catch_up = 0.0
    daymid = None
    if args.mid_days:
        bench.land(args.mid_days * args.per_day - bench.snapshots)
        catch_up += bench.dbt("build")
        daymid = bench.one_new_snapshot(args.repeat)
    bench.land(args.days * args.per_day - bench.snapshots)
    land_s = time.perf_counter() - t0
    catch_up += bench.dbt("build")
    dayn = bench.one_new_snapshot(args.repeat)
    full = bench.dbt("run", full_refresh=True)
    return Results(bench.tag, bench.snapshots, landed, land_s, catch_up, day1, daymid, dayn, full)


def _print_results(args: argparse.Namespace, r: Results) -> None:
    days, mid_days, day1, daymid, dayn = args.days, args.mid_days, r.day1, r.daymid, r.dayn
    print(f"clan {r.tag}: {r.snapshots} snapshots ({days} days x {args.per_day}/day)")
    print(f"landing {r.landed} snapshots took {r.land_s:.1f} s; catch-up builds {r.catch_up:.1f} s")
    ratio = {key: dayn[key] / day1[key] for key in day1}
    print(
        f"{'one new snapshot':<28}{'dbt run s':>10}{'dbt build s':>12}{'metric models s':>17}"
        f"{'metrics s':>11}"
    )
    rows = [("after 1 day", day1)]
    if daymid:
        rows.append((f"after {mid_days} days", daymid))
    rows.append((f"after {days} days", dayn))
    for label, figures in rows:
        print(
            f"{label:<28}{figures['run']:>10.2f}{figures['build']:>12.2f}"
            f"{figures['metric_models']:>17.2f}{figures['metrics']:>11.2f}"
        )
    print(f"full refresh (dbt run) after {days} days: {r.full:.2f} s")
    print(
        f"incremental day {days} / day 1: run {ratio['run']:.2f}, "
        f"build {ratio['build']:.2f}  (target <= 1.5)"
    )
    print(
        f"metrics for one new snapshot, day {days} / day 1: "
        f"metric models {ratio['metric_models']:.2f}, metrics model {ratio['metrics']:.2f}"
        "  (target <= 1.5)"
    )
    if daymid:
        # the 30d and season windows fill up over the first ~31 days: from then on the
        # windows hold the same amount of data, so growth after that is growth with history
        print(
            f"metrics for one new snapshot, day {days} / day {mid_days} (windows full): "
            f"metric models {dayn['metric_models'] / daymid['metric_models']:.2f}, "
            f"metrics model {dayn['metrics'] / daymid['metrics']:.2f}"
        )
    print(f"full refresh / incremental (day {days}, dbt run): {r.full / dayn['run']:.2f}")


if __name__ == "__main__":
    main()
