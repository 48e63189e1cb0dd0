"""One saved file on its own: its request, fetch time, status, endpoint and tags.

Each is taken from the strongest source that gives it (``--fetched-at``, the
manifest, the envelope, the body, the file and folder names, the file's
modification time); sources that disagree quarantine the file. The clan may
still be unknown here (``needs_clan``): :func:`.clans.resolve_clans` looks at
the rest of the folder.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from clash_pipeline.clash_api.client import ENDPOINTS, parse_max_age
from clash_pipeline.clash_api.tags import tag_path
from clash_pipeline.ingest.backfill.api_paths import Request, request_path
from clash_pipeline.ingest.backfill.clans import Clues, claimed_tags, find_tags
from clash_pipeline.ingest.backfill.manifest import ManifestEntry
from clash_pipeline.ingest.backfill.model import BackfillFile, FileProblem, NotStored
from clash_pipeline.ingest.backfill.names import (
    folder_tag,
    name_endpoint,
    name_status,
    name_tag,
    stem,
)
from clash_pipeline.ingest.backfill.read import ParsedFile, parse_file
from clash_pipeline.ingest.backfill.shapes import (
    REASON_STATUS,
    BodyShape,
    classify_body,
    is_error_body,
)
from clash_pipeline.ingest.backfill.times import parse_fetch_time, parse_http_date
from clash_pipeline.ingest.backfill.unstored import unstored_kind, unstored_request

_ENVELOPE_REQUEST_KEYS = ("path", "url", "request_path")
_MAX_KEYS_SHOWN = 8


def identify(
    path: Path,
    relpath: str,
    root: Path,
    entry: ManifestEntry,
    fetched_at: datetime | None,
) -> BackfillFile:
    """Recognise one file on its own (the clan may still be unknown: ``needs_clan``).

    Raises :class:`FileProblem` (quarantine) or :class:`NotStored` (a response
    of an endpoint the pipeline does not store: skipped).
    """
    parsed = parse_file(path)
    request = _request(entry, parsed.envelope)
    when, time_source = _fetch_time(path, parsed, entry, fetched_at)
    status = _status(path, parsed, entry)
    explicit = entry.endpoint or request.endpoint
    endpoint, shape = _endpoint(path, root, parsed.body, status, explicit, when)
    clues = Clues(
        endpoint=endpoint,
        status=status,
        shape=shape,
        body=parsed.body,
        fetched_at=when,
        claims=claimed_tags(entry, request, parsed.envelope, endpoint),
        name_tag=name_tag(stem(path.name)),
        folder_tag=folder_tag(path, root),
    )
    tags = find_tags(clues)
    reason, message = _error_text(parsed.body, status)
    return BackfillFile(
        path=path,
        relpath=relpath,
        endpoint=endpoint,
        status=status,
        clan_tag=tags.clan_tag,
        resource_tag=tags.resource_tag,
        fetched_at=when,
        payload_hash=parsed.canonical[0] if parsed.canonical and status == 200 else None,
        request_path=request.path or _default_path(endpoint, tags.resource_tag),
        reason=reason,
        message=message,
        max_age=parse_max_age(parsed.headers.get("cache-control")),
        time_source=time_source,
        clan_source=tags.clan_source,
        needs_clan=tags.needs_clan,
        clan_choices=tags.choices,
        why_no_clan=tags.why_no_clan,
        member_tags=shape.member_tags,
        file_sha256=parsed.file_sha256,
        note=parsed.note,
    )


def _request(entry: ManifestEntry, envelope: dict[str, Any]) -> Request:
    """The request the manifest names, else the envelope's (its first request key)."""
    envelope_request = None
    for key in _ENVELOPE_REQUEST_KEYS:
        if isinstance(envelope.get(key), str):
            envelope_request = request_path(envelope[key])
            if envelope_request is None:
                unstored = unstored_request(envelope[key])
                if unstored:
                    raise NotStored(unstored)
                raise FileProblem(f"envelope {key} {envelope[key]!r} is not a Clash API request")
            break
    request = Request.of(entry.path or envelope_request)
    if entry.endpoint and request.endpoint and entry.endpoint != request.endpoint:
        raise FileProblem(
            f"the manifest says endpoint {entry.endpoint!r} but the request path "
            f"{request.path!r} is {request.endpoint!r}"
        )
    return request


