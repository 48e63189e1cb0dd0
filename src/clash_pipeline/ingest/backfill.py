"""Backfill: load saved Clash API responses from files into ``raw``.

``clash-pipeline backfill PATH`` reads a file, or every ``*.json`` below a folder
(hidden files and folders skipped), in two forms:

* a raw response body, as the API sent it;
* an envelope ``{"body": ..., "headers": {...}, "response_code": N}``, optionally
  with ``"url"``/``"path"`` (the request), ``"clan_tag"`` and ``"fetched_at"``.

Every file becomes exactly one fetch-log row (a 200 with its content-addressed
payload, an error with its status and reason and no payload) or is quarantined
as a whole: a file is never partially loaded.

**What a file is** (:func:`classify_body`), from the body's shape:

======================  ======================================================
clan                    ``memberList`` and ``tag``
player                  ``tag`` + ``townHallLevel`` + troops/heroes/achievements…
leaguegroup             ``season`` + ``rounds``
cwl_war                 a war (``state`` + ``clan``/``opponent``) with ``warStartTime``
currentwar              a war without ``warStartTime``, or ``state: notInWar``
warlog                  ``items`` of wars (``clan`` + ``endTime`` + ``result``/``opponent``)
capitalraidseasons      ``items`` with ``startTime`` + ``members``/``attackLog``…
clan_members            ``items`` of members (``tag`` + ``role``/``clanRank``)
leaguetiers / leagues   ``items`` of ``{id, name, iconUrls}`` with ids 105xxxxxx / 29xxxxxx
error                   ``{reason, message?}`` or an envelope whose ``response_code`` ≠ 200
======================  ======================================================

Only ``warStartTime`` separates a CWL war from a current war: the CWL war
endpoint sends it and the current-war endpoint does not. ``attacksPerMember``
is no marker (its absence only dates a war before 2022, and a friendly war may
have one attack per member). A manifest may pick the other of the two.
Where the shape cannot tell (error bodies, empty ``items``), the endpoint comes
from the manifest, the envelope's request path, or a keyword in the file or
folder name (``warlog``, ``members``, ``player``, ``league`` …).

**Which clan** (the run a body lands in), first that applies:

1. a clan body: its own ``tag``;
2. the manifest's ``clan_tag``, then the envelope's (the tag in its request
   path, or its ``clan_tag``);
3. a current war in a war state: its ``clan.tag`` (the API always puts the
   requesting clan on the ``clan`` side);
4. the file name ending in ``_TAG`` (``warlog_2PR8R8V8P.json``), then the nearest
   folder named by a tag (``2PR8R8V8P/`` or ``…_2PR8R8V8P/``); a name tag of
   digits only is ignored unless written ``#…`` (it looks like a date);
   for a player file the name tag is the player's, not the clan's, and a CWL
   war's file name is not read (it would be the war's tag);
5. a clan body in the same folder with the same fetch time (exactly one clan);
6. a player: the clan in its profile (``clan.tag``), or none for a clanless
   player; leagues and league tiers need no clan (a folder tag still applies).

Otherwise (members, war log, current war ``notInWar``, league group, CWL war,
raid seasons and their errors) the file is quarantined: *cannot tell which
clan*. A CWL war's clan must be one of its two sides and a league group's one of
its clans. A CWL war's war tag is not in its body: it comes from the manifest's
``resource_tag`` or the envelope's path, else it stays NULL.

**Fetch time**: ``--fetched-at``, else the manifest, else the envelope (its
``fetched_at`` or HTTP ``Date`` header), else the file's modification time
(rounded down to the second).

**Runs**: one ``raw.fetch_runs`` row (source ``backfill``, ``snapshot_at`` = the
fetch time) per (clan, fetch time), each landed in its own transaction by
:func:`clash_pipeline.ingest.land.land_bundle`, with ``fetch_log.source_file`` = the file's
path relative to PATH.

**Idempotent**: a body whose (payload hash, endpoint, resource tag, fetch time)
is already in ``raw.fetch_log`` is skipped (an error: endpoint, tag, clan, time,
status and reason), so running a backfill twice adds nothing. Two different
bodies for the same resource at the same fetch time (in the files, or one
already loaded) are a conflict: quarantined, never guessed between.

**Manifest** (``manifest.json`` or ``_manifest.json`` in any folder; keys are
paths relative to that folder; or ``--manifest FILE`` with keys relative to
PATH)::

    {"defaults": {"clan_tag": "#2PR8R8V8P", "fetched_at": "2025-09-10T15:24:10Z"},
     "files": {"members.json": {"endpoint": "clan_members"},
               "cwl/war1.json": {"endpoint": "cwl_war", "resource_tag": "#8QJ2LPV0Y"},
               "errors/x.json": {"endpoint": "warlog", "status": 403}}}

``files`` may also be the top-level object. Fields: ``endpoint``, ``clan_tag``,
``resource_tag`` (or ``tag``), ``fetched_at`` (ISO 8601 or the API's
``20251003T070000.000Z``), ``status`` (for an error body saved without it),
``path`` (the request, e.g. ``/clanwarleagues/wars/%238QJ2LPV0Y``); ``null``
means "not given"; ``defaults`` may give ``clan_tag`` and ``fetched_at``. An
entry beats ``defaults``; ``--manifest`` beats in-tree manifests, and a nearer
manifest a farther one. An invalid manifest stops the backfill before anything
is loaded.

**Quarantine**: unreadable or unrecognised files are copied (with their
relative paths and modification times) to ``<home>/quarantine/<UTC time>/``
with ``reasons.json`` and, when some were recognised but lack a clan, an
endpoint or a distinct time, a ``manifest.json`` template with what is known;
fix them and run ``backfill`` on that folder. Why files and not a table:
quarantined inputs are by definition not API data (possibly not JSON, not text,
or huge), they are an operator's to-do list on the machine that has the files,
and ``raw`` stays a record of API responses only, with no schema or grant change.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg

from clash_pipeline.clash_api.client import ENDPOINTS, FetchRecord, parse_max_age
from clash_pipeline.clash_api.tags import TAG_ALPHABET, is_valid_tag, normalize_tag, tag_path
from clash_pipeline.errors import ClashPipelineError, DatabaseError
from clash_pipeline.ingest.land import ClanBundle, LandResult, canonical_body, land_bundle
from clash_pipeline.warehouse.connect import connect, scrub

__all__ = [
    "MANIFEST_NAMES",
    "BackfillError",
    "BackfillFile",
    "BackfillPlan",
    "BackfillResult",
    "Quarantined",
    "backfill",
    "classify_body",
    "parse_fetch_time",
    "plan_backfill",
    "write_quarantine",
]

MANIFEST_NAMES = ("manifest.json", "_manifest.json")
REASONS_FILE = "reasons.json"
QUARANTINE_KIND = "clash-pipeline backfill quarantine"
MAX_FILE_BYTES = 64 * 1024 * 1024
SOURCE = "backfill"

# Serialises backfills of one database: the "already loaded?" check and the
# landing of a run happen under it, so two backfills never load a file twice.
_LOCK_KEY = int.from_bytes(
    hashlib.sha256(b"clash-pipeline backfill").digest()[:8], "big", signed=True
)

# Endpoints whose body belongs to a clan that must be known.
_CLAN_SCOPED = frozenset(
    {"clan", "clan_members", "warlog", "currentwar", "leaguegroup", "capitalraidseasons"}
)
# Endpoints that identify one resource per (endpoint, tag): two different bodies
# at the same fetch time are a conflict. A CWL war without its war tag is not.
_GLOBAL = frozenset({"leagues", "leaguetiers"})

# Error reasons of the API and their HTTP status (DOMAIN.md), for plain error
# bodies saved without their status.
_REASON_STATUS = {
    "badRequest": 400,
    "accessDenied": 403,
    "accessDenied.invalidIp": 403,
    "notFound": 404,
    "requestThrottled": 429,
    "unknownException": 500,
    "inMaintenance": 503,
}
_ERROR_KEYS = frozenset({"reason", "message", "type", "detail"})

# Keywords in file and folder names, most specific first, for bodies whose
# shape does not say which endpoint answered (errors, empty lists).
_NAME_ENDPOINTS: tuple[tuple[str, str], ...] = (
    ("leaguegroup", "leaguegroup"),
    ("leaguetier", "leaguetiers"),
    ("clanwarleague", "cwl_war"),
    ("capitalraid", "capitalraidseasons"),
    ("raidseason", "capitalraidseasons"),
    ("currentwar", "currentwar"),
    ("warlog", "warlog"),
    ("members", "clan_members"),
    ("player", "player"),
    ("league", "leagues"),
    ("clan", "clan"),
)

_PLAYER_KEYS = ("troops", "heroes", "spells", "achievements", "warStars", "attackWins")
_RAID_KEYS = ("attackLog", "defenseLog", "capitalTotalLoot", "raidsCompleted", "members")
_TAG_CHARS = f"[{TAG_ALPHABET}]"
_NAME_TAG_RE = re.compile(rf"(?:^|[_\-.\s])(#|%23)?({_TAG_CHARS}{{3,14}})$")
_STATUS_IN_NAME_RE = re.compile(r"(?:^|[_\-.])([1-5]\d\d)(?:[_\-.]|$)")
_API_TIME_RE = re.compile(r"^(\d{8}T\d{6})(?:\.(\d{1,6}))?Z$")

_REQUEST_PATHS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^/clans/([^/]+)$"), "clan"),
    (re.compile(r"^/clans/([^/]+)/members$"), "clan_members"),
    (re.compile(r"^/clans/([^/]+)/warlog$"), "warlog"),
    (re.compile(r"^/clans/([^/]+)/currentwar$"), "currentwar"),
    (re.compile(r"^/clans/([^/]+)/currentwar/leaguegroup$"), "leaguegroup"),
    (re.compile(r"^/clans/([^/]+)/capitalraidseasons$"), "capitalraidseasons"),
    (re.compile(r"^/players/([^/]+)$"), "player"),
    (re.compile(r"^/clanwarleagues/wars/([^/]+)$"), "cwl_war"),
    (re.compile(r"^/leaguetiers(?:/[^/]+)?$"), "leaguetiers"),
    (re.compile(r"^/leagues(?:/[^/]+)?$"), "leagues"),
)

_DEFAULT_FIELDS = frozenset({"clan_tag", "fetched_at"})
_MANIFEST_FIELDS = frozenset(
    {"endpoint", "clan_tag", "resource_tag", "tag", "fetched_at", "status", "path"}
)


class BackfillError(ClashPipelineError):
    """The backfill cannot start: a missing PATH, an invalid manifest or time."""

    exit_code = 2


# ----------------------------------------------------------------- shapes


@dataclass(frozen=True)
class BodyShape:
    """What a body's shape says: the endpoints it can be from (the first is the default).

    ``default`` is None when the shape fits several endpoints equally (an empty
    ``items`` list). ``tag`` is the body's own tag (clan, player), ``war_clan``
    the requesting side of a current war, ``clans`` the clans a league group or
    CWL war involves.
    """

    candidates: tuple[str, ...]
    default: str | None
    tag: Any = None
    war_clan: Any = None
    clans: tuple[str, ...] = ()


def classify_body(body: Any) -> BodyShape | None:
    """Recognise a successful response body by its shape; None if it is not one."""
    if not isinstance(body, dict):
        return None
    if "memberList" in body and "tag" in body:
        return BodyShape(("clan",), "clan", tag=body.get("tag"))
    if "season" in body and "rounds" in body:
        clans = tuple(
            c["tag"] for c in body.get("clans") or [] if isinstance(c, dict) and "tag" in c
        )
        return BodyShape(("leaguegroup",), "leaguegroup", clans=clans)
    if "tag" in body and "townHallLevel" in body and any(k in body for k in _PLAYER_KEYS):
        return BodyShape(("player",), "player", tag=body.get("tag"))
    state = body.get("state")
    if isinstance(state, str) and (
        isinstance(body.get("clan"), dict) or isinstance(body.get("opponent"), dict)
    ):
        sides = tuple(
            side["tag"]
            for side in (body.get("clan"), body.get("opponent"))
            if isinstance(side, dict) and isinstance(side.get("tag"), str)
        )
        if state == "notInWar":
            return BodyShape(("currentwar",), "currentwar")
        clan_side = body.get("clan") if isinstance(body.get("clan"), dict) else {}
        if "warStartTime" in body:
            return BodyShape(
                ("cwl_war", "currentwar"), "cwl_war", war_clan=clan_side.get("tag"), clans=sides
            )
        return BodyShape(
            ("currentwar", "cwl_war"), "currentwar", war_clan=clan_side.get("tag"), clans=sides
        )
    if state == "notInWar" and set(body) <= {"state", "reason"}:
        return BodyShape(("currentwar", "leaguegroup"), "currentwar")
    items = body.get("items")
    if isinstance(items, list) and set(body) <= {"items", "paging"}:
        if not items:
            return BodyShape(
                ("clan_members", "warlog", "capitalraidseasons", "leagues", "leaguetiers"), None
            )
        kinds = {_item_kind(item) for item in items}
        if len(kinds) == 1 and None not in kinds:
            kind = kinds.pop()
            return BodyShape((kind,), kind)
    return None


def _item_kind(item: Any) -> str | None:
    if not isinstance(item, dict):
        return None
    if "startTime" in item and any(k in item for k in _RAID_KEYS):
        return "capitalraidseasons"
    if (
        "clan" in item
        and "endTime" in item
        and any(k in item for k in ("result", "opponent", "teamSize"))
    ):
        return "warlog"
    if (
        isinstance(item.get("tag"), str)
        and "name" in item
        and ("role" in item or "clanRank" in item)
    ):
        return "clan_members"
    league_id = item.get("id")
    if isinstance(league_id, int) and "name" in item and set(item) <= {"id", "name", "iconUrls"}:
        if 105_000_000 <= league_id < 106_000_000:
            return "leaguetiers"
        if 29_000_000 <= league_id < 30_000_000:
            return "leagues"
    return None


def _is_error_body(body: Any) -> bool:
    return (
        isinstance(body, dict) and isinstance(body.get("reason"), str) and set(body) <= _ERROR_KEYS
    )


# ------------------------------------------------------------------ times


def parse_fetch_time(value: Any, *, what: str = "fetch time") -> datetime:
    """ISO 8601 (``2025-09-10T15:24:10Z``) or the API's ``20250910T152410.000Z``, as UTC.

    A time without a zone is read as UTC. Raises ValueError with a readable message.
    """
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str) and value.strip():
        text = value.strip()
        match = _API_TIME_RE.match(text)
        try:
            if match:
                parsed = datetime.strptime(match.group(1), "%Y%m%dT%H%M%S").replace(
                    microsecond=int((match.group(2) or "0").ljust(6, "0")), tzinfo=UTC
                )
            else:
                parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise ValueError(
                f"invalid {what} {value!r}: use ISO 8601 such as 2025-09-10T15:24:10Z"
            ) from None
    else:
        raise ValueError(f"invalid {what} {value!r}: use ISO 8601 such as 2025-09-10T15:24:10Z")
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


# --------------------------------------------------------------- manifest


@dataclass(frozen=True)
class ManifestEntry:
    endpoint: str | None = None
    clan_tag: str | None = None
    resource_tag: str | None = None
    fetched_at: datetime | None = None
    status: int | None = None
    path: str | None = None


@dataclass
class Manifest:
    """One manifest file: entries keyed by path relative to ``base``."""

    file: Path
    base: Path
    defaults: ManifestEntry
    entries: dict[str, ManifestEntry]
    used: set[str] = field(default_factory=set)


def _manifest_error(file: Path, message: str) -> BackfillError:
    return BackfillError(
        f"manifest {file}: {message}",
        hint='a manifest maps file paths to {"endpoint", "clan_tag", "resource_tag", '
        '"fetched_at", "status", "path"}; see clash-pipeline backfill --help',
    )


def _manifest_entry(file: Path, key: str, raw: Any) -> ManifestEntry:
    if not isinstance(raw, dict):
        raise _manifest_error(file, f"entry {key!r} must be an object")
    unknown = sorted(set(raw) - _MANIFEST_FIELDS)
    if unknown:
        raise _manifest_error(file, f"entry {key!r} has unknown field(s) {', '.join(unknown)}")
    values: dict[str, Any] = {}
    endpoint = raw.get("endpoint")
    if endpoint is not None:
        if endpoint not in ENDPOINTS:
            raise _manifest_error(
                file,
                f"entry {key!r}: unknown endpoint {endpoint!r} (one of {', '.join(ENDPOINTS)})",
            )
        values["endpoint"] = endpoint
    for name, source in (("clan_tag", "clan_tag"), ("resource_tag", "resource_tag")):
        tag = raw.get(source)
        if source == "resource_tag" and tag is None:
            tag = raw.get("tag")
        if tag is not None:
            if not is_valid_tag(tag):
                raise _manifest_error(file, f"entry {key!r}: invalid {name} {tag!r}")
            values[name] = normalize_tag(tag)
    if raw.get("fetched_at") is not None:
        try:
            values["fetched_at"] = parse_fetch_time(raw["fetched_at"])
        except ValueError as exc:
            raise _manifest_error(file, f"entry {key!r}: {exc}") from None
    status = raw.get("status")
    if status is not None:
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            raise _manifest_error(file, f"entry {key!r}: status must be an HTTP status code")
        values["status"] = status
    path = raw.get("path")
    if path is not None:
        request = _request_path(path) if isinstance(path, str) else None
        if request is None:
            raise _manifest_error(file, f"entry {key!r}: path {path!r} is not an API request path")
        values["path"] = request
    return ManifestEntry(**values)


def _load_manifest(file: Path, base: Path) -> Manifest:
    try:
        data = json.loads(file.read_bytes())
    except OSError as exc:
        raise _manifest_error(file, f"cannot be read ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise _manifest_error(file, f"is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise _manifest_error(file, "must be a JSON object")
    defaults = ManifestEntry()
    if "files" in data or "defaults" in data:
        extra = sorted(set(data) - {"files", "defaults"})
        if extra:
            raise _manifest_error(file, f"unknown top-level key(s) {', '.join(extra)}")
        if data.get("defaults") is not None:
            defaults = _manifest_entry(file, "defaults", data["defaults"])
            per_file = sorted(
                k for k, v in vars(defaults).items() if v is not None and k not in _DEFAULT_FIELDS
            )
            if per_file:
                raise _manifest_error(
                    file,
                    f"defaults may only give clan_tag and fetched_at, not {', '.join(per_file)}",
                )
        files = data.get("files") or {}
        if not isinstance(files, dict):
            raise _manifest_error(file, '"files" must map file paths to entries')
    else:
        files = data
    entries: dict[str, ManifestEntry] = {}
    for key, raw in files.items():
        norm = _manifest_key(key)
        if norm is None:
            raise _manifest_error(file, f"{key!r} is not a relative file path")
        entries[norm] = _manifest_entry(file, key, raw)
    return Manifest(file=file, base=base, defaults=defaults, entries=entries)


def _manifest_key(key: str) -> str | None:
    path = PurePosixPath(key.replace("\\", "/"))
    parts = [p for p in path.parts if p not in ("", ".")]
    if not parts or path.is_absolute() or ".." in parts:
        return None
    return "/".join(parts)


def _resolve_entry(manifests: list[Manifest], path: Path) -> ManifestEntry:
    """Merge the entries and defaults that apply to ``path`` (first manifest wins per field)."""
    merged: dict[str, Any] = {}
    applicable: list[tuple[Manifest, str]] = []
    for manifest in manifests:
        try:
            key = path.relative_to(manifest.base).as_posix()
        except ValueError:
            continue
        applicable.append((manifest, key))
    for manifest, key in applicable:
        entry = manifest.entries.get(key)
        if entry is None:
            continue
        manifest.used.add(key)
        for name, value in vars(entry).items():
            if value is not None:
                merged.setdefault(name, value)
    for manifest, _ in applicable:
        for name, value in vars(manifest.defaults).items():
            if value is not None:
                merged.setdefault(name, value)
    return ManifestEntry(**merged)


# ------------------------------------------------------------------ files


@dataclass
class BackfillFile:
    """One readable, recognised file: what its fetch-log row will say."""

    path: Path
    relpath: str
    endpoint: str
    status: int
    clan_tag: str | None
    resource_tag: str | None
    fetched_at: datetime
    payload_hash: str | None  # None for an error response
    request_path: str
    reason: str | None = None
    message: str | None = None
    max_age: int | None = None
    time_source: str = "mtime"
    clan_source: str | None = None
    # resolved later, when the whole folder is known
    needs_clan: bool = False
    clan_choices: tuple[str, ...] = ()
    file_sha256: str = ""

    @property
    def is_error(self) -> bool:
        return self.status != 200

    @property
    def identifies_resource(self) -> bool:
        """Whether (endpoint, resource tag) names one resource (so bodies can conflict)."""
        return self.resource_tag is not None or self.endpoint in _GLOBAL

    def dedupe_key(self) -> tuple:
        if self.is_error:
            return (
                "error", self.endpoint, self.resource_tag, self.clan_tag, self.fetched_at,
                self.status, self.reason,
            )  # fmt: skip
        return ("ok", self.endpoint, self.resource_tag, self.fetched_at, self.payload_hash)


@dataclass(frozen=True)
class Quarantined:
    """A file that was not loaded, and why."""

    path: Path
    relpath: str
    reason: str
    endpoint: str | None = None
    clan_tag: str | None = None
    resource_tag: str | None = None
    fetched_at: datetime | None = None


@dataclass
class BackfillPlan:
    """What :func:`plan_backfill` found, before touching the database."""

    root: Path
    files: list[BackfillFile]
    quarantined: list[Quarantined]
    duplicates: list[BackfillFile]
    files_read: int
    manifests: list[Path]
    warnings: list[str] = field(default_factory=list)

    def runs(self) -> dict[tuple[str | None, datetime], list[BackfillFile]]:
        """Files by (clan, fetch time): one landed run each, in time order."""
        groups: dict[tuple[str | None, datetime], list[BackfillFile]] = defaultdict(list)
        for item in self.files:
            groups[(item.clan_tag, item.fetched_at)].append(item)
        order = sorted(groups, key=lambda k: (k[1], k[0] or ""))
        return {k: sorted(groups[k], key=lambda f: f.relpath) for k in order}


@dataclass
class BackfillResult:
    """What :func:`backfill` did."""

    root: Path
    files_read: int
    loaded: int
    errors_loaded: int
    skipped: int
    quarantined: list[Quarantined]
    runs: list[LandResult]
    payloads_new: int
    quarantine_dir: Path | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def runs_created(self) -> int:
        return len(self.runs)

    @property
    def ok(self) -> bool:
        return not self.quarantined


class _Problem(Exception):
    """A file that must be quarantined, with the reason."""

    def __init__(self, reason: str, **known: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        self.known = known


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _has_nul(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            for key, child in item.items():
                if "\x00" in key:
                    return True
                stack.append(child)
        elif isinstance(item, list):
            stack.extend(item)
    return False


@dataclass
class _Parsed:
    status: int | None  # None: a plain body, status decided later
    body: Any
    canonical: tuple[str, str] | None  # (hash, text) of a 200 body
    headers: dict[str, str]
    envelope: dict[str, Any]
    file_sha256: str


def _read_json(path: Path) -> tuple[Any, bytes]:
    try:
        info = path.stat()
    except OSError as exc:
        raise _Problem(f"cannot read the file ({exc.strerror or exc})") from None
    if info.st_size > MAX_FILE_BYTES:
        raise _Problem(f"too large ({info.st_size} bytes; at most {MAX_FILE_BYTES})")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise _Problem(f"cannot read the file ({exc.strerror or exc})") from None
    if not raw.strip():
        raise _Problem("empty file")
    try:
        return json.loads(raw, parse_constant=_reject_constant), raw
    except RecursionError:
        raise _Problem("not valid JSON: nested too deeply") from None
    except ValueError as exc:
        detail = str(exc)
        if len(detail) > 120:
            detail = detail[:119] + "…"
        raise _Problem(f"not valid JSON (truncated or corrupt?): {detail}") from None


def _parse_file(path: Path) -> _Parsed:
    data, raw = _read_json(path)
    file_sha = hashlib.sha256(raw).hexdigest()
    headers: dict[str, str] = {}
    envelope: dict[str, Any] = {}
    status: int | None = None
    body = data
    if isinstance(data, dict) and "body" in data and "response_code" in data:
        code = data["response_code"]
        if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 599:
            raise _Problem(f"envelope response_code {code!r} is not an HTTP status")
        raw_headers = data.get("headers") or {}
        if not isinstance(raw_headers, dict):
            raise _Problem("envelope headers must be an object")
        headers = {str(k).lower(): str(v) for k, v in raw_headers.items()}
        envelope = data
        status = code
        body = data["body"]
    canonical = None
    if status in (None, 200) and not _is_error_body(body):
        if not isinstance(body, dict):
            kind = "a list" if isinstance(body, list) else type(body).__name__
            raise _Problem(f"not a Clash API response body: the JSON is {kind}, not an object")
        if _has_nul(body):
            raise _Problem("contains a NUL character (\\u0000), which PostgreSQL cannot store")
        try:
            canonical = canonical_body(json.dumps(body, ensure_ascii=False).encode("utf-8"))
        except (UnicodeError, ValueError) as exc:
            raise _Problem(f"cannot be stored as JSON text: {exc}") from None
    return _Parsed(status, body, canonical, headers, envelope, file_sha)


def _request_path(value: str) -> str | None:
    """The API path (with query) of a request URL or path; None if it is not one."""
    if not isinstance(value, str) or len(value) > 2000:
        return None
    parts = urlsplit(value.strip())
    path = parts.path
    if "/v1/" in path:
        path = path[path.index("/v1/") + 3 :]
    if not path.startswith("/") or _endpoint_of_path(path) is None:
        return None
    return path + (f"?{parts.query}" if parts.query else "")


def _endpoint_of_path(path: str) -> tuple[str, str | None] | None:
    bare = path.split("?", 1)[0].rstrip("/")
    for pattern, endpoint in _REQUEST_PATHS:
        match = pattern.match(bare)
        if match:
            tag = (
                unquote(match.group(1))
                if match.groups() and "{tag}" in ENDPOINTS[endpoint]
                else None
            )
            return endpoint, tag
    return None


def _name_tag(name: str) -> str | None:
    """The tag a file stem or folder name ends with (``…_2PR8R8V8P``), if any."""
    match = _NAME_TAG_RE.search(name)
    if not match:
        return None
    prefix, tag = match.groups()
    if not prefix and tag.isdigit():
        return None  # digits only: more likely a date than a tag
    return normalize_tag(tag) if is_valid_tag(tag) else None


def _stem(name: str) -> str:
    lower = name.lower()
    for suffix in (".envelope.json", ".json"):
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _folder_tag(path: Path, root: Path) -> str | None:
    """The tag of the nearest folder (up to and including ``root``) named by one."""
    folder = path.parent
    while True:
        tag = _name_tag(folder.name)
        if tag:
            return tag
        if folder == root or root not in folder.parents:
            return None
        folder = folder.parent


def _name_endpoint(path: Path, root: Path, candidates: tuple[str, ...]) -> str | None:
    """An endpoint named in the file name, else in the nearest folder name (up to ``root``)."""
    names = [_stem(path.name)]
    folder = path.parent
    while True:
        names.append(folder.name)
        if folder == root or root not in folder.parents:
            break
        folder = folder.parent
    for name in names:
        compact = re.sub(r"[^a-z0-9]", "", name.lower())
        for keyword, endpoint in _NAME_ENDPOINTS:
            if keyword in compact and endpoint in candidates:
                return endpoint
    return None


def _valid(tag: Any, what: str) -> str:
    if not isinstance(tag, str) or not is_valid_tag(tag):
        shown = tag if isinstance(tag, str) and len(tag) <= 40 else type(tag).__name__
        raise _Problem(f"invalid {what} {shown!r}: a tag is '#' followed by characters from "
                       f"{TAG_ALPHABET}")  # fmt: skip
    return normalize_tag(tag)


def _identify(
    path: Path,
    relpath: str,
    root: Path,
    entry: ManifestEntry,
    fetched_at: datetime | None,
) -> BackfillFile:
    """Recognise one file on its own (the clan may still be unknown: ``needs_clan``)."""
    parsed = _parse_file(path)
    env = parsed.envelope
    env_request = None
    for key in ("path", "url", "request_path"):
        if isinstance(env.get(key), str):
            env_request = _request_path(env[key])
            if env_request is None:
                raise _Problem(f"envelope {key} {env[key]!r} is not a Clash API request")
            break
    request = entry.path or env_request
    req_endpoint, req_tag = _endpoint_of_path(request) if request else (None, None)
    if entry.endpoint and req_endpoint and entry.endpoint != req_endpoint:
        raise _Problem(
            f"the manifest says endpoint {entry.endpoint!r} but the request path {request!r} "
            f"is {req_endpoint!r}"
        )

    # -- time
    time_source = "--fetched-at"
    when = fetched_at
    if when is None and entry.fetched_at is not None:
        when, time_source = entry.fetched_at, "manifest"
    if when is None and env.get("fetched_at") is not None:
        try:
            when, time_source = parse_fetch_time(env["fetched_at"]), "envelope"
        except ValueError as exc:
            raise _Problem(f"envelope {exc}") from None
    if when is None and parsed.headers.get("date"):
        try:
            sent = parsedate_to_datetime(parsed.headers["date"])
        except (TypeError, ValueError):
            sent = None
        if sent is not None:
            sent = sent.replace(tzinfo=UTC) if sent.tzinfo is None else sent.astimezone(UTC)
            when, time_source = sent, "envelope Date header"
    if when is None:
        mtime = path.stat().st_mtime
        when, time_source = datetime.fromtimestamp(int(mtime), UTC), "mtime"

    # -- status
    body = parsed.body
    status = parsed.status
    if status is None:
        if _is_error_body(body):
            name_status = _STATUS_IN_NAME_RE.search(_stem(path.name))
            status = (
                entry.status
                or (int(name_status.group(1)) if name_status else None)
                or _REASON_STATUS.get(body["reason"])
            )
            if status is None or status == 200:
                raise _Problem(
                    f"an error body (reason {body['reason']!r}) without its HTTP status: "
                    'add "status" in a manifest entry'
                )
        else:
            status = 200

    # -- endpoint
    known = {"fetched_at": when}
    explicit = entry.endpoint or req_endpoint
    if status == 200:
        shape = classify_body(body)
        if shape is None:
            keys = ", ".join(sorted(map(str, body))[:8]) if isinstance(body, dict) else ""
            raise _Problem(
                f"unrecognised JSON: not a Clash API response body (keys: {keys or 'none'})",
                **known,
            )
    else:
        shape = BodyShape(tuple(ENDPOINTS), None)
    if explicit:
        if explicit not in shape.candidates:
            looks = shape.default or "/".join(shape.candidates)
            raise _Problem(
                f"the manifest or envelope says endpoint {explicit!r} but the body looks "
                f"like {looks!r}",
                **known,
            )
        endpoint = explicit
    elif shape.default:
        endpoint = shape.default
    else:
        guess = _name_endpoint(path, root, shape.candidates)
        if guess is None:
            what = "an error response" if status != 200 else "an empty list"
            raise _Problem(
                f"cannot tell which endpoint {what} came from: add a manifest entry with "
                '"endpoint" (or name the file after it, e.g. …_warlog_….json)',
                **known,
            )
        endpoint = guess
    known["endpoint"] = endpoint

    # -- tags
    explicit_clan = entry.clan_tag
    clan_source = "manifest" if explicit_clan else None
    if explicit_clan is None and endpoint in _CLAN_SCOPED and req_tag and req_endpoint == endpoint:
        explicit_clan, clan_source = _valid(req_tag, "clan tag in the request path"), "envelope"
    if explicit_clan is None and isinstance(env.get("clan_tag"), str):
        explicit_clan, clan_source = _valid(env["clan_tag"], "envelope clan_tag"), "envelope"
    explicit_resource = entry.resource_tag
    if explicit_resource is None and req_tag and req_endpoint == endpoint:
        explicit_resource = _valid(req_tag, "tag in the request path")

    name_tag = _name_tag(_stem(path.name))
    folder_tag = _folder_tag(path, root)
    clan_tag: str | None = None
    resource_tag: str | None = None
    needs_clan = False
    choices: tuple[str, ...] = ()

    if endpoint == "clan" and status == 200:
        own = _valid(shape.tag, "clan tag")
        for claim, what in ((explicit_clan, "clan_tag"), (explicit_resource, "resource_tag")):
            if claim and claim != own:
                raise _Problem(f"the manifest or envelope says {what} {claim} but the body "
                               f"is clan {own}", **known)  # fmt: skip
        clan_tag, resource_tag, clan_source = own, own, "body"
    elif endpoint == "player":
        if status == 200:
            resource_tag = _valid(shape.tag, "player tag")
            if explicit_resource and explicit_resource != resource_tag:
                raise _Problem(f"the manifest or envelope says player {explicit_resource} but "
                               f"the body is player {resource_tag}", **known)  # fmt: skip
        else:
            resource_tag = explicit_resource or name_tag
        clan_tag = explicit_clan
        if clan_tag is None and folder_tag:
            clan_tag, clan_source = folder_tag, "folder name"
        if clan_tag is None and status == 200:
            profile_clan = body.get("clan") if isinstance(body.get("clan"), dict) else {}
            if profile_clan.get("tag") is not None:
                clan_tag = _valid(profile_clan["tag"], "clan tag in the player profile")
                clan_source = "player profile"
    elif endpoint in _GLOBAL:
        resource_tag = None
        clan_tag = explicit_clan
        if clan_tag is None and folder_tag:
            clan_tag, clan_source = folder_tag, "folder name"
    else:
        # clan-scoped lists, wars and groups: the clan must be known
        if endpoint == "cwl_war":
            resource_tag = explicit_resource
            choices = tuple(normalize_tag(t) for t in shape.clans if is_valid_tag(t))
        elif endpoint == "leaguegroup":
            choices = tuple(normalize_tag(t) for t in shape.clans if is_valid_tag(t))
        clan_tag = explicit_clan
        if endpoint == "currentwar" and shape.war_clan is not None:
            war_clan = _valid(shape.war_clan, "clan tag of the war")
            if clan_tag and clan_tag != war_clan:
                raise _Problem(f"the manifest or envelope says clan {clan_tag} but the war's "
                               f"clan side is {war_clan}", **known)  # fmt: skip
            clan_tag, clan_source = war_clan, clan_source or "body"
        if clan_tag is None and name_tag and endpoint != "cwl_war":
            clan_tag, clan_source = name_tag, "file name"
        if clan_tag is None and folder_tag:
            clan_tag, clan_source = folder_tag, "folder name"
        if clan_tag and choices and clan_tag not in choices:
            raise _Problem(f"clan {clan_tag} ({clan_source}) is not one of this {endpoint}'s "
                           f"clans ({', '.join(choices)})", **known)  # fmt: skip
        if endpoint != "cwl_war":
            if explicit_resource and clan_tag and explicit_resource != clan_tag:
                raise _Problem(f"resource_tag {explicit_resource} and clan_tag {clan_tag} "
                               f"differ for a clan endpoint ({endpoint})", **known)  # fmt: skip
            clan_tag = clan_tag or explicit_resource
            resource_tag = clan_tag
        needs_clan = clan_tag is None

    if request is None:
        template = ENDPOINTS[endpoint]
        request = template.format(tag=tag_path(resource_tag)) if resource_tag else template
    reason = message = None
    if status != 200 and isinstance(body, dict):
        reason = body.get("reason") if isinstance(body.get("reason"), str) else None
        message = body.get("message") if isinstance(body.get("message"), str) else None
    return BackfillFile(
        path=path,
        relpath=relpath,
        endpoint=endpoint,
        status=status,
        clan_tag=clan_tag,
        resource_tag=resource_tag,
        fetched_at=when,
        payload_hash=parsed.canonical[0] if parsed.canonical and status == 200 else None,
        request_path=request,
        reason=reason,
        message=message,
        max_age=parse_max_age(parsed.headers.get("cache-control")),
        time_source=time_source,
        clan_source=clan_source,
        needs_clan=needs_clan,
        clan_choices=choices,
        file_sha256=parsed.file_sha256,
    )


def _walk(root: Path) -> Iterator[Path]:
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith(".") or not name.lower().endswith(".json"):
                continue
            path = Path(folder, name)
            try:
                if not stat.S_ISREG(path.stat().st_mode):
                    continue
            except OSError:
                pass  # broken link: reported as unreadable
            yield path


def _is_quarantine_reasons(path: Path) -> bool:
    if path.name not in (REASONS_FILE, f"_{REASONS_FILE}"):
        return False
    try:
        return json.loads(path.read_bytes()).get("kind") == QUARANTINE_KIND
    except (OSError, ValueError, AttributeError):
        return False


def plan_backfill(
    path: Path | str,
    *,
    fetched_at: datetime | None = None,
    manifest: Path | str | None = None,
) -> BackfillPlan:
    """Read and recognise every file under ``path``; decide clans, times and runs.

    Touches no database. Raises :class:`BackfillError` when the backfill cannot
    start (PATH missing, nothing to read, an invalid manifest); a bad file is
    never an error here, it is quarantined.
    """
    given = Path(path).expanduser()
    if not given.exists():
        raise BackfillError(
            f"{given} does not exist",
            hint="pass a saved API response (.json) or a folder of them",
        )
    given = given.resolve()
    root = given if given.is_dir() else given.parent
    if not given.is_dir() and given.name in MANIFEST_NAMES:
        raise BackfillError(f"{given} is a manifest, not a response", hint="pass its folder")
    if fetched_at is not None:
        try:
            fetched_at = parse_fetch_time(fetched_at, what="--fetched-at")
        except ValueError as exc:
            raise BackfillError(str(exc), hint="e.g. --fetched-at 2025-09-10T15:24:10Z") from None

    manifests: list[Manifest] = []
    if manifest is not None:
        manifest_file = Path(manifest).expanduser().resolve()
        if not manifest_file.is_file():
            raise BackfillError(f"manifest {manifest_file} does not exist", hint="check --manifest")
        manifests.append(_load_manifest(manifest_file, root))
    skip = {m.file for m in manifests}
    if given.is_dir():
        candidates = list(_walk(given))
        in_tree = [p for p in candidates if p.name in MANIFEST_NAMES and p not in skip]
    else:
        candidates = [given]
        in_tree = [root / n for n in MANIFEST_NAMES if (root / n).is_file() and root / n != given]
    folders = [p.parent for p in in_tree]
    if len(folders) != len(set(folders)):
        twice = sorted({str(f) for f in folders if folders.count(f) > 1})
        raise BackfillError(
            f"both manifest.json and _manifest.json in {twice[0]}",
            hint="keep one manifest per folder",
        )
    # nearer manifests first: deeper folders before their ancestors
    for file in sorted(in_tree, key=lambda p: len(p.parent.parts), reverse=True):
        manifests.append(_load_manifest(file, file.parent))
    skip |= set(in_tree)

    data_files = [p for p in candidates if p not in skip and not _is_quarantine_reasons(p)]
    if not data_files:
        raise BackfillError(
            f"nothing to backfill: no *.json response files in {given}",
            hint="pass a saved API response (.json) or a folder of them",
        )

    items: list[BackfillFile] = []
    quarantined: list[Quarantined] = []
    for file in data_files:
        relpath = file.relative_to(root).as_posix()
        entry = _resolve_entry(manifests, file)
        try:
            items.append(_identify(file, relpath, root, entry, fetched_at))
        except _Problem as problem:
            quarantined.append(Quarantined(file, relpath, problem.reason, **problem.known))

    # -- the clan from a clan body in the same folder with the same fetch time
    clans_at: dict[tuple[Path, datetime], set[str]] = defaultdict(set)
    for item in items:
        if item.endpoint == "clan" and not item.is_error and item.clan_tag:
            clans_at[(item.path.parent, item.fetched_at)].add(item.clan_tag)
    resolved: list[BackfillFile] = []
    for item in items:
        if item.needs_clan:
            found = set(clans_at.get((item.path.parent, item.fetched_at), ()))
            if item.clan_choices:
                found = found & set(item.clan_choices)
            if len(found) == 1:
                item.clan_tag = found.pop()
                item.clan_source = "clan body in the same folder"
                if item.endpoint != "cwl_war":
                    item.resource_tag = item.clan_tag
                    item.request_path = ENDPOINTS[item.endpoint].format(tag=tag_path(item.clan_tag))
                item.needs_clan = False
            else:
                why = (
                    f"several clans ({', '.join(sorted(found))}) were fetched at that time"
                    if found
                    else "no manifest, envelope, file or folder name says"
                )
                naming = (
                    "put it in a folder named by the clan tag"
                    if item.endpoint == "cwl_war"
                    else "name the file …_TAG.json, or put it in a folder named by the clan tag"
                )
                quarantined.append(
                    Quarantined(
                        item.path,
                        item.relpath,
                        f"cannot tell which clan this {item.endpoint} response belongs to "
                        f'({why}): add a manifest entry with "clan_tag" (or {naming})',
                        endpoint=item.endpoint,
                        resource_tag=item.resource_tag,
                        fetched_at=item.fetched_at,
                    )
                )
                continue
        resolved.append(item)

    # -- duplicates (skipped) and conflicts (quarantined) inside this backfill
    by_key: dict[tuple, list[BackfillFile]] = defaultdict(list)
    for item in resolved:
        if not item.is_error and item.identifies_resource:
            by_key[(item.endpoint, item.resource_tag, item.fetched_at)].append(item)
    conflicted: set[int] = set()
    for (endpoint, tag, when), group in by_key.items():
        if len({i.payload_hash for i in group}) > 1:
            names = ", ".join(i.relpath for i in group)
            for item in group:
                conflicted.add(id(item))
                quarantined.append(
                    Quarantined(
                        item.path,
                        item.relpath,
                        f"conflict: different {endpoint} bodies for {tag or 'the same list'} "
                        f"fetched at {when:%Y-%m-%dT%H:%M:%SZ} ({names}); give them their "
                        "own fetch times in a manifest",
                        endpoint=item.endpoint,
                        clan_tag=item.clan_tag,
                        resource_tag=item.resource_tag,
                        fetched_at=item.fetched_at,
                    )
                )
    files: list[BackfillFile] = []
    duplicates: list[BackfillFile] = []
    seen: set[tuple] = set()
    for item in sorted(resolved, key=lambda i: i.relpath):
        if id(item) in conflicted:
            continue
        key = item.dedupe_key()
        if key in seen:
            duplicates.append(item)
            continue
        seen.add(key)
        files.append(item)

    warnings = [
        f"manifest {m.file}: entry {key!r} matches no file"
        for m in manifests
        for key in sorted(set(m.entries) - m.used)
    ]
    return BackfillPlan(
        root=root,
        files=files,
        quarantined=sorted(quarantined, key=lambda q: q.relpath),
        duplicates=duplicates,
        files_read=len(data_files),
        manifests=[m.file for m in manifests],
        warnings=warnings,
    )


# ---------------------------------------------------------------- landing


def _record(item: BackfillFile) -> FetchRecord:
    """Re-read the file and build its fetch record; the content must not have changed."""
    parsed = _parse_file(item.path)
    if parsed.file_sha256 != item.file_sha256:
        raise _Problem("the file changed while the backfill was running")
    body = None
    if not item.is_error:
        assert parsed.canonical is not None
        body = parsed.canonical[1].encode("utf-8")
    return FetchRecord(
        endpoint=item.endpoint,
        resource_tag=item.resource_tag,
        path=item.request_path,
        status=item.status,
        reason=item.reason,
        message=item.message,
        requested_at=item.fetched_at,
        fetched_at=item.fetched_at,
        duration_ms=None,  # type: ignore[arg-type]  # unknown for a saved response
        attempts=1,
        retries=0,
        throttled=0,
        max_age=item.max_age,
        body=body,
        error=f"HTTP {item.status} {item.reason or ''}".strip() if item.is_error else None,
    )


def _existing(conn: psycopg.Connection, items: list[BackfillFile]) -> dict[int, list[tuple]]:
    """Fetch-log rows already in raw for each item's (endpoint, resource tag, fetch time)."""
    rows = conn.execute(
        """
        select k.i, f.payload_hash, f.http_status, f.error_reason, f.clan_tag
        from unnest(%s::text[], %s::text[], %s::timestamptz[])
            with ordinality as k (endpoint, resource_tag, fetched_at, i)
        join raw.fetch_log as f
            on f.endpoint = k.endpoint
            and f.fetched_at = k.fetched_at
            and (
                f.resource_tag = k.resource_tag
                or (f.resource_tag is null and k.resource_tag is null)
            )
        """,
        (
            [i.endpoint for i in items],
            [i.resource_tag for i in items],
            [i.fetched_at for i in items],
        ),
    ).fetchall()
    found: dict[int, list[tuple]] = defaultdict(list)
    for index, *row in rows:
        found[int(index) - 1].append(tuple(row))
    return found


