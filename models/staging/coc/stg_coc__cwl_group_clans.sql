{#- One row per clan of a Clan War League group, per group fetch. -#}

with

payload_fetches as (

    select * from {{ ref('base_coc__payload_fetches') }}

),

group_fetches as (

    select * from payload_fetches
    where endpoint = 'leaguegroup'

),

group_clans as (

    select
        group_fetches.*,
        clan_item.group_clan,
        clan_item.list_position

    from group_fetches
    cross join lateral jsonb_array_elements(
        {{ coc_json_array("group_fetches.body -> 'clans'") }}
    ) with ordinality as clan_item (group_clan, list_position)

),

renamed as (

    select
        -- lineage
        fetch_id,
        run_id,
        payload_hash,

        -- ids
        coalesce(resource_tag, fetch_clan_tag) as group_clan_tag,
        group_clan ->> 'tag' as clan_tag,
        body ->> 'season' as season,

        -- properties
        group_clan ->> 'name' as clan_name,
        group_clan -> 'members' as members,

        -- numbers
        {{ coc_int("group_clan -> 'clanLevel'") }} as clan_level,
        jsonb_array_length({{ coc_json_array("group_clan -> 'members'") }})
            as members_count,
        list_position::integer as list_position,

        -- timestamps
        fetched_at,
        snapshot_at

    from group_clans

)

select * from renamed
