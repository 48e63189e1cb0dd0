"""Which clan a file lands with (its run), and which resource its row names.

The rules, first that applies (the package docstring has the whole list):
the clan body's own tag; the manifest's or envelope's claim; the clan the body
names (a current war's ``clan`` side, the ``clan`` of a war log's items); a
tag in the file name, then in the nearest folder name; then, once the whole
backfill is read (:func:`resolve_clans`): for a members list the clan body
with the same member tags, a clan body fetched at the same time in the same
folder, for a CWL war or league group the one of its clans that is known (in
the warehouse or this backfill); a player's profile. A claim or name that
contradicts the body is a problem, never overridden: the file is quarantined.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
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
# Files whose clan is not one the pipeline tracks (a player's profile) or that have none.
_NOT_TRACKING = frozenset({"player", "leagues", "leaguetiers"})
# Their body names several clans, one of which requested it.
_SIDES = ("cwl_war", "leaguegroup")

KnownClans = Callable[[], Iterable[str]]


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
    why_no_clan: str | None = None  # what the body says when it names no single clan


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
    choices, why = _choices(c)
    clan, source = _scoped_clan(c)
    if clan and choices and clan not in choices:
        raise c.problem(
            f"clan {clan} ({source}) is not one of this {c.endpoint}'s clans ({', '.join(choices)})"
        )
    if c.endpoint == "cwl_war":  # the war's tag is its resource, never the clan's
        return Tags(clan, c.claims.resource, source, clan is None, choices=choices, why_no_clan=why)
    resource = c.claims.resource
    if resource and clan and resource != clan:
        raise c.problem(
            f"resource_tag {resource} and clan_tag {clan} differ for a clan endpoint ({c.endpoint})"
        )
    clan = clan or resource
    return Tags(clan, clan, source, clan is None, choices=choices, why_no_clan=why)


def _choices(c: Clues) -> tuple[tuple[str, ...], str | None]:
    """(the clans the body allows, why it names no single one) of a clan-scoped file."""
    clans = tuple(normalize_tag(t) for t in c.shape.clans if is_valid_tag(t))
    if c.status != 200:
        return (), None
    if c.endpoint in _SIDES:
        return clans, None
    if c.endpoint == "warlog" and len(clans) > 1:
        return clans, f"its items name several clans: {', '.join(clans)}"
    if c.endpoint == "currentwar" and c.shape.war_clan is None:
        return (), "a notInWar current war names no clan"
    return (), None


def _body_clan(c: Clues) -> tuple[str, str] | None:
    """(clan, what says so) when the body names its requesting clan: a current war, a war log."""
    if c.status != 200:
        return None
    if c.endpoint == "currentwar" and c.shape.war_clan is not None:
        return valid_tag(c.shape.war_clan, "clan tag of the war"), "the war's clan side"
    if c.endpoint == "warlog" and len(c.shape.clans) == 1:
        return valid_tag(c.shape.clans[0], "clan tag in the war log"), "the war log's clan"
    return None


def _scoped_clan(c: Clues) -> tuple[str | None, str | None]:
    """(clan, source): the claim, the body's clan (a claim or name must agree), the names."""
    clan, source = c.claims.clan, c.claims.clan_source
    # a CWL war's file is named by the war
    name_tag = c.name_tag if c.endpoint != "cwl_war" else None
    body = _body_clan(c)
    if body is not None:
        said, what = body
        if clan and clan != said:
            raise c.problem(f"the manifest or envelope says clan {clan} but {what} is {said}")
        named = (
            (name_tag, "file name"),
            (c.folder_tag, "folder name"),
        )
        for tag, where in named:
            if clan is None and tag and tag != said:
                raise c.problem(
                    f"the {where} says clan {tag} but {what} is {said}: "
                    'rename it, or say which in a manifest entry ("clan_tag")'
                )
        return said, source or "body"
    if clan is not None:
        return clan, source
    if name_tag:
        return name_tag, "file name"
    if c.folder_tag:
        return c.folder_tag, "folder name"
    return None, None


_RULES: dict[str, Callable[[Clues], Tags]] = {
    "clan": _clan,
    "player": _player,
    "leagues": _league_list,
    "leaguetiers": _league_list,
}


