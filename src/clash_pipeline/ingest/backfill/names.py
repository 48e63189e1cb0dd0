"""Clues in file and folder names, for what a body's shape cannot say.

People save responses as ``warlog_2PR8R8V8P.json`` or in a folder per clan
(``2PR8R8V8P/``, ``wf_2PR8R8V8P/``), and error bodies as ``…_403.json``: the
endpoint keyword, the tag and the status are read from there, nearest name first.
"""

from __future__ import annotations

import re
from pathlib import Path

from clash_pipeline.clash_api.tags import TAG_ALPHABET, is_valid_tag, normalize_tag

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

_TAG_CHARS = f"[{TAG_ALPHABET}]"
_NAME_TAG_RE = re.compile(rf"(?:^|[_\-.\s])(#|%23)?({_TAG_CHARS}{{3,14}})$")
_STATUS_IN_NAME_RE = re.compile(r"(?:^|[_\-.])([1-5]\d\d)(?:[_\-.]|$)")


def stem(name: str) -> str:
    """A file name without ``.json`` (or ``.envelope.json``)."""
    lower = name.lower()
    for suffix in (".envelope.json", ".json"):
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def name_tag(name: str) -> str | None:
    """The tag a file stem or folder name ends with (``…_2PR8R8V8P``), if any."""
    match = _NAME_TAG_RE.search(name)
    if not match:
        return None
    prefix, tag = match.groups()
    if not prefix and tag.isdigit():
        return None  # digits only: more likely a date than a tag
    return normalize_tag(tag) if is_valid_tag(tag) else None


def name_status(path: Path) -> int | None:
    """An HTTP status written in the file name (``warlog_403.json``), if any."""
    match = _STATUS_IN_NAME_RE.search(stem(path.name))
    return int(match.group(1)) if match else None


def folder_tag(path: Path, root: Path) -> str | None:
    """The tag of the nearest folder (up to and including ``root``) named by one."""
    for folder in _folders(path, root):
        tag = name_tag(folder.name)
        if tag:
            return tag
    return None


def name_endpoint(path: Path, root: Path, candidates: tuple[str, ...]) -> str | None:
    """An endpoint named in the file name, else in the nearest folder name (up to ``root``)."""
    names = [stem(path.name)] + [folder.name for folder in _folders(path, root)]
    for name in names:
        compact = re.sub(r"[^a-z0-9]", "", name.lower())
        for keyword, endpoint in _NAME_ENDPOINTS:
            if keyword in compact and endpoint in candidates:
                return endpoint
    return None


def _folders(path: Path, root: Path) -> list[Path]:
    """The folders holding ``path``, nearest first, up to and including ``root``."""
    folders = [path.parent]
    while folders[-1] != root and root in folders[-1].parents:
        folders.append(folders[-1].parent)
    return folders
