"""Reading one saved file: a raw body or an envelope, checked before anything is stored.

A file that cannot be stored exactly as the API would have been stored (not
JSON, not an object, a NUL character PostgreSQL rejects, too large) raises
:class:`FileProblem` and is quarantined; nothing here guesses.

One form is taken in at the door: a bare JSON array of clan member objects
(a recorder that kept the members list's ``items`` and dropped the
``{items, paging}`` object around it) is read as ``{"items": [...]}``, the
API's own form without ``paging`` (which nothing reads: a clan has at most 50
members, one page). The items are stored unchanged and in order; the file
stays as it is, ``fetch_log.source_file`` names it, and the backfill lists it
as a warning. The alternative, storing the array and teaching staging a
second form of members payload, would make every reader of ``raw`` handle a
shape the API never sends.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clash_pipeline.ingest.backfill.model import FileProblem
from clash_pipeline.ingest.backfill.shapes import is_error_body, is_member
from clash_pipeline.ingest.land import canonical_body

MAX_FILE_BYTES = 64 * 1024 * 1024
_MAX_DETAIL_CHARS = 120


@dataclass
class ParsedFile:
    """A saved response as read: the body, its status and what its envelope said."""

    status: int | None  # None: a plain body, status decided later
    body: Any
    canonical: tuple[str, str] | None  # (hash, text) of a 200 body
    headers: dict[str, str]
    envelope: dict[str, Any]
    file_sha256: str
    note: str | None = None  # how the body was taken in, when not as it was saved


def parse_file(path: Path) -> ParsedFile:
    """Read ``path`` as a body or an envelope; raise :class:`FileProblem` if it cannot load."""
    data, raw = _read_json(path)
    status, body, headers, envelope = _unwrap(data)
    canonical = note = None
    if status in (None, 200) and _is_member_array(body):
        note = (
            f"a bare JSON array of {len(body)} clan members (no {{items, paging}} around it): "
            'read and stored as a members list {"items": [...]}'
        )
        body = {"items": body}
    if status in (None, 200) and not is_error_body(body):
        canonical = _canonical(body)
    sha256 = hashlib.sha256(raw).hexdigest()
    return ParsedFile(status, body, canonical, headers, envelope, sha256, note)


def _is_member_array(body: Any) -> bool:
    return isinstance(body, list) and bool(body) and all(is_member(item) for item in body)


def _unwrap(data: Any) -> tuple[int | None, Any, dict[str, str], dict[str, Any]]:
    """(status, body, lower-cased headers, envelope) of an envelope, or of a plain body."""
    if not (isinstance(data, dict) and "body" in data and "response_code" in data):
        return None, data, {}, {}
    code = data["response_code"]
    if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 599:
        raise FileProblem(f"envelope response_code {code!r} is not an HTTP status")
    raw_headers = data.get("headers") or {}
    if not isinstance(raw_headers, dict):
        raise FileProblem("envelope headers must be an object")
    headers = {str(k).lower(): str(v) for k, v in raw_headers.items()}
    return code, data["body"], headers, data


def _canonical(body: Any) -> tuple[str, str]:
    """(hash, text) of a body as ``raw`` would store it."""
    if not isinstance(body, dict):
        kind = "a list" if isinstance(body, list) else type(body).__name__
        raise FileProblem(f"not a Clash API response body: the JSON is {kind}, not an object")
    if _has_nul(body):
        raise FileProblem("contains a NUL character (\\u0000), which PostgreSQL cannot store")
    try:
        return canonical_body(json.dumps(body, ensure_ascii=False).encode("utf-8"))
    except (UnicodeError, ValueError) as exc:
        raise FileProblem(f"cannot be stored as JSON text: {exc}") from None


def _read_json(path: Path) -> tuple[Any, bytes]:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise FileProblem(f"too large ({size} bytes; at most {MAX_FILE_BYTES})")
        raw = path.read_bytes()
    except OSError as exc:
        raise FileProblem(f"cannot read the file ({exc.strerror or exc})") from None
    if not raw.strip():
        raise FileProblem("empty file")
    try:
        return json.loads(raw, parse_constant=_reject_constant), raw
    except RecursionError:
        raise FileProblem("not valid JSON: nested too deeply") from None
    except ValueError as exc:
        detail = str(exc)
        if len(detail) > _MAX_DETAIL_CHARS:
            detail = detail[: _MAX_DETAIL_CHARS - 1] + "…"
        raise FileProblem(f"not valid JSON (truncated or corrupt?): {detail}") from None


def _reject_constant(name: str) -> Any:
    """``NaN`` and ``Infinity`` are Python's JSON, not the API's (nor PostgreSQL's)."""
    raise ValueError(f"{name} is not valid JSON")


def _has_nul(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            if any("\x00" in key for key in item):
                return True
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False
