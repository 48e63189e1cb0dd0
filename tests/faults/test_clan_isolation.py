"""Issue 13: a data test that fails for one clan never blocks the marts of the other clans.

Two simulated clans go through the real pipeline (real Prefect, real dbt with its
data tests, real PostgreSQL). One clan's newest roster carries a value no data
test accepts (a negative donation count), written straight into raw as if it had
passed the landing checks (a trigger swaps the payload of its members fetch, so
nothing in Python sees it). The other clan advances and is published; the bad
clan's run is held back (ops.held_runs), its marts stay as they were, the run
says which test failed, and the monitor opens a ``held_runs`` alert.
``clash-pipeline build --release`` builds the held run again (the same isolation as
the pipeline: its data still fails, so it is held again and the other clan is
published); the next good run advances the clan; ``--drop-held`` leaves the held
run out for good and the alert resolves.
"""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest
from typer.testing import CliRunner

from clash_pipeline.simulator import SimulatedClashApi
from tests.plugins.prefect_fixtures import (
    PIPELINE_CLAN,
    PIPELINE_SEED,
    PIPELINE_T0,
    PIPELINE_TOKEN,
    pipeline_options,
    run_pipeline,
)

pytestmark = pytest.mark.slow

GOOD = PIPELINE_CLAN
BAD = "#9RCRVL8V"
#: The data test the bad roster breaks first: member_snapshot_stats.donations >= 0
#: (accepted_range, macros/coc_generic_tests.sql; its window is the clan's newest days,
#: macros/recent_window.sql, so the new snapshot is tested). dbt then skips the members
#: model and its tests. The test returns the tested column only: the clan is found by
#: matching the failing value back to the model's rows.
BROKEN_TEST = "accepted_range_member_snapshot_stats_donations__0"
#: Every table of marts with a clan_tag column: a clan's published rows.
_CLAN_TABLES = """
select c.table_name from information_schema.columns c
join information_schema.tables t using (table_schema, table_name)
where c.table_schema = 'marts' and c.column_name = 'clan_tag' and t.table_type = 'BASE TABLE'
order by 1
"""


@pytest.fixture
def sim():
    with SimulatedClashApi(seed=PIPELINE_SEED, token=PIPELINE_TOKEN, start_time=PIPELINE_T0) as api:
        yield api


def _rows(url, query, *params):
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(query, params).fetchall()


def _one(url, query, *params):
    return _rows(url, query, *params)[0][0]


def _clan_marts(url, clan):
    """md5 of the clan's rows in every published table (order-independent), by table."""
    sums = {}
    with psycopg.connect(url, autocommit=True) as conn:
        for (table,) in conn.execute(_CLAN_TABLES).fetchall():
            sums[table] = conn.execute(
                f"select count(*), md5(coalesce(string_agg(h, '' order by h), ''))"  # noqa: S608
                f" from (select md5(t::text) as h from marts.{table} t where clan_tag = %s) x",
                (clan,),
            ).fetchone()
    return sums


def _break_next_roster(url, clan):
    """The clan's next members fetch lands a body whose first member gave -7 donations.

    A copy of its last members body with that one value changed goes into raw.payloads;
    a trigger points the next members fetch of the clan at it (past any landing check).
    """
    with psycopg.connect(url, autocommit=True) as conn:
        [(bad_hash,)] = conn.execute(
            """
            with last as (
                select p.body from raw.fetch_log f join raw.payloads p using (payload_hash)
                where f.clan_tag = %s and f.endpoint = 'clan_members' and f.http_status = 200
                order by f.fetched_at desc limit 1
            ),
            broken as (
                select jsonb_set(body, '{items,0,donations}', '-7') as body from last
            )
            insert into raw.payloads (payload_hash, body, byte_size)
            select encode(sha256(convert_to(body::text, 'UTF8')), 'hex'), body,
                length(body::text)
            from broken
            on conflict (payload_hash) do update set byte_size = excluded.byte_size
            returning payload_hash
            """,
            (clan,),
        ).fetchall()
        conn.execute(
            f"""
            create function public.isolation_test_break_roster() returns trigger
            language plpgsql as $$
            begin
                if new.clan_tag = '{clan}' and new.endpoint = 'clan_members'
                   and new.payload_hash is not null then
                    new.payload_hash := '{bad_hash}';
                end if;
                return new;
            end $$
            """
        )
        conn.execute(
            "create trigger break_roster before insert on raw.fetch_log"
            " for each row execute function public.isolation_test_break_roster()"
        )


def _mend_rosters(url):
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("drop trigger break_roster on raw.fetch_log")
        conn.execute("drop function public.isolation_test_break_roster()")


def _published_runs(url, clan):
    return {
        r[0]
        for r in _rows(url, "select run_id from marts.roster_snapshots where clan_tag = %s", clan)
    }


