"""The API's JSON: compact, timestamps in UTC with a ``Z``, numerics as numbers.

orjson encodes almost every body (it is several times faster than the standard
library on a roster of 50 members with their metrics); the general encoder is
the fallback for what orjson refuses, such as integers beyond 64 bits.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import orjson
from fastapi.responses import Response

JSON_TYPE = "application/json"


def _number(value: Decimal) -> int | float:
    # a numeric column's value, as JSON readers expect it (no quoted decimals)
    return int(value) if value == value.to_integral_value() else float(value)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return _number(value)
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    raise TypeError(f"cannot encode {type(value).__name__}")


def _orjson_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return _number(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    raise TypeError(f"cannot encode {type(value).__name__}")


def dump_json(data: Any) -> bytes:
    """Compact JSON; timestamps in UTC with a ``Z``, numerics as numbers."""
    try:
        return orjson.dumps(
            data,
            default=_orjson_default,
            option=orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC | orjson.OPT_NON_STR_KEYS,
        )
    except TypeError:  # e.g. integers beyond 64 bits: the slower, general encoder
        return json.dumps(
            data, default=_json_default, ensure_ascii=False, separators=(",", ":")
        ).encode("utf-8")


def json_response(data: Any, *, cache_control: str) -> Response:
    """An unversioned JSON answer (no ETag): ``no-cache`` or ``no-store``."""
    return Response(dump_json(data), media_type=JSON_TYPE, headers={"Cache-Control": cache_control})
