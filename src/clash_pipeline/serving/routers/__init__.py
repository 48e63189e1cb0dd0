"""One FastAPI router per resource of the roster API, included in this order."""

from __future__ import annotations

from fastapi import APIRouter

from clash_pipeline.serving.routers import clans, ingestion, members, metrics, roster

__all__ = ["ROUTERS"]

# the order of the OpenAPI document's paths
ROUTERS: tuple[APIRouter, ...] = (
    clans.router,
    roster.router,
    members.router,
    metrics.router,
    ingestion.router,
)
