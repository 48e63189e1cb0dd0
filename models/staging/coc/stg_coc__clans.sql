with

payload_fetches as (

    select * from {{ ref('base_coc__payload_fetches') }}

),

clan_fetches as (

    select * from payload_fetches
    where endpoint = 'clan'

),

renamed as (

    select
        -- lineage
        fetch_id,
        run_id,
        payload_hash,

        -- ids
        body ->> 'tag' as clan_tag,

        -- properties
        body ->> 'name' as clan_name,
        body ->> 'type' as clan_type,
        body ->> 'description' as description,
        {{ coc_bigint("body -> 'location' -> 'id'") }} as location_id,
        body -> 'location' ->> 'name' as location_name,
        body -> 'location' ->> 'countryCode' as location_country_code,
        {{ coc_bool("body -> 'location' -> 'isCountry'") }}
            as is_location_country,
        {{ coc_bigint("body -> 'chatLanguage' -> 'id'") }}
            as chat_language_id,
        body -> 'chatLanguage' ->> 'name' as chat_language_name,
        body -> 'chatLanguage' ->> 'languageCode' as chat_language_code,
        body ->> 'warFrequency' as war_frequency,
        {{ coc_bool("body -> 'isWarLogPublic'") }} as is_war_log_public,
        {{ coc_bool("body -> 'isFamilyFriendly'") }} as is_family_friendly,
        {{ coc_bigint("body -> 'warLeague' -> 'id'") }} as war_league_id,
        body -> 'warLeague' ->> 'name' as war_league_name,
        {{ coc_bigint("body -> 'capitalLeague' -> 'id'") }}
            as capital_league_id,
        body -> 'capitalLeague' ->> 'name' as capital_league_name,
        body -> 'labels' as labels,
        body -> 'badgeUrls' as badge_urls,
        body -> 'clanCapital' -> 'districts' as capital_districts,

        -- numbers
        {{ coc_int("body -> 'clanLevel'") }} as clan_level,
        {{ coc_int("body -> 'clanPoints'") }} as clan_points,
        {{ coc_int(
            "coalesce(body -> 'clanBuilderBasePoints', "
            ~ "body -> 'clanVersusPoints')"
        ) }} as clan_builder_base_points,
        {{ coc_int("body -> 'clanCapitalPoints'") }} as clan_capital_points,
        {{ coc_int("body -> 'clanCapital' -> 'capitalHallLevel'") }}
            as capital_hall_level,
        {{ coc_int("body -> 'requiredTrophies'") }} as required_trophies,
        {{ coc_int(
            "coalesce(body -> 'requiredBuilderBaseTrophies', "
            ~ "body -> 'requiredVersusTrophies')"
        ) }} as required_builder_base_trophies,
        {{ coc_int("body -> 'requiredTownhallLevel'") }}
            as required_town_hall_level,
        {{ coc_int("body -> 'warWinStreak'") }} as war_win_streak,
        {{ coc_int("body -> 'warWins'") }} as war_wins,
        {{ coc_int("body -> 'warTies'") }} as war_ties,
        {{ coc_int("body -> 'warLosses'") }} as war_losses,
        {{ coc_int("body -> 'members'") }} as members_count,
        jsonb_array_length({{ coc_json_array("body -> 'memberList'") }})
            as member_list_count,

        -- timestamps
        fetched_at,
        snapshot_at

    from clan_fetches

)

select * from renamed
