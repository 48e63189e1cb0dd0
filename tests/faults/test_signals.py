"""Issue 12, points 1 and 2: SIGTERM stops a run cleanly at any phase; kill -9 orphans nothing.

Each test runs the real command line (``python -m clash_pipeline.cli run
--simulate``) as a subprocess, with its own ``PREFECT_HOME`` and no
``PREFECT_API_URL``, so the command starts its own temporary Prefect server,
against a copy of the built warehouse.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest

from tests.plugins.prefect_fixtures import (
    FAULT_ENV,
    FAULT_SECONDS_ENV,
    PIPELINE_CLAN,
    mart_checksums,
)

#: The bound the README documents for a stop after SIGTERM/SIGINT.
STOP_BOUND_SECONDS = 15


@pytest.fixture
def cli_env(warehouse: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env["PREFECT_HOME"] = str(tmp_path / "prefect")
    env["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "180"
    return env


class Run:
    """One ``clash-pipeline run --simulate`` subprocess."""

    def __init__(self, env: dict[str, str], project: Path, tmp_path: Path) -> None:
        self.stderr_path = tmp_path / f"stderr-{time.monotonic_ns()}.txt"
        with open(self.stderr_path, "wb") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "clash_pipeline.cli", "run", "--simulate"]
                + ["--clan", PIPELINE_CLAN, "--dbt-project", str(project)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def stop(self, signum: int) -> tuple[int, float]:
        """Send ``signum``; the exit status and the seconds it took to exit."""
        started = time.monotonic()
        self.process.send_signal(signum)
        code = self.process.wait(timeout=120)
        return code, time.monotonic() - started

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def runs(cli_env: dict[str, str], pipeline_project: Path, tmp_path: Path) -> Iterator[Any]:
    started: list[Run] = []

    def start(**env: str) -> Run:
        run = Run(cli_env | env, pipeline_project, tmp_path)
        started.append(run)
        return run

    yield start
    for run in started:
        run.kill()


def _wait_for(what: str, condition: Callable[[], Any], run: Run, timeout: float = 400) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        assert run.process.poll() is None, f"the run ended before {what}: {run.stderr}"
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}: {run.stderr}")


def _query(url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


def _cli_run(url: str) -> tuple[Any, ...] | None:
    rows = _query(
        url,
        "select run_id, status, requests, error from ops.ingest_runs"
        " where trigger = 'cli' order by started_at desc limit 1",
    )
    return rows[0] if rows else None


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _using(prefect_home: str) -> list[int]:
    """Live processes whose command line or environment names this PREFECT_HOME."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        if proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        try:
            text = " ".join(proc.info["cmdline"] or []) + json.dumps(proc.environ())
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if prefect_home in text:
            found.append(proc.info["pid"])
    return found


def _assert_clean_stop(run: Run, code: int, seconds: float, signame: str) -> None:
    assert code == 128 + signal.Signals[signame].value, run.stderr
    assert seconds < STOP_BOUND_SECONDS, seconds
    assert f"cancelled by {signame}" in run.stderr
    assert "Traceback" not in run.stderr


def test_sigterm_during_fetch_cancels_the_run_and_leaves_no_child(runs, warehouse, cli_env):
    run = runs(COC_REQUESTS_PER_SECOND="2")  # ~30 s of fetching
    _wait_for("the fetch", lambda: (r := _cli_run(warehouse)) and r[1] == "running", run)
    time.sleep(2)  # some requests are sent
    children = [p.pid for p in psutil.Process(run.process.pid).children(recursive=True)]
    assert children, "the command should run its temporary Prefect server"

    code, seconds = run.stop(signal.SIGTERM)

    _assert_clean_stop(run, code, seconds, "SIGTERM")
    run_id, status, requests, error = _cli_run(warehouse)
    assert status == "cancelled"
    assert requests > 0
    assert error["phase"] == "fetch" and error["signal"] == "SIGTERM"
    [(fetch_status,)] = _query(
        warehouse,
        "select status from ops.ingest_logs where run_id = %s and phase = 'fetch'",
        run_id,
    )
    assert fetch_status == "cancelled"
    assert all(_gone(pid) for pid in children)
    assert _using(cli_env["PREFECT_HOME"]) == []


def test_sigterm_during_dbt_rolls_the_build_back(runs, warehouse, cli_env):
    before = mart_checksums(warehouse)
    run = runs(**{FAULT_ENV: "sleep", FAULT_SECONDS_ENV: "600", "COC_REQUESTS_PER_SECOND": "200"})
    _wait_for(
        "dbt's slow test model",
        lambda: _query(
            warehouse,
            "select 1 from pg_stat_activity where state = 'active'"
            " and query like '%%pg_sleep(600)%%' and pid <> pg_backend_pid()",
        ),
        run,
    )

    code, seconds = run.stop(signal.SIGTERM)

    _assert_clean_stop(run, code, seconds, "SIGTERM")
    assert mart_checksums(warehouse) == before
    run_id, status, _requests, error = _cli_run(warehouse)
    assert status == "cancelled" and error["phase"] == "transform"
    [(transform_status,)] = _query(
        warehouse,
        "select status from ops.ingest_logs where run_id = %s and phase = 'transform'",
        run_id,
    )
    assert transform_status == "cancelled"
    [(build_status,)] = _query(
        warehouse, "select status from ops.transform_builds order by started_at desc limit 1"
    )
    assert build_status == "rolled_back"
    assert not _query(
        warehouse,
        "select 1 from pg_stat_activity where query like '%%pg_sleep(600)%%'"
        " and pid <> pg_backend_pid()",
    )
    assert _using(cli_env["PREFECT_HOME"]) == []


def test_kill_9_leaves_no_prefect_server_and_the_next_run_works(runs, warehouse, cli_env):
    servers = Path(cli_env["PREFECT_HOME"]) / "local-servers"
    run = runs(COC_REQUESTS_PER_SECOND="2")
    _wait_for("the fetch", lambda: (r := _cli_run(warehouse)) and r[1] == "running", run)
    [pid_file] = servers.glob("*.json")
    server_pid = json.loads(pid_file.read_text())["pid"]
    assert not _gone(server_pid)

    run.process.send_signal(signal.SIGKILL)
    run.process.wait()

    deadline = time.monotonic() + 5
    while not _gone(server_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _gone(server_pid), "the temporary Prefect server outlived its command"
    assert _using(cli_env["PREFECT_HOME"]) == []

    after = runs(COC_REQUESTS_PER_SECOND="200")
    assert after.process.wait(timeout=600) == 0, after.stderr
    assert _cli_run(warehouse)[1] == "succeeded"
    assert list(servers.glob("*.json")) == []  # the crashed command's pid file is cleaned up
