{#-
    One row per member per raid weekend per fetch: attacks used, the attack
    limit (5) plus the bonus earned (1 for finishing a district), and the
    capital gold looted.
-#}

with

payload_fetches as (

    select * from {{ ref('base_coc__payload_fetches') }}

),

season_fetches as (

    select * from payload_fetches
    where endpoint = 'capitalraidseasons'

),

seasons as (

    select
        season_fetches.*,
        season_item.season

    from season_fetches
    cross join lateral jsonb_array_elements(
        {{ coc_json_array("season_fetches.body -> 'items'") }}
    ) as season_item (season)

),

members as (

    select
        seasons.*,
        member_item.member

    from seasons
    cross join lateral jsonb_array_elements(
        {{ coc_json_array("seasons.season -> 'members'") }}
    ) as member_item (member)

),

renamed as (

    select
        -- lineage
        fetch_id,
        run_id,
        payload_hash,

        -- ids
        coalesce(resource_tag, fetch_clan_tag) as clan_tag,
        {{ coc_timestamp("season ->> 'startTime'") }} as season_start_at,
        member ->> 'tag' as player_tag,

        -- properties
        member ->> 'name' as player_name,

        -- numbers
        {{ coc_int("member -> 'attacks'") }} as attacks,
        {{ coc_int("member -> 'attackLimit'") }} as attack_limit,
        {{ coc_int("member -> 'bonusAttackLimit'") }} as bonus_attack_limit,
        {{ coc_bigint("member -> 'capitalResourcesLooted'") }}
            as capital_resources_looted,

        -- timestamps
        fetched_at,
        snapshot_at

    from members

)

select * from renamed
