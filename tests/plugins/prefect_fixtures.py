"""Prefect and the pipeline for tests: real Prefect, real dbt, real PostgreSQL.

* ``prefect_harness`` (session): one temporary Prefect server and database
  (``prefect_test_harness``) for every test that runs a flow.
* ``pipeline_project`` (session): a copy of the repository's dbt project with
  one extra model, ``marts/zz_pipeline_faults``, downstream of the member marts.
  It fails (``CLASH_TEST_FAULT=error``) or sleeps (``=sleep``) on demand, so
  tests can break a build after the marts before it were written, without
  touching the repository's models.
* ``pipeline_home`` (session): one ``CLASH_PIPELINE_HOME`` (dbt target and
  partial-parse state) shared by the pipeline tests, so dbt parses once.
* ``built_warehouse`` (session): a database with one good pipeline run of
  :data:`PIPELINE_CLAN` at :data:`PIPELINE_T0` (a full dbt build); tests clone it.
* ``warehouse``: a clone of ``built_warehouse`` (``create database ... template``),
  with the environment pointed at it (``DATABASE_URL``, ``CLASH_PIPELINE_HOME``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

PIPELINE_CLAN = "#2QG2C08UP"
PIPELINE_T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
PIPELINE_SEED = 7
PIPELINE_TOKEN = "pipeline-test-token"  # noqa: S105 - the simulator's own token
FAULT_ENV = "CLASH_TEST_FAULT"
FAULT_SECONDS_ENV = "CLASH_TEST_FAULT_SECONDS"
REPO = Path(__file__).resolve().parents[2]

_FAULT_MODEL = """\
{#- Test-only model (tests/plugins/prefect_fixtures.py): it runs after the
    member marts and fails or sleeps when CLASH_TEST_FAULT says so. -#}
{{ config(materialized='table', schema='test_faults') }}

{%- set fault = env_var('CLASH_TEST_FAULT', 'none') %}

select
    (select count(*) from {{ ref('members') }}) as members,
    (select count(*) from {{ ref('roster_snapshots') }}) as snapshots,
    (select count(*) from {{ ref('member_snapshot_stats') }}) as stats
{%- if fault == 'error' %},
    1 / 0 as injected_failure
{%- elif fault == 'sleep' %},
    (select count(*) from pg_sleep({{ env_var('CLASH_TEST_FAULT_SECONDS', '5') }}))
        as injected_sleep
{%- endif %}
"""


def pytest_configure(config: pytest.Config) -> None:
    # Before Prefect is imported: local, offline, and out of ~/.prefect.
    os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="prefect-home-"))
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    # A run of a deployment at its concurrency limit is retried after this many seconds
    # (30 by default): the fan-out test's third child run waits for a slot this long.
    os.environ.setdefault("PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS", "5")


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[str]:
    """A temporary Prefect server for the session; yields its API URL."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield str(PREFECT_API_URL.value())


@pytest.fixture(scope="session")
def pipeline_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository's dbt project plus the fault-injection model.

    ``CLASH_TEST_DBT_PROJECT`` names another project folder to copy instead
    (e.g. a snapshot of the models while they are being edited).
    """
    source = Path(os.environ.get("CLASH_TEST_DBT_PROJECT") or REPO)
    root = tmp_path_factory.mktemp("dbt-project")
    for name in ("models", "macros", "seeds", "snapshots", "analyses"):
        if (source / name).is_dir():
            shutil.copytree(source / name, root / name)
    if (source / "tests" / "dbt").is_dir():
        shutil.copytree(source / "tests" / "dbt", root / "tests" / "dbt")
    for name in ("dbt_project.yml", "profiles.yml.example", "packages.yml"):
        if (source / name).is_file():
            shutil.copy2(source / name, root / name)
    (root / "models" / "marts" / "zz_pipeline_faults.sql").write_text(_FAULT_MODEL)
    # the monitor's GX context, so that runs write their Data Docs here, not in the repo
    shutil.copytree(REPO / "gx", root / "gx", ignore=shutil.ignore_patterns("uncommitted"))
    return root


@pytest.fixture(scope="session")
def pipeline_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pipeline-home")


@dataclass
class BuiltWarehouse:
    name: str
    url: str
    report: Any


def pipeline_options(project: Path, **overrides: Any) -> Any:
    """Fast, test-friendly pipeline options (no waiting between retries)."""
    from clash_pipeline.orchestration.options import PipelineOptions

    values: dict[str, Any] = {
        "trigger": "test",
        "requests_per_second": 500,
        "max_concurrency": 16,
        "retry_delay_seconds": 0,
        "transform_retries": 0,
        "lock_timeout_seconds": 60,
        "dbt_project_dir": str(project),
    }
    values.update(overrides)
    return PipelineOptions(**values)


def run_pipeline(
    sim: Any, options: Any, clans: list[str] | None = None, *, single_clan_flow: bool = False
) -> Any:
    """One ``clash-ingest`` (or ``clash-ingest-clan``) flow run on the simulator; its report."""
    from clash_pipeline.orchestration.flows import ingest, ingest_clan
    from clash_pipeline.orchestration.model import IngestReport, RunsFailedError
    from clash_pipeline.orchestration.options import ApiSpec

    api = ApiSpec(base_url=sim.base_url, token=sim.token, source="simulator", clock="simulator")
    if single_clan_flow:
        [clan] = clans or [PIPELINE_CLAN]
        flow_run = ingest_clan(clan_tag=clan, api=api, options=options, return_state=True)
    else:
        flow_run = ingest(
            clan_tags=clans or [PIPELINE_CLAN], api=api, options=options, return_state=True
        )
    state = asyncio.run(flow_run)
    result = state.result(raise_on_failure=False)
    if isinstance(result, RunsFailedError):
        return result.report
    if not isinstance(result, IngestReport):
        raise AssertionError(f"flow ended {state.type}: {result!r}")
    return result


@pytest.fixture(scope="session")
def built_warehouse(
    pg_server: Any,
    prefect_harness: str,
    pipeline_project: Path,
    pipeline_home: Path,
) -> Iterator[BuiltWarehouse]:
    from clash_pipeline.simulator import SimulatedClashApi
    from clash_pipeline.warehouse.migrations import migrate

    name = f"t_pipeline_template_{uuid.uuid4().hex[:8]}"
    url = pg_server.create_database(name)
    migrate(url)
    mp = pytest.MonkeyPatch()
    try:
        mp.setenv("DATABASE_URL", url)
        mp.setenv("CLASH_PIPELINE_HOME", str(pipeline_home))
        mp.setenv("COC_MAX_RETRIES", "1")
        mp.setenv("CLASH_GX_DIR", str(pipeline_project / "gx"))
        mp.delenv(FAULT_ENV, raising=False)
        with SimulatedClashApi(
            seed=PIPELINE_SEED, token=PIPELINE_TOKEN, start_time=PIPELINE_T0
        ) as sim:
            # models only: the tests' own runs check the data tests
            report = run_pipeline(sim, pipeline_options(pipeline_project, transform_mode="run"))
        assert not report.failed, [r.error for r in report.failed]
    finally:
        mp.undo()
    yield BuiltWarehouse(name=name, url=url, report=report)
    pg_server.drop_database(name)


@pytest.fixture
def warehouse(
    pg_server: Any,
    built_warehouse: BuiltWarehouse,
    pipeline_home: Path,
    pipeline_project: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[str]:
    """A fresh copy of the built warehouse; the environment points the pipeline at it."""
    name = f"t_pipeline_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_server.url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("create database {} template {}").format(
                sql.Identifier(name), sql.Identifier(built_warehouse.name)
            )
        )
    url = pg_server.database_url(name)
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("CLASH_PIPELINE_HOME", str(pipeline_home))
    monkeypatch.setenv("COC_MAX_RETRIES", "1")
    monkeypatch.setenv("CLASH_GX_DIR", str(pipeline_project / "gx"))
    monkeypatch.delenv(FAULT_ENV, raising=False)
    try:
        yield url
    finally:
        pg_server.drop_database(name)


def mart_checksums(
    db_url: str, schemas: tuple[str, ...] = ("marts", "marts_build", "intermediate")
) -> dict:
    """md5 of every table's rows (order-independent), by schema.table."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        tables = conn.execute(
            """
            select n.nspname, c.relname from pg_class c
            join pg_namespace n on n.oid = c.relnamespace
            where n.nspname = any(%s) and c.relkind in ('r', 'p')
            order by 1, 2
            """,
            (list(schemas),),
        ).fetchall()
        sums = {}
        for schema, name in tables:
            sums[f"{schema}.{name}"] = conn.execute(
                sql.SQL(
                    "select count(*), md5(coalesce(string_agg(h, '' order by h), ''))"
                    " from (select md5(t::text) as h from {} t) x"
                ).format(sql.Identifier(schema, name))
            ).fetchone()
    return sums
