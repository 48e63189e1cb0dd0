"""Issue 13: dbt for analysts without traps.

* ``clash-pipeline db env`` prints exports that plain dbt and psql (libpq) use as they are;
* ``clash-pipeline dbt ARGS`` runs dbt on the pipeline's database; the commands that
  write (build, run, seed, snapshot) wait for the warehouse lock, build inside a restore
  point and publish; SIGTERM leaves no dbt session, no lock and nothing half-built;
* a plain ``dbt run`` from a shell is refused by the project's on-run-start hook
  (``macros/warehouse_guard.sql``), and changes nothing, because a lock taken in that hook
  would not last (proved here with ``pg_locks``);
* ``on_schema_change`` is ``fail`` for every incremental model, and the failure names the
  command that rebuilds the mart; after that rebuild and after reverting, no stale column.

One database (the real samples landed) and one copy of the dbt project (``CLASH_PROJECT_DIR``)
serve the module: ``capital_raid_seasons`` (an incremental mart over one staging view) is
the mart the tests change, ``zz_sleep`` a model that runs until it is stopped.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from clash_pipeline import project
from clash_pipeline.cli.db import export_line
from clash_pipeline.errors import ClashPipelineError
from clash_pipeline.warehouse.access import TRANSFORM, with_role
from clash_pipeline.warehouse.locks import WAREHOUSE_LOCK_KEY, AdvisoryLock
from clash_pipeline.warehouse.migrations import migrate
from tests.plugins.dbt_fixtures import land_samples

REPO = Path(__file__).resolve().parents[1]
MART = "capital_raid_seasons"
SLEEP_MODEL = """{{ config(materialized='table') }}
select 1 as id from (select pg_sleep(600)) as slept
"""
GUARD_MESSAGE = "plain `dbt run` would write marts_build outside"
DBT_BIN = Path(sys.executable).parent / "dbt"


@dataclass(frozen=True)
class Analyst:
    url: str  # the superuser URL of the module's database (DATABASE_URL)
    project: Path
    home: Path

    @property
    def transform_url(self) -> str:
        return with_role(self.url, TRANSFORM)

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("COC_", "DATABASE_URL", "PG", "CLASH_DB", "DBT_"))
        }
        return env | {
            "DATABASE_URL": self.url,
            "CLASH_PIPELINE_HOME": str(self.home),
            "CLASH_PROJECT_DIR": str(self.project),
            **extra,
        }

    def cli(self, *args: str, **popen: Any) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "clash_pipeline.cli", *args],
            env=self.env(),
            text=True,
            **popen,
        )

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "clash_pipeline.cli", *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            return conn.execute(sql, params).fetchall()

    def columns(self, schema: str, table: str) -> list[str]:
        return [
            r[0]
            for r in self.query(
                "select column_name from information_schema.columns"
                " where table_schema = %s and table_name = %s order by ordinal_position",
                schema,
                table,
            )
        ]


def copy_project(root: Path) -> Path:
    for name in ("models", "macros", "seeds", "snapshots"):
        shutil.copytree(REPO / name, root / name)
    shutil.copytree(REPO / "tests" / "dbt", root / "tests" / "dbt")
    shutil.copytree(REPO / "supabase", root / "supabase")
    for name in ("dbt_project.yml", "profiles.yml.example"):
        shutil.copy2(REPO / name, root / name)
    (root / "models" / "marts" / "zz_sleep.sql").write_text(SLEEP_MODEL)
    return root


@pytest.fixture(scope="module")
def analyst(pg_server: Any, samples_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """The samples landed, ``capital_raid_seasons`` built and published (as the pipeline
    would: ``run_published`` as clash_transform, in-process)."""
    name = f"t_analysts_{uuid.uuid4().hex[:8]}"
    url = pg_server.create_database(name)
    root = copy_project(tmp_path_factory.mktemp("analyst-project"))
    found = Analyst(url=url, project=root, home=tmp_path_factory.mktemp("analyst-home"))
    try:
        migrate(url)
        land_samples(url, samples_dir)
        with in_project(root):
            from clash_pipeline.cli.build import run_published

            result, report = run_published(
                found.transform_url,
                found.home,
                ["run", "--select", f"+{MART}", "+capital_raid_members"],
                scope="incremental",
            )
        assert report is not None, result.error_summary
        yield found
    finally:
        pg_server.drop_database(name)


@pytest.fixture
def in_copy(analyst: Analyst) -> Iterator[Analyst]:
    with in_project(analyst.project):
        yield analyst


class in_project:  # noqa: N801 - used as a context manager
    """``CLASH_PROJECT_DIR`` at ``root`` for in-process calls (project_dir() is cached)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.saved: str | None = None

    def __enter__(self) -> None:
        self.saved = os.environ.get(project.PROJECT_DIR_VARIABLE)
        os.environ[project.PROJECT_DIR_VARIABLE] = str(self.root)
        project.project_dir.cache_clear()

    def __exit__(self, *exc: object) -> None:
        if self.saved is None:
            os.environ.pop(project.PROJECT_DIR_VARIABLE, None)
        else:
            os.environ[project.PROJECT_DIR_VARIABLE] = self.saved
        project.project_dir.cache_clear()


