"""Issue 12, point 6: messages that say what happened, name what the user uses, leak nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from clash_pipeline.errors import DatabaseError
from clash_pipeline.simulator import SimulatedClashApi
from clash_pipeline.warehouse.embedded import EmbeddedPostgres
from tests.plugins.prefect_fixtures import PIPELINE_CLAN, PIPELINE_SEED, PIPELINE_T0

OTHER_CLAN = "#2PR8R8V8P"
SIM_TOKEN = "messages-sim-token"  # noqa: S105 - the simulator's own token


def _env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COC_", "DATABASE_URL"))}
    env.update(values)
    return env


def _cli(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "clash_pipeline.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize(
    ("token", "problem"),
    [
        ("Tok3nSecretA Tok3nSecretB", "a space or line break"),
        ("Tok3nSecretA\x07Tok3nSecretB", "a control character"),
        ("Tok3nSecretA\u00e9Tok3nSecretB", "a non-ASCII character"),
    ],
)
def test_malformed_token_is_rejected_before_anything_runs(tmp_path, token, problem):
    home = tmp_path / "home"
    started = time.monotonic()
    result = _cli(
        "run", "--clan", PIPELINE_CLAN, env=_env(COC_API_TOKEN=token, CLASH_PIPELINE_HOME=str(home))
    )
    assert result.returncode == 2
    assert " ".join(result.stderr.split()) == (
        f"error: COC_API_TOKEN is invalid: it contains {problem}; an API token is "
        "one word of printable ASCII (copy it again from developer.clashofclans.com, "
        "without quotes or spaces) hint: fix COC_API_TOKEN in the environment or in .env"
    )
    assert "Tok3nSecret" not in result.stdout + result.stderr
    assert result.stdout == ""
    assert not home.exists()  # no database started, no run recorded, no Prefect
    assert time.monotonic() - started < 60


def test_a_clean_token_is_accepted_stripped(tmp_path):
    result = _cli(
        "fetch",
        "--clan",
        "#NOT-A-TAG",  # stops at the tag, after the settings were read
        env=_env(COC_API_TOKEN="  eyJ0.good-token_1\n", CLASH_PIPELINE_HOME=str(tmp_path)),
    )
    assert result.returncode == 2
    assert "invalid clan tag" in result.stderr
    assert "COC_API_TOKEN" not in result.stderr


def test_one_missing_clan_report_says_what_happened_to_each_clans_marts(
    warehouse, pipeline_home, pipeline_project, prefect_harness
):
    with psycopg.connect(warehouse) as conn:
        snapshots = conn.execute("select count(*) from marts.roster_snapshots").fetchone()
        before = conn.execute("select coalesce(max(started_at), now()) from ops.ingest_runs")
        [last_start] = before.fetchone()
    start = PIPELINE_T0 + timedelta(hours=6)
    with SimulatedClashApi(
        seed=PIPELINE_SEED, token=SIM_TOKEN, start_time=start, missing_clans=[OTHER_CLAN]
    ) as sim:
        env = _env(
            DATABASE_URL=warehouse,
            CLASH_PIPELINE_HOME=str(pipeline_home),
            CLASH_GX_DIR=str(pipeline_project / "gx"),
            PREFECT_API_URL=prefect_harness,
            COC_API_BASE_URL=sim.base_url,
            COC_API_TOKEN=SIM_TOKEN,
            COC_MAX_RETRIES="1",
        )
        result = _cli(
            "run",
            "--clan",
            PIPELINE_CLAN,
            "--clan",
            OTHER_CLAN,
            "--dbt-project",
            str(pipeline_project),
            env=env,
        )
    assert result.returncode == 1, result.stderr
    assert (
        f"marts: {PIPELINE_CLAN} updated; {OTHER_CLAN} as they were before the run "
        "(fetch failed before anything was landed)"
    ) in " ".join(result.stderr.split())
    assert "the marts are as they were before the run" not in result.stderr
    assert "hint: the next run of a failed clan catches up" in result.stderr
    assert SIM_TOKEN not in result.stdout + result.stderr
    # and it is true: the first clan got its new snapshot
    with psycopg.connect(warehouse) as conn:
        after = conn.execute("select count(*) from marts.roster_snapshots").fetchone()
        clans = conn.execute(
            "select clan_tags[1], status from ops.ingest_runs where kind = 'ingest'"
            " and started_at > %s order by 1",
            (last_start,),
        ).fetchall()
    assert after[0] == snapshots[0] + 1
    assert clans == sorted([(PIPELINE_CLAN, "succeeded"), (OTHER_CLAN, "failed")])


def _wait_for_running_run(home: Path, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before the database was stopped"
        try:
            url = EmbeddedPostgres(home).url()
            with psycopg.connect(url, connect_timeout=2) as conn:
                row = conn.execute(
                    "select count(*) from ops.ingest_runs where status = 'running'"
                ).fetchone()
            if row and row[0]:
                return
        except (DatabaseError, psycopg.Error):
            pass
        time.sleep(0.3)
    raise AssertionError("the run never started")


def test_database_stopped_mid_run_hint_names_the_embedded_database(
    tmp_path, prefect_harness, pipeline_project
):
    home = tmp_path / "home"
    env = _env(
        CLASH_PIPELINE_HOME=str(home),
        PREFECT_API_URL=prefect_harness,
        COC_REQUESTS_PER_SECOND="3",  # a slow fetch: the database stops during it
    )
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with out.open("w") as stdout, err.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "clash_pipeline.cli", "run", "--simulate", "--clan"]
            + [PIPELINE_CLAN, "--dbt-project", str(pipeline_project)],
            env=env,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
        try:
            _wait_for_running_run(home, proc)
            assert EmbeddedPostgres(home).stop()
            proc.wait(timeout=240)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            EmbeddedPostgres(home).stop()
    text = out.read_text() + err.read_text()
    assert proc.returncode == 1, text
    assert "DATABASE_URL" not in text
    flat = " ".join(text.split())
    assert f"the embedded PostgreSQL ({home.resolve()}) stopped or does not answer" in flat
    assert "`clash-pipeline db status` shows it, `clash-pipeline db start` starts it again" in flat
