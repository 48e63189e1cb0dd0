"""Benchmark: tracker-scale ingestion: many clans, a pool of keys, several worker processes.

One simulated Clash API (a real HTTP server on loopback) accepts ``--keys`` tokens, each limited
to ``--rate`` requests/s (429 above it: a token bucket per token) with ``--latency-ms`` per
response and the default activity model (members play now and then). ``--workers`` worker
processes share the key pool and the warehouse: each is a separate Python process running the
pipeline's fetch (:func:`clash_pipeline.ingest.fetch.fetch_clans`: change-driven polling, the key
pool, pacing shared through PostgreSQL, the per-clan locks) on its share of the clans.

The simulated clock is frozen during a cycle and moves one hour between cycles, so every cycle
after the first is an hourly poll. The first cycle is every clan's first run (everything is
fetched); the figures of change-driven polling come from the hourly cycles.

Printed, per cycle: requests, skipped requests, 429s, wall time, the API floor (requests / the
keys' combined rate) and the ratio; then one JSON object as the last line with ``clans, keys,
workers, allowed_rps, achieved_rps, utilisation, utilisation_while_fetching, throttled,
requests_per_clan_run, naive_requests_per_clan_run, stored_bytes_per_clan_run,
db_bytes_per_clan_run, cycle_seconds, cycle_vs_floor, first_run_seconds, first_run_vs_floor,
max_worker_rss_mb, worker_cpu_ms_per_request, activity``
(``achieved_rps``, ``utilisation`` and ``utilisation_while_fetching`` (from each cycle's first
fetch to its last, without the workers' start-up) over all cycles, the rest over the hourly cycles;
``naive``: what fetching everything would have cost, requests + skipped; ``stored_bytes``: new
payload bytes; ``db_bytes``: growth of the database's files, tables and indexes).

Run: ``uv run python bench/scale.py --clans 1000 --keys 8 --workers 2 --no-build`` (embedded
PostgreSQL in a temporary folder; about 20 minutes). ``--keys 1 --workers 4`` checks that one key
shared by four processes still gets no 429; ``--activity P`` sets the chance that a member
plays in an hour (docs/SCALING.md's table of requests per clan-hour). Without ``--no-build`` a
dbt build of every clan follows each cycle (its time is printed, not part of the cycle).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg  # noqa: E402

from clash_pipeline.simulator.world import DEFAULT_ACTIVITY_PER_HOUR  # noqa: E402

HOUR = timedelta(hours=1)


@dataclass
class Cycle:
    """One polling cycle of every clan by every worker."""

    wall: float
    requests: int
    skipped: int
    bytes_new: int
    db_bytes: int  # growth of the database's files (tables and indexes, not WAL)
    worker_cpu: float  # CPU seconds of the worker processes (user + system)
    runs: int
    throttled: int
    max_rss_mb: float
    statuses: dict[str, int]
    steps: dict[str, float]  # mean seconds per clan run, by step (see _STEPS_SQL)
    pacing: dict[str, float]  # the workers' key limiters: reservations, their time, late slots
    simulator_cpu: float  # CPU seconds of the simulator (it shares the machine's cores)
    build_seconds: float | None = None


# -- the worker (a process of its own) ------------------------------------------------------------


def worker(spec: dict[str, object]) -> None:
    """Fetch and land the spec's clans; print one JSON line with the outcome counts."""
    from clash_pipeline.clash_api.keys import KeyPool
    from clash_pipeline.clash_api.shared_pacing import shared_limiter_factory
    from clash_pipeline.ingest.fetch import ApiTarget, fetch_clans
    from clash_pipeline.orchestration.options import ApiSpec
    from clash_pipeline.orchestration.phases.ingest import _api_clock
    from clash_pipeline.settings import load_settings

    tokens = [str(t) for t in spec["tokens"]]  # type: ignore[attr-defined]
    settings = load_settings()
    api = ApiSpec(
        base_url=str(spec["base_url"]), token=tokens[0], source="simulator", clock="simulator"
    )
    clock = asyncio.run(_api_clock(api))
    target = ApiTarget(
        base_url=str(spec["base_url"]),
        token=tokens[0],
        source="simulator",
        clock=clock,
        tokens=tuple(tokens),
    )
    clans = [str(c) for c in spec["clans"]]  # type: ignore[attr-defined]
    db_url = str(spec["db_url"])
    keys = KeyPool.from_settings(
        settings, tokens, limiter_factory=shared_limiter_factory(db_url, settings)
    )
    run = fetch_clans(settings, db_url, clans, target, trigger="cli", keys=keys)
    if spec.get("profile"):  # --profile: where a worker's CPU goes (cProfile, by cumulative time)
        import cProfile

        profile = cProfile.Profile()
        outcomes = profile.runcall(asyncio.run, run)
        profile.dump_stats(str(spec["profile"]))
    else:
        outcomes = asyncio.run(run)
    statuses: dict[str, int] = {}
    for outcome in outcomes:
        statuses[outcome.status] = statuses.get(outcome.status, 0) + 1
    limiters = [keys.limiter(key) for key in keys.keys]
    pacing = {
        "reservations": sum(getattr(lim, "acquired", 0) for lim in limiters),
        "reserve_seconds": sum(getattr(lim, "reserve_seconds", 0.0) for lim in limiters),
        "late_slots": sum(getattr(lim, "late_slots", 0) for lim in limiters),
    }
    asyncio.run(keys.aclose())
    print(json.dumps({"statuses": statuses, "peak_rss_mb": _peak_rss_mb(), "pacing": pacing}))


