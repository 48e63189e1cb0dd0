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

2. After a successful run, :func:`publish` drops the undo rows and copies.
3. After a failure (in dbt, or in a later phase of the run), :func:`roll_back`
   restores, in one transaction: for each touched key of an ``undo`` relation the
   rows as they were (current rows + deleted - inserted, as multisets); each
   replaced ``copy`` relation from its copy; and drops tables the build created.

A build whose process died is still ``running`` in ``ops.transform_builds``;
the next build (holding the warehouse lock, so nobody else is building) rolls
it back first (:func:`roll_back_abandoned`). Raw data is never touched: the
failed run's landed responses stay in ``raw`` and the next build picks them up,
which is how the next run catches up. Caveat: a manual ``dbt build`` between a
crash and the next pipeline run is not recorded and may be partly undone.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.types.json import Jsonb

from clash_pipeline.warehouse.connect import connect

__all__ = [
    "BUILD_SETTING",
    "RelationPlan",
    "RestorePoint",
    "RollbackReport",
    "StepCount",
    "build_database_url",
    "count_changes",
    "dbt_models",
    "open_restore_point",
    "project_fingerprint",
    "publish",
    "roll_back",
    "roll_back_abandoned",
]

#: The session setting that names the recording build (set for dbt's connections only).
BUILD_SETTING = "clash.transform_build"
RESTORE_SCHEMA = "ops_restore"
#: Without a manifest (first build in a new home), these schemas are protected.
DEFAULT_SCHEMAS = ("intermediate", "marts")
_TRIGGERS = {
    "insert": ("clash_undo_insert", "referencing new table as undo_new_rows"),
    "update": (
        "clash_undo_update",
        "referencing old table as undo_old_rows new table as undo_new_rows",
    ),
    "delete": ("clash_undo_delete", "referencing old table as undo_old_rows"),
}
# Changes to these parts of the project need a full build (staging views, seeds,
# macros, settings); intermediate and marts are rebuilt by every build anyway.
_INCREMENTAL_PATHS = ("models/intermediate/", "models/marts/")
_FULL_BUILD_PATHS = ("models/", "macros/", "seeds/", "snapshots/")
_FULL_BUILD_FILES = ("dbt_project.yml", "packages.yml", "dependencies.yml")


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
    def identifier(self) -> sql.Composed:
        return sql.Identifier(self.schema, self.name)


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


@dataclass(frozen=True)
class ModelInfo:
    schema: str
    name: str
    materialized: str
    unique_key: list[str] | None


# ----------------------------------------------------------------------------- inputs


