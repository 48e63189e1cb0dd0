"""``/api/docs``: Swagger UI served by the app itself (no CDN, works offline).

The assets come from the ``swagger-ui-py`` package (PyPI), which ships
swagger-ui-dist; only the three files the page needs are served, under
``/api/docs/static/``. The page has no inline script (its CSP allows scripts
from this origin only): Swagger UI is started by ``/api/docs/swagger-init.js``,
which reads the OpenAPI document's URL from the page.
"""

from __future__ import annotations

import hashlib
import html
import importlib.util
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles

from clash_pipeline.serving.errors import ApiError

__all__ = ["install_docs", "swagger_ui_dir"]

DOCS_URL = "/api/docs"
ASSETS = frozenset({"swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"})

INIT_JS = b"""// Starts Swagger UI on the page's #swagger-ui (no inline script: see the page's CSP).
"use strict";
const root = document.getElementById("swagger-ui");
window.ui = SwaggerUIBundle({
  url: root.dataset.openapiUrl,
  dom_id: "#swagger-ui",
  layout: "BaseLayout",
  deepLinking: true,
  showExtensions: true,
  showCommonExtensions: true,
  validatorUrl: null, // the default validator is an external service
  presets: [SwaggerUIBundle.presets.apis],
});
"""
INIT_ETAG = f'"{hashlib.sha256(INIT_JS).hexdigest()[:16]}"'

PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{title} - docs</title>
  <link rel="stylesheet" href="{docs}/static/swagger-ui.css">
  <link rel="icon" type="image/png" href="{docs}/static/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui" data-openapi-url="{openapi}"></div>
  <script src="{docs}/static/swagger-ui-bundle.js"></script>
  <script src="{docs}/swagger-init.js"></script>
</body>
</html>
"""


def swagger_ui_dir() -> Path:
    """swagger-ui-dist's files as the ``swagger_ui`` package ships them (not imported)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the swagger-ui-py package is missing: run `uv sync`")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


def install_docs(app: FastAPI, openapi_url: str) -> None:
    """Add the docs page, its start script and its assets to ``app`` (GET and HEAD)."""
    page = PAGE.format(
        title=html.escape(app.title), docs=DOCS_URL, openapi=html.escape(openapi_url)
    )
    assets = StaticFiles(directory=swagger_ui_dir())

    async def docs_page(request: Request) -> Response:
        return HTMLResponse(page, headers={"Cache-Control": "no-cache"})

    async def init_script(request: Request) -> Response:
        headers = {"Cache-Control": "no-cache", "ETag": INIT_ETAG}
        if request.headers.get("if-none-match") == INIT_ETAG:
            return Response(status_code=304, headers=headers)
        return Response(INIT_JS, media_type="text/javascript", headers=headers)

    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in ASSETS:
            raise ApiError(404, "not_found", f"no such file {name[:60]!r} of the API docs")
        return await assets.get_response(name, request.scope)

    for path, endpoint in (
        (DOCS_URL, docs_page),
        (f"{DOCS_URL}/swagger-init.js", init_script),
        (f"{DOCS_URL}/static/{{name}}", asset),
    ):
        app.add_route(path, endpoint, methods=["GET"], include_in_schema=False)