def published_count(analyst: Analyst, schema: str) -> int:
    return int(analyst.query(f"select count(*) from {schema}.{MART}")[0][0])


def lock_holders(analyst: Analyst) -> list[str]:
    """application_name of the sessions holding the warehouse lock."""
    classid, objid = (k & 0xFFFFFFFF for k in WAREHOUSE_LOCK_KEY)
    rows = analyst.query(
        "select a.application_name from pg_locks l join pg_stat_activity a using (pid)"
        " where l.locktype = 'advisory' and l.classid = %s and l.objid = %s"
        " and l.objsubid = 2 and l.granted",
        classid,
        objid,
    )
    return [r[0] for r in rows]


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


# ---------------------------------------------------------------------------- db env


@pytest.mark.parametrize("value", ["plain", 'it\'s $HOME `x` \\ "q" a b', ""])
def test_export_line_survives_sh_quoting(value: str) -> None:
    line = export_line("CLASH_PROBE", value)
    out = subprocess.run(
        ["sh", "-c", f'{line}\nprintf %s "$CLASH_PROBE"'], capture_output=True, text=True
    )
    assert out.stdout == value
    assert subprocess.run(["sh", "-c", "unset X; " + export_line("X", None)]).returncode == 0


def test_export_line_for_fish() -> None:
    assert export_line("A", "it's \\", "fish") == "set -gx A 'it\\'s \\\\'"
    assert export_line("A", None, "fish") == "set -e A"
    if shutil.which("fish"):
        line = export_line("A", "it's \\ $x", "fish")
        out = subprocess.run(["fish", "-c", f"{line}; printf %s $A"], capture_output=True)
        assert out.stdout.decode() == "it's \\ $x"


