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
3. the clan the body names: a current war in a war state, its ``clan.tag``
   (the API always puts the requesting clan on the ``clan`` side); a war log,
   the ``clan.tag`` of its items (all must agree; items naming several clans
   leave it to the rules below, among those clans);
4. the file name ending in ``_TAG`` (``warlog_2PR8R8V8P.json``), then the nearest
   folder named by a tag (``2PR8R8V8P/`` or ``…_2PR8R8V8P/``); a name tag of
   digits only is ignored unless written ``#…`` (it looks like a date);
   for a player file the name tag is the player's, not the clan's, and a CWL
   war's file name is not read (it would be the war's tag);
5. once the whole backfill is read (:func:`.clans.resolve_clans`): a members
   list (also one saved as a bare JSON array of members, read as
   ``{"items": [...]}``: see :mod:`.read`) is the clan body whose
   ``memberList`` has exactly its member tags, in the same folder or fetched
   at the same time; then a clan body in the same folder with the same fetch
   time (exactly one clan); then, for a CWL war or a league group, the one of
   its clans that is known: in this backfill (any file's clan but a player's)
   or already in the warehouse (``raw.fetch_log``, read only, asked only then);
6. a player: the clan in its profile (``clan.tag``), or none for a clanless
   player; leagues and league tiers need no clan (a folder tag still applies).

A claim (2) or name (4) that disagrees with the clan the body names (3) is
not overridden: the file is quarantined. Otherwise what still has no clan is
quarantined, *cannot tell which clan*, and needs a manifest entry: a current
war ``notInWar`` (its body names no clan) or raid seasons with no clan body of
the same folder and time (a raid seasons body names the clans it attacked and
was attacked by, never its own), a CWL war or league group with none or several of
its clans known, a war log whose items disagree, and error bodies. A CWL war's
clan must be one of its two sides and a league group's one of its clans. A
CWL war's war tag is not in its body: it comes from the manifest's
``resource_tag`` or the envelope's path, else it stays NULL.

**Not stored** (:mod:`.unstored`): real responses of endpoints the pipeline
does not read (location rankings, the locations and labels lists, the gold
pass, league seasons and season rankings, war/builder/capital league lists, a
player's battle log and league history, the ranked league group, clan search),
recognised by their body or the envelope's request path, are left in place
and listed as e.g. "a /locations/{locationId}/rankings/clans ranking: not
stored by this pipeline" (``BackfillPlan.not_stored``), apart from quarantined
files: they do not make a backfill fail.

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

**Door checks** (:mod:`clash_pipeline.ingest.checks`, the same as a scheduled
run's): a body the marts cannot take is quarantined with the checks' codes and
reasons, e.g. a clan body whose ``memberList`` has more than 50 entries or
disagrees with its ``members`` count, duplicate member tags, a member list
that is not the same run's clan's, a body of another clan, a war or raid time
after the fetch time, or a fetch time later than now.

**Quarantine**: unreadable, unrecognised or door-failing files are copied (with their
relative paths and modification times) to ``<home>/quarantine/<UTC time>/``
with ``reasons.json`` and, when some were recognised but lack a clan, an
endpoint or a distinct time, a ``manifest.json`` template with what is known;
fix them and run ``backfill`` on that folder (why files and not a table: see
:mod:`.quarantine`).

**Modules**, in the order a backfill uses them: :mod:`.plan` (:func:`plan_backfill`:
find the files and manifests, group into runs), :mod:`.manifest`, :mod:`.read`
(one file: body or envelope), :mod:`.identify` (one file's request, time,
status, endpoint), :mod:`.shapes` (what a body's shape says), :mod:`.unstored`
(bodies of endpoints not stored),
:mod:`.api_paths` and :mod:`.names` (clues in request paths and file names),
:mod:`.clans` (which clan), :mod:`.load` (:func:`backfill`, :func:`load_plan`:
landing through ``land_bundle``), :mod:`.quarantine`; :mod:`.model` holds the
types they pass along.
"""

from clash_pipeline.ingest.backfill.load import backfill, load_plan, warehouse_clans
from clash_pipeline.ingest.backfill.manifest import MANIFEST_NAMES
from clash_pipeline.ingest.backfill.model import (
    BackfillError,
    BackfillFile,
    BackfillPlan,
    BackfillResult,
    Quarantined,
    Skipped,
)
from clash_pipeline.ingest.backfill.plan import plan_backfill
from clash_pipeline.ingest.backfill.quarantine import write_quarantine
from clash_pipeline.ingest.backfill.shapes import BodyShape, classify_body
from clash_pipeline.ingest.backfill.times import parse_fetch_time
from clash_pipeline.ingest.backfill.unstored import unstored_kind

__all__ = [
    "MANIFEST_NAMES",
    "BackfillError",
    "BackfillFile",
    "BackfillPlan",
    "BackfillResult",
    "BodyShape",
    "Quarantined",
    "Skipped",
    "backfill",
    "classify_body",
    "load_plan",
    "parse_fetch_time",
    "plan_backfill",
    "unstored_kind",
    "warehouse_clans",
    "write_quarantine",
]
