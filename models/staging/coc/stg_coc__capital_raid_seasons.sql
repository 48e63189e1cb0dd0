{#-
    One row per raid weekend per capital raid seasons fetch. The API gives a
    season no id: it is keyed by the clan and its start time. Items do not
    repeat the clan tag, so it comes from the request.
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
        season_item.season,
        season_item.list_position

    from season_fetches
    cross join lateral jsonb_array_elements(
        {{ coc_json_array("season_fetches.body -> 'items'") }}
    ) with ordinality as season_item (season, list_position)

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

        -- properties
        season ->> 'state' as state,

        -- numbers
        {{ coc_bigint("season -> 'capitalTotalLoot'") }}
            as capital_total_loot,
        {{ coc_int("season -> 'raidsCompleted'") }} as raids_completed,
        {{ coc_int("season -> 'totalAttacks'") }} as total_attacks,
        {{ coc_int("season -> 'enemyDistrictsDestroyed'") }}
            as enemy_districts_destroyed,
        {{ coc_int("season -> 'offensiveReward'") }} as offensive_reward,
        {{ coc_int("season -> 'defensiveReward'") }} as defensive_reward,
        jsonb_array_length({{ coc_json_array("season -> 'members'") }})
            as members_count,
        jsonb_array_length({{ coc_json_array("season -> 'attackLog'") }})
            as raids_count,
        jsonb_array_length({{ coc_json_array("season -> 'defenseLog'") }})
            as defenses_count,
        list_position::integer as list_position,

        -- timestamps
        {{ coc_timestamp("season ->> 'endTime'") }} as season_end_at,
        fetched_at,
        snapshot_at

    from seasons

)

select * from renamed
