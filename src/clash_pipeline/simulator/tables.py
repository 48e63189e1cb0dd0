"""Static game data the simulated world is built from.

League, league-tier and label ids/names/icons are the real ones (as the API sends
them); unit caps per town hall are plausible approximations except the hero caps,
which are DOMAIN.md's table. Nothing here is read from disk at run time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from clash_pipeline.simulator.timeline import utc

ASSETS = "https://api-assets.clashofclans.com"

# --- leagues ---------------------------------------------------------------------------------
#: (id, name, icon hash) of the ranked league tiers (GET /leaguetiers, from 2025-10).
LEAGUE_TIERS: tuple[tuple[int, str, str], ...] = (
    (105000000, "Unranked", "yyYo5DUFeFBZvmMEQh0ZxvG-1sUOZ_S3kDMB7RllXX0"),
    (105000001, "Skeleton League 1", "CiSJYHyhMuloCpIIJ3n5-xCnRWrEd9vcq_zu6Ahkl3o"),
    (105000002, "Skeleton League 2", "CmM-Tihn6ojPGJstmTK_HC-QairrpYLyRhdKhQjkacQ"),
    (105000003, "Skeleton League 3", "YMnWU25Xs2SvtAkVS2WDDbcUQY-PTfCK9OSvCKJnwJU"),
    (105000004, "Barbarian League 4", "CoTrW7nhyiNIDCI4WHUK-0BuhOxibwd_tfASdtmMWFE"),
    (105000005, "Barbarian League 5", "7Alm6gwA1lYoRn5m8vrXAfbTKIK2fFU7OxfYhYwWJYM"),
    (105000006, "Barbarian League 6", "pQHVG1p0IboE8Ggp0U1YR7U8dWhVn4YSS1zSPH61F0I"),
    (105000007, "Archer League 7", "x1c7byHQmOHQVKGxAn1sqOW2XOCzTYW-e6OKjq-FBco"),
    (105000008, "Archer League 8", "lzneKpnJ_ADL1Xb1rceH7-svqRN1UaLnI7ldd8BbyxI"),
    (105000009, "Archer League 9", "ieEdz9Mqbo7g9iJfXwTnIh7Iwz-37aPEmWma1ENEwXE"),
    (105000010, "Wizard League 10", "3kJYaYpDwKF8AEkwRLkm-947_t2mAhpEQcZJYulPPIA"),
    (105000011, "Wizard League 11", "XazuJHG2wjBq39KEA4g4hh1nKJQwVO0fRoVDPHvWwAY"),
    (105000012, "Wizard League 12", "A_ZoGbh1g8wYRWygsQ_wMgbVz8GXvvfavKwlSx8C8PQ"),
    (105000013, "Valkyrie League 13", "6BwmbzkNm6p2unZonTauFQ_683uNl4NYtoOXJmEs78c"),
    (105000014, "Valkyrie League 14", "7AbbZbiV6whmfa6CZtqt6Ml4NgFH1B-UqCxc59ziqfk"),
    (105000015, "Valkyrie League 15", "vT-0ssHYx5zJbBbbjB5NHPXnlHk76MDxJmG7iKmghc4"),
    (105000016, "Witch League 16", "a3zg3PSqri2WrWD8tGzKs0hJ5OrND1Rx1SJ45f5O0gE"),
    (105000017, "Witch League 17", "3mEMvpajLceJ3EKu7u_JIh_cOEsT7wyh701zum9hqCY"),
    (105000018, "Witch League 18", "GeLamlTvRYNnZp5lEW64pyaORN30rCdrxTjU7oJoTN8"),
    (105000019, "Golem League 19", "yS8XBv_a_SNtCpcofsWMFaojRNwO504Py7HyDCBCjYU"),
    (105000020, "Golem League 20", "uizNRh8glQZuAbLdCa-EQSf3oJnge3nqoXHjtQ6O8pw"),
    (105000021, "Golem League 21", "WkqDvnK0CXI-Nc0TNTKG_fSuzRYoLRC54HFOdMCxVTI"),
    (105000022, "P.E.K.K.A League 22", "iTWXPUUFQy0uEb7NDpMTyzGMFOJvlC4SLAqlHYgC8do"),
    (105000023, "P.E.K.K.A League 23", "0eDMQmsiZ0gs8xzViGfVETnYjwzgELTKwYhH3izevT4"),
    (105000024, "P.E.K.K.A League 24", "vxV7LI0votsz0_n-8lW-Lag96D5HwKsEgEk_7247zC4"),
    (105000025, "Titan League 25", "JLqVXdNkAGjD_yqMRDgu9KK-hDrulNPjsKU4EugHqX8"),
    (105000026, "Titan League 26", "yIfqSgrhiYRcuMbAPCoeCj1FTmfylCLxnrAljEZc8K0"),
    (105000027, "Titan League 27", "1AhObOl55grQIWnGmn1J9qMWq5pmRA3aBObfYkQEjko"),
    (105000028, "Dragon League 28", "YCZ7O_3_c8eCBYvX-92qiWeLc6Md6eNJ5A8O-2vUg7I"),
    (105000029, "Dragon League 29", "DIMeRH3N4lrNObA3zAmk_eUin8nvNeLR89qYznnA--s"),
    (105000030, "Dragon League 30", "g7m9aF8YoYj9b0olPsyT4eUIxyYEmkqr53wYxWmzpE4"),
    (105000031, "Electro League 31", "qVORiRguZ-xMq8L0g7rE1-rZuiA-lKlI8VKuMndRy4w"),
    (105000032, "Electro League 32", "iX8uNhG6jBcQATWFS8a0gtidGy9O1PRYtXZZMTtUK3U"),
    (105000033, "Electro League 33", "VFqkaQimExWtSmIf9PC8WEpj4Vd58oLjPWyZqfVb5VE"),
    (105000034, "Legend League", "BvEu_UE53UzADvTRiU9AdyOrlvb1RqvBmMau_uX6xm0"),
)
TOP_TIER = len(LEAGUE_TIERS) - 1

#: (id, name, icon hash) of the legacy trophy leagues (GET /leagues).
LEGACY_LEAGUES: tuple[tuple[int, str, str], ...] = (
    (29000000, "Unranked", "e--YMyIexEQQhE4imLoJcwhYn6Uy8KqlgyY3_kFV6t4"),
    (29000001, "Bronze League III", "uUJDLEdAh7Lwf6YOHmXfNM586ZlEvMju54bTlt2u6EE"),
    (29000002, "Bronze League II", "U2acNDRaR5rQDu4Z6pQKaGcjWm9dkSnHMAPZCXrHPB4"),
    (29000003, "Bronze League I", "SZIXZHZxfHTmgseKCH6T5hvMQ3JQM-Js2QfpC9A3ya0"),
    (29000004, "Silver League III", "QcFBfoArnafaXCnB5OfI7vESpQEBuvWtzOyLq8gJzVc"),
    (29000005, "Silver League II", "8OhXcwDJkenBH2kPH73eXftFOpHHRF-b32n0yrTqC44"),
    (29000006, "Silver League I", "nvrBLvCK10elRHmD1g9w5UU1flDRMhYAojMB2UbYfPs"),
    (29000007, "Gold League III", "vd4Lhz5b2I1P0cLH25B6q63JN3Wt1j2NTMhOYpMPQ4M"),
    (29000008, "Gold League II", "Y6CveuHmPM_oiOic2Yet0rYL9AFRYW0WA0u2e44-YbM"),
    (29000009, "Gold League I", "CorhMY9ZmQvqXTZ4VYVuUgPNGSHsO0cEXEL5WYRmB2Y"),
    (29000010, "Crystal League III", "Hyqco7bHh0Q81xB8mSF_ZhjKnKcTmJ9QEq9QGlsxiKE"),
    (29000011, "Crystal League II", "jhP36EhAA9n1ADafdQtCP-ztEAQjoRpY7cT8sU7SW8A"),
    (29000012, "Crystal League I", "kSfTyNNVSvogX3dMvpFUTt72VW74w6vEsEFuuOV4osQ"),
    (29000013, "Master League III", "pSXfKvBKSgtvfOY3xKkgFaRQi0WcE28s3X35ywbIluY"),
    (29000014, "Master League II", "4wtS1stWZQ-1VJ5HaCuDPfdhTWjeZs_jPar_YPzK6Lg"),
    (29000015, "Master League I", "olUfFb1wscIH8hqECAdWbdB6jPm9R8zzEyHIzyBgRXc"),
    (29000016, "Champion League III", "JmmTbspV86xBigM7OP5_SjsEDPuE7oXjZC9aOy8xO3s"),
    (29000017, "Champion League II", "kLWSSyq7vJiRiCantiKCoFuSJOxief6R1ky6AyfB8q0"),
    (29000018, "Champion League I", "9v_04LHmd1LWq7IoY45dAdGhrBkrc2ZFMZVhe23PdCE"),
    (29000019, "Titan League III", "L-HrwYpFbDwWjdmhJQiZiTRa_zXPPOgUTdmbsaq4meo"),
    (29000020, "Titan League II", "llpWocHlOoFliwyaEx5Z6dmoZG4u4NmxwpF-Jg7su7Q"),
    (29000021, "Titan League I", "qVCZmeYH0lS7Gaa6YoB7LrNly7bfw7fV_d4Vp2CU-gk"),
    (29000022, "Legend League", "R2zmhyqQ0_lKcDR5EyghXCxgyC9mm_mVMIjAbmGoZtw"),
)
#: Lower trophy bound of each legacy league above Unranked (same order as LEGACY_LEAGUES[1:]).
LEGACY_LEAGUE_THRESHOLDS = (
    400, 500, 600, 800, 1000, 1200, 1400, 1600, 1800, 2000, 2200, 2400,
    2600, 2800, 3000, 3200, 3500, 3800, 4100, 4400, 4700, 5000,
)  # fmt: skip
LEGEND_TROPHIES = 5000


def legacy_league_index(trophies: int) -> int:
    index = 0
    for i, bound in enumerate(LEGACY_LEAGUE_THRESHOLDS, start=1):
        if trophies >= bound:
            index = i
    return index


def legacy_league(index: int) -> dict[str, Any]:
    league_id, name, icon = LEGACY_LEAGUES[index]
    icons = {
        "small": f"{ASSETS}/leagues/72/{icon}.png",
        "tiny": f"{ASSETS}/leagues/36/{icon}.png",
    }
    if index:  # the real API sends no "medium" icon for Unranked
        icons["medium"] = f"{ASSETS}/leagues/288/{icon}.png"
    return {"id": league_id, "name": name, "iconUrls": icons}


def league_tier(index: int) -> dict[str, Any]:
    tier_id, name, icon = LEAGUE_TIERS[index]
    return {
        "id": tier_id,
        "name": name,
        "iconUrls": {
            "small": f"{ASSETS}/leaguetiers/125/{icon}.png",
            "large": f"{ASSETS}/leaguetiers/326/{icon}.png",
        },
    }


def _division_names(prefixes: list[tuple[str, int]]) -> list[str]:
    roman = ["I", "II", "III", "IV", "V"]
    names: list[str] = []
    for prefix, count in prefixes:
        names.extend(f"{prefix} League {roman[i]}" for i in reversed(range(count)))
    return names


#: Builder base leagues, ids 44000000.. (Wood League V … Diamond League).
BUILDER_BASE_LEAGUES: tuple[str, ...] = (
    *_division_names(
        [("Wood", 5), ("Clay", 5), ("Stone", 5), ("Copper", 5), ("Brass", 3), ("Iron", 3)]
    ),
    *_division_names([("Steel", 3), ("Titanium", 3), ("Platinum", 3), ("Emerald", 3)]),
    *_division_names([("Ruby", 3)]),
    "Diamond League",
)


def builder_base_league(trophies: int) -> dict[str, Any]:
    if trophies < 2000:
        index = trophies // 100
    else:
        index = 20 + (trophies - 2000) // 150
    index = max(0, min(len(BUILDER_BASE_LEAGUES) - 1, index))
    return {"id": 44000000 + index, "name": BUILDER_BASE_LEAGUES[index]}


#: War leagues (CWL) ids 48000000.., capital leagues ids 85000000...
WAR_LEAGUES: tuple[str, ...] = (
    "Unranked",
    *_division_names([("Bronze", 3), ("Silver", 3), ("Gold", 3), ("Crystal", 3), ("Master", 3)]),
    *_division_names([("Champion", 3)]),
)
CAPITAL_LEAGUES: tuple[str, ...] = (*WAR_LEAGUES, "Legend League")


def war_league(index: int) -> dict[str, Any]:
    index = max(0, min(len(WAR_LEAGUES) - 1, index))
    return {"id": 48000000 + index, "name": WAR_LEAGUES[index]}


def capital_league(index: int) -> dict[str, Any]:
    index = max(0, min(len(CAPITAL_LEAGUES) - 1, index))
    return {"id": 85000000 + index, "name": CAPITAL_LEAGUES[index]}


# --- labels, locations, languages --------------------------------------------------------------
#: Clan labels (id, name, icon hash); the three with real hashes come from real responses.
CLAN_LABELS: tuple[tuple[int, str, str], ...] = (
    (56000000, "Clan Wars", "lXaIuoTlfoNOY5fKcQGeT57apz1KFWkN9-raxqIlMbE"),
    (56000001, "Clan War League", "5w60_3bdtYUe9SM6rkxBRyV_8VvWw_jTlDS5ieU3IsI"),
    (56000002, "Trophy Pushing", "7qU7tQGERiVITVG0CPFov1-BnFldu4bMN2gXML5bLIU"),
    (56000003, "Friendly Wars", "6NxZMDn9ryFw8-FHJJimcEkKwnXZHMVUp_0cCVT6onY"),
    (56000004, "Clan Games", "7qU7tQGERiVITVG0CPFov1-BnFldu4bMN2gXML5bLIV"),
    (56000005, "Builder Base", "Xqf1aSSGNn5eEXD0M1XdNJAmxwGJzkBVjEpJnUJeAl4"),
    (56000006, "Base Designing", "aL1zyHbUpC9FgQFjIUOLT8mTvQYXUOjPWJzZUJq5Wj0"),
    (56000007, "International", "hNtigjuwJjs6PWhVtVt5HvJgAp4ZOMO8e2nyjHX29sA"),
    (56000008, "Farming", "DMGqXLT3KlVwNSJMCT3sZoZP6FRWF81ATXq2jPmSrCY"),
    (56000009, "Donations", "RauzS-02tv4vWm1edZ-q3gPQGWKGANLZ-85HCw_NVP0"),
    (56000010, "Friendly", "HzAtrsYxnUTSW6ZLCm9KTN4sH1kFr86Ap-qaGSbwVJw"),
    (56000011, "Talkative", "T1c8AYalTn_RruVkY0mRPwgYgJSq4e8q1bI8XTQlx4E"),
    (56000012, "Underdog", "ImSgCg88EEl80mwzFZMIiJTqa33bJmJPcl4v2eT6O04"),
    (56000013, "Relaxed", "Kv1MZQfd5A7DLwf1Zw3tOaUiwQHGMwmRpjZqOalu_hI"),
    (56000014, "Competitive", "DhBE-1SSnrZQtsfjVHyNW-BTBWMc8Zoo34MNRCNiRsA"),
    (56000015, "Newbie Friendly", "3oOuYkPdkjWVrBUITgByz9Ur0nmJXs1-YP7ICFOOs2Y"),
    (56000016, "Clan Capital", "Odg2DaLfhMgQOci4QvHovdoYq4SDiBrocWS2Bjm8Ah8"),
)
PLAYER_LABELS: tuple[tuple[int, str, str], ...] = (
    (57000000, "Clan Wars", "JOzAO4r91eVaJELAPB-iuAx6f_zBbRPCLM_ag5mpK4s"),
    (57000001, "Clan War League", "5w60_3bdtYUe9SM6rkxBRyV_8VvWw_jTlDS5ieU3IsJ"),
    (57000002, "Trophy Pushing", "8Q08M2dj1xz2Zx-sAre6QPqnrmS2ciJ_TaAHp8sZfbE"),
    (57000003, "Friendly Wars", "6NxZMDn9ryFw8-FHJJimcEkKwnXZHMVUp_0cCVT6onZ"),
    (57000004, "Clan Games", "7qU7tQGERiVITVG0CPFov1-BnFldu4bMN2gXML5bLIW"),
    (57000005, "Builder Base", "Xqf1aSSGNn5eEXD0M1XdNJAmxwGJzkBVjEpJnUJeAl5"),
    (57000006, "Base Designing", "aL1zyHbUpC9FgQFjIUOLT8mTvQYXUOjPWJzZUJq5Wj1"),
    (57000007, "Farming", "DMGqXLT3KlVwNSJMCT3sZoZP6FRWF81ATXq2jPmSrCZ"),
    (57000008, "Active Donator", "MvL0LDt0yv9AI-Vevpu8yE5NAJUIV05Ofpsr4IfGRxQ"),
    (57000009, "Active Daily", "mcWhk0ii7CyjiiHOidhRofrSulpVrxjDu24cQtGCQbE"),
    (57000010, "Hungry Learner", "u-VKK5y0hj0U8B1xdawjxNcXciv-fwMK3VqEBWCn1oM"),
    (57000011, "Friendly", "HzAtrsYxnUTSW6ZLCm9KTN4sH1kFr86Ap-qaGSbwVJx"),
    (57000012, "Talkative", "T1c8AYalTn_RruVkY0mRPwgYgJSq4e8q1bI8XTQlx4F"),
    (57000013, "Teacher", "sy5jd7j9BCf6UQ7aR7GS4bM6oF6rzG5rVx9wGdKkvMo"),
    (57000014, "Competitive", "DfTPKAsvjdsD-CFfbpmfIJiT2uF3FQLfftRdJgBA37Y"),
    (57000015, "Veteran", "pWcJyz-dpL0fQwJ8yLZgsuFmRYj5V2cSlRbnWWxNtfE"),
    (57000016, "Newbie", "ZxJp9606Vl1sa0GHg5JmGp8TdHS4l0jE4WFuil1ENvA"),
    (57000017, "Amateur Attacker", "AJmh2tXgeAAFw2bTY0cn7U2WeyK8nUy6ZT8hXDbyhoA"),
    (57000018, "Clan Capital", "Odg2DaLfhMgQOci4QvHovdoYq4SDiBrocWS2Bjm8Ah9"),
)


def label(entry: tuple[int, str, str]) -> dict[str, Any]:
    label_id, name, icon = entry
    return {
        "id": label_id,
        "name": name,
        "iconUrls": {
            "small": f"{ASSETS}/labels/64/{icon}.png",
            "medium": f"{ASSETS}/labels/128/{icon}.png",
        },
    }


#: (id, name, isCountry, countryCode)
LOCATIONS: tuple[tuple[int, str, bool, str | None], ...] = (
    (32000006, "International", False, None),
    (32000007, "Europe", False, None),
    (32000047, "Canada", True, "CA"),
    (32000249, "United States", True, "US"),
    (32000248, "United Kingdom", True, "GB"),
    (32000094, "Germany", True, "DE"),
    (32000087, "France", True, "FR"),
    (32000038, "Brazil", True, "BR"),
    (32000113, "India", True, "IN"),
    (32000086, "Finland", True, "FI"),
    (32000120, "Italy", True, "IT"),
    (32000218, "Spain", True, "ES"),
    (32000124, "Japan", True, "JP"),
    (32000200, "Russia", True, "RU"),
    (32000233, "Turkey", True, "TR"),
    (32000115, "Indonesia", True, "ID"),
    (32000178, "Philippines", True, "PH"),
    (32000166, "Netherlands", True, "NL"),
)
#: (id, name, languageCode)
CHAT_LANGUAGES: tuple[tuple[int, str, str], ...] = (
    (75000000, "English", "EN"),
    (75000001, "Français", "FR"),
    (75000002, "Deutsch", "DE"),
    (75000004, "Español", "ES"),
    (75000005, "Italiano", "IT"),
    (75000006, "Nederlands", "NL"),
    (75000008, "Português", "PT"),
    (75000009, "Türkçe", "TR"),
    (75000011, "Русский", "RU"),
    (75000013, "日本語", "JA"),
    (75000015, "Bahasa Indonesia", "ID"),
    (75000017, "Suomi", "FI"),
)

DISTRICTS: tuple[tuple[int, str], ...] = (
    (70000000, "Capital Peak"),
    (70000001, "Barbarian Camp"),
    (70000002, "Wizard Valley"),
    (70000003, "Balloon Lagoon"),
    (70000004, "Builder's Workshop"),
    (70000005, "Dragon Cliffs"),
    (70000006, "Golem Quarry"),
    (70000007, "Skeleton Park"),
    (70000008, "Goblin Mines"),
)
#: Capital hall level at which each district (same order) unlocks.
DISTRICT_UNLOCK_CAPITAL_HALL = (1, 2, 2, 3, 4, 5, 6, 8, 9)

HOUSE_PARTS = ("ground", "walls", "roof", "decoration")

# --- units -----------------------------------------------------------------------------------
#: Hero caps per town hall, DOMAIN.md's table (TH 7..18).
HERO_CAPS: dict[str, dict[int, int]] = {
    "Barbarian King": {
        7: 10, 8: 20, 9: 30, 10: 40, 11: 50, 12: 65, 13: 75, 14: 85, 15: 90, 16: 95, 17: 100,
        18: 105,
    },
    "Archer Queen": {
        8: 10, 9: 30, 10: 40, 11: 50, 12: 65, 13: 75, 14: 85, 15: 90, 16: 95, 17: 100, 18: 105,
    },
    "Minion Prince": {
        9: 10, 10: 20, 11: 30, 12: 40, 13: 50, 14: 60, 15: 70, 16: 80, 17: 90, 18: 95,
    },
    "Grand Warden": {11: 20, 12: 40, 13: 50, 14: 60, 15: 65, 16: 70, 17: 75, 18: 80},
    "Royal Champion": {13: 25, 14: 30, 15: 40, 16: 45, 17: 50, 18: 55},
}  # fmt: skip
BUILDER_HERO_CAPS: dict[str, dict[int, int]] = {
    "Battle Machine": {5: 5, 6: 10, 7: 20, 8: 25, 9: 30, 10: 35},
    "Battle Copter": {8: 15, 9: 25, 10: 35},
}
#: Blacksmith caps per town hall for hero equipment.
EQUIPMENT_CAPS: dict[str, dict[int, int]] = {
    "common": {8: 9, 9: 12, 10: 12, 11: 15, 12: 15, 13: 18},
    "epic": {8: 12, 9: 15, 10: 18, 11: 21, 12: 24, 13: 27},
}


@dataclass(frozen=True, slots=True)
class Unit:
    """One unit as the API lists it.

    ``kind``: troop, super, siege, pet, spell, hero, equipment, bb_troop, bb_hero.
    ``unlock`` is a town hall (builder hall for bb_*); ``max_level`` the game-wide
    maximum in the TH17 era, reached at town hall ``full_at``; ``caps`` overrides the
    generic interpolation; ``released`` hides the unit before that date.
    """

    name: str
    kind: str
    unlock: int
    max_level: int
    full_at: int = 17
    caps: dict[int, int] | None = None
    released: datetime | None = None
    hero: str | None = None
    rarity: str | None = None

    @property
    def village(self) -> str:
        return "builderBase" if self.kind.startswith("bb_") else "home"

    def cap(self, hall: int) -> int:
        """The highest level available at town hall (or builder hall) ``hall``; 0: locked."""
        if hall < self.unlock:
            return 0
        table = self._cap_table()
        if table is not None:
            return _step(table, hall)
        if self.kind == "bb_troop":
            return min(self.max_level, 2 * hall)
        if self.kind == "super":
            return 1
        span = max(1, self.full_at - self.unlock + 1)
        return max(
            1, min(self.max_level, math.ceil(self.max_level * (hall - self.unlock + 1) / span))
        )

    def _cap_table(self) -> dict[int, int] | None:
        """The caps by hall when a table sets them (heroes, equipment, explicit caps)."""
        if self.kind == "hero":
            return HERO_CAPS[self.name]
        if self.kind == "bb_hero":
            return BUILDER_HERO_CAPS[self.name]
        if self.kind == "equipment":
            return EQUIPMENT_CAPS[self.rarity or "common"]
        if self.kind in ("bb_troop", "super"):
            return None
        return self.caps


def _step(table: dict[int, int], hall: int) -> int:
    best = 0
    for level_hall, cap in table.items():
        if hall >= level_hall:
            best = max(best, cap)
    return best


def _t(
    name: str, unlock: int, max_level: int, full_at: int = 17, *, released: datetime | None = None
) -> Unit:
    return Unit(name, "troop", unlock, max_level, full_at, released=released)


def _super(name: str, max_level: int, *, released: datetime | None = None) -> Unit:
    return Unit(name, "super", 11, max_level, released=released)


def _siege(name: str, unlock: int, *, released: datetime | None = None) -> Unit:
    caps = {unlock: 3, unlock + 1: 4, unlock + 2: 5}
    return Unit(name, "siege", unlock, 5, caps=caps, released=released)


def _pet(name: str, unlock: int, max_level: int, *, released: datetime | None = None) -> Unit:
    caps = {unlock: 10} if max_level <= 10 else {unlock: 10, unlock + 2: max_level}
    return Unit(name, "pet", unlock, max_level, caps=caps, released=released)


def _bb(name: str, unlock: int, *, released: datetime | None = None) -> Unit:
    return Unit(name, "bb_troop", unlock, 20, released=released)


_BB2 = utc(2023, 6, 12)
_TH15 = utc(2022, 10, 12)
_TH16 = utc(2023, 12, 11)
_TH17 = utc(2024, 11, 25)

#: Troops in the order the API lists them (pets and siege machines included, like the API).
TROOPS: tuple[Unit, ...] = (
    _t("Barbarian", 1, 12, 16),
    _t("Archer", 2, 13),
    _t("Goblin", 2, 9, 15),
    _t("Giant", 2, 13),
    _t("Wall Breaker", 3, 13),
    _t("Balloon", 4, 12),
    _t("Wizard", 5, 13),
    _t("Healer", 6, 10),
    _t("Dragon", 7, 12),
    _t("P.E.K.K.A", 8, 12),
    _t("Minion", 7, 13),
    _t("Hog Rider", 7, 14),
    _t("Valkyrie", 8, 11),
    _t("Golem", 8, 14),
    _t("Witch", 9, 7),
    _t("Lava Hound", 9, 7),
    _t("Bowler", 10, 9),
    _t("Baby Dragon", 9, 11),
    _t("Miner", 10, 11),
    _super("Super Barbarian", 8),
    _super("Super Archer", 9),
    _super("Super Wall Breaker", 9),
    _super("Super Giant", 9),
    _bb("Raged Barbarian", 1),
    _bb("Sneaky Archer", 2),
    _bb("Beta Minion", 4),
    _bb("Boxer Giant", 3),
    _bb("Bomber", 5),
    _bb("Power P.E.K.K.A", 10),
    _bb("Cannon Cart", 7),
    _bb("Drop Ship", 9),
    Unit("Baby Dragon", "bb_troop", 6, 20),
    _bb("Night Witch", 8),
    _siege("Wall Wrecker", 12),
    _siege("Battle Blimp", 12),
    _t("Yeti", 12, 7),
    _super("Sneaky Goblin", 5),
    _super("Super Miner", 11),
    _super("Rocket Balloon", 8),
    _t("Ice Golem", 11, 9),
    _t("Electro Dragon", 11, 8),
    _siege("Stone Slammer", 12),
    _super("Inferno Dragon", 11),
    _super("Super Valkyrie", 11),
    _t("Dragon Rider", 13, 5),
    _super("Super Witch", 7),
    _bb("Hog Glider", 10),
    _siege("Siege Barracks", 13),
    _super("Ice Hound", 7),
    _super("Super Bowler", 9),
    _super("Super Dragon", 10),
    _t("Headhunter", 12, 3, 14),
    _super("Super Wizard", 9),
    _super("Super Minion", 10),
    _siege("Log Launcher", 13),
    _siege("Flame Flinger", 14),
    _siege("Battle Drill", 15, released=_TH16),
    _t("Electro Titan", 14, 4, released=_TH15),
    _t("Apprentice Warden", 13, 4, 16, released=_TH16),
    _super("Super Hog Rider", 11, released=utc(2023, 12, 11)),
    _t("Root Rider", 15, 3, released=_TH16),
    _t("Druid", 14, 5, released=utc(2024, 6, 10)),
    _super("Super Yeti", 7, released=utc(2024, 3, 25)),
    _bb("Electrofire Wizard", 10, released=_BB2),
    _pet("L.A.S.S.I", 14, 15),
    _pet("Mighty Yak", 14, 15),
    _pet("Electro Owl", 14, 15),
    _pet("Unicorn", 14, 15),
    _pet("Frosty", 15, 10, released=_TH15),
    _pet("Diggy", 15, 10, released=_TH15),
    _pet("Poison Lizard", 15, 10, released=_TH15),
    _pet("Phoenix", 15, 10, released=_TH15),
    _pet("Spirit Fox", 16, 10, released=_TH16),
    _pet("Angry Jelly", 16, 10, released=_TH16),
    _pet("Sneezy", 17, 10, released=_TH17),
)
SPELLS: tuple[Unit, ...] = (
    Unit("Lightning Spell", "spell", 5, 12),
    Unit("Healing Spell", "spell", 6, 11),
    Unit("Rage Spell", "spell", 7, 6, 12),
    Unit("Jump Spell", "spell", 9, 5, 15),
    Unit("Freeze Spell", "spell", 10, 7, 14),
    Unit("Poison Spell", "spell", 8, 11),
    Unit("Earthquake Spell", "spell", 8, 5, 12),
    Unit("Haste Spell", "spell", 9, 6, 14),
    Unit("Clone Spell", "spell", 10, 8),
    Unit("Skeleton Spell", "spell", 9, 8),
    Unit("Bat Spell", "spell", 10, 7, 16),
    Unit("Invisibility Spell", "spell", 11, 4, 14),
    Unit("Recall Spell", "spell", 13, 6),
    Unit("Overgrowth Spell", "spell", 12, 4, released=utc(2024, 3, 25)),
    Unit("Ice Block Spell", "spell", 15, 5, released=utc(2025, 3, 24)),
)
HEROES: tuple[Unit, ...] = (
    Unit("Barbarian King", "hero", 7, 100),
    Unit("Archer Queen", "hero", 8, 100),
    Unit("Grand Warden", "hero", 11, 75),
    Unit("Battle Machine", "bb_hero", 5, 35),
    Unit("Royal Champion", "hero", 13, 50),
    Unit("Battle Copter", "bb_hero", 8, 35, released=_BB2),
    Unit("Minion Prince", "hero", 9, 90, released=_TH17),
)


def _eq(name: str, hero: str, rarity: str = "common", released: datetime | None = None) -> Unit:
    unlock = HEROES_BY_NAME[hero].unlock
    max_level = 27 if rarity == "epic" else 18
    return Unit(
        name,
        "equipment",
        max(8, unlock),
        max_level,
        rarity=rarity,
        hero=hero,
        released=released or _TH16,
    )


HEROES_BY_NAME = {hero.name: hero for hero in HEROES}
EQUIPMENT: tuple[Unit, ...] = (
    _eq("Barbarian Puppet", "Barbarian King"),
    _eq("Rage Vial", "Barbarian King"),
    _eq("Archer Puppet", "Archer Queen"),
    _eq("Invisibility Vial", "Archer Queen"),
    _eq("Eternal Tome", "Grand Warden"),
    _eq("Life Gem", "Grand Warden"),
    _eq("Seeking Shield", "Royal Champion"),
    _eq("Royal Gem", "Royal Champion"),
    _eq("Earthquake Boots", "Barbarian King"),
    _eq("Giant Arrow", "Archer Queen"),
    _eq("Healer Puppet", "Archer Queen"),
    _eq("Rage Gem", "Grand Warden"),
    _eq("Healing Tome", "Grand Warden"),
    _eq("Vampstache", "Barbarian King"),
    _eq("Hog Rider Puppet", "Royal Champion"),
    _eq("Haste Vial", "Royal Champion"),
    _eq("Giant Gauntlet", "Barbarian King", "epic", utc(2024, 1, 15)),
    _eq("Frozen Arrow", "Archer Queen", "epic", utc(2024, 3, 11)),
    _eq("Fireball", "Grand Warden", "epic", utc(2024, 6, 3)),
    _eq("Rocket Spear", "Royal Champion", "epic", utc(2024, 7, 22)),
    _eq("Spiky Ball", "Barbarian King", "epic", utc(2024, 9, 2)),
    _eq("Magic Mirror", "Archer Queen", "epic", utc(2024, 10, 7)),
    _eq("Electro Boots", "Royal Champion", "epic", utc(2024, 12, 2)),
    _eq("Henchmen Puppet", "Minion Prince", released=_TH17),
    _eq("Dark Orb", "Minion Prince", released=_TH17),
    _eq("Lavaloon Puppet", "Grand Warden", "epic", utc(2025, 1, 13)),
    _eq("Metal Pants", "Minion Prince", released=utc(2025, 2, 3)),
    _eq("Noble Iron", "Minion Prince", released=utc(2025, 6, 2)),
    _eq("Dark Crown", "Minion Prince", "epic", utc(2025, 4, 7)),
    _eq("Action Figure", "Archer Queen", "epic", utc(2025, 8, 4)),
)
#: Super troops: the base troop whose level they follow.
SUPER_TROOP_BASE = {
    "Super Barbarian": "Barbarian",
    "Super Archer": "Archer",
    "Super Wall Breaker": "Wall Breaker",
    "Super Giant": "Giant",
    "Sneaky Goblin": "Goblin",
    "Super Miner": "Miner",
    "Rocket Balloon": "Balloon",
    "Inferno Dragon": "Baby Dragon",
    "Super Valkyrie": "Valkyrie",
    "Super Witch": "Witch",
    "Ice Hound": "Lava Hound",
    "Super Bowler": "Bowler",
    "Super Dragon": "Dragon",
    "Super Wizard": "Wizard",
    "Super Minion": "Minion",
    "Super Hog Rider": "Hog Rider",
    "Super Yeti": "Yeti",
}
ALL_UNITS: tuple[Unit, ...] = TROOPS + SPELLS + HEROES + EQUIPMENT


def unit_cap(name: str, hall: int, *, village: str = "home") -> int:
    """The cap of a unit at a town hall (builder hall for builder base units); 0 if locked."""
    for unit in ALL_UNITS:
        if unit.name == name and unit.village == village:
            return unit.cap(hall)
    raise KeyError(name)


# --- achievements ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Achievement:
    """``metric`` names the player quantity that drives ``value`` (see world/achievements.py)."""

    name: str
    targets: tuple[int, int, int]
    info: str
    completion: str | None
    metric: str
    village: str = "home"
    released: datetime | None = None


A = Achievement
ACHIEVEMENTS: tuple[Achievement, ...] = (
    A("Bigger Coffers", (2, 5, 10), "Upgrade a Gold Storage to level {target}",
      "Highest Gold Storage level: {value}", "storage"),
    A("Get those Goblins!", (10, 50, 150), "Win {target} Stars on the Campaign Map",
      "Stars in Campaign Map: {value}", "campaign"),
    A("Bigger & Better", (3, 5, 8), "Upgrade Town Hall to level {target}",
      "Current Town Hall level: {value}", "town_hall"),
    A("Nice and Tidy", (5, 50, 500), "Remove {target} obstacles (trees, rocks, bushes)",
      "Total obstacles removed: {value}", "c:obstacles"),
    A("Discover New Troops", (1, 1, 1), "Unlock Dragon in the Barracks", None, "flag:7"),
    A("Gold Grab", (20000, 1000000, 100000000), "Steal {target} Gold",
      "Total Gold looted: {value}", "c:gold"),
    A("Elixir Escapade", (20000, 1000000, 100000000), "Steal {target} elixir",
      "Total Elixir looted: {value}", "c:elixir"),
    A("Sweet Victory!", (75, 750, 1250),
      "Achieve a total of {target} trophies in Multiplayer battles",
      "Trophy record: {value}", "best_trophies"),
    A("Empire Builder", (2, 3, 4), "Upgrade Clan Castle to level {target}",
      "Current Clan Castle level: {value}", "clan_castle"),
    A("Wall Buster", (10, 100, 2000), "Destroy {target} Walls in Multiplayer battles",
      "Total Walls destroyed: {value}", "c:walls"),
    A("Humiliator", (10, 100, 2000), "Destroy {target} Town Halls in Multiplayer battles",
      "Total Town Halls destroyed: {value}", "c:town_halls"),
    A("Union Buster", (25, 250, 2500), "Destroy {target} Builder's Huts in Multiplayer battles",
      "Total Builder's Huts destroyed: {value}", "c:huts"),
    A("Conqueror", (25, 250, 5000), "Win {target} Multiplayer battles",
      "Total multiplayer battles won: {value}", "c:wins"),
    A("Unbreakable", (10, 250, 5000), "Successfully defend against {target} attacks",
      "Total defenses won: {value}", "c:defenses"),
    A("Friend in Need", (100, 5000, 25000),
      "Donate {target} capacity worth of reinforcements to Clanmates",
      "Total capacity donated: {value}", "lifetime_donations"),
    A("Mortar Mauler", (25, 500, 5000), "Destroy {target} Mortars in Multiplayer battles",
      "Total Mortars destroyed: {value}", "c:mortars"),
    A("Heroic Heist", (20000, 250000, 1000000), "Steal {target} Dark Elixir",
      "Total Dark Elixir looted: {value}", "c:dark"),
    A("League All-Star", (1, 10, 16), "Become a Champion!", None, "best_league"),
    A("X-Bow Exterminator", (1, 250, 2500), "Destroy {target} X-Bows in Multiplayer battles",
      "Total X-Bows destroyed: {value}", "c:xbows"),
    A("Firefighter", (10, 250, 5000), "Destroy {target} Inferno Towers in Multiplayer battles",
      "Total Inferno Towers destroyed: {value}", "c:infernos"),
    A("War Hero", (10, 150, 1000), "Score {target} Stars for your clan in Clan War battles",
      "Total Stars scored for clan in Clan War battles: {value}", "war_stars"),
    A("Clan War Wealth", (800000, 15000000, 100000000),
      "Collect {target} Gold from the Clan Castle",
      "Total Gold collected in Clan War bonuses: {value}", "c:war_gold"),
    A("Anti-Artillery", (20, 250, 2000),
      "Destroy {target} Eagle or Inferno Artilleries in Multiplayer battles",
      "Total Eagle or Inferno Artilleries destroyed: {value}", "c:eagles"),
    A("Sharing is caring", (100, 2000, 10000),
      "Donate {target} Spell storage capacity worth of Spells",
      "Total Spell capacity donated: {value}", "c:spells_donated"),
    A("Keep Your Account Safe!", (1, 1, 1),
      "Protect your Village by connecting to a social network", "Completed!", "zero"),
    A("Master Engineering", (3, 5, 8), "Upgrade Builder Hall to level {target}",
      "Current Builder Hall level: {value}", "builder_hall", "builderBase"),
    A("Next Generation Model", (1, 1, 1), "Unlock Power P.E.K.K.A in the Builder Barracks",
      None, "bh_flag:10", "builderBase"),
    A("Un-Build It", (5, 50, 2000), "Destroy {target} Builder Halls in Builder Battles",
      "Total Builder Halls destroyed: {value}", "c:builder_halls", "builderBase"),
    A("Champion Builder", (200, 1000, 3000),
      "Achieve a total of {target} trophies in Builder Battles",
      "Builder Trophy record: {value}", "best_bb_trophies", "builderBase"),
    A("High Gear", (1, 2, 3), "Gear Up {target} buildings using the Master Builder",
      "Total buildings geared up: {value}", "gear_up", "builderBase"),
    A("Hidden Treasures", (1, 1, 1), "Rebuild Battle Machine", None, "bh_flag:5",
      "builderBase"),
    A("Games Champion", (10000, 25000, 50000), "Earn {target} points in Clan Games",
      "Total Clan Games points: {value}", "c:clan_games"),
    A("Dragon Slayer", (1, 1, 1), "Slay the Giant Dragon on the Campaign Map", None, "flag:9"),
    A("War League Legend", (20, 100, 250),
      "Score {target} Stars for your clan in War League battles",
      "Total Stars scored for clan in War League battles: {value}", "c:cwl_stars"),
    A("Keep Your Account Safe!", (1, 1, 1),
      "Connect your account to Supercell ID for safe keeping.", "Completed!", "zero"),
    A("Well Seasoned", (5000, 15000, 50000), "Earn {target} points in Season Challenges",
      "Total Season Challenges points: {value}", "c:season_points"),
    A("Shattered and Scattered", (40, 400, 4000),
      "Destroy {target} Scattershots in Multiplayer battles",
      "Total Scattershots destroyed: {value}", "c:scattershots"),
    A("Not So Easy This Time", (10, 200, 2000),
      "Destroy {target} weaponized Town Halls in Multiplayer battles",
      "Weaponized Town Halls destroyed: {value}", "c:weapon_th"),
    A("Bust This!", (25, 250, 2500),
      "Destroy {target} weaponized Builder's Huts in Multiplayer battles",
      "Total weaponized Builder's Huts destroyed: {value}", "c:weapon_huts"),
    A("Superb Work", (20, 50, 100), "Boost a Super Troop {target} times",
      "Total times Super Troops boosted: {value}", "c:boosts"),
    A("Siege Sharer", (50, 250, 1000), "Donate {target} Siege Machines",
      "Total Siege Machines donated: {value}", "c:sieges"),
    A("Aggressive Capitalism", (20000, 100000, 1000000),
      "Loot {target} Capital Gold during Raid attacks",
      "Total Capital Gold looted: {value}", "capital_looted", "clanCapital"),
    A("Most Valuable Clanmate", (40000, 200000, 2000000),
      "Contribute {target} Capital Gold to upgrades in the Clan Capital",
      "Total Capital Gold contributed: {value}", "capital_contributions", "clanCapital"),
    A("Counterspell", (40, 400, 4000), "Destroy {target} Spell Towers in Multiplayer Battles",
      "Total Spell Towers Destroyed: {value}", "c:spell_towers", released=utc(2022, 10, 12)),
    A("Monolith Masher", (20, 200, 2000), "Destroy {target} Monoliths in Multiplayer Battles",
      "Total Monoliths Destroyed: {value}", "c:monoliths", released=utc(2022, 10, 12)),
    A("Ungrateful Child", (1, 1, 1), "Defeat M.O.M.M.A on the Campaign Map", None,
      "flag:10", released=utc(2022, 10, 12)),
    A("Supercharger", (5, 25, 100), "Supercharge buildings {target} times",
      "Total Supercharges: {value}", "c:supercharges", released=utc(2024, 3, 25)),
    A("Multi-Archer Tower Terminator", (50, 500, 5000),
      "Destroy {target} Multi-Archer Towers in Multiplayer Battles",
      "Total Multi-Archer Towers Destroyed: {value}", "c:multi_archer", released=_TH16),
    A("Ricochet Cannon Crusher", (50, 500, 5000),
      "Destroy {target} Ricochet Cannons in Multiplayer Battles",
      "Total Ricochet Cannons Destroyed: {value}", "c:ricochet", released=_TH16),
    A("Firespitter Finisher", (40, 400, 4000),
      "Destroy {target} Firespitters in Multiplayer Battles",
      "Total Firespitters Destroyed: {value}", "c:firespitter", released=_TH17),
    A("Multi-Gear Tower Trampler", (20, 200, 2000),
      "Destroy {target} Multi-Gear Towers in Multiplayer Battles",
      "Total Multi-Gear Towers Destroyed: {value}", "c:multi_gear", released=_TH17),
    A("Crafting Connoisseur", (5, 50, 500), "Upgrade Crafted Defenses {target} times",
      "Total Crafted Defense upgrades: {value}", "c:crafting", released=utc(2025, 3, 24)),
    A("Crafter’s Nightmare", (20, 200, 2000),
      "Destroy {target} Crafted Defenses in Multiplayer Battles",
      "Total Crafted Defenses Destroyed: {value}", "c:crafted", released=utc(2025, 3, 24)),
    A("League Master", (32, 33, 34), "Reach League Electro {target}", None, "best_tier",
      released=utc(2025, 10, 6, 5)),
)  # fmt: skip
del A

#: Counter achievements: mean amount per active day for an average player.
COUNTER_RATES: dict[str, float] = {
    "obstacles": 1.5,
    "gold": 320000.0,
    "elixir": 330000.0,
    "walls": 9.0,
    "town_halls": 0.6,
    "huts": 2.2,
    "wins": 0.8,
    "defenses": 0.35,
    "mortars": 1.8,
    "dark": 2600.0,
    "xbows": 0.9,
    "infernos": 0.5,
    "war_gold": 100000.0,
    "eagles": 0.2,
    "spells_donated": 0.3,
    "builder_halls": 0.3,
    "clan_games": 14.0,
    "cwl_stars": 0.04,
    "season_points": 14.0,
    "scattershots": 0.15,
    "weapon_th": 0.25,
    "weapon_huts": 0.2,
    "boosts": 0.02,
    "sieges": 0.004,
    "spell_towers": 0.04,
    "monoliths": 0.02,
    "supercharges": 0.01,
    "multi_archer": 0.02,
    "ricochet": 0.02,
    "firespitter": 0.01,
    "multi_gear": 0.005,
    "crafting": 0.01,
    "crafted": 0.02,
}

# --- names -----------------------------------------------------------------------------------
NAME_SYLLABLES = (
    "ka", "ro", "mi", "zen", "dar", "ul", "tor", "vex", "lin", "sha", "bo", "rix", "na", "gal",
    "thu", "mor", "ky", "an", "fel", "qu", "ash", "el", "dro", "vi", "sto", "ne", "ja", "ric",
)  # fmt: skip
NAME_WORDS = (
    "Shadow", "King", "Ninja", "Dragon", "Storm", "Wolf", "Knight", "Hog", "Titan", "Goblin",
    "Archer", "Valk", "Miner", "Pekka", "Wizard", "Golem", "Yeti", "Phoenix", "Raven", "Viking",
)  # fmt: skip
NAME_DECORATIONS = ("", "", "", "", "", "⭐", "™", "★", "⚔️", "ツ", "🔥", "彡")
CLAN_WORDS_A = (
    "Iron", "Royal", "Dark", "Golden", "Silent", "Wild", "Frozen", "Crimson", "Eternal", "Lucky",
    "Brave", "Mystic", "Northern", "Savage", "Electric", "Hidden", "Fallen", "Rising",
)  # fmt: skip
CLAN_WORDS_B = (
    "Legion", "Warriors", "Raiders", "Knights", "Dragons", "Hogs", "Titans", "Clan", "Army",
    "Family", "Brotherhood", "Empire", "Alliance", "Order", "Pirates", "Wolves", "Goblins",
)  # fmt: skip
CLAN_DESCRIPTIONS = (
    "Active war clan. Donate, attack twice, have fun. Discord in bio.",
    "Come for the Capital, stay for the camaraderie. Clan games every month.",
    "Chill family clan, all town halls welcome. Be active and respectful.",
    "CWL every season, wars back to back. Use both attacks!",
    "Farming and friendly wars. Elders after 2 weeks of donations.",
    "",
    "Competitive but fair. Max clan games, full raid weekends, no rushers.",
    "Since 2015. Adults only, English chat. Hit your mirror.",
)
