"""Issue 12, point 5: a failed run records the requests it sent (not 0).

The simulator is in maintenance (503 on every data path): the clan cannot be
fetched, the fetch phase fails after its retries, and nothing lands. The run's
``requests + retries`` must count every request the simulator served (an attempt is
counted before it is sent, so one cancelled in flight when the clan request failed
counts too), and each fetch attempt's checkpoint row says what that attempt sent.
"""

from __future__ import annotations

import asyncio

import psycopg

from clash_pipeline.simulator import SimulatedClashApi
from clash_pipeline.simulator.faults import FaultConfig
from tests.plugins.prefect_fixtures import (
    PIPELINE_CLAN,
    PIPELINE_SEED,
    PIPELINE_T0,
    PIPELINE_TOKEN,
    pipeline_options,
    run_pipeline,
)


def _maintenance_sim() -> SimulatedClashApi:
    faults = FaultConfig(maintenance=True, retry_after_seconds=0.2)
    return SimulatedClashApi(
        seed=PIPELINE_SEED, token=PIPELINE_TOKEN, start_time=PIPELINE_T0, faults=faults
    )


def test_failed_pipeline_run_records_the_requests_it_sent(
    warehouse, prefect_harness, pipeline_project
):
    # COC_MAX_RETRIES=1 (the warehouse fixture): 2 attempts per request; 2 fetch attempts
    options = pipeline_options(pipeline_project, transform_mode="run", fetch_retries=1)
    with _maintenance_sim() as sim:
        report = run_pipeline(sim, options)
        served = sim.stats.requests_total
        by_status = sim.stats.by_status
    [run] = report.runs
    assert run.status == "failed" and run.error["phase"] == "fetch"
    assert by_status == {503: served}  # every request the simulator saw was a 503
    with psycopg.connect(warehouse, autocommit=True) as conn:
        status, requests, retries, throttled = conn.execute(
            "select status, requests, retries, throttled from ops.ingest_runs where run_id = %s",
            (run.run_id,),
        ).fetchone()
        attempts = conn.execute(
            """
            select attempt, status, requests, retries from ops.ingest_logs
            where run_id = %s and phase = 'fetch' order by attempt
            """,
            (run.run_id,),
        ).fetchall()
    assert status == "failed"
    # per fetch attempt: the clan request, and up to the 5 clan-level requests started
    # with it before it failed (how many depends on the 503 pause of the shared limiter)
    assert 2 * 1 <= requests <= 2 * 6
    # every request the simulator served was counted (counted before it is sent); a
    # clan-level request cancelled in flight when the clan request failed is counted
    # and may not have reached the server: at most 5 per fetch attempt
    assert served <= requests + retries <= served + 2 * 5
    assert retries > 0
    assert throttled == 0  # 503s, not 429s
    assert [(a, s) for a, s, _, _ in attempts] == [(1, "retrying"), (2, "failed")]
    assert sum(r for *_, r, _ in attempts) == requests
    assert sum(r for *_, r in attempts) == retries


def test_failed_fetch_command_records_the_requests_it_sent(migrated_db_url, tmp_path):
    from clash_pipeline.ingest.fetch import ApiTarget, fetch_clans
    from clash_pipeline.settings import load_settings

    settings = load_settings(clash_pipeline_home=tmp_path, coc_max_retries=1)
    with _maintenance_sim() as sim:
        target = ApiTarget(base_url=sim.base_url, token=PIPELINE_TOKEN, source="simulator")
        [outcome] = asyncio.run(fetch_clans(settings, migrated_db_url, [PIPELINE_CLAN], target))
        served = sim.stats.requests_total
    assert outcome.status == "failed"
    with psycopg.connect(migrated_db_url, autocommit=True) as conn:
        status, requests, retries = conn.execute(
            "select status, requests, retries from ops.ingest_runs where run_id = %s",
            (outcome.run_id,),
        ).fetchone()
    assert status == "failed"
    assert 1 <= requests <= 6  # the clan request, and the clan-level ones started with it
    assert served <= requests + retries <= served + 5  # see the pipeline test above
    assert retries > 0
