"""Prefect entrypoint of the scheduled monitor.

``prefect.yaml``: ``flows/monitor.py:monitor_ingestion``.

The flow is defined in :mod:`clash_pipeline.orchestration.flows` (see ``flows/ingest.py``).
"""

from clash_pipeline.orchestration.flows import monitor_ingestion

__all__ = ["monitor_ingestion"]