def project_fingerprint(project_dir: Path) -> str:
    """A hash of the parts of the dbt project that only a full build deploys.

    Staging models, seeds, macros, snapshots and the project settings change
    with releases; when their hash differs from the last published full build,
    the next build is a full one.
    """
    import dbt.version

    digest = hashlib.sha256(f"dbt {dbt.version.__version__}\n".encode())
    project_dir = Path(project_dir)
    paths: list[Path] = [project_dir / name for name in _FULL_BUILD_FILES]
    for top in {p.split("/")[0] for p in _FULL_BUILD_PATHS}:
        root = project_dir / top
        if root.is_dir():
            paths.extend(p for p in root.rglob("*") if p.is_file())
    for path in sorted(set(paths)):
        if not path.is_file():
            continue
        rel = path.relative_to(project_dir).as_posix()
        if rel.startswith(_INCREMENTAL_PATHS):
            continue
        digest.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def dbt_models(manifest_path: Path) -> dict[tuple[str, str], ModelInfo] | None:
    """The project's models and snapshots by (schema, relation name), from a manifest."""
    try:
        manifest = json.loads(Path(manifest_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    project = (manifest.get("metadata") or {}).get("project_name")
    models: dict[tuple[str, str], ModelInfo] = {}
    for node in (manifest.get("nodes") or {}).values():
        if node.get("resource_type") not in ("model", "snapshot"):
            continue
        if project and node.get("package_name") != project:
            continue
        config = node.get("config") or {}
        materialized = str(config.get("materialized") or "")
        if materialized in ("ephemeral", "view", "materialized_view"):
            continue
        key = config.get("unique_key")
        if node.get("resource_type") == "snapshot":
            key, materialized = "dbt_scd_id", "snapshot"
        keys = [key] if isinstance(key, str) else list(key) if key else None
        name = node.get("alias") or node.get("name")
        models[(node["schema"], name)] = ModelInfo(node["schema"], name, materialized, keys)
    return models


def build_database_url(db_url: str, build_id: uuid.UUID) -> str:
    """``db_url`` whose sessions record their changes for ``build_id`` (libpq ``options``)."""
    option = f"-c {BUILD_SETTING}={build_id}"
    parts = urlsplit(db_url)
    if parts.scheme in ("postgresql", "postgres") and "://" in db_url:
        query = parse_qsl(parts.query, keep_blank_values=True)
        existing = [v for k, v in query if k == "options"]
        query = [(k, v) for k, v in query if k != "options"]
        query.append(("options", " ".join([*existing, option])))
        # libpq decodes %20, not "+", as a space
        return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))
    params = conninfo_to_dict(db_url)
    params["options"] = " ".join(filter(None, [params.get("options"), option]))
    return make_conninfo(**params)


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
    if models:
        schemas = sorted({schema for schema, _ in models})
    else:
        schemas = list(DEFAULT_SCHEMAS)
    point = RestorePoint(build_id=build_id, scope=scope, schemas=schemas)
    with connect(db_url) as conn, conn.transaction():
        for schema, name, oid, has_triggers, quoted in _tables(conn, schemas):
            if _is_dbt_leftover(name):
                continue
            info = (models or {}).get((schema, name))
            undo = (
                info is not None
                and info.materialized in ("incremental", "snapshot")
                and bool(info.unique_key)
            )
            plan = RelationPlan(
                schema=schema,
                name=name,
                oid=oid,
                strategy="undo" if undo else "copy",
                unique_key=info.unique_key if undo and info else None,
                undo_relation=quoted,
            )
            if undo:
                if not has_triggers:
                    _install_triggers(conn, plan)
            else:
                plan.copy_name = f"b{build_id.hex[:12]}_{oid}"
                conn.execute(
                    sql.SQL("create unlogged table {} as table {}").format(
                        sql.Identifier(RESTORE_SCHEMA, plan.copy_name), plan.identifier
                    )
                )
            point.relations.append(plan)
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
        row = conn.execute(
            """
            select exists (
                select from ops.transform_builds
                where scope = 'full' and status = 'published' and project_hash = %s
            )
            """,
            (project_hash,),
        ).fetchone()
    return bool(row[0])


