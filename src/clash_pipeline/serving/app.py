"""The read-only roster API and the dashboard it serves (FastAPI).

``create_app(database_url)`` builds the app from its parts:

* :mod:`~clash_pipeline.serving.routers`: one router per resource (clans,
  roster, members, metrics, ingestion health);
* :mod:`~clash_pipeline.serving.caching`: the ``ETag`` (the clan's latest
  ``payload_version``), the ``304`` answered before routing, the body cache;
* :mod:`~clash_pipeline.serving.errors`: every error as a JSON body;
* :mod:`~clash_pipeline.serving.headers`: ``HEAD`` as ``GET``, the security
  headers; :class:`~clash_pipeline.serving.dependencies.StrictQuery`: unknown
  or repeated query parameters refused;
* :mod:`~clash_pipeline.serving.docs`: Swagger UI from local assets;
* :mod:`~clash_pipeline.serving.dependencies`: the state the routes share,
  kept on ``app.state``;
* :mod:`~clash_pipeline.serving.queries`: every SQL statement, on a read-only pool.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from clash_pipeline.project import static_dir
from clash_pipeline.serving.caching import BODY_CACHE_ENTRIES, BodyCache, ConditionalRosterShortcut
from clash_pipeline.serving.dependencies import ServingState, StrictQuery
from clash_pipeline.serving.docs import install_docs
from clash_pipeline.serving.errors import install_error_handlers
from clash_pipeline.serving.headers import HeadAsGet, SecurityHeaders
from clash_pipeline.serving.queries import Warehouse, metric_catalogue, roster_metric_columns
from clash_pipeline.serving.routers import ROUTERS
from clash_pipeline.versions import ingestion_version

__all__ = ["DEFAULT_STALE_HOURS", "create_app"]

DEFAULT_STALE_HOURS = 25.0
OPENAPI_URL = "/api/openapi.json"

DESCRIPTION = (
    "Read-only API over the clash-pipeline warehouse. Clan-scoped answers carry the "
    "clan's latest `payload_version` as a strong `ETag`; send it back in "
    "`If-None-Match` to get `304 Not Modified` until a new snapshot lands."
)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Open the warehouse's pools for the life of the server (a clear error at start)."""
    warehouse = app.state.serving.warehouse
    warehouse.open()
    try:
        await warehouse.open_async()
        yield
    finally:
        await warehouse.close_async()
        warehouse.close()


def create_app(
    database_url: str,
    *,
    stale_hours: float = DEFAULT_STALE_HOURS,
    pool_size: int = 8,
    body_cache: bool = True,
) -> FastAPI:
    """The API and dashboard on ``database_url`` (read as ``clash_readonly``).

    ``body_cache=False`` builds every 200 from the marts (the benchmark's
    reference point); otherwise built bodies are kept by payload version.
    """
    warehouse = Warehouse(database_url, max_size=pool_size)
    catalogue = metric_catalogue()
    state = ServingState(
        warehouse=warehouse,
        bodies=BodyCache(BODY_CACHE_ENTRIES if body_cache else 0),
        catalogue=catalogue,
        metric_columns=roster_metric_columns(catalogue),
        stale_hours=stale_hours,
    )
    app = FastAPI(
        title="clash-pipeline roster API",
        version=ingestion_version(),
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # install_docs: no CDN
        redoc_url=None,
        openapi_url=OPENAPI_URL,
    )
    app.state.serving = state
    install_error_handlers(app)
    install_docs(app, OPENAPI_URL)
    app.add_api_route("/", dashboard_redirect, methods=["GET"], include_in_schema=False)
    strict_query = Depends(StrictQuery())
    for router in ROUTERS:
        app.include_router(router, dependencies=[strict_query])
    app.mount("/dashboard", StaticFiles(directory=static_dir(), html=True), name="dashboard")
    # the last added runs first: headers on everything, then HEAD as GET, then the 304
    app.add_middleware(ConditionalRosterShortcut, lookup=warehouse.latest_version_async)
    app.add_middleware(HeadAsGet)
    app.add_middleware(SecurityHeaders)
    return app


def dashboard_redirect() -> RedirectResponse:
    return RedirectResponse("/dashboard/")
