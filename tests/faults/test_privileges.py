"""Issue 12, point 9: least privilege.

No job connects as a superuser; each job's role can do its job and no more; the
API's connection cannot write even after ``RESET ROLE``. Checked with the
embedded PostgreSQL (real logins, created at init and on upgrade of an older
home) and with a plain ``DATABASE_URL`` (the jobs switch roles from its user;
the API uses its own read-only login, ``API_DATABASE_URL``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import errors, sql

from clash_pipeline.errors import DatabaseError
from clash_pipeline.settings import load_settings
from clash_pipeline.warehouse.access import (
    INGEST,
    LOGINS,
    OWNER,
    READONLY,
    TRANSFORM,
    DatabaseAccess,
    resolve_access,
    with_role,
)
from clash_pipeline.warehouse.connect import connect
from clash_pipeline.warehouse.embedded import SUPERUSER, EmbeddedPostgres
from clash_pipeline.warehouse.migrations import migrate
from tests.plugins.db_fixtures import TEST_SERVER_SETTINGS
from tests.plugins.prefect_fixtures import PIPELINE_CLAN

# What a connection must not be able to do, whatever its role was switched to.
WRITES = (
    "insert into ops.alerts (check_name, summary) values ('x', 'y')",
    "update ops.ingest_runs set error = null",
    "delete from ops.schema_migrations",
    "insert into marts.privileges_probe values (2)",
    "delete from marts.privileges_probe",
    "create table marts.sneaky (x int)",
    "create table ops.sneaky (x int)",
    "create schema sneaky",
    "drop table marts.privileges_probe",
    "drop table ops.alerts",
)

PAYLOAD = "insert into raw.payloads (payload_hash, body, byte_size) values (%s, '{}', 2)"


@pytest.fixture(scope="module")
def embedded_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    """A new embedded home: logins created at init, migrated by the owner login."""
    embedded = EmbeddedPostgres(
        tmp_path_factory.mktemp("roles-home"),
        server_settings={**TEST_SERVER_SETTINGS, "log_connections": "on"},
    )
    embedded.start()
    migrate(embedded.login_urls()["owner"])
    _make_probe(embedded.login_urls()["transform"])
    try:
        yield embedded
    finally:
        embedded.stop()


def _make_probe(transform_url: str) -> None:
    """A marts table made by the transform job (as dbt makes them)."""
    with psycopg.connect(transform_url, autocommit=True) as conn:
        conn.execute("create table if not exists marts.privileges_probe (x int)")
        conn.execute("insert into marts.privileges_probe values (1)")


@pytest.fixture
def url_access(migrated_db_url: str) -> Iterator[DatabaseAccess]:
    """A plain DATABASE_URL (the tests' superuser) with a read-only API login of its own."""
    login = f"t_api_{uuid.uuid4().hex[:8]}"
    password = uuid.uuid4().hex
    with psycopg.connect(migrated_db_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("create role {} login password {}").format(
                sql.Identifier(login), sql.Literal(password)
            )
        )
        conn.execute(sql.SQL("grant clash_readonly to {}").format(sql.Identifier(login)))
    parts = migrated_db_url.split("@", 1)[1]
    api_url = f"postgresql://{login}:{password}@{parts}"
    access = resolve_access(load_settings(database_url=migrated_db_url, api_database_url=api_url))
    _make_probe(access.transform)
    yield access
    with psycopg.connect(migrated_db_url, autocommit=True) as conn:
        conn.execute(sql.SQL("drop owned by {}").format(sql.Identifier(login)))
        conn.execute(sql.SQL("drop role {}").format(sql.Identifier(login)))


@pytest.fixture(params=["embedded", "url"])
def access(request: pytest.FixtureRequest, embedded_home: EmbeddedPostgres) -> DatabaseAccess:
    if request.param == "embedded":
        return resolve_access(load_settings(clash_pipeline_home=embedded_home.home))
    return request.getfixturevalue("url_access")


def _run(url: str, statement: str, params: tuple[object, ...] = (), *, reset: bool = False) -> None:
    with psycopg.connect(url) as conn:
        if reset:
            conn.execute("reset role")
        conn.execute(statement, params)
        conn.rollback()


def _denied(url: str, statement: str, params: tuple[object, ...] = ()) -> bool:
    try:
        _run(url, statement, params)
    except errors.InsufficientPrivilege:
        return True
    return False


# ------------------------------------------------------------------------- the API


def test_the_api_connection_cannot_write_even_after_reset_role(access):
    from clash_pipeline.serving.queries import Warehouse

    assert access.readonly_is_login
    warehouse = Warehouse(access.readonly, max_size=1)
    warehouse.pool.open(wait=True)
    try:
        with warehouse.pool.connection() as conn:
            # undo everything the pool set up: role and read-only transactions
            conn.execute("reset role")
            conn.execute("reset all")
            assert conn.execute("select current_user = session_user").fetchone() == (True,)
            assert conn.execute("select count(*) from marts.privileges_probe").fetchone() == (1,)
            for statement in WRITES:
                with pytest.raises(errors.InsufficientPrivilege):
                    with conn.transaction():
                        conn.execute(statement)
            with pytest.raises(errors.InsufficientPrivilege):
                with conn.transaction():
                    conn.execute(f"set role {TRANSFORM}")
    finally:
        warehouse.close()


def test_without_api_database_url_the_api_role_is_switched_and_says_so(migrated_db_url):
    access = resolve_access(load_settings(database_url=migrated_db_url))
    assert not access.readonly_is_login
    with psycopg.connect(access.readonly) as conn:
        assert conn.execute("select current_user").fetchone() == (READONLY,)


# ------------------------------------------------------------------------ the jobs


def test_no_job_login_is_a_superuser(embedded_home, url_access):
    embedded = resolve_access(load_settings(clash_pipeline_home=embedded_home.home))
    for access in (embedded, url_access):
        for job, role in LOGINS.items():
            if access is url_access and job == "owner":
                continue  # the tests' DATABASE_URL is a superuser (warned about, see below)
            with psycopg.connect(access.url(job)) as conn:
                user, superuser, createrole, createdb = conn.execute(
                    "select current_user, rolsuper, rolcreaterole, rolcreatedb"
                    " from pg_roles where rolname = current_user"
                ).fetchone()
            assert (superuser, createrole, createdb) == (False, False, False), job
            if access is embedded or job != "readonly":  # url: the API's own login
                assert user == role, job
    with psycopg.connect(embedded_home.login_urls()["owner"]) as conn:
        rows = conn.execute(
            "select rolname, rolsuper, rolcanlogin from pg_roles"
            " where rolname = any(%s) order by 1",
            (list(LOGINS.values()),),
        ).fetchall()
        owner = conn.execute(
            "select pg_get_userbyid(datdba) from pg_database where datname = current_database()"
        ).fetchone()
    assert rows == [(role, False, True) for role in sorted(LOGINS.values())]
    assert owner == (OWNER,)


def test_ingest_lands_but_cannot_touch_marts_or_delete_raw(access):
    url = access.ingest
    _run(url, PAYLOAD, ("a" * 64,))
    _run(url, "insert into ops.alerts (check_name, summary) values ('x', 'y')")
    _run(url, "update ops.ingest_runs set error = null")
    _run(url, "select count(*) from marts.privileges_probe")  # the monitor reads the marts
    for statement in (
        "delete from raw.payloads",
        "update raw.fetch_log set clan_tag = null",
        "truncate raw.payloads",
        "insert into marts.privileges_probe values (2)",
        "delete from marts.privileges_probe",
        "drop table marts.privileges_probe",
        "create table marts.sneaky (x int)",
        "create schema sneaky",
        "delete from ops.transform_builds",  # the transform job's restore points
    ):
        assert _denied(url, statement), statement


def test_transform_builds_reads_raw_and_cannot_write_raw(access):
    url = access.transform
    schema = f"t_build_{uuid.uuid4().hex[:8]}"
    _run(url, "select count(*) from raw.fetch_log")
    _run(url, "select count(*) from ops.ingest_runs")
    _run(url, "insert into marts.privileges_probe values (2)")  # owns the marts
    _run(url, "create table marts.t_new as select 1 as x")
    _run(url, f"create schema {schema}; create table {schema}.m (x int)")  # dbt's schemas
    _run(
        url,
        "insert into ops.transform_builds (build_id, scope, project_hash)"
        " values (gen_random_uuid(), 'full', 'h')",
    )
    _run(url, "create table ops_restore.copy as select 1 as x")
    for statement in (
        PAYLOAD,
        "delete from raw.fetch_log",
        "update ops.ingest_runs set error = null",
        "insert into ops.alerts (check_name, summary) values ('x', 'y')",
        "drop table raw.payloads",
    ):
        params = ("b" * 64,) if statement == PAYLOAD else ()
        assert _denied(url, statement, params), statement


def test_readonly_reads_marts_and_ops_only(access):
    url = access.readonly
    _run(url, "select count(*) from ops.ingest_runs")
    _run(url, "select count(*) from marts.privileges_probe")
    assert _denied(url, "select count(*) from raw.payloads")
    for statement in WRITES:
        assert _denied(url, statement), statement


def test_tables_the_transform_job_makes_in_marts_are_readable_by_readers(access):
    """Default privileges: a table made outside dbt's grants (e.g. a published copy)."""
    name = f"published_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(access.transform, autocommit=True) as conn:
        conn.execute(f"create table marts.{name} as select 1 as x")
    try:
        _run(access.readonly, f"select x from marts.{name}")
        _run(access.ingest, f"select x from marts.{name}")
    finally:
        with psycopg.connect(access.transform, autocommit=True) as conn:
            conn.execute(f"drop table marts.{name}")


def test_a_login_without_the_job_role_gets_a_clear_error(url_access):
    login_url = url_access.readonly  # the API login: not a member of clash_transform
    with pytest.raises(DatabaseError) as caught:
        connect(with_role(login_url, TRANSFORM)).close()
    assert "permission denied to set role" in caught.value.message
    assert "grant clash_ingest, clash_transform" in (caught.value.hint or "")


def test_a_superuser_database_url_is_warned_about_once(migrated_db_url, caplog, monkeypatch):
    from clash_pipeline.cli import common
    from clash_pipeline.warehouse import access as access_module

    monkeypatch.setattr(access_module, "_warned", set())
    settings = load_settings(database_url=migrated_db_url)
    with caplog.at_level(logging.WARNING, logger="clash_pipeline.warehouse.access"):
        common.prepare_access(settings)
        common.prepare_access(settings)
    warnings = [r for r in caplog.records if "is a superuser" in r.getMessage()]
    assert len(warnings) == 1


# ------------------------------------------------------------------ embedded state


def test_the_state_file_keeps_the_logins_passwords_private(embedded_home):
    state = json.loads(embedded_home.state_file.read_text())
    assert stat.S_IMODE(os.stat(embedded_home.state_file).st_mode) == 0o600
    assert set(state["logins"]) == set(LOGINS) and state["logins_ready"] is True
    assert len(set(state["logins"].values()) | {state["password"]}) == len(LOGINS) + 1


def test_db_status_and_url_say_which_login_is_which(embedded_home, monkeypatch):
    from typer.testing import CliRunner

    from clash_pipeline.cli import app

    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("CLASH_PIPELINE_HOME", str(embedded_home.home))
    status = CliRunner().invoke(app, ["db", "status"])
    assert status.exit_code == 0, status.output
    for job, role in LOGINS.items():
        assert f"login {job}: {role}" in status.output
    assert f"bootstrap superuser: {SUPERUSER}" in status.output
    state = json.loads(embedded_home.state_file.read_text())
    assert not any(p in status.output for p in [state["password"], *state["logins"].values()])
    url = CliRunner().invoke(app, ["db", "url", "--login", "readonly"])
    assert url.output.startswith(f"postgresql://{READONLY}:{state['logins']['readonly']}@")
    owner = CliRunner().invoke(app, ["db", "url"])
    assert owner.output.startswith(f"postgresql://{OWNER}:")
    bad = CliRunner().invoke(app, ["db", "url", "--login", "root"])
    assert bad.exit_code != 0


def _make_it_an_old_home(embedded: EmbeddedPostgres) -> None:
    """What a home made before the logins looks like: everything owned by the bootstrap
    superuser, which the pipeline used for every job; a state file without logins."""
    superuser_url = embedded.url()
    with psycopg.connect(superuser_url, autocommit=True) as conn:
        conn.execute(f"alter database clash owner to {SUPERUSER}")
        conn.execute(f"reassign owned by {OWNER}, {TRANSFORM} to {SUPERUSER}")
        conn.execute(f"revoke {INGEST}, {TRANSFORM}, {READONLY} from {OWNER}")
        conn.execute(f"drop role {OWNER}")
        for role in (INGEST, TRANSFORM, READONLY):
            conn.execute(f"alter role {role} nologin password null")
    state = json.loads(embedded.state_file.read_text())
    for key in ("logins", "logins_ready"):
        del state[key]
    state["version"] = 1
    embedded.state_file.write_text(json.dumps(state))
    embedded.state_file.chmod(0o600)


def test_an_older_home_gets_its_logins_and_hands_over_its_objects(tmp_path):
    embedded = EmbeddedPostgres(tmp_path / "old-home", server_settings=TEST_SERVER_SETTINGS)
    try:
        embedded.start()
        # as before: the bootstrap superuser migrates and runs dbt
        migrate(embedded.url())
        with psycopg.connect(embedded.url(), autocommit=True) as conn:
            conn.execute("create schema staging")
            conn.execute("create view staging.v as select 1 as x")
            conn.execute("create table marts.roster as select 1 as x")
            conn.execute("grant select on marts.roster to clash_readonly")  # dbt's +grants
        _make_it_an_old_home(embedded)

        embedded.start()  # running server, state without logins: upgraded in place
        access = resolve_access(load_settings(clash_pipeline_home=embedded.home))
        assert json.loads(embedded.state_file.read_text())["logins_ready"] is True
        assert stat.S_IMODE(os.stat(embedded.state_file).st_mode) == 0o600
        with psycopg.connect(access.owner) as conn:
            owners = dict(
                conn.execute(
                    """
                    select n.nspname || '.' || c.relname, pg_get_userbyid(c.relowner)
                    from pg_class c join pg_namespace n on n.oid = c.relnamespace
                    where (n.nspname, c.relname) in (('raw', 'payloads'),
                        ('ops', 'ingest_runs'), ('marts', 'roster'), ('staging', 'v'))
                    """
                ).fetchall()
            )
            function_owner = conn.execute(
                "select pg_get_userbyid(proowner) from pg_proc"
                " where proname = 'capture_transform_undo'"
            ).fetchone()
            database_owner = conn.execute(
                "select pg_get_userbyid(datdba) from pg_database where datname = 'clash'"
            ).fetchone()
        assert owners == {
            "raw.payloads": OWNER,
            "ops.ingest_runs": OWNER,
            "marts.roster": TRANSFORM,
            "staging.v": TRANSFORM,
        }
        assert function_owner == (OWNER,)  # security definer: no longer the superuser
        assert database_owner == (OWNER,)
        migrate(access.owner)  # later migrations run as the owner
        _run(access.transform, "insert into marts.roster values (2)")
        _run(access.readonly, "select count(*) from marts.roster")
        assert _denied(access.readonly, "insert into marts.roster values (3)")
    finally:
        embedded.stop()


# ------------------------------------------------------------- end to end, embedded


def _connected_users(log_text: str) -> set[str]:
    return set(re.findall(r"connection authorized: user=(\S+)", log_text))


def test_a_simulated_run_uses_the_least_privilege_logins(
    embedded_home, prefect_harness, pipeline_project, monkeypatch
):
    from typer.testing import CliRunner

    from clash_pipeline.cli import app

    for name in [n for n in os.environ if n.endswith("DATABASE_URL")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("CLASH_PIPELINE_HOME", str(embedded_home.home))
    monkeypatch.setenv("CLASH_GX_DIR", str(pipeline_project / "gx"))
    monkeypatch.setenv("COC_REQUESTS_PER_SECOND", "200")
    offset = embedded_home.log_file.stat().st_size
    saved_environ = dict(os.environ)  # the command sets Prefect's defaults in os.environ
    try:
        result = CliRunner().invoke(
            app,
            ["run", "--simulate", "--clan", PIPELINE_CLAN, "--dbt-project", str(pipeline_project)],
        )
    finally:
        os.environ.clear()
        os.environ.update(saved_environ)
    assert result.exit_code == 0, (result.output, result.exception)
    log_text = embedded_home.log_file.read_bytes()[offset:].decode("utf-8", "replace")
    users = _connected_users(log_text)
    assert {INGEST, TRANSFORM} <= users
    assert users <= {OWNER, INGEST, TRANSFORM, READONLY}  # never the bootstrap superuser
    with psycopg.connect(embedded_home.login_urls()["readonly"]) as conn:
        owners = dict(
            conn.execute(
                "select tablename, tableowner from pg_tables where schemaname = 'marts'"
                " and tablename in ('members', 'roster')"
            ).fetchall()
        )
        members = conn.execute("select count(*) from marts.members").fetchone()
        # the monitor (as clash_ingest) ran its checks: marts and reference readable
        monitor = conn.execute(
            "select status, details ? 'anomaly_error', details ? 'anomalies'"
            " from ops.ingest_logs where phase = 'monitor' order by started_at desc limit 1"
        ).fetchone()
    assert owners == {"members": TRANSFORM, "roster": TRANSFORM}
    assert members is not None and members[0] > 0
    assert monitor == ("succeeded", False, True)
