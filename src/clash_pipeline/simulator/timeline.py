"""The game calendar and the API's eras, as pure functions of UTC time.

Every date the simulated world depends on lives here, so a test (or a reader)
can see in one place when a field appears or disappears. Dates marked
"approximate" are not documented by Supercell; they only need to put each shape
change in the right period.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta
from functools import lru_cache

DAY = timedelta(days=1)
WEEK = timedelta(days=7)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


# --- eras -----------------------------------------------------------------------------------
#: The October 2025 "Ranked" update: leagueTier appears, trophies change meaning,
#: legacy ``league`` disappears from /players (DOMAIN.md, "The 2025 split").
SPLIT_INSTANT = utc(2025, 10, 6, 5)
#: First ranked tournament week after the split (a Tuesday 05:00 UTC).
FIRST_TOURNAMENT_START = utc(2025, 10, 7, 5)
#: Member lists kept a frozen legacy ``league`` after the split, then "Unranked" for everyone.
LEGACY_LEAGUE_UNRANKED_FROM = utc(2025, 11, 1)
#: Optional new player fields (currentLeagueGroupTag, ...) are only seen in 2026 data.
LEAGUE_GROUP_FIELDS_FROM = utc(2026, 1, 1)
#: Builder Base 2.0: ``versus*`` fields until 2023-06-01, ``builderBase*`` from 2023-05-01.
#: Both were sent during May 2023 (the coc.py sample of that time carries both names).
BUILDER_BASE_FIELDS_FROM = utc(2023, 5, 1)
VERSUS_FIELDS_UNTIL = utc(2023, 6, 1)
#: Builder Base 2.0 release (Battle Copter, builder hall 10, builderBaseLeague).
BUILDER_BASE_2_RELEASE = utc(2023, 6, 12)
#: Hero equipment (``heroEquipment``, ``heroes[].equipment``), late 2023.
HERO_EQUIPMENT_FROM = utc(2023, 12, 11)
#: Member ``townHallLevel`` in member lists, from 2024.
MEMBER_TOWNHALL_FROM = utc(2024, 1, 1)
#: War ``battleModifier`` (none/hardMode), from 2024.
BATTLE_MODIFIER_FROM = utc(2024, 1, 1)
#: War ``attacksPerMember`` and attack ``duration``, from 2022.
ATTACKS_PER_MEMBER_FROM = utc(2022, 1, 1)
#: Clan capital, capital leagues and raid weekends (approximate).
CLAN_CAPITAL_FROM = utc(2022, 5, 2)
#: ``playerHouse`` on players and members (approximate).
PLAYER_HOUSE_FROM = utc(2023, 10, 16)

#: Town hall releases (approximate dates): the highest town hall available at a time.
TOWN_HALL_RELEASES: tuple[tuple[int, datetime], ...] = (
    (13, utc(2019, 12, 9)),
    (14, utc(2021, 4, 13)),
    (15, utc(2022, 10, 12)),
    (16, utc(2023, 12, 11)),
    (17, utc(2024, 11, 25)),
    (18, utc(2025, 12, 1)),
)
MIN_TOWN_HALL = 3


def max_town_hall(t: datetime) -> int:
    best = 12
    for level, released in TOWN_HALL_RELEASES:
        if t >= released:
            best = level
    return best


def max_builder_hall(t: datetime) -> int:
    return 10 if t >= BUILDER_BASE_2_RELEASE else 9


# --- formatting -----------------------------------------------------------------------------
def api_time(t: datetime) -> str:
    """The API's time format, ``YYYYMMDDTHHMMSS.000Z``."""
    return t.astimezone(UTC).strftime("%Y%m%dT%H%M%S.000Z")


def from_epoch(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


# --- seasons (donation counters) --------------------------------------------------------------
@lru_cache(maxsize=512)
def season_end_of_month(year: int, month: int) -> datetime:
    """The last Monday of the month at 05:00 UTC: donation counters reset then."""
    last_day = calendar.monthrange(year, month)[1]
    day = last_day - (datetime(year, month, last_day).weekday() - 0) % 7
    return utc(year, month, day, 5)


def _next_month(year: int, month: int) -> tuple[int, int]:
    return (year + 1, 1) if month == 12 else (year, month + 1)


def _prev_month(year: int, month: int) -> tuple[int, int]:
    return (year - 1, 12) if month == 1 else (year, month - 1)


def season_bounds(t: datetime) -> tuple[datetime, datetime, str]:
    """(start, end, "YYYY-MM") of the season containing ``t``; start inclusive, end exclusive.

    A season is named after the month in which it ends.
    """
    year, month = t.year, t.month
    end = season_end_of_month(year, month)
    if t >= end:
        year, month = _next_month(year, month)
        end = season_end_of_month(year, month)
    start = season_end_of_month(*_prev_month(year, month))
    return start, end, f"{year:04d}-{month:02d}"


# --- ranked tournament weeks (after the split) -----------------------------------------------
def tournament_week(t: datetime) -> int:
    """Index of the ranked tournament week containing ``t`` (0 = the first one); -1 before it."""
    if t < FIRST_TOURNAMENT_START:
        return -1
    return int((t - FIRST_TOURNAMENT_START) / WEEK)


# --- raid weekends ---------------------------------------------------------------------------
#: A raid weekend start (Friday 07:00 UTC) that all others are counted from.
RAID_ANCHOR = utc(2025, 10, 3, 7)
RAID_LENGTH = timedelta(days=3)


def raid_weekend_index(t: datetime) -> int:
    """Index of the last raid weekend that started at or before ``t``."""
    return int((t - RAID_ANCHOR) // WEEK)


def raid_weekend_start(index: int) -> datetime:
    return RAID_ANCHOR + index * WEEK


# --- clan war leagues ------------------------------------------------------------------------
CWL_ROUNDS = 7
CWL_GROUP_SIZE = 8


def cwl_start(year: int, month: int) -> datetime:
    """Round 1 preparation begins on the 1st at 08:00 UTC."""
    return utc(year, month, 1, 8)


def cwl_window(t: datetime) -> tuple[datetime, str] | None:
    """(start, season) while the month's league runs (1st 08:00 → 11th 08:00), else None."""
    start = cwl_start(t.year, t.month)
    if start <= t < start + 10 * DAY:
        return start, f"{t.year:04d}-{t.month:02d}"
    return None


def cwl_season_index(year: int, month: int) -> int:
    """Months since January 2016 (fits the war-tag codec)."""
    return (year - 2016) * 12 + (month - 1)


def cwl_season_from_index(index: int) -> tuple[int, int]:
    return 2016 + index // 12, index % 12 + 1
