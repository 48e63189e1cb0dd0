"""What a backfill finds and does: recognised files, quarantined files, the plan, the result."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from clash_pipeline.errors import ClashPipelineError
from clash_pipeline.ingest.backfill.shapes import GLOBAL_ENDPOINTS
from clash_pipeline.ingest.land import LandResult

NOT_STORED = "not stored by this pipeline"


class BackfillError(ClashPipelineError):
    """The backfill cannot start: a missing PATH, an invalid manifest or time."""

    exit_code = 2


class FileProblem(Exception):
    """A file that must be quarantined, with the reason.

    ``endpoint`` and ``fetched_at`` are what was known when the problem was
    found; the quarantine's manifest template is filled in with them.
    """

    def __init__(
        self, reason: str, *, endpoint: str | None = None, fetched_at: datetime | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.endpoint = endpoint
        self.fetched_at = fetched_at


class NotStored(Exception):
    """A real API response of an endpoint the pipeline does not store: skipped, not quarantined."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what  # e.g. "a /locations/{locationId}/rankings/clans ranking"


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
    why_no_clan: str | None = None  # what the body says when it names no single clan
    member_tags: frozenset[str] = frozenset()  # a clan body's or members list's member tags
    file_sha256: str = ""
    note: str | None = None  # how the body was taken in, when not as it was saved

    @property
    def is_error(self) -> bool:
        return self.status != 200

    @property
    def identifies_resource(self) -> bool:
        """Whether (endpoint, resource tag) names one resource (so bodies can conflict)."""
        return self.resource_tag is not None or self.endpoint in GLOBAL_ENDPOINTS

    def dedupe_key(self) -> tuple[object, ...]:
        """Equal for two files that would land the same fetch-log row."""
        if self.is_error:
            return (
                "error", self.endpoint, self.resource_tag, self.clan_tag, self.fetched_at,
                self.status, self.reason,
            )  # fmt: skip
        return ("ok", self.endpoint, self.resource_tag, self.fetched_at, self.payload_hash)

    def quarantined(self, reason: str) -> Quarantined:
        """This file, not loaded after all, with what is known of it."""
        return Quarantined(
            self.path,
            self.relpath,
            reason,
            endpoint=self.endpoint,
            clan_tag=self.clan_tag,
            resource_tag=self.resource_tag,
            fetched_at=self.fetched_at,
        )


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


@dataclass(frozen=True)
class Skipped:
    """A file left in place: the response of an endpoint this pipeline does not store."""

    path: Path
    relpath: str
    what: str

    @property
    def reason(self) -> str:
        return f"{self.what}: {NOT_STORED}"


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
    not_stored: list[Skipped] = field(default_factory=list)

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
    not_stored: list[Skipped] = field(default_factory=list)  # left in place, not an error

    @property
    def runs_created(self) -> int:
        return len(self.runs)

    @property
    def ok(self) -> bool:
        """Nothing quarantined (files of endpoints not stored do not count)."""
        return not self.quarantined
