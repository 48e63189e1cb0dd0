"""The simulated Clash of Clans API, tested over real HTTP on loopback."""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from clash_pipeline.clash_api.tags import tag_path
from clash_pipeline.simulator import DEFAULT_START, SPLIT_INSTANT, FaultConfig, SimulatedClashApi
from clash_pipeline.simulator.faults import TokenBucket
from clash_pipeline.simulator.tables import unit_cap
from tests.plugins.sim_fixtures import SIM_SEED, SIM_TOKEN, make_sim_client

CLAN = "#2PR8R8V8P"
OTHER_CLAN = "#9QL0C0YR"

#: DOMAIN.md's hero caps per town hall (absent: the hero is not available yet).
DOMAIN_HERO_CAPS = {
    7: {"Barbarian King": 10},
    8: {"Barbarian King": 20, "Archer Queen": 10},
    9: {"Barbarian King": 30, "Archer Queen": 30, "Minion Prince": 10},
    10: {"Barbarian King": 40, "Archer Queen": 40, "Minion Prince": 20},
    11: {"Barbarian King": 50, "Archer Queen": 50, "Grand Warden": 20, "Minion Prince": 30},
    12: {"Barbarian King": 65, "Archer Queen": 65, "Grand Warden": 40, "Minion Prince": 40},
    13: {"Barbarian King": 75, "Archer Queen": 75, "Grand Warden": 50, "Royal Champion": 25,
         "Minion Prince": 50},
    14: {"Barbarian King": 85, "Archer Queen": 85, "Grand Warden": 60, "Royal Champion": 30,
         "Minion Prince": 60},
    15: {"Barbarian King": 90, "Archer Queen": 90, "Grand Warden": 65, "Royal Champion": 40,
         "Minion Prince": 70},
    16: {"Barbarian King": 95, "Archer Queen": 95, "Grand Warden": 70, "Royal Champion": 45,
         "Minion Prince": 80},
    17: {"Barbarian King": 100, "Archer Queen": 100, "Grand Warden": 75, "Royal Champion": 50,
         "Minion Prince": 90},
    18: {"Barbarian King": 105, "Archer Queen": 105, "Grand Warden": 80, "Royal Champion": 55,
         "Minion Prince": 95},
}  # fmt: skip
HOME_HEROES = {"Barbarian King", "Archer Queen", "Grand Warden", "Royal Champion", "Minion Prince"}
UNRANKED_TIER = 105000000


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def get_json(client: httpx.Client, path: str) -> dict:
    response = client.get(path)
    assert response.status_code == 200, (path, response.status_code, response.text)
    return response.json()


def members_at(api: SimulatedClashApi, client: httpx.Client, when: datetime, tag: str = CLAN):
    api.clock.set(when)
    return get_json(client, f"/clans/{tag_path(tag)}/members")["items"]


def api_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y%m%dT%H%M%S.000Z").replace(tzinfo=UTC)


