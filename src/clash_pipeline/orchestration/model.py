"""Plain values passed between the pipeline's tasks (no clients, no connections)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from clash_pipeline.clash_api.ratelimit import AdaptivePacing
from clash_pipeline.errors import ClashPipelineError
from clash_pipeline.ingest.plan import PlanPolicy
from clash_pipeline.orchestration.options import ApiSpec, PipelineOptions
from clash_pipeline.shutdown import Cancelled
from clash_pipeline.warehouse.runs import RunRecorder, error_payload

#: Transform steps recorded per run: (ops step name, dbt model).
TRANSFORM_STEPS: tuple[tuple[str, str], ...] = (
    ("upsert_members", "members"),
    ("write_snapshot", "roster_snapshots"),
    ("write_stats", "member_snapshot_stats"),
    ("metrics", "metrics"),
)


@dataclass(frozen=True)
class RunContext:
    """Everything a task needs to know about the batch: settings, DSN, versions."""

    db_url: str = field(repr=False)
    home: Path
    api: ApiSpec
    options: PipelineOptions
    schema_version: str
    project_dir: Path
    batch_id: uuid.UUID
    flow_run_id: uuid.UUID | None
    requests_per_second: float
    max_concurrency: int
    request_timeout: float
    request_retries: int
    #: How the shared limiter reacts to 429s (COC_THROTTLE_BACKOFF, COC_RATE_RECOVERY, ...).
    pacing: AdaptivePacing = field(default_factory=AdaptivePacing)
    #: COC_SHARED_PACING: pace the key through ops.api_key_pacing, with every other process.
    shared_pacing: bool = False
    #: COC_CLANS_IN_FLIGHT: clans fetched at once by this process.
    clans_in_flight: int = 32
    #: What the planner fetches when (COC_PROFILE_MAX_AGE_HOURS, COC_WAR_CHECK_HOURS).
    plan_policy: PlanPolicy = field(default_factory=PlanPolicy)
    # Least privilege: ``db_url`` is the current job's login (ingest unless told);
    # the transform job's URL, and the run bookkeeping's (ingest), whatever the job.
    transform_url: str = field(default="", repr=False)
    ops_url: str = field(default="", repr=False)

    def as_transform(self) -> RunContext:
        """This context for the transform job: dbt and restore points as its login."""
        return replace(
            self, db_url=self.transform_url or self.db_url, ops_url=self.ops_url or self.db_url
        )

    def recorder(self, run: ClanRun) -> RunRecorder:
        """The ops writer of one run (a short connection per write, as the ingest login)."""
        return RunRecorder(
            db_url=self.ops_url or self.db_url,
            kind="ingest",
            clan_tags=[run.clan_tag],
            schema_version=self.schema_version,
            trigger=self.options.trigger,
            run_id=run.run_id,
            flow_run_id=self.flow_run_id,
            started_at=run.started_at,
        )


@dataclass
class ClanRun:
    """One clan's run: its ops row, counters and outcome."""

    clan_tag: str
    run_id: uuid.UUID
    started_at: datetime
    #: running | succeeded | partial | failed | skipped | cancelled | held
    status: str = "running"
    error: dict[str, Any] | None = None
    landed: bool = False
    snapshot_at: datetime | None = None
    requests: int = 0
    failed_requests: int = 0
    retries: int = 0
    throttled: int = 0
    bytes_received: int = 0
    payloads_new: int = 0
    bytes_stored: int = 0
    members: int = 0
    #: Requests (and of them, member profiles) given up after the last retry of a transient
    #: failure: a run that landed with any is ``partial``, not ``succeeded``.
    dropped_requests: int = 0
    dropped_players: int = 0
    #: Requests the planner skipped, by endpoint (clash_pipeline.ingest.plan).
    skipped: dict[str, int] = field(default_factory=dict)
    #: Bodies the door checks kept out of the marts (landed, marked): the run is ``partial``.
    quarantined: list[dict[str, Any]] = field(default_factory=list)
    rows_changed: int | None = None
    phase_ms: dict[str, int] = field(default_factory=dict)
    failed_request_list: list[dict[str, Any]] = field(default_factory=list)
    health: dict[str, Any] | None = None

    @property
    def active(self) -> bool:
        return self.status == "running"

    def fail(self, phase: str, exc: BaseException) -> None:
        """Mark the run failed by ``phase`` (the first failure is the one kept)."""
        if self.status == "failed":
            return
        self.status = "failed"
        self.error = error_payload(exc, phase=phase)

    def hold(self, tests: list[dict[str, Any]]) -> None:
        """Its data failed data tests: held back from the marts (ops.held_runs)."""
        if self.status != "running":
            return
        self.status = "held"
        names = ", ".join(str(t["test"]) for t in tests)
        self.error = {
            "type": "DataTestFailed",
            "phase": "transform",
            "message": f"held back from the marts: its data failed {names}",
            "hint": "see ops.held_runs; fix, then clash-pipeline build --release "
            f"'{self.clan_tag}'",
            "tests": tests,
        }

    def cancel(self, phase: str, stop: Cancelled) -> None:
        """Mark the run cancelled by a signal while in ``phase`` (unless it already ended)."""
        if self.status != "running":
            return
        self.status = "cancelled"
        self.error = error_payload(stop, phase=phase) | {"signal": stop.signal_name}

    def counters(self) -> dict[str, int]:
        return {
            "requests": self.requests,
            "failed_requests": self.failed_requests,
            "retries": self.retries,
            "throttled": self.throttled,
            "bytes_received": self.bytes_received,
            "payloads_new": self.payloads_new,
            "bytes_stored": self.bytes_stored,
        }


