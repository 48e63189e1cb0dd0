"""Published builds: readers see the last build that completed, never one in progress.

dbt builds the marts into an internal schema, ``marts_build``
(:data:`BUILD_SCHEMA`, ``dbt_project.yml``); dbt's data tests, ``dbt docs``
and the run's own monitor phase read it there. Readers (the API, the
dashboard, analysts and BI tools, all as ``clash_readonly``) read ``marts``
(:data:`PUBLISHED_SCHEMA`), which holds a copy of the last *published* build.
``clash_readonly`` has no USAGE on ``marts_build``.

A build is published when the run keeps it (after the monitor phase, where
:func:`clash_pipeline.transform.restore.publish` is called, and at the end of
``clash-pipeline build``), in the same transaction that closes its restore
point, by :func:`publish_build`. Until that transaction commits, readers see
the previous build whole; a crash at any time (during dbt, the monitor, or
the publish itself) leaves ``marts`` exactly at the previous published build,
and the next build first rolls ``marts_build`` back to it (the restore point).

What publishing costs, per relation of ``marts_build``:

* **incremental model** (an ``undo`` relation of the restore point, the same
  table before and after the build, same shape as its published copy): the
  undo log names every key the build deleted or inserted; those keys are
  deleted from the published table and the build's current rows for them are
  inserted. Cost: the rows the build changed.
* **table model** (dbt rewrote it whole; it was copied for the restore point
  anyway), an incremental model that dbt replaced (``--full-refresh``), and
  every relation of a ``full`` build (the first build of a release, e.g. the
  first one after upgrading, which converts dbt's old ``marts`` tables): the
  published rows are replaced by the build's (DELETE + INSERT: readers keep
  reading the old rows until commit, never blocked).
* **new relation or changed shape** (columns, their types, or the indexes
  differ): the published table is dropped and created again ``like`` the
  build's (same columns, constraints and indexes, so API reads stay fast),
  then filled, and ``clash_readonly`` is granted SELECT on it.
* **view** (``ingest_run_health``, which reads ``ops`` only): created or
  replaced with the build's definition, references to ``marts_build``
  rewritten to ``marts``.

Published objects belong to the login that runs dbt (the same connection
publishes), a member of ``clash_transform``, which has CREATE on both schemas
(``supabase/migrations``). A relation that disappears from the build (a
removed model) stays published, as dbt also leaves its table behind.
Invariant the incremental path relies on: when a pipeline build opens its
restore point, ``marts_build`` equals ``marts`` (every build either publishes
or is rolled back). A hand-run ``dbt build`` would break it (as it bypasses the
restore point), so the project's on-run-start hook refuses a dbt that writes
unless clash-pipeline runs it (``macros/warehouse_guard.sql``); analysts build
with ``clash-pipeline dbt build ...``, which takes this path. Should it be broken
anyway (the hook removed), ``clash-pipeline build --full-refresh`` brings both back.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

if TYPE_CHECKING:
    from clash_pipeline.transform.relations import RelationPlan

__all__ = [
    "BUILD_SCHEMA",
    "PUBLISHED_SCHEMA",
    "READER_ROLE",
    "PublishReport",
    "publish_all",
    "publish_build",
]

#: Where dbt builds the marts (dbt_project.yml); readers have no access to it.
BUILD_SCHEMA = "marts_build"
#: What readers read: the last published build.
PUBLISHED_SCHEMA = "marts"
#: The role that reads the published marts.
READER_ROLE = "clash_readonly"
#: Undo triggers dbt's old tables carried in ``marts`` before it was published (upgrade).
_OLD_TRIGGERS = ("clash_undo_insert", "clash_undo_update", "clash_undo_delete")


@dataclass
class PublishReport:
    """What one publish did: relations by how they were published, rows written."""

    build_id: uuid.UUID
    incremental: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    recreated: list[str] = field(default_factory=list)
    views: list[str] = field(default_factory=list)
    rows_deleted: int = 0
    rows_inserted: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class _Relation:
    name: str
    oid: int
    kind: str  # 'r' table, 'v' view


def publish_build(
    conn: psycopg.Connection[Any],
    build_id: uuid.UUID,
    *,
    scope: str,
    plans: list[RelationPlan],
) -> PublishReport:
    """Bring ``marts`` to the content of ``marts_build`` (inside the caller's transaction).

    ``plans`` are the restore point's relations (the undo log of an ``undo``
    relation names the keys the build touched); ``scope`` ``full`` replaces
    every table whole.
    """
    t0 = time.perf_counter()
    report = PublishReport(build_id=build_id)
    by_name = {p.name: p for p in plans if p.schema == BUILD_SCHEMA}
    published = {r.name: r for r in _relations(conn, PUBLISHED_SCHEMA)}
    for rel in _relations(conn, BUILD_SCHEMA):
        target = published.get(rel.name)
        if rel.kind == "v":
            _publish_view(conn, rel, target)
            report.views.append(rel.name)
            continue
        same_shape = target is not None and target.kind == "r" and _same_shape(conn, rel.name)
        if not same_shape:
            _recreate(conn, rel.name, target)
            report.recreated.append(rel.name)
            report.rows_inserted += _copy_all(conn, rel.name)
            continue
        plan = by_name.get(rel.name)
        if scope != "full" and plan and plan.strategy == "undo" and plan.oid == rel.oid:
            deleted, inserted = _copy_touched_keys(conn, build_id, plan)
            report.incremental.append(rel.name)
        elif plan and plan.strategy == "copy" and plan.oid == rel.oid and scope != "full":
            continue  # dbt did not rewrite it: nothing to publish
        else:
            deleted, inserted = _replace_rows(conn, rel.name)
            report.replaced.append(rel.name)
        report.rows_deleted += deleted
        report.rows_inserted += inserted
    report.seconds = round(time.perf_counter() - t0, 4)
    return report


def _relations(conn: psycopg.Connection[Any], schema: str) -> list[_Relation]:
    """Tables and views of ``schema``, without dbt's leftovers of an interrupted model."""
    rows = conn.execute(
        """
        select c.relname, c.oid::bigint, case when c.relkind in ('v', 'm') then 'v' else 'r' end
        from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = %s and c.relkind in ('r', 'p', 'v', 'm')
          and c.relname not like '%%\\_\\_dbt\\_tmp%%' and c.relname not like '%%\\_\\_dbt\\_backup'
        order by 1
        """,
        (schema,),
    ).fetchall()
    return [_Relation(name, int(oid), kind) for name, oid, kind in rows]


