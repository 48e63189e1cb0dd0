"""Prefect entrypoint of the fan-out flow (``prefect.yaml``: ``flows/fanout.py:ingest_fanout``).

The flow is defined in :mod:`clash_pipeline.orchestration.fanout` (see ``flows/ingest.py``).
"""

from clash_pipeline.orchestration.fanout import ingest_fanout

__all__ = ["ingest_fanout"]