@pytest.mark.timeout(1800)  # four pipeline runs and a full-refresh build, all with data tests
def test_a_failing_data_test_holds_back_one_clan_and_the_others_advance(
    warehouse, sim, pipeline_project, monkeypatch
):
    url = warehouse
    options = pipeline_options(pipeline_project, transform_mode="build")
    # both clans published once (the warehouse had only GOOD)
    sim.clock.advance(timedelta(hours=6))
    first = run_pipeline(sim, options, [GOOD, BAD])
    assert [r.status for r in first.runs] == ["succeeded", "succeeded"], [
        r.error for r in first.runs
    ]
    bad_before = _clan_marts(url, BAD)
    assert bad_before["roster_snapshots"][0] == 1 and bad_before["member_snapshot_stats"][0] > 0

    # the bad clan's next roster breaks a data test
    _break_next_roster(url, BAD)
    sim.clock.advance(timedelta(hours=6))
    report = run_pipeline(sim, options, [GOOD, BAD])

    good, bad = report.runs
    assert good.status == "succeeded", good.error
    assert bad.status == "held"
    assert bad.error["type"] == "DataTestFailed" and bad.error["phase"] == "transform"
    failed_tests = {t["test"] for t in bad.error["tests"]}
    assert BROKEN_TEST in failed_tests
    # the good clan's new snapshot is published; the bad clan's marts are as they were
    assert good.run_id in _published_runs(url, GOOD)
    assert _clan_marts(url, BAD) == bad_before
    assert bad.run_id not in _published_runs(url, BAD)
    assert report.build is not None and not report.failed
    # recorded: the run, its transform checkpoint, the hold with its sample rows
    assert _rows(
        url, "select status, error ->> 'type' from ops.ingest_runs where run_id = %s", bad.run_id
    ) == [("held", "DataTestFailed")]
    [(log_status, log_details)] = _rows(
        url,
        "select status, details from ops.ingest_logs"
        " where run_id = %s and phase = 'transform' and step is null",
        bad.run_id,
    )
    assert log_status == "held" and log_details["clan_tag"] == BAD
    [(hold_clan, hold_status, tests)] = _rows(
        url, "select clan_tag, status, tests from ops.held_runs where run_id = %s", bad.run_id
    )
    assert (hold_clan, hold_status) == (BAD, "held")
    broken = next(t for t in tests if t["test"] == BROKEN_TEST)
    assert broken["failures"] == 1 and broken["sample"] == [{"donations": -7}]
    assert _one(url, "select count(*) from ops.held_runs") == 1  # the good clan: nothing held
    # the build that failed was rolled back, naming the clan; the one without it published
    builds = _rows(
        url,
        "select status, error -> 'held_clans' from ops.transform_builds"
        " order by started_at desc limit 2",
    )
    assert builds == [("published", None), ("rolled_back", [BAD])]
    # the monitor's alert names the clan and the test
    [(alert_summary, alert_details)] = _rows(
        url,
        "select summary, details from ops.alerts"
        " where clan_tag = %s and check_name = 'held_runs' and status = 'open'",
        BAD,
    )
    assert BROKEN_TEST in alert_summary and "--release" in alert_summary
    assert alert_details["runs"] == [
        {"run_id": str(bad.run_id), "snapshot_at": bad.snapshot_at.isoformat()}
    ]
    assert _one(url, "select count(*) from ops.alerts where check_name = 'held_runs'") == 1

    # released while its data is still the clan's latest: built again (a full refresh, as
    # `build` and `backfill` build), it fails again, so it is held again; GOOD is published
    monkeypatch.setenv("CLASH_PROJECT_DIR", str(pipeline_project))
    import clash_pipeline.cli as cli

    runner = CliRunner()
    released = runner.invoke(cli.app, ["build", "--release", BAD])
    assert released.exit_code == 1, released.output
    assert f"{BAD}: 1 held run(s) released" in released.output
    assert f"held {BAD}: 1 run(s) held back" in released.output
    assert BROKEN_TEST in released.output
    assert _rows(url, "select status from ops.held_runs where run_id = %s", bad.run_id) == [
        ("held",)
    ]
    assert _clan_marts(url, BAD) == bad_before
    assert good.run_id in _published_runs(url, GOOD)
    assert _rows(
        url,
        "select status, error -> 'held_clans' from ops.transform_builds"
        " order by started_at desc limit 2",
    ) == [("published", None), ("rolled_back", [BAD])]

    # the next run's data is good: the clan advances; the held run stays out, the alert open
    _mend_rosters(url)
    sim.clock.advance(timedelta(hours=6))
    after = run_pipeline(sim, options, [GOOD, BAD])
    assert [r.status for r in after.runs] == ["succeeded", "succeeded"], [
        r.error for r in after.runs
    ]
    bad_runs = _published_runs(url, BAD)
    assert after.runs[1].run_id in bad_runs and bad.run_id not in bad_runs
    assert len(bad_runs) == 2
    assert (
        _one(
            url,
            "select occurrences from ops.alerts where clan_tag = %s and check_name = 'held_runs'",
            BAD,
        )
        == 2
    )

    # dropped: out for good, and the next monitor run resolves the alert
    dropped = runner.invoke(cli.app, ["build", "--drop-held", BAD])
    assert dropped.exit_code == 0, dropped.output
    assert f"{BAD}: 1 held run(s) dropped" in dropped.output
    assert "dbt build" not in dropped.output  # the run was out of the marts already
    from clash_pipeline.monitor.run import run_monitor
    from clash_pipeline.settings import load_settings

    run_monitor(url, load_settings(), [BAD])
    assert _rows(
        url, "select status from ops.alerts where clan_tag = %s and check_name = 'held_runs'", BAD
    ) == [("resolved",)]
    assert _published_runs(url, BAD) == bad_runs
