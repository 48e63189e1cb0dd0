"""Prefect entrypoints of the ingestion flows (``prefect.yaml``: ``flows/ingest.py:ingest``).

The flows are defined in :mod:`clash_pipeline.orchestration.flows`, so that the
installed package (``clash-pipeline run``/``serve``) and ``prefect deploy`` run
the very same flow objects; this file only names them for Prefect.
"""

from clash_pipeline.orchestration.flows import ingest, ingest_clan

__all__ = ["ingest", "ingest_clan"]