def _peak_rss_mb() -> float:
    """This process's peak resident memory since its exec (VmHWM). Not ``ru_maxrss`` of
    ``wait4``: Linux carries that over from the parent at fork (the simulator's size)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    return 0.0


# -- the driver -----------------------------------------------------------------------------------


def run_cycle(args: argparse.Namespace, sim, urls: tuple[str, str], tokens: list[str], clans):
    """Start the workers on their shares of the clans, wait for all, measure."""
    owner, db_url = urls
    sim.stats.reset()
    env = dict(os.environ)
    env.update(
        DATABASE_URL=owner,
        COC_REQUESTS_PER_SECOND=str(args.rate),
        COC_MAX_CONCURRENCY=str(args.concurrency),
        COC_SHARED_PACING="on",
    )
    with psycopg.connect(db_url, autocommit=True) as conn:
        since = conn.execute("select clock_timestamp()").fetchone()[0]  # type: ignore[index]
        size_before = _database_size(conn)
    started, sim_cpu = time.perf_counter(), time.process_time()
    procs = [_start_worker(args, sim, env, i, tokens, db_url, clans) for i in range(args.workers)]
    rss, cpu, statuses, pacing = 0.0, 0.0, {}, {}
    for proc in procs:
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        cpu += usage.ru_utime + usage.ru_stime
        out = proc.stdout.read() if proc.stdout else ""
        lines = [line for line in out.splitlines() if line.startswith("{")]
        if proc.returncode != 0 and not lines:
            raise SystemExit(f"a worker failed (exit {proc.returncode})")
        report = json.loads(lines[-1])
        rss = max(rss, float(report["peak_rss_mb"]))
        for name, value in report["pacing"].items():
            pacing[name] = pacing.get(name, 0) + value
        for name, n in report["statuses"].items():
            statuses[name] = statuses.get(name, 0) + n
    wall = time.perf_counter() - started
    sim_cpu = time.process_time() - sim_cpu  # this process: the simulator's threads
    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute(
            "select count(*), coalesce(sum(requests), 0), coalesce(sum(skipped_requests), 0),"
            " coalesce(sum(bytes_new), 0) from raw.fetch_runs where landed_at > %s",
            (since,),
        ).fetchone()
        size_after = _database_size(conn)
        steps = _steps(conn, since)
    assert row is not None
    return Cycle(
        wall=wall,
        requests=int(row[1]),
        skipped=int(row[2]),
        bytes_new=int(row[3]),
        db_bytes=size_after - size_before,
        worker_cpu=cpu,
        runs=int(row[0]),
        throttled=sim.stats.throttled,
        max_rss_mb=rss,
        statuses=statuses,
        steps=steps,
        pacing=pacing,
        simulator_cpu=sim_cpu,
    )


def _start_worker(args, sim, env, i: int, tokens: list[str], db_url: str, clans: list[str]):
    """Worker ``i`` on its share of the clans (its spec on stdin, its report on stdout)."""
    spec = {"base_url": sim.base_url, "tokens": tokens, "db_url": db_url}
    if args.profile:
        spec["profile"] = f"{args.profile}.worker{i}.cycle{sim.clock.now():%H}"
    spec["clans"] = clans[i :: args.workers]
    proc = subprocess.Popen(
        [sys.executable, __file__, "--worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=None if args.verbose else subprocess.DEVNULL,
        env=env,
        text=True,
    )
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(spec))
    proc.stdin.close()
    return proc


#: Where a clan run's wall time goes, mean seconds by step, from the runs' own checkpoint rows:
#: ``start`` (lock, lease, run row) up to the fetch, ``fetch`` (requests, planner reads), ``record``
#: (the fetch checkpoint) up to the landing, ``land``, ``finish`` (land checkpoint, run row);
#: ``in_flight``: clan runs open at once, on average over the cycle; ``fetching``: seconds from the
#: first clan's fetch to the last one's end (the cycle without the workers' start and last landing).
_STEPS_SQL = """
with runs as (
    select r.started_at, r.finished_at,
        f.started_at as fetch_start, f.finished_at as fetch_end,
        l.started_at as land_start, l.finished_at as land_end
    from ops.ingest_runs r
    join ops.ingest_logs f on f.run_id = r.run_id and f.phase = 'fetch' and f.step is null
    join ops.ingest_logs l on l.run_id = r.run_id and l.phase = 'land' and l.step is null
    where r.started_at > %s and r.kind = 'fetch'
)
select
    avg(extract(epoch from fetch_start - started_at)),
    avg(extract(epoch from fetch_end - fetch_start)),
    avg(extract(epoch from land_start - fetch_end)),
    avg(extract(epoch from land_end - land_start)),
    avg(extract(epoch from finished_at - land_end)),
    sum(extract(epoch from finished_at - started_at))
        / nullif(extract(epoch from max(finished_at) - min(started_at)), 0),
    extract(epoch from max(fetch_end) - min(fetch_start))
