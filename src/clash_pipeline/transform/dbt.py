"""Run dbt in-process against the warehouse.

:func:`run_dbt` calls ``dbt.cli.main.dbtRunner`` with everything a run needs
and nothing left in the repository:

* the profile is ``<home>/dbt/profiles.yml``, a copy of the repository's
  ``profiles.yml.example``, which reads ``CLASH_DB_HOST``/``PORT``/``USER``/
  ``PASSWORD``/``NAME``; those variables are filled in from the database URL for
  the duration of the invocation (libpq options such as ``sslmode`` go to the
  matching ``PG*`` variables, which psycopg2 reads);
* the target and log folders are ``<home>/dbt/target`` and ``<home>/dbt/logs``;
* ``CLASH_DBT_MANAGED=1`` tells the project's on-run-start hook that the caller
  owns the warehouse lock (a pipeline build, ``clash-pipeline dbt``, a test on
  its own database): a plain ``dbt build`` from a shell is refused.

dbt keeps global state (flags, adapters, logging), so two invocations must
never overlap in one process: a module lock serialises them. Across processes
and machines the orchestrator serialises dbt runs per warehouse.

``run_dbt`` returns a :class:`DbtResult` (per-node status, time and rows) even
when models or tests fail; :meth:`DbtResult.raise_for_status` turns a failed
run into a :class:`DbtRunError`. A dbt that cannot run at all (bad arguments,
a project that does not parse, an unreachable database) raises
:class:`DbtError` straight away. SIGTERM or SIGINT while dbt runs makes dbt
cancel its open queries and stop; ``run_dbt`` then raises
:class:`clash_pipeline.shutdown.Cancelled` (never a :class:`DbtError`, which
would be retried). Messages are one line and never contain the
database password.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from clash_pipeline import project, shutdown
from clash_pipeline.errors import ClashPipelineError
from clash_pipeline.warehouse.connect import scrub

__all__ = [
    "MANAGED_VARIABLE",
    "DbtError",
    "DbtNodeResult",
    "DbtResult",
    "DbtRunError",
    "analyst_env",
    "dbt_build",
    "dbt_env",
    "prepare_profiles",
    "run_dbt",
]


#: Set for clash-pipeline's own dbt invocations; the project's on-run-start hook
#: (macros/warehouse_guard.sql) refuses a dbt that writes the warehouse without it.
MANAGED_VARIABLE = "CLASH_DBT_MANAGED"

# dbt's flags, adapters and loggers are process-global: one invocation at a time.
_DBT_LOCK = threading.Lock()

# Connection options the profile does not carry, passed through libpq's
# environment variables (psycopg2, under dbt-postgres, is libpq).
_LIBPQ_ENV = {
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "options": "PGOPTIONS",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
}

# The Python logger dbt writes its console lines to (dbt_common's stdout config).
_DBT_CONSOLE_LOGGER = "stdout_log"

# Statuses of nodes that make a run unsuccessful.
_FAILED_STATUSES = frozenset({"error", "fail", "runtime error"})
_SUMMARY_ITEMS = 3
_MESSAGE_CHARS = 300


class DbtError(ClashPipelineError):
    """dbt could not run (bad arguments, unparsable project, unreachable database)."""

    def __init__(
        self, message: str, hint: str | None = None, result: DbtResult | None = None
    ) -> None:
        super().__init__(message, hint)
        self.result = result


class DbtRunError(DbtError):
    """dbt ran, but some models, tests or seeds failed; ``result`` has the details."""


@dataclass(frozen=True)
class DbtNodeResult:
    """One node of an invocation: a model, test, unit test, seed or snapshot."""

    unique_id: str
    name: str
    resource_type: str
    status: str
    execution_time: float
    rows_affected: int | None = None
    failures: int | None = None
    message: str | None = None
    #: Data tests: the SQL that returns the failing rows, the tested column and model
    #: (read to tell which clan's rows failed, :mod:`clash_pipeline.transform.isolation`).
    compiled_code: str | None = field(default=None, repr=False)
    column_name: str | None = None
    attached_node: str | None = None

    @property
    def failed(self) -> bool:
        return self.status in _FAILED_STATUSES


@dataclass
class DbtResult:
    """What one dbt invocation did."""

    args: list[str]
    success: bool
    nodes: list[DbtNodeResult] = field(default_factory=list)
    error_summary: str | None = None
    elapsed_seconds: float = 0.0

    @property
    def failed(self) -> list[DbtNodeResult]:
        return [n for n in self.nodes if n.failed]

    def node(self, name: str, resource_type: str = "model") -> DbtNodeResult:
        """The result of the node called ``name`` (a model unless told otherwise)."""
        for n in self.nodes:
            if n.name == name and n.resource_type == resource_type:
                return n
        raise KeyError(f"no {resource_type} named {name!r} in this dbt result")

    def raise_for_status(self) -> DbtResult:
        """Raise :class:`DbtRunError` when the invocation failed; return self otherwise."""
        if not self.success:
            raise DbtRunError(
                self.error_summary or f"dbt {self.args[0]} failed",
                hint="see the dbt log under <home>/dbt/logs for the full error",
                result=self,
            )
        return self


def prepare_profiles(home: Path, project_dir: Path | None = None) -> Path:
    """Copy ``profiles.yml.example`` to ``<home>/dbt/profiles.yml``; return the folder."""
    profiles_dir = Path(home) / "dbt"
    profiles_dir.mkdir(parents=True, exist_ok=True)
    template = (project_dir or project.project_dir()) / "profiles.yml.example"
    if not template.is_file():
        raise DbtError(
            f"dbt profile template {template} is missing",
            hint="reinstall clash-pipeline (it ships the template) or fix CLASH_PROJECT_DIR",
        )
    target = profiles_dir / "profiles.yml"
    text = template.read_text(encoding="utf-8")
    if not target.is_file() or target.read_text(encoding="utf-8") != text:
        target.write_text(text, encoding="utf-8")
    return profiles_dir


def dbt_env(db_url: str) -> dict[str, str]:
    """The environment variables the profile reads, taken from a URL or DSN."""
    try:
        params = conninfo_to_dict(db_url)
    except psycopg.Error:
        raise DbtError(
            "the database URL cannot be parsed",
            hint="use postgresql://USER:PASSWORD@HOST:PORT/DBNAME",
        ) from None
    user = str(params.get("user") or os.environ.get("PGUSER") or "postgres")
    env = {
        "CLASH_DB_HOST": str(params.get("host") or params.get("hostaddr") or "127.0.0.1"),
        "CLASH_DB_PORT": str(params.get("port") or "5432"),
        "CLASH_DB_USER": user,
        "CLASH_DB_PASSWORD": str(params.get("password") or ""),
        "CLASH_DB_NAME": str(params.get("dbname") or user),
    }
    for option, variable in _LIBPQ_ENV.items():
        if params.get(option):
            env[variable] = str(params[option])
    return env


#: libpq's own variables for the five the profile reads (psql, BI tools, psycopg)
_PG_ENV = {
    "CLASH_DB_HOST": "PGHOST",
    "CLASH_DB_PORT": "PGPORT",
    "CLASH_DB_USER": "PGUSER",
    "CLASH_DB_PASSWORD": "PGPASSWORD",
    "CLASH_DB_NAME": "PGDATABASE",
}


def analyst_env(db_url: str, home: Path, project_dir: Path | None = None) -> dict[str, str | None]:
    """What a shell needs for plain ``dbt`` and ``psql`` on this database (``db env``).

    The profile's ``CLASH_DB_*`` variables and libpq's ``PG*`` ones (options
    such as a role switch included), ``DBT_PROFILES_DIR`` at the profile the
    pipeline uses and ``DBT_PROJECT_DIR`` at the project; outside a checkout
    (the wheel's read-only copy) also dbt's target and log folders under
    ``<home>/dbt/shell``. None: a variable to unset (left by an earlier export
    for another database or login).
    """
    project_dir = project_dir or project.project_dir()
    env: dict[str, str | None] = dict.fromkeys(_LIBPQ_ENV.values())
    env.update(dbt_env(db_url))
    for name, variable in _PG_ENV.items():
        env[variable] = env[name]
    env["DBT_PROFILES_DIR"] = str(prepare_profiles(home, project_dir))
    env["DBT_PROJECT_DIR"] = str(project_dir)
    bundled = project_dir == project.BUNDLED_DIR
    shell_dir = Path(home) / "dbt" / "shell"
    env["DBT_TARGET_PATH"] = str(shell_dir / "target") if bundled else None
    env["DBT_LOG_PATH"] = str(shell_dir / "logs") if bundled else None
    return env


def run_dbt(
    args: Sequence[str],
    *,
    db_url: str,
    home: Path,
    full_refresh: bool = False,
    vars: Mapping[str, Any] | None = None,
    project_dir: Path | None = None,
) -> DbtResult:
    """Run one dbt command (``args`` as on the command line, without ``dbt``).

    Returns the per-node results, failed nodes included; raises :class:`DbtError`
    when dbt cannot run at all.
    """
    full_args = _command_line(args, full_refresh=full_refresh, vars=vars)
    project_dir = project_dir or project.project_dir()
    started = time.perf_counter()
    outcome = _invoke(full_args, db_url=db_url, home=Path(home), project_dir=project_dir)
    elapsed = time.perf_counter() - started
    if outcome.exception is not None:
        raise DbtError(
            f"dbt {full_args[0]} could not run: {_one_line(str(outcome.exception), db_url)}",
            hint="check the database URL and that the dbt project parses (dbt parse)",
        )
    nodes = _node_results(outcome.result, db_url)
    result = DbtResult(
        args=full_args,
        success=bool(outcome.success),
        nodes=nodes,
        elapsed_seconds=round(elapsed, 3),
    )
    if not result.success:
        result.error_summary = _summary(full_args[0], nodes)
    return result


def _command_line(
    args: Sequence[str], *, full_refresh: bool, vars: Mapping[str, Any] | None
) -> list[str]:
    if not args:
        raise DbtError("no dbt command given", hint="e.g. run_dbt(['build'], ...)")
    full_args = [str(a) for a in args]
    if full_refresh and "--full-refresh" not in full_args:
        full_args.append("--full-refresh")
    if vars:
        full_args += ["--vars", json.dumps(dict(vars), default=str)]
    return full_args


def _invoke(full_args: list[str], *, db_url: str, home: Path, project_dir: Path) -> Any:
    """dbt's ``dbtRunnerResult``: in-process, one invocation at a time, in dbt's environment."""
    from dbt.cli.main import dbtRunner  # dbt is slow to import: only when used

    profiles_dir = home / "dbt"
    env = dbt_env(db_url) | {
        "DBT_PROJECT_DIR": str(project_dir),
        "DBT_PROFILES_DIR": str(profiles_dir),
        "DBT_TARGET_PATH": str(profiles_dir / "target"),
        "DBT_LOG_PATH": str(profiles_dir / "logs"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "DBT_VERSION_CHECK": "false",
        "DBT_USE_COLORS": "false",
        # profiles.yml.example names dbt's sessions with it: a stop ends exactly these
        "CLASH_DB_APPLICATION_NAME": _application_name(),
        # macros/warehouse_guard.sql: the caller took care of the warehouse lock
        MANAGED_VARIABLE: "1",
    }
    with _DBT_LOCK, _environ(env):
        prepare_profiles(home, project_dir)
        try:
            # a signal now raises KeyboardInterrupt in dbt: it cancels its open queries
            with shutdown.blocking(on_stop=lambda: _on_stop(db_url)):
                outcome = dbtRunner().invoke(full_args)
        except shutdown.DbtInterrupt:
            outcome = None
        except Exception as exc:  # noqa: BLE001 - dbt's own crash, reported in one line
            raise DbtError(
                f"dbt {full_args[0]} crashed: {_one_line(str(exc), db_url)}",
                hint="see the dbt log under <home>/dbt/logs",
            ) from None
        finally:
            logging.getLogger(_DBT_CONSOLE_LOGGER).disabled = False
    # dbt returns an interrupt as a failed result: it is a stop request, not a dbt error
    shutdown.check()
    return outcome


def _on_stop(db_url: str) -> None:
    """Stopped by a signal: silence dbt's console, end its sessions' queries."""
    # dbt's console lines (cancelled nodes, a stack trace) say nothing new
    logging.getLogger(_DBT_CONSOLE_LOGGER).disabled = True
    _end_own_sessions(db_url)


def _application_name() -> str:
    """The ``application_name`` of this process's dbt sessions."""
    return f"clash-pipeline dbt {os.getpid()}"


_ROLE_OPTION = re.compile(r"-c\s*role=\S+")


def _end_own_sessions(db_url: str) -> None:
    """End the queries of this process's dbt sessions (a stop request).

    dbt cancels its own queries when interrupted, but as the job's role: when the
    job switches role from its login (``-c role=clash_transform`` on DATABASE_URL's
    user), PostgreSQL refuses, since a session belongs to its login, and dbt would
    wait for a long query to finish. This connection logs in as that same login
    without the switch, which may end them.
    """
    try:
        params = conninfo_to_dict(db_url)
        options = _ROLE_OPTION.sub("", str(params.get("options") or "")).strip()
        params["options"] = options or None
        with psycopg.connect(
            make_conninfo("", **params), autocommit=True, connect_timeout=5
        ) as conn:
            conn.execute(
                "select pg_terminate_backend(pid) from pg_stat_activity"
                " where application_name = %s and pid <> pg_backend_pid()",
                (_application_name(),),
            )
    except psycopg.Error:
        pass  # dbt's own cancel, then the restore point, still apply


def dbt_build(
    db_url: str,
    home: Path,
    full_refresh: bool = False,
    select: str | Sequence[str] | None = None,
    *,
    vars: Mapping[str, Any] | None = None,
) -> DbtResult:
    """``dbt build`` (optionally ``--select``), returning the per-node results."""
    args = ["build"]
    if select:
        args += ["--select", *([select] if isinstance(select, str) else list(select))]
    return run_dbt(args, db_url=db_url, home=home, full_refresh=full_refresh, vars=vars)


@contextmanager
def _environ(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of the block, then restore them."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def _node_results(result: Any, db_url: str) -> list[DbtNodeResult]:
    """Per-node results of commands that run nodes (build, run, test, seed, ...)."""
    items = getattr(result, "results", None)
    if not isinstance(items, list):
        return []
    nodes: list[DbtNodeResult] = []
    for item in items:
        node = getattr(item, "node", None)
        if node is None:
            continue
        status = getattr(item.status, "value", item.status)
        adapter_response = getattr(item, "adapter_response", None) or {}
        rows = adapter_response.get("rows_affected")
        message = getattr(item, "message", None)
        age = getattr(item, "age", None)  # source freshness: seconds since last load
        if not message and isinstance(age, int | float):
            message = f"{status}: last loaded {age / 3600:.1f} h ago"
        nodes.append(
            DbtNodeResult(
                unique_id=node.unique_id,
                name=node.name,
                resource_type=str(getattr(node.resource_type, "value", node.resource_type)),
                status=str(status).lower(),
                execution_time=round(float(getattr(item, "execution_time", 0.0) or 0.0), 3),
                rows_affected=rows if isinstance(rows, int) and rows >= 0 else None,
                failures=getattr(item, "failures", None),
                message=_one_line(str(message), db_url) if message else None,
                **_test_fields(node),
            )
        )
    return nodes


def _test_fields(node: Any) -> dict[str, Any]:
    """A data test's failing-rows SQL, tested column and model (nothing for other nodes)."""
    if str(getattr(node.resource_type, "value", node.resource_type)) != "test":
        return {}
    code, column, attached = (
        getattr(node, name, None) for name in ("compiled_code", "column_name", "attached_node")
    )
    return {
        "compiled_code": code if isinstance(code, str) else None,
        "column_name": column if isinstance(column, str) else None,
        "attached_node": attached if isinstance(attached, str) else None,
    }


def _summary(command: str, nodes: list[DbtNodeResult]) -> str:
    failed = [n for n in nodes if n.failed]
    if not failed:
        return f"dbt {command} failed (no failing node reported; see the dbt log)"
    parts = [f"{n.resource_type} {n.name} {n.status}: {n.message or 'no message'}" for n in failed]
    shown = "; ".join(parts[:_SUMMARY_ITEMS])
    more = len(parts) - _SUMMARY_ITEMS
    suffix = f"; and {more} more" if more > 0 else ""
    return f"dbt {command} failed, {len(failed)} node(s): {shown}{suffix}"


def _one_line(text: str, db_url: str) -> str:
    line = " ".join(part.strip() for part in text.strip().splitlines() if part.strip())
    line = scrub(line, db_url)
    if len(line) > _MESSAGE_CHARS:
        line = line[: _MESSAGE_CHARS - 1] + "…"
    return line
