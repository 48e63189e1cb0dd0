"""The API's paging: ``limit`` with opaque ``after``/``before`` cursors."""

from __future__ import annotations

import base64
import json
from typing import Any

from clash_pipeline.simulator.responses import ApiError, json_bytes

MAX_LIMIT = 200
Query = dict[str, list[str]]


def cursor(position: int) -> str:
    return base64.b64encode(json_bytes({"pos": position})).decode().rstrip("=")


def decode_cursor(text: str) -> int:
    try:
        padded = text + "=" * (-len(text) % 4)
        position = json.loads(base64.b64decode(padded, validate=True))["pos"]
    except (ValueError, KeyError, TypeError):
        raise ApiError(400, "Invalid value for parameter after/before") from None
    if not isinstance(position, int) or position < 0:
        raise ApiError(400, "Invalid value for parameter after/before")
    return position


def limit(query: Query, default: int) -> int:
    if "limit" not in query:
        return default
    text = query["limit"][-1]
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise ApiError(400, "Invalid value for parameter limit")
    return int(text)


def window(query: Query, default: int) -> tuple[int, int]:
    """(first position, count) asked for by limit/after/before."""
    count = limit(query, default)
    if "after" in query:
        return decode_cursor(query["after"][-1]), count
    if "before" in query:
        end = decode_cursor(query["before"][-1])
        return max(0, end - count), min(count, end)
    return 0, count


def page(items: list[Any], query: Query, default: int) -> dict[str, Any]:
    """The ``{"items", "paging"}`` body of one page of ``items``."""
    start, count = window(query, default)
    cursors: dict[str, str] = {}
    if start > 0:
        cursors["before"] = cursor(start)
    if start + count < len(items):
        cursors["after"] = cursor(start + count)
    return {"items": items[start : start + count], "paging": {"cursors": cursors}}
