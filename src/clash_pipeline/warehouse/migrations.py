"""A small forward-only migration runner for ``supabase/migrations``.

Files are named ``YYYYMMDDHHMM__description.sql`` and applied in version order.
Each file runs in its own transaction together with its row in
``ops.schema_migrations``, so a failing file leaves no trace and the ones
before it stay applied. A session advisory lock serialises concurrent runners
on the same database. Applied files are checksummed (sha256): editing one after
it was applied is refused: add a new migration instead.

The runner creates schema ``ops`` (``if not exists``) for its bookkeeping
table, so migrations must create ``ops`` with ``if not exists`` too.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row

from clash_pipeline.errors import MigrationError
from clash_pipeline.project import migrations_dir
from clash_pipeline.warehouse.connect import connect

FILENAME_PATTERN = re.compile(r"^(?P<version>\d{12})__(?P<name>[A-Za-z0-9][A-Za-z0-9_\-]*)\.sql$")
# Key of the advisory lock (per database): "clash-pipeline migrations".
ADVISORY_LOCK_KEY = int.from_bytes(
    hashlib.sha256(b"clash-pipeline migrations").digest()[:8], "big", signed=True
)
LOCK_TIMEOUT_SECONDS = 300.0

_BOOKKEEPING_DDL = """
create schema if not exists ops;
create table if not exists ops.schema_migrations (
    version text primary key,
    name text not null,
    checksum text not null,
    applied_at timestamptz not null default now(),
    execution_ms integer not null
);
comment on table ops.schema_migrations is
    'Applied migrations from supabase/migrations (written by clash_pipeline.warehouse.migrations).';
