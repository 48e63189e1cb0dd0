"""One monitor run: the GX checkpoint for some clans, then their alerts.

:func:`run_monitor` is what the pipeline's monitor phase (the clans of the
run), the scheduled ``clash-monitor`` flow and ``clash-pipeline monitor`` (all
clans) call. It computes the expectation parameters in SQL, runs the
``clash_monitor`` checkpoint of the GX context (which also updates the Data
Docs), turns each failed expectation into a finding for the clan it names
(``unexpected_index_list``) and applies the findings to ``ops.alerts``.

An expectation that raised inside GX (e.g. a mart missing) is an *error* of
that check, not a finding: the check's alerts stay as they were, and the
error is reported in :attr:`MonitorReport.errors`.
"""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from clash_pipeline.errors import ClashPipelineError
from clash_pipeline.monitor.alerts import AlertChange, Finding, apply_findings, post_webhook
from clash_pipeline.monitor.checks import CHECKS, CHECKS_BY_NAME, Check, expectation_parameters
from clash_pipeline.monitor.context import CHECKPOINT, DATASOURCE, gx_dir, open_context
from clash_pipeline.settings import Settings
from clash_pipeline.warehouse.connect import connect, scrub

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
) -> MonitorReport:
    """Run the checkpoint for ``clan_tags`` (default: COC_CLAN_TAGS, else every clan seen).

    ``run_ids`` names the run each clan's alerts are attributed to (the
    pipeline's current runs); otherwise each clan's latest run. ``overrides``
    replaces expectation parameters (e.g. ``freshness_hours``).
    """
    t0 = time.perf_counter()
    with connect(db_url, autocommit=True) as conn:
        if conn.execute("select to_regclass('marts.ingest_run_health')").fetchone()[0] is None:
            raise ClashPipelineError(
                "the warehouse has no marts.ingest_run_health yet: nothing to monitor",
                hint="run the pipeline once (`clash-pipeline run`) or `clash-pipeline build`",
            )
        known = [
            r[0]
            for r in conn.execute(
                "select distinct clan_tag from marts.ingest_run_health order by 1"
            ).fetchall()
        ]
        clans = list(dict.fromkeys(clan_tags or settings.coc_clan_tags or known))
        latest = dict(
            conn.execute(
                """
                select distinct on (clan_tag) clan_tag, run_id from marts.ingest_run_health
                where status in ('succeeded', 'running') and is_landed
                order by clan_tag, started_at desc
                """
            ).fetchall()
        )
        params = expectation_parameters(conn, settings, [str(v) for v in latest.values()])
        params.update(overrides or {})
    root = gx_dir(settings.clash_gx_dir, settings.home)
    if not (root / "checkpoints" / f"{CHECKPOINT}.json").is_file():
        raise ClashPipelineError(
            f"no Great Expectations checkpoint {CHECKPOINT!r} in {root}",
            hint="run `clash-pipeline monitor --write-gx` to write the GX context",
        )
    g0 = time.perf_counter()
    prune_results(root)
    context = open_context(root, db_url)
    checkpoint = context.checkpoints.get(CHECKPOINT)
    try:
        result = checkpoint.run(expectation_parameters=params)
    finally:
        _close_engines(context, checkpoint)
    gx_seconds = time.perf_counter() - g0
    errors: dict[str, str] = {}
    failures: dict[tuple[str, str], list[dict[str, Any]]] = {}
    seen: dict[str, set[str]] = {}
    for validation in result.run_results.values():
        check = _check_of(validation.suite_name)
        if check is None:
            continue
        for item in validation.results:
            config = item.expectation_config
            kwargs = config.kwargs
            info = item.exception_info or {}
            if info.get("raised_exception"):
                errors[check.name] = scrub(str(info.get("exception_message")), db_url)[:500]
                continue
            column = kwargs.get("column")
            for found in (item.result or {}).get("unexpected_index_list") or []:
                row = {key: _plain(value) for key, value in found.items()}
                bound, side = _bound(kwargs, row.get(column))
                failures.setdefault((row["clan_tag"], check.name), []).append(
                    {
                        "column": column,
                        "subject": row.get("subject"),
                        "value": row.get(column),
                        "bound": bound,
                        "side": side,
                    }
                )
        seen[check.name] = set()
    # clans with rows in each check's asset (freshness: a clan with no run at all fails)
    with connect(db_url, autocommit=True) as conn:
        fresh_rows = {
            r[0] for r in conn.execute("select distinct clan_tag from marts.ingest_run_health")
        }
    findings: list[Finding] = []
    for clan in clans:
        for check in CHECKS:
            if check.name in errors:
                continue
            rows = failures.get((clan, check.name), [])
            if check.name == "freshness" and clan not in fresh_rows:
                rows = [
                    {
                        "column": "hours_since_success",
                        "subject": clan,
                        "value": None,
                        "bound": params["freshness_hours"],
                        "side": "max",
                        "note": "no run of this clan at all",
                    }
                ]
            findings.append(_finding(clan, check, rows, params, latest.get(clan), run_ids))
    with connect(db_url) as conn:
        changes = apply_findings(conn, findings)
    url = settings.clash_alert_webhook_url
    sent = post_webhook(url.get_secret_value() if url else None, changes)
    docs = root / DOCS_SITE / "index.html"
    report = MonitorReport(
        clans=clans,
        parameters=params,
        findings=findings,
        changes=changes,
        errors=errors,
        seconds=time.perf_counter() - t0,
        gx_seconds=gx_seconds,
        data_docs=docs if docs.is_file() else None,
        webhooks_sent=sent,
    )
    for name, message in errors.items():
        _log.error("monitor check %s could not run: %s", name, message)
    return report


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


def _check_of(suite_name: str | None) -> Check | None:
    return CHECKS_BY_NAME.get((suite_name or "").removeprefix("clash_"))


def _bound(kwargs: dict[str, Any], value: Any) -> tuple[float | None, str]:
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    if low is not None and value is not None and value < low:
        return float(low), "min"
    return (float(high) if high is not None else None), "max"


def _finding(
    clan: str,
    check: Check,
    rows: list[dict[str, Any]],
    params: dict[str, float],
    latest_run: Any,
    run_ids: dict[str, uuid.UUID] | None,
) -> Finding:
    run_id = (run_ids or {}).get(clan) or latest_run
    if not rows:
        return Finding(clan, check.name, check.severity, passed=True, run_id=run_id)
    first = rows[0]
    value = first["value"]
    summary = f"{check.title}: {first['column']} = {_fmt(value)}"
    if first["bound"] is not None:
        summary += f" ({'below' if first['side'] == 'min' else 'above'} {_fmt(first['bound'])})"
    if first["subject"] and first["subject"] != clan:
        summary += f" for {first['subject']}"
    if len(rows) > 1:
        summary += f"; {len(rows) - 1} more"
    return Finding(
        clan_tag=clan,
        check_name=check.name,
        severity=check.severity,
        passed=False,
        summary=summary,
        observed_value=float(value) if isinstance(value, int | float) else None,
        threshold=first["bound"],
        details={
            "title": check.title,
            "failures": rows[:20],
            "failure_count": len(rows),
            "parameters": {k: params[k] for k in sorted(params)},
        },
        run_id=run_id,
    )


def _plain(value: Any) -> Any:
    """JSON-able values for ops.alerts.details (numeric columns come back as Decimal)."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return "none" if value is None else str(value)
