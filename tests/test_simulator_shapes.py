"""The simulator's bodies have the real API's structure, endpoint by endpoint and era by era.

Each real response in ``../shared/samples`` (recorded by others from the official API)
is reduced to its set of key paths, lists collapsed to ``[]``. Every key path of the
sample must exist in the simulator's body for the same endpoint at the sample's
date, and the JSON types of shared paths must agree.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from clash_pipeline.clash_api.tags import tag_path
from clash_pipeline.simulator import SimulatedClashApi

CLAN = "#2PR8R8V8P"
SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples"

#: sample -> {key path the simulator may lack at the chosen time: why}. Empty: the times
#: below are chosen so that optional keys (attacks, bestOpponentAttack, raid members,
#: labels, equipment...) are present, so every real key path must be produced.
OPTIONAL_PATHS: dict[str, dict[str, str]] = {}


def _require_samples() -> None:
    if not SAMPLES.is_dir():
        pytest.skip(f"../shared/samples not found: {SAMPLES} (the repo is cloned next to shared/)")


def load_sample(name: str) -> tuple[Any, int]:
    """(body, HTTP status) of a sample file; envelopes wrap the body."""
    data = json.loads((SAMPLES / name).read_text(encoding="utf-8"))
    if name.endswith(".envelope.json"):
        return data["body"], data["response_code"]
    return data, 200


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if value is None:
        return "null"
    return type(value).__name__


def key_paths(data: Any, prefix: str = "") -> dict[str, set[str]]:
    """Every key path (lists collapsed to ``[]``) with the JSON types seen at it."""
    out: dict[str, set[str]] = {}

    def walk(value: Any, path: str) -> None:
        if path:
            out.setdefault(path, set()).add(_kind(value))
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{path}.{key}" if path else key)
        elif isinstance(value, list):
            for item in value:
                walk(item, f"{path}[]")

    walk(data, prefix)
    return out


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.fixture(scope="module")
def shapes_api():
    _require_samples()
    with SimulatedClashApi(seed=7, token="shape-token") as api:
        with httpx.Client(
            base_url=api.base_url, headers={"Authorization": "Bearer shape-token"}, timeout=10
        ) as client:
            yield api, client


def fetch(api: SimulatedClashApi, client: httpx.Client, when: str, path: str) -> Any:
    api.clock.set(at(when))
    response = client.get(path)
    assert response.status_code == 200, (path, response.text)
    return response.json()


def a_player(api, client, when: str, *, min_town_hall: int) -> Any:
    """The first member at ``when`` with at least that town hall and some labels."""
    members = fetch(api, client, when, f"/clans/{tag_path(CLAN)}/members")["items"]
    for member in members:
        player = fetch(api, client, when, f"/players/{tag_path(member['tag'])}")
        if player["townHallLevel"] >= min_town_hall and player["labels"]:
            return player
    raise AssertionError("no suitable player")


def war_in_state(api, client, state: str, around: str) -> Any:
    """The clan's current war in ``state``, from the first preparation after ``around``."""
    when = at(around)
    for _ in range(24 * 8):
        war = fetch(api, client, when.isoformat(), f"/clans/{tag_path(CLAN)}/currentwar")
        if war["state"] == "preparation":
            break
        when += timedelta(hours=1)
    else:
        raise AssertionError(f"no war preparation after {around}")
    start = datetime.strptime(war["startTime"], "%Y%m%dT%H%M%S.000Z")
    end = datetime.strptime(war["endTime"], "%Y%m%dT%H%M%S.000Z")
    moment = {
        "preparation": when.replace(tzinfo=None),
        "inWar": start + timedelta(hours=20),
        "warEnded": end + timedelta(hours=1),
        "notInWar": end + timedelta(hours=13),
    }[state]
    war = fetch(api, client, moment.isoformat() + "Z", f"/clans/{tag_path(CLAN)}/currentwar")
    assert war["state"] == state
    return war


def cwl_war_in_war(api, client) -> Any:
    # 2023-05-04 12:00: round 3 (index 2) is in its battle day.
    group = fetch(
        api, client, "2023-05-04T12:00Z", f"/clans/{tag_path(CLAN)}/currentwar/leaguegroup"
    )
    war_tag = group["rounds"][2]["warTags"][0]
    war = fetch(api, client, "2023-05-04T12:00Z", f"/clanwarleagues/wars/{tag_path(war_tag)}")
    assert war["state"] == "inWar"
    return war


