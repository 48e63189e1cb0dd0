"""Which clan a file lands with (its run), and which resource its row names.

The rules, first that applies (the package docstring has the whole list):
the clan body's own tag; the manifest's or envelope's claim; a current war's
``clan`` side; a tag in the file name, then in the nearest folder name; a
clan body fetched at the same time in the same folder (:func:`resolve_clans`,
once the whole folder is read); a player's profile. A claim that contradicts
the body is a problem, never overridden: the file is quarantined.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from clash_pipeline.clash_api.client import ENDPOINTS
from clash_pipeline.clash_api.tags import TAG_ALPHABET, is_valid_tag, normalize_tag, tag_path
from clash_pipeline.ingest.backfill.api_paths import Request
from clash_pipeline.ingest.backfill.manifest import ManifestEntry
from clash_pipeline.ingest.backfill.model import BackfillFile, FileProblem, Quarantined
from clash_pipeline.ingest.backfill.shapes import CLAN_SCOPED, BodyShape

_SHOWN_CHARS = 40


@dataclass(frozen=True)
class Claims:
    """The clan and resource tag the manifest or envelope states (validated)."""

    clan: str | None = None
    clan_source: str | None = None  # "manifest" or "envelope" when ``clan`` is given
    resource: str | None = None


@dataclass(frozen=True)
class Clues:
    """Everything about one file that can say which clan and resource it is."""

    endpoint: str
    status: int
    shape: BodyShape
    body: Any
    fetched_at: datetime
    claims: Claims
    name_tag: str | None  # at the end of the file name
    folder_tag: str | None  # of the nearest folder named by a tag

    def problem(self, reason: str) -> FileProblem:
        return FileProblem(reason, endpoint=self.endpoint, fetched_at=self.fetched_at)


@dataclass(frozen=True)
class Tags:
    """A file's clan (None: clanless, or still unknown when ``needs_clan``) and resource."""

    clan_tag: str | None
    resource_tag: str | None
    clan_source: str | None
    needs_clan: bool = False
    choices: tuple[str, ...] = ()  # the clans it may belong to (a league group, a CWL war)


def valid_tag(tag: object, what: str) -> str:
    """``tag`` normalised; a :class:`FileProblem` naming ``what`` if it is no tag."""
    if not isinstance(tag, str) or not is_valid_tag(tag):
        shown = tag if isinstance(tag, str) and len(tag) <= _SHOWN_CHARS else type(tag).__name__
        raise FileProblem(
            f"invalid {what} {shown!r}: a tag is '#' followed by characters from {TAG_ALPHABET}"
        )
    return normalize_tag(tag)


def claimed_tags(
    entry: ManifestEntry, request: Request, envelope: dict[str, Any], endpoint: str
) -> Claims:
    """The manifest's tags, else the envelope's (its request path, then its ``clan_tag``)."""
    clan, source = entry.clan_tag, "manifest" if entry.clan_tag else None
    of_this_endpoint = request.tag if request.endpoint == endpoint else None
    if clan is None and endpoint in CLAN_SCOPED and of_this_endpoint:
        clan, source = valid_tag(of_this_endpoint, "clan tag in the request path"), "envelope"
    if clan is None and isinstance(envelope.get("clan_tag"), str):
        clan, source = valid_tag(envelope["clan_tag"], "envelope clan_tag"), "envelope"
    resource = entry.resource_tag
    if resource is None and of_this_endpoint:
        resource = valid_tag(of_this_endpoint, "tag in the request path")
    return Claims(clan, source, resource)


def find_tags(clues: Clues) -> Tags:
    """The clan and resource tag of one file, by the rules of its endpoint."""
    return _RULES.get(clues.endpoint, _clan_scoped)(clues)


def _clan(c: Clues) -> Tags:
    """A clan body is its own clan and resource; a claim of another clan is refused."""
    if c.status != 200:  # an error has no body to read: as any clan-scoped endpoint
        return _clan_scoped(c)
    own = valid_tag(c.shape.tag, "clan tag")
    for claim, what in ((c.claims.clan, "clan_tag"), (c.claims.resource, "resource_tag")):
        if claim and claim != own:
            raise c.problem(
                f"the manifest or envelope says {what} {claim} but the body is clan {own}"
            )
    return Tags(own, own, "body")


