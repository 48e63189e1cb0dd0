"""Restore points around a dbt build: a failed run leaves every mart as it was.

dbt on PostgreSQL commits model by model (a table model is swapped in, an
incremental model merged, each in its own transaction), so a build that fails
at its tenth model has already published the first nine. Nothing in dbt puts
them back. A restore point does:

1. :func:`open_restore_point`, before dbt runs, records a plan in
   ``ops.transform_builds``: every base table in the schemas dbt builds into,
   and how to put it back:

   * ``undo`` (incremental models and snapshots with a ``unique_key``):
     statement-level triggers copy every row the build deletes (``D``) or
     inserts (``I``) into ``ops.transform_undo``, inside the model's own
     transaction. They record only in sessions whose ``clash.transform_build``
     is set, i.e. the dbt connections of this build (:func:`build_database_url`).
     The cost is proportional to the rows the build changes.
   * ``copy`` (table models, and incremental models without a key): dbt rewrites
     them whole anyway; their current content is copied to ``ops_restore``.

2. After a successful run, :func:`publish` copies the build to the schema readers
   read (``marts_build`` to ``marts``, :mod:`clash_pipeline.transform.publish`)
   and drops the undo rows and copies, in one transaction.
3. After a failure (in dbt, or in a later phase of the run), :func:`roll_back`
   restores, in one transaction: for each touched key of an ``undo`` relation the
   rows as they were (current rows + deleted - inserted, as multisets); each
   replaced ``copy`` relation from its copy; and drops tables the build created.

The project's state (which builds must be full, which tables are models) is
:mod:`clash_pipeline.transform.project_state`; the per-table SQL is
:mod:`clash_pipeline.transform.relations`.

A build whose process died is still ``running`` in ``ops.transform_builds``;
the next build (holding the warehouse lock, so nobody else is building) rolls
it back first (:func:`roll_back_abandoned`). Raw data is never touched: the
failed run's landed responses stay in ``raw`` and the next build picks them up,
which is how the next run catches up. A manual ``dbt build`` from a shell, which
would not be recorded, is refused by the project's on-run-start hook
(``macros/warehouse_guard.sql``); ``clash-pipeline dbt build`` is recorded.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from clash_pipeline.transform.project_state import ModelInfo, dbt_models, project_fingerprint
from clash_pipeline.transform.publish import BUILD_SCHEMA, PublishReport, publish_build
from clash_pipeline.transform.relations import (
    RESTORE_SCHEMA,
    RelationPlan,
    Table,
    columns,
    copy_table,
    count_against_copy,
    count_by,
    count_undo_log,
    install_triggers,
    is_dbt_leftover,
    list_tables,
    restore_copy,
    undo_changes,
)
from clash_pipeline.warehouse.connect import connect, one_row, url_with_setting

# ModelInfo, dbt_models, project_fingerprint and RelationPlan live in the modules above;
# callers know them as part of the restore point, so they are re-exported here.
__all__ = [
    "BUILD_SCHEMA",
    "BUILD_SETTING",
    "RESTORE_SCHEMA",
    "ModelInfo",
    "PublishReport",
    "RelationPlan",
    "RestorePoint",
    "RollbackReport",
    "StepCount",
    "build_database_url",
    "count_changes",
    "dbt_models",
    "last_full_build",
    "load_restore_point",
    "open_restore_point",
    "project_fingerprint",
    "publish",
    "roll_back",
    "roll_back_abandoned",
    "url_with_setting",
]

#: The session setting that names the recording build (set for dbt's connections only).
BUILD_SETTING = "clash.transform_build"
#: Always protected (with the schemas of the manifest): dbt's own schemas of the derived
#: layers. Never ``marts``: readers' copy changes only when a build is published.
DEFAULT_SCHEMAS = ("intermediate", BUILD_SCHEMA)


@dataclass
class RestorePoint:
    build_id: uuid.UUID
    scope: str
    schemas: list[str]
    relations: list[RelationPlan] = field(default_factory=list)

    def relation(self, schema: str, name: str) -> RelationPlan | None:
        for plan in self.relations:
            if plan.schema == schema and plan.name == name:
                return plan
        return None


@dataclass
class RollbackReport:
    build_id: uuid.UUID
    restored: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    rows_restored: int = 0


@dataclass(frozen=True)
class StepCount:
    """Rows one build wrote to a relation, and how many of them differ from before."""

    written: int
    changed: int | None


def build_database_url(db_url: str, build_id: uuid.UUID) -> str:
    """``db_url`` whose sessions record their changes for ``build_id`` (libpq ``options``)."""
    return url_with_setting(db_url, BUILD_SETTING, str(build_id))


# -------------------------------------------------------------------- restore points


def open_restore_point(
    db_url: str,
    *,
    build_id: uuid.UUID,
    scope: str,
    project_hash: str,
    models: Mapping[tuple[str, str], ModelInfo] | None,
    run_ids: Iterable[uuid.UUID] = (),
    clan_tags: Iterable[str] = (),
) -> RestorePoint:
    """Plan how to restore every table dbt may change, arm the undo triggers, copy tables."""
    schemas = sorted({schema for schema, _ in models or {}} | set(DEFAULT_SCHEMAS))
    point = RestorePoint(build_id=build_id, scope=scope, schemas=schemas)
    with connect(db_url) as conn, conn.transaction():
        for table in list_tables(conn, schemas):
            if is_dbt_leftover(table.name):
                continue
            info = (models or {}).get((table.schema, table.name))
            point.relations.append(_protect(conn, build_id, table, info))
        conn.execute(
            """
            insert into ops.transform_builds (
                build_id, run_ids, clan_tags, scope, project_hash, relations
            ) values (%s, %s, %s, %s, %s, %s)
            """,
            (
                build_id,
                list(run_ids),
                list(clan_tags),
                scope,
                project_hash,
                Jsonb({"schemas": schemas, "relations": [asdict(r) for r in point.relations]}),
            ),
        )
    return point


def _protect(
    conn: psycopg.Connection[Any], build_id: uuid.UUID, table: Table, info: ModelInfo | None
) -> RelationPlan:
    """Choose how to put one table back, and prepare it: arm its undo log, or copy it."""
    undo = (
        info is not None
        and info.materialized in ("incremental", "snapshot")
        and bool(info.unique_key)
    )
    plan = RelationPlan(
        schema=table.schema,
        name=table.name,
        oid=table.oid,
        strategy="undo" if undo else "copy",
        unique_key=info.unique_key if undo and info else None,
        undo_relation=table.quoted,
    )
    if undo:
        if not table.has_undo_triggers:
            install_triggers(conn, plan)
    else:
        plan.copy_name = f"b{build_id.hex[:12]}_{table.oid}"
        copy_table(conn, plan)
    return plan


def load_restore_point(conn: psycopg.Connection[Any], build_id: uuid.UUID) -> RestorePoint:
    row = conn.execute(
        "select scope, relations from ops.transform_builds where build_id = %s", (build_id,)
    ).fetchone()
    if row is None:
        raise LookupError(f"no transform build {build_id}")
    scope, plan = row
    return RestorePoint(
        build_id=build_id,
        scope=scope,
        schemas=list(plan.get("schemas") or DEFAULT_SCHEMAS),
        relations=[RelationPlan(**item) for item in plan.get("relations") or []],
    )


def last_full_build(db_url: str, project_hash: str) -> bool:
    """Whether a full build of this project version was published on this database."""
    with connect(db_url, autocommit=True) as conn:
        (published,) = one_row(
            conn.execute(
                """
                select exists (
                    select from ops.transform_builds
                    where scope = 'full' and status = 'published' and project_hash = %s
                )
                """,
                (project_hash,),
            )
        )
    return bool(published)


def publish(db_url: str, build_id: uuid.UUID) -> PublishReport:
    """Keep what the build wrote: publish it to readers, drop its undo rows and copies.

    One transaction: readers see the previous build until it commits. Publishing
    a published build again does nothing (a retried task); a rolled back one is
    refused.
    """
    with connect(db_url) as conn, conn.transaction():
        row = conn.execute(
            "select scope, status from ops.transform_builds where build_id = %s for update",
            (build_id,),
        ).fetchone()
        if row is not None and row[1] == "published":
            return PublishReport(build_id=build_id)
        if row is None or row[1] != "running":
            raise LookupError(f"transform build {build_id} is not running: cannot publish it")
        point = load_restore_point(conn, build_id)
        report = publish_build(conn, build_id, scope=row[0], plans=point.relations)
        _forget(conn, point, status="published", error=None)
    return report


def roll_back(
    db_url: str, build_id: uuid.UUID, *, error: dict[str, Any] | None = None
) -> RollbackReport:
    """Put every relation of the build's plan back as it was before the build."""
    report = RollbackReport(build_id=build_id)
    with connect(db_url) as conn, conn.transaction():
        status = conn.execute(
            "select status from ops.transform_builds where build_id = %s for update",
            (build_id,),
        ).fetchone()
        if status is None or status[0] != "running":
            return report
        point = load_restore_point(conn, build_id)
        existing = {(t.schema, t.name): t.oid for t in list_tables(conn, point.schemas)}
        for plan in point.relations:
            oid = existing.get((plan.schema, plan.name))
            if plan.strategy == "undo":
                rows = undo_changes(conn, point.build_id, plan, present=oid is not None)
            else:
                rows = restore_copy(conn, plan, current_oid=oid)
            if rows is not None:
                report.restored.append(plan.qualified)
                report.rows_restored += rows
        planned = {(p.schema, p.name) for p in point.relations}
        for schema, name in sorted(set(existing) - planned):
            conn.execute(
                sql.SQL("drop table if exists {} cascade").format(sql.Identifier(schema, name))
            )
            report.dropped.append(f"{schema}.{name}")
        _forget(conn, point, status="rolled_back", error=error)
    return report


