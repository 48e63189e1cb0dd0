"""Staging models over the real API samples, and the dbt runner.

One database for the module (``staging_db``): every file of /work/shared/samples
landed in raw, ``dbt build --select staging`` run once. Expected values were
read by hand from the sample files and typed in here.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row

from clash_pipeline import project
from clash_pipeline.errors import ClashPipelineError
from clash_pipeline.transform import dbt as transform
from clash_pipeline.transform.dbt import (
    DbtError,
    DbtNodeResult,
    DbtResult,
    DbtRunError,
    dbt_env,
    prepare_profiles,
    run_dbt,
)

CLAN_MEMBERS_0910 = "clan_members/warfroggy_2025-09-10_2PR8R8V8P.json"
CLAN_MEMBERS_1008 = "clan_members/warfroggy_2025-10-08_2PR8R8V8P.json"
CLAN_0910 = "clan/warfroggy_2025-09-10_2PR8R8V8P.json"
CLAN_1008 = "clan/warfroggy_2025-10-08_2PR8R8V8P.json"
PLAYER_2023 = "player/cocpy_2023-06_morgil_2PP.envelope.json"
PLAYER_2025 = "player/warfroggy_2025-10-13_andrew_UU9GJ9QQ.json"
WAR_INWAR = "currentwar/cocpy_2023-05_INWAR.envelope.json"
WAR_NOTINWAR = "currentwar/warfroggy_2025-09-10_notinwar_2PR8R8V8P.json"
WARLOG = "warlog/warfroggy_2025-02_2PR8R8V8P.json"
CWL_WAR = "cwl/cocpy_2023-05_clanwarleagues-war_INWAR.envelope.json"
CWL_GROUP = "cwl/cocpy_2023-05_leaguegroup_INWAR_WARSMISSING.envelope.json"
RAIDS_0910 = "capitalraidseasons/warfroggy_2025-09-10_2PR8R8V8P.json"
RAIDS_1008 = "capitalraidseasons/warfroggy_2025-10-08_2PR8R8V8P.json"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture(scope="module")
def db(staging_db):
    assert staging_db.dbt.success, staging_db.dbt.error_summary
    return staging_db


def rows(db, sql: str, *params) -> list[dict]:
    with psycopg.connect(db.url, row_factory=dict_row) as conn:
        return conn.execute(sql, params).fetchall()


def from_file(db, model: str, source_file: str, where: str = "true", *params) -> list[dict]:
    """Rows of a staging model that came from one sample file."""
    return rows(
        db,
        f"""
        select m.* from staging.{model} as m
        join staging.stg_coc__fetches as f using (fetch_id)
        where f.source_file = %s and ({where})
        """,
        source_file,
        *params,
    )


# --- the build ----------------------------------------------------------------


def test_staging_build_runs_every_model_test_and_unit_test(db):
    nodes = db.dbt.nodes
    models = {n.name for n in nodes if n.resource_type == "model"}
    assert {
        "stg_coc__fetches",
        "stg_coc__clans",
        "stg_coc__clan_members",
        "stg_coc__players",
        "stg_coc__player_units",
        "stg_coc__player_achievements",
        "stg_coc__wars",
        "stg_coc__war_members",
        "stg_coc__war_attacks",
        "stg_coc__cwl_groups",
        "stg_coc__cwl_group_clans",
        "stg_coc__cwl_group_wars",
        "stg_coc__capital_raid_seasons",
        "stg_coc__capital_raid_members",
        "stg_coc__capital_raid_attacks",
        "stg_coc__leagues",
        "stg_coc__league_tiers",
    } <= models
    # no warnings either: the samples are what the accepted values describe
    assert [
        (n.name, n.status, n.message) for n in nodes if n.status not in ("success", "pass")
    ] == []
    assert sum(n.resource_type == "unit_test" for n in nodes) >= 5
    assert sum(n.resource_type == "test" for n in nodes) >= 100
    clans = db.dbt.node("stg_coc__clans")
    assert clans.execution_time >= 0 and clans.rows_affected is None  # a view
    assert clans.unique_id == "model.clash_pipeline.stg_coc__clans"


def test_schemas_are_named_as_configured(db):
    schemas = {
        r["table_schema"]
        for r in rows(
            db,
            "select distinct table_schema from information_schema.views"
            " where table_name like 'stg_coc__%%'",
        )
    }
    assert schemas == {"staging"}


# --- clan members -------------------------------------------------------------


def test_member_before_the_split_2025_09_10(db):
    [m] = from_file(db, "stg_coc__clan_members", CLAN_MEMBERS_0910, "player_tag = %s", "#VGQVRLRL")
    assert m["clan_tag"] == "#2PR8R8V8P"  # from the request: items do not repeat it
    assert m["source_endpoint"] == "clan_members"
    assert (m["player_name"], m["role"]) == ("DoubleD", "coLeader")
    assert (m["town_hall_level"], m["exp_level"]) == (14, 178)
    assert (m["trophies"], m["builder_base_trophies"]) == (4086, 3359)
    assert (m["legacy_league_id"], m["legacy_league_name"]) == (29000019, "Titan League III")
    assert (m["league_tier_id"], m["league_tier_name"]) == (None, None)
    assert (m["builder_base_league_id"], m["builder_base_league_name"]) == (
        44000026,
        "Steel League III",
    )
    assert (m["clan_rank"], m["previous_clan_rank"]) == (1, 1)
    assert (m["donations"], m["donations_received"]) == (124, 0)
    assert m["player_house"]["elements"][0] == {"type": "ground", "id": 82000002}
    assert m["fetched_at"] == utc(2025, 9, 10, 15, 24, 10)


def test_member_after_the_split_2025_10_08_has_league_tier(db):
    by_tag = {
        m["player_tag"]: m
        for m in from_file(
            db,
            "stg_coc__clan_members",
            CLAN_MEMBERS_1008,
            "player_tag in (%s, %s)",
            "#VGQVRLRL",
            "#G9QVRYC2Y",
        )
    }
    doubled, leader = by_tag["#VGQVRLRL"], by_tag["#G9QVRYC2Y"]
    assert (doubled["league_tier_id"], doubled["league_tier_name"]) == (
        105000016,
        "Witch League 16",
    )
    assert (doubled["legacy_league_id"], doubled["legacy_league_name"]) == (
        29000020,
        "Titan League II",
    )
    assert (doubled["trophies"], doubled["exp_level"]) == (207, 182)
    assert (leader["role"], leader["player_name"]) == ("leader", "warfroggy")
    assert (leader["league_tier_id"], leader["league_tier_name"]) == (
        105000013,
        "Valkyrie League 13",
    )
    assert (leader["legacy_league_id"], leader["legacy_league_name"]) == (29000000, "Unranked")
    assert (leader["trophies"], leader["donations"]) == (354, 72)


def test_members_come_from_both_roster_endpoints(db):
    counts = {
        (r["source_file"], r["source_endpoint"]): r["n"]
        for r in rows(
            db,
            """
            select f.source_file, m.source_endpoint, count(*) as n
            from staging.stg_coc__clan_members as m
            join staging.stg_coc__fetches as f using (fetch_id)
            group by 1, 2
            """,
        )
    }
    # 20 members on 2025-09-10, 19 on 2025-10-08 (the clans' "members" field)
    assert counts == {
        (CLAN_MEMBERS_0910, "clan_members"): 20,
        (CLAN_0910, "clan"): 20,
        (CLAN_MEMBERS_1008, "clan_members"): 19,
        (CLAN_1008, "clan"): 19,
    }
    [from_clan] = from_file(db, "stg_coc__clan_members", CLAN_1008, "player_tag = %s", "#VGQVRLRL")
    assert (from_clan["clan_tag"], from_clan["league_tier_id"]) == ("#2PR8R8V8P", 105000016)


def test_clan_2025_10_08(db):
    [c] = from_file(db, "stg_coc__clans", CLAN_1008)
    assert (c["clan_tag"], c["clan_name"], c["clan_type"]) == (
        "#2PR8R8V8P",
        "...HeCk YeAh...",
        "inviteOnly",
    )
    assert (c["clan_level"], c["clan_points"], c["clan_builder_base_points"]) == (18, 10600, 19653)
    assert (c["clan_capital_points"], c["capital_hall_level"]) == (1818, 10)
    assert (c["capital_league_id"], c["capital_league_name"]) == (85000009, "Gold League I")
    assert (c["war_league_id"], c["war_league_name"]) == (48000007, "Gold League III")
    assert (c["war_wins"], c["war_ties"], c["war_losses"], c["war_win_streak"]) == (147, 2, 45, 0)
    assert (c["members_count"], c["member_list_count"]) == (19, 19)
    assert c["is_war_log_public"] is True and c["is_family_friendly"] is False
    assert (c["location_name"], c["location_country_code"]) == ("Canada", "CA")
    assert (c["required_trophies"], c["required_town_hall_level"]) == (1000, 8)
    assert [label["name"] for label in c["labels"]] == [
        "Clan Wars",
        "Friendly Wars",
        "Clan Capital",
    ]


# --- players ------------------------------------------------------------------


def test_player_2023_versus_era(db):
    [p] = from_file(db, "stg_coc__players", PLAYER_2023)
    assert (p["player_tag"], p["player_name"]) == ("#2PP", "Morgil")
    assert (p["town_hall_level"], p["exp_level"], p["trophies"], p["best_trophies"]) == (
        8,
        55,
        710,
        1223,
    )
    # the 2023 body sends versusTrophies 0, bestVersusTrophies 0, versusBattleWins 0
    assert (p["builder_base_trophies"], p["best_builder_base_trophies"]) == (0, 0)
    assert p["versus_battle_wins"] == 0
    assert (p["clan_tag"], p["clan_name"], p["role"]) == ("#90PU0RRG", "claani mestarit", "leader")
    assert p["war_preference"] == "in"
    assert (p["legacy_league_id"], p["league_tier_id"], p["town_hall_weapon_level"]) == (
        None,
        None,
        None,
    )
    heroes = from_file(db, "stg_coc__player_units", PLAYER_2023, "unit_type = 'hero'")
    assert heroes == []
    equipment = from_file(db, "stg_coc__player_units", PLAYER_2023, "unit_type = 'equipment'")
    assert equipment == []  # no heroEquipment before late 2023


def test_player_2025(db):
    [p] = from_file(db, "stg_coc__players", PLAYER_2025)
    assert (p["player_tag"], p["player_name"], p["clan_tag"]) == (
        "#UU9GJ9QQ",
        "andrew",
        "#2PR8R8V8P",
    )
    assert (p["town_hall_level"], p["town_hall_weapon_level"], p["builder_hall_level"]) == (
        14,
        1,
        9,
    )
    assert (p["trophies"], p["best_trophies"], p["war_stars"]) == (0, 4540, 331)
    assert (p["builder_base_trophies"], p["best_builder_base_trophies"]) == (2874, 2992)
    assert (p["league_tier_id"], p["league_tier_name"]) == (105000014, "Valkyrie League 14")
    assert p["legacy_league_id"] is None  # gone from /players after the split
    assert (p["builder_base_league_id"], p["builder_base_league_name"]) == (
        44000024,
        "Iron League II",
    )
    assert p["clan_capital_contributions"] == 1080430
    assert [label["name"] for label in p["labels"]] == [
        "Active Donator",
        "Active Daily",
        "Competitive",
    ]


def test_player_2025_equipment_rows_know_their_hero(db):
    equipment = {
        r["unit_name"]: r
        for r in from_file(db, "stg_coc__player_units", PLAYER_2025, "unit_type = 'equipment'")
    }
    assert len(equipment) == 23
    equipped = {
        name: (r["equipped_on_hero"], r["equipment_slot"], r["level"])
        for name, r in equipment.items()
        if r["equipped_on_hero"]
    }
    assert equipped == {
        "Giant Gauntlet": ("Barbarian King", 1, 18),
        "Rage Vial": ("Barbarian King", 2, 8),
        "Frozen Arrow": ("Archer Queen", 1, 12),
        "Invisibility Vial": ("Archer Queen", 2, 9),
        "Eternal Tome": ("Grand Warden", 1, 14),
        "Healing Tome": ("Grand Warden", 2, 12),
        "Hog Rider Puppet": ("Royal Champion", 1, 1),
        "Electro Boots": ("Royal Champion", 2, 15),
        "Dark Orb": ("Minion Prince", 1, 8),
        "Henchmen Puppet": ("Minion Prince", 2, 4),
    }
    rocket_spear = equipment["Rocket Spear"]
    assert (rocket_spear["equipped_on_hero"], rocket_spear["level"], rocket_spear["max_level"]) == (
        None,
        10,
        27,
    )


def test_player_2025_heroes_pets_siege_machines_spells(db):
    units = from_file(db, "stg_coc__player_units", PLAYER_2025)
    by_type: dict[str, dict[str, dict]] = {}
    for u in units:
        by_type.setdefault(u["unit_type"], {})[(u["unit_name"], u["village"])] = u
    assert {(n, u["level"]) for (n, _), u in by_type["pet"].items()} == {
        ("L.A.S.S.I", 9),
        ("Mighty Yak", 6),
        ("Electro Owl", 5),
        ("Unicorn", 5),
    }
    assert {n for (n, _) in by_type["siege_machine"]} == {
        "Wall Wrecker",
        "Battle Blimp",
        "Stone Slammer",
        "Siege Barracks",
        "Log Launcher",
        "Flame Flinger",
    }
    king = by_type["hero"][("Barbarian King", "home")]
    assert (king["level"], king["max_level"]) == (68, 100)
    assert by_type["hero"][("Battle Copter", "builderBase")]["level"] == 26
    assert len(by_type["spell"]) == 15
    assert by_type["spell"][("Ice Block Spell", "home")]["level"] == 1
    # Baby Dragon exists in both villages
    assert by_type["troop"][("Baby Dragon", "home")]["level"] == 7
    assert by_type["troop"][("Baby Dragon", "builderBase")]["level"] == 18
    yeti = by_type["troop"][("Super Yeti", "home")]
    assert (yeti["is_super_troop"], yeti["super_troop_is_active"]) == (True, False)
    assert by_type["troop"][("Barbarian", "home")]["is_super_troop"] is False
    # everything in troops[] is a troop, pet or siege machine: 64 items in the file
    assert len(by_type["troop"]) + len(by_type["pet"]) + len(by_type["siege_machine"]) == 64


def test_player_achievements(db):
    achievements = from_file(db, "stg_coc__player_achievements", PLAYER_2025)
    first = min(achievements, key=lambda a: a["list_position"])
    assert (first["achievement_name"], first["stars"], first["value"], first["target"]) == (
        "Bigger Coffers",
        3,
        15,
        10,
    )
    safe = [a for a in achievements if a["achievement_name"] == "Keep Your Account Safe!"]
    assert len(safe) == 2  # the API lists it twice, with different info
    assert {a["info"] for a in safe} == {
        "Protect your Village by connecting to a social network",
        "Connect your account to Supercell ID for safe keeping.",
    }


# --- wars ---------------------------------------------------------------------


def test_current_war_in_war(db):
    [w] = from_file(db, "stg_coc__wars", WAR_INWAR)
    assert (w["state"], w["war_type"], w["team_size"], w["attacks_per_member"]) == (
        "inWar",
        "regular",
        5,
        1,
    )
    assert (w["clan_tag"], w["clan_name"], w["opponent_tag"], w["opponent_name"]) == (
        "#2GPVRU0C0",
        "G.A.M.T",
        "#2QCVRQCQR",
        "™ Galaxy",
    )
    assert (w["clan_attacks"], w["clan_stars"], w["clan_destruction_pct"]) == (
        5,
        10,
        Decimal("90.2"),
    )
    assert (w["opponent_attacks"], w["opponent_stars"], w["opponent_destruction_pct"]) == (
        5,
        13,
        Decimal("93.6"),
    )
    assert w["preparation_start_at"] == utc(2023, 5, 28, 14, 42, 40)
    assert w["start_at"] == utc(2023, 5, 28, 14, 47, 40)
    assert w["end_at"] == utc(2023, 5, 28, 15, 32, 40)
    assert w["battle_modifier"] is None  # not sent before 2024


def test_current_war_attacks(db):
    attacks = from_file(db, "stg_coc__war_attacks", WAR_INWAR)
    assert len(attacks) == 10
    assert sum(a["war_side"] == "clan" for a in attacks) == 5
    [a] = [a for a in attacks if a["attacker_tag"] == "#2PRU8RPCP"]
    assert (a["defender_tag"], a["stars"], a["destruction_pct"]) == ("#28R9YGPLP", 2, Decimal("94"))
    assert (a["attack_order"], a["duration_seconds"], a["attack_number"]) == (7, 179, 1)
    assert (a["attacker_clan_tag"], a["defender_clan_tag"]) == ("#2GPVRU0C0", "#2QCVRQCQR")
    assert (a["attacker_town_hall_level"], a["attacker_map_position"]) == (12, 1)
    [b] = [a for a in attacks if a["attacker_tag"] == "#9R08QRUU2"]
    assert (b["war_side"], b["defender_tag"], b["stars"], b["destruction_pct"]) == (
        "opponent",
        "#PCQ992GYV",
        3,
        Decimal("100"),
    )
    assert (b["attack_order"], b["duration_seconds"]) == (2, 157)
    assert sorted(a["attack_order"] for a in attacks) == list(range(1, 11))


def test_current_war_members(db):
    members = from_file(db, "stg_coc__war_members", WAR_INWAR)
    assert len(members) == 10
    [m] = [m for m in members if m["player_tag"] == "#9R08QRUU2"]
    assert (m["war_side"], m["clan_tag"], m["town_hall_level"], m["map_position"]) == (
        "opponent",
        "#2QCVRQCQR",
        12,
        1,
    )
    assert (m["attacks_used"], m["defenses_received"]) == (1, 1)
    assert (m["best_opponent_attacker_tag"], m["best_opponent_stars"]) == ("#YLYR8VVY", 2)
    assert m["best_opponent_destruction_pct"] == Decimal("93")


def test_not_in_war_is_a_row_for_the_requesting_clan(db):
    [w] = from_file(db, "stg_coc__wars", WAR_NOTINWAR)
    assert (w["state"], w["clan_tag"], w["opponent_tag"]) == ("notInWar", "#2PR8R8V8P", None)
    assert (w["start_at"], w["team_size"]) == (None, None)
    assert from_file(db, "stg_coc__war_members", WAR_NOTINWAR) == []


def test_war_log(db):
    wars = from_file(db, "stg_coc__wars", WARLOG)
    assert len(wars) == 119
    assert sum(w["is_cwl_season_summary"] for w in wars) == 18
    first = next(w for w in wars if w["list_position"] == 1)
    assert (first["is_cwl_season_summary"], first["war_type"], first["result"]) == (
        True,
        "cwl",
        "tie",
    )
    assert (first["team_size"], first["clan_stars"], first["opponent_stars"]) == (30, 189, 284)
    assert first["clan_destruction_pct"] == Decimal("217.83333")
    assert first["end_at"] == utc(2025, 2, 11, 0, 44, 47)
    regular = next(w for w in wars if w["list_position"] == 3)
    assert (regular["war_type"], regular["result"], regular["opponent_tag"]) == (
        "regular",
        "lose",
        "#8P9Q9Y89",
    )
    assert (regular["opponent_name"], regular["team_size"], regular["attacks_per_member"]) == (
        "АкадемияRU",
        20,
        2,
    )
    assert (regular["clan_stars"], regular["opponent_stars"], regular["clan_exp_earned"]) == (
        54,
        58,
        214,
    )
    assert regular["battle_modifier"] == "none"
    assert regular["end_at"] == utc(2024, 11, 29, 19, 56, 21)


def test_cwl_war_and_group(db):
    [w] = from_file(db, "stg_coc__wars", CWL_WAR)
    assert (w["war_type"], w["state"], w["team_size"], w["clan_tag"]) == (
        "cwl",
        "inWar",
        15,
        "#29Y8PRCJR",
    )
    assert (w["clan_stars"], w["clan_attacks"]) == (28, 15)
    assert w["clan_destruction_pct"] == Decimal("72.93333333333334")
    assert w["war_start_at"] == utc(2023, 5, 10, 9, 22, 58)
    assert len(from_file(db, "stg_coc__war_members", CWL_WAR)) == 30

    [g] = from_file(db, "stg_coc__cwl_groups", CWL_GROUP)
    assert (g["season"], g["state"], g["clans_count"], g["rounds_count"]) == (
        "2023-06",
        "inWar",
        8,
        7,
    )
    slots = from_file(db, "stg_coc__cwl_group_wars", CWL_GROUP)
    assert len(slots) == 28
    assert sum(s["is_scheduled"] for s in slots) == 20  # rounds 6 and 7 are '#0'
    tags = {(s["round_number"], s["war_number"]): s["war_tag"] for s in slots}
    assert (tags[(1, 1)], tags[(5, 4)], tags[(7, 4)]) == ("#82G0JYVGG", "#82GJVRPJ0", "#0")
    clans = {c["clan_tag"]: c for c in from_file(db, "stg_coc__cwl_group_clans", CWL_GROUP)}
    assert len(clans) == 8
    hawk = clans["#GYR89PJ9"]
    assert (hawk["clan_name"], hawk["clan_level"], hawk["members_count"]) == ("Black Hawk", 25, 45)


def test_times_do_not_depend_on_the_session_time_zone(db):
    with psycopg.connect(db.url) as conn:
        conn.execute("set time zone 'America/Los_Angeles'")
        [(start,)] = conn.execute(
            """
            select w.preparation_start_at
            from staging.stg_coc__wars as w
            join staging.stg_coc__fetches as f using (fetch_id)
            where f.source_file = %s
            """,
            (WAR_INWAR,),
        ).fetchall()
    assert start == utc(2023, 5, 28, 14, 42, 40)


# --- capital raids --------------------------------------------------------------


def test_capital_raid_season_and_members_2025_09_10(db):
    seasons = from_file(db, "stg_coc__capital_raid_seasons", RAIDS_0910)
    assert len(seasons) == 20
    latest = next(s for s in seasons if s["list_position"] == 1)
    assert (latest["clan_tag"], latest["state"]) == ("#2PR8R8V8P", "ended")
    assert latest["season_start_at"] == utc(2025, 9, 5, 7)
    assert latest["season_end_at"] == utc(2025, 9, 8, 7)
    assert (latest["capital_total_loot"], latest["total_attacks"], latest["raids_completed"]) == (
        168289,
        42,
        5,
    )
    members = from_file(
        db, "stg_coc__capital_raid_members", RAIDS_0910, "season_start_at = %s", utc(2025, 9, 5, 7)
    )
    by_tag = {m["player_tag"]: m for m in members}
    assert len(by_tag) == 7
    frog = by_tag["#UL0LRJ02"]
    assert (frog["player_name"], frog["attacks"], frog["attack_limit"]) == ("War.Frog", 6, 5)
    assert (frog["bonus_attack_limit"], frog["capital_resources_looted"]) == (1, 21263)
    assert by_tag["#G8GCC8GGC"]["capital_resources_looted"] == 30024
    # members' loot adds up to the season's capitalTotalLoot, attacks to totalAttacks
    assert sum(m["capital_resources_looted"] for m in members) == 168289
    assert sum(m["attacks"] for m in members) == 42


def test_capital_raid_members_2025_10_08(db):
    members = from_file(
        db, "stg_coc__capital_raid_members", RAIDS_1008, "season_start_at = %s", utc(2025, 10, 3, 7)
    )
    by_tag = {m["player_tag"]: m for m in members}
    assert len(by_tag) == 8
    assert (by_tag["#QULRCQ02G"]["attacks"], by_tag["#QULRCQ02G"]["capital_resources_looted"]) == (
        3,
        11665,
    )
    assert by_tag["#G9QVRYC2Y"]["capital_resources_looted"] == 33001


def test_capital_raid_attacks(db):
    attacks = from_file(
        db,
        "stg_coc__capital_raid_attacks",
        RAIDS_0910,
        "season_start_at = %s and raid_number = 1 and district_id = 70000000",
        utc(2025, 9, 5, 7),
    )
    assert len(attacks) == 5
    first = next(a for a in attacks if a["attack_number"] == 1)
    assert (first["attacker_tag"], first["stars"], first["destruction_pct"]) == (
        "#UL0LRJ02",
        3,
        Decimal("100"),
    )
    assert (first["defender_clan_tag"], first["district_name"]) == ("#29J0GYJ0", "Capital Peak")
    assert (first["district_total_looted"], first["district_attack_count"]) == (13598, 5)


# --- leagues, errors ------------------------------------------------------------


def test_leagues_and_league_tiers(db):
    leagues = {
        r["league_id"]: r["league_name"] for r in rows(db, "select * from staging.stg_coc__leagues")
    }
    assert len(leagues) == 23
    assert (leagues[29000000], leagues[29000015], leagues[29000022]) == (
        "Unranked",
        "Master League I",
        "Legend League",
    )
    tiers = {
        r["league_tier_id"]: r["league_tier_name"]
        for r in rows(db, "select * from staging.stg_coc__league_tiers")
    }
    assert len(tiers) == 35
    assert (tiers[105000000], tiers[105000016], tiers[105000034]) == (
        "Unranked",
        "Witch League 16",
        "Legend League",
    )


def test_failed_fetches_are_logged_not_staged(db):
    failed = rows(
        db,
        "select * from staging.stg_coc__fetches where not is_success order by http_status",
    )
    assert [(f["endpoint"], f["http_status"], f["error_reason"]) for f in failed] == [
        ("leagues", 400, "badRequest"),
        ("warlog", 403, "accessDenied"),
        ("player", 404, "notFound"),
    ]
    assert all(f["payload_hash"] is None for f in failed)
    [player_404] = [f for f in failed if f["http_status"] == 404]
    assert player_404["error_message"] == "Not found with tag 2PP"
    staged = rows(
        db,
        "select count(*) as n from staging.stg_coc__players where fetch_id = %s",
        player_404["fetch_id"],
    )
    assert staged == [{"n": 0}]


def test_every_fetch_has_lineage(db):
    [r] = rows(
        db,
        """
        select count(*) as n,
               count(*) filter (where run_id is null or snapshot_at is null) as missing
        from staging.stg_coc__fetches
        """,
    )
    assert r["n"] == 21 and r["missing"] == 0


# --- the dbt runner -----------------------------------------------------------


def test_dbt_env_comes_from_the_url():
    env = dbt_env("postgresql://ana:s3cr%40t@db.example.org:6543/wh?sslmode=require")
    assert env == {
        "CLASH_DB_HOST": "db.example.org",
        "CLASH_DB_PORT": "6543",
        "CLASH_DB_USER": "ana",
        "CLASH_DB_PASSWORD": "s3cr@t",
        "CLASH_DB_NAME": "wh",
        "PGSSLMODE": "require",
    }
    with pytest.raises(DbtError):
        dbt_env("postgresql://[broken")


def test_profile_is_copied_into_home(tmp_path):
    profiles_dir = prepare_profiles(tmp_path)
    assert profiles_dir == tmp_path / "dbt"
    text = (profiles_dir / "profiles.yml").read_text()
    assert text == project.profile_template().read_text()
    assert "env_var('CLASH_DB_PASSWORD')" in text


def test_wrong_password_is_one_line_error_without_the_password(db, tmp_path):
    secret = "not-the-password-9f3c"
    url = make_conninfo(db.url, password=secret)
    with pytest.raises(DbtError) as caught:
        run_dbt(["run", "--select", "stg_coc__clans"], db_url=url, home=tmp_path)
    message = str(caught.value)
    assert isinstance(caught.value, ClashPipelineError)
    assert "\n" not in message and secret not in message
    assert "password authentication failed" in message
    assert secret not in "".join(p.read_text() for p in (tmp_path / "dbt").rglob("*.log"))


def test_failed_result_raises_with_summary():
    result = DbtResult(
        args=["build"],
        success=False,
        nodes=[
            DbtNodeResult("model.p.a", "a", "model", "success", 0.1),
            DbtNodeResult(
                "test.p.b", "b", "test", "fail", 0.2, failures=3, message="Got 3 results"
            ),
        ],
    )
    result.error_summary = transform._summary("build", result.nodes)
    assert [n.name for n in result.failed] == ["b"]
    with pytest.raises(DbtRunError, match="test b fail: Got 3 results") as caught:
        result.raise_for_status()
    assert caught.value.result is result
    ok = DbtResult(args=["build"], success=True)
    assert ok.raise_for_status() is ok


def test_invocations_never_overlap(monkeypatch, tmp_path):
    """Two threads calling run_dbt at once: the second waits for the first."""
    import dbt.cli.main

    active = 0
    overlaps = []

    class FakeRunner:
        def invoke(self, args):
            nonlocal active
            active += 1
            overlaps.append(active)
            time.sleep(0.2)
            active -= 1
            return dbt.cli.main.dbtRunnerResult(success=True, result=None)

    monkeypatch.setattr(dbt.cli.main, "dbtRunner", FakeRunner)
    url = "postgresql://u:p@127.0.0.1:1/x"
    threads = [
        threading.Thread(target=run_dbt, args=(["ls"],), kwargs={"db_url": url, "home": tmp_path})
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == [1, 1, 1]


def test_environment_is_restored_after_a_run(monkeypatch, tmp_path):
    import dbt.cli.main

    seen = {}

    class FakeRunner:
        def invoke(self, args):
            import os

            seen.update({k: os.environ.get(k) for k in ("CLASH_DB_PASSWORD", "DBT_TARGET_PATH")})
            seen["args"] = args
            return dbt.cli.main.dbtRunnerResult(success=True, result=None)

    monkeypatch.setattr(dbt.cli.main, "dbtRunner", FakeRunner)
    monkeypatch.delenv("CLASH_DB_PASSWORD", raising=False)
    result = run_dbt(
        ["build"],
        db_url="postgresql://u:pw@127.0.0.1:5/x",
        home=tmp_path,
        full_refresh=True,
        vars={"staging_test_days": 0},
    )
    assert result.success and result.nodes == []
    assert seen["CLASH_DB_PASSWORD"] == "pw"
    assert Path(seen["DBT_TARGET_PATH"]) == tmp_path / "dbt" / "target"
    assert seen["args"] == ["build", "--full-refresh", "--vars", '{"staging_test_days": 0}']
    import os

    assert "CLASH_DB_PASSWORD" not in os.environ
