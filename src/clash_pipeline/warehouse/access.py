"""Least privilege: which login each job of the pipeline connects as.

Four roles, none a superuser (README "Least privilege"):

    clash_owner      owns the database, ``raw`` and ``ops``; applies the migrations
    clash_ingest     fetch, land, run bookkeeping, alerts, the monitor (reads the marts)
    clash_transform  dbt and its restore points; owns what dbt creates
    clash_readonly   the API, the dashboard, analysts: reads ``ops`` and the marts

With the embedded PostgreSQL each is a login with its own random password (in the
state file, mode 0600); the bootstrap superuser of initdb only creates them. With
``DATABASE_URL`` the URL's user is the owner, the jobs switch to their role at
connection start (libpq ``options=-c role=...``) unless ``INGEST_DATABASE_URL`` /
``TRANSFORM_DATABASE_URL`` name their own logins, and the API uses
``API_DATABASE_URL`` (a real read-only login) when set.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from clash_pipeline.warehouse.connect import (
    remember_database_url,
    remember_embedded,
    url_with_setting,
)

if TYPE_CHECKING:
    from clash_pipeline.settings import Settings

log = logging.getLogger(__name__)

OWNER = "clash_owner"
INGEST = "clash_ingest"
TRANSFORM = "clash_transform"
READONLY = "clash_readonly"

#: job -> the role it runs as
LOGINS: dict[str, str] = {
    "owner": OWNER,
    "ingest": INGEST,
    "transform": TRANSFORM,
    "readonly": READONLY,
}
JOB_DESCRIPTIONS: dict[str, str] = {
    "owner": "owns the database; migrations",
    "ingest": "fetch, land, run bookkeeping, alerts, monitor",
    "transform": "dbt and its restore points; owns the dbt schemas",
    "readonly": "API, dashboard, analysts (read-only)",
}

# Schemas the migrations create (owned by the owner); every other schema of the
# database is dbt's (staging, intermediate, marts' tables, reference, ...).
_OWNER_SCHEMAS = ("raw", "ops", "public")
_OWNER_SCHEMA_OBJECTS_ONLY = ("ops_restore", "marts", "reference")  # the schema, not its tables

_warned: set[str] = set()
_warned_lock = threading.Lock()


@dataclass(frozen=True)
class DatabaseAccess:
    """The URL of each job. ``readonly_is_login``: the API's URL cannot write even
    after ``RESET ROLE`` (a real read-only login, not a role switched to)."""

    owner: str = field(repr=False)
    ingest: str = field(repr=False)
    transform: str = field(repr=False)
    readonly: str = field(repr=False)
    readonly_is_login: bool = True

    def url(self, job: str) -> str:
        """The URL of ``job`` (owner, ingest, transform or readonly)."""
        if job not in LOGINS:
            raise ValueError(f"unknown job {job!r}: one of {', '.join(LOGINS)}")
        return str(getattr(self, job))


def with_role(url: str, role: str) -> str:
    """``url`` whose sessions start as ``role`` (libpq ``options=-c role=...``)."""
    return url_with_setting(url, "role", role)


def access_from_url(
    url: str,
    *,
    ingest_url: str | None = None,
    transform_url: str | None = None,
    api_url: str | None = None,
) -> DatabaseAccess:
    """The jobs' URLs for a ``DATABASE_URL``: their own logins, else ``SET ROLE`` from it."""
    return DatabaseAccess(
        owner=url,
        ingest=ingest_url or with_role(url, INGEST),
        transform=transform_url or with_role(url, TRANSFORM),
        readonly=api_url or with_role(url, READONLY),
        readonly_is_login=api_url is not None,
    )


def resolve_access(settings: Settings, *, start: bool = True) -> DatabaseAccess:
    """Every job's URL: from ``DATABASE_URL`` (and the per-job URLs), or the embedded logins."""
    if settings.database_url:
        remember_database_url(settings.database_url)
        return access_from_url(
            settings.database_url,
            ingest_url=settings.ingest_database_url,
            transform_url=settings.transform_database_url,
            api_url=settings.api_database_url,
        )
    from clash_pipeline.warehouse.embedded import EmbeddedPostgres

    urls = EmbeddedPostgres(settings.home).login_urls(start=start)
    remember_embedded(urls["owner"], settings.home)
    return DatabaseAccess(
        owner=urls["owner"],
        ingest=urls["ingest"],
        transform=urls["transform"],
        readonly=urls["readonly"],
        readonly_is_login=True,
    )


def warn_once(key: str, message: str, *args: object) -> bool:
    """Log ``message`` as a warning the first time ``key`` is seen in this process."""
    with _warned_lock:
        if key in _warned:
            return False
        _warned.add(key)
    log.warning(message, *args)
    return True


def is_superuser(conn: psycopg.Connection[Any]) -> bool:
    """Whether the session's login (``session_user``) is a superuser."""
    row = conn.execute("select rolsuper from pg_roles where rolname = session_user").fetchone()
    return bool(row and row[0])