def backfill(
    db_url: str,
    path: Path | str,
    *,
    fetched_at: datetime | None = None,
    manifest: Path | str | None = None,
    quarantine_root: Path | None = None,
    now: datetime | None = None,
) -> BackfillResult:
    """Load every file under ``path`` into ``raw`` (one run per clan and fetch time).

    Bad files are quarantined (copied under ``quarantine_root`` when given, with
    ``reasons.json``) and everything readable is loaded; already loaded bodies
    are skipped. Raises :class:`BackfillError` when nothing can start.
    """
    plan = plan_backfill(path, fetched_at=fetched_at, manifest=manifest)
    return load_plan(db_url, plan, quarantine_root=quarantine_root, now=now)


def load_plan(
    db_url: str,
    plan: BackfillPlan,
    *,
    quarantine_root: Path | None = None,
    now: datetime | None = None,
) -> BackfillResult:
    """Land a :class:`BackfillPlan` (see :func:`backfill`)."""
    quarantined = list(plan.quarantined)
    result = BackfillResult(
        root=plan.root,
        files_read=plan.files_read,
        loaded=0,
        errors_loaded=0,
        skipped=len(plan.duplicates),
        quarantined=quarantined,
        runs=[],
        payloads_new=0,
        warnings=list(plan.warnings),
    )
    try:
        with connect(db_url, autocommit=True) as conn:
            for (clan_tag, when), items in plan.runs().items():
                _land_group(conn, clan_tag, when, items, result)
    except psycopg.Error as exc:
        detail = scrub(" ".join(str(exc).split()), db_url)
        raise DatabaseError(
            f"backfill stopped: {detail[:300]}",
            hint=f"{len(result.runs)} run(s) were landed before this; fix the cause and run "
            "the backfill again (what is loaded is skipped)",
        ) from None
    finally:
        result.quarantined.sort(key=lambda q: q.relpath)
        if quarantine_root is not None and result.quarantined:
            result.quarantine_dir = write_quarantine(
                quarantine_root, plan.root, result.quarantined, now=now
            )
    return result


