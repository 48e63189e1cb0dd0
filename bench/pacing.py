"""Benchmark: fixed pacing vs adaptive pacing against a server that allows less than we send.

The simulator allows 2 requests/s (token bucket, 429 with ``Retry-After: 3`` above it); the
client is configured at 10 requests/s with 8 in flight and the default retries (4), as in
issue 12. One clan with its members' profiles (and its CWL wars, when CWL is on) is fetched
twice, each time from a fresh server:

* ``fixed``: the old behaviour (``COC_THROTTLE_BACKOFF=1``): every 429 pauses the whole client
  for Retry-After, then it resumes at 10 requests/s;
* ``adaptive``: the default: every 429 also lowers the rate (x 0.5, or to what the server
  accepted in the last second when that is lower), which then climbs back by 0.2 requests/s
  per second.

Printed per mode: pages (logical requests), HTTP requests the server saw, 429s, dropped pages
(still failing after the last retry), wall time, the lowest rate the limiter went down to; the
last line is one JSON object with the same figures.

Run: ``uv run python bench/pacing.py`` (``--rate``, ``--retry-after``, ``--client-rate``,
``--members``). No database needed: this measures the fetch only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clash_pipeline.clash_api.client import ClashClient, RetryPolicy  # noqa: E402
from clash_pipeline.clash_api.ratelimit import AdaptivePacing, RateLimiter  # noqa: E402
from clash_pipeline.ingest.bundle import ClanUnavailableError, fetch_clan_bundle  # noqa: E402
from clash_pipeline.simulator.server import FaultConfig, SimulatedClashApi  # noqa: E402

MODES = {"fixed": AdaptivePacing(backoff=1.0), "adaptive": AdaptivePacing()}


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=2.0, help="requests/s the server allows")
    parser.add_argument("--retry-after", type=float, default=3.0, help="seconds, on each 429")
    parser.add_argument("--client-rate", type=float, default=10.0, help="requests/s configured")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--retries", type=int, default=4)
    parser.add_argument("--members", type=int, default=50, help="members of the clan fetched")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--backoff", type=float, default=AdaptivePacing.backoff)
    parser.add_argument("--recovery", type=float, default=AdaptivePacing.recovery)
    parser.add_argument("--only", choices=list(MODES), help="run one mode only")
    args = parser.parse_args()
    MODES["adaptive"] = AdaptivePacing(backoff=args.backoff, recovery=args.recovery)
    return args


async def _fetch(args: argparse.Namespace, sim: SimulatedClashApi, tag: str, mode: str) -> dict:
    limiter = RateLimiter(args.client_rate, args.concurrency, pacing=MODES[mode])
    client = ClashClient(
        base_url=sim.base_url,
        token=sim.token,
        limiter=limiter,
        retry=RetryPolicy(max_retries=args.retries),
    )
    t0 = time.perf_counter()
    async with client:
        try:
            bundle = await fetch_clan_bundle(client, tag)
            records = bundle.records
        except ClanUnavailableError:
            records = client.records
    wall = time.perf_counter() - t0
    return {
        "pages": len(records),
        "requests": sim.stats.requests_total,
        "throttled": sim.stats.throttled,
        "dropped": sum(1 for r in records if r.gave_up),
        "dropped_players": sum(1 for r in records if r.gave_up and r.endpoint == "player"),
        "wall_s": round(wall, 2),
        "min_rate": limiter.stats.min_rate,
        "decreases": limiter.stats.decreases,
    }


def main() -> None:
    args = _arguments()
    results: dict[str, Any] = {}
    tag = ""
    for mode in [args.only] if args.only else list(MODES):
        faults = FaultConfig(rate_limit_per_second=args.rate, retry_after_seconds=args.retry_after)
        token = secrets.token_urlsafe(16)
        with SimulatedClashApi(seed=args.seed, token=token, faults=faults) as sim:
            tag = tag or sim.world.find_clan(args.members, sim.clock.now())
            results[mode] = asyncio.run(_fetch(args, sim, tag, mode))
    print(
        f"clan {tag}: server {args.rate:g} req/s (Retry-After {args.retry_after:g} s), "
        f"client {args.client_rate:g} req/s, {args.concurrency} in flight, {args.retries} retries"
    )
    print(
        f"{'mode':<10}{'pages':>6}{'requests':>9}{'429s':>6}{'429 %':>7}{'dropped':>8}{'wall s':>8}"
    )
    for mode, r in results.items():
        share = r["throttled"] / r["requests"] if r["requests"] else 0.0
        r["throttled_share"] = round(share, 4)
        print(
            f"{mode:<10}{r['pages']:>6}{r['requests']:>9}{r['throttled']:>6}{share:>7.1%}"
            f"{r['dropped']:>8}{r['wall_s']:>8.2f}{r['min_rate'] or args.client_rate:>9.2f}"
        )
    print(json.dumps({"clan": tag, "server_rate": args.rate, **results}))


if __name__ == "__main__":
    main()
