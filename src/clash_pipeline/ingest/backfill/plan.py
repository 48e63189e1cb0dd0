"""Planning a backfill: every file read and recognised, grouped into runs, no database.

Planning first and landing after means an invalid manifest or option stops the
backfill before anything is loaded, and that clans, duplicates and conflicts
are decided with the whole folder in view. Last come the door checks
(:mod:`clash_pipeline.ingest.checks`): a body the marts cannot take (a clan body
whose memberList merges two recordings, a member list of another clan, a time
in the future ...) is quarantined with the reason, so it never fails the build.
"""

from __future__ import annotations

import os
import stat
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from clash_pipeline.ingest.backfill.clans import KnownClans, resolve_clans
from clash_pipeline.ingest.backfill.identify import identify
from clash_pipeline.ingest.backfill.manifest import (
    MANIFEST_NAMES,
    Manifest,
    find_manifests,
    resolve_entry,
)
from clash_pipeline.ingest.backfill.model import (
    BackfillError,
    BackfillFile,
    BackfillPlan,
    FileProblem,
    NotStored,
    Quarantined,
    Skipped,
)
from clash_pipeline.ingest.backfill.quarantine import is_quarantine_reasons
from clash_pipeline.ingest.backfill.read import parse_file
from clash_pipeline.ingest.backfill.times import parse_fetch_time
from clash_pipeline.ingest.checks import check_body, check_fetch_time, describe

_PATH_HINT = "pass a saved API response (.json) or a folder of them"
#: Endpoints whose bodies the door reads again (a player's tag is already checked against
#: its sources by identify; league lists have nothing the marts could trip on).
_DOOR_ENDPOINTS = frozenset(
    {"clan", "clan_members", "warlog", "currentwar", "cwl_war", "capitalraidseasons", "leaguegroup"}
)


def plan_backfill(
    path: Path | str,
    *,
    fetched_at: datetime | None = None,
    manifest: Path | str | None = None,
    known_clans: KnownClans | None = None,
    now: datetime | None = None,
) -> BackfillPlan:
    """Read and recognise every file under ``path``; decide clans, times and runs.

    Touches no database itself: ``known_clans`` (the clans already in the
    warehouse) is called at most once, and only when a CWL war or league group
    needs it. Files failing the door checks are quarantined (a fetch time later
    than ``now``, default the wall clock, among them). Raises
    :class:`BackfillError` when the backfill cannot start (PATH missing, nothing
    to read, an invalid manifest); a bad file is never an error here, it is
    quarantined, and a response of an endpoint the pipeline does not store is
    listed in ``not_stored``.
    """
    given, root = _resolve_path(path)
    when = _fetch_time_option(fetched_at)
    candidates = list(_walk(given)) if given.is_dir() else [given]
    manifests = find_manifests(given, root, candidates, manifest)
    skip = {m.file for m in manifests}
    data_files = [p for p in candidates if p not in skip and not is_quarantine_reasons(p)]
    if not data_files:
        raise BackfillError(
            f"nothing to backfill: no *.json response files in {given}", hint=_PATH_HINT
        )
    items, quarantined, not_stored = _recognise(data_files, root, manifests, when)
    items, unresolved = resolve_clans(items, known_clans)
    files, duplicates, conflicts = _dedupe(items)
    files, turned_away = _door(files, now or datetime.now(UTC))
    return BackfillPlan(
        root=root,
        files=files,
        quarantined=sorted(
            quarantined + unresolved + conflicts + turned_away, key=lambda q: q.relpath
        ),
        duplicates=duplicates,
        files_read=len(data_files),
        manifests=[m.file for m in manifests],
        warnings=[
            f"manifest {m.file}: entry {key!r} matches no file"
            for m in manifests
            for key in m.unused()
        ]
        + [f"{item.relpath}: {item.note}" for item in files if item.note],
        not_stored=not_stored,
    )


def _resolve_path(path: Path | str) -> tuple[Path, Path]:
    """(the file or folder to read, the folder relative paths start from)."""
    given = Path(path).expanduser()
    if not given.exists():
        raise BackfillError(f"{given} does not exist", hint=_PATH_HINT)
    given = given.resolve()
    if given.is_dir():
        return given, given
    if given.name in MANIFEST_NAMES:
        raise BackfillError(f"{given} is a manifest, not a response", hint="pass its folder")
    return given, given.parent


