"""One monitor run: the GX checkpoint for some clans, then their alerts.

:func:`run_monitor` is what the pipeline's monitor phase (the clans of the
run), the scheduled ``clash-monitor`` flow and ``clash-pipeline monitor`` (all
clans) call. It computes the expectation parameters in SQL, runs the
``clash_monitor`` checkpoint of the GX context (which also updates the Data
Docs), turns each failed expectation into a finding for the clan it names
(``unexpected_index_list``, see :mod:`clash_pipeline.monitor.findings`) and
applies the findings to ``ops.alerts``.

An expectation that raised inside GX (e.g. a mart missing) is an *error* of
that check, not a finding: the check's alerts stay as they were, and the
error is reported in :attr:`MonitorReport.errors`.
"""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from clash_pipeline.errors import ClashPipelineError
from clash_pipeline.monitor.alerts import AlertChange, Finding, apply_findings, post_webhook
from clash_pipeline.monitor.checks import expectation_parameters
from clash_pipeline.monitor.context import CHECKPOINT, DATASOURCE, gx_dir, open_context
from clash_pipeline.monitor.findings import findings_for, read_results
from clash_pipeline.monitor.held import held_findings
from clash_pipeline.settings import Settings
from clash_pipeline.transform.publish import PUBLISHED_SCHEMA
from clash_pipeline.warehouse.connect import connect, one_row, url_with_setting
from clash_pipeline.warehouse.leases import AbandonedRun, close_abandoned_runs

_log = logging.getLogger("clash_pipeline.monitor")

#: Validation results (and their Data Docs pages) kept in gx/uncommitted.
KEEP_RESULTS = timedelta(days=7)
DOCS_SITE = Path("uncommitted") / "data_docs" / "local_site"


@dataclass
class MonitorReport:
    clans: list[str]
    parameters: dict[str, float]
    findings: list[Finding]
    changes: list[AlertChange]
    errors: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    gx_seconds: float = 0.0
    data_docs: Path | None = None
    webhooks_sent: int = 0
    #: Runs of processes that had died, closed as failed before the checks.
    abandoned: list[AbandonedRun] = field(default_factory=list)

    @property
    def failing(self) -> list[Finding]:
        return [f for f in self.findings if not f.passed]

    def summary(self) -> dict[str, Any]:
        """A compact, JSON-able account (for ops.ingest_logs details and artifacts)."""
        return {
            "clans": self.clans,
            "failing": sorted(f"{f.clan_tag}:{f.check_name}" for f in self.failing),
            "opened": [c.alert_id for c in self.changes if c.change == "opened"],
            "still_open": [c.alert_id for c in self.changes if c.change == "still_open"],
            "resolved": [c.alert_id for c in self.changes if c.change == "resolved"],
            "errors": self.errors,
            "seconds": round(self.seconds, 3),
        }


def run_monitor(
    db_url: str,
    settings: Settings,
    clan_tags: list[str] | None = None,
    *,
    run_ids: dict[str, uuid.UUID] | None = None,
    overrides: dict[str, float] | None = None,
    marts_schema: str = PUBLISHED_SCHEMA,
) -> MonitorReport:
    """Run the checkpoint for ``clan_tags`` (default: COC_CLAN_TAGS, else every clan seen).

    ``run_ids`` names the run each clan's alerts are attributed to (the
    pipeline's current runs); otherwise each clan's latest run. ``overrides``
    replaces expectation parameters (e.g. ``freshness_hours``). The checks read
    the marts of ``marts_schema``: the published ``marts``, or, in a pipeline
    run, ``marts_build`` (the build being judged, not yet published).
    """
    t0 = time.perf_counter()
    abandoned = close_abandoned_runs(db_url)  # judge closed runs, not orphans "running"
    marts_url = url_with_setting(db_url, "search_path", marts_schema)
    scope = _read_scope(marts_url, settings, clan_tags, overrides or {})
    root = _checkpoint_root(settings)
    g0 = time.perf_counter()
    run_results = _run_checkpoint(root, marts_url, scope.params)
    gx_seconds = time.perf_counter() - g0
    results = read_results(run_results, marts_url)
    attributed = {c: (run_ids or {}).get(c) or scope.latest_runs.get(c) for c in scope.clans}
    findings = findings_for(
        scope.clans,
        results,
        params=scope.params,
        clans_with_runs=_clans_with_runs(marts_url),
        run_ids=attributed,
    )
    with connect(db_url) as conn:
        findings += held_findings(conn, scope.clans, attributed)  # runs held back (ops)
        changes = apply_findings(conn, findings)
    url = settings.clash_alert_webhook_url
    sent = post_webhook(url.get_secret_value() if url else None, changes)
    docs = root / DOCS_SITE / "index.html"
    for name, message in results.errors.items():
        _log.error("monitor check %s could not run: %s", name, message)
    return MonitorReport(
        clans=scope.clans,
        parameters=scope.params,
        findings=findings,
        changes=changes,
        errors=results.errors,
        seconds=time.perf_counter() - t0,
        gx_seconds=gx_seconds,
        data_docs=docs if docs.is_file() else None,
        webhooks_sent=sent,
        abandoned=abandoned,
    )


