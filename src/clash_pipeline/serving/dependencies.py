"""What the routers take from the app: its serving state and a clan parameter.

The state (the warehouse's connection pools, the body cache, the metric
catalogue) is built once by :func:`clash_pipeline.serving.app.create_app` and
kept on ``app.state``; a route asks for it with the :data:`Serving`
dependency instead of closing over it, so a router is a module of plain
functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request

from clash_pipeline.clash_api.tags import normalize_tag
from clash_pipeline.errors import InvalidTagError
from clash_pipeline.serving.caching import BodyCache
from clash_pipeline.serving.errors import ApiError
from clash_pipeline.serving.queries import Warehouse


@dataclass(frozen=True)
class ServingState:
    """Everything a request may need besides its parameters, built once per app."""

    warehouse: Warehouse
    bodies: BodyCache
    # metric name -> its windows (the dbt seed); empty when the seed is absent
    catalogue: dict[str, list[str]]
    # the roster mart's metric columns: column -> (metric, window)
    metric_columns: dict[str, tuple[str, str]]
    # hours without a successful run after which a clan is stale
    stale_hours: float


async def serving_state(request: Request) -> ServingState:
    # async: FastAPI runs it on the event loop, not in a worker thread
    state: ServingState = request.app.state.serving
    return state


Serving = Annotated[ServingState, Depends(serving_state)]

ClanQuery = Annotated[
    str,
    Query(
        min_length=1,
        max_length=40,
        description="Clan tag, e.g. #2PR8R8V8P (URL-encode # as %23, or leave it out).",
    ),
]


def clan_param(value: str, *, kind: str = "clan tag") -> str:
    """A tag parameter normalized (``#`` added, upper case), or a 400 ``invalid_tag``."""
    try:
        return normalize_tag(value, kind=kind)
    except InvalidTagError as exc:
        raise ApiError(400, "invalid_tag", f"{exc.message}; {exc.hint}") from None
