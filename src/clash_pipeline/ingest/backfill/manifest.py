"""Manifests: what an operator says about saved files that their bodies cannot.

``manifest.json`` or ``_manifest.json`` in any folder (keys relative to that
folder), or ``--manifest FILE`` (keys relative to PATH). An entry beats
``defaults``; ``--manifest`` beats in-tree manifests, and a nearer manifest a
farther one. A manifest is checked whole before anything is loaded: a typo in
one must stop the backfill, not quarantine hundreds of files.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

from clash_pipeline.clash_api.client import ENDPOINTS
from clash_pipeline.clash_api.tags import is_valid_tag, normalize_tag
from clash_pipeline.ingest.backfill.api_paths import request_path
from clash_pipeline.ingest.backfill.model import BackfillError
from clash_pipeline.ingest.backfill.times import parse_fetch_time

MANIFEST_NAMES = ("manifest.json", "_manifest.json")

_DEFAULT_FIELDS = frozenset({"clan_tag", "fetched_at"})
_MANIFEST_FIELDS = frozenset(
    {"endpoint", "clan_tag", "resource_tag", "tag", "fetched_at", "status", "path"}
)


@dataclass(frozen=True)
class ManifestEntry:
    """What a manifest says about one file (None: not given)."""

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

    def unused(self) -> list[str]:
        """Entry keys that matched no file (likely typos, worth a warning)."""
        return sorted(set(self.entries) - self.used)


def find_manifests(
    given: Path, root: Path, candidates: list[Path], explicit: Path | str | None
) -> list[Manifest]:
    """The manifests that apply, in precedence order: ``--manifest``, then nearest first."""
    manifests: list[Manifest] = []
    if explicit is not None:
        manifest_file = Path(explicit).expanduser().resolve()
        if not manifest_file.is_file():
            raise BackfillError(f"manifest {manifest_file} does not exist", hint="check --manifest")
        manifests.append(load_manifest(manifest_file, root))
    skip = {m.file for m in manifests}
    if given.is_dir():
        in_tree = [p for p in candidates if p.name in MANIFEST_NAMES and p not in skip]
    else:
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
        manifests.append(load_manifest(file, file.parent))
    return manifests


def load_manifest(file: Path, base: Path) -> Manifest:
    """Read and check one manifest; raise :class:`BackfillError` if any of it is invalid."""
    try:
        data = json.loads(file.read_bytes())
    except OSError as exc:
        raise _manifest_error(file, f"cannot be read ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise _manifest_error(file, f"is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise _manifest_error(file, "must be a JSON object")
    defaults, files = _split(file, data)
    entries: dict[str, ManifestEntry] = {}
    for key, raw in files.items():
        norm = _manifest_key(key)
        if norm is None:
            raise _manifest_error(file, f"{key!r} is not a relative file path")
        entries[norm] = _manifest_entry(file, key, raw)
    return Manifest(file=file, base=base, defaults=defaults, entries=entries)


def resolve_entry(manifests: list[Manifest], path: Path) -> ManifestEntry:
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
        if entry is not None:
            manifest.used.add(key)
            _merge(merged, entry)
    for manifest, _ in applicable:
        _merge(merged, manifest.defaults)
    return ManifestEntry(**merged)


def _merge(merged: dict[str, Any], entry: ManifestEntry) -> None:
    for name, value in vars(entry).items():
        if value is not None:
            merged.setdefault(name, value)


def _split(file: Path, data: dict[str, Any]) -> tuple[ManifestEntry, dict[str, Any]]:
    """(defaults, entries by key) of either manifest form: with ``files`` or entries only."""
    if "files" not in data and "defaults" not in data:
        return ManifestEntry(), data
    extra = sorted(set(data) - {"files", "defaults"})
    if extra:
        raise _manifest_error(file, f"unknown top-level key(s) {', '.join(extra)}")
    defaults = ManifestEntry()
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
    return defaults, files


def _manifest_error(file: Path, message: str) -> BackfillError:
    return BackfillError(
        f"manifest {file}: {message}",
        hint='a manifest maps file paths to {"endpoint", "clan_tag", "resource_tag", '
        '"fetched_at", "status", "path"}; see clash-pipeline backfill --help',
    )


def _manifest_key(key: str) -> str | None:
    path = PurePosixPath(key.replace("\\", "/"))
    parts = [p for p in path.parts if p not in ("", ".")]
    if not parts or path.is_absolute() or ".." in parts:
        return None
    return "/".join(parts)


def _manifest_entry(file: Path, key: str, raw: Any) -> ManifestEntry:
    if not isinstance(raw, dict):
        raise _manifest_error(file, f"entry {key!r} must be an object")
    unknown = sorted(set(raw) - _MANIFEST_FIELDS)
    if unknown:
        raise _manifest_error(file, f"entry {key!r} has unknown field(s) {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for name, read in _FIELD_READERS:
        try:
            value = read(raw)
        except ValueError as exc:
            raise _manifest_error(file, f"entry {key!r}: {exc}") from None
        if value is not None:
            values[name] = value
    return ManifestEntry(**values)


# Each reader returns a field's value (None: not given) or raises ValueError
# with the message shown after "entry KEY: ".


def _read_endpoint(raw: dict[str, Any]) -> str | None:
    endpoint = raw.get("endpoint")
    if endpoint is None:
        return None
    if endpoint not in ENDPOINTS:
        raise ValueError(f"unknown endpoint {endpoint!r} (one of {', '.join(ENDPOINTS)})")
    return str(endpoint)


def _read_tag(raw: dict[str, Any], name: str, *keys: str) -> str | None:
    tag = next((raw[k] for k in keys if raw.get(k) is not None), None)
    if tag is None:
        return None
    if not is_valid_tag(tag):
        raise ValueError(f"invalid {name} {tag!r}")
    return normalize_tag(tag)


def _read_fetched_at(raw: dict[str, Any]) -> datetime | None:
    value = raw.get("fetched_at")
    return parse_fetch_time(value) if value is not None else None


def _read_status(raw: dict[str, Any]) -> int | None:
    status: object = raw.get("status")
    if status is None:
        return None
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise ValueError("status must be an HTTP status code")
    return status


def _read_path(raw: dict[str, Any]) -> str | None:
    path = raw.get("path")
    if path is None:
        return None
    request = request_path(path)
    if request is None:
        raise ValueError(f"path {path!r} is not an API request path")
    return request


_FIELD_READERS: tuple[tuple[str, Callable[[dict[str, Any]], object]], ...] = (
    ("endpoint", _read_endpoint),
    ("clan_tag", lambda raw: _read_tag(raw, "clan_tag", "clan_tag")),
    ("resource_tag", lambda raw: _read_tag(raw, "resource_tag", "resource_tag", "tag")),
    ("fetched_at", _read_fetched_at),
    ("status", _read_status),
    ("path", _read_path),
)
