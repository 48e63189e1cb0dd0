"""What the routers take from the app: its serving state and a clan parameter.

The state (the warehouse's connection pools, the body cache, the metric
catalogue) is built once by :func:`clash_pipeline.serving.app.create_app` and
kept on ``app.state``; a route asks for it with the :data:`Serving`
dependency instead of closing over it, so a router is a module of plain
functions.

:class:`StrictQuery`, a dependency of every API route, refuses a query string
the route would misread: an unknown parameter, a parameter given twice where
the route takes one value, or more than :data:`MAX_QUERY_PARAMS` parameters.
"""

from __future__ import annotations

import types
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Union, get_args, get_origin

from fastapi import Depends, Query, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

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


#: Query parameters a request may have (every route takes at most three).
MAX_QUERY_PARAMS = 20
_SEQUENCES = (list, tuple, set, frozenset)


def takes_many(annotation: Any) -> bool:
    """Whether a query parameter's annotation takes repeated values (``list[str]``, ...)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return takes_many(get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        return any(takes_many(arg) for arg in get_args(annotation))
    return annotation in _SEQUENCES or origin in _SEQUENCES


def _query_fields(dependant: Dependant) -> Iterator[tuple[str, bool]]:
    for field in dependant.query_params:
        yield field.alias, takes_many(field.field_info.annotation)
    for sub in dependant.dependencies:
        yield from _query_fields(sub)


def _shown(names: list[str]) -> str:
    return ", ".join(repr(name[:40]) for name in names[:5]) + (", ..." if len(names) > 5 else "")


class StrictQuery:
    """A dependency: a 400 for a query string the route would misread.

    FastAPI ignores a parameter it does not know and keeps the last value of
    one given twice (``?clan=A&clan=B`` answers for B); here either is an
    error naming the parameter (and, for an unknown one, the parameters the
    route takes).
    """

    def __init__(self) -> None:
        self._routes: dict[int, dict[str, bool]] = {}  # id(route) -> name -> takes many

    def parameters(self, route: APIRoute) -> dict[str, bool]:
        known = self._routes.get(id(route))
        if known is None:
            known = dict(_query_fields(route.dependant))
            self._routes[id(route)] = known
        return known

    async def __call__(self, request: Request) -> None:
        route = request.scope.get("route")
        if not isinstance(route, APIRoute):
            return
        items = request.query_params.multi_items()
        if len(items) > MAX_QUERY_PARAMS:
            raise ApiError(
                400,
                "too_many_parameters",
                f"{len(items)} query parameters; this API takes at most {MAX_QUERY_PARAMS}",
            )
        allowed = self.parameters(route)
        counts = Counter(name for name, _ in items)
        unknown = sorted(name for name in counts if name not in allowed)
        if unknown:
            raise ApiError(
                400,
                "unknown_parameter",
                f"unknown query parameter {_shown(unknown)}; {route.path} takes "
                + (", ".join(sorted(allowed)) or "no query parameters"),
            )
        repeated = sorted(name for name, n in counts.items() if n > 1 and not allowed[name])
        if repeated:
            raise ApiError(
                400,
                "repeated_parameter",
                f"query parameter {_shown(repeated)} given more than once; give it once",
            )