def test_db_env_connects_psql_and_dbt_as_the_transform_login(analyst: Analyst) -> None:
    """eval "$(clash-pipeline db env)": libpq (psql) and plain `dbt debug` connect as the
    pipeline's dbt login to the pipeline's database."""
    env_out = analyst.run("db", "env")
    assert env_out.returncode == 0, env_out.stderr
    params = conninfo_to_dict(analyst.url)
    probe = (
        "import psycopg; c = psycopg.connect('');"
        "print(c.execute('select current_user, current_database()').fetchone())"
    )
    script = (
        f'eval "$ENV_OUT"\n{sys.executable} -c "{probe}"\n'
        'printf "%s|%s|%s|%s\\n" "$CLASH_DB_PORT" "$CLASH_DB_NAME" "$PGPORT" "$DBT_PROFILES_DIR"\n'
        f"{DBT_BIN} debug"
    )
    env = analyst.env(ENV_OUT=env_out.stdout)
    env.pop("DATABASE_URL")  # plain tools: only what db env exported
    shell = subprocess.run(
        ["sh", "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    lines = shell.stdout.splitlines()
    assert lines[0] == f"('{TRANSFORM}', '{params['dbname']}')"
    port, dbname, pgport, profiles = lines[1].split("|")
    assert (port, dbname, pgport) == (params["port"], params["dbname"], params["port"])
    assert Path(profiles, "profiles.yml").is_file()
    assert "All checks passed!" in shell.stdout, shell.stdout[-2000:]
    assert shell.returncode == 0


def test_db_env_rejects_a_bad_login(analyst: Analyst) -> None:
    result = analyst.run("db", "env", "--login", "root")
    assert result.returncode == 2
    assert "invalid --login 'root'" in result.stderr and "hint:" in result.stderr


def test_clash_pipeline_dbt_without_a_command(tmp_path: Path) -> None:
    """No arguments: an error with an example; ``--version``: dbt's answer, no database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATABASE_URL")}
    env["CLASH_PIPELINE_HOME"] = str(tmp_path)
    cli = [sys.executable, "-m", "clash_pipeline.cli", "dbt"]
    empty = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=120)
    assert empty.returncode == 2
    assert "no dbt command given" in empty.stderr and "clash-pipeline dbt debug" in empty.stderr
    version = subprocess.run(
        [*cli, "--version"], env=env, capture_output=True, text=True, timeout=120
    )
    assert version.returncode == 0 and "installed:" in version.stdout
    assert not (tmp_path / "pgdata").exists()  # no embedded database was started


# ------------------------------------------------------------------- the warehouse lock


def test_a_session_lock_from_on_run_start_is_gone_before_the_models(
    analyst: Analyst, tmp_path: Path
) -> None:
    """Why the guard refuses instead of locking: dbt closes the hook's connection."""
    root = tmp_path / "probe"
    (root / "models").mkdir(parents=True)
    (root / "dbt_project.yml").write_text(
        "name: probe\nversion: '1.0.0'\nconfig-version: 2\nprofile: clash_pipeline\n"
        'on-run-start: ["select pg_advisory_lock(4242, 1)"]\n'
    )
    (root / "models" / "lock_seen.sql").write_text(
        "{{ config(materialized='table') }}\n"
        "select count(*) as held from pg_locks where locktype = 'advisory'"
        " and classid = 4242 and objid = 1 and objsubid = 2 and granted\n"
    )
    shutil.copy2(REPO / "profiles.yml.example", root / "profiles.yml.example")
    from clash_pipeline.transform.dbt import run_dbt

    result = run_dbt(["run"], db_url=analyst.transform_url, home=tmp_path, project_dir=root)
    assert result.success, result.error_summary
    assert analyst.query("select held from analytics.lock_seen") == [(0,)]


def test_plain_dbt_run_is_refused_and_changes_nothing(analyst: Analyst) -> None:
    """While a pipeline build holds the lock: plain `dbt run` (db env's exports) fails
    with the message, before any model; the mart is as before."""
    env_out = analyst.run("db", "env")
    before = analyst.query(f"select max(fetched_at), count(*) from marts_build.{MART}")
    env = analyst.env(ENV_OUT=env_out.stdout)
    env.pop("DATABASE_URL")
    with AdvisoryLock(analyst.url, WAREHOUSE_LOCK_KEY, name="pipeline") as lock:
        assert lock.acquire()
        plain = subprocess.run(
            ["sh", "-c", f'eval "$ENV_OUT"; {DBT_BIN} run --select {MART} zz_sleep'],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    output = plain.stdout + plain.stderr
    assert plain.returncode != 0
    assert "a pipeline run is building the warehouse right now" in output
    assert GUARD_MESSAGE in output
    assert "uv run clash-pipeline dbt run ..." in output
    assert "START sql" not in output  # no model started
    assert analyst.query(f"select max(fetched_at), count(*) from marts_build.{MART}") == before
    assert analyst.query("select to_regclass('marts_build.zz_sleep')") == [(None,)]


def test_clash_pipeline_dbt_waits_for_the_lock_then_publishes(analyst: Analyst) -> None:
    """`clash-pipeline dbt run` while a pipeline build holds the lock: it waits (and
    says so), builds nothing meanwhile, then runs and publishes."""
    builds = "select count(*), max(started_at) from ops.transform_builds"
    [(before, _)] = analyst.query(builds)
    lock = AdvisoryLock(analyst.url, WAREHOUSE_LOCK_KEY, name="pipeline")
    assert lock.acquire()
    stderr = analyst.home / "wait.err"
    with stderr.open("w") as err_file:
        proc = analyst.cli("dbt", "run", "--select", MART, stdout=subprocess.PIPE, stderr=err_file)
        try:
            wait_for(lambda: "waiting for it" in stderr.read_text(), 180, "the wait message")
            assert "a pipeline run is building the warehouse" in stderr.read_text()
            assert analyst.query(builds)[0][0] == before  # no restore point opened yet
            lock.release()
            out, _ = proc.communicate(timeout=300)
        finally:
            lock.release()
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, stderr.read_text()[-2000:]
    assert "published to marts" in out
    assert "1 of 1 OK created sql incremental model marts_build.capital_raid_seasons" in out
    [(after, last)] = analyst.query(builds)
    assert after == before + 1
    assert analyst.query("select status from ops.transform_builds where started_at = %s", last) == [
        ("published",)
    ]
    assert published_count(analyst, "marts") == published_count(analyst, "marts_build") > 0


def test_sigterm_stops_clash_pipeline_dbt_cleanly(analyst: Analyst) -> None:
    """A `clash-pipeline dbt run` holds the lock: the pipeline's transform cannot take it
    (fails cleanly); SIGTERM then ends dbt's session, the lock and the build."""
    from clash_pipeline.orchestration.phases.locks import take_warehouse_lock, warehouse_lock

    proc = analyst.cli(
        "dbt", "run", "--select", "zz_sleep", stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        wait_for(
            lambda: (
                analyst.query(
                    "select count(*) from pg_stat_activity"
                    " where application_name like 'clash-pipeline dbt %%'"
                    " and query like '%%pg_sleep(600)%%'"
                )[0][0]
                > 0
            ),
            240,
            "zz_sleep to run",
        )
        assert lock_holders(analyst) == ["clash-pipeline build"]
        ctx = SimpleNamespace(
            db_url=analyst.url, options=SimpleNamespace(warehouse_lock_timeout_seconds=1.0)
        )
        pipeline_lock = warehouse_lock(ctx)  # type: ignore[arg-type]
        with pytest.raises(ClashPipelineError, match="another dbt build held the warehouse"):
            take_warehouse_lock(pipeline_lock, ctx)  # type: ignore[arg-type]
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert "cancelled by SIGTERM" in err
    assert "Traceback" not in err
    wait_for(
        lambda: (
            analyst.query(
                "select count(*) from pg_stat_activity"
                " where application_name like 'clash-pipeline%%'"
            )[0][0]
            == 0
        ),
        15,
        "dbt's and the lock's sessions to end",
    )
    assert lock_holders(analyst) == []
    assert analyst.query(
        "select status from ops.transform_builds order by started_at desc limit 1"
    ) == [("rolled_back",)]
    assert analyst.query("select to_regclass('marts_build.zz_sleep')") == [(None,)]


# -------------------------------------------------------------------- on_schema_change


def test_every_incremental_model_fails_on_schema_change(analyst: Analyst) -> None:
    import json

    manifest = json.loads((analyst.home / "dbt" / "target" / "manifest.json").read_text())
    incremental = {
        node["name"]: node["config"].get("on_schema_change")
        for node in manifest["nodes"].values()
        if node["resource_type"] == "model" and node["config"]["materialized"] == "incremental"
    }
    assert MART in incremental and len(incremental) > 10
    assert {name: p for name, p in incremental.items() if p != "fail"} == {}


def add_probe_column(project_dir: Path) -> None:
    sql = project_dir / "models" / "marts" / "core" / f"{MART}.sql"
    text = sql.read_text().replace("select * from final", "select *, 7 as probe from final")
    sql.write_text(text)
    yml = project_dir / "models" / "marts" / "core" / "_core__wars.yml"
    text = yml.read_text()
    at = text.index("    columns:\n", text.index(f"  - name: {MART}\n")) + len("    columns:\n")
    column = "      - name: probe\n        description: a test column\n        data_type: integer\n"
    yml.write_text(text[:at] + column + text[at:])


def test_changing_a_mart_says_what_to_run_and_leaves_no_stale_column(in_copy: Analyst) -> None:
    """Add a column: the incremental run fails with the command (marts untouched); that
    command gives every row the column; revert: same message, rebuild, no stale column."""
    from clash_pipeline.cli.build import run_build, run_published

    analyst = in_copy
    core = analyst.project / "models" / "marts" / "core"
    originals = {p: p.read_text() for p in core.glob("*")}
    rows = published_count(analyst, "marts")
    command = f"clash-pipeline build --full-refresh --select {MART}"
    try:
        add_probe_column(analyst.project)
        failed = analyst.run("dbt", "run", "--select", MART)
        assert failed.returncode == 1
        assert f"the columns of {MART} changed (added: probe): run `uv run {command}`" in (
            failed.stdout
        )
        assert "rolled back, the marts are as before" in failed.stderr
        assert "probe" not in analyst.columns("marts", MART)
        assert "probe" not in analyst.columns("marts_build", MART)

        assert run_build(analyst.transform_url, analyst.home, full_refresh=True, select=[MART])
        for schema in ("marts", "marts_build"):
            assert analyst.query(f"select probe, count(*) from {schema}.{MART} group by 1") == [
                (7, rows)
            ]
    finally:
        for path, text in originals.items():
            path.write_text(text)
    result, report = run_published(
        analyst.transform_url, analyst.home, ["run", "--select", MART], scope="incremental"
    )
    assert report is None
    assert f"the columns of {MART} changed (removed: probe)" in (result.result.error_summary or "")
    assert "probe" in analyst.columns("marts", MART)  # rolled back, still published as was
    assert run_build(analyst.transform_url, analyst.home, full_refresh=True, select=[MART])
    for schema in ("marts", "marts_build"):
        assert "probe" not in analyst.columns(schema, MART)
        assert published_count(analyst, schema) == rows