from runs
"""


def _steps(conn: psycopg.Connection, since) -> dict[str, float]:
    row = conn.execute(_STEPS_SQL, (since,)).fetchone()
    names = ("start", "fetch", "record", "land", "finish", "in_flight", "fetching")
    return {n: round(float(v), 3) for n, v in zip(names, row or (), strict=True) if v is not None}


def _database_size(conn: psycopg.Connection) -> int:
    return int(conn.execute("select pg_database_size(current_database())").fetchone()[0])  # type: ignore[index]


def _build(db_url: str, home: Path) -> float:
    from clash_pipeline.cli.build import run_build

    started = time.perf_counter()
    run_build(db_url, home)
    return time.perf_counter() - started


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clans", type=int, default=1000)
    parser.add_argument("--keys", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cycles", type=int, default=3, help="the first run, then hourly polls")
    parser.add_argument("--rate", type=float, default=10.0, help="requests/s per key")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight per key")
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument(
        "--activity",
        type=float,
        default=None,
        help="the chance that a member plays in an hour (default: the simulator's)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-build", action="store_true", help="no dbt build after the cycles")
    parser.add_argument("--verbose", action="store_true", help="show the workers' logs")
    parser.add_argument("--profile", help="write each worker's cProfile stats to PROFILE.*")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = _arguments()
    if args.worker:
        worker(json.loads(sys.stdin.read()))
        return
    if args.cycles < 2:
        raise SystemExit("--cycles must be at least 2: the first run, then hourly polls")
    from clash_pipeline.settings import load_settings
    from clash_pipeline.simulator.codec import random_tag
    from clash_pipeline.simulator.server import FaultConfig, SimulatedClashApi
    from clash_pipeline.warehouse.access import resolve_access
    from clash_pipeline.warehouse.migrations import migrate

    tokens = [secrets.token_urlsafe(24) for _ in range(args.keys)]
    clans = [random_tag(args.seed, "bench-scale", i) for i in range(args.clans)]
    faults = FaultConfig(
        rate_limit_per_second=args.rate,
        latency_ms=args.latency_ms,
        accepted_tokens=set(tokens[1:]),
    )
    cycles: list[Cycle] = []
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        home = Path(tmp)
        os.environ["CLASH_PIPELINE_HOME"] = str(home)
        for name in ("DATABASE_URL", "INGEST_DATABASE_URL", "TRANSFORM_DATABASE_URL"):
            os.environ.pop(name, None)  # always a fresh embedded server, never a warehouse
        settings = load_settings(clash_pipeline_home=home)
        try:
            access = resolve_access(settings)  # a fresh embedded server in the temporary home
            migrate(access.owner)
            activity = {} if args.activity is None else {"activity_per_hour": args.activity}
            with SimulatedClashApi(
                seed=args.seed, token=tokens[0], faults=faults, **activity
            ) as sim:
                for n in range(args.cycles):
                    cycle = run_cycle(args, sim, (access.owner, access.ingest), tokens, clans)
                    if not args.no_build:
                        cycle.build_seconds = _build(access.transform, home)
                    cycles.append(cycle)
                    _print_cycle(args, n, cycle)
                    sim.clock.advance(HOUR)
        except KeyboardInterrupt:
            print("interrupted: stopping the workers' database", file=sys.stderr)
            raise SystemExit(130) from None
        finally:  # the server lives in the temporary folder: stop it before it goes
            from clash_pipeline.warehouse.embedded import EmbeddedPostgres

            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C: still clean up
            EmbeddedPostgres(settings.home).stop()
    print(json.dumps(summary(args, cycles)))


def _print_cycle(args: argparse.Namespace, n: int, cycle: Cycle) -> None:
    floor = cycle.requests / (args.keys * args.rate)
    build = f", dbt build {cycle.build_seconds:.1f} s" if cycle.build_seconds is not None else ""
    print(
        f"cycle {n} ({'first run' if n == 0 else 'hourly'}): {cycle.runs} runs {cycle.statuses},"
        f" {cycle.requests} requests, {cycle.skipped} skipped, {cycle.throttled} x 429,"
        f" {cycle.wall:.1f} s (floor {floor:.1f} s, x{cycle.wall / floor:.2f}),"
        f" worker RSS {cycle.max_rss_mb:.0f} MB, simulator CPU"
        f" {1000 * cycle.simulator_cpu / max(1, cycle.requests):.1f} ms/request{build}",
        flush=True,
    )
    steps = ", ".join(f"{name} {value:g}" for name, value in cycle.steps.items())
    print(f"  a clan run, mean seconds by step: {steps}", flush=True)
    p = cycle.pacing
    if p.get("reservations"):
        print(
            f"  pacing: {p['reservations']:.0f} reservations,"
            f" {1000 * p['reserve_seconds'] / p['reservations']:.1f} ms each (round trip),"
            f" {p['late_slots']:.0f} given up (woken more than half an interval late)",
            flush=True,
        )


def summary(args: argparse.Namespace, cycles: list[Cycle]) -> dict[str, object]:
    allowed = args.keys * args.rate
    hourly = cycles[1:]
    runs = sum(c.runs for c in hourly) or 1
    requests = sum(c.requests for c in hourly)
    achieved = sum(c.requests for c in cycles) / sum(c.wall for c in cycles)
    cycle_seconds = sum(c.wall for c in hourly) / len(hourly)
    floor = requests / len(hourly) / allowed
    return {
        "clans": args.clans,
        "keys": args.keys,
        "workers": args.workers,
        "allowed_rps": allowed,
        "achieved_rps": round(achieved, 2),
        "utilisation": round(achieved / allowed, 3),
        # while there is work: from each cycle's first fetch to its last (no process start-up)
        "utilisation_while_fetching": round(
            sum(c.requests for c in cycles)
            / sum(c.steps.get("fetching") or c.wall for c in cycles)
            / allowed,
            3,
        ),
        "throttled": sum(c.throttled for c in cycles),
        "requests_per_clan_run": round(requests / runs, 2),
        "naive_requests_per_clan_run": round((requests + sum(c.skipped for c in hourly)) / runs, 2),
        "stored_bytes_per_clan_run": round(sum(c.bytes_new for c in hourly) / runs),
        "db_bytes_per_clan_run": round(sum(c.db_bytes for c in hourly) / runs),
        "worker_cpu_ms_per_request": round(
            1000 * sum(c.worker_cpu for c in cycles) / max(1, sum(c.requests for c in cycles)), 2
        ),
        "cycle_seconds": round(cycle_seconds, 1),
        "cycle_vs_floor": round(cycle_seconds / floor, 3) if floor else None,
        "first_run_seconds": round(cycles[0].wall, 1),
        "first_run_vs_floor": round(cycles[0].wall / (cycles[0].requests / allowed), 3),
        "max_worker_rss_mb": round(max(c.max_rss_mb for c in cycles), 1),
        "activity": DEFAULT_ACTIVITY_PER_HOUR if args.activity is None else args.activity,
    }


if __name__ == "__main__":
    main()
