"""The summary of a flow run: one row per clan run, and what happened to each clan's marts.

One build serves every clan of a batch, so a batch can end with one clan's
marts updated and another's untouched: :func:`marts_outcome` says which, per
clan, for the artifact and the terminal (never a blanket "nothing changed").
"""

from __future__ import annotations

from typing import Any

from clash_pipeline.orchestration.model import ClanRun, IngestReport

#: The words of a clan whose marts this run did not change.
UNCHANGED = "as they were before the run"


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
                "skipped": sum(run.skipped.values()),
                "retries": run.retries,
                "members": run.members,
                "members changed": run.rows_changed if run.rows_changed is not None else "",
                "fetch s": _seconds(run.phase_ms.get("fetch")),
                "land s": _seconds(run.phase_ms.get("land")),
                "transform s": _seconds(run.phase_ms.get("transform")),
                "monitor s": _seconds(run.phase_ms.get("monitor")),
                "marts": marts_outcome(run, report),
                "error": f"{error.get('phase', '')}: {error.get('message', '')}" if error else "",
                "run id": str(run.run_id),
            }
        )
    return rows


def marts_outcome(run: ClanRun, report: IngestReport) -> str:
    """What this run did to the clan's marts, in words.

    ``updated`` when the clan's responses were landed and the batch's build was
    published; otherwise :data:`UNCHANGED` with the reason.
    """
    phase = (run.error or {}).get("phase", "?")
    if report.build is not None and run.landed and run.status != "held":
        if run.status == "succeeded":
            return "updated"
        return f"updated by the build, although the run {run.status} ({phase})"
    if run.status in ("skipped", "held"):
        return f"{UNCHANGED} ({_not_built(run)})"
    if run.status == "succeeded":
        return f"{UNCHANGED} (landed in raw; not built in this run)"
    if run.landed:
        return (
            f"{UNCHANGED} ({phase} failed; its responses stay in raw and the next run builds them)"
        )
    return f"{UNCHANGED} ({phase} failed before anything was landed)"


def _not_built(run: ClanRun) -> str:
    """Why a skipped or held run's clan was not built."""
    if run.status == "skipped":
        return "skipped: another run holds the clan"
    tests = ", ".join(str(t["test"]) for t in (run.error or {}).get("tests", []))
    return (
        f"held back: its data failed {tests}; see ops.held_runs, then "
        f"clash-pipeline build --release '{run.clan_tag}'"
    )


def marts_summary(report: IngestReport) -> str:
    """One line: every clan's :func:`marts_outcome`."""
    return "; ".join(f"{run.clan_tag} {marts_outcome(run, report)}" for run in report.runs)


def _seconds(ms: int | None) -> str:
    return "" if ms is None else f"{ms / 1000:.2f}"
