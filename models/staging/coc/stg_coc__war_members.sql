{#-
    One row per war member (both sides) per war fetch (currentwar, cwl_war;
    the war log has no members). War members spell it `townhallLevel`.
-#}

with

payload_fetches as (

    select * from {{ ref('base_coc__payload_fetches') }}

),

war_fetches as (

    select * from payload_fetches
    where endpoint in ('currentwar', 'cwl_war')

),

war_sides as (

    select
        war_fetches.*,
        war_side.side,
        war_side.war_clan

    from war_fetches
    cross join lateral (
        values
        ('clan', war_fetches.body -> 'clan'),
        ('opponent', war_fetches.body -> 'opponent')
    ) as war_side (side, war_clan)

),

members as (

    select
        war_sides.*,
        member_item.member

    from war_sides
    cross join lateral jsonb_array_elements(
        {{ coc_json_array("war_sides.war_clan -> 'members'") }}
    ) as member_item (member)

),

renamed as (

    select
        -- lineage
        fetch_id,
        run_id,
        payload_hash,

        -- ids
        member ->> 'tag' as player_tag,
        war_clan ->> 'tag' as clan_tag,
        side as war_side,
        endpoint as source_endpoint,
        case when endpoint = 'cwl_war' then resource_tag end as war_tag,

        -- properties
        member ->> 'name' as player_name,
        case when endpoint = 'cwl_war' then 'cwl' else 'regular' end
            as war_type,
        body ->> 'state' as war_state,
        member -> 'bestOpponentAttack' ->> 'attackerTag'
            as best_opponent_attacker_tag,

        -- numbers
        {{ coc_int(
            "coalesce(member -> 'townhallLevel', member -> 'townHallLevel')"
        ) }} as town_hall_level,
        {{ coc_int("member -> 'mapPosition'") }} as map_position,
        jsonb_array_length({{ coc_json_array("member -> 'attacks'") }})
            as attacks_used,
        {{ coc_int("member -> 'opponentAttacks'") }} as defenses_received,
        {{ coc_int("member -> 'bestOpponentAttack' -> 'stars'") }}
            as best_opponent_stars,
        {{ coc_numeric(
            "member -> 'bestOpponentAttack' -> 'destructionPercentage'"
        ) }} as best_opponent_destruction_pct,

        -- timestamps
        fetched_at,
        snapshot_at

    from members

)

select * from renamed
