"""The three roles of the migrations: what each may and may not do."""

from __future__ import annotations

import psycopg
import pytest


def _as(db_url, role, sql, params=()):
    with psycopg.connect(db_url) as conn:
        conn.execute(f"set role {role}")
        conn.execute(sql, params)
        conn.rollback()


PAYLOAD = (
    "insert into raw.payloads (payload_hash, body, byte_size) values (%s, '{}', 2)",
    ("a" * 64,),
)


def test_ingest_role_appends_to_raw_and_writes_ops(migrated_db_url):
    _as(migrated_db_url, "clash_ingest", *PAYLOAD)
    _as(
        migrated_db_url,
        "clash_ingest",
        "insert into ops.alerts (check_name, summary) values ('x', 'y')",
    )
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        _as(migrated_db_url, "clash_ingest", "delete from raw.payloads")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        _as(migrated_db_url, "clash_ingest", "update raw.fetch_log set clan_tag = null")


def test_transform_role_reads_raw_but_cannot_write_it(migrated_db_url):
    _as(migrated_db_url, "clash_transform", "select count(*) from raw.fetch_log")
    _as(migrated_db_url, "clash_transform", "select count(*) from ops.ingest_runs")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        _as(migrated_db_url, "clash_transform", *PAYLOAD)


def test_readonly_role_reads_ops_and_writes_nothing(migrated_db_url):
    _as(migrated_db_url, "clash_readonly", "select count(*) from ops.ingest_runs")
    for sql in (
        "insert into ops.alerts (check_name, summary) values ('x', 'y')",
        "delete from ops.ingest_runs",
        "create table ops.sneaky (x int)",
        "select count(*) from raw.payloads",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            _as(migrated_db_url, "clash_readonly", sql)
