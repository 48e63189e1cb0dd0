{#-
    One row per war per fetch, from three endpoints:
    - currentwar: the clan's current war, seen from the requesting clan
      (`clan` is always that clan); state notInWar gives a row without tags;
    - cwl_war: one Clan War League war by war tag; its sides are in no
      particular order (fetch_clan_tag says which clan's run asked);
    - warlog: ended wars (`items`), with result; entries without an opponent
      tag are CWL season summaries, not wars (is_cwl_season_summary).
-#}

with

-- referenced twice: `not materialized` lets a filter on the view (run_id,
-- snapshot_at) reach raw in both branches instead of reading all history
payload_fetches as not materialized (

    select * from {{ ref('base_coc__payload_fetches') }}

),

single_wars as (

    select
        payload_fetches.*,
        payload_fetches.body as war,
        1::bigint as list_position

    from payload_fetches
    where payload_fetches.endpoint in ('currentwar', 'cwl_war')

),

war_log_wars as (

    select
        payload_fetches.*,
        war_item.war,
        war_item.list_position

    from payload_fetches
    cross join
        lateral jsonb_array_elements(
            {{ coc_json_array("payload_fetches.body -> 'items'") }}
        ) with ordinality as war_item (war, list_position)
    where payload_fetches.endpoint = 'warlog'

),

wars as (

    select * from single_wars
    union all
    select * from war_log_wars

),

renamed as (

    select
        -- lineage
        fetch_id,
        run_id,
        payload_hash,

        -- ids
        endpoint as source_endpoint,
        list_position::integer as list_position,
        fetch_clan_tag,
        case when endpoint = 'cwl_war' then resource_tag end as war_tag,
        -- currentwar and the war log are seen from the requesting clan, also
        -- when the body names no clan (notInWar)
        coalesce(
            war -> 'clan' ->> 'tag',
            case when endpoint in ('currentwar', 'warlog') then resource_tag end
        ) as clan_tag,
        war -> 'opponent' ->> 'tag' as opponent_tag,

        -- properties
        case
            when endpoint = 'cwl_war' then 'cwl'
            when endpoint = 'warlog' and war -> 'opponent' ->> 'tag' is null
                then 'cwl'
            else 'regular'
        end as war_type,
        coalesce(
            endpoint = 'warlog' and war -> 'opponent' ->> 'tag' is null,
            false
        ) as is_cwl_season_summary,
        war ->> 'state' as state,
        war ->> 'result' as result,
        war ->> 'battleModifier' as battle_modifier,
        war -> 'clan' ->> 'name' as clan_name,
        war -> 'opponent' ->> 'name' as opponent_name,

        -- numbers
        {{ coc_int("war -> 'teamSize'") }} as team_size,
        {{ coc_int("war -> 'attacksPerMember'") }} as attacks_per_member,
        {{ coc_int("war -> 'clan' -> 'clanLevel'") }} as clan_level,
        {{ coc_int("war -> 'clan' -> 'attacks'") }} as clan_attacks,
        {{ coc_int("war -> 'clan' -> 'stars'") }} as clan_stars,
        {{ coc_numeric("war -> 'clan' -> 'destructionPercentage'") }}
            as clan_destruction_pct,
        {{ coc_int("war -> 'clan' -> 'expEarned'") }} as clan_exp_earned,
        {{ coc_int("war -> 'opponent' -> 'clanLevel'") }} as opponent_level,
        {{ coc_int("war -> 'opponent' -> 'attacks'") }} as opponent_attacks,
        {{ coc_int("war -> 'opponent' -> 'stars'") }} as opponent_stars,
        {{ coc_numeric("war -> 'opponent' -> 'destructionPercentage'") }}
            as opponent_destruction_pct,

        -- timestamps
        {{ coc_timestamp("war ->> 'preparationStartTime'") }}
            as preparation_start_at,
        {{ coc_timestamp("war ->> 'startTime'") }} as start_at,
        {{ coc_timestamp("war ->> 'endTime'") }} as end_at,
        {{ coc_timestamp("war ->> 'warStartTime'") }} as war_start_at,
        fetched_at,
        snapshot_at

    from wars

)

select * from renamed
