"""Turning the checkpoint's validation results into one finding per clan and check.

GX reports a failed expectation with the rows that broke it
(``unexpected_index_list``, keyed by ``clan_tag`` and ``subject``); each row
becomes a :class:`FailureRow` of its clan's finding. An expectation that raised
inside GX is an *error* of its check instead: no finding is made for that
check, so its alerts stay as they were.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, NotRequired, TypedDict

from clash_pipeline.monitor.alerts import Finding
from clash_pipeline.monitor.checks import CHECKS, CHECKS_BY_NAME, Check
from clash_pipeline.warehouse.connect import scrub

__all__ = ["CheckResults", "FailureRow", "findings_for", "read_results"]

#: How much of a failure's detail an alert keeps.
_MAX_ERROR_CHARS = 500
_MAX_FAILURES_KEPT = 20


class FailureRow(TypedDict):
    """One row that broke an expectation, as ``ops.alerts.details`` stores it."""

    column: str | None
    subject: Any
    value: Any
    bound: float | None
    side: str  # "min" or "max": which bound the value crossed
    note: NotRequired[str]


@dataclass
class CheckResults:
    """What the checkpoint said: the failing rows by (clan, check), the checks that errored."""

    failures: dict[tuple[str, str], list[FailureRow]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def read_results(run_results: Iterable[Any], db_url: str) -> CheckResults:
    """Collect the failures and errors of every validation of a checkpoint run."""
    results = CheckResults()
    for validation in run_results:
        check = _check_of(validation.suite_name)
        if check is None:
            continue
        for item in validation.results:
            _read_expectation(results, check, item, db_url)
    return results


def _read_expectation(results: CheckResults, check: Check, item: Any, db_url: str) -> None:
    info = item.exception_info or {}
    if info.get("raised_exception"):
        message = scrub(str(info.get("exception_message")), db_url)
        results.errors[check.name] = message[:_MAX_ERROR_CHARS]
        return
    kwargs = item.expectation_config.kwargs
    column = kwargs.get("column")
    for found in (item.result or {}).get("unexpected_index_list") or []:
        row = {key: _plain(value) for key, value in found.items()}
        bound, side = _bound(kwargs, row.get(column))
        failure = FailureRow(
            column=column, subject=row.get("subject"), value=row.get(column), bound=bound, side=side
        )
        results.failures.setdefault((row["clan_tag"], check.name), []).append(failure)


def findings_for(
    clans: list[str],
    results: CheckResults,
    *,
    params: dict[str, float],
    clans_with_runs: set[str],
    run_ids: Mapping[str, uuid.UUID | None],
) -> list[Finding]:
    """One finding per clan and check that ran (freshness: a clan with no run at all fails)."""
    findings: list[Finding] = []
    for clan in clans:
        for check in CHECKS:
            if check.name in results.errors:
                continue
            rows = results.failures.get((clan, check.name), [])
            if check.name == "freshness" and clan not in clans_with_runs:
                rows = [_never_ran(clan, params)]
            findings.append(_finding(clan, check, rows, params, run_ids.get(clan)))
    return findings


def _never_ran(clan: str, params: dict[str, float]) -> FailureRow:
    return FailureRow(
        column="hours_since_success",
        subject=clan,
        value=None,
        bound=params["freshness_hours"],
        side="max",
        note="no run of this clan at all",
    )


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
    rows: list[FailureRow],
    params: dict[str, float],
    run_id: uuid.UUID | None,
) -> Finding:
    if not rows:
        return Finding(clan, check.name, check.severity, passed=True, run_id=run_id)
    first = rows[0]
    value = first["value"]
    return Finding(
        clan_tag=clan,
        check_name=check.name,
        severity=check.severity,
        passed=False,
        summary=_summary(clan, check, rows),
        observed_value=float(value) if isinstance(value, int | float) else None,
        threshold=first["bound"],
        details={
            "title": check.title,
            "failures": rows[:_MAX_FAILURES_KEPT],
            "failure_count": len(rows),
            "parameters": {k: params[k] for k in sorted(params)},
        },
        run_id=run_id,
    )


def _summary(clan: str, check: Check, rows: list[FailureRow]) -> str:
    """``title: column = value (above bound) for subject; n more``: the first failure says it."""
    first = rows[0]
    summary = f"{check.title}: {first['column']} = {_fmt(first['value'])}"
    if first["bound"] is not None:
        summary += f" ({'below' if first['side'] == 'min' else 'above'} {_fmt(first['bound'])})"
    if first["subject"] and first["subject"] != clan:
        summary += f" for {first['subject']}"
    if len(rows) > 1:
        summary += f"; {len(rows) - 1} more"
    return summary


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
