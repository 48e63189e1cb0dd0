"""The committed Great Expectations file context (``gx/``), written from code.

:func:`write_context` (re)writes the data source, the query assets, the suites,
the validation definitions and the ``clash_monitor`` checkpoint from
:data:`clash_pipeline.monitor.checks.CHECKS`; ``uv run clash-pipeline monitor
--write-gx`` runs it. The data source's connection string is the config
variable ``${CLASH_GX_DATABASE_URL}``: it is filled in at run time from the
pipeline's database URL (never written to ``gx/``).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from clash_pipeline.monitor.checks import CHECKS, Check
from clash_pipeline.project import gx_context_dir

DATASOURCE = "warehouse"
CHECKPOINT = "clash_monitor"
BATCH = "all rows"
URL_VARIABLE = "CLASH_GX_DATABASE_URL"
RESULT_FORMAT = {
    "result_format": "COMPLETE",
    "unexpected_index_column_names": ["clan_tag", "subject"],
}
#: What :func:`write_context` owns in the folder (``uncommitted/`` is left alone).
_OWNED = ("great_expectations.yml", "expectations", "validation_definitions", "checkpoints")


def gx_dir(configured: Path | None, home: Path) -> Path:
    """The GX context to run: ``CLASH_GX_DIR``, else the project's ``gx/`` (see ``project``)."""
    return gx_context_dir(configured, home)


def open_context(root: Path, db_url: str) -> Any:
    """The file context in ``root``, its data source pointed at ``db_url``."""
    import great_expectations as gx

    return gx.get_context(
        mode="file",
        context_root_dir=str(root),
        runtime_environment={URL_VARIABLE: _sqlalchemy_url(db_url)},
    )


def write_context(root: Path, db_url: str) -> Any:
    """(Re)write the context in ``root`` from the checks; returns it."""
    import great_expectations as gx

    # Imported from the defining modules: the package __init__s do not re-export them for mypy.
    from great_expectations.checkpoint.actions import UpdateDataDocsAction

    root.mkdir(parents=True, exist_ok=True)
    for name in _OWNED:
        path = root / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    context = open_context(root, db_url)
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    context.variables.analytics_enabled = False  # nothing leaves this machine
    context.variables.save()
    source = context.data_sources.add_postgres(
        name=DATASOURCE, connection_string="${" + URL_VARIABLE + "}"
    )
    definitions = []
    for check in CHECKS:
        asset = source.add_query_asset(name=check.asset_name, query=check.query)
        batch = asset.add_batch_definition_whole_table(BATCH)
        suite = context.suites.add(_suite(check))
        definitions.append(
            context.validation_definitions.add(
                gx.ValidationDefinition(name=check.name, data=batch, suite=suite)
            )
        )
    context.checkpoints.add(
        gx.Checkpoint(
            name=CHECKPOINT,
            validation_definitions=definitions,
            actions=[UpdateDataDocsAction(name="update_data_docs")],
            result_format=RESULT_FORMAT,
        )
    )
    return context


def _suite(check: Check) -> Any:
    import great_expectations as gx
    from great_expectations.expectations.core.expect_column_values_to_be_between import (
        ExpectColumnValuesToBeBetween,
    )

    def bound(value: float | str | None) -> Any:
        return {"$PARAMETER": value} if isinstance(value, str) else value

    expectations = []
    for item in check.expectations:
        kwargs: dict[str, Any] = {"column": item.column}
        if item.min_value is not None:
            kwargs["min_value"] = bound(item.min_value)
        if item.max_value is not None:
            kwargs["max_value"] = bound(item.max_value)
        if item.strict_max:
            kwargs["strict_max"] = True
        expectations.append(ExpectColumnValuesToBeBetween(**kwargs, meta={"check": check.name}))
    return gx.ExpectationSuite(
        name=check.suite_name,
        expectations=expectations,
        meta={"check": check.name, "severity": check.severity, "title": check.title},
    )


def _sqlalchemy_url(db_url: str) -> str:
    """psycopg (v2, what SQLAlchemy's postgresql:// uses) understands the libpq URL as is."""
    if db_url.startswith("postgres://"):
        return "postgresql://" + db_url.removeprefix("postgres://")
    return db_url
