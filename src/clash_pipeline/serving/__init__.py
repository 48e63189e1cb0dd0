"""The read-only roster API, its dashboard and a small caching client.

* :func:`clash_pipeline.serving.app.create_app`: the FastAPI app (``clash-pipeline api``),
  built from :mod:`~clash_pipeline.serving.routers` (one per resource),
  :mod:`~clash_pipeline.serving.caching`, :mod:`~clash_pipeline.serving.errors` and
  :mod:`~clash_pipeline.serving.queries`.
* :class:`clash_pipeline.serving.client.RosterClient`: an on-disk, version-keyed client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clash_pipeline.serving.app import create_app
    from clash_pipeline.serving.client import RosterClient

__all__ = ["RosterClient", "create_app"]


def __getattr__(name: str) -> Any:  # lazy: the client must not import FastAPI
    if name == "create_app":
        from clash_pipeline.serving.app import create_app

        return create_app
    if name == "RosterClient":
        from clash_pipeline.serving.client import RosterClient

        return RosterClient
    raise AttributeError(name)
