"""Every error the API answers is a JSON body ``{"error": {"code", "message"}}``.

The code is stable (clients branch on it), the message says what to do, and
nothing is kept (``Cache-Control: no-store``). FastAPI's own errors (a bad
parameter, an unknown path, a POST) and the database's are answered the same
way, by the handlers :func:`install_error_handlers` registers; an unexpected
exception becomes a 500 without a stack trace in the body. What the server
refuses before the app sees it (a request it cannot parse, too long a request
target, too many headers) gets the same body from
:mod:`clash_pipeline.serving.protocol`.
"""

from __future__ import annotations

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from clash_pipeline.serving.headers import API_HEADERS


class ApiError(Exception):
    """An expected error: HTTP status, a stable code and a message saying what to do."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}},
        status_code=status,
        headers={"Cache-Control": "no-store", **dict(API_HEADERS), **(headers or {})},
    )


def clan_not_found(clan: str) -> ApiError:
    """The 404 of a clan-scoped resource whose clan has no snapshot."""
    return ApiError(
        404,
        "clan_not_found",
        f"no snapshot of clan {clan} in the warehouse; GET /api/v2/clans lists the clans "
        "(add it to COC_CLAN_TAGS and run the pipeline)",
    )


async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    return error_response(exc.status, exc.code, exc.message)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = []
    for item in exc.errors():
        where = ".".join(str(part) for part in item.get("loc", ()) if part != "query")
        problems.append(f"{where}: {item.get('msg', 'invalid')}")
    return error_response(400, "invalid_parameter", "; ".join(problems) or "invalid request")


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    if exc.status_code == 404:
        return error_response(404, "not_found", f"no such path {request.url.path}; see /api/docs")
    if exc.status_code == 405:
        return error_response(
            405,
            "method_not_allowed",
            "this API is read-only: use GET (or HEAD)",
            headers={"Allow": "GET, HEAD"},
        )
    return error_response(exc.status_code, "http_error", str(exc.detail))


async def _database_unavailable(request: Request, exc: psycopg.OperationalError) -> JSONResponse:
    return error_response(
        503, "database_unavailable", "the warehouse database is unavailable; retry later"
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    return error_response(500, "internal_error", "internal error; see the server log")


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error of ``app`` with the API's JSON error body."""
    app.exception_handler(ApiError)(_api_error)
    app.exception_handler(RequestValidationError)(_validation_error)
    app.exception_handler(StarletteHTTPException)(_http_error)
    app.exception_handler(psycopg.OperationalError)(_database_unavailable)
    app.exception_handler(Exception)(_unexpected)
