"""The tables a restore point protects, and the SQL that puts each one back.

Two strategies (see :mod:`clash_pipeline.transform.restore`):

* ``undo``: statement-level triggers log every row a build deletes (``D``) or
  inserts (``I``) into ``ops.transform_undo``; :func:`undo_changes` replays the
  log backwards, key by key;
* ``copy``: the table is copied to ``ops_restore`` before the build;
  :func:`restore_copy` puts the copy back if dbt replaced the table.

Rows are compared as jsonb (``to_jsonb(alias.*)``: the ``.*`` keeps a column
that happens to share the alias's name from being taken for the row).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import psycopg
from psycopg import sql

from clash_pipeline.warehouse.connect import one_row

__all__ = [
    "RESTORE_SCHEMA",
    "RelationPlan",
    "Table",
    "columns",
    "copy_table",
    "count_against_copy",
    "count_by",
    "count_undo_log",
    "install_triggers",
    "is_dbt_leftover",
    "list_tables",
    "restore_copy",
    "undo_changes",
]

RESTORE_SCHEMA = "ops_restore"
_TRIGGERS = {
    "insert": ("clash_undo_insert", "referencing new table as undo_new_rows"),
    "update": (
        "clash_undo_update",
        "referencing old table as undo_old_rows new table as undo_new_rows",
    ),
    "delete": ("clash_undo_delete", "referencing old table as undo_old_rows"),
}
#: A relation's rows as jsonb, for counting and comparing them.
_ROWS_AS_JSON = "select to_jsonb(_clash_row.*) as row_data from {rel} _clash_row"


@dataclass
class RelationPlan:
    """How one table is put back."""

    schema: str
    name: str
    oid: int
    strategy: Literal["undo", "copy"]
    unique_key: list[str] | None = None
    copy_name: str | None = None
    #: The name the undo trigger records: ``format('%I.%I', schema, name)``.
    undo_relation: str = ""

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def identifier(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)


class Table(NamedTuple):
    """A base table in a protected schema."""

    schema: str
    name: str
    oid: int
    has_undo_triggers: bool
    quoted: str  # format('%I.%I', schema, name), as the undo trigger records it


def list_tables(conn: psycopg.Connection[Any], schemas: list[str]) -> list[Table]:
    """Base tables of ``schemas``, with whether all undo triggers are armed on them.

    dbt's leftovers of an interrupted model (``__dbt_tmp``, ``__dbt_backup``) are
    not part of any plan, so a rollback drops them.
    """
    return [
        Table(schema, name, oid, bool(armed), quoted)
        for schema, name, oid, armed, quoted in conn.execute(
            """
            select n.nspname, c.relname, c.oid::bigint,
                   (select count(*) from pg_trigger t
                    where t.tgrelid = c.oid and t.tgname = any(%s)) = %s,
                   format('%%I.%%I', n.nspname, c.relname)
            from pg_class c
            join pg_namespace n on n.oid = c.relnamespace
            where n.nspname = any(%s) and c.relkind in ('r', 'p')
            order by 1, 2
            """,
            ([name for name, _ in _TRIGGERS.values()], len(_TRIGGERS), schemas),
        ).fetchall()
    ]


def is_dbt_leftover(name: str) -> bool:
    return name.endswith(("__dbt_tmp", "__dbt_backup")) or "__dbt_tmp" in name


def install_triggers(conn: psycopg.Connection[Any], plan: RelationPlan) -> None:
    """Arm the undo log on a table (it records only for sessions of a recording build)."""
    for event, (name, referencing) in _TRIGGERS.items():
        conn.execute(
            sql.SQL(
                "create or replace trigger {name} after {event} on {rel} " + referencing + " "
                "for each statement execute function ops.capture_transform_undo()"
            ).format(name=sql.Identifier(name), event=sql.SQL(event), rel=plan.identifier)
        )


def copy_table(conn: psycopg.Connection[Any], plan: RelationPlan) -> None:
    """Copy a table that dbt will rewrite whole to ``ops_restore.<plan.copy_name>``."""
    conn.execute(
        sql.SQL("create unlogged table {} as table {}").format(
            sql.Identifier(RESTORE_SCHEMA, plan.copy_name or ""), plan.identifier
        )
    )


def columns(conn: psycopg.Connection[Any], schema: str, name: str) -> list[str]:
    return [
        row[0]
        for row in conn.execute(
            """
            select a.attname from pg_attribute a
            join pg_class c on c.oid = a.attrelid
            join pg_namespace n on n.oid = c.relnamespace
            where n.nspname = %s and c.relname = %s and a.attnum > 0 and not a.attisdropped
            order by a.attnum
            """,
            (schema, name),
        )
    ]


def undo_changes(
    conn: psycopg.Connection[Any], build_id: uuid.UUID, plan: RelationPlan, *, present: bool
) -> int | None:
    """Undo one incremental relation's changes, key by key; None when it had none."""
    (touched,) = one_row(
        conn.execute(
            "select count(*) from ops.transform_undo where build_id = %s and relation = %s",
            (build_id, plan.undo_relation),
        )
    )
    if not touched or not present:
        return None
    keys = sql.SQL(", ").join(sql.Identifier(k) for k in plan.unique_key or [])
    _collect_rows_before(conn, build_id, plan, keys)
    conn.execute(
        sql.SQL("delete from {rel} where ({keys}) in (select * from _clash_undo_keys)").format(
            rel=plan.identifier, keys=keys
        )
    )
    cur = conn.execute(
        sql.SQL(
            "insert into {rel} select (jsonb_populate_record(null::{rel}, row_data)).*"
            " from _clash_undo_rows"
        ).format(rel=plan.identifier)
    )
    restored = cur.rowcount
    conn.execute("drop table _clash_undo_keys, _clash_undo_rows")
    return restored


