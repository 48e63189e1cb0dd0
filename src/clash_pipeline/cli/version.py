"""``clash-pipeline version``: the release and the warehouse schema it writes."""

from __future__ import annotations

from clash_pipeline.cli.output import out

__all__ = ["version"]


def version() -> None:
    """Print the pipeline version and the warehouse schema version."""
    from clash_pipeline.versions import ingestion_version, schema_version

    out.print(f"clash-pipeline {ingestion_version()} (schema {schema_version()})")
