with

payload_fetches as (

    select * from {{ ref('base_coc__payload_fetches') }}

),

player_fetches as (

    select * from payload_fetches
    where endpoint = 'player'

),

achievements as (

    select
        player_fetches.*,
        achievement_item.achievement,
        achievement_item.list_position

    from player_fetches
    cross join lateral jsonb_array_elements(
        {{ coc_json_array("player_fetches.body -> 'achievements'") }}
    ) with ordinality as achievement_item (achievement, list_position)

),

renamed as (

    select
        -- lineage
        fetch_id,
        run_id,
        payload_hash,

        -- ids
        body ->> 'tag' as player_tag,
        achievement ->> 'name' as achievement_name,
        achievement ->> 'village' as village,

        -- properties
        achievement ->> 'info' as info,
        achievement ->> 'completionInfo' as completion_info,

        -- numbers
        {{ coc_int("achievement -> 'stars'") }} as stars,
        {{ coc_bigint("achievement -> 'value'") }} as value,
        {{ coc_bigint("achievement -> 'target'") }} as target,
        list_position::integer as list_position,

        -- timestamps
        fetched_at,
        snapshot_at

    from achievements

)

select * from renamed