def _land_group(
    conn: psycopg.Connection,
    clan_tag: str | None,
    when: datetime,
    items: list[BackfillFile],
    result: BackfillResult,
) -> None:
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        existing = _existing(conn, items)
        new: list[BackfillFile] = []
        records: list[FetchRecord] = []
        for index, item in enumerate(items):
            rows = existing.get(index, [])
            if item.is_error:
                if any(
                    r[0] is None and r[1] == item.status and r[2] == item.reason
                    and r[3] == item.clan_tag
                    for r in rows
                ):  # fmt: skip
                    result.skipped += 1
                    continue
            else:
                hashes = {r[0] for r in rows if r[0] is not None}
                if item.payload_hash in hashes:
                    result.skipped += 1
                    continue
                if hashes and item.identifies_resource:
                    result.quarantined.append(
                        _as_quarantined(
                            item,
                            f"conflict: a different {item.endpoint} body for "
                            f"{item.resource_tag or 'the same list'} fetched at "
                            f"{when:%Y-%m-%dT%H:%M:%SZ} is already loaded; give this file "
                            "its own fetch time in a manifest",
                        )
                    )
                    continue
            try:
                records.append(_record(item))
            except _Problem as problem:
                result.quarantined.append(_as_quarantined(item, problem.reason))
                continue
            new.append(item)
        if not records:
            return
        bundle = ClanBundle(clan_tag=clan_tag, snapshot_at=when, records=records)  # type: ignore[arg-type]
        landed = land_bundle(
            conn,
            bundle,
            run_id=uuid.uuid4(),
            source=SOURCE,
            started_at=when,
            source_files={i: item.relpath for i, item in enumerate(new)},
        )
    result.runs.append(landed)
    result.loaded += len(new)
    result.errors_loaded += sum(1 for item in new if item.is_error)
    result.payloads_new += landed.payloads_new


