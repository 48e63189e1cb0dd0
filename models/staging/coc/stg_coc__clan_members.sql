{#-
    One row per member per roster fetch. Rosters come from two endpoints with
    the same member shape: GET /clans/{tag}/members (`items`) and
    GET /clans/{tag} (`memberList`); source_endpoint says which.
-#}

with

payload_fetches as (

    select * from {{ ref('base_coc__payload_fetches') }}

),

roster_fetches as (

    select
        fetch_id,
        run_id,
        payload_hash,
        endpoint as source_endpoint,
        -- the members endpoint does not repeat the clan tag: use the request's
        case
            when endpoint = 'clan'
                then coalesce(body ->> 'tag', resource_tag, fetch_clan_tag)
            else coalesce(resource_tag, fetch_clan_tag)
        end as clan_tag,
        case
            when endpoint = 'clan' then body -> 'memberList'
            else body -> 'items'
        end as member_list,
        fetched_at,
        snapshot_at

    from payload_fetches
    where endpoint in ('clan', 'clan_members')

),

members as (

    select
        roster_fetches.*,
        member_item.member,
        member_item.list_position

    from roster_fetches
    cross join lateral jsonb_array_elements(
        {{ coc_json_array('roster_fetches.member_list') }}
    ) with ordinality as member_item (member, list_position)

),

renamed as (

    select
        -- lineage
        fetch_id,
        run_id,
        payload_hash,

        -- ids
        member ->> 'tag' as player_tag,
        clan_tag,
        source_endpoint,

        -- properties
        member ->> 'name' as player_name,
        member ->> 'role' as role,
        {{ coc_bigint("member -> 'league' -> 'id'") }} as legacy_league_id,
        member -> 'league' ->> 'name' as legacy_league_name,
        {{ coc_bigint("member -> 'leagueTier' -> 'id'") }} as league_tier_id,
        member -> 'leagueTier' ->> 'name' as league_tier_name,
        {{ coc_bigint("member -> 'builderBaseLeague' -> 'id'") }}
            as builder_base_league_id,
        member -> 'builderBaseLeague' ->> 'name' as builder_base_league_name,
        member -> 'playerHouse' as player_house,

        -- numbers
        {{ coc_int("member -> 'townHallLevel'") }} as town_hall_level,
        {{ coc_int("member -> 'expLevel'") }} as exp_level,
        {{ coc_int("member -> 'trophies'") }} as trophies,
        {{ coc_int(
            "coalesce(member -> 'builderBaseTrophies', "
            ~ "member -> 'versusTrophies')"
        ) }} as builder_base_trophies,
        {{ coc_int("member -> 'clanRank'") }} as clan_rank,
        {{ coc_int("member -> 'previousClanRank'") }} as previous_clan_rank,
        {{ coc_int("member -> 'donations'") }} as donations,
        {{ coc_int("member -> 'donationsReceived'") }} as donations_received,
        list_position::integer as list_position,

        -- timestamps
        fetched_at,
        snapshot_at

    from members

)

select * from renamed
