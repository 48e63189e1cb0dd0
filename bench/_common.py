"""What the benchmarks share: a warehouse of their own, stopped when they end.

:func:`temporary_warehouse` makes a temporary ``CLASH_PIPELINE_HOME`` and starts a fresh
embedded PostgreSQL in it through :func:`clash_pipeline.warehouse.access.resolve_access`
(the four least-privilege logins, README "Least privilege"), migrated as the owner. The
user's configured warehouse is never touched: ``DATABASE_URL`` and the per-job URLs are
emptied for this process and its children (an empty value counts as unset, also over
``.env``), so the Prefect flow, the API and dbt started by a benchmark find the temporary
server too. The server is stopped when the block ends, also on an error or Ctrl-C (SIGINT).

Import it as ``from bench._common import temporary_warehouse`` after putting the
repository root on ``sys.path`` (benchmarks run as ``uv run python bench/X.py``).
"""

from __future__ import annotations

import os
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from clash_pipeline.settings import Settings, load_settings
from clash_pipeline.warehouse.access import DatabaseAccess, resolve_access
from clash_pipeline.warehouse.embedded import EmbeddedPostgres
from clash_pipeline.warehouse.migrations import migrate

#: Emptied while a benchmark runs: the user's warehouse is not the benchmark's.
_DATABASE_VARIABLES = (
    "DATABASE_URL",
    "INGEST_DATABASE_URL",
    "TRANSFORM_DATABASE_URL",
    "API_DATABASE_URL",
)


@dataclass(frozen=True)
class Warehouse:
    """The benchmark's home, its settings and the URL of each job (owner, ingest, ...)."""

    home: Path
    settings: Settings
    access: DatabaseAccess


@contextmanager
def temporary_warehouse(
    prefix: str, *, home: Path | None = None, prefect: bool = False, keep: bool = False
) -> Iterator[Warehouse]:
    """A fresh embedded PostgreSQL in a temporary home (or in ``home``), started and migrated.

    ``prefect``: Prefect's state goes to the home too (benchmarks that run the flow).
    ``keep``: leave the server running at the end (a ``home`` the user wants to reuse).
    """
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        root = (home or Path(tmp)).resolve()
        os.environ["CLASH_PIPELINE_HOME"] = str(root)
        for name in _DATABASE_VARIABLES:
            os.environ[name] = ""
        if prefect:
            from clash_pipeline.orchestration.runtime import configure_prefect

            configure_prefect(root, quiet=True)
        settings = load_settings(clash_pipeline_home=root)
        try:
            access = resolve_access(settings)  # starts the embedded server in the home
            migrate(access.owner)
            yield Warehouse(root, settings, access)
        finally:
            if not keep:
                _stop(root)


def _stop(home: Path) -> None:
    """Stop the home's server; a second Ctrl-C meanwhile (``uv run`` forwards SIGINT to its
    child when no terminal sent it) must not leave it running."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        EmbeddedPostgres(home).stop()
    finally:
        signal.signal(signal.SIGINT, previous)
