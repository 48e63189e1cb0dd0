{#-
    One row per ranked league tier per GET /leaguetiers fetch (ids 105000000
    Unranked, 105000001 Skeleton League 1 ... 105000034 Legend League; the
    top may grow).
-#}

with

payload_fetches as (

    select * from {{ ref('base_coc__payload_fetches') }}

),

tier_fetches as (

    select * from payload_fetches
    where endpoint = 'leaguetiers'

),

tiers as (

    select
        tier_fetches.*,
        tier_item.tier,
        tier_item.list_position

    from tier_fetches
    cross join lateral jsonb_array_elements(
        {{ coc_json_array("tier_fetches.body -> 'items'") }}
    ) with ordinality as tier_item (tier, list_position)

),

renamed as (

    select
        -- lineage
        fetch_id,
        run_id,
        payload_hash,

        -- ids
        {{ coc_bigint("tier -> 'id'") }} as league_tier_id,

        -- properties
        tier ->> 'name' as league_tier_name,
        tier -> 'iconUrls' as icon_urls,

        -- numbers
        list_position::integer as list_position,

        -- timestamps
        fetched_at,
        snapshot_at

    from tiers

)

select * from renamed
