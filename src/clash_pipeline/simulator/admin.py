"""The admin endpoints under ``/_sim/`` (no token): another process drives a running
simulator through them (see :mod:`clash_pipeline.simulator.server`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from clash_pipeline.simulator.responses import Response, error, json_bytes

if TYPE_CHECKING:
    from clash_pipeline.simulator.server import SimulatedClashApi


def handle_admin(api: SimulatedClashApi, method: str, raw_path: str, payload: bytes) -> Response:
    """One admin request; a bad body is a 400 that says what to send."""
    path = urlsplit(raw_path).path.rstrip("/")
    try:
        data = json.loads(payload or b"{}") if method == "POST" else {}
        if not isinstance(data, dict):
            raise ValueError("the request body must be a JSON object")
        if method == "GET" and path == "/_sim/state":
            return _ok(api.state())
        handler = _POST_HANDLERS.get(path) if method == "POST" else None
        if handler is None:
            return error(404, f"Unknown admin path {path}")
        return _ok(handler(api, data))
    except (ValueError, TypeError) as exc:
        return error(400, str(exc))


def _ok(data: Any) -> Response:
    return Response(200, json_bytes(data), cache_control="no-store")


def _clock(api: SimulatedClashApi, data: dict[str, Any]) -> Any:
    """``{"advance_seconds": N}`` or ``{"set": "2026-11-02T08:00:00Z"}`` (naive means UTC)."""
    if "advance_seconds" in data:
        api.clock.advance(float(data["advance_seconds"]))
    elif "set" in data:
        when = datetime.fromisoformat(str(data["set"]).replace("Z", "+00:00"))
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        api.clock.set(when)
    else:
        raise ValueError('send {"advance_seconds": N} or {"set": "ISO-8601"}')
    return {"now": api.state()["now"]}


def _faults(api: SimulatedClashApi, data: dict[str, Any]) -> Any:
    """FaultConfig fields to change, ``{"reset": true}`` and/or ``{"push": ...}``."""
    changes = dict(data)
    if changes.pop("reset", False):
        api.faults.reset()
    pushes = changes.pop("push", [])
    if changes:
        api.faults.update(**changes)
    for item in pushes if isinstance(pushes, list) else [pushes]:
        if not isinstance(item, dict):
            raise ValueError("push takes a scripted fault object or a list of them")
        api.faults.push(**item)
    return api.faults.to_dict()


def _missing(api: SimulatedClashApi, data: dict[str, Any]) -> Any:
    """``{"clans": [...], "players": [...]}``: replaces those sets."""
    changes = {}
    if "clans" in data:
        changes["missing_clans"] = data["clans"]
    if "players" in data:
        changes["missing_players"] = data["players"]
    api.faults.update(**changes)
    faults = api.faults.to_dict()
    return {"clans": faults["missing_clans"], "players": faults["missing_players"]}


def _reset_stats(api: SimulatedClashApi, data: dict[str, Any]) -> Any:
    api.stats.reset()
    return api.stats.snapshot()


_POST_HANDLERS: dict[str, Callable[[SimulatedClashApi, dict[str, Any]], Any]] = {
    "/_sim/clock": _clock,
    "/_sim/faults": _faults,
    "/_sim/missing": _missing,
    "/_sim/stats/reset": _reset_stats,
}