def _as_quarantined(item: BackfillFile, reason: str) -> Quarantined:
    return Quarantined(
        item.path,
        item.relpath,
        reason,
        endpoint=item.endpoint,
        clan_tag=item.clan_tag,
        resource_tag=item.resource_tag,
        fetched_at=item.fetched_at,
    )


# ------------------------------------------------------------- quarantine


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def write_quarantine(
    quarantine_root: Path,
    source_root: Path,
    items: list[Quarantined],
    *,
    now: datetime | None = None,
) -> Path:
    """Copy quarantined files to ``<quarantine_root>/<UTC time>/`` with ``reasons.json``.

    Files keep their path relative to the backfilled folder (folder names can
    carry the clan tag) and their modification time (the fallback fetch time).
    A ``manifest.json`` template lists the files that only lack a clan, an
    endpoint or a distinct fetch time, with what is known filled in.
    """
    stamp = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = Path(quarantine_root) / stamp
    suffix = 1
    while target.exists():
        suffix += 1
        target = Path(quarantine_root) / f"{stamp}-{suffix}"
    target.mkdir(parents=True)
    entries = []
    template: dict[str, dict[str, Any]] = {}
    for item in items:
        copy = target / item.relpath
        info: dict[str, Any] = {
            "file": item.relpath,
            "source": str(item.path),
            "reason": item.reason,
        }
        try:
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(item.path, copy)
            info["size"] = copy.stat().st_size
            info["sha256"] = hashlib.sha256(copy.read_bytes()).hexdigest()
        except OSError as exc:
            info["copied"] = False
            info["copy_error"] = exc.strerror or str(exc)
        entries.append(info)
        if item.endpoint or item.reason.startswith("cannot tell which endpoint"):
            template[item.relpath] = {
                "endpoint": item.endpoint,
                "clan_tag": item.clan_tag,
                "fetched_at": _iso(item.fetched_at),
            }
            if item.endpoint in ("player", "cwl_war"):  # elsewhere the clan is the resource
                template[item.relpath]["resource_tag"] = item.resource_tag
    reasons = {
        "kind": QUARANTINE_KIND,
        "created_at": _iso(now or datetime.now(UTC)),
        "source": str(source_root),
        "how_to_retry": "fix the files (or fill in manifest.json) and run: "
        f"clash-pipeline backfill {target}",
        "files": entries,
    }
    taken = {item.relpath for item in items}
    reasons_name = REASONS_FILE if REASONS_FILE not in taken else f"_{REASONS_FILE}"
    (target / reasons_name).write_text(
        json.dumps(reasons, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    if template and not taken & set(MANIFEST_NAMES):
        (target / MANIFEST_NAMES[0]).write_text(
            json.dumps({"files": template}, indent=2, ensure_ascii=False) + "\n",
            encoding="utf-8",
        )
    return target
