{#-
    One row per Clan War League group fetch (GET /clans/{tag}/currentwar/
    leaguegroup). The group's clans and its rounds' war tags are rows in
    stg_coc__cwl_group_clans and stg_coc__cwl_group_wars.
-#}

with

payload_fetches as (

    select * from {{ ref('base_coc__payload_fetches') }}

),

group_fetches as (

    select * from payload_fetches
    where endpoint = 'leaguegroup'

),

renamed as (

    select
        -- lineage
        fetch_id,
        run_id,
        payload_hash,

        -- ids
        coalesce(resource_tag, fetch_clan_tag) as clan_tag,
        body ->> 'season' as season,

        -- properties
        body ->> 'state' as state,

        -- numbers
        jsonb_array_length({{ coc_json_array("body -> 'clans'") }})
            as clans_count,
        jsonb_array_length({{ coc_json_array("body -> 'rounds'") }})
            as rounds_count,

        -- timestamps
        fetched_at,
        snapshot_at

    from group_fetches

)

select * from renamed
