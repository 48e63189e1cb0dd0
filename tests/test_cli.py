"""The command line as a user meets it: one-line errors with a hint, no stack traces."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg
import pytest


def run_cli(*args, env=None, timeout=120):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("COC_", "DATABASE_URL"))}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "clash_pipeline.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )


@pytest.fixture
def home_env(tmp_path):
    return {"CLASH_PIPELINE_HOME": str(tmp_path / "home")}


def test_fetch_without_token_says_which_variable(home_env):
    result = run_cli("fetch", "--clan", "#2PR8R8V8P", env=home_env)
    assert result.returncode == 2
    assert "COC_API_TOKEN is not set" in result.stderr
    assert "hint:" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_clan_tag_is_rejected_before_anything_runs(home_env):
    result = run_cli("fetch", "--simulate", "--clan", "#NOT-A-TAG", env=home_env)
    assert result.returncode == 2
    assert "invalid clan tag" in result.stderr
    assert "Traceback" not in result.stderr


def test_invalid_setting_is_one_line(home_env):
    result = run_cli("fetch", "--simulate", env={**home_env, "COC_REQUESTS_PER_SECOND": "fast"})
    assert result.returncode == 2
    assert "COC_REQUESTS_PER_SECOND is invalid" in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_database_is_a_clear_error_without_password(home_env):
    url = "postgresql://someone:s3cret-pw@127.0.0.1:9/clash"
    result = run_cli("db", "migrate", env={**home_env, "DATABASE_URL": url})
    assert result.returncode == 1
    assert "cannot connect to PostgreSQL" in result.stderr
    assert "DATABASE_URL" in result.stderr
    assert "s3cret-pw" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_fetch_simulate_lands_a_run(home_env, migrated_db_url):
    env = {**home_env, "DATABASE_URL": migrated_db_url}
    result = run_cli("fetch", "--simulate", "--clan", "#2QG2C08UP", env=env)
    assert result.returncode == 0, result.stderr
    assert "succeeded" in result.stdout
    with psycopg.connect(migrated_db_url) as conn:
        runs = conn.execute("select source, clan_tags from raw.fetch_runs").fetchall()
    assert runs == [("simulator", ["#2QG2C08UP"])]


def test_db_url_with_database_url_prints_it(home_env, migrated_db_url):
    result = run_cli("db", "url", env={**home_env, "DATABASE_URL": migrated_db_url})
    assert result.returncode == 0
    assert result.stdout.strip() == migrated_db_url