@dataclass
class _Backfill:
    """What the backfill's files say about clans, for the files that lack one."""

    at: dict[tuple[Path, datetime], set[str]]  # clan bodies by (folder, fetch time)
    rosters: list[BackfillFile]  # clan bodies with members
    clans: set[str]  # the clans files of this backfill are of
    known_clans: KnownClans | None
    _warehouse: frozenset[str] | None = field(default=None, repr=False)

    @classmethod
    def of(cls, items: list[BackfillFile], known_clans: KnownClans | None) -> _Backfill:
        at: dict[tuple[Path, datetime], set[str]] = defaultdict(set)
        rosters: list[BackfillFile] = []
        for item in items:
            if item.endpoint == "clan" and not item.is_error and item.clan_tag:
                at[(item.path.parent, item.fetched_at)].add(item.clan_tag)
                if item.member_tags:
                    rosters.append(item)
        clans = {
            item.clan_tag
            for item in items
            if item.clan_tag and not item.needs_clan and item.endpoint not in _NOT_TRACKING
        }
        return cls(at, rosters, clans, known_clans)

    def warehouse(self) -> frozenset[str]:
        """The clans already in the warehouse (asked once, only when needed)."""
        if self._warehouse is None:
            self._warehouse = frozenset(self.known_clans() if self.known_clans else ())
        return self._warehouse

    def same_members(self, item: BackfillFile) -> set[str]:
        """Clans whose body, in the same folder or fetched at the same time, has these members."""
        return {
            clan.clan_tag
            for clan in self.rosters
            if clan.clan_tag
            and clan.member_tags == item.member_tags
            and (clan.path.parent == item.path.parent or clan.fetched_at == item.fetched_at)
        }


def resolve_clans(
    items: list[BackfillFile], known_clans: KnownClans | None = None
) -> tuple[list[BackfillFile], list[Quarantined]]:
    """Give files without a clan the one the rest of the backfill says, or quarantine them.

    A members list is its clan body's when their member tags are equal (same
    folder or same fetch time); a clan body in the same folder at the same
    fetch time is the only clan the other files can be from (with several such
    clans nothing is guessed); a CWL war or league group is the one of its
    clans that is known, in this backfill or in the warehouse (``known_clans``,
    called at most once, only when such a file needs it).
    """
    backfill = _Backfill.of(items, known_clans)
    resolved: list[BackfillFile] = []
    unresolved: list[Quarantined] = []
    for item in items:
        if item.needs_clan:
            clan, source, why = _find_clan(item, backfill)
            if clan is None:
                unresolved.append(_unknown_clan(item, why))
                continue
            _set_clan(item, clan, source)
        resolved.append(item)
    return resolved, unresolved


def _find_clan(item: BackfillFile, backfill: _Backfill) -> tuple[str | None, str, str]:
    """(clan or None, where it comes from, why there is none)."""
    if item.endpoint == "clan_members" and item.member_tags:
        same = backfill.same_members(item)
        if len(same) == 1:
            return same.pop(), "clan body with the same members", ""
    found = set(backfill.at.get((item.path.parent, item.fetched_at), ()))
    if item.clan_choices:
        found &= set(item.clan_choices)
    if len(found) == 1:
        return found.pop(), "clan body in the same folder", ""
    if found:
        return None, "", f"several clans ({', '.join(sorted(found))}) were fetched at that time"
    if item.endpoint in _SIDES and item.clan_choices:
        return _known_side(item, backfill)
    return None, "", item.why_no_clan or "no manifest, envelope, file or folder name says"


def _known_side(item: BackfillFile, backfill: _Backfill) -> tuple[str | None, str, str]:
    """The one clan of a CWL war or league group that is in this backfill or the warehouse."""
    choices = set(item.clan_choices)
    here = choices & backfill.clans
    known = here | (choices & backfill.warehouse())
    if len(known) == 1:
        clan = known.pop()
        where = "this backfill" if clan in here else "the warehouse"
        return clan, f"its one clan known in {where}", ""
    if known:
        return None, "", f"several of its clans are known: {', '.join(sorted(known))}"
    return None, "", (f"none of its {len(choices)} clans is in the warehouse or in this backfill")


def _set_clan(item: BackfillFile, clan_tag: str, source: str) -> None:
    item.clan_tag = clan_tag
    item.clan_source = source
    if item.endpoint != "cwl_war":
        item.resource_tag = clan_tag
        item.request_path = ENDPOINTS[item.endpoint].format(tag=tag_path(clan_tag))
    item.needs_clan = False


def _unknown_clan(item: BackfillFile, why: str) -> Quarantined:
    naming = (
        "put it in a folder named by the clan tag"
        if item.endpoint == "cwl_war"
        else "name the file …_TAG.json, or put it in a folder named by the clan tag"
    )
    return Quarantined(
        item.path,
        item.relpath,
        f"cannot tell which clan this {item.endpoint} response belongs to ({why}): "
        f'it needs a manifest entry with "clan_tag" (or {naming})',
        endpoint=item.endpoint,
        resource_tag=item.resource_tag,
        fetched_at=item.fetched_at,
    )
