{#- One row per legacy trophy league per GET /leagues fetch (ids 29000000+). -#}

with

payload_fetches as (

    select * from {{ ref('base_coc__payload_fetches') }}

),

league_fetches as (

    select * from payload_fetches
    where endpoint = 'leagues'

),

leagues as (

    select
        league_fetches.*,
        league_item.league,
        league_item.list_position

    from league_fetches
    cross join lateral jsonb_array_elements(
        {{ coc_json_array("league_fetches.body -> 'items'") }}
    ) with ordinality as league_item (league, list_position)

),

renamed as (

    select
        -- lineage
        fetch_id,
        run_id,
        payload_hash,

        -- ids
        {{ coc_bigint("league -> 'id'") }} as league_id,

        -- properties
        league ->> 'name' as league_name,
        league -> 'iconUrls' as icon_urls,

        -- numbers
        list_position::integer as list_position,

        -- timestamps
        fetched_at,
        snapshot_at

    from leagues

)

select * from renamed