def _player(c: Clues) -> Tags:
    """A player's resource is the player; its clan is claimed, a folder's, or its profile's."""
    resource: str | None
    if c.status == 200:
        resource = valid_tag(c.shape.tag, "player tag")
        if c.claims.resource and c.claims.resource != resource:
            raise c.problem(
                f"the manifest or envelope says player {c.claims.resource} but "
                f"the body is player {resource}"
            )
    else:
        resource = c.claims.resource or c.name_tag
    clan, source = c.claims.clan, c.claims.clan_source
    if clan is None and c.folder_tag:
        clan, source = c.folder_tag, "folder name"
    if clan is None and c.status == 200:
        profile = c.body.get("clan") if isinstance(c.body.get("clan"), dict) else {}
        if profile.get("tag") is not None:
            clan = valid_tag(profile["tag"], "clan tag in the player profile")
            source = "player profile"
    return Tags(clan, resource, source)


def _league_list(c: Clues) -> Tags:
    """Leagues and league tiers belong to no clan; a claim or folder still files them."""
    if c.claims.clan is None and c.folder_tag:
        return Tags(c.folder_tag, None, "folder name")
    return Tags(c.claims.clan, None, c.claims.clan_source)


def _clan_scoped(c: Clues) -> Tags:
    """Lists, wars and groups of one clan: the clan must be known (or found later)."""
    choices: tuple[str, ...] = ()
    if c.endpoint in ("cwl_war", "leaguegroup"):
        choices = tuple(normalize_tag(t) for t in c.shape.clans if is_valid_tag(t))
    clan, source = _scoped_clan(c)
    if clan and choices and clan not in choices:
        raise c.problem(
            f"clan {clan} ({source}) is not one of this {c.endpoint}'s clans ({', '.join(choices)})"
        )
    if c.endpoint == "cwl_war":  # the war's tag is its resource, never the clan's
        return Tags(clan, c.claims.resource, source, needs_clan=clan is None, choices=choices)
    resource = c.claims.resource
    if resource and clan and resource != clan:
        raise c.problem(
            f"resource_tag {resource} and clan_tag {clan} differ for a clan endpoint ({c.endpoint})"
        )
    clan = clan or resource
    return Tags(clan, clan, source, needs_clan=clan is None, choices=choices)


def _scoped_clan(c: Clues) -> tuple[str | None, str | None]:
    """(clan, source): a war's clan side (a claim must agree), a claim, the file or folder name."""
    clan, source = c.claims.clan, c.claims.clan_source
    if c.endpoint == "currentwar" and c.shape.war_clan is not None:
        war_clan = valid_tag(c.shape.war_clan, "clan tag of the war")
        if clan and clan != war_clan:
            raise c.problem(
                f"the manifest or envelope says clan {clan} but the war's clan side is {war_clan}"
            )
        return war_clan, source or "body"
    if clan is not None:
        return clan, source
    if c.name_tag and c.endpoint != "cwl_war":  # a CWL war's file is named by the war
        return c.name_tag, "file name"
    if c.folder_tag:
        return c.folder_tag, "folder name"
    return None, None


_RULES: dict[str, Callable[[Clues], Tags]] = {
    "clan": _clan,
    "player": _player,
    "leagues": _league_list,
    "leaguetiers": _league_list,
}


def resolve_clans(items: list[BackfillFile]) -> tuple[list[BackfillFile], list[Quarantined]]:
    """Give files without a clan the one clan body fetched with them, or quarantine them.

    A clan body in the same folder at the same fetch time is the only clan
    those files can be from; with several such clans nothing is guessed.
    """
    clans_at: dict[tuple[Path, datetime], set[str]] = defaultdict(set)
    for item in items:
        if item.endpoint == "clan" and not item.is_error and item.clan_tag:
            clans_at[(item.path.parent, item.fetched_at)].add(item.clan_tag)
    resolved: list[BackfillFile] = []
    unresolved: list[Quarantined] = []
    for item in items:
        if item.needs_clan:
            found = set(clans_at.get((item.path.parent, item.fetched_at), ()))
            if item.clan_choices:
                found &= set(item.clan_choices)
            if len(found) != 1:
                unresolved.append(_unknown_clan(item, found))
                continue
            _set_clan(item, found.pop())
        resolved.append(item)
    return resolved, unresolved


def _set_clan(item: BackfillFile, clan_tag: str) -> None:
    item.clan_tag = clan_tag
    item.clan_source = "clan body in the same folder"
    if item.endpoint != "cwl_war":
        item.resource_tag = clan_tag
        item.request_path = ENDPOINTS[item.endpoint].format(tag=tag_path(clan_tag))
    item.needs_clan = False


def _unknown_clan(item: BackfillFile, found: set[str]) -> Quarantined:
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
    return Quarantined(
        item.path,
        item.relpath,
        f"cannot tell which clan this {item.endpoint} response belongs to "
        f'({why}): add a manifest entry with "clan_tag" (or {naming})',
        endpoint=item.endpoint,
        resource_tag=item.resource_tag,
        fetched_at=item.fetched_at,
    )