# --- HTTP basics --------------------------------------------------------------------------------
def test_headers_look_like_the_real_api(sim_client):
    response = sim_client.get(f"/clans/{tag_path(CLAN)}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert int(response.headers["content-length"]) == len(response.content)
    assert response.headers["cache-control"].startswith("max-age=")
    assert 1 <= int(response.headers["cache-control"].split("=")[1]) <= 120
    assert "date" in response.headers
    assert response.headers["x-sim-time"] == "20261102T080000.000Z"
    body = response.json()
    assert body["tag"] == CLAN and body["members"] == len(body["memberList"])


def test_keep_alive_serves_several_requests_on_one_connection(sim_api):
    connection = http.client.HTTPConnection("127.0.0.1", sim_api.port, timeout=5)
    headers = {"Authorization": f"Bearer {SIM_TOKEN}"}
    try:
        for path in ("/v1/leagues", f"/v1/clans/{tag_path(CLAN)}", "/v1/nothing-here"):
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
            body = response.read()
            assert len(body) == int(response.getheader("Content-Length"))
            assert response.getheader("Connection") != "close"
        assert connection.sock is not None  # still the same, open socket
    finally:
        connection.close()


def test_bodies_are_stable_within_the_cache_window(sim_api, sim_client):
    first = sim_client.get(f"/clans/{tag_path(CLAN)}/members")
    sim_api.clock.advance(timedelta(seconds=90))  # 08:01:30, same 120 s window as 08:00
    second = sim_client.get(f"/clans/{tag_path(CLAN)}/members")
    assert second.content == first.content
    assert second.headers["cache-control"] == "max-age=30"


# --- determinism ---------------------------------------------------------------------------------
def _snapshot(api: SimulatedClashApi, paths: list[str]) -> list[bytes]:
    with make_sim_client(api) as client:
        out = []
        for path in paths:
            response = client.get(path)
            assert response.status_code == 200, path
            out.append(response.content)
        return out


def test_same_seed_tag_and_time_give_identical_bytes_in_any_order(sim_api_session):
    with make_sim_client(sim_api_session) as client:
        member = get_json(client, f"/clans/{tag_path(CLAN)}/members")["items"][5]["tag"]
    paths = [
        f"/clans/{tag_path(CLAN)}",
        f"/clans/{tag_path(CLAN)}/members",
        f"/players/{tag_path(member)}",
        f"/clans/{tag_path(CLAN)}/currentwar",
        f"/clans/{tag_path(CLAN)}/currentwar/leaguegroup",
        f"/clans/{tag_path(CLAN)}/warlog?limit=10",
        f"/clans/{tag_path(CLAN)}/capitalraidseasons?limit=3",
    ]
    expected = _snapshot(sim_api_session, paths)
    with SimulatedClashApi(seed=SIM_SEED, token=SIM_TOKEN) as fresh:
        # A fresh world asked in reverse order (player first) gives the same bytes.
        reverse = _snapshot(fresh, list(reversed(paths)))
    assert list(reversed(reverse)) == expected


_WORLD_DIGEST = """
import hashlib, json
from datetime import datetime, timezone
from clash_pipeline.simulator import World
w = World(7)
t = datetime(2026, 11, 3, 12, tzinfo=timezone.utc)
clan = "#2PR8R8V8P"
bodies = [w.clan(clan, t), w.current_war(clan, t), w.warlog(clan, t, 5),
          w.capital_raid_seasons(clan, t, 2), w.league_group(clan, t),
          w.player(w.roster_tags(clan, t)[3], t)]
print(hashlib.sha256(json.dumps(bodies).encode()).hexdigest())
"""


def test_bytes_do_not_depend_on_the_process_hash_seed():
    digests = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run(
            [sys.executable, "-c", _WORLD_DIGEST],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        digests.add(out.stdout.strip())
    assert len(digests) == 1


def test_different_seeds_give_different_clans():
    with (
        SimulatedClashApi(seed=1, token="t") as one,
        SimulatedClashApi(seed=2, token="t") as two,
    ):
        with make_sim_client(one, token="t") as a, make_sim_client(two, token="t") as b:
            clan_a = get_json(a, f"/clans/{tag_path(CLAN)}")
            clan_b = get_json(b, f"/clans/{tag_path(CLAN)}")
    assert clan_a["tag"] == clan_b["tag"] == CLAN
    tags_a = {m["tag"] for m in clan_a["memberList"]}
    tags_b = {m["tag"] for m in clan_b["memberList"]}
    assert tags_a.isdisjoint(tags_b)
    assert (clan_a["name"], clan_a["badgeUrls"]) != (clan_b["name"], clan_b["badgeUrls"])


def test_player_tags_resolve_back_to_their_clan(sim_client):
    members = get_json(sim_client, f"/clans/{tag_path(CLAN)}/members")["items"]
    for member in members[:5]:
        player = get_json(sim_client, f"/players/{tag_path(member['tag'])}")
        assert player["tag"] == member["tag"]
        assert player["name"] == member["name"]
        assert player["clan"]["tag"] == CLAN
        assert player["role"] == member["role"]
        assert player["townHallLevel"] == member["townHallLevel"]
        assert player["expLevel"] == member["expLevel"]


# --- auth and not found --------------------------------------------------------------------------
@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_missing_or_wrong_token_is_403_access_denied(sim_api, token):
    with make_sim_client(sim_api, token=token) as client:
        response = client.get(f"/clans/{tag_path(CLAN)}")
    assert response.status_code == 403
    assert response.json() == {"reason": "accessDenied", "message": "Invalid authorization"}
    assert sim_api.stats.by_status == {403: 1}


def test_missing_clans_and_players_are_404_not_found():
    with SimulatedClashApi(seed=SIM_SEED, token=SIM_TOKEN, missing_clans=["#2pr8r8v8p"]) as api:
        with make_sim_client(api) as client:
            for suffix in ("", "/members", "/warlog", "/currentwar", "/capitalraidseasons"):
                response = client.get(f"/clans/{tag_path(CLAN)}{suffix}")
                assert response.status_code == 404, suffix
                assert response.json() == {
                    "reason": "notFound",
                    "message": "Not found with tag 2PR8R8V8P",
                }
            member = get_json(client, f"/clans/{tag_path(OTHER_CLAN)}/members")["items"][0]["tag"]
            assert client.get(f"/players/{tag_path(member)}").status_code == 200
            api.faults.missing_players.add(member)
            response = client.get(f"/players/{tag_path(member)}")
            assert response.status_code == 404
            assert response.json() == {
                "reason": "notFound",
                "message": f"Not found with tag {member[1:]}",
            }
            assert response.headers["cache-control"] == "public max-age=600"


def test_departed_players_leave_the_member_list_and_the_member_count(sim_api):
    with make_sim_client(sim_api) as client:
        before = get_json(client, f"/clans/{tag_path(CLAN)}")
        tags = [m["tag"] for m in before["memberList"]]
        sim_api.faults.update(departed_players=set(tags[:3]))
        clan = get_json(client, f"/clans/{tag_path(CLAN)}")
        members = get_json(client, f"/clans/{tag_path(CLAN)}/members")["items"]
        assert clan["members"] == before["members"] - 3
        assert [m["tag"] for m in clan["memberList"]] == tags[3:]
        assert [m["tag"] for m in members] == tags[3:]
        sim_api.faults.update(departed_players=set())
        assert get_json(client, f"/clans/{tag_path(CLAN)}")["members"] == before["members"]


def test_unknown_paths_and_bad_tags(sim_client):
    unknown = sim_client.get("/clans/%232PR8R8V8P/nothing")
    assert unknown.status_code == 404 and unknown.json()["reason"] == "notFound"
    no_hash = sim_client.get("/clans/2PR8R8V8P")
    assert no_hash.status_code == 400 and no_hash.json()["reason"] == "badRequest"
    bad_chars = sim_client.get("/players/%23ABCDEF")
    assert bad_chars.status_code == 404 and bad_chars.json()["reason"] == "notFound"
    bad_league = sim_client.get("/leagues/1")
    assert bad_league.status_code == 400
    assert bad_league.json() == {
        "reason": "badRequest",
        "message": "Unknown value for parameter leagueId",
    }
    assert sim_client.get("/clans/%232PR8R8V8P/members?limit=0").status_code == 400


def test_paging_with_limit_and_cursors(sim_client):
    everyone = get_json(sim_client, f"/clans/{tag_path(CLAN)}/members")
    assert everyone["paging"] == {"cursors": {}}
    first = get_json(sim_client, f"/clans/{tag_path(CLAN)}/members?limit=5")
    assert [m["tag"] for m in first["items"]] == [m["tag"] for m in everyone["items"][:5]]
    after = first["paging"]["cursors"]["after"]
    second = get_json(sim_client, f"/clans/{tag_path(CLAN)}/members?limit=5&after={after}")
    assert [m["tag"] for m in second["items"]] == [m["tag"] for m in everyone["items"][5:10]]
    assert "before" in second["paging"]["cursors"]


# --- the roster over time ------------------------------------------------------------------------
def test_roster_stays_between_30_and_50_with_joins_and_leaves(sim_api, sim_client):
    rosters = []
    for week in range(26):
        items = members_at(sim_api, sim_client, DEFAULT_START + timedelta(weeks=week))
        assert 30 <= len(items) <= 50
        roles = [m["role"] for m in items]
        assert roles.count("leader") == 1
        assert "coLeader" in roles and "admin" in roles and "member" in roles
        assert [m["clanRank"] for m in items] == list(range(1, len(items) + 1))
        rosters.append({m["tag"] for m in items})
    joins = sum(len(now - before) for before, now in zip(rosters, rosters[1:], strict=False))
    leaves = sum(len(before - now) for before, now in zip(rosters, rosters[1:], strict=False))
    assert joins >= 10 and leaves >= 10
    # Someone left and came back later (a new stint).
    rejoined = [
        tag
        for tag in set().union(*rosters)
        if any(tag in a and tag not in b for a, b in zip(rosters, rosters[1:], strict=False))
        and any(tag not in a and tag in b for a, b in zip(rosters, rosters[1:], strict=False))
    ]
    assert rejoined


def test_find_clan_returns_a_full_clan_for_benchmarks(sim_api, sim_client):
    tag = sim_api.world.find_clan(50, DEFAULT_START)
    assert len(get_json(sim_client, f"/clans/{tag_path(tag)}/members")["items"]) == 50
    assert sim_api.world.find_clan(50, DEFAULT_START) == tag  # deterministic


# --- donations and counters ----------------------------------------------------------------------
def test_donations_grow_within_the_season_and_reset_at_its_end(sim_api, sim_client):
    # October 2026 ends on Saturday the 31st, so its last Monday is the 26th: the season
    # ends 2026-10-26T05:00Z.
    day_before = {m["tag"]: m for m in members_at(sim_api, sim_client, at("2026-10-25T04:00Z"))}
    last_hour = {m["tag"]: m for m in members_at(sim_api, sim_client, at("2026-10-26T04:00Z"))}
    new_season = {m["tag"]: m for m in members_at(sim_api, sim_client, at("2026-10-26T05:30Z"))}
    next_day = {m["tag"]: m for m in members_at(sim_api, sim_client, at("2026-10-27T06:00Z"))}
    assert sum(m["donations"] for m in last_hour.values()) > 1000
    assert sum(m["donationsReceived"] for m in last_hour.values()) > 1000
    for tag in day_before.keys() & last_hour.keys():
        assert last_hour[tag]["donations"] >= day_before[tag]["donations"]
        assert last_hour[tag]["donationsReceived"] >= day_before[tag]["donationsReceived"]
    assert all(m["donations"] == 0 and m["donationsReceived"] == 0 for m in new_season.values())
    assert sum(m["donations"] for m in next_day.values()) > 0
    # The lifetime counter (Friend in Need) does not reset.
    tag = max(last_hour, key=lambda t: last_hour[t]["donations"])
    friend_in_need = []
    for when in ("2026-10-26T04:00Z", "2026-10-26T05:30Z", "2026-10-27T06:00Z"):
        sim_api.clock.set(at(when))
        player = get_json(sim_client, f"/players/{tag_path(tag)}")
        friend_in_need.append(
            next(a["value"] for a in player["achievements"] if a["name"] == "Friend in Need")
        )
    assert friend_in_need == sorted(friend_in_need)


def test_counters_and_unit_levels_never_go_down(sim_api, sim_client):
    tags = [m["tag"] for m in members_at(sim_api, sim_client, DEFAULT_START)[:8]]
    previous: dict[str, dict] = {}
    for month in range(0, 25, 4):
        sim_api.clock.set(DEFAULT_START - timedelta(days=30 * (24 - month)))
        for tag in tags:
            player = get_json(sim_client, f"/players/{tag_path(tag)}")
            counters = {
                "warStars": player["warStars"],
                "attackWins": player["attackWins"],
                "clanCapitalContributions": player["clanCapitalContributions"],
                "townHallLevel": player["townHallLevel"],
                "expLevel": player["expLevel"],
                "bestTrophies": player["bestTrophies"],
            }
            for a in player["achievements"]:
                counters[f"achievement:{a['name']}:{a['info'][:12]}"] = a["value"]
            for group in ("troops", "spells", "heroes", "heroEquipment"):
                for u in player.get(group, []):
                    counters[f"{group}:{u['name']}:{u['village']}"] = u["level"]
            for key, value in previous.get(tag, {}).items():
                if key in counters:
                    assert counters[key] >= value, (tag, key)
            previous[tag] = counters


# --- unit caps -----------------------------------------------------------------------------------
def test_unit_levels_never_exceed_town_hall_caps(sim_api, sim_client):
    seen_town_halls: set[int] = set()
    for clan in (CLAN, OTHER_CLAN, "#P0LYJC8C"):
        for when in ("2026-11-02T08:00Z", "2025-03-01T08:00Z"):
            sim_api.clock.set(at(when))
            for member in get_json(sim_client, f"/clans/{tag_path(clan)}/members")["items"]:
                player = get_json(sim_client, f"/players/{tag_path(member['tag'])}")
                th = player["townHallLevel"]
                seen_town_halls.add(th)
                caps = DOMAIN_HERO_CAPS.get(th, {})
                heroes = {h["name"]: h for h in player["heroes"] if h["village"] == "home"}
                assert set(heroes) <= set(caps), (th, set(heroes))
                for name, hero in heroes.items():
                    assert 1 <= hero["level"] <= caps[name], (th, name, hero["level"])
                    assert hero["maxLevel"] >= caps[name]
                    assert len(hero.get("equipment", [])) <= 2
                bh = player.get("builderHallLevel", 0)
                for group in ("troops", "spells", "heroes"):
                    for u in player[group]:
                        hall = bh if u["village"] == "builderBase" else th
                        assert u["level"] <= u["maxLevel"]
                        if "superTroopIsActive" not in u and u["name"] not in HOME_HEROES:
                            assert u["level"] <= max(
                                1, unit_cap(u["name"], hall, village=u["village"])
                            )
    assert {9, 11, 13, 15, 17} <= seen_town_halls


# --- eras ----------------------------------------------------------------------------------------
def test_split_changes_league_and_trophies(sim_api, sim_client):
    before = members_at(sim_api, sim_client, at("2025-10-06T04:00Z"))
    assert all("league" in m and "leagueTier" not in m for m in before)
    assert sorted(m["trophies"] for m in before)[len(before) // 2] > 1000  # battle-mode trophies

    # At the split instant nobody is placed yet: everyone is Unranked with frozen trophies.
    frozen = {m["tag"]: m for m in members_at(sim_api, sim_client, SPLIT_INSTANT)}
    assert {m["leagueTier"]["id"] for m in frozen.values()} == {UNRANKED_TIER}

    # Second tournament week, day 2 (the week started Tuesday 2025-10-14 05:00).
    after = members_at(sim_api, sim_client, at("2025-10-15T19:00Z"))
    placed = [m for m in after if m["leagueTier"]["id"] != UNRANKED_TIER]
    unranked = [m for m in after if m["leagueTier"]["id"] == UNRANKED_TIER]
    assert placed and unranked
    assert all(m["trophies"] < 600 for m in placed)  # small, weekly tournament trophies
    for m in unranked:
        if m["tag"] in frozen:
            assert m["trophies"] == frozen[m["tag"]]["trophies"]  # the old, frozen count
    # Ranked members first, then the Unranked ones by their old trophies.
    tiers = [m["leagueTier"]["id"] for m in after]
    assert tiers == sorted(tiers, reverse=True)
    # Member lists keep a frozen legacy league until 2025-11-01 ...
    assert any(m["league"]["id"] != 29000000 for m in after)
    # ... then everyone is "Unranked" (29000000) there, and ~70 % are placed in a tier.
    november = members_at(sim_api, sim_client, at("2025-11-20T12:00Z"))
    assert {m["league"]["id"] for m in november} == {29000000}
    share = sum(m["leagueTier"]["id"] != UNRANKED_TIER for m in november) / len(november)
    assert 0.5 <= share <= 0.9

    # /players: legacy league gone, leagueTier in.
    sim_api.clock.set(at("2025-09-10T12:00Z"))
    veteran = max(before, key=lambda m: m["trophies"])["tag"]
    old = get_json(sim_client, f"/players/{tag_path(veteran)}")
    assert "league" in old and "leagueTier" not in old
    sim_api.clock.set(at("2025-10-15T19:00Z"))
    new = get_json(sim_client, f"/players/{tag_path(veteran)}")
    assert "league" not in new and "leagueTier" in new
    assert new["bestTrophies"] >= old["bestTrophies"]


def test_ranked_trophies_reset_every_tuesday(sim_api, sim_client):
    end_of_week = members_at(sim_api, sim_client, at("2026-03-16T06:00Z"))  # a Monday
    new_week = members_at(sim_api, sim_client, at("2026-03-17T05:30Z"))  # Tuesday 05:30
    placed_end = [m for m in end_of_week if m["leagueTier"]["id"] != UNRANKED_TIER]
    placed_new = [m for m in new_week if m["leagueTier"]["id"] != UNRANKED_TIER]
    assert sum(m["trophies"] for m in placed_end) > 0
    assert placed_new and all(m["trophies"] == 0 for m in placed_new)
    sim_api.clock.set(at("2026-03-17T05:30Z"))
    player = get_json(sim_client, f"/players/{tag_path(placed_new[0]['tag'])}")
    week_start = int(at("2026-03-17T05:00Z").timestamp())
    assert player["currentLeagueSeasonId"] == week_start
    assert player["previousLeagueSeasonId"] == week_start - 7 * 86400


def test_older_eras_have_older_shapes(sim_api, sim_client):
    may_2023 = members_at(sim_api, sim_client, at("2023-03-01T12:00Z"))
    assert all("versusTrophies" in m and "builderBaseTrophies" not in m for m in may_2023)
    assert all("townHallLevel" not in m and "playerHouse" not in m for m in may_2023)
    july_2023 = members_at(sim_api, sim_client, at("2023-07-01T12:00Z"))
    assert all("builderBaseTrophies" in m and "versusTrophies" not in m for m in july_2023)
    assert all("builderBaseLeague" in m for m in july_2023)
    player = get_json(sim_client, f"/players/{tag_path(july_2023[0]['tag'])}")
    assert "heroEquipment" not in player
    assert all("equipment" not in h for h in player["heroes"])
    assert "Minion Prince" not in {h["name"] for h in player["heroes"]}  # released late 2024
    sim_api.clock.set(at("2024-02-01T12:00Z"))
    player = get_json(sim_client, f"/players/{tag_path(july_2023[0]['tag'])}")
    assert "heroEquipment" in player
    members = get_json(sim_client, f"/clans/{tag_path(CLAN)}/members")["items"]
    assert all("townHallLevel" in m for m in members)


# --- wars ----------------------------------------------------------------------------------------
def _find_war(api, client, state: str, start: datetime, tag: str = CLAN) -> tuple[datetime, dict]:
    when = start
    for _ in range(24 * 20):
        api.clock.set(when)
        war = get_json(client, f"/clans/{tag_path(tag)}/currentwar")
        if war["state"] == state:
            return when, war
        when += timedelta(hours=1)
    raise AssertionError(f"no {state} war found after {start}")


def _check_war_totals(war: dict) -> None:
    size = war["teamSize"]
    orders = []
    for side, other in (("clan", "opponent"), ("opponent", "clan")):
        attacks = [a for m in war[side]["members"] for a in m.get("attacks", [])]
        orders += [a["order"] for a in attacks]
        best: dict[str, tuple[int, int]] = {}
        for a in attacks:
            best[a["defenderTag"]] = max(
                best.get(a["defenderTag"], (0, 0)), (a["stars"], a["destructionPercentage"])
            )
        assert war[side]["attacks"] == len(attacks)
        assert war[side]["stars"] == sum(s for s, _ in best.values())
        assert war[side]["destructionPercentage"] == pytest.approx(
            sum(d for _, d in best.values()) / size
        )
        defenders = {m["tag"] for m in war[other]["members"]}
        assert {a["defenderTag"] for a in attacks} <= defenders
        for m in war[side]["members"]:
            assert len(m.get("attacks", [])) <= war.get("attacksPerMember", 1)
            received = [
                a
                for o in war[other]["members"]
                for a in o.get("attacks", [])
                if a["defenderTag"] == m["tag"]
            ]
            assert m["opponentAttacks"] == len(received)
            if received:
                assert m["bestOpponentAttack"]["stars"] == max(a["stars"] for a in received)
    assert sorted(orders) == list(range(1, len(orders) + 1))
    assert sorted(m["mapPosition"] for m in war["clan"]["members"]) == list(range(1, size + 1))


def test_war_cycle_and_progressive_attacks(sim_api, sim_client):
    prep_at, prep = _find_war(sim_api, sim_client, "preparation", at("2026-11-12T00:00Z"))
    start, end = api_time(prep["startTime"]), api_time(prep["endTime"])
    assert api_time(prep["preparationStartTime"]) <= prep_at < start
    assert start - api_time(prep["preparationStartTime"]) == timedelta(hours=23)
    assert end - start == timedelta(hours=24)
    assert prep["clan"]["attacks"] == 0 and all("attacks" not in m for m in prep["clan"]["members"])
    assert prep["battleModifier"] in ("none", "hardMode") and prep["attacksPerMember"] == 2
    counts = []
    for hours in (2, 12, 23):
        sim_api.clock.set(start + timedelta(hours=hours))
        war = get_json(sim_client, f"/clans/{tag_path(CLAN)}/currentwar")
        assert war["state"] == "inWar"
        _check_war_totals(war)
        counts.append(war["clan"]["attacks"] + war["opponent"]["attacks"])
    assert counts == sorted(counts) and counts[-1] > counts[0]
    sim_api.clock.set(end + timedelta(hours=1))
    ended = get_json(sim_client, f"/clans/{tag_path(CLAN)}/currentwar")
    assert ended["state"] == "warEnded"
    _check_war_totals(ended)
    # The war log's newest entry is that war, with the same final numbers.
    entry = get_json(sim_client, f"/clans/{tag_path(CLAN)}/warlog?limit=1")["items"][0]
    assert entry["endTime"] == ended["endTime"]
    assert entry["opponent"]["tag"] == ended["opponent"]["tag"]
    assert entry["clan"]["stars"] == ended["clan"]["stars"]
    assert entry["opponent"]["stars"] == ended["opponent"]["stars"]
    assert entry["clan"]["attacks"] == ended["clan"]["attacks"]
    ours, theirs = ended["clan"], ended["opponent"]
    expected = (
        "win"
        if (ours["stars"], ours["destructionPercentage"])
        > (theirs["stars"], theirs["destructionPercentage"])
        else "lose"
        if (ours["stars"], ours["destructionPercentage"])
        < (theirs["stars"], theirs["destructionPercentage"])
        else "tie"
    )
    assert entry["result"] == expected
    sim_api.clock.set(end + timedelta(hours=13))
    assert get_json(sim_client, f"/clans/{tag_path(CLAN)}/currentwar")["state"] == "notInWar"


def test_warlog_is_newest_first_and_includes_league_summaries(sim_client):
    items = get_json(sim_client, f"/clans/{tag_path(CLAN)}/warlog")["items"]
    ends = [api_time(i["endTime"]) for i in items]
    assert ends == sorted(ends, reverse=True)
    assert all(e <= DEFAULT_START for e in ends)
    league = [i for i in items if "tag" not in i["opponent"]]
    assert league and all(i["attacksPerMember"] == 1 for i in league)
    assert all(api_time(i["endTime"]).day == 9 for i in league)


# --- clan war leagues ----------------------------------------------------------------------------
def test_league_group_and_wars(sim_api, sim_client):
    sim_api.clock.set(at("2026-11-03T12:00Z"))  # round 2 in battle, round 3 in preparation
    group = get_json(sim_client, f"/clans/{tag_path(CLAN)}/currentwar/leaguegroup")
    assert group["state"] == "inWar" and group["season"] == "2026-11"
    assert len(group["clans"]) == 8 and CLAN in {c["tag"] for c in group["clans"]}
    assert len(group["rounds"]) == 7
    known = [r["warTags"] for r in group["rounds"][:3]]
    assert all(tag != "#0" for tags in known for tag in tags)
    assert all(tags == ["#0"] * 4 for tags in (r["warTags"] for r in group["rounds"][3:]))
    states = []
    opponents = set()
    for round_tags in known:
        ours = None
        for tag in round_tags:
            war = get_json(sim_client, f"/clanwarleagues/wars/{tag_path(tag)}")
            assert war["warStartTime"] == war["startTime"]
            if CLAN in (war["clan"]["tag"], war["opponent"]["tag"]):
                ours = war
        assert ours is not None
        opponents.add(({ours["clan"]["tag"], ours["opponent"]["tag"]} - {CLAN}).pop())
        states.append(ours["state"])
        if ours["state"] != "preparation":
            _check_war_totals(ours)
    assert states == ["warEnded", "inWar", "preparation"]
    assert len(opponents) == 3
    # Outside the league days there is no group (404), like the real API.
    sim_api.clock.set(at("2026-11-15T12:00Z"))
    response = sim_client.get(f"/clans/{tag_path(CLAN)}/currentwar/leaguegroup")
    assert response.status_code == 404 and response.json()["reason"] == "notFound"


# --- capital raids -------------------------------------------------------------------------------
def _check_raid_totals(season: dict) -> None:
    attack_log = season["attackLog"]
    assert season["totalAttacks"] == sum(r["attackCount"] for r in attack_log)
    assert season["enemyDistrictsDestroyed"] == sum(r["districtsDestroyed"] for r in attack_log)
    looted = sum(d["totalLooted"] for r in attack_log for d in r["districts"])
    assert season["capitalTotalLoot"] == looted
    for raid in attack_log:
        for district in raid["districts"]:
            attacks = district.get("attacks", [])
            assert district["attackCount"] == len(attacks)
            progress = [a["destructionPercent"] for a in reversed(attacks)]
            assert progress == sorted(progress)  # newest first, destruction only grows
    if "members" in season:
        assert season["totalAttacks"] == sum(m["attacks"] for m in season["members"])
        assert season["capitalTotalLoot"] == sum(
            m["capitalResourcesLooted"] for m in season["members"]
        )
        assert all(
            m["attackLimit"] == 5 and m["bonusAttackLimit"] in (0, 1) for m in season["members"]
        )
        assert all(m["attacks"] <= 5 + m["bonusAttackLimit"] for m in season["members"])


def test_capital_raid_weekends(sim_api, sim_client):
    sim_api.clock.set(at("2026-11-07T20:00Z"))  # a Saturday: the weekend is on
    seasons = get_json(sim_client, f"/clans/{tag_path(CLAN)}/capitalraidseasons?limit=3")["items"]
    ongoing, last, older = seasons
    assert ongoing["state"] == "ongoing" and last["state"] == "ended"
    assert ongoing["startTime"] == "20261106T070000.000Z"
    assert ongoing["endTime"] == "20261109T070000.000Z"
    assert last["startTime"] == "20261030T070000.000Z"
    assert "members" in ongoing and "members" in last and "members" not in older
    for season in seasons:
        _check_raid_totals(season)
    sim_api.clock.set(at("2026-11-09T08:00Z"))  # Monday, after the end
    ended = get_json(sim_client, f"/clans/{tag_path(CLAN)}/capitalraidseasons?limit=1")["items"][0]
    assert ended["state"] == "ended" and ended["startTime"] == ongoing["startTime"]
    assert ended["totalAttacks"] >= ongoing["totalAttacks"]
    _check_raid_totals(ended)


# --- faults --------------------------------------------------------------------------------------
def test_rate_limit_throttles_bursts_with_retry_after(sim_api, sim_client):
    sim_api.faults.update(rate_limit_per_second=5, retry_after_seconds=2)
    burst = [sim_client.get("/leagues").status_code for _ in range(5)]
    assert burst == [200] * 5  # the bucket starts full: capacity = rate = 5
    more = []
    while not more or more[-1].status_code != 429:  # empty now; refills at 5 tokens/s
        more.append(sim_client.get("/leagues"))
        assert len(more) <= 3
    throttled = more[-1]
    assert throttled.headers["retry-after"] == "2"
    assert throttled.json() == {
        "reason": "requestThrottled",
        "message": "Request was throttled, because amount of requests was above the threshold "
        "defined for the used API token.",
    }
    assert sim_api.stats.throttled == sum(r.status_code == 429 for r in more)
    # A slow rate: one request per 5 s, so everything right after the first is refused.
    sim_api.faults.update(rate_limit_per_second=0.2)
    statuses = [sim_client.get("/leagues").status_code for _ in range(6)]
    assert statuses == [200] + [429] * 5


def test_rate_limit_never_throttles_a_client_paced_at_the_rate(sim_api, sim_client):
    sim_api.faults.update(rate_limit_per_second=20)
    start = time.monotonic()
    statuses = []
    for i in range(30):  # 1.5 s at exactly 20 requests/s
        time.sleep(max(0.0, start + i / 20 - time.monotonic()))
        statuses.append(sim_client.get("/leagues").status_code)
    assert statuses == [200] * 30
    assert sim_api.stats.throttled == 0


def test_token_bucket_semantics_with_a_fake_clock():
    now = [0.0]
    bucket = TokenBucket(2.0, clock=lambda: now[0])
    assert [bucket.try_take() for _ in range(3)] == [True, True, False]  # capacity 2
    for _ in range(20):  # paced at exactly 2/s, starting from an empty bucket
        now[0] += 0.5
        assert bucket.try_take()
    now[0] += 0.49  # a little early: within the slack
    assert bucket.try_take()
    now[0] += 0.25  # twice the rate: refused
    assert not bucket.try_take()
    slow = TokenBucket(0.5, clock=lambda: now[0])  # capacity max(1, rate) = 1
    assert slow.try_take() and not slow.try_take()
    now[0] += 2.0
    assert slow.try_take()


def test_maintenance_is_503_with_retry_after(sim_api, sim_client):
    sim_api.faults.maintenance = True
    response = sim_client.get(f"/clans/{tag_path(CLAN)}")
    assert response.status_code == 503
    assert response.json()["reason"] == "inMaintenance"
    assert response.headers["retry-after"] == "1"
    sim_api.faults.maintenance = False
    assert sim_client.get(f"/clans/{tag_path(CLAN)}").status_code == 200


def test_server_errors_and_gateway_pages(sim_api, sim_client):
    sim_api.faults.update(error_rate=1.0)
    response = sim_client.get("/leagues")
    assert response.status_code == 500
    assert response.json() == {
        "reason": "unknownException",
        "message": "Unknown error happened when handling the request.",
    }
    sim_api.faults.update(error_rate=0.0, gateway_error_rate=1.0)
    response = sim_client.get("/leagues")
    assert response.status_code in (502, 504)
    assert response.headers["content-type"] == "text/html"
    assert response.text.startswith("<html>")
    assert sim_api.stats.faults_injected == {"error_500": 1, "gateway": 1}


def test_random_faults_are_reproducible_from_the_seed():
    def run() -> list[int]:
        faults = FaultConfig(error_rate=0.4)
        with SimulatedClashApi(seed=3, token="t", faults=faults) as api:
            with make_sim_client(api, token="t") as client:
                return [client.get("/leagues").status_code for _ in range(25)]

    first, second = run(), run()
    assert first == second
    assert 200 in first and 500 in first


def test_hang_makes_the_client_time_out(sim_api):
    sim_api.faults.update(timeout_rate=1.0, hang_seconds=2.0)
    with make_sim_client(sim_api, timeout=0.3) as client:
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            client.get("/leagues")
        assert time.monotonic() - started < 1.5
        sim_api.faults.update(timeout_rate=0.0)
        assert client.get("/leagues").status_code == 200


def test_latency_is_added_to_every_response(sim_api, sim_client):
    sim_api.faults.latency_ms = 150
    started = time.monotonic()
    sim_client.get("/leagues")
    assert time.monotonic() - started >= 0.15


def test_malformed_and_truncated_bodies(sim_api, sim_client):
    normal = sim_client.get(f"/clans/{tag_path(CLAN)}").content
    sim_api.faults.update(malformed_rate=1.0)
    response = sim_client.get(f"/clans/{tag_path(CLAN)}")
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)
    sim_api.faults.update(malformed_rate=0.0, truncated_rate=1.0)
    response = sim_client.get(f"/clans/{tag_path(CLAN)}")
    assert response.status_code == 200
    assert response.content == normal[: len(normal) // 2]
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)


def test_private_war_log_is_403(sim_api, sim_client):
    sim_api.faults.update(private_warlog_clans={CLAN})
    for suffix in ("/warlog", "/currentwar"):
        response = sim_client.get(f"/clans/{tag_path(CLAN)}{suffix}")
        assert response.status_code == 403
        assert response.json() == {"reason": "accessDenied"}
    assert get_json(sim_client, f"/clans/{tag_path(CLAN)}")["isWarLogPublic"] is False
    assert get_json(sim_client, f"/clans/{tag_path(OTHER_CLAN)}")["isWarLogPublic"] is True
    assert sim_client.get(f"/clans/{tag_path(OTHER_CLAN)}/warlog").status_code == 200


def _strip_extra(data):
    if isinstance(data, list):
        return [_strip_extra(item) for item in data]
    if isinstance(data, dict):
        return {k: _strip_extra(v) for k, v in data.items() if not k.startswith("simulatorExtra")}
    return data


def test_extra_fields_at_several_levels(sim_api, sim_client):
    normal = get_json(sim_client, f"/clans/{tag_path(CLAN)}")
    sim_api.faults.extra_fields = True
    extra = get_json(sim_client, f"/clans/{tag_path(CLAN)}")
    assert "simulatorExtraTopLevel" in extra
    assert all("simulatorExtraItemField" in m for m in extra["memberList"])
    assert "simulatorExtraNested" in extra["location"]
    assert "simulatorExtraNested" in extra["memberList"][0]["league"]
    assert _strip_extra(extra) == normal
    sim_api.faults.extra_fields = False
    assert get_json(sim_client, f"/clans/{tag_path(CLAN)}") == normal  # the world was not mutated


def test_scripted_faults_are_used_up_after_count(sim_api, sim_client):
    sim_api.faults.push("/members", 503, count=2, retry_after=7)
    sim_api.faults.push("#9QL0C0YR", 429, count=1)  # matches the %23-encoded path too
    members = f"/clans/{tag_path(CLAN)}/members"
    first, second = sim_client.get(members), sim_client.get(members)
    assert sim_client.get(f"/clans/{tag_path(CLAN)}").status_code == 200  # other paths unaffected
    third = sim_client.get(members)
    assert [first.status_code, second.status_code, third.status_code] == [503, 503, 200]
    assert first.headers["retry-after"] == "7" and first.json()["reason"] == "inMaintenance"
    throttled = sim_client.get(f"/clans/{tag_path(OTHER_CLAN)}")
    assert throttled.status_code == 429 and throttled.headers["retry-after"] == "1"
    assert sim_client.get(f"/clans/{tag_path(OTHER_CLAN)}").status_code == 200
    assert sim_api.faults.script == []
    # The other kinds.
    normal = sim_client.get("/leagues").content
    sim_api.faults.push_html("/leagues", 504)
    sim_api.faults.push_malformed("/leagues")
    sim_api.faults.push_truncated("/leagues")
    sim_api.faults.push_hang("/leaguetiers")
    sim_api.faults.hang_seconds = 0.5
    page = sim_client.get("/leagues")
    assert page.status_code == 504 and "<html>" in page.text
    assert sim_client.get("/leagues").content.startswith(b'{"reason": "<html>this is not JSON')
    truncated = sim_client.get("/leagues")
    assert truncated.status_code == 200 and truncated.content == normal[: len(normal) // 2]
    assert sim_client.get("/leagues").content == normal  # all used up
    started = time.monotonic()
    assert sim_client.get("/leaguetiers").status_code == 200  # answered after the hang
    assert time.monotonic() - started >= 0.5
    assert sim_api.stats.faults_injected["scripted_status"] == 3


# --- admin endpoints ----------------------------------------------------------------------------
def test_admin_endpoints_drive_a_running_server(sim_api, sim_client):
    admin = httpx.Client(base_url=sim_api.origin, timeout=5)  # no token needed
    try:
        state = admin.get("/_sim/state").json()
        assert state["now"] == "2026-11-02T08:00:00Z" and state["frozen_clock"] is True
        assert state["seed"] == SIM_SEED and state["base_url"] == sim_api.base_url
        assert state["faults"]["script"] == [] and state["stats"]["requests_total"] == 0

        assert admin.post("/_sim/clock", json={"advance_seconds": 3600}).json() == {
            "now": "2026-11-02T09:00:00Z"
        }
        assert sim_client.get("/leagues").headers["x-sim-time"] == "20261102T090000.000Z"
        admin.post("/_sim/clock", json={"set": "2025-10-08T19:00:00Z"})
        assert sim_api.clock.now() == at("2025-10-08T19:00Z")

        faults = admin.post("/_sim/faults", json={"maintenance": True, "latency_ms": 1}).json()
        assert faults["maintenance"] is True and faults["latency_ms"] == 1.0
        assert sim_client.get("/leagues").status_code == 503
        push = {"path_contains": "/leagues", "status": 500, "count": 1}
        admin.post("/_sim/faults", json={"reset": True, "push": push})
        assert sim_client.get("/leagues").status_code == 500
        assert sim_client.get("/leagues").status_code == 200

        missing = admin.post("/_sim/missing", json={"clans": [CLAN], "players": []}).json()
        assert missing == {"clans": [CLAN], "players": []}
        assert sim_client.get(f"/clans/{tag_path(CLAN)}").status_code == 404

        assert admin.post("/_sim/faults", json={"no_such_field": 1}).status_code == 400
        assert admin.post("/_sim/faults", json={"error_rate": 2}).status_code == 400
        assert admin.post("/_sim/clock", content=b"not json").status_code == 400
        assert admin.get("/_sim/nothing").status_code == 404

        stats = admin.get("/_sim/state").json()["stats"]
        assert stats["by_status"] == {"200": 2, "404": 1, "500": 1, "503": 1}
        assert stats["by_kind"] == {"clan": 1, "leagues": 4}
        assert admin.post("/_sim/stats/reset").json()["requests_total"] == 0
        assert sim_api.stats.requests_total == 0
    finally:
        admin.close()


def test_wall_clock_mode_follows_time_from_the_start():
    with SimulatedClashApi(seed=1, token="t", frozen_clock=False) as api:
        first = api.clock.now()
        time.sleep(0.05)
        assert api.clock.now() > first
        api.clock.advance(timedelta(days=2))
        assert api.clock.now() - first >= timedelta(days=2)
    assert abs(first - DEFAULT_START) < timedelta(seconds=5)


def test_concurrent_requests_match_sequential_answers(sim_api_session):
    with make_sim_client(sim_api_session) as client:
        tags = [
            m["tag"] for m in get_json(client, f"/clans/{tag_path(OTHER_CLAN)}/members")["items"]
        ]
        paths = [f"/players/{tag_path(tag)}" for tag in tags] + [
            f"/clans/{tag_path(OTHER_CLAN)}/warlog"
        ]
        sequential = [client.get(path).content for path in paths]
    limits = httpx.Limits(max_connections=8)
    with make_sim_client(sim_api_session, limits=limits) as client:
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            parallel = list(pool.map(lambda path: client.get(path).content, paths))
    assert parallel == sequential


def test_serve_forever_prints_the_base_url_and_stops_on_ctrl_c():
    code = (
        "from clash_pipeline.simulator import serve_forever; "
        "serve_forever(host='127.0.0.1', port=0, seed=1, token='cli-token')"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        line = process.stdout.readline()
        base_url = line.split(" at ", 1)[1].split()[0]
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
        response = httpx.get(
            f"{base_url}/leagues", headers={"Authorization": "Bearer cli-token"}, timeout=5
        )
        assert response.status_code == 200
        assert "cli-token" not in line
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
        assert process.stderr.read() == ""  # quiet: no per-request log lines, no traceback
    finally:
        process.kill()
        process.wait()
