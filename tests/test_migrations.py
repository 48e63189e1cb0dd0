"""The migration runner: order, idempotence, refusals, rollback, concurrency."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import psycopg
import pytest

from clash_pipeline.errors import MigrationError
from clash_pipeline.project import migrations_dir
from clash_pipeline.warehouse.connect import connect
from clash_pipeline.warehouse.migrations import (
    MigrationResult,
    applied_migrations,
    discover,
    migrate,
    schema_version,
)

DATA = Path(__file__).parent / "data"
OK = DATA / "migrations_ok"
FAILING = DATA / "migrations_failing"
BADNAME = DATA / "migrations_badname"
OK_VERSIONS = ["202601010900", "202601021200", "202601031530"]


def _copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / src.name
    shutil.copytree(src, dst)
    return dst


def _snapshot(url: str) -> list[tuple]:
    """Everything a re-run could change: bookkeeping rows and the demo data."""
    with connect(url) as conn:
        rows = conn.execute(
            "select version, name, checksum, applied_at from ops.schema_migrations order by version"
        ).fetchall()
        tables = conn.execute(
            "select table_schema, table_name, column_name from information_schema.columns"
            " where table_schema in ('demo', 'ops') order by 1, 2, 3"
        ).fetchall()
        return rows + tables


def _tables(url: str, schema: str = "demo") -> set[str]:
    with connect(url) as conn:
        rows = conn.execute(
            "select table_name from information_schema.tables where table_schema = %s", (schema,)
        ).fetchall()
    return {row[0] for row in rows}


# -- discovery (no database) -------------------------------------------------------


def test_discover_sorts_by_version_and_ignores_other_files():
    migrations = discover(OK)
    assert [m.version for m in migrations] == OK_VERSIONS
    assert [m.name for m in migrations] == ["create_demo", "add_trophies", "seed_function"]
    first = migrations[0]
    assert first.path == OK / "202601010900__create_demo.sql"
    assert len(first.checksum) == 64
    assert first.sql.startswith("-- First migration")
    assert schema_version(OK) == "202601031530"


def test_badly_named_file_is_refused_by_name():
    with pytest.raises(MigrationError) as excinfo:
        discover(BADNAME)
    assert "2026-01-02_bad_name.sql" in excinfo.value.message
    assert "YYYYMMDDHHMM__description.sql" in (excinfo.value.hint or "")


@pytest.mark.parametrize(
    "filename",
    ["202613011200__month_13.sql", "20260101__short.sql", "202601011200_one_underscore.sql"],
)
def test_invalid_versions_are_refused(tmp_path, filename):
    (tmp_path / filename).write_text("select 1;")
    with pytest.raises(MigrationError, match=filename):
        discover(tmp_path)


def test_duplicate_versions_are_refused(tmp_path):
    (tmp_path / "202601010900__one.sql").write_text("select 1;")
    (tmp_path / "202601010900__two.sql").write_text("select 2;")
    with pytest.raises(MigrationError, match="share the version 202601010900"):
        discover(tmp_path)


def test_missing_folder_is_an_error(tmp_path):
    with pytest.raises(MigrationError, match="does not exist"):
        discover(tmp_path / "nope")


def test_default_folder_is_the_repository_one():
    assert migrations_dir() == Path(__file__).resolve().parents[1] / "supabase" / "migrations"


# -- applying ------------------------------------------------------------------------


def test_applies_in_version_order_whatever_the_listing_order(fresh_db_url, monkeypatch):
    real_iterdir = Path.iterdir
    monkeypatch.setattr(Path, "iterdir", lambda self: reversed(list(real_iterdir(self))))

    result = migrate(fresh_db_url, OK)

    assert result == MigrationResult(applied=OK_VERSIONS, already_applied=[])
    with connect(fresh_db_url) as conn:
        order = [r[0] for r in conn.execute("select version from demo.applied_order order by seq")]
        members = conn.execute(
            "select name, demo.rush_pct(1, 3)::text from demo.members order by name"
        ).fetchall()
        assert members == [("Alice", "33.3"), ("Bob; the builder", "33.3")]
        comment = conn.execute("select col_description('demo.members'::regclass, 3)").fetchone()
    assert order == OK_VERSIONS
    assert comment == ("Trophies (100% of them); text with ; and $$ inside",)
    rows = applied_migrations(fresh_db_url)
    assert [(r["version"], r["name"]) for r in rows] == [
        ("202601010900", "create_demo"),
        ("202601021200", "add_trophies"),
        ("202601031530", "seed_function"),
    ]
    assert all(r["execution_ms"] >= 0 and r["applied_at"] is not None for r in rows)
    assert [r["checksum"] for r in rows] == [m.checksum for m in discover(OK)]


def test_second_run_is_a_no_op(fresh_db_url):
    migrate(fresh_db_url, OK)
    before = _snapshot(fresh_db_url)

    result = migrate(fresh_db_url, OK)

    assert result.applied == []
    assert result.already_applied == OK_VERSIONS
    assert _snapshot(fresh_db_url) == before


def test_new_migrations_are_applied_on_top(fresh_db_url, tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    shutil.copy(OK / "202601010900__create_demo.sql", folder)
    assert migrate(fresh_db_url, folder).applied == ["202601010900"]
    for path in discover(OK)[1:]:
        shutil.copy(path.path, folder)

    result = migrate(fresh_db_url, folder)

    assert result.applied == OK_VERSIONS[1:]
    assert result.already_applied == OK_VERSIONS[:1]


def test_accepts_a_connection_and_leaves_it_idle(fresh_db_url):
    with psycopg.connect(fresh_db_url) as conn:
        result = migrate(conn, OK)
        assert result.applied == OK_VERSIONS
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert len(applied_migrations(conn)) == 3
        conn.execute("select 1")  # now inside a transaction
        with pytest.raises(MigrationError, match="outside a transaction"):
            migrate(conn, OK)


def test_applied_migrations_of_a_never_migrated_database(fresh_db_url):
    assert applied_migrations(fresh_db_url) == []


# -- refusals --------------------------------------------------------------------------


def test_edited_migration_is_refused_and_nothing_changes(fresh_db_url, tmp_path):
    folder = _copy(OK, tmp_path)
    migrate(fresh_db_url, folder)
    before = _snapshot(fresh_db_url)
    edited = folder / "202601021200__add_trophies.sql"
    edited.write_text(edited.read_text() + "\nalter table demo.members add column sneaky int;\n")
    (folder / "202601040000__later.sql").write_text("create table demo.later (id int);")

    with pytest.raises(MigrationError) as excinfo:
        migrate(fresh_db_url, folder)

    message = excinfo.value.message
    assert "202601021200__add_trophies.sql was changed after it was applied" in message
    assert "checksum" in message
    assert "add a new migration instead" in (excinfo.value.hint or "")
    assert _snapshot(fresh_db_url) == before
    assert "later" not in _tables(fresh_db_url)


def test_applied_migration_missing_from_disk_is_refused(fresh_db_url, tmp_path):
    folder = _copy(OK, tmp_path)
    migrate(fresh_db_url, folder)
    (folder / "202601031530__seed_function.sql").unlink()

    with pytest.raises(MigrationError, match="202601031530__seed_function.sql was applied"):
        migrate(fresh_db_url, folder)


def test_failing_migration_rolls_back_and_keeps_earlier_ones(fresh_db_url):
    with pytest.raises(MigrationError) as excinfo:
        migrate(fresh_db_url, FAILING)

    message = excinfo.value.message
    assert "202601020900__broken.sql failed" in message
    assert 'syntax error at or near "selec"' in message
    assert "line 3" in message
    assert [r["version"] for r in applied_migrations(fresh_db_url)] == ["202601010900"]
    assert _tables(fresh_db_url) == {"first"}  # neither "second" nor "third"
    with connect(fresh_db_url) as conn:
        assert conn.execute("select count(*) from demo.first").fetchone() == (0,)


def test_error_inside_a_do_block_names_the_context(fresh_db_url, tmp_path):
    (tmp_path / "202601010900__raises.sql").write_text(
        "do $$\nbegin\n    raise exception 'boom %', 42;\nend\n$$;\n"
    )
    with pytest.raises(MigrationError, match=r"202601010900__raises.sql failed: boom 42.*PL/pgSQL"):
        migrate(fresh_db_url, tmp_path)
    assert applied_migrations(fresh_db_url) == []


def test_migration_that_commits_itself_is_refused(fresh_db_url, tmp_path):
    (tmp_path / "202601010900__commits.sql").write_text(
        "create table public.t (id int);\ncommit;\n"
    )
    with pytest.raises(MigrationError, match="ended the transaction itself"):
        migrate(fresh_db_url, tmp_path)
    assert applied_migrations(fresh_db_url) == []


def test_concurrent_runs_apply_each_migration_once(fresh_db_url, tmp_path):
    folder = _copy(OK, tmp_path)
    (folder / "202601040000__slow.sql").write_text(
        "select pg_sleep(0.3);\ninsert into demo.applied_order (version) values ('202601040000');"
    )
    results: list[MigrationResult] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(migrate(fresh_db_url, folder))
        except Exception as exc:  # noqa: BLE001 (reported by the assertion below)
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    applied = sorted(v for r in results for v in r.applied)
    assert applied == [*OK_VERSIONS, "202601040000"]
    with connect(fresh_db_url) as conn:
        assert conn.execute("select count(*) from demo.applied_order").fetchone() == (4,)


# -- the real migrations -------------------------------------------------------------


def _real_migrations() -> list:
    try:
        return discover(migrations_dir())
    except MigrationError:
        return []


@pytest.mark.skipif(not _real_migrations(), reason="no supabase/migrations/*.sql yet")
def test_real_migrations_apply_twice(migrated_db_url):
    versions = [m.version for m in _real_migrations()]
    assert [r["version"] for r in applied_migrations(migrated_db_url)] == versions

    result = migrate(migrated_db_url)

    assert result.applied == []
    assert result.already_applied == versions
    assert schema_version() == versions[-1]
    with connect(migrated_db_url) as conn:
        schemas = {r[0] for r in conn.execute("select nspname from pg_namespace")}
    assert {"raw", "ops"} <= schemas


@pytest.mark.skipif(not _real_migrations(), reason="no supabase/migrations/*.sql yet")
def test_real_migrations_apply_in_a_second_database_of_the_same_server(migrated_db_url, pg_server):
    # Roles are cluster-wide: the second database finds them already created.
    name = "t_second_" + migrated_db_url.rsplit("/", 1)[-1][-8:]
    url = pg_server.create_database(name)
    try:
        assert migrate(url).applied == [m.version for m in _real_migrations()]
    finally:
        pg_server.drop_database(name)