"""


@dataclass(frozen=True)
class Migration:
    """One migration file."""

    version: str
    name: str
    path: Path
    checksum: str
    sql: str = field(repr=False)

    @property
    def filename(self) -> str:
        return self.path.name


@dataclass
class MigrationResult:
    """Versions applied by this run, and versions that were already applied."""

    applied: list[str] = field(default_factory=list)
    already_applied: list[str] = field(default_factory=list)


def discover(directory: Path | None = None) -> list[Migration]:
    """The migrations in ``directory``, sorted by version.

    Every ``*.sql`` file must be named ``YYYYMMDDHHMM__description.sql``; other
    files (README, dotfiles) are ignored.
    """
    directory = Path(directory) if directory is not None else migrations_dir()
    if not directory.is_dir():
        raise MigrationError(
            f"migrations folder {directory} does not exist",
            hint="run from a checkout of clash-pipeline, or pass the folder explicitly",
        )
    migrations: dict[str, Migration] = {}
    for path in sorted(directory.iterdir()):
        if path.name.startswith(".") or path.suffix.lower() != ".sql" or not path.is_file():
            continue
        match = FILENAME_PATTERN.match(path.name)
        if match is None or not _is_timestamp(match["version"]):
            raise MigrationError(
                f"migration file {path.name} is badly named",
                hint="name migrations YYYYMMDDHHMM__description.sql "
                "(e.g. 202611291200__create_raw.sql)",
            )
        version = match["version"]
        if version in migrations:
            raise MigrationError(
                f"migrations {migrations[version].filename} and {path.name} "
                f"share the version {version}",
                hint="give one of them a later version (rename the file before it is applied)",
            )
        data = path.read_bytes()
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise MigrationError(
                f"migration file {path.name} is not UTF-8", hint="save it as UTF-8"
            ) from None
        migrations[version] = Migration(
            version=version,
            name=match["name"],
            path=path,
            checksum=hashlib.sha256(data).hexdigest(),
            sql=text,
        )
    return [migrations[version] for version in sorted(migrations)]


def schema_version(directory: Path | None = None) -> str:
    """The latest migration version on disk: the warehouse ``schema_version``."""
    migrations = discover(directory)
    if not migrations:
        raise MigrationError(
            f"no migrations in {Path(directory) if directory else migrations_dir()}",
            hint="restore supabase/migrations from the repository",
        )
    return migrations[-1].version


def migrate(
    conn_or_url: psycopg.Connection[Any] | str,
    directory: Path | None = None,
    *,
    lock_timeout: float = LOCK_TIMEOUT_SECONDS,
) -> MigrationResult:
    """Apply the pending migrations of ``directory`` (default: supabase/migrations).

    A connection passed in must not be inside a transaction; it is left idle.
    Raises MigrationError for a failing, edited or missing migration.
    """
    migrations = discover(directory)
    with _connection(conn_or_url) as conn:
        if conn.info.transaction_status != TransactionStatus.IDLE:
            raise MigrationError(
                "migrate() needs a connection outside a transaction",
                hint="commit or roll back first, or pass a URL",
            )
        with _advisory_lock(conn, lock_timeout):
            with conn.transaction():
                conn.execute(_BOOKKEEPING_DDL)
            applied = {row["version"]: row for row in _applied_rows(conn)}
            _check_applied(applied, migrations)
            result = MigrationResult(already_applied=sorted(applied))
            for migration in migrations:
                if migration.version not in applied:
                    _apply(conn, migration)
                    result.applied.append(migration.version)
            return result


def applied_migrations(conn_or_url: psycopg.Connection[Any] | str) -> list[dict[str, Any]]:
    """Rows of ``ops.schema_migrations`` in version order ([] if never migrated)."""
    with _connection(conn_or_url) as conn:
        with conn.transaction():
            exists = conn.execute(
                "select to_regclass('ops.schema_migrations') is not null"
            ).fetchone()
            if not exists or not exists[0]:
                return []
            return _applied_rows(conn)


# -- internals -------------------------------------------------------------------


def _is_timestamp(version: str) -> bool:
    try:
        datetime.strptime(version, "%Y%m%d%H%M")
    except ValueError:
        return False
    return True


@contextmanager
def _connection(conn_or_url: psycopg.Connection[Any] | str) -> Iterator[psycopg.Connection[Any]]:
    if isinstance(conn_or_url, str):
        with connect(conn_or_url) as conn:
            yield conn
    else:
        yield conn_or_url


@contextmanager
def _advisory_lock(conn: psycopg.Connection[Any], timeout: float) -> Iterator[None]:
    """A session advisory lock, polled so that a stuck runner gives a clear error."""
    deadline = time.monotonic() + timeout
    while True:
        with conn.transaction():
            row = conn.execute("select pg_try_advisory_lock(%s)", (ADVISORY_LOCK_KEY,)).fetchone()
        if row and row[0]:
            break
        if time.monotonic() > deadline:
            raise MigrationError(
                f"another process has been migrating this database for over {timeout:.0f} s",
                hint="wait for it to finish, or find it in pg_stat_activity and end it",
            )
        time.sleep(0.1)
    try:
        yield
    finally:
        if not conn.closed:
            if conn.info.transaction_status != TransactionStatus.IDLE:
                conn.rollback()
            with conn.transaction():
                conn.execute("select pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))


def _applied_rows(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur, conn.transaction():
        cur.execute(
            "select version, name, checksum, applied_at, execution_ms"
            " from ops.schema_migrations order by version"
        )
        return cur.fetchall()


def _check_applied(applied: dict[str, dict[str, Any]], migrations: list[Migration]) -> None:
    on_disk = {migration.version: migration for migration in migrations}
    for version, row in applied.items():
        migration = on_disk.get(version)
        filename = f"{version}__{row['name']}.sql"
        if migration is None:
            raise MigrationError(
                f"migration {filename} was applied to this database but is missing "
                "from the migrations folder",
                hint="restore the file (migrations are never deleted); "
                "undo a change with a new migration",
            )
        if migration.checksum != row["checksum"]:
            raise MigrationError(
                f"migration {migration.filename} was changed after it was applied "
                f"(checksum {row['checksum'][:12]}… applied, {migration.checksum[:12]}… on disk)",
                hint="restore the file and add a new migration instead",
            )


def _apply(conn: psycopg.Connection[Any], migration: Migration) -> None:
    started = time.perf_counter()
    try:
        with conn.transaction():
            # The whole file in one execute: psycopg sends it with the simple query
            # protocol (no parameters), so several statements, DO blocks and
            # dollar quoting work, and '%' is not a placeholder.
            conn.execute(migration.sql)
            if conn.info.transaction_status != TransactionStatus.INTRANS:
                raise MigrationError(
                    f"migration {migration.filename} ended the transaction itself "
                    "(it contains COMMIT or ROLLBACK), so it was not recorded and the "
                    "statements before the COMMIT may be in the database",
                    hint="remove BEGIN/COMMIT from the file (each migration already runs "
                    "in its own transaction) and undo what it committed",
                )
            elapsed_ms = round((time.perf_counter() - started) * 1000)
            conn.execute(
                "insert into ops.schema_migrations (version, name, checksum, execution_ms)"
                " values (%s, %s, %s, %s)",
                (migration.version, migration.name, migration.checksum, elapsed_ms),
            )
    except psycopg.Error as exc:
        raise MigrationError(
            f"migration {migration.filename} failed: {_describe_error(exc, migration.sql)}",
            hint="fix the file and migrate again; the migrations before it stay applied",
        ) from None


def _describe_error(exc: psycopg.Error, sql: str) -> str:
    diag = exc.diag
    message = diag.message_primary or str(exc).strip().splitlines()[0]
    details = []
    if diag.sqlstate:
        details.append(f"SQLSTATE {diag.sqlstate}")
    position = diag.statement_position or diag.internal_position
    if diag.statement_position:
        offset = int(diag.statement_position) - 1
        line = sql.count("\n", 0, offset) + 1
        column = offset - (sql.rfind("\n", 0, offset) + 1) + 1
        details.append(f"line {line}, column {column}")
    elif position:
        details.append(f"position {position}")
    text = message
    if diag.message_detail:
        text += f"; {diag.message_detail}"
    if diag.context:
        context = " ".join(diag.context.split())
        text += f"; context: {context}"
    if details:
        text += f" ({', '.join(details)})"
    return text
