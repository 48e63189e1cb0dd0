"""Benchmark: what publishing a build costs next to the dbt build itself.

One 50-member clan from the simulator, 4 snapshots a day, landed through the
real fetch path. Every build runs as the pipeline runs it: inside a restore
point (``ops.transform_builds``), ``dbt run`` of the incremental selection into
``marts_build``, then :func:`clash_pipeline.transform.restore.publish`, which
copies the build to ``marts`` in one transaction
(:mod:`clash_pipeline.transform.publish`). Measured:

* the first publish (a full build: every published table created);
* after ``--days`` days of history (default 30), ``--repeat`` incremental
  builds of one new snapshot each: dbt seconds, publish seconds (the whole
  publish transaction, including dropping the restore point) and the rows the
  publish wrote, next to the rows the published marts hold.

Snapshots are landed as the pipeline lands them (change-driven polling) as the
ingest login; the builds and the publish run as the transform login.

Run: ``uv run python bench/publish.py`` (a fresh embedded PostgreSQL in a
temporary folder, never the configured warehouse, stopped at the end; about 4
minutes for 30 days; ``--days 7`` for a quicker look). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import temporary_warehouse  # noqa: E402
from bench.transform import VARS, Bench  # noqa: E402
from clash_pipeline import project  # noqa: E402
from clash_pipeline.orchestration.phases.transform import dbt_arguments  # noqa: E402
from clash_pipeline.simulator.server import SimulatedClashApi  # noqa: E402
from clash_pipeline.transform import restore  # noqa: E402
from clash_pipeline.transform.dbt import run_dbt  # noqa: E402


def published_build(bench: Bench, scope: str) -> dict[str, Any]:
    """One pipeline-like build: restore point, dbt, publish; seconds and rows of each."""
    db_url, home = bench.db_url, bench.settings.home
    point = restore.open_restore_point(
        db_url,
        build_id=uuid.uuid4(),
        scope=scope,
        project_hash=restore.project_fingerprint(project.project_dir()),
        models=restore.dbt_models(home / "dbt" / "target" / "manifest.json"),
    )
    t0 = time.perf_counter()
    run_dbt(
        dbt_arguments(scope, "run"),
        db_url=restore.build_database_url(db_url, point.build_id),
        home=home,
        vars=VARS,
    ).raise_for_status()
    t1 = time.perf_counter()
    report = restore.publish(db_url, point.build_id)
    t2 = time.perf_counter()
    return {
        "dbt_s": t1 - t0,
        "publish_s": t2 - t1,
        "rows_written": report.rows_inserted + report.rows_deleted,
        "incremental": len(report.incremental),
        "replaced": len(report.replaced),
        "recreated": len(report.recreated),
    }


def published_rows(db_url: str) -> int:
    import psycopg

    with psycopg.connect(db_url, autocommit=True) as conn:
        tables = conn.execute(
            "select format('%I.%I', schemaname, tablename) from pg_tables"
            " where schemaname = 'marts'"
        ).fetchall()
        return sum(
            conn.execute(f"select count(*) from {name}").fetchone()[0]  # type: ignore[index]
            for (name,) in tables
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--per-day", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with temporary_warehouse("bench-publish-") as warehouse:
        with SimulatedClashApi(seed=args.seed, token=secrets.token_urlsafe(16)) as sim:
            sim.clock.set(sim.clock.now() - timedelta(days=args.days + 2))
            bench = Bench(warehouse, sim, sim.world.find_clan(50, sim.clock.now()))
            bench.land(args.per_day)
            bench.dbt("seed")
            first = published_build(bench, "full")
            bench.land(args.days * args.per_day - bench.snapshots)
            catch_up = published_build(bench, "incremental")
            builds = []
            for _ in range(args.repeat):
                bench.land(1)
                builds.append(published_build(bench, "incremental"))
            total_rows = published_rows(bench.db_url)

    dbt_s = statistics.median(b["dbt_s"] for b in builds)
    publish_s = statistics.median(b["publish_s"] for b in builds)
    rows = statistics.median(b["rows_written"] for b in builds)
    print(f"clan {bench.tag}: {bench.snapshots} snapshots ({args.days} days x {args.per_day}/day)")
    print(f"first (full) build: dbt {first['dbt_s']:.2f} s, publish {first['publish_s']:.2f} s")
    print(f"catch-up build: dbt {catch_up['dbt_s']:.2f} s, publish {catch_up['publish_s']:.2f} s")
    print(f"{'one new snapshot':<20}{'dbt s':>8}{'publish s':>11}{'rows written':>14}")
    for i, b in enumerate(builds, 1):
        label = f"build {i}"
        print(f"{label:<20}{b['dbt_s']:>8.2f}{b['publish_s']:>11.3f}{b['rows_written']:>14}")
    print(
        f"median: dbt {dbt_s:.2f} s, publish {publish_s:.3f} s ({publish_s / dbt_s:.1%} of dbt), "
        f"{rows:.0f} rows written of {total_rows} published"
    )
    print(
        json.dumps(
            {
                "days": args.days,
                "snapshots": bench.snapshots,
                "dbt_seconds_median": round(dbt_s, 3),
                "publish_seconds_median": round(publish_s, 4),
                "publish_over_dbt": round(publish_s / dbt_s, 4),
                "publish_rows_written_median": rows,
                "published_rows": total_rows,
                "first_publish_seconds": round(first["publish_s"], 3),
            }
        )
    )


if __name__ == "__main__":
    main()