def warn_if_superuser(conn: psycopg.Connection[Any], url: str) -> None:
    """Once per process: DATABASE_URL's user is a superuser (the jobs still switch roles)."""
    if is_superuser(conn):
        from clash_pipeline.warehouse.connect import describe_target

        warn_once(
            f"superuser:{describe_target(url)}",
            "DATABASE_URL's user is a superuser: the jobs switch to clash_ingest, "
            "clash_transform and clash_readonly, but any of them could switch back; "
            "use a non-superuser owner (README 'Least privilege')",
        )


# ------------------------------------------------------------------ embedded bootstrap


def bootstrap_logins(
    conn: psycopg.Connection[Any], database: str, passwords: dict[str, str], bootstrap_user: str
) -> None:
    """As the bootstrap superuser: the four logins, the owner of ``database``, and
    everything the bootstrap superuser owned there handed to the owner or to
    clash_transform (homes created before the logins existed). Idempotent."""
    with conn.transaction():
        # a failing statement must not leave a password in the server log
        conn.execute("set local log_min_error_statement = panic")
        conn.execute("set local log_statement = 'none'")
        for job, role in LOGINS.items():
            exists = conn.execute("select 1 from pg_roles where rolname = %s", (role,)).fetchone()
            verb = "alter" if exists else "create"
            conn.execute(
                sql.SQL(
                    "{} role {} with login nosuperuser nocreatedb nocreaterole "
                    "noreplication nobypassrls password {}"
                ).format(sql.SQL(verb), sql.Identifier(role), sql.Literal(passwords[job]))
            )
        # the monitor (an ingest job) reads the marts; the owner administers the jobs' roles
        conn.execute(
            sql.SQL("grant {} to {}").format(sql.Identifier(READONLY), sql.Identifier(INGEST))
        )
        conn.execute(
            sql.SQL("grant {}, {}, {} to {}").format(
                *(sql.Identifier(r) for r in (INGEST, TRANSFORM, READONLY, OWNER))
            )
        )
        conn.execute(
            sql.SQL("alter database {} owner to {}").format(
                sql.Identifier(database), sql.Identifier(OWNER)
            )
        )
        _hand_over(conn, bootstrap_user)


def _hand_over(conn: psycopg.Connection[Any], bootstrap_user: str) -> None:
    """Objects of the bootstrap superuser in the database: raw/ops to the owner, dbt's to
    clash_transform (the bootstrap superuser cannot ``reassign owned``)."""
    owner_schemas = [*_OWNER_SCHEMAS, *_OWNER_SCHEMA_OBJECTS_ONLY]
    schemas = conn.execute(
        "select nspname from pg_namespace where nspowner = to_regrole(%s)"
        " and nspname !~ '^pg_' and nspname <> 'information_schema'",
        (bootstrap_user,),
    ).fetchall()
    for (schema,) in schemas:
        target = OWNER if schema in owner_schemas else TRANSFORM
        conn.execute(
            sql.SQL("alter schema {} owner to {}").format(
                sql.Identifier(schema), sql.Identifier(target)
            )
        )
    for kind, name, schema in conn.execute(_OBJECTS_SQL, (bootstrap_user,) * 3).fetchall():
        target = OWNER if schema in _OWNER_SCHEMAS else TRANSFORM
        conn.execute(
            sql.SQL("alter {} {} owner to {}").format(
                sql.SQL(kind), sql.SQL(name), sql.Identifier(target)
            )
        )


# (kind of ALTER, qualified name, schema) of what the bootstrap user owns outside the
# system schemas; sequences owned by a column follow their table.
_OBJECTS_SQL = """
select case c.relkind when 'v' then 'view' when 'm' then 'materialized view'
         when 'S' then 'sequence' when 'f' then 'foreign table' else 'table' end,
       c.oid::regclass::text, n.nspname
from pg_class c join pg_namespace n on n.oid = c.relnamespace
where c.relowner = to_regrole(%s) and c.relkind in ('r', 'p', 'v', 'm', 'S', 'f')
  and n.nspname !~ '^pg_' and n.nspname <> 'information_schema'
  and not (c.relkind = 'S' and exists (
      select from pg_depend d where d.classid = 'pg_class'::regclass and d.objid = c.oid
      and d.deptype in ('a', 'i')))
union all
select 'routine', p.oid::regprocedure::text, n.nspname
from pg_proc p join pg_namespace n on n.oid = p.pronamespace
where p.proowner = to_regrole(%s) and n.nspname !~ '^pg_' and n.nspname <> 'information_schema'
union all
select case t.typtype when 'd' then 'domain' else 'type' end, t.oid::regtype::text, n.nspname
from pg_type t join pg_namespace n on n.oid = t.typnamespace
where t.typowner = to_regrole(%s) and n.nspname !~ '^pg_' and n.nspname <> 'information_schema'
  and (t.typtype in ('e', 'd', 'r')
       or (t.typtype = 'c' and (select relkind from pg_class where oid = t.typrelid) = 'c'))
"""