def roll_back_abandoned(db_url: str) -> list[RollbackReport]:
    """Roll back builds left ``running`` by a process that died (call under the lock)."""
    with connect(db_url, autocommit=True) as conn:
        ids = [
            row[0]
            for row in conn.execute(
                "select build_id from ops.transform_builds where status = 'running'"
                " order by started_at desc"
            )
        ]
    abandoned = {"type": "AbandonedBuild", "message": "the process running this build stopped"}
    return [roll_back(db_url, build_id, error=abandoned) for build_id in ids]


def count_changes(
    db_url: str, point: RestorePoint, schema: str, name: str, *, key: str = "clan_tag"
) -> dict[str | None, StepCount]:
    """Rows the build wrote to ``schema.name`` (and how many differ from before), by clan.

    Call before :func:`publish`. For an ``undo`` relation: the rows inserted, and
    those not identical to a row deleted; for a replaced ``copy`` relation: all
    rows, and those not in the copy; for a relation the build created: all rows.
    """
    plan = point.relation(schema, name)
    with connect(db_url, autocommit=True) as conn:
        names = columns(conn, schema, name)
        if not names:
            return {}
        group: sql.Composable = sql.SQL("row_data ->> {}").format(sql.Literal(key))
        if key not in names:
            group = sql.SQL("null::text")
        if plan is None:
            return {
                clan: StepCount(n, n)
                for clan, n in count_by(conn, group, sql.Identifier(schema, name))
            }
        if plan.strategy == "undo":
            written, changed = count_undo_log(conn, point.build_id, plan, group)
        elif _oid(conn, schema, name) == plan.oid:
            return {}  # dbt did not replace it: nothing written
        else:
            written, changed = count_against_copy(conn, plan, group)
    changed_by = dict(changed)
    return {clan: StepCount(n, changed_by.get(clan, 0)) for clan, n in written}


def _oid(conn: psycopg.Connection[Any], schema: str, name: str) -> int | None:
    (oid,) = one_row(conn.execute("select to_regclass(%s)::oid", (f'"{schema}"."{name}"',)))
    return int(oid) if oid is not None else None


def _forget(
    conn: psycopg.Connection[Any],
    point: RestorePoint,
    *,
    status: str,
    error: dict[str, Any] | None,
) -> None:
    conn.execute("delete from ops.transform_undo where build_id = %s", (point.build_id,))
    for plan in point.relations:
        if plan.copy_name:
            conn.execute(
                sql.SQL("drop table if exists {}").format(
                    sql.Identifier(RESTORE_SCHEMA, plan.copy_name)
                )
            )
    conn.execute(
        """
        update ops.transform_builds
        set status = %s, finished_at = clock_timestamp(), error = %s
        where build_id = %s
        """,
        (status, Jsonb(error) if error is not None else None, point.build_id),
    )
