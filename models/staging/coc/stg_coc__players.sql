{#-
    One row per player fetch: every scalar the API sends across eras. The
    builder base was the "versus" base until 2023: versus* fields fill the
    builder_base_* columns when the builderBase* ones are absent. Units and
    achievements are rows in stg_coc__player_units / _player_achievements.
-#}

with

payload_fetches as (

    select * from {{ ref('base_coc__payload_fetches') }}

),

player_fetches as (

    select * from payload_fetches
    where endpoint = 'player'

),

renamed as (

    select
        -- lineage
        fetch_id,
        run_id,
        payload_hash,

        -- ids
        body ->> 'tag' as player_tag,
        body -> 'clan' ->> 'tag' as clan_tag,

        -- properties
        body ->> 'name' as player_name,
        body -> 'clan' ->> 'name' as clan_name,
        body ->> 'role' as role,
        body ->> 'warPreference' as war_preference,
        {{ coc_bigint("body -> 'league' -> 'id'") }} as legacy_league_id,
        body -> 'league' ->> 'name' as legacy_league_name,
        {{ coc_bigint("body -> 'leagueTier' -> 'id'") }} as league_tier_id,
        body -> 'leagueTier' ->> 'name' as league_tier_name,
        {{ coc_bigint(
            "coalesce(body -> 'builderBaseLeague', body -> 'versusLeague')"
            ~ " -> 'id'"
        ) }} as builder_base_league_id,
        coalesce(body -> 'builderBaseLeague', body -> 'versusLeague')
        ->> 'name' as builder_base_league_name,
        body ->> 'currentLeagueGroupTag' as current_league_group_tag,
        {{ coc_bigint("body -> 'currentLeagueSeasonId'") }}
            as current_league_season_id,
        body ->> 'previousLeagueGroupTag' as previous_league_group_tag,
        {{ coc_bigint("body -> 'previousLeagueSeasonId'") }}
            as previous_league_season_id,
        body -> 'legendStatistics' as legend_statistics,
        body -> 'labels' as labels,
        body -> 'playerHouse' as player_house,

        -- numbers
        {{ coc_int("body -> 'townHallLevel'") }} as town_hall_level,
        {{ coc_int("body -> 'townHallWeaponLevel'") }}
            as town_hall_weapon_level,
        {{ coc_int("body -> 'expLevel'") }} as exp_level,
        {{ coc_int("body -> 'trophies'") }} as trophies,
        {{ coc_int("body -> 'bestTrophies'") }} as best_trophies,
        {{ coc_int("body -> 'warStars'") }} as war_stars,
        {{ coc_int("body -> 'attackWins'") }} as attack_wins,
        {{ coc_int("body -> 'defenseWins'") }} as defense_wins,
        {{ coc_int("body -> 'builderHallLevel'") }} as builder_hall_level,
        {{ coc_int(
            "coalesce(body -> 'builderBaseTrophies', "
            ~ "body -> 'versusTrophies')"
        ) }} as builder_base_trophies,
        {{ coc_int(
            "coalesce(body -> 'bestBuilderBaseTrophies', "
            ~ "body -> 'bestVersusTrophies')"
        ) }} as best_builder_base_trophies,
        {{ coc_int("body -> 'versusBattleWins'") }} as versus_battle_wins,
        {{ coc_int("body -> 'clan' -> 'clanLevel'") }} as clan_level,
        {{ coc_int("body -> 'donations'") }} as donations,
        {{ coc_int("body -> 'donationsReceived'") }} as donations_received,
        {{ coc_bigint("body -> 'clanCapitalContributions'") }}
            as clan_capital_contributions,

        -- timestamps
        fetched_at,
        snapshot_at

    from player_fetches

)

select * from renamed
