"""Benchmark: what a start slot costs in-process and through PostgreSQL (shared pacing).

Reserves ``--requests`` start slots of one key at a rate too high to wait for (so only the
reservation itself is timed), ``--concurrency`` requests at a time:

* in-process: :class:`~clash_pipeline.clash_api.ratelimit.RateLimiter`;
* PostgreSQL: :class:`~clash_pipeline.clash_api.shared_pacing.SharedRateLimiter` (one call of
  ``ops.reserve_api_slot`` per request, the row in ``ops.api_key_pacing``).

Prints both costs per request side by side; the last line is one JSON object
(``postgres_latency_ms``: how long one reservation waits for its answer, queued behind the
other ``--concurrency - 1`` on the limiter's one connection).

Run: ``uv run python bench/shared_pacing.py`` (embedded PostgreSQL in a temporary folder, or
``DATABASE_URL``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clash_pipeline.clash_api.ratelimit import RateLimiter  # noqa: E402
from clash_pipeline.clash_api.shared_pacing import SharedRateLimiter, key_fingerprint  # noqa: E402
from clash_pipeline.settings import load_settings  # noqa: E402
from clash_pipeline.warehouse.connect import resolve_database_url  # noqa: E402
from clash_pipeline.warehouse.migrations import migrate  # noqa: E402

#: High enough that no reservation waits: the time measured is the reservation's own.
UNBOUNDED_RATE = 1_000_000.0


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    return parser.parse_args()


async def _per_request(limiter: RateLimiter, requests: int, concurrency: int) -> float:
    """Seconds per request of ``requests`` acquire/release pairs, ``concurrency`` at a time."""

    async def worker(count: int) -> None:
        for _ in range(count):
            async with limiter.slot():
                pass

    share, extra = divmod(requests, concurrency)
    counts = [share + (1 if i < extra else 0) for i in range(concurrency)]
    started = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in counts))
    return (time.perf_counter() - started) / requests


async def _measure(db_url: str, requests: int, concurrency: int) -> dict[str, float]:
    local = RateLimiter(UNBOUNDED_RATE, concurrency)
    shared = SharedRateLimiter(
        db_url, key_fingerprint(secrets.token_urlsafe(24)), UNBOUNDED_RATE, concurrency
    )
    try:
        await _per_request(shared, min(50, requests), concurrency)  # connect, plan: warm up
        shared.reserve_seconds = 0.0
        in_process = await _per_request(local, requests, concurrency)
        postgres = await _per_request(shared, requests, concurrency)
        round_trip = shared.reserve_seconds / max(1, shared.acquired - min(50, requests))
    finally:
        await shared.aclose()
    return {"in_process": in_process, "postgres": postgres, "round_trip": round_trip}


def main() -> None:
    args = _arguments()
    with tempfile.TemporaryDirectory(prefix="bench-shared-pacing-") as home:
        settings = load_settings(clash_pipeline_home=Path(home))
        db_url = resolve_database_url(settings)  # a fresh embedded one, or DATABASE_URL
        migrate(db_url)
        cost = asyncio.run(_measure(db_url, args.requests, args.concurrency))
    in_ms, pg_ms = cost["in_process"] * 1000, cost["postgres"] * 1000
    print(f"{'':<28}{'in-process':>12}{'PostgreSQL':>12}")
    print(f"{'ms per request (slot)':<28}{in_ms:>12.4f}{pg_ms:>12.4f}")
    print(f"{'requests/s one process':<28}{1000 / in_ms:>12.0f}{1000 / pg_ms:>12.0f}")
    print(f"{'share of a 10 req/s interval':<28}{in_ms / 100:>12.4%}{pg_ms / 100:>12.4%}")
    print(
        json.dumps(
            {
                "requests": args.requests,
                "concurrency": args.concurrency,
                "in_process_ms_per_request": round(in_ms, 4),
                "postgres_ms_per_request": round(pg_ms, 4),
                "postgres_latency_ms": round(cost["round_trip"] * 1000, 4),
                "postgres_share_of_10rps_interval": round(pg_ms / 100, 5),
            }
        )
    )


if __name__ == "__main__":
    main()