@dataclass
class _Scope:
    """What one monitor run judges: its clans, their latest runs and the expectation bounds."""

    clans: list[str]
    latest_runs: dict[str, uuid.UUID]
    params: dict[str, float]


def _read_scope(
    db_url: str, settings: Settings, clan_tags: list[str] | None, overrides: dict[str, float]
) -> _Scope:
    """The clans, their latest runs and the bounds (``db_url`` sets the marts' search_path)."""
    with connect(db_url, autocommit=True) as conn:
        if one_row(conn.execute("select to_regclass('ingest_run_health')"))[0] is None:
            raise ClashPipelineError(
                "the warehouse has no marts.ingest_run_health yet: nothing to monitor",
                hint="run the pipeline once (`clash-pipeline run`) or `clash-pipeline build`",
            )
        known = [
            r[0]
            for r in conn.execute(
                "select distinct clan_tag from ingest_run_health order by 1"
            ).fetchall()
        ]
        latest: dict[str, uuid.UUID] = dict(
            conn.execute(
                """
                select distinct on (clan_tag) clan_tag, run_id from ingest_run_health
                where status in ('succeeded', 'partial', 'running') and is_landed
                order by clan_tag, started_at desc
                """
            ).fetchall()
        )
        params = expectation_parameters(conn, settings, [str(v) for v in latest.values()])
    params.update(overrides)
    clans = list(dict.fromkeys(clan_tags or settings.coc_clan_tags or known))
    return _Scope(clans=clans, latest_runs=latest, params=params)


def _checkpoint_root(settings: Settings) -> Path:
    """The GX context to run, refusing one without the monitor's checkpoint."""
    root = gx_dir(settings.clash_gx_dir, settings.home)
    if not (root / "checkpoints" / f"{CHECKPOINT}.json").is_file():
        raise ClashPipelineError(
            f"no Great Expectations checkpoint {CHECKPOINT!r} in {root}",
            hint="run `clash-pipeline monitor --write-gx` to write the GX context",
        )
    return root


def _run_checkpoint(root: Path, db_url: str, params: dict[str, float]) -> Iterable[Any]:
    """Run the checkpoint (which also rebuilds the Data Docs); its validation results."""
    prune_results(root)
    context = open_context(root, db_url)
    checkpoint = context.checkpoints.get(CHECKPOINT)
    try:
        result = checkpoint.run(expectation_parameters=params)
    finally:
        _close_engines(context, checkpoint)
    return list(result.run_results.values())


def _clans_with_runs(db_url: str) -> set[str]:
    """Clans with any run at all (the freshness check fails a clan that has none)."""
    with connect(db_url, autocommit=True) as conn:
        return {r[0] for r in conn.execute("select distinct clan_tag from ingest_run_health")}


def prune_results(root: Path, keep: timedelta = KEEP_RESULTS) -> int:
    """Drop validation results (and their Data Docs pages) older than ``keep``.

    The checkpoint runs every half hour and with every ingestion run: without
    this, ``gx/uncommitted`` would grow by megabytes a day and the Data Docs
    index (rebuilt from every stored result) would slow every monitor run.
    """
    cutoff = datetime.now(UTC) - keep
    removed = 0
    for base in (root / "uncommitted" / "validations", root / DOCS_SITE / "validations"):
        for run_dir in base.glob("*/*/*"):
            try:
                run_at = datetime.strptime(run_dir.name, "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=UTC)
            except ValueError:
                continue
            if run_at < cutoff and run_dir.is_dir():
                shutil.rmtree(run_dir, ignore_errors=True)
                removed += 1
    return removed


def _close_engines(context: Any, checkpoint: Any) -> None:
    """Close GX's connection pools: no database session may outlive the monitor run."""
    sources = [context.data_sources.get(DATASOURCE)]
    sources += [vd.data.data_asset.datasource for vd in checkpoint.validation_definitions]
    for source in sources:
        for name, close in (("_execution_engine", "close"), ("_engine", "dispose")):
            engine = getattr(source, name, None)
            if engine is None:
                continue
            try:
                getattr(engine, close)()
            except Exception as exc:  # noqa: BLE001 - closing is best effort
                _log.debug("could not close a GX engine: %s", exc)