def _collect_rows_before(
    conn: psycopg.Connection[Any], build_id: uuid.UUID, plan: RelationPlan, keys: sql.Composable
) -> None:
    """Temp tables ``_clash_undo_keys`` (the keys the build touched) and ``_clash_undo_rows``
    (their rows before the build: current rows + deleted - inserted, as multisets)."""
    typed_keys = sql.SQL(", ").join(
        sql.SQL("(r).{}").format(sql.Identifier(k)) for k in plan.unique_key or []
    )
    params = {"build": build_id, "rel": plan.undo_relation}
    conn.execute(
        sql.SQL(
            """
            create temp table _clash_undo_keys on commit drop as
            select distinct {typed_keys}
            from (
                select jsonb_populate_record(null::{rel}, row_data) as r
                from ops.transform_undo
                where build_id = %(build)s and relation = %(rel)s
            ) as undo
            """
        ).format(typed_keys=typed_keys, rel=plan.identifier),
        params,
    )
    conn.execute(
        sql.SQL(
            """
            create temp table _clash_undo_rows on commit drop as
            (
                select to_jsonb(_clash_row.*) as row_data from {rel} as _clash_row
                where ({keys}) in (select * from _clash_undo_keys)
                union all
                select row_data from ops.transform_undo
                where build_id = %(build)s and relation = %(rel)s and op = 'D'
            )
            except all
            select row_data from ops.transform_undo
            where build_id = %(build)s and relation = %(rel)s and op = 'I'
            """
        ).format(rel=plan.identifier, keys=keys),
        params,
    )


def restore_copy(
    conn: psycopg.Connection[Any], plan: RelationPlan, *, current_oid: int | None
) -> int | None:
    """Put a replaced table back from its copy; None when dbt did not replace it."""
    if current_oid == plan.oid or not plan.copy_name:
        return None
    copy = sql.Identifier(RESTORE_SCHEMA, plan.copy_name)
    if current_oid is None:
        conn.execute(
            sql.SQL("create table {} (like {} including all)").format(plan.identifier, copy)
        )
        names = columns(conn, RESTORE_SCHEMA, plan.copy_name)
    else:
        conn.execute(sql.SQL("delete from {}").format(plan.identifier))
        kept = set(columns(conn, RESTORE_SCHEMA, plan.copy_name))
        names = [c for c in columns(conn, plan.schema, plan.name) if c in kept]
    column_list = sql.SQL(", ").join(sql.Identifier(c) for c in names)
    cur = conn.execute(
        sql.SQL("insert into {rel} ({cols}) select {cols} from {copy}").format(
            rel=plan.identifier, cols=column_list, copy=copy
        )
    )
    return cur.rowcount


# -- counting what a build wrote --------------------------------------------------------


def count_by(
    conn: psycopg.Connection[Any], group: sql.Composable, rel: sql.Composable
) -> list[tuple[str | None, int]]:
    """Rows of ``rel`` by ``group`` (an expression over ``row_data``)."""
    query = sql.SQL("select {group}, count(*) from (" + _ROWS_AS_JSON + ") x group by 1")
    return conn.execute(query.format(group=group, rel=rel)).fetchall()


def count_undo_log(
    conn: psycopg.Connection[Any], build_id: uuid.UUID, plan: RelationPlan, group: sql.Composable
) -> tuple[list[tuple[str | None, int]], list[tuple[str | None, int]]]:
    """(rows inserted, rows inserted not identical to a row deleted) by ``group``, from the log."""
    written = conn.execute(
        sql.SQL(
            "select {group}, count(*) from ops.transform_undo"
            " where build_id = %s and relation = %s and op = 'I' group by 1"
        ).format(group=group),
        (build_id, plan.undo_relation),
    ).fetchall()
    changed = conn.execute(
        sql.SQL(
            "select {group}, count(*) from ("
            " select row_data from ops.transform_undo"
            "  where build_id = %s and relation = %s and op = 'I'"
            " except all"
            " select row_data from ops.transform_undo"
            "  where build_id = %s and relation = %s and op = 'D'"
            ") x group by 1"
        ).format(group=group),
        (build_id, plan.undo_relation) * 2,
    ).fetchall()
    return written, changed


def count_against_copy(
    conn: psycopg.Connection[Any], plan: RelationPlan, group: sql.Composable
) -> tuple[list[tuple[str | None, int]], list[tuple[str | None, int]]]:
    """(all rows, rows not in the copy) by ``group``, of a table dbt replaced."""
    copy = sql.Identifier(RESTORE_SCHEMA, plan.copy_name or "")
    written = count_by(conn, group, plan.identifier)
    changed = conn.execute(
        sql.SQL(
            "select {group}, count(*) from ("
            " select to_jsonb(_clash_row.*) as row_data from {rel} _clash_row"
            " except all select to_jsonb(_clash_copy.*) from {copy} _clash_copy) x"
            " group by 1"
        ).format(group=group, rel=plan.identifier, copy=copy)
    ).fetchall()
    return written, changed
