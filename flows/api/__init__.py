"""The read-only roster API, its dashboard and a small caching client.

* :func:`flows.api.app.create_app`: the FastAPI app (``clash-pipeline api``).
* :class:`flows.api.client.RosterClient`: an on-disk, version-keyed client.
"""

from __future__ import annotations

__all__ = ["RosterClient", "create_app"]


def __getattr__(name: str):  # lazy: the client must not import FastAPI
    if name == "create_app":
        from flows.api.app import create_app

        return create_app
    if name == "RosterClient":
        from flows.api.client import RosterClient

        return RosterClient
    raise AttributeError(name)
