"""The real API samples in raw, and dbt models built over them.

- ``samples_dir`` (session): ``/work/shared/samples`` (or ``CLASH_SAMPLES_DIR``);
  the test is skipped when the folder is absent.
- :func:`land_samples`: every sample file becomes a fetch-log row (and, for a
  200, a payload) through :func:`clash_pipeline.ingest.land.land_bundle`, with the endpoint,
  tags and fetch time it was recorded with. Files recorded together (one
  warfroggy data directory) land as one run; ``fetch_log.source_file`` is the
  file's path relative to the samples folder, so tests can find its rows.
- ``samples_db_url``: a ``migrated_db_url`` database with the samples landed.
- ``staging_db`` (session): one database with the samples landed and
  ``dbt build --select staging`` run once, shared by every staging test
  (a dbt build costs seconds).
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from clash_pipeline.clash_api.client import ENDPOINTS, FetchRecord, parse_max_age
from clash_pipeline.clash_api.tags import tag_path
from clash_pipeline.ingest.land import ClanBundle, land_bundle
from clash_pipeline.transform.dbt import DbtResult, dbt_build
from clash_pipeline.warehouse.migrations import migrate

SAMPLES_DIR_ENV = "CLASH_SAMPLES_DIR"
DEFAULT_SAMPLES_DIR = Path(__file__).resolve().parents[3] / "shared" / "samples"

WARFROGGY_CLAN = "#2PR8R8V8P"


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@dataclass(frozen=True)
class SampleSpec:
    """How one sample file was fetched: what a fetch-log row needs to say.

    ``run`` groups files recorded together into one landed run. A tag left as
    None is read from the body where the body has it; where the source does
    not say (coc.py's mock files name no requesting clan), it stays NULL.
    """

    endpoint: str
    fetched_at: datetime
    run: str
    clan_tag: str | None = None
    resource_tag: str | None = None
    path: str | None = None


# Times come from the samples README (recording directory names, data dates);
# war samples are placed inside the window their own times describe.
_WF_0910 = _utc("2025-09-10T15:24:10")
_WF_1008 = _utc("2025-10-08T19:00:17")
KNOWN_SAMPLES: dict[str, SampleSpec] = {
    # warfroggy comprehensive_data_20250910_152410: one run
    "clan/warfroggy_2025-09-10_2PR8R8V8P.json": SampleSpec(
        "clan", _WF_0910, "wf-0910", WARFROGGY_CLAN
    ),
    "clan_members/warfroggy_2025-09-10_2PR8R8V8P.json": SampleSpec(
        "clan_members", _WF_0910, "wf-0910", WARFROGGY_CLAN
    ),
    "capitalraidseasons/warfroggy_2025-09-10_2PR8R8V8P.json": SampleSpec(
        "capitalraidseasons", _WF_0910, "wf-0910", WARFROGGY_CLAN
    ),
    "currentwar/warfroggy_2025-09-10_notinwar_2PR8R8V8P.json": SampleSpec(
        "currentwar", _WF_0910, "wf-0910", WARFROGGY_CLAN
    ),
    "warlog/warfroggy_2025-02_2PR8R8V8P.json": SampleSpec(
        "warlog", _WF_0910, "wf-0910", WARFROGGY_CLAN
    ),
    "leagues/warfroggy_2025-09-10_leagues.json": SampleSpec(
        "leagues", _WF_0910, "wf-0910", WARFROGGY_CLAN
    ),
    "errors/warfroggy_league_400_badRequest.json": SampleSpec(
        "leagues", _WF_0910, "wf-0910", WARFROGGY_CLAN, path="/leagues/{leagueId}"
    ),
    # warfroggy comprehensive_data_20251008_190017: one run
    "clan/warfroggy_2025-10-08_2PR8R8V8P.json": SampleSpec(
        "clan", _WF_1008, "wf-1008", WARFROGGY_CLAN
    ),
    "clan_members/warfroggy_2025-10-08_2PR8R8V8P.json": SampleSpec(
        "clan_members", _WF_1008, "wf-1008", WARFROGGY_CLAN
    ),
    "capitalraidseasons/warfroggy_2025-10-08_2PR8R8V8P.json": SampleSpec(
        "capitalraidseasons", _WF_1008, "wf-1008", WARFROGGY_CLAN
    ),
    "player/warfroggy_2025-10-13_andrew_UU9GJ9QQ.json": SampleSpec(
        "player", _utc("2025-10-13T12:00:00"), "wf-andrew", WARFROGGY_CLAN
    ),
    # coc.py mock data (~2023-05/06): one run per file
    "currentwar/cocpy_2023-05_PREPARATION.envelope.json": SampleSpec(
        "currentwar", _utc("2023-05-28T12:00:00"), "cocpy-war-preparation"
    ),
    "currentwar/cocpy_2023-05_INWAR.envelope.json": SampleSpec(
        "currentwar", _utc("2023-05-28T15:00:00"), "cocpy-war-inwar"
    ),
    "currentwar/cocpy_2023-05_WARENDED.envelope.json": SampleSpec(
        "currentwar", _utc("2023-05-28T16:45:00"), "cocpy-war-ended"
    ),
    "currentwar/cocpy_2023-05_NOTINWAR.envelope.json": SampleSpec(
        "currentwar", _utc("2023-05-28T18:00:00"), "cocpy-war-notinwar"
    ),
    "cwl/cocpy_2023-05_clanwarleagues-war_INWAR.envelope.json": SampleSpec(
        "cwl_war", _utc("2023-05-10T12:00:00"), "cocpy-cwl-war"
    ),
    "cwl/cocpy_2023-05_leaguegroup_INWAR_WARSMISSING.envelope.json": SampleSpec(
        "leaguegroup", _utc("2023-06-03T12:00:00"), "cocpy-cwl-group"
    ),
    "errors/cocpy_player_404_notFound.envelope.json": SampleSpec(
        "player", _utc("2023-05-28T12:00:00"), "cocpy-errors", resource_tag="#2PP"
    ),
    "errors/cocpy_warlog_403_accessDenied.envelope.json": SampleSpec(
        "warlog", _utc("2023-05-28T12:00:00"), "cocpy-errors"
    ),
    "player/cocpy_2023-06_morgil_2PP.envelope.json": SampleSpec(
        "player", _utc("2023-06-15T12:00:00"), "cocpy-player"
    ),
    # ClashKing mock API (~2026-03)
    "leagues/clashking_2026-03_leaguetiers.envelope.json": SampleSpec(
        "leaguetiers", _utc("2026-03-01T12:00:00"), "clashking-leaguetiers"
    ),
}

# For sample files added later: endpoint by folder (and name), time by file name.
_FOLDER_ENDPOINTS = {
    "capitalraidseasons": "capitalraidseasons",
    "clan": "clan",
    "clan_members": "clan_members",
    "currentwar": "currentwar",
    "player": "player",
    "warlog": "warlog",
}
_NAME_DATE = re.compile(r"_(\d{4})-(\d{2})(?:-(\d{2}))?")
_NAME_TAG = re.compile(r"_([0289PYLQGRJCUV]{3,})\.(?:envelope\.)?json$")
_CLAN_LEVEL = {"clan", "clan_members", "warlog", "currentwar", "leaguegroup", "capitalraidseasons"}


@dataclass
class SampleFile:
    """A sample file as a response: body bytes, status, headers, and how it was fetched."""

    relpath: str
    spec: SampleSpec
    status: int
    body: bytes
    data: object
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class LandedSamples:
    """What :func:`land_samples` wrote: the files and the run of each."""

    files: list[SampleFile]
    run_ids: dict[str, uuid.UUID]  # run key -> run id


@dataclass
class StagingDb:
    """A database with the samples landed and the staging models built."""

    url: str
    dbt: DbtResult
    landed: LandedSamples
    home: Path


def _infer_spec(relpath: str) -> SampleSpec | None:
    folder, _, name = relpath.partition("/")
    endpoint = _FOLDER_ENDPOINTS.get(folder)
    if folder == "cwl":
        endpoint = "leaguegroup" if "leaguegroup" in name else "cwl_war"
    elif folder == "leagues":
        endpoint = "leaguetiers" if "leaguetiers" in name else "leagues"
    date = _NAME_DATE.search(name)
    if endpoint is None or date is None:
        return None
    year, month, day = (int(g) if g else 1 for g in date.groups())
    return SampleSpec(endpoint, datetime(year, month, day, 12, tzinfo=UTC), relpath)


def read_samples(samples_dir: Path) -> list[SampleFile]:
    """Every ``*.json`` under ``samples_dir`` as a response with its fetch spec."""
    files = []
    for path in sorted(samples_dir.rglob("*.json")):
        relpath = path.relative_to(samples_dir).as_posix()
        spec = KNOWN_SAMPLES.get(relpath) or _infer_spec(relpath)
        if spec is None:
            raise ValueError(f"sample {relpath}: cannot tell its endpoint or date")
        raw = path.read_bytes()
        data = json.loads(raw)
        headers: dict[str, str] = {}
        status = 200
        if path.name.endswith(".envelope.json"):
            status = int(data["response_code"])
            headers = {k.lower(): v for k, v in (data.get("headers") or {}).items()}
            data = data["body"]
            raw = json.dumps(data, ensure_ascii=False).encode("utf-8")
        elif isinstance(data, dict) and set(data) <= {"reason", "message"}:
            # a plain error body: the status is in the file name (…_400_…)
            match = re.search(r"_(\d{3})_", path.name)
            status = int(match.group(1)) if match else 400
        files.append(SampleFile(relpath, spec, status, raw, data, headers))
    return files


def _clan_tag(sample: SampleFile) -> str | None:
    if sample.spec.clan_tag:
        return sample.spec.clan_tag
    data = sample.data if isinstance(sample.data, dict) else {}
    endpoint = sample.spec.endpoint
    if endpoint == "clan":
        return data.get("tag")
    if endpoint in ("currentwar", "cwl_war"):
        return (data.get("clan") or {}).get("tag")
    if endpoint == "player":
        return (data.get("clan") or {}).get("tag")
    match = _NAME_TAG.search(sample.relpath)
    return f"#{match.group(1)}" if match and endpoint in _CLAN_LEVEL else None


def _resource_tag(sample: SampleFile, clan_tag: str | None) -> str | None:
    if sample.spec.resource_tag:
        return sample.spec.resource_tag
    endpoint = sample.spec.endpoint
    if endpoint == "player":
        return sample.data.get("tag") if isinstance(sample.data, dict) else None
    if endpoint in _CLAN_LEVEL:
        return clan_tag
    return None  # cwl_war: the mock war's tag is unknown; leagues: no tag


def _record(sample: SampleFile, clan_tag: str | None) -> FetchRecord:
    resource_tag = _resource_tag(sample, clan_tag)
    template = ENDPOINTS[sample.spec.endpoint]
    path = sample.spec.path or (
        template.format(tag=tag_path(resource_tag)) if resource_tag else template
    )
    error = isinstance(sample.data, dict) and sample.status != 200
    return FetchRecord(
        endpoint=sample.spec.endpoint,
        resource_tag=resource_tag,
        path=path,
        status=sample.status,
        reason=sample.data.get("reason") if error else None,
        message=sample.data.get("message") if error else None,
        requested_at=sample.spec.fetched_at - timedelta(milliseconds=150),
        fetched_at=sample.spec.fetched_at,
        duration_ms=150.0,
        attempts=1,
        retries=0,
        throttled=0,
        max_age=parse_max_age(sample.headers.get("cache-control")),
        body=sample.body,
        error=None if sample.status == 200 else f"HTTP {sample.status}",
    )


def land_samples(db_url: str, samples_dir: Path) -> LandedSamples:
    """Land every sample file into ``raw`` of ``db_url`` (one run per recording)."""
    files = read_samples(samples_dir)
    runs: dict[str, list[SampleFile]] = {}
    for sample in files:
        runs.setdefault(sample.spec.run, []).append(sample)
    run_ids: dict[str, uuid.UUID] = {}
    with psycopg.connect(db_url) as conn:
        for key, samples in runs.items():
            clan_tags = [_clan_tag(s) for s in samples]
            bundle_clan = next((t for t in clan_tags if t), None)
            records = [
                _record(s, t or bundle_clan) for s, t in zip(samples, clan_tags, strict=True)
            ]
            clan_fetch = next((r for r in records if r.endpoint == "clan"), None)
            snapshot_at = (clan_fetch or min(records, key=lambda r: r.fetched_at)).fetched_at
            bundle = ClanBundle(clan_tag=bundle_clan, snapshot_at=snapshot_at, records=records)
            run_id = uuid.uuid4()
            land_bundle(
                conn,
                bundle,
                run_id=run_id,
                source="backfill",
                started_at=min(r.requested_at for r in records),
                source_files={i: s.relpath for i, s in enumerate(samples)},
            )
            run_ids[key] = run_id
    return LandedSamples(files=files, run_ids=run_ids)


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    configured = os.environ.get(SAMPLES_DIR_ENV, "").strip()
    path = Path(configured) if configured else DEFAULT_SAMPLES_DIR
    if not path.is_dir():
        pytest.skip(f"real API samples not found at {path} (set {SAMPLES_DIR_ENV})")
    return path


@pytest.fixture
def samples_db_url(migrated_db_url: str, samples_dir: Path) -> str:
    """A migrated database with every sample landed in raw."""
    land_samples(migrated_db_url, samples_dir)
    return migrated_db_url


@pytest.fixture(scope="session")
def staging_db(
    pg_server, samples_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StagingDb]:
    """One database for the session: samples landed, ``dbt build --select staging`` run."""
    name = f"t_staging_{uuid.uuid4().hex[:8]}"
    url = pg_server.create_database(name)
    try:
        migrate(url)
        landed = land_samples(url, samples_dir)
        home = tmp_path_factory.mktemp("dbt-home")
        # staging tests look at recent fetches only by default; the samples
        # are years old, so test all history
        result = dbt_build(url, home, select="staging", vars={"staging_test_days": 0})
        yield StagingDb(url=url, dbt=result, landed=landed, home=home)
    finally:
        pg_server.drop_database(name)
