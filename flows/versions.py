"""Version stamps written with every run and snapshot."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def ingestion_version() -> str:
    """The pipeline release that produced a run (the package version)."""
    try:
        return version("clash-pipeline")
    except PackageNotFoundError:  # running from a source tree without install
        return "0.0.0+unknown"
