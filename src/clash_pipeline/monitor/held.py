"""The ``held_runs`` check: a clan with runs held back from the marts has an open alert.

A run whose data failed a dbt data test is held back (``ops.held_runs``,
:mod:`clash_pipeline.transform.isolation`) so that the other clans advance. Its
clan's marts stay at their previous build until the operator releases the runs
(``clash-pipeline build --release CLAN``) or drops them (``--drop-held CLAN``):
the alert names the clan, the tests, how many rows failed and a sample row,
and stays open (``occurrences`` counting the monitor runs that saw it) until
nothing of the clan is held. Not a GX expectation: it reads ``ops``, not the
marts, and needs no bounds.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import psycopg

from clash_pipeline.monitor.alerts import AlertChange, Finding, apply_findings

CHECK_NAME = "held_runs"
SEVERITY = "critical"
TITLE = "runs held back from the marts: data tests failed"


def held_findings(
    conn: psycopg.Connection[Any],
    clans: list[str],
    run_ids: Mapping[str, uuid.UUID | None] | None = None,
) -> list[Finding]:
    """One finding per clan: failing while any of its runs is held."""
    rows = conn.execute(
        """
        select clan_tag, run_id, snapshot_at, tests from ops.held_runs
        where status = 'held' and clan_tag = any(%s)
        order by clan_tag, snapshot_at, run_id
        """,
        (clans,),
    ).fetchall()
    by_clan: dict[str, list[tuple[Any, ...]]] = {}
    for row in rows:
        by_clan.setdefault(row[0], []).append(row)
    return [_finding(clan, by_clan.get(clan, []), (run_ids or {}).get(clan)) for clan in clans]


def _finding(clan: str, rows: list[tuple[Any, ...]], run_id: uuid.UUID | None) -> Finding:
    if not rows:
        return Finding(clan, CHECK_NAME, SEVERITY, passed=True, run_id=run_id)
    tests: dict[str, dict[str, Any]] = {}
    for _clan, _run, _at, run_tests in rows:
        for test in run_tests or []:
            tests.setdefault(str(test["test"]), test)
    names = sorted(tests)
    return Finding(
        clan_tag=clan,
        check_name=CHECK_NAME,
        severity=SEVERITY,
        passed=False,
        summary=(
            f"{len(rows)} run(s) held back from the marts: data test(s) {', '.join(names)} "
            f"failed on the clan's data; fix, then clash-pipeline build --release '{clan}'"
        ),
        observed_value=float(len(rows)),
        threshold=0.0,
        details={
            "title": TITLE,
            "runs": [
                {"run_id": str(r[1]), "snapshot_at": r[2].isoformat() if r[2] else None}
                for r in rows
            ],
            "tests": [tests[name] for name in names],
        },
        run_id=run_id,
    )


def check_held(
    conn: psycopg.Connection[Any],
    clans: list[str],
    run_ids: Mapping[str, uuid.UUID | None] | None = None,
) -> list[AlertChange]:
    """Open, update or resolve the clans' ``held_runs`` alerts."""
    return apply_findings(conn, held_findings(conn, clans, run_ids))
