"""The transform phase: dbt once for the batch, inside a restore point.

dbt builds into ``marts_build``; readers read ``marts``, the last published build
(:mod:`clash_pipeline.transform.publish`). A failed build puts every relation of the
build schemas back as it was (:mod:`clash_pipeline.transform.restore`); a build that
the monitor or the publish step rejects later is rolled back by :func:`roll_back`, one
that passes is published (copied to ``marts`` in one transaction) by :func:`publish`.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clash_pipeline.orchestration.model import (
    TRANSFORM_STEPS,
    BuildOutcome,
    ClanRun,
    RunContext,
    StepResult,
)
from clash_pipeline.orchestration.phases.common import always_retriable, log
from clash_pipeline.transform import isolation, restore
from clash_pipeline.warehouse.runs import PhaseAttempt, RunRecorder, error_payload

if TYPE_CHECKING:
    from clash_pipeline.transform.dbt import DbtResult


def dbt_arguments(scope: str, mode: str) -> list[str]:
    """What dbt runs: everything once per project version, then the derived layers.

    A ``full`` build (first build, or staging models, seeds or macros changed
    since the last full one) builds every model and seed. An ``incremental``
    build selects the layers that change with new raw data: intermediate,
    marts and snapshots. ``run`` mode builds without data tests, ``build`` mode
    with them. Unit tests check SQL logic, not data: they belong to CI
    (``dbt build``), never to a pipeline run.
    """
    exclude = ["resource_type:unit_test"] + (["resource_type:test"] if mode == "run" else [])
    select = ["intermediate", "marts", "resource_type:snapshot"] if scope != "full" else []
    return ["build", *(["--select", *select] if select else []), "--exclude", *exclude]


def transform(ctx: RunContext, runs: list[ClanRun], *, attempt: int = 1) -> BuildOutcome:
    """Run dbt once for the batch inside a restore point; roll back if it fails.

    A build that fails only on data tests is isolated per clan
    (:mod:`clash_pipeline.transform.isolation`): the runs of the clans whose rows
    fail are held back, and the build runs again without them. Writes, per clan
    run, a ``transform`` checkpoint (``held``, with the tests and sample rows, for
    a held run) and one row per mart step (``upsert_members``,
    ``write_snapshot``, ``write_stats``, ``metrics``) with dbt's time for the
    model and the rows this build wrote and changed for that clan (from the
    restore point's undo log).
    """
    ctx = ctx.as_transform()  # least privilege: dbt and the restore point as clash_transform
    t0 = time.perf_counter()
    with PhaseAttempt(
        "transform",
        [ctx.recorder(run) for run in runs],
        attempt=attempt,
        retries=ctx.options.transform_retries,
        retriable=always_retriable,
        log=log(),
    ) as phase:
        phase.failure_details = {"restored": True}
        built = _build(ctx, runs, phase)
        try:
            outcome = _outcome(ctx, runs, built, t0)
            _record_success(phase, runs, outcome, built.result)
        except BaseException as exc:  # the build is not kept: put every mart back
            restore.roll_back(
                ctx.db_url, built.point.build_id, error=error_payload(exc, phase="transform")
            )
            raise
    return outcome


def _outcome(
    ctx: RunContext, runs: list[ClanRun], built: isolation.IsolatedBuild, t0: float
) -> BuildOutcome:
    """What the build did, per clan run: mart steps, or why the run was held back."""
    held = {h.run_id: h for h in isolation.held_runs(ctx.db_url, run_ids=[r.run_id for r in runs])}
    kept = [run for run in runs if run.run_id not in held]
    models = restore.dbt_models(_manifest(ctx)) or {}
    steps = _step_results(ctx, built.point, built.result, models, kept)
    nodes: dict[str, int] = {}
    for node in built.result.nodes:
        nodes[node.status] = nodes.get(node.status, 0) + 1
    return BuildOutcome(
        build_id=built.point.build_id,
        scope=built.point.scope,
        seconds=round(time.perf_counter() - t0, 3),
        nodes=nodes,
        steps=steps,
        held={str(h.run_id): {"clan_tag": h.clan_tag, "tests": h.tests} for h in held.values()},
    )


def _manifest(ctx: RunContext) -> Path:
    """dbt's manifest of the last parse (the models a restore point covers)."""
    return ctx.home / "dbt" / "target" / "manifest.json"


def _open_restore_point(ctx: RunContext, runs: list[ClanRun]) -> restore.RestorePoint:
    """Roll back what a stopped process left, then open this build's restore point."""
    for report in restore.roll_back_abandoned(ctx.db_url):
        log().warning(
            "rolled back dbt build %s left running by a stopped process (%d relation(s))",
            report.build_id,
            len(report.restored),
        )
    project_hash = restore.project_fingerprint(ctx.project_dir)
    scope = "incremental" if restore.last_full_build(ctx.db_url, project_hash) else "full"
    return restore.open_restore_point(
        ctx.db_url,
        build_id=uuid.uuid4(),
        scope=scope,
        project_hash=project_hash,
        models=restore.dbt_models(_manifest(ctx)),
        run_ids=[r.run_id for r in runs],
        clan_tags=[r.clan_tag for r in runs],
    )


def _build(ctx: RunContext, runs: list[ClanRun], phase: PhaseAttempt) -> isolation.IsolatedBuild:
    """dbt, isolated per clan; a build that still fails was rolled back and raises."""
    from clash_pipeline.transform.dbt import DbtRunError, run_dbt

    def run(point: restore.RestorePoint) -> DbtResult:
        args = dbt_arguments(point.scope, ctx.options.transform_mode)
        if not ctx.options.dbt_verbose:
            args.append("--quiet")
        return run_dbt(
            args,
            db_url=restore.build_database_url(ctx.db_url, point.build_id),
            home=ctx.home,
            vars=ctx.options.dbt_vars or None,
            project_dir=ctx.project_dir,
        )

    built = isolation.build_isolated(
        ctx.db_url,
        open_point=lambda: _open_restore_point(ctx, runs),
        run=run,
        manifest=_manifest(ctx),
    )
    if built.ok:
        return built
    result = built.result
    phase.failure_details = {
        "restored": True,
        "failed_nodes": [
            {"node": n.name, "type": n.resource_type, "status": n.status} for n in result.failed
        ][:20],
    }
    message = result.error_summary or "dbt build failed"
    if built.data_tests_only:
        phase.failure_details["not_isolated"] = built.not_isolated
        message += f" (not isolated to a clan: {built.not_isolated})"
    raise DbtRunError(
        message, hint="see the dbt log under <home>/dbt/logs for the full error", result=result
    )


def _step_results(
    ctx: RunContext,
    point: restore.RestorePoint,
    result: DbtResult,
    models: dict[tuple[str, str], restore.ModelInfo],
    runs: list[ClanRun],
) -> dict[str, list[StepResult]]:
    by_name = {name: (schema, name) for (schema, name) in models}
    steps: dict[str, list[StepResult]] = {run.clan_tag: [] for run in runs}
    for step, model in TRANSFORM_STEPS:
        try:
            node = result.node(model)
        except KeyError:
            for run in runs:
                steps[run.clan_tag].append(StepResult(step, model, "skipped"))
            continue
        location = by_name.get(model)
        counts = (
            restore.count_changes(ctx.db_url, point, *location)
            if node.status == "success" and location
            else {}
        )
        for run in runs:
            count = counts.get(run.clan_tag)
            steps[run.clan_tag].append(
                StepResult(
                    step=step,
                    model=model,
                    status="succeeded" if node.status == "success" else node.status,
                    seconds=node.execution_time,
                    rows_written=count.written if count else 0,
                    rows_changed=count.changed if count else 0,
                    rows_affected=node.rows_affected,
                )
            )
    return steps


def _record_success(
    phase: PhaseAttempt, runs: list[ClanRun], outcome: BuildOutcome, result: DbtResult
) -> None:
    """Per run: the transform row, then one row per mart step (a held run: why it was held)."""
    db_ms = round(sum(n.execution_time for n in result.nodes) * 1000)
    for run, recorder in zip(runs, phase.recorders, strict=True):
        details = {
            "build_id": str(outcome.build_id),
            "scope": outcome.scope,
            "nodes": outcome.nodes,
            "batch_clans": len(runs),
        }
        hold = outcome.held.get(str(run.run_id))
        if hold is not None:
            phase.record(recorder, status="held", db_time_ms=db_ms, details=details | hold)
            continue
        steps = outcome.steps.get(run.clan_tag, [])
        phase.record(
            recorder,
            rows_written=sum(s.rows_written or 0 for s in steps),
            rows_changed=sum(s.rows_changed or 0 for s in steps),
            db_time_ms=db_ms,
            details=details,
        )
        for step in steps:
            _record_step(phase, recorder, step)


def _record_step(phase: PhaseAttempt, recorder: RunRecorder, step: StepResult) -> None:
    ms = round(step.seconds * 1000)
    phase.record(
        recorder,
        step=step.step,
        status=step.status if step.status in ("succeeded", "skipped") else "failed",
        duration_ms=ms,
        rows_written=step.rows_written,
        rows_changed=step.rows_changed,
        db_time_ms=ms,
        details={"model": step.model, "rows_affected_batch": step.rows_affected}
        if step.status != "skipped"
        else {"model": step.model, "reason": f"no dbt model named {step.model} (yet)"},
    )


def defer_transform(ctx: RunContext, runs: list[ClanRun]) -> None:
    """Record that this run leaves the marts to a later run (``build_marts=False``)."""
    phase = PhaseAttempt("transform", [ctx.recorder(run) for run in runs])
    for recorder in phase.recorders:
        phase.record(
            recorder,
            status="skipped",
            details={"reason": "build_marts is off: the next run that builds catches up"},
        )


def note_built(runs: list[ClanRun], outcome: BuildOutcome) -> None:
    for run in runs:
        hold = outcome.held.get(str(run.run_id))
        if hold is not None:
            run.hold(hold["tests"])
        for step in outcome.steps.get(run.clan_tag, []):
            if step.step == "upsert_members":
                run.rows_changed = step.rows_changed
        run.phase_ms["transform"] = round(outcome.seconds * 1000)


def publish(ctx: RunContext, outcome: BuildOutcome) -> None:
    """Keep what the build wrote: readers see it from now on (``marts_build`` to ``marts``)."""
    report = restore.publish(ctx.as_transform().db_url, outcome.build_id)
    log().info(
        "published build %s in %.2f s: %d incremental, %d replaced, %d recreated, "
        "%d row(s) deleted, %d inserted",
        outcome.build_id,
        report.seconds,
        len(report.incremental),
        len(report.replaced),
        len(report.recreated),
        report.rows_deleted,
        report.rows_inserted,
    )


def roll_back(ctx: RunContext, outcome: BuildOutcome, error: dict[str, Any]) -> None:
    """Put every mart back as it was before the run."""
    report = restore.roll_back(ctx.as_transform().db_url, outcome.build_id, error=error)
    log().warning(
        "run failed after dbt: restored %d relation(s) as they were before the run",
        len(report.restored),
    )
