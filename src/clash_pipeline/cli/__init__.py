"""The ``clash-pipeline`` command line."""

from clash_pipeline.cli.main import app, main

__all__ = ["app", "main"]