def _fetch_time(
    path: Path, parsed: ParsedFile, entry: ManifestEntry, fetched_at: datetime | None
) -> tuple[datetime, str]:
    """(fetch time, where it came from): the option, manifest, envelope, Date header, mtime."""
    if fetched_at is not None:
        return fetched_at, "--fetched-at"
    if entry.fetched_at is not None:
        return entry.fetched_at, "manifest"
    if parsed.envelope.get("fetched_at") is not None:
        try:
            return parse_fetch_time(parsed.envelope["fetched_at"]), "envelope"
        except ValueError as exc:
            raise FileProblem(f"envelope {exc}") from None
    sent = parse_http_date(parsed.headers.get("date"))
    if sent is not None:
        return sent, "envelope Date header"
    return datetime.fromtimestamp(int(path.stat().st_mtime), UTC), "mtime"


def _status(path: Path, parsed: ParsedFile, entry: ManifestEntry) -> int:
    """The envelope's status; for a plain error body the manifest's, the name's or the reason's."""
    if parsed.status is not None:
        return parsed.status
    body = parsed.body
    if not is_error_body(body):
        return 200
    status = entry.status or name_status(path) or REASON_STATUS.get(body["reason"])
    if status is None or status == 200:
        raise FileProblem(
            f"an error body (reason {body['reason']!r}) without its HTTP status: "
            'add "status" in a manifest entry'
        )
    return status


def _endpoint(
    path: Path,
    root: Path,
    body: Any,
    status: int,
    explicit: str | None,
    when: datetime,
) -> tuple[str, BodyShape]:
    """The endpoint the manifest or request names (if the body fits), else the shape's or name's."""
    shape = _shape(body, status, when, explicit)
    if explicit:
        if explicit not in shape.candidates:
            looks = shape.default or "/".join(shape.candidates)
            raise FileProblem(
                f"the manifest or envelope says endpoint {explicit!r} but the body looks "
                f"like {looks!r}",
                fetched_at=when,
            )
        return explicit, shape
    if shape.default:
        return shape.default, shape
    guess = name_endpoint(path, root, shape.candidates)
    if guess is None:
        what = "an error response" if status != 200 else "an empty list"
        raise FileProblem(
            f"cannot tell which endpoint {what} came from: add a manifest entry with "
            '"endpoint" (or name the file after it, e.g. …_warlog_….json)',
            fetched_at=when,
        )
    return guess, shape


def _shape(body: Any, status: int, when: datetime, explicit: str | None) -> BodyShape:
    """What a 200 body can be; an error body could be from any endpoint.

    A body of an endpoint the pipeline does not store raises :class:`NotStored`,
    unless the manifest or envelope says it is a stored one (then they disagree).
    """
    if status != 200:
        return BodyShape(tuple(ENDPOINTS), None)
    shape = classify_body(body)
    if shape is None:
        unstored = unstored_kind(body)
        if unstored and explicit:
            raise FileProblem(
                f"the manifest or envelope says endpoint {explicit!r} but the body is {unstored}",
                fetched_at=when,
            )
        if unstored:
            raise NotStored(unstored)
        keys = ", ".join(sorted(map(str, body))[:_MAX_KEYS_SHOWN]) if isinstance(body, dict) else ""
        raise FileProblem(
            f"unrecognised JSON: not a Clash API response body (keys: {keys or 'none'})",
            fetched_at=when,
        )
    return shape


def _default_path(endpoint: str, resource_tag: str | None) -> str:
    """The request path a fetch of this resource would have used."""
    template = ENDPOINTS[endpoint]
    return template.format(tag=tag_path(resource_tag)) if resource_tag else template


def _error_text(body: Any, status: int) -> tuple[str | None, str | None]:
    """(reason, message) of an error body, as the fetch log stores them."""
    if status == 200 or not isinstance(body, dict):
        return None, None
    reason = body.get("reason")
    message = body.get("message")
    return (
        reason if isinstance(reason, str) else None,
        message if isinstance(message, str) else None,
    )
