"""Per-clan isolation of data tests: a test that fails for one clan never blocks the others.

One dbt build serves every clan of a batch (the pipeline) or of the warehouse
(``clash-pipeline build`` and ``backfill``). Without isolation a data test that
fails on one clan's rows fails the whole build: it is rolled back, and no clan
advances. :func:`build_isolated` runs the build instead, and when it fails
*only* because of data tests (no model, seed or snapshot error, no test that
could not run):

1. **Which clans.** Each failing test's own SQL (dbt's compiled code, the query
   whose rows are the failures) is run against the build, before it is rolled
   back. Its rows name their clan by a ``clan_tag`` column, a ``run_id``
   (``raw.fetch_runs.clan_tags``) or a ``fetch_id`` (``raw.fetch_log``);
   failing rows of a column test (``not_null``, ``unique``, ``accepted_values``,
   ``accepted_range``, ``relationships``: they return the tested column only)
   are matched back to the tested model's rows with that value, which carry
   ``clan_tag``. This needs no second dbt invocation and no audit schema
   (``--store-failures`` would need CREATE on another schema and still
   returns the tested column only for most generic tests).
2. **Which runs.** A clan's runs that this build would publish for the first
   time: landed, not held, not in the published ``marts.roster_snapshots``
   and, unless the build is a full refresh, newer than the clan's latest
   published snapshot (older ones are skipped by the incremental models
   anyway). They are *held*: a row in ``ops.held_runs`` with the tests, their
   failing-row counts and a few sample rows. The staging base view
   ``base_coc__fetch_runs`` leaves held runs out, so every model sees raw
   without them.
3. **Again.** The failed build is rolled back (its restore point, error
   ``DataTestsFailed`` naming the clans) and the build runs once more; the
   other clans advance and are published by the caller. The held clans' marts
   stay at their previous published build.

The build fails as before (everything rolled back, the clear dbt error) when a
failing test's rows name no clan, when a clan they name has no run to hold
back (the failure is in data already published), when a model failed, or when
it still fails after :data:`MAX_ROUNDS` builds. The holds written by such an
attempt are taken back: a hold stays only when the build without the run
passed. The pipeline, ``build`` and ``backfill`` all build through here, so a
scheduled run and a backfill behave the same.

A held run stays out until the operator decides (:func:`decide`):
``clash-pipeline build --release CLAN`` (after fixing what made it fail, e.g.
a test or a model) builds it again, as a full refresh since it is older than
the clan's processed snapshots (late data); ``--drop-held CLAN`` leaves it
out for good. The monitor keeps a ``held_runs`` alert open for the clan until
then (:mod:`clash_pipeline.monitor.held`). A later run of the clan whose data
passes advances the clan as usual.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from clash_pipeline.errors import ClashPipelineError
from clash_pipeline.transform import restore
from clash_pipeline.transform.dbt import DbtNodeResult, DbtResult
from clash_pipeline.warehouse.connect import connect
from clash_pipeline.warehouse.runs import error_payload

__all__ = [
    "MAX_ROUNDS",
    "HeldRun",
    "IsolatedBuild",
    "TestFailure",
    "build_isolated",
    "decide",
    "held_runs",
]

_log = logging.getLogger("clash_pipeline.transform")

#: Builds at most (the first, then one per round of holds).
MAX_ROUNDS = 3
#: Failing rows read per test, and kept as samples.
_ROW_LIMIT = 500
SAMPLE_ROWS = 5
#: Published snapshots: a run found here was built before.
_PUBLISHED_SNAPSHOTS = "marts.roster_snapshots"


@dataclass
class TestFailure:
    """One failing data test: the clans its rows belong to, or why none could be told."""

    test: str
    unique_id: str
    failures: int | None
    clans: list[str] = field(default_factory=list)
    sample: list[dict[str, Any]] = field(default_factory=list)
    unattributed: str | None = None

    def record(self) -> dict[str, Any]:
        return {"test": self.test, "failures": self.failures, "sample": self.sample}


@dataclass(frozen=True)
class HeldRun:
    """A run held back from the marts, with the tests its data failed."""

    run_id: uuid.UUID
    clan_tag: str
    snapshot_at: datetime | None
    tests: list[dict[str, Any]]

    @property
    def test_names(self) -> list[str]:
        return [str(t["test"]) for t in self.tests]


@dataclass
class IsolatedBuild:
    """The last build: open (``result`` passed) or rolled back (``not_isolated`` says why)."""

    point: restore.RestorePoint
    result: DbtResult
    held: list[HeldRun] = field(default_factory=list)
    #: Builds rolled back to leave held runs out.
    rolled_back: list[uuid.UUID] = field(default_factory=list)
    not_isolated: str | None = None

    @property
    def ok(self) -> bool:
        return self.result.success and not self.result.failed

    @property
    def data_tests_only(self) -> bool:
        """Whether the build failed on data tests alone (and could not be isolated)."""
        failed = self.result.failed
        return bool(failed) and all(n.resource_type == "test" for n in failed)


def build_isolated(
    db_url: str,
    *,
    open_point: Callable[[], restore.RestorePoint],
    run: Callable[[restore.RestorePoint], DbtResult],
    manifest: Path,
    full_refresh: bool = False,
) -> IsolatedBuild:
    """Build; hold back the runs of clans whose data fails a test; build again without them.

    ``open_point`` opens a restore point, ``run`` runs dbt under it (as the
    build's sessions). Returns the last build: when it passed its restore point
    is still open (the caller publishes it); when it failed it was rolled back.
    """
    held: list[HeldRun] = []
    rolled: list[uuid.UUID] = []
    for attempt in range(1, MAX_ROUNDS + 1):
        point = open_point()
        try:
            result = run(point)
        except BaseException as exc:
            _give_up(db_url, point, held, error_payload(exc, phase="transform"))
            raise
        if result.success and not result.failed:
            return IsolatedBuild(point, result, held, rolled)
        failures, reason = attribute(db_url, result, manifest)
        new: list[HeldRun] = []
        if reason is None and attempt == MAX_ROUNDS:
            reason = f"data tests still fail after {MAX_ROUNDS} builds"
        if reason is None:
            new, reason = _hold(db_url, failures, point.build_id, full_refresh=full_refresh)
        if reason is not None:
            error = {
                "type": "DbtRunError",
                "phase": "transform",
                "message": result.error_summary or "dbt build failed",
                "not_isolated": reason,
            }
            _give_up(db_url, point, held, error)
            return IsolatedBuild(point, result, [], rolled, not_isolated=reason)
        _roll_back_to_isolate(db_url, point, failures, new)
        held += new
        rolled.append(point.build_id)
    raise AssertionError("unreachable: the last round returns")  # pragma: no cover


def _roll_back_to_isolate(
    db_url: str, point: restore.RestorePoint, failures: list[TestFailure], new: list[HeldRun]
) -> None:
    """Roll back a build whose data tests failed for the clans of ``new`` (now held)."""
    clans = sorted({h.clan_tag for h in new})
    tests = sorted({f.test for f in failures})
    restore.roll_back(
        db_url,
        point.build_id,
        error={
            "type": "DataTestsFailed",
            "phase": "transform",
            "message": f"data tests failed for {', '.join(clans)}: their runs are held back",
            "held_clans": clans,
            "tests": tests,
        },
    )
    _log.warning(
        "data tests failed for clan(s) %s (%s): %d run(s) held back, building again",
        ", ".join(clans),
        ", ".join(tests),
        len(new),
    )


def _give_up(
    db_url: str, point: restore.RestorePoint, held: list[HeldRun], error: dict[str, Any]
) -> None:
    """Roll the build back and take back this attempt's holds: the build fails whole."""
    try:
        report = restore.roll_back(db_url, point.build_id, error=error)
        _log.warning(
            "dbt build failed; restored %d relation(s) as they were before the run",
            len(report.restored),
        )
    except (psycopg.Error, ClashPipelineError) as exc:
        _log.error(
            "dbt build failed and the restore point could not be applied now (%s); "
            "the next build rolls it back first",
            exc,
        )
    if held:
        with connect(db_url, autocommit=True) as conn:
            conn.execute(
                "delete from ops.held_runs where run_id = any(%s) and status = 'held'",
                ([h.run_id for h in held],),
            )


# ----------------------------------------------------------------------- attribution


def attribute(
    db_url: str, result: DbtResult, manifest: Path
) -> tuple[list[TestFailure], str | None]:
    """The failing tests and their clans; or the reason the failure is not a clan's."""
    failed = result.failed
    others = [n for n in failed if n.resource_type != "test" or n.status != "fail"]
    if not failed:
        return [], result.error_summary or "dbt failed without a failing node"
    if others:
        first = others[0]
        return [], f"{first.resource_type} {first.name} {first.status} (not a data test)"
    relations = _relations(manifest)
    failures: list[TestFailure] = []
    with connect(db_url, autocommit=True) as conn:
        for node in failed:
            failure = _attribute_test(conn, node, relations)
            if failure.unattributed:
                return failures, f"test {node.name}: {failure.unattributed}"
            failures.append(failure)
    return failures, None


def _attribute_test(
    conn: psycopg.Connection[Any], node: DbtNodeResult, relations: dict[str, str]
) -> TestFailure:
    failure = TestFailure(test=node.name, unique_id=node.unique_id, failures=node.failures)
    if not node.compiled_code:
        failure.unattributed = "dbt did not report its SQL"
        return failure
    try:
        with conn.transaction():
            cur = conn.execute(
                sql.SQL("select * from (\n{}\n) as failing_rows limit {}").format(
                    sql.SQL(node.compiled_code.strip().rstrip(";")),  # dbt's own SQL
                    sql.Literal(_ROW_LIMIT),
                )
            )
            names = [c.name for c in cur.description or ()]
            rows = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
            clans = _clans_of(conn, node, names, rows, relations.get(node.attached_node or ""))
    except psycopg.Error as exc:
        failure.unattributed = f"its failing rows could not be read ({type(exc).__name__})"
        return failure
    failure.sample = [{k: _plain(v) for k, v in row.items()} for row in rows[:SAMPLE_ROWS]]
    if not rows:
        failure.unattributed = "no failing row is left to read"
    elif clans is None or None in clans:
        failure.unattributed = "its failing rows name no clan (no clan_tag, run_id or fetch_id)"
    else:
        failure.clans = sorted(str(c) for c in clans)
    return failure


def _clans_of(
    conn: psycopg.Connection[Any],
    node: DbtNodeResult,
    names: list[str],
    rows: list[dict[str, Any]],
    relation: str | None,
) -> set[str | None] | None:
    """The clans of the failing rows (None: they carry nothing that names one)."""
    if "clan_tag" in names:
        return {row["clan_tag"] for row in rows}
    lookups = (
        ("run_id", "select distinct unnest(clan_tags) from raw.fetch_runs where run_id = any(%s)"),
        ("fetch_id", "select distinct clan_tag from raw.fetch_log where fetch_id = any(%s)"),
    )
    for column, query in lookups:
        if column in names:
            ids = [row[column] for row in rows]
            found: set[str | None] = {r[0] for r in conn.execute(query, (ids,))}
            return found or {None}
    if not (node.column_name and relation and names):
        return None
    return _clans_by_tested_column(conn, relation, node.column_name, [r[names[0]] for r in rows])


def _clans_by_tested_column(
    conn: psycopg.Connection[Any], relation: str, column: str, values: list[Any]
) -> set[str | None] | None:
    """A column test returns the tested column: the clans of the model's rows with those values.

    ``relation`` and ``column`` come from dbt's manifest of the project's own YAML.
    """
    model = sql.SQL(relation)
    tested = sql.SQL(column)
    probe = conn.execute(sql.SQL("select * from {} limit 0").format(model))
    if "clan_tag" not in [c.name for c in probe.description or ()]:
        return None
    matched = conn.execute(
        sql.SQL(
            "select distinct clan_tag from {model}"
            " where {col}::text = any(%s) or ({col} is null and %s)"
        ).format(model=model, col=tested),
        ([str(v) for v in values if v is not None], any(v is None for v in values)),
    )
    return {r[0] for r in matched} or None


def _relations(manifest: Path) -> dict[str, str]:
    """Relation names of the project's models, snapshots, seeds and sources, by unique id."""
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    found: dict[str, str] = {}
    for section in ("nodes", "sources"):
        for unique_id, node in (data.get(section) or {}).items():
            if node.get("relation_name"):
                found[unique_id] = str(node["relation_name"])
    return found


def _plain(value: Any) -> Any:
    """A JSON-able value for the sample rows."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict | list):
        text = json.dumps(value, default=str)
        return value if len(text) <= 500 else text[:500]
    return str(value)


# ---------------------------------------------------------------------------- holds


def _hold(
    db_url: str, failures: list[TestFailure], build_id: uuid.UUID, *, full_refresh: bool
) -> tuple[list[HeldRun], str | None]:
    """Hold back the new runs of every clan the failures name (or say why that cannot help)."""
    by_clan: dict[str, list[TestFailure]] = {}
    for failure in failures:
        for clan in failure.clans:
            by_clan.setdefault(clan, []).append(failure)
    held: list[HeldRun] = []
    with connect(db_url) as conn, conn.transaction():
        published = conn.execute("select to_regclass(%s)", (_PUBLISHED_SNAPSHOTS,)).fetchone()
        for clan, clan_failures in sorted(by_clan.items()):
            runs = _new_runs(
                conn, clan, full_refresh=full_refresh, published=bool(published and published[0])
            )
            if not runs:
                names = ", ".join(sorted(f.test for f in clan_failures))
                return [], (
                    f"clan {clan} fails {names} with no new run to hold back "
                    "(the failing rows come from data already published)"
                )
            tests = [f.record() for f in clan_failures]
            for run_id, snapshot_at in runs:
                _insert_hold(conn, run_id, clan, snapshot_at, build_id, tests)
                held.append(HeldRun(run_id, clan, snapshot_at, tests))
    return held, None


def _new_runs(
    conn: psycopg.Connection[Any], clan: str, *, full_refresh: bool, published: bool
) -> list[tuple[uuid.UUID, datetime | None]]:
    """The clan's landed runs this build would publish for the first time."""
    query = """
        select fr.run_id, fr.snapshot_at from raw.fetch_runs fr
        where %(clan)s = any(fr.clan_tags)
          and not exists (
              select from ops.held_runs h
              where h.run_id = fr.run_id and h.status in ('held', 'dropped')
          )
    """
    if published:
        query += """
          and not exists (select from marts.roster_snapshots p where p.run_id = fr.run_id)
          and (%(full)s or fr.snapshot_at > coalesce(
              (select max(p.snapshot_at) from marts.roster_snapshots p
               where p.clan_tag = %(clan)s), '-infinity'))
        """
    rows = conn.execute(query + " order by fr.snapshot_at", {"clan": clan, "full": full_refresh})
    return [(r[0], r[1]) for r in rows]


def _insert_hold(
    conn: psycopg.Connection[Any],
    run_id: uuid.UUID,
    clan: str,
    snapshot_at: datetime | None,
    build_id: uuid.UUID,
    tests: list[dict[str, Any]],
) -> None:
    conn.execute(
        """
        insert into ops.held_runs (run_id, clan_tag, snapshot_at, build_id, tests)
        values (%s, %s, %s, %s, %s)
        on conflict (run_id) do update set
            status = 'held', decided_at = null, held_at = clock_timestamp(),
            build_id = excluded.build_id, tests = excluded.tests
        """,
        (run_id, clan, snapshot_at, build_id, Jsonb(tests)),
    )


def held_runs(
    db_url: str, *, run_ids: Sequence[uuid.UUID] | None = None, clans: Sequence[str] | None = None
) -> list[HeldRun]:
    """Runs held now (of these runs, or of these clans), oldest first."""
    with connect(db_url, autocommit=True) as conn:
        rows = conn.execute(
            """
            select run_id, clan_tag, snapshot_at, tests from ops.held_runs
            where status = 'held'
              and (%(runs)s::uuid[] is null or run_id = any(%(runs)s::uuid[]))
              and (%(clans)s::text[] is null or clan_tag = any(%(clans)s::text[]))
            order by snapshot_at, run_id
            """,
            {
                "runs": list(run_ids) if run_ids is not None else None,
                "clans": list(clans) if clans is not None else None,
            },
        ).fetchall()
    return [HeldRun(r[0], r[1], r[2], list(r[3] or [])) for r in rows]


def decide(db_url: str, clans: Sequence[str], decision: str) -> list[HeldRun]:
    """``released`` (built again by the next build) or ``dropped`` (left out for good).

    Returns the runs the decision applied to: those held now for ``clans``.
    """
    if decision not in ("released", "dropped"):
        raise ValueError(f"unknown decision {decision!r}: released or dropped")
    with connect(db_url) as conn, conn.transaction():
        rows = conn.execute(
            """
            update ops.held_runs set status = %s, decided_at = clock_timestamp()
            where status = 'held' and clan_tag = any(%s)
            returning run_id, clan_tag, snapshot_at, tests
            """,
            (decision, list(clans)),
        ).fetchall()
    return sorted(
        (HeldRun(r[0], r[1], r[2], list(r[3] or [])) for r in rows),
        key=lambda h: (h.clan_tag, str(h.snapshot_at), str(h.run_id)),
    )