def publish(db_url: str, build_id: uuid.UUID) -> None:
    """Keep what the build wrote: drop its undo rows and copies."""
    with connect(db_url) as conn, conn.transaction():
        point = load_restore_point(conn, build_id)
        _forget(conn, point, status="published", error=None)


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
        existing = {(s, n): oid for s, n, oid, _, _ in _tables(conn, point.schemas)}
        for plan in point.relations:
            oid = existing.get((plan.schema, plan.name))
            if plan.strategy == "undo":
                rows = _undo(conn, point.build_id, plan, present=oid is not None)
            else:
                rows = _restore_copy(conn, plan, current_oid=oid)
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
    relation = sql.Identifier(schema, name)
    with connect(db_url, autocommit=True) as conn:
        columns = _columns(conn, schema, name)
        if not columns:
            return {}
        group = sql.SQL("row_data ->> {}").format(sql.Literal(key))
        if key not in columns:
            group = sql.SQL("null::text")
        if plan is None:
            rows = conn.execute(
                sql.SQL(
                    "select {group}, count(*) from ("
                    " select to_jsonb(_clash_row.*) as row_data from {rel} _clash_row) x"
                    " group by 1"
                ).format(group=group, rel=relation)
            ).fetchall()
            return {clan: StepCount(n, n) for clan, n in rows}
        if plan.strategy == "undo":
            written = conn.execute(
                sql.SQL(
                    "select {group}, count(*) from ops.transform_undo"
                    " where build_id = %s and relation = %s and op = 'I' group by 1"
                ).format(group=group),
                (point.build_id, plan.undo_relation),
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
                (point.build_id, plan.undo_relation) * 2,
            ).fetchall()
        else:
            oid = conn.execute("select to_regclass(%s)::oid", (f'"{schema}"."{name}"',)).fetchone()[
                0
            ]
            if oid == plan.oid:
                return {}
            copy = sql.Identifier(RESTORE_SCHEMA, plan.copy_name or "")
            written = conn.execute(
                sql.SQL(
                    "select {group}, count(*) from ("
                    " select to_jsonb(_clash_row.*) as row_data from {rel} _clash_row) x"
                    " group by 1"
                ).format(group=group, rel=relation)
            ).fetchall()
            changed = conn.execute(
                sql.SQL(
                    "select {group}, count(*) from ("
                    " select to_jsonb(_clash_row.*) as row_data from {rel} _clash_row"
                    " except all select to_jsonb(_clash_copy.*) from {copy} _clash_copy) x"
                    " group by 1"
                ).format(group=group, rel=relation, copy=copy)
            ).fetchall()
    changed_by = dict(changed)
    return {clan: StepCount(n, changed_by.get(clan, 0)) for clan, n in written}


# --------------------------------------------------------------------------- internals


def _tables(
    conn: psycopg.Connection[Any], schemas: list[str]
) -> list[tuple[str, str, int, bool, str]]:
    """Base tables of ``schemas``: (schema, name, oid, has all undo triggers, %I.%I name).

    dbt's leftovers of an interrupted model (``__dbt_tmp``, ``__dbt_backup``) are
    not part of any plan, so a rollback drops them.
    """
    return [
        (schema, name, oid, bool(armed), quoted)
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


def _is_dbt_leftover(name: str) -> bool:
    return name.endswith(("__dbt_tmp", "__dbt_backup")) or "__dbt_tmp" in name


def _install_triggers(conn: psycopg.Connection[Any], plan: RelationPlan) -> None:
    for event, (name, referencing) in _TRIGGERS.items():
        conn.execute(
            sql.SQL(
                "create or replace trigger {name} after {event} on {rel} " + referencing + " "
                "for each statement execute function ops.capture_transform_undo()"
            ).format(name=sql.Identifier(name), event=sql.SQL(event), rel=plan.identifier)
        )


def _columns(conn: psycopg.Connection[Any], schema: str, name: str) -> list[str]:
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


def _undo(
    conn: psycopg.Connection[Any], build_id: uuid.UUID, plan: RelationPlan, *, present: bool
) -> int | None:
    """Undo one incremental relation's changes, key by key; None when it had none.

    Rows are compared as jsonb (``to_jsonb(alias.*)``: the ``.*`` keeps a column
    that happens to share the alias's name from being taken for the row).
    """
    touched = conn.execute(
        "select count(*) from ops.transform_undo where build_id = %s and relation = %s",
        (build_id, plan.undo_relation),
    ).fetchone()[0]
    if not touched or not present:
        return None
    keys = sql.SQL(", ").join(sql.Identifier(k) for k in plan.unique_key or [])
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


def _restore_copy(
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
        columns = _columns(conn, RESTORE_SCHEMA, plan.copy_name)
    else:
        conn.execute(sql.SQL("delete from {}").format(plan.identifier))
        kept = set(_columns(conn, RESTORE_SCHEMA, plan.copy_name))
        columns = [c for c in _columns(conn, plan.schema, plan.name) if c in kept]
    column_list = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    cur = conn.execute(
        sql.SQL("insert into {rel} ({cols}) select {cols} from {copy}").format(
            rel=plan.identifier, cols=column_list, copy=copy
        )
    )
    return cur.rowcount


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