Producer = Callable[[SimulatedClashApi, httpx.Client], Any]
CASES: dict[str, Producer] = {
    "clan/warfroggy_2025-09-10_2PR8R8V8P.json": lambda api, c: fetch(
        api, c, "2025-09-10T15:24Z", f"/clans/{tag_path(CLAN)}"
    ),
    "clan/warfroggy_2025-10-08_2PR8R8V8P.json": lambda api, c: fetch(
        api, c, "2025-10-08T19:00Z", f"/clans/{tag_path(CLAN)}"
    ),
    "clan_members/warfroggy_2025-09-10_2PR8R8V8P.json": lambda api, c: fetch(
        api, c, "2025-09-10T15:24Z", f"/clans/{tag_path(CLAN)}/members"
    ),
    "clan_members/warfroggy_2025-10-08_2PR8R8V8P.json": lambda api, c: fetch(
        api, c, "2025-10-08T19:00Z", f"/clans/{tag_path(CLAN)}/members"
    ),
    # "~2023-06": the API sent both versus* and builderBase* names then (May 2023 here).
    "player/cocpy_2023-06_morgil_2PP.envelope.json": lambda api, c: a_player(
        api, c, "2023-05-20T12:00Z", min_town_hall=8
    ),
    "player/warfroggy_2025-10-13_andrew_UU9GJ9QQ.json": lambda api, c: a_player(
        api, c, "2025-10-13T12:00Z", min_town_hall=13
    ),
    "currentwar/cocpy_2023-05_PREPARATION.envelope.json": lambda api, c: war_in_state(
        api, c, "preparation", "2023-05-12T00:00Z"
    ),
    "currentwar/cocpy_2023-05_INWAR.envelope.json": lambda api, c: war_in_state(
        api, c, "inWar", "2023-05-12T00:00Z"
    ),
    "currentwar/cocpy_2023-05_WARENDED.envelope.json": lambda api, c: war_in_state(
        api, c, "warEnded", "2023-05-12T00:00Z"
    ),
    "currentwar/cocpy_2023-05_NOTINWAR.envelope.json": lambda api, c: war_in_state(
        api, c, "notInWar", "2023-05-12T00:00Z"
    ),
    "currentwar/warfroggy_2025-09-10_notinwar_2PR8R8V8P.json": lambda api, c: war_in_state(
        api, c, "notInWar", "2025-09-10T00:00Z"
    ),
    "cwl/cocpy_2023-05_leaguegroup_INWAR_WARSMISSING.envelope.json": lambda api, c: fetch(
        api, c, "2023-05-04T12:00Z", f"/clans/{tag_path(CLAN)}/currentwar/leaguegroup"
    ),
    "cwl/cocpy_2023-05_clanwarleagues-war_INWAR.envelope.json": cwl_war_in_war,
    "warlog/warfroggy_2025-02_2PR8R8V8P.json": lambda api, c: fetch(
        api, c, "2025-02-15T12:00Z", f"/clans/{tag_path(CLAN)}/warlog"
    ),
    "capitalraidseasons/warfroggy_2025-09-10_2PR8R8V8P.json": lambda api, c: fetch(
        api, c, "2025-09-10T15:24Z", f"/clans/{tag_path(CLAN)}/capitalraidseasons"
    ),
    "capitalraidseasons/warfroggy_2025-10-08_2PR8R8V8P.json": lambda api, c: fetch(
        api, c, "2025-10-08T19:00Z", f"/clans/{tag_path(CLAN)}/capitalraidseasons"
    ),
    "leagues/warfroggy_2025-09-10_leagues.json": lambda api, c: fetch(
        api, c, "2025-09-10T15:24Z", "/leagues"
    ),
    "leagues/clashking_2026-03_leaguetiers.envelope.json": lambda api, c: fetch(
        api, c, "2026-03-15T12:00Z", "/leaguetiers"
    ),
}


@pytest.mark.parametrize("sample", sorted(CASES))
def test_key_paths_of_real_samples_exist_in_simulated_bodies(shapes_api, sample):
    api, client = shapes_api
    if not (SAMPLES / sample).is_file():
        pytest.skip(f"sample {sample} not found in {SAMPLES}")
    real_body, status = load_sample(sample)
    assert status == 200
    real = key_paths(real_body)
    simulated = key_paths(CASES[sample](api, client))
    optional = OPTIONAL_PATHS.get(sample, {})
    missing = sorted(set(real) - set(simulated) - set(optional))
    assert not missing, f"{sample}: key paths missing from the simulator: {missing}"
    wrong_types = {
        path: (sorted(simulated[path]), sorted(real[path]))
        for path in set(real) & set(simulated)
        if not simulated[path] <= real[path] | {"null"} and real[path] != {"null"}
    }
    assert not wrong_types, f"{sample}: JSON types differ (simulated, real): {wrong_types}"


def test_league_tier_and_legacy_league_tables_are_the_real_ones(shapes_api):
    api, client = shapes_api
    for sample, when, path in (
        (
            "leagues/clashking_2026-03_leaguetiers.envelope.json",
            "2026-03-15T12:00Z",
            "/leaguetiers",
        ),
        ("leagues/warfroggy_2025-09-10_leagues.json", "2025-09-10T15:24Z", "/leagues"),
    ):
        real, _ = load_sample(sample)
        assert fetch(api, client, when, path) == real


@pytest.mark.parametrize(
    ("sample", "status"),
    [
        ("errors/cocpy_player_404_notFound.envelope.json", 404),
        ("errors/cocpy_warlog_403_accessDenied.envelope.json", 403),
        ("errors/warfroggy_league_400_badRequest.json", 400),
    ],
)
def test_error_bodies_have_the_real_shape(shapes_api, sample, status):
    api, client = shapes_api
    if not (SAMPLES / sample).is_file():
        pytest.skip(f"sample {sample} not found in {SAMPLES}")
    real, recorded = load_sample(sample)
    if recorded != 200:
        assert recorded == status
    api.clock.set(at("2025-09-10T12:00Z"))
    if status == 404:
        api.faults.update(missing_players={"#2PP"})
        response = client.get("/players/%232PP")
    elif status == 403:
        api.faults.update(private_warlog_clans={CLAN})
        response = client.get(f"/clans/{tag_path(CLAN)}/warlog")
    else:
        response = client.get("/leagues/1")
    api.faults.reset()
    assert response.status_code == status
    assert set(key_paths(response.json())) == set(key_paths(real))
    assert response.json()["reason"] == real["reason"]
    if status == 404:
        assert (
            response.json() == real
        )  # {"reason": "notFound", "message": "Not found with tag 2PP"}