@dataclass
class StepResult:
    """One mart step of the transform, for one clan."""

    step: str
    model: str
    status: str
    seconds: float = 0.0
    rows_written: int | None = None
    rows_changed: int | None = None
    rows_affected: int | None = None  # dbt's figure for the whole batch


@dataclass
class BuildOutcome:
    """What the batch's dbt build did."""

    build_id: uuid.UUID
    scope: str
    seconds: float
    nodes: dict[str, int] = field(default_factory=dict)  # status -> count
    steps: dict[str, list[StepResult]] = field(default_factory=dict)  # clan tag -> steps
    #: Runs held back because their data failed a data test: run id -> clan tag and tests.
    held: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class IngestReport:
    """What one ``ingest`` flow run did: every clan's run, the build, wall time by stage."""

    batch_id: uuid.UUID
    flow_run_id: uuid.UUID | None
    runs: list[ClanRun] = field(default_factory=list)
    build: BuildOutcome | None = None
    stage_seconds: dict[str, float] = field(default_factory=dict)
    wall_seconds: float = 0.0
    #: Where the batch is (start, fetch, transform, monitor, close): a cancelled run says so.
    stage: str = "start"
    #: A build that is neither published nor rolled back yet (rolled back if the run stops).
    pending_build: BuildOutcome | None = None

    @property
    def failed(self) -> list[ClanRun]:
        return [r for r in self.runs if r.status == "failed"]

    @property
    def cancelled(self) -> list[ClanRun]:
        return [r for r in self.runs if r.status == "cancelled"]

    @property
    def skipped(self) -> list[ClanRun]:
        return [r for r in self.runs if r.status == "skipped"]

    @property
    def succeeded(self) -> list[ClanRun]:
        return [r for r in self.runs if r.status == "succeeded"]

    @property
    def partial(self) -> list[ClanRun]:
        """Runs that landed and built, but without some data (dropped after the retries, or
        bodies quarantined at the door)."""
        return [r for r in self.runs if r.status == "partial"]

    def run_for(self, clan_tag: str) -> ClanRun:
        for run in self.runs:
            if run.clan_tag == clan_tag:
                return run
        raise KeyError(clan_tag)


class RunsFailedError(ClashPipelineError):
    """Some clan runs of a pipeline run failed; ``report`` has every run's outcome."""

    def __init__(self, report: IngestReport) -> None:
        failed = report.failed
        first = failed[0].error or {}
        clans = ", ".join(r.clan_tag for r in failed)
        super().__init__(
            f"{len(failed)} of {len(report.runs)} clan run(s) failed ({clans}): "
            f"{first.get('phase', '?')}: {first.get('message', 'unknown error')}",
            hint=first.get("hint") or "see ops.ingest_runs.error and ops.ingest_logs of the run",
        )
        self.report = report

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.report,))
