"""Benchmark: a whole pipeline run (Prefect flow) against the API's rate-limit floor.

The simulator enforces 10 requests/s (429 above it) with 100 ms of latency per
response; the pipeline is told the same limit. A run is the real ``clash-ingest``
flow with its default options: lock, fetch and land per clan (concurrently, one
shared rate limiter), one dbt build of the models for the batch, the monitor,
publish. ``--tests`` adds dbt's data tests to the build (transform_mode=build).

Two scenarios, each measured on its second run (the first one builds the
warehouse and warms Prefect and dbt up, and is not counted):

* one 50-member clan;
* ten 50-member clans in one batch.

Printed: wall time by stage, and wall time / API floor, where the floor is
requests / allowed rate (the time the requests alone must take). Targets: <= 3
for one clan (dbt's fixed cost dominates), <= 1.3 for ten clans.

Every run fetches everything (``PipelineOptions(full=True)``, as ``--full``): the
measured second run would otherwise fetch only the members that changed
(README "Change-driven polling"), and the point here is the whole run against
the time every request must take.

Run: ``uv run python bench/pipeline.py`` (a fresh embedded PostgreSQL and the
Prefect state in a temporary folder, never the configured warehouse; the server
is stopped at the end; about 5 minutes). ``--rate``, ``--latency-ms``,
``--clans``, ``--tests`` to vary.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import temporary_warehouse  # noqa: E402
from clash_pipeline.simulator.codec import random_tag  # noqa: E402
from clash_pipeline.simulator.server import FaultConfig, SimulatedClashApi  # noqa: E402

STEP = timedelta(hours=6)
STAGES = ("start", "fetch_land", "transform", "monitor", "close")


def full_clans(sim: SimulatedClashApi, count: int, members: int = 50) -> list[str]:
    """``count`` distinct clans with exactly ``members`` members now (deterministic)."""
    now, found = sim.clock.now(), []
    for i in range(20_000):
        tag = random_tag(sim.seed, "find-clan", i)
        if len(sim.world.roster(tag, now)) == members:
            found.append(tag)
            if len(found) == count:
                return found
    raise SystemExit(f"found only {len(found)} clans of {members} members")


def run(sim: SimulatedClashApi, clans: list[str], options) -> tuple[object, float]:
    from clash_pipeline.orchestration.flows import ingest
    from clash_pipeline.orchestration.model import RunsFailedError
    from clash_pipeline.orchestration.options import ApiSpec

    api = ApiSpec(base_url=sim.base_url, token=sim.token, source="simulator", clock="simulator")
    t0 = time.perf_counter()
    state = asyncio.run(ingest(clan_tags=clans, api=api, options=options, return_state=True))
    wall = time.perf_counter() - t0
    report = state.result(raise_on_failure=False)
    if isinstance(report, RunsFailedError):
        raise SystemExit(f"a run failed: {report.message}")
    if isinstance(report, BaseException):
        raise report
    return report, wall


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=10.0, help="requests/s (API and client)")
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--clans", type=int, default=10, help="clans in the batch scenario")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tests", action="store_true", help="dbt data tests in every build")
    parser.add_argument("--dbt-project", help="another dbt project folder (default: this one)")
    return parser.parse_args()


def main() -> None:
    args = _arguments()
    # the flow finds the temporary server through CLASH_PIPELINE_HOME
    with temporary_warehouse("bench-pipeline-", prefect=True):
        results = _measure(args)
    _print_results(args, results)


def _measure(args: argparse.Namespace) -> list[tuple[str, object, float, int, int]]:
    """One clan, then the batch: a warm-up run, then the measured run of a new snapshot."""
    from clash_pipeline.orchestration.options import PipelineOptions

    options = PipelineOptions(
        trigger="cli",
        requests_per_second=args.rate,
        transform_mode="build" if args.tests else "run",
        dbt_project_dir=args.dbt_project,
        full=True,  # every request of every run (see the module docstring)
    )
    faults = FaultConfig(rate_limit_per_second=args.rate, latency_ms=args.latency_ms)
    results = []
    with SimulatedClashApi(seed=args.seed, token=secrets.token_urlsafe(16), faults=faults) as sim:
        batch = full_clans(sim, args.clans)
        for label, clans in (("1 clan", batch[:1]), (f"{len(batch)} clans", batch)):
            run(sim, clans, options)  # warm-up: first snapshot of these clans
            sim.clock.advance(STEP)
            sim.stats.reset()
            report, wall = run(sim, clans, options)
            sim.clock.advance(STEP)
            requests = sum(r.requests for r in report.runs)
            results.append((label, report, wall, requests, sim.stats.throttled))
    return results


def _print_results(args: argparse.Namespace, results: list) -> None:
    targets = {"1 clan": 3.0}
    print(
        f"simulator: {args.rate:g} requests/s enforced, {args.latency_ms:g} ms latency;"
        f" dbt {'models + data tests' if args.tests else 'models'}"
    )
    header = f"{'scenario':<10}{'requests':>9}{'floor s':>9}{'wall s':>8}"
    header += "".join(f"{s:>11}" for s in STAGES) + f"{'ratio':>8}{'target':>8}{'429s':>6}"
    print(header)
    for label, report, wall, requests, throttled in results:
        floor = requests / args.rate
        target = targets.get(label, 1.3)
        stages = "".join(f"{report.stage_seconds.get(s, 0.0):>11.2f}" for s in STAGES)
        ratio = wall / floor
        verdict = "ok" if ratio <= target else "MISSED"
        print(
            f"{label:<10}{requests:>9}{floor:>9.1f}{wall:>8.1f}{stages}{ratio:>8.2f}"
            f"{'<= ' + format(target, 'g'):>8}{throttled:>6}  {verdict}"
        )
        build = report.build
        if build is not None:
            fetch = max(r.phase_ms.get("fetch", 0) for r in report.runs) / 1000
            land = sum(r.phase_ms.get("land", 0) for r in report.runs) / 1000
            print(
                f"{'':<10}slowest clan fetch {fetch:.1f} s, land total {land:.2f} s, "
                f"dbt {build.scope} build {build.seconds:.1f} s"
            )


if __name__ == "__main__":
    main()