def _ident(schema: str, name: str) -> sql.Identifier:
    return sql.Identifier(schema, name)


#: Columns (name and type, in order) and indexes (without their names) of a table.
_SHAPE_SQL = """
select
    (select coalesce(array_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                               order by a.attnum), '{}')
     from pg_attribute a
     where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped),
    (select coalesce(array_agg(regexp_replace(pg_get_indexdef(i.indexrelid), '^.* USING ', '')
                               || case when i.indisunique then ' unique' else '' end
                               order by 1), '{}')
     from pg_index i where i.indrelid = c.oid)
from pg_class c join pg_namespace n on n.oid = c.relnamespace
where n.nspname = %s and c.relname = %s
"""


def _same_shape(conn: psycopg.Connection[Any], name: str) -> bool:
    build = conn.execute(_SHAPE_SQL, (BUILD_SCHEMA, name)).fetchone()
    published = conn.execute(_SHAPE_SQL, (PUBLISHED_SCHEMA, name)).fetchone()
    return build is not None and build == published


def _column_list(conn: psycopg.Connection[Any], name: str) -> sql.Composable:
    names = [
        row[0]
        for row in conn.execute(
            """
            select a.attname from pg_attribute a
            where a.attrelid = to_regclass(%s) and a.attnum > 0 and not a.attisdropped
            order by a.attnum
            """,
            (f'"{BUILD_SCHEMA}"."{name}"',),
        )
    ]
    return sql.SQL(", ").join(sql.Identifier(n) for n in names)


def _drop(conn: psycopg.Connection[Any], name: str, target: _Relation | None) -> None:
    if target is None:
        return
    kind = sql.SQL("view" if target.kind == "v" else "table")
    conn.execute(sql.SQL("drop {} {}").format(kind, _ident(PUBLISHED_SCHEMA, name)))


def _recreate(conn: psycopg.Connection[Any], name: str, target: _Relation | None) -> None:
    """The published table created anew like the build's: columns, constraints, indexes."""
    _drop(conn, name, target)
    conn.execute(
        sql.SQL("create table {} (like {} including all)").format(
            _ident(PUBLISHED_SCHEMA, name), _ident(BUILD_SCHEMA, name)
        )
    )
    _grant(conn, name)


def _grant(conn: psycopg.Connection[Any], name: str) -> None:
    conn.execute(
        sql.SQL("grant select on {} to {}").format(
            _ident(PUBLISHED_SCHEMA, name), sql.Identifier(READER_ROLE)
        )
    )


