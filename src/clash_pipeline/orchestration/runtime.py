"""Prefect's environment for the command line: local state, offline, quiet.

Call :func:`configure_prefect` before Prefect is imported (Prefect reads its
settings and sets up logging at import time):

* ``PREFECT_HOME`` defaults to ``<CLASH_PIPELINE_HOME>/prefect``, so a fresh
  machine keeps Prefect's local state (its SQLite database, used by the
  temporary server that runs flows when no ``PREFECT_API_URL`` is set) beside the
  embedded PostgreSQL instead of in ``~/.prefect``;
* nothing is sent anywhere: Prefect's anonymous telemetry is off
  (``DO_NOT_TRACK``, ``PREFECT_SERVER_ANALYTICS_ENABLED``), so the temporary
  server works offline;
* the temporary server gets enough time to start on a small machine;
* ``quiet``: Prefect logs warnings and errors only (the command prints its own
  progress and summary).

Values already in the environment always win.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

__all__ = ["configure_prefect", "quiet_console_tracebacks"]

_EPHEMERAL_STARTUP_SECONDS = "120"


def configure_prefect(home: Path, *, quiet: bool = True) -> dict[str, str]:
    """Set Prefect's environment defaults; return what was set."""
    defaults = {
        "PREFECT_HOME": str(Path(home) / "prefect"),
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": _EPHEMERAL_STARTUP_SECONDS,
        # The run summary is the pipeline's own artifact; flow results need no storage.
        "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "false",
    }
    if quiet:
        defaults |= {
            "PREFECT_LOGGING_LEVEL": "WARNING",
            "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
        }
    applied: dict[str, str] = {}
    for name, value in defaults.items():
        if not os.environ.get(name):
            os.environ[name] = value
            applied[name] = value
    Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)
    return applied


class _ExpectedErrorsWithoutTraceback(logging.Filter):
    """Drop the stack trace of expected failures from console lines (the UI keeps it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and _expected(exc):
            record.exc_info = None
            record.exc_text = None
        return True


def _expected(exc: BaseException) -> bool:
    import psycopg

    from clash_pipeline.errors import ClashPipelineError

    return isinstance(exc, ClashPipelineError | psycopg.Error)


def quiet_console_tracebacks() -> None:
    """Console log lines of expected failures (bad tag, dbt failed, DB down) without traces.

    Call after Prefect is imported (it installs its console handler on the root logger).
    """
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _ExpectedErrorsWithoutTraceback) for f in handler.filters):
            handler.addFilter(_ExpectedErrorsWithoutTraceback())
