"""The quarantine: files that were not loaded, copied aside with why and how to retry.

Unreadable or unrecognised files are copied (with their relative paths and
modification times) to ``<home>/quarantine/<UTC time>/`` with ``reasons.json``
and, when some were recognised but lack a clan, an endpoint or a distinct
time, a ``manifest.json`` template with what is known; fix them and run
``backfill`` on that folder. Why files and not a table: quarantined inputs are
by definition not API data (possibly not JSON, not text, or huge), they are an
operator's to-do list on the machine that has the files, and ``raw`` stays a
record of API responses only, with no schema or grant change.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from clash_pipeline.ingest.backfill.manifest import MANIFEST_NAMES
from clash_pipeline.ingest.backfill.model import Quarantined

REASONS_FILE = "reasons.json"
QUARANTINE_KIND = "clash-pipeline backfill quarantine"
# Where the resource is not the clan, the template must ask for its tag too.
_OWN_RESOURCE_ENDPOINTS = ("player", "cwl_war")


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
    target = _new_folder(quarantine_root, now or datetime.now(UTC))
    entries = [_copy(item, target) for item in items]
    template = {item.relpath: _template_entry(item) for item in items if _fixable(item)}
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
    _write_json(target / reasons_name, reasons)
    if template and not taken & set(MANIFEST_NAMES):
        _write_json(target / MANIFEST_NAMES[0], {"files": template})
    return target


def is_quarantine_reasons(path: Path) -> bool:
    """Whether ``path`` is a ``reasons.json`` this module wrote (not a response to load)."""
    if path.name not in (REASONS_FILE, f"_{REASONS_FILE}"):
        return False
    try:
        kind: object = json.loads(path.read_bytes()).get("kind")
    except (OSError, ValueError, AttributeError):
        return False
    return kind == QUARANTINE_KIND


def _new_folder(quarantine_root: Path, now: datetime) -> Path:
    """A fresh ``<UTC time>`` folder (``-2``, ``-3`` … when one exists already)."""
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = Path(quarantine_root) / stamp
    suffix = 1
    while target.exists():
        suffix += 1
        target = Path(quarantine_root) / f"{stamp}-{suffix}"
    target.mkdir(parents=True)
    return target


def _copy(item: Quarantined, target: Path) -> dict[str, Any]:
    """Copy one file into the quarantine; its ``reasons.json`` entry (a failed copy noted)."""
    copy = target / item.relpath
    info: dict[str, Any] = {"file": item.relpath, "source": str(item.path), "reason": item.reason}
    try:
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(item.path, copy)
        info["size"] = copy.stat().st_size
        info["sha256"] = hashlib.sha256(copy.read_bytes()).hexdigest()
    except OSError as exc:
        info["copied"] = False
        info["copy_error"] = exc.strerror or str(exc)
    return info


def _fixable(item: Quarantined) -> bool:
    """Recognised but for a clan, an endpoint or a distinct time: a manifest entry fixes it."""
    return bool(item.endpoint) or item.reason.startswith("cannot tell which endpoint")


def _template_entry(item: Quarantined) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "endpoint": item.endpoint,
        "clan_tag": item.clan_tag,
        "fetched_at": _iso(item.fetched_at),
    }
    if item.endpoint in _OWN_RESOURCE_ENDPOINTS:  # elsewhere the clan is the resource
        entry["resource_tag"] = item.resource_tag
    return entry


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value else None