def _fetch_time_option(fetched_at: datetime | None) -> datetime | None:
    if fetched_at is None:
        return None
    try:
        return parse_fetch_time(fetched_at, what="--fetched-at")
    except ValueError as exc:
        raise BackfillError(str(exc), hint="e.g. --fetched-at 2025-09-10T15:24:10Z") from None


def _walk(root: Path) -> Iterator[Path]:
    """Every regular ``*.json`` below ``root`` in name order, hidden files and folders skipped."""
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


def _recognise(
    data_files: list[Path], root: Path, manifests: list[Manifest], fetched_at: datetime | None
) -> tuple[list[BackfillFile], list[Quarantined], list[Skipped]]:
    """Each file on its own: recognised, quarantined with the reason, or not stored."""
    items: list[BackfillFile] = []
    quarantined: list[Quarantined] = []
    not_stored: list[Skipped] = []
    for file in data_files:
        relpath = file.relative_to(root).as_posix()
        entry = resolve_entry(manifests, file)
        try:
            items.append(identify(file, relpath, root, entry, fetched_at))
        except NotStored as skipped:
            not_stored.append(Skipped(file, relpath, skipped.what))
        except FileProblem as problem:
            quarantined.append(
                Quarantined(
                    file,
                    relpath,
                    problem.reason,
                    endpoint=problem.endpoint,
                    fetched_at=problem.fetched_at,
                )
            )
    return items, quarantined, not_stored


def _dedupe(
    items: list[BackfillFile],
) -> tuple[list[BackfillFile], list[BackfillFile], list[Quarantined]]:
    """(files to load, duplicates to skip, conflicts to quarantine), files in path order.

    Two files of the same resource at the same fetch time with different bodies
    are a conflict: both are quarantined, never guessed between.
    """
    conflicts = _conflicts(items)
    conflicted = {item.relpath for item in conflicts}
    files: list[BackfillFile] = []
    duplicates: list[BackfillFile] = []
    seen: set[tuple[object, ...]] = set()
    for item in sorted(items, key=lambda i: i.relpath):
        if item.relpath in conflicted:
            continue
        key = item.dedupe_key()
        if key in seen:
            duplicates.append(item)
            continue
        seen.add(key)
        files.append(item)
    return files, duplicates, conflicts


def _door(files: list[BackfillFile], now: datetime) -> tuple[list[BackfillFile], list[Quarantined]]:
    """(files the marts can take, files quarantined by the door checks with their reasons).

    A member list is compared with the clan body of its run (same clan, same fetch time).
    """
    bodies = {
        item.relpath: _body(item)
        for item in files
        if not item.is_error and item.endpoint in _DOOR_ENDPOINTS
    }
    clan_bodies = {
        (item.clan_tag, item.fetched_at): bodies[item.relpath]
        for item in files
        if item.endpoint == "clan" and bodies.get(item.relpath) is not None
    }
    kept: list[BackfillFile] = []
    turned_away: list[Quarantined] = []
    for item in files:
        problems = check_fetch_time(item.fetched_at, now)
        body = bodies.get(item.relpath)
        if body is not None:
            problems += check_body(
                item.endpoint,
                body,
                clan_tag=item.clan_tag,
                fetched_at=item.fetched_at,
                resource_tag=item.resource_tag,
                clan_body=clan_bodies.get((item.clan_tag, item.fetched_at)),
            )
        if not problems:
            kept.append(item)
            continue
        # no manifest template entry: the body itself is wrong, not what is known of it
        reason = f"failed the door checks: {describe(problems)}"
        turned_away.append(Quarantined(item.path, item.relpath, reason))
    return kept, turned_away


def _body(item: BackfillFile) -> object:
    """The file's body, read again (None if it cannot be: loading re-reads and reports it)."""
    try:
        return parse_file(item.path).body
    except FileProblem:
        return None


def _conflicts(items: list[BackfillFile]) -> list[Quarantined]:
    by_key: dict[tuple[str, str | None, datetime], list[BackfillFile]] = defaultdict(list)
    for item in items:
        if not item.is_error and item.identifies_resource:
            by_key[(item.endpoint, item.resource_tag, item.fetched_at)].append(item)
    conflicts: list[Quarantined] = []
    for (endpoint, tag, when), group in by_key.items():
        if len({i.payload_hash for i in group}) > 1:
            names = ", ".join(i.relpath for i in group)
            reason = (
                f"conflict: different {endpoint} bodies for {tag or 'the same list'} "
                f"fetched at {when:%Y-%m-%dT%H:%M:%SZ} ({names}); give them their "
                "own fetch times in a manifest"
            )
            conflicts.extend(item.quarantined(reason) for item in group)
    return conflicts
