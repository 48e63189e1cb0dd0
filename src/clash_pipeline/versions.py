"""Version stamps written with every run and snapshot."""

from __future__ import annotations

from functools import cache
from importlib.metadata import PackageNotFoundError, version

import yaml

from clash_pipeline.project import dbt_project_file


def ingestion_version() -> str:
    """The pipeline release that produced a run (the package version)."""
    try:
        return version("clash-pipeline")
    except PackageNotFoundError:  # running from a source tree without install
        return "0.0.0+unknown"


@cache
def schema_version() -> str:
    """The warehouse schema version: the ``schema_version`` var of dbt_project.yml.

    One value names the shape of the marts for the pipeline (ops.ingest_runs),
    for dbt (roster_snapshots.schema_version, payload_version) and for the API;
    bump it in dbt_project.yml when a public mart changes shape.
    """
    project = yaml.safe_load(dbt_project_file().read_text(encoding="utf-8"))
    return str(project["vars"]["schema_version"])
