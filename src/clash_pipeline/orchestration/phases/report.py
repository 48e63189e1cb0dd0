"""The summary table of a flow run: one row per clan run, for the artifact and the terminal."""

from __future__ import annotations

from typing import Any

from clash_pipeline.orchestration.model import IngestReport


def report_rows(report: IngestReport) -> list[dict[str, Any]]:
    """The summary table (one row per clan run) for the artifact and the terminal."""
    rows = []
    for run in report.runs:
        error = run.error or {}
        rows.append(
            {
                "clan": run.clan_tag,
                "status": run.status,
                "requests": run.requests,
                "failed requests": run.failed_requests,
                "dropped": run.dropped_requests,
                "retries": run.retries,
                "members": run.members,
                "members changed": run.rows_changed if run.rows_changed is not None else "",
                "fetch s": _seconds(run.phase_ms.get("fetch")),
                "land s": _seconds(run.phase_ms.get("land")),
                "transform s": _seconds(run.phase_ms.get("transform")),
                "monitor s": _seconds(run.phase_ms.get("monitor")),
                "error": f"{error.get('phase', '')}: {error.get('message', '')}" if error else "",
                "run id": str(run.run_id),
            }
        )
    return rows


def _seconds(ms: int | None) -> str:
    return "" if ms is None else f"{ms / 1000:.2f}"
