"""The fan-out of many clans over a Prefect work pool, as README "Deploy" sets it up.

Real parts only: the session's Prefect server, a ``process`` work pool created with
``prefect work-pool create``, the deployments of ``prefect.yaml`` registered with
``prefect deploy``, two ``prefect worker start`` processes, a simulator server for the
API, the embedded PostgreSQL and dbt. The fan-out runs 6 clans in chunks of 2, then again
with one clan gone from the API (``Partial``: the other five are built).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.plugins.prefect_fixtures import PIPELINE_SEED, PIPELINE_TOKEN, REPO, pipeline_options

pytestmark = pytest.mark.slow

#: Six clans of the simulator (none is the warehouse's own PIPELINE_CLAN).
CLANS = ["#2PR8R8V8P", "#9RCRVL8V", "#8QU8J9LP", "#2YGUPUU82", "#PQL0289Y", "#LQJRG2VC"]
POOL = "clash-pipeline"
#: A variable every worker and flow-run process inherits: how leftovers are found.
MARK = "CLASH_TEST_FANOUT_MARK"


def _prefect(env: dict[str, str], *args: str, timeout: float = 120) -> str:
    """``prefect ARGS`` from the repository root, as the README has users run it."""
    prefect = Path(sys.executable).with_name("prefect")
    result = subprocess.run(  # noqa: S603 - our own prefect, fixed arguments
        [str(prefect), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, f"prefect {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _marked_pids(mark: str) -> list[int]:
    """Processes whose environment carries ``MARK=mark`` (workers and their flow runs)."""
    needle = f"{MARK}={mark}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


class Workers:
    """``prefect worker start --pool POOL`` processes; stopped with SIGTERM like a service."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs = env, logs
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, count: int) -> None:
        prefect = Path(sys.executable).with_name("prefect")
        for i in range(count):
            with open(self.logs / f"worker-{i}.log", "wb") as log:
                self.procs.append(
                    subprocess.Popen(  # noqa: S603 - our own prefect, fixed arguments
                        [str(prefect), "worker", "start", "--pool", POOL, "--name", f"w{i}"],
                        cwd=REPO,
                        env=self.env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                    )
                )

    def output(self, i: int) -> str:
        return (self.logs / f"worker-{i}.log").read_text(errors="replace")

    def stop(self) -> list[int | None]:
        """SIGTERM each worker; their exit codes (None: had to be killed)."""
        codes: list[int | None] = []
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                codes.append(proc.wait(timeout=30))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                codes.append(None)
        return codes


@pytest.fixture
def fanout_env(warehouse: str, prefect_harness: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A simulator and the environment of the workers (the warehouse's, the sim's API)."""
    from clash_pipeline.simulator import SimulatedClashApi

    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    with SimulatedClashApi(seed=PIPELINE_SEED, token=PIPELINE_TOKEN, start_time=hour) as sim:
        mark = uuid.uuid4().hex
        env = {k: v for k, v in os.environ.items() if not k.startswith("COC_")}
        env |= {
            "PREFECT_API_URL": prefect_harness,
            "PREFECT_WORKER_QUERY_SECONDS": "2",
            "PREFECT_LOGGING_LEVEL": "INFO",
            "COC_API_BASE_URL": sim.base_url,
            "COC_API_TOKEN": PIPELINE_TOKEN,
            "COC_CLAN_TAGS": ",".join(CLANS),
            "COC_REQUESTS_PER_SECOND": "200",
            "COC_MAX_RETRIES": "1",
            MARK: mark,
        }
        yield {"sim": sim, "env": env, "mark": mark, "logs": tmp_path}


def _read_runs(parent_id: uuid.UUID) -> tuple[Any, list[Any]]:
    """The fan-out's flow run and its child flow runs (linked as subflows)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    async def read() -> tuple[Any, list[Any]]:
        async with get_client() as client:
            parent = await client.read_flow_run(parent_id)
            children = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent_id])
                )
            )
            return parent, children

    return asyncio.run(read())


def _submitted(flow_run_name: str, worker_log: str) -> bool:
    return f"Flow run {flow_run_name!r} submitted to infrastructure" in worker_log