def _copy_all(conn: psycopg.Connection[Any], name: str) -> int:
    cols = _column_list(conn, name)
    cur = conn.execute(
        sql.SQL("insert into {pub} ({cols}) select {cols} from {build}").format(
            pub=_ident(PUBLISHED_SCHEMA, name), build=_ident(BUILD_SCHEMA, name), cols=cols
        )
    )
    return cur.rowcount


def _replace_rows(conn: psycopg.Connection[Any], name: str) -> tuple[int, int]:
    """Every published row replaced by the build's (readers see the old rows until commit)."""
    for trigger in _OLD_TRIGGERS:
        conn.execute(
            sql.SQL("drop trigger if exists {} on {}").format(
                sql.Identifier(trigger), _ident(PUBLISHED_SCHEMA, name)
            )
        )
    _grant(conn, name)  # dbt's tables of an old marts were granted by dbt
    deleted = conn.execute(sql.SQL("delete from {}").format(_ident(PUBLISHED_SCHEMA, name)))
    return deleted.rowcount, _copy_all(conn, name)


def _copy_touched_keys(
    conn: psycopg.Connection[Any], build_id: uuid.UUID, plan: RelationPlan
) -> tuple[int, int]:
    """Delete the keys the build touched from the published table, insert the build's rows."""
    keys = plan.unique_key or []
    key_list = sql.SQL(", ").join(sql.Identifier(k) for k in keys)
    build = _ident(BUILD_SCHEMA, plan.name)
    conn.execute(
        sql.SQL(
            """
            create temp table _clash_publish_keys on commit drop as
            select distinct {typed}
            from (
                select jsonb_populate_record(null::{build}, row_data) as r
                from ops.transform_undo where build_id = %s and relation = %s
            ) as undo
            """
        ).format(
            typed=sql.SQL(", ").join(sql.SQL("(r).{}").format(sql.Identifier(k)) for k in keys),
            build=build,
        ),
        (build_id, plan.undo_relation),
    )
    conn.execute("analyze _clash_publish_keys")  # a catch-up build touches many keys
    published = _ident(PUBLISHED_SCHEMA, plan.name)
    deleted = conn.execute(
        sql.SQL("delete from {pub} where ({keys}) in (select * from _clash_publish_keys)").format(
            pub=published, keys=key_list
        )
    ).rowcount
    cols = _column_list(conn, plan.name)
    inserted = conn.execute(
        sql.SQL(
            "insert into {pub} ({cols}) select {cols} from {build}"
            " where ({keys}) in (select * from _clash_publish_keys)"
        ).format(pub=published, cols=cols, build=build, keys=key_list)
    ).rowcount
    conn.execute("drop table _clash_publish_keys")
    return deleted, inserted


_BUILD_REFERENCE = re.compile(r'(?<![\w"])("?)' + BUILD_SCHEMA + r"\1\.")


def _publish_view(conn: psycopg.Connection[Any], rel: _Relation, target: _Relation | None) -> None:
    """Create or replace the published view with the build's definition."""
    (definition,) = conn.execute("select pg_get_viewdef(%s::oid)", (rel.oid,)).fetchone() or ("",)
    definition = _BUILD_REFERENCE.sub(PUBLISHED_SCHEMA + ".", str(definition)).rstrip().rstrip(";")
    if target is not None and target.kind == "v":
        (current,) = conn.execute("select pg_get_viewdef(%s::oid)", (target.oid,)).fetchone() or (
            "",
        )
        if str(current).rstrip().rstrip(";") == definition:
            return
    _drop(conn, rel.name, target)
    conn.execute(
        sql.SQL("create view {} as ").format(_ident(PUBLISHED_SCHEMA, rel.name))
        + sql.SQL(definition)  # a definition PostgreSQL printed
    )
    _grant(conn, rel.name)


def publish_all(db_url: str) -> PublishReport:
    """Publish ``marts_build`` whole, in one transaction, without a restore point.

    For a build that did not run under a restore point (dbt run by hand, the
    model tests): every table is replaced or recreated. The pipeline and
    ``clash-pipeline build`` publish through
    :func:`clash_pipeline.transform.restore.publish` instead.
    """
    from clash_pipeline.warehouse.connect import connect

    with connect(db_url) as conn, conn.transaction():
        return publish_build(conn, uuid.uuid4(), scope="full", plans=[])
