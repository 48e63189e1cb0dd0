"""Benchmark: fetching and landing one 50-member clan under the API's rate limit.

The simulator enforces 10 requests/s (429 above it) and adds 100 ms of latency
to every response, like a distant real API. The client is told the same limit.
Printed, all measured in this one run:

* requests made and wall time of the first fetch;
* utilisation = achieved requests/s / allowed requests/s (target >= 0.9) and
  the number of 429s served (target 0);
* payload bytes stored by a second, unchanged fetch as a share of the first
  (target < 5 %): content addressing means an unchanged body is not stored again.

Both fetches are full (``fetch_clans(..., full=True)``): every endpoint and every
member's profile, as before change-driven polling (README "Change-driven polling"),
which would skip the unchanged members of the second fetch; the point here is
every request and what storing its body costs.

Run: ``uv run python bench/fetch.py`` (a fresh embedded PostgreSQL in a temporary
folder, never the configured warehouse, stopped at the end; ``--rate`` and
``--latency-ms`` to vary).
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg  # noqa: E402

from bench._common import temporary_warehouse  # noqa: E402
from clash_pipeline.clash_api.ratelimit import RateLimiter  # noqa: E402
from clash_pipeline.ingest.fetch import ApiTarget, fetch_clans  # noqa: E402
from clash_pipeline.simulator.server import FaultConfig, SimulatedClashApi  # noqa: E402


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=10.0, help="allowed requests/s")
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    return parser.parse_args()


def main() -> None:
    args = _arguments()
    with temporary_warehouse("bench-fetch-") as warehouse:
        token = secrets.token_urlsafe(16)
        faults = FaultConfig(rate_limit_per_second=args.rate, latency_ms=args.latency_ms)
        with SimulatedClashApi(seed=args.seed, token=token, faults=faults) as sim:
            tag = sim.world.find_clan(50, sim.clock.now())
            members = len(sim.world.roster_tags(tag, sim.clock.now()))
            db_url = warehouse.access.ingest  # the login the pipeline's fetch uses
            results = _measure(args, warehouse.settings, db_url, sim, tag)

    print(
        f"clan {tag} ({members} members): {results[0][1].requests} requests per fetch, "
        f"limit {args.rate:g} req/s, latency {args.latency_ms:g} ms"
    )
    _print_results(args, results)


def _measure(args, settings, db_url: str, sim: SimulatedClashApi, tag: str) -> list[tuple]:
    """A first fetch, then an unchanged one: (label, land result, wall s, fetch s, 429s)."""
    target = ApiTarget(sim.base_url, sim.token, "simulator", sim.clock.now)
    results = []
    for label in ("first", "second (unchanged)"):
        sim.stats.reset()
        limiter = RateLimiter(args.rate, args.concurrency)
        t0 = time.perf_counter()
        [outcome] = asyncio.run(
            fetch_clans(settings, db_url, [tag], target, limiter=limiter, full=True)
        )
        wall = time.perf_counter() - t0
        assert outcome.status == "succeeded", outcome.error
        with psycopg.connect(db_url) as conn:
            fetch_ms = conn.execute(
                "select duration_ms from ops.ingest_logs where run_id = %s and phase = 'fetch'",
                (outcome.run_id,),
            ).fetchone()[0]
        results.append((label, outcome.land, wall, fetch_ms / 1000, sim.stats.throttled))
    return results


def _print_results(args: argparse.Namespace, results: list[tuple]) -> None:
    print(
        f"{'fetch':<20}{'requests':>9}{'wall s':>8}{'fetch s':>8}{'req/s':>7}{'util':>6}"
        f"{'429s':>5}{'received':>10}{'stored':>9}"
    )
    for label, land, wall, fetch_s, throttled in results:
        rate = land.requests / fetch_s
        print(
            f"{label:<20}{land.requests:>9}{wall:>8.2f}{fetch_s:>8.2f}{rate:>7.2f}"
            f"{rate / args.rate:>6.2f}{throttled:>5}{land.bytes_received:>10}{land.bytes_new:>9}"
        )
    first, second = results[0][1], results[1][1]
    share = second.bytes_new / first.bytes_new if first.bytes_new else 0.0
    util = first.requests / results[0][3] / args.rate
    print(
        "utilisation = requests / fetch-phase seconds / allowed rate "
        f"(first fetch): {util:.3f}  (target >= 0.9, 429s: {results[0][4]})"
    )
    print(f"end to end, landing included: {first.requests / results[0][2] / args.rate:.3f}")
    print(f"bytes stored by the unchanged second fetch / first: {share:.2%}  (target < 5%)")


if __name__ == "__main__":
    main()