def _rows(url: str, query: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(query, args).fetchall()


@pytest.mark.timeout(1800)  # two fan-outs, each flow-run process ~20 s to start when loaded
def test_fanout_over_two_workers_lands_each_clan_once_and_builds_once(
    fanout_env: dict[str, Any], warehouse: str, pipeline_project: Path
) -> None:
    from prefect.deployments import arun_deployment

    env, sim = fanout_env["env"], fanout_env["sim"]
    started = datetime.now(UTC)
    # README "Deploy": the pool, the deployments, the workers
    _prefect(env, "work-pool", "create", POOL, "--type", "process")
    _prefect(env, "--no-prompt", "deploy", "--name", "clans", "--name", "fanout")
    workers = Workers(env, fanout_env["logs"])
    try:
        workers.start(2)
        # the GX checks have their own tests: here the build and the health rows
        options = pipeline_options(pipeline_project, transform_mode="run", anomaly_checks=False)
        parameters = {
            "clans_per_run": 2,
            "poll_seconds": 1,
            "options": options.model_dump(mode="json"),
        }
        # a loaded 2-core machine: each flow-run process takes ~20 s to start
        fanout = {"parameters": parameters, "timeout": 480, "poll_interval": 2}
        parent = asyncio.run(arun_deployment("clash-fanout/fanout", **fanout))
        clan_requests = sim.stats.by_kind["clan"]
        # the second fan-out's children have the same names: read who started these now
        first_logs = [workers.output(i) for i in range(2)]
        # again, with the first clan gone from the API: its child fails, the rest is built
        second_started = datetime.now(UTC)
        sim.faults.update(missing_clans={CLANS[0]})
        partial = asyncio.run(arun_deployment("clash-fanout/fanout", **fanout))
    finally:
        codes = workers.stop()
    logs = [workers.output(i) for i in range(2)]

    # the workers stopped on SIGTERM, and nothing they started is left
    assert None not in codes, logs
    deadline = time.monotonic() + 10
    while _marked_pids(fanout_env["mark"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _marked_pids(fanout_env["mark"]) == []

    parent, children = _read_runs(parent.id)
    assert parent.state.is_completed(), (parent.state, logs)
    # 6 clans in chunks of 2: 3 child runs of clash-ingest/clans, all completed
    assert len(children) == 3
    assert all(c.state.is_completed() for c in children), [c.state for c in children]
    # the deployment's concurrency limit (2, prefect.yaml): never three children at once
    spans = sorted((c.start_time, c.end_time) for c in children)
    assert spans[2][0] >= min(spans[0][1], spans[1][1]), spans
    child_ids = {c.id for c in children}
    # each child was started by exactly one worker (a worker may try one waiting for a slot)
    for child in children:
        started_by = [i for i, log in enumerate(first_logs) if _submitted(child.name, log)]
        assert len(started_by) == 1, (child.name, started_by)

    # each clan landed exactly once, by one of the child runs, two clans per child
    runs = _rows(
        warehouse,
        "select clan_tags[1], status, flow_run_id from ops.ingest_runs"
        " where kind = 'ingest' and started_at >= %s and started_at < %s order by 1",
        started,
        second_started,
    )
    assert sorted(r[0] for r in runs) == sorted(CLANS)
    assert {r[1] for r in runs} == {"succeeded"}
    assert {r[2] for r in runs} == child_ids
    assert sorted(sum(r[2] == c for r in runs) for c in child_ids) == [2, 2, 2]
    # and was fetched exactly once (one clan profile request per clan)
    assert clan_requests == len(CLANS)

    # one dbt build for the six, published; every child run has its transform checkpoint
    builds = _rows(
        warehouse,
        "select status, clan_tags from ops.transform_builds"
        " where started_at >= %s and started_at < %s",
        started,
        second_started,
    )
    assert len(builds) == 1 and builds[0][0] == "published"
    assert sorted(builds[0][1]) == sorted(CLANS)
    transform = _rows(
        warehouse,
        "select r.clan_tags[1], l.status from ops.ingest_logs l"
        " join ops.ingest_runs r using (run_id)"
        " where l.phase = 'transform' and l.step is null and r.started_at >= %s"
        " and r.started_at < %s and l.status = 'succeeded'",
        started,
        second_started,
    )
    assert sorted(t[0] for t in transform) == sorted(CLANS)
    # the marts readers see have all six clans
    marts = _rows(
        warehouse,
        "select distinct clan_tag from marts.roster_snapshots where clan_tag = any(%s)",
        CLANS,
    )
    assert sorted(m[0] for m in marts) == sorted(CLANS)
    # the parent said so in its state
    assert re.search(r"6 clan\(s\) built", parent.state.message or ""), parent.state.message

    # the second fan-out: Partial (a Failed state) naming the clan; the others built once
    partial, partial_children = _read_runs(partial.id)
    assert partial.state.is_failed() and partial.state.name == "Partial", partial.state
    assert "1 of 6 clan(s) not built" in partial.state.message, partial.state.message
    assert CLANS[0] in partial.state.message
    failed = [c for c in partial_children if CLANS[0] in c.parameters["clan_tags"]]
    assert len(partial_children) == 3 and len(failed) == 1
    [build] = _rows(
        warehouse,
        "select status, clan_tags from ops.transform_builds where started_at >= %s",
        second_started,
    )
    assert build[0] == "published" and sorted(build[1]) == sorted(CLANS[1:])
    statuses = dict(
        _rows(
            warehouse,
            "select clan_tags[1], status from ops.ingest_runs"
            " where kind = 'ingest' and started_at >= %s",
            second_started,
        )
    )
    assert statuses.pop(CLANS[0]) == "failed"
    assert set(statuses) == set(CLANS[1:]) and set(statuses.values()) == {"succeeded"}
